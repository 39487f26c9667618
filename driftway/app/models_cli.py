"""`driftway models`: the model registry from the shell — list, show, deploy, promote, roll back,
prune.

Reads come from a ModelRegistry read to the end of its topics. Writes are deployment records (and
publish requests on the training topic, and the tombstones of pruned artifacts), each
acknowledged by Kafka before the command returns.
Every command takes ``--format table|json``: JSON carries the same information, with full ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich import box
from rich.console import Console
from rich.table import Table

from driftway.app.context import settings_of
from driftway.schemas.events import DeployAction, Deployment, ModelVersion, PublishRequest

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from driftway.io.registry import ModelRegistry
    from driftway.settings import Settings

console = Console()

#: What `deliver` hands its writer: an Emit (driftway.logic.registry) that also writes
#: tombstones (no value).
Write = Callable[[str, str | bytes | None, bytes | None], None]

#: Characters of a version id shown in tables (JSON always has the full id).
SHORT = 12

format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
    help="A table, or JSON (the same information, full ids).")
reason_option = click.option("--reason", default="", help="Why: recorded with the deployment.")


def require_kafka(settings: Settings, topic_keys: tuple[str, ...]) -> None:
    """Fail soon, in one line, when Kafka is unreachable or one of the topics is missing."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from driftway.io.kafka import client_config

    # Quiet: librdkafka would log every failed connection; the exception says it once.
    admin = AdminClient({**client_config(settings), "log_level": 0})
    try:
        existing = admin.list_topics(timeout=5).topics
    except KafkaException as exc:
        raise click.ClickException(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers} ({exc.args[0].str()}); "
            "is the broker running and DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS right?") from None
    missing = [settings.topic(k) for k in topic_keys if settings.topic(k) not in existing]
    if missing:
        raise click.ClickException(
            f"topic {', '.join(missing)} does not exist; run `driftway topics` first")


