"""The gRPC face of the embedded JD: services, codec, guards, health.

Each service subclasses its generated base and overrides the snake_case
methods. The generated `__rpc_*` glue is replaced by `_guarded`, which keeps
the generated paths and message types but adds what a caller-facing server
needs: an absent or truncated request body is the caller's mistake
(INVALID_ARGUMENT, not an assert turned UNKNOWN), a jdkit error becomes its
status, and only a genuine server bug is INTERNAL.

`_guarded` also reads and writes the gRPC messages itself instead of through
grpclib, which has neither a message size limit nor compression: the length
prefix is checked against `max_receive_message_size` before one byte of the
body is buffered, gzip/deflate requests are decompressed within that limit,
replies are compressed when the caller accepts it, and large decodes, encodes
and compressions run in a worker thread so one big call does not stall the
event loop (and everyone else's calls, health checks included).

The HTTP/2 side (`_Protocol`) adds what grpclib lacks for a server facing
untrusted peers: handshake, idle and keepalive timeouts, a configurable
stream cap, and a per-connection cap on calls in progress (see `_limits`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import struct
import time
import traceback
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import betterproto2
import grpclib.config
import grpclib.const
import grpclib.server
from grpclib.const import Cardinality, Status
from grpclib.events import RecvRequest
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline
from grpclib.protocol import Connection, EventsProcessor, H2Protocol, _set_nodelay
from h2.connection import H2Connection
from h2.events import RemoteSettingsChanged
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from jdkit import _compression
from jdkit._codec import FastCodec, decode, has_fast_decoder
from jdkit._core.caps import CapExceeded, check_counts
from jdkit._core.rules import job_ident
from jdkit._core.wire import check as check_wire
from jdkit._exceptions import NotFoundError, RPCError
from jdkit._methods import WRITES
from jdkit._proto.api.app.v1 import AppServiceBase, VersionRequest, VersionResponse
from jdkit._proto.api.csa.v1 import (
    CsaServiceBase,
    GetKeypairRequest,
    GetKeypairResponse,
    ListKeypairsRequest,
    ListKeypairsResponse,
)
from jdkit._proto.api.job.v1 import (
    BatchProposeJobRequest,
    BatchProposeJobResponse,
    DeleteJobRequest,
    DeleteJobResponse,
    GetJobRequest,
    GetJobResponse,
    GetProposalRequest,
    GetProposalResponse,
    JobServiceBase,
    ListJobsRequest,
    ListJobsResponse,
    ListProposalsRequest,
    ListProposalsResponse,
    ProposeJobFailure,
    ProposeJobRequest,
    ProposeJobResponse,
    RevokeJobRequest,
    RevokeJobResponse,
    UpdateJobRequest,
    UpdateJobResponse,
)
from jdkit._proto.api.node.v1 import (
    DisableNodeRequest,
    DisableNodeResponse,
    EnableNodeRequest,
    EnableNodeResponse,
    GetNodeRequest,
    GetNodeResponse,
    ListNodeChainConfigsRequest,
    ListNodeChainConfigsResponse,
    ListNodesRequest,
    ListNodesResponse,
    NodeServiceBase,
    RegisterNodeRequest,
    RegisterNodeResponse,
    UpdateNodeRequest,
    UpdateNodeResponse,
)
from jdkit._proto.api.probation.v1 import (
    CreateRollbackPolicyRequest,
    CreateRollbackPolicyResponse,
    GetRollbackPolicyRequest,
    GetRollbackPolicyResponse,
    ListRollbackPoliciesRequest,
    ListRollbackPoliciesResponse,
    RollbackPolicyServiceBase,
    UpdateRollbackPolicyRequest,
    UpdateRollbackPolicyResponse,
)
from jdkit._proto.grpc.health.v1 import (
    HealthBase,
    HealthCheckRequest,
    HealthCheckResponse,
    HealthCheckResponseServingStatus,
)
from jdkit._server._limits import DEFAULT_LIMITS, ServerLimits
from jdkit._server._state import JDState

log = logging.getLogger("jdkit.server")

AuthHook = Callable[[str | None], Awaitable[None]]
ServingStatus = HealthCheckResponseServingStatus

_HEALTH_PREFIX = "/grpc.health.v1.Health/"


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


# --------------------------------------------------------------- runtime


class Runtime:
    """Per-server bookkeeping the handlers share: call counters, in-flight
    RPCs (for graceful stop) and the health status watchers follow."""

    def __init__(
        self,
        state: JDState,
        auth: AuthHook | None,
        limits: ServerLimits = DEFAULT_LIMITS,
        compression: str | None = "gzip",
    ) -> None:
        self.state = state
        self.auth = auth
        self.limits = limits
        #: Replies are compressed with this when the caller accepts it; None: never.
        self.compression = compression
        self.workers = Workers(limits.max_concurrent_handlers)
        self.calls: collections.Counter[str] = collections.Counter()
        self.status = ServingStatus.SERVING
        self.draining = False
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Condition()

    @property
    def write_calls(self) -> int:
        return sum(n for path, n in self.calls.items() if path in WRITES)

    async def set_status(self, status: ServingStatus) -> None:
        self.status = status
        async with self._changed:
            self._changed.notify_all()

    async def wait_status_change(self) -> None:
        async with self._changed:
            await self._changed.wait()

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def on_request(self, event: RecvRequest) -> None:
        """Count every call, refuse during shutdown, then run the auth hook."""
        path = event.method_name
        self.calls[path] += 1
        if self.draining:
            raise GRPCError(Status.UNAVAILABLE, "server is shutting down")
        if self.auth is None or path.startswith(_HEALTH_PREFIX):
            return
        token = bearer_token(event.metadata.get("authorization"))
        try:
            await self.auth(token)
        except GRPCError as exc:
            log.info("%s refused: %s%s", path, exc.status.name, _rid_note(event.metadata))
            raise
        except Exception:
            log.exception("auth hook failed on %s%s", path, _rid_note(event.metadata))
            raise GRPCError(
                Status.UNAUTHENTICATED, "the access token could not be verified"
            ) from None


def bearer_token(header: Any) -> str | None:
    if not isinstance(header, str):
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# --------------------------------------------------------------- guards


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


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

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def _rid_note(metadata: Any) -> str:
    """` x-request-id=ID` for a log line, or "" (control characters and
    overlong values are not logged as sent, so a caller cannot forge lines)."""
    rid = metadata.get("x-request-id") if metadata is not None else None
    if not isinstance(rid, str) or not rid:
        return ""
    if not _REQUEST_ID.fullmatch(rid):
        rid = repr(rid[:128])
    return f" x-request-id={rid}"


class _Connection:
    """One connection's budget: call slots, and the reply bytes it has not
    taken yet. While those reach `max_pending_reply_bytes`, its new calls
    wait: a client that does not read its replies stops getting more."""

    def __init__(self, limits: ServerLimits) -> None:
        self.slots = asyncio.Semaphore(limits.max_active_calls_per_connection)
        self.max_pending = limits.max_pending_reply_bytes
        self.pending = 0
        self._room = asyncio.Event()
        self._room.set()

    def sending(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.max_pending:
            self._room.clear()

    def sent(self, n: int) -> None:
        self.pending -= n
        if self.pending < self.max_pending:
            self._room.set()

    async def room(self) -> None:
        await self._room.wait()


class Workers:
    """Server-wide turns at computing a reply, at most `size` at once.

    Waiting calls are served one connection at a time, in turn (round robin),
    not first come first served: a connection that queued 100 calls delays
    another connection's one call by at most one turn per connection. A turn
    covers running the handler and encoding the reply, not reading the
    request or writing the reply (a slow peer must not hold one).
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self._queues: collections.OrderedDict[
            _Connection, collections.deque[asyncio.Future[None]]
        ] = collections.OrderedDict()

    async def acquire(self, conn: _Connection) -> None:
        if self.free > 0 and not self._queues:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(conn, collections.deque()).append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the turn came as we were cancelled: pass it on
            else:
                queue = self._queues.get(conn)
                if queue is not None and fut in queue:
                    queue.remove(fut)
                    if not queue:
                        del self._queues[conn]
            raise

    def release(self) -> None:
        while self._queues:
            conn, queue = next(iter(self._queues.items()))
            fut = queue.popleft()
            if queue:
                self._queues.move_to_end(conn)
            else:
                del self._queues[conn]
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


