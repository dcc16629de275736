"""Strict protobuf decoding for wsrpc messages, used by both sides.

betterproto2's parser is lenient: a truncated field or one sent with the
wrong wire type comes through as an empty or oddly typed value (an int where
a message belongs) instead of an error. On wsrpc a message that does not
decode must be dropped, never half-read, so the bytes go through the strict
wire check first (`jdkit._core.wire`, the one the JD's gRPC side runs too),
here with the node protocol's own nesting limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import betterproto2 as bp

from jdkit._core.wire import WireError, check

M = TypeVar("M", bound=bp.Message)

#: How deeply a wsrpc message's messages may nest.
MAX_DEPTH = 64


def decode(data: bytes, cls: type[M]) -> M:
    """`cls.parse(data)`; WireError when the bytes are not a `cls`."""
    check(data, cls, MAX_DEPTH)
    try:
        return cls.parse(data)
    except Exception as exc:  # a parser disagreement is still "does not decode"
        raise WireError(str(exc)) from None


def decoder(cls: type[M]) -> Callable[[bytes], M]:
    def run(data: bytes) -> M:
        return decode(data, cls)

    return run
