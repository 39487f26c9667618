"""A ClickHouse that goes away: the sink waits, says so, and stores everything exactly once.

No ClickHouse server runs here, so the outage is the engine's connection failing on demand
(`Outage`, around the real embedded engine): refused inserts, unanswered queries, a connection
that cannot be opened. Kafka is the real broker. Rows are counted as stored — no FINAL, no
deduplication — so a row inserted twice would show.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from driftway.app.status import HealthReader
from driftway.consumers.sink import ClickHouseSink
from driftway.io.clickhouse import connect, ensure_schema
from driftway.io.kafka import ensure_topics, make_producer
from driftway.io.runtime import Runtime
from driftway.schemas.events import Label, ProcessHealth
from driftway.settings import ProcessingSettings, Settings, SinkSettings
from tests.integration.helpers import read_topic, wait_for
from tests.integration.test_sink import prediction

pytestmark = pytest.mark.integration


class Outage:
    """The engine's connection, failing while `down` (after `passes` more inserts)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.down = False
        self.passes = 0  # inserts that still go through once down
        self.inserted_while_down: list[str] = []
        self.refused = 0  # inserts and queries

    def insert(self, table: str | None = None, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            if self.passes <= 0:
                self.refused += 1
                raise OperationalError("Connection refused (the test's outage)")
            self.passes -= 1
            context = kwargs.get("context")
            self.inserted_while_down.append(table or context.table)
        return self.client.insert(table, *args, **kwargs)

    def create_insert_context(self, *args: Any, **kwargs: Any) -> Any:  # asks the columns
        if self.down:
            self.refused += 1
            raise OperationalError("Connection refused (the test's outage)")
        return self.client.create_insert_context(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.refused += 1
            raise OperationalError("Connection refused (the test's outage)")
        return self.client.query(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture
def settings(stack_settings: Settings, embedded_settings: Settings) -> Settings:
    settings = stack_settings.model_copy(update={
        "state_dir": embedded_settings.state_dir,
        "clickhouse_database": f"waits_{uuid.uuid4().hex[:8]}",
        # One transaction holds a whole burst, so an outage can fall between two inserts.
        "sink": SinkSettings(flush_seconds=1.5),
        "processing": ProcessingSettings(retry_first_seconds=0.2, retry_longest_seconds=1.0)})
    ensure_topics(settings)
    return settings


@pytest.fixture
def engine(settings: Settings) -> Iterator[Client]:
    client = connect(settings)
    ensure_schema(client, settings.clickhouse_database)
    yield client
    client.close()


def produce(settings: Settings, first: int, n: int, poison: bool = False) -> None:
    producer = make_producer(settings)
    for i in range(first, first + n):
        producer.produce(settings.topic("predictions"), key=b"u", value=prediction(f"e{i}"),
                         partition=i % 2)
        producer.produce(settings.topic("labels"), key=f"e{i}".encode(),
                         value=Label(event_id=f"e{i}", label=i % 3 == 0).to_bytes(),
                         partition=i % 2)
    if poison:
        producer.produce(settings.topic("predictions"), key=b"u", value=b'{"event_id": ',
                         partition=0)
    assert producer.flush(30) == 0


def stored(engine: Client, db: str, table: str) -> tuple[int, int]:
    """(rows, distinct source records) of a table, as stored."""
    count, distinct = engine.query(
        f"SELECT count(), uniqExact(_topic, _partition, _offset) FROM {db}.{table}"
    ).result_rows[0]
    return int(count), int(distinct)


def health(settings: Settings) -> list[ProcessHealth]:
    return [ProcessHealth.from_bytes(v) for _, _, v in read_topic(settings, "health",
                                                                  timeout=10)]


def running(settings: Settings, sink: ClickHouseSink) -> tuple[Runtime, threading.Thread]:
    runtime = Runtime(settings, sink, instance="waits")
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    return runtime, thread


def test_the_sink_waits_out_an_outage_between_two_inserts(settings: Settings,
                                                          engine: Client) -> None:
    db = settings.clickhouse_database
    outage = Outage(engine)
    sink = ClickHouseSink(settings, outage)  # type: ignore[arg-type]
    runtime, thread = running(settings, sink)
    probe = HealthReader(settings)
    try:
        produce(settings, 0, 200)
        wait_for(lambda: stored(engine, db, "labels"), lambda s: s == (200, 200), 60,
                 "the first records stored")
        # ClickHouse goes away after one more insert: the next flush stores one table of two
        # and fails on the other; its transaction is aborted and its input read again.
        outage.down, outage.passes = True, 1
        produce(settings, 200, 200, poison=True)
        waiting = wait_for(probe.waiting, lambda w: "sink" in w, 60, "the sink to wait")
        assert "Connection refused (the test's outage)" in waiting["sink"]
        wait_for(lambda: outage.refused, lambda n: n >= 4, 30, "tries with back-off")
        produce(settings, 400, 200)  # kept in Kafka meanwhile
        outage.down = False
        wait_for(lambda: (stored(engine, db, "predictions"), stored(engine, db, "labels")),
                 lambda s: s == ((600, 600), (600, 600)), 60, "every record stored once")
        wait_for(probe.waiting, lambda w: "sink" not in w, 30, "the status to clear")
    finally:
        runtime.stop()
        thread.join(30)
        probe.close()
    assert len(outage.inserted_while_down) == 1  # the partial flush happened
    assert stored(engine, db, "dead_letters") == (1, 1)
    states = [h.state for h in health(settings) if h.instance == "waits"]
    assert states[0] == "running" and states[-1] == "running" and "waiting" in states


def test_the_sink_waits_for_a_clickhouse_that_is_not_up_yet(settings: Settings,
                                                            engine: Client) -> None:
    db = settings.clickhouse_database
    up = threading.Event()
    tries = []

    def opener() -> Client:
        tries.append(1)
        if not up.is_set():
            raise OperationalError("Connection refused (not up yet)")
        return engine

    sink = ClickHouseSink(settings, opener=opener)
    produce(settings, 0, 100)
    runtime, thread = running(settings, sink)
    probe = HealthReader(settings)
    try:
        waiting = wait_for(probe.waiting, lambda w: "sink" in w, 60, "the sink to wait")
        assert "not up yet" in waiting["sink"]
        wait_for(lambda: len(tries), lambda n: n >= 3, 30, "tries with back-off")
        assert stored(engine, db, "predictions") == (0, 0)
        up.set()
        wait_for(lambda: (stored(engine, db, "predictions"), stored(engine, db, "labels")),
                 lambda s: s == ((100, 100), (100, 100)), 60, "every record stored once")
    finally:
        runtime.stop()
        thread.join(30)
        probe.close()
    assert thread.is_alive() is False
