"""What JD knows and does, independent of gRPC.

Every operation is one database transaction and raises the client-side error
classes of `jdkit._exceptions` (NotFoundError, InvalidArgumentError, ...), so
the same rules serve the RPC handlers (which turn them into statuses) and the
Python "node side" helpers that tests call directly.

Choices the upstream record leaves open (also in docs for the server):
- A proposal to a node that is not connected gets delivery status
  UNSPECIFIED (not yet delivered); connecting the node later marks its pending
  PROPOSED proposals DELIVERED, as a real JD delivers on connect.
- Proposing to a disabled node is FAILED_PRECONDITION.
- Re-proposing a deleted job's externalJobID to the same node revives that job
  (deleted_at cleared) and adds the next revision. Non-empty labels on a
  re-proposal replace the job's labels; empty ones leave them.
- RevokeJob with a proposal id revokes it only if it is the job's latest.
- Deleting an already deleted job, or updating a deleted job, is
  FAILED_PRECONDITION.

The state is one class, `JDState`, put together from one part per resource:
`_nodes` (nodes and chain configs), `_jobs` (jobs and proposals),
`_policies` (rollback policies) and `_node_side` (what nodes do and are
told); CSA keys and init/reset are here. JD's rules are `jdkit._core.rules`,
read through `_view.TxView`; `_rows` and `_where` are the SQL they share.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Self

from jdkit._exceptions import ConfigError, NotFoundError
from jdkit._proto.api.csa.v1 import Keypair
from jdkit._server import _csa
from jdkit._server._db import Database
from jdkit._server._ids import now_us, to_datetime
from jdkit._server._schema import RESETTABLE, create_schema
from jdkit._server._state._jobs import Jobs
from jdkit._server._state._node_side import NodeSide
from jdkit._server._state._nodes import Nodes
from jdkit._server._state._policies import Policies

__all__ = ["JDState"]


class JDState(Nodes, Jobs, Policies, NodeSide):
    """JD's data and rules on top of a database: what `srv.state` is.

    The methods the RPC handlers call (`register_node`, `list_nodes`,
    `propose_job`, ...) take and return the generated messages (`jdkit.pb`),
    each in one transaction, and raise jdkit's errors (`NotFoundError`, ...).
    A server makes its own (`srv.state`); it is not built directly.
    """

    if TYPE_CHECKING:  # the database it runs on; help() shows no private type
        db: Database

    def __init__(self) -> None:
        raise TypeError("a JDState is made by EmbeddedJD.start(): use srv.state")

    @classmethod
    def _over(cls, db: Database) -> Self:
        """The state of the database `db` (what EmbeddedJD makes)."""
        state = cls.__new__(cls)
        state.db = db
        return state

    async def init(self, csa_secret: str) -> None:
        """Create the schema if missing; create or unlock the CSA keypair."""
        if not csa_secret:
            raise ConfigError("csa_secret", "is empty")
        async with self.db.transaction(write=True) as tx:
            await create_schema(tx)
            rows = await tx.fetchall(
                "SELECT id, public_key, sealed_private_key FROM jd_csa_keypairs ORDER BY id"
            )
            if rows:
                # scrypt is deliberately slow: keep it off the event loop
                await asyncio.to_thread(_csa.verify, csa_secret, rows[0][1], rows[0][2])
            else:
                public_hex, sealed = await asyncio.to_thread(_csa.create, csa_secret)
                await tx.execute(
                    "INSERT INTO jd_csa_keypairs (id, public_key, sealed_private_key, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    [1, public_hex, sealed, now_us()],
                )

    async def reset(self) -> None:
        async with self.db.transaction(write=True) as tx:
            for table in RESETTABLE:
                await tx.execute(f"DELETE FROM {table}")
            await tx.execute("DELETE FROM jd_counters")

    # ------------------------------------------------------------- CSA

    async def list_keypairs(self) -> list[Keypair]:
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id, public_key, created_at FROM jd_csa_keypairs ORDER BY id"
            )
        return [Keypair(id=int(r[0]), public_key=r[1], created_at=to_datetime(r[2])) for r in rows]

    async def get_keypair(self) -> Keypair:
        keys = await self.list_keypairs()
        if not keys:
            raise NotFoundError("JD has no CSA keypair")
        return keys[0]
