"""Columns: what a column is, how important each header is when a terminal is
narrow, and the columns (and row types) of each kind of JD object: nodes,
jobs, proposals, chain configs, keypairs, rollback policies, batch results
and rollout status rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jdkit._display._cells import fmt_bool, fmt_time, fmt_value, short
from jdkit._tasks import NodeRollout, Rollout
from jdkit.pb import csa, job, node, probation
from jdkit.selectors import format_labels

_ID_HEADERS = frozenset({"ID"})  # the column never folded, cut or left out

#: How important a column is by header, 0 = most; columns not named get 5.
#: When a terminal is too narrow, the highest numbers are left out first.
PRIORITY: dict[str, int] = {
    "ID": 0,
    "#": 0,
    "Name": 1,
    "Status": 1,
    "Rev": 1,
    "Result": 1,
    "Call": 1,
    "Node": 2,
    "Job": 2,
    "Enabled": 3,
    "Error": 3,
    "What": 3,
    "Proposal": 4,
    "Public key": 4,
    "UUID": 4,
    "Chain": 4,
    "Type": 4,
    "Labels": 5,
    "Connected": 6,
    "Account": 6,
    "Policy": 6,
    "Proposals": 6,
    "Latest proposal": 6,
    "Admin": 7,
    "OCR1": 7,
    "OCR2": 7,
    "P2P peer": 7,
    "Delivery": 8,
    "Created": 9,
    "Updated": 9,
    "Deleted": 9,
}


@dataclass(frozen=True)
class Column:
    """One column: a header and how to get a cell's text from a row."""

    header: str
    get: Callable[[Any], str]
    #: Style cells by their text (statuses, yes/no) in rich.
    styled: bool = False
    #: May be long (keys, addresses): rich folds it instead of cutting it.
    long: bool = False
    justify: str = "left"
    #: Never cut or left out (the row's identity). Default: the header is "ID".
    ident: bool = False
    #: Lower is kept longer when the terminal is narrow; None: by header (PRIORITY).
    priority: int | None = None

    @property
    def rank(self) -> int:
        if self.ident or self.header in _ID_HEADERS:
            return -1
        return self.priority if self.priority is not None else PRIORITY.get(self.header, 5)


def _key(wide: bool) -> Callable[[str], str]:
    return (lambda s: s) if wide else short


def columns_for(kind: type, wide: bool) -> tuple[Column, ...] | None:
    k = _key(wide)
    if kind is node.Node:
        return (
            Column("ID", lambda n: n.id),
            Column("Name", lambda n: n.name),
            Column("Public key", lambda n: k(n.public_key), long=wide),
            Column("Enabled", lambda n: fmt_bool(n.is_enabled), styled=True),
            Column("Connected", lambda n: fmt_bool(n.is_connected), styled=True),
            Column("Labels", lambda n: format_labels(n.labels), long=True),
            Column("Created", lambda n: fmt_time(n.created_at)),
        )
    if kind is job.Job:
        return (
            Column("ID", lambda j: j.id),
            Column("UUID", lambda j: j.uuid, long=True),
            Column("Node", lambda j: j.node_id),
            Column("Proposals", lambda j: str(len(j.proposal_ids)), justify="right"),
            Column("Latest proposal", lambda j: j.proposal_ids[-1] if j.proposal_ids else ""),
            Column("Labels", lambda j: format_labels(j.labels), long=True),
            Column("Created", lambda j: fmt_time(j.created_at)),
            Column("Deleted", lambda j: fmt_time(j.deleted_at)),
        )
    if kind is job.Proposal:
        return (
            Column("ID", lambda p: p.id),
            Column("Job", lambda p: p.job_id),
            Column("Rev", lambda p: str(p.revision), justify="right"),
            Column("Status", lambda p: fmt_value(p.status), styled=True),
            Column("Delivery", lambda p: fmt_value(p.delivery_status), styled=True),
            Column("Updated", lambda p: fmt_time(p.updated_at)),
        )
    if kind is node.ChainConfig:
        return (
            Column("Node", lambda c: c.node_id),
            Column("Chain", lambda c: c.chain.id if c.chain else ""),
            Column("Type", lambda c: fmt_value(c.chain.type) if c.chain else ""),
            Column("Account", lambda c: k(c.account_address), long=wide),
            Column("Admin", lambda c: k(c.admin_address), long=wide),
            Column("OCR1", lambda c: fmt_bool(bool(c.ocr1_config and c.ocr1_config.enabled))),
            Column("OCR2", lambda c: fmt_bool(bool(c.ocr2_config and c.ocr2_config.enabled))),
            Column("P2P peer", lambda c: k(_peer_id(c)), long=wide),
        )
    if kind is csa.Keypair:
        return (
            Column("ID", lambda kp: str(kp.id), justify="right"),
            Column("Public key", lambda kp: kp.public_key, long=True),
            Column("Created", lambda kp: fmt_time(kp.created_at)),
        )
    if kind is probation.RollbackPolicy:
        return (
            Column("ID", lambda p: p.id),
            Column("Policy", lambda p: fmt_value(p.policy), long=True),
            Column("Updated", lambda p: fmt_time(p.updated_at)),
        )
    if kind is BatchResult:
        return (
            Column("Node", lambda r: r.node_id, ident=True),
            Column("Result", lambda r: "ok" if r.ok else "failed", styled=True),
            Column("Proposal", lambda r: r.proposal_id),
            Column("Rev", lambda r: str(r.revision) if r.ok else "", justify="right"),
            Column("Error", lambda r: r.error, long=True),
        )
    if kind is NodeRollout:
        return (
            Column("Node", lambda r: r.node_id, ident=True),
            Column("Name", lambda r: r.node_name),
            Column("Rev", lambda r: str(r.revision) if r.proposed else "", justify="right"),
            Column("Status", lambda r: r.status_text, styled=True),
            Column("Delivery", lambda r: fmt_value(r.delivery_status) if r.proposed else ""),
            Column("Updated", lambda r: fmt_time(r.updated_at)),
            Column("Job", lambda r: r.job_id + (" (deleted)" if r.deleted else "")),
            Column("Proposal", lambda r: r.proposal_id),
        )
    return None


