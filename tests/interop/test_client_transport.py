"""The client's transport against Google's grpcio server and a real TCP proxy:
message limits, user-agent and request ids, min_version, dead-connection probes."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from grpc import aio

import jdkit
from jdkit import (
    ClientOptions,
    EmbeddedProvider,
    JobDistributor,
    ResourceExhaustedError,
    VersionError,
)
from jdkit.pb import node
from tests.helpers.grpcio import stubs

pytestmark = pytest.mark.asyncio

node_pb2: Any = stubs("v1.node.node_pb2")
node_grpc: Any = stubs("v1.node.node_pb2_grpc")
app_pb2: Any = stubs("v1.app.app_pb2")
app_grpc: Any = stubs("v1.app.app_pb2_grpc")

MiB = 1024 * 1024


class Nodes(node_grpc.NodeServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.list_calls = 0
        self.register_calls = 0

    async def ListNodes(self, request, context):
        self.list_calls += 1
        self.metadata.append(dict(context.invocation_metadata()))
        size = int(request.filter.ids[0]) if request.filter.ids else 0
        return node_pb2.ListNodesResponse(nodes=[node_pb2.Node(id="n", name="a" * size)])

    async def RegisterNode(self, request, context):
        self.register_calls += 1
        self.metadata.append(dict(context.invocation_metadata()))
        return node_pb2.RegisterNodeResponse(node=node_pb2.Node(id="node_1", name=request.name))


class App(app_grpc.AppServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.version = "v1.4.0"
        self.calls = 0

    async def Version(self, request, context):
        self.calls += 1
        return app_pb2.VersionResponse(version=self.version)


class Peer:
    def __init__(self, address: str, nodes: Nodes, app: App) -> None:
        self.address, self.nodes, self.app = address, nodes, app


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[Peer]:
    server = aio.server(options=[("grpc.max_send_message_length", -1)])
    nodes, app = Nodes(), App()
    node_grpc.add_NodeServiceServicer_to_server(nodes, server)
    app_grpc.add_AppServiceServicer_to_server(app, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Peer(f"127.0.0.1:{port}", nodes, app)
    finally:
        await server.stop(None)


def _sized(n: int) -> node.ListNodesRequest:
    return node.ListNodesRequest(filter=node.ListNodesRequestFilter(ids=[str(n)]))


# -- limits


async def test_an_oversized_reply_is_refused_by_its_length_and_not_retried(peer: Peer) -> None:
    async with JobDistributor.connect(peer.address) as jd:
        with pytest.raises(ResourceExhaustedError) as info:
            await jd.list_nodes(_sized(5 * MiB))
        assert info.value.local and "max_receive_message_size" in str(info.value)
        assert str(4 * MiB) in str(info.value)
        assert peer.nodes.list_calls == 1  # this client's own limit: a retry cannot help
        # the connection is still good, flow control included, for many more calls
        for _ in range(3):
            with pytest.raises(ResourceExhaustedError):
                await jd.list_nodes(_sized(5 * MiB))
        reply = await jd.list_nodes(_sized(3 * MiB))
        assert len(reply.nodes[0].name) == 3 * MiB


async def test_the_receive_limit_is_an_option(peer: Peer) -> None:
    async with JobDistributor.connect(peer.address, max_receive_message_size=8 * MiB) as jd:
        assert len((await jd.list_nodes(_sized(5 * MiB))).nodes[0].name) == 5 * MiB
    async with JobDistributor.connect(peer.address, max_receive_message_size=None) as jd:
        assert len((await jd.list_nodes(_sized(5 * MiB))).nodes[0].name) == 5 * MiB
    async with JobDistributor.connect(peer.address, max_receive_message_size=1000) as jd:
        with pytest.raises(ResourceExhaustedError):
            await jd.list_nodes(_sized(2000))


async def test_an_oversized_request_is_refused_before_anything_is_sent(peer: Peer) -> None:
    big = node.RegisterNodeRequest(name="n" * (2 * MiB), public_key="ab" * 32)
    async with JobDistributor.connect(peer.address, max_send_message_size=MiB) as jd:
        with pytest.raises(ResourceExhaustedError) as info:
            await jd.register_node(big)
        assert "max_send_message_size" in str(info.value) and info.value.local
    assert peer.nodes.register_calls == 0 and peer.nodes.metadata == []
    async with JobDistributor.connect(peer.address) as jd:  # default: no send limit
        await jd.register_node(big)
    assert peer.nodes.register_calls == 1


# -- caller identity


async def test_user_agent_and_request_ids_reach_the_server(peer: Peer) -> None:
    async with JobDistributor.connect(peer.address, metadata={"team": "ops"}) as jd:
        await jd.list_nodes()
        await jd.list_nodes()
        await jd.list_nodes(metadata={"x-request-id": "mine-123"})
    first, second, third = peer.nodes.metadata
    assert re.fullmatch(r"jdkit/\S+ grpclib/\S+", first["user-agent"].split(" grpc-")[0])
    assert first["user-agent"].startswith(f"jdkit/{jdkit.__version__} grpclib/")
    assert re.fullmatch(r"[0-9a-f]{32}", first["x-request-id"])
    assert first["x-request-id"] != second["x-request-id"]
    assert third["x-request-id"] == "mine-123" and third["team"] == "ops"


# -- min_version


async def test_min_version_is_checked_once_and_names_both_versions(peer: Peer) -> None:
    async with JobDistributor.connect(peer.address, min_version="1.5.0") as jd:
        with pytest.raises(VersionError) as info:
            await jd.list_nodes()
        assert "v1.4.0" in str(info.value) and "1.5.0" in str(info.value)
        with pytest.raises(VersionError):
            await jd.list_nodes()
    assert peer.nodes.list_calls == 0 and peer.app.calls == 1
    async with JobDistributor.connect(peer.address, min_version="v1.3") as jd:
        await asyncio.gather(*(jd.list_nodes() for _ in range(5)))
        await jd.check_version()
    assert peer.nodes.list_calls == 5 and peer.app.calls == 2


async def test_a_version_that_cannot_be_compared_is_an_error(peer: Peer) -> None:
    peer.app.version = "dev"
    async with JobDistributor.connect(peer.address, min_version="1.0") as jd:
        with pytest.raises(VersionError, match="cannot be compared") as info:
            await jd.check_version()
        assert info.value.reported == "dev" and info.value.minimum == "1.0"


async def test_providers_check_min_version_when_they_start() -> None:
    with pytest.raises(VersionError, match=jdkit.__version__):
        async with EmbeddedProvider(min_version="99.0"):
            pass
    async with EmbeddedProvider(min_version=jdkit.__version__) as jd:
        await jd.list_nodes()


async def test_a_bad_min_version_is_a_config_error() -> None:
    with pytest.raises(jdkit.ConfigError) as info:
        ClientOptions(min_version="latest")
    assert info.value.field == "min_version"


# -- a connection a proxy dropped while idle


class FreezingProxy:
    """A TCP proxy whose `freeze()` silently stops forwarding on the connections
    open at that moment (a middlebox dropping idle connections without a word);
    new connections are forwarded. Counts the bytes it swallowed from clients."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.frozen: set[int] = set()
        self.swallowed = 0
        self.connections = 0
        self._live: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze(self) -> None:
        self.frozen |= self._live

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        me = self.connections
        self._live.add(me)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            while data := await src.read(65536):
                if me in self.frozen:
                    if client:
                        self.swallowed += len(data)
                    continue
                dst.write(data)
                await dst.drain()

        try:
            await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, up_w):
                with contextlib.suppress(Exception):
                    w.close()


