"""Processor runtime benchmark: one consume → decode → produce pass-through per runtime.

    .venv/bin/python bench/passthrough.py [--events N] [--quick] [--only NAME ...]
                                          [--quix-python PATH]

On one local Kafka broker (Driftway's own launcher, free loopback ports), an input topic of 3
partitions is filled with N feature-vector records, exactly as Driftway's features processor
writes them. Then every candidate runtime, each in its own subprocess, in a fresh consumer group
and with a fresh output topic, reads every record, decodes the JSON, stamps ``processed_at``,
re-encodes it and produces it to the output topic. Measured per candidate:

1. throughput: records/s from the worker's first record until a read_committed consumer has seen
   all N on the output topic, and the worker's CPU seconds (all its threads) per record;
2. latency: in a new worker, on a second, empty input topic, records are sent at fixed rates
   (1,000/s, then 5,000/s, 10 s each); the latency of a record is the time a read_committed
   consumer sees it on the output topic minus its send time (``received_at`` inside the record).

Candidates (CANDIDATES below): the bare confluent-kafka batch loop, at least once and with
transactions (the ceiling with exactly-once); faust-streaming as Driftway configures it today and
tuned (aiokafka and confluent drivers, ``take_events`` batches, exactly_once); Quix Streams (at
least once, exactly-once, with keyed state). Quix Streams pins confluent-kafka < 2.13, so it
lives in its own venv (``--quix-python``); a control row then runs the bare loop there too.
Before them, unreported warm-up runs load the broker until its JVM has settled.

Prints a table and writes bench/results/passthrough-<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from record import save_record, start_record  # bench/record.py, beside this file

HERE = Path(__file__).resolve().parent
SCRIPT = Path(__file__).resolve()
RESULTS_DIR = HERE / "results"
PARTITIONS = 3

# One demo seed per data set, so that a record's event id ("loan-<seed>-<i>") says its phase.
THROUGHPUT_SEED = 42
WARMUP_SEED = 41
FIRST_LATENCY_SEED = 44  # the i-th offered rate of the latency phase has seed 44 + i
WARMUP_RATE = 500
#: How long the broker may hold the observer's empty fetches (librdkafka's default is 500 ms).
OBSERVER_FETCH_WAIT_MS = 50
WARMUP_RECORDS = 2_000


# --------------------------------------------------------------------------------------------
# The work every candidate does, written once: decode, stamp, encode.


def _codec() -> tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]:
    """The JSON codec of every candidate: orjson, else msgspec, else the standard library."""
    try:
        import orjson

        return f"orjson {orjson.__version__}", orjson.loads, orjson.dumps
    except ImportError:
        pass
    try:
        import msgspec

        return f"msgspec {msgspec.__version__}", msgspec.json.decode, msgspec.json.encode
    except ImportError:
        pass
    return "json (stdlib)", json.loads, lambda v: json.dumps(v, separators=(",", ":")).encode()


CODEC, loads, dumps = _codec()


def transform(value: bytes | None) -> bytes:
    """The pass-through's work on one record: decode, stamp processed_at, encode."""
    record = loads(value or b"{}")
    record["processed_at"] = time.time()
    return dumps(record)


# --------------------------------------------------------------------------------------------
# Workers: each candidate runtime in its own process (`--worker SPEC`). They import only the
# standard library, confluent-kafka and their runtime, so that they also run in a separate venv.


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process consumes, where it writes, and how it is tuned."""

    runtime: str  # "confluent" | "faust" | "quix"
    bootstrap: str
    input_topic: str
    output_topic: str
    group: str
    exactly_once: bool
    options: dict[str, Any]
    workdir: str
    status_fd: int = -1


class Status:
    """JSON lines to the parent on an inherited pipe: hello, first (record), error."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen_first = False

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.time(), **fields}) + "\n"
        os.write(self.fd, line.encode())

    def first(self) -> None:
        if not self.seen_first:
            self.seen_first = True
            self.send("first")


