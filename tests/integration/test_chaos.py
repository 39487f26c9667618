"""Chaos on the real broker: a labelled stream at a steady rate while every kind of process of a
supervised stack is killed with SIGKILL at random moments (some twice) and the broker is killed
and started again once. Nothing may be lost or doubled, the learner's versions must be those an
uninterrupted learner builds from the same training log, and the supervisor must never give up.

Counts are taken as stored — topics with read_committed readers, ClickHouse rows with FINAL off
— so a record written twice would show. The figures (kills, recovery times, records in flight)
are printed: `pytest -s tests/integration/test_chaos.py` shows them.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from driftway.app.query import query
from driftway.app.supervisor import RestartPolicy, Stack, _kill_tree
from driftway.io.broker import free_port, port_in_use
from driftway.io.kafka import client_config
from driftway.io.keys import with_signing_key
from driftway.io.registry import ModelRegistry
from driftway.logic.learning import Learner
from driftway.schemas import topology
from driftway.schemas.events import Prediction, TrainingExample, decode_training
from driftway.sdk import EventProducer
from driftway.settings import KafkaSettings, ProcessingSettings, Settings
from tests.integration.helpers import read_topic, wait_for
from tests.integration.test_model_lifecycle import event

pytestmark = pytest.mark.integration

EVENTS = 20_000
RATE = 400  # events a second, and as many labels
LABEL_DELAY = 200  # events between an event and its label
#: Each kind of process at least once, some twice; the broker once, mid-stream.
KILLS = ["scoring", "feedback", "learner", "drift", "sink", "scoring", "learner", "sink",
         "feedback"]


@dataclass
class Kill:
    name: str
    at: float  # monotonic
    in_flight: int | None = None  # records of its input not yet committed by it when killed
    targets: dict[tuple[str, int], int] = field(default_factory=dict)  # input ends then
    late: bool = False  # measured once the restarting broker answered, not at the kill
    recovered: float | None = None  # seconds until its group committed past them


class Watcher:
    """Committed offsets of the stack's consumer groups, through the admin API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer_conf = client_config(settings)
        self.consumer = Consumer({**self.consumer_conf, "group.id": "chaos-watermarks"})
        #: Not asked while the broker is down and for 3 s after its port opens again:
        #: librdkafka 2.16 asserting on a request that timed out then (rd_kafka_enq_once
        #: refcnt) aborted this process once.
        self.broker_killed = False
        self._open_since: float | None = None

    def _asking(self) -> None:
        if not self.broker_killed:
            return
        port = int(self.settings.kafka.bootstrap_servers.rsplit(":", 1)[1])
        if not port_in_use(port):
            self._open_since = None
            raise TimeoutError("the broker is down")
        self._open_since = self._open_since or time.monotonic()
        if time.monotonic() - self._open_since < 3:
            raise TimeoutError("the broker is starting")

    def ends(self, name: str) -> dict[tuple[str, int], int]:
        self._asking()
        out = {}
        for key in topology.processor(name).reads:
            topic = self.settings.topic(key)
            parts = self.consumer.list_topics(topic, timeout=5).topics[topic].partitions
            for p in parts:
                out[(topic, p)] = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=5, cached=False)[1]
        return out

    def committed(self, name: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        self._asking()
        group = f"{self.settings.app_id}-{name}"
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
        admin = AdminClient(self.consumer_conf)  # a fresh one: the broker may have restarted
        result = admin.list_consumer_group_offsets([request], request_timeout=5)
        found = result[group].result(timeout=10).topic_partitions
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}

    def measure(self, kill: Kill) -> None:
        """The killed one's input ends now, and what of it its group had not committed: at
        the kill, or once the broker answers again (`late`)."""
        group = "sink" if kill.name == "kafka" else kill.name
        try:
            targets = self.ends(group)
            committed = self.committed(group, list(targets))
        except Exception:  # the broker restarting: measured later
            return
        kill.targets = targets
        kill.in_flight = sum(max(0, e - committed.get(tp, 0)) for tp, e in targets.items())
        kill.late = time.monotonic() - kill.at > 1

    def recovered(self, kill: Kill) -> bool:
        """True (and its time noted) once the killed one's group committed past its targets."""
        if not kill.targets:
            self.measure(kill)
        if kill.recovered is None and kill.targets:
            try:
                done = self.committed("sink" if kill.name == "kafka" else kill.name,
                                      list(kill.targets))
            except Exception:  # asked again later
                return False
            if all(done.get(tp, 0) >= end for tp, end in kill.targets.items()):
                kill.recovered = time.monotonic() - kill.at
        return kill.recovered is not None


@contextmanager
def supervised(stack: Stack) -> Iterator[list[BaseException]]:
    """What `driftway up` does, every 0.2 s, in a thread, until the block ends: the list gets
    the error with which the supervisor gave up, if it did."""
    failures: list[BaseException] = []
    stopping = threading.Event()

    def supervise() -> None:
        while not stopping.is_set():
            try:
                stack.supervise()
            except BaseException as exc:
                failures.append(exc)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    try:
        yield failures
    finally:
        stopping.set()
        thread.join(10)


