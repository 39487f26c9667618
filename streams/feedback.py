"""feedback: what was served meets its label, by event id, in bounded changelog-backed state.

Scoring writes what it served keyed by event id, and labels are keyed by event id: the two topics
are co-partitioned, so one partition's store holds both sides of the join
(``driftway.logic.join.FeedbackJoin``) and survives a restart through its changelog. It runs on
the processor runtime (``driftway.io.runtime``): joined examples (to the training topic, one
partition: one total order for the learner), the outcomes of what found no partner (to the
feedback topic and its ClickHouse table) and the state's changes are committed in one
transaction with the input offsets. Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterator

from driftway.io.runtime import Incoming, Out, run_processor
from driftway.io.state import Store
from driftway.logic.join import FeedbackJoin
from driftway.logic.limits import decode_checked
from driftway.logic.models import coerce_label, make_model
from driftway.schemas.events import Label, Record, Served, TrainingExample
from driftway.settings import Settings


class Feedback:
    """The feedback processor: served events and labels in, training examples and outcomes out."""

    name = "feedback"

    def __init__(self, settings: Settings) -> None:
        p = settings.processing
        self.window, self.max_pending = p.feedback_window_seconds, p.feedback_max_pending
        self.limits = settings.limits
        self.joins: dict[int, FeedbackJoin] = {}
        self.template = make_model(p.model)  # what labels the model can learn from

    def _join(self, store: Store) -> FeedbackJoin:
        """The join over one partition's store (a new one when the partition was restored)."""
        join = self.joins.get(store.partition)
        if join is None or join.store is not store:
            join = self.joins[store.partition] = FeedbackJoin(store, self.window,
                                                              self.max_pending)
        return join

    def handle(self, record: Incoming, store: Store | None) -> list[Out]:
        assert store is not None  # the topology gives feedback a state
        join, value = self._join(store), record.value or b""
        if record.topic == "served":
            served = Served.from_bytes(value)
            joined = join.served(served.event_id, value.decode(), record.received_at,
                                 record.partition)
        else:
            label = decode_checked(Label, record.value, self.limits)
            coerce_label(self.template, label.label)  # one it cannot learn is refused here
            joined = join.label(label.event_id, label, record.received_at, record.partition)
        return [_out(r) for r in joined]

    def tick(self, now: float, stores: dict[int, Store]) -> Iterator[Out]:
        """Served events past the window become `unlabelled`, old markers go."""
        for store in stores.values():
            yield from (_out(r) for r in self._join(store).expire(now))


def _out(record: Record) -> Out:
    if isinstance(record, TrainingExample):
        return Out("training", None, record.to_bytes())
    return Out("feedback", record.event_id, record.to_bytes())  # type: ignore[attr-defined]


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the feedback processor in the foreground."""
    run_processor(settings, Feedback(settings), instance)
