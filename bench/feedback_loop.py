"""Driftway feedback-loop benchmark: from a label entering Kafka to the first prediction served by
a model state that has learned from it.

    .venv/bin/python bench/feedback_loop.py [--rates 100 1000 5000] [--seconds S] [--no-live]

On a fresh local stack per input rate: the demo's events at that rate, each label sent
`--label-delay` events after its event. A label's training offset o comes from the training topic
(read_committed); the first prediction, by `predicted_at`, whose state has `trained_through > o`
is the first one served by a state that learned from it. The latency is its `predicted_at` minus
the time just before `send_label`; a second column stops at the time a PredictionSubscriber saw
it. The learner's live updates (model-updates topic) split the time into legs.

Prints one table and writes bench/results/feedback-loop-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pipeline import (  # bench/pipeline.py, beside this file
    RESULTS_DIR,
    Events,
    cpu_seconds,
    cpu_used,
    demo_events,
    f,
    quantiles,
    versions,
)
from record import save_record, start_record
from rich.console import Console
from rich.table import Table

from driftway.app.supervisor import Stack
from driftway.consumers.subscriber import PredictionSubscriber
from driftway.io.broker import free_port
from driftway.io.kafka import client_config
from driftway.schemas.events import InvalidRecord, TrainingExample, decode_training
from driftway.sdk import EventProducer
from driftway.settings import Settings

WARMUP_SEED = 60
FIRST_PHASE_SEED = 61  # phase k of a run uses seed 61 + k: its own event ids, loan-<seed>-<i>
WARMUP_RATE, WARMUP_SECONDS = 200, 4.0
STALE_GRACE = 0.1  # a prediction is stale if an update this much older than it served more

console = Console()


# --------------------------------------------------------------------------------------------
# a stack of its own (fidelity.py uses these too)


def bench_settings(**sections: Any) -> Settings:
    """Settings of a fresh stack: free loopback ports, a new temporary state directory, and
    the given sections (e.g. ``processing={"live_updates": False}``) over the defaults."""
    broker_port = free_port()
    controller_port = free_port()
    while controller_port == broker_port:
        controller_port = free_port()
    return Settings(state_dir=Path(tempfile.mkdtemp(prefix="driftway-bench-")),
                    kafka={"bootstrap_servers": f"127.0.0.1:{broker_port}",
                           "controller_port": controller_port},
                    **sections)


@contextlib.contextmanager
def running_stack(settings: Settings, keep_state: bool = False) -> Iterator[Stack]:
    """A started stack, serving; stopped at the end, its state directory removed unless
    `keep_state` or something failed (then its logs stay for reading).

    The children run in the state directory: they inherit the working directory, and faust
    puts its data directories there. Use ``stack.settings`` inside: it has the signing key.
    """
    stack = Stack(settings)
    cwd = Path.cwd()
    os.chdir(settings.state_dir)
    failed = True
    try:
        stack.start()
        stack.wait_until_serving()
        yield stack
        failed = False
    except BaseException:
        for name in ("feedback", "learner", "scoring", "sink"):
            console.print(f"[bold]--- last lines of {name}.log[/bold]\n{stack.tail(name)}")
        raise
    finally:
        stack.stop()
        os.chdir(cwd)
        if keep_state or failed:
            console.print(f"state kept in {settings.state_dir}")
        else:
            shutil.rmtree(settings.state_dir, ignore_errors=True)


def stack_settings(stack: Stack) -> dict[str, Any]:
    """The settings a result depends on, for the JSON."""
    s = stack.settings
    return {"processing": s.processing.model_dump(), "policy": s.policy.model_dump(),
            "partitions": s.kafka.partitions, "sink_flush_seconds": s.sink.flush_seconds}


# --------------------------------------------------------------------------------------------
# what the bench reads while the stack runs


class TopicFollower(threading.Thread):
    """Reads one topic from its beginning, read_committed, in a thread: `records` holds
    ``(seen_at, keep(msg))`` for every record `keep` does not answer None for."""

    def __init__(self, settings: Settings, key: str, keep: Callable[[Message], Any]) -> None:
        super().__init__(daemon=True, name=f"bench-{key}")
        self.topic = settings.topic(key)
        self.keep = keep
        self.records: list[tuple[float, Any]] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self._consumer = Consumer({
            **client_config(settings), "group.id": f"bench-{key}-{os.getpid()}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "fetch.message.max.bytes": 16 * 1024 * 1024})

    def run(self) -> None:
        consumer = self._consumer
        try:
            parts = consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            while not self.stopping.is_set():
                first = consumer.poll(0.05)  # returns as soon as one record is there
                if first is None:
                    continue
                now = time.time()
                for msg in [first, *consumer.consume(999, timeout=0)]:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            raise RuntimeError(f"{self.topic}: {msg.error()}")
                        continue
                    kept = self.keep(msg)
                    if kept is not None:
                        self.records.append((now, kept))
                        self.kept(now, kept)
        except BaseException as exc:  # noqa: BLE001 (the main thread reports it)
            self.error = exc
        finally:
            consumer.close()

    def kept(self, seen_at: float, value: Any) -> None:
        """A hook for what a subclass indexes as records come."""

    def check(self) -> None:
        if self.error is not None or not self.is_alive():
            raise RuntimeError(f"reading {self.topic} stopped: {self.error!r}")


class TrainingFollower(TopicFollower):
    """The training topic: `examples[event_id] = (seen_at, offset, labelled_at, broker
    timestamp)` of each training example."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "training", training_record)
        self.examples: dict[str, tuple[float, int, float | None, float]] = {}

    def kept(self, seen_at: float, value: Any) -> None:
        event_id, offset, labelled_at, ts = value
        self.examples.setdefault(event_id, (seen_at, offset, labelled_at, ts))


