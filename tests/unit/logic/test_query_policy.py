"""The query policy on parse trees as ClickHouse's ``EXPLAIN AST`` prints them (no engine here;
tests/unit/app/test_query.py runs the hostile list through the real parser)."""

from __future__ import annotations

from driftway.logic.query_policy import refusal

DB = "driftway"


def select_from(*table: str, where: list[str] | None = None) -> list[str]:
    """The parse of ``SELECT * FROM <table> [WHERE ...]``, `table` the lines under its
    TableExpression (indented from 0)."""
    lines = ["SelectWithUnionQuery (children 2)", " ExpressionList (children 1)",
             "  SelectQuery (children 3)", "   ExpressionList (children 1)", "    Asterisk",
             "   TablesInSelectQuery (children 1)",
             "    TablesInSelectQueryElement (children 1)", "     TableExpression (children 1)",
             *("      " + line for line in table)]
    return [*lines, *("   " + line for line in where or []), " Identifier Native"]


def in_(left: str, right: str) -> list[str]:
    return ["Function in (children 1)", " ExpressionList (children 2)", f"  {left}",
            f"  {right}"]


def test_tables_of_the_database_are_allowed() -> None:
    assert refusal(select_from("TableIdentifier predictions"), DB) is None
    assert refusal(select_from("TableIdentifier driftway.predictions (alias p)"), DB) is None
    assert refusal(select_from("Function numbers (children 1)", " ExpressionList (children 1)",
                               "  Literal UInt64_3"), DB) is None


def test_other_tables_and_table_functions_are_refused() -> None:
    assert "system.users" in refusal(select_from("TableIdentifier system.users"), DB)
    assert "weird.db.t" in refusal(select_from("TableIdentifier weird.db.t"), DB)
    assert "postgresql(...)" in refusal(select_from("Function postgresql (children 1)"), DB)


def test_a_table_after_in_is_a_table_read() -> None:
    where = in_("Identifier event_id", "Identifier system.users")
    assert "after IN" in refusal(select_from("TableIdentifier labels", where=where), DB)
    # A qualified name on the left is a column, not a table.
    where = in_("Identifier labels.event_id", "Identifier driftway.labels")
    assert refusal(select_from("TableIdentifier labels", where=where), DB) is None


def test_clauses_that_escape_are_refused() -> None:
    outfile = [*select_from("TableIdentifier labels")[:-1], " Literal '/tmp/x'"]
    assert "INTO OUTFILE" in refusal(outfile, DB)
    formatted = [*select_from("TableIdentifier labels")[:-1], " Identifier CSV"]
    assert "FORMAT (CSV)" in refusal(formatted, DB)
    assert "SETTINGS" in refusal([*select_from("TableIdentifier labels"), " Set"], DB)


def test_only_reading_statements_and_show_tables_of_the_database() -> None:
    assert "INSERT" in refusal(["InsertQuery (children 1)", " Identifier labels"], DB)
    assert refusal(["ShowTables (children 1)", " Identifier Native"], DB, "SHOW TABLES") is None
    assert refusal(["ShowTables"], DB, "SHOW TABLES FROM driftway") is None
    assert "SHOW TABLES" in refusal(["ShowTables (children 1)", " Identifier system"], DB,
                                    "SHOW TABLES FROM system")
    assert refusal(["ShowTables"], DB, "SHOW DATABASES") is not None
    assert refusal([], DB) == "refused: the query is empty"
    assert refusal(["?? something the parser never prints"], DB) is not None
