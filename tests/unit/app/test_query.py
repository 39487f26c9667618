"""`driftway query` on the embedded engine, and finding a running sink's endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from driftway.app.query import QueryError, query, running_endpoint
from driftway.consumers.sink import query_endpoint_file
from driftway.io.broker import free_port
from driftway.io.clickhouse import OFFSET_COLUMNS, connect, ensure_schema, label_row
from driftway.schemas.events import Label
from driftway.settings import Settings

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
    with pytest.raises(QueryError, match="readonly"):
        query(settings, sql)
    assert query(settings, "SELECT count() FROM labels").rows == [[2]]


def test_no_endpoint_without_a_live_sink(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert running_endpoint(settings) is None  # no file
    path = query_endpoint_file(settings)
    path.write_text("{not json")
    assert running_endpoint(settings) is None
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
    path.write_text(json.dumps({"pid": int(exited.stdout), "port": 8124}))
    assert running_endpoint(settings) is None  # a dead sink's file
    path.write_text(json.dumps({"pid": os.getpid(), "port": 8124}))
    assert running_endpoint(settings) == 8124  # a live one's
    for odd in ("[]", "{}", '{"pid": "x", "port": 1}'):  # JSON, but not what a sink writes
        path.write_text(odd)
        assert running_endpoint(settings) is None


def test_a_stale_endpoint_falls_back_to_the_engine(settings: Settings, tmp_path: Path) -> None:
    # The file names a live pid (this process) whose port nobody listens on.
    stale = settings.model_copy(update={
        "state_dir": tmp_path, "clickhouse_dsn": SecretStr(settings.clickhouse_dsn_resolved)})
    query_endpoint_file(stale).write_text(json.dumps({"pid": os.getpid(), "port": free_port()}))
    assert running_endpoint(stale) is not None
    assert query(stale, "SELECT count() FROM labels").rows == [[2]]
