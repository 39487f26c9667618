"""The label join: predictions meet their labels by event id, in bounded state.

Either side may come first. What waits longer than `window` newer arrivals is expired and counted,
never waited for forever.

>>> join = FeedbackJoin(window=2)
>>> join.add_prediction("e1", "served-e1") is None
True
>>> join.add_label("e1", True)
('served-e1', True)
>>> join.add_label("e9", False) is None  # label first: waits for its prediction
True
>>> join.add_prediction("e9", "served-e9")
('served-e9', False)
>>> for e in ("a", "b", "c"):
...     _ = join.add_prediction(e, e)
>>> join.expired_predictions
1
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

P = TypeVar("P")
L = TypeVar("L")


class FeedbackJoin(Generic[P, L]):
    """Joins what was served for an event with the event's label, whichever arrives first."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._predictions: OrderedDict[str, P] = OrderedDict()
        self._labels: OrderedDict[str, L] = OrderedDict()
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0

    def add_prediction(self, event_id: str, served: P) -> tuple[P, L] | None:
        """Record what was served; the joined pair if the label was already here."""
        label = self._labels.pop(event_id, _MISSING)
        if label is not _MISSING:
            self.joined += 1
            return served, label  # type: ignore[return-value]
        self._predictions[event_id] = served
        if len(self._predictions) > self.window:
            self._predictions.popitem(last=False)
            self.expired_predictions += 1
        return None

    def add_label(self, event_id: str, label: L) -> tuple[P, L] | None:
        """Record a label; the joined pair if its prediction was already here."""
        served = self._predictions.pop(event_id, _MISSING)
        if served is not _MISSING:
            self.joined += 1
            return served, label  # type: ignore[return-value]
        self._labels[event_id] = label
        if len(self._labels) > self.window:
            self._labels.popitem(last=False)
            self.expired_labels += 1
        return None

    @property
    def pending(self) -> tuple[int, int]:
        """(predictions waiting for labels, labels waiting for predictions)."""
        return len(self._predictions), len(self._labels)


_MISSING = object()
