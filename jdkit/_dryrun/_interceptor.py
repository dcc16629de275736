"""The dry-run interceptor: answers writes from the shared rulebook
(`jdkit._core.rules`) and records them in the journal; reads get the
planned writes merged in (`_reads`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import UTC, datetime

from jdkit._core import rules
from jdkit._dryrun._journal import Journal, JournalEntry
from jdkit._dryrun._overlay import Overlay, _copy, _Reader, _to_labels, _View
from jdkit._dryrun._reads import READS
from jdkit._exceptions import RPCError, error_for_status
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit._transport import check_encodes
from jdkit.pb import job, node, probation, protobuf


class DryRunInterceptor(Interceptor):
    """Answers writes from the rulebook and the journal's overlay; merges the
    overlay into reads.

    Each answer is what JD would say given the current state plus this dry
    run's own earlier writes: the same validation and refusals in the same
    order, the revision JD would assign. Nothing is ever sent for a write.
    Writes are decided one at a time per journal (its lock is held from the
    first read to the planned change), as JD decides each in a transaction.
    """

    def __init__(self, journal: Journal, *, max_send: int | None = None) -> None:
        self.journal = journal
        self.max_send = max_send  # the client's max_send_message_size: refused as if sent

    @property
    def _o(self) -> Overlay:
        return self.journal._overlay

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        # a request the client could not send is refused as the client refuses it,
        # before anything is planned or answered from the overlay
        check_encodes(call, self.max_send)
        name = call.method.name
        if not call.method.write:
            merge = READS.get(name)
            if merge is None:
                return await proceed(call)
            return await self._answer(call, merge(self._o, call.request, _Reader(call, proceed)))
        synth = getattr(self, "_" + name, None)
        assert synth is not None, f"no dry-run answer for {call.method.path}"
        async with self.journal._write_lock():
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
        new = self.journal.new_id(kind)
        self._o.created.add(new)
        return new

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
        new = self._o.next_policy_id(await view.server_policy_ids())
        self._o.created.add(new)
        now = datetime.now(UTC)
        pol = probation.RollbackPolicy(
            id=new,
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
