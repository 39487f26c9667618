"""The feedback join: what was served meets its label, by event id, in bounded state.

Either side may come first. The store is any dict-like mapping of event id to entry; the feedback
processor (``driftway.streams.feedback``) gives it a changelog-backed table, so it survives a
restart.

A served event waits ``feedback_window_seconds`` for its label; then it is recorded as
``unlabelled`` and a marker stays one more window, so that a label arriving after the window is
recorded as ``late_label``. A label whose served event never comes is ``orphan_label``. Joined
examples go to the training topic (one partition: one total order for the learner); the other
outcomes go to the feedback topic and its ClickHouse table. Nothing is dropped silently.

>>> store = {}
>>> join = FeedbackJoin(store, window=10.0, max_pending=100)
>>> from driftway.schemas.events import Output
>>> served = Served(event_id="e1", entity_id="u", ts=datetime.now(UTC), model="m",
...                 champion="v1", features={"x": 1.0}, predicted_at=0.0,
...                 outputs={"v1": Output(prediction=True, score=0.9)}).to_bytes().decode()
>>> join.served("e1", served, now=1.0, partition=0)
[]
>>> [type(r).__name__ for r in join.label("e1", Label(event_id="e1", label=False), now=2.0,
...                                        partition=0)]
['TrainingExample']
>>> join.served("e2", served.replace('"e1"', '"e2"'), now=3.0, partition=1)
[]
>>> [r.outcome for r in join.expire(now=13.5)]
['unlabelled']
>>> [r.outcome for r in join.label("e2", Label(event_id="e2", label=True), now=14.0,
...                                 partition=1)]
['late_label']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

from driftway.schemas.events import FeedbackOutcome, Label, Record, Served, TrainingExample

Entry = dict[str, Any]


class FeedbackJoin:
    """The join over a dict-like store of entries keyed by event id (a partition's store).

    Entries: ``served`` (waiting for a label), ``label`` (waiting for what was served), ``done``
    (joined; a repeat of either side is ignored or recorded as a duplicate label) and ``expired``
    (unlabelled; a label now is late). The store records its own changes (the runtime's
    ``Store`` writes them to the changelog with the batch's transaction).
    """

    def __init__(self, store: MutableMapping[str, Entry], window: float, max_pending: int) -> None:
        self.store = store
        self.window = window
        self.max_pending = max_pending
        self._order: OrderedDict[str, float] = OrderedDict()
        self.joined = 0

    def _set(self, event_id: str, entry: Entry) -> None:
        self.store[event_id] = entry
        self._order[event_id] = entry["t"]
        self._order.move_to_end(event_id)

    def _delete(self, event_id: str) -> None:
        self.store.pop(event_id, None)
        self._order.pop(event_id, None)

    def _index(self) -> None:
        """Order entries by time when the store holds some we did not put there (recovered from
        the changelog after a restart, or a partition assigned by a rebalance)."""
        if len(self._order) != len(self.store):
            self._order = OrderedDict(
                (eid, entry["t"]) for eid, entry in sorted(self.store.items(),
                                                           key=lambda kv: kv[1]["t"]))

    def served(self, event_id: str, served_json: str, now: float, partition: int) -> list[Record]:
        """Record what was served; the training example if its label was waiting."""
        self._index()
        entry = self.store.get(event_id)
        if entry is None:
            self._set(event_id, {"s": "served", "t": now, "p": partition, "r": served_json})
            return self._bound(now)
        if entry["s"] == "label":
            label = Label.model_validate_json(entry["r"])
            self._set(event_id, {"s": "done", "t": now, "p": partition})
            return [self._example(Served.from_bytes(served_json), label, now)]
        return []  # served again (a replay after a crash): the first one counts

    def label(self, event_id: str, label: Label, now: float, partition: int) -> list[Record]:
        """Record a label; the training example if what was served was waiting."""
        self._index()
        entry = self.store.get(event_id)
        if entry is None:
            self._set(event_id, {"s": "label", "t": now, "p": partition,
                                 "r": label.model_dump_json()})
            return self._bound(now)
        state = entry["s"]
        if state == "served":
            self._set(event_id, {"s": "done", "t": now, "p": partition})
            return [self._example(Served.from_bytes(entry["r"]), label, now)]
        outcome = {"expired": "late_label", "done": "duplicate_label",
                   "label": "duplicate_label"}[state]
        return [self._outcome(event_id, outcome, entry, now)]

    def expire(self, now: float) -> list[Record]:
        """Move entries older than the window on (and trim to max_pending); their outcomes."""
        self._index()
        out: list[Record] = []
        while self._order:
            event_id, t = next(iter(self._order.items()))
            if t + self.window > now:
                break
            out += self._expire_one(event_id, now)
        return out + self._bound(now)

    def _bound(self, now: float) -> list[Record]:
        """Over the bound, the oldest entries go early (and leave no marker)."""
        out: list[Record] = []
        while len(self._order) > self.max_pending:
            out += self._expire_one(next(iter(self._order)), now, keep_marker=False)
        return out

    def _expire_one(self, event_id: str, now: float, keep_marker: bool = True) -> list[Record]:
        entry = self.store.get(event_id)
        if entry is None:
            self._order.pop(event_id, None)
            return []
        state = entry["s"]
        if state == "served":
            served = Served.from_bytes(entry["r"])
            if keep_marker:
                self._set(event_id, {"s": "expired", "t": now, "p": entry["p"],
                                     "m": served.model, "v": served.champion})
            else:
                self._delete(event_id)
            return [self._outcome(event_id, "unlabelled", entry, now, served.model,
                                  served.champion)]
        self._delete(event_id)
        if state == "label":
            return [self._outcome(event_id, "orphan_label", entry, now)]
        return []

    def _outcome(self, event_id: str, outcome: str, entry: Entry, now: float,
                 model: str | None = None, version: str | None = None) -> FeedbackOutcome:
        return FeedbackOutcome(
            ts=datetime.fromtimestamp(now, tz=UTC), event_id=event_id,
            outcome=outcome,  # type: ignore[arg-type]
            model=model or entry.get("m"), version=version or entry.get("v"),
            waited_s=max(0.0, now - entry["t"]))

    def _example(self, served: Served, label: Label, now: float) -> TrainingExample:
        self.joined += 1
        champion = served.outputs.get(served.champion)
        return TrainingExample(
            event_id=served.event_id,
            model=served.model,
            version=served.champion,
            features=served.features,
            label=label.label,
            served=champion.prediction if champion else None,
            score=champion.score if champion else None,
            outputs=served.outputs,
            predicted_at=served.predicted_at,
            labelled_at=now,
        )
