"""Rollback policies: Create/Get/List/UpdateRollbackPolicy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jdkit._core import rules
from jdkit._core.validate import policy_num
from jdkit._exceptions import InvalidArgumentError, NotFoundError
from jdkit._proto.api.probation.v1 import RollbackPolicy
from jdkit._proto.google.protobuf import Struct
from jdkit._server._db import Database, Tx
from jdkit._server._ids import now_us
from jdkit._server._schema import next_counter
from jdkit._server._state._rows import POLICY_COLS, to_policy
from jdkit._server._state._view import TxView
from jdkit._server._state._where import Where


class Policies:
    """The rollback policy records of `JDState`."""

    if TYPE_CHECKING:  # the database it runs on; help() shows no private type
        db: Database

    async def create_policy(self, policy: Struct | None) -> RollbackPolicy:
        text = rules.create_policy(policy)
        async with self.db.transaction(write=True) as tx:
            pid, now = await next_counter(tx, "rollback_policy"), now_us()
            await tx.execute(
                f"INSERT INTO jd_rollback_policies ({POLICY_COLS}) VALUES (?, ?, ?, ?)",
                [pid, text, now, now],
            )
            return await self._policy_in(tx, str(pid))

    async def _policy_in(self, tx: Tx, pid: str) -> RollbackPolicy:
        # ids are opaque to callers: a non-numeric id simply names no policy
        row = None
        num = policy_num(pid)
        if num is not None:
            row = await tx.fetchone(
                f"SELECT {POLICY_COLS} FROM jd_rollback_policies WHERE id = ?", [num]
            )
        if row is None:
            raise NotFoundError(f"rollback policy {pid!r} not found")
        return to_policy(row)

    async def get_policy(self, pid: str) -> RollbackPolicy:
        if not pid:
            raise InvalidArgumentError("id is required")
        async with self.db.transaction() as tx:
            return await self._policy_in(tx, pid)

    async def list_policies(self, ids: Sequence[str]) -> list[RollbackPolicy]:
        w = Where()
        nums = [n for n in map(policy_num, ids) if n is not None]
        if ids and not nums:
            return []
        w.in_list("id", nums)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {POLICY_COLS} FROM jd_rollback_policies{w.sql} ORDER BY id", w.params
            )
        policies = [to_policy(r) for r in rows]
        if w.exact:
            return policies
        wanted = {str(n) for n in nums}
        return [p for p in policies if p.id in wanted]

    async def update_policy(self, pid: str, policy: Struct | None) -> RollbackPolicy:
        async with self.db.transaction(write=True) as tx:
            current, text = await rules.update_policy(TxView(tx), pid, policy)
            await tx.execute(
                "UPDATE jd_rollback_policies SET policy = ?, updated_at = ? WHERE id = ?",
                [text, now_us(), int(current.id)],
            )
            return await self._policy_in(tx, pid)
