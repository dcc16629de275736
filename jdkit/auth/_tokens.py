"""What every token source shares: the token, the source protocol, a fixed token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jdkit import _redact
from jdkit._exceptions import ConfigError

__all__ = ["Clock", "StaticToken", "Token", "TokenSource", "token_problem"]

Clock = Callable[[], float]
"""What `OAuth2ClientCredentials`, `CognitoTokenSource` and `TokenManager` take
as `clock=`: seconds now, on the clock tokens' `expires_at` is on (`time.time`
by default; tests pass a fake)."""


@dataclass(frozen=True, repr=False)
class Token:
    """A bearer token and when it stops working.

    `expires_at` is on the clock of the source that made it (wall-clock epoch
    seconds by default); None means the source does not know.
    """

    value: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        exp = "None" if self.expires_at is None else f"{self.expires_at:.0f}"
        return f"Token(value={_redact.REDACTED}, expires_at={exp})"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@runtime_checkable
class TokenSource(Protocol):
    """Anything that can produce a fresh token.

    Sources may also define `invalidate()` (the server rejected the last
    token) and `async aclose()` (release connections; the source must still
    work afterwards, reopening them lazily).
    """

    async def fetch(self) -> Token: ...


def token_problem(value: object) -> str | None:
    """Why `value` cannot go into an `authorization` header, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if any(c.isspace() or not c.isprintable() or ord(c) > 126 for c in value):
        return "must be printable ASCII without whitespace"
    return None


# -- static


class StaticToken:
    """A fixed token, e.g. from a secret store. It never expires by itself."""

    def __init__(self, token: str) -> None:
        problem = token_problem(token)
        if problem:
            raise ConfigError("token", problem)
        _redact.register(token, header_prefix="Bearer ")
        self._token = Token(token, None)

    async def fetch(self) -> Token:
        return self._token

    def __repr__(self) -> str:
        return f"StaticToken({_redact.REDACTED})"


# -- OAuth2 client credentials
