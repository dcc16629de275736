"""The rules' view: `jdkit._core.rules` decides what a write may do by reading
through a `StateView`; `TxView` is that view over one open transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jdkit._core.validate import policy_num
from jdkit._proto.api.job.v1 import Job, Proposal
from jdkit._proto.api.node.v1 import Node
from jdkit._proto.api.probation.v1 import RollbackPolicy
from jdkit._server._db import Tx
from jdkit._server._selectors import MAX_SQL_ITEMS
from jdkit._server._state._rows import (
    JOB_COLS,
    NODE_COLS,
    POLICY_COLS,
    PROP_COLS,
    to_job,
    to_node,
    to_policy,
    to_proposal,
)


def _chunks(items: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(items))
    return [unique[i : i + MAX_SQL_ITEMS] for i in range(0, len(unique), MAX_SQL_ITEMS)]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" for _ in items)


class TxView:
    """The rulebook's `StateView` over one open transaction, so a rule's
    reads and the write it allows see the same state."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def nodes(self, ids: Sequence[str]) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for chunk in _chunks(ids):
            sql = f"SELECT {NODE_COLS} FROM jd_nodes WHERE id IN ({_marks(chunk)})"
            for row in await self.tx.fetchall(sql, chunk):
                out[row[0]] = to_node(row)
        return out

    async def node_with_key(self, public_key: str) -> Node | None:
        sql = f"SELECT {NODE_COLS} FROM jd_nodes WHERE public_key = ?"
        row = await self.tx.fetchone(sql, [public_key])
        return None if row is None else to_node(row)

    async def job(self, job_id: str) -> Job | None:
        row = await self.tx.fetchone(f"SELECT {JOB_COLS} FROM jd_jobs WHERE id = ?", [job_id])
        return None if row is None else to_job(row)

    async def jobs_for(self, node_ids: Sequence[str], uuid: str) -> dict[str, Job]:
        out: dict[str, Job] = {}
        for chunk in _chunks(node_ids):
            sql = f"SELECT {JOB_COLS} FROM jd_jobs WHERE uuid = ? AND node_id IN ({_marks(chunk)})"
            for row in await self.tx.fetchall(sql, [uuid, *chunk]):
                out[row[2]] = to_job(row)
        return out

    async def proposal(self, prop_id: str) -> Proposal | None:
        sql = f"SELECT {PROP_COLS} FROM jd_proposals WHERE id = ?"
        row = await self.tx.fetchone(sql, [prop_id])
        return None if row is None else to_proposal(row)

    async def latest_proposals(self, job_ids: Sequence[str]) -> dict[str, Proposal]:
        out: dict[str, Proposal] = {}
        for chunk in _chunks(job_ids):
            sql = (
                f"SELECT {PROP_COLS} FROM jd_proposals p WHERE job_id IN ({_marks(chunk)})"
                " AND revision = (SELECT MAX(revision) FROM jd_proposals q"
                " WHERE q.job_id = p.job_id)"
            )
            for row in await self.tx.fetchall(sql, chunk):
                out[row[1]] = to_proposal(row)
        return out

    async def policy(self, policy_id: str) -> RollbackPolicy | None:
        num = policy_num(policy_id)
        if num is None:
            return None
        sql = f"SELECT {POLICY_COLS} FROM jd_rollback_policies WHERE id = ?"
        row = await self.tx.fetchone(sql, [num])
        return None if row is None else to_policy(row)
