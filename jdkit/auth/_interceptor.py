"""The interceptor that puts the token on each call and replays once when it is refused."""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

from jdkit import _redact
from jdkit._exceptions import AuthError, ConfigError, UnauthenticatedError
from jdkit._interceptors import Call, Interceptor, Message, StreamNext, UnaryNext
from jdkit.auth._manager import TokenManager
from jdkit.auth._tokens import Token, TokenSource

__all__ = ["AuthInterceptor", "build_auth_interceptor"]

log = logging.getLogger("jdkit.auth")


class AuthInterceptor(Interceptor):
    """Puts `authorization: Bearer <token>` on each attempt; replays once on UNAUTHENTICATED.

    The replay is safe for writes: a server answering UNAUTHENTICATED has not
    acted on the request. A stream is replayed only if no message arrived yet.
    Bearer tokens are refused on a plaintext channel unless
    `allow_insecure=True`: anyone on the path could copy them.
    """

    def __init__(
        self,
        auth: TokenSource | TokenManager,
        *,
        secure: bool,
        allow_insecure: bool = False,
    ) -> None:
        if not secure and not allow_insecure:
            raise ConfigError(
                "allow_insecure_auth",
                "refusing to send bearer tokens over a plaintext channel; use TLS, "
                "or pass allow_insecure_auth=True (local testing only)",
            )
        self.manager = auth if isinstance(auth, TokenManager) else TokenManager(auth)
        # The last token stamped, its header value, and the redaction registry's
        # generation when it was registered (see `_stamp`).
        self._value: str | None = None
        self._header = ""
        self._generation = -1

    def __repr__(self) -> str:
        return f"AuthInterceptor({self.manager!r})"

    async def aclose(self) -> None:
        await self.manager.aclose()

    async def _stamp(self, call: Call, token: Token | None = None) -> Token:
        token = token or await self.manager.get()
        value = token.value
        # The bounded registry must keep tokens in use, so a token is registered
        # (again) when it is new here or when anything was added to the registry
        # since: only additions push an entry towards eviction. Per call that
        # is otherwise a lock and a dict move for the same token.
        if value != self._value or _redact.generation() != self._generation:
            _redact.register(value, header_prefix="Bearer ")
            self._generation = _redact.generation()
            self._value, self._header = value, f"Bearer {value}"
        call.metadata["authorization"] = self._header
        return token

    async def _retoken(self, call: Call, rejected: Token, exc: UnauthenticatedError) -> bool:
        """Fetch a token other than `rejected`; False if the source has no other."""
        try:
            fresh = await self.manager.refresh(rejected)
        except AuthError as err:
            raise err from exc
        if fresh.value == rejected.value:
            return False
        log.info("%s: server refused the token; replaying with a fresh one", call.method.path)
        await self._stamp(call, fresh)
        return True

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        token = await self._stamp(call)
        try:
            return await proceed(call)
        except UnauthenticatedError as exc:
            if not await self._retoken(call, token, exc):
                raise
        return await proceed(call)

    async def stream(self, call: Call, proceed: StreamNext) -> AsyncIterator[Message]:
        token = await self._stamp(call)
        received = False
        try:
            async with _closing(proceed(call)) as it:
                async for msg in it:
                    received = True
                    yield msg
            return
        except UnauthenticatedError as exc:
            if received or not await self._retoken(call, token, exc):
                raise
        async with _closing(proceed(call)) as it:
            async for msg in it:
                yield msg


@contextlib.asynccontextmanager
async def _closing(it: AsyncIterator[Message]) -> AsyncIterator[AsyncIterator[Message]]:
    try:
        yield it
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


_managers: weakref.WeakKeyDictionary[Any, TokenManager] = weakref.WeakKeyDictionary()


def build_auth_interceptor(
    auth: TokenSource | TokenManager, *, secure: bool, allow_insecure: bool = False
) -> AuthInterceptor:
    """The interceptor `JobDistributor` installs for `auth=`.

    Clients built from the same source (e.g. a dry-run view) share one
    `TokenManager`, hence one cached token.
    """
    if not isinstance(auth, TokenManager):
        try:
            manager = _managers.get(auth)
            if manager is None:
                manager = _managers[auth] = TokenManager(auth)
            auth = manager
        except TypeError:  # not weak-referenceable: give it its own manager
            pass
    return AuthInterceptor(auth, secure=secure, allow_insecure=allow_insecure)
