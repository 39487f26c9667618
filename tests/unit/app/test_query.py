"""`driftway query` on the embedded engine: what it refuses, its limits, and finding a running
sink's endpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from driftway.app.query import (
    QueryError,
    QueryNotAllowed,
    query,
    reader_settings,
    running_endpoint,
)
from driftway.app.report import SQL
from driftway.io.clickhouse import OFFSET_COLUMNS, connect, ensure_schema, label_row
from driftway.io.query_endpoint import query_endpoint_file
from driftway.schemas.events import Label
from driftway.settings import QuerySettings, Settings

DB = "driftway_query"


@pytest.fixture(scope="module")
def settings(embedded_settings: Settings) -> Settings:
    """The session's engine with two labels stored in a database of this module's own."""
    own = embedded_settings.model_copy(update={"clickhouse_database": DB})
    client = connect(own)
    try:
        ensure_schema(client, DB)
        rows = [label_row(Label(event_id=f"e{i}", label=i == 1)) + ["t", 0, i] for i in (1, 2)]
        client.insert(f"{DB}.labels", rows, column_names=["event_id", "label", "ts",
                                                          *OFFSET_COLUMNS])
    finally:
        client.close()
    return own


def test_a_read_only_query_returns_rows(settings: Settings) -> None:
    result = query(settings, "SELECT event_id, label FROM labels ORDER BY event_id")
    assert result.columns == ["event_id", "label"]
    assert result.rows == [["e1", "true"], ["e2", "false"]]


@pytest.mark.parametrize("sql", [
    "INSERT INTO labels (event_id, label) VALUES ('e3', 'true')",
    "ALTER TABLE labels DELETE WHERE 1",
    "DROP TABLE labels",
    "CREATE TABLE evil (a Int8) ENGINE = Memory",
    "SELECT 1 SETTINGS readonly = 0",
])
def test_writes_and_ddl_are_refused(settings: Settings, sql: str) -> None:
    with pytest.raises(QueryNotAllowed, match="^refused: .*readonly"):
        query(settings, sql)
    assert query(settings, "SELECT count() FROM labels").rows == [[2]]


def _dead_socket(path: Path) -> None:
    """A socket file nobody listens on (what a killed sink leaves)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_no_endpoint_without_a_live_sink(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert running_endpoint(settings) is None  # no file
    path = query_endpoint_file(settings)
    path.write_text("{not json")
    assert running_endpoint(settings) is None
    sock = tmp_path / "query.sock"
    _dead_socket(sock)
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
    path.write_text(json.dumps({"pid": int(exited.stdout), "socket": str(sock)}))
    assert running_endpoint(settings) is None  # a dead sink's file
    path.write_text(json.dumps({"pid": os.getpid(), "socket": str(sock)}))
    assert running_endpoint(settings) == sock  # a live one's
    path.write_text(json.dumps({"pid": os.getpid(), "port": 8124}))
    assert running_endpoint(settings) is None  # an old sink's TCP port: not asked any more
    path.write_text(json.dumps({"pid": os.getpid(), "socket": str(tmp_path / "none")}))
    assert running_endpoint(settings) is None  # no socket there
    for odd in ("[]", "{}", '{"pid": "x", "socket": "y"}'):  # JSON, but not what a sink writes
        path.write_text(odd)
        assert running_endpoint(settings) is None


def test_a_stale_endpoint_falls_back_to_the_engine(settings: Settings, tmp_path: Path) -> None:
    # The file names a live pid (this process) and a socket nobody listens on.
    stale = settings.model_copy(update={
        "state_dir": tmp_path, "clickhouse_dsn": SecretStr(settings.clickhouse_dsn_resolved)})
    _dead_socket(tmp_path / "query.sock")
    query_endpoint_file(stale).write_text(json.dumps(
        {"pid": os.getpid(), "socket": str(tmp_path / "query.sock")}))
    assert running_endpoint(stale) is not None
    assert query(stale, "SELECT count() FROM labels").rows == [[2]]


#: Queries that read, or would read, outside the monitoring database (or write, or lift the
#: limits), each with what its refusal must name.
HOSTILE = [
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file(...), a table function"),
    ("select * from FILE('/etc/passwd','LineAsString')", "FILE(...), a table function"),
    ("SELECT * FROM fIlE('/etc/passwd', 'LineAsString')", "fIlE(...)"),
    ("SELECT file('/etc/passwd')", "calls file(...)"),
    ("SELECT length(file('/etc/passwd')) FROM labels", "calls file(...)"),
    ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", "url(...)"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "remote(...)"),
    ("SELECT * FROM remoteSecure('127.0.0.1', system.one)", "remoteSecure(...)"),
    ("SELECT * FROM cluster('default', system.one)", "cluster(...)"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')", "s3(...)"),
    ("SELECT * FROM gcs('http://127.0.0.1:9/b/k', 'CSV')", "gcs(...)"),
    ("SELECT * FROM mysql('127.0.0.1:3306', 'd', 't', 'u', 'p')", "mysql(...)"),
    ("SELECT * FROM postgresql('127.0.0.1:5432', 'd', 't', 'u', 'p')", "postgresql(...)"),
    ("SELECT * FROM sqlite('/tmp/x.db', 't')", "sqlite(...)"),
    ("SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', 'CSV')", "hdfs(...)"),
    ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", "executable(...)"),
    ("SELECT * FROM jdbc('jdbc:x', 't')", "jdbc(...)"),
    ("SELECT * FROM input('a String')", "input(...)"),
    ("SELECT * FROM format(LineAsString, 'a')", "format(...)"),
    ("SELECT * FROM merge('system', '.*')", "merge(...)"),
    ("SELECT * FROM view(SELECT * FROM system.one)", "view(...)"),
    ("SELECT * FROM dictionary('d')", "dictionary(...)"),
    ("SELECT dictGet('d', 'a', toUInt64(1))", "calls dictGet(...)"),
    ("SELECT dictGetOrDefault('d', 'a', toUInt64(1), 'x')", "calls dictGetOrDefault(...)"),
    ("SELECT dictHas('d', toUInt64(1))", "calls dictHas(...)"),
    ("SELECT joinGet('j', 'a', 1)", "calls joinGet(...)"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "calls hasColumnInTable(...)"),
    ("SELECT name FROM system.users", "system.users, a table outside"),
    ("SELECT * FROM `system`.`users`", "system.users"),
    ('SELECT * FROM "system".users', "system.users"),
    ("SELECT * FROM system.tables", "system.tables"),
    ("SELECT query FROM system.query_log", "system.query_log"),
    ("SELECT * FROM system.one", "system.one"),
    ("SELECT * FROM default.t", "default.t"),
    ("SELECT * FROM `weird.db`.t", "weird.db.t"),
    ("SELECT * FROM labels WHERE event_id IN system.users", "system.users (after IN)"),
    ("SELECT * FROM labels WHERE event_id GLOBAL NOT IN system.users", "system.users"),
    ("SELECT * FROM labels WHERE event_id IN (SELECT name FROM system.users)", "system.users"),
    ("SELECT * FROM labels l JOIN file('/etc/passwd', 'LineAsString') f ON 1", "file(...)"),
    ("SELECT * FROM labels l JOIN (SELECT * FROM url('http://127.0.0.1:9/', 'CSV')) u ON 1",
     "url(...)"),
    ("SELECT * FROM labels l LEFT JOIN system.users u ON l.event_id = u.name", "system.users"),
    ("WITH x AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM x", "file(...)"),
    ("WITH (SELECT count() FROM system.users) AS n SELECT n", "system.users"),
    ("SELECT (SELECT any(name) FROM system.users)", "system.users"),
    ("SELECT 1 UNION ALL SELECT * FROM file('/etc/passwd', 'LineAsString')", "file(...)"),
    ("SELECT * FROM labels /* FROM file */ WHERE 1 IN (SELECT 1 FROM s3('http://x/y', 'CSV'))",
     "s3(...)"),
    ("SELECT 1 INTO OUTFILE '/tmp/driftway-escape.txt'", "INTO OUTFILE writes a file"),
    ("SELECT 1 FORMAT CSV", "FORMAT (CSV)"),
    ("SELECT count() FROM labels SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT count() FROM labels SETTINGS max_result_rows = 0", "SETTINGS"),
    ("SELECT count() FROM labels SETTINGS max_execution_time = 0, max_memory_usage = 0",
     "SETTINGS"),
    ("SELECT * FROM (SELECT 1 SETTINGS allow_ddl = 1)", "SETTINGS"),
    ("SET readonly = 0", "SET is not a query that reads"),
    ("INSERT INTO labels (event_id, label) VALUES ('e3', 'true')", "INSERT"),
    ("INSERT INTO FUNCTION file('/tmp/x', 'CSV') SELECT 1", "INSERT"),
    ("CREATE TABLE evil (a String) ENGINE = File(LineAsString, '/etc/passwd')", "CREATE"),
    ("CREATE DICTIONARY d (a String) PRIMARY KEY a SOURCE(FILE(path '/etc/passwd'))", "CREATE"),
    ("ATTACH TABLE x FROM '/etc'", "ATTACH"),
    ("SHOW DATABASES", "SHOW TABLES is not"),  # the parser's node for both: refused unless ours
    ("SHOW TABLES FROM system", "SHOW TABLES"),
    ("SHOW GRANTS", "not a query that reads"),
    ("SHOW CREATE TABLE system.users", "not a query that reads"),
    ("EXISTS TABLE system.users", "EXISTS TABLE"),
    ("DESCRIBE TABLE file('/etc/passwd', 'LineAsString')", "file(...)"),
    ("DESCRIBE TABLE system.users", "system.users"),
    ("EXPLAIN SELECT * FROM file('/etc/passwd', 'LineAsString')", "EXPLAIN"),
    ("KILL QUERY WHERE 1", "KILL"),
    ("SYSTEM SHUTDOWN", "SYSTEM"),
    ("USE system", "USE"),
    ("OPTIMIZE TABLE labels FINAL", "OPTIMIZE"),
]


@pytest.mark.parametrize(("sql", "named"), HOSTILE, ids=[h[0][:60] for h in HOSTILE])
def test_queries_outside_the_monitoring_database_are_refused(
        settings: Settings, sql: str, named: str) -> None:
    with pytest.raises(QueryNotAllowed) as refused:
        query(settings, sql)
    message = str(refused.value)
    assert message.startswith("refused: "), message
    assert named in message, message
    assert "root:" not in message  # nothing of /etc/passwd leaks, in the error either
    assert not Path("/tmp/driftway-escape.txt").exists()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM numbers(10) /*",  # swallowing the settings the client appends after it
    "SELECT 1; SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT 1 -- \n; SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "",
])
def test_comment_and_statement_tricks_fail_to_parse(settings: Settings, sql: str) -> None:
    with pytest.raises(QueryError) as failed:
        query(settings, sql)
    assert "root:" not in str(failed.value)


@pytest.mark.parametrize("sql", [
    "SELECT count() FROM labels",
    "select count() from driftway_query.labels -- a comment",
    "SELECT /* comment */ event_id FROM `labels` ORDER BY event_id",
    "SELECT l.event_id, p.version FROM labels AS l LEFT JOIN predictions AS p USING event_id",
    "WITH x AS (SELECT event_id FROM labels) SELECT count() FROM x WHERE event_id IN x",
    "SELECT event_id FROM labels WHERE event_id IN (SELECT event_id FROM predictions) "
    "OR event_id LIKE '%1'",
    "SELECT number FROM numbers(3)",
    "SELECT * FROM values('a UInt8', 1, 2)",
    "SELECT 1",
    "SELECT 'file(x) FROM system.users; SETTINGS' AS text",  # words in a string are a string
    "SHOW TABLES",
    "SHOW TABLES FROM driftway_query",
    "DESCRIBE TABLE labels",
    "DESCRIBE TABLE (SELECT event_id FROM labels)",
    "SELECT version, count() FROM predictions GROUP BY version UNION ALL SELECT '', count() "
    "FROM labels",
])
def test_monitoring_queries_run(settings: Settings, sql: str) -> None:
    query(settings, sql)


