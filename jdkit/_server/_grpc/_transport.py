"""The embedded JD's HTTP/2 side: grpclib's server, protocol and per-connection
handler, with what grpclib lacks for a server facing untrusted peers.

`_Protocol` adds handshake, idle and keepalive timeouts and a configurable
stream cap; `_Handler` answers malformed gRPC headers with INVALID_ARGUMENT
(grpclib would say UNKNOWN) and hands each call its headers and its
connection's budget (`_limits.ConnectionBudget`); `Server` remembers its
connections so a stopped server can end them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpclib.config
import grpclib.server
from grpclib.const import Status
from grpclib.metadata import Deadline
from grpclib.protocol import Connection, EventsProcessor, H2Protocol, _set_nodelay
from h2.connection import H2Connection
from h2.events import RemoteSettingsChanged
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from jdkit._server._limits import DEFAULT_LIMITS, ConnectionBudget, ServerLimits

log = logging.getLogger("jdkit.server")


@dataclass(slots=True)
class CallInfo:
    """What the connection knows about one call before its handler runs."""

    headers: dict[str, str]
    conn: ConnectionBudget
    #: The request message's decoded size; a large request makes a large
    #: reply likely (most replies echo what was written), encoded off the loop.
    request_size: int = 0


def call_of(stream: grpclib.server.Stream[Any, Any]) -> CallInfo:
    call: CallInfo | None = getattr(stream._stream, "jdkit_call", None)
    if call is None:  # pragma: no cover - every stream comes through _Handler.accept
        call = CallInfo({}, ConnectionBudget(DEFAULT_LIMITS))
    return call


def _header_problem(headers: Any) -> str | None:
    """Why a request's headers are malformed in a way grpclib would answer
    with UNKNOWN; None when they are fine (or not a gRPC request at all)."""
    hmap = dict(headers)
    if hmap.get(":method") != "POST":
        return None
    ctype = hmap.get("content-type")
    if ctype is None or not ctype.startswith("application/grpc"):
        return f"content-type {ctype!r} is not gRPC; send application/grpc+proto"
    sub = ctype.partition("+")[2]
    if sub not in ("", "proto"):
        return f"content-type {ctype!r} is not supported; this server speaks application/grpc+proto"
    if hmap.get("te") != "trailers":
        return 'the "te: trailers" header is missing'
    try:
        Deadline.from_headers(headers)
    except ValueError:
        return f"grpc-timeout header {hmap.get('grpc-timeout')!r} is malformed"
    return None


class _Handler(grpclib.server.Handler):
    """One per connection: refuses malformed headers, and hands each call
    its headers and the connection's budget."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = ConnectionBudget(limits)

    def accept(self, stream: Any, headers: Any, release_stream: Callable[[], Any]) -> None:
        problem = _header_problem(headers)
        if problem is None:
            stream.jdkit_call = CallInfo(dict(headers), self.budget)
            super().accept(stream, headers, release_stream)
            return

        async def refuse() -> None:
            try:
                await grpclib.server._abort(stream, 200, Status.INVALID_ARGUMENT, problem)
            except Exception:  # the peer may already be gone
                log.debug("could not refuse malformed request", exc_info=True)
            finally:
                release_stream()

        self.__gc_step__()
        self._tasks[stream] = self.loop.create_task(refuse())


