"""Driftway hot-swap benchmark: a deployment written → the first prediction by the new version.

    .venv/bin/python bench/swap.py [--rate R] [--swaps K] [--model SPEC]

On a fresh local stack (broker, features, scoring, feedback, learner, sink as separate processes)
a sender thread streams demo loan applications at a fixed rate through the SDK, while this
process deploys, K times about 1.5 s apart, one of a few pre-published signed versions (trained
offline on demo events of the same schema), alternating. A swap's latency is the time from the
moment the Deployment record's producer flush returned to the ``predicted_at`` of the first
prediction made by the newly deployed version. A reader thread takes every record of the
predictions topic, which also shows whether each sent event got exactly one prediction across
the swaps, and whether each partition switched versions in deployment order.

Where a swap's time goes: a replica of scoring's DeploymentWatcher runs in this process and
times the wait until its poll returns with the record, and the verifying and unpickling of the
artifact; the wait for scoring's next batch, which picks up the new version, comes from the batch
start times the predictions carry (``predicted_at`` minus ``latency_ms``).

Prints a table and writes bench/results/swap-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pipeline import cpu_seconds, cpu_used, f, versions  # bench/pipeline.py, beside this file
from record import save_record, start_record  # bench/record.py, beside this file
from rich.console import Console
from rich.table import Table

from driftway.app.demo import DemoPlan, loan_applications
from driftway.app.supervisor import Stack
from driftway.io.broker import free_port
from driftway.io.kafka import client_config, make_producer, produce
from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.logic import artifacts
from driftway.logic.features import featurize
from driftway.logic.models import coerce_label, make_model
from driftway.logic.registry import next_deployment, publish_version, write_deployment
from driftway.schemas.events import Deployment, ModelVersion, Prediction, RawEvent
from driftway.sdk import EventProducer
from driftway.settings import KafkaSettings, ProcessingSettings, Settings
from driftway.streams.scoring import DeploymentWatcher

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

STREAM_SEED = 51  # the streamed events are loan-51-<i>
TRAIN_SEED = 60  # version j is trained on demo seed TRAIN_SEED + j
NEVER = 10**12  # a demo plan this long never ends, and its concept never changes

console = Console()


def percentiles(values: list[float]) -> dict[str, float]:
    """min/p50/p95/max/mean (p95 by linear interpolation between closest ranks)."""
    if not values:
        return {}
    p95 = statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 \
        else values[0]
    return {"min": min(values), "p50": statistics.median(values), "p95": p95,
            "max": max(values), "mean": statistics.fmean(values)}


# --------------------------------------------------------------------------------------------
# the versions to swap between


def trained_versions(settings: Settings, spec: str, count: int,
                     events: int) -> list[tuple[ModelVersion, bytes]]:
    """`count` signed versions of `spec`, each trained on its own demo events, featurised as the
    features processor does (per-entity features included), so they differ from one another and
    from the learner's untrained first version."""
    out = []
    for j in range(count):
        model = make_model(spec)
        entities: dict[str, Any] = {}
        plan = DemoPlan(events=events, change_at=events, seed=TRAIN_SEED + j)
        for event, label in loan_applications(plan):
            raw = RawEvent.model_validate(event)
            vector, entities[raw.entity_id] = featurize(raw, entities.get(raw.entity_id), 0.0)
            model.learn_one(vector.features, coerce_label(model, label))
        out.append(artifacts.build_version(
            settings.processing.model_name, model, with_signing_key(settings).signing_key_bytes,
            parent=None,
            reason=f"bench/swap.py: {spec} trained on {events} demo events (seed {plan.seed})",
            examples_seen=events))
    if len({meta.version for meta, _ in out}) < count:
        raise RuntimeError(f"{spec} trained on different events gave identical artifacts")
    return out


