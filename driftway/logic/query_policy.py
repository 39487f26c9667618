"""Which user queries may run: those that read the monitoring database only.

The decision is taken on ClickHouse's own parse of the query (the text of ``EXPLAIN AST``, one
node a line, indented by depth), so comments, case, quoting and nesting are the parser's
business, not a pattern's. ClickHouse's ``readonly=1`` refuses writes, DDL, changed settings and
most table functions on its own; this policy adds what readonly lets through (the ``file()``
function, ``INTO OUTFILE``, dictionaries, other databases' tables) and says why in words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Table functions that only generate rows from their arguments: no file, network or table.
GENERATORS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generateseries",
                        "generate_series", "values"})

#: Scalar functions that read outside the query's tables (files, dictionaries, Join tables,
#: other tables' metadata, model files). Names lowercased; dictionary functions by prefix.
OUTSIDE_READERS = frozenset({"file", "joinget", "joingetornull", "hascolumnintable",
                             "catboostevaluate", "modelevaluate", "getserversetting",
                             "getmergetreesetting", "filesystemavailable", "filesystemcapacity",
                             "filesystemunreserved", "filesystemfree"})

#: IN and its variants: a table name on their right is read like a FROM.
IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin",
                          "globalnullin", "globalnotnullin", "inignoreset", "notinignoreset"})

#: Statements allowed besides SELECT (and UNION / WITH of SELECTs): their parse's root node.
ROOTS = frozenset({"SelectWithUnionQuery", "DescribeQuery"})

_LINE = re.compile(r"^(?P<indent> *)(?P<kind>\w+)(?: (?P<rest>.*?))?(?: \(children \d+\))?$")


def refusal(explained: Sequence[str], database: str, canonical: str = "") -> str | None:
    """Why the query whose ``EXPLAIN AST`` lines are `explained` may not run, or None.

    `canonical` is the query as ``formatQuery`` writes it (comments gone); a bare ``SHOW
    TABLES`` of `database` is allowed by it.

    >>> ast = ["SelectWithUnionQuery (children 1)", " ExpressionList (children 1)",
    ...        "  SelectQuery (children 2)", "   ExpressionList (children 1)",
    ...        "    Asterisk", "   TablesInSelectQuery (children 1)",
    ...        "    TablesInSelectQueryElement (children 1)",
    ...        "     TableExpression (children 1)", "      TableIdentifier driftway.labels"]
    >>> refusal(ast, "driftway") is None
    True
    >>> refusal([*ast[:-1], "      Function file (children 1)"], "driftway")[:38]
    'refused: the query reads file(...), a '
    """
    if re.fullmatch(rf"SHOW TABLES(?: FROM `?{re.escape(database)}`?)?", canonical.strip()):
        return None
    nodes = [_node(line) for line in explained if line.strip()]
    if not nodes:
        return "refused: the query is empty"
    root_depth, root, _ = nodes[0]
    only = f"queries may only read tables of {database}"
    if root not in ROOTS:
        statement = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", root.removesuffix("Query")).upper()
        return (f"refused: {statement or root} is not a query that reads; only SELECT, "
                f"DESCRIBE and SHOW TABLES run here, readonly ({only})")
    for i, (depth, kind, text) in enumerate(nodes):
        parent = _parent(nodes, i)
        if kind == "Set":
            return ("refused: the query sets ClickHouse settings (SETTINGS ...); its limits "
                    "and readonly mode are fixed by Driftway's `query` settings")
        if depth == root_depth + 1 and parent == 0 and kind == "Literal":
            return f"refused: INTO OUTFILE writes a file; {only}"
        if depth == root_depth + 1 and parent == 0 and kind == "Identifier" and text != "Native":
            return f"refused: the query names its output FORMAT ({text}); leave it to the client"
        name = _name(text)
        if kind == "Function" and parent is not None and nodes[parent][1] == "TableExpression":
            if name.lower() not in GENERATORS:
                return (f"refused: the query reads {name}(...), a table function outside the "
                        f"monitoring database; {only}")
        elif kind == "Function" and (name.lower() in OUTSIDE_READERS
                                     or name.lower().startswith("dict")):
            return (f"refused: the query calls {name}(...), which reads outside the monitoring "
                    f"database; {only}")
        elif kind == "TableIdentifier" and not _ours(text, database):
            return f"refused: the query reads {name}, a table outside {database}; {only}"
        elif kind == "Identifier" and _in_table_argument(nodes, i) and not _ours(text, database):
            return f"refused: the query reads {name} (after IN), a table outside {database}; {only}"
    return None


#: The one setting a query may choose: ``SETTINGS final = 0`` reads rows as stored (a record
#: the sink stored twice shows twice), instead of deduplicated, the default.
_FINAL = re.compile(r"\s+SETTINGS\s+final\s*=\s*([01])\s*$")


def deduplicating(canonical: str) -> tuple[str, bool]:
    """The query without its own trailing ``SETTINGS final = 0|1``, and whether it reads
    deduplicated (FINAL: the default); any other SETTINGS stays, for `refusal` to refuse.

    >>> deduplicating("SELECT count()\\nFROM predictions\\nSETTINGS final = 0")
    ('SELECT count()\\nFROM predictions', False)
    >>> deduplicating("SELECT 1")
    ('SELECT 1', True)
    """
    match = _FINAL.search(canonical)
    if match is None:
        return canonical, True
    return canonical[:match.start()], match[1] == "1"


def _node(line: str) -> tuple[int, str, str]:
    match = _LINE.match(line.rstrip())
    if match is None:  # not the parser's shape: nothing to allow on
        return len(line) - len(line.lstrip()), "Unknown", line.strip()
    return len(match["indent"]), match["kind"], match["rest"] or ""


def _name(text: str) -> str:
    """The name a node shows, without its alias."""
    return re.sub(r" \(alias .*\)$", "", text)


def _parent(nodes: Sequence[tuple[int, str, str]], i: int) -> int | None:
    depth = nodes[i][0]
    for j in range(i - 1, -1, -1):
        if nodes[j][0] < depth:
            return j
    return None


def _ours(text: str, database: str) -> bool:
    """A table name of `database`: unqualified (a table of the default database, or a CTE) or
    qualified by it; anything the dump cannot show unambiguously is not."""
    return re.fullmatch(rf"(?:{re.escape(database)}\.)?[A-Za-z_][A-Za-z0-9_]*"
                        r"(?: \(alias [^()]*\))?", text) is not None


def _in_table_argument(nodes: Sequence[tuple[int, str, str]], i: int) -> bool:
    """Whether node `i` is the right-hand argument of IN (a table name there)."""
    args = _parent(nodes, i)
    if args is None or nodes[args][1] != "ExpressionList":
        return False
    function = _parent(nodes, args)
    if function is None or nodes[function][1] != "Function":
        return False
    if _name(nodes[function][2]).lower() not in IN_FUNCTIONS:
        return False
    siblings = [j for j in range(args + 1, len(nodes)) if nodes[j][0] == nodes[args][0] + 1
                and _parent(nodes, j) == args]
    return len(siblings) > 1 and siblings[1] == i