@pytest.mark.parametrize("name", sorted(SQL))
def test_the_reports_queries_run(settings: Settings, name: str) -> None:
    query(settings, SQL[name].format(since="toDateTime64('1970-01-01 00:00:00', 6, 'UTC')",
                                     bucket=60))


def test_a_query_returns_at_most_max_rows(settings: Settings) -> None:
    limited = settings.model_copy(update={"query": QuerySettings(max_rows=5)})
    assert len(query(limited, "SELECT number FROM numbers(5)").rows) == 5
    with pytest.raises(QueryError, match="max rows"):
        query(limited, "SELECT number FROM numbers(6)")
    with pytest.raises(QueryNotAllowed, match="SETTINGS"):
        query(limited, "SELECT number FROM numbers(6) SETTINGS max_result_rows = 0")


def test_a_query_stops_at_its_memory_and_time_limits(settings: Settings) -> None:
    small = settings.model_copy(update={"query": QuerySettings(max_memory_bytes=32 * 1024**2)})
    with pytest.raises(QueryError, match="(?i)memory limit"):
        query(small, "SELECT length(groupArray(number)) FROM numbers(50000000)")
    short = settings.model_copy(update={"query": QuerySettings(max_seconds=0.5)})
    with pytest.raises(QueryError, match="(?i)timeout|time limit|estimated query execution"):
        query(short, "SELECT count() FROM numbers(1000000000000)")
    assert query(settings, "SELECT count() FROM labels").rows == [[2]]  # the engine is fine


