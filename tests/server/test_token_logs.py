"""A server at DEBUG never logs callers' bearer tokens (issue 10, D7).

The caller is grpcio, whose HTTP/2 stack is C: every record that could show
the token comes from the server side (hpack decoding the request headers),
and only the server's verifiers can have registered it for redaction.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc import aio

import jdkit._redact
import jdkit._server._auth as server_auth
from jdkit._server import EmbeddedJD
from jdkit.server import JWKSVerifier, StaticTokenVerifier
from tests.helpers.auth_helpers import JWKSEndpoint, http_server
from tests.helpers.grpcio import stubs

pytestmark = pytest.mark.asyncio

app_pb2 = stubs("v1.app.app_pb2")
app_grpc = stubs("v1.app.app_pb2_grpc")
THIRD_PARTY = ("hpack", "h2", "grpclib", "jdkit")


@pytest.fixture
def debug_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    monkeypatch.setattr(logging.root.manager, "disable", 0)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in THIRD_PARTY:
            monkeypatch.setattr(logger, "disabled", False)
    caplog.set_level(logging.DEBUG)
    for name in THIRD_PARTY:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def logged(records: list[logging.LogRecord], secret: str) -> list[str]:
    fmt = logging.Formatter()
    return [r.name for r in records if secret in fmt.format(r)]


async def version_calls(address: str, token: str, n: int = 2) -> None:
    async with aio.insecure_channel(address) as channel:
        stub = app_grpc.AppServiceStub(channel)
        for _ in range(n):
            await stub.Version(
                app_pb2.VersionRequest(), metadata=[("authorization", f"Bearer {token}")]
            )


async def test_control_without_registration_hpack_logs_the_token(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_auth, "_remember", lambda token: None)
    # and hpack's records not scrubbed by header name either
    monkeypatch.setattr(jdkit._redact, "scrub_hpack", lambda record: None)
    token = "srv-" + secrets.token_urlsafe(24)
    async with EmbeddedJD.start(auth=StaticTokenVerifier([token])) as srv:
        await version_calls(srv.address, token)
    assert "hpack.hpack" in logged(debug_logs.records, token)


async def test_static_tokens_never_reach_the_server_logs(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    token = "srv-" + secrets.token_urlsafe(24)
    async with EmbeddedJD.start(auth=StaticTokenVerifier([token])) as srv:
        await version_calls(srv.address, token)
    assert any(r.name == "hpack.hpack" for r in debug_logs.records)  # hpack did log
    assert logged(debug_logs.records, token) == []


async def test_a_verified_jwt_is_redacted_from_then_on(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="k1", use="sig", alg="RS256")
    endpoint = JWKSEndpoint({"keys": [jwk]})
    token = jwt.encode(
        {"sub": "svc", "exp": int(time.time()) + 600, "n": secrets.token_hex(8)},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    with http_server(endpoint.handle) as base:
        verifier = JWKSVerifier(f"{base}/jwks.json")
        try:
            async with EmbeddedJD.start(auth=verifier) as srv:
                await version_calls(srv.address, token, n=1)
                # hpack logged the first request before any verifier saw the token
                debug_logs.clear()
                await version_calls(srv.address, token, n=3)
                bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
                with pytest.raises(aio.AioRpcError) as info:
                    await version_calls(srv.address, bad, n=1)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await verifier.aclose()
    assert any(r.name == "hpack.hpack" for r in debug_logs.records)
    assert logged(debug_logs.records, token) == []