def _peer_id(c: node.ChainConfig) -> str:
    for cfg in (c.ocr2_config, c.ocr1_config):
        if cfg is not None and cfg.p2p_key_bundle is not None:
            return str(cfg.p2p_key_bundle.peer_id)
    return ""


def generic_columns(kind: type) -> tuple[Column, ...]:
    """Scalar fields of a message type (or any dataclass) in declaration order."""
    cols: list[Column] = []
    if dataclasses.is_dataclass(kind):
        for f in dataclasses.fields(kind):
            if f.name.startswith("_"):
                continue
            cols.append(Column(f.name, _field_getter(f.name)))
    return tuple(cols) or (Column("Value", fmt_value),)


def _field_getter(name: str) -> Callable[[Any], str]:
    def get(row: Any) -> str:
        return fmt_value(getattr(row, name))

    return get


@dataclass(frozen=True)
class BatchResult:
    """One node's outcome in a BatchProposeJob answer (a row of its table)."""

    node_id: str
    ok: bool
    proposal_id: str = ""
    revision: int = 0
    error: str = ""


def rollout_results(rollout: Rollout) -> list[BatchResult]:
    rows = [
        BatchResult(node_id, True, p.id, int(p.revision))
        for node_id, p in sorted(rollout.proposals.items())
    ]
    rows += [BatchResult(n, False, error=e) for n, e in sorted(rollout.failed.items())]
    return rows


def batch_results(resp: job.BatchProposeJobResponse) -> list[BatchResult]:
    rows: list[BatchResult] = []
    for node_id, ok in sorted(resp.success_responses.items()):
        p = ok.proposal
        rows.append(BatchResult(node_id, True, p.id if p else "", int(p.revision) if p else 0, ""))
    for node_id, failed in sorted(resp.failed_responses.items()):
        rows.append(BatchResult(node_id, False, error=failed.error_message))
    return rows


def plural(kind: type | None, n: int) -> str:
    names = {
        node.Node: "node",
        job.Job: "job",
        job.Proposal: "proposal",
        node.ChainConfig: "chain config",
        csa.Keypair: "keypair",
        probation.RollbackPolicy: "rollback policy",
        BatchResult: "node",
        NodeRollout: "node",
    }
    name = names.get(kind, "row") if kind is not None else "row"
    if n == 1:
        return name
    return name[:-1] + "ies" if name.endswith("y") else name + "s"
