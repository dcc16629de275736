"""Nodes as the operator manages them: RegisterNode, GetNode, ListNodes,
UpdateNode, Enable/DisableNode, and the nodes' chain configs."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jdkit._core import rules
from jdkit._core.match import check_enabled, check_paging, node_matches, page_offset, paginate
from jdkit._core.validate import labels_json
from jdkit._exceptions import AlreadyExistsError, InvalidArgumentError
from jdkit._proto.api.label import Label
from jdkit._proto.api.node.v1 import ChainConfig, EnableState, ListNodesRequestFilter, Node
from jdkit._server._db import Database, IntegrityViolation
from jdkit._server._ids import new_id, now_us
from jdkit._server._state._rows import (
    NODE_COLS,
    bulk,
    node_row,
    set_labels,
    to_node,
    update_row,
    with_reports,
)
from jdkit._server._state._view import TxView
from jdkit._server._state._where import Where


class Nodes:
    """The node records of `JDState`."""

    if TYPE_CHECKING:  # the database it runs on; help() shows no private type
        db: Database

    async def register_node(self, name: str, public_key: str, labels: Sequence[Label]) -> Node:
        async with self.db.transaction(write=True) as tx:
            plan = await rules.register_node(TxView(tx), name, public_key, labels)
            node_id, now = new_id("node"), now_us()
            try:
                await tx.execute(
                    f"INSERT INTO jd_nodes ({NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [node_id, plan.name, plan.public_key, 1, 0, labels_json(plan.labels), now, now],
                )
            except IntegrityViolation:
                raise AlreadyExistsError(
                    f"a node with public_key {plan.public_key} is already registered"
                ) from None
            await set_labels(tx, "jd_node_labels", node_id, plan.labels, replace=False)
            return to_node(await node_row(tx, node_id))

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
                f"SELECT {NODE_COLS} FROM jd_nodes WHERE {' AND '.join(where)}", params
            )
            if row is None:
                raise rules.no_node(node_id, public_key)
            return (await with_reports(tx, [to_node(row)]))[0]

    async def list_nodes(
        self, flt: ListNodesRequestFilter | None, page_size: int, page: int
    ) -> tuple[list[Node], int]:
        check_paging(page_size, page)
        flt = flt or ListNodesRequestFilter()
        check_enabled(flt)
        enabled = flt.enabled
        keys = [k.lower() for k in flt.public_keys]
        w = Where()
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
                    f"SELECT {NODE_COLS} FROM jd_nodes{w.sql}{order}{limit}", w.params
                )
                nodes = await bulk(rows, lambda rs: [to_node(r) for r in rs])
                return await with_reports(tx, nodes), total
            rows = await tx.fetchall(f"SELECT {NODE_COLS} FROM jd_nodes{w.sql}{order}", w.params)
            nodes = await bulk(
                rows, lambda rs: [n for n in map(to_node, rs) if node_matches(flt, n)]
            )
            return await with_reports(tx, paginate(nodes, page_size, page)), len(nodes)

    async def update_node(
        self, node_id: str, name: str, public_key: str, labels: Sequence[Label]
    ) -> Node:
        async with self.db.transaction(write=True) as tx:
            change = await rules.update_node(TxView(tx), node_id, name, public_key, labels)
            if not change.changed:
                return (await with_reports(tx, [change.node]))[0]
            columns = {"name": change.name, "public_key": change.public_key}
            try:
                await update_row(tx, "jd_nodes", node_id, columns, change.labels, "jd_node_labels")
            except IntegrityViolation:
                raise AlreadyExistsError(
                    f"public_key {change.public_key} already belongs to another node"
                ) from None
            return (await with_reports(tx, [to_node(await node_row(tx, node_id))]))[0]

    async def set_node_enabled(self, node_id: str, enabled: bool) -> Node:
        async with self.db.transaction(write=True) as tx:
            current = await rules.set_node_enabled(TxView(tx), node_id)
            if current.is_enabled == enabled:
                return (await with_reports(tx, [current]))[0]
            await tx.execute(
                "UPDATE jd_nodes SET is_enabled = ?, updated_at = ? WHERE id = ?",
                [int(enabled), now_us(), node_id],
            )
            return (await with_reports(tx, [to_node(await node_row(tx, node_id))]))[0]

    async def add_chain_config(self, node_id: str, config: ChainConfig) -> ChainConfig:
        if config.chain is None:
            raise InvalidArgumentError("chain config needs chain (id and type)")
        cfg = ChainConfig.parse(bytes(config))
        cfg.node_id = node_id
        assert cfg.chain is not None
        key = [node_id, int(cfg.chain.type), cfg.chain.id]
        async with self.db.transaction(write=True) as tx:
            await node_row(tx, node_id)
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
        w = Where()
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
