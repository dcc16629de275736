"""Caching and refreshing a source's token, one fetch however many callers."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from jdkit import _redact, _tracing
from jdkit._exceptions import AuthError, ConfigError
from jdkit.auth._tokens import Clock, Token, TokenSource, token_problem

__all__ = ["DEFAULT_MARGIN", "REFRESH_RETRY_INTERVAL", "TokenManager"]

log = logging.getLogger("jdkit.auth")

#: How long before expiry a cached token is replaced (seconds).
DEFAULT_MARGIN = 60.0
#: After a proactive refresh fails, how long the still-valid token is used
#: before the next attempt, so a dead endpoint is not hit on every call.
REFRESH_RETRY_INTERVAL = 5.0


class TokenManager:
    """Caches a source's token and refreshes it ahead of expiry, single-flight.

    A token is replaced `margin` seconds before `expires_at` (or at half its
    lifetime when that is shorter), so calls rarely carry a token that expires
    in flight. However many callers find the token stale at once, one fetch
    runs; it runs as its own task so a cancelled caller does not cancel it for
    the others. If a proactive refresh fails while the old token is still
    valid, the old one is used (and the failure logged) for a few seconds.
    `clock` must be the clock the source's `expires_at` is on.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        if margin < 0:
            raise ConfigError("margin", "must be >= 0")
        if not callable(getattr(source, "fetch", None)):
            raise ConfigError("auth", f"{type(source).__name__} is not a token source")
        self.source = source
        self.margin = margin
        self._clock = clock
        self._token: Token | None = None
        self._refresh_at = -math.inf
        self._inflight: asyncio.Task[Token] | None = None

    def __repr__(self) -> str:
        return f"TokenManager({self.source!r}, margin={self.margin})"

    @property
    def token(self) -> Token | None:
        """The cached token, fresh or not (None before the first fetch)."""
        return self._token

    async def get(self) -> Token:
        """A token good for at least the margin (unless the source says otherwise)."""
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return await self._join()

    async def fetch(self) -> Token:
        """`get()`, so a manager is itself a (caching) `TokenSource`."""
        return await self.get()

    def invalidate(self, rejected: Token | None = None) -> None:
        """Drop the cached token (only if it is still `rejected`, when given).

        Passing the rejected token makes N calls rejected together cause one
        refresh, not N.
        """
        if rejected is not None and self._token is not None and self._token != rejected:
            return
        self._token = None
        self._refresh_at = -math.inf
        hook = getattr(self.source, "invalidate", None)
        if callable(hook):
            hook()

    async def refresh(self, rejected: Token | None = None) -> Token:
        """A token other than `rejected`, fetched now unless someone just did."""
        self.invalidate(rejected)
        return await self.get()

    async def aclose(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # its outcome is the waiters' business
        closer = getattr(self.source, "aclose", None)
        if callable(closer):
            await closer()

    async def _join(self) -> Token:
        task = self._inflight
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight = task
            task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Token]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here: waiters may all have gone

    async def _fetch(self) -> Token:
        try:
            with _tracing.span(
                "jdkit.auth.refresh", {"jdkit.auth.source": type(self.source).__name__}
            ):
                token = await self.source.fetch()
        except Exception as exc:
            old, now = self._token, self._clock()
            if old is not None and not old.expired(now):
                log.warning(
                    "token refresh failed, using the current token until it expires: %s", exc
                )
                retry = now + REFRESH_RETRY_INTERVAL
                self._refresh_at = retry if old.expires_at is None else min(retry, old.expires_at)
                return old
            raise
        if not isinstance(token, Token) or token_problem(token.value):
            raise AuthError(f"{type(self.source).__name__}.fetch() returned no usable Token")
        _redact.register(token.value, header_prefix="Bearer ")
        now = self._clock()
        if token.expires_at is None:
            self._refresh_at = math.inf
        else:
            lifetime = max(token.expires_at - now, 0.0)
            self._refresh_at = token.expires_at - min(self.margin, lifetime / 2)
        self._token = token
        return token


# -- the interceptor
