"""The server's tables, created at start when missing.

Portable DDL only. Labels live twice on purpose: as JSON on the owning row
(one read returns a complete node/job, no N+1 queries) and as rows in a
`*_labels` table indexed by (key, value) so selectors run as index lookups
over 100k+ jobs. A job's proposal ids are kept on the job row for the same
reason. Timestamps are BIGINT microseconds.
"""

from __future__ import annotations

from jdkit._server._db import Tx

SCHEMA_VERSION = "1"

DDL = [
    """CREATE TABLE IF NOT EXISTS jd_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS jd_counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS jd_csa_keypairs (
        id BIGINT PRIMARY KEY,
        public_key TEXT NOT NULL,
        sealed_private_key TEXT NOT NULL,
        created_at BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS jd_nodes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        public_key TEXT NOT NULL UNIQUE,
        is_enabled INTEGER NOT NULL,
        is_connected INTEGER NOT NULL,
        labels TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS jd_nodes_created ON jd_nodes (created_at, id)",
    """CREATE TABLE IF NOT EXISTS jd_node_labels (
        owner_id TEXT NOT NULL,
        lkey TEXT NOT NULL,
        lvalue TEXT,
        PRIMARY KEY (owner_id, lkey))""",
    "CREATE INDEX IF NOT EXISTS jd_node_labels_kv ON jd_node_labels (lkey, lvalue, owner_id)",
    """CREATE TABLE IF NOT EXISTS jd_chain_configs (
        node_id TEXT NOT NULL,
        chain_type INTEGER NOT NULL,
        chain_id TEXT NOT NULL,
        config TEXT NOT NULL,
        PRIMARY KEY (node_id, chain_type, chain_id))""",
    """CREATE TABLE IF NOT EXISTS jd_jobs (
        id TEXT PRIMARY KEY,
        uuid TEXT NOT NULL,
        node_id TEXT NOT NULL,
        proposal_ids TEXT NOT NULL,
        labels TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT,
        rollback_policy_id BIGINT,
        UNIQUE (node_id, uuid))""",
    "CREATE INDEX IF NOT EXISTS jd_jobs_uuid ON jd_jobs (uuid)",
    "CREATE INDEX IF NOT EXISTS jd_jobs_created ON jd_jobs (created_at, id)",
    """CREATE TABLE IF NOT EXISTS jd_job_labels (
        owner_id TEXT NOT NULL,
        lkey TEXT NOT NULL,
        lvalue TEXT,
        PRIMARY KEY (owner_id, lkey))""",
    "CREATE INDEX IF NOT EXISTS jd_job_labels_kv ON jd_job_labels (lkey, lvalue, owner_id)",
    """CREATE TABLE IF NOT EXISTS jd_proposals (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        revision BIGINT NOT NULL,
        status INTEGER NOT NULL,
        delivery_status INTEGER NOT NULL,
        spec TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        acked_at BIGINT,
        response_received_at BIGINT,
        UNIQUE (job_id, revision))""",
    # what a node last reported over the node-facing protocol (UpdateNode);
    # its own table so databases made before it need no migration
    """CREATE TABLE IF NOT EXISTS jd_node_reports (
        node_id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        workflow_key TEXT,
        nop_friendly_name TEXT NOT NULL,
        p2p_key_bundles TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS jd_rollback_policies (
        id BIGINT PRIMARY KEY,
        policy TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)""",
]

#: What `reset()` wipes: everything but the CSA keypair and schema metadata.
RESETTABLE = [
    "jd_nodes",
    "jd_node_labels",
    "jd_chain_configs",
    "jd_node_reports",
    "jd_jobs",
    "jd_job_labels",
    "jd_proposals",
    "jd_rollback_policies",
]


async def create_schema(tx: Tx) -> None:
    for stmt in DDL:
        await tx.execute(stmt)
    row = await tx.fetchone("SELECT value FROM jd_meta WHERE name = ?", ["schema_version"])
    if row is None:
        await tx.execute(
            "INSERT INTO jd_meta (name, value) VALUES (?, ?)", ["schema_version", SCHEMA_VERSION]
        )
    elif row[0] != SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {row[0]} is not the {SCHEMA_VERSION} this server uses"
        )


async def next_counter(tx: Tx, name: str) -> int:
    """Next value of a named counter (1, 2, ...) inside the caller's transaction."""
    changed = await tx.execute("UPDATE jd_counters SET value = value + 1 WHERE name = ?", [name])
    if not changed:
        await tx.execute("INSERT INTO jd_counters (name, value) VALUES (?, 1)", [name])
        return 1
    row = await tx.fetchone("SELECT value FROM jd_counters WHERE name = ?", [name])
    assert row is not None
    return int(row[0])
