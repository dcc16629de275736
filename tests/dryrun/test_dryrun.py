"""Dry-run: reads go through, no write ever reaches the server, the journal is the plan."""

from __future__ import annotations

import json
import os
import uuid

import pytest

import jdkit
from jdkit import EmbeddedProvider, InvalidArgumentError, Journal, NotFoundError
from jdkit.pb import job, label, node, probation, protobuf

pytestmark = pytest.mark.asyncio


def _spec(ext: str) -> str:
    return f'type = "offchainreporting2"\nexternalJobID = "{ext}"\n'


async def _snapshot(jd: jdkit.JobDistributor) -> tuple[bytes, ...]:
    """Everything a client can read, as bytes, to prove nothing changed."""
    return (
        bytes(await jd.list_nodes()),
        bytes(
            await jd.list_jobs(
                job.ListJobsRequest(filter=job.ListJobsRequestFilter(include_deleted=True))
            )
        ),
        bytes(await jd.list_proposals()),
        bytes(await jd.list_rollback_policies()),
        bytes(await jd.list_node_chain_configs()),
    )


async def test_no_write_rpc_reaches_the_server() -> None:
    provider = EmbeddedProvider()
    async with provider as real:
        srv = provider.server
        n = (
            await real.register_node(
                node.RegisterNodeRequest(name="n1", public_key=os.urandom(32).hex())
            )
        ).node
        assert n is not None
        ext = str(uuid.uuid4())
        p = (await real.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext)))).proposal
        assert p is not None
        pol = (
            await real.create_rollback_policy(
                probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict({"max": 1}))
            )
        ).rollback_policy
        assert pol is not None
        before = await _snapshot(real)
        writes_before = srv.write_calls

        dry = real.with_dry_run()
        policy = protobuf.Struct.from_dict({"max": 2})
        answers = [
            await dry.register_node(
                node.RegisterNodeRequest(
                    name="n2", public_key="ee" * 32, labels=[label.Label(key="env", value="prod")]
                )
            ),
            await dry.update_node(node.UpdateNodeRequest(id=n.id, name="renamed")),
            await dry.enable_node(node.EnableNodeRequest(id=n.id)),
            await dry.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext))),
            await dry.batch_propose_job(
                job.BatchProposeJobRequest(node_ids=[n.id, "node_unknown"], spec=_spec(ext))
            ),
            await dry.revoke_job(job.RevokeJobRequest(id=p.job_id)),
            await dry.update_job(
                job.UpdateJobRequest(id=p.job_id, labels=[label.Label(key="k", value="v")])
            ),
            await dry.delete_job(
                job.DeleteJobRequest(id=p.job_id)
            ),  # after: deleted blocks updates
            await dry.create_rollback_policy(probation.CreateRollbackPolicyRequest(policy=policy)),
            await dry.update_rollback_policy(
                probation.UpdateRollbackPolicyRequest(id=pol.id, policy=policy)
            ),
            await dry.disable_node(node.DisableNodeRequest(id=n.id)),  # last: it blocks proposals
        ]
        assert len(answers) == len(jdkit.WRITES)  # every write RPC exercised
        assert dry.journal is not None
        assert sorted(dry.journal.methods()) == sorted(m.rsplit("/", 1)[1] for m in jdkit.WRITES)
        assert srv.write_calls == writes_before  # the server's own count: no write arrived
        assert await _snapshot(real) == before  # and its state is unchanged
        await dry.aclose()
        assert not real.closed  # the view does not close the real client


async def test_synthesized_answers_follow_the_request_and_current_state() -> None:
    async with EmbeddedProvider() as real:
        n = (
            await real.register_node(
                node.RegisterNodeRequest(name="n1", public_key=os.urandom(32).hex())
            )
        ).node
        assert n is not None
        ext = str(uuid.uuid4())
        await real.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext)))

        dry = real.with_dry_run()
        reg = (
            await dry.register_node(
                node.RegisterNodeRequest(
                    name="n2", public_key="ab" * 32, labels=[label.Label(key="env", value="dev")]
                )
            )
        ).node
        assert reg is not None and reg.id.startswith("dryrun_") and reg.name == "n2"
        assert reg.is_enabled and [lb.key for lb in reg.labels] == ["env"]

        # the server already has revision 1 of this job on n1: the dry run says 2, then 3
        p2 = (await dry.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext)))).proposal
        p3 = (await dry.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext)))).proposal
        assert p2 is not None and p3 is not None
        assert (p2.revision, p3.revision) == (2, 3)
        assert p2.status == job.ProposalStatus.PROPOSED

        # a node created in this dry run can be proposed to (revision 1)
        p_new = await dry.propose_job(job.ProposeJobRequest(node_id=reg.id, spec=_spec(ext)))
        assert p_new.proposal is not None and p_new.proposal.revision == 1

        batch = await dry.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=[n.id, reg.id], spec=_spec(ext))
        )
        assert set(batch.success_responses) == {n.id, reg.id} and not batch.failed_responses
        assert batch.success_responses[n.id].proposal.revision == 4  # type: ignore[union-attr]

        # what JD would refuse, the dry run refuses too
        with pytest.raises(InvalidArgumentError, match="spec is not valid TOML"):
            await dry.propose_job(job.ProposeJobRequest(node_id=n.id, spec="not toml ["))
        with pytest.raises(NotFoundError):
            await dry.propose_job(job.ProposeJobRequest(node_id="node_nope", spec=_spec(ext)))
        with pytest.raises(NotFoundError):
            await dry.update_node(node.UpdateNodeRequest(id="node_nope", name="x"))

        # reads in the dry run see its planned writes; the server has none of them
        assert [x.id for x in (await dry.list_nodes()).nodes] == [n.id, reg.id]
        assert len((await real.list_nodes()).nodes) == 1


