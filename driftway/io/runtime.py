"""The processor runtime: the one shell every processor of the data plane runs in.

A processor is a name in the topology and a function from one input record (and, if it keeps
state, its partition's store) to the records it writes. The shell owns the rest, once:

- batched consumption through librdkafka, as one consumer group (``<app_id>-<name>``) over the
  topics the topology says the processor reads, reading committed records only;
- exactly-once output: everything a batch writes — output, dead letters, the state's changelog —
  goes out in one Kafka transaction with the input offsets it consumed, committed every
  ``processing.commit_interval`` seconds under load, and as soon as the input goes quiet
  otherwise (``processing.commit_min_interval``): the latency a read_committed reader sees,
  traded against the cost of a commit. A transaction that holds nothing another reader waits
  for (input offsets and the state's changelog only) commits every
  ``processing.commit_idle_interval``;
- dead letters: whatever handling one record raises makes that record a dead letter with the
  reason, its state changes undone, and its neighbours are served; a failure that is not a
  record's (the broker, a transaction that cannot commit) ends the run with the transaction
  aborted, so its input is read again by whoever takes the partitions over;
- changelog-backed state, restored for each partition before its first record, on every
  assignment;
- waiting out a store outside Kafka that went away (``Unavailable``: the sink's ClickHouse;
  driftway.io.holdback): the transaction is aborted, its input held back and read again from
  the committed offsets once the store is back, tried with back-off, and the wait said on the
  health topic;
- rebalances (a revoked partition's transaction is committed first), shutdown, and metrics.

Quix Streams' checkpoints and Kafka Streams' tasks are the model: processing never touches
offsets, and a commit is one atomic step for output, state and position.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from driftway.io.holdback import HeldInput, Unavailable
from driftway.io.kafka import client_config, produce, producer_config, take
from driftway.io.metrics import Metrics
from driftway.io.state import Store, restore
from driftway.schemas import topology
from driftway.schemas.events import DeadLetter, failure_reason
from driftway.settings import Settings

log = logging.getLogger(__name__)


class Incoming(NamedTuple):
    """One input record as a processor sees it."""

    topic: str  # the topic's key in the topology (raw, features…)
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    received_at: float  # when the runtime took the batch it came in (Unix seconds)


class Out(NamedTuple):
    """One record a processor writes."""

    topic: str  # the topic's key in the topology
    key: bytes | str | None
    value: bytes | None
    partition: int | None = None  # None: the key's partition


class Processor(Protocol):
    """What a processor module gives the runtime.

    Besides `handle`, a processor may define (the runtime looks them up):

    - ``start(stopping)``: once, before the first record (scoring waits for something to
      serve); the records it returns are written and committed before any is read (the
      learner's version zero and its deployment). A start that waits returns once `stopping`
      (the runtime's stop event: SIGTERM, Ctrl-C) is set, and the runtime then ends there;
    - ``begin_batch()``: before each batch (scoring takes the current serving set), and the
      records it returns are written with the batch (the learner follows deployments);
    - ``end_batch()``: after each batch, the records it returns are written with it (the
      learner's live updates, on a topic the topology writes outside the transactions:
      those go out at once);
    - ``tick(now, stores)``: once a second, the records a timer makes (feedback's expiry);
    - ``flush()``: before each commit, writes what it keeps for a store outside Kafka and
      returns the records to write with the commit (the sink inserts into ClickHouse); if it
      raises ``Unavailable``, the runtime waits for the store (see there); anything else
      aborts the transaction and ends the process;
    - ``abort()``: a transaction was aborted: forget what the next flush would have written;
    - ``resume_at(assigned)``: on assignment, and before input held back for an unavailable
      store is read again, the offsets to read the given (topic key, partition) pairs from
      instead of the committed ones (the learner resumes at its versions' end; the sink
      learns what ClickHouse already holds); it may raise ``Unavailable``;
    - ``commit_interval`` / ``commit_records`` / ``commit_min_interval``: seconds and records
      per transaction, and how soon a transaction whose input went quiet commits, instead of
      ``processing.commit_interval``, no limit and ``processing.commit_min_interval``;
    - ``fetch_wait``: seconds the broker may hold a fetch to gather more input (up to
      ``FETCH_GATHER_BYTES``), for a processor no reader waits on record by record (the sink
      inserts every ``sink.flush_seconds``): one fetch then brings many commits' records
      instead of one fetch per upstream commit (bench/README.md, "Fewer requests");
    - ``close()``: after the last commit, whatever the processor opened itself.
    """

    name: str

    def handle(self, record: Incoming, store: Store | None) -> Iterable[Out]:
        """The records one input record makes; raise and it becomes a dead letter."""
        ...


#: What a processor with a ``fetch_wait`` lets the broker gather before a fetch returns.
FETCH_GATHER_BYTES = 1024 * 1024


def fetch_config(fetch_wait: float | None) -> dict[str, int]:
    """The consumer's fetch settings: a fetch returns as soon as input is there (waiting at
    most 100 ms on an idle topic), or, with `fetch_wait` seconds, once it has gathered
    FETCH_GATHER_BYTES or that long has passed.

    >>> fetch_config(None), fetch_config(0.25)
    ({'fetch.wait.max.ms': 100, 'fetch.min.bytes': 1}, {'fetch.wait.max.ms': 250, \
'fetch.min.bytes': 1048576})
    """
    if fetch_wait is None:
        return {"fetch.wait.max.ms": 100, "fetch.min.bytes": 1}
    return {"fetch.wait.max.ms": max(1, round(fetch_wait * 1000)),
            "fetch.min.bytes": FETCH_GATHER_BYTES}


class Runtime:
    """Runs one processor until stopped (SIGTERM, Ctrl-C, or ``stop``)."""

    def __init__(self, settings: Settings, processor: Processor,
                 instance: str | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.spec = topology.processor(processor.name)
        self.topics = {settings.topic(key): key for key in self.spec.reads}
        self.state_topic = settings.topic(self.spec.state) if self.spec.state else None
        self.stores: dict[int, Store] = {}
        # Input whose bad records another processor dead-letters (topology `checked_by`).
        self._passed_over = passed_over(processor.name)
        self.metrics = Metrics()
        self.stopping = threading.Event()
        p = settings.processing
        self._dead_letters = settings.topic("dead-letters")
        self._names = {key: settings.topic(key) for key in topology.TOPIC_KEYS}
        self._in_transaction = False
        self._transaction_started = 0.0
        self._touched: set[tuple[str, int]] = set()  # partitions read in this transaction
        self._transaction_records = 0
        # True once the open transaction holds a record another reader waits for (not only
        # offsets and the changelog), or the processor writes a store at its commit (the sink).
        self._output = False
        self._closed = False
        self._errors: list[str] = []  # deliveries that failed (reported for failures only)
        # Input held back while a store outside Kafka is unavailable.
        self._held = HeldInput(p.retry_first_seconds, p.retry_longest_seconds)
        group = f"{settings.app_id}-{processor.name}"
        self.instance = instance or socket.gethostname()
        # The same id after a restart: initialising it fences the crashed instance and aborts
        # the transaction it left open, so readers are not held back until it times out.
        self.transactional_id = f"{group}-{self.instance}"
        self.consumer = Consumer({
            **client_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "client.id": f"{processor.name}-consumer",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            **fetch_config(getattr(processor, "fetch_wait", None)),
        })
        self.producer = Producer(producer_config(
            settings, **{"transactional.id": self.transactional_id,
                         "client.id": f"{processor.name}-producer",
                         "transaction.timeout.ms": p.transaction_timeout_ms,
                         # Output becomes visible at the commit, which sends what is queued
                         # at once: lingering until then (or until a batch is full) makes
                         # one produce request per commit instead of one per partition every
                         # few ms (bench/README.md: the broker's cost is per request).
                         "linger.ms": 1000,
                         # A transaction begun right after a commit is refused while the broker
                         # completes the last one; librdkafka's default 100 ms back-off before
                         # the retry was most of a commit's latency (bench/passthrough.py).
                         "retry.backoff.ms": 5,
                         "delivery.report.only.error": True,
                         # The largest record a topic it writes takes (the learner's live
                         # updates of a heavy model); the broker holds every other to 1 MB.
                         "message.max.bytes": largest_record(self.spec.writes),
                         "on_delivery": self._on_delivery}))
        self._produce = self.producer.produce
        # Topics written at once, outside the transactions (the learner's live updates).
        direct = [k for k in self.spec.writes if not topology.topic(k).transactional]
        self._direct = {settings.topic(k) for k in direct}
        self.direct: Producer | None = None
        if direct:
            self.direct = Producer(producer_config(settings, **{
                "client.id": f"{processor.name}-direct", "linger.ms": 0,
                "message.max.bytes": largest_record(direct),
                "on_delivery": self._on_direct_delivery}))

    # -- the loop -------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Leave the group (for a runtime that never ran; `run` closes its own)."""
        if not self._closed:
            self._closed = True
            self.consumer.close()

    def run(self) -> None:
        p = self.settings.processing
        self.producer.init_transactions(30)
        start = getattr(self.processor, "start", None)
        if start is not None:
            outs = start(self.stopping)
            if self.stopping.is_set():  # stopped while it waited: nothing read, nothing owed
                self._shut_down()
                return
            if outs:  # what a processor writes before any record (the learner's version zero)
                self._begin()
                self._write(outs)
                self._commit()
        self._health()  # running: whatever the last of this instance said is over
        self.consumer.subscribe(list(self.topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("%s reading %s as %s", self.processor.name, ", ".join(self.topics),
                 self.transactional_id)
        last_log = last_tick = time.monotonic()
        tick = getattr(self.processor, "tick", None)
        end_batch = getattr(self.processor, "end_batch", None)
        interval = getattr(self.processor, "commit_interval", p.commit_interval)
        quiet = min(interval, getattr(self.processor, "commit_min_interval",
                                      p.commit_min_interval))
        idle = max(interval, p.commit_idle_interval)
        writes_store = getattr(self.processor, "flush", None) is not None
        most = getattr(self.processor, "commit_records", None) or float("inf")

        def due(busy: bool) -> float:
            """How old the open transaction may get: `interval` under load, `quiet` once the
            input goes quiet, `idle` while it holds nothing a reader waits for."""
            if not (self._output or writes_store):
                return idle
            return interval if busy else quiet

        try:
            while not self.stopping.is_set():
                if self._held:
                    self._try_resume()
                wait = p.batch_within
                if self._in_transaction:  # wait no longer than until it may commit early
                    wait = min(wait, max(0.001, due(False) - self._open_for()))
                try:
                    # a record never waits for a batch to fill
                    messages = take(self.consumer, p.batch_size, wait)
                    if messages:
                        began = time.monotonic()
                        self._process(messages)
                        if end_batch is not None:
                            self._write(end_batch() or ())
                        if self.direct is not None:
                            self.direct.poll(0)
                        self.metrics.batch(len(messages), time.monotonic() - began)
                        self._transaction_records += len(messages)
                    if tick is not None and time.monotonic() - last_tick >= 1.0:
                        last_tick = time.monotonic()
                        self._tick(tick)
                    # Commit every `interval` under load; as soon as the input goes quiet
                    # otherwise (once `quiet` has passed): a record waits for more work only
                    # while more is coming. A transaction nobody waits for commits at `idle`.
                    if self._in_transaction and (self._open_for() >= due(bool(messages))
                                                 or self._transaction_records >= most):
                        self._commit()
                except Unavailable as exc:
                    self._hold_back(exc)
                if time.monotonic() - last_log >= p.metrics_log_seconds:
                    last_log = time.monotonic()
                    log.info(self.metrics.line(self.processor.name, self._lag()))
                    self.metrics = Metrics()
            if self._in_transaction:
                try:
                    self._commit()
                except Unavailable as exc:  # read again by the next run: nothing is lost
                    log.warning("%s stops with its last transaction aborted (%s): its input "
                                "is read again when it runs next", self.processor.name, exc)
                    self._abort()
            log.info(self.metrics.line(self.processor.name, self._lag()))  # the last report
        except BaseException:
            self._abort()
            raise
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        """Leave the group, deliver what went outside the transactions, close the processor."""
        self.close()
        if self.direct is not None:
            self.direct.flush(10)
        close = getattr(self.processor, "close", None)
        if close is not None:
            close()

    def _open_for(self) -> float:
        return time.monotonic() - self._transaction_started

    def _begin(self) -> None:
        if not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
            self._transaction_started = time.monotonic()

    def _tick(self, tick: Callable[[float, dict[int, Store]], Iterable[Out]]) -> None:
        """The processor's timer (once a second): what it writes and changes is committed with
        the next batch, or on its own."""
        outs = list(tick(time.time(), self.stores))
        for store in self.stores.values():
            store.commit_record()
        if outs or any(store.has_changes for store in self.stores.values()):
            self._begin()
            self._write(outs)

    def _process(self, messages: list[Message]) -> None:
        self._begin()
        begin_batch = getattr(self.processor, "begin_batch", None)
        if begin_batch is not None:
            self._write(begin_batch() or ())
        now = time.time()
        # Locals: this loop runs once per record of every processor.
        topics, touched, emit = self.topics, self._touched, self._emit
        passed_over = self._passed_over
        handle, stores = self.processor.handle, self.stores if self.state_topic else None
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("%s consumer: %s", self.processor.name, error)
                continue
            topic, partition = msg.topic(), msg.partition()
            record = Incoming(topics[topic], partition, msg.offset(), msg.key(), msg.value(),
                              now)
            store = stores.get(partition) if stores is not None else None
            if store is not None:
                store.begin()
            try:
                outs = list(handle(record, store))
            except Exception as exc:  # the record's failure: one dead letter, nothing else
                if store is not None:
                    store.undo()
                if record.topic in passed_over:  # another reader's dead letter
                    touched.add((topic, partition))
                    continue
                self.metrics.dead_letters += 1
                self._output = True
                letter = DeadLetter.of(self.processor.name, topic, partition, record.offset,
                                       record.key, record.value, failure_reason(exc))
                emit(self._dead_letters, letter.source_topic, letter.to_bytes())
            else:
                if store is not None:
                    store.commit_record()
                self._write(outs)
            touched.add((topic, partition))

    def _write(self, outs: Iterable[Out]) -> None:
        """Queue a processor's records in the open transaction."""
        names, emit, direct = self._names, self._emit, self._direct
        for out in outs:
            topic = names[out.topic]
            if topic in direct:
                assert self.direct is not None
                produce(self.direct, topic, out.key, out.value, None, out.partition)
            else:
                emit(topic, out.key, out.value, out.partition)
                self._output = True

    def _emit(self, topic: str, key: bytes | str | None, value: bytes | None,
              partition: int | None = None) -> None:
        # Delivery reports come for failures only (a callback per record cost more than the
        # produce call): a record the transaction could not deliver fails its commit, and the
        # next produce, with the broker's reason.
        try:
            if partition is None:
                self._produce(topic, value, key)
            else:
                self._produce(topic, value, key, partition)
        except BufferError:  # librdkafka's queue is full: serve it, then queue again
            produce(self.producer, topic, key, value, None, partition)
        except KafkaException as exc:
            self._raise_undelivered(exc)
            raise

    def _on_direct_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # the next one carries the same and more: not a loss
            log.warning("%s: a record to %s was not delivered: %s", self.processor.name,
                        msg.topic(), err)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _raise_undelivered(self, cause: BaseException | None = None) -> None:
        """Raise the broker's reason for the records it refused, if any. A refused record can
        fail the transaction before its delivery report is served (a transactional call then
        says only "erroneous state"): the reports are served first."""
        self.producer.poll(0)
        if not self._errors:
            self.producer.flush(1)
        if self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError(f"{len(errors)} records not delivered, the transaction is "
                               f"aborted: {errors[:3]}") from cause

    # -- transactions ---------------------------------------------------------------------

    def _commit(self) -> None:
        """Output, state changes and input offsets, in one transaction."""
        began = time.monotonic()
        flush = getattr(self.processor, "flush", None)
        if flush is not None:
            self._write(flush())
        if self.state_topic is not None:
            for partition, store in self.stores.items():
                for key, value in store.take_changes().items():
                    self._emit(self.state_topic, key, value, partition)
        # The consumer's positions, not last offset + 1: they step over the commit markers of
        # transactional input, so a caught-up processor shows no lag.
        offsets = [tp for tp in self.consumer.position(
            [TopicPartition(t, p) for t, p in self._touched]) if tp.offset >= 0]
        if self._output:
            # Send what lingers now (flush without waiting: librdkafka ignores linger.ms while
            # flushing): its produce requests are answered while the offsets are sent, not
            # after, when commit_transaction would first flush them. At 100 ev/s: commit
            # 29 -> 22 ms (scoring), 19 -> 16 ms (feedback), p50 (bench/README.md).
            self.producer.flush(0)
        try:
            if offsets:
                metadata = self.consumer.consumer_group_metadata()
                _retrying(lambda: self.producer.send_offsets_to_transaction(offsets, metadata,
                                                                            30))
            _retrying(lambda: self.producer.commit_transaction(60))  # fails if one undelivered
        except KafkaException as exc:
            self._raise_undelivered(exc)
            raise
        self._in_transaction = False
        self._output = False
        self._touched.clear()
        self._transaction_records = 0
        self.metrics.commit(time.monotonic() - began)

    def _lag(self) -> int | None:
        """Records of the assigned input not read yet, from librdkafka's cached watermarks."""
        try:
            positions = self.consumer.position(self.consumer.assignment())
            lag = 0
            for tp in positions:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    lag += max(0, high - tp.offset)
            return lag
        except KafkaException:
            return None

    def _abort(self) -> None:
        if not self._in_transaction:
            return
        self._in_transaction = False
        self._output = False
        self._transaction_records = 0
        abort = getattr(self.processor, "abort", None)
        if abort is not None:
            abort()
        try:
            self.producer.abort_transaction(10)
        except KafkaException as exc:
            log.warning("%s: could not abort its transaction (%s); it times out",
                        self.processor.name, exc)

    # -- rebalances -------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        resume_at = getattr(self.processor, "resume_at", None)
        if resume_at is not None:
            try:
                offsets = resume_at([(self.topics[tp.topic], tp.partition)
                                     for tp in partitions])
            except Unavailable as exc:  # held back until the store answers
                consumer.assign(partitions)
                self._hold_back(exc, {(tp.topic, tp.partition): None for tp in partitions})
                return
            for tp in partitions:
                tp.offset = offsets.get((self.topics[tp.topic], tp.partition), tp.offset)
            consumer.assign(partitions)
        if self._held:  # a store is away: these wait with the rest
            consumer.pause(partitions)
        self._restore({tp.partition for tp in partitions})

    def _restore(self, numbers: set[int]) -> None:
        """The stores of these partitions, from the changelog, where not held already."""
        if self.state_topic is None:
            return
        missing = sorted(numbers - set(self.stores))
        if missing:
            restored = restore(self.settings, self.state_topic, missing)
            self.stores.update(restored)
            log.info("%s restored partitions %s: %s keys", self.processor.name, missing,
                     [len(store.data) for store in restored.values()])

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._in_transaction:
            try:
                self._commit()  # what was done for the partitions leaving is committed first
            except Unavailable as exc:  # their next owner reads them from the committed offsets
                log.warning("%s: partitions revoked while %s; their transaction is aborted",
                            self.processor.name, exc)
                self._abort()
                self._touched.clear()
        self._drop(partitions)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._abort()  # another member may own them already: what we did must not count
        self._touched.clear()
        self._drop(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._held.forget((tp.topic, tp.partition))
        for number in {tp.partition for tp in partitions}:
            self.stores.pop(number, None)

    # -- a store that went away -------------------------------------------------------------

    def _hold_back(self, exc: Unavailable,
                   partitions: dict[tuple[str, int], int | None] | None = None) -> None:
        """Hold the input back while the processor's store is unavailable: `partitions` (by
        default: what the aborted transaction read, to be read again from the committed
        offsets) wait for ``resume_at``, and the whole assignment is paused until then."""
        if partitions is None:  # the transaction's flush: abort it, read its input again
            touched = [TopicPartition(t, p) for t, p in self._touched]
            self._abort()
            self._touched.clear()
            committed = self.consumer.committed(touched, timeout=30) if touched else []
            partitions = {(tp.topic, tp.partition): tp.offset if tp.offset >= 0
                          else OFFSET_BEGINNING for tp in committed}
            # Its stores hold the aborted changes: restored from the changelog again.
            self._drop([TopicPartition(t, p) for t, p in partitions])
        delay = self._held.hold(self.consumer, str(exc), partitions)
        log.warning("%s waits: %s (try %d; the next in %.1fs; %d partitions held back, "
                    "nothing is skipped)", self.processor.name, exc, self._held.attempts, delay,
                    len(self._held.partitions))
        self._health()

    def _try_resume(self) -> None:
        """Once the back-off has passed, ask ``resume_at`` again; when the store answers, read
        the held partitions again from where it says, or where they were held."""
        if not self._held.due:
            return
        resume_at = getattr(self.processor, "resume_at", None)
        try:
            asked = resume_at([(self.topics[t], p) for t, p in self._held.partitions]) \
                if resume_at else {}
        except Unavailable as exc:
            self._hold_back(exc, {})
            return
        tries, since = self._held.attempts, self._held.since
        names = {key: name for name, key in self.topics.items()}
        numbers = self._held.release(self.consumer, {(names[key], partition): offset
                                                     for (key, partition), offset in asked.items()})
        self._restore(numbers)
        log.warning("%s: its store is back after %d tries and %.0fs; reading again",
                    self.processor.name, tries, time.time() - since)
        self._health()

    def _health(self) -> None:
        """Say on the health topic what this process does (when its topology writes it)."""
        if "health" not in self.spec.writes:
            return
        record = self._held.health(self.processor.name, self.instance)
        self._write([Out("health", f"{self.processor.name}/{self.instance}",
                         record.to_bytes())])
        if self.direct is not None:
            self.direct.poll(0)


def largest_record(keys: Iterable[str]) -> int:
    """The largest record any of these topics takes (librdkafka's and the broker's default,
    1 MB, where a topic sets none)."""
    return max(topology.topic(k).max_message_bytes or 1_000_000 for k in keys)


def passed_over(name: str) -> frozenset[str]:
    """The topic keys a processor reads whose bad records another processor dead-letters.

    >>> sorted(passed_over("sink")), sorted(passed_over("drift")), sorted(passed_over("feedback"))
    (['labels', 'training'], ['served'], [])
    """
    return frozenset(k for k in topology.processor(name).reads
                     if topology.topic(k).checked_by not in (None, name))


def _retrying(call: Callable[[], None], attempts: int = 5) -> None:
    """A transactional call, again while the broker says its error is retriable (a coordinator
    loading or moving); an error that needs an abort, or a fatal one, is raised."""
    for attempt in range(attempts):
        try:
            call()
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or attempt == attempts - 1:
                raise
            log.warning("transaction call failed (%s); retrying", error)
            time.sleep(0.1 * 2**attempt)


def run_processor(settings: Settings, processor: Processor, instance: str | None = None) -> None:
    """Run a processor in the foreground until SIGTERM or Ctrl-C."""
    runtime = Runtime(settings, processor, instance)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runtime.stop())
    # What start-up built (River, scipy, pydantic, the processor: ~110,000 objects) lives as long
    # as the process: kept out of the cyclic collector, a full collection no longer walks it
    # (each took 130-210 ms mid-stream, a pause in every record's latency) and neither does the
    # one at exit (a stop took 0.9 s, now 0.1 s).
    gc.collect()
    gc.freeze()
    runtime.run()
