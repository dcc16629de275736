"""How a call's messages cross a grpclib stream: jdkit frames them itself.

grpclib reads a whole message before anyone can look at its size, has no
message limits and sends a fixed user-agent. So the client's transport sends
and receives through the functions here instead of `Stream.send_message` /
`recv_message` (same steps, same grpclib stream state):

- **limits**: a reply whose length prefix is over `max_receive_message_size`
  is refused before its body is read (the stream is reset; grpclib returns
  the flow-control credit of what was buffered), and a request over
  `max_send_message_size` is refused before anything is sent. Both are a
  `ResourceExhaustedError` naming the size and the limit, never retried;
- **user-agent**: `jdkit/<version> grpclib/<version>` replaces grpclib's own
  on the connections jdkit opens (grpclib reserves the header, so it is
  rewritten where the connection sends its headers);
- **dead connections**: a connection nothing was heard on for
  `keepalive_time` is pinged before a call is sent on it; without an answer
  within `keepalive_timeout` it is closed and the call fails as not sent
  (`UnavailableError(reached_server=False)`), which the retry policy replays
  on a new connection, writes included. So a connection a proxy dropped
  silently while idle is found before a write goes into the void. The probe
  costs one round trip, and only after a quiet spell; it never runs while
  calls are in flight (grpclib's own keepalive pings those connections).
  Pinging only idle-then-used connections, never idle ones on a timer, keeps
  clear of grpc-go's ping policing (its default refuses idle pings more often
  than every 5 minutes).

- **compression**: with `compression="gzip"` (or "deflate") requests of
  `MIN_COMPRESS_SIZE` or more are sent compressed and the request headers say
  `grpc-encoding` and `grpc-accept-encoding`. A compressed reply is
  decompressed whenever the server names a known `grpc-encoding` for it,
  within `max_receive_message_size` (so a small compressed reply cannot
  expand without bound); one flagged compressed without a known encoding is
  a protocol error.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from jdkit import _compression
from jdkit._codec import ClientCodec
from jdkit._exceptions import (
    InvalidArgumentError,
    ProtocolError,
    ResourceExhaustedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from jdkit._interceptors import Call

__all__ = [
    "DEFAULT_MAX_RECEIVE",
    "ENCODE_ERRORS",
    "Wire",
    "cannot_encode",
    "check_encodes",
    "recv_message",
    "send_message",
    "user_agent",
]

#: grpc-go's and grpcio's default receive limit.
DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024

_PREFIX = struct.Struct(">?I")


@functools.cache
def user_agent() -> str:
    """`jdkit/<version> grpclib/<version>`: who is calling, for the server's logs."""
    import jdkit

    try:
        grpclib_version = version("grpclib")
    except PackageNotFoundError:  # pragma: no cover - grpclib is a dependency
        grpclib_version = "unknown"
    return f"jdkit/{jdkit.__version__} grpclib/{grpclib_version}"


@dataclass(frozen=True, slots=True)
class Wire:
    """The transport settings a client's options give (see `ClientOptions`)."""

    max_receive: int | None = DEFAULT_MAX_RECEIVE
    max_send: int | None = None
    keepalive_time: float | None = 30.0
    keepalive_timeout: float = 10.0
    user_agent: str = ""
    compression: str | None = None


#: What encoding a request raises for a value it cannot carry (a lone
#: surrogate in a string, a number out of range, a value of the wrong type).
ENCODE_ERRORS = (UnicodeError, TypeError, AttributeError, ValueError, OverflowError)


def cannot_encode(call: Call, exc: Exception) -> InvalidArgumentError | None:
    """The caller's mistake a request that does not encode is, or None if `exc` is not that."""
    if not isinstance(exc, ENCODE_ERRORS) or isinstance(exc, OSError):
        return None  # ssl.SSLCertVerificationError is a ValueError too
    return InvalidArgumentError(
        f"{call.method.name} request cannot be encoded: {exc}", method=call.method.path
    )


_CODEC = ClientCodec()


def check_encodes(call: Call, max_send: int | None = None) -> None:
    """Encode the request as `send_message` would and refuse it as the client
    does if it cannot be, or if it is over `max_send` (the client's
    `max_send_message_size`); for a dry run, which answers without sending."""
    try:
        data = _CODEC.encode(call.request, call.method.request)
    except ENCODE_ERRORS as exc:
        err = cannot_encode(call, exc)
        if err is None:
            raise
        raise err from None
    if max_send is not None and len(data) > max_send:
        path = call.method.path
        raise _too_large("the request", len(data), max_send, "max_send_message_size", path)


