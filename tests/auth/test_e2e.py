"""Auth end to end: JobDistributor (grpclib) -> EmbeddedJD with a real verifier.

Covers the whole path: token source -> TokenManager -> AuthInterceptor ->
`authorization` metadata on the wire -> the server's hook -> UNAUTHENTICATED
mapped back -> refresh and replay. Cognito tokens come from moto.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from jdkit import ConfigError, UnauthenticatedError
from jdkit._channel import TLSConfig
from jdkit._client import JobDistributor
from jdkit._server import EmbeddedJD
from jdkit._server._auth import JWKSVerifier, StaticTokens
from jdkit.auth import CognitoTokenSource, StaticToken, Token, TokenManager
from tests.helpers.auth_helpers import (
    FakeClock,
    JWKSEndpoint,
    cognito_admin,
    http_server,
    moto_cognito,
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Issuer:
    """Mints RS256 JWTs valid for `ttl` on the issuer's clock."""

    def __init__(self, clock: FakeClock, ttl: int = 300) -> None:
        self.clock = clock
        self.ttl = ttl
        self.fetches = 0

    async def fetch(self) -> Token:
        self.fetches += 1
        exp = int(self.clock()) + self.ttl
        value = jwt.encode(
            {"sub": "ops", "aud": "jd", "exp": exp, "n": self.fetches},
            KEY,
            algorithm="RS256",
            headers={"kid": "k1"},
        )
        return Token(value, float(exp))


@pytest.fixture
def jwks_url() -> Iterator[str]:
    pub = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    ep = JWKSEndpoint({"keys": [{**pub, "kid": "k1", "use": "sig", "alg": "RS256"}]})
    with http_server(ep.handle) as base:
        yield f"{base}/jwks.json"


@pytest.mark.asyncio
async def test_static_token_accepted_and_refused() -> None:
    async with EmbeddedJD.start(auth=StaticTokens(["good-token"])) as srv:
        async with JobDistributor.connect(
            srv.address, auth=StaticToken("good-token"), allow_insecure_auth=True
        ) as jd:
            await jd.list_nodes()
        async with JobDistributor.connect(
            srv.address, auth=StaticToken("bad-token"), allow_insecure_auth=True
        ) as jd:
            with pytest.raises(UnauthenticatedError) as info:
                await jd.list_nodes()
            assert "invalid bearer token" in str(info.value)
            assert "bad-token" not in str(info.value)
        async with JobDistributor.connect(srv.address) as jd:
            with pytest.raises(UnauthenticatedError, match="missing bearer token"):
                await jd.list_nodes()


@pytest.mark.asyncio
async def test_plaintext_refused_without_opt_in() -> None:
    async with EmbeddedJD.start() as srv:
        with pytest.raises(ConfigError) as info:
            JobDistributor.connect(srv.address, auth=StaticToken("t"))
        assert info.value.field == "allow_insecure_auth"


@pytest.mark.asyncio
async def test_server_side_expiry_triggers_one_refresh_and_replay(jwks_url: str) -> None:
    """Client and server clocks disagree: the server calls the token expired
    while the client still trusts it; the call succeeds after one refresh."""
    issuer_clock = FakeClock()
    client_clock = FakeClock()
    issuer = Issuer(issuer_clock)
    verifier = JWKSVerifier(jwks_url, audience="jd", clock=issuer_clock)
    manager = TokenManager(issuer, clock=client_clock)
    async with EmbeddedJD.start(auth=verifier) as srv:
        async with JobDistributor.connect(
            srv.address, auth=manager, allow_insecure_auth=True
        ) as jd:
            await jd.list_nodes()
            await jd.version()
            assert issuer.fetches == 1
            issuer_clock.advance(400)  # the server's (and issuer's) time moves on
            await jd.list_nodes()
            assert issuer.fetches == 2
    await verifier.aclose()


@pytest.mark.asyncio
async def test_over_tls(jwks_url: str, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    clock = FakeClock()
    verifier = JWKSVerifier(jwks_url, audience="jd", clock=clock)
    async with EmbeddedJD.start(auth=verifier, ssl=server_ctx) as srv:
        tls = TLSConfig(ca_file=str(ca_file))
        async with JobDistributor.connect(
            srv.address, tls=tls, auth=TokenManager(Issuer(clock), clock=clock)
        ) as jd:
            await jd.list_nodes()
    await verifier.aclose()


@pytest.mark.asyncio
async def test_cognito_token_against_jwks_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto issues the token, the embedded JD checks it against moto's JWKS."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    with moto_cognito() as url:
        admin = cognito_admin(url)
        pool = admin.create_user_pool(PoolName="e2e")["UserPool"]["Id"]
        client = admin.create_user_pool_client(
            UserPoolId=pool,
            ClientName="jd",
            GenerateSecret=True,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]
        admin.admin_create_user(UserPoolId=pool, Username="ops", TemporaryPassword="Tmp-1234!x")
        admin.admin_set_user_password(
            UserPoolId=pool, Username="ops", Password="Sup3r-Secret!", Permanent=True
        )
        source = CognitoTokenSource(
            client["ClientId"],
            "ops",
            "Sup3r-Secret!",
            client["ClientSecret"],
            region="us-east-1",
            endpoint_url=url,
        )
        verifier = JWKSVerifier(
            f"{url}/{pool}/.well-known/jwks.json",
            issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
        )
        async with EmbeddedJD.start(auth=verifier) as srv:
            async with JobDistributor.connect(
                srv.address, auth=source, allow_insecure_auth=True
            ) as jd:
                await jd.list_nodes()
                await jd.version()
        await verifier.aclose()
        await source.aclose()
