"""Health: one check, waiting until ready, and watching across reconnects."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Unpack

import anyio

from jdkit._client._calls import CallOptions
from jdkit._client._rpcs import RPCMethods
from jdkit._exceptions import (
    DeadlineExceededError,
    NotFoundError,
    ProtocolError,
    RPCError,
    UnavailableError,
    UnimplementedError,
)
from jdkit._interceptors import Call
from jdkit._methods import METHODS
from jdkit._retry import RetryPolicy
from jdkit.pb import health

ServingStatus = health.HealthCheckResponseServingStatus

#: Backoff between health polls and stream reconnects: the retry policy's
#: full-jitter schedule, without its attempt limit.
_RECONNECT = RetryPolicy(max_attempts=1, initial_backoff=0.05, max_backoff=2.0)


class HealthMethods(RPCMethods):
    """The health methods of `JobDistributor`."""

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
