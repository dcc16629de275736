"""Label selectors: one pure matcher, and its SQL twin for index-backed filtering.

Rules (docs/SEMANTICS): `EQ`/`NOT_EQ` compare the label's value; `IN`/`NOT_IN`
take a comma-separated list whose items are trimmed of spaces; `EXIST`/
`NOT_EXIST` look only at the key. A missing key, or a label without a value,
makes every operator false except `EXIST` (true iff the key is present) and
`NOT_EXIST` (true iff absent). An unknown operator never matches.

Choices where the record is silent: a selector without a value compares as
the empty string; a label whose value is set to "" *has* a value ("").

`matches` is the definition. `sql_condition` renders the same rule against a
`(owner_id, lkey, lvalue)` label table so the database can use its index; the
tests check the two agree on the same table of cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jdkit._proto.api.label import Label, Selector, SelectorOp

Labels = Mapping[str, str | None]

#: IN lists longer than this are filtered in Python rather than in SQL, to stay
#: far below SQLite's and Postgres's bound-parameter limits.
MAX_SQL_ITEMS = 200


def label_map(labels: Sequence[Label]) -> dict[str, str | None]:
    return {lb.key: lb.value for lb in labels}


def split_items(value: str | None) -> list[str]:
    """The items of an IN/NOT_IN value: comma-separated, each trimmed."""
    return [item.strip() for item in (value or "").split(",")]


def selector_matches(labels: Labels, sel: Selector) -> bool:
    op = sel.op
    present = sel.key in labels
    if op == SelectorOp.EXIST:
        return present
    if op == SelectorOp.NOT_EXIST:
        return not present
    value = labels.get(sel.key)
    if value is None:  # missing key, or a key without a value
        return False
    want = sel.value or ""
    if op == SelectorOp.EQ:
        return value == want
    if op == SelectorOp.NOT_EQ:
        return value != want
    if op == SelectorOp.IN:
        return value in split_items(sel.value)
    if op == SelectorOp.NOT_IN:
        return value not in split_items(sel.value)
    return False  # unknown operator


def matches(labels: Labels, selectors: Sequence[Selector]) -> bool:
    """True when every selector matches (an empty list matches everything)."""
    return all(selector_matches(labels, s) for s in selectors)


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
