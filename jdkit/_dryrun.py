"""Dry-run: reads go through, writes are recorded and never sent.

Which RPC is a write comes from the one table in `_methods.py`. Each write is
answered with a response synthesized from the request (and, where it helps,
from reads of the current state: e.g. the revision a proposal would get), and
recorded in a `Journal` that renders as a plan a deployment script can print
before doing it for real.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from jdkit._exceptions import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RPCError,
    error_for_status,
)
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit._json import to_json_dict
from jdkit._methods import METHODS
from jdkit.pb import job, label, node, probation, protobuf

_PREFIX = "dryrun_"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One write that was not sent."""

    method: str
    request: Message
    response: Message
    at: datetime

    @property
    def name(self) -> str:
        return self.method.rsplit("/", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "at": self.at.isoformat(),
            "request": to_json_dict(self.request),
            "response": to_json_dict(self.response),
        }


@dataclass
class Journal:
    """The writes a dry run would have made, in order."""

    entries: list[JournalEntry] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    #: Objects "created" by this dry run, so later writes can refer to them.
    _nodes: dict[str, node.Node] = field(default_factory=dict, repr=False)
    _jobs: dict[tuple[str, str], job.Job] = field(default_factory=dict, repr=False)
    _proposals: dict[str, job.Proposal] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.entries)

    def methods(self) -> list[str]:
        return [e.name for e in self.entries]

    def new_id(self, kind: str) -> str:
        return f"{_PREFIX}{kind}_{next(self._ids)}"

    def clear(self) -> None:
        self.entries.clear()
        self._nodes.clear()
        self._jobs.clear()
        self._proposals.clear()

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps([e.to_dict() for e in self.entries], indent=indent)

    def plan(self) -> str:
        if not self.entries:
            return "Dry-run plan: nothing to write."
        n = len(self.entries)
        lines = [f"Dry-run plan: {n} write{'s' if n != 1 else ''} (none sent)"]
        for i, entry in enumerate(self.entries, 1):
            lines.append(f"{i:>3}. {entry.name}: {_summary(entry)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.plan()


def _labels(labels: list[label.Label]) -> str:
    return (
        "{"
        + ", ".join(f"{lb.key}={lb.value}" if lb.value is not None else lb.key for lb in labels)
        + "}"
    )


def _summary(entry: JournalEntry) -> str:
    r, out = entry.request, entry.response
    if isinstance(r, node.RegisterNodeRequest):
        return f"register node {r.name!r} key {r.public_key[:12]}… labels {_labels(r.labels)}"
    if isinstance(r, job.ProposeJobRequest) and isinstance(out, job.ProposeJobResponse):
        rev = out.proposal.revision if out.proposal else "?"
        return f"propose job {_external_id(r.spec) or '?'} to node {r.node_id} (revision {rev})"
    if isinstance(r, job.BatchProposeJobRequest) and isinstance(out, job.BatchProposeJobResponse):
        n = len(out.success_responses)
        text = f"propose job {_external_id(r.spec) or '?'} to {n} node{'s' if n != 1 else ''}"
        if out.failed_responses:
            text += f"; {len(out.failed_responses)} would fail: " + ", ".join(
                f"{k} ({v.error_message})" for k, v in sorted(out.failed_responses.items())
            )
        return text
    fields = {k: v for k, v in r.to_dict().items() if k != "spec"}
    return json.dumps(fields, sort_keys=True, default=str)


def _external_id(spec: str) -> str | None:
    """The spec's externalJobID for the plan text (journaled specs passed JD's check)."""
    from jdkit._server import _validate

    try:
        return _validate.spec_external_job_id(spec)
    except InvalidArgumentError:
        return None


class DryRunInterceptor(Interceptor):
    """Answers writes from the journal; forwards reads.

    Each answer is what JD would say given the current state (read through
    the rest of the chain) plus this dry run's own earlier writes: the same
    validation, the same refusals (unknown or disabled node, duplicate key,
    deleted job, revoking a non-latest proposal), the revision JD would
    assign. Nothing is ever sent for a write.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        if not call.method.write:
            return await proceed(call)
        synth = getattr(self, "_" + call.method.name, None)
        assert synth is not None, f"no dry-run answer for {call.method.path}"
        try:
            response: Message = await synth(call.request, _Reader(call, proceed))
        except RPCError as exc:
            if exc.method == call.method.path:
                raise
            # the caller asked for the write, whatever read found the problem
            raise error_for_status(exc.code, exc.message, method=call.method.path) from exc
        self.journal.entries.append(
            JournalEntry(call.method.path, call.request, response, datetime.now(UTC))
        )
        return response

    # -- nodes

    async def _node(self, node_id: str, read: _Reader) -> node.Node:
        """The node as this dry run sees it (its own writes applied)."""
        if node_id not in self.journal._nodes:
            got = await read("GetNode", node.GetNodeRequest(id=node_id))
            assert isinstance(got, node.GetNodeResponse) and got.node is not None
            self.journal._nodes[node_id] = got.node
        return _copy(self.journal._nodes[node_id])

    def _keep(self, n: node.Node) -> node.Node:
        n.updated_at = datetime.now(UTC)
        self.journal._nodes[n.id] = n
        return n

    async def _RegisterNode(self, r: node.RegisterNodeRequest, read: _Reader) -> Message:
        from jdkit._server import _validate

        if not r.name:
            raise InvalidArgumentError("name is required")
        key = _validate.public_key(r.public_key)
        _validate.labels(r.labels)
        taken = [n.id for n in self.journal._nodes.values() if n.public_key.lower() == key]
        if not taken:
            try:
                got = await read("GetNode", node.GetNodeRequest(public_key=key))
                assert isinstance(got, node.GetNodeResponse) and got.node is not None
                taken = [got.node.id]
            except NotFoundError:
                pass
        if taken:
            raise AlreadyExistsError(
                f"a node with public_key {key} is already registered: {taken[0]}"
            )
        now = datetime.now(UTC)
        n = node.Node(
            id=self.journal.new_id("node"),
            name=r.name,
            public_key=key,
            is_enabled=True,
            is_connected=False,
            labels=list(r.labels),
            created_at=now,
        )
        return node.RegisterNodeResponse(node=self._keep(n))

    async def _UpdateNode(self, r: node.UpdateNodeRequest, read: _Reader) -> Message:
        from jdkit._server import _validate

        n = await self._node(r.id, read)
        n.name = r.name or n.name
        if r.public_key:
            n.public_key = _validate.public_key(r.public_key)
        if r.labels:
            _validate.labels(r.labels)
            n.labels = list(r.labels)
        return node.UpdateNodeResponse(node=self._keep(n))

    async def _EnableNode(self, r: node.EnableNodeRequest, read: _Reader) -> Message:
        n = await self._node(r.id, read)
        n.is_enabled = True
        return node.EnableNodeResponse(node=self._keep(n))

    async def _DisableNode(self, r: node.DisableNodeRequest, read: _Reader) -> Message:
        n = await self._node(r.id, read)
        n.is_enabled = False
        return node.DisableNodeResponse(node=self._keep(n))

    # -- jobs

    async def _seed(self, node_ids: list[str], ext: str, read: _Reader) -> None:
        """One read for the existing jobs of (node, externalJobID) pairs not seen yet."""
        unseen = [
            n for n in node_ids if not n.startswith(_PREFIX) and (n, ext) not in self.journal._jobs
        ]
        if not unseen:
            return
        got = await read(
            "ListJobs",
            job.ListJobsRequest(
                filter=job.ListJobsRequestFilter(node_ids=unseen, uuids=[ext], include_deleted=True)
            ),
        )
        assert isinstance(got, job.ListJobsResponse)
        for j in got.jobs:
            self.journal._jobs[(j.node_id, ext)] = j

    def _propose_to(self, n: node.Node, ext: str, spec: str) -> job.Proposal:
        if not n.is_enabled:
            raise FailedPreconditionError(
                f"node {n.id} is disabled; enable it before proposing jobs to it"
            )
        now = datetime.now(UTC)
        j = self.journal._jobs.get((n.id, ext))
        if j is None:
            j = job.Job(id=self.journal.new_id("job"), uuid=ext, node_id=n.id, created_at=now)
            self.journal._jobs[(n.id, ext)] = j
        j.deleted_at = None  # proposing again brings a deleted job back, as JD does
        j.updated_at = now
        p = job.Proposal(
            id=self.journal.new_id("prop"),
            revision=len(j.proposal_ids) + 1,
            status=job.ProposalStatus.PROPOSED,
            delivery_status=job.ProposalDeliveryStatus.DELIVERED
            if n.is_connected
            else job.ProposalDeliveryStatus.UNSPECIFIED,
            spec=spec,
            job_id=j.id,
            created_at=now,
            updated_at=now,
        )
        j.proposal_ids = [*j.proposal_ids, p.id]
        self.journal._proposals[p.id] = p
        return p

    async def _ProposeJob(self, r: job.ProposeJobRequest, read: _Reader) -> Message:
        from jdkit._server import _validate

        ext = _validate.spec_external_job_id(r.spec)
        _validate.labels(r.labels)
        if not r.node_id:
            raise InvalidArgumentError("node_id is required")
        n = await self._node(r.node_id, read)
        await self._seed([n.id], ext, read)
        return job.ProposeJobResponse(proposal=self._propose_to(n, ext, r.spec))

    async def _BatchProposeJob(self, r: job.BatchProposeJobRequest, read: _Reader) -> Message:
        from jdkit._server import _validate

        if not r.node_ids:
            raise InvalidArgumentError("node_ids is empty; name at least one node")
        ext = _validate.spec_external_job_id(r.spec)
        _validate.labels(r.labels)
        wanted = [n for n in dict.fromkeys(r.node_ids) if n]
        unknown = [n for n in wanted if n not in self.journal._nodes and not n.startswith(_PREFIX)]
        if unknown:  # one read for the state of every node not seen yet
            got = await read(
                "ListNodes",
                node.ListNodesRequest(filter=node.ListNodesRequestFilter(ids=unknown)),
            )
            assert isinstance(got, node.ListNodesResponse)
            for n in got.nodes:
                self.journal._nodes[n.id] = n
        await self._seed(wanted, ext, read)
        ok: dict[str, job.ProposeJobResponse] = {}
        failed: dict[str, job.ProposeJobFailure] = {}
        for node_id in r.node_ids:
            if not node_id:
                failed[node_id] = job.ProposeJobFailure(error_message="node id is empty")
            elif node_id not in self.journal._nodes:
                failed[node_id] = job.ProposeJobFailure(error_message=f"node {node_id!r} not found")
            elif node_id not in ok:
                try:
                    p = self._propose_to(self.journal._nodes[node_id], ext, r.spec)
                    ok[node_id] = job.ProposeJobResponse(proposal=p)
                except FailedPreconditionError as exc:
                    failed[node_id] = job.ProposeJobFailure(error_message=exc.message)
        return job.BatchProposeJobResponse(success_responses=ok, failed_responses=failed)

    async def _job(self, job_id: str, read: _Reader) -> job.Job:
        for j in self.journal._jobs.values():
            if j.id == job_id:
                return j
        if not job_id:
            raise InvalidArgumentError("id is required")
        got = await read("GetJob", job.GetJobRequest(id=job_id))
        assert isinstance(got, job.GetJobResponse) and got.job is not None
        # keyed by (node, externalJobID) like the jobs this run creates
        self.journal._jobs[(got.job.node_id, got.job.uuid)] = got.job
        return got.job

    async def _proposal_by_id(self, prop_id: str, read: _Reader) -> job.Proposal:
        if prop_id not in self.journal._proposals:
            got = await read("GetProposal", job.GetProposalRequest(id=prop_id))
            assert isinstance(got, job.GetProposalResponse) and got.proposal is not None
            self.journal._proposals[prop_id] = got.proposal
        return self.journal._proposals[prop_id]

    async def _RevokeJob(self, r: job.RevokeJobRequest, read: _Reader) -> Message:
        ident, named = r.id or "", None
        try:
            j = await self._job(ident, read)
        except NotFoundError:
            # the id may name a proposal (the protocol comment says so)
            named = await self._proposal_by_id(ident, read)
            j = await self._job(named.job_id, read)
        if not j.proposal_ids:
            raise FailedPreconditionError(f"job {j.id} has no proposal to revoke")
        latest = await self._proposal_by_id(j.proposal_ids[-1], read)
        if named is not None and named.id != latest.id:
            raise FailedPreconditionError(
                f"proposal {named.id} is not the latest proposal of job {j.id} "
                f"(that is {latest.id}, revision {latest.revision}); only the latest can be revoked"
            )
        if latest.status not in (job.ProposalStatus.PROPOSED, job.ProposalStatus.CANCELLED):
            raise FailedPreconditionError(
                f"proposal {latest.id} (revision {latest.revision}) is {latest.status.name}; "
                "only a PROPOSED or CANCELLED proposal can be revoked"
            )
        revoked = _copy(latest)
        revoked.status, revoked.updated_at = job.ProposalStatus.REVOKED, datetime.now(UTC)
        self.journal._proposals[revoked.id] = revoked
        return job.RevokeJobResponse(proposal=revoked)

    async def _DeleteJob(self, r: job.DeleteJobRequest, read: _Reader) -> Message:
        j = await self._job(r.id or "", read)
        if j.deleted_at is not None:
            raise FailedPreconditionError(f"job {j.id} was already deleted at {j.deleted_at}")
        j.deleted_at = j.updated_at = datetime.now(UTC)
        return job.DeleteJobResponse(job=_copy(j))

    async def _UpdateJob(self, r: job.UpdateJobRequest, read: _Reader) -> Message:
        from jdkit._server import _validate

        j = await self._job(r.id or "", read)
        if j.deleted_at is not None:
            raise FailedPreconditionError(f"job {j.id} is deleted; it cannot be updated")
        if r.labels:
            _validate.labels(r.labels)
            j.labels = list(r.labels)
        if r.rollback_policy_id is not None:
            await read(
                "GetRollbackPolicy",
                probation.GetRollbackPolicyRequest(id=str(r.rollback_policy_id)),
            )
            j.rollback_policy_id = r.rollback_policy_id
        j.updated_at = datetime.now(UTC)
        return job.UpdateJobResponse(job=_copy(j))

    # -- rollback policies

    @staticmethod
    def _check_policy(policy: protobuf.Struct | None) -> None:
        try:
            (policy or protobuf.Struct()).to_dict()
        except (ValueError, TypeError, AssertionError, AttributeError) as exc:
            raise InvalidArgumentError(
                f"policy is not a valid google.protobuf.Struct: {exc}"
            ) from None

    async def _CreateRollbackPolicy(
        self, r: probation.CreateRollbackPolicyRequest, read: _Reader
    ) -> Message:
        self._check_policy(r.policy)
        now = datetime.now(UTC)
        return probation.CreateRollbackPolicyResponse(
            rollback_policy=probation.RollbackPolicy(
                id=self.journal.new_id("policy"), policy=r.policy, created_at=now, updated_at=now
            )
        )

    async def _UpdateRollbackPolicy(
        self, r: probation.UpdateRollbackPolicyRequest, read: _Reader
    ) -> Message:
        self._check_policy(r.policy)
        created = None
        if not r.id.startswith(_PREFIX):
            got = await read("GetRollbackPolicy", probation.GetRollbackPolicyRequest(id=r.id))
            assert isinstance(got, probation.GetRollbackPolicyResponse)
            created = got.rollback_policy.created_at if got.rollback_policy else None
        return probation.UpdateRollbackPolicyResponse(
            rollback_policy=probation.RollbackPolicy(
                id=r.id, policy=r.policy, created_at=created, updated_at=datetime.now(UTC)
            )
        )


class _Reader:
    """Sends read RPCs down the rest of the chain, with the write's deadline."""

    def __init__(self, call: Call, proceed: UnaryNext) -> None:
        self._call, self._proceed = call, proceed

    async def __call__(self, name: str, request: Message) -> Message:
        method = _READS[name]
        sub = Call(
            method,
            request,
            metadata=dict(self._call.metadata),
            deadline=self._call.deadline,
            options=self._call.options,
        )
        return await self._proceed(sub)


_READS = {m.name: m for m in METHODS.values() if not m.write}


M = TypeVar("M", bound=Message)


def _copy(message: M) -> M:
    return type(message).parse(bytes(message))
