"""Every query in docs/monitoring.md runs against the real DDL (read-only, on chDB)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driftway.io.clickhouse import connect, ensure_schema, run_query
from driftway.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
DB = "driftway_docs"


@pytest.fixture(scope="module")
def client(embedded_settings: Settings):  # type: ignore[no-untyped-def]
    c = connect(embedded_settings)
    ensure_schema(c, DB)
    yield c
    c.close()


def test_the_doc_has_queries() -> None:
    assert len(QUERIES) >= 10


@pytest.mark.parametrize("sql", QUERIES, ids=[q.split("\n")[0][:40] for q in QUERIES])
def test_every_documented_query_runs(client, sql: str) -> None:  # type: ignore[no-untyped-def]
    run_query(client, sql, DB)  # read-only, against the real DDL: any mistake raises
    described = run_query(client, f"DESCRIBE TABLE ({sql})", DB).rows
    aliases = re.findall(r"\bAS (\w+)", sql.split("FROM")[0])
    assert {name for name, *_ in described} >= set(aliases)


def test_every_table_in_the_doc_exists(client) -> None:  # type: ignore[no-untyped-def]
    documented = set(re.findall(r"^\| `(\w+)`", DOC.read_text(), flags=re.M))
    existing = {r[0] for r in run_query(client, f"SHOW TABLES FROM {DB}", DB).rows}
    assert documented and documented <= existing