def load_ms(meta: ModelVersion, artifact: bytes, key: bytes, repeat: int = 5) -> float:
    """Median time of artifacts.load (size, hash and signature checks, then unpickling)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        artifacts.load(meta, artifact, key)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


class Emitting:
    """A producer as the registry functions want it; `flush` raises unless all was delivered."""

    def __init__(self, settings: Settings) -> None:
        self._producer = make_producer(settings)
        self._errors: list[str] = []

    def __call__(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        produce(self._producer, topic, key, value,
                lambda err, _msg: err is not None and self._errors.append(str(err)))

    def flush(self) -> None:
        if self._producer.flush(30) or self._errors:
            raise RuntimeError(f"registry records not delivered: {self._errors[:3]}")


# --------------------------------------------------------------------------------------------
# the threads: the event stream, the predictions reader, the replica watcher


class Sender(threading.Thread):
    """Sends demo events at `rate` per second through the SDK until told to stop."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__(name="bench-sender", daemon=True)
        self.producer = EventProducer(settings)
        self.rate = rate
        self.sent: list[str] = []
        self.seconds = 0.0
        self.stopping = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            # Generated as sent (tens of µs an event); the pacing is against the clock, so the
            # generation time is absorbed by the sleeps.
            events = loan_applications(DemoPlan(events=NEVER, change_at=NEVER, seed=STREAM_SEED))
            for i, (event, _) in enumerate(events):
                if self.stopping.is_set():
                    break
                ahead = t0 + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                self.producer.send_event(event)
                self.sent.append(event["event_id"])
            self.seconds = time.monotonic() - t0
            self.producer.flush()
        except BaseException as exc:  # noqa: BLE001 (the main thread reports it)
            self.failed = exc


class Seen(NamedTuple):
    """One record of the predictions topic."""

    partition: int
    offset: int
    event_id: str
    version: str
    received_at: float  # when scoring took the event
    predicted_at: float
    latency_ms: float  # since scoring's batch started

    @property
    def batch_started_at(self) -> float:
        """When scoring started the batch that made this prediction."""
        return self.predicted_at - self.latency_ms / 1000


class PredictionReader(threading.Thread):
    """Reads every record of the predictions topic from the beginning (assigned, no group), and
    when each raw event was written to the raw topic (its record's timestamp), which shows how
    long scoring's intake kept it waiting."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="bench-predictions", daemon=True)
        self.consumer = Consumer({**client_config(settings),
                                  "group.id": f"bench-swap-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False})
        self.predictions, self.raw = settings.topic("predictions"), settings.topic("raw")
        meta = self.consumer.list_topics(timeout=10).topics
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                              for topic in (self.predictions, self.raw)
                              for p in meta[topic].partitions])
        self.records: list[Seen] = []
        self.features_at: dict[str, float] = {}  # event id → when its raw event was written
        self.ids: set[str] = set()
        self.newest: dict[str, float] = {}  # version → latest predicted_at read so far
        self.stopping = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(500, timeout=0.05):
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            raise RuntimeError(f"predictions consumer: {msg.error()}")
                        continue
                    if msg.topic() == self.raw:
                        event = RawEvent.model_validate_json(msg.value() or b"")
                        self.features_at[event.event_id] = msg.timestamp()[1] / 1000
                        continue
                    p = Prediction.from_bytes(msg.value() or b"")
                    self.records.append(Seen(msg.partition(), msg.offset(), p.event_id,
                                             p.version, p.received_at, p.predicted_at,
                                             p.latency_ms))
                    self.ids.add(p.event_id)
                    if p.predicted_at > self.newest.get(p.version, 0.0):
                        self.newest[p.version] = p.predicted_at
        except BaseException as exc:  # noqa: BLE001 (the main thread reports it)
            self.failed = exc
        finally:
            self.consumer.close()


class TimedWatcher(DeploymentWatcher):
    """Scoring's deployment watcher, run in this process, timing each change of what it serves:
    when the poll that brought the deployment returned, and when its models were loaded.

    Timings are keyed by the deployment's reason, which the benchmark makes unique per swap.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.processing.model_name, processor="bench-watcher")
        self.timings: dict[str, tuple[float, float]] = {}

    def _consider(self, registry: ModelRegistry) -> None:
        before = self.current
        seen = time.time()
        super()._consider(registry)
        if self.current is not None and (
                before is None or self.current.deployment != before.deployment):
            self.timings[self.current.deployment.reason] = (seen, time.time())


