"""gRPC message compression (`grpc-encoding`), for the client and the embedded JD.

grpclib has none: it refuses any message whose compressed-flag byte is set.
Both sides of jdkit frame messages themselves, and use these helpers. The
encodings are gRPC's: "gzip" (RFC 1952) and "deflate" (the zlib format, RFC
1950). Decompression is bounded by the receiver's message limit, so a small
compressed message cannot expand into an unbounded one (a "zip bomb").
"""

from __future__ import annotations

import zlib

__all__ = [
    "ACCEPT_ENCODING",
    "ENCODINGS",
    "MIN_COMPRESS_SIZE",
    "CorruptMessage",
    "MessageTooLarge",
    "compress",
    "decompress",
    "pick_encoding",
]

#: What jdkit can decompress, in the order it prefers to send.
ENCODINGS = ("gzip", "deflate")
#: The `grpc-accept-encoding` value jdkit sends.
ACCEPT_ENCODING = "gzip,deflate,identity"
#: Messages shorter than this are sent uncompressed (flag 0) even on a
#: compressed call, as gRPC allows per message: below ~1 KiB, gzip's header
#: and CPU cost more than they save.
MIN_COMPRESS_SIZE = 1024
#: zlib level 1: on the large list replies this server sends it gives ~90% of
#: level 6's savings for about a third of the CPU.
LEVEL = 1

_WBITS = {"gzip": 31, "deflate": 15}


class MessageTooLarge(Exception):
    """The message decompresses to more than the receiver's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"decompresses to more than {limit} bytes")
        self.limit = limit


class CorruptMessage(Exception):
    """The bytes are not a complete stream of the named encoding."""


def compress(data: bytes, encoding: str) -> bytes:
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, _WBITS[encoding])
    return c.compress(data) + c.flush()


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """`data` decompressed, at most `limit` bytes of it, else MessageTooLarge."""
    d = zlib.decompressobj(_WBITS[encoding])
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CorruptMessage(f"not valid {encoding} data ({exc})") from None
    if len(out) > limit:
        raise MessageTooLarge(limit)
    if not d.eof:
        raise CorruptMessage(f"the {encoding} stream is truncated")
    if d.unused_data:
        raise CorruptMessage(f"{len(d.unused_data)} bytes follow the end of the {encoding} stream")
    return out


def pick_encoding(accept: str | None) -> str | None:
    """The encoding to send to a peer that sent `grpc-accept-encoding: accept`."""
    if not accept:
        return None
    offered = {part.strip().lower() for part in accept.split(",")}
    return next((e for e in ENCODINGS if e in offered), None)
