"""Quickstart: the whole JD flow against the embedded JD, no set-up needed.

Starts jdkit's embedded Job Distributor, registers two nodes, proposes a job
to both, plays node 1 approving it, then lists jobs and proposals.

    ./dev quickstart          (or: python examples/quickstart.py)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import jdkit
from jdkit.pb import job, label, node

SPEC = """\
type = "offchainreporting2"
schemaVersion = 1
name = "eth-usd feed"
externalJobID = "{external_id}"
"""


async def main() -> None:
    started = time.perf_counter()
    provider = jdkit.EmbeddedProvider()
    async with provider as jd:
        print(f"embedded JD at {jd.target}, version {(await jd.version()).version}")
        print(f"JD CSA public key: {await jd.get_csa_public_key()}")

        nodes = []
        for name in ("node-a", "node-b"):
            got = await jd.register_node(
                node.RegisterNodeRequest(
                    name=name,
                    public_key=os.urandom(32).hex(),
                    labels=[
                        label.Label(key="env", value="dev"),
                        label.Label(key="team", value="feeds"),
                    ],
                )
            )
            assert got.node is not None
            nodes.append(got.node)
            print(f"registered {got.node.name} as {got.node.id}")

        spec = SPEC.format(external_id=uuid.uuid4())
        batch = await jd.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=[n.id for n in nodes], spec=spec)
        )
        print(
            f"proposed to {len(batch.success_responses)} nodes, "
            f"{len(batch.failed_responses)} failed"
        )

        # Play node-a's part: it approves the proposal it received.
        first = batch.success_responses[nodes[0].id].proposal
        assert first is not None
        await provider.server.approve_proposal(first.id)

        jobs = await jd.list_jobs(
            job.ListJobsRequest(filter=job.ListJobsRequestFilter(selectors=[]))
        )
        proposals = await jd.list_proposals()
        print(f"\n{'job':<32} {'node':<32} proposals")
        for j in jobs.jobs:
            print(f"{j.id:<32} {j.node_id:<32} {len(j.proposal_ids)}")
        print(f"\n{'proposal':<32} rev status")
        for p in proposals.proposals:
            print(f"{p.id:<32} {p.revision:>3} {p.status.name}")

        approved = [p for p in proposals.proposals if p.status == job.ProposalStatus.APPROVED]
        assert len(approved) == 1 and approved[0].id == first.id
    print(f"\nquickstart finished in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    asyncio.run(main())
