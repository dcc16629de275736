"""A call's messages on the wire: its request read, its reply written.

grpclib has neither a message size limit nor compression, so the embedded JD
reads and writes the gRPC messages itself: the length prefix is checked
against `max_receive_message_size` before one byte of the body is buffered,
gzip/deflate requests are decompressed within that limit, replies are
compressed when the caller accepts it, and large decodes, encodes and
compressions run in a worker thread so one big call does not stall the event
loop (and everyone else's calls, health checks included). `Codec` is the
generated fast codec with decode failures as the caller's INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

import grpclib.server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jdkit import _compression
from jdkit._codec import FastCodec, decode, has_fast_decoder
from jdkit._core.caps import CapExceeded, check_counts
from jdkit._core.wire import check as check_wire
from jdkit._proto.api.csa.v1 import ListKeypairsResponse
from jdkit._proto.api.job.v1 import (
    BatchProposeJobResponse,
    ListJobsResponse,
    ListProposalsResponse,
)
from jdkit._proto.api.node.v1 import ListNodeChainConfigsResponse, ListNodesResponse
from jdkit._proto.api.probation.v1 import ListRollbackPoliciesResponse
from jdkit._server._grpc._transport import CallInfo
from jdkit._server._limits import ConnectionBudget, ServerLimits


def proto_name(message_type: type[Any]) -> str:
    """`api.node.v1.GetNodeRequest` for the generated class."""
    module = message_type.__module__.removeprefix("jdkit._proto.")
    return f"{module}.{message_type.__name__}"


class Codec(FastCodec):
    """The generated fast codec (jdkit._codec); decode failures are the caller's
    INVALID_ARGUMENT. The fast decoders are as strict as the wire check, which
    stays for any type without one."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:  # the rulebook's caps on repeated fields, before decoding costs anything
            check_counts(data, message_type)
        except CapExceeded as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        try:
            if not has_fast_decoder(message_type):
                check_wire(data, message_type)
            return decode(message_type, data)
        except Exception as exc:  # betterproto2 raises many kinds on garbage
            detail = f"{type(exc).__name__}: {exc}"[:200]
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"request body does not decode as {proto_name(message_type)} ({detail})",
            ) from None


#: Messages at least this large are decoded, encoded and (de)compressed in a
#: worker thread: betterproto2 parses ~10-40 MB/s, so 64 KiB is a few ms on
#: the loop, while the thread hop costs ~0.1 ms.
OFFLOAD_SIZE = 64 * 1024

#: A reply is written in slices of this many bytes, yielding to the event
#: loop between slices.
WRITE_SLICE = 256 * 1024

#: Reply types that can be large (lists, batches): encoded in a worker thread.
_LIST_REPLIES = frozenset(
    {
        ListNodesResponse,
        ListJobsResponse,
        ListProposalsResponse,
        ListNodeChainConfigsResponse,
        ListRollbackPoliciesResponse,
        ListKeypairsResponse,
        BatchProposeJobResponse,
    }
)