def produce_one(producer: Producer, topic: str, key: bytes | str | None, value: bytes,
                on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """Queue one record; when librdkafka's queue is full, serve deliveries and retry."""
    while True:
        try:
            if on_delivery is None:
                producer.produce(topic, value, key)
            else:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.01)


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def worker_confluent(spec: WorkerSpec, status: Status) -> None:
    """The bare confluent-kafka batch loop, the shape of Driftway's hand-written processors.

    Block in ``poll`` for the first record, then drain what librdkafka has already fetched with
    ``consume(batch, timeout=0)``: full batches under load, no batching delay when idle. The first
    record after a commit opens a checkpoint; once it is ``commit_ms`` old (0: after every batch)
    or holds ``commit_records``, it is committed. At least once: flush the producer (every record
    acknowledged), then commit the consumer's offsets. Exactly-once: the checkpoint is a
    transaction, committed with the consumer's positions (``send_offsets_to_transaction``).
    """
    o = spec.options
    batch = int(o.get("batch", 2_000))
    commit_s = float(o.get("commit_ms", 100)) / 1000
    commit_records = int(o.get("commit_records", 50_000))
    eos = spec.exactly_once
    consumer = Consumer({
        "bootstrap.servers": spec.bootstrap, "group.id": spec.group,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "isolation.level": "read_committed", **o.get("consumer", {})})
    producer_config: dict[str, Any] = {
        "bootstrap.servers": spec.bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "partitioner": "murmur2_random", **o.get("producer", {})}
    if eos:
        producer_config["transactional.id"] = f"{spec.group}-txn"
    producer = Producer(producer_config)
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    delivery = None if eos else on_delivery  # commit_transaction raises on a failed delivery
    stop = stop_on_signals()
    if eos:
        producer.init_transactions(30)
    consumer.subscribe([spec.input_topic])
    out = spec.output_topic
    open_since: float | None = None  # when the open checkpoint began
    pending = 0  # records in it
    commit_ms: list[float] = []  # how long each commit took

    def commit() -> None:
        nonlocal open_since
        began = time.perf_counter()
        if eos:
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata())
            producer.commit_transaction()
        else:
            producer.flush()
            if errors:
                raise RuntimeError(f"{len(errors)} records not delivered: {errors[:3]}")
            consumer.commit(asynchronous=True)
        commit_ms.append((time.perf_counter() - began) * 1000)
        open_since = None

    status.send("ready")
    while not stop.is_set():
        wait = 0.1 if open_since is None else max(0.0, open_since + commit_s - time.monotonic())
        first = consumer.poll(wait)
        messages = [] if first is None else [first, *consumer.consume(batch - 1, timeout=0)]
        records = [m for m in messages if m.error() is None]
        if records:
            status.first()
            if open_since is None:
                if eos:
                    producer.begin_transaction()
                open_since, pending = time.monotonic(), 0
            for m in records:
                produce_one(producer, out, m.key(), transform(m.value()), delivery)
            producer.poll(0)
            pending += len(records)
        if open_since is not None and (time.monotonic() - open_since >= commit_s
                                       or pending >= commit_records):
            commit()
    if open_since is not None:
        commit()
    producer.flush(10)
    consumer.close()
    commit_ms.sort()
    status.send("commits", count=len(commit_ms),
                p50_ms=commit_ms[len(commit_ms) // 2] if commit_ms else None,
                p99_ms=commit_ms[int(len(commit_ms) * 0.99)] if commit_ms else None)


def worker_faust(spec: WorkerSpec, status: Status) -> None:
    """faust-streaming, tuned: one agent taking events in batches (``take_events``).

    At least once, output goes through a confluent-kafka producer flushed before the batch is
    acknowledged (driftway.io.agents.Emitter). Exactly-once, output must go through faust's own
    transactional producers (``topic.send``), or it would not be in the transaction.
    """
    import asyncio

    o = spec.options
    if o.get("uvloop"):
        import mode.loop

        mode.loop.use("uvloop")  # before faust creates its event loop
    import faust
    from faust.sensors import Monitor

    class NullMonitor(Monitor):
        """faust's default sensor minus its per-message bookkeeping."""

        def on_message_in(self, *args: Any, **kwargs: Any) -> None:
            pass

        def on_stream_event_in(self, *args: Any, **kwargs: Any) -> None:
            return None

        def on_stream_event_out(self, *args: Any, **kwargs: Any) -> None:
            pass

        def on_message_out(self, *args: Any, **kwargs: Any) -> None:
            pass

        def on_send_initiated(self, *args: Any, **kwargs: Any) -> Any:
            return None

        def on_send_completed(self, *args: Any, **kwargs: Any) -> None:
            pass

    batch = int(o.get("batch", 2_000))
    within = float(o.get("within", 0.005))
    driver = o.get("driver", "kafka")
    settings: dict[str, Any] = {
        "broker": f"{driver}://{spec.bootstrap}",
        "store": "memory://",
        "datadir": str(Path(spec.workdir) / "faust-data"),
        "web_enabled": False,
        "topic_partitions": PARTITIONS,
        "topic_replication_factor": 1,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "exactly_once" if spec.exactly_once else "at_least_once",
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 3.0,
        **o.get("settings", {}),
    }
    if o.get("null_monitor", True):
        settings["monitor"] = NullMonitor()
    app = faust.App(spec.group, **settings)
    source = app.topic(spec.input_topic, key_serializer="raw", value_serializer="raw")
    sink = app.topic(spec.output_topic, key_serializer="raw", value_serializer="raw")

    if spec.exactly_once:
        @app.agent(source)
        async def passthrough(stream: faust.StreamT) -> None:
            async for events in stream.take_events(batch, within=within):
                status.first()
                for event in events:
                    await sink.send(key=event.message.key, value=transform(event.message.value))
    else:
        producer = Producer({"bootstrap.servers": spec.bootstrap, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 5, "partitioner": "murmur2_random"})
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(str(err))

        @app.agent(source)
        async def passthrough(stream: faust.StreamT) -> None:
            loop = asyncio.get_running_loop()
            out = spec.output_topic
            async for events in stream.take_events(batch, within=within):
                status.first()
                for event in events:
                    msg = event.message
                    produce_one(producer, out, msg.key, transform(msg.value), on_delivery)
                await loop.run_in_executor(None, producer.flush)
                if errors:
                    raise RuntimeError(f"{len(errors)} records not delivered: {errors[:3]}")

    @app.task
    async def ready() -> None:
        status.send("ready")

    worker = faust.Worker(app, loglevel=o.get("loglevel", "WARNING"), quiet=True)
    worker.execute_from_commandline()


def worker_quix(spec: WorkerSpec, status: Status) -> None:
    """Quix Streams: an Application with one StreamingDataFrame, decode → encode → output topic.

    Keys and values travel as bytes and the decoding is ours (the same codec as every candidate;
    Quix's own JSON serializers are orjson too). ``commit_interval`` is the checkpoint: at least
    once, a producer flush and an offset commit; exactly-once, a Kafka transaction.
    """
    from quixstreams import Application

    o = spec.options
    app = Application(
        broker_address=spec.bootstrap,
        consumer_group=spec.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if spec.exactly_once else "at-least-once",
        commit_interval=float(o.get("commit_interval", 0.1)),
        commit_every=int(o.get("commit_every", 0)),
        consumer_extra_config=o.get("consumer", {}),
        producer_extra_config={"linger.ms": 5, **o.get("producer", {})},
        consumer_poll_timeout=float(o.get("poll_timeout", 0.1)),
        state_dir=str(Path(spec.workdir) / "quix-state"),
        use_changelog_topics=bool(o.get("changelog", True)),
        loglevel="WARNING",
        **o.get("app", {}),
    )
    source = app.topic(spec.input_topic, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(spec.output_topic, key_serializer="bytes", value_serializer="bytes")
    first = status.first

    def process(value: bytes) -> bytes:
        first()
        return transform(value)

    sdf = app.dataframe(source)
    if o.get("stateful"):
        # Driftway's features processor keeps per-entity state: a changelogged count per key.
        def count(value: bytes, state: Any) -> bytes:
            n = state.get("n", 0) + 1
            state.set("n", n)
            return process(value)

        sdf = sdf.apply(count, stateful=True)
    else:
        sdf = sdf.apply(process)
    sdf.to_topic(sink)
    status.send("ready")
    app.run()


WORKERS: dict[str, Callable[[WorkerSpec, Status], None]] = {
    "confluent": worker_confluent, "faust": worker_faust, "quix": worker_quix}


def run_worker(raw_spec: str) -> int:
    spec = WorkerSpec(**json.loads(raw_spec))
    status = Status(spec.status_fd)
    versions = {"python": platform.python_version(), "codec": CODEC,
                "confluent_kafka": confluent_kafka.__version__,
                "librdkafka": confluent_kafka.libversion()[0]}
    for dist in {"faust": ["faust-streaming", "aiokafka", "uvloop"], "quix": ["quixstreams"]}.get(
            spec.runtime, []):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    status.send("hello", pid=os.getpid(), versions=versions)
    try:
        WORKERS[spec.runtime](spec, status)
    except SystemExit as exc:  # faust's worker ends with SystemExit(0)
        if exc.code:
            status.send("error", error=f"SystemExit: {exc.code}")
        raise
    except BaseException as exc:
        status.send("error", error=f"{type(exc).__name__}: {exc}")
        raise
    status.send("stopped")
    return 0


# --------------------------------------------------------------------------------------------
# The candidates.


@dataclass(frozen=True)
class Candidate:
    name: str  # also in topic and group names
    label: str
    runtime: str
    exactly_once: bool
    options: dict[str, Any] = field(default_factory=dict)
    quix_venv: bool = False  # run with --quix-python instead of this interpreter


#: faust as far as its knobs go: uvloop, larger fetches and stream buffers, batches of up to 10k
#: taken within 5 ms, no per-message monitor bookkeeping. (broker_max_poll_records, batch sizes
#: from 500 to 10k and fetch sizes from 1 to 4 MiB changed nothing beyond the noise.)
FAUST_TUNED: dict[str, Any] = {
    "batch": 10_000, "within": 0.005, "null_monitor": True, "uvloop": True,
    "settings": {"stream_buffer_maxsize": 32_768, "consumer_max_fetch_size": 4 * 1024 * 1024,
                 "broker_commit_every": 10_000, "broker_commit_interval": 1.0},
}

CANDIDATES = [
    Candidate("ck", "confluent-kafka loop, commit every 100 ms", "confluent", False,
              {"batch": 2_000, "commit_ms": 100}),
    Candidate("ck-eos-100ms", "confluent-kafka loop, txn every 100 ms", "confluent", True,
              {"batch": 2_000, "commit_ms": 100}),
    Candidate("ck-eos-10ms", "confluent-kafka loop, txn every 10 ms", "confluent", True,
              {"batch": 2_000, "commit_ms": 10}),
    # As driftway.io.agents.make_app configures the processors today, batches of
    # processing.batch_size (500) within batch_within (20 ms).
    Candidate("faust-driftway", "faust (aiokafka), Driftway's settings today", "faust", False,
              {"batch": 500, "within": 0.02, "null_monitor": False,
               "settings": {"stream_buffer_maxsize": 4096, "broker_commit_every": 10_000,
                            "broker_commit_interval": 1.0}}),
    Candidate("faust", "faust (aiokafka) tuned", "faust", False, FAUST_TUNED),
    Candidate("faust-eos", "faust (aiokafka) tuned, exactly_once", "faust", True,
              {**FAUST_TUNED, "settings": {**FAUST_TUNED["settings"],
                                           "broker_commit_interval": 0.1}}),
    Candidate("faust-confluent", "faust tuned, confluent driver", "faust", False,
              {**FAUST_TUNED, "driver": "confluent"}),
    Candidate("quix", "Quix Streams, commit every 100 ms", "quix", False,
              {"commit_interval": 0.1, "poll_timeout": 0.1}, quix_venv=True),
    Candidate("quix-eos-100ms", "Quix Streams, exactly-once, commit 100 ms", "quix", True,
              {"commit_interval": 0.1, "poll_timeout": 0.1}, quix_venv=True),
    Candidate("quix-eos-10ms", "Quix Streams, exactly-once, commit 10 ms", "quix", True,
              {"commit_interval": 0.01, "poll_timeout": 0.01}, quix_venv=True),
    Candidate("quix-eos-10ms-state", "Quix Streams, exactly-once, commit 10 ms, keyed state",
              "quix", True, {"commit_interval": 0.01, "poll_timeout": 0.01, "stateful": True},
              quix_venv=True),
    # Control: the bare loop on Quix's confluent-kafka (< 2.13), to separate client from runtime.
    Candidate("ck-eos-10ms-quixvenv", "confluent-kafka loop, txn every 10 ms, Quix's venv",
              "confluent", True, {"batch": 2_000, "commit_ms": 10}, quix_venv=True),
]

#: Not reported: the broker's JVM needs tens of seconds of load before its figures settle (a
#: transaction commit takes ~15 ms on a cold broker, ~2 ms on a warm one).
WARMUP_CANDIDATES = [
    Candidate("warmup-ck", "warm-up", "confluent", False, {"commit_ms": 100}),
    Candidate("warmup-eos", "warm-up", "confluent", True, {"commit_ms": 10}),
]


# --------------------------------------------------------------------------------------------
# Shared measurement: worker processes, the output observer, the paced sender.


class WorkerProcess:
    """One candidate worker: started with a spec, followed through its status pipe."""

    def __init__(self, python: str, spec: WorkerSpec, log_path: Path) -> None:
        read_fd, write_fd = os.pipe()
        spec = WorkerSpec(**{**asdict(spec), "status_fd": write_fd})
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [python, str(SCRIPT), "--worker", json.dumps(asdict(spec))],
                pass_fds=(write_fd,), stdout=log, stderr=subprocess.STDOUT, cwd=spec.workdir,
                start_new_session=True)
        os.close(write_fd)
        self.started = time.time()
        self.events: dict[str, dict[str, Any]] = {}
        self.first = threading.Event()
        self.first_cpu = 0.0
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                event = json.loads(line)
                if event["event"] == "first":
                    self.first_cpu = self.cpu()
                    self.events["first"] = event
                    self.first.set()
                else:
                    self.events[event["event"]] = event

    def cpu(self) -> float:
        """CPU seconds of the worker so far, all threads (user + system)."""
        return _cpu(self.proc.pid)

    def wait_first(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.first.wait(0.2):
                return True
            if self.proc.poll() is not None:
                return False
        return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL (its whole session) if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(2)
        return self.proc.returncode

    def tail(self, n: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def phase_of(event_id: str) -> str:
    """'loan-44-00000012' → 'loan-44': the data set, hence the phase, of a record."""
    return event_id.rsplit("-", 1)[0]


class Observer(threading.Thread):
    """Reads an output topic from the beginning as a read_committed consumer would.

    Counts records, and with ``decode`` keeps per phase (send, processed, seen) times.
    """

    def __init__(self, bootstrap: str, topic: str, decode: bool = False) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"observer-{topic}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "fetch.wait.max.ms": OBSERVER_FETCH_WAIT_MS})
        self.consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
        self.topic = topic
        self.decode = decode
        self.count = 0
        self.samples: dict[str, list[tuple[float, float, float]]] = {}
        self._target = 0
        self.reached_at: float | None = None
        self._reached = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                msg = self.consumer.poll(0.05)
                if msg is None:
                    continue
                batch = [msg, *self.consumer.consume(10_000, timeout=0)]
                seen = time.time()
                records = [m for m in batch if m.error() is None]
                with self._lock:
                    self.count += len(records)
                    if self.decode:
                        for m in records:
                            r = loads(m.value())
                            self.samples.setdefault(phase_of(r["event_id"]), []).append(
                                (r["received_at"], r.get("processed_at", seen), seen))
                    if self._target and self.reached_at is None and self.count >= self._target:
                        self.reached_at = seen
                        self._reached.set()
        finally:
            self.consumer.close()

    def wait_count(self, n: int, deadline: float) -> float | None:
        """Wait (until time.time() deadline) for n records; when they were all seen, or None."""
        with self._lock:
            self._target, self.reached_at = n, None
            self._reached.clear()
            if self.count >= n:
                self.reached_at = time.time()
                return self.reached_at
        self._reached.wait(max(0.0, deadline - time.time()))
        return self.reached_at

    def phase(self, name: str) -> list[tuple[float, float, float]]:
        with self._lock:
            return list(self.samples.get(name, []))

    def wait_phase(self, name: str, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = len(self.samples.get(name, []))
            if got >= n:
                return got
            time.sleep(0.05)
        return len(self.phase(name))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of unsorted values (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def send_paced(producer: Producer, topic: str, records: list[tuple[bytes, bytes]],
               rate: float) -> dict[str, float]:
    """Send (key, head) records at `rate`/s, each closed with its send time as received_at."""
    start = time.perf_counter()
    worst_behind = 0.0
    for i, (key, head) in enumerate(records):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.0002:
            time.sleep(delay)
        else:
            worst_behind = max(worst_behind, -delay)
        produce_one(producer, topic, key, head + repr(time.time()).encode() + b"}")
        producer.poll(0)
    sent_for = time.perf_counter() - start
    producer.flush(30)
    return {"records": len(records), "seconds": sent_for,
            "rate": len(records) / sent_for if sent_for else float("nan"),
            "worst_behind_ms": worst_behind * 1000}


class Machine:
    """CPU use of the whole machine, of the worker and of the broker over an interval."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid

    def sample(self, worker: WorkerProcess | None) -> dict[str, float]:
        import psutil

        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
        out = {"wall": time.monotonic(), "machine": busy, "bench": _cpu(os.getpid())}
        out["broker"] = _cpu(self.broker_pid) if self.broker_pid else float("nan")
        out["worker"] = worker.cpu() if worker else float("nan")
        return out

    @staticmethod
    def cores(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        """Cores busy between two samples: machine, worker, broker, this process, and others."""
        wall = b["wall"] - a["wall"]
        if wall <= 0:
            return {}
        c = {k: (b[k] - a[k]) / wall for k in ("machine", "worker", "broker", "bench")}
        c["others"] = c["machine"] - c["worker"] - c["broker"] - c["bench"]
        return {k: round(v, 2) for k, v in c.items()}


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process so far; NaN once it is gone."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return float("nan")
    return float(t.user + t.system)


# --------------------------------------------------------------------------------------------
# The benchmark: data, broker, topics, phases.


@dataclass
class Bench:
    bootstrap: str
    workdir: Path
    input_topic: str
    events: int
    rates: list[int]
    seconds: float
    phase_timeout: float
    quix_python: str | None
    machine: Machine
    warmup: list[tuple[bytes, bytes]]
    latency_sets: dict[int, list[tuple[bytes, bytes]]]  # offered rate → its records

    @staticmethod
    def seed(rates: list[int], rate: int) -> int:
        return FIRST_LATENCY_SEED + rates.index(rate)

    def python_for(self, c: Candidate) -> str | None:
        return self.quix_python if c.quix_venv else sys.executable


def feature_vectors(n: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of n feature vectors as Driftway's features processor writes them: demo
    loan applications featurised (driftway.logic.features, which uses event_features, and the
    two per-entity features), as FeatureVector JSON, keyed by entity id."""
    from driftway.app.demo import DemoPlan, loan_applications
    from driftway.logic.features import featurize
    from driftway.schemas.events import RawEvent

    state: dict[str, Any] = {}
    for event, _label in loan_applications(DemoPlan(events=n, change_at=n // 2, seed=seed)):
        raw = RawEvent.model_validate(event)
        vector, state[raw.entity_id] = featurize(raw, state.get(raw.entity_id), time.time())
        yield raw.entity_id.encode(), vector.to_bytes()


def heads(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Feature vectors cut before their received_at value (the last field): the sender closes
    each with its own send time."""
    marker = b'"received_at":'
    out = []
    for key, value in feature_vectors(n, seed):
        cut = value.rindex(marker) + len(marker)
        assert value.endswith(b"}") and b"," not in value[cut:], value[cut:]
        out.append((key, value[:cut]))
    return out


def create_topics(bootstrap: str, names: Iterable[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names],
                                  request_timeout=30)
    for future in futures.values():
        future.result(30)


def end_offsets(bootstrap: str, topic: str) -> int:
    """Sum of the topic's high watermarks: records plus transaction markers."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{topic}"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(PARTITIONS))
    finally:
        c.close()


def fill(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                         "enable.idempotence": True, "acks": "all",
                         "partitioner": "murmur2_random"})
    t = time.monotonic()
    size = 0
    for key, value in feature_vectors(n, THROUGHPUT_SEED):
        produce_one(producer, topic, key, value)
        producer.poll(0)
        size += len(value)
    producer.flush(60)
    return {"records": n, "seconds": time.monotonic() - t, "mean_bytes": size / n}


def spec_for(bench: Bench, c: Candidate, phase: str, input_topic: str,
             output_topic: str) -> WorkerSpec:
    workdir = bench.workdir / f"{c.name}-{phase}"
    workdir.mkdir(parents=True, exist_ok=True)
    return WorkerSpec(runtime=c.runtime, bootstrap=bench.bootstrap, input_topic=input_topic,
                      output_topic=output_topic, group=f"pt-{c.name}-{phase}",
                      exactly_once=c.exactly_once, options=c.options, workdir=str(workdir))


def start(bench: Bench, c: Candidate, spec: WorkerSpec) -> WorkerProcess:
    python = bench.python_for(c)
    assert python is not None
    return WorkerProcess(python, spec, bench.workdir / f"{c.name}-{spec.group}.log")


def run_throughput(bench: Bench, c: Candidate) -> dict[str, Any]:
    """All N input records through the candidate, from a fresh group, as fast as it goes."""
    out_topic = f"pt-{c.name}-out"
    create_topics(bench.bootstrap, [out_topic])
    observer = Observer(bench.bootstrap, out_topic)
    observer.start()
    worker = start(bench, c, spec_for(bench, c, "tput", bench.input_topic, out_topic))
    r: dict[str, Any] = {}
    try:
        if not worker.wait_first(60):
            r["error"] = "no record consumed within 60 s" + (
                "" if worker.alive() else f" (worker exited with {worker.proc.returncode})")
            r["worker_error"] = worker.events.get("error", {}).get("error")
            r["log_tail"] = worker.tail()
            return r
        t0, cpu0 = worker.events["first"]["t"], worker.first_cpu
        m0 = bench.machine.sample(worker)
        r["startup_seconds"] = t0 - worker.started
        reached = observer.wait_count(bench.events, t0 + bench.phase_timeout)
        t1 = reached if reached is not None else time.time()
        cpu1 = worker.cpu()
        m1 = bench.machine.sample(worker)
        seen = observer.count if reached is None else bench.events
        r.update({
            "records": seen, "complete": reached is not None, "seconds": t1 - t0,
            "records_per_s": seen / (t1 - t0), "cpu_seconds": cpu1 - cpu0,
            "cpu_us_per_record": (cpu1 - cpu0) / max(1, seen) * 1e6,
            "cores": Machine.cores(m0, m1), "loadavg": list(os.getloadavg()),
        })
        if not worker.alive():
            r["error"] = f"worker exited with {worker.proc.returncode}"
            r["log_tail"] = worker.tail()
    finally:
        r["worker_exit"] = worker.stop()
        r["commits"] = worker.events.get("commits")
        r["versions"] = worker.events.get("hello", {}).get("versions")
        if "error" in worker.events:
            r["worker_error"] = worker.events["error"]["error"]
        time.sleep(1.0)  # let the observer read what the last commit released
        observer.stop()
    r["records_final"] = observer.count
    r["duplicates"] = max(0, observer.count - bench.events)
    with contextlib.suppress(Exception):
        r["txn_markers"] = end_offsets(bench.bootstrap, out_topic) - observer.count
    return r


def run_latency(bench: Bench, c: Candidate) -> dict[str, Any]:
    """Records sent at each fixed rate into an empty topic; send → seen on the output."""
    in_topic, out_topic = f"pt-{c.name}-lat-in", f"pt-{c.name}-lat-out"
    create_topics(bench.bootstrap, [in_topic, out_topic])
    observer = Observer(bench.bootstrap, out_topic, decode=True)
    observer.start()
    worker = start(bench, c, spec_for(bench, c, "lat", in_topic, out_topic))
    sender = Producer({"bootstrap.servers": bench.bootstrap, "linger.ms": 5,
                       "enable.idempotence": True, "acks": "all",
                       "partitioner": "murmur2_random"})
    r: dict[str, Any] = {"rates": {}}
    try:
        # Warm-up: until the first output shows (the worker has joined its group and serves),
        # then one more second.
        warm = f"loan-{WARMUP_SEED}"
        deadline = time.monotonic() + 60
        i = 0
        while not observer.phase(warm) and time.monotonic() < deadline and worker.alive():
            chunk = [bench.warmup[(i + j) % len(bench.warmup)] for j in range(50)]
            send_paced(sender, in_topic, chunk, WARMUP_RATE)
            i += 50
        if not observer.phase(warm):
            r["error"] = "no output within 60 s of warm-up" + (
                "" if worker.alive() else f" (worker exited with {worker.proc.returncode})")
            r["log_tail"] = worker.tail()
            return r
        send_paced(sender, in_topic, bench.warmup[:WARMUP_RATE], WARMUP_RATE)
        for rate in bench.rates:
            records = bench.latency_sets[rate]
            name = f"loan-{bench.seed(bench.rates, rate)}"
            m0 = bench.machine.sample(worker)
            sent = send_paced(sender, in_topic, records, rate)
            got = observer.wait_phase(name, len(records), timeout=max(10.0, bench.seconds))
            m1 = bench.machine.sample(worker)
            samples = observer.phase(name)
            total = [(seen - sent_at) * 1000 for sent_at, _, seen in samples]
            to_worker = [(done - sent_at) * 1000 for sent_at, done, _ in samples]
            after = [(seen - done) * 1000 for _, done, seen in samples]
            r["rates"][str(rate)] = {
                "sent": sent, "seen": got, "missing": len(records) - got,
                "p50_ms": percentile(total, 50), "p99_ms": percentile(total, 99),
                "max_ms": max(total, default=float("nan")),
                "send_to_processed_p50_ms": percentile(to_worker, 50),
                "send_to_processed_p99_ms": percentile(to_worker, 99),
                "processed_to_seen_p50_ms": percentile(after, 50),
                "processed_to_seen_p99_ms": percentile(after, 99),
                "cores": Machine.cores(m0, m1), "loadavg": list(os.getloadavg()),
            }
            if not worker.alive():
                r["error"] = f"worker exited with {worker.proc.returncode}"
                r["log_tail"] = worker.tail()
                break
    finally:
        r["worker_exit"] = worker.stop()
        r["commits"] = worker.events.get("commits")
        if "error" in worker.events:
            r["worker_error"] = worker.events["error"]["error"]
        observer.stop()
    return r


def run_candidate(bench: Bench, c: Candidate) -> dict[str, Any]:
    from rich.console import Console

    console = Console()
    r: dict[str, Any] = {"label": c.label, "runtime": c.runtime, "exactly_once": c.exactly_once,
                         "options": c.options, "interpreter": bench.python_for(c)}
    if bench.python_for(c) is None:
        r["skipped"] = ("quixstreams is not importable here and --quix-python was not given: "
                        "it pins confluent-kafka<2.13; install it in its own venv")
        console.print(f"  {c.name}: skipped ({r['skipped']})")
        return r
    console.print(f"  {c.name}: throughput, {bench.events:,} records…")
    r["throughput"] = run_throughput(bench, c)
    t = r["throughput"]
    if "records_per_s" in t:
        console.print(f"    {t['records_per_s']:,.0f} records/s, "
                      f"{t['cpu_us_per_record']:.1f} µs CPU/record"
                      + ("" if t["complete"] else f" (capped: {t['records']:,} records)"))
    if "error" in t:
        console.print(f"    [red]{t['error']}[/red] {t.get('worker_error') or ''}")
        return r
    console.print(f"  {c.name}: latency at {', '.join(f'{x:,}' for x in bench.rates)}/s…")
    r["latency"] = run_latency(bench, c)
    for rate, v in r["latency"]["rates"].items():
        console.print(f"    {int(rate):,}/s: p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms"
                      + (f", {v['missing']} missing" if v["missing"] else ""))
    if "error" in r["latency"]:
        console.print(f"    [red]{r['latency']['error']}[/red]")
    return r


def warm_up(bench: Bench) -> dict[str, Any]:
    """Load the broker (at least once, then transactions, then paced) before measuring."""
    out: dict[str, Any] = {}
    started = time.monotonic()
    for round_ in range(1 if bench.events < 100_000 else 2):
        for c in WARMUP_CANDIDATES:
            c = dataclasses.replace(c, name=f"{c.name}-{round_}")  # new topics and groups
            out[c.name] = run_throughput(bench, c)
    short = dataclasses.replace(bench, rates=bench.rates[:1])
    out["latency"] = run_latency(short, WARMUP_CANDIDATES[-1])
    out["seconds"] = time.monotonic() - started
    return out


# --------------------------------------------------------------------------------------------
# Report.


def cells(r: dict[str, Any], rates: list[int]) -> list[str]:
    """One table row of a candidate's results."""
    t = r.get("throughput", {})
    # Exactly-once is what the output topic shows: transaction markers, not the setting.
    eos = "yes" if r["exactly_once"] else "no"
    if r["exactly_once"] and t.get("txn_markers") == 0:
        eos = "asked, but 0 txn markers"
    row = [r["label"], eos]
    if "skipped" in r:
        return [*row, "skipped", "", *["" for _ in rates], ""]
    if "records_per_s" not in t:
        return [*row, f"failed: {t.get('error', '?')}", "", *["" for _ in rates], ""]
    capped = "" if t["complete"] else " (capped)"
    row += [f"{t['records_per_s']:,.0f}{capped}", f"{t['cpu_us_per_record']:.1f}"]
    lat = r.get("latency", {}).get("rates", {})
    for rate in rates:
        v = lat.get(str(rate))
        if v is None:
            row.append("–")
            continue
        note = f" ({v['missing']} missing)" if v["missing"] else ""
        if t["records_per_s"] < rate:
            note += " saturated"
        row.append(f"{v['p50_ms']:.0f} / {v['p99_ms']:.0f}{note}")
    # Cores busy outside the worker, the broker and this process (the machine is shared):
    # during the throughput phase, then the highest of the latency phases.
    others = [t.get("cores", {}).get("others", float("nan")),
              max((v.get("cores", {}).get("others", float("nan")) for v in lat.values()),
                  default=float("nan"))]
    row.append(" / ".join(f"{max(0.0, x):.1f}" for x in others))
    return row


def print_report(r: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    rates: list[int] = r["params"]["rates"]
    headers = ["candidate", "exactly-once", "records/s", "CPU µs/record",
               *[f"p50 / p99 ms at {x:,}/s" for x in rates], "other load, cores"]
    table = Table(title=f"pass-through, {r['params']['events']:,} records "
                        f"(~{r['fill']['mean_bytes']:.0f} B JSON), codec {CODEC}")
    for h in headers:
        table.add_column(h, justify="left" if h == "candidate" else "right")
    rows = [cells(c, rates) for c in r["candidates"].values()]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    md = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(md)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=None,
                   help="records in the throughput phase (200,000; 20,000 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a short check: 20,000 records, 3 s per latency rate")
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds of sending per latency rate (10; 3 with --quick)")
    p.add_argument("--rates", type=int, nargs="+", default=[1_000, 5_000],
                   help="offered rates of the latency phase, records/s (1000 5000)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=[c.name for c in CANDIDATES],
                   help="run only these candidates: " + ", ".join(c.name for c in CANDIDATES))
    p.add_argument("--quix-python", metavar="PATH", default=None,
                   help="interpreter of a venv with quixstreams (this one, if it has it)")
    p.add_argument("--phase-timeout", type=float, default=45.0,
                   help="longest throughput phase, s; a slower candidate is timed on what it "
                        "did by then (45)")
    p.add_argument("--keep-state", action="store_true", help="keep the temporary state directory")
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help="where the JSON goes (bench/results)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is None:
        args.events = args.events or (20_000 if args.quick else 200_000)
        args.seconds = args.seconds or (3.0 if args.quick else 10.0)
        args.rates = list(dict.fromkeys(args.rates))
        if args.events < 1 or args.seconds <= 0 or min(args.rates) <= 0:
            p.error("--events, --seconds and --rates must be positive")
    return args


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "codec": CODEC,
           "confluent_kafka": confluent_kafka.__version__,
           "librdkafka": confluent_kafka.libversion()[0]}
    for dist in ("faust-streaming", "aiokafka", "mode-streaming", "uvloop", "quixstreams",
                 "orjson", "msgspec"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return run_worker(args.worker)

    from rich.console import Console

    from driftway.io.broker import LocalBroker, free_port
    from driftway.settings import KafkaSettings, Settings

    console = Console()
    started = time.monotonic()
    record = start_record("passthrough.py")
    quix_python = args.quix_python or (
        sys.executable if util.find_spec("quixstreams") is not None else None)
    candidates = [c for c in CANDIDATES if not args.only or c.name in args.only]
    if quix_python is None or os.path.abspath(quix_python) == os.path.abspath(sys.executable):
        # The control row runs the bare loop in Quix's venv: pointless in this one.
        candidates = [c for c in candidates if c.name != "ck-eos-10ms-quixvenv"]
    r: dict[str, Any] = {
        **record,
        "params": {"events": args.events, "rates": args.rates, "seconds": args.seconds,
                   "partitions": PARTITIONS, "phase_timeout": args.phase_timeout,
                   "quix_python": quix_python},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(),
        "candidates": {},
    }

    console.print(f"generating latency data ({sum(round(x * args.seconds) for x in args.rates):,}"
                  " records)…")
    warmup = heads(WARMUP_RECORDS, WARMUP_SEED)
    latency_sets = {rate: heads(max(1, round(rate * args.seconds)), Bench.seed(args.rates, rate))
                    for rate in args.rates}

    state_dir = Path(tempfile.mkdtemp(prefix="driftway-passthrough-"))
    broker_port = free_port()
    controller_port = free_port()
    while controller_port == broker_port:
        controller_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    settings = Settings(state_dir=state_dir, kafka=KafkaSettings(
        bootstrap_servers=bootstrap, controller_port=controller_port))
    failed = True
    args.out = args.out.resolve()
    try:
        with LocalBroker(settings) as broker:
            input_topic = "pt-input"
            create_topics(bootstrap, [input_topic])
            console.print(f"broker on {bootstrap}; filling {input_topic} with "
                          f"{args.events:,} feature vectors…")
            r["fill"] = fill(bootstrap, input_topic, args.events)
            console.print(f"    {r['fill']['seconds']:.1f} s, "
                          f"{r['fill']['mean_bytes']:.0f} B/record")
            bench = Bench(bootstrap=bootstrap, workdir=state_dir / "workers",
                          input_topic=input_topic, events=args.events, rates=args.rates,
                          seconds=args.seconds, phase_timeout=args.phase_timeout,
                          quix_python=quix_python,
                          machine=Machine(broker.process.pid if broker.process else None),
                          warmup=warmup, latency_sets=latency_sets)
            console.print("warming the broker up (not reported)…")
            r["warmup"] = warm_up(bench)
            for c in candidates:
                r["candidates"][c.name] = run_candidate(bench, c)
        failed = False
    except BaseException as exc:
        r["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]benchmark failed: {r['error']}[/red]")
        if not isinstance(exc, Exception):
            raise
    finally:
        if args.keep_state or failed:
            console.print(f"state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)

    path = save_record(r, args.out, "passthrough", "machine", started, indent=2)
    if r["candidates"]:
        r["markdown"] = print_report(r)
        print(r["markdown"])
        path.write_text(json.dumps(r, indent=2) + "\n")
    console.print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
