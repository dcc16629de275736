"""Rows and messages: the tables' columns, turning rows into Node / Job /
Proposal / RollbackPolicy messages, and the row reads and writes every part
of the state shares (fetch-or-NotFound, label tables, partial UPDATEs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from jdkit._core.validate import LabelPairs, labels_json
from jdkit._exceptions import InvalidArgumentError, NotFoundError
from jdkit._proto.api.job.v1 import (
    Job,
    Proposal,
    ProposalDeliveryStatus,
    ProposalStatus,
)
from jdkit._proto.api.label import Label
from jdkit._proto.api.node.v1 import Node, P2PKeyBundle
from jdkit._proto.api.probation.v1 import RollbackPolicy
from jdkit._proto.google.protobuf import Struct
from jdkit._server._db import Row, Tx
from jdkit._server._ids import now_us, to_datetime
from jdkit._server._selectors import MAX_SQL_ITEMS

NODE_COLS = "id, name, public_key, is_enabled, is_connected, labels, created_at, updated_at"
JOB_COLS = (
    "id, uuid, node_id, proposal_ids, labels, created_at, updated_at, deleted_at, "
    "rollback_policy_id"
)
PROP_COLS = (
    "id, job_id, revision, status, delivery_status, spec, created_at, updated_at, "
    "acked_at, response_received_at"
)
POLICY_COLS = "id, policy, created_at, updated_at"


def _labels_from_json(text: str) -> list[Label]:
    return [Label(key=k, value=v) for k, v in json.loads(text)]


def to_node(row: Row) -> Node:
    return Node(
        id=row[0],
        name=row[1],
        public_key=row[2],
        is_enabled=bool(row[3]),
        is_connected=bool(row[4]),
        labels=_labels_from_json(row[5]),
        created_at=to_datetime(row[6]),
        updated_at=to_datetime(row[7]),
    )


def to_job(row: Row) -> Job:
    return Job(
        id=row[0],
        uuid=row[1],
        node_id=row[2],
        proposal_ids=json.loads(row[3]),
        labels=_labels_from_json(row[4]),
        created_at=to_datetime(row[5]),
        updated_at=to_datetime(row[6]),
        deleted_at=to_datetime(row[7]),
        rollback_policy_id=None if row[8] is None else int(row[8]),
    )


def to_proposal(row: Row) -> Proposal:
    return Proposal(
        id=row[0],
        job_id=row[1],
        revision=int(row[2]),
        status=ProposalStatus(int(row[3])),
        delivery_status=ProposalDeliveryStatus(int(row[4])),
        spec=row[5],
        created_at=to_datetime(row[6]),
        updated_at=to_datetime(row[7]),
        acked_at=to_datetime(row[8]),
        response_received_at=to_datetime(row[9]),
    )


def to_policy(row: Row) -> RollbackPolicy:
    return RollbackPolicy(
        id=str(row[0]),
        policy=Struct.from_dict(json.loads(row[1])),
        created_at=to_datetime(row[2]),
        updated_at=to_datetime(row[3]),
    )


#: Result sets with at least this many rows are turned into messages (and
#: matched against selectors) in a worker thread: 15,000 jobs take ~1 s of
#: pure Python, which on the event loop would stall every other call.
OFFLOAD_ROWS = 500

_T = TypeVar("_T")


async def bulk(rows: Sequence[Row], build: Callable[[Sequence[Row]], list[_T]]) -> list[_T]:
    if len(rows) >= OFFLOAD_ROWS:
        return await asyncio.to_thread(build, rows)
    return build(rows)


async def with_reports(tx: Tx, nodes: list[Node]) -> list[Node]:
    """Fill in what the nodes last reported over the node protocol (UpdateNode)."""
    ids = [n.id for n in nodes]
    reports: dict[str, Row] = {}
    if len(ids) == 1:  # a point query (no thread hop on SQLite)
        one = await tx.fetchone(
            "SELECT node_id, version, workflow_key, nop_friendly_name, p2p_key_bundles"
            " FROM jd_node_reports WHERE node_id = ?",
            ids,
        )
        ids = []
        if one is not None:
            reports[one[0]] = one
    for i in range(0, len(ids), MAX_SQL_ITEMS):
        chunk = ids[i : i + MAX_SQL_ITEMS]
        marks = ", ".join("?" for _ in chunk)
        for r in await tx.fetchall(
            "SELECT node_id, version, workflow_key, nop_friendly_name, p2p_key_bundles"
            f" FROM jd_node_reports WHERE node_id IN ({marks})",
            chunk,
        ):
            reports[r[0]] = r
    for n in nodes:
        rep = reports.get(n.id)
        if rep is not None:
            n.version = rep[1]
            n.workflow_key = rep[2]
            n.nop_friendly_name = rep[3]
            n.p2p_key_bundles = [
                P2PKeyBundle(peer_id=p, public_key=k) for p, k in json.loads(rep[4])
            ]
    return nodes


# ------------------------------------------------ shared reads and writes


async def node_row(tx: Tx, node_id: str) -> Row:
    if not node_id:
        raise InvalidArgumentError("id is required")
    row = await tx.fetchone(f"SELECT {NODE_COLS} FROM jd_nodes WHERE id = ?", [node_id])
    if row is None:
        raise NotFoundError(f"node {node_id!r} not found")
    return row


async def job_row(tx: Tx, job_id: str) -> Row:
    row = await tx.fetchone(f"SELECT {JOB_COLS} FROM jd_jobs WHERE id = ?", [job_id])
    if row is None:
        raise NotFoundError(f"job {job_id!r} not found")
    return row


async def prop_row(tx: Tx, prop_id: str) -> Row:
    row = await tx.fetchone(f"SELECT {PROP_COLS} FROM jd_proposals WHERE id = ?", [prop_id])
    if row is None:
        raise NotFoundError(f"proposal {prop_id!r} not found")
    return row


async def set_labels(tx: Tx, table: str, owner: str, pairs: LabelPairs, *, replace: bool) -> None:
    if replace:
        await tx.execute(f"DELETE FROM {table} WHERE owner_id = ?", [owner])
    await tx.executemany(
        f"INSERT INTO {table} (owner_id, lkey, lvalue) VALUES (?, ?, ?)",
        [(owner, k, v) for k, v in pairs],
    )


async def update_row(
    tx: Tx,
    table: str,
    row_id: str,
    columns: dict[str, Any],
    labels: LabelPairs | None,
    label_table: str,
) -> None:
    """UPDATE one row of `table`: the `columns` whose value is not None (None
    means unchanged), the labels when given (the row's JSON copy and
    `label_table`), and updated_at."""
    sets: list[str] = []
    params: list[Any] = []
    for col, value in columns.items():
        if value is not None:
            sets.append(f"{col} = ?")
            params.append(value)
    if labels is not None:
        sets.append("labels = ?")
        params.append(labels_json(labels))
        await set_labels(tx, label_table, row_id, labels, replace=True)
    sets.append("updated_at = ?")
    params.append(now_us())
    await tx.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE id = ?", [*params, row_id])
