"""`jdkit version`: jdkit's version and, with a URL, the JD's."""

from __future__ import annotations

import sys

import click

from jdkit._cli._app import read_command, run, state
from jdkit._cli._config import UsageError
from jdkit._exceptions import JDError


@click.command()
@read_command
def version() -> int:
    """Print jdkit's version and, with a URL, the JD's."""
    from jdkit import __version__
    from jdkit._cli._errors import describe

    st = state()
    out = st.output()

    async def go() -> int:
        server: str | None = None
        error: str | None = None
        try:
            async with st.connect(out) as jd:
                server = (await jd.version()).version
        except UsageError:
            pass  # no URL: only jdkit's own version
        except JDError as exc:
            error = describe(exc)
        if out.json_mode:
            data = {"jdkit": __version__, **({"server": server} if server is not None else {})}
            out.json({**data, **({"error": error} if error else {})})
        else:
            out.text(f"jdkit {__version__}")
            if server is not None:
                out.text(f"server {server}")
        if error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0

    return run(go())