class _LineHead(msgspec.Struct):
    """The part of a live update's line this bench reads (the state bytes are skipped)."""

    slot: str
    trained_through: int


class _UpdateHead(msgspec.Struct):
    """The part of a live update this bench reads."""

    at: float
    lines: list[_LineHead]


_UPDATE = msgspec.json.Decoder(_UpdateHead)


def training_record(msg: Message) -> tuple[str, int, float | None, float] | None:
    """(event id, offset, labelled_at, broker timestamp) of a training example."""
    try:
        record = decode_training(msg.value() or b"")
    except InvalidRecord:
        return None
    if not isinstance(record, TrainingExample):
        return None
    return record.event_id, msg.offset(), record.labelled_at, msg.timestamp()[1] / 1000


def model_update(msg: Message) -> tuple[float, int, float, int] | None:
    """(written at, trained through, broker timestamp, bytes) of a live update: the furthest
    line."""
    if msg.value() is None:
        return None
    head = _UPDATE.decode(msg.value())
    if not head.lines:
        return None
    return (head.at, max(ln.trained_through for ln in head.lines), msg.timestamp()[1] / 1000,
            len(msg.value()))


class Predictions(threading.Thread):
    """A PredictionSubscriber over the whole run, in a thread, from the topic's beginning (it
    starts before the first event): ``seen[event_id] = (seen_at, predicted_at,
    trained_through)``, the first prediction of each event."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="bench-predictions")
        self.sub = PredictionSubscriber(settings, group_id=f"bench-feedback-{os.getpid()}",
                                        from_beginning=True, idle_timeout=None)
        self.seen: dict[str, tuple[float, float, int]] = {}
        self.top = -1  # the furthest training offset a prediction's state had learned through
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for p in self.sub:
                if p.event_id not in self.seen:
                    through = p.trained_through or 0
                    self.seen[p.event_id] = (time.time(), p.predicted_at, through)
                    self.top = max(self.top, through)
        except BaseException as exc:  # noqa: BLE001 (the main thread reports it)
            self.error = exc

    def stop(self) -> None:
        self.sub.idle_timeout = 0  # ends the iteration at its next poll; it then closes
        self.join(10)

    def check(self) -> None:
        if self.error is not None or not self.is_alive():
            raise RuntimeError(f"the prediction subscriber stopped: {self.error!r}")


class Readers:
    """The three readers of a run: predictions, training examples, live updates."""

    def __init__(self, settings: Settings) -> None:
        self.predictions = Predictions(settings)
        self.training = TrainingFollower(settings)
        self.updates = TopicFollower(settings, "model-updates", model_update)
        for reader in (self.predictions, self.training, self.updates):
            reader.start()

    def check(self) -> None:
        self.predictions.check()
        self.training.check()
        self.updates.check()

    def stop(self) -> None:
        self.predictions.stop()
        for follower in (self.training, self.updates):
            follower.stopping.set()
            follower.join(10)


# --------------------------------------------------------------------------------------------
# one phase


def send_paced(producer: EventProducer, data: Events, rate: float, label_delay: int,
               labelled: int, more: Callable[[int], bool]) -> dict[str, Any]:
    """Send event k at tick k (`rate` ticks/s), and at ticks label_delay ≤ k < labelled the
    label of event k − label_delay; past `labelled`, keep sending events while `more(k)`.

    Returns the send time (time.time() just before the call) of every event and label. Past the
    data, events are sent again under new ids (`<id>-t<k>`), unlabelled.
    """
    event_sent: dict[str, float] = {}
    label_sent: dict[str, float] = {}
    t0 = time.monotonic()
    k = 0
    while k < labelled or more(k):
        ahead = t0 + k / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        event = data[k][0] if k < len(data) else \
            {**data[k % len(data)][0], "event_id": f"{data[k % len(data)][0]['event_id']}-t{k}"}
        event_sent[event["event_id"]] = time.time()
        producer.send_event(event)
        if label_delay <= k < labelled:
            event_id = data[k - label_delay][0]["event_id"]
            label_sent[event_id] = time.time()
            producer.send_label({"event_id": event_id, "label": data[k - label_delay][1]})
        k += 1
    producer.flush()
    seconds = time.monotonic() - t0
    return {"event_sent": event_sent, "label_sent": label_sent, "seconds": seconds,
            "ticks": k, "achieved_rate": k / seconds}


def first_after(times: list[float], through: list[int], offset: int) -> int | None:
    """Index of the first entry (in time order) whose running maximum of `through` is above
    `offset` — the first served (or written) state that had learned the record at `offset`."""
    i = bisect_right(through, offset)
    return i if i < len(times) else None


def running_max(values: list[int]) -> list[int]:
    """Each value's running maximum: `first_after` bisects it."""
    out, top = [], -1
    for v in values:
        top = max(top, v)
        out.append(top)
    return out


