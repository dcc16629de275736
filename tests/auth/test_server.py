"""Server-side verifiers: StaticTokens and JWKSVerifier (keys served from a loopback JWKS)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from jdkit import ConfigError
from jdkit._server._auth import JWKSVerifier, StaticTokens, bearer_token
from tests.helpers.auth_helpers import FakeClock, JWKSEndpoint, free_port, http_server

NOW = 1_800_000_000
ISS = "https://issuer.example"
AUD = "jd"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


RSA1, RSA2, RSA_OTHER = rsa_key(), rsa_key(), rsa_key()
EC1 = ec.generate_private_key(ec.SECP256R1())
ED1 = ed25519.Ed25519PrivateKey.generate()


def jwk(key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        d = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        d = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        d = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    assert isinstance(d, dict)
    d.update(kid=kid, use="sig")
    if alg:
        d["alg"] = alg
    return d


def mint(key: Any, kid: str | None = "k1", alg: str = "RS256", **claims: Any) -> str:
    body: dict[str, Any] = {"sub": "user-1", "iss": ISS, "aud": AUD, "exp": NOW + 3600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


class Refusal:
    def __init__(self, err: GRPCError) -> None:
        self.status = err.status
        self.message = str(err.message)


async def refused(verifier: Any, token: str | None) -> Refusal:
    with pytest.raises(GRPCError) as info:
        await verifier(token)
    err = info.value
    if token:
        assert token not in str(err.message) and token not in repr(err)
    return Refusal(err)


# -- bearer_token


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


# -- StaticTokens


@pytest.mark.asyncio
async def test_static_tokens() -> None:
    verify = StaticTokens(["alpha-token", "beta-token"])
    await verify("alpha-token")
    await verify("beta-token")
    err = await refused(verify, "gamma-token")
    assert err.status is Status.UNAUTHENTICATED and err.message == "invalid bearer token"
    err = await refused(verify, None)
    assert err.status is Status.UNAUTHENTICATED and err.message == "missing bearer token"
    await refused(verify, "")
    assert "alpha-token" not in repr(verify)


def test_static_tokens_needs_one() -> None:
    with pytest.raises(ConfigError):
        StaticTokens([])
    with pytest.raises(ConfigError):
        StaticTokens([""])


# -- JWKSVerifier


@pytest.fixture
def jwks() -> Iterator[tuple[JWKSEndpoint, str]]:
    ep = JWKSEndpoint({"keys": [jwk(RSA1, "k1", "RS256"), jwk(EC1, "e1"), jwk(ED1, "o1")]})
    with http_server(ep.handle) as base:
        yield ep, f"{base}/.well-known/jwks.json"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.mark.asyncio
async def test_valid_tokens_each_key_type(jwks: tuple[JWKSEndpoint, str], clock: FakeClock) -> None:
    ep, url = jwks
    v = JWKSVerifier(url, audience=AUD, issuer=ISS, clock=clock)
    try:
        claims = await v.verify(mint(RSA1))
        assert claims["sub"] == "user-1"
        await v(mint(EC1, kid="e1", alg="ES256"))
        await v(mint(ED1, kid="o1", alg="EdDSA"))
        for _ in range(20):
            await v(mint(RSA1))
    finally:
        await v.aclose()
    assert ep.fetches == 1 and v.fetches == 1  # cached


@pytest.mark.asyncio
async def test_expired_and_leeway(jwks: tuple[JWKSEndpoint, str], clock: FakeClock) -> None:
    _, url = jwks
    token = mint(RSA1, exp=NOW + 100)
    strict = JWKSVerifier(url, audience=AUD, clock=clock)
    lenient = JWKSVerifier(url, audience=AUD, clock=clock, leeway=30)
    try:
        await strict(token)
        clock.advance(101)
        err = await refused(strict, token)
        assert err.status is Status.UNAUTHENTICATED and err.message == "token expired"
        await lenient(token)  # within 30 s of leeway
        clock.advance(30)
        assert (await refused(lenient, token)).message == "token expired"
    finally:
        await strict.aclose()
        await lenient.aclose()


@pytest.mark.asyncio
async def test_not_yet_valid(jwks: tuple[JWKSEndpoint, str], clock: FakeClock) -> None:
    _, url = jwks
    v = JWKSVerifier(url, clock=clock)
    try:
        token = mint(RSA1, nbf=NOW + 60)
        assert (await refused(v, token)).message == "token not yet valid"
        clock.advance(60)
        await v(token)
    finally:
        await v.aclose()


@pytest.mark.asyncio
async def test_wrong_key_is_bad_signature(jwks: tuple[JWKSEndpoint, str], clock: FakeClock) -> None:
    _, url = jwks
    v = JWKSVerifier(url, clock=clock)
    try:
        err = await refused(v, mint(RSA_OTHER, kid="k1"))  # claims k1, signed by another key
        assert err.message == "bad signature"
        good = mint(RSA1)
        head, _, sig = good.split(".")
        tampered = ".".join([head, mint(RSA1, sub="admin").split(".")[1], sig])
        assert (await refused(v, tampered)).message == "bad signature"
    finally:
        await v.aclose()


@pytest.mark.asyncio
async def test_claim_checks(jwks: tuple[JWKSEndpoint, str], clock: FakeClock) -> None:
    _, url = jwks
    v = JWKSVerifier(url, audience=AUD, issuer=ISS, clock=clock)
    try:
        assert (await refused(v, mint(RSA1, aud="other"))).message == "wrong audience"
        assert (await refused(v, mint(RSA1, iss="https://evil"))).message == "wrong issuer"
        assert (await refused(v, mint(RSA1, exp=None))).message == "missing claim 'exp'"
        assert (await refused(v, None)).message == "missing bearer token"
        assert (await refused(v, "not-a-jwt")).message.startswith("malformed token")
    finally:
        await v.aclose()


@pytest.mark.asyncio
async def test_algorithm_attacks_refused(jwks: tuple[JWKSEndpoint, str], clock: FakeClock) -> None:
    _, url = jwks
    v = JWKSVerifier(url, clock=clock)
    try:
        # HS256 keyed with the published public key (algorithm confusion)
        # (forged by hand: PyJWT itself refuses to HMAC with a public key)
        pem = RSA1.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        body = {"sub": "x", "exp": NOW + 60}
        signing_input = f"{b64(dict(alg='HS256', typ='JWT', kid='k1'))}.{b64(body)}"
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        hs = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
        assert "HS256" in (await refused(v, hs)).message
        none = jwt.encode(body, "", algorithm="none", headers={"kid": "k1"})
        assert "not accepted" in (await refused(v, none)).message
        # RS512 with a key whose JWK pins RS256
        pinned = mint(RSA1, alg="RS512")
        assert "does not match" in (await refused(v, pinned)).message
    finally:
        await v.aclose()


@pytest.mark.asyncio
async def test_unknown_kid_refetches_once_then_rotation_works(
    jwks: tuple[JWKSEndpoint, str], clock: FakeClock
) -> None:
    ep, url = jwks
    v = JWKSVerifier(url, clock=clock, min_refetch_interval=0)
    try:
        await v(mint(RSA1))
        assert ep.fetches == 1
        rotated = mint(RSA2, kid="k2")
        assert (await refused(v, rotated)).message == "unknown signing key"
        assert ep.fetches == 2  # looked once more
        ep.jwks = {"keys": [*ep.jwks["keys"], jwk(RSA2, "k2")]}  # the issuer rotates
        await v(rotated)
        assert ep.fetches == 3
    finally:
        await v.aclose()


@pytest.mark.asyncio
async def test_unknown_kids_do_not_hammer_the_jwks(
    jwks: tuple[JWKSEndpoint, str], clock: FakeClock
) -> None:
    ep, url = jwks
    v = JWKSVerifier(url, clock=clock)  # default: at most one early refetch per 30 s
    try:
        await v(mint(RSA1))
        for i in range(10):
            await refused(v, mint(RSA2, kid=f"junk{i}"))
    finally:
        await v.aclose()
    assert ep.fetches == 1


@pytest.mark.asyncio
async def test_concurrent_first_use_fetches_once(
    jwks: tuple[JWKSEndpoint, str], clock: FakeClock
) -> None:
    ep, url = jwks
    v = JWKSVerifier(url, clock=clock)
    try:
        await asyncio.gather(*(v(mint(RSA1)) for _ in range(30)))
    finally:
        await v.aclose()
    assert ep.fetches == 1


@pytest.mark.asyncio
async def test_jwks_unavailable(clock: FakeClock) -> None:
    v = JWKSVerifier(f"http://127.0.0.1:{free_port()}/jwks.json", clock=clock)
    try:
        with pytest.raises(GRPCError) as info:
            await v(mint(RSA1))
    finally:
        await v.aclose()
    assert info.value.status is Status.UNAVAILABLE


@pytest.mark.asyncio
async def test_jwks_failure_keeps_cached_keys(
    jwks: tuple[JWKSEndpoint, str], clock: FakeClock
) -> None:
    ep, url = jwks
    v = JWKSVerifier(url, clock=clock, cache_ttl=0)
    try:
        await v(mint(RSA1))
        ep.status = 500
        await v(mint(RSA1))  # refetch fails; the cached key still verifies
        assert ep.fetches == 2
    finally:
        await v.aclose()


@pytest.mark.asyncio
async def test_kidless_token_with_single_key(clock: FakeClock) -> None:
    ep = JWKSEndpoint({"keys": [jwk(RSA1, "only")]})
    with http_server(ep.handle) as base:
        v = JWKSVerifier(base, clock=clock)
        try:
            await v(mint(RSA1, kid=None))
        finally:
            await v.aclose()


def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        JWKSVerifier("file:///etc/jwks.json")
    with pytest.raises(ConfigError):
        JWKSVerifier("https://x/jwks", algorithms=["HS256"])
    with pytest.raises(ConfigError):
        JWKSVerifier("https://x/jwks", leeway=-1)


@pytest.mark.asyncio
async def test_dead_jwks_costs_one_fetch_for_concurrent_calls(clock: FakeClock) -> None:
    ep = JWKSEndpoint({"keys": []}, status=503)
    with http_server(ep.handle) as base:
        v = JWKSVerifier(base, clock=clock, failure_backoff=60)
        try:
            results = await asyncio.gather(
                *(v(mint(RSA1)) for _ in range(25)), return_exceptions=True
            )
            assert all(isinstance(r, GRPCError) and r.status is Status.UNAVAILABLE for r in results)
            assert ep.fetches == 1
            await refused(v, mint(RSA1))  # within the backoff: no new fetch
            assert ep.fetches == 1
            ep.status = 200
            ep.jwks = {"keys": [jwk(RSA1, "k1")]}
            v.failure_backoff = 0
            await v(mint(RSA1))  # recovers once the endpoint does
            assert ep.fetches == 2
        finally:
            await v.aclose()
