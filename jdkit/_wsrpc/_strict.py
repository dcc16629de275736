"""Strict protobuf decoding for wsrpc messages, used by both sides.

betterproto2's parser is lenient: a truncated field or one sent with the
wrong wire type comes through as an empty or oddly typed value (an int where
a message belongs) instead of an error. On wsrpc a message that does not
decode must be dropped, never half-read, so the bytes are checked against
the message's declared fields first. Unknown fields are skipped, as
protobuf requires. (The JD's gRPC side has its own check in `_server._wire`;
this one is here so the node side does not depend on the server package.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import betterproto2 as bp

M = TypeVar("M", bound=bp.Message)

_MAX_DEPTH = 64
_VARINT = {
    bp.TYPE_ENUM,
    bp.TYPE_BOOL,
    bp.TYPE_INT32,
    bp.TYPE_INT64,
    bp.TYPE_UINT32,
    bp.TYPE_UINT64,
    bp.TYPE_SINT32,
    bp.TYPE_SINT64,
}
_FIXED64 = {bp.TYPE_DOUBLE, bp.TYPE_FIXED64, bp.TYPE_SFIXED64}
_FIXED32 = {bp.TYPE_FLOAT, bp.TYPE_FIXED32, bp.TYPE_SFIXED32}


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


def _wire_of(proto_type: str) -> int:
    if proto_type in _VARINT:
        return 0
    if proto_type in _FIXED64:
        return 1
    if proto_type in _FIXED32:
        return 5
    return 2


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
    raise DecodeError("truncated or over-long varint")


def _packed(payload: bytes, wire: int, name: str) -> None:
    if wire == 0:
        i = 0
        while i < len(payload):
            _, i = _varint(payload, i)
    elif len(payload) % (8 if wire == 1 else 4):
        raise DecodeError(f"packed field {name} has a partial element")


def check(data: bytes, cls: type[bp.Message], depth: int = 0) -> None:
    """Raise DecodeError unless `data` is a well-formed encoding of `cls`."""
    if depth > _MAX_DEPTH:
        raise DecodeError(f"messages nested deeper than {_MAX_DEPTH}")
    meta: Any = getattr(cls, "_betterproto")  # noqa: B009 - a class property
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        payload = b""
        if wire == 0:
            _, i = _varint(data, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > n:
                raise DecodeError(f"field {number} is truncated")
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > n:
                raise DecodeError(f"field {number} is truncated")
            payload, i = data[i : i + length], i + length
        else:
            raise DecodeError(f"field {number} uses wire type {wire}")
        name = meta.field_name_by_number.get(number)
        if name is None:
            continue
        fm = meta.meta_by_field_name[name]
        want = _wire_of(fm.proto_type)
        if wire != want:
            if wire == 2 and fm.repeated and want != 2:
                _packed(payload, want, name)
                continue
            raise DecodeError(f"field {name} (#{number}) has wire type {wire}, expected {want}")
        if wire != 2:
            continue
        if fm.proto_type == bp.TYPE_STRING:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError(f"field {name} is not valid UTF-8") from None
        elif fm.proto_type == bp.TYPE_MAP:
            _map_entry(payload, fm, meta, name, depth)
        elif fm.proto_type == bp.TYPE_MESSAGE:
            sub = meta.cls_by_field[name]
            if fm.unwrap is None and isinstance(sub, type) and issubclass(sub, bp.Message):
                check(payload, sub, depth + 1)


def _map_entry(payload: bytes, fm: Any, meta: Any, name: str, depth: int) -> None:
    key_meta, value_meta = fm.map_meta
    i, n = 0, len(payload)
    while i < n:
        key, i = _varint(payload, i)
        number, wire = key >> 3, key & 7
        sub_meta = key_meta if number == 1 else value_meta if number == 2 else None
        want = _wire_of(sub_meta.proto_type) if sub_meta is not None else wire
        if wire != want:
            raise DecodeError(f"map {name} entry field {number} has wire type {wire}")
        if wire == 0:
            _, i = _varint(payload, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > n:
                raise DecodeError(f"map {name} entry is truncated")
        elif wire == 2:
            length, i = _varint(payload, i)
            if i + length > n:
                raise DecodeError(f"map {name} entry is truncated")
            part, i = payload[i : i + length], i + length
            if sub_meta is not None and sub_meta.proto_type == bp.TYPE_STRING:
                try:
                    part.decode("utf-8")
                except UnicodeDecodeError:
                    raise DecodeError(f"map {name} key or value is not valid UTF-8") from None
            elif sub_meta is not None and sub_meta.proto_type == bp.TYPE_MESSAGE:
                check(part, meta.cls_by_field[f"{name}.value"], depth + 1)
        else:
            raise DecodeError(f"map {name} entry uses wire type {wire}")


def decode(data: bytes, cls: type[M]) -> M:
    check(data, cls)
    try:
        return cls.parse(data)
    except Exception as exc:  # a parser disagreement is still "does not decode"
        raise DecodeError(str(exc)) from None


def decoder(cls: type[M]) -> Callable[[bytes], M]:
    def run(data: bytes) -> M:
        return decode(data, cls)

    return run
