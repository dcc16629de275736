"""`jdkit keys`: JD's CSA keys."""

from __future__ import annotations

import click

from jdkit._cli._app import read_command, run, state


@click.group()
def keys() -> None:
    """JD's CSA keys."""


@keys.command("list")
@read_command
def keys_list() -> int:
    """List JD's CSA keypairs."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            resp = await jd.list_keypairs()
        out.result(resp)

    return run(go())


@keys.command("public")
@read_command
def keys_public() -> int:
    """Print JD's CSA public key."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            key = await jd.get_csa_public_key()
        if out.json_mode:
            out.json({"publicKey": key})
        else:
            out.text(key)

    return run(go())
