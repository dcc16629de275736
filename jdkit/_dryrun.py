"""Dry-run: reads go through, writes are recorded and never sent.

Which RPC is a write comes from the one table in `_methods.py`. Each write is
decided by the same rulebook the embedded JD uses (`jdkit._core.rules`), over
a view of the server's state (read through the rest of the chain) merged with
this dry run's own planned writes; the answer is recorded in a `Journal` that
renders as a plan a deployment script can print before doing it for real.
Reads see the planned writes too (read-your-writes), so a script that
registers a node and then proposes to it by selector can be planned end to end.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar, cast

from jdkit._core import rules, validate
from jdkit._core.match import (
    check_paging,
    job_matches,
    node_matches,
    paginate,
    proposal_matches,
)
from jdkit._core.validate import LabelPairs
from jdkit._exceptions import NotFoundError, RPCError, error_for_status
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit._json import to_json_dict
from jdkit._methods import METHODS
from jdkit.pb import job, label, node, probation, protobuf

_PREFIX = "dryrun_"


@dataclass
class Overlay:
    """Objects as this dry run's writes left them, by id: new ones (ids with
    the `dryrun_` prefix, in the order planned) and changed copies of the
    server's. An object here hides the server's version of it."""

    nodes: dict[str, node.Node] = field(default_factory=dict)
    jobs: dict[str, job.Job] = field(default_factory=dict)
    proposals: dict[str, job.Proposal] = field(default_factory=dict)
    policies: dict[str, probation.RollbackPolicy] = field(default_factory=dict)


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
    #: What this dry run's writes would have made the state: later writes and reads see it.
    _overlay: Overlay = field(default_factory=lambda: Overlay(), repr=False)

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
        self._overlay = Overlay()

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


_external_id = validate.external_job_id_or_none


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


_EPOCH = datetime.min.replace(tzinfo=UTC)


class _Identified(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


Obj = TypeVar("Obj", bound=_Identified)


def _created(x: _Identified) -> tuple[Any, ...]:
    return (x.created_at or _EPOCH, x.id)


def _merged(
    server: list[Obj],
    planned: dict[str, Obj],
    keep: Callable[[Obj], bool],
    key: Callable[[Obj], tuple[Any, ...]] = _created,
) -> list[Obj]:
    """The server's answer with this dry run's objects applied: changed
    copies replace (or drop) the server's, in the server's order; new ones
    follow in the order they were planned."""
    existing = [x for x in server if x.id not in planned]
    existing += [x for x in planned.values() if not x.id.startswith(_PREFIX) and keep(x)]
    existing.sort(key=key)
    new = [x for x in planned.values() if x.id.startswith(_PREFIX) and keep(x)]
    return [cast(Obj, _copy(cast(Message, x))) for x in existing + new]


def _to_labels(pairs: LabelPairs) -> list[label.Label]:
    return [label.Label(key=k, value=v) for k, v in pairs]


_Job: TypeAlias = job.Job  # `job` is a method name inside _View
_Proposal: TypeAlias = job.Proposal


class _View:
    """The rulebook's `StateView` for a dry run: the server's state (read
    through the rest of the chain) with this dry run's planned writes applied."""

    def __init__(self, overlay: Overlay, call: Call, proceed: UnaryNext) -> None:
        self._o = overlay
        self._read = _Reader(call, proceed)

    async def _get(self, name: str, request: Message) -> Message | None:
        try:
            return await self._read(name, request)
        except NotFoundError:
            return None

    async def nodes(self, ids: Sequence[str]) -> dict[str, node.Node]:
        out = {i: self._o.nodes[i] for i in ids if i in self._o.nodes}
        rest = [i for i in dict.fromkeys(ids) if i not in out]
        if rest:
            got = await self._read(
                "ListNodes", node.ListNodesRequest(filter=node.ListNodesRequestFilter(ids=rest))
            )
            assert isinstance(got, node.ListNodesResponse)
            out.update((n.id, n) for n in got.nodes)
        return out

    async def node_with_key(self, public_key: str) -> node.Node | None:
        for n in self._o.nodes.values():
            if n.public_key == public_key:
                return n
        got = await self._get("GetNode", node.GetNodeRequest(public_key=public_key))
        assert got is None or isinstance(got, node.GetNodeResponse)
        if got is None or got.node is None or got.node.id in self._o.nodes:
            return None  # (a node the overlay holds has another key by now)
        return got.node

    async def job(self, job_id: str) -> _Job | None:
        if job_id in self._o.jobs:
            return self._o.jobs[job_id]
        got = await self._get("GetJob", job.GetJobRequest(id=job_id))
        assert got is None or isinstance(got, job.GetJobResponse)
        return got.job if got is not None else None

    async def jobs_for(self, node_ids: Sequence[str], uuid: str) -> dict[str, _Job]:
        wanted = set(node_ids)
        out = {
            j.node_id: j for j in self._o.jobs.values() if j.uuid == uuid and j.node_id in wanted
        }
        rest = [n for n in dict.fromkeys(node_ids) if n not in out]
        if rest:
            got = await self._read(
                "ListJobs",
                job.ListJobsRequest(
                    filter=job.ListJobsRequestFilter(
                        node_ids=rest, uuids=[uuid], include_deleted=True
                    )
                ),
            )
            assert isinstance(got, job.ListJobsResponse)
            out.update((j.node_id, j) for j in got.jobs if j.id not in self._o.jobs)
        return out

    async def proposal(self, prop_id: str) -> _Proposal | None:
        if prop_id in self._o.proposals:
            return self._o.proposals[prop_id]
        got = await self._get("GetProposal", job.GetProposalRequest(id=prop_id))
        assert got is None or isinstance(got, job.GetProposalResponse)
        return got.proposal if got is not None else None

    async def latest_proposals(self, job_ids: Sequence[str]) -> dict[str, _Proposal]:
        if not job_ids:
            return {}
        got = await self._read(
            "ListProposals",
            job.ListProposalsRequest(filter=job.ListProposalsRequestFilter(job_ids=list(job_ids))),
        )
        assert isinstance(got, job.ListProposalsResponse)
        wanted = set(job_ids)
        out: dict[str, _Proposal] = {}
        mine = [p for p in self._o.proposals.values() if p.job_id in wanted]
        for p in [*(p for p in got.proposals if p.id not in self._o.proposals), *mine]:
            if p.job_id not in out or p.revision > out[p.job_id].revision:
                out[p.job_id] = p
        return out

    async def policy(self, policy_id: str) -> probation.RollbackPolicy | None:
        if policy_id in self._o.policies:
            return self._o.policies[policy_id]
        got = await self._get("GetRollbackPolicy", probation.GetRollbackPolicyRequest(id=policy_id))
        assert got is None or isinstance(got, probation.GetRollbackPolicyResponse)
        return got.rollback_policy if got is not None else None


class _Reader:
    """Sends read RPCs down the rest of the chain, with the write's deadline."""

    def __init__(self, call: Call, proceed: UnaryNext) -> None:
        self._call, self._proceed = call, proceed

    async def same(self) -> Message:
        """The caller's own read, unchanged."""
        return await self._proceed(self._call)

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
