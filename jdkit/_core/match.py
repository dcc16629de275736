"""Label selectors and list filters, evaluated in Python.

Selector rules (SEMANTICS): `EQ`/`NOT_EQ` compare the label's value; `IN`/
`NOT_IN` take a comma-separated list whose items are trimmed of spaces;
`EXIST`/`NOT_EXIST` look only at the key. A missing key, or a label without
a value, makes every operator false except `EXIST` (true iff the key is
present) and `NOT_EXIST` (true iff absent). An unknown operator never matches.

Choices where the record is silent: a selector without a value compares as
the empty string; a label whose value is set to "" *has* a value ("").

`matches` is the definition. The server renders the same rule as SQL
(`jdkit._server._selectors.sql_condition`) so its database can use an index;
the filters here are what the server falls back to for inputs too large for
SQL, and what the dry run applies to its planned writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from jdkit._core.validate import normalise_uuid
from jdkit._exceptions import InvalidArgumentError
from jdkit._proto.api.job.v1 import Job, ListJobsRequestFilter, Proposal
from jdkit._proto.api.label import Label, Selector, SelectorOp
from jdkit._proto.api.node.v1 import EnableState, ListNodesRequestFilter, Node

Labels = Mapping[str, str | None]
T = TypeVar("T")


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


# ----------------------------------------------------------- list filters


def check_enabled(flt: ListNodesRequestFilter) -> None:
    if flt.enabled not in (EnableState.UNSPECIFIED, EnableState.ENABLED, EnableState.DISABLED):
        raise InvalidArgumentError(f"filter.enabled: unknown EnableState value {int(flt.enabled)}")


def check_paging(page_size: int, page: int) -> None:
    if page_size < 0:
        raise InvalidArgumentError("page_size must be >= 0 (0 returns every match)")
    if page < 0:
        raise InvalidArgumentError("page must be >= 0 (pages are 1-based; 0 means 1)")


def page_offset(page_size: int, page: int) -> int:
    return (max(page, 1) - 1) * page_size


def paginate(items: Sequence[T], page_size: int, page: int) -> list[T]:
    """ListNodes paging: size 0 is everything; a page past the end is empty."""
    if not page_size:
        return list(items)
    offset = page_offset(page_size, page)
    return list(items[offset : offset + page_size])


def node_matches(flt: ListNodesRequestFilter, n: Node) -> bool:
    keys = {k.lower() for k in flt.public_keys}
    if flt.ids and n.id not in flt.ids:
        return False
    if keys and n.public_key not in keys:
        return False
    if flt.enabled == EnableState.ENABLED and not n.is_enabled:
        return False
    if flt.enabled == EnableState.DISABLED and n.is_enabled:
        return False
    return matches(label_map(n.labels), flt.selectors)


def job_matches(flt: ListJobsRequestFilter, j: Job) -> bool:
    if flt.ids and j.id not in flt.ids:
        return False
    if flt.node_ids and j.node_id not in flt.node_ids:
        return False
    if flt.uuids and j.uuid not in {normalise_uuid(u) for u in flt.uuids}:
        return False
    if not flt.include_deleted and j.deleted_at is not None:
        return False
    return matches(label_map(j.labels), flt.selectors)


def proposal_matches(ids: Sequence[str], job_ids: Sequence[str], p: Proposal) -> bool:
    return (not ids or p.id in ids) and (not job_ids or p.job_id in job_ids)
