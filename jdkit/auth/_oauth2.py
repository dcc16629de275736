"""OAuth2 client credentials over httpx (the `oauth2` extra), imported only when used."""

from __future__ import annotations

import base64
import logging
import time
import urllib.parse
from typing import TYPE_CHECKING

from jdkit import _redact
from jdkit._channel import is_loopback
from jdkit._exceptions import AuthError, ConfigError
from jdkit.auth._tokens import Token, token_problem

if TYPE_CHECKING:
    import httpx

    from jdkit.auth._tokens import Clock

__all__ = ["OAuth2ClientCredentials"]

log = logging.getLogger("jdkit.auth")


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
        if parsed.scheme == "http" and not is_loopback(parsed.hostname) and not allow_insecure:
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
        # RFC 6749 section 2.3.1: form-urlencode each part before Basic.
        quote = urllib.parse.quote_plus
        self._basic = base64.b64encode(
            f"{quote(client_id)}:{quote(client_secret)}".encode()
        ).decode()
        self._secret_forms = _encoded_forms(client_id, client_secret, self._basic)
        _redact.register(*self._secret_forms)
        _redact.register(self._basic, header_prefix="Basic ")

    def __repr__(self) -> str:
        return (
            f"OAuth2ClientCredentials(token_url={self._where!r}, client_id={self.client_id!r}, "
            f"client_secret={_redact.REDACTED}, scope={self.scope!r}, audience={self.audience!r})"
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
            headers["Authorization"] = "Basic " + self._basic
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
        problem = token_problem(value)
        if problem:
            raise AuthError(f"OAuth2 token endpoint {self._where}: access_token {problem}")
        assert isinstance(value, str)
        _redact.register(value, header_prefix="Bearer ")
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
                # scrubbed before it is cut, so no part of a secret is left at the cut
                msg += f": {self._scrub(desc)[:300]}"
            return msg
        return f"{where} {resp.reason_phrase}".rstrip()

    def _scrub(self, text: str) -> str:
        return _redact.scrub(text, *self._secret_forms)


def _encoded_forms(client_id: str, secret: str, basic: str) -> tuple[str, ...]:
    """The secret in every form this module builds, for scrubbing and log redaction.

    A token endpoint that echoes the request in its error may quote the
    `Authorization: Basic ...` header (the base64 of the form-encoded
    `id:secret`), the form body (the URL-encoded secret) or the pair itself.
    `_redact.scrub` adds each one's URL-encoded, JSON and repr forms.
    """
    quote = urllib.parse.quote_plus
    pairs = {f"{quote(client_id)}:{quote(secret)}", f"{client_id}:{secret}"}
    b64 = {base64.b64encode(p.encode()).decode() for p in pairs}
    b64 |= {b.rstrip("=") for b in b64} | {basic}
    b64 |= {base64.urlsafe_b64encode(p.encode()).decode().rstrip("=") for p in pairs}
    return (secret, quote(secret), *pairs, *sorted(b64), *(f"Basic {b}" for b in sorted(b64)))


# -- Cognito