# --------------------------------------------------------------------------------------------
# the swaps


@dataclass
class Swap:
    """One deployment the benchmark wrote: which version replaced which, and when."""

    index: int
    version: str
    previous: str
    reason: str
    written_at: float  # time.time() just after the deployment's producer flush returned


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent running anything (all cores, since boot)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def wait_until(check: Any, done: Any, timeout: float, what: str) -> None:
    """Call check() (raises on a failed part) and poll done() every 10 ms until it holds."""
    deadline = time.monotonic() + timeout
    while not done():
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(0.01)


def run_swaps(settings: Settings, versions_: list[str], first: Deployment, swaps: int,
              gap: float, check: Any, reader: PredictionReader, timeout: float) -> list[Swap]:
    """Deploy versions_ in turn, `gap` seconds apart, each only once the previous one has made
    a prediction (so every swap starts from the version before it, whatever its latency)."""
    emit = Emitting(settings)
    current = first
    out: list[Swap] = []
    last = 0.0
    for i in range(swaps):
        version = versions_[i % len(versions_)]
        time.sleep(max(0.0, last + gap - time.monotonic()))
        reason = f"bench/swap.py swap {i + 1}"
        deployment = next_deployment(current, current.model, "deploy", version, reason=reason,
                                     by="bench")
        write_deployment(emit, settings, deployment)
        emit.flush()
        written_at = time.time()
        last = time.monotonic()
        out.append(Swap(i + 1, version, current.champion, reason, written_at))
        current = deployment
        wait_until(check, lambda v=version, t=written_at: reader.newest.get(v, 0.0) > t,
                   timeout, f"the first prediction of swap {i + 1} ({version[:12]})")
    return out


# --------------------------------------------------------------------------------------------
# analysis


