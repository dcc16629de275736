"""How a `SimulatedNode` reaches its JD: TLS with a pinned key, the WebSocket
handshake, the first `UpdateNode`, and reconnecting forever with backoff.

The pin is checked before a byte is sent, so nothing reaches a server that is
not the JD we were given. Errors that a retry cannot fix (our key refused,
the wrong JD key, another process with our key) end the first attempt at
once instead of looping; everything else is retried on `NodeBackoff`'s schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from jdkit._exceptions import ConfigError
from jdkit._proto import cfm
from jdkit._wsrpc._errors import (
    JDKeyMismatchError,
    NodeAlreadyConnectedError,
    NodeKeyRefusedError,
    NodeProtocolError,
)
from jdkit._wsrpc._keys import ed25519_key_from_cert, same_key
from jdkit._wsrpc._rpc import Endpoint, Handler
from jdkit._wsrpc._tls import ClientStream
from jdkit._wsrpc._ws import HandshakeError, NodeTiming, WsConnection, client_handshake

log = logging.getLogger("jdkit.node")

#: TLS alerts by which a server says it does not accept our certificate
_CERT_ALERTS = (
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "HANDSHAKE_FAILURE",
)


@dataclass(frozen=True)
class NodeBackoff:
    """A `SimulatedNode`'s reconnect schedule (`SimulatedNode(backoff=...)`), by
    default upstream's: 1 s, times 1.6, 20 % jitter either way, at most 120 s.

    Not the client's `RetryPolicy`: this is how long a node waits before dialling
    the JD again.
    """

    initial: float = 1.0
    factor: float = 1.6
    jitter: float = 0.2
    cap: float = 120.0

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.initial * self.factor**attempt)
        return max(0.0, base * (1 + self.jitter * random.uniform(-1, 1)))


def parse_address(address: str, field: str = "jd_node_address") -> tuple[str, int]:
    text = address.strip()
    for prefix in ("wss://", "ws://"):
        text = text.removeprefix(prefix)
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(field, f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _is_cert_refusal(exc: ssl.SSLError) -> bool:
    text = f"{exc.reason or ''} {exc}".upper()
    return "ALERT" in text and any(a in text for a in _CERT_ALERTS)


class NodeConnection:
    """The connection half of `SimulatedNode`: the reconnect loop and one session."""

    # set by SimulatedNode
    name: str
    public_key: str
    jd_node_address: str
    _host: str
    _port: int
    _jd_key: bytes
    handshake_timeout: float
    call_timeout: float
    max_size: int
    timing: NodeTiming
    backoff: NodeBackoff
    chain_config_errors: dict[str, str]
    last_error: BaseException | None
    connections: int
    _ctx: ssl.SSLContext | None
    _endpoint: Endpoint | None
    _ws: WsConnection | None
    _first: asyncio.Future[None] | None
    _stopping: bool

    if TYPE_CHECKING:

        def report(self) -> cfm.UpdateNodeRequest: ...

        def _handlers(self) -> dict[str, Handler]: ...

        async def _notify(self) -> None: ...

    async def _run(self) -> None:
        attempt = 0
        assert self._first is not None
        while not self._stopping:
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except (NodeKeyRefusedError, JDKeyMismatchError, NodeAlreadyConnectedError) as exc:
                self.last_error = exc
                if not self._first.done():
                    self._first.set_exception(exc)
                    self._first.exception()  # start(wait=False) may never await it
                    return
                log.warning("%s: %s", self.name, exc)
            except (
                OSError,
                ConnectionError,
                HandshakeError,
                NodeProtocolError,
                TimeoutError,
            ) as exc:
                self.last_error = exc
                log.info("%s: connection to %s failed: %r", self.name, self.jd_node_address, exc)
            except Exception as exc:  # a bug here must not end the reconnect loop silently
                self.last_error = exc
                log.warning("%s: connection attempt failed unexpectedly", self.name, exc_info=True)
            if self._stopping:
                return
            delay = self.backoff.delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        assert self._ctx is not None and self._first is not None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, ssl=self._ctx),
                self.handshake_timeout,
            )
        except TimeoutError:
            raise HandshakeError(f"TLS handshake took over {self.handshake_timeout:g}s") from None
        stream = ClientStream(reader, writer)
        try:
            # pin check first: nothing is sent to a server that is not our JD
            ssl_obj = writer.get_extra_info("ssl_object")
            try:
                der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            except ValueError:
                # the JD closed the TLS connection as soon as it was up (under TLS
                # 1.3 a refused client certificate shows only now): read its alert
                await self._raise_closed_early(reader)
            got = ed25519_key_from_cert(der) if der else None
            if got is None or not same_key(got, self._jd_key):
                raise JDKeyMismatchError(
                    self._jd_key.hex(), got.hex() if got else "no ed25519 certificate"
                )
            try:
                proto, early = await client_handshake(
                    stream,
                    self._host,
                    self._port,
                    max_size=self.max_size,
                    timeout=self.handshake_timeout,
                )
            except ssl.SSLError as exc:
                if _is_cert_refusal(exc):
                    raise NodeKeyRefusedError(self.public_key, exc.reason or str(exc)) from None
                raise
            except HandshakeError as exc:
                if exc.status == 200:
                    raise NodeAlreadyConnectedError(
                        f"the JD refused a second connection for node key {self.public_key}: "
                        "another process is connected with this key"
                    ) from None
                if exc.status == 403:
                    raise NodeKeyRefusedError(self.public_key, "HTTP 403") from None
                raise
            endpoint: Endpoint

            def on_message(data: bytes) -> None:
                endpoint.feed(data)

            ws = WsConnection(
                stream, proto, on_message, timing=self.timing, early=early, name=self.name
            )
            endpoint = Endpoint(ws.send, self._handlers(), name=f"{self.name}->jd")
            run = asyncio.ensure_future(ws.run())
            try:
                try:
                    resp = await endpoint.call(
                        "UpdateNode",
                        self.report(),
                        cfm.UpdateNodeResponse,
                        timeout=self.call_timeout,
                    )
                except NodeProtocolError:
                    if run.done():
                        raise ConnectionError(f"connection closed: {run.result()}") from None
                    raise
                self.chain_config_errors = {
                    k: v.message for k, v in resp.chain_config_errors.items()
                }
                self._ws, self._endpoint = ws, endpoint
                self.connections += 1
                if not self._first.done():
                    self._first.set_result(None)
                log.info("%s: connected to %s", self.name, self.jd_node_address)
                await self._notify()
                reason = await run
                self.last_error = ConnectionError(f"connection ended: {reason}")
                log.info("%s: disconnected: %s", self.name, reason)
            finally:
                endpoint.close()
                if not run.done():
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await run
                self._ws = self._endpoint = None
                await self._notify()
        finally:
            stream.close()

    async def _raise_closed_early(self, reader: asyncio.StreamReader) -> NoReturn:
        try:
            await asyncio.wait_for(reader.read(1), self.handshake_timeout)
        except ssl.SSLError as exc:
            if _is_cert_refusal(exc):
                raise NodeKeyRefusedError(self.public_key, exc.reason or str(exc)) from None
            raise ConnectionError(f"TLS connection failed: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"TLS connection closed at once: {exc!r}") from None
        raise ConnectionError("the JD closed the TLS connection right after the handshake")
