"""Token, StaticToken, SECRET_HASH, TokenManager (caching, margin, single-flight), from_env."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jdkit import AuthError, ConfigError
from jdkit.auth import (
    CognitoTokenSource,
    OAuth2ClientCredentials,
    StaticToken,
    Token,
    TokenManager,
    TokenSource,
    from_env,
)
from jdkit.auth._cognito import secret_hash
from tests.helpers.auth_helpers import FakeClock

SECRET = "s3cr3t-token-value-1234"


class CountingSource:
    """A real (in-process) token source: each fetch mints a new token valid for `ttl`."""

    def __init__(self, clock: FakeClock, ttl: float | None = 3600.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self.fetches = 0
        self.invalidations = 0
        self.fail_with: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def fetch(self) -> Token:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(0)
        if self.fail_with is not None:
            raise self.fail_with
        exp = None if self.ttl is None else self.clock() + self.ttl
        return Token(f"tok-{self.fetches}", exp)

    def invalidate(self) -> None:
        self.invalidations += 1


def test_secret_hash_vector() -> None:
    assert (
        secret_hash("secret", "user", "clientid") == "E1KXMtDWZqk4xodyW0dfVQzUoSoWg7hMk0yc2ermw4M="
    )


def test_token_repr_hides_value() -> None:
    tok = Token(SECRET, 123.0)
    for text in (repr(tok), str(tok), f"{tok}", repr([tok])):
        assert SECRET not in text
    assert "expires_at=123" in repr(tok)
    # not even its length: the repr is the same for any secret
    assert repr(tok) == repr(Token("x" * 99, 123.0)) == "Token(value=[redacted], expires_at=123)"
    assert tok.expired(123.0) and not tok.expired(122.9)
    assert not Token(SECRET).expired(1e18)


@pytest.mark.asyncio
async def test_static_token() -> None:
    src = StaticToken(SECRET)
    assert isinstance(src, TokenSource)
    assert (await src.fetch()) == Token(SECRET, None)
    assert SECRET not in repr(src) and SECRET not in str(src)


@pytest.mark.parametrize("bad", ["", "two words", "line\nbreak", "caf\u00e9"])
def test_static_token_rejects_unsendable(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        StaticToken(bad)
    assert info.value.field == "token"


@pytest.mark.asyncio
async def test_manager_caches_until_margin() -> None:
    clock = FakeClock()
    src = CountingSource(clock, ttl=3600)
    mgr = TokenManager(src, margin=60, clock=clock)
    t1 = await mgr.get()
    assert (await mgr.get()) is t1
    clock.advance(3600 - 61)
    assert (await mgr.get()) is t1
    clock.advance(2)  # now inside the margin, still before expiry
    t2 = await mgr.get()
    assert t2 != t1 and src.fetches == 2


@pytest.mark.asyncio
async def test_manager_short_lived_tokens_refresh_at_half_life() -> None:
    clock = FakeClock()
    src = CountingSource(clock, ttl=30)  # shorter than the 60 s margin
    mgr = TokenManager(src, margin=60, clock=clock)
    t1 = await mgr.get()
    clock.advance(14)
    assert (await mgr.get()) is t1
    clock.advance(1)
    assert (await mgr.get()) != t1
    assert src.fetches == 2


@pytest.mark.asyncio
async def test_manager_token_without_expiry_is_kept() -> None:
    clock = FakeClock()
    src = CountingSource(clock, ttl=None)
    mgr = TokenManager(src, clock=clock)
    t1 = await mgr.get()
    clock.advance(10**9)
    assert (await mgr.get()) is t1 and src.fetches == 1


@pytest.mark.asyncio
async def test_single_flight_200_callers_across_expiry() -> None:
    clock = FakeClock()
    src = CountingSource(clock, ttl=600)
    mgr = TokenManager(src, margin=60, clock=clock)
    first = await mgr.get()
    clock.advance(600)  # expired for everyone at once
    src.gate = asyncio.Event()
    callers = [asyncio.ensure_future(mgr.get()) for _ in range(200)]
    await asyncio.sleep(0.01)  # let all 200 find the token stale and queue up
    src.gate.set()
    tokens = await asyncio.gather(*callers)
    assert src.fetches == 2  # the priming fetch plus exactly one refresh
    assert {t.value for t in tokens} == {"tok-2"} and tokens[0] != first


@pytest.mark.asyncio
async def test_single_flight_failure_is_shared_and_next_call_retries() -> None:
    clock = FakeClock()
    src = CountingSource(clock)
    src.fail_with = AuthError("endpoint said no")
    src.gate = asyncio.Event()
    mgr = TokenManager(src, clock=clock)
    callers = [asyncio.ensure_future(mgr.get()) for _ in range(50)]
    await asyncio.sleep(0.01)
    src.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert src.fetches == 1
    src.fail_with = None
    assert (await mgr.get()).value == "tok-2"


@pytest.mark.asyncio
async def test_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    clock = FakeClock()
    src = CountingSource(clock)
    src.gate = asyncio.Event()
    mgr = TokenManager(src, clock=clock)
    first = asyncio.ensure_future(mgr.get())
    second = asyncio.ensure_future(mgr.get())
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0)
    src.gate.set()
    assert (await second).value == "tok-1"
    assert first.cancelled() and src.fetches == 1


@pytest.mark.asyncio
async def test_failed_proactive_refresh_keeps_valid_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    src = CountingSource(clock, ttl=3600)
    mgr = TokenManager(src, margin=60, clock=clock)
    t1 = await mgr.get()
    clock.advance(3600 - 30)  # in the margin, not expired
    src.fail_with = AuthError("temporarily down")
    with caplog.at_level(logging.WARNING, logger="jdkit.auth"):
        assert (await mgr.get()) is t1
    assert "temporarily down" in caplog.text and "tok-1" not in caplog.text
    fetches = src.fetches
    assert (await mgr.get()) is t1 and src.fetches == fetches  # not retried at once
    clock.advance(31)  # expired now: the failure surfaces
    with pytest.raises(AuthError):
        await mgr.get()


@pytest.mark.asyncio
async def test_invalidate_only_the_rejected_token() -> None:
    clock = FakeClock()
    src = CountingSource(clock)
    mgr = TokenManager(src, clock=clock)
    t1 = await mgr.get()
    t2 = await mgr.refresh(t1)
    assert t2 != t1 and src.invalidations == 1
    # a second call rejected with the *old* token must not refresh again
    assert (await mgr.refresh(t1)) is t2
    assert src.fetches == 2 and src.invalidations == 1


@pytest.mark.asyncio
async def test_manager_rejects_non_token() -> None:
    class Bad:
        async def fetch(self) -> str:
            return "not a Token"

    mgr = TokenManager(Bad(), clock=FakeClock())  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="no usable Token"):
        await mgr.get()
    with pytest.raises(ConfigError):
        TokenManager(object())  # type: ignore[arg-type]


# -- from_env


def test_from_env_none_configured() -> None:
    assert from_env({"HOME": "/root", "JD_OTHER_SETTING": "x"}) is None


def test_from_env_static() -> None:
    src = from_env({"JD_TOKEN": SECRET})
    assert isinstance(src, StaticToken) and SECRET not in repr(src)


def test_from_env_static_bad_names_variable() -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"JD_TOKEN": "has space"})
    assert info.value.field == "JD_TOKEN"


def test_from_env_oauth2() -> None:
    src = from_env(
        {
            "JD_OAUTH2_TOKEN_URL": "https://auth.example/oauth2/token",
            "JD_OAUTH2_CLIENT_ID": "cid",
            "JD_OAUTH2_CLIENT_SECRET": SECRET,
            "JD_OAUTH2_SCOPE": "jd/read jd/write",
        }
    )
    assert isinstance(src, OAuth2ClientCredentials)
    assert src.scope == "jd/read jd/write" and src.client_id == "cid"
    assert SECRET not in repr(src)


def test_from_env_oauth2_incomplete_names_missing_variable() -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"JD_OAUTH2_TOKEN_URL": "https://a/t", "JD_OAUTH2_CLIENT_ID": "cid"})
    assert info.value.field == "JD_OAUTH2_CLIENT_SECRET"
    assert "JD_OAUTH2_CLIENT_SECRET" in str(info.value)


def test_from_env_oauth2_bad_url_names_variable() -> None:
    env = {
        "JD_OAUTH2_TOKEN_URL": "http://auth.example/token",
        "JD_OAUTH2_CLIENT_ID": "cid",
        "JD_OAUTH2_CLIENT_SECRET": SECRET,
    }
    with pytest.raises(ConfigError) as info:
        from_env(env)
    assert info.value.field == "JD_OAUTH2_TOKEN_URL" and SECRET not in str(info.value)


def test_from_env_cognito() -> None:
    src = from_env(
        {
            "JD_COGNITO_CLIENT_ID": "cid",
            "JD_COGNITO_USERNAME": "alice",
            "JD_COGNITO_PASSWORD": SECRET,
            "JD_COGNITO_CLIENT_SECRET": "client-" + SECRET,
            "AWS_REGION": "eu-west-1",
            "JD_COGNITO_ENDPOINT_URL": "http://127.0.0.1:5000",
        }
    )
    assert isinstance(src, CognitoTokenSource)
    assert src.region == "eu-west-1" and src.endpoint_url == "http://127.0.0.1:5000"
    assert SECRET not in repr(src)


def test_from_env_cognito_missing_region() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(
            {
                "JD_COGNITO_CLIENT_ID": "cid",
                "JD_COGNITO_USERNAME": "alice",
                "JD_COGNITO_PASSWORD": SECRET,
            }
        )
    assert info.value.field == "JD_COGNITO_REGION"


def test_from_env_cognito_missing_password() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(
            {"JD_COGNITO_CLIENT_ID": "cid", "JD_COGNITO_USERNAME": "a", "JD_COGNITO_REGION": "r"}
        )
    assert info.value.field == "JD_COGNITO_PASSWORD"


def test_from_env_two_families_conflict() -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"JD_TOKEN": SECRET, "JD_COGNITO_USERNAME": "alice"})
    assert "JD_TOKEN" in str(info.value) and "JD_COGNITO" in str(info.value)
    assert SECRET not in str(info.value)


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("JD_TOKEN", "JD_OAUTH2_TOKEN_URL", "JD_COGNITO_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JD_TOKEN", SECRET)
    assert isinstance(from_env(), StaticToken)


@pytest.mark.asyncio
async def test_manager_is_itself_a_token_source() -> None:
    clock = FakeClock()
    src = CountingSource(clock)
    mgr = TokenManager(src, clock=clock)
    assert isinstance(mgr, TokenSource)
    assert (await mgr.fetch()) is (await mgr.get())
    assert src.fetches == 1
