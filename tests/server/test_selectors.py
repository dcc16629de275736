"""Label selectors: the pure matcher against the rules, and its SQL twin against the matcher."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from jdkit._server._selectors import matches, selector_matches, split_items, sql_condition
from jdkit.pb import label

Op = label.SelectorOp
S = label.Selector

LABELS: dict[str, str | None] = {
    "env": "prod",
    "team": "a",
    "bare": None,
    "empty": "",
    "spaced": "x y",
}

CASES = [
    # (selector, expected)
    (S(key="env", op=Op.EQ, value="prod"), True),
    (S(key="env", op=Op.EQ, value="dev"), False),
    (S(key="env", op=Op.EQ, value="PROD"), False),
    (S(key="missing", op=Op.EQ, value="prod"), False),
    (S(key="bare", op=Op.EQ, value=""), False),  # a label without a value: false
    (S(key="bare", op=Op.EQ), False),
    (S(key="empty", op=Op.EQ, value=""), True),  # "" is a value
    (S(key="empty", op=Op.EQ), True),  # no selector value compares as ""
    (S(key="env", op=Op.NOT_EQ, value="dev"), True),
    (S(key="env", op=Op.NOT_EQ, value="prod"), False),
    (S(key="missing", op=Op.NOT_EQ, value="prod"), False),  # missing key: false
    (S(key="bare", op=Op.NOT_EQ, value="x"), False),
    (S(key="env", op=Op.IN, value="dev,prod"), True),
    (S(key="env", op=Op.IN, value=" dev , prod "), True),  # items trimmed
    (S(key="env", op=Op.IN, value="dev,staging"), False),
    (S(key="env", op=Op.IN, value="prod"), True),
    (S(key="spaced", op=Op.IN, value="a, x y ,b"), True),
    (S(key="missing", op=Op.IN, value="prod"), False),
    (S(key="bare", op=Op.IN, value="prod"), False),
    (S(key="env", op=Op.NOT_IN, value="dev, staging"), True),
    (S(key="env", op=Op.NOT_IN, value="dev,prod"), False),
    (S(key="missing", op=Op.NOT_IN, value="dev"), False),
    (S(key="bare", op=Op.NOT_IN, value="dev"), False),
    (S(key="env", op=Op.EXIST), True),
    (S(key="bare", op=Op.EXIST), True),  # presence is all that counts
    (S(key="missing", op=Op.EXIST), False),
    (S(key="env", op=Op.EXIST, value="ignored"), True),
    (S(key="env", op=Op.NOT_EXIST), False),
    (S(key="bare", op=Op.NOT_EXIST), False),
    (S(key="missing", op=Op.NOT_EXIST), True),
    (S(key="env", op=Op(42), value="prod"), False),  # unknown operator never matches
    (S(key="missing", op=Op(-1)), False),
]


@pytest.mark.parametrize(("sel", "expected"), CASES, ids=lambda v: repr(v)[:60])
def test_selector_rules(sel: label.Selector, expected: bool) -> None:
    assert selector_matches(LABELS, sel) is expected


def test_all_selectors_must_match_and_empty_list_matches_everything() -> None:
    yes, no = S(key="env", op=Op.EQ, value="prod"), S(key="team", op=Op.EQ, value="b")
    assert matches(LABELS, [])
    assert matches({}, [])
    assert matches(LABELS, [yes, S(key="team", op=Op.IN, value="a,b")])
    assert not matches(LABELS, [yes, no])


def test_split_items() -> None:
    assert split_items(" a ,b,, c ") == ["a", "b", "", "c"]
    assert split_items(None) == [""]


LABEL_SETS: list[dict[str, str | None]] = [
    LABELS,
    {},
    {"env": None},
    {"env": ""},
    {"env": "dev", "team": "b"},
    {"team": "a"},
    {"env": "prod", "x": "1"},
]


def _sqlite_with(label_sets: list[dict[str, str | None]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE o (id TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE o_labels (owner_id TEXT, lkey TEXT, lvalue TEXT)")
    for i, labels in enumerate(label_sets):
        conn.execute("INSERT INTO o VALUES (?)", [str(i)])
        conn.executemany(
            "INSERT INTO o_labels VALUES (?, ?, ?)", [(str(i), k, v) for k, v in labels.items()]
        )
    return conn


def test_sql_condition_agrees_with_matcher() -> None:
    """Every selector of the table, alone and in pairs, against every label set."""
    conn = _sqlite_with(LABEL_SETS)
    sels = [s for s, _ in CASES]
    combos = [[s] for s in sels] + [list(p) for p in itertools.combinations(sels[:12], 2)]
    for combo in combos:
        parts, params = [], []
        for s in combo:
            cond = sql_condition(s, "id", "o_labels")
            assert cond is not None
            parts.append(cond[0])
            params.extend(cond[1])
        got = {
            int(r[0]) for r in conn.execute(f"SELECT id FROM o WHERE {' AND '.join(parts)}", params)
        }
        want = {i for i, labels in enumerate(LABEL_SETS) if matches(labels, combo)}
        assert got == want, combo


def test_huge_in_list_is_left_to_python() -> None:
    sel = S(key="env", op=Op.IN, value=",".join(str(i) for i in range(5000)) + ",prod")
    assert sql_condition(sel, "id", "o_labels") is None
    assert selector_matches(LABELS, sel)