def analyse_swaps(swaps: list[Swap], records: list[Seen], features_at: dict[str, float],
                  timings: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """Per swap: latency, what the old version still served, and the replica's timings.

    Times in ms from the deployment's write; the first new prediction is the earliest one by
    the deployed version made between this write and the next.
    """
    by_version: dict[str, list[Seen]] = defaultdict(list)
    for r in records:
        by_version[r.version].append(r)
    out = []
    for i, s in enumerate(swaps):
        until = swaps[i + 1].written_at if i + 1 < len(swaps) else float("inf")
        first = min((r for r in by_version[s.version] if s.written_at < r.predicted_at < until),
                    key=lambda r: r.predicted_at)
        old = [r.predicted_at for r in by_version[s.previous]
               if s.written_at < r.predicted_at < until]
        row: dict[str, Any] = {
            **asdict(s),
            "latency_ms": (first.predicted_at - s.written_at) * 1000,
            "first_new_batch_started_ms": (first.batch_started_at - s.written_at) * 1000,
            # negative: the event had reached scoring before the write
            "first_new_event_received_ms": (first.received_at - s.written_at) * 1000,
            # how long its raw event had waited in the raw topic for scoring
            "first_new_event_waited_ms": (first.batch_started_at - features_at[first.event_id])
            * 1000 if first.event_id in features_at else None,
            "old_version_predictions_after_write": len(old),
            "old_version_predictions_after_first_new": sum(t > first.predicted_at for t in old),
        }
        if s.reason in timings:
            seen, ready = timings[s.reason]
            row["replica_watcher"] = {
                "write_to_poll_returned_ms": (seen - s.written_at) * 1000,
                "load_ms": (ready - seen) * 1000,
                "ready_to_batch_start_ms": (first.batch_started_at - ready) * 1000}
        out.append(row)
    return out


def scoring_batches(records: list[Seen], features_at: dict[str, float], start: float,
                    end: float) -> dict[str, Any]:
    """Scoring's batches that started between two times: how far apart they started; the mean
    wait from a random instant until the next one starts (Σgap² / 2Σgap), which is the part of a
    swap's latency that is the batch boundary; and how long their events' feature vectors had
    waited in the raw topic (long waits with scoring idle are intake stalls)."""
    during = [r for r in records if start <= r.batch_started_at <= end]
    starts: list[float] = []
    for t in sorted(r.batch_started_at for r in during):
        if not starts or t - starts[-1] > 1e-4:  # one batch's events share its start time
            starts.append(t)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    waited = [(r.batch_started_at - features_at[r.event_id]) * 1000 for r in during
              if r.event_id in features_at]
    return {"batches": len(starts), "gap_ms": percentiles([g * 1000 for g in gaps]),
            "mean_wait_for_next_ms": sum(g * g for g in gaps) / (2 * sum(gaps)) * 1000
            if gaps else None,
            "features_to_batch_start_ms": percentiles(waited),
            "events_waiting_over_500_ms": sum(w > 500 for w in waited) / len(waited)
            if waited else None}


def exactly_once(sent: list[str], records: list[Seen], order: list[str]) -> dict[str, Any]:
    """Whether every sent event has exactly one prediction on the topic, and whether each
    partition's predictions switch versions in deployment order, never back."""
    sent_ids = set(sent)
    ours = [r for r in records if r.event_id in sent_ids]
    unique = {r.event_id for r in ours}
    runs: dict[int, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if not runs[r.partition] or runs[r.partition][-1] != r.version:
            runs[r.partition].append(r.version)
    return {
        "sent": len(sent), "predictions": len(ours), "unique_events": len(unique),
        "missing": len(sent_ids - unique), "duplicates": len(ours) - len(unique),
        "other_records": len(records) - len(ours),
        "partitions_in_deployment_order": all(v == order for v in runs.values()),
        "version_runs_per_partition": {p: len(v) for p, v in sorted(runs.items())},
        "ok": len(ours) == len(unique) == len(sent_ids) == len(sent),
    }


# --------------------------------------------------------------------------------------------
# report


def ms3(q: dict[str, float]) -> str:
    """p50, p95 and max of a percentiles() dict, one a line."""
    return (f"p50 {f(q.get('p50'), 1)} ms\np95 {f(q.get('p95'), 1)} ms\n"
            f"max {f(q.get('max'), 1)} ms")


def print_report(r: dict[str, Any]) -> None:
    p, lat, eo = r["params"], r["latency_ms"], r["exactly_once"]
    t = Table("measure", "result", "detail", title="Driftway hot-swap benchmark",
              title_justify="left")
    t.add_row("hot-swap latency: deployment written → first prediction by the new version",
              ms3(lat),
              f"{len(r['swaps'])} swaps among {p['versions']} versions of {p['model']}, "
              f"{p['gap']:g}s apart, at {f(p['rate'])} ev/s; min {f(lat.get('min'), 1)}, "
              f"mean {f(lat.get('mean'), 1)} ms")
    bd, sb = r.get("breakdown_ms"), r["scoring_batches"]
    if bd:
        poll, load = bd["write_to_poll_returned"], bd["load"]
        total = poll["mean"] + load["mean"] + (sb["mean_wait_for_next_ms"] or 0.0)
        t.add_row("where it goes (means)",
                  f"poll {f(poll.get('mean'), 1)} ms\nload {f(load.get('mean'), 1)} ms\n"
                  f"batch {f(sb.get('mean_wait_for_next_ms'), 1)} ms",
                  f"sum {f(total, 1)} ms against the measured mean {f(lat.get('mean'), 1)} ms. "
                  f"Poll: write → the watcher's poll(0.1) returns with the record, timed by a "
                  f"replica of scoring's watcher in this process (same loop, its own phase), "
                  f"p50/p95 {f(poll.get('p50'), 1)}/{f(poll.get('p95'), 1)} ms. Load: verify + "
                  f"unpickle, p95 {f(load.get('p95'), 1)} ms. Batch: scoring takes the serving "
                  f"set at each batch start; mean wait from a random instant to the next start, "
                  f"{sb['batches']:,} batches during the swaps, p50/p95/max "
                  f"{f(sb['gap_ms'].get('p50'), 1)}/{f(sb['gap_ms'].get('p95'), 1)}/"
                  f"{f(sb['gap_ms'].get('max'), 1)} ms apart")
    fb = sb["features_to_batch_start_ms"]
    t.add_row("scoring's intake", ms3(fb),
              "raw event written to the raw topic → scoring's batch with it "
              f"starts; {f((sb['events_waiting_over_500_ms'] or 0) * 100, 1)} % of events "
              "waited over 500 ms. Long waits while scoring is idle stall the swaps too: "
              "no batch starts, so the new version makes no prediction")
    a = r["artifacts"]
    low, high = f(min(a["bytes"]) / 1024, 1), f(max(a["bytes"]) / 1024, 1)
    t.add_row("model artifact", f"{low} KiB" if low == high else f"{low}–{high} KiB",
              f"{p['model']} trained on {p['train_events']} events; sizes "
              f"{', '.join(f(b) for b in a['bytes'])} bytes in {max(a['chunks'])} chunk(s); "
              f"verify + unpickle here {f(statistics.median(a['load_ms']), 2)} ms")
    ok = "[green]yes[/green]" if eo["ok"] else "[red]NO[/red]"
    t.add_row("every sent event predicted exactly once", ok,
              f"{eo['sent']:,} sent; {eo['predictions']:,} predictions on the topic for "
              f"{eo['unique_events']:,} events; {eo['missing']} missing, {eo['duplicates']} "
              f"duplicated; each partition switched in deployment order: "
              f"{'yes' if eo['partitions_in_deployment_order'] else '[red]NO[/red]'}")
    old = r["old_version"]
    t.add_row("old version's predictions after a write", f"p50 {f(old['after_write'].get('p50'))}"
              f"\nmax {f(old['after_write'].get('max'))}",
              f"events still served by the replaced version, per swap; after the new version's "
              f"first prediction: {old['after_first_new_total']} in all")
    s = r["stream"]
    t.add_row("input stream", f"{f(s['achieved_rate'])} ev/s",
              f"target {f(p['rate'])} ev/s for {s['seconds']:.1f}s; scoring's latency_ms "
              f"(batch start → prediction) p50 {f(s['serving_latency_ms'].get('p50'), 1)}, "
              f"p95 {f(s['serving_latency_ms'].get('p95'), 1)} ms")
    cpu = r.get("cpu")
    if cpu:
        t.add_row("cores busy during the swaps",
                  f"{cpu['total_cores_busy']:.2f} of {r['machine']['cpus']}",
                  "; ".join(f"{name} {v:.2f}" for name, v in cpu["cores_busy"].items())
                  + f"; the whole machine {cpu['machine_cores_busy']:.2f}, of which other "
                  f"processes {cpu['other_cores_busy']:.2f}")
    console.print(t)
    m = r["machine"]
    console.print(f"stack start {f(r.get('stack_start_seconds'), 1)}s, stop "
                  f"{f(r.get('stack_stop_seconds'), 1)}s; whole run {f(r.get('run_seconds'))}s; "
                  f"{m['cpus']} CPUs, load average {m['loadavg_start'][0]:.2f} at start, "
                  f"{f(m.get('loadavg_end', [None])[0], 2)} at end")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rate", type=float, default=500, help="events/s streamed during the swaps")
    p.add_argument("--swaps", type=int, default=20, help="deployments to write")
    p.add_argument("--gap", type=float, default=1.5, help="seconds between two deployments")
    p.add_argument("--model", default="logistic_regression",
                   help="model spec of the swapped versions (driftway.logic.models.make_model)")
    p.add_argument("--versions", type=int, default=2, help="versions to alternate between")
    p.add_argument("--train-events", type=int, default=500,
                   help="demo events each swapped version is trained on")
    p.add_argument("--lead", type=float, default=3.0,
                   help="seconds of streaming before the first swap")
    p.add_argument("--timeout", type=float, default=60,
                   help="max seconds to wait for one swap, or for the stream to drain")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the stack's temporary state directory (logs, Kafka, ClickHouse)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.swaps < 1 or args.gap <= 0 or args.train_events < 1:
        p.error("--rate, --swaps, --gap and --train-events must be positive")
    if args.versions < 2:
        p.error("--versions must be at least 2: a swap needs a version other than the last")
    return args


def measure(stack: Stack, settings: Settings, args: argparse.Namespace,
            built: list[tuple[ModelVersion, bytes]], r: dict[str, Any]) -> None:
    """On the serving stack: publish the versions, stream, swap, and put the figures in r.

    The threads and their Kafka clients end here, before the caller stops the broker.
    """
    emit = Emitting(settings)
    for meta, artifact in built:
        publish_version(emit, settings, meta, artifact)
    emit.flush()
    reader = PredictionReader(settings)
    watcher = TimedWatcher(settings)
    sender = Sender(settings, args.rate)
    threads: list[Sender | PredictionReader | TimedWatcher] = [reader, watcher, sender]

    def check() -> None:
        stack.check()
        for thread in threads:
            if thread.failed is not None:
                raise RuntimeError(f"{thread.name} failed: {thread.failed!r}")

    try:
        reader.start()
        watcher.start()  # it reads the registry to its end (versions included) before serving
        wait_until(check, lambda: watcher.current is not None, args.timeout,
                   "the replica watcher")
        assert watcher.current is not None
        first = watcher.current.deployment

        console.print(f"streaming at {args.rate:,.0f} ev/s; {args.swaps} swaps "
                      f"{args.gap:g}s apart after {args.lead:g}s…")
        sender.start()
        time.sleep(args.lead)
        wait_until(check, lambda: first.champion in reader.newest, args.timeout,
                   "the first predictions")
        cpu_before, machine_before = cpu_seconds(stack), machine_busy_seconds()
        t_swaps = time.monotonic()
        swaps = run_swaps(settings, [meta.version for meta, _ in built], first, args.swaps,
                          args.gap, check, reader, args.timeout)
        time.sleep(1.0)  # a little more stream after the last swap
        wall = time.monotonic() - t_swaps
        r["cpu"] = cpu_used(cpu_before, cpu_seconds(stack), wall)
        r["cpu"]["machine_cores_busy"] = (machine_busy_seconds() - machine_before) / wall
        r["cpu"]["other_cores_busy"] = max(
            0.0, r["cpu"]["machine_cores_busy"] - r["cpu"]["total_cores_busy"])
        sender.stopping.set()
        sender.join(30)
        check()
        sent = sender.sent
        console.print(f"sent {len(sent):,} events; waiting for their predictions…")
        try:
            wait_until(check, lambda: len(reader.ids) >= len(sent), args.timeout,
                       "every sent event's prediction")
        except TimeoutError as exc:  # the exactly-once figures show what is missing
            console.print(f"[red]{exc}[/red]")
        time.sleep(1.5)  # and for any duplicate behind them
    finally:
        for thread in threads:
            thread.stopping.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(10)

    records = reader.records
    rows = analyse_swaps(swaps, records, reader.features_at, watcher.timings)
    r["swaps"] = rows
    r["latency_ms"] = percentiles([row["latency_ms"] for row in rows])
    replica = [row["replica_watcher"] for row in rows if "replica_watcher" in row]
    if replica:
        r["breakdown_ms"] = {name: percentiles([x[f"{name}_ms"] for x in replica])
                             for name in ("write_to_poll_returned", "load",
                                          "ready_to_batch_start")}
    r["first_new_event_received_ms"] = percentiles(
        [row["first_new_event_received_ms"] for row in rows])
    r["scoring_batches"] = scoring_batches(records, reader.features_at, swaps[0].written_at,
                                           swaps[-1].written_at + args.gap)
    r["exactly_once"] = exactly_once(sent, records,
                                     [first.champion, *(s.version for s in swaps)])
    r["old_version"] = {
        "after_write": percentiles(
            [float(row["old_version_predictions_after_write"]) for row in rows]),
        "after_first_new_total": sum(row["old_version_predictions_after_first_new"]
                                     for row in rows)}
    r["stream"] = {"sent": len(sent), "seconds": sender.seconds,
                   "achieved_rate": len(sent) / sender.seconds if sender.seconds else None,
                   "serving_latency_ms": percentiles([x.latency_ms for x in records])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    record = start_record("swap.py")
    r: dict[str, Any] = {
        **record,
        "params": {"rate": args.rate, "swaps": args.swaps, "gap": args.gap, "model": args.model,
                   "versions": args.versions, "train_events": args.train_events,
                   "lead": args.lead},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(),
    }

    state_dir = Path(tempfile.mkdtemp(prefix="driftway-bench-swap-"))
    broker_port = free_port()
    controller_port = free_port()
    while controller_port == broker_port:
        controller_port = free_port()
    settings = Settings(
        state_dir=state_dir,
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{broker_port}",
                            controller_port=controller_port),
        # The learner publishes (and so deploys) nothing of its own, and with no labels its
        # policy has no drift to act on: the swaps are the only deployments.
        processing=ProcessingSettings(publish_every=10**12, auto_update=False))
    settings = with_signing_key(settings)  # the state directory's key, as the stack's
    r["settings"] = {"partitions": settings.kafka.partitions,
                     "batch_size": settings.processing.batch_size,
                     "batch_within": settings.processing.batch_within,
                     "explain_top": settings.processing.explain_top,
                     "artifact_chunk_bytes": settings.processing.artifact_chunk_bytes}

    console.print(f"training {args.versions} versions of {args.model} on "
                  f"{args.train_events} events each…")
    built = trained_versions(settings, args.model, args.versions, args.train_events)
    key = with_signing_key(settings).signing_key_bytes
    r["artifacts"] = {"versions": [meta.version for meta, _ in built],
                      "bytes": [meta.artifact_size for meta, _ in built],
                      "chunks": [meta.artifact_chunks for meta, _ in built],
                      "load_ms": [load_ms(meta, artifact, key) for meta, artifact in built]}

    stack = Stack(settings)
    failed = True
    args.out = args.out.resolve()
    cwd = Path.cwd()
    os.chdir(state_dir)  # the stack's working directory (faust's data, if an agent runs)
    try:
        console.print(f"starting the stack in {state_dir}…")
        t = time.monotonic()
        stack.start()
        stack.wait_until_serving()
        r["stack_start_seconds"] = time.monotonic() - t
        measure(stack, settings, args, built, r)
        failed = not r["exactly_once"]["ok"]
    except BaseException as exc:
        r["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]benchmark failed: {r['error']}[/red]")
        for name in ("scoring", "sink"):
            console.print(f"[bold]--- last lines of {name}.log[/bold]\n{stack.tail(name)}")
        if not isinstance(exc, Exception):
            raise
    finally:
        t = time.monotonic()
        stack.stop()
        r["stack_stop_seconds"] = time.monotonic() - t
        os.chdir(cwd)
        if args.keep_state or failed:
            console.print(f"state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)

    path = save_record(r, args.out, "swap", "machine", started, indent=2)
    if "swaps" in r:
        print_report(r)
    console.print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
