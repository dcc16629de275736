"""Server-side token verifiers for the embedded JD's `auth=` hook.

The server calls `await auth(token)` with the bearer token of each call (None
when the call carried none); a verifier returns to admit the call or raises
`GRPCError(Status.UNAUTHENTICATED, why)`. Messages say why ("missing bearer
token", "token expired", "bad signature") and never echo the token.

    StaticTokenVerifier(["t1", "t2"])            fixed shared secrets
    JWKSVerifier(jwks_url, audience=..., ...)    JWTs signed by keys a JWKS publishes
                                                 (e.g. a Cognito user pool)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jdkit import _redact
from jdkit._exceptions import ConfigError

if TYPE_CHECKING:
    import httpx
    import jwt

__all__ = ["JWKSVerifier", "StaticTokenVerifier", "StaticTokens", "Verifier", "bearer_token"]

log = logging.getLogger("jdkit.server.auth")

Verifier = Callable[[str | None], Awaitable[None]]

#: Asymmetric algorithms only: a JWKS publishes public keys, and accepting
#: HS* against a published key is the classic algorithm-confusion hole.
DEFAULT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


def bearer_token(authorization: object) -> str | None:
    """The token of an `authorization: Bearer <token>` value, else None.

    Takes any object because metadata arrives as the caller sent it: a
    missing, binary or repeated header is "no bearer token", not an error.
    """
    if not isinstance(authorization, str):
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _refuse(why: str) -> NoReturn:
    raise GRPCError(Status.UNAUTHENTICATED, why)


def _remember(token: str) -> None:
    """Redact `token` from all log records from now on: hpack logs every
    header it decodes at DEBUG, `authorization` included (see `jdkit._redact`)."""
    _redact.register(token, header_prefix="Bearer ")


class StaticTokenVerifier:
    """Admit calls bearing one of a fixed set of tokens (compared in constant time).

    The tokens are registered with jdkit's log redaction when the verifier is
    made, so a server logging at DEBUG never shows them, not even on the first
    call (hpack logs a request's headers before any verifier sees them).
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        kept = [t for t in tokens if t]
        self._tokens = tuple(t.encode() for t in kept)
        if not self._tokens:
            raise ConfigError("tokens", "needs at least one non-empty token")
        for t in kept:
            _remember(t)

    def __repr__(self) -> str:
        return f"StaticTokenVerifier(<{len(self._tokens)} redacted>)"

    async def __call__(self, token: str | None) -> None:
        if not token:
            _refuse("missing bearer token")
        given = token.encode()
        # Check every candidate so timing does not tell which one was close.
        ok = False
        for candidate in self._tokens:
            ok |= hmac.compare_digest(given, candidate)
        if not ok:
            _refuse("invalid bearer token")
        _remember(token)  # marks it recently used, so the bounded registry keeps it


#: The 0.1 name of `StaticTokenVerifier`.
StaticTokens = StaticTokenVerifier


class JWKSVerifier:
    """Admit calls bearing a JWT signed by a key the JWKS at `jwks_url` publishes.

    Checks signature, `exp` (required) and `nbf` on `clock` (default
    `time.time`, with `leeway` seconds of slack), and `aud`/`iss` when given.
    The key set is cached for `cache_ttl` seconds; a token naming an unknown
    `kid` triggers one early re-fetch (keys rotate) at most every
    `min_refetch_interval` seconds, so junk tokens cannot hammer the endpoint.
    If the key set cannot be fetched and none is cached, calls fail with
    UNAVAILABLE rather than UNAUTHENTICATED: the token may be fine, and a
    client should not throw it away. Calls waiting on a failed fetch share its
    failure, and for `failure_backoff` seconds no new fetch is tried, so a
    dead endpoint costs one timeout, not one per call.
    """

    def __init__(
        self,
        jwks_url: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        clock: Callable[[], float] | None = None,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        cache_ttl: float = 300.0,
        min_refetch_interval: float = 30.0,
        failure_backoff: float = 5.0,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        try:
            import httpx  # noqa: F401  (fail at construction, not first call)
            import jwt  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "JWKSVerifier needs httpx and PyJWT: pip install 'jdkit[jwt]'"
            ) from exc
        if not jwks_url.startswith(("http://", "https://")):
            raise ConfigError("jwks_url", "must be an http(s) URL")
        if leeway < 0:
            raise ConfigError("leeway", "must be >= 0")
        bad = [a for a in algorithms if a.upper().startswith("HS") or a.lower() == "none"]
        if bad or not algorithms:
            raise ConfigError("algorithms", f"must be asymmetric JWS algorithms, got {bad or '[]'}")
        self.jwks_url = jwks_url
        self.audience = audience
        self.issuer = issuer
        self.leeway = float(leeway)
        self.algorithms = tuple(algorithms)
        self.cache_ttl = cache_ttl
        self.min_refetch_interval = min_refetch_interval
        self.failure_backoff = failure_backoff
        self._clock = clock or time.time
        self._given_client = http_client
        self._own_client: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._keys: dict[str, _Key] = {}
        # on time.monotonic(): cache age, not token time
        self._fetched_at = self._failed_at = -float("inf")
        self._failure: str | None = None
        self._generation = 0  # bumped per fetch, so queued waiters reuse its outcome
        self._lock = asyncio.Lock()
        #: How many times the key set was fetched (for tests and metrics).
        self.fetches = 0

    def __repr__(self) -> str:
        return (
            f"JWKSVerifier({self.jwks_url!r}, audience={self.audience!r}, "
            f"issuer={self.issuer!r}, leeway={self.leeway})"
        )

    async def aclose(self) -> None:
        client, self._own_client = self._own_client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, token: str | None) -> None:
        await self.verify(token)

    async def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims if it is acceptable; else GRPCError(UNAUTHENTICATED)."""
        import jwt

        if not token:
            _refuse("missing bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            _refuse("malformed token (not a JWT)")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            _refuse(f"signing algorithm {alg!r} not accepted")
        key = await self._key(kid if isinstance(kid, str) else None)
        if key.alg is not None and key.alg != alg:
            _refuse(f"signing algorithm {alg!r} does not match the key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                # exp/nbf are checked below on our clock, which tests can drive.
                options={
                    "require": ["exp"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                },
            )
        except jwt.InvalidSignatureError:
            _refuse("bad signature")
        # PyJWT checks the signature before the claims: these tokens are
        # genuine (maybe good elsewhere), so they are redacted from logs too.
        # Tokens with a bad signature are not: junk must not churn the registry.
        except jwt.InvalidAudienceError:
            _remember(token)
            _refuse("wrong audience")
        except jwt.InvalidIssuerError:
            _remember(token)
            _refuse("wrong issuer")
        except jwt.MissingRequiredClaimError as exc:
            _remember(token)
            _refuse(f"missing claim {exc.claim!r}")
        except jwt.InvalidTokenError as exc:
            _refuse(f"invalid token ({type(exc).__name__})")
        _remember(token)
        now = self._clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float):
            _refuse("invalid claim 'exp'")
        if now > exp + self.leeway:
            _refuse("token expired")
        if nbf is not None:
            if not isinstance(nbf, int | float):
                _refuse("invalid claim 'nbf'")
            if now + self.leeway < nbf:
                _refuse("token not yet valid")
        return claims

    async def _key(self, kid: str | None) -> _Key:
        keys = await self._key_set(refetch=False)
        key = self._pick(keys, kid)
        if key is None and time.monotonic() - self._fetched_at >= self.min_refetch_interval:
            key = self._pick(await self._key_set(refetch=True), kid)
        if key is None:
            _refuse("unknown signing key" if kid else "token names no key id (kid)")
        return key

    @staticmethod
    def _pick(keys: dict[str, _Key], kid: str | None) -> _Key | None:
        if kid is not None:
            return keys.get(kid)
        # A kid-less token is acceptable only when there is no choice to make.
        return next(iter(keys.values())) if len(keys) == 1 else None

    async def _key_set(self, *, refetch: bool) -> dict[str, _Key]:
        now = time.monotonic()
        if not refetch and self._keys and now - self._fetched_at < self.cache_ttl:
            return self._keys
        if not self._keys and self._failure and now - self._failed_at < self.failure_backoff:
            raise GRPCError(Status.UNAVAILABLE, f"cannot verify tokens: {self._failure}")
        generation = self._generation
        async with self._lock:
            if self._generation == generation:  # nobody fetched while we waited: we do
                try:
                    self._keys = await self._fetch()
                    self._failure = None
                except _JWKSUnavailable as exc:
                    self._failure, self._failed_at = str(exc), time.monotonic()
                    if self._keys:
                        log.warning("JWKS refresh failed, keeping the cached keys: %s", exc)
                self._fetched_at = time.monotonic()
                self._generation += 1
            if not self._keys:
                raise GRPCError(Status.UNAVAILABLE, f"cannot verify tokens: {self._failure}")
            return self._keys

    async def _fetch(self) -> dict[str, _Key]:
        import httpx
        import jwt

        client = self._given_client
        if client is None:
            if self._own_client is None:
                self._own_client = httpx.AsyncClient(timeout=self._timeout)
            client = self._own_client
        self.fetches += 1
        try:
            resp = await client.get(self.jwks_url, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise _JWKSUnavailable(f"JWKS {self.jwks_url} unreachable: {exc}") from None
        if resp.status_code != 200:
            raise _JWKSUnavailable(f"JWKS {self.jwks_url} answered HTTP {resp.status_code}")
        try:
            data = json.loads(resp.content)
            entries = data["keys"]
            if not isinstance(entries, list):
                raise ValueError("'keys' is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise _JWKSUnavailable(f"JWKS {self.jwks_url} is not a key set: {exc}") from None
        keys: dict[str, _Key] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type we cannot use; others may still be fine
            alg = entry.get("alg")
            keys[entry.get("kid") or ""] = _Key(jwk, alg if isinstance(alg, str) else None)
        if not keys:
            raise _JWKSUnavailable(f"JWKS {self.jwks_url} has no usable signing keys")
        log.debug("JWKS %s: %d signing keys", self.jwks_url, len(keys))
        return keys


@dataclass(frozen=True, slots=True)
class _Key:
    jwk: jwt.PyJWK
    #: The JWK's own "alg", when it pins one; tokens must then use exactly it.
    alg: str | None


class _JWKSUnavailable(Exception):
    pass
