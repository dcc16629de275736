"""Bad input on the JD's node port: whatever one client sends (garbage, wrong
envelopes, unknown methods, oversized messages, handshakes never finished),
the JD keeps serving every other node and never crashes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from jdkit._proto import cfm
from jdkit._proto.message import Message, Request
from jdkit._wsrpc._keys import public_hex
from jdkit._wsrpc._rpc import encode_request, new_call_id
from jdkit._wsrpc._tls import ClientStream, client_context
from jdkit._wsrpc._ws import client_handshake
from jdkit.pb import job, node
from tests.helpers.wsrpc_helpers import Env, eventually, jd_env

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async with jd_env() as e:
        yield e


async def still_serving(env: Env) -> None:
    """A fresh, well-behaved node connects, gets a proposal and approves it."""
    n = env.node(on_proposal="approve")
    node_id = await env.register(n)
    async with n:
        prop = await env.propose(node_id)
        await n.wait_until(lambda: bool(n.proposals) and n.proposals[0].answer == "approved")
        assert (await env.proposal(prop.id)).status == job.ProposalStatus.APPROVED


@dataclass
class RawPeer:
    """A registered node key speaking raw WebSocket frames to the node port."""

    stream: ClientStream
    proto: object
    node_id: str

    def send_frame(self, frame: Frame) -> None:
        self.proto.send_frame(frame)  # type: ignore[attr-defined]
        for chunk in self.proto.data_to_send():  # type: ignore[attr-defined]
            if chunk:
                self.stream.write(chunk)

    async def recv_messages(self, timeout: float) -> list[bytes]:
        """Whole data messages until `timeout` passes quietly or the JD closes."""
        out: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            while True:
                data = await asyncio.wait_for(self.stream.read(), timeout)
                if not data:
                    self.proto.receive_eof()  # type: ignore[attr-defined]
                    break
                self.proto.receive_data(data)  # type: ignore[attr-defined]
                for ev in self.proto.events_received():  # type: ignore[attr-defined]
                    if isinstance(ev, Frame) and ev.opcode in (Opcode.BINARY, Opcode.TEXT):
                        out.append(bytes(ev.data))
                for chunk in self.proto.data_to_send():  # type: ignore[attr-defined]
                    if chunk:
                        self.stream.write(chunk)
        return out

    @property
    def closed(self) -> bool:
        return self.proto.state is State.CLOSED  # type: ignore[attr-defined]


async def raw_peer(env: Env) -> RawPeer:
    key = Ed25519PrivateKey.generate()
    resp = await env.jd.register_node(
        node.RegisterNodeRequest(name="raw", public_key=public_hex(key))
    )
    assert resp.node is not None
    host, port = env.srv.node_address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=client_context(key))
    stream = ClientStream(reader, writer)
    proto, _ = await client_handshake(stream, host, int(port))
    return RawPeer(stream, proto, resp.node.id)


async def test_plain_tcp_garbage_and_plain_http(env: Env) -> None:
    host, port = env.srv.node_address.rsplit(":", 1)
    for payload in [b"\x00" * 100, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\xff\xff"]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 5)  # the JD hangs up
        writer.close()
    await still_serving(env)


async def test_never_finished_tls_handshake_is_cut_and_others_connect(env: Env) -> None:
    env.srv.nodeport.handshake_timeout = 0.5
    host, port = env.srv.node_address.rsplit(":", 1)
    silent = [await asyncio.open_connection(host, int(port)) for _ in range(20)]
    await still_serving(env)  # while 20 sockets sit in their TLS handshake
    for reader, writer in silent:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the JD
        writer.close()


async def test_never_finished_websocket_handshake(env: Env) -> None:
    env.srv.nodeport.ws_handshake_timeout = 0.5
    key = Ed25519PrivateKey.generate()
    await env.jd.register_node(node.RegisterNodeRequest(name="slow", public_key=public_hex(key)))
    host, port = env.srv.node_address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=client_context(key))
    await still_serving(env)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # no upgrade sent: cut
    writer.close()


async def test_tls_garbage_after_handshake(env: Env) -> None:
    key = Ed25519PrivateKey.generate()
    await env.jd.register_node(node.RegisterNodeRequest(name="g", public_key=public_hex(key)))
    host, port = env.srv.node_address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=client_context(key))
    writer.write(b"\xff" * 5000 + b"\r\n\r\n")
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await still_serving(env)


async def test_garbage_frames_and_wrong_envelopes_are_dropped_without_reply(env: Env) -> None:
    peer = await raw_peer(env)
    bad = [
        b"\xff\xfe\xfd",  # not protobuf
        b"\x12\x01",  # truncated request
        b"\x10\x00",  # request field with the wrong wire type
        bytes(Message()),  # neither request nor response
        encode_request("NoSuchMethod", new_call_id(), b""),
        encode_request("UpdateNode", "not-a-uuid", b""),
        encode_request("UpdateNode", new_call_id(), b"\x0a\xff\xff"),  # undecodable payload
    ]
    for data in bad:
        peer.send_frame(Frame(Opcode.BINARY, data))
    peer.send_frame(Frame(Opcode.TEXT, b"not an envelope either"))
    assert await peer.recv_messages(0.5) == []  # nothing answered
    assert not peer.closed
    # the same connection still works: a good Healthcheck in a text frame is answered
    call_id = new_call_id()
    peer.send_frame(
        Frame(Opcode.TEXT, bytes(Message(request=Request(method="Healthcheck", call_id=call_id))))
    )
    (answer,) = await peer.recv_messages(1.0)
    resp = Message.parse(answer).response
    assert resp is not None and resp.call_id == call_id and resp.error == ""
    await still_serving(env)


async def test_fragmented_message_is_reassembled(env: Env) -> None:
    peer = await raw_peer(env)
    call_id = new_call_id()
    data = encode_request("UpdateNode", call_id, bytes(cfm.UpdateNodeRequest(version="x" * 5000)))
    peer.send_frame(Frame(Opcode.BINARY, data[:100], fin=False))
    peer.send_frame(Frame(Opcode.CONT, data[100:3000], fin=False))
    peer.send_frame(Frame(Opcode.CONT, data[3000:], fin=True))
    msgs = await peer.recv_messages(1.0)
    # the JD answers UpdateNode, and after that first request sends its backlog (none here)
    resp = Message.parse(msgs[0]).response
    assert resp is not None and resp.call_id == call_id and resp.error == ""
    assert (await env.get_node(peer.node_id)).version == "x" * 5000


async def test_oversized_message_closes_that_connection_only(env: Env) -> None:
    peer = await raw_peer(env)
    other = env.node()
    await env.register(other)
    async with other:
        big = b"\x00" * (10 * 1024 * 1024 + 1)
        peer.send_frame(Frame(Opcode.BINARY, big[: 1024 * 1024], fin=False))
        for i in range(1, 11):
            chunk = big[i * 1024 * 1024 : (i + 1) * 1024 * 1024]
            with contextlib.suppress(ConnectionError):
                peer.send_frame(Frame(Opcode.CONT, chunk, fin=i == 10))
                await peer.stream.drain()
        await peer.recv_messages(5.0)
        assert peer.closed or peer.proto.close_code == 1009  # type: ignore[attr-defined]
        await eventually(lambda: peer.node_id not in env.srv.nodeport.connected)
        await other.healthcheck()
    await still_serving(env)


async def test_unknown_method_from_the_jd_side_view(env: Env) -> None:
    """The JD never waits forever for a node that does not answer."""
    env.srv.nodeport.call_timeout = 0.5
    peer = await raw_peer(env)
    # first request marks the node ready; the JD then delivers the proposal and
    # our raw peer never answers ProposeJob: the proposal stays undelivered
    peer.send_frame(Frame(Opcode.BINARY, encode_request("Healthcheck", new_call_id(), b"")))
    await peer.recv_messages(0.3)
    prop = await env.propose(peer.node_id)
    msgs = await peer.recv_messages(1.5)
    reqs = [Message.parse(m).request for m in msgs]
    assert [r.method for r in reqs if r is not None] == ["ProposeJob"]
    p = await env.proposal(prop.id)
    assert p.delivery_status == job.ProposalDeliveryStatus.UNSPECIFIED
    await still_serving(env)


async def test_node_side_read_limit_closes_an_oversized_message(env: Env) -> None:
    """The node's limit (100 MB by default, per the facts) is enforced: here a
    node that allows 2 KB gets a 5 KB ProposeJob and drops the connection."""
    n = env.node(on_proposal="ignore", max_size=2048)
    node_id = await env.register(n)
    async with n:
        big = job.ProposeJobRequest(node_id=node_id, spec=_spec_with_padding(5000))
        await env.jd.propose_job(big)
        await eventually(lambda: n.connections >= 1 and not n.connected, what="node dropped it")
        assert n.proposals == []
        assert (
            "1009" in str(n.last_error)
            or "too big" in str(n.last_error).lower()
            or ("protocol error" in str(n.last_error))
        )


def _spec_with_padding(size: int) -> str:
    import uuid

    return (
        'type = "offchainreporting2"\nschemaVersion = 1\n'
        f'externalJobID = "{uuid.uuid4()}"\n# {"x" * size}\n'
    )
