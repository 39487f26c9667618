"""Features of a raw event: its own data, and aggregates of its entity's running state.

Numeric (and boolean) fields become numeric features as they are; string fields become one-hot
categorical features named ``field=value``; no configuration needed. Each entity's running state —
how many events it has sent and when the last came — is passed in and returned (the features
processor keeps it in a changelog-backed table), and yields two aggregate features.

>>> from driftway.schemas.events import RawEvent
>>> e = RawEvent(event_id="e1", entity_id="u1", ts=1_000, data={"amount": 3, "city": "Oslo",
...              "vip": True, "note": None})
>>> fv, state = featurize(e, None, received_at=5.0)
>>> fv.features  # doctest: +NORMALIZE_WHITESPACE
{'amount': 3.0, 'city=Oslo': 1.0, 'vip': 1.0,
 'entity.events': 1.0, 'entity.seconds_since_last': 0.0}
>>> state
{'n': 1, 'last_us': 1000000}

Time differences are exact: ``last_us`` is integer microseconds since the epoch (a state written
before, with ``last_ts`` in float seconds, is read too).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from driftway.schemas.events import FeatureVector, RawEvent

EntityState = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def epoch_us(ts: datetime) -> int:
    """A timestamp as integer microseconds since the epoch, exactly (no float rounding).

    >>> epoch_us(datetime(2026, 1, 1, 0, 0, 0, 7, tzinfo=UTC)) % 1_000_000
    7
    """
    return (ts - EPOCH) // MICROSECOND


def _last_us(state: EntityState | None) -> int | None:
    """The entity's last event time in microseconds, from the new or the old state format."""
    if not state:
        return None
    if state.get("last_us") is not None:
        return int(state["last_us"])
    last_ts = state.get("last_ts")  # the old format: float epoch seconds
    return None if last_ts is None else round(last_ts * 1_000_000)


def event_features(data: dict[str, Any]) -> dict[str, float]:
    """Flat event data → features (strings one-hot; None and non-finite numbers left out)."""
    out: dict[str, float] = {}
    for name, value in data.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[f"{name}={value}"] = 1.0
        else:
            number = float(value)
            if math.isfinite(number):
                out[name] = number
    return out


def featurize(
    event: RawEvent, state: EntityState | None, received_at: float
) -> tuple[FeatureVector, EntityState]:
    """One raw event and its entity's state → its feature vector and the entity's new state."""
    ts = epoch_us(event.ts)
    features = event_features(event.data)
    n = (state or {}).get("n", 0) + 1
    last = _last_us(state)
    features["entity.events"] = float(n)
    features["entity.seconds_since_last"] = (max(0, ts - last) / 1_000_000
                                             if last is not None else 0.0)
    vector = FeatureVector(
        event_id=event.event_id,
        entity_id=event.entity_id,
        ts=event.ts,
        features=features,
        received_at=received_at,
    )
    return vector, {"n": n, "last_us": ts if last is None else max(ts, last)}
