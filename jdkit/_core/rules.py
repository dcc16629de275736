"""JD's write preconditions, once, for the embedded JD and the dry run.

Each rule validates a request, reads what it needs through a `StateView`
and either raises the error JD would answer or returns a plan: what the
write would change. The embedded JD implements the view over its open
database transaction and carries the plan out in SQL; the dry run implements
it over the server's answers merged with its own planned writes, and carries
the plan out in that overlay. So a dry run refuses exactly what the server
refuses, in the same order, and predicts the same revision numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from jdkit._core import validate
from jdkit._core.validate import LabelPairs
from jdkit._exceptions import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RPCError,
)
from jdkit._proto.api.job.v1 import Job, Proposal, ProposalStatus
from jdkit._proto.api.label import Label
from jdkit._proto.api.node.v1 import Node
from jdkit._proto.api.probation.v1 import RollbackPolicy
from jdkit._proto.google.protobuf import Struct


class StateView(Protocol):
    """What the rules may read. Lookups of absent things give None / no entry."""

    async def nodes(self, ids: Sequence[str]) -> Mapping[str, Node]:
        """The nodes among `ids` that exist, by id."""
        ...

    async def node_with_key(self, public_key: str) -> Node | None:
        """The node holding this (lower-case) public key."""
        ...

    async def job(self, job_id: str) -> Job | None: ...

    async def jobs_for(self, node_ids: Sequence[str], uuid: str) -> Mapping[str, Job]:
        """The job of externalJobID `uuid` on each of `node_ids`, deleted ones too, by node id."""
        ...

    async def proposal(self, prop_id: str) -> Proposal | None: ...

    async def latest_proposals(self, job_ids: Sequence[str]) -> Mapping[str, Proposal]:
        """Each job's proposal with the highest revision, by job id."""
        ...

    async def policy(self, policy_id: str) -> RollbackPolicy | None: ...


# ------------------------------------------------------------------ plans


@dataclass(frozen=True, slots=True)
class NewNode:
    name: str
    public_key: str
    labels: LabelPairs


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What an UpdateNode changes; None means unchanged."""

    node: Node
    name: str | None = None
    public_key: str | None = None
    labels: LabelPairs | None = None

    @property
    def changed(self) -> bool:
        return self.name is not None or self.public_key is not None or self.labels is not None


@dataclass(frozen=True, slots=True)
class NewProposal:
    """The next proposal for (node, externalJobID): a new job when `job` is None."""

    node: Node
    job: Job | None
    uuid: str
    revision: int
    spec: str
    labels: LabelPairs

    @property
    def delivered(self) -> bool:
        """A connected node gets the proposal at once; others when they connect."""
        return self.node.is_connected


@dataclass(frozen=True, slots=True)
class Batch:
    """BatchProposeJob: per-node plans, and per-node refusals (error messages)."""

    proposals: dict[str, NewProposal]
    failed: dict[str, str]


@dataclass(frozen=True, slots=True)
class JobChange:
    job: Job
    labels: LabelPairs | None = None
    rollback_policy_id: int | None = None

    @property
    def changed(self) -> bool:
        return self.labels is not None or self.rollback_policy_id is not None


# ----------------------------------------------------------------- helpers


def status_name(status: int) -> str:
    try:
        return ProposalStatus(status).proto_name or str(status)
    except ValueError:
        return str(status)


def pairs_of(labels: Sequence[Label]) -> LabelPairs:
    return [(lb.key, lb.value) for lb in labels]


def job_ident(job_id: str | None, uuid: str | None) -> str:
    """The id of Get/Revoke/Delete/UpdateJob; the deprecated `uuid` is refused."""
    if job_id:
        return validate.required(job_id, "id")
    if uuid is not None:
        raise InvalidArgumentError(
            "uuid is deprecated and ambiguous (one externalJobID can be a job on many nodes); "
            "pass the job id, or find it with ListJobs filter.uuids"
        )
    raise InvalidArgumentError("id is required")


async def _node(view: StateView, node_id: str, field: str = "id") -> Node:
    validate.required(node_id, field)
    found = (await view.nodes([node_id])).get(node_id)
    if found is None:
        raise NotFoundError(f"node {node_id!r} not found")
    return found


async def _job(view: StateView, job_id: str) -> Job:
    validate.required(job_id, "id")
    found = await view.job(job_id)
    if found is None:
        raise NotFoundError(f"job {job_id!r} not found")
    return found


# ------------------------------------------------------------------- nodes


def no_node(node_id: str, public_key: str | None) -> NotFoundError:
    """GetNode's answer when no node has this id and/or public key."""
    what = f"id {node_id!r}" if node_id else f"public_key {public_key!r}"
    if node_id and public_key:
        what += f" and public_key {public_key!r}"
    return NotFoundError(f"no node with {what}")


