"""Contract check: what the server does with bodies no well-behaved client sends.

Garbage bodies, malformed protobuf, unknown methods and fields, sent raw by grpcio.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from grpc import aio

import jdkit
from tests.helpers.grpcio_peer import Peer, app_pb2, node_pb2, pubkey, raw, rpc_paths, status_of


@pytest.mark.asyncio
@pytest.mark.parametrize("path", rpc_paths(streaming=False))
async def test_garbage_request_body_is_invalid_argument(peer: Peer, path: str) -> None:
    code, details = await status_of(raw(peer.channel, path)(b"\xff\xff\xff", timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "decode" in details


@pytest.mark.asyncio
async def test_garbage_request_body_on_server_stream_is_invalid_argument(peer: Peer) -> None:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    (path,) = rpc_paths(streaming=True)
    call = peer.channel.unary_stream(
        path, request_serializer=identity, response_deserializer=identity
    )(b"\xff\xff\xff", timeout=10)
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\x05ab",  # field 1, length 5, only 2 bytes follow
        b"\x0a",  # a tag with no length
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # varint longer than 10 bytes
        b"\x0f",  # wire type 7 does not exist
    ],
    ids=["truncated-string", "dangling-tag", "overlong-varint", "bad-wire-type"],
)
async def test_malformed_protobuf_is_invalid_argument(peer: Peer, body: bytes) -> None:
    code, details = await status_of(
        raw(peer.channel, "/api.node.v1.NodeService/GetNode")(body, timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details


@pytest.mark.asyncio
async def test_empty_body_is_the_default_message(peer: Peer) -> None:
    # zero bytes are a valid encoding of any message: every field at its default
    reply = await raw(peer.channel, "/api.app.v1.AppService/Version")(b"", timeout=10)
    assert app_pb2.VersionResponse.FromString(reply).version == jdkit.__version__


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/api.node.v1.NodeService/NoSuchMethod",
        "/api.node.v1.NoSuchService/GetNode",
        "/api.node.v2.NodeService/GetNode",
        "/grpc.health.v1.Health/List",
    ],
)
async def test_unknown_method_is_unimplemented(peer: Peer, path: str) -> None:
    code, _ = await status_of(raw(peer.channel, path)(b"", timeout=10))
    assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.asyncio
async def test_unknown_fields_are_ignored(peer: Peer) -> None:
    # a newer client may send fields this server does not know (field 99, varint)
    body = node_pb2.RegisterNodeRequest(name="n", public_key=pubkey(7)).SerializeToString()
    reply = await raw(peer.channel, "/api.node.v1.NodeService/RegisterNode")(
        body + b"\x98\x06\x01", timeout=10
    )
    assert node_pb2.RegisterNodeResponse.FromString(reply).node.public_key == pubkey(7)
