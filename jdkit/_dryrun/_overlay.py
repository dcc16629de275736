"""Read-your-writes: what a dry run's planned writes made the state, and how
it is merged with the server's.

`Overlay` holds the planned objects; `_View` is the rulebook's `StateView`
over the server's state (read through the rest of the chain) with them
applied; `_merged` applies them to a server's list answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar, cast

from jdkit._core.validate import LabelPairs
from jdkit._exceptions import NotFoundError
from jdkit._interceptors import Call, Message, UnaryNext
from jdkit._methods import METHODS
from jdkit.pb import job, label, node, probation

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
