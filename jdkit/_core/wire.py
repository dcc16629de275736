"""The strict protobuf wire check, run on received bytes before betterproto2 parses them.

betterproto2's parser is lenient: truncated varints and fields, group wire
types and a field sent with the wrong wire type come through as odd values
(an int where a str belongs) instead of errors. Checking the bytes against
the message's declared fields first turns all of that into a clear error.
Unknown fields are skipped, as protobuf requires; wrapped types (Timestamp,
the wrappers) and map entries are checked as the messages they are on the wire.

Both ends use this one check: the JD's gRPC side (a request that fails it gets
INVALID_ARGUMENT) and the node protocol, wsrpc (`jdkit._wsrpc._strict`: a
message that fails it is dropped), which allows less nesting than the gRPC
side's protobuf-usual 100 (`jdkit._wsrpc._strict.MAX_DEPTH`).
"""

from __future__ import annotations

from typing import Any

import betterproto2 as bp

#: How deeply messages may nest, unless the caller says otherwise: protobuf's
#: own default recursion limit.
MAX_DEPTH = 100

#: Proto types written as varints (wire type 0).
VARINT_TYPES = frozenset(
    {
        bp.TYPE_ENUM,
        bp.TYPE_BOOL,
        bp.TYPE_INT32,
        bp.TYPE_INT64,
        bp.TYPE_UINT32,
        bp.TYPE_UINT64,
        bp.TYPE_SINT32,
        bp.TYPE_SINT64,
    }
)
_FIXED64 = frozenset({bp.TYPE_DOUBLE, bp.TYPE_FIXED64, bp.TYPE_SFIXED64})
_FIXED32 = frozenset({bp.TYPE_FLOAT, bp.TYPE_FIXED32, bp.TYPE_SFIXED32})


class WireError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


def wire_of(proto_type: str) -> int:
    """The wire type a field of `proto_type` is written with (2 for strings,
    bytes, messages and maps)."""
    if proto_type in VARINT_TYPES:
        return 0
    if proto_type in _FIXED64:
        return 1
    if proto_type in _FIXED32:
        return 5
    return 2


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    """The varint at `data[i:]` and the index after it; at most ten bytes."""
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
            _, i = read_varint(payload, i)
    elif len(payload) % (8 if wire == 1 else 4):
        raise WireError(f"packed field {name} has a partial element")


def check(data: bytes, cls: Any, max_depth: int = MAX_DEPTH, depth: int = 0) -> None:
    """Raise WireError unless `data` is a well-formed encoding of `cls`, with
    messages nested at most `max_depth` deep."""
    if depth > max_depth:
        raise WireError(f"messages nested deeper than {max_depth}")
    meta = cls._betterproto
    i, n = 0, len(data)
    while i < n:
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        payload = b""
        if wire == 0:
            _, i = read_varint(data, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > n:
                raise WireError(f"field {number} is truncated")
        elif wire == 2:
            length, i = read_varint(data, i)
            if i + length > n:
                raise WireError(f"field {number} is truncated")
            payload, i = data[i : i + length], i + length
        else:
            raise WireError(f"field {number} uses wire type {wire} (groups are not supported)")
        name = meta.field_name_by_number.get(number)
        if name is None:
            continue
        fm = meta.meta_by_field_name[name]
        want = wire_of(fm.proto_type)
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
            # a map's class here is its entry message (key = 1, value = 2)
            sub = fm.unwrap() if fm.unwrap else meta.cls_by_field[name]
            check(payload, sub, max_depth, depth + 1)
