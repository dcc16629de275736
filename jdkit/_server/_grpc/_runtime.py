"""What the embedded JD's handlers share per server (`Runtime`): call counts,
calls in flight for a graceful stop, the health status, and the auth hook
each call's token goes through before its handler runs."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Status
from grpclib.events import RecvRequest
from grpclib.exceptions import GRPCError

from jdkit._methods import WRITES
from jdkit._proto.grpc.health.v1 import HealthCheckResponseServingStatus
from jdkit._server._auth import bearer_token
from jdkit._server._limits import DEFAULT_LIMITS, ServerLimits, Workers
from jdkit._server._state import JDState

log = logging.getLogger("jdkit.server")

AuthHook = Callable[[str | None], Awaitable[None]]
ServingStatus = HealthCheckResponseServingStatus

HEALTH_PREFIX = "/grpc.health.v1.Health/"


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
        if self.auth is None or path.startswith(HEALTH_PREFIX):
            return
        token = bearer_token(event.metadata.get("authorization"))
        try:
            await self.auth(token)
        except GRPCError as exc:
            log.info("%s refused: %s%s", path, exc.status.name, rid_note(event.metadata))
            raise
        except Exception:
            log.exception("auth hook failed on %s%s", path, rid_note(event.metadata))
            raise GRPCError(
                Status.UNAUTHENTICATED, "the access token could not be verified"
            ) from None


_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def rid_note(metadata: Any) -> str:
    """` x-request-id=ID` for a log line, or "" (control characters and
    overlong values are not logged as sent, so a caller cannot forge lines)."""
    rid = metadata.get("x-request-id") if metadata is not None else None
    if not isinstance(rid, str) or not rid:
        return ""
    if not _REQUEST_ID.fullmatch(rid):
        rid = repr(rid[:128])
    return f" x-request-id={rid}"