def _too_large(what: str, size: int, limit: int, option: str, method: str, note: str = "") -> Any:
    err = ResourceExhaustedError(
        f"{what} is {size} bytes, over this client's limit of {limit} bytes ({option}){note}",
        method=method,
    )
    err.local = True
    return err


async def send_message(stream: Any, message: Any, wire: Wire, method: str) -> None:
    """Send the one request of a unary-request call and end the stream."""
    with stream._wrapper:
        (message,) = await stream._dispatch.send_message(message)
        data = stream._codec.encode(message, stream._send_type)
    if wire.max_send is not None and len(data) > wire.max_send:
        raise _too_large("the request", len(data), wire.max_send, "max_send_message_size", method)
    protocol = await stream._channel.__connect__()
    _adopt(protocol, wire)
    await _probe_if_quiet(stream._channel, protocol, wire, method)
    compressed = False
    if wire.compression is not None and len(data) >= _compression.MIN_COMPRESS_SIZE:
        data, compressed = _compression.compress(data, wire.compression), True
    frame = _PREFIX.pack(compressed, len(data)) + data
    conn = protocol.processor.connection
    coalesce = not stream._send_request_done and _fits_at_once(conn, len(frame))
    if coalesce:
        # Headers and message leave in one socket write, as grpcio sends them,
        # not one each: a send syscall on loopback costs as much as the rest
        # of the call's client-side work. Only when nothing can make either
        # step wait (see `_fits_at_once`), so no other stream's frames are held.
        conn._jdkit_writer.hold()
    try:
        if not stream._send_request_done:
            await stream.send_request()
        with stream._wrapper:
            await stream._stream.send_data(frame, end_stream=True)
    finally:
        if coalesce:
            conn._jdkit_writer.release()
    stream._send_message_done = True
    stream._end_done = True
    stream._messages_sent += 1
    conn.messages_sent += 1
    conn.last_message_sent = time.monotonic()


def _fits_at_once(conn: Any, size: int) -> bool:
    """Whether a new stream's headers and a `size`-byte message go out without waiting.

    grpclib waits for write readiness, a free stream slot and flow-control
    credit; with all three at hand both steps run without yielding.
    """
    writer = getattr(conn, "_jdkit_writer", None)
    if writer is None or not conn.write_ready.is_set():
        return False
    h2 = conn._connection
    remote = h2.remote_settings
    return bool(
        h2.open_outbound_streams < remote.max_concurrent_streams
        and size <= h2.outbound_flow_control_window
        and size <= remote.initial_window_size
    )


class _Writer:
    """The connection's transport, able to hold writes and pass them on as one."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._transport.write(b"".join(held))

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        else:
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def recv_message(stream: Any, wire: Wire, method: str, *, write: bool = False) -> Any:
    """The next reply message, or None at the end of the stream."""
    if not stream._recv_initial_metadata_done:
        await stream.recv_initial_metadata()
    with stream._wrapper:
        prefix = await stream._stream.recv_data(_PREFIX.size)
        if not prefix:
            return None
        if len(prefix) < _PREFIX.size:
            raise ProtocolError(f"{method}: the reply ended inside a message prefix")
        compressed, length = _PREFIX.unpack(prefix)
        encoding = _reply_encoding(stream) if compressed else None
        if compressed and encoding is None:
            raise ProtocolError(
                f"{method}: the server sent a compressed reply without a known grpc-encoding"
            )
        if wire.max_receive is not None and length > wire.max_receive:
            note = "; the write may have been applied" if write else ""
            raise _too_large(
                "the reply", length, wire.max_receive, "max_receive_message_size", method, note
            )
        data = await stream._stream.recv_data(length)
        if len(data) != length:
            raise ProtocolError(f"{method}: the reply ended inside a message")
        if encoding is not None:
            data = _decompress(data, encoding, wire, method, write)
        message = stream._codec.decode(data, stream._recv_type)
        (message,) = await stream._dispatch.recv_message(message)
        stream._messages_received += 1
        conn = stream._stream.connection
        conn.messages_received += 1
        conn.last_message_received = time.monotonic()
        conn._jdkit_heard = conn.last_message_received
        return message


def _reply_encoding(stream: Any) -> str | None:
    headers = getattr(stream._stream, "headers", None) or ()
    for key, value in headers:
        if key == "grpc-encoding":
            encoding = str(value).strip().lower()
            return encoding if encoding in _compression.ENCODINGS else None
    return None


def _decompress(data: bytes, encoding: str, wire: Wire, method: str, write: bool) -> bytes:
    limit = wire.max_receive if wire.max_receive is not None else 2**31 - 1
    try:
        return _compression.decompress(data, encoding, limit)
    except _compression.MessageTooLarge:
        note = "; the write may have been applied" if write else ""
        err = ResourceExhaustedError(
            f"the reply ({len(data)} bytes of {encoding}) decompresses to more than this "
            f"client's limit of {limit} bytes (max_receive_message_size){note}",
            method=method,
        )
        err.local = True
        raise err from None
    except _compression.CorruptMessage as exc:
        raise ProtocolError(f"{method}: the reply is not valid {encoding}: {exc}") from None


def heard_from(stream: Any) -> None:
    """The server answered on this stream's connection (a status counts too)."""
    h2s = getattr(stream, "_stream", None)
    conn = getattr(h2s, "connection", None)
    if conn is not None:
        conn._jdkit_heard = time.monotonic()


