"""The Docker JD's node-facing port: published on loopback as `node_address`,
and a `jdkit.SimulatedNode` plays a node through it (TLS 1.3 + websockets into
the container, the JD's CSA key pinned), answering a proposal JD sends."""

from __future__ import annotations

import uuid

import anyio
import pytest

from jdkit import DockerProvider, SimulatedNode
from jdkit.pb import job, node
from tests.helpers.docker_helpers import config, require_docker

pytestmark = [pytest.mark.docker, pytest.mark.asyncio]


async def test_a_simulated_node_connects_and_approves_through_the_published_port() -> None:
    require_docker()
    cfg = config()
    provider = DockerProvider(cfg)
    async with provider as jd:
        host, port = provider.node_address.split(":")
        assert host == "127.0.0.1" and int(port) != cfg.node_rpc_port  # ephemeral, not fixed
        sim = SimulatedNode(
            provider.node_address, await jd.get_csa_public_key(), on_proposal="approve"
        )
        registered = await jd.register_node(
            node.RegisterNodeRequest(name="simulated", public_key=sim.public_key)
        )
        assert registered.node is not None
        node_id = registered.node.id
        async with sim:
            assert sim.connected
            got = (await jd.get_node(node.GetNodeRequest(id=node_id))).node
            assert got is not None and got.is_connected
            proposed = await jd.propose_job(
                job.ProposeJobRequest(
                    node_id=node_id,
                    spec=(
                        'type = "offchainreporting2"\nschemaVersion = 1\n'
                        f'externalJobID = "{uuid.uuid4()}"\n'
                    ),
                )
            )
            assert proposed.proposal is not None
            (delivered,) = await sim.wait_for_proposals(1)
            await sim.wait_until(lambda: delivered.answer == "approved")
            with anyio.fail_after(10):
                while True:
                    (p,) = (
                        await jd.list_proposals(
                            job.ListProposalsRequest(
                                filter=job.ListProposalsRequestFilter(ids=[proposed.proposal.id])
                            )
                        )
                    ).proposals
                    if p.status == job.ProposalStatus.APPROVED:
                        break
                    await anyio.sleep(0.05)
            assert p.delivery_status == job.ProposalDeliveryStatus.ACKNOWLEDGED
