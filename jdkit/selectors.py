"""Label selectors and labels as text, the way `kubectl -l` writes them.

    >>> from jdkit import selectors
    >>> selectors.parse("env=prod, region in (eu, us), !deprecated")
    [Selector(key='env', value='prod'), Selector(key='region', op=<SelectorOp.IN: 2>, ...), ...]
    >>> selectors.format(selectors.parse("tier notin (a,b)"))
    'tier notin (a,b)'
    >>> selectors.parse_labels(["env=prod", "canary"])
    [Label(key='env', value='prod'), Label(key='canary')]

Requirements are separated by commas (commas inside `( )` belong to a set):

| text              | operator  | matches a node/job whose labels ...          |
|-------------------|-----------|----------------------------------------------|
| `key=value`       | EQ        | have `key` with exactly `value` (`==` too)    |
| `key!=value`      | NOT_EQ    | have `key` with another value                |
| `key in (a,b)`    | IN        | have `key` with one of the values            |
| `key notin (a,b)` | NOT_IN    | have `key` with none of the values           |
| `key`             | EXIST     | have `key`, whatever its value               |
| `!key`            | NOT_EXIST | do not have `key`                            |

The server evaluates them (see SEMANTICS: a missing key or a label without a
value matches only EXIST / NOT_EXIST). Bad input raises `ConfigError` (a
`ValueError`) whose message names the problem and where it is.

`Selector` is the message `parse` returns (`jdkit.pb.label.Selector`, also
`jdkit.Selector`) and `Op` its operator enum (`jdkit.pb.label.SelectorOp`),
for building selectors without text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from jdkit import _exports
from jdkit._exceptions import ConfigError
from jdkit.pb import label

__all__ = ["Op", "Selector", "format", "format_labels", "parse", "parse_labels", "parse_one"]

Selector = label.Selector
Op = label.SelectorOp

# A key is anything without whitespace or the characters the grammar uses.
_KEY = r"[^\s=!(),]+"
_NOT_EXIST = re.compile(rf"!\s*({_KEY})")
_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\((.*)\)", re.DOTALL)
_CMP = re.compile(rf"({_KEY})\s*(==|=|!=)\s*(.*)", re.DOTALL)
_EXIST = re.compile(_KEY)
_BAD_VALUE = re.compile(r"[=!()\s]")

_GRAMMAR = "key=value, key!=value, key in (a,b), key notin (a,b), key or !key"


def _split(text: str, what: str) -> list[tuple[int, str]]:
    """Split at top-level commas; (offset, piece) pairs. Checks parentheses."""
    pieces: list[tuple[int, str]] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            if depth:
                raise ConfigError(what, f"nested '(' at position {i + 1} in {text!r}")
            depth = 1
        elif ch == ")":
            if not depth:
                raise ConfigError(what, f"')' without '(' at position {i + 1} in {text!r}")
            depth = 0
        elif ch == "," and not depth:
            pieces.append((start, text[start:i]))
            start = i + 1
    if depth:
        raise ConfigError(what, f"'(' is never closed in {text!r}")
    pieces.append((start, text[start:]))
    return pieces


def _set_values(raw: str, key: str, text: str) -> str:
    items = [item.strip() for item in raw.split(",")]
    if not any(items):
        raise ConfigError("selector", f"empty set for {key!r} in {text!r}; expected e.g. (a,b)")
    if "" in items:
        raise ConfigError("selector", f"empty item in the set for {key!r} in {text!r}")
    for item in items:
        if _BAD_VALUE.search(item):
            raise ConfigError("selector", f"bad value {item!r} in the set for {key!r}")
    return ",".join(items)


def parse_one(text: str) -> label.Selector:
    """One requirement (no top-level commas), e.g. `env=prod` or `region in (a,b)`."""
    s = text.strip()
    if not s:
        raise ConfigError("selector", "empty requirement; expected " + _GRAMMAR)
    if m := _NOT_EXIST.fullmatch(s):
        return Selector(key=m[1], op=Op.NOT_EXIST)
    if m := _SET.fullmatch(s):
        op = Op.IN if m[2] == "in" else Op.NOT_IN
        return Selector(key=m[1], op=op, value=_set_values(m[3], m[1], s))
    if m := _CMP.fullmatch(s):
        value = m[3].strip()
        if _BAD_VALUE.search(value):
            raise ConfigError(
                "selector", f"bad value {value!r} for {m[1]!r} in {s!r} (no spaces, = ! ( ) or ,)"
            )
        return Selector(key=m[1], op=Op.EQ if m[2] != "!=" else Op.NOT_EQ, value=value)
    if _EXIST.fullmatch(s):
        return Selector(key=s, op=Op.EXIST)
    words = s.split()
    if len(words) >= 2 and words[1].lower() in ("in", "notin") and "(" not in s:
        raise ConfigError("selector", f"{s!r}: the values of {words[1]!r} go in ( ), e.g. (a,b)")
    if len(words) >= 2 and _EXIST.fullmatch(words[0]):
        raise ConfigError(
            "selector", f"unknown operator {words[1]!r} in {s!r}; expected " + _GRAMMAR
        )
    raise ConfigError("selector", f"cannot parse {s!r}; expected " + _GRAMMAR)


def parse(text: str | Iterable[str]) -> list[label.Selector]:
    """Parse a selector expression (or several, e.g. repeated `-l` flags) into Selectors.

    All requirements must match (they are ANDed). An empty string is no selector.
    """
    if isinstance(text, str):
        text = [text]
    out: list[label.Selector] = []
    for expr in text:
        if not expr.strip():
            continue
        for offset, piece in _split(expr, "selector"):
            if not piece.strip():
                raise ConfigError(
                    "selector",
                    f"empty requirement at position {offset + 1} in {expr!r} (stray comma?)",
                )
            out.append(parse_one(piece))
    return out


def _format_one(sel: label.Selector) -> str:
    value = sel.value or ""
    match sel.op:
        case Op.EQ:
            return f"{sel.key}={value}"
        case Op.NOT_EQ:
            return f"{sel.key}!={value}"
        case Op.IN:
            return f"{sel.key} in ({value})"
        case Op.NOT_IN:
            return f"{sel.key} notin ({value})"
        case Op.EXIST:
            return sel.key
        case Op.NOT_EXIST:
            return f"!{sel.key}"
    return f"{sel.key} <op {int(sel.op)}> {value}"


def format(selectors: Sequence[label.Selector]) -> str:
    """The text form of `selectors`; `parse(format(s))` gives `s` back."""
    return ", ".join(_format_one(s) for s in selectors)


def parse_labels(items: str | Iterable[str]) -> list[label.Label]:
    """`key=value` items (the value may hold `=` and `,`); a bare `key` is a label
    without a value, `key=` one with an empty value."""
    if isinstance(items, str):
        items = [items]
    out: list[label.Label] = []
    seen: set[str] = set()
    for item in items:
        key, eq, value = item.strip().partition("=")
        key = key.strip()
        if not key or not re.fullmatch(_KEY, key):
            raise ConfigError("label", f"bad key {key!r} in {item!r}; expected key=value")
        if key in seen:
            raise ConfigError("label", f"{key!r} is given twice")
        seen.add(key)
        out.append(label.Label(key=key, value=value.strip() if eq else None))
    return out


def format_labels(labels: Iterable[label.Label]) -> str:
    """`env=prod, canary` (a label without a value shows as its key)."""
    return ", ".join(lb.key if lb.value is None else f"{lb.key}={lb.value}" for lb in labels)


_exports.publish_all(globals())  # help(), reprs, tracebacks name this module; dir()