class _Protocol(H2Protocol):
    """grpclib's HTTP/2 protocol with our stream cap and connection timeouts.

    One timer per connection, every `limits.tick()` seconds, checks the
    handshake deadline, idleness and keepalive; grpclib's own keepalive
    (which sends at most one ping per 5 minutes) is off.
    """

    def __init__(
        self, handler: _Handler, config: Any, h2_config: Any, limits: ServerLimits
    ) -> None:
        super().__init__(handler, config, h2_config)
        self.limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._settings_seen = False
        self._opened = self._last_recv = 0.0
        self._idle_since: float | None = None
        self._ping_sent: float | None = None

    def connection_made(self, transport: Any) -> None:
        # grpclib's connection_made, with our SETTINGS_MAX_CONCURRENT_STREAMS in
        # the first SETTINGS frame (h2 enforces it on inbound streams at once).
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_nodelay(sock)
        h2_conn = H2Connection(config=self.h2_config)
        h2_conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
            },
        )
        h2_conn.initiate_connection()
        initial = h2_conn.local_settings.initial_window_size
        conn_delta = self.config.http2_connection_window_size - initial
        stream_delta = self.config.http2_stream_window_size - initial
        if conn_delta:
            h2_conn.increment_flow_control_window(conn_delta)
        if stream_delta:
            h2_conn.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: self.config.http2_stream_window_size}
            )
        self.connection = Connection(h2_conn, transport, config=self.config)
        self.connection.flush()
        self.connection.initialize()
        self.processor = EventsProcessor(self.handler, self.connection)
        loop = asyncio.get_running_loop()
        self._opened = self._last_recv = loop.time()
        self._timer = loop.call_later(self.limits.tick(), self._tick)

    def data_received(self, data: bytes) -> None:
        self._last_recv = asyncio.get_running_loop().time()
        self._ping_sent = None  # any byte from the peer shows it is alive
        try:
            events = self.connection.feed(data)
        except ProtocolError:
            log.debug("HTTP/2 protocol error from %s", self._peer(), exc_info=True)
            self.connection.flush()  # the GOAWAY h2 queued, naming the error
            self.processor.close("Protocol error")
            return
        self.connection.flush()
        processors = getattr(self.processor, "processors", {})
        for event in events:
            if isinstance(event, RemoteSettingsChanged):
                self._settings_seen = True
            # grpclib raises on event types it has no handler for (an unknown
            # frame type, for one), which would kill the connection; skip them
            if type(event) in processors:
                self.processor.process(event)
        self.connection.flush()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _peer(self) -> str:
        try:
            addr = self.connection.get_peer().addr()
        except Exception:
            return "?"
        return f"{addr[0]}:{addr[1]}" if addr else "?"

    def _close(self, why: str) -> None:
        log.info("closing the connection from %s: %s", self._peer(), why)
        self.processor.close(why)

    def _tick(self) -> None:
        self._timer = None
        if self.connection.is_closing():
            return
        loop = asyncio.get_running_loop()
        now, lim = loop.time(), self.limits
        h2_conn = self.connection._connection
        if not self._settings_seen:
            if lim.handshake_timeout is not None and now - self._opened >= lim.handshake_timeout:
                self._close(f"no HTTP/2 preface and SETTINGS within {lim.handshake_timeout:g} s")
                return
        elif lim.idle_timeout is not None:
            if self.processor.streams:
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= lim.idle_timeout:
                h2_conn.close_connection()  # GOAWAY, NO_ERROR: "reconnect when you need me"
                self.connection.flush()
                self._close(f"no call for {lim.idle_timeout:g} s (idle_timeout)")
                return
        if lim.keepalive_time is not None:
            if self._ping_sent is not None:
                if now - self._ping_sent >= lim.keepalive_timeout:
                    self._close(f"no answer to a keepalive ping within {lim.keepalive_timeout:g} s")
                    return
            elif now - self._last_recv >= lim.keepalive_time:
                h2_conn.ping(os.urandom(8))
                self.connection.flush()
                self._ping_sent = now
        self._timer = loop.call_later(lim.tick(), self._tick)


class Server(grpclib.server.Server):
    """grpclib's server, answering malformed gRPC headers with INVALID_ARGUMENT
    instead of UNKNOWN, with the limits of `_limits.ServerLimits` (relies on
    grpclib internals; grpclib is pinned <0.5).

    It also remembers its connections: grpclib's `close()` stops listening but
    leaves established HTTP/2 connections open, so a stopped server would keep
    answering clients on them. `close_connections()` ends them, and clients
    reconnect to whatever listens next.
    """

    def __init__(self, *args: Any, limits: ServerLimits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        kwargs.setdefault("config", grpclib.config.Configuration(_keepalive_time=None))
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _Handler(
            self._mapping,
            self._codec,
            self._status_details_codec,
            self.__dispatch__,
            limits=self.limits,
        )
        self._handlers.add(handler)
        protocol = _Protocol(handler, self._config, self._h2_config, self.limits)
        self._protocols.add(protocol)
        return protocol

    async def start_on(self, sock: Any, ssl: Any = None) -> None:
        """Serve on a listening socket; the TLS handshake counts against the
        handshake timeout (asyncio's own default would be 60 s)."""
        if self._server is not None:
            raise RuntimeError("Server is already started")
        tls_timeout = self.limits.handshake_timeout if ssl is not None else None
        self._server = await self._loop.create_server(
            self._protocol_factory,
            sock=sock,
            ssl=ssl,
            ssl_handshake_timeout=tls_timeout,
        )
        self._server_closed_fut = self._loop.create_future()

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()
