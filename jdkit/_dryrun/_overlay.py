"""Read-your-writes: what a dry run's planned writes made the state, and how
it is merged with the server's.

`Overlay` holds the planned objects; `_View` is the rulebook's `StateView`
over the server's state (read through the rest of the chain) with them
applied; `_merged` applies them to a server's list answer.

Copies: a planned object is copied (with the fast codec) whenever it leaves
the overlay, so a caller mutating an answer cannot change the plan; the
server's objects are fresh from its reply and are passed on as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar, cast

from jdkit._codec import decode, encode
from jdkit._core.validate import LabelPairs, policy_num
from jdkit._exceptions import NotFoundError
from jdkit._interceptors import Call, Message, UnaryNext
from jdkit._methods import METHODS
from jdkit.pb import job, label, node, probation

_PREFIX = "dryrun_"


@dataclass
class Overlay:
    """Objects as this dry run's writes left them, by id: new ones (their ids
    in `created`, in the order planned) and changed copies of the server's.
    An object here hides the server's version of it.

    New nodes, jobs and proposals get ids with the `dryrun_` prefix. New
    rollback policies get the decimal ids JD would give them (jobs name a
    policy by an int64, so a script must be able to pass the id on): one
    above the highest id the server listed when the policy was planned, or
    this dry run planned before, whichever is higher. That is what the
    embedded JD would assign if nothing else created a policy meanwhile, and
    it never names a policy that existed when it was planned; should another
    writer create that id later, the planned policy hides it in this run.
    """

    nodes: dict[str, node.Node] = field(default_factory=dict)
    jobs: dict[str, job.Job] = field(default_factory=dict)
    proposals: dict[str, job.Proposal] = field(default_factory=dict)
    policies: dict[str, probation.RollbackPolicy] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)

    def changed_nodes(self) -> list[node.Node]:
        """The server's nodes this dry run changed, as it left them."""
        return [n for i, n in self.nodes.items() if i not in self.created]

    def new_nodes(self) -> list[node.Node]:
        """The nodes this dry run registered, in the order planned."""
        return [n for i, n in self.nodes.items() if i in self.created]

    def next_policy_id(self, server_ids: Sequence[str]) -> str:
        """The id JD would give a new policy (see the class docstring)."""
        known = [policy_num(i) for i in [*server_ids, *self.policies]]
        return str(max((n for n in known if n is not None), default=0) + 1)


_EPOCH = datetime.min.replace(tzinfo=UTC)


class _Identified(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


Obj = TypeVar("Obj", bound=_Identified)


def _created(x: _Identified) -> tuple[Any, ...]:
    """The server's list order of nodes, jobs and proposals: ORDER BY created_at, id."""
    return (x.created_at or _EPOCH, x.id)


def _policy_order(x: _Identified) -> tuple[Any, ...]:
    """The server's list order of rollback policies: ORDER BY id (a number)."""
    return (policy_num(x.id) or 0, x.id)


def _merged(
    server: list[Obj],
    planned: dict[str, Obj],
    created: set[str],
    keep: Callable[[Obj], bool],
    key: Callable[[Obj], tuple[Any, ...]] = _created,
) -> list[Obj]:
    """The server's list answer with this dry run's objects applied.

    Order: first the server's objects, a changed copy in place of (or, if it
    no longer passes `keep`, instead of) the server's version, all sorted by
    `key`, the server's own list order (`_created`: created_at then id;
    `_policy_order`: numeric id), so an object keeps the place the server
    gives it; then the new objects that pass `keep`, in the order planned,
    as the server would list them once the plan is carried out (created
    after everything that exists). Planned objects are copies; the
    server's are its own.
    """
    existing = [x for x in server if x.id not in planned]
    changed = [x for i, x in planned.items() if i not in created and keep(x)]
    if changed:
        existing = sorted([*existing, *map(_copy_obj, changed)], key=key)
    return [*existing, *(_copy_obj(x) for i, x in planned.items() if i in created and keep(x))]


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

    async def server_policy_ids(self) -> list[str]:
        """The ids of the server's rollback policies (not a rule's read: for new ids)."""
        got = await self._read("ListRollbackPolicies", probation.ListRollbackPoliciesRequest())
        assert isinstance(got, probation.ListRollbackPoliciesResponse)
        return [p.id for p in got.rollback_policies]


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
    """An independent copy (what `type(m).parse(bytes(m))` gives, ~10x faster)."""
    return decode(type(message), encode(message))


def _copy_obj(x: Obj) -> Obj:
    return cast(Obj, _copy(cast(Message, x)))
