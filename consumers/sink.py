"""The ClickHouse sink: Driftway's topics into monitoring tables, in batches, idempotently.

Offsets are committed only after the insert succeeded. Each row keeps its Kafka coordinates: on
partition assignment the sink learns the highest offset each table already holds per partition and
passes over the rows ClickHouse has, so a batch that was inserted (wholly or in part) but not
committed before a crash is not inserted again. A ClickHouse that is unreachable or refuses an
insert makes the sink wait and try again with back-off, its input held back (the runtime's
``Unavailable``), and the health topic says so: nothing is dropped or inserted twice. When the
engine is the embedded chDB (one owning process), the sink also answers read-only queries on a
Unix socket only its user can reach (driftway.io.query_endpoint), so that `driftway query` works
while the pipeline runs.

The sink also runs the registry's retention rule (``driftway.logic.registry.kept``): it owns
what the rule needs to know — the versions stored predictions name, and the deployments' history
— and its tombstones commit in its transactions.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError
from clickhouse_connect.driver.insert import InsertContext

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
from driftway.io.holdback import Unavailable
from driftway.io.query_endpoint import QueryEndpoint
from driftway.io.registry import ModelRegistry
from driftway.io.runtime import Incoming, Out, passed_over, run_processor
from driftway.logic.limits import decode_checked
from driftway.logic.registry import prunable, tombstones
from driftway.schemas.events import DeadLetter, Label, failure_reason
from driftway.settings import Settings

log = logging.getLogger(__name__)


class ClickHouseSink:
    """The sink, a processor on the runtime: records in, rows out at each commit.

    `handle` turns each record into its table's row (or, if it does not decode, a dead_letters
    row under its own coordinates) and keeps it; `flush`, which the runtime calls before each
    commit, inserts what it kept with one insert per table. So offsets are committed only after
    the inserts succeeded; and `resume_at`, on each assignment and before input held back for
    ClickHouse is read again, learns the highest offset each table holds per source
    partition, so that `handle` passes over a row its table already has: a transaction whose
    inserts were done, in whole or in part, but not committed (a crash, a ClickHouse that went
    away between two inserts) is read again from the committed offsets and nothing is stored
    twice. The sink stores its own dead letters directly, under the failed record's
    coordinates, where producing them to the dead-letter topic in an aborted transaction would
    lose them. A record its table has no row for (a publish request on the training topic) is
    skipped and committed.

    An insert that fails for a reason other than its rows (ClickHouse unreachable, refusing
    inserts, out of disk) raises the runtime's `Unavailable`: the runtime waits with back-off
    and reads the transaction's input again. The client is opened (and the schema ensured) on
    first use, so a sink also waits for a ClickHouse that is not up when it starts.

    `reader` is the connection that answers read-only queries (default: `client`). On chDB, a
    write refused in read-only mode leaves its connection read-only, so the sink's own inserts
    must not share a connection with user queries.

    Every ``registry.prune_every_seconds`` (from ``registry.prune_grace_seconds`` after it
    starts, so that a sink that was down has stored the predictions it missed), `tick` writes
    the tombstones of the artifacts the retention rule prunes, with its next commit.
    """

    name = "sink"

    def __init__(self, settings: Settings, client: Client | None = None,
                 reader: Client | None = None,
                 opener: Callable[[], Client] | None = None) -> None:
        self.settings = settings
        self._client = client
        self._contexts: dict[str, InsertContext] = {}  # of `_client`, by table
        self._opener = opener or (lambda: open_store(settings))
        self._reader = reader
        self.db = settings.clickhouse_database
        self.specs: dict[str, TableSpec] = {s.topic_key: s for s in SINK_TABLES}
        # A label the feedback processor refuses for a limit has no row either (it is that
        # processor's dead letter, not the sink's): one decode for both.
        self.specs["labels"] = replace(self.specs["labels"], decoder=partial(
            decode_checked, Label, limits=settings.limits))
        self.columns = {s.table: [*s.columns, *OFFSET_COLUMNS] for s in SINK_TABLES}
        self.names = {s.topic_key: settings.topic(s.topic_key) for s in SINK_TABLES}
        self.lock = threading.Lock()  # one chDB engine: queries and inserts take turns
        self.rows_written = 0
        self.pending: dict[str, list[list[Any]]] = defaultdict(list)
        self.payloads: dict[str, list[bytes | None]] = defaultdict(list)  # beside each row
        self.commit_interval = settings.sink.flush_seconds
        self.passed_over = passed_over(self.name)
        # What ClickHouse holds already of a source partition read again: each table's
        # highest offset, learnt by resume_at; rows at or below it are passed over, and a
        # partition is forgotten once its records come past all of them.
        self.stored: dict[tuple[str, int], dict[str, int]] = {}
        self.commit_min_interval = settings.sink.flush_seconds  # an insert per commit: no early
        self.commit_records = settings.sink.batch_size
        # Rows wait for the next insert anyway: the broker gathers input for up to half of
        # that wait, so the sink fetches a few times per insert, not once per upstream commit.
        self.fetch_wait = min(0.25, settings.sink.flush_seconds / 2)
        # The retention rule's: the registry is its rounds' thread's alone.
        self.registry: ModelRegistry | None = None  # opened by the first round
        self.registry_stale = False
        self.next_prune: float | None = None  # Unix seconds
        self.pruning: threading.Thread | None = None  # the round under way
        self.pruned: list[Out] = []  # the tombstones of the last round, until written

    # -- the processor ------------------------------------------------------------------

    # -- ClickHouse, opened on first use ------------------------------------------------------

    @property
    def client(self) -> Client:
        """The connection the sink writes with; `Unavailable` while ClickHouse is not there."""
        if self._client is None:
            with self.lock:
                if self._client is None:
                    try:
                        self._client = self._opener()
                    except Exception as exc:
                        raise Unavailable(f"ClickHouse cannot be reached: {exc}") from exc
        return self._client

    @property
    def reader(self) -> Client:
        return self._reader or self.client

    def disconnect(self) -> None:
        """Close the connections the sink opened or was given."""
        for client in {id(c): c for c in (self._client, self._reader) if c is not None}.values():
            client.close()
        self._client = self._reader = None
        self._contexts.clear()

    def handle(self, record: Incoming, store: object = None) -> list[Out]:
        """Keep the record's row for the next flush (a dead-letter row if it does not decode),
        unless ClickHouse has it already."""
        spec = self.specs[record.topic]
        topic = self.names[record.topic]
        coordinates = [topic, record.partition, record.offset]
        try:  # any failure of one record is its dead letter, never the batch's
            row = spec.to_row(spec.decode(record.value or b""))
        except Exception as exc:
            if record.topic in self.passed_over:  # its dead letter is another processor's
                return []
            if self._has("dead_letters", topic, record.partition, record.offset):
                return []
            letter = self._dead_letter(record, f"sink: {failure_reason(exc)}")
            self.pending["dead_letters"].append(dead_letter_row(letter) + coordinates)
            return []
        if row is not None and not self._has(spec.table, topic, record.partition,
                                             record.offset):
            self.pending[spec.table].append(row + coordinates)
            self.payloads[spec.table].append(record.value)
        return []

    def _has(self, table: str, topic: str, partition: int, offset: int) -> bool:
        """True when `table` holds the row of this record already (a read again)."""
        if not self.stored:  # the hot path: nothing is read again
            return False
        held = self.stored.get((topic, partition))
        if held is None:
            return False
        if offset > max(held.values()):  # past all ClickHouse holds: new from here on
            del self.stored[(topic, partition)]
            return False
        return offset <= held.get(table, -1)

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
        """Read from the committed offsets; learn what ClickHouse holds of these partitions
        already, so that `handle` passes those rows over."""
        names = {(self.names[key], partition) for key, partition in assigned}
        held: dict[tuple[str, int], dict[str, int]] = {}
        for (table, topic, partition), offset in self.stored_offsets().items():
            if (topic, partition) in names:
                held.setdefault((topic, partition), {})[table] = offset
        for name in names:
            self.stored.pop(name, None)
        self.stored.update(held)
        log.info("sink reads from the committed offsets; ClickHouse holds up to %s",
                 sorted(held.items()) or "none of them")
        return {}

    # -- ClickHouse -----------------------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, str, int], int]:
        """Highest offset already in ClickHouse, per table, source topic and partition."""
        union = " UNION ALL ".join(
            f"SELECT '{s.table}' AS t, _topic, _partition, max(_offset) FROM {self.db}.{s.table} "
            "GROUP BY _topic, _partition" for s in SINK_TABLES)
        client = self.client
        try:
            with self.lock:
                rows = client.query(union).result_rows
        except Exception as exc:
            raise Unavailable(f"ClickHouse does not answer: {exc}") from exc
        return {(table, t, int(p)): int(o) for table, t, p, o in rows}

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
        client = self.client
        try:
            with self.lock:
                # One insert context per table and connection, as clickhouse-connect offers
                # for repeated inserts: the column types are asked once, not at each insert.
                context = self._contexts.get(table)
                if context is None:
                    context = client.create_insert_context(f"{self.db}.{table}", columns)
                    self._contexts[table] = context
                context.data = rows
                client.insert(context=context)
        except DataError:
            raise  # the rows, not the engine: waiting cannot help
        except Exception as exc:  # the engine: wait for it, and read the input again
            self._contexts.clear()  # asked again of the engine that comes back
            raise Unavailable(f"ClickHouse refused an insert into {table}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def query(self, sql: str) -> QueryResult:
        """A read-only query on this sink's engine."""
        with self.lock:
            return run_query(self.reader, sql, self.db, self.settings.query)


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


def open_store(settings: Settings) -> Client:
    """A connection to the configured ClickHouse, its schema and TTLs ensured."""
    client = connect(settings)
    try:
        ensure_schema(client, settings.clickhouse_database, settings.sink.ttl_days,
                      settings.sink.rollup_ttl_days)
    except BaseException:
        client.close()
        raise
    return client


def main(settings: Settings, instance: str | None = None) -> None:
    """Run the sink in the foreground until SIGTERM or Ctrl-C."""
    # The writing connection is opened by the sink on first use: it waits for a server that
    # is not up yet. The embedded engine's queries get a connection of their own.
    reader = connect(settings) if settings.embedded_clickhouse else None
    sink = ClickHouseSink(settings, reader=reader)
    # User queries, for the user running the stack only: a 0600 Unix socket.
    endpoint = QueryEndpoint(settings, sink.query).start() if settings.embedded_clickhouse else None
    try:
        run_processor(settings, sink, instance)
    finally:
        if endpoint is not None:
            endpoint.stop()
        sink.disconnect()
