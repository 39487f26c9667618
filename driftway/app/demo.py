"""The demo: a loan-application stream (River's Agrawal generator) with an abrupt concept change.

Labels arrive `label_delay` events after their event; a few malformed events go in on purpose,
as a careless upstream app would send them, to show dead letters at work.

Each run reports on its own events only. On the embedded default (the local broker and chDB) it
starts from a fresh state directory, ``<state_dir>/demo``, so its model starts at version zero;
with an existing Kafka it gets topics and groups of its own. Its event ids carry the run's id, and
every figure of the summary is filtered by it (or by the run's start time), so a ClickHouse server
shared with earlier runs changes nothing.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table
from river.datasets import synth

from driftway.app.query import query, running_endpoint
from driftway.io.kafka import make_producer
from driftway.logic.offline import learning_in_process, raw_stream
from driftway.schemas.events import label_text
from driftway.sdk import EventProducer
from driftway.settings import Settings

START = datetime(2026, 1, 1, tzinfo=UTC)
MALFORMED: tuple[bytes, ...] = (
    b"this is not json",
    b'{"event_id": "m", "ts": 1700000000000, "data": {}}',
    b'{"event_id": "m", "entity_id": "x", "ts": "yesterday", "data": {}}',
    b'{"event_id": "m", "entity_id": "x", "ts": 1700000000000, "data": {"nested": {"a": 1}}}',
)


@dataclass(frozen=True)
class DemoPlan:
    events: int = 20_000
    change_at: int = 10_000
    label_delay: int = 200
    rate: int = 1_000
    malformed_every: int = 1_000
    seed: int = 42
    run: str = ""  # the run's id, which its event ids start with (else loan-<seed>-)

    @property
    def ids(self) -> str:
        """What every event id of this run starts with."""
        return f"{self.run}-" if self.run else f"loan-{self.seed}-"


class DemoBusy(RuntimeError):
    """A demo (or `up`) is running in the demo's state directory."""


def run_id(now: datetime | None = None) -> str:
    """A run's id: its start time, to the second.

    >>> run_id(datetime(2026, 12, 1, 9, 30, 5, tzinfo=UTC))
    'run20261201T093005'
    """
    return (now or datetime.now(UTC)).strftime("run%Y%m%dT%H%M%S")


def run_settings(settings: Settings, run: str) -> tuple[Settings, str]:
    """The settings of one demo run, and the line that says where its state is.

    The local broker and the embedded engine get a fresh ``<state_dir>/demo`` (the previous
    demo's is removed); an existing Kafka gets topics and consumer groups named after the run.
    """
    demo_dir = settings.state_dir / "demo"
    settings = settings.model_copy(update={"state_dir": demo_dir})
    if running_endpoint(settings) is not None:
        raise DemoBusy(f"a demo is running in {demo_dir}; stop it first (Ctrl-C)")
    said = []
    if settings.kafka.local_broker and settings.embedded_clickhouse:
        replaced = demo_dir.exists()
        shutil.rmtree(demo_dir, ignore_errors=True)
        said.append(f"fresh state in {demo_dir}" + (" (the previous demo's was removed)"
                                                    if replaced else ""))
    else:
        settings = settings.model_copy(update={
            "topic_prefix": f"{settings.topic_prefix}demo-{run}.",
            "app_id": f"{settings.app_id}-demo-{run}"})
        said.append(f"topics {settings.topic_prefix}*, state in {demo_dir}")
    return settings, f"demo {run}: " + "; ".join(said) + f"; event ids {run}-…"


def event_ts(index: int) -> datetime:
    """Event time of the index-th demo event: one millisecond apart from a fixed start."""
    return START + timedelta(milliseconds=index)


def loan_applications(plan: DemoPlan) -> Iterator[tuple[dict[str, Any], bool]]:
    """(raw event, label) pairs; the concept switches at change_at.

    Before: Agrawal's function 8 (disposable income from salary, commission and education);
    after: function 7 (disposable income from salary, commission and loan) — both learnable by a
    linear model, so the demo shows the drop at the change and the recovery by online learning.

    >>> first = next(loan_applications(DemoPlan(events=3, change_at=2)))
    >>> sorted(first[0]["data"])[:3], type(first[1]).__name__
    (['age', 'car', 'commission'], 'bool')
    """
    before = iter(synth.Agrawal(classification_function=7, seed=plan.seed))
    after = iter(synth.Agrawal(classification_function=6, seed=plan.seed + 1))
    rng = random.Random(plan.seed)
    for i in range(plan.events):
        x, y = next(before if i < plan.change_at else after)
        data = {k: float(v) for k, v in x.items()}
        data["elevel"] = f"level{int(x['elevel'])}"  # strings become categorical features
        data["zipcode"] = f"zip{int(x['zipcode'])}"
        event = {"event_id": f"{plan.ids}{i:08d}",
                 "entity_id": f"applicant-{rng.randrange(2_000)}",
                 "ts": int(event_ts(i).timestamp() * 1000), "data": data}
        yield event, bool(y)


