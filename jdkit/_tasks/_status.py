"""Where a rollout stands, per node: the join of nodes, jobs and proposals.

JD answers "which jobs" (ListJobs), "which proposals of these jobs"
(ListProposals by job id) and "which nodes" (ListNodes) separately, and a
proposal does not name its node. `rollout_status` makes the three calls
(paged/chunked), keeps each job's latest revision, and returns one row per
(node, job): latest revision, its status, delivery status and when it last
changed. With `nodes=`, nodes that match but were never proposed the job get
a row too, so "which dev nodes have not approved revision 2?" is one call:

    st = await jd.rollout_status(ext_id, nodes="env=dev")
    st.not_reached(APPROVED, revision=2)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Unpack

from jdkit._exceptions import NotFoundError
from jdkit._tasks._requests import SelectorLike, id_list, selector_list
from jdkit._tasks._rollout import NodesLike, resolve_nodes
from jdkit._tasks._waiters import parse_status, status_name
from jdkit.pb import job

if TYPE_CHECKING:
    from jdkit._client import CallOptions, JobDistributor

Status = job.ProposalStatus
Delivery = job.ProposalDeliveryStatus


@dataclass(frozen=True, slots=True)
class NodeRollout:
    """One node's state in a rollout: its job and that job's latest proposal.

    A node that matched `nodes=` but has no such job has `job_id == ""`,
    `revision == 0` and status `UNSPECIFIED` (shown as "not proposed").
    """

    node_id: str
    node_name: str
    job_id: str
    external_job_id: str
    proposal_id: str
    revision: int
    status: job.ProposalStatus
    delivery_status: job.ProposalDeliveryStatus
    #: When the latest proposal last changed (its `updated_at`, else `created_at`).
    updated_at: _dt.datetime | None
    deleted: bool = False

    @property
    def proposed(self) -> bool:
        """The node has the job (a row from `nodes=` may not)."""
        return bool(self.job_id)

    @property
    def status_text(self) -> str:
        """`APPROVED`, `PROPOSED`, ... or `not proposed`: what the table shows."""
        return status_name(self.status) if self.proposed else "not proposed"


@dataclass(frozen=True)
class RolloutStatus:
    """Rows of `NodeRollout`, one per (node, job), sorted by node name.

    Iterate it, `len()` it, `jdkit.show()` it (a table), or ask it questions.
    """

    rows: tuple[NodeRollout, ...]

    def __iter__(self) -> Iterator[NodeRollout]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> NodeRollout:
        return self.rows[i]

    def counts(self) -> dict[str, int]:
        """Rows per status text, e.g. `{"APPROVED": 8, "PROPOSED": 2}`."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status_text] = out.get(r.status_text, 0) + 1
        return out

    def where(
        self, status: job.ProposalStatus | str | None = None, *, revision: int | None = None
    ) -> list[NodeRollout]:
        """Rows whose latest proposal has `status` (and `revision`, when given)."""
        want = None if status is None else parse_status(status)
        return [
            r
            for r in self.rows
            if (want is None or (r.proposed and r.status == want))
            and (revision is None or r.revision == revision)
        ]

    def not_reached(
        self, status: job.ProposalStatus | str = Status.APPROVED, *, revision: int | None = None
    ) -> list[NodeRollout]:
        """Rows not (yet) at `status`, or whose latest revision is below `revision`."""
        want = parse_status(status)
        return [
            r
            for r in self.rows
            if not r.proposed
            or r.status != want
            or (revision is not None and r.revision < revision)
        ]

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        return f"<RolloutStatus {len(self.rows)} rows: {counts or 'empty'}>"


async def rollout_status(
    jd: JobDistributor,
    external_job_id: str | None = None,
    *,
    job_ids: Sequence[str] | None = None,
    selector: SelectorLike | None = None,
    nodes: NodesLike | None = None,
    include_deleted: bool = False,
    **opts: Unpack[CallOptions],
) -> RolloutStatus:
    if external_job_id is None and job_ids is None and selector is None and nodes is None:
        raise TypeError(
            "rollout_status() needs an externalJobID, job_ids=, selector= (job labels) or nodes="
        )
    node_ids = None if nodes is None else (await resolve_nodes(jd, nodes, opts))[0]
    if node_ids is not None and not node_ids:
        return RolloutStatus(())
    jobs = [
        j
        async for j in jd.iter_jobs(
            uuids=None if external_job_id is None else [external_job_id],
            ids=None if job_ids is None else id_list("job_ids", job_ids),
            selector=None if selector is None else selector_list(selector),
            node_ids=node_ids,
            include_deleted=include_deleted,
            **opts,
        )
    ]
    if not jobs and node_ids is None and (external_job_id is not None or job_ids is not None):
        # An id that names nothing is a mistake (a typo, another JD), not an
        # empty rollout: say so, as get_job would. Picked by nodes=, the
        # nodes without the job are the answer ("not proposed").
        what = []
        if external_job_id is not None:
            what.append(f"externalJobID {external_job_id!r}")
        if job_ids is not None:
            what.append(f"job id(s) {', '.join(map(repr, job_ids))}")
        raise NotFoundError(f"no job with {' and '.join(what)}")
    latest: dict[str, job.Proposal] = {}
    if jobs:
        async for p in jd.iter_proposals(job_ids=[j.id for j in jobs], **opts):
            have = latest.get(p.job_id)
            if have is None or p.revision > have.revision:
                latest[p.job_id] = p
    wanted = list(dict.fromkeys([*(node_ids or ()), *(j.node_id for j in jobs)]))
    names = {n.id: n.name async for n in jd.iter_nodes(ids=wanted, **opts)} if wanted else {}
    rows: list[NodeRollout] = []
    for j in jobs:
        last = latest.get(j.id)
        rows.append(
            NodeRollout(
                node_id=j.node_id,
                node_name=names.get(j.node_id, ""),
                job_id=j.id,
                external_job_id=j.uuid,
                proposal_id=last.id if last else "",
                revision=int(last.revision) if last else 0,
                status=last.status if last else Status.UNSPECIFIED,
                delivery_status=last.delivery_status if last else Delivery.UNSPECIFIED,
                updated_at=(last.updated_at or last.created_at) if last else j.updated_at,
                deleted=j.deleted_at is not None,
            )
        )
    proposed = {j.node_id for j in jobs}
    for node_id in node_ids or ():
        if node_id not in proposed:
            rows.append(
                NodeRollout(
                    node_id=node_id,
                    node_name=names.get(node_id, ""),
                    job_id="",
                    external_job_id=external_job_id or "",
                    proposal_id="",
                    revision=0,
                    status=Status.UNSPECIFIED,
                    delivery_status=Delivery.UNSPECIFIED,
                    updated_at=None,
                )
            )
    rows.sort(key=lambda r: (r.node_name, r.node_id, r.external_job_id))
    return RolloutStatus(tuple(rows))
