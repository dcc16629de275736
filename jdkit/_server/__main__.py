"""`python -m jdkit._server`: run the embedded JD configured from the
environment, the contract of the real JD image (see `EmbeddedJD.from_env`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from jdkit._exceptions import ConfigError
from jdkit._server._embedded import EmbeddedJD
from jdkit._server._serve import run_until_signalled


def main() -> int:
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
