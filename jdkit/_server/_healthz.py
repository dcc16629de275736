"""HTTP `GET /healthz` on its own port, as a real JD container serves it.

A few lines of asyncio rather than a web framework: one path, no bodies in,
200 while serving and 503 once shutdown has begun.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("jdkit.server")

_MAX_HEADER_LINES = 100
_READ_TIMEOUT = 5.0


class HealthzServer:
    def __init__(self, server: asyncio.Server, healthy: Callable[[], bool]) -> None:
        self._server = server
        self._healthy = healthy
        self.port: int = server.sockets[0].getsockname()[1]

    @classmethod
    async def start(cls, host: str, port: int, healthy: Callable[[], bool]) -> HealthzServer:
        holder: list[HealthzServer] = []

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await holder[0]._handle(r, w)

        server = await asyncio.start_server(on_conn, host, port)
        holder.append(cls(server, healthy))
        return holder[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
            for _ in range(_MAX_HEADER_LINES):
                header = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
                if header in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            method = parts[0] if parts else ""
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            if path != "/healthz":
                status, body = "404 Not Found", "not found\n"
            elif method not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", "use GET\n"
            elif self._healthy():
                status, body = "200 OK", "ok\n"
            else:
                status, body = "503 Service Unavailable", "shutting down\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write((head + ("" if method == "HEAD" else body)).encode())
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()
