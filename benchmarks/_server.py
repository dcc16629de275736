"""`python -m benchmarks._server [--token T] [--node-port]`: an embedded JD in its own process.

Prints `LISTENING host:port` (with `--node-port`: `LISTENING host:port NODES
host:port`, the node-facing port too) once it accepts calls and stops when
its stdin closes (so it never outlives the benchmark that started it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from jdkit._server import EmbeddedJD
from jdkit._server._auth import StaticTokens
from jdkit._server._serve import tune_for_serving


async def serve(token: str | None, node_port: bool = False) -> None:
    auth = StaticTokens([token]) if token else None
    async with EmbeddedJD.start(auth=auth, node_port=0 if node_port else None) as srv:
        nodes = f" NODES {srv.node_address}" if node_port else ""
        print(f"LISTENING {srv.address}{nodes}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # returns at EOF


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", default=None)
    parser.add_argument("--node-port", action="store_true")
    args = parser.parse_args()
    tune_for_serving()  # as `jdkit serve` does
    asyncio.run(serve(args.token, args.node_port))


if __name__ == "__main__":
    main()