@contextmanager
def open_registry(settings: Settings) -> Iterator[ModelRegistry]:
    """The registry, read to its end; what it refuses becomes a one-line error."""
    from driftway.io.keys import with_signing_key
    from driftway.io.registry import ModelRegistry
    from driftway.logic.artifacts import ArtifactRefused
    from driftway.logic.registry import REGISTRY_TOPICS, RegistryError

    require_kafka(settings, REGISTRY_TOPICS)
    try:
        registry = ModelRegistry(with_signing_key(settings), name="cli")
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        registry.catch_up()
        yield registry
    except (RegistryError, ArtifactRefused, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        registry.close()


def deliver(settings: Settings, write: Callable[[Write], None]) -> list[Message]:
    """Run `write` with an emit that produces to Kafka; wait until Kafka acknowledged it all."""
    from driftway.io.kafka import make_producer, produce

    producer = make_producer(settings, **{"message.timeout.ms": 15_000})
    delivered: list[Message] = []
    errors: list[str] = []
    sent = 0

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            delivered.append(msg)
        else:
            errors.append(err.str())

    def emit(topic: str, key: str | bytes | None, value: bytes | None) -> None:
        nonlocal sent
        sent += 1
        produce(producer, topic, key, value, on_delivery)

    write(emit)
    producer.flush(30)
    if errors or len(delivered) < sent:
        raise click.ClickException(
            f"not written to Kafka: {errors[0] if errors else 'no acknowledgement in 30s'}")
    return delivered


def role(deployment: Deployment | None, version: str) -> str:
    """The role of `version` under its model's current deployment: champion, shadow or ""."""
    if deployment is None:
        return ""
    if version == deployment.champion:
        return "champion"
    return "shadow" if version in deployment.shadows else ""


def rollback_target(history: list[Deployment]) -> str | None:
    """The champion before the current one, from a model's deployments (oldest first).

    A shadow change keeps the champion (its `previous` is the champion itself), so the answer is
    in the record that made the current champion champion.

    >>> from driftway.logic.registry import next_deployment
    >>> h = [next_deployment(None, "m", "deploy", "a")]
    >>> h.append(next_deployment(h[-1], "m", "deploy", "b"))
    >>> h.append(next_deployment(h[-1], "m", "shadow", "c"))
    >>> rollback_target(h), rollback_target(h[:1])
    ('a', None)
    """
    if not history:
        return None
    champion = history[-1].champion
    for record in reversed(history):
        if record.champion != champion:
            break
        if record.previous is not None and record.previous != champion:
            return record.previous
    return None


SUMMARY_FIELDS = {"model", "version", "parent", "created_at", "reason", "training_offsets",
                  "examples_seen"}


def summary(meta: ModelVersion, deployment: Deployment | None) -> dict[str, Any]:
    """What `models list` tells about a version, JSON-ready."""
    return {**meta.model_dump(mode="json", include=SUMMARY_FIELDS),
            "role": role(deployment, meta.version)}


def offsets_text(meta: ModelVersion) -> str:
    o = meta.training_offsets
    return f"[{o.start}, {o.end})" if o is not None else ""


def when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group()
def models() -> None:
    """Model versions and their deployment: list, show, deploy, shadow, promote, roll back."""


@models.command("list")
@click.option("--model", default=None, help="Only the versions of this model.")
@format_option
@click.pass_context
def list_versions(ctx: click.Context, model: str | None, fmt: str) -> None:
    """Every version, oldest first, with its lineage, training offsets and current role."""
    with open_registry(settings_of(ctx)) as registry:
        versions = sorted((v for v in registry.versions.values()
                           if model is None or v.model == model),
                          key=lambda v: (v.model, v.created_at))
        deployments = dict(registry.deployments)
    if fmt == "json":
        echo_json([summary(v, deployments.get(v.model)) for v in versions])
        return
    if not versions:
        console.print("no model versions" + (f" of {model!r}" if model else ""))
    for name, line in groupby(versions, key=lambda v: v.model):
        deployment = deployments.get(name)
        # One table per model; ids and roles never wrap, so the rest folds on narrow terminals.
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                      title=f"model {name}", title_justify="left")
        table.add_column("version", no_wrap=True)
        table.add_column("parent", no_wrap=True)
        table.add_column("role", no_wrap=True, min_width=8)
        table.add_column("created", min_width=10)
        table.add_column("examples", justify="right")
        table.add_column("offsets")
        table.add_column("reason")
        for v in line:
            table.add_row(v.version[:SHORT], (v.parent or "")[:SHORT], role(deployment, v.version),
                          when(v.created_at), str(v.examples_seen), offsets_text(v), v.reason)
        console.print(table)


@models.command()
@click.argument("version")
@format_option
@click.pass_context
def show(ctx: click.Context, version: str, fmt: str) -> None:
    """One version (a unique prefix will do): its metadata and its lineage back to the first."""
    with open_registry(settings_of(ctx)) as registry:
        meta = registry.resolve(version)
        lineage = registry.lineage(meta.version)
        deployment = registry.deployments.get(meta.model)
        pruned = set(registry.pruned)
    if fmt == "json":
        echo_json({**meta.model_dump(mode="json"), "role": role(deployment, meta.version),
                   "pruned": meta.version in pruned,
                   "lineage": [summary(v, deployment) for v in lineage]})
        return
    o = meta.training_offsets
    facts = Table(show_header=False, title=f"{meta.model}@{meta.version}")
    for name, value in [
        ("parent", meta.parent or ""),
        ("role", role(deployment, meta.version)),
        ("created", when(meta.created_at)),
        ("reason", meta.reason),
        ("examples seen", str(meta.examples_seen)),
        ("training", f"{o.topic}[{o.partition}] {offsets_text(meta)}" if o is not None else ""),
        ("feature set", meta.feature_set),
        ("hyperparameters", json.dumps(meta.hyperparameters, default=str)),
        ("metrics", json.dumps(meta.metrics)),
        ("libraries", json.dumps(meta.libraries)),
        ("artifact", f"{meta.artifact_size} bytes in {meta.artifact_chunks} chunk(s)" + (
            ", pruned by the registry's retention rule" if meta.version in pruned else "")),
        ("signature", meta.signature or "(unsigned)"),
    ]:
        facts.add_row(name, value)
    console.print(facts)
    chain = Table("version", "created", "offsets", "examples", "reason", "role",
                  title="lineage, newest first")
    for v in lineage:
        chain.add_row(v.version[:SHORT], when(v.created_at), offsets_text(v),
                      str(v.examples_seen), v.reason, role(deployment, v.version))
    console.print(chain)
    if lineage[-1].parent is not None:
        console.print(f"(the parent {lineage[-1].parent[:SHORT]} is not in the registry)")