@dataclass(slots=True)
class _Call:
    """What the connection knows about one call before its handler runs."""

    headers: dict[str, str]
    conn: _Connection
    #: The request message's decoded size; a large request makes a large
    #: reply likely (most replies echo what was written), encoded off the loop.
    request_size: int = 0


def _call_of(stream: grpclib.server.Stream[Any, Any]) -> _Call:
    call: _Call | None = getattr(stream._stream, "jdkit_call", None)
    if call is None:  # pragma: no cover - every stream comes through _Handler.accept
        call = _Call({}, _Connection(DEFAULT_LIMITS))
    return call


async def _off_loop(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    if size >= OFFLOAD_SIZE:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def _invalid(message: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, message)


async def _read_request(
    stream: grpclib.server.Stream[Any, Any], name: str, call: _Call, limits: ServerLimits
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


async def _encode_reply(
    stream: grpclib.server.Stream[Any, Any],
    reply: Any,
    encoding: str | None,
    limits: ServerLimits,
    call: _Call,
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


async def _write_reply(
    stream: grpclib.server.Stream[Any, Any], framed: bytes, encoding: str | None, conn: _Connection
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


#: Status messages travel in an HTTP/2 header; messages that echo a huge
#: caller-supplied value are cut so the answer stays readable by any client.
MAX_STATUS_MESSAGE = 1000


def _clip(message: str) -> str:
    return message if len(message) <= MAX_STATUS_MESSAGE else message[:MAX_STATUS_MESSAGE] + "…"


def _to_grpc(path: str, exc: Exception) -> GRPCError:
    if isinstance(exc, GRPCError):
        return GRPCError(exc.status, _clip(exc.message or ""), exc.details)
    if isinstance(exc, RPCError):
        return GRPCError(exc.code, _clip(exc.message))
    log.error("unexpected error in %s\n%s", path, bounded_traceback(exc))
    return GRPCError(Status.INTERNAL, f"internal server error in {path}")


#: A logged server error keeps this many characters of its traceback (head and
#: tail): a deep recursion's traceback is hundreds of KB, one per call.
MAX_LOGGED_TRACEBACK = 8192


def bounded_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).rstrip()
    if len(text) <= MAX_LOGGED_TRACEBACK:
        return text
    half = MAX_LOGGED_TRACEBACK // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n… {cut} characters of traceback left out …\n{text[-half:]}"


def _guarded(
    path: str, handler: grpclib.const.Handler, impl: Callable[[Any], Any], rt: Runtime
) -> grpclib.const.Handler:
    name = proto_name(handler.request_type)
    streaming = handler.cardinality is Cardinality.UNARY_STREAM
    # Health calls are tiny and must answer however busy the connection is;
    # Watch streams live long and send a few bytes, so they take no slot.
    takes_slot = not (streaming or path.startswith(_HEALTH_PREFIX))

    async def admit(stream: grpclib.server.Stream[Any, Any], call: _Call) -> tuple[Any, bool]:
        """The request, once the call may start: it has a slot on its
        connection, the connection's unread replies are under the bound,
        and the request arrived within `request_timeout`."""
        limits = rt.limits
        acquired = False
        reading = not takes_slot
        try:
            async with asyncio.timeout(limits.request_timeout):
                if takes_slot:
                    await call.conn.slots.acquire()
                    acquired = True
                    await call.conn.room()
                    reading = True
                return await _read_request(stream, name, call, limits), acquired
        except TimeoutError:
            if acquired:
                call.conn.slots.release()
            if not reading:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"this connection's earlier calls (at most "
                    f"{limits.max_active_calls_per_connection} at once) or its unread replies "
                    f"kept this call from starting for {limits.request_timeout:g} s",
                ) from None
            raise GRPCError(
                Status.DEADLINE_EXCEEDED,
                f"the request message did not arrive within {limits.request_timeout:g} s "
                "of the call's headers (request_timeout)",
            ) from None
        except BaseException:
            if acquired:
                call.conn.slots.release()
            raise

    async def compute(request: Any, conn: _Connection) -> Any:
        if not takes_slot:
            return await impl(request)
        while True:
            # the unread-bytes gate again, at the turn: calls admitted together
            # got past it before any of their replies existed
            await conn.room()
            await rt.workers.acquire(conn)
            if conn.pending < conn.max_pending:
                break
            rt.workers.release()
        try:
            return await impl(request)
        finally:
            rt.workers.release()

    async def serve(stream: grpclib.server.Stream[Any, Any]) -> None:
        call = _call_of(stream)
        t0 = time.perf_counter()
        outcome = "OK"
        acquired = False
        try:
            request, acquired = await admit(stream, call)
            encoding = None
            if rt.compression is not None:
                offered = _compression.pick_encoding(call.headers.get("grpc-accept-encoding"))
                encoding = rt.compression if offered is not None else None
            rt.enter()
            try:
                if streaming:
                    async for reply in impl(request):
                        framed = await _encode_reply(stream, reply, encoding, rt.limits, call)
                        await _write_reply(stream, framed, encoding, call.conn)
                else:
                    # only the encoded bytes wait for a slow reader, not the objects
                    framed = await _encode_reply(
                        stream, await compute(request, call.conn), encoding, rt.limits, call
                    )
                    del request
                    await _write_reply(stream, framed, encoding, call.conn)
            except (asyncio.CancelledError, StreamTerminatedError):
                raise
            except Exception as exc:
                raise _to_grpc(path, exc) from None
            finally:
                rt.leave()
        except GRPCError as exc:
            outcome = exc.status.name
            raise
        except (asyncio.CancelledError, StreamTerminatedError):
            outcome = "CANCELLED"
            raise
        finally:
            if acquired:
                call.conn.slots.release()
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %.1f ms%s",
                    path,
                    outcome,
                    (time.perf_counter() - t0) * 1000,
                    _rid_note(stream.metadata),
                )

    return grpclib.const.Handler(
        serve, handler.cardinality, handler.request_type, handler.reply_type
    )


class _Servable:
    """What grpclib registers: the generated mapping with guarded handlers."""

    def __init__(self, service: betterproto2.grpclib.ServiceBase, rt: Runtime) -> None:
        self._mapping: dict[str, grpclib.const.Handler] = {}
        for path, handler in service.__mapping__().items():  # type: ignore[attr-defined]
            impl = getattr(service, _snake(path.rsplit("/", 1)[1]))
            self._mapping[path] = _guarded(path, handler, impl, rt)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return self._mapping


# ------------------------------------------------------------- services


def _job_ident(req: GetJobRequest | RevokeJobRequest | DeleteJobRequest | UpdateJobRequest) -> str:
    return job_ident(req.id, req.uuid)


class NodeService(NodeServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def register_node(self, message: RegisterNodeRequest) -> RegisterNodeResponse:
        node = await self.s.register_node(message.name, message.public_key, message.labels)
        return RegisterNodeResponse(node=node)

    async def get_node(self, message: GetNodeRequest) -> GetNodeResponse:
        return GetNodeResponse(node=await self.s.get_node(message.id, message.public_key))

    async def list_nodes(self, message: ListNodesRequest) -> ListNodesResponse:
        nodes, total = await self.s.list_nodes(message.filter, message.page_size, message.page)
        return ListNodesResponse(nodes=nodes, total_count=min(total, 2**31 - 1))

    async def update_node(self, message: UpdateNodeRequest) -> UpdateNodeResponse:
        node = await self.s.update_node(
            message.id, message.name, message.public_key, message.labels
        )
        return UpdateNodeResponse(node=node)

    async def enable_node(self, message: EnableNodeRequest) -> EnableNodeResponse:
        return EnableNodeResponse(node=await self.s.set_node_enabled(message.id, True))

    async def disable_node(self, message: DisableNodeRequest) -> DisableNodeResponse:
        return DisableNodeResponse(node=await self.s.set_node_enabled(message.id, False))

    async def list_node_chain_configs(
        self, message: ListNodeChainConfigsRequest
    ) -> ListNodeChainConfigsResponse:
        ids = message.filter.node_ids if message.filter else []
        return ListNodeChainConfigsResponse(chain_configs=await self.s.list_chain_configs(ids))


class JobService(JobServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def get_job(self, message: GetJobRequest) -> GetJobResponse:
        return GetJobResponse(job=await self.s.get_job(_job_ident(message)))

    async def get_proposal(self, message: GetProposalRequest) -> GetProposalResponse:
        return GetProposalResponse(proposal=await self.s.get_proposal(message.id))

    async def list_jobs(self, message: ListJobsRequest) -> ListJobsResponse:
        return ListJobsResponse(jobs=await self.s.list_jobs(message.filter))

    async def list_proposals(self, message: ListProposalsRequest) -> ListProposalsResponse:
        f = message.filter
        props = await self.s.list_proposals(f.ids if f else [], f.job_ids if f else [])
        return ListProposalsResponse(proposals=props)

    async def propose_job(self, message: ProposeJobRequest) -> ProposeJobResponse:
        proposal = await self.s.propose_job(message.node_id, message.spec, message.labels)
        return ProposeJobResponse(proposal=proposal)

    async def batch_propose_job(self, message: BatchProposeJobRequest) -> BatchProposeJobResponse:
        ok, failed = await self.s.batch_propose_job(message.node_ids, message.spec, message.labels)
        return BatchProposeJobResponse(
            success_responses={n: ProposeJobResponse(proposal=p) for n, p in ok.items()},
            failed_responses={n: ProposeJobFailure(error_message=m) for n, m in failed.items()},
        )

    async def revoke_job(self, message: RevokeJobRequest) -> RevokeJobResponse:
        return RevokeJobResponse(proposal=await self.s.revoke_job(_job_ident(message)))

    async def delete_job(self, message: DeleteJobRequest) -> DeleteJobResponse:
        return DeleteJobResponse(job=await self.s.delete_job(_job_ident(message)))

    async def update_job(self, message: UpdateJobRequest) -> UpdateJobResponse:
        job = await self.s.update_job(
            _job_ident(message), message.labels, message.rollback_policy_id
        )
        return UpdateJobResponse(job=job)


class CsaService(CsaServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def get_keypair(self, message: GetKeypairRequest) -> GetKeypairResponse:
        return GetKeypairResponse(keypair=await self.s.get_keypair())

    async def list_keypairs(self, message: ListKeypairsRequest) -> ListKeypairsResponse:
        return ListKeypairsResponse(keypairs=await self.s.list_keypairs())


class RollbackPolicyService(RollbackPolicyServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def get_rollback_policy(
        self, message: GetRollbackPolicyRequest
    ) -> GetRollbackPolicyResponse:
        return GetRollbackPolicyResponse(rollback_policy=await self.s.get_policy(message.id))

    async def create_rollback_policy(
        self, message: CreateRollbackPolicyRequest
    ) -> CreateRollbackPolicyResponse:
        policy = await self.s.create_policy(message.policy)
        return CreateRollbackPolicyResponse(rollback_policy=policy)

    async def list_rollback_policies(
        self, message: ListRollbackPoliciesRequest
    ) -> ListRollbackPoliciesResponse:
        ids = message.filter.ids if message.filter else []
        return ListRollbackPoliciesResponse(rollback_policies=await self.s.list_policies(ids))

    async def update_rollback_policy(
        self, message: UpdateRollbackPolicyRequest
    ) -> UpdateRollbackPolicyResponse:
        policy = await self.s.update_policy(message.id, message.policy)
        return UpdateRollbackPolicyResponse(rollback_policy=policy)


class AppService(AppServiceBase):
    async def version(self, message: VersionRequest) -> VersionResponse:
        import jdkit

        return VersionResponse(version=jdkit.__version__)


#: Services a health check may name; "" is the server as a whole.
SERVICE_NAMES = frozenset(
    {
        "",
        "api.app.v1.AppService",
        "api.csa.v1.CSAService",
        "api.job.v1.JobService",
        "api.node.v1.NodeService",
        "api.probation.v1.RollbackPolicyService",
        "grpc.health.v1.Health",
    }
)


class HealthService(HealthBase):
    """grpc.health.v1: Check answers now; Watch streams the status as it changes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def check(self, message: HealthCheckRequest) -> HealthCheckResponse:
        if message.service not in SERVICE_NAMES:
            raise NotFoundError(f"unknown service {message.service!r}")
        return HealthCheckResponse(status=self.rt.status)

    async def watch(self, message: HealthCheckRequest) -> AsyncIterator[HealthCheckResponse]:
        if message.service not in SERVICE_NAMES:
            # per the health protocol: say so, and keep the stream open
            yield HealthCheckResponse(status=ServingStatus.SERVICE_UNKNOWN)
            while not self.rt.draining:
                await self.rt.wait_status_change()
            return
        last: ServingStatus | None = None
        while True:
            status = self.rt.status
            if status != last:
                yield HealthCheckResponse(status=status)
                last = status
            if self.rt.draining:
                return
            await self.rt.wait_status_change()


def services(state: JDState, rt: Runtime) -> list[_Servable]:
    return [
        _Servable(s, rt)
        for s in (
            NodeService(state),
            JobService(state),
            CsaService(state),
            RollbackPolicyService(state),
            AppService(),
            HealthService(rt),
        )
    ]


# ------------------------------------------------------- header checks


def _header_problem(headers: Any) -> str | None:
    """Why a request's headers are malformed in a way grpclib would answer
    with UNKNOWN; None when they are fine (or not a gRPC request at all)."""
    hmap = dict(headers)
    if hmap.get(":method") != "POST":
        return None
    ctype = hmap.get("content-type")
    if ctype is None or not ctype.startswith("application/grpc"):
        return f"content-type {ctype!r} is not gRPC; send application/grpc+proto"
    sub = ctype.partition("+")[2]
    if sub not in ("", "proto"):
        return f"content-type {ctype!r} is not supported; this server speaks application/grpc+proto"
    if hmap.get("te") != "trailers":
        return 'the "te: trailers" header is missing'
    try:
        Deadline.from_headers(headers)
    except ValueError:
        return f"grpc-timeout header {hmap.get('grpc-timeout')!r} is malformed"
    return None


class _Handler(grpclib.server.Handler):
    """One per connection: refuses malformed headers, and hands each call
    its headers and the connection's budget."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = _Connection(limits)

    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        problem = _header_problem(headers)
        if problem is None:
            stream.jdkit_call = _Call(dict(headers), self.budget)
            super().accept(stream, headers, release_stream)
            return

        async def refuse() -> None:
            try:
                await grpclib.server._abort(stream, 200, Status.INVALID_ARGUMENT, problem)
            except Exception:  # the peer may already be gone
                log.debug("could not refuse malformed request", exc_info=True)
            finally:
                release_stream()

        self.__gc_step__()
        self._tasks[stream] = self.loop.create_task(refuse())


class _Protocol(H2Protocol):
    """grpclib's HTTP/2 protocol with our stream cap and connection timeouts.

    One timer per connection, every `limits.tick()` seconds, checks the
    handshake deadline, idleness and keepalive; grpclib's own keepalive
    (which sends at most one ping per 5 minutes) is off.
    """

    def __init__(
        self, handler: _Handler, config: Any, h2_config: Any, limits: ServerLimits
    ) -> None:
        super().__init__(handler, config, h2_config)
        self.limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._settings_seen = False
        self._opened = self._last_recv = 0.0
        self._idle_since: float | None = None
        self._ping_sent: float | None = None

    def connection_made(self, transport: Any) -> None:
        # grpclib's connection_made, with our SETTINGS_MAX_CONCURRENT_STREAMS in
        # the first SETTINGS frame (h2 enforces it on inbound streams at once).
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_nodelay(sock)
        h2_conn = H2Connection(config=self.h2_config)
        h2_conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
            },
        )
        h2_conn.initiate_connection()
        initial = h2_conn.local_settings.initial_window_size
        conn_delta = self.config.http2_connection_window_size - initial
        stream_delta = self.config.http2_stream_window_size - initial
        if conn_delta:
            h2_conn.increment_flow_control_window(conn_delta)
        if stream_delta:
            h2_conn.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: self.config.http2_stream_window_size}
            )
        self.connection = Connection(h2_conn, transport, config=self.config)
        self.connection.flush()
        self.connection.initialize()
        self.processor = EventsProcessor(self.handler, self.connection)
        loop = asyncio.get_running_loop()
        self._opened = self._last_recv = loop.time()
        self._timer = loop.call_later(self.limits.tick(), self._tick)

    def data_received(self, data: bytes) -> None:
        self._last_recv = asyncio.get_running_loop().time()
        self._ping_sent = None  # any byte from the peer shows it is alive
        try:
            events = self.connection.feed(data)
        except ProtocolError:
            log.debug("HTTP/2 protocol error from %s", self._peer(), exc_info=True)
            self.connection.flush()  # the GOAWAY h2 queued, naming the error
            self.processor.close("Protocol error")
            return
        self.connection.flush()
        processors = getattr(self.processor, "processors", {})
        for event in events:
            if isinstance(event, RemoteSettingsChanged):
                self._settings_seen = True
            # grpclib raises on event types it has no handler for (an unknown
            # frame type, for one), which would kill the connection; skip them
            if type(event) in processors:
                self.processor.process(event)
        self.connection.flush()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _peer(self) -> str:
        try:
            addr = self.connection.get_peer().addr()
        except Exception:
            return "?"
        return f"{addr[0]}:{addr[1]}" if addr else "?"

    def _close(self, why: str) -> None:
        log.info("closing the connection from %s: %s", self._peer(), why)
        self.processor.close(why)

    def _tick(self) -> None:
        self._timer = None
        if self.connection.is_closing():
            return
        loop = asyncio.get_running_loop()
        now, lim = loop.time(), self.limits
        h2_conn = self.connection._connection
        if not self._settings_seen:
            if lim.handshake_timeout is not None and now - self._opened >= lim.handshake_timeout:
                self._close(f"no HTTP/2 preface and SETTINGS within {lim.handshake_timeout:g} s")
                return
        elif lim.idle_timeout is not None:
            if self.processor.streams:
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= lim.idle_timeout:
                h2_conn.close_connection()  # GOAWAY, NO_ERROR: "reconnect when you need me"
                self.connection.flush()
                self._close(f"no call for {lim.idle_timeout:g} s (idle_timeout)")
                return
        if lim.keepalive_time is not None:
            if self._ping_sent is not None:
                if now - self._ping_sent >= lim.keepalive_timeout:
                    self._close(f"no answer to a keepalive ping within {lim.keepalive_timeout:g} s")
                    return
            elif now - self._last_recv >= lim.keepalive_time:
                h2_conn.ping(os.urandom(8))
                self.connection.flush()
                self._ping_sent = now
        self._timer = loop.call_later(lim.tick(), self._tick)


class Server(grpclib.server.Server):
    """grpclib's server, answering malformed gRPC headers with INVALID_ARGUMENT
    instead of UNKNOWN, with the limits of `_limits.ServerLimits` (relies on
    grpclib internals; grpclib is pinned <0.5).

    It also remembers its connections: grpclib's `close()` stops listening but
    leaves established HTTP/2 connections open, so a stopped server would keep
    answering clients on them. `close_connections()` ends them, and clients
    reconnect to whatever listens next.
    """

    def __init__(self, *args: Any, limits: ServerLimits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        kwargs.setdefault("config", grpclib.config.Configuration(_keepalive_time=None))
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _Handler(
            self._mapping,
            self._codec,
            self._status_details_codec,
            self.__dispatch__,
            limits=self.limits,
        )
        self._handlers.add(handler)
        protocol = _Protocol(handler, self._config, self._h2_config, self.limits)
        self._protocols.add(protocol)
        return protocol

    async def start_on(self, sock: Any, ssl: Any = None) -> None:
        """Serve on a listening socket; the TLS handshake counts against the
        handshake timeout (asyncio's own default would be 60 s)."""
        if self._server is not None:
            raise RuntimeError("Server is already started")
        tls_timeout = self.limits.handshake_timeout if ssl is not None else None
        self._server = await self._loop.create_server(
            self._protocol_factory,
            sock=sock,
            ssl=ssl,
            ssl_handshake_timeout=tls_timeout,
        )
        self._server_closed_fut = self._loop.create_future()

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()
