"""`driftway dead-letters`: list, show and replay what the processors refused.

Dead letters are read from their topic (read_committed, from its beginning), not from ClickHouse:
the topic is the source of truth, holds every committed dead letter whether the stack runs or
not, and needs neither the sink to have caught up nor the engine it owns. Replay marks come from
the ``dead-letter-replays`` topic (``driftway.io.dead_letters``).

A replay re-validates each selected dead letter's original bytes as the processor that refused
it would now, with the current settings — its own handling, on a scratch state — and sends those
that pass to their source topic and partition, each with its mark in one transaction; what
still fails is reported, and the command exits with status 1. Only the topics upstream apps
write (raw events and labels) are replayable: a record sent again to a topic Driftway's own
processors write would reach that topic's other readers twice.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from driftway.app.context import settings_of
from driftway.app.models_cli import require_kafka
from driftway.logic.dead_letters import (
    Check,
    Selection,
    Step,
    counts,
    failure,
    mark_key,
    parse_time,
    payload_text,
    plan,
    select,
)
from driftway.schemas.events import DeadLetter, ReplayMark
from driftway.schemas.topology import TOPIC_KEYS

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftway.settings import Settings

console = Console()
err_console = Console(stderr=True)

#: Upstream topics (what apps send) and the processor that checks each on entry.
REPLAYABLE = {"raw": "scoring", "labels": "feedback"}


def current_checks(settings: Settings) -> dict[str, Check]:
    """The check a record of each replayable topic meets on entry with these settings, by full
    topic name: the entering processor's own handling (decode, limits, the label the model can
    learn), on a scratch state — whatever it raises would make the record a dead letter again.
    """
    from driftway.io.runtime import Incoming
    from driftway.io.state import Store
    from driftway.streams.feedback import Feedback
    from driftway.streams.scoring import featurize_raw

    feedback = Feedback(settings)

    def raw(_key: bytes | None, value: bytes | None) -> object:
        return featurize_raw(value, Store(0), time.time(), settings.limits)

    def label(key: bytes | None, value: bytes | None) -> object:
        return list(feedback.handle(Incoming("labels", 0, 0, key, value, time.time()), Store(0)))

    checks = {"raw": raw, "labels": label}
    return {settings.topic(key): checks[key] for key in REPLAYABLE}


def topic_name(settings: Settings, text: str) -> str:
    """A topic given by its key (raw) or its full name (driftway.raw): the full name."""
    return settings.topic(text) if text in TOPIC_KEYS else text


def when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def short_topic(settings: Settings, name: str) -> str:
    """A topic's key when it is one of these settings' (raw), else its full name: tables stay
    narrow."""
    key = name.removeprefix(settings.topic_prefix)
    return key if key != name and key in TOPIC_KEYS else name


def _time(param: str) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=param) from None
    return convert


def selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that select dead letters, shared by `list` and `replay`."""
    for option in reversed([
        click.option("--processor", "processors", multiple=True, metavar="NAME",
                     help="Only this processor's (repeatable)."),
        click.option("--topic", "topics", multiple=True, metavar="TOPIC",
                     help="Only those from this source topic: its key (raw) or full name "
                          "(repeatable)."),
        click.option("--error", default=None, metavar="TEXT",
                     help="Only those whose error contains TEXT (in any case)."),
        click.option("--since", default=None, callback=_time("--since"), metavar="TIME",
                     help="Only those written from TIME on: ISO (UTC unless it names its "
                          "zone) or a time ago (90s, 15m, 2h, 7d)."),
        click.option("--until", default=None, callback=_time("--until"), metavar="TIME",
                     help="Only those written before TIME."),
        click.option("--replayed/--not-replayed", default=None,
                     help="Only those replayed already, or only those not yet [default: both]."),
    ]):
        command = option(command)
    return command


format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
limit_option = click.option(
    "--limit", default=100, show_default=True,
    help="Rows shown in a table, the newest (0: all; JSON has all).")