def counts(settings: Settings, plan: DemoPlan, since: datetime) -> dict[str, int]:
    """Rows of this run stored so far in the main monitoring tables."""
    ids, at = plan.ids, _literal(since)
    sql = (f"SELECT (SELECT count() FROM predictions WHERE startsWith(event_id, '{ids}')), "
           f"(SELECT count() FROM labels WHERE startsWith(event_id, '{ids}')), "
           f"(SELECT count() FROM dead_letters WHERE ts >= {at}), "
           f"(SELECT count() FROM model_versions WHERE created_at >= {at}), "
           f"(SELECT count() FROM training WHERE startsWith(event_id, '{ids}'))")
    p, lab, d, v, t = query(settings, sql).rows[0]
    return {"predictions": int(p), "labels": int(lab), "dead_letters": int(d), "versions": int(v),
            "training": int(t)}


def run(settings: Settings, plan: DemoPlan, console: Console,
        check: Callable[[], None] = lambda: None, timeout: float = 300.0,
        live_status: bool = True, restarts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Feed the stream, show progress and the live status (with the supervisor's `restarts`),
    wait until everything is stored; return the summary."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from driftway.app.status import LiveStatus

    since = datetime.now(UTC)
    sdk = EventProducer(settings)
    any_client: Producer = make_producer(settings)  # malformed bytes, as any client could send
    pending_labels: deque[tuple[str, bool]] = deque()
    sent = malformed = labels = 0

    def send_oldest_label() -> None:
        nonlocal labels
        event_id, label = pending_labels.popleft()
        sdk.send_label({"event_id": event_id, "label": label})
        labels += 1

    started = time.monotonic()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
        "{task.completed:>7.0f}/{task.total:.0f}"), TimeElapsedColumn(), console=console,
        transient=False, disable=not console.is_terminal)
    # On a terminal the status table refreshes under the progress bars (one live display);
    # otherwise both print plain lines.
    display: Any = (LiveStatus(settings, console, extra=progress, restarts=restarts)
                    if live_status else progress)
    with display:
        t_sent = progress.add_task("events sent", total=plan.events)
        t_pred = progress.add_task("predictions stored", total=plan.events)
        last_poll = last_line = 0.0
        for i, (event, label) in enumerate(loan_applications(plan)):
            if plan.malformed_every and i % plan.malformed_every == plan.malformed_every - 1:
                any_client.produce(settings.topic("raw"), key=b"bad",
                                   value=MALFORMED[malformed % len(MALFORMED)])
                malformed += 1
            sdk.send_event(event)
            sent += 1
            pending_labels.append((event["event_id"], label))
            while len(pending_labels) > plan.label_delay:
                send_oldest_label()
            if plan.rate:
                ahead = sent / plan.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            now = time.monotonic()
            if now - last_poll > 0.5:
                last_poll = now
                check()
                stored = counts(settings, plan, since)["predictions"]
                progress.update(t_sent, completed=sent)
                progress.update(t_pred, completed=stored)
                if not console.is_terminal and now - last_line > 2:
                    last_line = now
                    console.print(f"sent {sent}/{plan.events} events; stored {stored} predictions")
        while pending_labels:
            send_oldest_label()
        sdk.flush()
        any_client.flush(30)
        progress.update(t_sent, completed=sent)
        send_seconds = time.monotonic() - started
        deadline = time.monotonic() + timeout
        while True:
            check()
            c = counts(settings, plan, since)
            progress.update(t_pred, completed=c["predictions"])
            if (c["predictions"] >= sent and c["labels"] >= labels and c["training"] >= labels
                    and c["dead_letters"] >= malformed) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    total_seconds = time.monotonic() - started
    if not console.is_terminal:
        console.print(f"sent {sent} events in {send_seconds:.1f}s; stored {c['predictions']} "
                      f"predictions after {total_seconds:.1f}s")
    return summarize(settings, plan, since, sent, labels, malformed, total_seconds, c)


def _literal(ts: datetime) -> str:
    """A UTC time as a ClickHouse DateTime64 literal."""
    return f"toDateTime64('{ts.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}', 3, 'UTC')"


