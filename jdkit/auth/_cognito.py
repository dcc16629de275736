"""AWS Cognito user-pool login over aiobotocore (the `cognito` extra), imported only when used."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import Any

from jdkit import _redact
from jdkit._exceptions import AuthError, ChallengeRequiredError, ConfigError
from jdkit.auth._tokens import Clock, Token, token_problem

__all__ = ["CognitoTokenSource", "secret_hash"]

log = logging.getLogger("jdkit.auth")


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
        _redact.register(password, client_secret)
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
        secret = _redact.REDACTED if self._client_secret else "None"
        return (
            f"CognitoTokenSource(client_id={self.client_id!r}, username={self.username!r}, "
            f"password={_redact.REDACTED}, client_secret={secret}, region={self.region!r}, "
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
            _redact.register(params["SECRET_HASH"])
        return await self._initiate("USER_PASSWORD_AUTH", params)

    async def _refresh(self) -> Token:
        assert self._refresh_token is not None
        params = {"REFRESH_TOKEN": self._refresh_token}
        if self._client_secret:
            name = self._cognito_username or self.username
            params["SECRET_HASH"] = secret_hash(self._client_secret, name, self.client_id)
            _redact.register(params["SECRET_HASH"])
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
            raise AuthError(
                _redact.scrub(f"Cognito {flow} failed: {code}: {msg}", *scrub)
            ) from None
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise AuthError(
                _redact.scrub(f"Cognito {flow} request failed: {type(exc).__name__}: {exc}", *scrub)
            ) from None
        challenge = resp.get("ChallengeName")
        if challenge:
            raise ChallengeRequiredError(str(challenge))
        result = resp.get("AuthenticationResult") or {}
        access = result.get("AccessToken")
        if not isinstance(access, str) or token_problem(access):
            raise AuthError(f"Cognito {flow} answered without a usable AccessToken")
        _redact.register(access, header_prefix="Bearer ")
        if result.get("RefreshToken"):
            self._refresh_token = result["RefreshToken"]
            _redact.register(self._refresh_token)
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
        _redact.register(result.get("IdToken"), result.get("RefreshToken"))
        _redact.register(result.get("AccessToken"), header_prefix="Bearer ")


# -- caching
