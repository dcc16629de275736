"""The token stays redacted however many calls use it, while registering it only when needed."""

from __future__ import annotations

import pytest

from jdkit import _redact
from jdkit._interceptors import Call, Message, chain_unary
from jdkit._methods import METHODS
from jdkit._redact import MAX_ENTRIES
from jdkit.auth import AuthInterceptor, StaticToken
from jdkit.pb import node

LIST_NODES = METHODS["/api.node.v1.NodeService/ListNodes"]

pytestmark = pytest.mark.asyncio


async def _ok(call: Call) -> Message:
    return node.ListNodesResponse()


async def test_token_in_use_is_registered_again_after_others_pushed_it_out() -> None:
    token = "per-call-redaction-token-0123456789"
    run = chain_unary([AuthInterceptor(StaticToken(token), secure=True)], _ok)
    await run(Call(LIST_NODES, node.ListNodesRequest()))
    assert token in _redact._registry
    # Enough other secrets to evict it from the bounded registry.
    _redact.register(*(f"other-secret-for-eviction-{i}" for i in range(MAX_ENTRIES)))
    assert token not in _redact._registry
    call = Call(LIST_NODES, node.ListNodesRequest())
    await run(call)
    assert token in _redact._registry  # the next call put it back
    assert call.metadata["authorization"] == f"Bearer {token}"


async def test_unchanged_registry_is_not_touched_per_call() -> None:
    token = "per-call-redaction-token-abcdefghij"
    run = chain_unary([AuthInterceptor(StaticToken(token), secure=True)], _ok)
    await run(Call(LIST_NODES, node.ListNodesRequest()))
    before = _redact.generation()
    for _ in range(5):
        await run(Call(LIST_NODES, node.ListNodesRequest()))
    assert _redact.generation() == before
    assert _redact._registry.redact(f"Bearer {token}") == "Bearer " + _redact.REDACTED
