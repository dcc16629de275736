"""AuthInterceptor through the real chain, with small terminal functions as the transport."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from jdkit import AuthError, ConfigError, InternalError, UnauthenticatedError
from jdkit._interceptors import Call, Message, chain_stream, chain_unary
from jdkit._methods import METHODS
from jdkit.auth import (
    AuthInterceptor,
    StaticToken,
    Token,
    TokenManager,
)
from jdkit.auth._interceptor import build_auth_interceptor
from jdkit.pb import health, node
from tests.helpers.auth_helpers import FakeClock

LIST_NODES = METHODS["/api.node.v1.NodeService/ListNodes"]
WATCH = METHODS["/grpc.health.v1.Health/Watch"]


class Minting:
    """Each fetch mints a new token; counts fetches."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.fetches = 0
        self.fail = False

    async def fetch(self) -> Token:
        self.fetches += 1
        await asyncio.sleep(0)
        if self.fail:
            raise AuthError("token endpoint refused")
        return Token(f"minted-{self.fetches}", self.clock() + 3600)


class Server:
    """Terminal 'transport': accepts only `valid` tokens, records what it saw."""

    def __init__(self, valid: set[str] | None = None, reject_first: int = 0) -> None:
        self.valid = valid
        self.reject_first = reject_first
        self.seen: list[str | None] = []

    def _check(self, call: Call) -> None:
        auth = call.metadata.get("authorization")
        self.seen.append(auth)
        if self.reject_first > 0:
            self.reject_first -= 1
            raise UnauthenticatedError("token expired", method=call.method.path)
        if self.valid is not None and auth not in {f"Bearer {v}" for v in self.valid}:
            raise UnauthenticatedError("invalid token", method=call.method.path)

    async def unary(self, call: Call) -> Message:
        await asyncio.sleep(0)  # let concurrent calls all be in flight
        self._check(call)
        return node.ListNodesResponse()

    def stream(self, messages: int = 3, fail_after: int | None = None) -> object:
        async def terminal(call: Call) -> AsyncIterator[Message]:
            self._check(call)
            for i in range(messages):
                if fail_after is not None and i == fail_after:
                    raise UnauthenticatedError("token revoked mid-stream")
                yield health.HealthCheckResponse()

        return terminal


def unary_call() -> Call:
    return Call(LIST_NODES, node.ListNodesRequest())


def stream_call() -> Call:
    return Call(WATCH, health.HealthCheckRequest())


@pytest.mark.asyncio
async def test_sets_bearer_metadata_on_unary() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    server = Server()
    call = unary_call()
    await chain_unary([icp], server.unary)(call)
    assert server.seen == ["Bearer minted-1"]
    assert call.metadata["authorization"] == "Bearer minted-1"
    await chain_unary([icp], server.unary)(unary_call())
    assert src.fetches == 1  # cached across calls


@pytest.mark.asyncio
async def test_sets_bearer_metadata_on_stream() -> None:
    icp = AuthInterceptor(Minting(), secure=True)
    server = Server()
    out = [m async for m in chain_stream([icp], server.stream())(stream_call())]  # type: ignore[arg-type]
    assert len(out) == 3 and server.seen == ["Bearer minted-1"]


@pytest.mark.asyncio
async def test_unauthenticated_once_refreshes_and_replays_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    server = Server(reject_first=1)
    with caplog.at_level(logging.DEBUG, logger="jdkit"):
        resp = await chain_unary([icp], server.unary)(unary_call())
    assert isinstance(resp, node.ListNodesResponse)
    assert server.seen == ["Bearer minted-1", "Bearer minted-2"]  # one replay
    assert src.fetches == 2  # one refresh
    assert "minted-" not in caplog.text and "replaying" in caplog.text


@pytest.mark.asyncio
async def test_replays_at_most_once() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    server = Server(reject_first=5)
    with pytest.raises(UnauthenticatedError):
        await chain_unary([icp], server.unary)(unary_call())
    assert len(server.seen) == 2 and src.fetches == 2


@pytest.mark.asyncio
async def test_static_token_is_not_replayed() -> None:
    icp = AuthInterceptor(StaticToken("fixed-token"), secure=True)
    server = Server(valid={"other"})
    with pytest.raises(UnauthenticatedError):
        await chain_unary([icp], server.unary)(unary_call())
    assert server.seen == ["Bearer fixed-token"]  # same token again would be pointless


@pytest.mark.asyncio
async def test_refresh_failure_after_rejection_is_auth_error() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    await icp.manager.get()
    src.fail = True
    with pytest.raises(AuthError) as info:
        await chain_unary([icp], Server(reject_first=1).unary)(unary_call())
    assert isinstance(info.value.__cause__, UnauthenticatedError)


@pytest.mark.asyncio
async def test_other_errors_pass_through_without_refresh() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)

    async def broken(call: Call) -> Message:
        raise InternalError("boom")

    with pytest.raises(InternalError):
        await chain_unary([icp], broken)(unary_call())
    assert src.fetches == 1


@pytest.mark.asyncio
async def test_concurrent_rejections_cause_one_refresh() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    await icp.manager.get()  # everyone starts with minted-1
    server = Server(valid={"minted-2"})
    run = chain_unary([icp], server.unary)
    await asyncio.gather(*(run(unary_call()) for _ in range(20)))
    assert src.fetches == 2
    assert server.seen.count("Bearer minted-1") == 20
    assert server.seen.count("Bearer minted-2") == 20


@pytest.mark.asyncio
async def test_stream_replayed_when_refused_before_first_message() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    server = Server(reject_first=1)
    run = chain_stream([icp], server.stream())  # type: ignore[arg-type]
    out = [m async for m in run(stream_call())]
    assert len(out) == 3
    assert server.seen == ["Bearer minted-1", "Bearer minted-2"]


@pytest.mark.asyncio
async def test_stream_not_replayed_after_a_message() -> None:
    src = Minting()
    icp = AuthInterceptor(src, secure=True)
    server = Server()
    run = chain_stream([icp], server.stream(fail_after=1))  # type: ignore[arg-type]
    got = []
    with pytest.raises(UnauthenticatedError):
        async for m in run(stream_call()):
            got.append(m)
    assert len(got) == 1 and len(server.seen) == 1 and src.fetches == 1


def test_refuses_plaintext_unless_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        AuthInterceptor(StaticToken("t"), secure=False)
    assert info.value.field == "allow_insecure_auth"
    assert "allow_insecure_auth" in str(info.value)
    AuthInterceptor(StaticToken("t"), secure=False, allow_insecure=True)
    with pytest.raises(ConfigError):
        build_auth_interceptor(StaticToken("t"), secure=False)


@pytest.mark.asyncio
async def test_build_shares_one_manager_per_source() -> None:
    src = Minting()
    a = build_auth_interceptor(src, secure=True)
    b = build_auth_interceptor(src, secure=False, allow_insecure=True)
    assert a.manager is b.manager
    mgr = TokenManager(src, clock=FakeClock())
    assert build_auth_interceptor(mgr, secure=True).manager is mgr
    await a.manager.get()
    await b.manager.get()
    assert src.fetches == 1


@pytest.mark.asyncio
async def test_aclose_closes_the_source() -> None:
    closed = []

    class Closable(Minting):
        async def aclose(self) -> None:
            closed.append(True)

    icp = AuthInterceptor(Closable(), secure=True)
    await icp.aclose()
    assert closed == [True]


def test_reprs_hide_tokens() -> None:
    icp = AuthInterceptor(StaticToken("super-secret-token"), secure=True)
    assert "super-secret-token" not in repr(icp) and "super-secret-token" not in repr(icp.manager)
