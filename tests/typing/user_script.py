"""A deployment engineer's script, as a user would write it with the task helpers.

`mypy --strict tests/typing` checks it in CI (`nox -s typecheck`): every value it
touches is a plain domain type, so there is no `X | None` to narrow and no
union-attr error. `tests/typing/test_user_script.py` also runs it.
"""

from __future__ import annotations

import asyncio
import uuid

import jdkit
from jdkit.pb import job, node

SPEC = 'type = "offchainreporting2"\nschemaVersion = 1\nname = "{name}"\nexternalJobID = "{ext}"\n'


async def node_side(
    provider: jdkit.EmbeddedProvider, jd: jdkit.JobDistributor, stop: asyncio.Event
) -> None:
    """Play every node: approve each proposal as it arrives, until told to stop."""
    done: set[str] = set()
    while not stop.is_set():
        async for p in jd.iter_proposals():
            if p.status == job.ProposalStatus.PROPOSED and p.id not in done:
                done.add(p.id)
                await provider.server.approve_proposal(p.id)
        await asyncio.sleep(0.02)


async def deploy() -> jdkit.RolloutStatus:
    provider = jdkit.EmbeddedProvider()
    async with provider as jd:
        fleet: list[node.Node] = []
        for i in range(10):
            env = "dev" if i < 7 else "prod"
            n: node.Node = await jd.ensure_node(f"n{i}", f"{i + 1:064x}", [f"env={env}"])
            fleet.append(n)
        again = await jd.ensure_node("n0", f"{1:064x}", {"env": "dev"})
        assert again.id == fleet[0].id

        dev: list[str] = [n.id async for n in jd.iter_nodes(selector="env=dev", enabled=True)]
        ext = str(uuid.uuid4())
        stop = asyncio.Event()
        approver = asyncio.create_task(node_side(provider, jd, stop))
        try:
            rollout: jdkit.Rollout = await jd.propose(
                SPEC.format(name="v1", ext=ext), nodes="env=dev"
            )
            assert sorted(rollout.proposals) == sorted(dev) and not rollout.failed
            final: dict[str, job.Proposal] = await jd.wait_for_proposals(rollout, timeout=30)
            revisions = {p.revision for p in final.values()}

            v2 = await jd.propose(SPEC.format(name="v2", ext=ext), nodes=dev, chunk_size=3)
            await jd.wait_for_proposals(v2, timeout=30)
        finally:
            # Stop by event and wait for the task: a cancel alone may land inside
            # a call and leave the task running while the provider closes.
            stop.set()
            await approver
        status = await jd.rollout_status(ext, nodes="env=dev")
        behind: list[str] = [r.node_name for r in status.not_reached("APPROVED", revision=2)]
        assert behind == [] and revisions == {1}, behind
        first: jdkit.NodeRollout = status[0]
        print(first.node_name, first.revision, first.status.name, first.updated_at)

        try:
            await jd.wait_for_proposals(list(final.values()), status="REJECTED", timeout=0.2)
        except jdkit.ProposalWaitError as exc:
            counts: dict[str, int] = exc.counts
            assert counts == {"APPROVED": 7}, counts

        got = await jd.get_node(id=fleet[0].id)
        name: str = got.node.name if got.node is not None else ""
        assert name == "n0"
        jdkit.show(status)
        return status


if __name__ == "__main__":
    asyncio.run(deploy())
