"""The ClickHouse sink: Driftway's topics into monitoring tables, in batches, idempotently.

Offsets are committed only after the insert succeeded. Each row keeps its Kafka coordinates: on
partition assignment the sink resumes after the highest offset ClickHouse already holds, so a batch
that was inserted but not committed before a crash is not inserted again. When the engine is the
embedded chDB (one owning process), the sink also answers read-only queries on loopback, so that
`driftway query` works while the pipeline runs.

The sink also runs the registry's retention rule (``driftway.logic.registry.kept``): it owns
what the rule needs to know — the versions stored predictions name, and the deployments' history
— and its tombstones commit in its transactions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError

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
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Incoming, Out, passed_over, run_processor
from driftway.logic.registry import prunable, tombstones
from driftway.schemas.events import DeadLetter, failure_reason
from driftway.settings import Settings

log = logging.getLogger(__name__)


class ClickHouseSink:
    """The sink, a processor on the runtime: records in, rows out at each commit.

    `handle` turns each record into its table's row (or, if it does not decode, a dead_letters
    row under its own coordinates) and keeps it; `flush`, which the runtime calls before each
    commit, inserts what it kept with one insert per table. So offsets are committed only after
    the insert succeeded, and `resume_at` starts each assigned partition after the highest
    offset ClickHouse already holds, so a batch inserted but not committed before a crash is not
    inserted again. The sink stores its own dead letters directly: resuming from stored offsets
    then skips a record that failed too, where producing them to the dead-letter topic in an
    aborted transaction would lose them. A record its table has no row for (a publish request
    on the training topic) is skipped and committed.

    `reader` is the connection that answers read-only queries (default: `client`). On chDB, a
    write refused in read-only mode leaves its connection read-only, so the sink's own inserts
    must not share a connection with user queries.

    Every ``registry.prune_every_seconds`` (from ``registry.prune_grace_seconds`` after it
    starts, so that a sink that was down has stored the predictions it missed), `tick` writes
    the tombstones of the artifacts the retention rule prunes, with its next commit.
    """

    name = "sink"

    def __init__(self, settings: Settings, client: Client, reader: Client | None = None) -> None:
        self.settings = settings
        self.client = client
        self.reader = reader or client
        self.db = settings.clickhouse_database
        self.specs: dict[str, TableSpec] = {s.topic_key: s for s in SINK_TABLES}
        self.columns = {s.table: [*s.columns, *OFFSET_COLUMNS] for s in SINK_TABLES}
        self.names = {s.topic_key: settings.topic(s.topic_key) for s in SINK_TABLES}
        self.lock = threading.Lock()  # one chDB engine: queries and inserts take turns
        self.rows_written = 0
        self.pending: dict[str, list[list[Any]]] = defaultdict(list)
        self.payloads: dict[str, list[bytes | None]] = defaultdict(list)  # beside each row
        self.commit_interval = settings.sink.flush_seconds
        self.passed_over = passed_over(self.name)
        self.commit_min_interval = settings.sink.flush_seconds  # an insert per commit: no early
        self.commit_records = settings.sink.batch_size
        # The retention rule's: the registry is its rounds' thread's alone.
        self.registry: ModelRegistry | None = None  # opened by the first round
        self.registry_stale = False
        self.next_prune: float | None = None  # Unix seconds
        self.pruning: threading.Thread | None = None  # the round under way
        self.pruned: list[Out] = []  # the tombstones of the last round, until written

    # -- the processor ------------------------------------------------------------------

    def handle(self, record: Incoming, store: object = None) -> list[Out]:
        """Keep the record's row for the next flush (a dead-letter row if it does not decode)."""
        spec = self.specs[record.topic]
        coordinates = [self.names[record.topic], record.partition, record.offset]
        try:  # any failure of one record is its dead letter, never the batch's
            row = spec.to_row(spec.decode(record.value or b""))
        except Exception as exc:
            if record.topic in self.passed_over:  # its dead letter is another processor's
                return []
            letter = self._dead_letter(record, f"sink: {failure_reason(exc)}")
            self.pending["dead_letters"].append(dead_letter_row(letter) + coordinates)
            return []
        if row is not None:
            self.pending[spec.table].append(row + coordinates)
            self.payloads[spec.table].append(record.value)
        return []

    def flush(self) -> list[Out]:
        """Insert what was kept, one insert per table; rows a table refuses become dead
        letters (found by halving)."""
        pending, payloads = self._take()
        letters: list[list[Any]] = []
        for table, rows in pending.items():
            if table != "dead_letters":
                self._insert_or_refuse(table, rows, payloads[table], letters)
        dead = pending.get("dead_letters", []) + letters
        if dead:
            self._insert("dead_letters", dead, self.columns["dead_letters"])
        self.rows_written += sum(len(r) for r in pending.values())  # refused rows: dead letters
        return []

    def abort(self) -> None:
        self._take()  # their records are read again
        self.registry_stale = True  # it counted tombstones of an aborted transaction

    def tick(self, now: float, stores: object = None) -> list[Out]:
        """The registry's retention rule: every `registry.prune_every_seconds`, a round in a
        thread of its own (reading the registry and the predictions can take longer than a
        transaction may stay open); the tombstones of a finished round."""
        r = self.settings.registry
        if not r.prune:
            return []
        if self.next_prune is None:
            self.next_prune = now + r.prune_grace_seconds
        if self.pruning is None or not self.pruning.is_alive():
            outs, self.pruned = self.pruned, []
            if now >= self.next_prune:
                self.next_prune = now + r.prune_every_seconds
                self.pruning = threading.Thread(target=self._prune_round, args=(now,),
                                                daemon=True, name="sink-retention")
                self.pruning.start()
            return outs
        return []

    def _prune_round(self, now: float) -> None:
        try:  # housekeeping: a failed round is logged and tried again, never stops the sink
            self.pruned = self.prune(now)
        except Exception:
            log.exception("registry retention: this round failed; the next in %.0fs",
                          self.settings.registry.prune_every_seconds)

    def prune(self, now: float) -> list[Out]:
        """The tombstones of every artifact the retention rule prunes at `now` (logged)."""
        if self.registry is not None and self.registry_stale:
            self.close_registry()
        if self.registry is None:  # a group of its own: it reads the registry from the start
            self.registry = ModelRegistry(self.settings, name="sink-retention",
                                          max_artifact_bytes=0)
            self.registry_stale = False
        # What a sink that has pruned for long reads is mostly tombstones; the first time,
        # every artifact ever published: that may take more than one round's worth.
        self.registry.catch_up(timeout=max(60.0, self.settings.registry.prune_every_seconds))
        grace = self.settings.registry.prune_grace_seconds
        needed = self.needed_versions(now - grace)
        outs: list[Out] = []
        for model in sorted({v.model for v in self.registry.versions.values()}):
            pruned = prunable(self.registry, model, needed, datetime.fromtimestamp(now, UTC),
                              timedelta(seconds=grace))
            for meta in pruned:
                for topic, key in tombstones(meta):
                    outs.append(Out(topic, key, None))
                    # Counted now, so the next round does not write them again.
                    self.registry.apply(topic, self.settings.topic(topic), 0, -1,
                                        key.encode(), None)
            if pruned:
                log.info("registry retention: prunes the artifacts of %d version(s) of %s "
                         "(tombstones with the next commit): %s", len(pruned), model,
                         ", ".join(m.version[:12] for m in pruned))
        return outs

    def close_registry(self) -> None:
        if self.registry is not None:
            self.registry.close()
            self.registry = None

    def close(self) -> None:
        """After the runtime's last commit. A round still under way keeps its registry (its
        thread ends with the process; the next sink's rounds find what it would have)."""
        if self.pruning is None or not self.pruning.is_alive():
            self.close_registry()

    def resume_at(self, assigned: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        stored = self.stored_offsets()
        resume = {(key, partition): stored[(self.names[key], partition)] + 1
                  for key, partition in assigned if (self.names[key], partition) in stored}
        log.info("sink resumes %s", sorted(resume.items()) or "from committed offsets")
        return resume

    # -- ClickHouse -----------------------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """Highest offset already in ClickHouse, per source topic and partition."""
        union = " UNION ALL ".join(
            f"SELECT _topic, _partition, _offset FROM {self.db}.{s.table}" for s in SINK_TABLES)
        sql = f"SELECT _topic, _partition, max(_offset) FROM ({union}) GROUP BY _topic, _partition"
        with self.lock:
            rows = self.client.query(sql).result_rows
        return {(t, int(p)): int(o) for t, p, o in rows}

    def needed_versions(self, since: float) -> set[str]:
        """The versions the retention rule keeps for predictions: see `needed_versions_sql`."""
        with self.lock:
            rows = self.client.query(needed_versions_sql(self.db, since)).result_rows
        return {str(v) for (v,) in rows}

    def rows(self, records: Sequence[Incoming]) -> dict[str, list[list[Any]]]:
        """The rows these records make per table, dead letters included (nothing inserted)."""
        for record in records:
            self.handle(record)
        return dict(self._take()[0])

    def _take(self) -> tuple[dict[str, list[list[Any]]], dict[str, list[bytes | None]]]:
        """The rows kept so far and their records' bytes, leaving none kept."""
        taken = self.pending, self.payloads
        self.pending, self.payloads = defaultdict(list), defaultdict(list)
        return taken

    def _dead_letter(self, record: Incoming, error: str) -> DeadLetter:
        return DeadLetter.of("sink", self.names[record.topic], record.partition,
                             record.offset, record.key, record.value, error)

    def _insert_or_refuse(self, table: str, rows: list[list[Any]],
                          payloads: list[bytes | None], letters: list[list[Any]]) -> None:
        """Insert rows; when values do not fit the table's columns (a negative count for a
        UInt64, say), find the rows at fault by halving, and make each a dead letter."""
        try:
            self._insert(table, rows, self.columns[table])
        except DataError as exc:
            if len(rows) == 1:
                topic, partition, offset = rows[0][-3:]
                letter = DeadLetter.of("sink", topic, partition, offset, None, payloads[0],
                                       f"sink: {table} refused the row: {exc}")
                letters.append(dead_letter_row(letter) + rows[0][-3:])
                log.warning("%s refused the row of %s[%d]@%d", table, topic, partition, offset)
                return
            half = len(rows) // 2
            self._insert_or_refuse(table, rows[:half], payloads[:half], letters)
            self._insert_or_refuse(table, rows[half:], payloads[half:], letters)

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

    def query(self, sql: str) -> QueryResult:
        """A read-only query on this sink's engine."""
        with self.lock:
            return run_query(self.reader, sql, self.db)


def needed_versions_sql(db: str, since: float) -> str:
    """One column of versions: those a stored prediction names (its version, its
    state_version, its shadows' versions: reproducing it needs their artifacts), and those
    deployed at any time since `since` (Unix seconds), whose predictions may still be on their
    way to ClickHouse."""
    at = f"toDateTime64({since:.3f}, 3, 'UTC')"
    return f"""
SELECT DISTINCT v FROM (
    SELECT arrayJoin(arrayConcat(a, b, c)) AS v FROM (
        SELECT groupUniqArray(toString(version)) AS a, groupUniqArray(state_version) AS b,
               groupUniqArrayArray(mapKeys(shadow_scores)) AS c
        FROM {db}.predictions)
    UNION ALL
    SELECT arrayJoin(arrayConcat([toString(champion), version, ifNull(previous, '')], shadows))
    FROM {db}.deployments WHERE ts >= {at}
    UNION ALL
    SELECT arrayJoin(arrayConcat([champion], shadows)) FROM (
        SELECT argMax(champion, _offset) AS champion, argMax(shadows, _offset) AS shadows
        FROM {db}.deployments WHERE ts < {at} GROUP BY model)
) WHERE v != ''"""


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


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the sink in the foreground until SIGTERM or Ctrl-C."""
    import os

    client = connect(settings)
    ensure_schema(client, settings.clickhouse_database, settings.sink.ttl_days,
                  settings.sink.rollup_ttl_days)
    reader = connect(settings) if settings.embedded_clickhouse else None
    sink = ClickHouseSink(settings, client, reader)
    server = None
    endpoint = query_endpoint_file(settings)
    if settings.embedded_clickhouse:
        server = serve_queries(sink, settings.sink.query_port)
        endpoint.parent.mkdir(parents=True, exist_ok=True)
        endpoint.write_text(json.dumps({"pid": os.getpid(), "port": server.server_address[1]}))
    try:
        run_processor(settings, sink, instance)
    finally:
        if server is not None:
            server.shutdown()
            endpoint.unlink(missing_ok=True)
        if reader is not None:
            reader.close()
        client.close()