def summarize(settings: Settings, plan: DemoPlan, since: datetime, sent: int, labels: int,
              malformed: int, seconds: float, stored: dict[str, int]) -> dict[str, Any]:
    """What happened in this run (its event ids, and what was written since it began), from
    ClickHouse."""
    ids, at = plan.ids, _literal(since)
    change = event_ts(plan.change_at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    soon = event_ts(plan.change_at + 2_000).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    phases = query(settings, f"""
        SELECT multiIf(p.ts < toDateTime64('{change}', 3, 'UTC'), '1 before the change',
                       p.ts < toDateTime64('{soon}', 3, 'UTC'), '2 first 2,000 after',
                       '3 rest after') AS phase,
               count() AS labelled, round(avg(p.prediction = l.label), 4) AS accuracy
        FROM predictions AS p INNER JOIN labels AS l USING event_id
        WHERE startsWith(p.event_id, '{ids}')
        GROUP BY phase ORDER BY phase""").rows
    dead = query(settings, f"SELECT processor, error, count() AS n FROM dead_letters "
                           f"WHERE ts >= {at} GROUP BY processor, error ORDER BY n DESC").rows
    versions = query(settings, f"SELECT count(), max(examples_seen) FROM model_versions "
                               f"WHERE created_at >= {at}").rows[0]
    drift = query(settings, f"SELECT kind, count() FROM drift_events WHERE ts >= {at} "
                            "GROUP BY kind ORDER BY kind").rows
    actions = query(settings, f"SELECT ts, action, substring(version, 1, 12), reason "
                              f"FROM deployments WHERE by IN ('policy', 'cli') AND ts >= {at} "
                              "ORDER BY ts").rows
    latency = query(settings, f"SELECT round(quantile(0.5)(latency_ms), 2), "
                              f"round(quantile(0.99)(latency_ms), 2) FROM predictions "
                              f"WHERE startsWith(event_id, '{ids}')").rows[0]
    return {"run": plan.run, "since": since,
            "events": sent, "labels": labels, "malformed": malformed, "seconds": seconds,
            "stored": stored, "accuracy": [(p[2:], int(n), a) for p, n, a in phases],
            "reference": reference_accuracy(settings, plan),
            "dead_letters": dead, "versions": int(versions[0]),
            "examples_learned": int(versions[1] or 0), "latency_ms": latency,
            "drift": [(k, int(n)) for k, n in drift], "actions": actions}


def phase_of(index: int, plan: DemoPlan) -> str:
    """The summary's phase of the index-th event (as the summary's SQL names it)."""
    if index < plan.change_at:
        return "before the change"
    return "first 2,000 after" if index < plan.change_at + 2_000 else "rest after"


def reference_accuracy(settings: Settings, plan: DemoPlan) -> dict[str, float]:
    """Accuracy per phase of the same model learning in this process on the same events, with
    the same label delay (``driftway.logic.offline.learning_in_process``): what serving that
    follows learning without any latency would have scored (bench/fidelity.py measures the
    same)."""
    stream = list(raw_stream(loan_applications(plan)))
    right: dict[str, list[bool]] = {}
    predictions = learning_in_process(stream, settings, plan.label_delay)
    for i, (prediction, (_x, y)) in enumerate(zip(predictions, stream, strict=True)):
        right.setdefault(phase_of(i, plan), []).append(label_text(prediction) == label_text(y))
    return {phase: round(sum(r) / len(r), 4) for phase, r in right.items()}


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The demo's closing summary, as tables."""
    s = summary
    console.print(f"\n[bold]Driftway demo[/bold]: {s['events']} events, {s['labels']} labels, "
                  f"{s['malformed']} malformed, in {s['seconds']:.1f}s; stored "
                  f"{s['stored']['predictions']} predictions, {s['stored']['dead_letters']} "
                  f"dead letters; serving latency p50 {s['latency_ms'][0]} ms, "
                  f"p99 {s['latency_ms'][1]} ms")
    acc = Table("phase", "labelled predictions", "accuracy served",
                "learning in process (reference)", title="accuracy around the change")
    reference = s.get("reference", {})
    for phase, n, a in s["accuracy"]:
        ref = reference.get(phase)
        acc.add_row(phase, str(n), f"{a:.3f}", "—" if ref is None else f"{ref:.3f}")
    console.print(acc)
    dead = Table("processor", "error", "count", title="dead letters")
    for processor, error, n in s["dead_letters"]:
        dead.add_row(processor, error[:90], str(n))
    console.print(dead)
    console.print(f"model versions published: {s['versions']} "
                  f"(latest learned from {s['examples_learned']} labelled examples)")
    drift = ", ".join(f"{n} {kind}" for kind, n in s.get("drift", [])) or "none"
    console.print(f"drift events: {drift}")
    acts = Table("time (UTC)", "action", "version", "reason", title="what the policy did")
    for ts, action, version, reason in s.get("actions", []):
        acts.add_row(str(ts)[11:19], action, version, reason[:110])
    if s.get("actions"):
        console.print(acts)
    console.print(f"explore: driftway --state-dir {s.get('state_dir', '.driftway/demo')} query "
                  f"\"SELECT * FROM predictions WHERE startsWith(event_id, '{s['run']}-') "
                  "LIMIT 5\"")
    console.print(f"try other models on this history: driftway --state-dir "
                  f"{s.get('state_dir', '.driftway/demo')} experiment --model hoeffding_tree "
                  "--model logistic_regression (with `driftway up` running, to store the "
                  "results and --shadow-best)")
