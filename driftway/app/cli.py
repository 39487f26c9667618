"""The `driftway` command line: run the stack, feed it, and query what it recorded."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from driftway.app.context import settings_of
from driftway.schemas import topology
from driftway.settings import Settings

console = Console()
err_console = Console(stderr=True)


class LazyGroup(click.Group):
    """A group whose command groups in other modules are imported when one is run (click's
    lazy-loading recipe): `driftway query` does not import River and scipy for `explain` and
    `experiment`, and a processor's `driftway run` imports its own module only."""

    lazy = {"models": "driftway.app.models_cli:models", "explain": "driftway.app.explain:explain",
            "experiment": "driftway.app.experiment:experiment",
            "dead-letters": "driftway.app.dead_letters:dead_letters"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attr = self.lazy[name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where the local broker and embedded ClickHouse keep data "
                   "[env DRIFTWAY_STATE_DIR; default .driftway].")
@click.option("--bootstrap-servers", default=None,
              help="Kafka bootstrap servers [env DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS].")
@click.option("--external-kafka", is_flag=True, default=False,
              help="Use the Kafka at --bootstrap-servers instead of starting the local broker.")
@click.pass_context
def cli(ctx: click.Context, state_dir: Path | None, bootstrap_servers: str | None,
        external_kafka: bool) -> None:
    """Driftway: streaming MLOps on Kafka — online learning, drift, hot-swap, ClickHouse."""
    overrides: dict[str, Any] = {}
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    # Nested values given here are merged with DRIFTWAY_KAFKA__* from the environment.
    kafka: dict[str, Any] = {}
    if bootstrap_servers is not None:
        kafka["bootstrap_servers"] = bootstrap_servers
    if external_kafka:
        kafka["local_broker"] = False
    if kafka:
        overrides["kafka"] = kafka
    ctx.meta["overrides"] = overrides


@cli.command()
@click.pass_context
def broker(ctx: click.Context) -> None:
    """Run the local Kafka broker (KRaft, 127.0.0.1) in the foreground."""
    from driftway.io.broker import LauncherError, LocalBroker

    settings = settings_of(ctx)
    try:
        with LocalBroker(settings) as b:
            console.print(f"Kafka ready on 127.0.0.1:{b.port} (data in {b.home}); Ctrl-C stops it")
            _wait_for_signal(lambda: b.process is None or b.process.poll() is None)
    except LauncherError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.pass_context
def topics(ctx: click.Context) -> None:
    """Create every Driftway topic that is missing (idempotent)."""
    from driftway.io.kafka import ensure_topics

    try:
        created = ensure_topics(settings_of(ctx))
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"created: {', '.join(created)}" if created else "all topics exist")


def fix_hash_seed() -> None:
    """Run this command again with PYTHONHASHSEED=0, unless it already has it.

    A model version's id is the hash of the model's pickle, which holds sets and dicts whose
    order follows string hashing: with the seed fixed, equal models get equal ids in every process.
    Re-executed as `python -m driftway.app.cli` with the same arguments, which serves the console
    script and `-m` alike.
    """
    if os.environ.get("PYTHONHASHSEED") == "0":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "driftway", *sys.argv[1:]],
              {**os.environ, "PYTHONHASHSEED": "0"})


instance_option = click.option(
    "--instance", default=None, metavar="NAME",
    help="This process's name among the processor's replicas, the same after a restart (its "
         "transactional id: a restart fences the crashed one at once) [default: the host name].")


@cli.command("run")
@click.argument("processor", type=click.Choice([p.name for p in topology.PROCESSORS]))
@instance_option
@click.pass_context
def run(ctx: click.Context, processor: str, instance: str | None) -> None:
    """Run one processor of the topology in the foreground: scoring, feedback,
    learner, drift or sink (each is the module the topology names, on the processor runtime)."""
    fix_hash_seed()
    from driftway.io.clickhouse import EngineBusy

    module = importlib.import_module(topology.processor(processor).module)
    try:
        module.main(settings_of(ctx), instance)
    except EngineBusy as exc:
        raise click.ClickException(str(exc)) from None


def _stop_on_signal() -> threading.Event:
    """An event that SIGTERM or SIGINT sets (installed now, so none is missed)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for_signal(alive: Any = lambda: True, check: Any = None,
                     stop: threading.Event | None = None) -> None:
    """Block until SIGTERM/SIGINT (or `alive()` turns false); `check()` runs every 0.5 s."""
    stop = stop or _stop_on_signal()
    while not stop.wait(0.5) and alive():
        if check is not None:
            check()


def _start_stack(settings: Settings) -> Any:
    from driftway.app.supervisor import Stack, StackError
    from driftway.io.broker import LauncherError

    stack = Stack(settings)
    try:
        stack.start()
        stack.wait_until_serving()
        return stack
    except BaseException as exc:  # a start-up that fails (or is interrupted) leaves nothing
        stack.stop()
        if isinstance(exc, LauncherError | StackError | ConnectionError):
            raise click.ClickException(str(exc)) from None
        raise


@contextmanager
def _stopping(stack: Any) -> Iterator[None]:
    """Run the block on a started stack; a part that fails is a one-line error; stop it after."""
    from driftway.app.supervisor import StackError

    try:
        yield
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        err_console.print("stopping…")
        stack.stop()


@cli.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Run broker, topics, processors and sink in the foreground; Ctrl-C stops all of it."""
    settings = settings_of(ctx)
    # Signals during start-up must still stop what has started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = _start_stack(settings)
    stop = _stop_on_signal()  # before saying "up": a signal from now on stops it cleanly
    where = (f"embedded in {settings.state_dir}" if settings.embedded_clickhouse
             else "on the configured server")
    console.print(f"Driftway is up: Kafka {settings.kafka.bootstrap_servers}, ClickHouse {where}"
                  f"; logs in {stack.log_dir}. Ctrl-C stops it.")
    with _stopping(stack):
        from driftway.app.status import LiveStatus

        with LiveStatus(settings, console, restarts=stack.restarts):
            _wait_for_signal(check=stack.supervise, stop=stop)