async def test_a_silently_dropped_idle_connection_is_found_before_a_write_is_sent() -> None:
    provider = EmbeddedProvider()
    async with provider:
        server = provider.server
        async with FreezingProxy(server.port) as proxy:
            opts = ClientOptions(keepalive_time=0.2, keepalive_timeout=0.5, timeout=10)
            async with JobDistributor.connect(f"127.0.0.1:{proxy.port}", options=opts) as jd:
                await jd.list_nodes()
                proxy.freeze()
                await asyncio.sleep(0.3)  # quiet for longer than keepalive_time
                reply = await jd.register_node(
                    node.RegisterNodeRequest(name="after-drop", public_key="cd" * 32)
                )
            assert reply.node is not None and reply.node.name == "after-drop"
            assert proxy.connections == 2  # found dead, replaced
            # only the probe's PING (17 bytes) went into the dead connection, no request
            assert proxy.swallowed <= 17 * 2
            assert server.write_calls == 1


async def test_without_probes_the_write_goes_into_the_void() -> None:
    """The control: with keepalive off the same write is sent on the dead connection."""
    provider = EmbeddedProvider()
    async with provider:
        server = provider.server
        async with FreezingProxy(server.port) as proxy:
            opts = ClientOptions(keepalive_time=None, timeout=1.5)
            async with JobDistributor.connect(f"127.0.0.1:{proxy.port}", options=opts) as jd:
                await jd.list_nodes()
                proxy.freeze()
                await asyncio.sleep(0.3)
                with pytest.raises(jdkit.DeadlineExceededError):
                    await jd.register_node(
                        node.RegisterNodeRequest(name="lost", public_key="ef" * 32)
                    )
            assert proxy.swallowed > 17 * 2  # the request itself went in
            assert server.write_calls == 0