def verified(registry: ModelRegistry, meta: ModelVersion) -> None:
    """Refuse to deploy what scoring would refuse to load: a missing or unverified artifact."""
    from driftway.logic.artifacts import verify

    data = registry.artifact(meta.version)
    if data is None:
        raise registry.unavailable(meta)  # not arrived, or pruned by the retention rule
    verify(meta, data, registry.key)


def refuse_no_op(current: Deployment | None, meta: ModelVersion, action: DeployAction) -> None:
    """An action that would change nothing, or that this version's role does not allow."""
    short, model = meta.version[:SHORT], meta.model
    if action == "deploy" and current is not None and current.champion == meta.version:
        raise click.ClickException(f"{short} is already the champion of {model!r}")
    if action == "shadow" and current is not None and meta.version in current.shadows:
        raise click.ClickException(f"{short} is already a shadow of {model!r}")
    if action == "promote" and (current is None or meta.version not in current.shadows):
        raise click.ClickException(
            f"{short} is not a shadow of {model!r}; only a shadow can be promoted "
            "(`driftway models shadow` it first, or `driftway models deploy` it)")


def change(ctx: click.Context, version: str, action: DeployAction, reason: str,
           fmt: str) -> None:
    """Apply `action` to the version `version` names and write the model's new deployment."""
    from driftway.logic.registry import next_deployment, write_deployment

    settings = settings_of(ctx)
    with open_registry(settings) as registry:
        meta = registry.resolve(version)
        current = registry.deployments.get(meta.model)
        refuse_no_op(current, meta, action)
        if action != "unshadow":
            verified(registry, meta)
        deployment = next_deployment(current, meta.model, action, meta.version, reason, by="cli")
    deliver(settings, lambda emit: write_deployment(emit, settings, deployment))
    print_deployment(deployment, fmt)


def print_deployment(d: Deployment, fmt: str) -> None:
    if fmt == "json":
        echo_json(d.model_dump(mode="json"))
        return
    table = Table(show_header=False, title=f"{d.model}: {d.action} {d.version[:SHORT]}")
    table.add_row("champion", d.champion[:SHORT])
    table.add_row("shadows", ", ".join(s[:SHORT] for s in d.shadows))
    table.add_row("previous champion", (d.previous or "")[:SHORT])
    table.add_row("reason", d.reason)
    table.add_row("by", d.by)
    table.add_row("at", when(d.ts))
    console.print(table)


@models.command()
@click.argument("version")
@reason_option
@format_option
@click.pass_context
def deploy(ctx: click.Context, version: str, reason: str, fmt: str) -> None:
    """Make VERSION (a unique prefix) the champion of its model."""
    change(ctx, version, "deploy", reason, fmt)


@models.command()
@click.argument("version")
@reason_option
@format_option
@click.pass_context
def shadow(ctx: click.Context, version: str, reason: str, fmt: str) -> None:
    """Score with VERSION beside the champion, without serving its answers."""
    change(ctx, version, "shadow", reason, fmt)


@models.command()
@click.argument("version")
@reason_option
@format_option
@click.pass_context
def unshadow(ctx: click.Context, version: str, reason: str, fmt: str) -> None:
    """Stop scoring with the shadow VERSION."""
    change(ctx, version, "unshadow", reason, fmt)


@models.command()
@click.argument("version")
@reason_option
@format_option
@click.pass_context
def promote(ctx: click.Context, version: str, reason: str, fmt: str) -> None:
    """Make the shadow VERSION the champion."""
    change(ctx, version, "promote", reason, fmt)


