"""`driftway explain EVENT_ID`: a served prediction, the state that served it, its lineage —
and the prediction recomputed from the registry and the training log (DESIGN.md, invariant 7).

The prediction row names its state: ``state_version``'s artifact plus every learnable training
record in ``[trained_from, trained_through)``. The artifact comes from the registry (verified
with the signing key); the records from the training topic, read with read_committed from
``trained_from``, or — once retention has removed them from the topic — from the ClickHouse
training table, in offset order. ``driftway.logic.replay.rebuild`` learns them by the learner's
own rule, ``predict_explained`` predicts again, and ``driftway.logic.explain`` compares the two
exactly. The command exits 0 on an exact match, 1 when the recomputation differs or the state
cannot be rebuilt (the message says why, and what to do).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from driftway.app.context import settings_of
from driftway.logic.explain import (
    SHORT,
    Report,
    Section,
    Step,
    StoredPrediction,
    compare,
    explain_top,
    lineage,
    lineage_note,
)

if TYPE_CHECKING:
    from driftway.io.registry import ModelRegistry
    from driftway.settings import Settings

console = Console()

PREDICTION_COLUMNS = ("event_id", "entity_id", "model", "version", "prediction", "score",
                      "explanation", "state_version", "trained_from", "trained_through",
                      "features", "predicted_at")
VERSION_COLUMNS = ("version", "parent", "created_at", "reason", "training_start",
                   "training_end", "examples_seen")


class CannotRebuild(Exception):
    """The state that served a prediction cannot be rebuilt; the message says why and what to
    do."""


def sql_string(value: str) -> str:
    """`value` as a ClickHouse string literal.

    >>> print(sql_string("it's a \\\\ test"))
    'it\\'s a \\\\ test'
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_prediction(settings: Settings, event_id: str, model: str | None) -> StoredPrediction:
    """The stored prediction of `event_id` (of `model`, when given); CannotRebuild if none."""
    from driftway.app.query import query

    where = f"event_id = {sql_string(event_id)}"
    if model is not None:
        where += f" AND model = {sql_string(model)}"
    rows = query(settings, f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions "
                           f"WHERE {where} ORDER BY predicted_at DESC").records()
    if not rows:
        raise CannotRebuild(
            f"no prediction of event {event_id!r}{f' by model {model!r}' if model else ''} in "
            "ClickHouse: check the event id (`driftway query \"SELECT event_id FROM predictions "
            "ORDER BY predicted_at DESC LIMIT 10\"`), or wait for the sink to store it")
    models = sorted({row["model"] for row in rows})
    if len(models) > 1:
        raise CannotRebuild(f"event {event_id!r} was served by models {', '.join(models)}: "
                            "choose one with --model")
    return StoredPrediction.from_row(rows[0])


def version_steps(settings: Settings, model: str) -> dict[str, Step]:
    """The versions of `model` the model_versions table holds."""
    from driftway.app.query import query

    rows = query(settings, f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions "
                           f"WHERE model = {sql_string(model)}").records()
    return {str(row["version"]): Step.from_row(row) for row in rows}


