"""Client-side authentication: token sources, a caching manager, the interceptor.

A JD wants `authorization: Bearer <access token>` on every call. A
`TokenSource` produces tokens (`StaticToken`, `OAuth2ClientCredentials`,
`CognitoTokenSource`, or your own); a `TokenManager` caches one and refreshes it
*before* it expires, with one fetch however many calls find it stale; the
`AuthInterceptor` puts it on each attempt and, when the server still answers
UNAUTHENTICATED, refreshes and replays the call once.

Secrets (tokens, passwords, client secrets, refresh tokens) never appear in a
repr, a log line or an exception message: every class here has a redacting
`__repr__`, and messages from token endpoints are scrubbed of them because
some endpoints echo what they were sent. Other libraries' DEBUG logs (hpack's
header dumps, botocore's request and response bodies) would show them, so
every secret is also registered with `jdkit._redact`, whose log-record factory
redacts them from all records: sources register what they are given and what
they receive (before botocore logs it), the manager and the interceptor every
token they hand out or send.

`from_env()` builds a source from these variables (first family set wins;
setting two is an error):

    JD_TOKEN                                   StaticToken
    JD_OAUTH2_TOKEN_URL, JD_OAUTH2_CLIENT_ID,  OAuth2ClientCredentials
      JD_OAUTH2_CLIENT_SECRET,
      [JD_OAUTH2_SCOPE], [JD_OAUTH2_AUDIENCE]
    JD_COGNITO_CLIENT_ID, JD_COGNITO_USERNAME, CognitoTokenSource
      JD_COGNITO_PASSWORD, JD_COGNITO_REGION
      (else AWS_REGION / AWS_DEFAULT_REGION),
      [JD_COGNITO_CLIENT_SECRET], [JD_COGNITO_ENDPOINT_URL]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jdkit._exceptions import AuthError, ChallengeRequiredError, ConfigError, UnauthenticatedError
from jdkit._interceptors import Call, Interceptor, Message, StreamNext, UnaryNext
from jdkit._redact import register as _register_secrets

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AuthInterceptor",
    "CognitoTokenSource",
    "OAuth2ClientCredentials",
    "StaticToken",
    "Token",
    "TokenManager",
    "TokenSource",
    "build_auth_interceptor",
    "from_env",
    "secret_hash",
]

log = logging.getLogger("jdkit.auth")

Clock = Callable[[], float]

#: How long before expiry a cached token is replaced (seconds).
DEFAULT_MARGIN = 60.0
#: After a proactive refresh fails, how long the still-valid token is used
#: before the next attempt, so a dead endpoint is not hit on every call.
REFRESH_RETRY_INTERVAL = 5.0

_REDACTED = "[redacted]"


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
        return f"Token(value=<redacted {len(self.value)} chars>, expires_at={exp})"

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


def _token_problem(value: object) -> str | None:
    """Why `value` cannot go into an `authorization` header, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if any(c.isspace() or not c.isprintable() or ord(c) > 126 for c in value):
        return "must be printable ASCII without whitespace"
    return None


def _redact(text: str, *secrets: str | None) -> str:
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, _REDACTED)
    return text


# -- static


class StaticToken:
    """A fixed token, e.g. from a secret store. It never expires by itself."""

    def __init__(self, token: str) -> None:
        problem = _token_problem(token)
        if problem:
            raise ConfigError("token", problem)
        _register_secrets(token, header_prefix="Bearer ")
        self._token = Token(token, None)

    async def fetch(self) -> Token:
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


# -- OAuth2 client credentials


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


