"""`python -m jdkit.server`: run the embedded JD configured from the
environment, the contract of the real JD image (see `EmbeddedJD.from_env`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from jdkit._exceptions import ConfigError
from jdkit._server._config import DEFAULT_ENV_PORT, DEFAULT_HEALTHZ_PORT
from jdkit._server._embedded import EmbeddedJD
from jdkit._server._serve import run_until_signalled

USAGE = f"""usage: python -m jdkit.server

Run the embedded JD configured from the environment, as the JD image is, until
SIGINT/SIGTERM. (`jdkit serve` takes the same settings as flags.)

environment:
  CSA_KEY_ENCRYPTION_SECRET  seals the CSA private key (required)
  DATABASE_URL               postgresql://... or a SQLite path (default: in memory;
                             JDKIT_DB is read when it is unset)
  PORT                       gRPC port (default {DEFAULT_ENV_PORT})
  HEALTHZ_PORT               HTTP health port (default {DEFAULT_HEALTHZ_PORT})
  NODE_RPC_PORT              node-facing wsrpc port (needs jdkit[node]; default: off)
  JDKIT_HOST                 listening address (default 0.0.0.0)
  JDKIT_LOG_LEVEL            log level (default INFO)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(USAGE, end="")
        return 0
    if args:
        print(f"error: unexpected arguments {args!r}\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    logging.basicConfig(
        level=os.environ.get("JDKIT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(run_until_signalled(EmbeddedJD.from_env()))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