async def _off_loop(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    if size >= OFFLOAD_SIZE:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def _invalid(message: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, message)


async def read_request(
    stream: grpclib.server.Stream[Any, Any], name: str, call: CallInfo, limits: ServerLimits
) -> Any:
    """The call's one request message: length checked before the body is
    read, decompressed within the limit, decoded off the loop when large."""
    h2s = stream._stream
    try:
        prefix = await h2s.recv_data(5)
    except AssertionError:
        raise _invalid(f"request body is a truncated gRPC message; expected {name}") from None
    if not prefix:
        raise _invalid(f"request has no message; expected one {name}")
    flag, length = prefix[0], int.from_bytes(prefix[1:5], "big")
    if flag > 1:
        raise _invalid(f"request message has compressed-flag byte {flag}; gRPC allows 0 or 1")
    limit = limits.max_receive_message_size
    if length > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"request message is {length} bytes, over the server's limit of {limit} bytes "
            "(max_receive_message_size)",
        )
    try:
        body = await h2s.recv_data(length)
    except AssertionError:
        raise _invalid(f"request body is a truncated gRPC message; expected {name}") from None
    if flag:
        encoding = call.headers.get("grpc-encoding", "identity").strip().lower()
        if encoding == "identity":
            raise _invalid(
                "request message is flagged compressed but the call has no grpc-encoding"
            )
        if encoding not in _compression.ENCODINGS:
            raise GRPCError(
                Status.UNIMPLEMENTED,
                f"grpc-encoding {encoding[:40]!r} is not supported; this server accepts "
                f"{_compression.ACCEPT_ENCODING}",
            )
        try:
            body = await _off_loop(length, _compression.decompress, body, encoding, limit)
        except _compression.MessageTooLarge:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request message ({length} bytes of {encoding}) decompresses to more than the "
                f"server's limit of {limit} bytes (max_receive_message_size)",
            ) from None
        except _compression.CorruptMessage as exc:
            raise _invalid(f"request message is not valid {encoding}: {exc}") from None
    call.request_size = len(body)
    request = await _off_loop(len(body), stream._codec.decode, body, stream._recv_type)
    del body
    (request,) = await stream._dispatch.recv_message(request)
    stream._messages_received += 1
    conn = h2s.connection
    conn.messages_received += 1
    conn.last_message_received = time.monotonic()
    return request


def _encode(codec: Any, reply: Any, reply_type: Any, encoding: str | None) -> tuple[int, bytes]:
    """(encoded size, the framed message: flag byte, length, payload)."""
    data = codec.encode(reply, reply_type)
    size = len(data)
    flag = b"\x00"
    if encoding is not None and size >= _compression.MIN_COMPRESS_SIZE:
        data, flag = _compression.compress(data, encoding), b"\x01"
    return size, flag + struct.pack(">I", len(data)) + data


async def encode_reply(
    stream: grpclib.server.Stream[Any, Any],
    reply: Any,
    encoding: str | None,
    limits: ServerLimits,
    call: CallInfo,
) -> bytes:
    """The framed reply: encoded (off the loop for list replies and replies
    to large requests), checked against `max_send_message_size`, compressed
    when the caller accepts it."""
    if type(reply) in _LIST_REPLIES or call.request_size >= OFFLOAD_SIZE:
        size, framed = await asyncio.to_thread(
            _encode, stream._codec, reply, stream._send_type, encoding
        )
    else:
        size, framed = _encode(stream._codec, reply, stream._send_type, encoding)
    if size > limits.max_send:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"reply message is {size} bytes, over the server's limit of {limits.max_send} "
            "bytes (max_send_message_size)",
        )
    return framed


async def write_reply(
    stream: grpclib.server.Stream[Any, Any],
    framed: bytes,
    encoding: str | None,
    conn: ConnectionBudget,
) -> None:
    """Write a framed reply, as fast as the peer's flow control lets it;
    counted as pending on the connection until it is all written."""
    conn.sending(len(framed))
    try:
        if not stream._send_initial_metadata_done:
            headers = [
                (":status", "200"),
                ("content-type", stream._content_type),
                ("grpc-accept-encoding", _compression.ACCEPT_ENCODING),
            ]
            if encoding is not None:
                headers.append(("grpc-encoding", encoding))
            await stream._stream.send_headers(headers)
            stream._send_initial_metadata_done = True
        # grpclib writes a whole message in one go when the peer's window
        # allows (~20 ms of loop per MiB); slices with a yield between them
        # keep any one loop step short for everyone else's calls
        view = memoryview(framed)
        for at in range(0, len(framed), WRITE_SLICE):
            if at:
                await asyncio.sleep(0)
            await stream._stream.send_data(bytes(view[at : at + WRITE_SLICE]))
    finally:
        conn.sent(len(framed))
    stream._send_message_done = True
    stream._messages_sent += 1
    h2conn = stream._stream.connection
    h2conn.messages_sent += 1
    h2conn.last_message_sent = time.monotonic()
