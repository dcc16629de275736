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
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jdkit._exceptions import InvalidArgumentError, NotFoundError, RPCError
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit._json import to_json_dict
from jdkit._methods import METHODS
from jdkit.pb import job, label, node, probation

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
    _revisions: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

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
        self._revisions.clear()

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
    if isinstance(r, job.BatchProposeJobRequest):
        return f"propose job {_external_id(r.spec) or '?'} to {len(r.node_ids)} nodes"
    fields = {k: v for k, v in r.to_dict().items() if k != "spec"}
    return json.dumps(fields, sort_keys=True, default=str)


def _external_id(spec: str) -> str | None:
    try:
        value = tomllib.loads(spec).get("externalJobID")
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


class DryRunInterceptor(Interceptor):
    """Answers writes from the journal; forwards reads."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        if not call.method.write:
            return await proceed(call)
        synth = getattr(self, "_" + call.method.name, None)
        assert synth is not None, f"no dry-run answer for {call.method.path}"
        response: Message = await synth(call.request, _Reader(call, proceed))
        self.journal.entries.append(
            JournalEntry(call.method.path, call.request, response, datetime.now(UTC))
        )
        return response

    # -- nodes

    async def _RegisterNode(self, r: node.RegisterNodeRequest, read: _Reader) -> Message:
        now = datetime.now(UTC)
        n = node.Node(
            id=self.journal.new_id("node"),
            name=r.name,
            public_key=r.public_key,
            is_enabled=True,
            is_connected=False,
            labels=list(r.labels),
            created_at=now,
            updated_at=now,
        )
        self.journal._nodes[n.id] = n
        return node.RegisterNodeResponse(node=n)

    async def _node(self, node_id: str, read: _Reader) -> node.Node:
        if node_id in self.journal._nodes:
            return self.journal._nodes[node_id]
        got = await read("GetNode", node.GetNodeRequest(id=node_id))
        assert isinstance(got, node.GetNodeResponse) and got.node is not None
        return got.node

    async def _UpdateNode(self, r: node.UpdateNodeRequest, read: _Reader) -> Message:
        n = _copy(await self._node(r.id, read))
        n.name = r.name or n.name
        n.public_key = r.public_key or n.public_key
        if r.labels:
            n.labels = list(r.labels)
        n.updated_at = datetime.now(UTC)
        return node.UpdateNodeResponse(node=n)

    async def _EnableNode(self, r: node.EnableNodeRequest, read: _Reader) -> Message:
        n = _copy(await self._node(r.id, read))
        n.is_enabled, n.updated_at = True, datetime.now(UTC)
        return node.EnableNodeResponse(node=n)

    async def _DisableNode(self, r: node.DisableNodeRequest, read: _Reader) -> Message:
        n = _copy(await self._node(r.id, read))
        n.is_enabled, n.updated_at = False, datetime.now(UTC)
        return node.DisableNodeResponse(node=n)

    # -- jobs

    async def _proposal(self, node_id: str, spec: str, read: _Reader) -> job.Proposal:
        ext = _external_id(spec)
        if ext is None:
            raise InvalidArgumentError(
                "spec must be TOML carrying externalJobID (a UUID)",
                method="/api.job.v1.JobService/ProposeJob",
            )
        key = (node_id, ext)
        if key not in self.journal._revisions:
            existing: job.Job | None = None
            if not node_id.startswith(_PREFIX) and read.online:
                await self._node(node_id, read)  # unknown node: NOT_FOUND, as JD says
                got = await read(
                    "ListJobs",
                    job.ListJobsRequest(
                        filter=job.ListJobsRequestFilter(node_ids=[node_id], uuids=[ext])
                    ),
                )
                assert isinstance(got, job.ListJobsResponse)
                existing = got.jobs[0] if got.jobs else None
            self.journal._revisions[key] = len(existing.proposal_ids) if existing else 0
            if existing is not None:
                self.journal._jobs[key] = existing
        self.journal._revisions[key] += 1
        job_obj = self.journal._jobs.setdefault(
            key, job.Job(id=self.journal.new_id("job"), uuid=ext, node_id=node_id)
        )
        now = datetime.now(UTC)
        return job.Proposal(
            id=self.journal.new_id("prop"),
            revision=self.journal._revisions[key],
            status=job.ProposalStatus.PROPOSED,
            spec=spec,
            job_id=job_obj.id,
            created_at=now,
            updated_at=now,
        )

    async def _ProposeJob(self, r: job.ProposeJobRequest, read: _Reader) -> Message:
        return job.ProposeJobResponse(proposal=await self._proposal(r.node_id, r.spec, read))

    async def _BatchProposeJob(self, r: job.BatchProposeJobRequest, read: _Reader) -> Message:
        # One read seeds the revisions of every node's existing job; then each
        # node is answered offline (a dry run reports every node as a success).
        ext = _external_id(r.spec)
        if ext is not None:
            real = [n for n in r.node_ids if not n.startswith(_PREFIX)]
            unseen = [n for n in real if (n, ext) not in self.journal._revisions]
            if unseen:
                got = await read(
                    "ListJobs",
                    job.ListJobsRequest(
                        filter=job.ListJobsRequestFilter(node_ids=unseen, uuids=[ext])
                    ),
                )
                assert isinstance(got, job.ListJobsResponse)
                for n in unseen:
                    self.journal._revisions[(n, ext)] = 0
                for j in got.jobs:
                    self.journal._revisions[(j.node_id, ext)] = len(j.proposal_ids)
                    self.journal._jobs[(j.node_id, ext)] = j
        ok: dict[str, job.ProposeJobResponse] = {}
        for node_id in r.node_ids:
            ok[node_id] = job.ProposeJobResponse(
                proposal=await self._proposal(node_id, r.spec, _Reader.offline())
            )
        return job.BatchProposeJobResponse(success_responses=ok)

    async def _job(self, job_id: str, read: _Reader) -> job.Job:
        for j in self.journal._jobs.values():
            if j.id == job_id:
                return j
        try:
            got = await read("GetJob", job.GetJobRequest(id=job_id))
        except NotFoundError:
            # RevokeJob's id may name a proposal (the protocol comment says so)
            prop = await read("GetProposal", job.GetProposalRequest(id=job_id))
            assert isinstance(prop, job.GetProposalResponse) and prop.proposal is not None
            got = await read("GetJob", job.GetJobRequest(id=prop.proposal.job_id))
        assert isinstance(got, job.GetJobResponse) and got.job is not None
        return got.job

    async def _RevokeJob(self, r: job.RevokeJobRequest, read: _Reader) -> Message:
        j = await self._job(r.id or "", read)
        latest = j.proposal_ids[-1] if j.proposal_ids else self.journal.new_id("prop")
        now = datetime.now(UTC)
        return job.RevokeJobResponse(
            proposal=job.Proposal(
                id=latest, job_id=j.id, status=job.ProposalStatus.REVOKED, updated_at=now
            )
        )

    async def _DeleteJob(self, r: job.DeleteJobRequest, read: _Reader) -> Message:
        j = _copy(await self._job(r.id or "", read))
        j.deleted_at = j.updated_at = datetime.now(UTC)
        return job.DeleteJobResponse(job=j)

    async def _UpdateJob(self, r: job.UpdateJobRequest, read: _Reader) -> Message:
        j = _copy(await self._job(r.id or "", read))
        if r.labels:
            j.labels = list(r.labels)
        if r.rollback_policy_id is not None:
            j.rollback_policy_id = r.rollback_policy_id
        j.updated_at = datetime.now(UTC)
        return job.UpdateJobResponse(job=j)

    # -- rollback policies

    async def _CreateRollbackPolicy(
        self, r: probation.CreateRollbackPolicyRequest, read: _Reader
    ) -> Message:
        now = datetime.now(UTC)
        return probation.CreateRollbackPolicyResponse(
            rollback_policy=probation.RollbackPolicy(
                id=self.journal.new_id("policy"), policy=r.policy, created_at=now, updated_at=now
            )
        )

    async def _UpdateRollbackPolicy(
        self, r: probation.UpdateRollbackPolicyRequest, read: _Reader
    ) -> Message:
        if not r.id.startswith(_PREFIX):
            await read("GetRollbackPolicy", probation.GetRollbackPolicyRequest(id=r.id))
        return probation.UpdateRollbackPolicyResponse(
            rollback_policy=probation.RollbackPolicy(
                id=r.id, policy=r.policy, updated_at=datetime.now(UTC)
            )
        )


class _Reader:
    """Sends read RPCs down the rest of the chain, with the write's deadline."""

    def __init__(self, call: Call | None, proceed: UnaryNext | None) -> None:
        self._call, self._proceed = call, proceed

    @property
    def online(self) -> bool:
        return self._call is not None

    @classmethod
    def offline(cls) -> _Reader:
        return cls(None, None)

    async def __call__(self, name: str, request: Message) -> Message:
        if self._call is None or self._proceed is None:
            raise NotFoundError("not looked up in batch dry-runs")
        method = next(m for m in METHODS.values() if m.name == name and not m.write)
        sub = Call(
            method,
            request,
            metadata=dict(self._call.metadata),
            deadline=self._call.deadline,
            options=self._call.options,
        )
        try:
            return await self._proceed(sub)
        except RPCError as exc:
            exc.method = self._call.method.path  # the caller asked for the write
            raise


def _copy(message: Any) -> Any:
    return type(message).parse(bytes(message))