@cli.command()
@click.option("--events", default=20_000, show_default=True, help="Raw events to send.")
@click.option("--change-at", default=None, type=int,
              help="Event index of the abrupt concept change [default: half way].")
@click.option("--label-delay", default=200, show_default=True,
              help="A label is sent this many events after its event.")
@click.option("--rate", default=1_000, show_default=True,
              help="Events per second (0: no limit). The whole loop — features, scoring, "
              "feedback, learner, sink — shares two cores here and keeps up with ~1,000/s.")
@click.option("--malformed-every", default=1_000, show_default=True,
              help="Send a malformed event every N events (0: none).")
@click.option("--publish-every", default=1_000, show_default=True,
              help="Labelled examples between two released model versions (the demo's "
              "processing.publish_every); serving follows learning between them (live updates).")
@click.option("--seed", default=42, show_default=True)
@click.pass_context
def demo(ctx: click.Context, events: int, change_at: int | None, label_delay: int, rate: int,
         malformed_every: int, publish_every: int, seed: int) -> None:
    """Run the stack and feed it a loan-application stream with an abrupt concept change."""
    from driftway.app import demo as demo_module

    run = demo_module.run_id()
    try:
        settings, where = demo_module.run_settings(settings_of(ctx), run)
    except demo_module.DemoBusy as exc:
        raise click.ClickException(str(exc)) from None
    console.print(where)
    settings = settings.model_copy(update={"processing": settings.processing.model_copy(
        update={"publish_every": publish_every,
                "metrics_every": min(settings.processing.metrics_every, publish_every)})})
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = _start_stack(settings)
    with _stopping(stack):
        plan = demo_module.DemoPlan(events=events, change_at=change_at or events // 2,
                                    label_delay=label_delay, rate=rate,
                                    malformed_every=malformed_every, seed=seed, run=run)
        summary = demo_module.run(settings, plan, console, check=stack.supervise,
                                  restarts=stack.restarts)
        summary["state_dir"] = settings.state_dir
        demo_module.print_summary(summary, console)
        from driftway.app.report import write_report

        out = settings.state_dir / "report.html"
        write_report(settings, out, since=summary["since"])
        console.print(f"report with charts: {out}")


@cli.command()
@click.argument("source", type=click.File("r"), default="-")
@click.option("--labels", is_flag=True, help="Lines are labels ({event_id, label}), not events.")
@click.pass_context
def produce(ctx: click.Context, source: IO[str], labels: bool) -> None:
    """Send JSON lines from SOURCE (a file, or - for stdin) as raw events, or labels.

    Every line is validated first; invalid ones are reported with their line number and not
    sent, and the command then exits with status 1.
    """
    from driftway.sdk import DeliveryError, EventProducer, InvalidRecord

    producer = EventProducer(settings_of(ctx))
    send = producer.send_label if labels else producer.send_event
    bad = 0
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            send(line)
        except InvalidRecord as exc:
            bad += 1
            err_console.print(f"line {number}: {exc}")
    try:
        producer.flush()
    except DeliveryError as exc:
        raise click.ClickException(str(exc)) from None
    err_console.print(f"sent {producer.sent} {'labels' if labels else 'events'}"
                      + (f"; {bad} invalid line(s) not sent" if bad else ""))
    if bad:
        sys.exit(1)


@cli.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run read-only SQL on the monitoring tables (database `driftway` is the default)."""
    from driftway.app.query import QueryError
    from driftway.app.query import query as run
    from driftway.io.clickhouse import EngineBusy

    try:
        result = run(settings_of(ctx), sql)
    except (QueryError, EngineBusy) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(result.records(), indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(result.columns)
        writer.writerows([[_cell(v) for v in row] for row in result.records_rows()])
        click.echo(buf.getvalue(), nl=False)
    else:
        table = Table(*result.columns, show_lines=False)
        for row in result.records_rows():
            table.add_row(*(_cell(v) for v in row))
        console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default="report.html",
              show_default=True, help="The HTML file to write.")
@click.option("--since", default=None, metavar="ISO",
              help="Only what happened from this time on, e.g. 2026-11-28T12:00:00Z "
                   "(UTC unless it names its zone).")
@click.pass_context
def report(ctx: click.Context, out: Path, since: str | None) -> None:
    """Write an HTML report with charts: quality, drift, deployments, throughput, latency."""
    from datetime import datetime

    from driftway.app.query import QueryError
    from driftway.app.report import write_report
    from driftway.io.clickhouse import EngineBusy

    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise click.BadParameter(f"{since!r} is not an ISO time", param_hint="--since") from None
    try:
        data = write_report(settings_of(ctx), out, since=start)
    except (QueryError, EngineBusy) as exc:
        raise click.ClickException(str(exc)) from None
    size = out.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    click.echo(f"{out} ({shown}): {data.summary()}")


@cli.group()
def schemas() -> None:
    """The published JSON Schemas of the wire formats."""


@schemas.command("export")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Directory [default: the schemas/json/ of this package].")
def schemas_export(out: Path | None) -> None:
    """Write one JSON Schema file per topic."""
    from driftway.schemas.export import write_json_schemas

    for path in write_json_schemas(out):
        console.print(str(path))


def main() -> None:
    """Entry point of the `driftway` console script."""
    cli(prog_name="driftway")

