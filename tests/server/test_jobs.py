"""JobService on the embedded JD: proposals, revisions, revoke rules, soft delete."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest

from jdkit import (
    FailedPreconditionError,
    InvalidArgumentError,
    JobDistributor,
    NotFoundError,
)
from jdkit._server import EmbeddedJD
from jdkit.pb import job, label, node, probation, protobuf
from tests.helpers.server_fixtures import add_node, lbl, propose, spec

Op = label.SelectorOp
PS = job.ProposalStatus
DS = job.ProposalDeliveryStatus
Env = tuple[EmbeddedJD, JobDistributor]


async def get_job(jd: JobDistributor, job_id: str) -> job.Job:
    got = (await jd.get_job(job.GetJobRequest(id=job_id))).job
    assert got is not None
    return got


@pytest.mark.asyncio
async def test_first_proposal_creates_the_job(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 1)
    ext = str(uuid.uuid4())
    p = await propose(jd, n.id, ext, labels=[lbl("env", "prod")])
    assert p.id.startswith("prop_") and p.revision == 1
    assert p.status == PS.PROPOSED
    assert p.delivery_status == DS.UNSPECIFIED  # node not connected: not delivered yet
    assert p.spec == spec(ext) and p.acked_at is None and p.response_received_at is None
    j = await get_job(jd, p.job_id)
    assert j.id.startswith("job_") and j.uuid == ext and j.node_id == n.id
    assert j.proposal_ids == [p.id] and j.deleted_at is None
    assert [(x.key, x.value) for x in j.labels] == [("env", "prod")]


@pytest.mark.asyncio
async def test_reproposal_adds_revisions_to_the_same_job(env: Env) -> None:
    _, jd = env
    n, other = await add_node(jd, 1), await add_node(jd, 2)
    ext = str(uuid.uuid4())
    p1 = await propose(jd, n.id, ext, labels=[lbl("v", "1")])
    p2 = await propose(jd, n.id, ext.upper())  # same UUID, other spelling
    p3 = await propose(jd, n.id, ext, labels=[lbl("v", "3")])
    assert (p1.revision, p2.revision, p3.revision) == (1, 2, 3)
    assert p1.job_id == p2.job_id == p3.job_id
    j = await get_job(jd, p1.job_id)
    assert j.proposal_ids == [p1.id, p2.id, p3.id]
    assert [(x.key, x.value) for x in j.labels] == [("v", "3")]  # non-empty labels replace
    assert j.updated_at is not None and j.created_at is not None and j.updated_at > j.created_at
    elsewhere = await propose(jd, other.id, ext)  # same externalJobID, other node: other job
    assert elsewhere.job_id != p1.job_id and elsewhere.revision == 1


@pytest.mark.asyncio
async def test_delivery_follows_connection(env: Env) -> None:
    srv, jd = env
    n = await add_node(jd, 1)
    waiting = await propose(jd, n.id)
    await srv.set_node_connected(n.id)
    got = (await jd.get_proposal(job.GetProposalRequest(id=waiting.id))).proposal
    assert got is not None and got.delivery_status == DS.DELIVERED  # delivered on connect
    now = await propose(jd, n.id)
    assert now.delivery_status == DS.DELIVERED


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("not = [toml", "not valid TOML"),
        ('type = "cron"\n', "no externalJobID"),
        ('externalJobID = "not-a-uuid"\n', "is not a UUID"),
        ("externalJobID = 12\n", "must be a UUID string"),
    ],
)
async def test_spec_validation(env: Env, text: str, needle: str) -> None:
    _, jd = env
    n = await add_node(jd, 1)
    with pytest.raises(InvalidArgumentError) as info:
        await jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=text))
    assert needle in info.value.message


@pytest.mark.asyncio
async def test_propose_to_unknown_disabled_or_no_node(env: Env) -> None:
    _, jd = env
    with pytest.raises(NotFoundError):
        await propose(jd, "node_nope")
    with pytest.raises(InvalidArgumentError):
        await propose(jd, "")
    n = await add_node(jd, 1)
    await jd.disable_node(node.DisableNodeRequest(id=n.id))
    with pytest.raises(FailedPreconditionError, match="disabled"):
        await propose(jd, n.id)


@pytest.mark.asyncio
async def test_batch_propose_reports_each_node(env: Env) -> None:
    _, jd = env
    a, b, c = await add_node(jd, 1), await add_node(jd, 2), await add_node(jd, 3)
    await jd.disable_node(node.DisableNodeRequest(id=c.id))
    ext = str(uuid.uuid4())
    resp = await jd.batch_propose_job(
        job.BatchProposeJobRequest(
            node_ids=[a.id, "node_nope", b.id, c.id, a.id], spec=spec(ext), labels=[lbl("k")]
        )
    )
    assert set(resp.success_responses) == {a.id, b.id}
    assert set(resp.failed_responses) == {"node_nope", c.id}
    assert "not found" in resp.failed_responses["node_nope"].error_message
    assert "disabled" in resp.failed_responses[c.id].error_message
    pa = resp.success_responses[a.id].proposal
    assert pa is not None and pa.revision == 1  # a listed twice: proposed once
    with pytest.raises(InvalidArgumentError):
        await jd.batch_propose_job(job.BatchProposeJobRequest(node_ids=[], spec=spec()))
    with pytest.raises(InvalidArgumentError):
        await jd.batch_propose_job(job.BatchProposeJobRequest(node_ids=[a.id], spec="x = ["))


@pytest.mark.asyncio
async def test_get_job_errors(env: Env) -> None:
    _, jd = env
    with pytest.raises(NotFoundError):
        await jd.get_job(job.GetJobRequest(id="job_nope"))
    with pytest.raises(InvalidArgumentError):
        await jd.get_job(job.GetJobRequest())
    with pytest.raises(InvalidArgumentError):
        await jd.get_job(job.GetJobRequest(id=""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        request = job.GetJobRequest(uuid=str(uuid.uuid4()))
    with pytest.raises(InvalidArgumentError, match="deprecated"):
        await jd.get_job(request)


@pytest.mark.asyncio
async def test_list_jobs_filters_and_soft_delete(env: Env) -> None:
    _, jd = env
    a, b = await add_node(jd, 1), await add_node(jd, 2)
    ext = str(uuid.uuid4())
    j1 = (await propose(jd, a.id, ext, labels=[lbl("env", "prod")])).job_id
    j2 = (await propose(jd, b.id, ext, labels=[lbl("env", "dev")])).job_id
    j3 = (await propose(jd, a.id, labels=[lbl("env", "prod"), lbl("team", "x")])).job_id

    async def ids(**f: Any) -> list[str]:
        resp = await jd.list_jobs(job.ListJobsRequest(filter=job.ListJobsRequestFilter(**f)))
        return [j.id for j in resp.jobs]

    assert [j.id for j in (await jd.list_jobs()).jobs] == [j1, j2, j3]
    assert await ids(ids=[j3, j1]) == [j1, j3]
    assert await ids(node_ids=[a.id]) == [j1, j3]
    assert await ids(uuids=[ext]) == [j1, j2]
    assert await ids(uuids=[ext.upper()]) == [j1, j2]
    assert await ids(uuids=["garbage"]) == []
    sel = label.Selector
    assert await ids(selectors=[sel(key="env", op=Op.EQ, value="prod")]) == [j1, j3]
    assert await ids(selectors=[sel(key="env", op=Op.NOT_EQ, value="prod")]) == [j2]
    assert await ids(node_ids=[a.id], selectors=[sel(key="team", op=Op.NOT_EXIST)]) == [j1]
    assert await ids(ids=[f"job_{i}" for i in range(900)] + [j2]) == [j2]

    deleted = (await jd.delete_job(job.DeleteJobRequest(id=j1))).job
    assert deleted is not None and deleted.deleted_at is not None
    assert deleted.updated_at == deleted.deleted_at
    assert await ids() == [j2, j3]
    assert await ids(include_deleted=True) == [j1, j2, j3]
    assert await ids(ids=[j1]) == []
    assert (await get_job(jd, j1)).deleted_at is not None  # still readable by id
    with pytest.raises(FailedPreconditionError, match="already deleted"):
        await jd.delete_job(job.DeleteJobRequest(id=j1))
    with pytest.raises(NotFoundError):
        await jd.delete_job(job.DeleteJobRequest(id="job_nope"))
    with pytest.raises(InvalidArgumentError):
        await jd.delete_job(job.DeleteJobRequest())
    # proposing the same externalJobID again revives the job
    again = await propose(jd, a.id, ext)
    assert again.job_id == j1 and again.revision == 2
    assert (await get_job(jd, j1)).deleted_at is None


@pytest.mark.asyncio
async def test_proposals_get_and_list(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 1)
    ext = str(uuid.uuid4())
    p1, p2 = await propose(jd, n.id, ext), await propose(jd, n.id, ext)
    p3 = await propose(jd, n.id)
    got = (await jd.get_proposal(job.GetProposalRequest(id=p2.id))).proposal
    assert got is not None and got.to_dict() == p2.to_dict()
    with pytest.raises(NotFoundError):
        await jd.get_proposal(job.GetProposalRequest(id="prop_nope"))
    with pytest.raises(InvalidArgumentError):
        await jd.get_proposal(job.GetProposalRequest())

    async def ids(**f: Any) -> list[str]:
        resp = await jd.list_proposals(
            job.ListProposalsRequest(filter=job.ListProposalsRequestFilter(**f))
        )
        return [p.id for p in resp.proposals]

    assert [p.id for p in (await jd.list_proposals()).proposals] == [p1.id, p2.id, p3.id]
    assert await ids(job_ids=[p1.job_id]) == [p1.id, p2.id]
    assert await ids(ids=[p3.id, p1.id]) == [p1.id, p3.id]
    assert await ids(ids=[p3.id], job_ids=[p1.job_id]) == []


@pytest.mark.asyncio
async def test_revoke_rules(env: Env) -> None:
    srv, jd = env
    n = await add_node(jd, 1)
    ext = str(uuid.uuid4())
    p1 = await propose(jd, n.id, ext)
    revoked = (await jd.revoke_job(job.RevokeJobRequest(id=p1.job_id))).proposal
    assert revoked is not None and revoked.id == p1.id and revoked.status == PS.REVOKED
    with pytest.raises(FailedPreconditionError, match="REVOKED"):
        await jd.revoke_job(job.RevokeJobRequest(id=p1.job_id))

    p2 = await propose(jd, n.id, ext)
    with pytest.raises(FailedPreconditionError, match="not the latest"):
        await jd.revoke_job(job.RevokeJobRequest(id=p1.id))  # a proposal id, but not latest
    await srv.approve_proposal(p2.id)
    with pytest.raises(FailedPreconditionError, match="APPROVED"):
        await jd.revoke_job(job.RevokeJobRequest(id=p2.id))
    await srv.cancel_proposal(p2.id)
    by_prop = (await jd.revoke_job(job.RevokeJobRequest(id=p2.id))).proposal
    assert by_prop is not None and by_prop.status == PS.REVOKED  # CANCELLED -> REVOKED

    p3 = await propose(jd, n.id, ext)
    await srv.reject_proposal(p3.id)
    with pytest.raises(FailedPreconditionError, match="REJECTED"):
        await jd.revoke_job(job.RevokeJobRequest(id=p3.job_id))
    with pytest.raises(NotFoundError):
        await jd.revoke_job(job.RevokeJobRequest(id="prop_nope"))
    with pytest.raises(InvalidArgumentError):
        await jd.revoke_job(job.RevokeJobRequest())


@pytest.mark.asyncio
async def test_node_answers(env: Env) -> None:
    srv, jd = env
    n = await add_node(jd, 1)
    p = await propose(jd, n.id)
    ok = await srv.approve_proposal(p.id)
    assert ok.status == PS.APPROVED and ok.delivery_status == DS.ACKNOWLEDGED
    assert ok.acked_at is not None and ok.response_received_at is not None
    assert ok.updated_at is not None and p.updated_at is not None and ok.updated_at > p.updated_at
    seen = (await jd.get_proposal(job.GetProposalRequest(id=p.id))).proposal
    assert seen is not None and seen.status == PS.APPROVED
    for act in (srv.approve_proposal, srv.reject_proposal):
        with pytest.raises(FailedPreconditionError):
            await act(p.id)  # only from PROPOSED
    cancelled = await srv.cancel_proposal(p.id)  # APPROVED -> CANCELLED is allowed
    assert cancelled.status == PS.CANCELLED and cancelled.acked_at == ok.acked_at
    with pytest.raises(FailedPreconditionError):
        await srv.cancel_proposal(p.id)
    q = await propose(jd, n.id)
    assert (await srv.reject_proposal(q.id)).status == PS.REJECTED
    with pytest.raises(NotFoundError):
        await srv.approve_proposal("prop_nope")


@pytest.mark.asyncio
async def test_update_job(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 1)
    p = await propose(jd, n.id, labels=[lbl("env", "dev")])
    before = await get_job(jd, p.job_id)
    same = (await jd.update_job(job.UpdateJobRequest(id=p.job_id))).job
    assert same is not None and same.to_dict() == before.to_dict()
    up = (await jd.update_job(job.UpdateJobRequest(id=p.job_id, labels=[lbl("env", "prod")]))).job
    assert up is not None and [(x.key, x.value) for x in up.labels] == [("env", "prod")]
    assert up.updated_at is not None and before.updated_at is not None
    assert up.updated_at > before.updated_at
    sel = label.Selector(key="env", op=Op.EQ, value="prod")
    found = await jd.list_jobs(
        job.ListJobsRequest(filter=job.ListJobsRequestFilter(selectors=[sel]))
    )
    assert [j.id for j in found.jobs] == [p.job_id]

    with pytest.raises(NotFoundError, match="rollback policy"):
        await jd.update_job(job.UpdateJobRequest(id=p.job_id, rollback_policy_id=99))
    pol = (
        await jd.create_rollback_policy(
            probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict({"max": 3}))
        )
    ).rollback_policy
    assert pol is not None
    linked = (
        await jd.update_job(job.UpdateJobRequest(id=p.job_id, rollback_policy_id=int(pol.id)))
    ).job
    assert linked is not None and linked.rollback_policy_id == int(pol.id)
    assert [(x.key, x.value) for x in linked.labels] == [("env", "prod")]  # labels untouched
    with pytest.raises(NotFoundError):
        await jd.update_job(job.UpdateJobRequest(id="job_nope", labels=[lbl("a")]))
    with pytest.raises(InvalidArgumentError):
        await jd.update_job(job.UpdateJobRequest(id=p.job_id, labels=[lbl("a"), lbl("a")]))
    await jd.delete_job(job.DeleteJobRequest(id=p.job_id))
    with pytest.raises(FailedPreconditionError, match="deleted"):
        await jd.update_job(job.UpdateJobRequest(id=p.job_id, labels=[lbl("a")]))
