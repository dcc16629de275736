"""`jdkit health`: the JD's gRPC health check, as an exit status."""

from __future__ import annotations

import click

from jdkit._cli._app import read_command, run, state


@click.command()
@click.option("--service", default="", help="health service name (default: the server)")
@read_command
def health(service: str) -> int:
    """Check the JD's gRPC health (exit status 1 unless SERVING)."""
    st = state()
    out = st.output()

    async def go() -> int:
        async with st.connect(out) as jd:
            status = await jd.check_health(service)
        name = status.name or str(int(status))
        if out.json_mode:
            out.json({"status": name})
        else:
            out.text(name)
        return 0 if name == "SERVING" else 1

    return run(go())
