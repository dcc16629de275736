"""Embedded provider and jdkit.connect(): lifecycle on every exit path."""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest

import jdkit
from jdkit import EmbeddedProvider, ProviderNotInitializedError, RemoteProvider
from jdkit.pb import node

pytestmark = pytest.mark.asyncio


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_connect_without_url_starts_an_embedded_jd(monkeypatch) -> None:
    monkeypatch.delenv("JD_GRPC_URL", raising=False)
    provider = jdkit.connect()
    assert isinstance(provider, EmbeddedProvider)
    async with provider as jd:
        port = provider.server.port
        assert _listening(port)
        assert await jd.check_health() == jdkit.ServingStatus.SERVING
        assert len(await jd.get_csa_public_key()) == 64
    assert jd.closed and not _listening(port)
    with pytest.raises(ProviderNotInitializedError):
        _ = provider.server


async def test_options_from_an_env_without_url_give_an_embedded_jd() -> None:
    # as jdkit.connect() reads the environment: no URL is no target, not an error
    opts = jdkit.ClientOptions.from_env({"JD_TIMEOUT": "7"})
    assert opts.target is None and opts.timeout == 7
    async with EmbeddedProvider(opts) as jd:
        assert await jd.check_health() == jdkit.ServingStatus.SERVING
    # a remote JD still needs the URL, and the error names the variable
    with pytest.raises(jdkit.ConfigError, match=r"^JD_GRPC_URL: is not set"):
        RemoteProvider.from_env({})


async def test_connect_prefers_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("JD_GRPC_URL", "127.0.0.1:1")
    assert isinstance(jdkit.connect(), RemoteProvider)
    assert isinstance(jdkit.connect("127.0.0.1:2"), RemoteProvider)


async def test_exception_inside_the_block_stops_everything() -> None:
    provider = EmbeddedProvider()
    with pytest.raises(ZeroDivisionError):
        async with provider as jd:
            port = provider.server.port
            1 / 0  # noqa: B018
    assert jd.closed and not _listening(port)


async def test_cancellation_inside_the_block_stops_everything() -> None:
    provider = EmbeddedProvider()
    started = asyncio.Event()
    ports: list[int] = []

    async def user() -> None:
        async with provider:
            ports.append(provider.server.port)
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(user())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _listening(ports[0])


async def test_anyio_timeout_inside_the_block_stops_everything() -> None:
    provider = EmbeddedProvider()
    with anyio.move_on_after(0.2):
        async with provider:
            port = provider.server.port
            await anyio.sleep(10)
    assert not _listening(port)


async def test_file_backed_state_survives_the_provider(tmp_path) -> None:
    db = tmp_path / "jd.sqlite"
    async with EmbeddedProvider(db=db, server_options={"csa_secret": "provider-test-secret"}) as jd:
        await jd.register_node(node.RegisterNodeRequest(name="kept", public_key="ab" * 32))
        key = await jd.get_csa_public_key()
    async with EmbeddedProvider(db=db, server_options={"csa_secret": "provider-test-secret"}) as jd:
        assert [n.name for n in (await jd.list_nodes()).nodes] == ["kept"]
        assert await jd.get_csa_public_key() == key


async def test_dry_run_provider_journals_and_reads_through() -> None:
    provider = EmbeddedProvider(dry_run=True)
    async with provider as jd:
        await jd.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))
        assert jd.journal is not None and jd.journal.methods() == ["RegisterNode"]
        # the dry run's reads see its planned node; the server has none
        assert [n.name for n in (await jd.list_nodes()).nodes] == ["n"]
        assert (await provider.server.state.list_nodes(None, 0, 0)) == ([], 0)
        assert provider.server.write_calls == 0


async def test_embedded_over_tls(tmp_path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("jd.local").configure_cert(server_ctx)
    provider = EmbeddedProvider(
        server_options={
            "ssl": server_ctx,
            "client_tls": jdkit.TLSConfig(ca_file=str(ca_file), server_name="jd.local"),
        }
    )
    async with provider as jd:
        assert jd.secure
        assert (await jd.version()).version == jdkit.__version__
