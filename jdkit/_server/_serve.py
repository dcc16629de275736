"""Run an embedded JD as a process's whole job: until SIGINT/SIGTERM.

What `jdkit serve`, `jdkit.server.serve` and `python -m jdkit._server` run;
an application embedding a JD uses `EmbeddedJD` directly and keeps its own
interpreter settings and signal handlers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Unpack

from jdkit._server._config import ServeOptions
from jdkit._server._db import is_memory
from jdkit._server._embedded import EmbeddedJD, Starting
from jdkit._signals import stop_on_signals

#: GIL switch interval for a process that is a JD server (Python's default is 5 ms).
SERVING_SWITCH_INTERVAL = 0.001


def tune_for_serving() -> None:
    """Tune the interpreter of a process whose job is serving (`jdkit serve`,
    `python -m jdkit._server`), not of an application embedding a JD.

    Large decodes and spec parses run in worker threads, but they hold the
    GIL, and the event loop waits up to the switch interval for it each time
    it wakes. At Python's 5 ms a health check during a 3.9 MiB ProposeJob
    took up to ~150 ms; at 1 ms, ~35 ms.
    """
    sys.setswitchinterval(SERVING_SWITCH_INTERVAL)


async def run_until_signalled(starting: Starting) -> None:
    """Start, print `listening on HOST:PORT`, stop gracefully on SIGINT/SIGTERM."""
    tune_for_serving()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        async with starting as srv:
            print(f"listening on {srv.address}", flush=True)
            if srv.healthz_port is not None:
                print(f"healthz on http://{srv.host}:{srv.healthz_port}/healthz", flush=True)
            if srv.node_port is not None:
                print(f"node port on {srv.node_address}", flush=True)
            await stop.wait()


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    db: str = ":memory:",
    **options: Unpack[ServeOptions],
) -> None:
    """Run an embedded JD until SIGINT/SIGTERM; `options` are `EmbeddedJD`'s.

    `csa_secret` defaults to $CSA_KEY_ENCRYPTION_SECRET; a file or Postgres
    database without either is refused unless `insecure_dev_secret=True`
    (see `EmbeddedJD`).
    """
    if (
        options.get("csa_secret") is None
        and options.get("insecure_dev_secret", False)
        and not os.environ.get("CSA_KEY_ENCRYPTION_SECRET")
        and not is_memory(db)
    ):
        print(
            "warning: no CSA_KEY_ENCRYPTION_SECRET; the CSA key is sealed with the public "
            "dev secret (--insecure-dev-secret)",
            file=sys.stderr,
            flush=True,
        )
    await run_until_signalled(EmbeddedJD.start(host=host, port=port, db=db, **options))
