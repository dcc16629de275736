"""Stop a long-running command on SIGINT/SIGTERM.

Shared by the two processes that run until a signal: `jdkit serve` /
`python -m jdkit._server` (the server side) and `jdkit node simulate` (the
node side), which is why it is a core-level module both sides may import
(not in `jdkit._core`, which holds JD's rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set `stop` on SIGINT/SIGTERM while inside; where the running loop cannot
    take signal handlers (not the main thread, Windows), nothing is installed."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