# -- per connection


def _adopt(protocol: Any, wire: Wire) -> None:
    """First sight of a connection: note it as heard from, set the user-agent."""
    conn = protocol.processor.connection
    if getattr(conn, "_jdkit_adopted", False):
        return
    conn._jdkit_adopted = True
    conn._jdkit_heard = time.monotonic()
    conn._jdkit_acks = []
    conn._jdkit_probe = None
    ack = conn.ping_ack_process

    def ping_ack_process() -> None:
        ack()
        waiters, conn._jdkit_acks = conn._jdkit_acks, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    conn.ping_ack_process = ping_ack_process
    transport = getattr(conn, "_transport", None)
    if transport is not None and not conn._connection.streams:
        # Streams copy the transport when created: wrap it before the first one.
        conn._jdkit_writer = conn._transport = _Writer(transport)
    extra: list[tuple[str, str]] = []
    if wire.compression is not None:
        extra = [
            ("grpc-encoding", wire.compression),
            ("grpc-accept-encoding", _compression.ACCEPT_ENCODING),
        ]
    if wire.user_agent or extra:
        h2 = conn._connection
        send_headers = h2.send_headers
        agent = wire.user_agent

        def with_user_agent(stream_id: int, headers: Any, *args: Any, **kwargs: Any) -> Any:
            if agent:
                headers = [(k, agent) if k == "user-agent" else (k, v) for k, v in headers]
            if extra and any(k == ":method" for k, _ in headers):
                headers = [*headers, *extra]
            return send_headers(stream_id, headers, *args, **kwargs)

        h2.send_headers = with_user_agent


async def _probe_if_quiet(channel: Any, protocol: Any, wire: Wire, method: str) -> None:
    if wire.keepalive_time is None:
        return
    conn = protocol.processor.connection
    heard = max(conn._jdkit_heard, conn.last_data_received or 0.0)
    if time.monotonic() - heard < wire.keepalive_time:
        return
    if any(s.open for s in conn._connection.streams.values()):
        return  # calls in flight: grpclib's keepalive watches this connection
    probe = conn._jdkit_probe
    if probe is None or probe.done():
        probe = conn._jdkit_probe = asyncio.ensure_future(_ping(conn, wire.keepalive_timeout))
    if await asyncio.shield(probe):
        return
    if getattr(channel, "_protocol", None) is protocol:
        channel.close()  # the next request opens a new connection
    raise UnavailableError(
        f"the connection was quiet for over {wire.keepalive_time:g}s and did not answer "
        f"a ping within {wire.keepalive_timeout:g}s; closed it before sending",
        method=method,
        reached_server=False,
    )


async def _ping(conn: Any, timeout: float) -> bool:
    """Ping; True when the peer answered within `timeout`."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    conn._jdkit_acks.append(fut)
    conn._connection.ping(struct.pack("!Q", time.monotonic_ns() & (2**64 - 1)))
    conn.flush()
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        return False
    conn._jdkit_heard = time.monotonic()
    return True
