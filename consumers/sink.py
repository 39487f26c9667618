"""The ClickHouse sink: Driftway's topics into monitoring tables, in batches, idempotently.

Offsets are committed only after the insert succeeded. Each row keeps its Kafka coordinates: on
partition assignment the sink resumes after the highest offset ClickHouse already holds, so a batch
that was inserted but not committed before a crash is not inserted again. When the engine is the
embedded chDB (one owning process), the sink also answers read-only queries on loopback, so that
`driftway query` works while the pipeline runs.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from driftway.io.clickhouse import (
    OFFSET_COLUMNS,
    SINK_TABLES,
    QueryResult,
    TableSpec,
    connect,
    dead_letter_row,
    ensure_schema,
    run_query,
)
from driftway.io.kafka import client_config
from driftway.schemas.events import DeadLetter, failure_reason
from driftway.settings import Settings

log = logging.getLogger(__name__)


def message_dead_letter(msg: Message, error: str) -> DeadLetter:
    """A dead letter for a record the sink could not decode."""
    return DeadLetter.of("sink", msg.topic(), msg.partition(), msg.offset(), msg.key(),
                         msg.value(), error)


class ClickHouseSink:
    """Consumes the monitored topics and writes each batch with one insert per table.

    `reader` is the connection that answers read-only queries (default: `client`). On chDB, a
    write refused in read-only mode leaves its connection read-only, so the sink's own inserts
    must not share a connection with user queries.
    """

    def __init__(self, settings: Settings, client: Client, reader: Client | None = None) -> None:
        self.settings = settings
        self.client = client
        self.reader = reader or client
        self.db = settings.clickhouse_database
        self.specs: dict[str, TableSpec] = {settings.topic(s.topic_key): s for s in SINK_TABLES}
        self.columns = {s.table: [*s.columns, *OFFSET_COLUMNS] for s in SINK_TABLES}
        self.lock = threading.Lock()  # one chDB engine: queries and inserts take turns
        self.stop_requested = threading.Event()
        self.rows_written = 0
        self._consumer = Consumer({
            **client_config(settings),
            "group.id": f"{settings.app_id}-sink",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # A crashed sink's partitions go to its successor after 10 s (the default is 45 s).
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
        })

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """Highest offset already in ClickHouse, per source topic and partition."""
        union = " UNION ALL ".join(
            f"SELECT _topic, _partition, _offset FROM {self.db}.{s.table}" for s in SINK_TABLES)
        sql = f"SELECT _topic, _partition, max(_offset) FROM ({union}) GROUP BY _topic, _partition"
        with self.lock:
            rows = self.client.query(sql).result_rows
        return {(t, int(p)): int(o) for t, p, o in rows}

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self.stored_offsets()
        for tp in partitions:
            if (tp.topic, tp.partition) in stored:
                tp.offset = stored[(tp.topic, tp.partition)] + 1
        consumer.assign(partitions)
        log.info("sink assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def decode(self, messages: Sequence[Message]) -> dict[str, list[list[Any]]]:
        """Rows per table; what does not decode becomes a dead_letters row.

        The sink stores its own dead letters directly, under the coordinates of the record that
        failed: resuming from stored offsets then skips that record too, where producing them to
        the dead-letter topic would repeat them on every redelivery. A record its table has no
        row for (a publish request on the training topic) is skipped; `write` still commits it.
        """
        rows: dict[str, list[list[Any]]] = defaultdict(list)
        for msg in messages:
            spec = self.specs[msg.topic()]
            coordinates = [msg.topic(), msg.partition(), msg.offset()]
            try:  # any failure of one record is its dead letter, never the batch's
                row = spec.to_row(spec.decode(msg.value() or b""))
            except Exception as exc:
                letter = message_dead_letter(msg, f"sink: {failure_reason(exc)}")
                rows["dead_letters"].append(dead_letter_row(letter) + coordinates)
                continue
            if row is not None:
                rows[spec.table].append(row + coordinates)
        return rows

    def write(self, messages: Sequence[Message]) -> None:
        """Insert one batch, then commit its offsets (skipped records' included)."""
        rows = self.decode(messages)
        letters: list[list[Any]] = []
        for table, table_rows in rows.items():
            if table != "dead_letters":
                self._insert_or_refuse(table, table_rows, messages, letters)
        dead = rows.get("dead_letters", []) + letters
        if dead:
            self._insert("dead_letters", dead, self.columns["dead_letters"])
        self.rows_written += sum(len(r) for r in rows.values())  # refused rows: dead letters
        ends: dict[tuple[str, int], int] = {}
        for msg in messages:
            key = (msg.topic(), msg.partition())
            ends[key] = max(ends.get(key, -1), msg.offset() + 1)
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()], asynchronous=False)

    def _insert_or_refuse(self, table: str, rows: list[list[Any]],
                          messages: Sequence[Message],
                          letters: list[list[Any]]) -> None:
        """Insert rows; when values do not fit the table's columns (a negative count for a
        UInt64, say), find the rows at fault by halving, and make each a dead letter."""
        try:
            self._insert(table, rows, self.columns[table])
        except DataError as exc:
            if len(rows) == 1:
                where = tuple(rows[0][-3:])  # the row's Kafka coordinates; rare: a scan will do
                msg = next(m for m in messages if (m.topic(), m.partition(), m.offset()) == where)
                letter = message_dead_letter(msg, f"sink: {table} refused the row: {exc}")
                letters.append(dead_letter_row(letter) + rows[0][-3:])
                return
            half = len(rows) // 2
            self._insert_or_refuse(table, rows[:half], messages, letters)
            self._insert_or_refuse(table, rows[half:], messages, letters)

    def _insert(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        for attempt in range(5):
            try:
                with self.lock:
                    self.client.insert(f"{self.db}.{table}", rows, column_names=columns)
                return
            except DataError:
                raise  # the rows, not the engine: retrying cannot help
            except Exception:
                if attempt == 4:
                    raise
                log.exception("insert into %s failed; retrying", table)
                time.sleep(0.5 * 2**attempt)

    def run(self) -> None:
        """Consume and write until stop_requested; then write what is pending and leave."""
        cfg = self.settings.sink
        self._consumer.subscribe(list(self.specs), on_assign=self._on_assign)
        pending: list[Message] = []
        deadline = time.monotonic() + cfg.flush_seconds
        try:
            while not self.stop_requested.is_set():
                wait = max(0.0, min(0.2, deadline - time.monotonic()))
                for msg in self._consumer.consume(cfg.batch_size - len(pending), timeout=wait):
                    err = msg.error()
                    if err is None:
                        pending.append(msg)
                    elif err.code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error: %s", err)
                if pending and (len(pending) >= cfg.batch_size or time.monotonic() >= deadline):
                    self.write(pending)
                    pending = []
                if time.monotonic() >= deadline:
                    deadline = time.monotonic() + cfg.flush_seconds
            if pending:
                self.write(pending)
        finally:
            self._consumer.close()

    def query(self, sql: str) -> QueryResult:
        """A read-only query on this sink's engine."""
        with self.lock:
            return run_query(self.reader, sql, self.db)


def query_endpoint_file(settings: Settings) -> Path:
    """Where the sink advertises its loopback query port."""
    return settings.state_dir / "query.json"


def serve_queries(sink: ClickHouseSink, port: int) -> ThreadingHTTPServer:
    """Answer POST /query (SQL in the body) with JSON, on 127.0.0.1, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sql = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            try:
                body, status = sink.query(sql).to_json(), HTTPStatus.OK
            except Exception as exc:
                body, status = {"error": str(exc)}, HTTPStatus.BAD_REQUEST
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="query-endpoint").start()
    return server


def main(settings: Settings) -> None:
    """Run the sink in the foreground until SIGTERM or Ctrl-C."""
    import os

    client = connect(settings)
    ensure_schema(client, settings.clickhouse_database, settings.sink.ttl_days,
                  settings.sink.rollup_ttl_days)
    reader = connect(settings) if settings.embedded_clickhouse else None
    sink = ClickHouseSink(settings, client, reader)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sink.stop_requested.set())
    server = None
    endpoint = query_endpoint_file(settings)
    if settings.embedded_clickhouse:
        server = serve_queries(sink, settings.sink.query_port)
        endpoint.parent.mkdir(parents=True, exist_ok=True)
        endpoint.write_text(json.dumps({"pid": os.getpid(), "port": server.server_address[1]}))
    try:
        sink.run()
    finally:
        if server is not None:
            server.shutdown()
            endpoint.unlink(missing_ok=True)
        if reader is not None:
            reader.close()
        client.close()
