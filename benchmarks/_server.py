"""`python -m benchmarks._server [--token T]`: an embedded JD in its own process.

Prints `LISTENING host:port` once it accepts calls and stops when its stdin
closes (so it never outlives the benchmark that started it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from jdkit._server import EmbeddedJD
from jdkit._server._auth import StaticTokens


async def serve(token: str | None) -> None:
    auth = StaticTokens([token]) if token else None
    async with EmbeddedJD.start(auth=auth) as srv:
        print(f"LISTENING {srv.address}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # returns at EOF


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", default=None)
    asyncio.run(serve(parser.parse_args().token))


if __name__ == "__main__":
    main()
