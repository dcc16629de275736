"""A loopback TCP proxy that injects faults between a client and a server.

Modes: "pass" forwards bytes; "reset" aborts every connection (RST);
"stall" forwards the first `stall_after` bytes from the server then stops
forwarding; "blackhole" accepts and swallows everything. Only ever listens on
and connects to 127.0.0.1; everything stops when the proxy closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.stall_after = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def drop_all(self) -> None:
        """Reset every open connection (as a crashing middlebox would)."""
        for w in list(self._writers):
            _rst(w)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            mode = self.mode
            if mode == "reset":
                _rst(writer)
                return
            if mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_w)
            budget = self.stall_after if mode == "stall" else None
            await asyncio.gather(_pipe(reader, up_w, None), _pipe(up_r, writer, budget))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, budget: int | None) -> None:
    while data := await src.read(65536):
        if budget is not None:
            data, budget = data[:budget], max(budget - len(data), 0)
            if not data:
                continue  # stalled: read and drop, never forward
        dst.write(data)
        await dst.drain()
    with contextlib.suppress(Exception):
        dst.close()


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
