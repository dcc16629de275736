"""Caller mistakes found in review: each gets a clear error, never INTERNAL or a traceback."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from jdkit import ConfigError, JobDistributor, RemoteConfig
from jdkit._json import json_name, to_json_dict
from jdkit._server import EmbeddedJD
from jdkit.pb import node


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0, 0, True, "5"])
def test_timeouts_must_be_finite_positive_seconds(bad: object) -> None:
    with pytest.raises(ConfigError, match="finite positive") as info:
        JobDistributor.connect("127.0.0.1:1", timeout=bad)
    assert info.value.field == "timeout"


@pytest.mark.parametrize("raw", ["inf", "nan", "-1", "-inf"])
def test_jd_timeout_must_be_finite_positive(raw: str) -> None:
    with pytest.raises(ConfigError, match="JD_TIMEOUT"):
        RemoteConfig.from_env({"JD_GRPC_URL": "h:1", "JD_TIMEOUT": raw})


@pytest.mark.asyncio
async def test_per_call_options_are_checked() -> None:
    async with JobDistributor.connect("127.0.0.1:1") as jd:
        with pytest.raises(TypeError, match="timout"):
            await jd.list_nodes(timout=1)  # type: ignore[call-arg]
        with pytest.raises(ConfigError, match="finite positive"):
            await jd.list_nodes(timeout=math.inf)
        with pytest.raises(ConfigError, match="RetryPolicy"):
            await jd.list_nodes(retry="x")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="lower-case"):
            await jd.list_nodes(metadata={"X-Request-Id": "1"})


@pytest.mark.parametrize("port", [65536, 99999, -1])
def test_embedded_ports_out_of_range_are_refused(port: int) -> None:
    with pytest.raises(ConfigError, match=r"0\.\.65535") as info:
        EmbeddedJD(port=port)
    assert info.value.field == "port"
    with pytest.raises(ConfigError, match="healthz_port"):
        EmbeddedJD(healthz_port=port)


def test_cli_refuses_a_bad_port_and_infinite_timeout_in_one_line() -> None:
    for args in (
        ["serve", "--port", "99999"],
        ["--url", "127.0.0.1:1", "--timeout", "inf", "nodes", "list"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "jdkit", *args], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2
        assert "Traceback" not in out.stderr and out.stderr.startswith("error: ")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        "0a050a030a0161",  # policy { fields { key: "a" } }: an entry without a Value
        "0a0d0a0b0a016e12062a040a020a00",  # the same, one Struct deeper
    ],
)
async def test_struct_entry_without_a_value_is_invalid_argument_not_internal(body: str) -> None:
    from grpclib.const import Status

    from tests.helpers.server_fixtures import raw_call

    async with EmbeddedJD.start() as srv:
        for path in ("/api.probation.v1.RollbackPolicyService/CreateRollbackPolicy",):
            status, message = await raw_call(srv.port, path, bytes.fromhex(body))
            assert status == Status.INVALID_ARGUMENT, message
            assert "not a valid google.protobuf.Struct" in (message or "")


def test_json_uses_protoc_field_names() -> None:
    assert json_name("p2p_key_bundles") == "p2pKeyBundles"
    assert json_name("ocr2_config") == "ocr2Config"
    got = to_json_dict(node.Node(id="a", p2p_key_bundles=[node.P2PKeyBundle(peer_id="p")]))
    assert got == {"id": "a", "p2pKeyBundles": [{"peerId": "p"}]}


@pytest.mark.asyncio
async def test_unencodable_request_values_are_invalid_argument_locally() -> None:
    from jdkit import InvalidArgumentError

    async with EmbeddedJD.start() as srv, JobDistributor.connect(srv.address) as jd:
        with pytest.raises(InvalidArgumentError, match="cannot be encoded"):
            await jd.register_node(node.RegisterNodeRequest(name="bad\ud800", public_key="ab" * 32))
        with pytest.raises(InvalidArgumentError, match="cannot be encoded"):
            await jd.register_node(node.RegisterNodeRequest(name=123, public_key="ab" * 32))  # type: ignore[arg-type]
        assert srv.write_calls == 0  # refused before anything was sent


@pytest.mark.asyncio
async def test_a_closed_client_fails_fast_and_so_do_its_views() -> None:
    import time

    from jdkit import ClientClosedError

    async with EmbeddedJD.start() as srv:
        jd = JobDistributor.connect(srv.address)
        view = jd.with_dry_run()
        await jd.aclose()
        for client in (jd, view):
            t0 = time.monotonic()
            with pytest.raises(ClientClosedError, match="closed"):
                await client.list_nodes()
            assert time.monotonic() - t0 < 0.05  # not retried
        assert view.closed


def test_clients_belong_to_the_loop_they_were_connected_in() -> None:
    import asyncio

    from jdkit import WrongEventLoopError

    with pytest.raises(WrongEventLoopError, match="inside the event loop"):
        JobDistributor.connect("127.0.0.1:1")

    async def make() -> JobDistributor:
        return JobDistributor.connect("127.0.0.1:1")

    async def use(jd: JobDistributor) -> None:
        with pytest.raises(WrongEventLoopError, match="another event loop"):
            await jd.list_nodes()

    loop = asyncio.new_event_loop()
    try:
        jd = loop.run_until_complete(make())
        asyncio.run(use(jd))
    finally:
        loop.run_until_complete(jd.aclose())
        loop.close()


def test_a_client_token_source_is_not_a_server_auth_hook() -> None:
    from jdkit.auth import StaticToken

    with pytest.raises(ConfigError, match=r"jdkit\.server\.StaticTokenVerifier") as info:
        EmbeddedJD(auth=StaticToken("t0ken-value"))  # type: ignore[arg-type]
    assert info.value.field == "auth" and "t0ken-value" not in str(info.value)
