"""propose / wait_for_proposals / rollout_status / ensure_node against the embedded JD,
with the node side answering through `EmbeddedJD.approve_proposal` & co."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jdkit import ConfigError, JobDistributor, NotFoundError, ProposalWaitError, Rollout
from jdkit.pb import job, node
from tests.helpers.nodeside import answering
from tests.helpers.server_fixtures import add_node, lbl, pubkey, served, spec

pytestmark = pytest.mark.asyncio

APPROVED = job.ProposalStatus.APPROVED
EXT = "0b6f3c3e-6a4a-4c54-8d0f-3c1f5bd1e001"


async def _fleet(jd: JobDistributor, n: int = 10) -> list[node.Node]:
    return [
        await add_node(jd, i, f"n{i:02d}", [lbl("env", "dev" if i < n - 2 else "prod")])
        for i in range(n)
    ]


async def test_propose_by_selector_wait_and_status() -> None:
    async with served() as (srv, jd):
        nodes = await _fleet(jd)
        await jd.disable_node(node.DisableNodeRequest(id=nodes[0].id))
        seen: list[tuple[int, int]] = []
        rollout = await jd.propose(
            spec(EXT),
            nodes="env=dev",
            labels=["team=core"],
            chunk_size=3,
            progress=lambda d, t: seen.append((d, t)),
        )
        dev = {n.id for n in nodes[1:8]}  # enabled dev nodes
        assert isinstance(rollout, Rollout)
        assert set(rollout.proposals) == dev and rollout.failed == {} and rollout.ok
        assert rollout.external_job_id == EXT and not rollout.dry_run
        assert seen == [(3, 7), (6, 7), (7, 7)]  # one call per chunk
        assert srv.calls["/api.job.v1.JobService/BatchProposeJob"] == 3
        assert all(p.revision == 1 for p in rollout.proposals.values())

        async with answering(srv):
            progress: list[tuple[int, int]] = []
            final = await jd.wait_for_proposals(
                rollout, timeout=10, progress=lambda r, t: progress.append((r, t))
            )
        assert set(final) == dev and all(p.status == APPROVED for p in final.values())
        assert progress[-1] == (7, 7)

        st = await jd.rollout_status(EXT, nodes="env=dev")
        assert len(st) == 8
        by_node = {r.node_id: r for r in st}
        assert by_node[nodes[0].id].status_text == "not proposed"
        assert all(by_node[i].status == APPROVED and by_node[i].revision == 1 for i in dev)
        assert st.counts() == {"APPROVED": 7, "not proposed": 1}
        assert [r.node_id for r in st.not_reached(APPROVED)] == [nodes[0].id]

        # revision 2: the same externalJobID again; the node side says nothing yet
        r2 = await jd.propose(spec(EXT, 'name = "v2"'), nodes=sorted(dev))
        assert {p.revision for p in r2.proposals.values()} == {2}
        st2 = await jd.rollout_status(EXT)
        assert len(st2) == 7 and {r.revision for r in st2} == {2}
        assert len(st2.not_reached("approved", revision=2)) == 7
        assert st2.where("PROPOSED", revision=2) == list(st2)
        assert {r.node_name for r in st2} == {f"n{i:02d}" for i in range(1, 8)}
        by_label = await jd.rollout_status(selector="team=core")
        assert {r.job_id for r in by_label} == {r.job_id for r in st2}
        by_job = await jd.rollout_status(job_ids=[st2[0].job_id])
        assert [r.node_id for r in by_job] == [st2[0].node_id]


async def test_rollout_status_of_an_unknown_id_is_not_found() -> None:
    async with served() as (_srv, jd):
        nodes = await _fleet(jd, 2)
        unknown = "0b6c1e4e-0000-4000-8000-000000000000"
        with pytest.raises(NotFoundError, match=f"no job with externalJobID '{unknown}'"):
            await jd.rollout_status(unknown)
        with pytest.raises(NotFoundError, match=r"job id.*'job_nope'"):
            await jd.rollout_status(job_ids=["job_nope"])
        # picked by nodes: the nodes without the job are the answer, not an error
        st = await jd.rollout_status(unknown, nodes=[n.id for n in nodes])
        assert {r.status_text for r in st} == {"not proposed"}
        # a label selector that matches no job is an empty status
        assert len(await jd.rollout_status(selector="team=nobody")) == 0


async def test_propose_reports_each_failed_node() -> None:
    async with served() as (_srv, jd):
        nodes = await _fleet(jd, 4)
        await jd.disable_node(node.DisableNodeRequest(id=nodes[1].id))
        rollout = await jd.propose(
            spec(EXT),
            # ids and a Node mixed: accepted at run time, though NodesLike says one kind
            nodes=[nodes[0].id, nodes[1].id, "node_nope", nodes[2]],  # type: ignore[arg-type]
        )
        assert set(rollout.proposals) == {nodes[0].id, nodes[2].id}
        assert set(rollout.failed) == {nodes[1].id, "node_nope"}
        assert "disabled" in rollout.failed[nodes[1].id]
        assert "not found" in rollout.failed["node_nope"]
        assert not rollout.ok and len(rollout) == 4
        with pytest.raises(ConfigError, match="no enabled node matches 'env=staging'"):
            await jd.propose(spec(EXT), nodes="env=staging")
        empties: list[Any] = [[], "", ()]
        for empty in empties:  # an empty target set is a mistake, for both callers
            with pytest.raises(ConfigError, match=r"^nodes: "):
                await jd.propose(spec(EXT), nodes=empty)
            with pytest.raises(ConfigError, match=r"^nodes: "):
                await jd.rollout_status(EXT, nodes=empty)
        with pytest.raises(ConfigError, match="chunk_size"):
            await jd.propose(spec(EXT), nodes="env=dev", chunk_size=0)
        from jdkit import InvalidArgumentError

        with pytest.raises(InvalidArgumentError, match="externalJobID"):
            await jd.propose('type = "x"\n', nodes=[nodes[0].id])


async def test_wait_names_every_node_that_did_not_approve() -> None:
    async with served() as (srv, jd):
        nodes = await _fleet(jd, 6)
        names = {n.id: n.name for n in nodes}
        rollout = await jd.propose(spec(EXT), nodes=[n.id for n in nodes])
        verdict = {}
        for i, n in enumerate(nodes):
            verdict[rollout.proposals[n.id].id] = [
                "approve",
                "approve",
                "reject",
                "cancel",
                None,
                None,
            ][i]
        async with answering(srv, lambda p: verdict[p.id]):
            with pytest.raises(ProposalWaitError) as err:
                await jd.wait_for_proposals(rollout, timeout=0.6)
        e = err.value
        assert set(e.reached) == {nodes[0].id, nodes[1].id}
        assert set(e.ended) == {nodes[2].id, nodes[3].id}
        assert set(e.pending) == {nodes[4].id, nodes[5].id}
        assert e.timed_out
        assert e.counts == {"APPROVED": 2, "REJECTED": 1, "CANCELLED": 1, "PROPOSED": 2}
        text = str(e)
        assert "2 of 6 proposals reached APPROVED" in text
        assert f"1 REJECTED: {nodes[2].id}" in text and f"1 CANCELLED: {nodes[3].id}" in text
        assert f"2 still PROPOSED after 0.6 s: {nodes[4].id}, {nodes[5].id}" in text
        assert names  # (node ids are what JD gives; names via rollout_status)


async def test_wait_ends_without_timeout_when_all_are_final() -> None:
    async with served() as (srv, jd):
        nodes = await _fleet(jd, 3)
        rollout = await jd.propose(spec(EXT), nodes=[n.id for n in nodes])
        first = rollout.proposals[nodes[0].id].id
        async with answering(srv, lambda p: "reject" if p.id == first else "approve"):
            t0 = asyncio.get_running_loop().time()
            with pytest.raises(ProposalWaitError) as err:
                await jd.wait_for_proposals(rollout, timeout=30)
            assert asyncio.get_running_loop().time() - t0 < 10
        assert not err.value.timed_out and set(err.value.ended) == {nodes[0].id}


async def test_wait_accepts_bare_proposals_and_other_statuses() -> None:
    async with served() as (srv, jd):
        nodes = await _fleet(jd, 3)
        rollout = await jd.propose(spec(EXT), nodes=[n.id for n in nodes])
        props = list(rollout.proposals.values())
        async with answering(srv, lambda p: "reject"):
            final = await jd.wait_for_proposals(props, status="REJECTED", timeout=10)
        assert set(final) == {n.id for n in nodes}  # mapped back to nodes via their jobs
        with pytest.raises(ValueError, match="unknown proposal status 'DONE'"):
            await jd.wait_for_proposals(props, status="DONE", timeout=1)
        for bad in (0, -1, float("nan"), "5"):
            with pytest.raises(ConfigError, match=r"^timeout: must be a finite positive"):
                await jd.wait_for_proposals(props, timeout=bad)  # type: ignore[arg-type]


async def test_dry_run_propose_has_the_same_shape_and_sends_nothing() -> None:
    async with served() as (srv, jd):
        nodes = await _fleet(jd, 5)
        await jd.disable_node(node.DisableNodeRequest(id=nodes[0].id))
        writes = srv.write_calls
        dry = jd.with_dry_run()
        plan = await dry.propose(
            spec(EXT), nodes=[n.id for n in nodes] + ["node_nope"], chunk_size=2
        )
        assert plan.dry_run
        assert set(plan.proposals) == {n.id for n in nodes[1:]}
        assert set(plan.failed) == {nodes[0].id, "node_nope"}
        assert all(p.id.startswith("dryrun_") for p in plan.proposals.values())
        # no node answers a dry run: the plan comes back at once, still PROPOSED
        done = await dry.wait_for_proposals(plan, timeout=5)
        assert done == plan.proposals
        assert {p.status for p in done.values()} == {job.ProposalStatus.PROPOSED}
        with pytest.raises(ConfigError, match=r"^timeout:"):  # but its arguments are checked
            await dry.wait_for_proposals(plan, timeout=-1)
        assert srv.write_calls == writes
        assert dry.journal is not None and dry.journal.methods() == ["BatchProposeJob"] * 3
        real = await jd.propose(
            spec(EXT), nodes=[n.id for n in nodes] + ["node_nope"], chunk_size=2
        )
        assert set(real.proposals) == set(plan.proposals) and set(real.failed) == set(plan.failed)


async def test_ensure_node_registers_returns_and_updates() -> None:
    async with served() as (srv, jd):
        a = await jd.ensure_node("a", pubkey(1), ["env=dev"])
        assert a.name == "a" and [(lb.key, lb.value) for lb in a.labels] == [("env", "dev")]
        again = await jd.ensure_node("a", pubkey(1), {"env": "dev"})
        assert again.id == a.id
        assert srv.calls.get("/api.node.v1.NodeService/UpdateNode", 0) == 0
        renamed = await jd.ensure_node("a2", pubkey(1))
        assert renamed.id == a.id and renamed.name == "a2" and len(renamed.labels) == 1
        relabelled = await jd.ensure_node("a2", pubkey(1), ["env=prod", "canary"])
        assert {(lb.key, lb.value) for lb in relabelled.labels} == {
            ("env", "prod"),
            ("canary", None),
        }
        with pytest.raises(ConfigError, match="labels"):
            await jd.ensure_node("a2", pubkey(1), [])
        many = await asyncio.gather(*(jd.ensure_node("b", pubkey(2)) for _ in range(5)))
        assert len({n.id for n in many}) == 1
        assert len((await jd.list_nodes()).nodes) == 2