class OAuth2ClientCredentials:
    """OAuth2 client-credentials grant (RFC 6749 section 4.4) over httpx.

    `client_auth="basic"` sends the credentials in an HTTP Basic header (the
    RFC's default), `"body"` as form fields for endpoints that want that.
    Plain-http token URLs are refused except on loopback (or with
    `allow_insecure=True`), since the client secret would travel in clear.
    A given `http_client` is used and left open; otherwise one is created
    lazily and closed by `aclose()`.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        audience: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        *,
        client_auth: str = "basic",
        timeout: float = 10.0,
        clock: Clock = time.time,
        allow_insecure: bool = False,
    ) -> None:
        try:
            import httpx  # noqa: F401  (fail at construction, not first call)
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "OAuth2ClientCredentials needs httpx: pip install 'jdkit[oauth2]'"
            ) from exc
        parsed = urllib.parse.urlsplit(token_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError("token_url", "must be an http(s) URL with a host")
        if parsed.username or parsed.password:
            raise ConfigError("token_url", "must not carry credentials; use client_id/secret")
        if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK and not allow_insecure:
            raise ConfigError(
                "token_url",
                "must be https (the client secret would be sent in clear); "
                "pass allow_insecure=True to override",
            )
        if not client_id:
            raise ConfigError("client_id", "must not be empty")
        if not client_secret:
            raise ConfigError("client_secret", "must not be empty")
        if client_auth not in ("basic", "body"):
            raise ConfigError("client_auth", f"must be 'basic' or 'body', got {client_auth!r}")
        _register_secrets(client_secret)
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.audience = audience
        self.client_auth = client_auth
        self._timeout = timeout
        self._clock = clock
        self._given_client = http_client
        self._own_client: httpx.AsyncClient | None = None
        # scheme://host/path only: the query may carry things we should not print
        self._where = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))

    def __repr__(self) -> str:
        return (
            f"OAuth2ClientCredentials(token_url={self._where!r}, client_id={self.client_id!r}, "
            f"client_secret=<redacted>, scope={self.scope!r}, audience={self.audience!r})"
        )

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            self._own_client = httpx.AsyncClient(timeout=self._timeout)
        return self._own_client

    async def aclose(self) -> None:
        client, self._own_client = self._own_client, None
        if client is not None:
            await client.aclose()

    async def fetch(self) -> Token:
        import httpx

        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        if self.audience:
            data["audience"] = self.audience
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            # RFC 6749 section 2.3.1: form-urlencode each part before Basic.
            quote = urllib.parse.quote_plus
            pair = f"{quote(self.client_id)}:{quote(self._secret)}"
            basic = base64.b64encode(pair.encode()).decode("ascii")
            _register_secrets(basic, header_prefix="Basic ")
            headers["Authorization"] = "Basic " + basic
        else:
            data["client_id"] = self.client_id
            data["client_secret"] = self._secret
        started = self._clock()
        try:
            resp = await self._client().post(
                self.token_url, data=data, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise AuthError(
                self._scrub(
                    f"OAuth2 token endpoint {self._where} unreachable: {type(exc).__name__}: {exc}"
                )
            ) from None
        if resp.status_code != 200:
            raise AuthError(self._scrub(self._describe_failure(resp)))
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AuthError(f"OAuth2 token endpoint {self._where}: 200 without a JSON object")
        value = body.get("access_token")
        problem = _token_problem(value)
        if problem:
            raise AuthError(f"OAuth2 token endpoint {self._where}: access_token {problem}")
        assert isinstance(value, str)
        _register_secrets(value, header_prefix="Bearer ")
        token_type = body.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise AuthError(
                f"OAuth2 token endpoint {self._where} issued a {token_type!r} token, "
                "not a bearer token"
            )
        expires_in = body.get("expires_in")
        expires_at: float | None = None
        if expires_in is not None:
            try:
                expires_at = started + float(expires_in)
            except (TypeError, ValueError):
                raise AuthError(
                    f"OAuth2 token endpoint {self._where}: expires_in is not a number"
                ) from None
        log.debug("OAuth2 token from %s (expires_in=%s)", self._where, expires_in)
        return Token(value, expires_at)

    def _describe_failure(self, resp: httpx.Response) -> str:
        where = f"OAuth2 token request to {self._where} failed: HTTP {resp.status_code}"
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            msg = f"{where}: {body['error']}"
            desc = body.get("error_description")
            if isinstance(desc, str) and desc:
                msg += f": {desc[:300]}"
            return msg
        return f"{where} {resp.reason_phrase}".rstrip()

    def _scrub(self, text: str) -> str:
        return _redact(text, self._secret, urllib.parse.quote_plus(self._secret))


# -- Cognito


def secret_hash(client_secret: str, username: str, client_id: str) -> str:
    """Cognito's SECRET_HASH: base64(HMAC-SHA256(client secret, username + client id))."""
    digest = hmac.new(
        client_secret.encode(), (username + client_id).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def _unverified_claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWT without checking its signature.

    Only for reading our own access token (its `username` claim); never use it
    to decide whether to trust a token.
    """
    try:
        payload = jwt.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


class CognitoTokenSource:
    """AWS Cognito user-pool login (`USER_PASSWORD_AUTH`) through aiobotocore.

    The first fetch logs in; later ones use the refresh token and fall back to
    a full login when Cognito refuses it (as the upstream Go source does).
    InitiateAuth is unsigned, so no AWS credentials are needed or looked up.
    One aiobotocore client is created lazily and reused; `aclose()` closes it
    (a later fetch opens a new one).
    """

    def __init__(
        self,
        client_id: str,
        username: str,
        password: str,
        client_secret: str | None = None,
        *,
        region: str,
        endpoint_url: str | None = None,
        session: Any = None,
        clock: Clock = time.time,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        try:
            import aiobotocore.session  # noqa: F401  (fail at construction)
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "CognitoTokenSource needs aiobotocore: pip install 'jdkit[cognito]'"
            ) from exc
        for name, val in (
            ("client_id", client_id),
            ("username", username),
            ("password", password),
            ("region", region),
        ):
            if not val:
                raise ConfigError(name, "must not be empty")
        if client_secret == "":
            raise ConfigError("client_secret", "must be None or non-empty")
        _register_secrets(password, client_secret)
        self.client_id = client_id
        self.username = username
        self._password = password
        self._client_secret = client_secret
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session
        self._clock = clock
        self._timeouts = (connect_timeout, read_timeout)
        self._refresh_token: str | None = None
        #: Cognito's own name for the user (access token `username` claim);
        #: differs from `username` when users sign in with an alias.
        self._cognito_username: str | None = None
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        secret = "<redacted>" if self._client_secret else "None"
        return (
            f"CognitoTokenSource(client_id={self.client_id!r}, username={self.username!r}, "
            f"password=<redacted>, client_secret={secret}, region={self.region!r}, "
            f"endpoint_url={self.endpoint_url!r})"
        )

    async def fetch(self) -> Token:
        async with self._lock:
            if self._refresh_token is not None:
                try:
                    return await self._refresh()
                except ChallengeRequiredError:
                    raise
                except AuthError as exc:
                    log.warning("Cognito token refresh failed (%s); logging in again", exc)
            return await self._login()

    def invalidate(self) -> None:
        """The server refused our token; the refresh token still gets a new one."""

    async def aclose(self) -> None:
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        self._client = None
        await stack.aclose()

    async def _login(self) -> Token:
        params = {"USERNAME": self.username, "PASSWORD": self._password}
        if self._client_secret:
            params["SECRET_HASH"] = secret_hash(self._client_secret, self.username, self.client_id)
            _register_secrets(params["SECRET_HASH"])
        return await self._initiate("USER_PASSWORD_AUTH", params)

    async def _refresh(self) -> Token:
        assert self._refresh_token is not None
        params = {"REFRESH_TOKEN": self._refresh_token}
        if self._client_secret:
            name = self._cognito_username or self.username
            params["SECRET_HASH"] = secret_hash(self._client_secret, name, self.client_id)
            _register_secrets(params["SECRET_HASH"])
        return await self._initiate("REFRESH_TOKEN_AUTH", params)

    async def _cognito(self) -> Any:
        if self._client is None:
            import aiobotocore.session
            from botocore import UNSIGNED
            from botocore.config import Config

            session = self._session or aiobotocore.session.get_session()
            config = Config(
                signature_version=UNSIGNED,
                connect_timeout=self._timeouts[0],
                read_timeout=self._timeouts[1],
                retries={"mode": "standard", "max_attempts": 3},
            )
            client = await self._stack.enter_async_context(
                session.create_client(
                    "cognito-idp",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=config,
                )
            )
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(
                f"before-parse.{service}.InitiateAuth", _register_cognito_tokens
            )
            self._client = client
        return self._client

    async def _initiate(self, flow: str, params: dict[str, str]) -> Token:
        from botocore.exceptions import BotoCoreError, ClientError

        scrub = (
            self._password,
            self._client_secret,
            self._refresh_token,
            params.get("SECRET_HASH"),
        )
        client = await self._cognito()
        started = self._clock()
        try:
            resp = await client.initiate_auth(
                ClientId=self.client_id, AuthFlow=flow, AuthParameters=params
            )
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if flow == "REFRESH_TOKEN_AUTH":
                self._refresh_token = None  # refused: only a login helps now
            # `from None`: botocore's own message would repeat Cognito's unscrubbed.
            code, msg = err.get("Code", "Unknown"), err.get("Message", "")
            raise AuthError(_redact(f"Cognito {flow} failed: {code}: {msg}", *scrub)) from None
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise AuthError(
                _redact(f"Cognito {flow} request failed: {type(exc).__name__}: {exc}", *scrub)
            ) from None
        challenge = resp.get("ChallengeName")
        if challenge:
            raise ChallengeRequiredError(str(challenge))
        result = resp.get("AuthenticationResult") or {}
        access = result.get("AccessToken")
        if not isinstance(access, str) or _token_problem(access):
            raise AuthError(f"Cognito {flow} answered without a usable AccessToken")
        _register_secrets(access, header_prefix="Bearer ")
        if result.get("RefreshToken"):
            self._refresh_token = result["RefreshToken"]
            _register_secrets(self._refresh_token)
        name = _unverified_claims(access).get("username")
        self._cognito_username = name if isinstance(name, str) and name else None
        expires_in = result.get("ExpiresIn")
        expires_at = started + float(expires_in) if isinstance(expires_in, int | float) else None
        log.debug("Cognito %s succeeded for %s (expires_in=%s)", flow, self.username, expires_in)
        return Token(access, expires_at)


def _register_cognito_tokens(response_dict: Any = None, **_: Any) -> None:
    """botocore hook: register the tokens in an InitiateAuth answer before botocore logs it.

    botocore logs the raw response body (at DEBUG) while parsing it, i.e.
    before `initiate_auth()` returns them to us.
    """
    body = response_dict.get("body") if isinstance(response_dict, dict) else None
    try:
        result = json.loads(body)["AuthenticationResult"] if body else None
    except (ValueError, TypeError, KeyError):
        return
    if isinstance(result, dict):
        _register_secrets(result.get("IdToken"), result.get("RefreshToken"))
        _register_secrets(result.get("AccessToken"), header_prefix="Bearer ")


# -- caching


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
        if not isinstance(token, Token) or _token_problem(token.value):
            raise AuthError(f"{type(self.source).__name__}.fetch() returned no usable Token")
        _register_secrets(token.value, header_prefix="Bearer ")
        now = self._clock()
        if token.expires_at is None:
            self._refresh_at = math.inf
        else:
            lifetime = max(token.expires_at - now, 0.0)
            self._refresh_at = token.expires_at - min(self.margin, lifetime / 2)
        self._token = token
        return token


# -- the interceptor


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

    def __repr__(self) -> str:
        return f"AuthInterceptor({self.manager!r})"

    async def aclose(self) -> None:
        await self.manager.aclose()

    async def _stamp(self, call: Call, token: Token | None = None) -> Token:
        token = token or await self.manager.get()
        # Registered (again) on every use, so the bounded registry keeps tokens in use.
        _register_secrets(token.value, header_prefix="Bearer ")
        call.metadata["authorization"] = f"Bearer {token.value}"
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


# -- environment


_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # family: (required, optional)
    "JD_TOKEN": (("JD_TOKEN",), ()),
    "JD_OAUTH2_*": (
        ("JD_OAUTH2_TOKEN_URL", "JD_OAUTH2_CLIENT_ID", "JD_OAUTH2_CLIENT_SECRET"),
        ("JD_OAUTH2_SCOPE", "JD_OAUTH2_AUDIENCE"),
    ),
    "JD_COGNITO_*": (
        ("JD_COGNITO_CLIENT_ID", "JD_COGNITO_USERNAME", "JD_COGNITO_PASSWORD", "JD_COGNITO_REGION"),
        ("JD_COGNITO_CLIENT_SECRET", "JD_COGNITO_ENDPOINT_URL"),
    ),
}


def from_env(env: Mapping[str, str] | None = None) -> TokenSource | None:
    """A token source from the `JD_*` variables in the module docstring, or None.

    Raises ConfigError naming the first missing variable of a partly set
    family, or when more than one family is set (which one wins would be a
    guess).
    """
    env = os.environ if env is None else env
    vals = {k: v for k, v in env.items() if k.startswith("JD_") and v}
    if vals.get("JD_COGNITO_CLIENT_ID") and not vals.get("JD_COGNITO_REGION"):
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            vals["JD_COGNITO_REGION"] = region
    present = [fam for fam, (req, opt) in _FAMILIES.items() if any(vals.get(v) for v in req + opt)]
    if not present:
        return None
    if len(present) > 1:
        raise ConfigError(present[1], f"conflicts with {present[0]}: set only one way to auth")
    family = present[0]
    for var in _FAMILIES[family][0]:
        if not vals.get(var):
            raise ConfigError(var, f"must be set when other {family} variables are")
    prefix = family.rstrip("*")
    try:
        return _build_from(family, vals)
    except ConfigError as exc:  # name the variable, not the parameter
        var = "JD_TOKEN" if exc.field == "token" else prefix + exc.field.upper()
        raise ConfigError(var, exc.problem) from None


def _build_from(family: str, vals: Mapping[str, str]) -> TokenSource:
    if family == "JD_TOKEN":
        return StaticToken(vals["JD_TOKEN"])
    if family == "JD_OAUTH2_*":
        return OAuth2ClientCredentials(
            vals["JD_OAUTH2_TOKEN_URL"],
            vals["JD_OAUTH2_CLIENT_ID"],
            vals["JD_OAUTH2_CLIENT_SECRET"],
            scope=vals.get("JD_OAUTH2_SCOPE"),
            audience=vals.get("JD_OAUTH2_AUDIENCE"),
        )
    return CognitoTokenSource(
        vals["JD_COGNITO_CLIENT_ID"],
        vals["JD_COGNITO_USERNAME"],
        vals["JD_COGNITO_PASSWORD"],
        vals.get("JD_COGNITO_CLIENT_SECRET"),
        region=vals["JD_COGNITO_REGION"],
        endpoint_url=vals.get("JD_COGNITO_ENDPOINT_URL"),
    )
