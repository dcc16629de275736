"""WebSocket on top of any byte stream, with websockets' sans-I/O protocol.

The JD side's TLS is pyOpenSSL over memory BIOs (stdlib `ssl` cannot check
client keys, see `_tls`), so the WebSocket layer must run over bytes we hand
it; websockets' sans-I/O `ServerProtocol`/`ClientProtocol` do exactly that
(framing, masking, ping answers, closing handshake, size limits), and the
node side uses the same code over a stdlib TLS stream. What stays here is
I/O and wsrpc's timing rules:

- each side pings every 18 s; the read deadline is 20 s and only a pong
  extends it (data does not);
- writes time out after 10 s;
- fragmented messages are reassembled; text and binary frames both carry
  an envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

try:  # the `node` extra: without it the names here import, and `require_extra` says what is missing
    from websockets.client import ClientProtocol
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request, Response
    from websockets.protocol import Protocol as WsProtocol
    from websockets.protocol import State
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri
except ModuleNotFoundError as exc:
    _missing: ModuleNotFoundError | None = exc
else:
    _missing = None

log = logging.getLogger("jdkit.wsrpc")

PING_INTERVAL = 18.0
READ_TIMEOUT = 20.0
WRITE_TIMEOUT = 10.0
CLIENT_MAX_SIZE = 100 * 1024 * 1024
SERVER_MAX_SIZE = 10 * 1024 * 1024
CLIENT_HANDSHAKE_TIMEOUT = 45.0
SERVER_HANDSHAKE_TIMEOUT = 10.0


def require_extra(what: str) -> None:
    """Raise an ImportError naming `jdkit[node]` when websockets is not installed."""
    if _missing is not None:
        raise ImportError(
            f"{what} needs the `node` extra: pip install 'jdkit[node]' ({_missing})"
        ) from _missing


class ByteStream(Protocol):
    """A bidirectional byte stream (TLS already applied)."""

    async def read(self) -> bytes:
        """Some bytes; b"" at end of stream."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class NodeTiming:
    """wsrpc's keepalive and write timing on a node connection, in seconds
    (`SimulatedNode(timing=...)`; tests shorten it): a ping every
    `ping_interval`, the connection dropped when no pong came within
    `read_timeout` or a write took over `write_timeout` (upstream's 18, 20, 10)."""

    ping_interval: float = PING_INTERVAL
    read_timeout: float = READ_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT


