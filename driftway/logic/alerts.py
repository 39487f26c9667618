"""When drift alarms become an alert: a model's alarms counted in a tumbling window, one alert
when the count reaches the threshold (the window's later alarms are in its count, not alerts of
their own).

>>> from datetime import UTC, datetime
>>> from driftway.schemas.events import DriftEvent
>>> event = DriftEvent(ts=datetime(2026, 1, 1, tzinfo=UTC), kind="data", detector="ks",
...                    model="default", version="ab" * 32, feature="amount", statistic=0.4,
...                    threshold=0.2)
>>> [alert_of(event, n, threshold=3, window_seconds=3600) is not None for n in (1, 2, 3, 4)]
[False, False, True, False]
>>> print(alert_of(event, 3, threshold=3, window_seconds=3600)["text"])
... # doctest: +NORMALIZE_WHITESPACE
3 drift alarms on model default within 1 h; the last: data drift on amount
(ks, statistic 0.4 > 0.2) on version abababababab
"""

from __future__ import annotations

from typing import Any

from driftway.schemas.events import DriftEvent


def _window(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def alert_of(event: DriftEvent, count: int, threshold: int,
             window_seconds: float) -> dict[str, Any] | None:
    """The alert to send when `event` is the model's `count`-th alarm of its window (None
    unless the count has just reached the threshold)."""
    if count != threshold:
        return None
    where = f" on {event.feature}" if event.feature else ""
    version = f" on version {event.version[:12]}" if event.version else ""
    text = (f"{count} drift alarms on model {event.model} within {_window(window_seconds)}; "
            f"the last: {event.kind} drift{where} ({event.detector}, statistic "
            f"{event.statistic:.3g} > {event.threshold:.3g}){version}")
    return {
        "text": text,
        "model": event.model,
        "alarms": count,
        "window_seconds": window_seconds,
        "last": event.model_dump(mode="json"),
    }
