"""Reprs of options and providers say what they are and never show a secret."""

from __future__ import annotations

import pytest

import jdkit
from jdkit.auth import StaticToken

TOKEN = "s3cr3t-token-value"


def test_client_options_repr_shows_metadata_redacted() -> None:
    opts = jdkit.ClientOptions(
        metadata={"authorization": f"Bearer {TOKEN}", "x-api-key": TOKEN, "x-tenant": "t1"},
        auth=StaticToken(TOKEN),
    )
    for text in (repr(opts), str(opts), repr(opts.replace(timeout=5.0))):
        assert TOKEN not in text
        assert "metadata=Metadata(" in text and "'x-tenant': 't1'" in text
        assert "'authorization': '[redacted]'" in text


def test_remote_provider_repr() -> None:
    provider = jdkit.RemoteProvider(
        "grpcs://jd.example.com", metadata={"authorization": f"Bearer {TOKEN}"}
    )
    assert repr(provider) == "<RemoteProvider jd.example.com:443 not connected>"


@pytest.mark.asyncio
async def test_embedded_provider_repr() -> None:
    provider = jdkit.EmbeddedProvider(metadata={"authorization": f"Bearer {TOKEN}"})
    assert repr(provider) == "<EmbeddedProvider not started>"
    async with provider:
        assert repr(provider) == f"<EmbeddedProvider {provider.server.address} started>"
    assert repr(provider) == "<EmbeddedProvider not started>"
