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

The class is composed from one module per concern: `_calls` (what every
call goes through: options, metadata, `x-request-id`), `_rpcs` (one method
per RPC), `_health` (check, wait, watch) and `_task_methods` (the task
helpers, whose logic is in `jdkit._tasks`); construction, the chain, the
transport ends and the lifecycle are here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from jdkit import _exports
from jdkit._channel import open_channel
from jdkit._client._calls import CallOptions
from jdkit._client._health import HealthMethods, ServingStatus
from jdkit._client._task_methods import TaskMethods
from jdkit._exceptions import (
    ClientClosedError,
    ConfigError,
    DeadlineExceededError,
    ProtocolError,
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
from jdkit._options import DEFAULT_TIMEOUT, ClientOptions, check_timeout
from jdkit._retry import DeadlineInterceptor, RetryInterceptor, RetryPolicy
from jdkit._transport import (
    ENCODE_ERRORS,
    Wire,
    cannot_encode,
    heard_from,
    recv_message,
    send_message,
    user_agent,
)

if TYPE_CHECKING:
    from jdkit._dryrun import Journal
    from jdkit._version import VersionCheck

__all__ = ["DEFAULT_TIMEOUT", "CallOptions", "JobDistributor", "ServingStatus", "check_timeout"]


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
    except ENCODE_ERRORS as exc:
        err = cannot_encode(call, exc)
        if err is None:
            raise
        raise err from None


class JobDistributor(TaskMethods, HealthMethods):
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
        self._metadata: dict[str, Any] = dict(options.metadata or {})
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
            chain.append(DryRunInterceptor(self.journal, max_send=options.max_send_message_size))
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

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def with_dry_run(
        self,
        journal: Journal | None = None,
        *,
        options: ClientOptions | None = None,
        **keywords: Any,
    ) -> JobDistributor:
        """A dry-run view of this client: same channel, writes journaled, never sent.

        Writes go into `journal` (default: a new `Journal`; a `dry_run=`
        Journal in `options` or the keywords is the same). The view's options
        are this client's, or `options` (a `ClientOptions`), with keyword
        overrides of its fields, as at every entry point:
        `jd.with_dry_run(timeout=5, interceptors=[audit])`. The view shares
        this client's channel, so the fields a channel is made of
        (`target`, `tls`, `keepalive_time`, `keepalive_timeout`) must be
        this client's: another value is a `ConfigError` naming the field
        (an `options` without a target means this client's); connect a
        second client with `dry_run=True` for another server. Closing the
        view leaves this client open.
        """
        from jdkit._dryrun import Journal

        opts = ClientOptions.of(options if options is not None else self.options, **keywords)
        if opts.target is None:
            opts = opts.replace(target=self.options.target)
        differ = [
            name
            for name, same in (
                ("target", opts.parsed_target() == self.target),
                ("tls", opts.resolved_tls() == self.options.resolved_tls()),
                ("keepalive_time", opts.keepalive_time == self.options.keepalive_time),
                ("keepalive_timeout", opts.keepalive_timeout == self.options.keepalive_timeout),
            )
            if not same
        ]
        if differ:
            raise ConfigError(
                differ[0],
                f"a dry-run view shares this client's channel ({self.target}), so "
                f"{', '.join(differ)} cannot differ from the client's; connect another "
                "client with dry_run=True for another channel",
            )
        if keywords.get("dry_run", True) is False:
            raise ConfigError("dry_run", "a dry-run view always journals its writes")
        given = opts.dry_run if options is not None or "dry_run" in keywords else None
        if isinstance(given, Journal):
            if journal is not None and given is not journal:
                raise ConfigError("dry_run", "two journals given (journal and dry_run)")
            journal = given
        if journal is None:
            journal = Journal()
        view = JobDistributor(self._channel, opts.replace(dry_run=journal))
        view._owns_channel = False
        view._parent = self
        if view._version_check is not None and self._version_check is not None:
            view._version_check.share(self._version_check)  # one Version call per channel
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

    # -- min_version

    async def check_version(self) -> None:
        """Check `min_version` now; it is otherwise checked before the first call.

        Raises `VersionError` naming both versions; without `min_version`
        this does nothing.
        """
        if self._version_check is not None:
            await self._version_check.verify()


_exports.publish_lazy(globals())  # what jdkit imports from here on first use
