"""Malformed bytes over real gRPC: the client raises ProtocolError, the
embedded JD answers INVALID_ARGUMENT; neither crashes or builds a wrong object."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jdkit import JobDistributor, ProtocolError
from jdkit._codec import DecodeError, decode
from jdkit._methods import METHODS
from jdkit._server import EmbeddedJD
from jdkit.pb import node
from tests.helpers.server_fixtures import raw_call

GET_NODE = "/api.node.v1.NodeService/GetNode"
BAD_REPLIES = [
    b"\x0a\x05abc",  # node: length runs past the end
    b"\x0a\x02\x08\x01",  # node.id (a string) sent as a varint
    b"\x0a\x04\x0a\x02\xff\xfe",  # node.id not UTF-8
    b"\x0a\x02\x0b\x0c",  # a group inside node
    b"\x0a\x0c\x3a\x0a\x08" + b"\x80" * 8 + b"\x40",  # created_at past year 9999
]


class _RawCodec(CodecBase):
    """Sends handler-made bytes as they are: a server that answers garbage."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class _Answers:
    def __init__(self) -> None:
        self.body = b""
        self.calls = 0

    def __mapping__(self) -> dict[str, Handler]:
        return {GET_NODE: Handler(self._get_node, Cardinality.UNARY_UNARY, None, None)}

    async def _get_node(self, stream: Stream[Any, Any]) -> None:
        self.calls += 1
        await stream.recv_message()
        await stream.send_message(self.body)


@contextlib.asynccontextmanager
async def garbage_server() -> AsyncIterator[tuple[_Answers, int]]:
    answers = _Answers()
    server = Server([answers], codec=_RawCodec())
    await server.start("127.0.0.1", 0)
    try:
        assert server._server is not None
        sockets: Any = server._server.sockets  # type: ignore[attr-defined]
        yield answers, sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_malformed_reply_is_a_protocol_error() -> None:
    async with garbage_server() as (answers, port):
        async with JobDistributor.connect(f"127.0.0.1:{port}", timeout=5) as jd:
            for body in BAD_REPLIES:
                answers.body = body
                before = answers.calls
                with pytest.raises(ProtocolError, match=r"not decode as api\.node\.v1\.GetNode"):
                    await jd.get_node(node.GetNodeRequest(id="n"))
                assert answers.calls == before + 1  # the server's fault: not retried
            # and a good reply through the same server still decodes
            answers.body = bytes(node.GetNodeResponse(node=node.Node(id="n", name="x")))
            got = await jd.get_node(node.GetNodeRequest(id="n"))
            assert got.node == node.Node(id="n", name="x")


_REQUEST_PATHS = sorted(p for p, m in METHODS.items() if not m.streaming)


@pytest.mark.asyncio
async def test_malformed_requests_are_invalid_argument_on_every_method() -> None:
    # random garbage and mutations of good requests, on every unary method
    bodies = [
        b"\xff\xff\xff",
        b"\x0a\x05ab",
        b"\x0a\x02\xff\xfe",
        b"\x08" + b"\xff" * 11,
        b"\x0b\x0c",
        b"\x00\x01",
    ]
    async with EmbeddedJD.start() as srv:
        for path in _REQUEST_PATHS:
            for body in bodies:
                status, message = await raw_call(srv.port, path, body)
                assert status not in (Status.INTERNAL, Status.UNKNOWN), (path, body, message)
                try:
                    decode(METHODS[path].request, body)
                except DecodeError:
                    assert status == Status.INVALID_ARGUMENT, (path, body, status, message)
                    assert message and "does not decode as" in message
        async with JobDistributor.connect(srv.address) as jd:  # still serving
            assert (await jd.list_nodes()).nodes == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=40))
def test_random_bytes_decode_or_fail_cleanly_on_the_client_codec(body: bytes) -> None:
    from jdkit._codec import ClientCodec

    codec = ClientCodec()
    for cls in (node.GetNodeResponse, node.ListNodesResponse):
        try:
            got = codec.decode(body, cls)
        except ProtocolError:
            continue
        assert got == cls.parse(body)
