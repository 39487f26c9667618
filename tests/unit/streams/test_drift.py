"""The drift processor's per-model monitors, without Kafka."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from driftway.schemas.events import Output, Served
from driftway.settings import DriftSettings
from driftway.streams.drift import ModelMonitors


def served(i: int, a: float, champion: str, p_true: float) -> Served:
    return Served(event_id=f"e{i}", entity_id="u", ts=datetime.now(UTC), model="m",
                  champion=champion, features={"a": a, "entity.events": float(i)},
                  outputs={champion: Output(prediction=p_true > 0.5,
                                            score=max(p_true, 1 - p_true),
                                            proba={"true": p_true, "false": 1 - p_true})},
                  predicted_at=0.0)


def test_a_shifted_feature_alarms_once_and_a_counter_never() -> None:
    rng = random.Random(1)
    monitors = ModelMonitors(DriftSettings())
    alarms = []
    for i in range(12_000):
        a = rng.gauss(0, 1) + (1.0 if i >= 6_000 else 0.0)
        for alarm in monitors.update(served(i, a, "v1", rng.random()), 0, i):
            alarms.append((alarm.kind, alarm.feature, alarm.index))
    assert [(k, f) for k, f, _ in alarms] == [("data", "a")]
    # Detected after the shift, within a window and a check of it (indices count from the end
    # of the warm-up).
    warmup = DriftSettings().data_warmup
    assert 6_000 < alarms[0][2] + warmup <= 6_000 + 1_000 + 250
    where = monitors.where(monitors.n)
    assert where == (0, 11_999, "e11999")


def test_prediction_drift_compares_one_champion_only() -> None:
    rng = random.Random(2)
    monitors = ModelMonitors(DriftSettings())
    kinds = []
    for i in range(12_000):
        # Every 900 events a new (auto-updated) champion with somewhat different scores:
        # learning, not drift.
        champion = f"v{i // 900}"
        p = min(max(rng.gauss(0.3 + 0.02 * (i // 900), 0.1), 0.0), 1.0)
        kinds += [a.kind for a in monitors.update(served(i, rng.gauss(0, 1), champion, p), 0, i)]
    assert kinds == []
    # One champion whose answers change: that is prediction drift.
    for i in range(12_000, 20_000):
        p = min(max(rng.gauss(0.3 if i < 15_000 else 0.7, 0.1), 0.0), 1.0)
        kinds += [a.kind for a in monitors.update(served(i, rng.gauss(0, 1), "fixed", p), 0, i)]
    assert "prediction" in kinds and "data" not in kinds