async def register_node(
    view: StateView, name: str, public_key: str, labels: Sequence[Label]
) -> NewNode:
    name = validate.name(name)
    pk = validate.public_key(public_key)
    pairs = validate.labels(labels)
    other = await view.node_with_key(pk)
    if other is not None:
        raise AlreadyExistsError(f"a node with public_key {pk} is already registered: {other.id}")
    return NewNode(name, pk, pairs)


async def update_node(
    view: StateView, node_id: str, name: str, public_key: str, labels: Sequence[Label]
) -> NodeChange:
    """Empty fields leave the node's value alone (JD's UpdateNode)."""
    pk = validate.public_key(public_key) if public_key else ""
    validate.optional_name(name)
    pairs = validate.labels(labels)
    current = await _node(view, node_id)
    new_pk = None
    if pk and pk != current.public_key:
        other = await view.node_with_key(pk)
        if other is not None and other.id != current.id:
            raise AlreadyExistsError(f"public_key {pk} already belongs to node {other.id}")
        new_pk = pk
    same_labels = validate.labels_json(pairs) == validate.labels_json(pairs_of(current.labels))
    return NodeChange(
        current,
        name=name if name and name != current.name else None,
        public_key=new_pk,
        labels=pairs if pairs and not same_labels else None,
    )


async def set_node_enabled(view: StateView, node_id: str) -> Node:
    """Enable/DisableNode: the node must exist; the caller flips the flag."""
    return await _node(view, node_id)


# -------------------------------------------------------------------- jobs


async def _propose_each(
    view: StateView, node_ids: Sequence[str], uuid: str, spec: str, pairs: LabelPairs
) -> dict[str, NewProposal | RPCError]:
    nodes = await view.nodes(node_ids)
    jobs = await view.jobs_for([n for n in node_ids if n in nodes], uuid)
    latest = await view.latest_proposals([j.id for j in jobs.values()])
    out: dict[str, NewProposal | RPCError] = {}
    for node_id in node_ids:
        n = nodes.get(node_id)
        if n is None:
            out[node_id] = NotFoundError(f"node {node_id!r} not found")
        elif not n.is_enabled:
            out[node_id] = FailedPreconditionError(
                f"node {node_id} is disabled; enable it before proposing jobs to it"
            )
        else:
            j = jobs.get(node_id)
            top = latest.get(j.id) if j is not None else None
            # MAX(revision) + 1: revisions never repeat, whatever happened to the proposals
            revision = top.revision + 1 if top is not None else 1
            out[node_id] = NewProposal(n, j, uuid, revision, spec, pairs)
    return out


#: Specs at least this long are parsed in a worker thread: tomllib is pure
#: Python (~0.1 s per MiB, several times that for many small keys), and a
#: parse on the event loop would stall every other call, health checks
#: included (issue 10, item 4).
OFFLOAD_SPEC = 64 * 1024


async def _spec_uuid(spec: str) -> str:
    if len(spec) >= OFFLOAD_SPEC:
        return await asyncio.to_thread(validate.spec_external_job_id, spec)
    return validate.spec_external_job_id(spec)


async def propose_job(
    view: StateView, node_id: str, spec: str, labels: Sequence[Label]
) -> NewProposal:
    uuid = await _spec_uuid(spec)
    pairs = validate.labels(labels)
    validate.required(node_id, "node_id")
    result = (await _propose_each(view, [node_id], uuid, spec, pairs))[node_id]
    if isinstance(result, RPCError):
        raise result
    return result


