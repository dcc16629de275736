"""BatchProposeJob's batched writes answer exactly what the stored rows say,
and what one ProposeJob per node would have answered."""

from __future__ import annotations

import uuid

import pytest

from jdkit import JobDistributor
from jdkit._server import EmbeddedJD
from jdkit.pb import job, label, node


def _spec() -> str:
    return (
        'type = "offchainreporting2"\nschemaVersion = 1\nname = "batch"\n'
        f'externalJobID = "{uuid.uuid4()}"\n'
    )


@pytest.mark.asyncio
async def test_batch_answers_match_the_stored_rows_and_the_single_call() -> None:
    async with EmbeddedJD.start() as srv, JobDistributor.connect(srv.address) as jd:
        ids = []
        for i in range(5):
            r = await jd.register_node(
                node.RegisterNodeRequest(name=f"n{i}", public_key=f"{i:064x}")
            )
            assert r.node is not None
            ids.append(r.node.id)
        a, b, c, d, e = ids
        await jd.disable_node(node.DisableNodeRequest(id=c))
        spec = _spec()
        first = await jd.propose_job(job.ProposeJobRequest(node_id=a, spec=spec))
        assert first.proposal is not None and first.proposal.revision == 1
        labels = [label.Label(key="wave", value="1"), label.Label(key="canary")]
        got = await jd.batch_propose_job(
            job.BatchProposeJobRequest(
                node_ids=[a, b, c, "node_missing", b, d, e], spec=spec, labels=labels
            )
        )
        assert set(got.success_responses) == {a, b, d, e}
        assert set(got.failed_responses) == {c, "node_missing"}
        assert "disabled" in got.failed_responses[c].error_message
        assert "not found" in got.failed_responses["node_missing"].error_message
        # a re-proposal gets the next revision, a new job revision 1
        assert got.success_responses[a].proposal.revision == 2  # type: ignore[union-attr]
        for n in (b, d, e):
            assert got.success_responses[n].proposal.revision == 1  # type: ignore[union-attr]
        # every proposal the batch answered is the stored one, field for field
        for n, resp in got.success_responses.items():
            assert resp.proposal is not None
            stored = await jd.get_proposal(job.GetProposalRequest(id=resp.proposal.id))
            assert stored.proposal == resp.proposal, n
            j = await jd.get_job(job.GetJobRequest(id=resp.proposal.job_id))
            assert j.job is not None and j.job.node_id == n
            assert resp.proposal.id in j.job.proposal_ids
            assert {(lb.key, lb.value) for lb in j.job.labels} == {("wave", "1"), ("canary", None)}
        # the labels are searchable, as after single proposals
        sel = [label.Selector(key="wave", op=label.SelectorOp.EQ, value="1")]
        listed = await jd.list_jobs(
            job.ListJobsRequest(filter=job.ListJobsRequestFilter(selectors=sel))
        )
        assert {x.node_id for x in listed.jobs} == {a, b, d, e}
        # the same spec again: every node now re-proposes (revision + 1)
        again = await jd.batch_propose_job(job.BatchProposeJobRequest(node_ids=[b, d], spec=spec))
        assert [again.success_responses[n].proposal.revision for n in (b, d)] == [2, 2]  # type: ignore[union-attr]
