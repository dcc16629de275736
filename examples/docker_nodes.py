"""Simulated Chainlink nodes against JD in Docker, over the node-facing protocol.

    python examples/docker_nodes.py

Starts JD + Postgres containers (`jdkit.DockerProvider`; the JD image is
$CTF_JD_IMAGE when set, else jdkit's own image built from this checkout),
registers three `jdkit.SimulatedFleet` nodes through the API, connects them
to the JD's node port (`provider.node_address`: the container's
NODE_RPC_PORT published on loopback), proposes one job to all of them with
BatchProposeJob, lets each node approve it over wsrpc, and lists the
proposals. Needs a Docker engine and `jdkit[docker,node]`.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import jdkit
from jdkit.pb import job

SPEC = f"""\
type = "offchainreporting2"
schemaVersion = 1
name = "docker-fleet"
externalJobID = "{uuid.uuid4()}"
"""


def approved(n: jdkit.SimulatedNode) -> bool:
    return bool(n.proposals) and n.proposals[0].answer == "approved"


async def main() -> None:
    provider = jdkit.DockerProvider(jdkit.DockerConfig(), timeout=30)
    async with provider as jd:
        jd_key = await jd.get_csa_public_key()
        print(f"JD in Docker: API {provider.address}, node port {provider.node_address}")
        fleet = jdkit.SimulatedFleet(
            provider.node_address, jd_key, 3, register_with=jd, on_proposal="approve"
        )
        t = time.perf_counter()
        async with fleet:
            print(f"{fleet.connected} nodes connected in {time.perf_counter() - t:.2f} s")
            resp = await jd.batch_propose_job(
                job.BatchProposeJobRequest(node_ids=fleet.node_ids, spec=SPEC)
            )
            await fleet.wait_until(approved, timeout=30)
            ids = [r.proposal.id for r in resp.success_responses.values() if r.proposal]
            listed = await jd.list_proposals(
                job.ListProposalsRequest(filter=job.ListProposalsRequestFilter(ids=ids))
            )
            states = sorted({f"{p.status.name}/{p.delivery_status.name}" for p in listed.proposals})
            print(f"{len(listed.proposals)} proposals: {', '.join(states)}")
    print("docker nodes example finished")


if __name__ == "__main__":
    asyncio.run(main())
