"""Quickstart: the whole JD flow against the embedded JD, no set-up needed.

Starts jdkit's embedded Job Distributor, registers three labelled nodes,
proposes a job to the `env=dev` ones, plays the nodes approving it, waits for
the approvals and shows the rollout status; then rolls out revision 2 and
shows who is behind.

    ./dev quickstart          (or: python examples/quickstart.py)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import jdkit

SPEC = """\
type = "offchainreporting2"
schemaVersion = 1
name = "eth-usd feed {version}"
externalJobID = "{external_id}"
"""


async def main() -> None:
    started = time.perf_counter()
    provider = jdkit.EmbeddedProvider()
    async with provider as jd:
        print(f"embedded JD at {jd.target}, version {(await jd.version()).version}")
        print(f"JD CSA public key: {await jd.get_csa_public_key()}")

        ids = {}
        for name, env in (("node-a", "dev"), ("node-b", "dev"), ("node-c", "prod")):
            n = await jd.ensure_node(name, os.urandom(32).hex(), [f"env={env}", "team=feeds"])
            ids[name] = n.id
            print(f"registered {n.name} as {n.id}")

        external_id = str(uuid.uuid4())
        rollout = await jd.propose(
            SPEC.format(version="v1", external_id=external_id), nodes="env=dev"
        )
        print(f"\nproposed to {len(rollout.proposals)} nodes, {len(rollout.failed)} failed")

        # Play the nodes' part: each approves the proposal it received.
        for proposal in rollout.proposals.values():
            await provider.server.approve_proposal(proposal.id)
        approved = await jd.wait_for_proposals(rollout, timeout=30)
        print(f"approved by {len(approved)} nodes\n")
        jdkit.show(await jd.rollout_status(external_id, nodes="env=dev"))

        # Revision 2: the same externalJobID again; only node-a answers this time.
        v2 = await jd.propose(SPEC.format(version="v2", external_id=external_id), nodes="env=dev")
        await provider.server.approve_proposal(v2.proposals[ids["node-a"]].id)
        status = await jd.rollout_status(external_id, nodes="env=dev")
        behind = status.not_reached("APPROVED", revision=2)
        print(
            f"\nrevision 2: {len(behind)} node(s) not yet approved: "
            + ", ".join(r.node_name for r in behind)
        )
        jdkit.show(status)
        assert len(behind) == 1
    print(f"\nquickstart finished in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    asyncio.run(main())
