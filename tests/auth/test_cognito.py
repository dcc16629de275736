"""CognitoTokenSource against moto's Cognito server on loopback, through aiobotocore.

What moto does differently from AWS, checked by running it (moto 5.x):
- it does not verify SECRET_HASH on USER_PASSWORD_AUTH (AWS does), only on
  REFRESH_TOKEN_AUTH, and its refusal message *is* the presented hash;
- for pools whose users sign in by e-mail it checks the refresh SECRET_HASH
  against the login name, while AWS (and the access token's `username`
  claim, which we use) name the user by its sub.
The tests below assert what moto really does and say where AWS differs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import aiobotocore.session
import pytest

from jdkit import AuthError, ChallengeRequiredError
from jdkit._server._auth import JWKSVerifier
from jdkit.auth import CognitoTokenSource, TokenManager
from jdkit.auth._cognito import _unverified_claims, secret_hash
from tests.helpers.auth_helpers import FakeClock, cognito_admin, free_port, moto_cognito

REGION = "us-east-1"
PASSWORD = "Corr3ct-Horse!battery"
_names = itertools.count()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_cognito() as url:
        yield url


@pytest.fixture(autouse=True)
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The token source must work with no AWS credentials anywhere."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class Pool:
    """A fresh user pool with one confirmed user and two app clients."""

    def __init__(self, url: str, **pool_args: Any) -> None:
        self.admin = cognito_admin(url, REGION)
        n = next(_names)
        self.id = self.admin.create_user_pool(PoolName=f"pool{n}", **pool_args)["UserPool"]["Id"]
        flows = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
        plain = self.admin.create_user_pool_client(
            UserPoolId=self.id, ClientName="plain", ExplicitAuthFlows=flows
        )["UserPoolClient"]
        secret = self.admin.create_user_pool_client(
            UserPoolId=self.id, ClientName="secret", GenerateSecret=True, ExplicitAuthFlows=flows
        )["UserPoolClient"]
        self.plain_client = plain["ClientId"]
        self.secret_client, self.client_secret = secret["ClientId"], secret["ClientSecret"]

    def add_user(self, name: str, *, permanent: bool = True) -> None:
        self.admin.admin_create_user(
            UserPoolId=self.id, Username=name, TemporaryPassword="Temp-Passw0rd!"
        )
        if permanent:
            self.admin.admin_set_user_password(
                UserPoolId=self.id, Username=name, Password=PASSWORD, Permanent=True
            )


@pytest.fixture
def pool(moto_url: str) -> Pool:
    p = Pool(moto_url)
    p.add_user("alice")
    return p


def flows_recorder() -> tuple[Any, list[dict[str, Any]]]:
    """A real aiobotocore session whose InitiateAuth parameters we can see."""
    session = aiobotocore.session.get_session()
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append({"flow": params["AuthFlow"], **params["AuthParameters"]})

    session.register("provide-client-params.cognito-idp.InitiateAuth", record)
    return session, seen


def source(moto_url: str, client_id: str, **kw: Any) -> CognitoTokenSource:
    kw.setdefault("username", "alice")
    kw.setdefault("password", PASSWORD)
    return CognitoTokenSource(client_id, region=REGION, endpoint_url=moto_url, **kw)


@pytest.mark.asyncio
async def test_login_without_client_secret(moto_url: str, pool: Pool) -> None:
    clock = FakeClock()
    session, seen = flows_recorder()
    src = source(moto_url, pool.plain_client, clock=clock, session=session)
    try:
        tok = await src.fetch()
    finally:
        await src.aclose()
    assert tok.expires_at == clock.now + 3600  # moto issues 1-hour tokens
    claims = _unverified_claims(tok.value)
    assert claims["token_use"] == "access" and claims["username"] == "alice"
    assert claims["client_id"] == pool.plain_client
    assert seen == [{"flow": "USER_PASSWORD_AUTH", "USERNAME": "alice", "PASSWORD": PASSWORD}]


@pytest.mark.asyncio
async def test_login_and_refresh_with_secret_driven_by_clock(moto_url: str, pool: Pool) -> None:
    clock = FakeClock()
    session, seen = flows_recorder()
    src = source(
        moto_url,
        pool.secret_client,
        client_secret=pool.client_secret,
        clock=clock,
        session=session,
    )
    mgr = TokenManager(src, margin=60, clock=clock)
    try:
        t1 = await mgr.get()
        client = src._client
        clock.advance(3600 - 61)
        assert (await mgr.get()) is t1
        clock.advance(2)
        t2 = await mgr.get()
        assert src._client is client  # one aiobotocore client, reused
    finally:
        await mgr.aclose()
    assert src._client is None
    assert t2 != t1 and t2.expires_at == clock.now + 3600
    # the refresh kept the login's session (same origin_jti): it was a refresh
    assert _unverified_claims(t2.value)["origin_jti"] == _unverified_claims(t1.value)["origin_jti"]
    login_hash = secret_hash(pool.client_secret, "alice", pool.secret_client)
    assert [s["flow"] for s in seen] == ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH"]
    assert seen[0]["SECRET_HASH"] == login_hash
    assert seen[1]["SECRET_HASH"] == login_hash  # username claim == login name here
    assert "REFRESH_TOKEN" in seen[1] and "PASSWORD" not in seen[1]


@pytest.mark.asyncio
async def test_refresh_failure_falls_back_to_login(
    moto_url: str, pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    session, seen = flows_recorder()
    src = source(moto_url, pool.secret_client, client_secret=pool.client_secret, session=session)
    try:
        first = await src.fetch()
        refresh_token = src._refresh_token
        assert refresh_token
        pool.admin.admin_user_global_sign_out(UserPoolId=pool.id, Username="alice")
        with caplog.at_level(logging.DEBUG, logger="jdkit"):
            second = await src.fetch()
    finally:
        await src.aclose()
    assert [s["flow"] for s in seen] == [
        "USER_PASSWORD_AUTH",
        "REFRESH_TOKEN_AUTH",
        "USER_PASSWORD_AUTH",
    ]
    assert second != first and src._refresh_token not in (None, refresh_token)
    assert "Refresh Token has been revoked" in caplog.text
    assert "logging in again" in caplog.text
    for secret in (PASSWORD, pool.client_secret, refresh_token, first.value, second.value):
        assert secret not in caplog.text


@pytest.mark.asyncio
async def test_wrong_client_secret(
    moto_url: str, pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """AWS refuses the login itself ("Unable to verify secret hash for client ...").

    moto lets the login through and refuses only the refresh, answering with
    the presented hash as its message: we see the refusal, scrub the hash,
    and fall back to a login.
    """
    wrong = "not-" + pool.client_secret
    session, seen = flows_recorder()
    src = source(moto_url, pool.secret_client, client_secret=wrong, session=session)
    try:
        await src.fetch()
        with caplog.at_level(logging.WARNING, logger="jdkit.auth"):
            await src.fetch()
    finally:
        await src.aclose()
    bad_hash = secret_hash(wrong, "alice", pool.secret_client)
    assert seen[1]["SECRET_HASH"] == bad_hash
    assert "NotAuthorizedException" in caplog.text
    assert bad_hash not in caplog.text and wrong not in caplog.text
    assert [s["flow"] for s in seen][-1] == "USER_PASSWORD_AUTH"
    # the refusal itself, as fetch would raise it if the login were refused too
    src2 = source(moto_url, pool.secret_client, client_secret=wrong)
    try:
        await src2.fetch()
        with pytest.raises(AuthError) as info:
            await src2._refresh()
    finally:
        await src2.aclose()
    assert "REFRESH_TOKEN_AUTH failed: NotAuthorizedException: [redacted]" in str(info.value)
    assert bad_hash not in repr(info.value)


@pytest.mark.asyncio
async def test_wrong_password(moto_url: str, pool: Pool) -> None:
    wrong = "Wr0ng-" + PASSWORD
    src = source(moto_url, pool.plain_client, password=wrong)
    with pytest.raises(AuthError) as info:
        await src.fetch()
    await src.aclose()
    assert not isinstance(info.value, ChallengeRequiredError)
    assert "NotAuthorizedException" in str(info.value)
    assert "Incorrect username or password." in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    for text in (str(info.value), repr(info.value), repr(src)):
        assert wrong not in text


@pytest.mark.asyncio
async def test_new_password_challenge(moto_url: str, pool: Pool) -> None:
    pool.add_user("bob", permanent=False)  # AdminCreateUser only: FORCE_CHANGE_PASSWORD
    src = source(moto_url, pool.plain_client, username="bob", password="Temp-Passw0rd!")
    with pytest.raises(ChallengeRequiredError) as info:
        await src.fetch()
    await src.aclose()
    assert info.value.challenge == "NEW_PASSWORD_REQUIRED"
    assert isinstance(info.value, AuthError)
    assert "NEW_PASSWORD_REQUIRED" in str(info.value) and "Temp-Passw0rd!" not in str(info.value)


@pytest.mark.asyncio
async def test_unknown_client(moto_url: str, pool: Pool) -> None:
    src = source(moto_url, "no-such-client")
    with pytest.raises(AuthError, match="ResourceNotFoundException"):
        await src.fetch()
    await src.aclose()


@pytest.mark.asyncio
async def test_unreachable_endpoint() -> None:
    src = CognitoTokenSource(
        "cid",
        "alice",
        PASSWORD,
        "client-secret-xyz",
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        connect_timeout=1,
        read_timeout=1,
    )
    with pytest.raises(AuthError, match="USER_PASSWORD_AUTH request failed") as info:
        await src.fetch()
    await src.aclose()
    assert PASSWORD not in str(info.value) and "client-secret-xyz" not in str(info.value)


@pytest.mark.asyncio
async def test_email_alias_refresh_uses_username_claim(moto_url: str) -> None:
    """With e-mail sign-in the refresh SECRET_HASH must name the user as Cognito does.

    We send the hash of the access token's `username` claim (the sub), as AWS
    requires. moto checks it against the e-mail instead and refuses, so here
    the source falls back to a login: the token still comes back.
    """
    pool = Pool(moto_url, UsernameAttributes=["email"])
    pool.add_user("carol@example.com")
    session, seen = flows_recorder()
    src = source(
        moto_url,
        pool.secret_client,
        username="carol@example.com",
        client_secret=pool.client_secret,
        session=session,
    )
    try:
        t1 = await src.fetch()
        sub = _unverified_claims(t1.value)["username"]
        assert sub != "carol@example.com"
        t2 = await src.fetch()
    finally:
        await src.aclose()
    assert t2.value
    # AWS: [login, refresh]; moto refuses that refresh, so a login follows
    assert [s["flow"] for s in seen][2:] in ([], ["USER_PASSWORD_AUTH"])
    assert seen[0]["SECRET_HASH"] == secret_hash(
        pool.client_secret, "carol@example.com", pool.secret_client
    )
    assert seen[1]["flow"] == "REFRESH_TOKEN_AUTH"
    assert seen[1]["SECRET_HASH"] == secret_hash(pool.client_secret, sub, pool.secret_client)


@pytest.mark.asyncio
async def test_cognito_token_verifies_against_moto_jwks(moto_url: str, pool: Pool) -> None:
    """Our server-side verifier accepts a real Cognito-shaped token from moto's JWKS."""
    src = source(moto_url, pool.plain_client)
    tok = await src.fetch()
    await src.aclose()
    verifier = JWKSVerifier(
        f"{moto_url}/{pool.id}/.well-known/jwks.json",
        issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool.id}",
    )
    try:
        claims = await verifier.verify(tok.value)
    finally:
        await verifier.aclose()
    assert claims["username"] == "alice" and claims["token_use"] == "access"


def test_repr_hides_secrets() -> None:
    src = CognitoTokenSource("cid", "alice", "pw-" + PASSWORD, "cs-" + PASSWORD, region=REGION)
    for text in (repr(src), str(src)):
        assert PASSWORD not in text
    assert "client_secret=[redacted]" in repr(src) and "'alice'" in repr(src)


@pytest.mark.parametrize(
    ("args", "kw", "field"),
    [
        (("", "u", "p"), {"region": REGION}, "client_id"),
        (("c", "", "p"), {"region": REGION}, "username"),
        (("c", "u", ""), {"region": REGION}, "password"),
        (("c", "u", "p"), {"region": ""}, "region"),
        (("c", "u", "p", ""), {"region": REGION}, "client_secret"),
    ],
)
def test_config_errors(args: tuple[str, ...], kw: dict[str, Any], field: str) -> None:
    from jdkit import ConfigError

    with pytest.raises(ConfigError) as info:
        CognitoTokenSource(*args, **kw)
    assert info.value.field == field
