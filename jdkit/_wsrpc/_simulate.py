"""What `jdkit node simulate` runs: one simulated node against a real JD until a signal.

The CLI command only parses its flags and calls `simulate`, so the logic is
testable without the CLI (and the CLI framework can change around it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jdkit._exceptions import ConfigError
from jdkit._signals import stop_on_signals
from jdkit._wsrpc._answers import ProposalPolicy, ReceivedProposal
from jdkit._wsrpc._errors import NodeProtocolError
from jdkit._wsrpc._keys import load_private_key, public_hex
from jdkit._wsrpc._node import SimulatedNode


def key_from_file(path: str | os.PathLike[str], *, create: bool = True) -> Ed25519PrivateKey:
    """The node key in `path` (hex or PEM); a missing file gets a new key,
    written as hex with mode 0600, so the next run is the same node."""
    p = Path(path)
    if p.exists() or not create:
        return load_private_key(p, "key_file")
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError("key_file", f"cannot create {p}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(raw.hex() + "\n")
    return key


async def simulate(
    jd_node_address: str,
    jd_public_key_hex: str,
    *,
    key_file: str | None = None,
    policy: ProposalPolicy = "approve",
    echo: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    **node_options: object,
) -> int:
    """Connect, answer proposals per `policy`, print what happens; return an
    exit code (0 after a signal or `stop`, 1 when the first connection fails)."""
    key = key_from_file(key_file) if key_file else Ed25519PrivateKey.generate()
    echo(f"node public key: {public_hex(key)}")

    def on_proposal(p: ReceivedProposal) -> object:
        echo(f"proposal {p.id} version {p.version} ({len(p.spec)} bytes of spec): {policy}")
        return policy(p) if callable(policy) else policy

    sim = SimulatedNode(
        jd_node_address,
        jd_public_key_hex,
        private_key=key,
        on_proposal=on_proposal,  # type: ignore[arg-type]
        **node_options,  # type: ignore[arg-type]
    )
    stop = stop or asyncio.Event()
    with stop_on_signals(stop):
        try:
            try:
                await sim.start()
            except NodeProtocolError as exc:
                echo(f"error: {exc}")
                return 1
            echo(f"connected to {jd_node_address}; answering proposals ({policy}); Ctrl-C stops")
            seen = (0, 0)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                now = (len(sim.deleted), len(sim.revoked))
                for jid in sim.deleted[seen[0] :]:
                    echo(f"job {jid} deleted by the operator")
                for jid in sim.revoked[seen[1] :]:
                    echo(f"proposal for job {jid} revoked by the operator")
                seen = now
            return 0
        finally:
            await sim.stop()
