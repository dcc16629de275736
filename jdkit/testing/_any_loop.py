"""Loop-agnostic clients: one real grpclib channel per event loop.

Fixtures outlive the tests' event loops, so the clients they hand out go over
an `AnyLoopChannel`, which opens a connection in each loop on first use there.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from grpclib.client import Channel
from grpclib.config import Configuration

from jdkit._channel import open_channel
from jdkit._client import JobDistributor
from jdkit._options import ClientOptions


class AnyLoopChannel(Channel):
    """A grpclib `Channel` usable from any event loop: it keeps one real channel
    per loop, opened on first use in that loop.

    A plain grpclib channel belongs to the loop it was made on. Test fixtures
    outlive loops (a session fixture sees one loop per test), so they hand out
    clients over this. Each per-loop channel is closed by `close()`, or at the
    latest when its loop's runner shuts down (a guard task in that loop closes
    it when cancelled), so no connection outlives its loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: Any = None,
        config: Configuration | None = None,
        codec: Any = None,
    ) -> None:
        # No super().__init__(): that would bind a loop now.
        self._jd_args: dict[str, Any] = dict(
            host=host, port=port, ssl=ssl, config=config, codec=codec
        )
        self._per_loop: dict[asyncio.AbstractEventLoop, tuple[Channel, asyncio.Event]] = {}
        self._protocol = None  # what grpclib's Channel.__del__ looks at

    def _for_running_loop(self) -> Channel:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._per_loop if lp.is_closed()]:
            del self._per_loop[other]
        entry = self._per_loop.get(loop)
        if entry is None:
            channel = Channel(**self._jd_args)
            done = asyncio.Event()
            self._per_loop[loop] = entry = (channel, done)
            guard = loop.create_task(_close_when_done(channel, done), name="jdkit-channel-guard")
            _GUARDS.add(guard)
            guard.add_done_callback(_GUARDS.discard)
        return entry[0]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return self._for_running_loop().request(*args, **kwargs)

    def close(self) -> None:
        """Close every per-loop channel whose loop is still open."""
        entries, self._per_loop = self._per_loop, {}
        for loop, (channel, done) in entries.items():
            if loop.is_closed():
                continue
            with contextlib.suppress(Exception):
                channel.close()
            with contextlib.suppress(Exception):
                done.set()

    def __del__(self) -> None:
        return None

    def __repr__(self) -> str:
        a = self._jd_args
        return f"<AnyLoopChannel {a['host']}:{a['port']} loops={len(self._per_loop)}>"


_GUARDS: set[asyncio.Task[None]] = set()


async def _close_when_done(channel: Channel, done: asyncio.Event) -> None:
    try:
        await done.wait()
    finally:
        channel.close()


def any_loop_client(
    address: str | None = None, *, options: ClientOptions | None = None, **overrides: Any
) -> tuple[JobDistributor, AnyLoopChannel]:
    """A `JobDistributor` for `address` over an `AnyLoopChannel` (see there).

    `options` / keyword overrides are `ClientOptions` as everywhere; `address`
    overrides their target. Returns the client and its channel;
    `channel.close()` closes it from sync code (a fixture's teardown),
    `await client.aclose()` from async code.
    """
    if address is not None:
        overrides["target"] = address
    opts = ClientOptions.of(options, **overrides)
    channel = open_channel(opts.parsed_target(), opts, AnyLoopChannel)
    return JobDistributor(channel, opts), channel
