"""Dry-run: see what a rollout would write before writing it.

A dry-run client sends reads (so it can check that nodes exist and work out
the next revision of a job) and records writes in a `Journal` instead of
sending them. `journal.plan()` is a human-readable plan; `journal.to_json()`
is the same for a review bot or a CI artifact.

    python examples/dry_run_plan.py

Runs against the embedded JD (or the JD in $JD_GRPC_URL, which it then writes
to for the set-up step: point it at a scratch JD).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import jdkit
from jdkit import selectors
from jdkit.pb import job, label, node

SPEC = """\
type = "offchainreporting2"
schemaVersion = 1
name = "btc-usd feed"
externalJobID = "{external_id}"
"""


async def main() -> None:
    async with jdkit.connect() as jd:
        # Set-up, for real: three nodes, one of them already running the job.
        ids = {}
        for name, env in (("eu-1", "prod"), ("eu-2", "prod"), ("lab-1", "dev")):
            resp = await jd.register_node(
                node.RegisterNodeRequest(
                    name=name,
                    public_key=os.urandom(32).hex(),
                    labels=[label.Label(key="env", value=env)],
                )
            )
            assert resp.node is not None
            ids[name] = resp.node.id
        spec = SPEC.format(external_id=uuid.uuid4())
        await jd.propose_job(job.ProposeJobRequest(node_id=ids["eu-1"], spec=spec))
        writes_before = (await jd.list_proposals()).proposals

        # The rollout, planned: the same calls a real rollout would make.
        plan = jd.with_dry_run()
        prod = selectors.parse("env=prod")
        targets = await plan.list_nodes(
            node.ListNodesRequest(filter=node.ListNodesRequestFilter(selectors=prod))
        )
        for n in targets.nodes:
            await plan.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec))
        await plan.disable_node(node.DisableNodeRequest(id=ids["lab-1"]))

        assert plan.journal is not None
        print(plan.journal.plan())
        print()
        print("as JSON, first entry:")
        print(json.dumps(json.loads(plan.journal.to_json())[0], indent=2)[:600])

        # Nothing was sent: the proposals and the lab node are as they were.
        assert plan.journal.methods() == ["ProposeJob", "ProposeJob", "DisableNode"]
        assert (await jd.list_proposals()).proposals == writes_before
        lab = (await jd.get_node(node.GetNodeRequest(id=ids["lab-1"]))).node
        assert lab is not None and lab.is_enabled
        # eu-1 already has revision 1, so the plan says it would get revision 2
        assert "(revision 2)" in plan.journal.plan()
        print("\nnothing was written")


if __name__ == "__main__":
    asyncio.run(main())