def analyse(label_sent: dict[str, float], event_sent: dict[str, float],
            offsets: dict[str, tuple[float, int, float | None, float]],
            seen: dict[str, tuple[float, float, int]],
            updates: list[tuple[float, tuple[float, int, float, int]]]) -> dict[str, Any]:
    """Every latency of one phase from what the readers collected."""
    # This phase's predictions in the order they were made, with the running maximum of the
    # training offset their states had learned through.
    preds = sorted((seen[e][1], seen[e][2], seen[e][0]) for e in event_sent if e in seen)
    p_at = [p[0] for p in preds]
    p_max = running_max([p[1] for p in preds])
    ups = sorted((at, through, s, ts) for s, (at, through, ts, _n) in updates)
    u_at = [u[0] for u in ups]
    u_max = running_max([u[1] for u in ups])
    u_seen = sorted((s, through) for s, (_at, through, _ts, _n) in updates)
    us_at = [u[0] for u in u_seen]
    us_max = running_max([u[1] for u in u_seen])

    latency, seen_latency, legs = [], [], {k: [] for k in (
        "send_to_labelled", "labelled_to_training_visible", "labelled_to_produced",
        "produced_to_training_visible", "training_visible_to_update_written",
        "update_written_to_visible", "update_visible_to_prediction",
        "prediction_to_subscriber")}
    missing = {"no_training_record": 0, "no_later_prediction": 0}
    impossible = 0
    for event_id, t_label in label_sent.items():
        example = offsets.get(event_id)
        if example is None:
            missing["no_training_record"] += 1
            continue
        t_visible, offset, labelled_at, produced = example
        i = first_after(p_at, p_max, offset)
        if i is None:
            missing["no_later_prediction"] += 1
            continue
        predicted_at, _through, t_seen = preds[i]
        if predicted_at < t_label:
            impossible += 1
        latency.append((predicted_at - t_label) * 1000)
        seen_latency.append((t_seen - t_label) * 1000)
        legs["prediction_to_subscriber"].append((t_seen - predicted_at) * 1000)
        if labelled_at is not None:
            legs["send_to_labelled"].append((labelled_at - t_label) * 1000)
            legs["labelled_to_training_visible"].append((t_visible - labelled_at) * 1000)
            legs["labelled_to_produced"].append((produced - labelled_at) * 1000)
            legs["produced_to_training_visible"].append((t_visible - produced) * 1000)
        j = first_after(u_at, u_max, offset)
        if j is not None:
            written = ups[j][0]
            legs["training_visible_to_update_written"].append((written - t_visible) * 1000)
            k = first_after(us_at, us_max, offset)
            if k is not None:
                legs["update_written_to_visible"].append((u_seen[k][0] - written) * 1000)
                legs["update_visible_to_prediction"].append((predicted_at - u_seen[k][0]) * 1000)

    # Served state against learning: a prediction made more than STALE_GRACE after an update
    # became visible, by a state that had learned less than that update, is stale; one made by
    # a state that had learned less than an earlier prediction's went back.
    stale = went_back = 0
    top = -1
    for predicted_at, through, _seen in preds:
        k = bisect_left(us_at, predicted_at - STALE_GRACE) - 1
        if k >= 0 and through < us_max[k]:
            stale += 1
        if through < top:
            went_back += 1
        top = max(top, through)
    event_latency = [(seen[e][1] - t) * 1000 for e, t in event_sent.items() if e in seen]
    # Each of feedback's transactions that wrote training examples left one commit marker
    # (an offset without a record) after them: the commits it made, as the learner sees them.
    examples = sorted((offsets[e][1], offsets[e][3]) for e in label_sent if e in offsets)
    commits = sum(b[0] - a[0] > 1 for a, b in itertools.pairwise(examples))
    span = examples[-1][1] - examples[0][1] if len(examples) > 1 else 0.0
    return {
        "labels_sent": len(label_sent), "labels_measured": len(latency), "missing": missing,
        "predicted_before_label_sent": impossible,
        "ms": quantiles(latency), "subscriber_ms": quantiles(seen_latency),
        "legs_ms": {name: quantiles(values) for name, values in legs.items()},
        "events_sent": len(event_sent), "predictions_seen": len(preds),
        "event_to_prediction_ms": quantiles(event_latency),
        "live_updates": len(updates), "stale_predictions": stale,
        "update_interval_ms": quantiles([(b - a) * 1000 for a, b in itertools.pairwise(u_at)]),
        "update_bytes": quantiles([float(u[3]) for _s, u in updates]),
        "feedback_commits_per_s": commits / span if span > 0 else None,
        "predictions_older_than_an_earlier_one": went_back,
    }


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def run_phase(stack: Stack, readers: Readers, producer: EventProducer, data: Events,
              rate: float, labelled: int, label_delay: int, tail: float, tail_max: float,
              timeout: float) -> dict[str, Any]:
    """One rate: send, keep events flowing until the last label is served (at least `tail`,
    at most `tail_max` seconds past the labelled part), wait for the readers, analyse."""
    updates_before = len(readers.updates.records)
    last_label = data[labelled - label_delay - 1][0]["event_id"]
    check_every = max(1, round(rate / 10))

    def more(k: int) -> bool:
        """Past the labelled part: is the last label still unserved (checked every 0.1 s)?"""
        past = (k - labelled) / rate
        if past < tail:
            return True
        if past >= tail_max:
            return False
        if k % check_every:
            return True
        readers.check()
        stack.check()
        example = readers.training.examples.get(last_label)
        return example is None or readers.predictions.top <= example[1]

    cpu_before, machine_before = cpu_seconds(stack), machine_busy()
    t0 = time.monotonic()
    sent = send_paced(producer, data, rate, label_delay, labelled, more)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readers.check()
        stack.check()
        known = readers.training.examples
        if all(e in readers.predictions.seen for e in sent["event_sent"]) and \
                all(e in known for e in sent["label_sent"]):
            break
        time.sleep(0.2)
    wall = time.monotonic() - t0
    cpu = cpu_used(cpu_before, cpu_seconds(stack), wall)
    cpu["machine_cores_busy"] = (machine_busy() - machine_before) / wall
    cpu["other_cores_busy"] = cpu["machine_cores_busy"] - cpu["total_cores_busy"]
    result = analyse(sent["label_sent"], sent["event_sent"], dict(readers.training.examples),
                     dict(readers.predictions.seen), readers.updates.records[updates_before:])
    result.update(target_rate=rate, achieved_rate=sent["achieved_rate"],
                  send_seconds=sent["seconds"], cpu=cpu)
    return result


