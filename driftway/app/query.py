"""Read-only SQL on the monitoring tables, wherever they live.

On a ClickHouse server: a direct connection. On the embedded engine: through the running sink's
loopback endpoint when the pipeline is up (chDB allows one process per directory), else by opening
the engine directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import psutil

from driftway.consumers.sink import query_endpoint_file
from driftway.io.clickhouse import QueryResult, connect, ensure_schema, run_query
from driftway.settings import Settings


class QueryError(RuntimeError):
    """ClickHouse refused the query; the message is its reason."""


def running_endpoint(settings: Settings) -> int | None:
    """Port of a live sink's query endpoint, if one is running for this state directory."""
    path = query_endpoint_file(settings)
    try:
        info = json.loads(path.read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or not one a sink wrote
    return port if psutil.pid_exists(pid) else None


def query(settings: Settings, sql: str, timeout: float = 60.0) -> QueryResult:
    """Run read-only `sql`; writes and DDL are refused by ClickHouse with a QueryError."""
    port = running_endpoint(settings) if settings.embedded_clickhouse else None
    if port is not None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/query", data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.loads(response.read())
            return QueryResult(body["columns"], body["types"], body["rows"])
        except urllib.error.HTTPError as exc:
            raise QueryError(json.loads(exc.read()).get("error", str(exc))) from None
        except urllib.error.URLError:
            pass  # a stale endpoint file (its pid reused): open the engine directly
    client = connect(settings)
    try:
        if settings.embedded_clickhouse:
            ensure_schema(client, settings.clickhouse_database)
        try:
            return run_query(client, sql, settings.clickhouse_database)
        except Exception as exc:
            raise QueryError(str(exc)) from None
    finally:
        client.close()