class HandshakeError(ConnectionError):
    """The WebSocket upgrade did not happen; `status` is the HTTP status when one came."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


def _flush(proto: WsProtocol, stream: ByteStream) -> bool:
    """Write what the protocol wants sent; True once it asked to end the stream."""
    eof = False
    for chunk in proto.data_to_send():
        if chunk:
            stream.write(chunk)
        else:
            eof = True
    return eof


async def server_handshake(
    stream: ByteStream,
    decide: Callable[[Request], Response | None],
    *,
    max_size: int = SERVER_MAX_SIZE,
    timeout: float = SERVER_HANDSHAKE_TIMEOUT,
) -> tuple[ServerProtocol, list[Frame]]:
    """Read the upgrade request (within `timeout`), answer it.

    `decide` returns None to accept (on any path, as upstream does) or a
    response to refuse with. Returns the open protocol and any frames that
    arrived with the request.
    """
    proto = ServerProtocol(max_size=max_size, logger=logging.getLogger("jdkit.wsrpc.ws"))

    async def read_request() -> Request:
        while True:
            data = await stream.read()
            if not data:
                proto.receive_eof()
            else:
                proto.receive_data(data)
            for ev in proto.events_received():
                if isinstance(ev, Request):
                    return ev
            if proto.handshake_exc is not None or not data:
                _flush(proto, stream)
                raise HandshakeError(f"no valid upgrade request: {proto.handshake_exc}")

    try:
        request = await asyncio.wait_for(read_request(), timeout)
    except TimeoutError:
        raise HandshakeError(f"no upgrade request within {timeout:g}s") from None
    refusal = decide(request)
    response = refusal if refusal is not None else proto.accept(request)
    proto.send_response(response)
    _flush(proto, stream)
    await stream.drain()
    if response.status_code != 101:
        raise HandshakeError(
            f"upgrade refused ({response.status_code})",
            response.status_code,
            bytes(response.body or b""),
        )
    if proto.handshake_exc is not None:
        raise HandshakeError(f"bad upgrade request: {proto.handshake_exc}")
    early = [ev for ev in proto.events_received() if isinstance(ev, Frame)]
    return proto, early


async def client_handshake(
    stream: ByteStream,
    host: str,
    port: int,
    *,
    max_size: int = CLIENT_MAX_SIZE,
    timeout: float = CLIENT_HANDSHAKE_TIMEOUT,
) -> tuple[ClientProtocol, list[Frame]]:
    """Send `GET /` upgrade to wss://host:port (no subprotocol, extension or
    extra header), wait for 101."""
    h = f"[{host}]" if ":" in host else host
    proto = ClientProtocol(
        parse_uri(f"wss://{h}:{port}/"),
        max_size=max_size,
        logger=logging.getLogger("jdkit.wsrpc.ws"),
    )
    proto.send_request(proto.connect())
    _flush(proto, stream)
    await stream.drain()

    async def read_response() -> Response:
        while True:
            data = await stream.read()
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            for ev in proto.events_received():
                if isinstance(ev, Response):
                    return ev
            if not data or proto.handshake_exc is not None:
                raise HandshakeError(f"no upgrade response: {proto.handshake_exc or 'EOF'}")

    try:
        await asyncio.wait_for(read_response(), timeout)  # the protocol checks it
    except TimeoutError:
        raise HandshakeError(f"no upgrade response within {timeout:g}s") from None
    exc = proto.handshake_exc
    if exc is not None:
        status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
        body = bytes(exc.response.body or b"") if isinstance(exc, InvalidStatus) else b""
        raise HandshakeError(f"upgrade refused: {exc}", status, body)
    early = [ev for ev in proto.events_received() if isinstance(ev, Frame)]
    return proto, early


def refuse(status: int, text: str) -> Response:
    """A plain-text HTTP answer that does not upgrade (e.g. 200 for a duplicate key)."""
    body = text.encode()
    headers = Headers(
        [
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


class WsConnection:
    """An open WebSocket: delivers each whole message to `on_message`.

    `run()` reads until the connection ends (peer close, EOF, protocol
    error, read deadline) and returns the reason as text.
    """

    def __init__(
        self,
        stream: ByteStream,
        proto: WsProtocol,
        on_message: Callable[[bytes], None],
        *,
        timing: NodeTiming | None = None,
        early: list[Frame] | None = None,
        name: str = "ws",
    ) -> None:
        self._stream = stream
        self._proto = proto
        self._on_message = on_message
        self._timing = timing or NodeTiming()
        self._early = early or []
        self._parts: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._deadline: asyncio.TimerHandle | None = None
        self._pinger: asyncio.TimerHandle | None = None
        self._done = asyncio.Event()
        self._reason = ""
        self.name = name

    # ------------------------------------------------------------ timing

    def _arm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(self._timing.read_timeout, self._expired)

    def _expired(self) -> None:
        self._finish(f"no pong within {self._timing.read_timeout:g}s")

    def _ping(self) -> None:
        if self._done.is_set() or self._proto.state is not State.OPEN:
            return
        try:
            self._proto.send_ping(os.urandom(4))
            self._send_pending()
        except Exception as exc:
            self._finish(f"ping failed: {exc!r}")
            return
        self._pinger = self._loop.call_later(self._timing.ping_interval, self._ping)

    def _finish(self, reason: str) -> None:
        if self._done.is_set():
            return
        self._reason = reason
        self._done.set()
        for h in (self._deadline, self._pinger):
            if h is not None:
                h.cancel()
        self._stream.close()

    # -------------------------------------------------------------- send

    def _send_pending(self) -> None:
        if _flush(self._proto, self._stream):
            self._finish("closed")

    async def send(self, data: bytes) -> None:
        """Send one binary message; ConnectionError if the connection is gone
        or the peer does not take it within the write timeout."""
        if self._done.is_set() or self._proto.state is not State.OPEN:
            raise ConnectionError(f"connection closed ({self._reason or 'closing'})")
        self._proto.send_binary(data)
        self._send_pending()
        try:
            await asyncio.wait_for(self._stream.drain(), self._timing.write_timeout)
        except TimeoutError:
            self._finish(f"write took over {self._timing.write_timeout:g}s")
            raise ConnectionError("write timed out") from None
        except (ConnectionError, OSError) as exc:
            self._finish(f"write failed: {exc!r}")
            raise ConnectionError(f"write failed: {exc}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closing handshake, briefly; then drop the stream."""
        if not self._done.is_set() and self._proto.state is State.OPEN:
            with contextlib.suppress(Exception):
                self._proto.send_close(code, reason)
                self._send_pending()
                await asyncio.wait_for(self._stream.drain(), 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), 1.0)
        self._finish(reason or "closed by us")

    # -------------------------------------------------------------- read

    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.PONG:
            self._arm_deadline()
        elif op in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._parts.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._parts)
                self._parts = []
                try:
                    self._on_message(data)
                except Exception:
                    log.exception("%s: message handler failed", self.name)

    async def run(self) -> str:
        self._arm_deadline()
        self._pinger = self._loop.call_later(self._timing.ping_interval, self._ping)
        for frame in self._early:
            self._frame(frame)
        self._early = []
        reader = asyncio.ensure_future(self._read_loop())
        waiter = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, waiter):
                if not t.done():
                    t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._finish(self._reason or "closed")
        return self._reason

    async def _read_loop(self) -> None:
        proto = self._proto
        while not self._done.is_set():
            try:
                data = await self._stream.read()
            except (ConnectionError, OSError) as exc:
                self._finish(f"read failed: {exc!r}")
                return
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            for ev in proto.events_received():
                if isinstance(ev, Frame):
                    self._frame(ev)
            self._send_pending()
            if proto.parser_exc is not None:
                self._finish(f"protocol error: {proto.parser_exc}")
                return
            if not data or proto.state is State.CLOSED:
                self._finish("closed by peer" if proto.close_rcvd else "EOF")
                return

    @property
    def is_open(self) -> bool:
        return not self._done.is_set() and self._proto.state is State.OPEN

    @property
    def reason(self) -> str:
        return self._reason
