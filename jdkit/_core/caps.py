"""Count capped repeated fields on the wire, before a request is decoded.

Decoding is where a request built to make the server work costs the most: a
RegisterNode with 300,000 labels fits in a 4 MiB message and took tens of
seconds of the event loop to check and parse. This scan reads only field
keys and lengths, and stops at the first field over its cap, so refusing
such a request costs a few hundred field skips. Limits are the rulebook's
(`jdkit._core.validate`); the scan only applies them early.

Malformed bytes are not this scan's business: it returns quietly and leaves
the strict wire check or decoder to say what is wrong.
"""

from __future__ import annotations

import functools
from typing import Any

import betterproto2 as bp

from jdkit._core import validate
from jdkit._core.wire import WireError, read_varint
from jdkit._proto.api.label import Label

#: the generated JD API's module prefix (its messages, not google.protobuf's)
_API = Label.__module__.rpartition(".")[0]


class CapExceeded(ValueError):
    """A repeated field has more entries than the rulebook allows."""


def _limit(name: str) -> int:
    if name == "labels":
        return validate.MAX_LABELS
    if name == "selectors":
        return validate.MAX_SELECTORS
    return validate.MAX_IDS


@functools.cache
def _plan(cls: Any) -> dict[int, tuple[str, int | None, Any]]:
    """field number -> (name, cap or None, message class to look into or None)."""
    meta = cls._betterproto
    plan: dict[int, tuple[str, int | None, Any]] = {}
    for name, fm in meta.meta_by_field_name.items():
        sub = None
        if fm.proto_type == bp.TYPE_MESSAGE and not fm.repeated:
            candidate = meta.cls_by_field.get(name)
            # only our own request parts (filters); not google.protobuf.Struct & co.
            if candidate is not None and candidate.__module__.startswith(_API):
                sub = candidate
        limit = _limit(name) if fm.repeated or fm.proto_type == bp.TYPE_MAP else None
        if limit is not None or sub is not None:
            plan[fm.number] = (name, limit, sub)
    return plan


def check_counts(data: bytes, cls: Any, prefix: str = "", depth: int = 0) -> None:
    """Raise CapExceeded when a capped repeated field of `cls` (or of one of
    its request sub-messages) has more entries than allowed."""
    plan = _plan(cls)
    if not plan:
        return
    counts: dict[int, int] = {}
    i, n = 0, len(data)
    while i < n:
        try:
            key, i = read_varint(data, i)
            number, wire = key >> 3, key & 7
            start = i
            if wire == 0:
                _, i = read_varint(data, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                length, i = read_varint(data, i)
                start, i = i, i + length
            else:
                return
        except WireError:
            return  # malformed: the strict check reports it
        if i > n:
            return
        entry = plan.get(number)
        if entry is None:
            continue
        name, limit, sub = entry
        if limit is not None:
            count = counts[number] = counts.get(number, 0) + 1
            if count > limit:
                raise CapExceeded(
                    f"{prefix}{name} has more than {limit} entries; the limit is {limit}"
                )
        elif sub is not None and wire == 2 and depth < 4:
            check_counts(data[start:i], sub, f"{prefix}{name}.", depth + 1)
