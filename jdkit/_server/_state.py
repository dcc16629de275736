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
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from jdkit._core import rules, validate
from jdkit._core.match import (
    check_enabled,
    check_paging,
    job_matches,
    node_matches,
    page_offset,
    paginate,
)
from jdkit._core.validate import LabelPairs, labels_json, policy_num
from jdkit._exceptions import (
    AlreadyExistsError,
    ConfigError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from jdkit._proto.api.csa.v1 import Keypair
from jdkit._proto.api.job.v1 import (
    Job,
    ListJobsRequestFilter,
    Proposal,
    ProposalDeliveryStatus,
    ProposalStatus,
)
from jdkit._proto.api.label import Label, Selector
from jdkit._proto.api.node.v1 import (
    ChainConfig,
    EnableState,
    ListNodesRequestFilter,
    Node,
    P2PKeyBundle,
)
from jdkit._proto.api.probation.v1 import RollbackPolicy
from jdkit._proto.google.protobuf import Struct
from jdkit._server import _csa
from jdkit._server._db import Database, IntegrityViolation, Row, Tx
from jdkit._server._ids import new_id, now_us, to_datetime
from jdkit._server._schema import RESETTABLE, create_schema, next_counter
from jdkit._server._selectors import MAX_SQL_ITEMS, sql_condition

#: Selectors beyond this many are checked in Python (bounds SQL size).
MAX_SQL_SELECTORS = 32

_NODE_COLS = "id, name, public_key, is_enabled, is_connected, labels, created_at, updated_at"
_JOB_COLS = (
    "id, uuid, node_id, proposal_ids, labels, created_at, updated_at, deleted_at, "
    "rollback_policy_id"
)
_PROP_COLS = (
    "id, job_id, revision, status, delivery_status, spec, created_at, updated_at, "
    "acked_at, response_received_at"
)
_POLICY_COLS = "id, policy, created_at, updated_at"


# ------------------------------------------------------------------ rows


def _labels_from_json(text: str) -> list[Label]:
    return [Label(key=k, value=v) for k, v in json.loads(text)]


def _node(row: Row) -> Node:
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


def _job(row: Row) -> Job:
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


def _proposal(row: Row) -> Proposal:
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


def _policy(row: Row) -> RollbackPolicy:
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


async def _bulk(rows: Sequence[Row], build: Callable[[Sequence[Row]], list[_T]]) -> list[_T]:
    if len(rows) >= OFFLOAD_ROWS:
        return await asyncio.to_thread(build, rows)
    return build(rows)


async def _with_reports(tx: Tx, nodes: list[Node]) -> list[Node]:
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


class _Where:
    """Builds an AND-ed WHERE clause; `exact` turns False when some condition
    was too large for SQL and must be re-checked in Python."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []
        self.exact = True

    def add(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.parts.append(sql)
        self.params.extend(params)

    def in_list(self, col: str, values: Sequence[Any]) -> None:
        if not values:
            return
        vals = list(dict.fromkeys(values))
        if len(vals) > MAX_SQL_ITEMS:
            self.exact = False
            return
        self.add(f"{col} IN ({', '.join('?' for _ in vals)})", vals)

    def selectors(self, sels: Sequence[Selector], owner_col: str, table: str) -> None:
        for i, sel in enumerate(sels):
            cond = sql_condition(sel, owner_col, table) if i < MAX_SQL_SELECTORS else None
            if cond is None:
                self.exact = False
                continue
            self.add(*cond)

    @property
    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.parts)) if self.parts else ""


# ------------------------------------------------------------ rules' view


def _chunks(items: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(items))
    return [unique[i : i + MAX_SQL_ITEMS] for i in range(0, len(unique), MAX_SQL_ITEMS)]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" for _ in items)


class _TxView:
    """The rulebook's `StateView` over one open transaction, so a rule's
    reads and the write it allows see the same state."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def nodes(self, ids: Sequence[str]) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for chunk in _chunks(ids):
            sql = f"SELECT {_NODE_COLS} FROM jd_nodes WHERE id IN ({_marks(chunk)})"
            for row in await self.tx.fetchall(sql, chunk):
                out[row[0]] = _node(row)
        return out

    async def node_with_key(self, public_key: str) -> Node | None:
        sql = f"SELECT {_NODE_COLS} FROM jd_nodes WHERE public_key = ?"
        row = await self.tx.fetchone(sql, [public_key])
        return None if row is None else _node(row)

    async def job(self, job_id: str) -> Job | None:
        row = await self.tx.fetchone(f"SELECT {_JOB_COLS} FROM jd_jobs WHERE id = ?", [job_id])
        return None if row is None else _job(row)

    async def jobs_for(self, node_ids: Sequence[str], uuid: str) -> dict[str, Job]:
        out: dict[str, Job] = {}
        for chunk in _chunks(node_ids):
            sql = f"SELECT {_JOB_COLS} FROM jd_jobs WHERE uuid = ? AND node_id IN ({_marks(chunk)})"
            for row in await self.tx.fetchall(sql, [uuid, *chunk]):
                out[row[2]] = _job(row)
        return out

    async def proposal(self, prop_id: str) -> Proposal | None:
        sql = f"SELECT {_PROP_COLS} FROM jd_proposals WHERE id = ?"
        row = await self.tx.fetchone(sql, [prop_id])
        return None if row is None else _proposal(row)

    async def latest_proposals(self, job_ids: Sequence[str]) -> dict[str, Proposal]:
        out: dict[str, Proposal] = {}
        for chunk in _chunks(job_ids):
            sql = (
                f"SELECT {_PROP_COLS} FROM jd_proposals p WHERE job_id IN ({_marks(chunk)})"
                " AND revision = (SELECT MAX(revision) FROM jd_proposals q"
                " WHERE q.job_id = p.job_id)"
            )
            for row in await self.tx.fetchall(sql, chunk):
                out[row[1]] = _proposal(row)
        return out

    async def policy(self, policy_id: str) -> RollbackPolicy | None:
        num = policy_num(policy_id)
        if num is None:
            return None
        sql = f"SELECT {_POLICY_COLS} FROM jd_rollback_policies WHERE id = ?"
        row = await self.tx.fetchone(sql, [num])
        return None if row is None else _policy(row)


# ----------------------------------------------------------------- state


class JDState:
    """JD's data and rules on top of a `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

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

    # ----------------------------------------------------------- nodes

    async def _node_row(self, tx: Tx, node_id: str) -> Row:
        if not node_id:
            raise InvalidArgumentError("id is required")
        row = await tx.fetchone(f"SELECT {_NODE_COLS} FROM jd_nodes WHERE id = ?", [node_id])
        if row is None:
            raise NotFoundError(f"node {node_id!r} not found")
        return row

    async def _set_labels(
        self, tx: Tx, table: str, owner: str, pairs: LabelPairs, *, replace: bool
    ) -> None:
        if replace:
            await tx.execute(f"DELETE FROM {table} WHERE owner_id = ?", [owner])
        await tx.executemany(
            f"INSERT INTO {table} (owner_id, lkey, lvalue) VALUES (?, ?, ?)",
            [(owner, k, v) for k, v in pairs],
        )

    async def register_node(self, name: str, public_key: str, labels: Sequence[Label]) -> Node:
        async with self.db.transaction(write=True) as tx:
            plan = await rules.register_node(_TxView(tx), name, public_key, labels)
            node_id, now = new_id("node"), now_us()
            try:
                await tx.execute(
                    f"INSERT INTO jd_nodes ({_NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [node_id, plan.name, plan.public_key, 1, 0, labels_json(plan.labels), now, now],
                )
            except IntegrityViolation:
                raise AlreadyExistsError(
                    f"a node with public_key {plan.public_key} is already registered"
                ) from None
            await self._set_labels(tx, "jd_node_labels", node_id, plan.labels, replace=False)
            return _node(await self._node_row(tx, node_id))

    async def get_node(self, node_id: str, public_key: str | None) -> Node:
        where, params = [], []
        if node_id:
            where.append("id = ?")
            params.append(node_id)
        if public_key:
            where.append("public_key = ?")
            params.append(public_key.lower())
        if not where:
            raise InvalidArgumentError("id or public_key is required")
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                f"SELECT {_NODE_COLS} FROM jd_nodes WHERE {' AND '.join(where)}", params
            )
            if row is None:
                what = f"id {node_id!r}" if node_id else f"public_key {public_key!r}"
                if node_id and public_key:
                    what += f" and public_key {public_key!r}"
                raise NotFoundError(f"no node with {what}")
            return (await _with_reports(tx, [_node(row)]))[0]

    async def list_nodes(
        self, flt: ListNodesRequestFilter | None, page_size: int, page: int
    ) -> tuple[list[Node], int]:
        check_paging(page_size, page)
        flt = flt or ListNodesRequestFilter()
        check_enabled(flt)
        enabled = flt.enabled
        keys = [k.lower() for k in flt.public_keys]
        w = _Where()
        w.in_list("id", flt.ids)
        w.in_list("public_key", keys)
        if enabled != EnableState.UNSPECIFIED:
            w.add("is_enabled = ?", [1 if enabled == EnableState.ENABLED else 0])
        w.selectors(flt.selectors, "id", "jd_node_labels")
        offset = page_offset(page_size, page)
        order = " ORDER BY created_at, id"
        async with self.db.transaction() as tx:
            if w.exact:
                count = await tx.fetchall(f"SELECT COUNT(*) FROM jd_nodes{w.sql}", w.params)
                total = int(count[0][0]) if count else 0
                if page_size and offset >= total:
                    return [], total
                limit = f" LIMIT {int(page_size)} OFFSET {int(offset)}" if page_size else ""
                rows = await tx.fetchall(
                    f"SELECT {_NODE_COLS} FROM jd_nodes{w.sql}{order}{limit}", w.params
                )
                nodes = await _bulk(rows, lambda rs: [_node(r) for r in rs])
                return await _with_reports(tx, nodes), total
            rows = await tx.fetchall(f"SELECT {_NODE_COLS} FROM jd_nodes{w.sql}{order}", w.params)
            nodes = await _bulk(
                rows, lambda rs: [n for n in map(_node, rs) if node_matches(flt, n)]
            )
            return await _with_reports(tx, paginate(nodes, page_size, page)), len(nodes)

    async def update_node(
        self, node_id: str, name: str, public_key: str, labels: Sequence[Label]
    ) -> Node:
        async with self.db.transaction(write=True) as tx:
            change = await rules.update_node(_TxView(tx), node_id, name, public_key, labels)
            if not change.changed:
                return (await _with_reports(tx, [change.node]))[0]
            sets: list[str] = []
            params: list[Any] = []
            if change.name is not None:
                sets.append("name = ?")
                params.append(change.name)
            if change.public_key is not None:
                sets.append("public_key = ?")
                params.append(change.public_key)
            if change.labels is not None:
                sets.append("labels = ?")
                params.append(labels_json(change.labels))
                await self._set_labels(tx, "jd_node_labels", node_id, change.labels, replace=True)
            sets.append("updated_at = ?")
            params.append(now_us())
            try:
                await tx.execute(
                    f"UPDATE jd_nodes SET {', '.join(sets)} WHERE id = ?", [*params, node_id]
                )
            except IntegrityViolation:
                raise AlreadyExistsError(
                    f"public_key {change.public_key} already belongs to another node"
                ) from None
            return (await _with_reports(tx, [_node(await self._node_row(tx, node_id))]))[0]

    async def set_node_enabled(self, node_id: str, enabled: bool) -> Node:
        async with self.db.transaction(write=True) as tx:
            current = await rules.set_node_enabled(_TxView(tx), node_id)
            if current.is_enabled == enabled:
                return (await _with_reports(tx, [current]))[0]
            await tx.execute(
                "UPDATE jd_nodes SET is_enabled = ?, updated_at = ? WHERE id = ?",
                [int(enabled), now_us(), node_id],
            )
            return (await _with_reports(tx, [_node(await self._node_row(tx, node_id))]))[0]

    async def set_node_connected(self, node_id: str, connected: bool) -> Node:
        async with self.db.transaction(write=True) as tx:
            row = await self._node_row(tx, node_id)
            now = now_us()
            if bool(row[4]) != connected:
                await tx.execute(
                    "UPDATE jd_nodes SET is_connected = ?, updated_at = ? WHERE id = ?",
                    [int(connected), now, node_id],
                )
                row = await self._node_row(tx, node_id)
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
            return (await _with_reports(tx, [_node(row)]))[0]

    async def add_chain_config(self, node_id: str, config: ChainConfig) -> ChainConfig:
        if config.chain is None:
            raise InvalidArgumentError("chain config needs chain (id and type)")
        cfg = ChainConfig.parse(bytes(config))
        cfg.node_id = node_id
        assert cfg.chain is not None
        key = [node_id, int(cfg.chain.type), cfg.chain.id]
        async with self.db.transaction(write=True) as tx:
            await self._node_row(tx, node_id)
            await tx.execute(
                "DELETE FROM jd_chain_configs WHERE node_id = ? AND chain_type = ?"
                " AND chain_id = ?",
                key,
            )
            await tx.execute(
                "INSERT INTO jd_chain_configs (node_id, chain_type, chain_id, config)"
                " VALUES (?, ?, ?, ?)",
                [*key, base64.b64encode(bytes(cfg)).decode()],
            )
        return cfg

    async def list_chain_configs(self, node_ids: Sequence[str]) -> list[ChainConfig]:
        w = _Where()
        w.in_list("node_id", node_ids)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT node_id, config FROM jd_chain_configs{w.sql}"
                " ORDER BY node_id, chain_type, chain_id",
                w.params,
            )
        wanted = set(node_ids)
        return [
            ChainConfig.parse(base64.b64decode(r[1]))
            for r in rows
            if w.exact or not wanted or r[0] in wanted
        ]

    # ------------------------------------------------------------ jobs

    async def _job_row(self, tx: Tx, job_id: str) -> Row:
        row = await tx.fetchone(f"SELECT {_JOB_COLS} FROM jd_jobs WHERE id = ?", [job_id])
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return row

    async def _prop_row(self, tx: Tx, prop_id: str) -> Row:
        row = await tx.fetchone(f"SELECT {_PROP_COLS} FROM jd_proposals WHERE id = ?", [prop_id])
        if row is None:
            raise NotFoundError(f"proposal {prop_id!r} not found")
        return row

    async def propose_job(self, node_id: str, spec: str, labels: Sequence[Label]) -> Proposal:
        async with self.db.transaction(write=True) as tx:
            plan = await rules.propose_job(_TxView(tx), node_id, spec, labels)
            return await self._insert_proposal(tx, plan)

    async def batch_propose_job(
        self, node_ids: Sequence[str], spec: str, labels: Sequence[Label]
    ) -> tuple[dict[str, Proposal], dict[str, str]]:
        """Per-node results: (proposals by node id, error messages by node id)."""
        # one transaction for the batch; problems with one node stay with that node
        async with self.db.transaction(write=True) as tx:
            batch = await rules.batch_propose_job(_TxView(tx), node_ids, spec, labels)
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
                f"INSERT INTO jd_jobs ({_JOB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)", jobs
            )
        if job_labels:
            await tx.executemany(
                "INSERT INTO jd_job_labels (owner_id, lkey, lvalue) VALUES (?, ?, ?)", job_labels
            )
        if props:
            await tx.executemany(
                f"INSERT INTO jd_proposals ({_PROP_COLS}) "
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
                f"INSERT INTO jd_jobs ({_JOB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
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
            await self._set_labels(tx, "jd_job_labels", job_id, plan.labels, replace=False)
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
                await self._set_labels(tx, "jd_job_labels", job_id, plan.labels, replace=True)
            await tx.execute(
                f"UPDATE jd_jobs SET {', '.join(sets)} WHERE id = ?", [*params, job_id]
            )
        delivery = ProposalDeliveryStatus.UNSPECIFIED
        if self._delivered_on_create(plan.node.id, plan.delivered):
            delivery = ProposalDeliveryStatus.DELIVERED
        await tx.execute(
            f"INSERT INTO jd_proposals ({_PROP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
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
        return _proposal(await self._prop_row(tx, prop_id))

    async def get_job(self, job_id: str) -> Job:
        async with self.db.transaction() as tx:
            return _job(await self._job_row(tx, job_id))

    async def list_jobs(self, flt: ListJobsRequestFilter | None) -> list[Job]:
        flt = flt or ListJobsRequestFilter()
        uuids = [validate.normalise_uuid(u) for u in flt.uuids]
        w = _Where()
        w.in_list("id", flt.ids)
        w.in_list("node_id", flt.node_ids)
        w.in_list("uuid", uuids)
        if not flt.include_deleted:
            w.add("deleted_at IS NULL")
        w.selectors(flt.selectors, "id", "jd_job_labels")
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_JOB_COLS} FROM jd_jobs{w.sql} ORDER BY created_at, id", w.params
            )
        if w.exact:
            return await _bulk(rows, lambda rs: [_job(r) for r in rs])
        return await _bulk(rows, lambda rs: [j for j in map(_job, rs) if job_matches(flt, j)])

    async def get_proposal(self, prop_id: str) -> Proposal:
        if not prop_id:
            raise InvalidArgumentError("id is required")
        async with self.db.transaction() as tx:
            return _proposal(await self._prop_row(tx, prop_id))

    async def list_proposals(self, ids: Sequence[str], job_ids: Sequence[str]) -> list[Proposal]:
        w = _Where()
        w.in_list("id", ids)
        w.in_list("job_id", job_ids)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_PROP_COLS} FROM jd_proposals{w.sql} ORDER BY created_at, id", w.params
            )
        props = await _bulk(rows, lambda rs: [_proposal(r) for r in rs])
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
            latest = await rules.revoke_job(_TxView(tx), ident)
            await tx.execute(
                "UPDATE jd_proposals SET status = ?, updated_at = ? WHERE id = ?",
                [int(ProposalStatus.REVOKED), now_us(), latest.id],
            )
            return _proposal(await self._prop_row(tx, latest.id))

    async def delete_job(self, job_id: str) -> Job:
        async with self.db.transaction(write=True) as tx:
            await rules.delete_job(_TxView(tx), job_id)
            now = now_us()
            await tx.execute(
                "UPDATE jd_jobs SET deleted_at = ?, updated_at = ? WHERE id = ?", [now, now, job_id]
            )
            return _job(await self._job_row(tx, job_id))

    async def update_job(
        self, job_id: str, labels: Sequence[Label], rollback_policy_id: int | None
    ) -> Job:
        async with self.db.transaction(write=True) as tx:
            change = await rules.update_job(_TxView(tx), job_id, labels, rollback_policy_id)
            if not change.changed:
                return change.job
            sets: list[str] = []
            params: list[Any] = []
            if change.rollback_policy_id is not None:
                sets.append("rollback_policy_id = ?")
                params.append(change.rollback_policy_id)
            if change.labels is not None:
                sets.append("labels = ?")
                params.append(labels_json(change.labels))
                await self._set_labels(tx, "jd_job_labels", job_id, change.labels, replace=True)
            sets.append("updated_at = ?")
            params.append(now_us())
            sql = f"UPDATE jd_jobs SET {', '.join(sets)} WHERE id = ?"
            await tx.execute(sql, [*params, job_id])
            return _job(await self._job_row(tx, job_id))

    async def answer_proposal(
        self, prop_id: str, to: ProposalStatus, allowed: Sequence[ProposalStatus]
    ) -> Proposal:
        """The node's answer: move a proposal to `to` if it is in `allowed`."""
        async with self.db.transaction(write=True) as tx:
            row = await self._prop_row(tx, prop_id)
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
            return _proposal(await self._prop_row(tx, prop_id))

    # ------------------------------------------------- rollback policies

    async def create_policy(self, policy: Struct | None) -> RollbackPolicy:
        text = rules.create_policy(policy)
        async with self.db.transaction(write=True) as tx:
            pid, now = await next_counter(tx, "rollback_policy"), now_us()
            await tx.execute(
                f"INSERT INTO jd_rollback_policies ({_POLICY_COLS}) VALUES (?, ?, ?, ?)",
                [pid, text, now, now],
            )
            return await self._policy_in(tx, str(pid))

    async def _policy_in(self, tx: Tx, pid: str) -> RollbackPolicy:
        # ids are opaque to callers: a non-numeric id simply names no policy
        row = None
        num = policy_num(pid)
        if num is not None:
            row = await tx.fetchone(
                f"SELECT {_POLICY_COLS} FROM jd_rollback_policies WHERE id = ?", [num]
            )
        if row is None:
            raise NotFoundError(f"rollback policy {pid!r} not found")
        return _policy(row)

    async def get_policy(self, pid: str) -> RollbackPolicy:
        if not pid:
            raise InvalidArgumentError("id is required")
        async with self.db.transaction() as tx:
            return await self._policy_in(tx, pid)

    async def list_policies(self, ids: Sequence[str]) -> list[RollbackPolicy]:
        w = _Where()
        nums = [n for n in map(policy_num, ids) if n is not None]
        if ids and not nums:
            return []
        w.in_list("id", nums)
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_POLICY_COLS} FROM jd_rollback_policies{w.sql} ORDER BY id", w.params
            )
        policies = [_policy(r) for r in rows]
        if w.exact:
            return policies
        wanted = {str(n) for n in nums}
        return [p for p in policies if p.id in wanted]

    async def update_policy(self, pid: str, policy: Struct | None) -> RollbackPolicy:
        async with self.db.transaction(write=True) as tx:
            current, text = await rules.update_policy(_TxView(tx), pid, policy)
            await tx.execute(
                "UPDATE jd_rollback_policies SET policy = ?, updated_at = ? WHERE id = ?",
                [text, now_us(), int(current.id)],
            )
            return await self._policy_in(tx, pid)

    # ------------------------------------------ node-facing protocol

    def _delivered_on_create(self, node_id: str, connected: bool) -> bool:
        """Whether a new proposal counts as delivered at once: here, when the
        node is connected. With a node port (`_nodeport.LiveState`) a node on
        a real connection gets DELIVERED only once it took the proposal."""
        return connected

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
            await self._node_row(tx, node_id)
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
