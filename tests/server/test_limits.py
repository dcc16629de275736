"""Message size limits (issue 10, D2), through grpcio with byte serializers.

An oversized request is refused with RESOURCE_EXHAUSTED naming its size and
the limit before any handler runs: nothing is stored, and the server keeps
serving. Compressed requests are held to the same limit after decompression.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc import aio

from jdkit._exceptions import ConfigError
from jdkit._server import EmbeddedJD
from jdkit._server._limits import MiB, ServerLimits
from jdkit.pb import job, label, node
from tests.helpers.server_fixtures import pubkey, spec

ProposeJob = "/api.job.v1.JobService/ProposeJob"
RegisterNode = "/api.node.v1.NodeService/RegisterNode"
ListNodes = "/api.node.v1.NodeService/ListNodes"

#: grpcio's own client limits would refuse before our server is reached.
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def _identity(b: bytes) -> bytes:
    return b


def raw(channel: aio.Channel, path: str) -> Callable[..., Any]:
    call: Callable[..., Any] = channel.unary_unary(
        path, request_serializer=_identity, response_deserializer=_identity
    )
    return call


async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest_asyncio.fixture
async def srv_channel() -> AsyncIterator[tuple[EmbeddedJD, aio.Channel]]:
    async with EmbeddedJD.start() as srv:
        async with aio.insecure_channel(srv.address, options=UNLIMITED) as channel:
            yield srv, channel


async def _one_node(srv: EmbeddedJD) -> str:
    return (await srv.state.register_node("n0", pubkey(1), [])).id


@pytest.mark.asyncio
async def test_a_5_mib_proposal_is_refused_before_anything_is_stored(
    srv_channel: tuple[EmbeddedJD, aio.Channel],
) -> None:
    srv, channel = srv_channel
    node_id = await _one_node(srv)
    big = spec(extra="# " + "x" * (5 * MiB) + "\n")
    body = bytes(job.ProposeJobRequest(node_id=node_id, spec=big))
    code, details = await status_of(raw(channel, ProposeJob)(body, timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert str(len(body)) in details and "4194304" in details, details
    assert "max_receive_message_size" in details
    assert await srv.state.list_proposals([], []) == []
    assert await srv.state.list_jobs(None) == []
    # the connection and the server are fine: the next call on it succeeds
    small = bytes(job.ProposeJobRequest(node_id=node_id, spec=spec()))
    assert await raw(channel, ProposeJob)(small, timeout=10)
    assert len(await srv.state.list_proposals([], [])) == 1


@pytest.mark.asyncio
async def test_a_5_mib_node_registration_stores_no_node(
    srv_channel: tuple[EmbeddedJD, aio.Channel],
) -> None:
    srv, channel = srv_channel
    labels = [label.Label(key=f"k{i}", value="v" * 64) for i in range(70_000)]
    body = bytes(node.RegisterNodeRequest(name="big", public_key=pubkey(2), labels=labels))
    assert len(body) > 4 * MiB
    code, details = await status_of(raw(channel, RegisterNode)(body, timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    nodes, total = await srv.state.list_nodes(None, 0, 0)
    assert nodes == [] and total == 0


@pytest.mark.asyncio
async def test_the_limit_is_configurable_and_inclusive() -> None:
    limits = ServerLimits(max_receive_message_size=2000)
    async with EmbeddedJD.start(limits=limits) as srv:
        node_id = await _one_node(srv)
        async with aio.insecure_channel(srv.address) as channel:
            call = raw(channel, ProposeJob)
            base = bytes(job.ProposeJobRequest(node_id=node_id, spec=spec()))
            pad = 2000 - len(base) - 3  # the comment adds "# " + pad + "\n" and 1 length byte
            at_limit = bytes(
                job.ProposeJobRequest(node_id=node_id, spec=spec(extra="#" + "x" * pad))
            )
            assert len(at_limit) <= 2000
            assert await call(at_limit, timeout=10)
            over = bytes(
                job.ProposeJobRequest(node_id=node_id, spec=spec(extra="#" + "x" * (pad + 200)))
            )
            code, details = await status_of(call(over, timeout=10))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"{len(over)} bytes" in details and "2000 bytes" in details


@pytest.mark.asyncio
async def test_a_gzip_bomb_is_refused_by_its_decompressed_size(
    srv_channel: tuple[EmbeddedJD, aio.Channel],
) -> None:
    srv, channel = srv_channel
    node_id = await _one_node(srv)
    body = bytes(job.ProposeJobRequest(node_id=node_id, spec=spec(extra="#" + " " * (20 * MiB))))
    assert len(gzip.compress(body)) < 100_000  # small on the wire
    call = raw(channel, ProposeJob)(body, timeout=30, compression=grpc.Compression.Gzip)
    code, details = await status_of(call)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "decompresses to more than" in details and "4194304" in details
    assert await srv.state.list_proposals([], []) == []


@pytest.mark.asyncio
async def test_max_send_refuses_an_oversized_reply() -> None:
    async with EmbeddedJD.start(limits=ServerLimits(max_send_message_size=4096)) as srv:
        for i in range(100):
            await srv.state.register_node(f"node-{i}", pubkey(100 + i), [])
        async with aio.insecure_channel(srv.address) as channel:
            call = raw(channel, ListNodes)
            code, details = await status_of(call(b"", timeout=10))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
            assert "reply message is" in details and "4096 bytes" in details
            assert "max_send_message_size" in details
            # a reply under the limit still goes out
            req = bytes(node.ListNodesRequest(page_size=2, page=1))
            assert len(await call(req, timeout=10)) < 4096


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_receive_message_size", 0),
        ("max_receive_message_size", None),
        ("max_send_message_size", -1),
        ("max_concurrent_streams", 1.5),
        ("handshake_timeout", 0),
        ("idle_timeout", float("inf")),
        ("keepalive_timeout", None),
        ("request_timeout", True),
    ],
)
def test_limits_are_checked_and_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        ServerLimits(**{field: value})
    assert info.value.field == field


def test_limits_other_than_server_limits_are_refused() -> None:
    with pytest.raises(ConfigError, match="limits"):
        EmbeddedJD(limits={"max_receive_message_size": 1})  # type: ignore[arg-type]
