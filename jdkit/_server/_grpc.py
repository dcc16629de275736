"""The gRPC face of the embedded JD: services, codec, guards, health.

Each service subclasses its generated base and overrides the snake_case
methods. The generated `__rpc_*` glue is replaced by `_guarded`, which keeps
the generated paths and message types but adds what a caller-facing server
needs: an absent, truncated or compressed request body is the caller's
mistake (INVALID_ARGUMENT / UNIMPLEMENTED, not an assert turned UNKNOWN), a
jdkit error becomes its status, and only a genuine server bug is INTERNAL.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import betterproto2
import grpclib.const
import grpclib.server
from grpclib.const import Cardinality, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.events import RecvRequest
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline
from grpclib.protocol import H2Protocol

from jdkit._core.rules import job_ident
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
from jdkit._server._fastpb import ENCODERS
from jdkit._server._state import JDState
from jdkit._server._wire import check as check_wire

log = logging.getLogger("jdkit.server")

AuthHook = Callable[[str | None], Awaitable[None]]
ServingStatus = HealthCheckResponseServingStatus

_HEALTH_PREFIX = "/grpc.health.v1.Health/"


def proto_name(message_type: type[Any]) -> str:
    """`api.node.v1.GetNodeRequest` for the generated class."""
    module = message_type.__module__.removeprefix("jdkit._proto.")
    return f"{module}.{message_type.__name__}"


class Codec(ProtoCodec):
    """ProtoCodec whose decode failures are the caller's INVALID_ARGUMENT, with
    fast encoders for the large list responses."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        fast = ENCODERS.get(type(message))
        if fast is not None:
            return fast(message)
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            check_wire(data, message_type)
            return message_type.parse(data)
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

    def __init__(self, state: JDState, auth: AuthHook | None) -> None:
        self.state = state
        self.auth = auth
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
        except GRPCError:
            raise
        except Exception:
            log.exception("auth hook failed on %s", path)
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


async def _recv(stream: grpclib.server.Stream[Any, Any], name: str) -> Any:
    try:
        request = await stream.recv_message()
    except (AssertionError, struct.error):
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"request body is a truncated gRPC message; expected {name}"
        ) from None
    except NotImplementedError:
        raise GRPCError(
            Status.UNIMPLEMENTED, "compressed request messages are not supported"
        ) from None
    if request is None:
        raise GRPCError(Status.INVALID_ARGUMENT, f"request has no message; expected one {name}")
    return request


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
    log.exception("unexpected error in %s", path, exc_info=exc)
    return GRPCError(Status.INTERNAL, f"internal server error in {path}")


def _guarded(
    path: str, handler: grpclib.const.Handler, impl: Callable[[Any], Any], rt: Runtime
) -> grpclib.const.Handler:
    name = proto_name(handler.request_type)
    streaming = handler.cardinality is Cardinality.UNARY_STREAM

    async def serve(stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await _recv(stream, name)
        rt.enter()
        try:
            if streaming:
                async for reply in impl(request):
                    await stream.send_message(reply)
            else:
                reply = await impl(request)
                await stream.send_message(reply)
        except (asyncio.CancelledError, StreamTerminatedError):
            raise
        except Exception as exc:
            raise _to_grpc(path, exc) from None
        finally:
            rt.leave()

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
    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        problem = _header_problem(headers)
        if problem is None:
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


class Server(grpclib.server.Server):
    """grpclib's server, answering malformed gRPC headers with INVALID_ARGUMENT
    instead of UNKNOWN (relies on grpclib internals; grpclib is pinned <0.5).

    It also remembers its connections: grpclib's `close()` stops listening but
    leaves established HTTP/2 connections open, so a stopped server would keep
    answering clients on them. `close_connections()` ends them, and clients
    reconnect to whatever listens next.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _Handler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        protocol = H2Protocol(handler, self._config, self._h2_config)
        self._protocols.add(protocol)
        return protocol

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()
