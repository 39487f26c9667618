"""Read-only SQL on the monitoring tables, wherever they live.

On a ClickHouse server: a direct connection, as the read-only user when ``query.clickhouse_dsn``
names it. On the embedded engine: through the running sink's query endpoint (a Unix socket only
this user can reach) when the pipeline is up (chDB allows one process per directory), else by
opening the engine directly. Either way a query may read the monitoring database only, within
the ``query`` settings' limits (driftway.io.clickhouse.run_query).
"""

from __future__ import annotations

from pathlib import Path

from driftway.io import query_endpoint
from driftway.io.clickhouse import QueryRefused, QueryResult, connect, ensure_schema, run_query
from driftway.settings import Settings


class QueryError(RuntimeError):
    """ClickHouse or Driftway refused the query; the message is the reason."""


class QueryNotAllowed(QueryError):
    """The query reads, or could read, outside the monitoring database."""


def running_endpoint(settings: Settings) -> Path | None:
    """The socket of a live sink's query endpoint, if one is running for this state directory."""
    return query_endpoint.running_endpoint(settings)


def query(settings: Settings, sql: str, timeout: float | None = None) -> QueryResult:
    """Run read-only `sql` on the monitoring database; a QueryError says why not.

    `timeout` (seconds, for the endpoint's answer) defaults to a little more than the query's
    own limit, query.max_seconds.
    """
    path = running_endpoint(settings) if settings.embedded_clickhouse else None
    if path is not None:
        try:
            return query_endpoint.ask(path, sql, timeout or settings.query.max_seconds + 10)
        except query_endpoint.EndpointError as exc:
            raise (QueryNotAllowed if exc.refused else QueryError)(str(exc)) from None
        except query_endpoint.EndpointGone:
            pass  # a stale endpoint file (its pid reused): open the engine directly
    client = connect(reader_settings(settings))
    try:
        if settings.embedded_clickhouse:
            ensure_schema(client, settings.clickhouse_database)
        try:
            return run_query(client, sql, settings.clickhouse_database, settings.query)
        except QueryRefused as exc:
            raise QueryNotAllowed(str(exc)) from None
        except Exception as exc:
            raise QueryError(str(exc)) from None
    finally:
        client.close()


def reader_settings(settings: Settings) -> Settings:
    """`settings` with the DSN user queries connect with (query.clickhouse_dsn, on a server)."""
    if settings.embedded_clickhouse or settings.query.clickhouse_dsn is None:
        return settings
    return settings.model_copy(update={"clickhouse_dsn": settings.query.clickhouse_dsn})
