"""Ids and timestamps the server hands out.

Ids are `<prefix>_<ulid>` (lower-case Crockford base32): opaque to clients,
but sortable by creation time, which keeps listings in a stable order without
an extra column. Timestamps are integer microseconds since the epoch so both
SQLite and Postgres store them as a plain BIGINT.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
#: two digits per 10 bits: a BatchProposeJob to 1,000 nodes makes 2,000 ids, and
#: a digit-at-a-time loop cost 17 µs per id
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0
_last_us = 0


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A ULID with `prefix`; monotonic within one process even in the same millisecond."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_rand = ms, rand
    v, p = ms << 80 | rand, _PAIRS  # the 26 digits of _b32(ms, 10) + _b32(rand, 16)
    return "".join(
        (
            prefix,
            "_",
            p[v >> 120 & 1023],
            p[v >> 110 & 1023],
            p[v >> 100 & 1023],
            p[v >> 90 & 1023],
            p[v >> 80 & 1023],
            p[v >> 70 & 1023],
            p[v >> 60 & 1023],
            p[v >> 50 & 1023],
            p[v >> 40 & 1023],
            p[v >> 30 & 1023],
            p[v >> 20 & 1023],
            p[v >> 10 & 1023],
            p[v & 1023],
        )
    )


def now_us() -> int:
    """Wall-clock microseconds, strictly increasing in this process.

    Strictness matters: `updated_at` must visibly move on every change, even
    two changes within one microsecond.
    """
    global _last_us
    with _lock:
        us = time.time_ns() // 1000
        if us <= _last_us:
            us = _last_us + 1
        _last_us = us
        return us


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def to_datetime(us: int | None) -> _dt.datetime | None:
    if us is None:
        return None
    return _EPOCH + _dt.timedelta(microseconds=us)
