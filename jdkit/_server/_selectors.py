"""SQL twin of the label-selector matcher, for index-backed filtering.

`jdkit._core.match.matches` is the definition (the rules are written there).
`sql_condition` renders the same rule against a `(owner_id, lkey, lvalue)`
label table so the database can use its index; the tests check the two agree
on the same table of cases.
"""

from __future__ import annotations

from jdkit._core.match import Labels, label_map, matches, selector_matches, split_items
from jdkit._proto.api.label import Selector, SelectorOp

__all__ = [
    "MAX_SQL_ITEMS",
    "Labels",
    "label_map",
    "matches",
    "selector_matches",
    "split_items",
    "sql_condition",
]

#: IN lists longer than this are filtered in Python rather than in SQL, to stay
#: far below SQLite's and Postgres's bound-parameter limits.
MAX_SQL_ITEMS = 200


def sql_condition(sel: Selector, owner_col: str, label_table: str) -> tuple[str, list[str]] | None:
    """A WHERE fragment equivalent to `selector_matches`, or None when it is
    better evaluated in Python (very long IN lists).

    `owner_col` and `label_table` are trusted identifiers, never user input.
    """
    sub = f"SELECT owner_id FROM {label_table} WHERE lkey = ?"
    op = sel.op
    if op == SelectorOp.EXIST:
        return f"{owner_col} IN ({sub})", [sel.key]
    if op == SelectorOp.NOT_EXIST:
        return f"{owner_col} NOT IN ({sub})", [sel.key]
    want = sel.value or ""
    if op == SelectorOp.EQ:
        return f"{owner_col} IN ({sub} AND lvalue = ?)", [sel.key, want]
    if op == SelectorOp.NOT_EQ:
        return (f"{owner_col} IN ({sub} AND lvalue IS NOT NULL AND lvalue <> ?)", [sel.key, want])
    if op in (SelectorOp.IN, SelectorOp.NOT_IN):
        items = split_items(sel.value)
        if len(items) > MAX_SQL_ITEMS:
            return None
        marks = ", ".join("?" for _ in items)
        neg = "NOT " if op == SelectorOp.NOT_IN else ""
        return (
            f"{owner_col} IN ({sub} AND lvalue IS NOT NULL AND lvalue {neg}IN ({marks}))",
            [sel.key, *items],
        )
    return "1 = 0", []
