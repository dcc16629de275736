"""gzip both ways (issue 10, item 7), interop-tested with grpcio in both roles.

- grpcio client sending gzip -> the embedded JD (grpclib alone answers UNIMPLEMENTED);
- the embedded JD compresses replies for a caller that accepts gzip, and not
  for one that does not (seen on the wire with raw h2);
- jdkit's client with compression="gzip" -> a grpcio server that compresses
  its replies, and -> the embedded JD.
"""

from __future__ import annotations

import asyncio
import gzip
import struct
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from grpc import aio

from jdkit import ClientOptions, JobDistributor, ResourceExhaustedError
from jdkit._exceptions import ConfigError
from jdkit._server import EmbeddedJD
from jdkit._server._limits import MiB, ServerLimits
from jdkit.pb import job, label, node
from tests.helpers.grpcio import stubs
from tests.helpers.server_fixtures import pubkey, spec

pytestmark = pytest.mark.asyncio

node_pb2: Any = stubs("v1.node.node_pb2")
node_grpc: Any = stubs("v1.node.node_pb2_grpc")
job_pb2: Any = stubs("v1.job.job_pb2")
job_grpc: Any = stubs("v1.job.job_pb2_grpc")


async def _nodes(srv: EmbeddedJD, n: int) -> list[str]:
    ids = []
    for i in range(n):
        labels = [label.Label(key="env", value="dev"), label.Label(key="i", value=str(i))]
        ids.append((await srv.state.register_node(f"node-{i:04d}", pubkey(i + 1), labels)).id)
    return ids


async def test_grpcio_client_with_gzip_is_served_both_ways() -> None:
    async with EmbeddedJD.start() as srv:
        (node_id,) = await _nodes(srv, 1)
        await _nodes_more(srv)
        async with aio.insecure_channel(srv.address, compression=grpc.Compression.Gzip) as ch:
            jobs = job_grpc.JobServiceStub(ch)
            big = spec(extra="# " + "compressible " * 20_000 + "\n")
            resp = await jobs.ProposeJob(job_pb2.ProposeJobRequest(node_id=node_id, spec=big))
            assert resp.proposal.spec == big  # stored and echoed through gzip both ways
            nodes = node_grpc.NodeServiceStub(ch)
            listed = await nodes.ListNodes(node_pb2.ListNodesRequest())
            assert len(listed.nodes) == 201


async def _nodes_more(srv: EmbeddedJD) -> None:
    for i in range(200):
        await srv.state.register_node(f"more-{i:04d}", pubkey(1000 + i), [])


async def raw_list_nodes(port: int, accept: str | None) -> tuple[dict[str, str], bytes]:
    """ListNodes on a raw h2 connection: (response headers, the framed reply bytes)."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/api.node.v1.NodeService/ListNodes"),
        (":authority", "localhost"),
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
    ]
    if accept is not None:
        headers.append(("grpc-accept-encoding", accept))
    conn.send_headers(sid, headers)
    conn.send_data(sid, struct.pack(">?I", False, 0), end_stream=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: dict[str, str] = {}
    body = b""
    try:
        writer.write(conn.data_to_send())
        done = False
        while not done:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    got.update((str(k), str(v)) for k, v in ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    return got, body


async def test_replies_are_compressed_only_for_callers_that_accept_it() -> None:
    async with EmbeddedJD.start() as srv:
        await _nodes(srv, 300)
        plain_headers, plain = await raw_list_nodes(srv.port, None)
        assert "grpc-encoding" not in plain_headers and plain[0] == 0
        headers, framed = await raw_list_nodes(srv.port, "identity, gzip")
        assert headers["grpc-status"] == "0" and headers["grpc-encoding"] == "gzip"
        assert framed[0] == 1
        (length,) = struct.unpack(">I", framed[1:5])
        payload = gzip.decompress(framed[5 : 5 + length])
        assert payload == plain[5:]
        assert len(framed) < len(plain) / 3
        print(f"\nListNodes, 300 nodes: {len(plain)} bytes plain, {len(framed)} gzip")
    async with EmbeddedJD.start(compression=None) as srv:
        await _nodes(srv, 50)
        headers, framed = await raw_list_nodes(srv.port, "gzip")
        assert "grpc-encoding" not in headers and framed[0] == 0


async def test_small_replies_go_uncompressed_even_when_gzip_is_accepted() -> None:
    async with EmbeddedJD.start() as srv:
        await _nodes(srv, 1)
        _, framed = await raw_list_nodes(srv.port, "gzip")
        assert framed[0] == 0 and len(framed) < 1024  # flag 0 is allowed per message


async def test_jdkit_client_sends_gzip_to_the_embedded_jd() -> None:
    limits = ServerLimits(max_receive_message_size=1 * MiB)
    async with EmbeddedJD.start(limits=limits) as srv:
        (node_id,) = await _nodes(srv, 1)
        big = spec(extra="# " + "x" * (2 * MiB) + "\n")  # 2 MiB plain, ~10 KiB as gzip
        async with JobDistributor.connect(srv.address, compression="gzip", timeout=10) as jd:
            # proves the request went compressed: the server's check is on the
            # decompressed size, and only a gzip body is small enough to get there
            with pytest.raises(ResourceExhaustedError, match="decompresses to more than"):
                await jd.propose_job(job.ProposeJobRequest(node_id=node_id, spec=big))
            small = spec(extra="# " + "y" * 500_000 + "\n")
            resp = await jd.propose_job(job.ProposeJobRequest(node_id=node_id, spec=small))
            assert resp.proposal is not None and resp.proposal.spec == small
            await _nodes_more(srv)
            assert len((await jd.list_nodes()).nodes) == 201
        async with JobDistributor.connect(srv.address, timeout=10) as jd:  # no compression
            with pytest.raises(ResourceExhaustedError, match="over the server's limit"):
                await jd.propose_job(job.ProposeJobRequest(node_id=node_id, spec=big))


class _Nodes(node_grpc.NodeServiceServicer):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        self.names: list[str] = []

    async def RegisterNode(self, request: Any, context: Any) -> Any:
        self.names.append(request.name)
        return node_pb2.RegisterNodeResponse(node=node_pb2.Node(id="n1", name=request.name))

    async def ListNodes(self, request: Any, context: Any) -> Any:
        return node_pb2.ListNodesResponse(
            nodes=[node_pb2.Node(id=f"node-{i}", name="same name " * 10) for i in range(2000)]
        )


async def test_jdkit_client_with_gzip_against_a_grpcio_server_that_compresses() -> None:
    server = aio.server(compression=grpc.Compression.Gzip)
    servicer = _Nodes()
    node_grpc.add_NodeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        opts = ClientOptions(target=f"127.0.0.1:{port}", compression="gzip", timeout=10)
        async with JobDistributor.connect(options=opts) as jd:
            name = "n" * 5000  # over MIN_COMPRESS_SIZE: sent compressed
            resp = await jd.register_node(node.RegisterNodeRequest(name=name, public_key="k"))
            assert resp.node is not None and resp.node.name == name
            assert servicer.names == [name]
            listed = await jd.list_nodes()
            assert len(listed.nodes) == 2000
        # and the reply limit holds on the decompressed size
        opts = opts.replace(max_receive_message_size=50_000)
        async with JobDistributor.connect(options=opts) as jd:
            with pytest.raises(ResourceExhaustedError):
                await jd.list_nodes()
    finally:
        await server.stop(None)


async def test_compression_option_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        ClientOptions(compression="snappy")
    assert info.value.field == "compression"
    with pytest.raises(ConfigError) as info:
        EmbeddedJD(compression="br")
    assert info.value.field == "compression"
