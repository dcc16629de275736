"""Simulated Chainlink nodes against the JD in Docker, over the real node protocol.

`jdkit.DockerProvider` publishes the JD container's node-facing port
(NODE_RPC_PORT) on an ephemeral loopback port, `provider.node_address`. A
`jdkit.SimulatedNode` dials it the way a Chainlink node does (WebSocket over
mutual TLS 1.3, the JD's CSA public key pinned); proposals reach the nodes
over that protocol and their answers come back into the operator API. Needs
the `docker` and `node` extras:

    pytest examples/docker_suite --jd-docker

This test starts a JD of its own (the session's `jd_docker` client has no
node address to give), so it runs with the suite's other tests or alone.
"""

from __future__ import annotations

import os
import uuid

import pytest

import jdkit
from jdkit.pb import label, node
from jdkit.testing import docker_engine_problem

pytestmark = [pytest.mark.jd_docker, pytest.mark.asyncio]

SPEC = """\
type = "offchainreporting2"
schemaVersion = 1
name = "simulated fleet"
externalJobID = "{external_id}"
"""


async def test_a_fleet_of_simulated_nodes_approves_a_rollout() -> None:
    problem = docker_engine_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"needs Docker: {problem}")
        pytest.skip(f"needs Docker: {problem}")
    provider = jdkit.DockerProvider(timeout=10)
    async with provider as jd:
        jd_key = await jd.get_csa_public_key()  # what the nodes pin
        fleet = [
            jdkit.SimulatedNode(provider.node_address, jd_key, on_proposal="approve")
            for _ in range(3)
        ]
        for i, sim in enumerate(fleet):
            await jd.register_node(
                node.RegisterNodeRequest(
                    name=f"sim-{i}",
                    public_key=sim.public_key,
                    labels=[label.Label(key="fleet", value="simulated")],
                )
            )
        for sim in fleet:
            await sim.start()  # returns once connected
        try:
            listed = await jd.list_nodes(node.ListNodesRequest())
            assert all(n.is_connected for n in listed.nodes)

            ext = str(uuid.uuid4())
            rollout = await jd.propose(SPEC.format(external_id=ext), nodes="fleet = simulated")
            assert len(rollout.proposals) == 3 and not rollout.failed
            approved = await jd.wait_for_proposals(rollout, timeout=30)  # the nodes answered
            assert len(approved) == 3
            status = await jd.rollout_status(ext)
            jdkit.show(status)  # one row per node: APPROVED, ACKNOWLEDGED
        finally:
            for sim in fleet:
                await sim.stop()
