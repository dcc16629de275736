"""Regressions: each divergence the differential test found between a dry run
and the embedded JD (issue 8), pinned as an explicit case; and read-your-writes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from jdkit import (
    AlreadyExistsError,
    InvalidArgumentError,
    JDError,
    JobDistributor,
    RPCError,
)
from jdkit.pb import job, label, node, probation, protobuf
from jdkit.server import EmbeddedJD

pytestmark = pytest.mark.asyncio

EXT = str(uuid.uuid4())


def _spec(extra: str = "") -> str:
    return f'type = "offchainreporting2"\nexternalJobID = "{EXT}"\n{extra}'


class Env:
    def __init__(self, srv: EmbeddedJD, real: JobDistributor) -> None:
        self.srv, self.real = srv, real
        self.dry = real.with_dry_run()
        self.nodes: list[node.Node] = []

    async def both(self, call: Callable[[JobDistributor], Awaitable[Any]]) -> tuple[object, object]:
        """(dry-run outcome, real outcome): the answer, or the error's class.
        The dry run goes first so the real write cannot influence it."""
        out: list[object] = []
        for client in (self.dry, self.real):
            try:
                out.append(await call(client))
            except JDError as exc:
                out.append(type(exc))
        return out[0], out[1]


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async with EmbeddedJD.start() as srv:
        async with JobDistributor.connect(srv.address, timeout=10) as real:
            e = Env(srv, real)
            for i in (1, 2):
                r = await real.register_node(
                    node.RegisterNodeRequest(name=f"n{i}", public_key=f"{i:064x}")
                )
                assert r.node is not None
                e.nodes.append(r.node)
            yield e


async def _same_error(
    env: Env, call: Callable[[JobDistributor], Awaitable[Any]], err: type
) -> None:
    dry, real = await env.both(call)
    assert dry is err and real is err, (dry, real)


async def test_update_node_to_another_nodes_key_is_already_exists(env: Env) -> None:
    a, b = env.nodes
    await _same_error(
        env,
        lambda c: c.update_node(node.UpdateNodeRequest(id=a.id, public_key=b.public_key)),
        AlreadyExistsError,
    )


@pytest.mark.parametrize(
    "request_",
    [
        node.RegisterNodeRequest(name="a\x00b", public_key="ab" * 32),
        node.RegisterNodeRequest(
            name="a", public_key="ab" * 32, labels=[label.Label(key="k", value="v\x00")]
        ),
        node.RegisterNodeRequest(name="a", public_key="ab" * 32, labels=[label.Label(key="k\x00")]),
    ],
    ids=["nul-name", "nul-label-value", "nul-label-key"],
)
async def test_register_node_with_nul_is_invalid_argument(
    env: Env, request_: node.RegisterNodeRequest
) -> None:
    await _same_error(env, lambda c: c.register_node(request_), InvalidArgumentError)


async def test_propose_with_nul_in_a_label_key_is_invalid_argument(env: Env) -> None:
    n = env.nodes[0]
    await _same_error(
        env,
        lambda c: c.propose_job(
            job.ProposeJobRequest(
                node_id=n.id, spec=_spec(), labels=[label.Label(key="k\x00", value="v")]
            )
        ),
        InvalidArgumentError,
    )


async def test_update_rollback_policy_without_policy_is_invalid_argument(env: Env) -> None:
    r = await env.real.create_rollback_policy(probation.CreateRollbackPolicyRequest())
    assert r.rollback_policy is not None
    pid = r.rollback_policy.id
    await _same_error(
        env,
        lambda c: c.update_rollback_policy(probation.UpdateRollbackPolicyRequest(id=pid)),
        InvalidArgumentError,
    )


async def test_batch_propose_with_a_nul_node_id_fails_that_node_only(env: Env) -> None:
    n = env.nodes[0]
    dry, real = await env.both(
        lambda c: c.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=[n.id, "bad\x00id"], spec=_spec())
        )
    )
    for out in (dry, real):
        assert isinstance(out, job.BatchProposeJobResponse), out
        assert set(out.success_responses) == {n.id}
        assert set(out.failed_responses) == {"bad\x00id"}


@pytest.mark.parametrize(
    "value",
    ["{a = " * 400 + "1" + "}" * 400, "{a = " * 5000 + "1" + "}" * 5000, "[" * 5000 + "]" * 5000],
    ids=["tables-400", "tables-5000", "arrays-5000"],
)
async def test_deeply_nested_spec_is_invalid_argument_inside_jderror(env: Env, value: str) -> None:
    n = env.nodes[0]
    spec = _spec(f"x = {value}\n")
    for call in (
        lambda c: c.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec)),
        lambda c: c.batch_propose_job(job.BatchProposeJobRequest(node_ids=[n.id], spec=spec)),
    ):
        dry, real = await env.both(call)
        assert dry is InvalidArgumentError and real is InvalidArgumentError, (dry, real)
    with pytest.raises(InvalidArgumentError, match=r"spec nests .* levels deep; the limit is 64"):
        await env.dry.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec))


async def test_revision_is_max_plus_one_in_both(env: Env) -> None:
    """Revisions come from MAX(revision)+1, not from counting proposal ids."""
    n = env.nodes[0]
    for _ in range(2):
        await env.real.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec()))
    dry, real = await env.both(
        lambda c: c.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec()))
    )
    assert isinstance(dry, job.ProposeJobResponse) and isinstance(real, job.ProposeJobResponse)
    assert dry.proposal is not None and real.proposal is not None
    assert dry.proposal.revision == real.proposal.revision == 3


# ------------------------------------------------------------ read-your-writes


async def test_register_then_propose_by_selector_plans_end_to_end(env: Env) -> None:
    """The deploy-script case: register nodes, find them by selector, propose."""
    dry, srv = env.dry, env.srv
    writes = srv.write_calls
    for i in (7, 8):
        await dry.register_node(
            node.RegisterNodeRequest(
                name=f"new{i}", public_key=f"{i:064x}", labels=[label.Label(key="env", value="eu")]
            )
        )
    sel = [label.Selector(key="env", op=label.SelectorOp.EQ, value="eu")]
    found = await dry.list_nodes(
        node.ListNodesRequest(filter=node.ListNodesRequestFilter(selectors=sel))
    )
    assert [n.name for n in found.nodes] == ["new7", "new8"] and found.total_count == 2
    ids = [n.id for n in found.nodes]
    batch = await dry.batch_propose_job(job.BatchProposeJobRequest(node_ids=ids, spec=_spec()))
    assert set(batch.success_responses) == set(ids) and not batch.failed_responses

    jobs = await dry.list_jobs(job.ListJobsRequest(filter=job.ListJobsRequestFilter(node_ids=ids)))
    assert {j.node_id for j in jobs.jobs} == set(ids)
    props = await dry.list_proposals(
        job.ListProposalsRequest(
            filter=job.ListProposalsRequestFilter(job_ids=[j.id for j in jobs.jobs])
        )
    )
    assert len(props.proposals) == 2
    got = await dry.get_node(node.GetNodeRequest(public_key=f"{7:064x}"))
    assert got.node is not None and got.node.name == "new7"
    one = await dry.get_job(job.GetJobRequest(id=jobs.jobs[0].id))
    assert one.job is not None and one.job.id == jobs.jobs[0].id

    assert srv.write_calls == writes  # nothing reached the server
    assert len((await env.real.list_nodes()).nodes) == 2
    assert env.dry.journal is not None and env.dry.journal.methods() == [
        "RegisterNode",
        "RegisterNode",
        "BatchProposeJob",
    ]


async def test_planned_updates_show_in_reads(env: Env) -> None:
    a, b = env.nodes
    dry = env.dry
    await dry.disable_node(node.DisableNodeRequest(id=a.id))
    await dry.update_node(
        node.UpdateNodeRequest(id=b.id, name="renamed", labels=[label.Label(key="tier", value="1")])
    )
    disabled = await dry.list_nodes(
        node.ListNodesRequest(filter=node.ListNodesRequestFilter(enabled=node.EnableState.DISABLED))
    )
    assert [n.id for n in disabled.nodes] == [a.id]
    got = await dry.get_node(node.GetNodeRequest(id=b.id))
    assert got.node is not None and got.node.name == "renamed"
    # the disabled node refuses proposals in the same dry run, as JD would
    batch = await dry.batch_propose_job(
        job.BatchProposeJobRequest(node_ids=[a.id, b.id], spec=_spec())
    )
    assert set(batch.failed_responses) == {a.id} and set(batch.success_responses) == {b.id}
    p = batch.success_responses[b.id].proposal
    assert p is not None
    await dry.revoke_job(job.RevokeJobRequest(id=p.job_id))
    got_p = await dry.get_proposal(job.GetProposalRequest(id=p.id))
    assert got_p.proposal is not None and got_p.proposal.status == job.ProposalStatus.REVOKED
    await dry.delete_job(job.DeleteJobRequest(id=p.job_id))
    live = await dry.list_jobs()
    assert live.jobs == []
    with_deleted = await dry.list_jobs(
        job.ListJobsRequest(filter=job.ListJobsRequestFilter(include_deleted=True))
    )
    assert [j.id for j in with_deleted.jobs] == [p.job_id]
    pol = await dry.create_rollback_policy(
        probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict({"max": 2}))
    )
    assert pol.rollback_policy is not None
    listed = await dry.list_rollback_policies()
    assert [x.id for x in listed.rollback_policies] == [pol.rollback_policy.id]
    # and the real server saw none of it
    real_node = await env.real.get_node(node.GetNodeRequest(id=a.id))
    assert real_node.node is not None and real_node.node.is_enabled


async def test_a_read_error_is_the_servers_answer(env: Env) -> None:
    """Reads still go to the server first, so its validation answers."""
    await env.dry.register_node(node.RegisterNodeRequest(name="x", public_key="cd" * 32))
    with pytest.raises(InvalidArgumentError):
        await env.dry.list_nodes(node.ListNodesRequest(page_size=-1))
    with pytest.raises(RPCError):
        await env.dry.get_node(node.GetNodeRequest(id="\x00"))
