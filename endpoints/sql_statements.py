r"""A BigQuery script's statements, by its top-level semicolons, and its text without comments: pure functions over
SQL text (no parser). Strict BigQuery mode (endpoints.bigquery_strict) falls back to them for a script sqlglot cannot
read whole, and ddl.apply splits the DDL files with them.

    >>> split_statements("SELECT ';' AS x; -- only a comment;\nSELECT 2")
    ["SELECT ';' AS x", '-- only a comment;\nSELECT 2']
    >>> strip_comments("SELECT 1 -- one")
    'SELECT 1 '
"""

from __future__ import annotations

import re

# Scripting loops, whose bodies hold statements of their own (split_statements keeps a loop whole).
_LOOP_OPENERS = frozenset({"FOR", "WHILE", "LOOP", "REPEAT"})
_LOOP_CLOSER = re.compile(r"\s+(FOR|WHILE|LOOP|REPEAT)\b", re.I)


def split_statements(sql: str) -> list[str]:
    """Split a SQL script on top-level semicolons, keeping each statement's text (comments included) as written.

    Quotes ('', "", ``, triple quotes) and comments (--, #, /* */) are skipped over, so a semicolon inside them
    does not split. A scripting loop (FOR ... DO ... END FOR, WHILE ... END WHILE, LOOP ... END LOOP,
    REPEAT ... END REPEAT) stays one statement with the statements in its body. Statements that are only
    comments are dropped.
    """
    statements: list[str] = []
    start = i = 0
    n = len(sql)
    depth = 0  # open loops
    fresh = True  # nothing but white space and comments since the last statement began
    while i < n:
        c = sql[i]
        if c.isalpha() or c == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            word = sql[i:j].upper()
            if fresh and word in _LOOP_OPENERS:
                depth += 1
            elif word == "END" and depth:
                closing = _LOOP_CLOSER.match(sql, j)
                if closing:
                    depth -= 1
                    j = closing.end()
            fresh = word in ("DO", "LOOP", "REPEAT")  # a loop body's first statement begins after these
            i = j
        elif sql.startswith(("--", "#"), i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in "'\"`":
            quote = sql[i : i + 3] if sql[i : i + 3] in ("'''", '"""') else c
            i += len(quote)
            while i < n and not sql.startswith(quote, i):
                i += 2 if sql[i] == "\\" else 1
            i += len(quote)
        elif c == ";":
            if depth == 0:
                statements.append(sql[start:i])
                start = i + 1
            i += 1
            fresh = True
        else:
            fresh = fresh and c.isspace()
            i += 1
    statements.append(sql[start:])
    return [s.strip() for s in statements if strip_comments(s).strip()]


def strip_comments(sql: str) -> str:
    """The statement without -- / # / /* */ comments (quotes respected); used to classify statements."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith(("--", "#"), i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif sql[i] in "'\"`":
            quote = sql[i : i + 3] if sql[i : i + 3] in ("'''", '"""') else sql[i]
            j = i + len(quote)
            while j < n and not sql.startswith(quote, j):
                j += 2 if sql[j] == "\\" else 1
            j += len(quote)
            out.append(sql[i:j])
            i = j
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)
