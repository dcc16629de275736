"""Remote provider: config validation, lifecycle, and an unreachable server."""

from __future__ import annotations

import socket
import time

import pytest

import jdkit
from jdkit import ConfigError, RemoteConfig, RemoteProvider, TLSConfig, UnavailableError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "target: is empty"),
        ("   ", "target: is empty"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:70000", "1..65535"),
        ("ftp://h:1", "unknown scheme"),
        ("grpc://h:1/path", "path or query"),
    ],
)
def test_bad_url_names_the_problem(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        RemoteConfig(url=url)
    assert info.value.field == "target"
    assert isinstance(info.value, ValueError)


def test_missing_cert_file_names_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        TLSConfig(ca_file=str(tmp_path / "nope.pem"))
    assert info.value.field == "tls.ca_file"
    with pytest.raises(ConfigError, match="together"):
        TLSConfig(cert_file=__file__)


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        RemoteConfig(url="h:1", timeout=-1)


def test_from_env_reads_the_documented_variables(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = RemoteConfig.from_env(
        {
            "JD_GRPC_URL": "jd.internal:443",
            "JD_TLS_CA_FILE": str(ca),
            "JD_TLS_SERVER_NAME": "jd",
            "JD_TIMEOUT": "7.5",
        }
    )
    assert cfg.target == "jd.internal:443" and cfg.timeout == 7.5
    assert isinstance(cfg.tls, TLSConfig) and cfg.tls.server_name == "jd"
    with pytest.raises(ConfigError, match="JD_GRPC_URL"):
        RemoteConfig.from_env({})
    with pytest.raises(ConfigError, match="JD_TIMEOUT"):
        RemoteConfig.from_env({"JD_GRPC_URL": "h:1", "JD_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="JD_TLS"):
        RemoteConfig.from_env({"JD_GRPC_URL": "h:1", "JD_TLS": "maybe"})


@pytest.mark.asyncio
async def test_client_before_initialize_is_a_clear_error() -> None:
    provider = RemoteProvider(RemoteConfig(url="127.0.0.1:1"))
    with pytest.raises(jdkit.ProviderNotInitializedError, match="not initialized"):
        _ = provider.client
    jd = await provider.initialize()
    assert await provider.initialize() is jd  # idempotent
    await provider.aclose()
    assert jd.closed


@pytest.mark.asyncio
async def test_unreachable_server_is_unavailable_within_the_deadline() -> None:
    async with jdkit.connect(f"127.0.0.1:{_closed_port()}", timeout=1.5) as jd:
        t0 = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            await jd.list_nodes()
        assert time.monotonic() - t0 < 1.5 + 0.5
        assert info.value.reached_server is False
        # a write is retried too when the request provably never left
        with pytest.raises(UnavailableError):
            await jd.register_node(jdkit.pb.node.RegisterNodeRequest(name="n", public_key="a"))


@pytest.mark.asyncio
async def test_exception_in_block_still_closes_the_channel() -> None:
    provider = RemoteProvider(RemoteConfig(url="127.0.0.1:1"))
    with pytest.raises(RuntimeError):
        async with provider as jd:
            raise RuntimeError("boom")
    assert jd.closed
    with pytest.raises(jdkit.ProviderNotInitializedError):
        _ = provider.client
