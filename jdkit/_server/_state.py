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
from collections.abc import Sequence
from typing import Any

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
from jdkit._server import _csa, _validate
from jdkit._server._db import Database, IntegrityViolation, Row, Tx
from jdkit._server._ids import new_id, now_us, to_datetime
from jdkit._server._schema import RESETTABLE, create_schema, next_counter
from jdkit._server._selectors import MAX_SQL_ITEMS, label_map, matches, sql_condition
from jdkit._server._validate import LabelPairs

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


def _labels_json(pairs: LabelPairs) -> str:
    return json.dumps([[k, v] for k, v in pairs])


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


def _policy_json(policy: Struct, field: str) -> str:
    try:
        return json.dumps(policy.to_dict())
    except (ValueError, TypeError, AssertionError, AttributeError) as exc:
        # AttributeError: a map entry whose Value is absent (betterproto2 gives None)
        raise InvalidArgumentError(
            f"{field} is not a valid google.protobuf.Struct: {exc}"
        ) from None


def _policy_num(pid: str) -> int | None:
    """The row key of a policy id; None for strings no policy can have."""
    if pid.isascii() and pid.isdigit() and len(pid) < 19 and str(int(pid)) == pid:
        return int(pid)
    return None


def _status_name(status: int) -> str:
    try:
        return ProposalStatus(status).proto_name or str(status)
    except ValueError:
        return str(status)


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
        if not name:
            raise InvalidArgumentError("name is required")
        pk = _validate.public_key(public_key)
        pairs = _validate.labels(labels)
        async with self.db.transaction(write=True) as tx:
            other = await tx.fetchone("SELECT id FROM jd_nodes WHERE public_key = ?", [pk])
            if other is not None:
                raise AlreadyExistsError(
                    f"a node with public_key {pk} is already registered: {other[0]}"
                )
            node_id, now = new_id("node"), now_us()
            try:
                await tx.execute(
                    f"INSERT INTO jd_nodes ({_NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [node_id, name, pk, 1, 0, _labels_json(pairs), now, now],
                )
            except IntegrityViolation:
                raise AlreadyExistsError(
                    f"a node with public_key {pk} is already registered"
                ) from None
            await self._set_labels(tx, "jd_node_labels", node_id, pairs, replace=False)
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
        if page_size < 0:
            raise InvalidArgumentError("page_size must be >= 0 (0 returns every match)")
        if page < 0:
            raise InvalidArgumentError("page must be >= 0 (pages are 1-based; 0 means 1)")
        flt = flt or ListNodesRequestFilter()
        enabled = flt.enabled
        if enabled not in (EnableState.UNSPECIFIED, EnableState.ENABLED, EnableState.DISABLED):
            raise InvalidArgumentError(f"filter.enabled: unknown EnableState value {int(enabled)}")
        keys = [k.lower() for k in flt.public_keys]
        w = _Where()
        w.in_list("id", flt.ids)
        w.in_list("public_key", keys)
        if enabled != EnableState.UNSPECIFIED:
            w.add("is_enabled = ?", [1 if enabled == EnableState.ENABLED else 0])
        w.selectors(flt.selectors, "id", "jd_node_labels")
        offset = (max(page, 1) - 1) * page_size
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
                return await _with_reports(tx, [_node(r) for r in rows]), total
            rows = await tx.fetchall(f"SELECT {_NODE_COLS} FROM jd_nodes{w.sql}{order}", w.params)
            ids, pks = set(flt.ids), set(keys)
            nodes = [
                n
                for n in map(_node, rows)
                if (not ids or n.id in ids)
                and (not pks or n.public_key in pks)
                and matches(label_map(n.labels), flt.selectors)
            ]
            total = len(nodes)
            page_nodes = nodes[offset : offset + page_size] if page_size else nodes
            return await _with_reports(tx, page_nodes), total

    async def update_node(
        self, node_id: str, name: str, public_key: str, labels: Sequence[Label]
    ) -> Node:
        pk = _validate.public_key(public_key) if public_key else ""
        pairs = _validate.labels(labels)
        async with self.db.transaction(write=True) as tx:
            row = await self._node_row(tx, node_id)
            sets: list[str] = []
            params: list[Any] = []
            if name and name != row[1]:
                sets.append("name = ?")
                params.append(name)
            if pk and pk != row[2]:
                other = await tx.fetchone("SELECT id FROM jd_nodes WHERE public_key = ?", [pk])
                if other is not None:
                    raise AlreadyExistsError(f"public_key {pk} already belongs to node {other[0]}")
                sets.append("public_key = ?")
                params.append(pk)
            if pairs and _labels_json(pairs) != row[5]:
                sets.append("labels = ?")
                params.append(_labels_json(pairs))
                await self._set_labels(tx, "jd_node_labels", node_id, pairs, replace=True)
            if sets:
                sets.append("updated_at = ?")
                params.append(now_us())
                try:
                    await tx.execute(
                        f"UPDATE jd_nodes SET {', '.join(sets)} WHERE id = ?", [*params, node_id]
                    )
                except IntegrityViolation:
                    raise AlreadyExistsError(
                        f"public_key {pk} already belongs to another node"
                    ) from None
                row = await self._node_row(tx, node_id)
            return (await _with_reports(tx, [_node(row)]))[0]

    async def set_node_enabled(self, node_id: str, enabled: bool) -> Node:
        async with self.db.transaction(write=True) as tx:
            row = await self._node_row(tx, node_id)
            if bool(row[3]) != enabled:
                await tx.execute(
                    "UPDATE jd_nodes SET is_enabled = ?, updated_at = ? WHERE id = ?",
                    [int(enabled), now_us(), node_id],
                )
                row = await self._node_row(tx, node_id)
            return (await _with_reports(tx, [_node(row)]))[0]

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
        ext_id = _validate.spec_external_job_id(spec)
        pairs = _validate.labels(labels)
        if not node_id:
            raise InvalidArgumentError("node_id is required")
        return await self._propose(node_id, ext_id, spec, pairs)

    async def batch_propose_job(
        self, node_ids: Sequence[str], spec: str, labels: Sequence[Label]
    ) -> tuple[dict[str, Proposal], dict[str, str]]:
        """Per-node results: (proposals by node id, error messages by node id)."""
        if not node_ids:
            raise InvalidArgumentError("node_ids is empty; name at least one node")
        ext_id = _validate.spec_external_job_id(spec)
        pairs = _validate.labels(labels)
        ok: dict[str, Proposal] = {}
        failed: dict[str, str] = {}
        wanted = [n for n in dict.fromkeys(node_ids) if n and "\x00" not in n]
        for n in node_ids:
            if not n or "\x00" in n:
                failed[n] = "node id is empty" if not n else "node id contains NUL"
        # one transaction for the batch: node states read in chunks, then
        # every proposal written; problems with one node stay with that node
        async with self.db.transaction(write=True) as tx:
            states: dict[str, Row] = {}
            for i in range(0, len(wanted), MAX_SQL_ITEMS):
                chunk = wanted[i : i + MAX_SQL_ITEMS]
                marks = ", ".join("?" for _ in chunk)
                for row in await tx.fetchall(
                    f"SELECT id, is_enabled, is_connected FROM jd_nodes WHERE id IN ({marks})",
                    chunk,
                ):
                    states[row[0]] = row[1:]
            await self._propose_batch(tx, wanted, states, ext_id, spec, pairs, ok, failed)
        return ok, failed

    async def _propose_batch(
        self,
        tx: Tx,
        node_ids: list[str],
        states: dict[str, Row],
        ext_id: str,
        spec: str,
        pairs: LabelPairs,
        ok: dict[str, Proposal],
        failed: dict[str, str],
    ) -> None:
        """The batch's proposals in a handful of statements, not five per node.

        The common case, a spec new to every node, becomes one read (which
        nodes already have this job, in chunks) and three executemany writes
        (jobs, their labels, proposals); the proposals are built from what was
        written instead of read back. Re-proposals and refused nodes take the
        one-node path, so their answers are exactly the single call's.
        """
        have: set[str] = set()
        for i in range(0, len(node_ids), MAX_SQL_ITEMS):
            chunk = node_ids[i : i + MAX_SQL_ITEMS]
            marks = ", ".join("?" for _ in chunk)
            for row in await tx.fetchall(
                f"SELECT node_id FROM jd_jobs WHERE uuid = ? AND node_id IN ({marks})",
                [ext_id, *chunk],
            ):
                have.add(row[0])
        labels_json = _labels_json(pairs)
        proposed, delivered = int(ProposalStatus.PROPOSED), ProposalDeliveryStatus.DELIVERED
        jobs: list[list[Any]] = []
        job_labels: list[tuple[str, str, str | None]] = []
        props: list[list[Any]] = []
        results: dict[str, Proposal | None] = {}  # in the caller's order
        for node_id in node_ids:
            node = states.get(node_id)
            if node is None or not node[0] or node_id in have:
                try:
                    results[node_id] = await self._propose_in(
                        tx, node_id, node, ext_id, spec, pairs
                    )
                except (NotFoundError, FailedPreconditionError) as exc:
                    failed[node_id] = exc.message
                continue
            now, prop_id, job_id = now_us(), new_id("prop"), new_id("job")
            jobs.append([job_id, ext_id, node_id, json.dumps([prop_id]), labels_json, now, now])
            job_labels.extend((job_id, k, v) for k, v in pairs)
            delivery = (
                delivered
                if self._delivered_on_create(node_id, bool(node[1]))
                else ProposalDeliveryStatus.UNSPECIFIED
            )
            props.append([prop_id, job_id, 1, proposed, int(delivery), spec, now, now])
            when = to_datetime(now)
            results[node_id] = Proposal(
                id=prop_id,
                job_id=job_id,
                revision=1,
                status=ProposalStatus.PROPOSED,
                delivery_status=delivery,
                spec=spec,
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
        ok.update((n, p) for n, p in results.items() if p is not None)

    async def _propose(self, node_id: str, ext_id: str, spec: str, pairs: LabelPairs) -> Proposal:
        async with self.db.transaction(write=True) as tx:
            node = await tx.fetchone(
                "SELECT is_enabled, is_connected FROM jd_nodes WHERE id = ?", [node_id]
            )
            return await self._propose_in(tx, node_id, node, ext_id, spec, pairs)

    async def _propose_in(
        self, tx: Tx, node_id: str, node: Row | None, ext_id: str, spec: str, pairs: LabelPairs
    ) -> Proposal:
        """Add the next proposal; `node` is (is_enabled, is_connected) or None."""
        if node is None:
            raise NotFoundError(f"node {node_id!r} not found")
        if not node[0]:
            raise FailedPreconditionError(
                f"node {node_id} is disabled; enable it before proposing jobs to it"
            )
        now = now_us()
        prop_id = new_id("prop")
        job = await tx.fetchone(
            "SELECT id, proposal_ids FROM jd_jobs WHERE node_id = ? AND uuid = ?",
            [node_id, ext_id],
        )
        if job is None:
            job_id, revision = new_id("job"), 1
            await tx.execute(
                f"INSERT INTO jd_jobs ({_JOB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                [job_id, ext_id, node_id, json.dumps([prop_id]), _labels_json(pairs), now, now],
            )
            await self._set_labels(tx, "jd_job_labels", job_id, pairs, replace=False)
        else:
            job_id = job[0]
            top = await tx.fetchone(
                "SELECT MAX(revision) FROM jd_proposals WHERE job_id = ?", [job_id]
            )
            revision = int(top[0] or 0) + 1 if top else 1
            pids = [*json.loads(job[1]), prop_id]
            sets, params = (
                ["proposal_ids = ?", "updated_at = ?", "deleted_at = NULL"],
                [json.dumps(pids), now],
            )
            if pairs:
                sets.append("labels = ?")
                params.append(_labels_json(pairs))
                await self._set_labels(tx, "jd_job_labels", job_id, pairs, replace=True)
            await tx.execute(
                f"UPDATE jd_jobs SET {', '.join(sets)} WHERE id = ?", [*params, job_id]
            )
        delivery = (
            ProposalDeliveryStatus.DELIVERED
            if self._delivered_on_create(node_id, bool(node[1]))
            else ProposalDeliveryStatus.UNSPECIFIED
        )
        await tx.execute(
            f"INSERT INTO jd_proposals ({_PROP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [
                prop_id,
                job_id,
                revision,
                int(ProposalStatus.PROPOSED),
                int(delivery),
                spec,
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
        uuids = [_validate.normalise_uuid(u) for u in flt.uuids]
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
        jobs = [_job(r) for r in rows]
        if w.exact:
            return jobs
        ids, nids, uids = set(flt.ids), set(flt.node_ids), set(uuids)
        return [
            j
            for j in jobs
            if (not ids or j.id in ids)
            and (not nids or j.node_id in nids)
            and (not uids or j.uuid in uids)
            and matches(label_map(j.labels), flt.selectors)
        ]

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
        props = [_proposal(r) for r in rows]
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
            job = await tx.fetchone("SELECT id FROM jd_jobs WHERE id = ?", [ident])
            named: str | None = None
            if job is None:
                prop = await tx.fetchone(
                    "SELECT id, job_id FROM jd_proposals WHERE id = ?", [ident]
                )
                if prop is None:
                    raise NotFoundError(f"no job or proposal with id {ident!r}")
                named, job_id = prop[0], prop[1]
            else:
                job_id = job[0]
            latest = await tx.fetchone(
                f"SELECT {_PROP_COLS} FROM jd_proposals WHERE job_id = ?"
                " ORDER BY revision DESC LIMIT 1",
                [job_id],
            )
            if latest is None:  # pragma: no cover - a job always has a proposal
                raise FailedPreconditionError(f"job {job_id} has no proposal to revoke")
            if named is not None and latest[0] != named:
                raise FailedPreconditionError(
                    f"proposal {named} is not the latest proposal of job {job_id} "
                    f"(that is {latest[0]}, revision {latest[2]}); only the latest can be revoked"
                )
            status = int(latest[3])
            if status not in (ProposalStatus.PROPOSED, ProposalStatus.CANCELLED):
                raise FailedPreconditionError(
                    f"proposal {latest[0]} (revision {latest[2]}) is {_status_name(status)}; "
                    "only a PROPOSED or CANCELLED proposal can be revoked"
                )
            await tx.execute(
                "UPDATE jd_proposals SET status = ?, updated_at = ? WHERE id = ?",
                [int(ProposalStatus.REVOKED), now_us(), latest[0]],
            )
            return _proposal(await self._prop_row(tx, latest[0]))

    async def delete_job(self, job_id: str) -> Job:
        async with self.db.transaction(write=True) as tx:
            row = await self._job_row(tx, job_id)
            if row[7] is not None:
                raise FailedPreconditionError(
                    f"job {job_id} was already deleted at {to_datetime(row[7])}"
                )
            now = now_us()
            await tx.execute(
                "UPDATE jd_jobs SET deleted_at = ?, updated_at = ? WHERE id = ?", [now, now, job_id]
            )
            return _job(await self._job_row(tx, job_id))

    async def update_job(
        self, job_id: str, labels: Sequence[Label], rollback_policy_id: int | None
    ) -> Job:
        pairs = _validate.labels(labels)
        async with self.db.transaction(write=True) as tx:
            row = await self._job_row(tx, job_id)
            if row[7] is not None:
                raise FailedPreconditionError(f"job {job_id} is deleted; it cannot be updated")
            sets: list[str] = []
            params: list[Any] = []
            if rollback_policy_id is not None:
                found = await tx.fetchone(
                    "SELECT id FROM jd_rollback_policies WHERE id = ?", [rollback_policy_id]
                )
                if found is None:
                    raise NotFoundError(f"rollback policy {rollback_policy_id} not found")
                if row[8] is None or int(row[8]) != rollback_policy_id:
                    sets.append("rollback_policy_id = ?")
                    params.append(rollback_policy_id)
            if pairs and _labels_json(pairs) != row[4]:
                sets.append("labels = ?")
                params.append(_labels_json(pairs))
                await self._set_labels(tx, "jd_job_labels", job_id, pairs, replace=True)
            if sets:
                sets.append("updated_at = ?")
                params.append(now_us())
                await tx.execute(
                    f"UPDATE jd_jobs SET {', '.join(sets)} WHERE id = ?", [*params, job_id]
                )
                row = await self._job_row(tx, job_id)
            return _job(row)

    async def answer_proposal(
        self, prop_id: str, to: ProposalStatus, allowed: Sequence[ProposalStatus]
    ) -> Proposal:
        """The node's answer: move a proposal to `to` if it is in `allowed`."""
        async with self.db.transaction(write=True) as tx:
            row = await self._prop_row(tx, prop_id)
            if int(row[3]) not in allowed:
                names = " or ".join(s.proto_name or s.name for s in allowed)
                raise FailedPreconditionError(
                    f"proposal {prop_id} is {_status_name(int(row[3]))}; "
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
        text = _policy_json(policy, "policy") if policy is not None else "{}"
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
        num = _policy_num(pid)
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
        nums = [n for n in map(_policy_num, ids) if n is not None]
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
        if not pid:
            raise InvalidArgumentError("id is required")
        if policy is None:
            raise InvalidArgumentError("policy is required (an empty Struct clears it)")
        text = _policy_json(policy, "policy")
        async with self.db.transaction(write=True) as tx:
            current = await self._policy_in(tx, pid)
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
        ext_id = _validate.normalise_uuid(job_uuid)
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