async def batch_propose_job(
    view: StateView, node_ids: Sequence[str], spec: str, labels: Sequence[Label]
) -> Batch:
    """Spec and labels are shared, so their problems fail the call; each
    node's problem stays with that node. A node listed twice is proposed to once."""
    if not node_ids:
        raise InvalidArgumentError("node_ids is empty; name at least one node")
    validate.count_at_most(node_ids, validate.MAX_IDS, "node_ids")
    uuid = await _spec_uuid(spec)
    pairs = validate.labels(labels)
    failed: dict[str, str] = {}
    wanted: list[str] = []
    for n in dict.fromkeys(node_ids):
        if not n:
            failed[n] = "node id is empty"
        elif "\x00" in n:
            failed[n] = "node id contains NUL"
        elif len(n) > validate.MAX_ID:
            failed[n] = f"node id is {len(n)} characters long; the limit is {validate.MAX_ID}"
        else:
            wanted.append(n)
    proposals: dict[str, NewProposal] = {}
    for node_id, result in (await _propose_each(view, wanted, uuid, spec, pairs)).items():
        if isinstance(result, RPCError):
            failed[node_id] = result.message
        else:
            proposals[node_id] = result
    return Batch(proposals, failed)


async def revoke_job(view: StateView, ident: str) -> Proposal:
    """The proposal to mark REVOKED. `ident` is a job id or a proposal id (the
    protocol comment allows both); a proposal must be its job's latest."""
    validate.required(ident, "id")
    found = await view.job(ident)
    named: Proposal | None = None
    if found is None:
        named = await view.proposal(ident)
        if named is None:
            raise NotFoundError(f"no job or proposal with id {ident!r}")
        job_id = named.job_id
    else:
        job_id = found.id
    latest = (await view.latest_proposals([job_id])).get(job_id)
    if latest is None:  # pragma: no cover - a job always has a proposal
        raise FailedPreconditionError(f"job {job_id} has no proposal to revoke")
    if named is not None and latest.id != named.id:
        raise FailedPreconditionError(
            f"proposal {named.id} is not the latest proposal of job {job_id} "
            f"(that is {latest.id}, revision {latest.revision}); only the latest can be revoked"
        )
    if latest.status not in (ProposalStatus.PROPOSED, ProposalStatus.CANCELLED):
        raise FailedPreconditionError(
            f"proposal {latest.id} (revision {latest.revision}) is {status_name(latest.status)}; "
            "only a PROPOSED or CANCELLED proposal can be revoked"
        )
    return latest


async def delete_job(view: StateView, job_id: str) -> Job:
    current = await _job(view, job_id)
    if current.deleted_at is not None:
        raise FailedPreconditionError(f"job {job_id} was already deleted at {current.deleted_at}")
    return current


async def update_job(
    view: StateView, job_id: str, labels: Sequence[Label], rollback_policy_id: int | None
) -> JobChange:
    pairs = validate.labels(labels)
    current = await _job(view, job_id)
    if current.deleted_at is not None:
        raise FailedPreconditionError(f"job {job_id} is deleted; it cannot be updated")
    new_policy = None
    if rollback_policy_id is not None:
        if await view.policy(str(rollback_policy_id)) is None:
            raise NotFoundError(f"rollback policy {rollback_policy_id} not found")
        if current.rollback_policy_id != rollback_policy_id:
            new_policy = rollback_policy_id
    same_labels = validate.labels_json(pairs) == validate.labels_json(pairs_of(current.labels))
    return JobChange(
        current,
        labels=pairs if pairs and not same_labels else None,
        rollback_policy_id=new_policy,
    )


# -------------------------------------------------------- rollback policies


def create_policy(policy: Struct | None) -> str:
    """The stored form of the new policy (absent: `{}`)."""
    return validate.policy_json(policy)


async def update_policy(
    view: StateView, policy_id: str, policy: Struct | None
) -> tuple[RollbackPolicy, str]:
    """(the current policy, the new stored form)."""
    validate.required(policy_id, "id")
    if policy is None:
        raise InvalidArgumentError("policy is required (an empty Struct clears it)")
    text = validate.policy_json(policy)
    current = await view.policy(policy_id)
    if current is None:
        raise NotFoundError(f"rollback policy {policy_id!r} not found")
    return current, text
