"""JobService through Google's grpcio client.

Proposals, revisions, batches, filters, revoke/update/delete.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tests.helpers.grpcio_peer import (
    Peer,
    job_pb2,
    label_pb2,
    lbl,
    node_pb2,
    probation_pb2,
    sel,
    spec,
    status_of,
)


@pytest.mark.asyncio
async def test_propose_job_twice_makes_revision_two(peer: Peer) -> None:
    n = await peer.register(1)
    ext = str(uuid.uuid4())
    p1 = await peer.propose(n.id, ext, [lbl("team", "a"), lbl("canary")])
    assert p1.id.startswith("prop_") and p1.revision == 1
    assert p1.status == job_pb2.PROPOSAL_STATUS_PROPOSED
    assert p1.delivery_status == job_pb2.PROPOSAL_DELIVERY_STATUS_UNSPECIFIED  # not connected
    assert p1.spec == spec(ext)
    assert not p1.HasField("acked_at") and not p1.HasField("response_received_at")
    p2 = await peer.propose(n.id, ext.upper())  # same externalJobID, other spelling
    assert p2.revision == 2 and p2.job_id == p1.job_id and p2.id != p1.id

    j = (await peer.jobs.GetJob(job_pb2.GetJobRequest(id=p1.job_id))).job
    assert j.id == p1.job_id and j.uuid == ext and j.node_id == n.id
    assert list(j.proposal_ids) == [p1.id, p2.id]
    # empty labels on a re-proposal leave the job's labels alone
    assert [(x.key, x.value if x.HasField("value") else None) for x in j.labels] == [
        ("team", "a"),
        ("canary", None),
    ]
    assert not j.HasField("deleted_at") and not j.HasField("rollback_policy_id")

    got = (await peer.jobs.GetProposal(job_pb2.GetProposalRequest(id=p2.id))).proposal
    assert got == p2
    props = await peer.jobs.ListProposals(
        job_pb2.ListProposalsRequest(filter=job_pb2.ListProposalsRequest.Filter(job_ids=[j.id]))
    )
    assert [(p.id, p.revision) for p in props.proposals] == [(p1.id, 1), (p2.id, 2)]
    by_id = await peer.jobs.ListProposals(
        job_pb2.ListProposalsRequest(filter=job_pb2.ListProposalsRequest.Filter(ids=[p1.id]))
    )
    assert list(by_id.proposals) == [p1]

    # the node connects: waiting proposals are delivered; answering acks them
    await peer.srv.set_node_connected(n.id)
    delivered = (await peer.jobs.GetProposal(job_pb2.GetProposalRequest(id=p2.id))).proposal
    assert delivered.delivery_status == job_pb2.PROPOSAL_DELIVERY_STATUS_DELIVERED
    await peer.srv.approve_proposal(p2.id)
    approved = (await peer.jobs.GetProposal(job_pb2.GetProposalRequest(id=p2.id))).proposal
    assert approved.status == job_pb2.PROPOSAL_STATUS_APPROVED
    assert approved.delivery_status == job_pb2.PROPOSAL_DELIVERY_STATUS_ACKNOWLEDGED
    assert approved.HasField("acked_at") and approved.HasField("response_received_at")


@pytest.mark.asyncio
async def test_batch_propose_job_reports_each_node(peer: Peer) -> None:
    a = await peer.register(1)
    b = await peer.register(2)
    off = await peer.register(3)
    await peer.nodes.DisableNode(node_pb2.DisableNodeRequest(id=off.id))
    ext = str(uuid.uuid4())
    resp = await peer.jobs.BatchProposeJob(
        job_pb2.BatchProposeJobRequest(
            node_ids=[a.id, "node_unknown", b.id, off.id],
            spec=spec(ext),
            labels=[lbl("batch", "1")],
        )
    )
    assert set(resp.success_responses) == {a.id, b.id}
    assert set(resp.failed_responses) == {"node_unknown", off.id}
    assert "node_unknown" in resp.failed_responses["node_unknown"].error_message
    assert "disabled" in resp.failed_responses[off.id].error_message
    for node_id, ok in resp.success_responses.items():
        assert ok.proposal.revision == 1
        j = (await peer.jobs.GetJob(job_pb2.GetJobRequest(id=ok.proposal.job_id))).job
        assert j.node_id == node_id and j.uuid == ext
    again = await peer.jobs.BatchProposeJob(
        job_pb2.BatchProposeJobRequest(node_ids=[a.id], spec=spec(ext))
    )
    assert again.success_responses[a.id].proposal.revision == 2
    assert len(again.failed_responses) == 0


@pytest.mark.asyncio
async def test_list_jobs_filters(peer: Peer) -> None:
    a = await peer.register(1)
    b = await peer.register(2)
    e1, e2 = str(uuid.uuid4()), str(uuid.uuid4())
    ja = (await peer.propose(a.id, e1, [lbl("env", "prod")])).job_id
    jb = (await peer.propose(b.id, e1, [lbl("env", "dev")])).job_id
    jc = (await peer.propose(a.id, e2, [lbl("env", "prod"), lbl("x")])).job_id

    async def listed(**kw: Any) -> list[str]:
        flt = job_pb2.ListJobsRequest.Filter(**kw)
        return [j.id for j in (await peer.jobs.ListJobs(job_pb2.ListJobsRequest(filter=flt))).jobs]

    all_jobs = await peer.jobs.ListJobs(job_pb2.ListJobsRequest())
    assert [j.id for j in all_jobs.jobs] == [ja, jb, jc]
    assert await listed(node_ids=[a.id]) == [ja, jc]
    assert await listed(uuids=[e1.upper()]) == [ja, jb]
    assert await listed(ids=[jc, jb]) == [jb, jc]
    assert await listed(selectors=[sel("env", label_pb2.EQ, "prod")]) == [ja, jc]
    assert await listed(selectors=[sel("x", label_pb2.EXIST)]) == [jc]
    assert await listed(node_ids=[a.id], selectors=[sel("x", label_pb2.NOT_EXIST)]) == [ja]


@pytest.mark.asyncio
async def test_revoke_update_delete_job(peer: Peer) -> None:
    n = await peer.register(1)
    ext = str(uuid.uuid4())
    p1 = await peer.propose(n.id, ext, [lbl("env", "prod")])
    p2 = await peer.propose(n.id, ext)

    # an old revision cannot be revoked by its proposal id; the latest can, by job id
    code, _ = await status_of(peer.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=p1.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    revoked = (await peer.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=p1.job_id))).proposal
    assert revoked.id == p2.id and revoked.status == job_pb2.PROPOSAL_STATUS_REVOKED
    code, _ = await status_of(peer.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=p2.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # already REVOKED

    policy = (
        await peer.policies.CreateRollbackPolicy(probation_pb2.CreateRollbackPolicyRequest())
    ).rollback_policy
    updated = (
        await peer.jobs.UpdateJob(
            job_pb2.UpdateJobRequest(
                id=p1.job_id, labels=[lbl("env", "dev")], rollback_policy_id=int(policy.id)
            )
        )
    ).job
    assert [(x.key, x.value) for x in updated.labels] == [("env", "dev")]
    assert updated.HasField("rollback_policy_id")
    assert updated.rollback_policy_id == int(policy.id)

    deleted = (await peer.jobs.DeleteJob(job_pb2.DeleteJobRequest(id=p1.job_id))).job
    assert deleted.HasField("deleted_at")
    assert deleted.rollback_policy_id == int(policy.id)
    listed = await peer.jobs.ListJobs(job_pb2.ListJobsRequest())
    assert list(listed.jobs) == []
    with_deleted = await peer.jobs.ListJobs(
        job_pb2.ListJobsRequest(filter=job_pb2.ListJobsRequest.Filter(include_deleted=True))
    )
    assert [j.id for j in with_deleted.jobs] == [p1.job_id]
    assert with_deleted.jobs[0] == deleted

    # re-proposing a deleted job revives it with the next revision
    p3 = await peer.propose(n.id, ext)
    assert p3.revision == 3 and p3.job_id == p1.job_id
    revived = (await peer.jobs.GetJob(job_pb2.GetJobRequest(id=p1.job_id))).job
    assert not revived.HasField("deleted_at")
