"""A Chainlink node played by jdkit, over the real node-facing protocol.

    python examples/simulated_node.py

Starts the embedded JD with its node port (wsrpc: WebSocket over mutual TLS
1.3 with ed25519 keys), registers a node, connects a `jdkit.SimulatedNode`
to it, proposes a job and lets the node approve it over the protocol, then
lists what the JD recorded. Needs `jdkit[node]`. The same `SimulatedNode`
works against any JD's node port: give it that JD's NODE_RPC_PORT address
and its CSA public key (`CSAService/GetKeypair`).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import jdkit
from jdkit.pb import job, node
from jdkit.server import EmbeddedJD

SPEC = f"""\
type = "offchainreporting2"
schemaVersion = 1
name = "example"
externalJobID = "{uuid.uuid4()}"
"""


async def main() -> None:
    async with EmbeddedJD.start(node_port=0) as srv:
        async with jdkit.JobDistributor.connect(srv.address) as jd:
            jd_key = await jd.get_csa_public_key()  # what nodes pin
            sim = jdkit.SimulatedNode(
                srv.node_address,
                jd_key,
                on_proposal="approve",
                version="2.21.0",
                nop_friendly_name="Example Operator",
                chain_configs=[
                    node.ChainConfig(
                        chain=node.Chain(id="11155111", type=node.ChainType.EVM),
                        account_address="0x0000000000000000000000000000000000000001",
                    )
                ],
            )
            registered = await jd.register_node(
                node.RegisterNodeRequest(name="sim-1", public_key=sim.public_key)
            )
            assert registered.node is not None
            node_id = registered.node.id
            print(f"registered {node_id} with key {sim.public_key[:16]}…")

            t = time.perf_counter()
            async with sim:  # TLS 1.3 + WebSocket + UpdateNode
                print(f"node connected over wsrpc in {(time.perf_counter() - t) * 1000:.0f} ms")
                got = (await jd.get_node(node.GetNodeRequest(id=node_id))).node
                assert got is not None
                print(f"GetNode: is_connected={got.is_connected} version={got.version}")

                t = time.perf_counter()
                resp = await jd.propose_job(job.ProposeJobRequest(node_id=node_id, spec=SPEC))
                assert resp.proposal is not None
                await sim.wait_until(lambda: bool(sim.proposals) and sim.proposals[0].answer)
                took = (time.perf_counter() - t) * 1000
                print(f"proposed, delivered and approved by the node in {took:.0f} ms")

                listed = await jd.list_proposals(
                    job.ListProposalsRequest(
                        filter=job.ListProposalsRequestFilter(ids=[resp.proposal.id])
                    )
                )
                p = listed.proposals[0]
                print(
                    f"ListProposals: {p.status.name} / {p.delivery_status.name},"
                    f" revision {p.revision}, answered at {p.response_received_at}"
                )
                configs = await jd.list_node_chain_configs(
                    node.ListNodeChainConfigsRequest(
                        filter=node.ListNodeChainConfigsRequestFilter(node_ids=[node_id])
                    )
                )
                chains = [c.chain.id for c in configs.chain_configs if c.chain]
                print(f"chain configs the node reported: {chains}")
    print("simulated node example finished")


if __name__ == "__main__":
    asyncio.run(main())
