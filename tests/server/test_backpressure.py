"""Slow readers cost bounded memory (issue 10, D3): a bounded-resource test.

The embedded JD runs in its own process (so its RSS is its own) with 1,000
labelled nodes. 20 raw HTTP/2 connections each send 100 ListNodes calls
(~225 KiB replies) and never read a byte. Before the per-connection call
cap this grew the server by 2.36 GiB and starved everyone else; now each
connection computes replies only while its unread reply bytes are under
`max_pending_reply_bytes`, so the growth stays under CAP_MIB while a normal
client keeps being served.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

import h2.config
import h2.connection
import psutil
import pytest

from jdkit import JobDistributor

CONNECTIONS, CALLS = 20, 100
#: Each connection computes replies only while under 1 MiB of unread reply
#: bytes (~5 replies of 225 KiB): 20 x ~1.1 MiB, plus the allocator's slack and
#: the rows of calls being computed. Measured: +67 MiB.
CAP_MIB = 120

SERVER = r"""
import asyncio, sys
from jdkit._server import EmbeddedJD
from jdkit.pb import label

async def main():
    async with EmbeddedJD.start() as srv:
        for i in range(1000):
            labels = [label.Label(key=f"key-{j}", value=f"value-{i}-{j}") for j in range(4)]
            await srv.state.register_node(f"node-{i:04d}", f"{i + 1:064x}", labels)
        print(srv.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start_server() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def slow_reader(port: int) -> socket.socket:
    """A connection that sends CALLS ListNodes requests and then never reads."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    for _ in range(CALLS):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/api.node.v1.NodeService/ListNodes"),
                (":authority", "localhost"),
                ("content-type", "application/grpc+proto"),
                ("te", "trailers"),
            ],
        )
        conn.send_data(sid, struct.pack(">?I", False, 0), end_stream=True)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep the kernel out of it
    sock.sendall(conn.data_to_send())
    return sock


def settle(proc: psutil.Process, seconds: float = 20.0) -> int:
    """The RSS once it has stopped growing for a second (or after `seconds`)."""
    end = time.monotonic() + seconds
    last, stable_since = proc.memory_info().rss, time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.25)
        rss = proc.memory_info().rss
        if rss > last + 1024 * 1024:
            last, stable_since = rss, time.monotonic()
        elif time.monotonic() - stable_since > 1.5:
            break
    return int(proc.memory_info().rss)


@pytest.mark.asyncio
async def test_slow_readers_cost_bounded_memory_and_others_are_served() -> None:
    child = start_server()
    socks: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port = int(await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60))
        server = psutil.Process(child.pid)
        async with JobDistributor.connect(f"127.0.0.1:{port}", timeout=10) as jd:
            reply = await jd.list_nodes()
            assert len(reply.nodes) == 1000
            size = len(bytes(reply))
            before = await asyncio.to_thread(settle, server)
            socks = [slow_reader(port) for _ in range(CONNECTIONS)]
            # meanwhile a normal caller: health and a full ListNodes, each in its deadline
            waits: list[float] = []
            for _ in range(10):
                t0 = time.perf_counter()
                await jd.check_health()
                waits.append(time.perf_counter() - t0)
                assert len((await jd.list_nodes()).nodes) == 1000
            after = await asyncio.to_thread(settle, server)
        growth = (after - before) / 2**20
        print(
            f"\nListNodes reply {size / 1024:.0f} KiB; {CONNECTIONS}x{CALLS} unread calls: "
            f"server RSS +{growth:.0f} MiB (cap {CAP_MIB}); health during the flood "
            f"median {statistics.median(waits) * 1000:.1f} ms, max {max(waits) * 1000:.1f} ms"
        )
        assert size > 100 * 1024
        assert growth < CAP_MIB
    finally:
        for s in socks:
            s.close()
        child.kill()
        child.wait(30)