def test_a_server_is_queried_as_its_read_only_user(tmp_path: Path) -> None:
    writer = "http://driftway:w@clickhouse:8123"
    reader = "http://driftway_reader:r@clickhouse:8123"
    settings = Settings(state_dir=tmp_path, clickhouse_dsn=SecretStr(writer),
                        query=QuerySettings(clickhouse_dsn=SecretStr(reader)))
    assert reader_settings(settings).clickhouse_dsn_resolved == reader
    plain = Settings(state_dir=tmp_path, clickhouse_dsn=SecretStr(writer))
    assert reader_settings(plain).clickhouse_dsn_resolved == writer  # none set: the one DSN
    with pytest.raises(ValueError, match="http"):
        QuerySettings(clickhouse_dsn=SecretStr("chdb:///tmp/x"))


def test_final_0_reads_rows_as_stored_and_is_the_one_setting_allowed(settings: Settings) -> None:
    client = connect(settings)
    try:  # one record stored twice (its second row differing), as a crashed writer would
        row = label_row(Label(event_id="e1", label=True)) + ["t", 0, 1]
        client.command(f"CREATE TABLE IF NOT EXISTS {DB}.again AS {DB}.labels")
        for stored in (row, row[:1] + ["false"] + row[2:]):  # two inserts: two parts
            client.insert(f"{DB}.again", [stored],
                          column_names=["event_id", "label", "ts", *OFFSET_COLUMNS])
    finally:
        client.close()
    assert query(settings, "SELECT count() FROM again").rows == [[1]]  # deduplicated
    assert query(settings, "SELECT count() FROM again SETTINGS final = 0").rows == [[2]]
    with pytest.raises(QueryNotAllowed, match="sets ClickHouse settings"):
        query(settings, "SELECT count() FROM again SETTINGS final = 0, max_threads = 1")