# --------------------------------------------------------------------------------------------
# report


LEGS = (("send_to_labelled", "label sent → feedback took it (labelled_at)"),
        ("labelled_to_training_visible", "→ its training example visible (committed)"),
        ("labelled_to_produced", "   of which: feedback produced it (broker timestamp)"),
        ("produced_to_training_visible", "   of which: → visible (feedback's commit)"),
        ("training_visible_to_update_written", "→ the learner wrote a live update with it"),
        ("update_written_to_visible", "→ that update visible to a reader"),
        ("update_visible_to_prediction", "→ first prediction by a state with it"),
        ("prediction_to_subscriber", "→ the subscriber saw that prediction"))


def triple(q: dict[str, float]) -> str:
    """p50 / p99 / max of quantiles(), in ms."""
    return f"{f(q.get('p50'), 1)} / {f(q.get('p99'), 1)} / {f(q.get('max'), 1)}"


def print_report(r: dict[str, Any]) -> None:
    p = r["params"]
    failed = [ph for ph in r["phases"] if "error" in ph]
    r = {**r, "phases": [ph for ph in r["phases"] if "error" not in ph]}
    t = Table("events/s\n(achieved)", "labels\nmeasured", "label → prediction\nmade, ms",
              "label →\nsubscriber, ms", "event →\nprediction, ms", "cores busy:\nstack / other",
              title=f"Feedback loop: {p['model']}, "
                    f"{'live updates' if p['live'] else 'published versions only'}, commits "
                    f"every {p['commit_interval'] * 1000:g} ms, a version every "
                    f"{p['publish_every']:,} examples, labels {p['label_delay']} events later "
                    "(p50 / p99 / max)", title_justify="left")
    for ph in r["phases"]:
        measured = f"{ph['labels_measured']:,} of\n{ph['labels_sent']:,}"
        if ph["labels_sent"] > ph["labels_measured"]:
            measured += "".join(f"\n[yellow]{n:,} {why.replace('_', ' ')}[/yellow]"
                                for why, n in ph["missing"].items() if n)
        ev = ph["event_to_prediction_ms"]
        saturated = "\n[yellow]saturated[/yellow]" if ev.get("p50", 0) > 1000 else ""
        t.add_row(f"{f(ph['target_rate'])}\n({f(ph['achieved_rate'])})", measured,
                  triple(ph["ms"]), triple(ph["subscriber_ms"]), triple(ev) + saturated,
                  f"{ph['cpu']['total_cores_busy']:.2f} / "
                  f"{ph['cpu'].get('other_cores_busy', float('nan')):.2f}")
    console.print(t)
    legs = Table("leg (each from the end of the one before)",
                 *(f"{f(ph['target_rate'])}/s" for ph in r["phases"]),
                 title="Where the time goes: p50 / p99 ms per leg", title_justify="left")
    for key, name in LEGS:
        legs.add_row(name, *(f"{f(ph['legs_ms'][key].get('p50'), 1)} / "
                             f"{f(ph['legs_ms'][key].get('p99'), 1)}" for ph in r["phases"]))
    legs.add_row("interval between two live updates",
                 *(f"{f(ph['update_interval_ms'].get('p50'), 1)} / "
                   f"{f(ph['update_interval_ms'].get('p99'), 1)}" for ph in r["phases"]))
    console.print(legs)
    for ph in r["phases"]:
        size = ph.get("update_bytes", {}).get("p50")
        notes = [f"{ph['live_updates']:,} live updates"
                 + (f" of {size / 1024:,.0f} KiB (p50)" if size else ""),
                 f"{ph['stale_predictions']:,} stale predictions",
                 f"{ph['predictions_older_than_an_earlier_one']:,} older than an earlier one",
                 f"feedback committed examples {f(ph.get('feedback_commits_per_s'), 1)} "
                 "times a second"]
        if ph["predicted_before_label_sent"]:
            notes.append(f"[red]{ph['predicted_before_label_sent']} served before the label "
                         "was sent[/red]")
        console.print(f"  {f(ph['target_rate'])}/s: " + "; ".join(notes))
    for ph in failed:
        console.print(f"  {f(ph['target_rate'])}/s: [red]failed: "
                      f"{ph['error'].splitlines()[0]}[/red]")
    m = r["machine"]
    starts = ", ".join(f"{f(ph['stack_start_seconds'], 1)}s" for ph in r["phases"])
    console.print(f"stack starts {starts}; whole run "
                  f"{f(r.get('run_seconds'), 0)}s; {m['cpus']} CPUs, load average "
                  f"{m['loadavg_start'][0]:.2f} at start, "
                  f"{f(m.get('loadavg_end', [None])[0], 2)} at end")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rates", type=float, nargs="+", default=[100, 1_000, 5_000],
                   help="input rates (events/s) of the phases, in order")
    p.add_argument("--seconds", type=float, default=15,
                   help="how long each phase sends labelled events")
    p.add_argument("--label-delay", type=int, default=200,
                   help="each label follows its event this many events later")
    p.add_argument("--model", default=None,
                   help="processing.model; unset: the settings' (logistic_regression)")
    p.add_argument("--no-live", action="store_true",
                   help="processing.live_updates false: serve published versions only")
    p.add_argument("--commit-interval", type=float, default=None,
                   help="processing.commit_interval, seconds; unset: the settings' (0.05)")
    p.add_argument("--publish-every", type=int, default=None,
                   help="processing.publish_every; unset: the settings' (1,000)")
    p.add_argument("--metrics-every", type=float, default=None,
                   help="log level info and a metrics line (batch and commit times) in each "
                        "processor's log every this many seconds; read them with --keep-state")
    p.add_argument("--tail", type=float, default=2.0,
                   help="seconds of unlabelled events after the labelled part")
    p.add_argument("--tail-max", type=float, default=20.0,
                   help="longest tail while the last label is not served yet")
    p.add_argument("--timeout", type=float, default=120,
                   help="max seconds to wait for a phase's records after sending")
    p.add_argument("--keep-state", action="store_true",
                   help="keep each stack's temporary state directory (logs, Kafka, ClickHouse)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    if min(args.rates) <= 0 or args.seconds <= 0 or args.label_delay < 0:
        p.error("--rates and --seconds must be positive, --label-delay not negative")
    for rate in args.rates:
        if rate * args.seconds <= args.label_delay:
            p.error(f"at {rate:g}/s, {args.seconds:g}s send no label: raise --seconds")
    return args


def run_rate(rate: float, seed: int, args: argparse.Namespace,
             processing: dict[str, Any]) -> dict[str, Any]:
    """One phase on a stack of its own: start it, warm it up (labelled, unmeasured), measure."""
    data = demo_events(round(rate * args.seconds), seed)
    warmup = demo_events(round(WARMUP_RATE * WARMUP_SECONDS), WARMUP_SEED)
    settings = bench_settings(processing=processing, **(
        {"log_level": "info"} if args.metrics_every else {}))
    console.print(f"{rate:,.0f} events/s: starting a stack in {settings.state_dir}…")
    t = time.monotonic()
    with running_stack(settings, args.keep_state) as stack:
        started = time.monotonic() - t
        readers = Readers(stack.settings)
        try:
            producer = EventProducer(stack.settings)
            warm = run_phase(stack, readers, producer, warmup, WARMUP_RATE, len(warmup),
                             min(args.label_delay, len(warmup) // 2), args.tail,
                             args.tail_max, args.timeout)
            ph = run_phase(stack, readers, producer, data, rate, len(data), args.label_delay,
                           args.tail, args.tail_max, args.timeout)
        finally:
            readers.stop()
    ph.update(stack_start_seconds=started, settings=stack_settings(stack),
              warmup={"ms": warm["ms"], "labels_measured": warm["labels_measured"],
                      "labels_sent": warm["labels_sent"]})
    console.print(f"    p50 {f(ph['ms'].get('p50'), 1)} ms, p99 {f(ph['ms'].get('p99'), 1)} ms "
                  f"({ph['labels_measured']:,} of {ph['labels_sent']:,} labels)")
    return ph


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    processing: dict[str, Any] = {"live_updates": not args.no_live}
    for option, key in (("model", "model"), ("commit_interval", "commit_interval"),
                        ("publish_every", "publish_every"),
                        ("metrics_every", "metrics_log_seconds")):
        if getattr(args, option):
            processing[key] = getattr(args, option)
    p = Settings(processing=processing)  # what the stacks will run with
    r: dict[str, Any] = {
        **start_record("feedback_loop.py"),
        "params": {"rates": args.rates, "seconds": args.seconds, "label_delay": args.label_delay,
                   "model": p.processing.model, "live": p.processing.live_updates,
                   "commit_interval": p.processing.commit_interval,
                   "publish_every": p.processing.publish_every,
                   "tail": args.tail, "tail_max": args.tail_max},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(), "phases": [],
    }
    args.out = args.out.resolve()
    for k, rate in enumerate(args.rates):  # a phase that fails is reported; the others run
        try:
            r["phases"].append(run_rate(rate, FIRST_PHASE_SEED + k, args, processing))
        except Exception as exc:
            r["phases"].append({"target_rate": rate, "error": f"{type(exc).__name__}: {exc}"})
            console.print(f"[red]{rate:,.0f} events/s failed: {r['phases'][-1]['error']}[/red]")
    path = save_record(r, args.out, "feedback-loop", "machine", started, indent=2)
    print_report(r)
    console.print(f"results: {path}")
    return 1 if any("error" in ph for ph in r["phases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
