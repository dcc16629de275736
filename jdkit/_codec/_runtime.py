"""Hand-written helpers the generated codec (`_generated.py`) calls.

They carry the parts of betterproto2's wire semantics that are the same for
every message: varints exactly as betterproto2 reads and writes them (at most
ten bytes in, two's complement for negatives out, no upper bound on write),
unknown fields kept as their raw bytes, and `Timestamp` <-> `datetime` by
betterproto2's own formulas. Anything the bytes do not allow raises
`DecodeError`, where betterproto2 would return an object built from garbage.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_UTC = _dt.UTC
_TD = _dt.timedelta
_DATETIME = _dt.datetime

#: varint bytes of 0..127, the common case for lengths, tags and small ints
VI: list[bytes] = [bytes((n,)) for n in range(128)]

#: Timestamp payload bytes -> datetime, and datetime -> payload bytes. Both are
#: pure functions of immutable values; a reply's timestamps often repeat (a
#: node's created_at == updated_at, a batch's jobs share their second), and a
#: timedelta + datetime addition costs more than the whole rest of the field.
_TS_DECODED: dict[bytes, _dt.datetime] = {}
_TS_ENCODED: dict[_dt.datetime, bytes] = {}
_CACHE_MAX = 8192


class DecodeError(ValueError):
    """The bytes are not a well-formed encoding of the expected message."""


def vcont(data: bytes, i: int, v: int) -> tuple[int, int]:
    """Finish a varint whose first byte `v` (>= 0x80) was read; betterproto2's
    limit of ten bytes, no masking of the tenth."""
    v &= 0x7F
    shift = 7
    while True:
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, i
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than ten bytes")


def varint(data: bytes, i: int) -> tuple[int, int]:
    v = data[i]
    i += 1
    if v >= 0x80:
        return vcont(data, i, v)
    return v, i


def skip(data: bytes, i: int, key: int, end: int) -> int:
    """Step over the value of an unknown field (key already read)."""
    if key >> 3 == 0:
        raise DecodeError("field number 0")
    wire = key & 7
    if wire == 0:
        _, i = varint(data, i)
    elif wire == 1:
        i += 8
    elif wire == 2:
        n, i = varint(data, i)
        i += n
    elif wire == 5:
        i += 4
    else:
        raise DecodeError(f"field {key >> 3} uses wire type {wire} (groups are not supported)")
    if i > end:
        raise DecodeError(f"field {key >> 3} is truncated")
    return i


def wrong_wire(message: str, name: str, key: int) -> DecodeError:
    return DecodeError(f"{message}.{name} (#{key >> 3}) has the wrong wire type {key & 7}")


def truncated(message: str) -> DecodeError:
    return DecodeError(f"{message} is truncated or overruns its length")


def vi(v: int) -> bytes:
    """betterproto2's `encode_varint`, byte for byte."""
    if v < 0:
        if v < -(1 << 63):
            raise ValueError(
                "Negative value is not representable as a 64-bit integer - "
                "unable to encode a varint within 10 bytes."
            )
        v += 1 << 64
    if v < 0x80:
        return VI[v]
    # unrolled up to five bytes (lengths, ids, timestamps' seconds and nanos)
    if v < 0x4000:
        return bytes((v & 0x7F | 0x80, v >> 7))
    if v < 0x200000:
        return bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14))
    if v < 0x10000000:
        return bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14 & 0x7F | 0x80, v >> 21))
    if v < 0x800000000:
        return bytes(
            (
                v & 0x7F | 0x80,
                v >> 7 & 0x7F | 0x80,
                v >> 14 & 0x7F | 0x80,
                v >> 21 & 0x7F | 0x80,
                v >> 28,
            )
        )
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v: int) -> int:
    return v << 1 if v >= 0 else (v << 1) ^ (~0)


def to_datetime(seconds: int, nanos: int) -> _dt.datetime:
    """`Timestamp.to_datetime` (betterproto2's formula, its overflow errors)."""
    return _EPOCH + _TD(0, seconds, nanos // 1000)  # positional: half the cost of keywords


def ts_decode(data: bytes, i: int, end: int) -> _dt.datetime:
    """A Timestamp field's payload as the datetime betterproto2 unwraps it to."""
    key = data[i:end]
    got = _TS_DECODED.get(key)
    if got is not None:
        return got
    seconds = nanos = 0
    while i < end:
        k = data[i]
        i += 1
        if k >= 0x80:
            k, i = vcont(data, i, k)
        if k == 8:
            v = data[i]
            i += 1
            if v >= 0x80:
                v, i = vcont(data, i, v)
            v &= 0xFFFFFFFFFFFFFFFF
            seconds = (v ^ 0x8000000000000000) - 0x8000000000000000
        elif k == 16:
            v = data[i]
            i += 1
            if v >= 0x80:
                v, i = vcont(data, i, v)
            v &= 0xFFFFFFFF
            nanos = (v ^ 0x80000000) - 0x80000000
        elif k >> 3 in (1, 2):
            raise wrong_wire("google.protobuf.Timestamp", "seconds" if k >> 3 == 1 else "nanos", k)
        else:
            i = skip(data, i, k, end)  # unknown fields: dropped by to_wrapped()
    if i != end:
        raise truncated("google.protobuf.Timestamp")
    try:
        got = to_datetime(seconds, nanos)
    except OverflowError:
        raise DecodeError(f"Timestamp {seconds}s {nanos}ns is out of datetime's range") from None
    if len(_TS_DECODED) >= _CACHE_MAX:
        _TS_DECODED.clear()
    _TS_DECODED[key] = got
    return got


def ts_encode(value: Any) -> bytes:
    """Length and payload of `Timestamp.from_datetime(value)`, as betterproto2 writes them."""
    exact = type(value) is _DATETIME
    if exact:
        got = _TS_ENCODED.get(value)
        if got is not None:
            return got
    if not value.tzinfo:
        raise ValueError("datetime must be timezone aware")
    offset = value.astimezone(_UTC) - _EPOCH
    offset_us = (offset.days * 86400 + offset.seconds) * 10**6 + offset.microseconds
    seconds, us = divmod(offset_us, 10**6)
    nanos = us * 1000
    out = b""
    if seconds != 0:
        out += b"\x08" + vi(seconds)
    if nanos != 0:
        out += b"\x10" + vi(nanos)
    out = VI[len(out)] + out
    if exact:
        if len(_TS_ENCODED) >= _CACHE_MAX:
            _TS_ENCODED.clear()
        _TS_ENCODED[value] = out
    return out


def clear_memos() -> None:
    """Forget memoised timestamps (benchmarks use it to time first sight)."""
    _TS_DECODED.clear()
    _TS_ENCODED.clear()