@models.command()
@click.argument("model")
@reason_option
@format_option
@click.pass_context
def rollback(ctx: click.Context, model: str, reason: str, fmt: str) -> None:
    """Make MODEL's previous champion its champion again."""
    from driftway.logic.registry import RegistryError, next_deployment, write_deployment

    settings = settings_of(ctx)
    with open_registry(settings) as registry:
        current = registry.deployments.get(model)
        if current is None:
            raise click.ClickException(f"model {model!r} has never been deployed")
        target = rollback_target(registry.history.get(model, []))
        if target is None:
            raise click.ClickException(f"model {model!r} has no earlier champion to roll back to")
        meta = registry.versions.get(target)
        if meta is None:
            raise RegistryError(f"the earlier champion {target[:SHORT]} is not in the registry")
        verified(registry, meta)
        deployment = next_deployment(current, model, "rollback", target, reason, by="cli")
    deliver(settings, lambda emit: write_deployment(emit, settings, deployment))
    print_deployment(deployment, fmt)


@models.command()
@click.argument("model")
@click.option("--reason", default="requested", show_default=True,
              help="Why: recorded with the version the learner publishes.")
@format_option
@click.pass_context
def publish(ctx: click.Context, model: str, reason: str, fmt: str) -> None:
    """Ask the learner to publish a version of MODEL now.

    The request travels on the training topic, so the learner publishes at this point of the
    training order (and at the same point again if it replays the topic).
    """
    settings = settings_of(ctx)
    require_kafka(settings, ("training",))
    request = PublishRequest(model=model, reason=reason, ts=datetime.now(UTC))
    topic = settings.topic("training")
    [msg] = deliver(settings, lambda emit: emit(topic, model, request.to_bytes()))
    if fmt == "json":
        echo_json({"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                   "request": msgspec.to_builtins(request)})
        return
    console.print(f"publish of {model!r} requested at {msg.topic()}[{msg.partition()}] offset "
                  f"{msg.offset()}: the learner publishes when it reaches it")


@models.command()
@click.option("--dry-run", is_flag=True, help="Show what would be pruned; write nothing.")
@format_option
@click.pass_context
def prune(ctx: click.Context, dry_run: bool, fmt: str) -> None:
    """Prune the artifacts the registry's retention rule no longer keeps, now.

    The sink does it every registry.prune_every_seconds; the rule (settings registry.*) keeps
    what is deployed, each deployed line's latest version, whatever a stored prediction names,
    and what was published, superseded or deployed within registry.prune_grace_seconds. Only
    artifacts go: every version's metadata and lineage stay.
    """
    from driftway.app.query import QueryError, query
    from driftway.consumers.sink import needed_versions_sql
    from driftway.logic.registry import prunable, tombstones

    settings = settings_of(ctx)
    now, grace = time.time(), settings.registry.prune_grace_seconds
    try:
        rows = query(settings, needed_versions_sql(settings.clickhouse_database, now - grace))
    except (QueryError, OSError) as exc:
        raise click.ClickException(f"cannot read the versions stored predictions name ({exc}); "
                                   "nothing pruned") from None
    needed = {str(v) for (v,) in rows.rows}
    with open_registry(settings) as registry:
        pruned = [meta for model in sorted({v.model for v in registry.versions.values()})
                  for meta in prunable(registry, model, needed, datetime.fromtimestamp(now, UTC),
                                       timedelta(seconds=grace))]

    def write(emit: Write) -> None:
        for meta in pruned:
            for topic, key in tombstones(meta):
                emit(settings.topic(topic), key, None)

    if pruned and not dry_run:
        deliver(settings, write)
    if fmt == "json":
        echo_json({"dry_run": dry_run, "pruned": [summary(v, None) for v in pruned]})
        return
    verb = "would prune" if dry_run else "pruned"
    if not pruned:
        console.print("nothing to prune: the retention rule keeps every artifact still stored")
        return
    table = Table("model", "version", "created", "reason", box=box.SIMPLE_HEAD,
                  title=f"{verb} the artifacts of {len(pruned)} version(s)", title_justify="left")
    for v in pruned:
        table.add_row(v.model, v.version[:SHORT], when(v.created_at), v.reason)
    console.print(table)
