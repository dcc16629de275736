"""The dry-run interceptor: answers writes from the shared rulebook
(`jdkit._core.rules`) and records them in the journal; merges the planned
writes into reads."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import UTC, datetime

from jdkit._core import rules
from jdkit._core.match import (
    check_paging,
    job_matches,
    node_matches,
    paginate,
    proposal_matches,
)
from jdkit._dryrun._journal import Journal, JournalEntry
from jdkit._dryrun._overlay import Overlay, _copy, _merged, _Reader, _to_labels, _View
from jdkit._exceptions import NotFoundError, RPCError, error_for_status
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit.pb import job, node, probation, protobuf


class DryRunInterceptor(Interceptor):
    """Answers writes from the rulebook and the journal's overlay; merges the
    overlay into reads.

    Each answer is what JD would say given the current state plus this dry
    run's own earlier writes: the same validation and refusals in the same
    order, the revision JD would assign. Nothing is ever sent for a write.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @property
    def _o(self) -> Overlay:
        return self.journal._overlay

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        name = call.method.name
        if not call.method.write:
            merge = getattr(self, "_read_" + name, None)
            if merge is None:
                return await proceed(call)
            return await self._answer(call, merge(call, _Reader(call, proceed)))
        synth = getattr(self, "_" + name, None)
        assert synth is not None, f"no dry-run answer for {call.method.path}"
        response = await self._answer(call, synth(call.request, _View(self._o, call, proceed)))
        self.journal.entries.append(
            JournalEntry(call.method.path, call.request, response, datetime.now(UTC))
        )
        return response

    @staticmethod
    async def _answer(call: Call, answer: Awaitable[Message]) -> Message:
        try:
            return await answer
        except RPCError as exc:
            if exc.method == call.method.path:
                raise
            # the caller asked for this call, whatever read or rule found the problem
            raise error_for_status(exc.code, exc.message, method=call.method.path) from exc

    def _new_id(self, kind: str) -> str:
        return self.journal.new_id(kind)

    # ------------------------------------------------------------ nodes

    async def _RegisterNode(self, r: node.RegisterNodeRequest, view: _View) -> Message:
        plan = await rules.register_node(view, r.name, r.public_key, r.labels)
        now = datetime.now(UTC)
        n = node.Node(
            id=self._new_id("node"),
            name=plan.name,
            public_key=plan.public_key,
            is_enabled=True,
            is_connected=False,
            labels=_to_labels(plan.labels),
            created_at=now,
            updated_at=now,
        )
        self._o.nodes[n.id] = n
        return node.RegisterNodeResponse(node=_copy(n))

    async def _UpdateNode(self, r: node.UpdateNodeRequest, view: _View) -> Message:
        change = await rules.update_node(view, r.id, r.name, r.public_key, r.labels)
        n = _copy(change.node)
        if change.changed:
            n.name = change.name if change.name is not None else n.name
            n.public_key = change.public_key if change.public_key is not None else n.public_key
            if change.labels is not None:
                n.labels = _to_labels(change.labels)
            n.updated_at = datetime.now(UTC)
            self._o.nodes[n.id] = n
        return node.UpdateNodeResponse(node=_copy(n))

    async def _set_enabled(self, node_id: str, enabled: bool, view: _View) -> node.Node:
        n = _copy(await rules.set_node_enabled(view, node_id))
        if n.is_enabled != enabled:
            n.is_enabled, n.updated_at = enabled, datetime.now(UTC)
            self._o.nodes[n.id] = n
        return _copy(n)

    async def _EnableNode(self, r: node.EnableNodeRequest, view: _View) -> Message:
        return node.EnableNodeResponse(node=await self._set_enabled(r.id, True, view))

    async def _DisableNode(self, r: node.DisableNodeRequest, view: _View) -> Message:
        return node.DisableNodeResponse(node=await self._set_enabled(r.id, False, view))

    # ------------------------------------------------------------- jobs

    def _apply(self, plan: rules.NewProposal) -> job.Proposal:
        now = datetime.now(UTC)
        prop_id = self._new_id("prop")
        if plan.job is None:
            j = job.Job(
                id=self._new_id("job"),
                uuid=plan.uuid,
                node_id=plan.node.id,
                labels=_to_labels(plan.labels),
                created_at=now,
            )
        else:
            j = _copy(plan.job)
            j.deleted_at = None  # proposing again brings a deleted job back, as JD does
            if plan.labels:
                j.labels = _to_labels(plan.labels)
        j.proposal_ids = [*j.proposal_ids, prop_id]
        j.updated_at = now
        self._o.jobs[j.id] = j
        p = job.Proposal(
            id=prop_id,
            job_id=j.id,
            revision=plan.revision,
            status=job.ProposalStatus.PROPOSED,
            delivery_status=job.ProposalDeliveryStatus.DELIVERED
            if plan.delivered
            else job.ProposalDeliveryStatus.UNSPECIFIED,
            spec=plan.spec,
            created_at=now,
            updated_at=now,
        )
        self._o.proposals[p.id] = p
        return _copy(p)

    async def _ProposeJob(self, r: job.ProposeJobRequest, view: _View) -> Message:
        plan = await rules.propose_job(view, r.node_id, r.spec, r.labels)
        return job.ProposeJobResponse(proposal=self._apply(plan))

    async def _BatchProposeJob(self, r: job.BatchProposeJobRequest, view: _View) -> Message:
        batch = await rules.batch_propose_job(view, r.node_ids, r.spec, r.labels)
        return job.BatchProposeJobResponse(
            success_responses={
                n: job.ProposeJobResponse(proposal=self._apply(p))
                for n, p in batch.proposals.items()
            },
            failed_responses={
                n: job.ProposeJobFailure(error_message=m) for n, m in batch.failed.items()
            },
        )

    async def _RevokeJob(self, r: job.RevokeJobRequest, view: _View) -> Message:
        latest = await rules.revoke_job(view, rules.job_ident(r.id, r.uuid))
        p = _copy(latest)
        p.status, p.updated_at = job.ProposalStatus.REVOKED, datetime.now(UTC)
        self._o.proposals[p.id] = p
        return job.RevokeJobResponse(proposal=_copy(p))

    async def _DeleteJob(self, r: job.DeleteJobRequest, view: _View) -> Message:
        j = _copy(await rules.delete_job(view, rules.job_ident(r.id, r.uuid)))
        j.deleted_at = j.updated_at = datetime.now(UTC)
        self._o.jobs[j.id] = j
        return job.DeleteJobResponse(job=_copy(j))

    async def _UpdateJob(self, r: job.UpdateJobRequest, view: _View) -> Message:
        ident = rules.job_ident(r.id, r.uuid)
        change = await rules.update_job(view, ident, r.labels, r.rollback_policy_id)
        j = _copy(change.job)
        if change.changed:
            if change.labels is not None:
                j.labels = _to_labels(change.labels)
            if change.rollback_policy_id is not None:
                j.rollback_policy_id = change.rollback_policy_id
            j.updated_at = datetime.now(UTC)
            self._o.jobs[j.id] = j
        return job.UpdateJobResponse(job=_copy(j))

    # ------------------------------------------------ rollback policies

    async def _CreateRollbackPolicy(
        self, r: probation.CreateRollbackPolicyRequest, view: _View
    ) -> Message:
        text = rules.create_policy(r.policy)
        now = datetime.now(UTC)
        pol = probation.RollbackPolicy(
            id=self._new_id("policy"),
            policy=protobuf.Struct.from_dict(json.loads(text)),
            created_at=now,
            updated_at=now,
        )
        self._o.policies[pol.id] = pol
        return probation.CreateRollbackPolicyResponse(rollback_policy=_copy(pol))

    async def _UpdateRollbackPolicy(
        self, r: probation.UpdateRollbackPolicyRequest, view: _View
    ) -> Message:
        current, text = await rules.update_policy(view, r.id, r.policy)
        pol = _copy(current)
        pol.policy = protobuf.Struct.from_dict(json.loads(text))
        pol.updated_at = datetime.now(UTC)
        self._o.policies[pol.id] = pol
        return probation.UpdateRollbackPolicyResponse(rollback_policy=_copy(pol))

    # ------------------------------------------- reads see planned writes

    async def _read_GetNode(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, node.GetNodeRequest)
        if not self._o.nodes:
            return await read.same()
        try:
            got = await read.same()
            assert isinstance(got, node.GetNodeResponse)
            found = [got.node] if got.node and got.node.id not in self._o.nodes else []
            missing: RPCError = NotFoundError(f"no node with id {r.id!r}")
        except NotFoundError as exc:
            found, missing = [], exc
        key = (r.public_key or "").lower()
        for n in [*self._o.nodes.values(), *found]:
            if (not r.id or n.id == r.id) and (not key or n.public_key == key):
                return node.GetNodeResponse(node=_copy(n))
        raise missing

    async def _read_ListNodes(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, node.ListNodesRequest)
        if not self._o.nodes:
            return await read.same()
        check_paging(r.page_size, r.page)
        flt = r.filter or node.ListNodesRequestFilter()
        got = await read("ListNodes", node.ListNodesRequest(filter=flt))
        assert isinstance(got, node.ListNodesResponse)
        nodes = _merged(got.nodes, self._o.nodes, lambda n: node_matches(flt, n))
        return node.ListNodesResponse(
            nodes=paginate(nodes, r.page_size, r.page), total_count=len(nodes)
        )

    async def _read_GetJob(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, job.GetJobRequest)
        if r.id in self._o.jobs:
            return job.GetJobResponse(job=_copy(self._o.jobs[r.id]))
        return await read.same()

    async def _read_ListJobs(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, job.ListJobsRequest)
        got = await read.same()
        if not self._o.jobs:
            return got
        assert isinstance(got, job.ListJobsResponse)
        flt = r.filter or job.ListJobsRequestFilter()
        return job.ListJobsResponse(
            jobs=_merged(got.jobs, self._o.jobs, lambda j: job_matches(flt, j))
        )

    async def _read_GetProposal(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, job.GetProposalRequest)
        if r.id in self._o.proposals:
            return job.GetProposalResponse(proposal=_copy(self._o.proposals[r.id]))
        return await read.same()

    async def _read_ListProposals(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, job.ListProposalsRequest)
        got = await read.same()
        if not self._o.proposals:
            return got
        assert isinstance(got, job.ListProposalsResponse)
        ids = r.filter.ids if r.filter else []
        job_ids = r.filter.job_ids if r.filter else []
        return job.ListProposalsResponse(
            proposals=_merged(
                got.proposals, self._o.proposals, lambda p: proposal_matches(ids, job_ids, p)
            )
        )

    async def _read_GetRollbackPolicy(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, probation.GetRollbackPolicyRequest)
        if r.id in self._o.policies:
            pol = _copy(self._o.policies[r.id])
            return probation.GetRollbackPolicyResponse(rollback_policy=pol)
        return await read.same()

    async def _read_ListRollbackPolicies(self, call: Call, read: _Reader) -> Message:
        r = call.request
        assert isinstance(r, probation.ListRollbackPoliciesRequest)
        got = await read.same()
        if not self._o.policies:
            return got
        assert isinstance(got, probation.ListRollbackPoliciesResponse)
        ids = r.filter.ids if r.filter else []
        return probation.ListRollbackPoliciesResponse(
            rollback_policies=_merged(
                got.rollback_policies,
                self._o.policies,
                lambda p: not ids or p.id in ids,
                key=lambda p: (int(p.id), ""),
            )
        )
