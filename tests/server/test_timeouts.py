"""Connection timeouts (issue 10, D4), with raw sockets and the `h2` library as
the peer: handshake-less connections, half-open streams, idle connections
and peers that stop answering pings are all closed; well-behaved clients
(jdkit's and grpcio) do not notice.

The timeouts are shortened to fractions of a second; the 10 s waits below
are bounds for "eventually", far above them, not speed checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from grpc import aio

from jdkit import JobDistributor
from jdkit._server import EmbeddedJD
from jdkit._server._limits import ServerLimits
from tests.helpers.grpcio import stubs

VERSION = "/api.app.v1.AppService/Version"
BOUND = 10.0  # seconds: "it happens", not "it is fast"


def grpc_headers(path: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
    ]


def text_headers(ev: Any) -> list[tuple[str, str]]:
    """An event's headers; str, not bytes as h2's types say, under header_encoding."""
    headers: list[tuple[str, str]] = list(ev.headers)
    return headers


class RawH2:
    """A client connection driven by hand: it answers pings only when asked to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.events: list[h2.events.Event] = []

    @classmethod
    async def open(cls, port: int, *, preface: bool = True) -> RawH2:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self = cls(reader, writer)
        if preface:
            self.conn.initiate_connection()
            self.flush()
        return self

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def pump(self, *, answer: bool = True, timeout: float = BOUND) -> bool:
        """Read once; False at EOF. `answer=False` reads bytes without feeding
        h2, so nothing (no ping ack) is ever sent back."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            return False
        if answer:
            self.events += self.conn.receive_data(data)
            self.flush()
        return True

    async def until_closed(self, *, answer: bool = True) -> None:
        async def go() -> None:
            while await self.pump(answer=answer):
                pass

        await asyncio.wait_for(go(), BOUND)

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def raw_h2_to(
    limits: ServerLimits, *, preface: bool = True
) -> AsyncIterator[tuple[EmbeddedJD, RawH2]]:
    """An embedded JD with these limits and one hand-driven connection to it
    (closed on the way out, before the server stops)."""
    async with EmbeddedJD.start(limits=limits) as srv:
        c = await RawH2.open(srv.port, preface=preface)
        try:
            yield srv, c
        finally:
            c.close()


def short(**kw: float | None) -> ServerLimits:
    base: dict[str, float | None] = dict(
        handshake_timeout=None, idle_timeout=None, keepalive_time=None, request_timeout=None
    )
    return ServerLimits(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_silent_tcp_connection_is_closed_after_the_handshake_timeout() -> None:
    async with raw_h2_to(short(handshake_timeout=0.3), preface=False) as (_, c):
        await c.until_closed(answer=False)  # EOF: the server hung up


@pytest.mark.asyncio
async def test_a_connection_that_did_its_handshake_is_not_closed_by_it() -> None:
    async with raw_h2_to(short(handshake_timeout=0.2)) as (_, c):
        with pytest.raises(TimeoutError):  # nothing but the server's SETTINGS/ack
            while True:
                await c.pump(timeout=1.0)


@pytest.mark.asyncio
async def test_half_open_streams_are_answered_and_reaped() -> None:
    async with raw_h2_to(short(request_timeout=0.3)) as (_, c):
        sids = []
        for _ in range(100):  # headers, and never the request body or END_STREAM
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, grpc_headers(VERSION))
            sids.append(sid)
        c.flush()
        ended: set[int] = set()
        statuses: set[str] = set()

        async def wait() -> None:
            while len(ended) < len(sids):
                assert await c.pump()
                for ev in c.events:
                    if isinstance(ev, h2.events.TrailersReceived | h2.events.ResponseReceived):
                        statuses.update(v for k, v in text_headers(ev) if k == "grpc-status")
                    if isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                        ended.add(ev.stream_id)
                c.events.clear()

        await asyncio.wait_for(wait(), BOUND)
        # 16 held a call slot and waited for their body: DEADLINE_EXCEEDED;
        # the rest waited for a slot: RESOURCE_EXHAUSTED
        deadline, exhausted = (
            str(code.value[0])
            for code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
        )
        assert statuses == {deadline, exhausted}
        # the streams are gone on the server side too: a whole new call works
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, grpc_headers(VERSION))
        c.conn.send_data(sid, struct.pack(">?I", False, 0), end_stream=True)
        c.flush()
        got: dict[str, str] = {}

        async def answer() -> None:
            while "grpc-status" not in got:
                assert await c.pump()
                for ev in c.events:
                    if isinstance(ev, h2.events.TrailersReceived):
                        got.update(dict(text_headers(ev)))
                    if isinstance(ev, h2.events.DataReceived):
                        c.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                c.events.clear()

        await asyncio.wait_for(answer(), BOUND)
        assert got["grpc-status"] == "0"


@pytest.mark.asyncio
async def test_the_stream_cap_is_advertised_in_the_first_settings() -> None:
    async with raw_h2_to(ServerLimits(max_concurrent_streams=7)) as (_, c):
        while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events):
            assert await c.pump()
        assert c.conn.remote_settings.max_concurrent_streams == 7


@pytest.mark.asyncio
async def test_an_idle_connection_gets_goaway_and_clients_reconnect() -> None:
    async with raw_h2_to(short(idle_timeout=0.3)) as (srv, c):
        await c.until_closed()
        goaway = [e for e in c.events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway and goaway[0].error_code == 0  # NO_ERROR: a polite goodbye
        # jdkit's client and grpcio both carry on across the server's goodbye
        async with JobDistributor.connect(srv.address, timeout=BOUND) as jd:
            for _ in range(3):
                assert (await jd.version()).version
                await asyncio.sleep(0.6)
        app_grpc = stubs("v1.app.app_pb2_grpc")
        app_pb2 = stubs("v1.app.app_pb2")
        async with aio.insecure_channel(srv.address) as channel:
            stub = app_grpc.AppServiceStub(channel)
            for _ in range(3):
                assert (await stub.Version(app_pb2.VersionRequest(), timeout=BOUND)).version
                await asyncio.sleep(0.6)


@pytest.mark.asyncio
async def test_a_peer_that_stops_answering_pings_is_closed() -> None:
    async with raw_h2_to(short(keepalive_time=0.2, keepalive_timeout=0.2)) as (_, c):
        await c.pump()  # the server's SETTINGS
        await c.until_closed(answer=False)  # we go deaf: no ping ack, no bytes


@pytest.mark.asyncio
async def test_a_peer_that_answers_pings_stays_connected() -> None:
    async with raw_h2_to(short(keepalive_time=0.1, keepalive_timeout=0.3)) as (srv, c):

        async def listen() -> None:
            while await c.pump():
                pass

        with pytest.raises(TimeoutError):  # still open after ~10 ping rounds
            await asyncio.wait_for(listen(), 1.5)
        pings = [e for e in c.events if isinstance(e, h2.events.PingReceived)]
        assert len(pings) >= 2
        c.close()  # done with the raw peer while jdkit's client talks to the server
        async with JobDistributor.connect(srv.address, timeout=BOUND) as jd:
            assert (await jd.version()).version
            await asyncio.sleep(1.0)  # several pings, answered by grpclib's h2
            assert (await jd.version()).version
