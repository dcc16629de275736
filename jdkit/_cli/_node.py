"""`jdkit node simulate`: play a Chainlink node against a JD's node-facing port.

The logic is `jdkit._wsrpc._simulate.simulate` (tested on its own); this is
only its flags. It does not use the connection flags (it dials the JD's
node port, not its gRPC API), so it refuses them.
"""

from __future__ import annotations

from typing import Literal

import click

from jdkit._cli._app import read_command, run, state
from jdkit._cli._config import UsageError


@click.group()
def node() -> None:
    """Play a Chainlink node (the node-facing wsrpc protocol; needs jdkit[node])."""


@node.command()
@click.option(
    "--jd",
    "jd_address",
    required=True,
    metavar="HOST:PORT",
    help="the JD's node-facing port (its NODE_RPC_PORT), e.g. 127.0.0.1:8080",
)
@click.option(
    "--jd-key",
    required=True,
    metavar="HEX",
    help="the JD's CSA public key, which the node pins (`jdkit keys public`)",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="this node's ed25519 key (hex or PEM); created (mode 0600) when missing. "
    "Default: a new key each run",
)
@click.option(
    "--approve/--reject",
    default=True,
    show_default=True,
    help="answer every proposal with ApprovedJob (default) or RejectedJob",
)
@click.option("--ignore", is_flag=True, help="answer no proposal (just receive them)")
@read_command
def simulate(
    jd_address: str, jd_key: str, key_file: str | None, approve: bool, ignore: bool
) -> int:
    """Connect to a JD as a node and answer its proposals until Ctrl-C.

    The first line is the node's public key. The JD refuses a key it does
    not know, and this command then exits 1; so run it once with
    `--key-file FILE` (the key is created and printed), register that key
    with `jdkit nodes register --public-key KEY`, and run it again with the
    same `--key-file`.
    """
    st = state()
    st.refuse_connection_flags("node simulate")
    out = st.output()
    try:
        from jdkit._wsrpc._simulate import simulate as go
    except ImportError as exc:
        raise UsageError(
            f"node simulate needs the node extra: pip install 'jdkit[node]' ({exc})"
        ) from None
    policy: Literal["approve", "reject", "ignore"] = (
        "ignore" if ignore else "approve" if approve else "reject"
    )
    return run(go(jd_address, jd_key, key_file=key_file, policy=policy, echo=out.text))
