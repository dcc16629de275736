"""The JobDistributor client: one object for every JD v1 service.

    async with JobDistributor.connect("127.0.0.1:14231") as jd:
        nodes = await jd.list_nodes()

Every RPC is an async method taking and returning the generated dataclasses
(`jdkit.pb`). Each call runs through the interceptor chain composed once in
`__init__`, outermost first:

    [tracing] -> [min_version] -> deadline -> your interceptors -> dry-run
        -> retry -> [retry events] -> auth -> transport

(bracketed ones only when their option is set)
so your interceptors see each call once, with its deadline set, whether it
is then journaled (dry-run: writes stop there, reads go on) or sent; retries
happen below them, and each attempt gets a fresh token from auth. Failures
surface as the typed errors exported by `jdkit` (`jdkit.JDError` and its
subclasses).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

import anyio
import betterproto2
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from jdkit._channel import open_channel
from jdkit._exceptions import (
    ClientClosedError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    ProtocolError,
    RPCError,
    UnavailableError,
    UnimplementedError,
    WrongEventLoopError,
    map_error,
)
from jdkit._interceptors import (
    Call,
    Interceptor,
    Message,
    StreamNext,
    UnaryNext,
    chain_stream,
    chain_unary,
)
from jdkit._methods import METHODS
from jdkit._options import DEFAULT_TIMEOUT, ClientOptions, check_metadata, check_timeout
from jdkit._redact import register_metadata
from jdkit._retry import DeadlineInterceptor, RetryInterceptor, RetryPolicy
from jdkit._tasks import _pagers, _requests, _rollout, _status, _waiters
from jdkit._tasks._requests import LabelsLike, SelectorLike
from jdkit._transport import Wire, heard_from, recv_message, send_message, user_agent
from jdkit.pb import app, csa, health, job, node, probation

if TYPE_CHECKING:
    from jdkit._dryrun import Journal
    from jdkit._version import VersionCheck

__all__ = ["DEFAULT_TIMEOUT", "CallOptions", "JobDistributor", "ServingStatus", "check_timeout"]

R = TypeVar("R", bound=betterproto2.Message)

ServingStatus = health.HealthCheckResponseServingStatus

#: Backoff between health polls and stream reconnects: the retry policy's
#: full-jitter schedule, without its attempt limit.
_RECONNECT = RetryPolicy(max_attempts=1, initial_backoff=0.05, max_backoff=2.0)


def _drop_stray_cancels(task: asyncio.Task[object] | None, before: int) -> None:
    """Undo the cancel requests grpclib made and then swallowed.

    grpclib wakes a waiting call by `task.cancel()` when its deadline passes or
    the connection drops, then raises its own error instead of CancelledError.
    The task keeps the cancel request, and a later `asyncio.timeout` or anyio
    cancel scope in the same task would let CancelledError escape instead of
    timing out. Only requests grpclib turned into another error get here.
    """
    if task is not None:
        while task.cancelling() > before:
            task.uncancel()


async def _send(stream: Any, call: Call, wire: Wire) -> None:
    """Send the request; a value that cannot be encoded is the caller's mistake."""
    try:
        await send_message(stream, call.request, wire, call.method.path)
    except (UnicodeError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        if isinstance(exc, OSError):  # ssl.SSLCertVerificationError is a ValueError too
            raise
        raise InvalidArgumentError(
            f"{call.method.name} request cannot be encoded: {exc}", method=call.method.path
        ) from None


def _check_options(name: str, opts: CallOptions) -> None:
    unknown = set(opts) - _OPTION_NAMES
    if unknown:
        raise TypeError(
            f"{name}() got unexpected option(s) {sorted(unknown)}; "
            f"per-call options are {sorted(_OPTION_NAMES)}"
        )
    if "timeout" in opts:
        check_timeout("timeout", opts["timeout"])
    if "retry" in opts and not isinstance(opts["retry"], RetryPolicy):
        ClientOptions(retry=opts["retry"])  # raises ConfigError("retry", ...)
    check_metadata("metadata", opts.get("metadata"))
    register_metadata(opts.get("metadata"))


#: Request ids: 64 random bits per process, then a counter (32 hex digits). As
#: unique as uuid4 for telling calls apart, without a urandom syscall per call.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


class CallOptions(TypedDict, total=False):
    """Per-call overrides accepted by every RPC method."""

    timeout: float | None
    retry: RetryPolicy
    metadata: Mapping[str, str]


_OPTION_NAMES = frozenset(CallOptions.__annotations__)


class JobDistributor:
    """An async client for a Job Distributor.

    Build it with `JobDistributor.connect(target, ...)`; use it as an async
    context manager (or call `aclose()`) so the channel is closed.
    `client.options` is the `ClientOptions` it was made with.
    """

    def __init__(self, channel: Channel, options: ClientOptions, /) -> None:
        """A client over an open `channel` (normally made by `connect()`)."""
        if not isinstance(options, ClientOptions):
            raise TypeError(f"expected ClientOptions, got {type(options).__name__}")
        self.options = options
        self._channel = channel
        self._owns_channel = True
        self.target = options.parsed_target()
        self.secure = options.resolved_tls() is not None
        self._metadata = dict(options.metadata or {})
        self.retry_policy = options.retry if options.retry is not None else RetryPolicy()
        self._wire = Wire(
            max_receive=options.max_receive_message_size,
            max_send=options.max_send_message_size,
            keepalive_time=options.keepalive_time,
            keepalive_timeout=options.keepalive_timeout,
            user_agent=user_agent(),
            compression=options.compression,
        )
        chain: list[Interceptor] = [DeadlineInterceptor(options.timeout), *options.interceptors]
        self._version_check: VersionCheck | None = None
        if options.min_version is not None:
            from jdkit._version import VersionCheck

            self._version_check = VersionCheck(self, options.min_version)
            chain.insert(0, self._version_check)
        if options.tracing is not False:
            from jdkit.otel import AttemptEvents, TracingInterceptor

            chain.insert(
                0,
                TracingInterceptor(
                    None if options.tracing is True else options.tracing,
                    server_address=self.target.host,
                    server_port=self.target.port,
                    dry_run=options.dry_run is not False,
                ),
            )
        self.journal: Journal | None = None
        if options.dry_run is not False:
            from jdkit._dryrun import DryRunInterceptor, Journal

            dry = options.dry_run
            self.journal = dry if isinstance(dry, Journal) else Journal()
            chain.append(DryRunInterceptor(self.journal))
        chain.append(RetryInterceptor(self.retry_policy))
        if options.tracing is not False:
            chain.append(AttemptEvents())
        if options.auth is not None:
            from jdkit.auth._interceptor import build_auth_interceptor

            chain.append(
                build_auth_interceptor(
                    options.auth,
                    secure=self.secure,
                    allow_insecure=bool(options.allow_insecure_auth),
                )
            )
        self.interceptors: tuple[Interceptor, ...] = tuple(chain)
        self._unary_chain: UnaryNext = chain_unary(chain, self._transport_unary)
        self._stream_chain: StreamNext = chain_stream(chain, self._transport_stream)
        self._closed = False
        self._parent: JobDistributor | None = None  # set on dry-run views
        self._loop: asyncio.AbstractEventLoop | None = None  # set by connect()

    @classmethod
    def connect(
        cls,
        target: str | None = None,
        *,
        options: ClientOptions | None = None,
        **overrides: Any,
    ) -> JobDistributor:
        """Open a (lazily connecting) client to `target`.

        `options` (a `ClientOptions`) and keyword overrides of its fields
        (`timeout=5`, `auth=...`) say how; `target` overrides theirs.
        """
        if target is not None:
            overrides["target"] = target
        opts = ClientOptions.of(options, **overrides)  # no event loop needed to refuse
        parsed = opts.parsed_target()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise WrongEventLoopError(
                "JobDistributor.connect() must be called inside the event loop that will "
                "use the client (grpclib binds a channel to its loop); e.g. in an async "
                "function, or use `async with jdkit.connect(...)`"
            ) from None
        client = cls(open_channel(parsed, opts), opts)
        client._loop = loop
        return client

    def __repr__(self) -> str:
        scheme = "grpcs" if self.secure else "grpc"
        extra = " dry-run" if self.journal is not None else ""
        return f"<JobDistributor {scheme}://{self.target}{extra}>"

    # -- lifecycle

    async def __aenter__(self) -> JobDistributor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def with_dry_run(self, journal: Journal | None = None) -> JobDistributor:
        """A dry-run view of this client: same channel and options, writes journaled.

        Closing the view leaves this client open.
        """
        from jdkit._dryrun import Journal

        view = JobDistributor(
            self._channel,
            self.options.replace(dry_run=journal if journal is not None else Journal()),
        )
        view._owns_channel = False
        view._parent = self
        view._loop = self._loop
        return view

    async def aclose(self) -> None:
        """Close the channel and the interceptors' resources; later calls raise
        `ClientClosedError`. A dry-run view closes only itself."""
        if not self._closed:
            self._closed = True
            if not self._owns_channel:
                return
            self._channel.close()
            for icp in self.interceptors:
                closer = getattr(icp, "aclose", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await closer()

    @property
    def closed(self) -> bool:
        return self._closed or (self._parent is not None and self._parent.closed)

    def _check_usable(self) -> None:
        """Fail fast (and without retries) on a client that cannot work."""
        if self.closed:
            raise ClientClosedError(f"{self!r} is closed; connect a new client")
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise WrongEventLoopError(
                f"{self!r} was connected in another event loop; a grpclib channel belongs "
                "to its loop. Connect inside the loop that uses it (in pytest fixtures, "
                "jdkit.testing.any_loop_client works across loops)"
            )

    # -- the chain's ends

    async def _unary(
        self, path: str, request: Message, response_type: type[R], opts: CallOptions
    ) -> R:
        method = METHODS[path]
        if not isinstance(request, method.request):
            raise TypeError(
                f"{method.name} takes {method.request.__name__}, not {type(request).__name__}"
            )
        if opts:
            _check_options(method.name, opts)
        call = Call(method, request, metadata=self._call_metadata(opts), options=dict(opts))
        response = await self._unary_chain(call)
        assert isinstance(response, response_type)
        return response

    def _call_metadata(self, opts: CallOptions) -> dict[str, str]:
        """The client's metadata, the call's over it, and an `x-request-id` unless given.

        The id is one per logical call (its retries carry the same one), so a
        server's log lines for all attempts can be found from either side.
        """
        extra = opts.get("metadata")
        md = {**self._metadata, **extra} if extra else dict(self._metadata)
        if "x-request-id" not in md:
            md["x-request-id"] = _request_id()
        return md

    async def _transport_unary(self, call: Call) -> Message:
        self._check_usable()
        remaining = call.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceededError("deadline exceeded before sending", method=call.method.path)
        m = call.method
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        stream = None
        try:
            async with self._channel.request(
                m.path,
                Cardinality.UNARY_UNARY,
                m.request,
                m.response,
                timeout=remaining,
                metadata=call.metadata or None,
            ) as stream:
                await _send(stream, call, self._wire)
                response: Message | None = await recv_message(
                    stream, self._wire, m.path, write=m.write
                )
        except Exception as exc:
            _drop_stray_cancels(task, cancels)
            if isinstance(exc, GRPCError):
                heard_from(stream)
            raise map_error(exc, m.path) from exc
        if response is None:
            raise ProtocolError(f"{m.path} answered OK without a message")
        return response

    async def _transport_stream(self, call: Call) -> AsyncIterator[Message]:
        self._check_usable()
        m = call.method
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            async with self._channel.request(
                m.path,
                Cardinality.UNARY_STREAM,
                m.request,
                m.response,
                timeout=call.time_remaining(),
                metadata=call.metadata or None,
            ) as stream:
                await _send(stream, call, self._wire)
                while (message := await recv_message(stream, self._wire, m.path)) is not None:
                    yield message
        except Exception as exc:
            _drop_stray_cancels(task, cancels)
            raise map_error(exc, m.path) from exc

    # -- conveniences upstream's Go client has

    async def propose_job(
        self, request: job.ProposeJobRequest, **opts: Unpack[CallOptions]
    ) -> job.ProposeJobResponse:
        """ProposeJob; a response without a proposal is an error (as upstream treats it)."""
        response = await self._unary(
            "/api.job.v1.JobService/ProposeJob", request, job.ProposeJobResponse, opts
        )
        if response.proposal is None:
            raise ProtocolError(f"ProposeJob to node {request.node_id!r} returned no proposal")
        return response

    async def get_csa_public_key(self, **opts: Unpack[CallOptions]) -> str:
        """The public key of JD's first CSA keypair; NotFoundError when JD has none."""
        keypairs = (await self.list_keypairs(**opts)).keypairs
        if not keypairs:
            raise NotFoundError(
                "JD has no CSA keypair", method="/api.csa.v1.CSAService/ListKeypairs"
            )
        return keypairs[0].public_key

    async def check_version(self) -> None:
        """Check `min_version` now; it is otherwise checked before the first call.

        Raises `VersionError` naming both versions; without `min_version`
        this does nothing.
        """
        if self._version_check is not None:
            await self._version_check.verify()

    # -- health

    async def check_health(self, service: str = "", **opts: Unpack[CallOptions]) -> ServingStatus:
        """gRPC health; a server without the health service is probed with GetKeypair."""
        try:
            response = await self._unary(
                "/grpc.health.v1.Health/Check",
                health.HealthCheckRequest(service=service),
                health.HealthCheckResponse,
                opts,
            )
            return response.status
        except UnimplementedError:
            try:
                await self.get_keypair(**opts)
            except NotFoundError:
                pass  # answering at all is what counts
            return ServingStatus.SERVING

    async def wait_ready(self, timeout: float = 30.0, *, service: str = "") -> None:
        """Poll health with backoff until SERVING; DeadlineExceededError after `timeout`."""
        deadline = time.monotonic() + timeout
        attempt, last = 0, "no answer yet"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    f"JD at {self.target} not ready after {timeout}s (last: {last})",
                    method="/grpc.health.v1.Health/Check",
                )
            try:
                status = await self.check_health(
                    service, timeout=min(remaining, 5.0), retry=RetryPolicy.disabled()
                )
                if status == ServingStatus.SERVING:
                    return
                last = status.name or str(status)
            except (RPCError, ProtocolError) as exc:
                last = str(exc)
            attempt += 1
            pause = _RECONNECT.backoff(attempt)
            await anyio.sleep(min(pause, max(deadline - time.monotonic(), 0)))

    async def watch_health(
        self, service: str = "", *, reconnect: bool = True
    ) -> AsyncIterator[ServingStatus]:
        """Yield the server's health as it changes, across reconnects.

        While the server is unreachable this yields NOT_SERVING once, then
        keeps reconnecting with backoff (unless `reconnect=False`).
        """
        method = METHODS["/grpc.health.v1.Health/Watch"]
        attempt, last = 0, None
        while True:
            call = Call(
                method, health.HealthCheckRequest(service=service), metadata=dict(self._metadata)
            )
            try:
                async for message in self._stream_chain(call):
                    assert isinstance(message, health.HealthCheckResponse)
                    attempt = 0
                    if message.status != last:
                        last = message.status
                        yield message.status
            except UnavailableError:
                if not reconnect:
                    raise
            else:
                if not reconnect:
                    return
            if last != ServingStatus.NOT_SERVING:
                last = ServingStatus.NOT_SERVING
                yield last
            attempt += 1
            await anyio.sleep(_RECONNECT.backoff(attempt))

    # -- one method per RPC

    # -- AppService

    async def version(
        self, request: app.VersionRequest | None = None, **opts: Unpack[CallOptions]
    ) -> app.VersionResponse:
        """The JD server's version string (AppService/Version)."""
        return await self._unary(
            "/api.app.v1.AppService/Version",
            request or app.VersionRequest(),
            app.VersionResponse,
            opts,
        )

    # -- CSAService

    async def get_keypair(
        self, request: csa.GetKeypairRequest | None = None, **opts: Unpack[CallOptions]
    ) -> csa.GetKeypairResponse:
        """JD's active CSA keypair (public half only); `NotFoundError` when JD has none."""
        return await self._unary(
            "/api.csa.v1.CSAService/GetKeypair",
            request or csa.GetKeypairRequest(),
            csa.GetKeypairResponse,
            opts,
        )

    async def list_keypairs(
        self, request: csa.ListKeypairsRequest | None = None, **opts: Unpack[CallOptions]
    ) -> csa.ListKeypairsResponse:
        """All of JD's CSA keypairs; `get_csa_public_key()` is the usual shortcut."""
        return await self._unary(
            "/api.csa.v1.CSAService/ListKeypairs",
            request or csa.ListKeypairsRequest(),
            csa.ListKeypairsResponse,
            opts,
        )

    # -- NodeService

    async def register_node(
        self, request: node.RegisterNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.RegisterNodeResponse:
        """Register a node by name and CSA public key (hex); an enabled, not connected node.

        A key registered already is `AlreadyExistsError`; `ensure_node` makes
        this idempotent. `.node` is always set by JD (typed Optional by proto3).
        """
        return await self._unary(
            "/api.node.v1.NodeService/RegisterNode", request, node.RegisterNodeResponse, opts
        )

    async def get_node(
        self,
        request: node.GetNodeRequest | None = None,
        *,
        id: str | None = None,
        public_key: str | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.GetNodeResponse:
        """One node by `id=` or `public_key=` (or a request); `NotFoundError` when absent.

        `.node` is always set by JD; `ensure_node` returns a plain `Node`.
        """
        return await self._unary(
            "/api.node.v1.NodeService/GetNode",
            _requests.get_node(request, id=id, public_key=public_key),
            node.GetNodeResponse,
            opts,
        )

    async def list_nodes(
        self,
        request: node.ListNodesRequest | None = None,
        *,
        selector: SelectorLike | None = None,
        enabled: bool | None = None,
        ids: Sequence[str] | None = None,
        public_keys: Sequence[str] | None = None,
        page_size: int | None = None,
        page: int | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.ListNodesResponse:
        """One ListNodes call; filters as keywords or a request, not both.

        `selector` is selector text (`"env=dev, !canary"`) or `Selector`s, all
        of which must match. Without `page_size` JD returns every match; to
        walk all pages whatever the server does, use `iter_nodes`.
        """
        return await self._unary(
            "/api.node.v1.NodeService/ListNodes",
            _requests.list_nodes(
                request,
                selector=selector,
                enabled=enabled,
                ids=ids,
                public_keys=public_keys,
                page_size=page_size,
                page=page,
            ),
            node.ListNodesResponse,
            opts,
        )

    async def update_node(
        self, request: node.UpdateNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.UpdateNodeResponse:
        """Change a node's name, public key or labels.

        Empty strings and an empty label list mean "leave unchanged"; a
        non-empty label list replaces all labels.
        """
        return await self._unary(
            "/api.node.v1.NodeService/UpdateNode", request, node.UpdateNodeResponse, opts
        )

    async def enable_node(
        self, request: node.EnableNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.EnableNodeResponse:
        """Enable a node again (`NotFoundError` when absent)."""
        return await self._unary(
            "/api.node.v1.NodeService/EnableNode", request, node.EnableNodeResponse, opts
        )

    async def disable_node(
        self, request: node.DisableNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.DisableNodeResponse:
        """Disable a node: JD refuses new proposals to it until it is enabled."""
        return await self._unary(
            "/api.node.v1.NodeService/DisableNode", request, node.DisableNodeResponse, opts
        )

    async def list_node_chain_configs(
        self,
        request: node.ListNodeChainConfigsRequest | None = None,
        *,
        node_ids: Sequence[str] | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.ListNodeChainConfigsResponse:
        """The chain configs nodes reported, all or for `node_ids=`."""
        return await self._unary(
            "/api.node.v1.NodeService/ListNodeChainConfigs",
            _requests.list_node_chain_configs(request, node_ids=node_ids),
            node.ListNodeChainConfigsResponse,
            opts,
        )

    # -- JobService

    async def batch_propose_job(
        self, request: job.BatchProposeJobRequest, **opts: Unpack[CallOptions]
    ) -> job.BatchProposeJobResponse:
        """Propose one spec to many node ids; each node succeeds or fails on its own.

        Results are keyed by node id in `success_responses` / `failed_responses`.
        `propose` adds selectors, chunking and a `Rollout` on top.
        """
        return await self._unary(
            "/api.job.v1.JobService/BatchProposeJob", request, job.BatchProposeJobResponse, opts
        )

    async def get_job(
        self,
        request: job.GetJobRequest | None = None,
        *,
        id: str | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.GetJobResponse:
        """One job by `id=` (a job id, not the externalJobID); `NotFoundError` when absent."""
        return await self._unary(
            "/api.job.v1.JobService/GetJob",
            _requests.get_job(request, id=id),
            job.GetJobResponse,
            opts,
        )

    async def list_jobs(
        self,
        request: job.ListJobsRequest | None = None,
        *,
        selector: SelectorLike | None = None,
        ids: Sequence[str] | None = None,
        node_ids: Sequence[str] | None = None,
        uuids: Sequence[str] | None = None,
        include_deleted: bool | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.ListJobsResponse:
        """Jobs matching every filter given (keywords or a request, not both).

        `uuids` are externalJobIDs: one per node that was proposed the spec.
        `selector` matches the job's labels. Deleted jobs only with
        `include_deleted=True`.
        """
        return await self._unary(
            "/api.job.v1.JobService/ListJobs",
            _requests.list_jobs(
                request,
                selector=selector,
                ids=ids,
                node_ids=node_ids,
                uuids=uuids,
                include_deleted=include_deleted,
            ),
            job.ListJobsResponse,
            opts,
        )

    async def update_job(
        self, request: job.UpdateJobRequest, **opts: Unpack[CallOptions]
    ) -> job.UpdateJobResponse:
        """Replace a job's labels (when non-empty) and/or set its rollback policy id."""
        return await self._unary(
            "/api.job.v1.JobService/UpdateJob", request, job.UpdateJobResponse, opts
        )

    async def revoke_job(
        self, request: job.RevokeJobRequest, **opts: Unpack[CallOptions]
    ) -> job.RevokeJobResponse:
        """Revoke the job's latest proposal (only while PROPOSED or CANCELLED).

        `id` may be the job id or the proposal id: JD's API calls it a
        proposal id, upstream's in-memory JD looks it up as a job id.
        """
        return await self._unary(
            "/api.job.v1.JobService/RevokeJob", request, job.RevokeJobResponse, opts
        )

    async def delete_job(
        self, request: job.DeleteJobRequest, **opts: Unpack[CallOptions]
    ) -> job.DeleteJobResponse:
        """Soft-delete a job (sets `deleted_at`); ListJobs then hides it unless asked."""
        return await self._unary(
            "/api.job.v1.JobService/DeleteJob", request, job.DeleteJobResponse, opts
        )

    async def get_proposal(
        self,
        request: job.GetProposalRequest | None = None,
        *,
        id: str | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.GetProposalResponse:
        """One proposal (with its spec) by `id=`; `NotFoundError` when absent."""
        return await self._unary(
            "/api.job.v1.JobService/GetProposal",
            _requests.get_proposal(request, id=id),
            job.GetProposalResponse,
            opts,
        )

    async def list_proposals(
        self,
        request: job.ListProposalsRequest | None = None,
        *,
        ids: Sequence[str] | None = None,
        job_ids: Sequence[str] | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.ListProposalsResponse:
        """Proposals by `ids=` and/or `job_ids=` (keywords or a request, not both).

        JD cannot filter by status or node: `rollout_status` and
        `wait_for_proposals` do that join for you.
        """
        return await self._unary(
            "/api.job.v1.JobService/ListProposals",
            _requests.list_proposals(request, ids=ids, job_ids=job_ids),
            job.ListProposalsResponse,
            opts,
        )

    # -- RollbackPolicyService

    async def create_rollback_policy(
        self, request: probation.CreateRollbackPolicyRequest, **opts: Unpack[CallOptions]
    ) -> probation.CreateRollbackPolicyResponse:
        """Create a rollback policy (a free-form `google.protobuf.Struct`)."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/CreateRollbackPolicy",
            request,
            probation.CreateRollbackPolicyResponse,
            opts,
        )

    async def get_rollback_policy(
        self, request: probation.GetRollbackPolicyRequest, **opts: Unpack[CallOptions]
    ) -> probation.GetRollbackPolicyResponse:
        """One rollback policy by id; `NotFoundError` when absent."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/GetRollbackPolicy",
            request,
            probation.GetRollbackPolicyResponse,
            opts,
        )

    async def list_rollback_policies(
        self,
        request: probation.ListRollbackPoliciesRequest | None = None,
        **opts: Unpack[CallOptions],
    ) -> probation.ListRollbackPoliciesResponse:
        """Rollback policies, all or by ids."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/ListRollbackPolicies",
            request or probation.ListRollbackPoliciesRequest(),
            probation.ListRollbackPoliciesResponse,
            opts,
        )

    async def update_rollback_policy(
        self, request: probation.UpdateRollbackPolicyRequest, **opts: Unpack[CallOptions]
    ) -> probation.UpdateRollbackPolicyResponse:
        """Replace a rollback policy's document."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/UpdateRollbackPolicy",
            request,
            probation.UpdateRollbackPolicyResponse,
            opts,
        )

    # -- task helpers (jdkit/_tasks): loops and joins over the RPCs above

    def iter_nodes(
        self,
        *,
        selector: SelectorLike | None = None,
        enabled: bool | None = None,
        ids: Sequence[str] | None = None,
        public_keys: Sequence[str] | None = None,
        page_size: int = _pagers.NODE_PAGE,
        **opts: Unpack[CallOptions],
    ) -> AsyncIterator[node.Node]:
        """Every matching node, page by page: `async for n in jd.iter_nodes(selector=...)`.

        Correct against servers that page, servers that ignore paging and
        servers that leave `total_count` unset; no node is yielded twice.
        """
        return _pagers.iter_nodes(
            self,
            selector=selector,
            enabled=enabled,
            ids=ids,
            public_keys=public_keys,
            page_size=page_size,
            **opts,
        )

    def iter_jobs(
        self,
        *,
        selector: SelectorLike | None = None,
        ids: Sequence[str] | None = None,
        node_ids: Sequence[str] | None = None,
        uuids: Sequence[str] | None = None,
        include_deleted: bool = False,
        **opts: Unpack[CallOptions],
    ) -> AsyncIterator[job.Job]:
        """Every matching job (JD's ListJobs does not page; long id lists go in chunks)."""
        return _pagers.iter_jobs(
            self,
            selector=selector,
            ids=ids,
            node_ids=node_ids,
            uuids=uuids,
            include_deleted=include_deleted,
            **opts,
        )

    def iter_proposals(
        self,
        *,
        ids: Sequence[str] | None = None,
        job_ids: Sequence[str] | None = None,
        **opts: Unpack[CallOptions],
    ) -> AsyncIterator[job.Proposal]:
        """Every matching proposal (ListProposals does not page; long id lists go in chunks)."""
        return _pagers.iter_proposals(self, ids=ids, job_ids=job_ids, **opts)

    async def propose(
        self,
        spec: str,
        *,
        nodes: _rollout.NodesLike,
        labels: LabelsLike = (),
        chunk_size: int = _rollout.DEFAULT_CHUNK,
        progress: _rollout.Progress | None = None,
        **opts: Unpack[CallOptions],
    ) -> _rollout.Rollout:
        """Propose `spec` to many nodes; per node a proposal or the reason it failed.

        `nodes` is selector text or `Selector`s (the enabled nodes that match;
        none matching is a `ConfigError`), or node ids / `Node`s. Proposing a
        spec again with the same externalJobID makes the next revision.
        BatchProposeJob is sent `chunk_size` nodes at a time and
        `progress(done, total)` is called after each chunk. A chunk that fails
        as a whole (e.g. UNAVAILABLE) marks its nodes failed and the rest go on;
        a spec or auth problem raises. Under dry-run nothing is sent and the
        rollout holds the planned proposals.
        """
        return await _rollout.propose(
            self, spec, nodes=nodes, labels=labels, chunk_size=chunk_size, progress=progress, **opts
        )

    async def wait_for_proposals(
        self,
        proposals: _waiters.ProposalsLike,
        *,
        status: job.ProposalStatus | str = job.ProposalStatus.APPROVED,
        timeout: float | None,
        progress: _waiters.WaitProgress | None = None,
        **opts: Unpack[_waiters.PollOptions],
    ) -> dict[str, job.Proposal]:
        """Poll until every proposal has `status`; node id -> final proposal.

        Takes a `Rollout`, a `{node id: Proposal}` mapping or Proposals.
        Raises `ProposalWaitError` naming every node whose proposal ended in
        another final status (REJECTED, CANCELLED, REVOKED) or was still
        undecided after `timeout` seconds (None: no limit). Polls back off
        from 50 ms to 1 s; `progress(reached, total)` is called after each.
        A bad `status` or `timeout` is a `ConfigError` naming it.

        Under dry-run it returns at once, without error, the planned
        proposals as they are (PROPOSED): nothing was sent, so no node can
        answer, and waiting could only time out. So a script can be planned
        end to end; check `jd.journal` (or `rollout.dry_run`) before reading
        the statuses as approvals.
        """
        return await _waiters.wait_for_proposals(
            self, proposals, status=status, timeout=timeout, progress=progress, **opts
        )

    async def rollout_status(
        self,
        external_job_id: str | None = None,
        *,
        job_ids: Sequence[str] | None = None,
        selector: SelectorLike | None = None,
        nodes: _rollout.NodesLike | None = None,
        include_deleted: bool = False,
        **opts: Unpack[CallOptions],
    ) -> _status.RolloutStatus:
        """Per node: latest revision, its status, delivery status and when.

        Pick the jobs by externalJobID, `job_ids=`, `selector=` (job labels)
        and/or `nodes=` (a node selector or ids; matching nodes without the
        job show as "not proposed"). `jdkit.show(status)` prints the table.
        An externalJobID or `job_ids=` that names no job (without `nodes=`)
        is a `NotFoundError` naming it, not an empty status.
        """
        return await _status.rollout_status(
            self,
            external_job_id,
            job_ids=job_ids,
            selector=selector,
            nodes=nodes,
            include_deleted=include_deleted,
            **opts,
        )

    async def ensure_node(
        self,
        name: str,
        public_key: str,
        labels: LabelsLike | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.Node:
        """Register the node with `public_key`, or return it, updated to `name`/`labels`.

        Safe to run again and again (and concurrently: a registration that
        loses the race updates the winner's node). `labels=None` leaves an
        existing node's labels alone.
        """
        return await _rollout.ensure_node(self, name, public_key, labels, **opts)
