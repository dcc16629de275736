"""The interceptor chain every JobDistributor call goes through.

grpclib has no interceptors, so jdkit composes its own, once, when the client
is built (grpc.aio style): each interceptor gets the call and a `proceed`
function for the rest of the chain. The built-in order, outermost first:

    [TracingInterceptor]  ->  [VersionCheck]  ->  DeadlineInterceptor
        ->  user interceptors  ->  DryRunInterceptor (dry-run only)
        ->  RetryInterceptor  ->  [AttemptEvents]  ->  AuthInterceptor
        ->  transport (grpclib channel, jdkit's framing; errors mapped)

(bracketed: only with the `tracing` / `min_version` options). Tracing is
outermost so a span sees the call's final outcome, deadline included.

User interceptors sit outside dry-run so they see a planned write exactly as
they would see it sent (a metrics interceptor counts both); dry-run sits
outside retry and auth, so a journaled write is never retried and needs no
token.

Write your own by subclassing `Interceptor` and overriding either hook; the
defaults pass the call through untouched.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import betterproto2

from jdkit import _exports
from jdkit._methods import Method
from jdkit._redact import REDACTED, is_sensitive_key

Message = betterproto2.Message


@dataclass(slots=True)
class Call:
    """One logical call as it travels the chain.

    `metadata` is mutable and rebuilt per attempt by the interceptors that own
    it; `deadline` is absolute on `time.monotonic()`, None for no deadline.
    """

    method: Method
    request: Message
    metadata: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None
    attempt: int = 1
    #: Per-call overrides (e.g. {"retry": RetryPolicy(...)}) read by interceptors.
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The auth interceptor puts the bearer token into `metadata`: a repr
        # printed outside logging (where the redaction filter cannot help)
        # must not carry it.
        shown = {k: (REDACTED if is_sensitive_key(k) else v) for k, v in self.metadata.items()}
        return (
            f"Call(method={self.method.name!r}, request={type(self.request).__name__}, "
            f"metadata={shown!r}, deadline={self.deadline!r}, attempt={self.attempt})"
        )

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()


UnaryNext = Callable[[Call], Awaitable[Message]]
"""The `proceed` a unary `Interceptor.unary` is given: await it with the call."""
StreamNext = Callable[[Call], AsyncIterator[Message]]
"""The `proceed` a streaming `Interceptor.stream` is given: iterate its replies."""


class Interceptor:
    """Base class: override `unary` and/or `stream`."""

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        return await proceed(call)

    def stream(self, call: Call, proceed: StreamNext) -> AsyncIterator[Message]:
        return proceed(call)


def chain_unary(interceptors: Sequence[Interceptor], terminal: UnaryNext) -> UnaryNext:
    proceed = terminal
    for icp in reversed(interceptors):
        proceed = _bind_unary(icp, proceed)
    return proceed


def chain_stream(interceptors: Sequence[Interceptor], terminal: StreamNext) -> StreamNext:
    proceed = terminal
    for icp in reversed(interceptors):
        proceed = _bind_stream(icp, proceed)
    return proceed


def _bind_unary(icp: Interceptor, proceed: UnaryNext) -> UnaryNext:
    # A plain function handing back the interceptor's coroutine, not an async
    # wrapper awaiting it: one coroutine frame less per interceptor per call.
    def step(call: Call) -> Awaitable[Message]:
        return icp.unary(call, proceed)

    return step


def _bind_stream(icp: Interceptor, proceed: StreamNext) -> StreamNext:
    def step(call: Call) -> AsyncIterator[Message]:
        return icp.stream(call, proceed)

    return step


_exports.publish_lazy(globals())  # what jdkit imports from here on first use
