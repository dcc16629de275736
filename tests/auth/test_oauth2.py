"""OAuth2ClientCredentials against a real token endpoint on loopback (stdlib http.server)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import httpx
import pytest

from jdkit import AuthError, ConfigError
from jdkit.auth import OAuth2ClientCredentials, TokenManager
from tests.helpers.auth_helpers import FakeClock, OAuth2Endpoint, free_port, http_server

CLIENT_ID = "jd-client"
CLIENT_SECRET = "cl1ent-s3cret/with+odd=chars"


@pytest.fixture
def endpoint() -> Iterator[tuple[OAuth2Endpoint, str]]:
    ep = OAuth2Endpoint(CLIENT_ID, CLIENT_SECRET)
    with http_server(ep.handle) as base:
        yield ep, f"{base}/oauth2/token"


@pytest.mark.asyncio
async def test_basic_auth_success(endpoint: tuple[OAuth2Endpoint, str]) -> None:
    ep, url = endpoint
    clock = FakeClock()
    src = OAuth2ClientCredentials(
        url, CLIENT_ID, CLIENT_SECRET, scope="jd/read", audience="jd", clock=clock
    )
    try:
        tok = await src.fetch()
    finally:
        await src.aclose()
    assert tok.value == f"access-1-{CLIENT_ID}"
    assert tok.expires_at == clock.now + 3600
    req = ep.requests[0]
    assert req["method"] == "POST" and req["path"] == "/oauth2/token"
    assert req["form"] == {"grant_type": "client_credentials", "scope": "jd/read", "audience": "jd"}
    # RFC 6749 2.3.1: each part form-urlencoded, then Basic
    pair = base64.b64decode(req["auth"].removeprefix("Basic ")).decode()
    assert pair == "jd-client:cl1ent-s3cret%2Fwith%2Bodd%3Dchars"


@pytest.mark.asyncio
async def test_body_auth_success(endpoint: tuple[OAuth2Endpoint, str]) -> None:
    ep, url = endpoint
    src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET, client_auth="body")
    try:
        tok = await src.fetch()
    finally:
        await src.aclose()
    assert tok.value.startswith("access-1")
    req = ep.requests[0]
    assert req["auth"] == ""
    assert req["form"]["client_id"] == CLIENT_ID
    assert req["form"]["client_secret"] == CLIENT_SECRET


@pytest.mark.asyncio
async def test_bad_secret_is_auth_error_without_secret(
    endpoint: tuple[OAuth2Endpoint, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = endpoint
    wrong = "wr0ng-" + CLIENT_SECRET
    src = OAuth2ClientCredentials(url, CLIENT_ID, wrong)
    with caplog.at_level(logging.DEBUG, logger="jdkit"), pytest.raises(AuthError) as info:
        await src.fetch()
    await src.aclose()
    msg = str(info.value)
    assert "HTTP 401" in msg and "invalid_client" in msg
    assert "Client authentication failed" in msg
    for text in (msg, repr(info.value), repr(src), str(src), caplog.text):
        assert wrong not in text and CLIENT_SECRET not in text


@pytest.mark.asyncio
async def test_endpoint_echoing_the_secret_is_scrubbed(
    endpoint: tuple[OAuth2Endpoint, str],
) -> None:
    ep, url = endpoint
    ep.echo_secret = True
    wrong = "echoed-secret-value"
    src = OAuth2ClientCredentials(url, CLIENT_ID, wrong)
    with pytest.raises(AuthError) as info:
        await src.fetch()
    await src.aclose()
    assert "for secret [redacted]" in str(info.value)
    assert wrong not in str(info.value)


@pytest.mark.asyncio
async def test_expiry_and_refresh_with_injected_clock(
    endpoint: tuple[OAuth2Endpoint, str],
) -> None:
    ep, url = endpoint
    ep.expires_in = 300
    clock = FakeClock()
    mgr = TokenManager(
        OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET, clock=clock),
        margin=60,
        clock=clock,
    )
    try:
        t1 = await mgr.get()
        clock.advance(239)
        assert (await mgr.get()) is t1
        clock.advance(2)  # 59 s left: inside the margin
        t2 = await mgr.get()
        assert t2 != t1 and t2.value == f"access-2-{CLIENT_ID}"
        assert t2.expires_at == clock.now + 300
        assert len(ep.requests) == 2
    finally:
        await mgr.aclose()


@pytest.mark.asyncio
async def test_no_expires_in_means_unknown_expiry(endpoint: tuple[OAuth2Endpoint, str]) -> None:
    ep, url = endpoint
    ep.expires_in = None
    src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET)
    tok = await src.fetch()
    await src.aclose()
    assert tok.expires_at is None


@pytest.mark.asyncio
async def test_non_bearer_token_refused(endpoint: tuple[OAuth2Endpoint, str]) -> None:
    ep, url = endpoint
    ep.token_type = "DPoP"
    src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(AuthError, match="not a bearer token"):
        await src.fetch()
    await src.aclose()


@pytest.mark.asyncio
async def test_server_error_without_json(endpoint: tuple[OAuth2Endpoint, str]) -> None:
    ep, url = endpoint
    ep.override = (503, "text/html", b"<h1>down</h1>")
    src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(AuthError, match="HTTP 503"):
        await src.fetch()
    ep.override = (200, "application/json", b'{"token_type": "Bearer"}')
    with pytest.raises(AuthError, match="access_token"):
        await src.fetch()
    await src.aclose()


@pytest.mark.asyncio
async def test_unreachable_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}/token"  # nothing listens there
    src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(AuthError, match="unreachable") as info:
        await src.fetch()
    await src.aclose()
    assert CLIENT_SECRET not in str(info.value)


@pytest.mark.asyncio
async def test_given_http_client_is_used_and_left_open(
    endpoint: tuple[OAuth2Endpoint, str],
) -> None:
    ep, url = endpoint
    async with httpx.AsyncClient() as client:
        src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET, http_client=client)
        await src.fetch()
        await src.aclose()
        assert not client.is_closed
        await src.fetch()  # still usable
    assert len(ep.requests) == 2


@pytest.mark.asyncio
async def test_own_client_reopens_after_aclose(endpoint: tuple[OAuth2Endpoint, str]) -> None:
    ep, url = endpoint
    src = OAuth2ClientCredentials(url, CLIENT_ID, CLIENT_SECRET)
    await src.fetch()
    await src.aclose()
    await src.fetch()
    await src.aclose()
    assert len(ep.requests) == 2


def test_plain_http_refused_off_loopback() -> None:
    with pytest.raises(ConfigError) as info:
        OAuth2ClientCredentials("http://auth.example/token", CLIENT_ID, CLIENT_SECRET)
    assert info.value.field == "token_url"
    OAuth2ClientCredentials(
        "http://auth.example/token", CLIENT_ID, CLIENT_SECRET, allow_insecure=True
    )
    OAuth2ClientCredentials("https://auth.example/token", CLIENT_ID, CLIENT_SECRET)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"token_url": "ftp://x/token"}, "token_url"),
        ({"token_url": "https://u:p@x/token"}, "token_url"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"client_auth": "jwt"}, "client_auth"),
    ],
)
def test_config_errors(kwargs: dict[str, str], field: str) -> None:
    args = {"token_url": "https://x/token", "client_id": "c", "client_secret": "s", **kwargs}
    with pytest.raises(ConfigError) as info:
        OAuth2ClientCredentials(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_repr_hides_secret() -> None:
    src = OAuth2ClientCredentials("https://x/token?tenant=abc", CLIENT_ID, CLIENT_SECRET)
    assert CLIENT_SECRET not in repr(src) and "[redacted]" in repr(src)
    assert "tenant" not in repr(src)
