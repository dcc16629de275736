"""The fast message path: generated decoders and encoders for every message.

`decode(cls, data)` returns exactly what `cls.parse(data)` returns for
well-formed bytes (same classes, `==`, same unknown fields and defaults) at
about ten times the speed, and raises `DecodeError` for bytes betterproto2
would silently turn into a wrong object (truncated fields, wrong wire types,
groups, invalid UTF-8, timestamps outside datetime's range). `encode(msg)`
returns `bytes(msg)` byte for byte; anything the generated encoder does not
expect (a value of the wrong type, a subclass) goes to betterproto2, so its
errors stay the reference ones. The code per message is generated from the
stubs by `scripts/gen_fastcodec.py` (`nox -s protos`).

This package is core: both the client and the embedded JD use it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, TypeVar, cast

import betterproto2
from grpclib.encoding.proto import ProtoCodec

from jdkit._codec._generated import DECODERS, ENCODERS
from jdkit._codec._runtime import DecodeError
from jdkit._exceptions import ProtocolError
from jdkit._proto.message_pool import default_message_pool

M = TypeVar("M", bound=betterproto2.Message)

_DECODERS = cast("dict[type[Any], Callable[[bytes, int, int], Any]]", DECODERS)
_ENCODERS = cast("dict[type[Any], Callable[[Any, bytearray], None]]", ENCODERS)


def proto_name(cls: type[Any]) -> str:
    """`api.node.v1.GetNodeRequest` for the generated class (the name proto/ gives it)."""
    url = default_message_pool.type_to_url.get(cls)
    return url.rpartition("/")[2] if url else cls.__name__


def has_fast_decoder(cls: type[Any]) -> bool:
    return cls in _DECODERS


#: Replies from here on are decoded with the cyclic GC paused: a 10,000-node
#: reply makes 70,000 objects, none of them garbage, and the collections their
#: allocation triggers cost more than the decoding (measured 2.6x at that size).
_PAUSE_GC_FROM = 32 * 1024


def decode(cls: type[M], data: bytes | bytearray | memoryview) -> M:
    """`cls.parse(data)`, fast; DecodeError when the bytes are not a `cls`."""
    if len(data) >= _PAUSE_GC_FROM and gc.isenabled():
        gc.disable()
        try:
            return _decode(cls, data)
        finally:
            gc.enable()
    return _decode(cls, data)


def _decode(cls: type[M], data: bytes | bytearray | memoryview) -> M:
    fn = _DECODERS.get(cls)
    if type(data) is not bytes:
        data = bytes(data)
    if fn is None:
        try:
            return cls.parse(data)
        except Exception as exc:
            raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    try:
        out: M = fn(data, 0, len(data))
        return out
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("messages nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"a string field is not valid UTF-8 ({exc.reason})") from None
    except IndexError:
        raise DecodeError(f"{proto_name(cls)} is truncated") from None
    except Exception as exc:  # struct.error, OverflowError, ...: garbage, not a bug of ours
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None


def encode(message: Any) -> bytes:
    """`bytes(message)`, fast."""
    fn = _ENCODERS.get(type(message))
    if fn is not None:
        out = bytearray()
        try:
            fn(message, out)
            return bytes(out)
        except Exception:
            pass  # betterproto2 decides: its bytes, or its error
    return bytes(message)


class FastCodec(ProtoCodec):
    """grpclib's ProtoCodec with the fast path (type check kept)."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if not isinstance(message, message_type):
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        return encode(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return decode(message_type, data)


class ClientCodec(FastCodec):
    """The client's codec: a reply that does not decode is the server's fault."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return decode(message_type, data)
        except DecodeError as exc:
            raise ProtocolError(
                f"the reply does not decode as {proto_name(message_type)}: {exc}"
            ) from None


__all__ = [
    "ClientCodec",
    "DecodeError",
    "FastCodec",
    "decode",
    "encode",
    "has_fast_decoder",
    "proto_name",
]