def topic_records(settings: Settings, start: int, end: int,
                  timeout: float = 60.0) -> list[tuple[int, bytes | None]] | None:
    """(offset, value) of the training topic's committed records in [start, end); None when
    the topic no longer holds `start` (retention removed it)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from driftway.io.kafka import TO_THE_END, client_config, take

    topic = settings.topic("training")
    consumer = Consumer({**client_config(settings),
                         "group.id": f"{settings.app_id}-explain-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         **TO_THE_END, "auto.offset.reset": "error"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10,
                                                   cached=False)
        if low > start:
            return None
        if high < end:
            raise CannotRebuild(
                f"{topic} ends at offset {high}, before {end}: it is not the topic this state "
                "learned from (was it deleted and created again?)")
        consumer.assign([TopicPartition(topic, 0, start)])
        out: list[tuple[int, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while True:
            at_end = False
            for msg in take(consumer, 1000, 0.5):
                err = msg.error()
                if err is None:
                    out.append((msg.offset(), msg.value()))
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                elif err.code() in (KafkaError._AUTO_OFFSET_RESET,
                                    KafkaError.OFFSET_OUT_OF_RANGE):
                    return None  # removed between the watermark check and the fetch
                else:
                    raise CannotRebuild(f"reading {topic} failed: {err.str()}")
            position = consumer.position([TopicPartition(topic, 0)])[0].offset
            if at_end or position >= end:
                return [(o, v) for o, v in out if o < end]
            if time.monotonic() > deadline:
                raise CannotRebuild(f"{topic} not read from {start} to {end} in {timeout:.0f}s; "
                                    "is the broker overloaded? try again")
    except KafkaException as exc:
        raise CannotRebuild(f"reading {topic} failed: {exc.args[0].str()}") from None
    finally:
        consumer.close()


def label_of(text: str) -> Any:
    """A label as the training table stores it (label_text), back as a value.

    Booleans and numbers come back as such; any other text is a string label. (A string label
    that reads as JSON, e.g. "1", comes back as a number: only the topic keeps label types.)

    >>> label_of("true"), label_of("2.5"), label_of("yes")
    (True, 2.5, 'yes')
    """
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float) else text


def table_records(settings: Settings, model: str, start: int,
                  end: int) -> list[tuple[int, bytes | None]]:
    """The training examples of `model` in [start, end) from the ClickHouse training table, as
    training-topic records in offset order; CannotRebuild when the table cannot stand in."""
    from driftway.app.query import query
    from driftway.schemas.events import TrainingExample

    topic = sql_string(settings.topic("training"))
    stored = query(settings, f"SELECT max(_offset), count() FROM training "
                             f"WHERE _topic = {topic} AND _partition = 0").rows[0]
    gone = (f"the training records [{start}, {end}) are gone from {settings.topic('training')} "
            "(retention)")
    if not stored[1] or int(stored[0]) < end - 1:
        raise CannotRebuild(
            f"{gone}, and the training table holds offsets up to "
            f"{stored[0] if stored[1] else '(none)'} only: wait for the sink to catch up, or — "
            "if they expired there too (sink.ttl_days) — this prediction cannot be reproduced; "
            "keep the training topic's retention longer than predictions must stay reproducible")
    rows = query(settings, f"SELECT _offset, event_id, version, label, features FROM training "
                           f"WHERE _topic = {topic} AND _partition = 0 AND model = "
                           f"{sql_string(model)} AND _offset >= {start} AND _offset < {end} "
                           "ORDER BY _offset").rows
    if any(not features for *_, features in rows):
        raise CannotRebuild(
            f"{gone}, and training rows of that range were stored without their features "
            "(before the training table kept them): this prediction cannot be reproduced")
    return [(int(offset), TrainingExample(
        event_id=event_id, model=model, version=version, label=label_of(label), served=None,
        features={str(k): float(v) for k, v in features.items()}).to_bytes())
        for offset, event_id, version, label, features in rows]


def rebuild_state(settings: Settings, registry: ModelRegistry,
                  stored: StoredPrediction) -> tuple[Any, int, str]:
    """The model state that served `stored`, the examples relearned, and where they came from
    ("topic", "table", or "" when the version alone is the state)."""
    from driftway.logic.artifacts import ArtifactRefused
    from driftway.logic.models import make_model
    from driftway.logic.registry import RegistryError
    from driftway.logic.replay import rebuild

    version = stored.state_version
    meta = registry.versions.get(version)
    if meta is None:
        raise CannotRebuild(
            f"version {version[:SHORT]} is no longer in the registry (pruned, or its topics "
            "were recreated): the state that served this prediction is gone; restore the "
            "model-versions and model-artifacts topics to reproduce it")
    try:
        model = registry.load(version)
    except RegistryError as exc:
        if version in registry.pruned:
            raise CannotRebuild(
                f"the artifact of version {version[:SHORT]} was pruned by the registry's "
                "retention rule, which keeps what stored predictions name (was this one stored "
                "after the rule ran?): this prediction can no longer be recomputed; "
                "DRIFTWAY_REGISTRY__PRUNE=false keeps every artifact") from None
        raise CannotRebuild(f"{exc}: try again once it has arrived") from None
    except ArtifactRefused as exc:
        raise CannotRebuild(f"{exc}: check the signing key (DRIFTWAY_SIGNING_KEY, or "
                            "signing.key in the state directory)") from None
    if not stored.live:
        return model, 0, ""
    start, end = stored.trained_from, stored.trained_through
    records = topic_records(settings, start, end)
    source = "topic"
    if records is None:
        records, source = table_records(settings, stored.model, start, end), "table"
    # The learner's template (it only coerces labels): the model the version was made from.
    spec = meta.hyperparameters.get("spec")
    try:
        template = make_model(spec if isinstance(spec, str) else settings.processing.model)
    except ValueError:
        template = make_model(settings.processing.model)
    learned = rebuild(model, records, stored.model, template, start, end)
    return model, learned, source


def explain_event(settings: Settings, event_id: str, model: str | None) -> Report:
    """Everything `driftway explain` shows about one event (raises CannotRebuild when there is
    no prediction to explain; every later failure is the report's `problem`)."""
    from driftway.app.models_cli import open_registry
    from driftway.logic.models import predict_explained

    stored = find_prediction(settings, event_id, model)
    steps = version_steps(settings, stored.model)
    problem: str | None = None
    try:
        with open_registry(settings) as registry:
            # The registry is the authority; the table may lag behind it.
            steps |= {v: Step.from_meta(m) for v, m in registry.versions.items()
                      if m.model == stored.model}
            if not stored.features and stored.explanation:
                raise CannotRebuild(
                    "the prediction row has no features: it was stored before predictions "
                    "recorded them, so it cannot be recomputed")
            state, learned, source = rebuild_state(settings, registry, stored)
    except click.ClickException as exc:  # Kafka or the registry, in one line
        problem = exc.message
    except CannotRebuild as exc:
        problem = str(exc)
    chain = lineage(steps, stored.state_version)
    note = lineage_note(chain, stored.state_version)
    notes = () if note is None else (note,)
    if problem is not None:
        return Report(stored, chain, problem=problem, notes=notes)
    rebuilt = predict_explained(state, stored.features,
                                explain_top(stored, settings.processing.explain_top))
    return Report(stored, chain, rebuilt, compare(stored, rebuilt), learned, source,
                  notes=notes)


def print_section(section: Section) -> None:
    if section.columns:
        table = Table(*section.columns, box=box.SIMPLE_HEAD, title=section.title,
                      title_justify="left")
    else:
        table = Table(show_header=False, box=box.SIMPLE, title=section.title,
                      title_justify="left")
    for row in section.rows:
        table.add_row(*(Text(cell) for cell in row))  # feature names are data, not markup
    console.print(table)


@click.command()
@click.argument("event_id")
@click.option("--model", default=None, metavar="NAME",
              help="The model whose prediction to explain [default: the one that served it].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Tables, or JSON (full ids, exact floats).")
@click.pass_context
def explain(ctx: click.Context, event_id: str, model: str | None, fmt: str) -> None:
    """Show EVENT_ID's prediction, its top contributions, the model state that served it and its
    lineage; rebuild that state from the registry and the training log, predict again, and say
    whether it matches exactly (exit 0) or not (exit 1)."""
    from driftway.app.query import QueryError
    from driftway.io.clickhouse import EngineBusy

    settings = settings_of(ctx)
    try:
        report = explain_event(settings, event_id, model)
    except (CannotRebuild, QueryError, EngineBusy) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for section in report.sections():
            print_section(section)
        for note in report.notes:
            console.print(f"note: {escape(note)}")
        style = "green" if report.matches else "red"
        console.print(f"recomputed from {report.stored.state_version[:SHORT]}"
                      f" + {report.learned if report.learned is not None else '?'} example(s): "
                      f"[{style}]{escape(report.verdict)}[/{style}]", highlight=False)
    if not report.matches:
        sys.exit(1)
