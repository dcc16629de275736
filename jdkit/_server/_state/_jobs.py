"""Jobs and their proposals as the operator manages them: ProposeJob (one
node and batches), Get/ListJobs, Get/ListProposals, RevokeJob, DeleteJob,
UpdateJob."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jdkit._core import rules, validate
from jdkit._core.match import job_matches
from jdkit._core.validate import labels_json
from jdkit._exceptions import InvalidArgumentError
from jdkit._proto.api.job.v1 import (
    Job,
    ListJobsRequestFilter,
    Proposal,
    ProposalDeliveryStatus,
    ProposalStatus,
)
from jdkit._proto.api.label import Label
from jdkit._server._db import Database, Tx
from jdkit._server._ids import new_id, now_us, to_datetime
from jdkit._server._state._rows import (
    JOB_COLS,
    PROP_COLS,
    bulk,
    job_row,
    prop_row,
    set_labels,
    to_job,
    to_proposal,
    update_row,
)
from jdkit._server._state._view import TxView
from jdkit._server._state._where import Where


class Jobs:
    """The job and proposal records of `JDState`."""

    if TYPE_CHECKING:  # the database it runs on; help() shows no private type
        db: Database

    def _delivered_on_create(self, node_id: str, connected: bool) -> bool:
        """Whether a new proposal counts as delivered at once: here, when the
        node is connected. With a node port (`_nodeport.LiveState`) a node on
        a real connection gets DELIVERED only once it took the proposal."""
        return connected

    async def propose_job(self, node_id: str, spec: str, labels: Sequence[Label]) -> Proposal:
        async with self.db.transaction(write=True) as tx:
            plan = await rules.propose_job(TxView(tx), node_id, spec, labels)
            return await self._insert_proposal(tx, plan)

    async def batch_propose_job(
        self, node_ids: Sequence[str], spec: str, labels: Sequence[Label]
    ) -> tuple[dict[str, Proposal], dict[str, str]]:
        """Per-node results: (proposals by node id, error messages by node id)."""
        # one transaction for the batch; problems with one node stay with that node
        async with self.db.transaction(write=True) as tx:
            batch = await rules.batch_propose_job(TxView(tx), node_ids, spec, labels)
            ok = await self._insert_batch(tx, batch.proposals)
        return ok, batch.failed

    async def _insert_batch(
        self, tx: Tx, plans: dict[str, rules.NewProposal]
    ) -> dict[str, Proposal]:
        """The batch's proposals in a handful of statements, not five per node.

        The common case, a spec new to every node, becomes three executemany
        writes (jobs, their labels, proposals); the proposals are built from
        what was written instead of read back. Re-proposals take the one-node
        path, so their answers are exactly the single call's.
        """
        proposed = int(ProposalStatus.PROPOSED)
        jobs: list[list[Any]] = []
        job_labels: list[tuple[str, str, str | None]] = []
        props: list[list[Any]] = []
        results: dict[str, Proposal] = {}  # in the caller's order
        for i, (node_id, plan) in enumerate(plans.items()):
            if i % 500 == 499:
                await asyncio.sleep(0)  # 10,000 nodes are ~0.35 s of CPU: let others in
            if plan.job is not None:
                results[node_id] = await self._insert_proposal(tx, plan)
                continue
            now, prop_id, job_id = now_us(), new_id("prop"), new_id("job")
            text = labels_json(plan.labels)
            jobs.append([job_id, plan.uuid, node_id, json.dumps([prop_id]), text, now, now])
            job_labels.extend((job_id, k, v) for k, v in plan.labels)
            delivery = ProposalDeliveryStatus.UNSPECIFIED
            if self._delivered_on_create(node_id, plan.delivered):
                delivery = ProposalDeliveryStatus.DELIVERED
            props.append(
                [prop_id, job_id, plan.revision, proposed, int(delivery), plan.spec, now, now]
            )
            when = to_datetime(now)
            results[node_id] = Proposal(
                id=prop_id,
                job_id=job_id,
                revision=plan.revision,
                status=ProposalStatus.PROPOSED,
                delivery_status=delivery,
                spec=plan.spec,
                created_at=when,
                updated_at=when,
            )
        if jobs:
            await tx.executemany(
                f"INSERT INTO jd_jobs ({JOB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)", jobs
            )
        if job_labels:
            await tx.executemany(
                "INSERT INTO jd_job_labels (owner_id, lkey, lvalue) VALUES (?, ?, ?)", job_labels
            )
        if props:
            await tx.executemany(
                f"INSERT INTO jd_proposals ({PROP_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                props,
            )
        return results

    async def _insert_proposal(self, tx: Tx, plan: rules.NewProposal) -> Proposal:
        now = now_us()
        prop_id = new_id("prop")
        if plan.job is None:
            job_id = new_id("job")
            await tx.execute(
                f"INSERT INTO jd_jobs ({JOB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                [
                    job_id,
                    plan.uuid,
                    plan.node.id,
                    json.dumps([prop_id]),
                    labels_json(plan.labels),
                    now,
                    now,
                ],
            )
            await set_labels(tx, "jd_job_labels", job_id, plan.labels, replace=False)
        else:
            job_id = plan.job.id
            pids = [*plan.job.proposal_ids, prop_id]
            sets, params = (
                ["proposal_ids = ?", "updated_at = ?", "deleted_at = NULL"],
                [json.dumps(pids), now],
            )
            if plan.labels:
                sets.append("labels = ?")
                params.append(labels_json(plan.labels))
                await set_labels(tx, "jd_job_labels", job_id, plan.labels, replace=True)
            await tx.execute(
                f"UPDATE jd_jobs SET {', '.join(sets)} WHERE id = ?", [*params, job_id]
            )
        delivery = ProposalDeliveryStatus.UNSPECIFIED
        if self._delivered_on_create(plan.node.id, plan.delivered):
            delivery = ProposalDeliveryStatus.DELIVERED
        await tx.execute(
            f"INSERT INTO jd_proposals ({PROP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [
                prop_id,
                job_id,
                plan.revision,
                int(ProposalStatus.PROPOSED),
                int(delivery),
                plan.spec,
                now,
                now,
            ],
        )
        return to_proposal(await prop_row(tx, prop_id))

    async def get_job(self, job_id: str) -> Job:
        async with self.db.transaction() as tx:
            return to_job(await job_row(tx, job_id))

    async def list_jobs(self, flt: ListJobsRequestFilter | None) -> list[Job]:
        flt = flt or ListJobsRequestFilter()
        uuids = [validate.normalise_uuid(u) for u in flt.uuids]
        w = Where()
        w.in_list("id", flt.ids)
        w.in_list("node_id", flt.node_ids)
        w.in_list("uuid", uuids)
        if not flt.include_deleted:
            w.add("deleted_at IS NULL")
        w.selectors(flt.selectors, "id", "jd_job_labels")
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {JOB_COLS} FROM jd_jobs{w.sql} ORDER BY created_at, id", w.params
            )
        if w.exact:
            return await bulk(rows, lambda rs: [to_job(r) for r in rs])
        return await bulk(rows, lambda rs: [j for j in map(to_job, rs) if job_matches(flt, j)])

    async def get_proposal(self, prop_id: str) -> Proposal:
        if not prop_id:
            raise InvalidArgumentError("id is required")
        async with self.db.transaction() as tx:
            return to_proposal(await prop_row(tx, prop_id))

    async def list_proposals(self, ids: Sequence[str], job_ids: Sequence[str]) -> list[Proposal]:
        w = Where()
        w.in_list("id", ids)
        w.in_list("job_id", job_ids)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {PROP_COLS} FROM jd_proposals{w.sql} ORDER BY created_at, id", w.params
            )
        props = await bulk(rows, lambda rs: [to_proposal(r) for r in rs])
        if w.exact:
            return props
        want_ids, want_jobs = set(ids), set(job_ids)
        return [
            p
            for p in props
            if (not want_ids or p.id in want_ids) and (not want_jobs or p.job_id in want_jobs)
        ]

    async def revoke_job(self, ident: str) -> Proposal:
        async with self.db.transaction(write=True) as tx:
            latest = await rules.revoke_job(TxView(tx), ident)
            await tx.execute(
                "UPDATE jd_proposals SET status = ?, updated_at = ? WHERE id = ?",
                [int(ProposalStatus.REVOKED), now_us(), latest.id],
            )
            return to_proposal(await prop_row(tx, latest.id))

    async def delete_job(self, job_id: str) -> Job:
        async with self.db.transaction(write=True) as tx:
            await rules.delete_job(TxView(tx), job_id)
            now = now_us()
            await tx.execute(
                "UPDATE jd_jobs SET deleted_at = ?, updated_at = ? WHERE id = ?", [now, now, job_id]
            )
            return to_job(await job_row(tx, job_id))

    async def update_job(
        self, job_id: str, labels: Sequence[Label], rollback_policy_id: int | None
    ) -> Job:
        async with self.db.transaction(write=True) as tx:
            change = await rules.update_job(TxView(tx), job_id, labels, rollback_policy_id)
            if not change.changed:
                return change.job
            columns = {"rollback_policy_id": change.rollback_policy_id}
            await update_row(tx, "jd_jobs", job_id, columns, change.labels, "jd_job_labels")
            return to_job(await job_row(tx, job_id))
