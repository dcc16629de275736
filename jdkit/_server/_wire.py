"""A strict protobuf wire-format check, run before betterproto2 parses a request.

betterproto2's parser is lenient: truncated varints and fields, group wire
types and a field sent with the wrong wire type come through as odd values
(an int where a str belongs) instead of errors, and would surface later as
server errors. Checking the bytes against the message's declared fields
first turns all of that into a clear INVALID_ARGUMENT. Unknown fields are
skipped, as protobuf requires.
"""

from __future__ import annotations

from typing import Any

import betterproto2 as bp

_MAX_DEPTH = 100

_WIRE_OF: dict[str, int] = {
    **{
        t: 0
        for t in (
            bp.TYPE_ENUM,
            bp.TYPE_BOOL,
            bp.TYPE_INT32,
            bp.TYPE_INT64,
            bp.TYPE_UINT32,
            bp.TYPE_UINT64,
            bp.TYPE_SINT32,
            bp.TYPE_SINT64,
        )
    },
    **{t: 1 for t in (bp.TYPE_DOUBLE, bp.TYPE_FIXED64, bp.TYPE_SFIXED64)},
    **{t: 5 for t in (bp.TYPE_FLOAT, bp.TYPE_FIXED32, bp.TYPE_SFIXED32)},
    **{t: 2 for t in (bp.TYPE_STRING, bp.TYPE_BYTES, bp.TYPE_MESSAGE, bp.TYPE_MAP)},
}


class WireError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    end = min(len(data), i + 10)
    while i < end:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
    raise WireError("truncated or over-long varint")


def _check_packed(payload: bytes, wire: int, name: str) -> None:
    if wire == 0:
        i = 0
        while i < len(payload):
            _, i = _varint(payload, i)
    elif len(payload) % (8 if wire == 1 else 4):
        raise WireError(f"packed field {name} has a partial element")


def check(data: bytes, cls: Any, depth: int = 0) -> None:
    """Raise WireError unless `data` is a well-formed encoding of `cls`."""
    if depth > _MAX_DEPTH:
        raise WireError(f"messages nested deeper than {_MAX_DEPTH}")
    meta = cls._betterproto
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        payload = b""
        if wire == 0:
            _, i = _varint(data, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > n:
                raise WireError(f"field {number} is truncated")
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > n:
                raise WireError(f"field {number} is truncated")
            payload, i = data[i : i + length], i + length
        else:
            raise WireError(f"field {number} uses wire type {wire} (groups are not supported)")
        name = meta.field_name_by_number.get(number)
        if name is None:
            continue
        fm = meta.meta_by_field_name[name]
        want = _WIRE_OF.get(fm.proto_type, 2)
        if wire != want:
            if wire == 2 and fm.repeated and want != 2:
                _check_packed(payload, want, name)
                continue
            raise WireError(f"field {name} (#{number}) has wire type {wire}, expected {want}")
        if wire != 2:
            continue
        if fm.proto_type == bp.TYPE_STRING:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise WireError(f"field {name} is not valid UTF-8") from None
        elif fm.proto_type in (bp.TYPE_MESSAGE, bp.TYPE_MAP):
            sub = fm.unwrap() if fm.unwrap else meta.cls_by_field[name]
            check(payload, sub, depth + 1)