async def test_journal_renders_a_plan_in_text_and_json() -> None:
    async with jdkit.connect(dry_run=True) as jd:
        assert isinstance(jd.journal, Journal)
        assert jd.journal.plan() == "Dry-run plan: nothing to write."
        await jd.register_node(node.RegisterNodeRequest(name="n1", public_key="ab" * 32))
        ext = str(uuid.uuid4())
        await jd.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=["dryrun_node_1"], spec=_spec(ext))
        )
        plan = jd.journal.plan()
        assert plan.splitlines()[0] == "Dry-run plan: 2 writes (none sent)"
        assert "RegisterNode: register node 'n1'" in plan
        assert f"BatchProposeJob: propose job {ext} to 1 node" in plan
        data = json.loads(jd.journal.to_json())
        assert [d["method"] for d in data] == [
            "/api.node.v1.NodeService/RegisterNode",
            "/api.job.v1.JobService/BatchProposeJob",
        ]
        assert data[0]["request"]["name"] == "n1"
        # the dry run's reads show its planned node (the server has none: see above)
        assert [x.id for x in (await jd.list_nodes()).nodes] == ["dryrun_node_1"]


async def test_revoke_accepts_a_proposal_id_like_jd() -> None:
    async with EmbeddedProvider() as real:
        n = (
            await real.register_node(
                node.RegisterNodeRequest(name="n1", public_key=os.urandom(32).hex())
            )
        ).node
        assert n is not None
        p = (
            await real.propose_job(
                job.ProposeJobRequest(node_id=n.id, spec=_spec(str(uuid.uuid4())))
            )
        ).proposal
        assert p is not None
        dry = real.with_dry_run()
        revoked = (await dry.revoke_job(job.RevokeJobRequest(id=p.id))).proposal
        assert revoked is not None
        assert (revoked.id, revoked.job_id) == (p.id, p.job_id)
        assert revoked.status == job.ProposalStatus.REVOKED
        with pytest.raises(NotFoundError):
            await dry.revoke_job(job.RevokeJobRequest(id="prop_nope"))


async def test_dry_run_refuses_what_jd_would_refuse() -> None:
    """The plan must not promise writes that JD would refuse (review findings)."""
    from jdkit import AlreadyExistsError, FailedPreconditionError

    async with EmbeddedProvider() as real:
        key = os.urandom(32).hex()
        n = (await real.register_node(node.RegisterNodeRequest(name="a", public_key=key))).node
        off = (
            await real.register_node(
                node.RegisterNodeRequest(name="off", public_key=os.urandom(32).hex())
            )
        ).node
        assert n is not None and off is not None
        await real.disable_node(node.DisableNodeRequest(id=off.id))
        ext = str(uuid.uuid4())
        first = await real.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext)))
        second = await real.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(ext)))
        assert first.proposal is not None and second.proposal is not None
        dry = real.with_dry_run()

        with pytest.raises(InvalidArgumentError, match="64 hex"):
            await dry.register_node(node.RegisterNodeRequest(name="b", public_key="zz"))
        with pytest.raises(AlreadyExistsError, match=n.id):
            await dry.register_node(node.RegisterNodeRequest(name="b", public_key=key.upper()))
        with pytest.raises(FailedPreconditionError, match="disabled") as info:
            await dry.propose_job(job.ProposeJobRequest(node_id=off.id, spec=_spec(ext)))
        assert info.value.method == "/api.job.v1.JobService/ProposeJob"
        with pytest.raises(NotFoundError) as nf:
            await dry.propose_job(job.ProposeJobRequest(node_id="node_nope", spec=_spec(ext)))
        assert "ProposeJob" in str(nf.value) and "GetNode" not in str(nf.value)

        batch = await dry.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=[n.id, off.id, "node_unknown"], spec=_spec(ext))
        )
        assert set(batch.success_responses) == {n.id}
        assert batch.success_responses[n.id].proposal.revision == 3  # type: ignore[union-attr]
        assert "disabled" in batch.failed_responses[off.id].error_message
        assert "not found" in batch.failed_responses["node_unknown"].error_message
        assert dry.journal is not None and "2 would fail" in dry.journal.plan()

        # revoking a proposal that is not the job's latest is refused, as by JD
        with pytest.raises(FailedPreconditionError, match="only the latest"):
            await dry.revoke_job(job.RevokeJobRequest(id=first.proposal.id))
        revoked = await dry.revoke_job(job.RevokeJobRequest(id=second.proposal.job_id))
        assert revoked.proposal is not None and revoked.proposal.spec  # the full proposal
        with pytest.raises(FailedPreconditionError, match="REVOKED"):
            await dry.revoke_job(job.RevokeJobRequest(id=second.proposal.job_id))

        await dry.delete_job(job.DeleteJobRequest(id=first.proposal.job_id))
        with pytest.raises(FailedPreconditionError, match="deleted"):
            await dry.update_job(
                job.UpdateJobRequest(id=first.proposal.job_id, labels=[label.Label(key="k")])
            )

        # the dry run's own writes shape its later answers
        await dry.update_node(node.UpdateNodeRequest(id=n.id, name="renamed"))
        disabled = (await dry.disable_node(node.DisableNodeRequest(id=n.id))).node
        assert disabled is not None and disabled.name == "renamed" and not disabled.is_enabled
        unchanged = (await real.get_node(node.GetNodeRequest(id=n.id))).node
        assert real is not dry and unchanged is not None and unchanged.name == "a"
