"""What one caller may cost the embedded JD: message sizes, streams, buffering, timeouts.

Defaults follow grpc-go (the real JD) where it has one: 4 MiB received per
message, no send limit. Where grpc-go has no bound (concurrent calls per
connection, handshake-less or half-open connections, idle connections) the
bound is ours and chosen so that a normal client never meets it:

- a connection may have `max_concurrent_streams` open streams (HTTP/2
  SETTINGS_MAX_CONCURRENT_STREAMS; a well-behaved client queues beyond it);
- of those, `max_active_calls_per_connection` read their request, run and
  write their reply at once; the rest wait (their request bytes stay unacked
  in the HTTP/2 window, so the client cannot push more than that window). So
  a client that never reads its replies holds at most that many replies in
  server memory, however many calls it sends. Health checks do not wait;
- while a connection has `max_pending_reply_bytes` of replies its peer has
  not taken (HTTP/2 flow control), its next calls do not start;
- at most `max_concurrent_handlers` calls compute their reply at once,
  server-wide; waiting calls are taken one connection at a time in turn, so
  one connection's hundred calls do not queue ahead of another's one;
- a call's request message must arrive within `request_timeout` of its
  headers (a half-open stream is answered DEADLINE_EXCEEDED and closed);
- a connection must send the HTTP/2 preface and SETTINGS within
  `handshake_timeout` of being accepted (TLS handshake included);
- a connection with no open stream for `idle_timeout` gets GOAWAY;
- after `keepalive_time` without a byte from the peer the server pings it,
  and closes the connection if nothing arrives within `keepalive_timeout`.

`ServerLimits` is the configuration; `ConnectionBudget` (one connection's call
slots and unread reply bytes) and `Workers` (the server-wide handler turns)
are the counters the gRPC layer (`_grpc`) holds calls to them with.
"""

from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass, fields

from jdkit._exceptions import ConfigError

MiB = 1024 * 1024

#: The largest value an HTTP/2 frame length or gRPC length prefix can state.
_MAX_MESSAGE = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-server limits; `EmbeddedJD.start(limits=ServerLimits(...))`.

    Sizes are bytes, times seconds; `None` turns a limit or timeout off.
    """

    max_receive_message_size: int = 4 * MiB
    max_send_message_size: int | None = None
    max_concurrent_streams: int = 100
    max_active_calls_per_connection: int = 16
    max_pending_reply_bytes: int = 1 * MiB
    max_concurrent_handlers: int = 8
    request_timeout: float | None = 30.0
    handshake_timeout: float | None = 20.0
    idle_timeout: float | None = 300.0
    keepalive_time: float | None = 60.0
    keepalive_timeout: float = 20.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name not in _REQUIRED:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f.name, f"{value!r} is not a number")
            if f.name in _INTEGERS:
                if not isinstance(value, int) or not 1 <= value <= _MAX_MESSAGE:
                    raise ConfigError(f.name, f"{value!r} must be a whole number in 1..2**31-1")
            elif not (math.isfinite(value) and value > 0):
                raise ConfigError(f.name, f"{value!r} must be a finite number of seconds > 0")

    @property
    def max_send(self) -> int:
        return _MAX_MESSAGE if self.max_send_message_size is None else self.max_send_message_size

    def tick(self) -> float:
        """How often a connection checks its timeouts: a quarter of the
        shortest one, between 10 ms and 5 s (timeouts fire that late at most)."""
        spans = [
            t
            for t in (self.handshake_timeout, self.idle_timeout, self.keepalive_time)
            if t is not None
        ]
        if self.keepalive_time is not None:
            spans.append(self.keepalive_timeout)
        return min(5.0, max(0.01, min(spans, default=5.0) / 4))


_INTEGERS = frozenset(
    {
        "max_receive_message_size",
        "max_send_message_size",
        "max_concurrent_streams",
        "max_active_calls_per_connection",
        "max_pending_reply_bytes",
        "max_concurrent_handlers",
    }
)
_REQUIRED = frozenset(
    {
        "max_receive_message_size",
        "max_concurrent_streams",
        "max_active_calls_per_connection",
        "max_pending_reply_bytes",
        "max_concurrent_handlers",
        "keepalive_timeout",
    }
)

DEFAULT_LIMITS = ServerLimits()


class ConnectionBudget:
    """One connection's budget: call slots, and the reply bytes it has not
    taken yet. While those reach `max_pending_reply_bytes`, its new calls
    wait: a client that does not read its replies stops getting more."""

    def __init__(self, limits: ServerLimits) -> None:
        self.slots = asyncio.Semaphore(limits.max_active_calls_per_connection)
        self.max_pending = limits.max_pending_reply_bytes
        self.pending = 0
        self._room = asyncio.Event()
        self._room.set()

    def sending(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.max_pending:
            self._room.clear()

    def sent(self, n: int) -> None:
        self.pending -= n
        if self.pending < self.max_pending:
            self._room.set()

    async def room(self) -> None:
        await self._room.wait()


class Workers:
    """Server-wide turns at computing a reply, at most `size` at once.

    Waiting calls are served one connection at a time, in turn (round robin),
    not first come first served: a connection that queued 100 calls delays
    another connection's one call by at most one turn per connection. A turn
    covers running the handler and encoding the reply, not reading the
    request or writing the reply (a slow peer must not hold one).
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self._queues: collections.OrderedDict[
            ConnectionBudget, collections.deque[asyncio.Future[None]]
        ] = collections.OrderedDict()

    async def acquire(self, conn: ConnectionBudget) -> None:
        if self.free > 0 and not self._queues:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(conn, collections.deque()).append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the turn came as we were cancelled: pass it on
            else:
                queue = self._queues.get(conn)
                if queue is not None and fut in queue:
                    queue.remove(fut)
                    if not queue:
                        del self._queues[conn]
            raise

    def release(self) -> None:
        while self._queues:
            conn, queue = next(iter(self._queues.items()))
            fut = queue.popleft()
            if queue:
                self._queues.move_to_end(conn)
            else:
                del self._queues[conn]
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1