def _selection(settings: Settings, processors: tuple[str, ...], topics: tuple[str, ...],
               error: str | None, since: Any, until: Any, replayed: bool | None) -> Selection:
    return Selection(processors=frozenset(processors),
                     topics=frozenset(topic_name(settings, t) for t in topics),
                     error=error, since=since, until=until, replayed=replayed)


def load(settings: Settings, required: tuple[str, ...] = ("dead-letters",)
         ) -> tuple[list[DeadLetter], dict[str, ReplayMark]]:
    """Every dead letter and replay mark, read from their topics (`required`: the topics that
    must exist, checked first)."""
    from driftway.io.dead_letters import read_dead_letters, read_marks

    if required:
        require_kafka(settings, required)
    try:  # a marks topic not created yet (`driftway topics`) holds no marks
        return read_dead_letters(settings), read_marks(settings)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


def describe(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter without its payload, JSON-ready."""
    return letter.model_dump(mode="json", exclude={"payload_b64", "schema_version"})


def summary(letter: DeadLetter, mark: ReplayMark | None) -> dict[str, Any]:
    """What `list` tells about one dead letter, JSON-ready."""
    return {**describe(letter),
            "replayed_at": mark.replayed_at.isoformat() if mark else None,
            "replayed_by": mark.by if mark else None}


def _table(*columns: str) -> Table:
    """A table whose last column (the error, or the reason) takes what the others leave."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in columns[:-1]:
        table.add_column(column, no_wrap=True,
                         justify="right" if column in ("partition", "offset") else "left")
    table.add_column(columns[-1], min_width=24, ratio=1)
    return table


def _shown(rows: list[Any], limit: int, what: str) -> list[Any]:
    if limit and len(rows) > limit:
        err_console.print(f"{len(rows)} {what}; the newest {limit} shown (--limit 0: all)")
        return rows[-limit:]
    return rows


@click.group("dead-letters")
def dead_letters() -> None:
    """What the processors refused: list it, show one, replay it once it passes."""


@dead_letters.command("list")
@selection_options
@format_option
@limit_option
@click.pass_context
def list_letters(ctx: click.Context, processors: tuple[str, ...], topics: tuple[str, ...],
                 error: str | None, since: Any, until: Any, replayed: bool | None, fmt: str,
                 limit: int) -> None:
    """Dead letters, oldest first: processor, source topic, partition, offset, time, error,
    and when they were replayed."""
    settings = settings_of(ctx)
    letters, marks = load(settings)
    picked = select(letters, marks, _selection(settings, processors, topics, error, since,
                                               until, replayed))
    if fmt == "json":
        click.echo(json.dumps([summary(d, marks.get(mark_key(d))) for d in picked], indent=2))
        return
    if not picked:
        console.print("no dead letters" + (" match" if letters else ""))
        return
    table = _table("processor", "source topic", "partition", "offset", "time", "replayed",
                   "error")
    for d in _shown(picked, limit, "dead letters match"):
        table.add_row(d.processor, short_topic(settings, d.source_topic),
                      str(d.source_partition), str(d.source_offset), when(d.ts),
                      "yes" if mark_key(d) in marks else "", d.error)
    console.print(table)
    done = sum(mark_key(d) in marks for d in picked)
    console.print(f"{len(picked)} dead letters, {done} replayed")


@dead_letters.command()
@click.argument("topic")
@click.argument("partition", type=int)
@click.argument("offset", type=int)
@format_option
@click.pass_context
def show(ctx: click.Context, topic: str, partition: int, offset: int, fmt: str) -> None:
    """The dead letter of the record at TOPIC (key or full name) PARTITION OFFSET, in full:
    its error, its original record (as text when it is), whether it was replayed, and whether
    it passes the current checks now."""
    settings = settings_of(ctx)
    letters, marks = load(settings)
    name = topic_name(settings, topic)
    found = [d for d in letters if (d.source_topic, d.source_partition, d.source_offset)
             == (name, partition, offset)]
    if not found:
        raise click.ClickException(f"no dead letter of {name}[{partition}]@{offset}")
    checks = current_checks(settings)
    shown = []
    for d in found:
        check = checks.get(d.source_topic)
        now = ("not replayable" if check is None
               else failure(check, d) or "passes")
        shown.append({**summary(d, marks.get(mark_key(d))), "payload_b64": d.payload_b64,
                      "payload_text": payload_text(d), "now": now})
    if fmt == "json":
        click.echo(json.dumps(shown if len(shown) > 1 else shown[0], indent=2))
        return
    for item in shown:
        table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for field in ("processor", "source_topic", "source_partition", "source_offset", "key",
                      "ts", "error", "replayed_at", "replayed_by", "now"):
            if item[field] is not None:
                label = {"ts": "time", "now": "checked now"}.get(field, field.replace("_", " "))
                table.add_row(label, str(item[field]))
        text = item["payload_text"]
        table.add_row("payload", _pretty(text) if text is not None
                      else f"(not text; base64) {item['payload_b64']}")
        console.print(table)


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def replay(settings: Settings, selection: Selection, dry_run: bool = False) -> list[Step]:
    """Send the selected dead letters that pass the current checks, once each (see the module
    docstring); `dry_run`: only say what would be sent. Returns every selected one's step."""
    from driftway.io.dead_letters import Replayer

    require_kafka(settings, ("dead-letters", "dead-letter-replays"))
    checks = current_checks(settings)
    # Opened before the marks are read: it fences an earlier replay, so they are complete.
    replayer = None if dry_run else Replayer(settings)
    try:
        letters, marks = load(settings, required=())  # (checked above)
        steps = plan(select(letters, marks, selection), marks, checks)
        if replayer is not None:
            replayer.send(s.letter for s in steps if s.outcome == "send")
    finally:
        if replayer is not None:
            replayer.close()
    return steps


@dead_letters.command("replay")
@selection_options
@click.option("--dry-run", is_flag=True,
              help="Send nothing: say what would be sent and what still fails.")
@format_option
@limit_option
@click.pass_context
def replay_command(ctx: click.Context, processors: tuple[str, ...], topics: tuple[str, ...],
                   error: str | None, since: Any, until: Any, replayed: bool | None,
                   dry_run: bool, fmt: str, limit: int) -> None:
    """Re-validate the selected dead letters with the current settings and send those that
    pass to their source topic, once each (a second replay sends none of them again); report
    what still fails, and exit with status 1 if any does."""
    settings = settings_of(ctx)
    from confluent_kafka import KafkaException

    try:
        steps = replay(settings, _selection(settings, processors, topics, error, since,
                                            until, replayed), dry_run)
    except (KafkaException, RuntimeError) as exc:
        raise click.ClickException(f"replay stopped: {exc}; what was not sent is not "
                                   "marked, and the next replay sends it") from None
    tally = counts(steps)
    if fmt == "json":
        click.echo(json.dumps({
            "dry_run": dry_run, "counts": tally,
            "steps": [{**describe(s.letter), "outcome": s.outcome, "reason": s.reason}
                      for s in steps]}, indent=2))
    else:
        _print_steps(settings, steps, dry_run, limit)
        sent = "would send" if dry_run else "sent"
        console.print(f"{sent} {tally['send']}; replayed before {tally['replayed']}; still "
                      f"failing {tally['fails']}; not replayable {tally['not replayable']}")
    if tally["fails"]:
        ctx.exit(1)


def _print_steps(settings: Settings, steps: list[Step], dry_run: bool, limit: int) -> None:
    """What still fails, and why; in a dry run, what would be sent too."""
    shown = [s for s in steps if s.outcome == "fails" or (dry_run and s.outcome == "send")]
    if not shown:
        return
    table = _table("outcome", "processor", "source topic", "partition", "offset",
                   "why it fails now")
    for s in _shown(shown, limit, "to send or still failing"):
        d = s.letter
        table.add_row("would send" if s.outcome == "send" else "fails", d.processor,
                      short_topic(settings, d.source_topic), str(d.source_partition),
                      str(d.source_offset), s.reason)
    console.print(table)
