"""feedback: what was served meets its label, by event id, in bounded changelog-backed state.

Scoring writes what it served keyed by event id, and labels are keyed by event id: the two topics
are co-partitioned, so one faust table (its changelog written with each batch's output) holds both
sides of the join (``driftway.logic.join.FeedbackJoin``) for a partition, and survives a restart.
Joined examples go to the training topic (one partition: one total order for the learner); served
events that never got a label and labels that never found their event go to the feedback topic
and its ClickHouse table. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from driftway.io.agents import (
    Emitter,
    batches,
    dead_letter,
    exit_uncommitted_on_failure,
    make_app,
    run_worker,
)
from driftway.logic.join import FeedbackJoin
from driftway.schemas.events import (
    FeedbackOutcome,
    Label,
    Record,
    Served,
    TrainingExample,
    failure_reason,
)
from driftway.settings import Settings

log = logging.getLogger(__name__)

def build(settings: Settings) -> Any:
    """The feedback faust app: one agent over the co-partitioned served and labels topics."""
    app = make_app(settings, "feedback")
    p = settings.processing
    served_topic, labels_topic = settings.topic("served"), settings.topic("labels")
    source = app.topic(served_topic, labels_topic, key_serializer="raw", value_serializer="raw",
                       partitions=settings.kafka.partitions)
    table = app.Table("pending", default=None, partitions=settings.kafka.partitions)
    join = FeedbackJoin(table.data, p.feedback_window_seconds, p.feedback_max_pending)
    emitter = Emitter(settings)
    changelog = table.changelog_topic.get_topic_name()
    outputs = {TrainingExample: settings.topic("training"),
               FeedbackOutcome: settings.topic("feedback")}

    def emit(records: list[Record]) -> None:
        for record in records:
            key = None if isinstance(record, TrainingExample) else record.event_id  # type: ignore[attr-defined]
            emitter.emit(outputs[type(record)], key, record.to_bytes())

    async def flush() -> None:
        # The state's changelog goes out with the output it explains, before offsets commit.
        for event_id, partition in join.take_dirty().items():
            entry = table.data.get(event_id)
            emitter.emit(changelog, json.dumps(event_id).encode(),
                         None if entry is None else json.dumps(entry).encode(),
                         partition=partition)
        await emitter.flush()

    @app.agent(source)
    @exit_uncommitted_on_failure
    async def feedback(stream: Any) -> None:
        async for events in batches(stream, settings):
            now = time.time()
            for event in events:
                msg = event.message
                value = msg.value or b""
                try:
                    if msg.topic == served_topic:
                        served = Served.model_validate_json(value)
                        emit(join.served(served.event_id, value.decode(), now, msg.partition))
                    else:
                        label = Label.model_validate_json(value)
                        emit(join.label(label.event_id, label, now, msg.partition))
                except Exception as exc:  # one record's failure is its dead letter, not the batch's
                    dl = dead_letter("feedback", event, failure_reason(exc))
                    emitter.emit(settings.topic("dead-letters"), dl.source_topic, dl.to_bytes())
            await flush()

    @app.timer(1.0)
    async def expire() -> None:
        emit(join.expire(time.time()))
        await flush()

    return app


def main(settings: Settings) -> None:
    """Run the feedback processor in the foreground."""
    run_worker(build(settings), settings)
