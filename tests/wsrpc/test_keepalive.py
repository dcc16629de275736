"""Keepalive per the facts: each side pings; only a pong extends the read
deadline. Shortened timings (18 s / 20 s in production) keep the test quick."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.frames import Frame, Opcode

from jdkit._wsrpc._keys import public_hex
from jdkit._wsrpc._rpc import encode_request, new_call_id
from jdkit._wsrpc._tls import ClientStream, client_context
from jdkit._wsrpc._ws import NodeTiming, client_handshake
from jdkit.pb import node
from tests.helpers.wsrpc_helpers import eventually, jd_env

pytestmark = pytest.mark.asyncio
SHORT = NodeTiming(ping_interval=0.2, read_timeout=0.6, write_timeout=1.0)


async def test_a_peer_that_never_answers_pings_is_dropped_and_a_live_one_stays() -> None:
    async with jd_env() as env:
        env.srv.nodeport.timing = SHORT
        live = env.node(timing=SHORT)
        live_id = await env.register(live)
        key = Ed25519PrivateKey.generate()
        reg = await env.jd.register_node(
            node.RegisterNodeRequest(name="mute", public_key=public_hex(key))
        )
        assert reg.node is not None
        mute_id = reg.node.id
        host, port = env.srv.node_address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), ssl=client_context(key))
        stream = ClientStream(reader, writer)
        proto, _ = await client_handshake(stream, host, int(port))
        # data does not extend the deadline: keep sending requests, never read the pings
        proto.send_frame(Frame(Opcode.BINARY, encode_request("Healthcheck", new_call_id(), b"")))
        for chunk in proto.data_to_send():
            writer.write(chunk)
        async with live:
            await eventually(lambda: mute_id in env.srv.nodeport.connected)
            for _ in range(6):
                await asyncio.sleep(0.2)
                proto.send_frame(
                    Frame(Opcode.BINARY, encode_request("Healthcheck", new_call_id(), b""))
                )
                for chunk in proto.data_to_send():
                    writer.write(chunk)
            await eventually(
                lambda: mute_id not in env.srv.nodeport.connected,
                timeout=3,
                what="mute dropped",
            )
            # the live node answered every ping (and pinged the JD): still connected
            assert live.connected and live.connections == 1
            assert live_id in env.srv.nodeport.connected
        writer.close()
