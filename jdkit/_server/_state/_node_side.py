"""The node's side: what nodes do and are told, over the node-facing wsrpc
protocol (`_nodeport`) or through the Python helpers that play the node's
part (`EmbeddedJD.approve_proposal`, `set_node_connected`, ...): connecting,
answering proposals, deliveries, UpdateNode reports."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jdkit._core import rules, validate
from jdkit._exceptions import FailedPreconditionError, InvalidArgumentError, NotFoundError
from jdkit._proto.api.job.v1 import Proposal, ProposalDeliveryStatus, ProposalStatus
from jdkit._proto.api.node.v1 import ChainConfig, Node
from jdkit._server._db import Database
from jdkit._server._ids import now_us
from jdkit._server._state._rows import node_row, prop_row, to_node, to_proposal, with_reports


class NodeSide:
    """The node-facing transitions of `JDState`."""

    if TYPE_CHECKING:  # the database it runs on; help() shows no private type
        db: Database

    async def set_node_connected(self, node_id: str, connected: bool) -> Node:
        async with self.db.transaction(write=True) as tx:
            row = await node_row(tx, node_id)
            now = now_us()
            if bool(row[4]) != connected:
                await tx.execute(
                    "UPDATE jd_nodes SET is_connected = ?, updated_at = ? WHERE id = ?",
                    [int(connected), now, node_id],
                )
                row = await node_row(tx, node_id)
            if connected:
                # what a real JD does when a node (re)connects: deliver what waits
                await tx.execute(
                    "UPDATE jd_proposals SET delivery_status = ?, updated_at = ?"
                    " WHERE status = ? AND delivery_status = ?"
                    " AND job_id IN (SELECT id FROM jd_jobs WHERE node_id = ?)",
                    [
                        int(ProposalDeliveryStatus.DELIVERED),
                        now,
                        int(ProposalStatus.PROPOSED),
                        int(ProposalDeliveryStatus.UNSPECIFIED),
                        node_id,
                    ],
                )
            return (await with_reports(tx, [to_node(row)]))[0]

    async def answer_proposal(
        self, prop_id: str, to: ProposalStatus, allowed: Sequence[ProposalStatus]
    ) -> Proposal:
        """The node's answer: move a proposal to `to` if it is in `allowed`."""
        async with self.db.transaction(write=True) as tx:
            row = await prop_row(tx, prop_id)
            if int(row[3]) not in allowed:
                names = " or ".join(s.proto_name or s.name for s in allowed)
                raise FailedPreconditionError(
                    f"proposal {prop_id} is {rules.status_name(int(row[3]))}; "
                    f"only a {names} proposal can become {to.proto_name}"
                )
            now = now_us()
            # an answer proves the node received the proposal
            await tx.execute(
                "UPDATE jd_proposals SET status = ?, delivery_status = ?, acked_at = ?,"
                " response_received_at = ?, updated_at = ? WHERE id = ?",
                [
                    int(to),
                    int(ProposalDeliveryStatus.ACKNOWLEDGED),
                    row[8] if row[8] is not None else now,
                    now,
                    now,
                    prop_id,
                ],
            )
            return to_proposal(await prop_row(tx, prop_id))

    async def enabled_node_keys(self) -> list[tuple[str, str]]:
        """(node id, public key hex) of every enabled node: who may connect."""
        async with self.db.transaction() as tx:
            rows = await tx.fetchall("SELECT id, public_key FROM jd_nodes WHERE is_enabled = 1")
        return [(r[0], r[1]) for r in rows]

    async def sealed_csa_key(self) -> tuple[str, str]:
        """(public key hex, sealed private key) of the CSA keypair."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT public_key, sealed_private_key FROM jd_csa_keypairs ORDER BY id LIMIT 1"
            )
        if row is None:
            raise NotFoundError("JD has no CSA keypair")
        return row[0], row[1]

    async def clear_connections(self) -> None:
        """At start of a node port: no node has a connection yet."""
        async with self.db.transaction(write=True) as tx:
            await tx.execute(
                "UPDATE jd_nodes SET is_connected = 0, updated_at = ? WHERE is_connected = 1",
                [now_us()],
            )

    async def set_node_link(self, node_id: str, connected: bool) -> None:
        """A node's wsrpc connection came up or went down (delivery is separate)."""
        async with self.db.transaction(write=True) as tx:
            await tx.execute(
                "UPDATE jd_nodes SET is_connected = ?, updated_at = ?"
                " WHERE id = ? AND is_connected = ?",
                [int(connected), now_us(), node_id, int(not connected)],
            )

    async def delivery(self, prop_id: str) -> tuple[str, str, int, str, bool] | None:
        """(node id, job uuid, revision, spec, node connected per the database)
        of a PROPOSED proposal not yet delivered; None otherwise."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT j.node_id, j.uuid, p.revision, p.spec, n.is_connected"
                " FROM jd_proposals p JOIN jd_jobs j ON j.id = p.job_id"
                " JOIN jd_nodes n ON n.id = j.node_id"
                " WHERE p.id = ? AND p.status = ? AND p.delivery_status = ?",
                [prop_id, int(ProposalStatus.PROPOSED), int(ProposalDeliveryStatus.UNSPECIFIED)],
            )
        if row is None:
            return None
        return row[0], row[1], int(row[2]), row[3], bool(row[4])

    async def pending_deliveries(self, node_id: str) -> list[tuple[str, str, int, str]]:
        """(proposal id, job uuid, revision, spec) of the node's PROPOSED,
        undelivered proposals, oldest first: the backlog sent when it connects."""
        async with self.db.transaction() as tx:
            # the usual answer is "nothing": a point query first (no thread hop on SQLite)
            any_row = await tx.fetchone(
                "SELECT p.id FROM jd_proposals p JOIN jd_jobs j ON j.id = p.job_id"
                " WHERE j.node_id = ? AND p.status = ? AND p.delivery_status = ? LIMIT 1",
                [node_id, int(ProposalStatus.PROPOSED), int(ProposalDeliveryStatus.UNSPECIFIED)],
            )
            if any_row is None:
                return []
            rows = await tx.fetchall(
                "SELECT p.id, j.uuid, p.revision, p.spec"
                " FROM jd_proposals p JOIN jd_jobs j ON j.id = p.job_id"
                " WHERE j.node_id = ? AND p.status = ? AND p.delivery_status = ?"
                " ORDER BY p.created_at, p.id",
                [node_id, int(ProposalStatus.PROPOSED), int(ProposalDeliveryStatus.UNSPECIFIED)],
            )
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    async def mark_delivered(self, prop_id: str) -> None:
        """The node took ProposeJob: UNSPECIFIED becomes DELIVERED (an answer
        that came first, ACKNOWLEDGED, stays)."""
        async with self.db.transaction(write=True) as tx:
            await tx.execute(
                "UPDATE jd_proposals SET delivery_status = ?, updated_at = ?"
                " WHERE id = ? AND delivery_status = ?",
                [
                    int(ProposalDeliveryStatus.DELIVERED),
                    now_us(),
                    prop_id,
                    int(ProposalDeliveryStatus.UNSPECIFIED),
                ],
            )

    async def node_proposal(
        self, node_id: str, job_uuid: str, revision: int, *, latest_only: bool
    ) -> str:
        """The proposal id a node means by (uuid, version) in its answers.

        Refused (with text the node gets back): an unknown job or revision, a
        deleted job, and, when `latest_only`, a revision a newer one replaced.
        """
        ext_id = validate.normalise_uuid(job_uuid)
        async with self.db.transaction() as tx:
            job = await tx.fetchone(
                "SELECT id, deleted_at FROM jd_jobs WHERE node_id = ? AND uuid = ?",
                [node_id, ext_id],
            )
            if job is None:
                raise NotFoundError(f"no job {ext_id[:64]!r} was proposed to this node")
            if job[1] is not None:
                raise FailedPreconditionError(f"job {ext_id} was deleted")
            row = await tx.fetchone(
                "SELECT id FROM jd_proposals WHERE job_id = ? AND revision = ?", [job[0], revision]
            )
            if row is None:
                raise NotFoundError(f"job {ext_id} has no proposal version {revision}")
            if latest_only:
                top = await tx.fetchone(
                    "SELECT MAX(revision) FROM jd_proposals WHERE job_id = ?", [job[0]]
                )
                newest = int(top[0]) if top and top[0] is not None else revision
                if newest != revision:
                    raise FailedPreconditionError(
                        f"job {ext_id} version {revision} is stale: version {newest} replaced it"
                    )
            return str(row[0])

    async def apply_node_report(
        self,
        node_id: str,
        *,
        version: str,
        workflow_key: str | None,
        nop_friendly_name: str,
        p2p_key_bundles: Sequence[tuple[str, str]],
        chain_configs: Sequence[ChainConfig],
    ) -> dict[str, str]:
        """A node's UpdateNode: its report replaces the previous one, and its
        chain configs replace all of its chain configs. Returns chain id ->
        why that config was refused."""
        errors: dict[str, str] = {}
        keep: dict[tuple[int, str], ChainConfig] = {}
        for cfg in chain_configs:
            chain = cfg.chain
            if chain is None or not chain.id:
                errors[chain.id if chain else ""] = "chain config needs chain.id and chain.type"
                continue
            if int(chain.type) == 0:
                errors[chain.id] = "chain.type is CHAIN_TYPE_UNSPECIFIED"
                continue
            if "\x00" in chain.id:
                errors[chain.id] = "chain.id contains NUL"
                continue
            c = ChainConfig.parse(bytes(cfg))
            c.node_id = node_id
            keep[(int(chain.type), chain.id)] = c
        for text in (version, workflow_key or "", nop_friendly_name):
            if "\x00" in text:
                raise InvalidArgumentError("report contains NUL")
        async with self.db.transaction(write=True) as tx:
            await node_row(tx, node_id)
            await tx.execute("DELETE FROM jd_chain_configs WHERE node_id = ?", [node_id])
            await tx.executemany(
                "INSERT INTO jd_chain_configs (node_id, chain_type, chain_id, config)"
                " VALUES (?, ?, ?, ?)",
                [
                    (node_id, t, cid, base64.b64encode(bytes(c)).decode())
                    for (t, cid), c in keep.items()
                ],
            )
            await tx.execute("DELETE FROM jd_node_reports WHERE node_id = ?", [node_id])
            await tx.execute(
                "INSERT INTO jd_node_reports (node_id, version, workflow_key, nop_friendly_name,"
                " p2p_key_bundles) VALUES (?, ?, ?, ?, ?)",
                [
                    node_id,
                    version,
                    workflow_key,
                    nop_friendly_name,
                    json.dumps([[p, k] for p, k in p2p_key_bundles]),
                ],
            )
            await tx.execute("UPDATE jd_nodes SET updated_at = ? WHERE id = ?", [now_us(), node_id])
        return errors