def figures(kills: list[Kill], out: Path) -> str:
    lines = [f"{'killed':10} {'in flight':>10} {'recovered in':>13}"]
    for k in kills:
        flight = "-" if k.in_flight is None else f"{k.in_flight:,}" + ("*" if k.late else "")
        took = "-" if k.recovered is None else f"{k.recovered:.1f} s"
        lines.append(f"{k.name:10} {flight:>10} {took:>13}")
    if any(k.late for k in kills):
        lines.append("* measured once the restarting broker answered: what was in flight then")
    text = "\n".join(lines)
    out.write_text(text + "\n")
    return text


def test_nothing_lost_nothing_doubled_through_kills_and_a_broker_restart(tmp_path: Path) -> None:
    settings = with_signing_key(Settings(
        state_dir=tmp_path / "state",
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}",
                            controller_port=free_port()),
        processing=ProcessingSettings(publish_every=2_000)))
    rng = random.Random(12)
    kills: list[Kill] = []
    with Stack(settings, RestartPolicy(limit=5, window=120)) as stack:
        stack.wait_until_serving()
        with supervised(stack) as failures:
            watcher = Watcher(stack.settings)

            order = KILLS[:]
            rng.shuffle(order)
            order.insert(len(order) // 2, "kafka")
            stream_seconds = EVENTS / RATE
            moments = sorted(rng.uniform(4, stream_seconds - 4) for _ in order)
            # At least 3 s apart: each kill meets a stack that has started what was killed before.
            for i in range(1, len(moments)):
                moments[i] = max(moments[i], moments[i - 1] + 3)

            def kill(name: str) -> None:
                kills.append(Kill(name, time.monotonic()))
                watcher.measure(kills[-1])
                if name == "kafka":
                    watcher.broker_killed = True
                    assert stack.broker is not None and stack.broker.process is not None
                    _kill_tree(stack.broker.process.pid)
                else:  # started again by the supervisor after an earlier kill, by now
                    wait_for(lambda: name in stack.children, bool, 30, f"{name} running")
                    _kill_tree(stack.children[name].pid)

            sdk = EventProducer(stack.settings)
            began = time.monotonic()
            next_kill = 0
            for i in range(EVENTS):
                sdk.send_event(event(i, "c"))
                if i >= LABEL_DELAY:
                    sdk.send_label({"event_id": f"c-{i - LABEL_DELAY}", "label": i % 3 == 0})
                if i % 40 == 39:  # a steady rate
                    time.sleep(max(0.0, began + (i + 1) / RATE - time.monotonic()))
                if next_kill < len(order) and time.monotonic() - began >= moments[next_kill]:
                    kill(order[next_kill])
                    next_kill += 1
                if i % 400 == 0:  # recovered: its group committed past what was there at the kill
                    for k in kills:
                        watcher.recovered(k)
            for i in range(EVENTS - LABEL_DELAY, EVENTS):
                sdk.send_label({"event_id": f"c-{i}", "label": (i + LABEL_DELAY) % 3 == 0})
            sdk.flush()
            assert next_kill == len(order)

            # Every event served once, as a read_committed subscriber sees it.
            ids = {f"c-{i}" for i in range(EVENTS)}
            served = Counter(Prediction.from_bytes(v).event_id
                             for _, _, v in read_topic(stack.settings, "predictions", EVENTS, 300))
            assert served == Counter(dict.fromkeys(ids, 1))
            # Every example joined once, in one order: the training log.
            training = read_topic(stack.settings, "training", EVENTS, 300)
            records = [(offset, decode_training(v)) for _, offset, v in training]
            joined = Counter(r.event_id for _, r in records if isinstance(r, TrainingExample))
            assert joined == Counter(dict.fromkeys(ids, 1))
            # Stored once each (the sink was killed too), labels included.
            for table in ("predictions", "labels", "training"):
                wait_for(lambda t=table: query(stack.settings,
                                               f"SELECT count(), uniqExact(event_id) FROM {t} "
                                               "SETTINGS final = 0").rows[0],
                         lambda row: list(row) == [EVENTS, EVENTS], 180, f"one {table} row each")
            for k in kills:
                watcher.recovered(k)  # an upper bound, where measured this late

            # The learner's versions are those of an uninterrupted learner on the same log.
            reference = Learner(stack.settings)
            meta0, _, model0 = reference.first_version()
            reference.add_line(meta0.version, meta0, model0, start=0)
            published = [meta0.version]
            for offset, record in records:
                published += [p.meta.version for p in reference.step(offset, record).published]
            registry = ModelRegistry(stack.settings, name="chaos")
            try:
                wait_for(lambda: (registry.poll(0.5), set(registry.versions))[1],
                         lambda have: have >= set(published), 120, "every version published")
                assert set(registry.versions) == set(published)
            finally:
                registry.close()
        assert not failures, f"the supervisor gave up: {failures[0]}"
        restarted = dict(stack.restarts)
    print("\n" + figures(kills, tmp_path / "chaos.txt"))
    print(f"restarts by the supervisor: {restarted}")
    assert all(restarted.get(name, 0) >= 1 for name in set(KILLS) | {"kafka"})
