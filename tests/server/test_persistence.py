"""State survives a restart on the same database: SQLite file and Postgres."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jdkit import (
    AlreadyExistsError,
    ConfigError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobDistributor,
)
from jdkit._server import EmbeddedJD
from jdkit.pb import job, label, node, probation, protobuf
from tests.helpers.server_fixtures import (
    Postgres,
    add_node,
    lbl,
    postgres_cluster,
    propose,
    pubkey,
    served,
)

SECRET = "correct horse battery staple"


async def build_state(srv: EmbeddedJD, jd: JobDistributor) -> None:
    """Touch every kind of record the server keeps."""
    a = await add_node(jd, 1, labels=[lbl("env", "prod"), lbl("bare")])
    b = await add_node(jd, 2, labels=[lbl("env", "dev")])
    await jd.disable_node(node.DisableNodeRequest(id=b.id))
    await srv.set_node_connected(a.id)
    await srv.add_chain_config(
        a.id,
        node.ChainConfig(
            chain=node.Chain(id="11155111", type=node.ChainType.EVM),
            account_address="0xabc",
            ocr2_config=node.Ocr2Config(enabled=True, multiaddr="/ip4/1.2.3.4"),
        ),
    )
    ext = str(uuid.uuid4())
    p1 = await propose(jd, a.id, ext, labels=[lbl("team", "x")])
    p2 = await propose(jd, a.id, ext)
    await srv.approve_proposal(p2.id)
    p3 = await propose(jd, a.id)
    await jd.revoke_job(job.RevokeJobRequest(id=p3.job_id))
    await jd.delete_job(job.DeleteJobRequest(id=p3.job_id))
    pol = (
        await jd.create_rollback_policy(
            probation.CreateRollbackPolicyRequest(
                policy=protobuf.Struct.from_dict({"steps": [1, 2], "auto": True})
            )
        )
    ).rollback_policy
    assert pol is not None
    await jd.update_job(job.UpdateJobRequest(id=p1.job_id, rollback_policy_id=int(pol.id)))


async def snapshot(jd: JobDistributor) -> dict[str, Any]:
    everything = job.ListJobsRequest(filter=job.ListJobsRequestFilter(include_deleted=True))
    return {
        "nodes": [n.to_dict() for n in (await jd.list_nodes()).nodes],
        "jobs": [j.to_dict() for j in (await jd.list_jobs(everything)).jobs],
        "proposals": [p.to_dict() for p in (await jd.list_proposals()).proposals],
        "policies": [p.to_dict() for p in (await jd.list_rollback_policies()).rollback_policies],
        "chain_configs": [c.to_dict() for c in (await jd.list_node_chain_configs()).chain_configs],
        "keypairs": [k.to_dict() for k in (await jd.list_keypairs()).keypairs],
    }


async def check_restart(db: str) -> None:
    async with served(db=db, csa_secret=SECRET) as (srv, jd):
        await build_state(srv, jd)
        before = await snapshot(jd)
    assert len(before["nodes"]) == 2 and len(before["proposals"]) == 3
    assert len(before["jobs"]) == 2 and len(before["keypairs"]) == 1

    async with served(db=db, csa_secret=SECRET) as (srv, jd):
        assert await snapshot(jd) == before
        # and it keeps working where it left off
        nodes = (await jd.list_nodes()).nodes
        p = await propose(jd, nodes[0].id, before["jobs"][0]["uuid"])
        assert p.revision == 3
        sel = label.Selector(key="env", op=label.SelectorOp.EQ, value="prod")
        found = await jd.list_nodes(
            node.ListNodesRequest(filter=node.ListNodesRequestFilter(selectors=[sel]))
        )
        assert [n.id for n in found.nodes] == [nodes[0].id]
        with pytest.raises(FailedPreconditionError):  # still REVOKED after the restart
            await jd.revoke_job(job.RevokeJobRequest(id=before["jobs"][1]["id"]))
        pol = (
            await jd.create_rollback_policy(probation.CreateRollbackPolicyRequest())
        ).rollback_policy
        assert pol is not None and pol.id == "2"

    with pytest.raises(ConfigError) as info:
        await EmbeddedJD.start(db=db, csa_secret="wrong secret")
    assert info.value.field == "csa_secret" and "does not decrypt" in str(info.value)

    async with served(db=db, csa_secret=SECRET) as (_, jd):  # the key was not replaced
        assert [k.to_dict() for k in (await jd.list_keypairs()).keypairs] == before["keypairs"]


@pytest.mark.asyncio
async def test_sqlite_file_survives_restart(tmp_path: Path) -> None:
    await check_restart(str(tmp_path / "jd.sqlite"))


@pytest.mark.asyncio
async def test_sqlite_url_form(tmp_path: Path) -> None:
    path = tmp_path / "jd.db"
    async with served(db=f"sqlite:///{path}", csa_secret=SECRET) as (_, jd):
        await add_node(jd, 1)
    async with served(db=str(path), csa_secret=SECRET) as (_, jd):
        assert len((await jd.list_nodes()).nodes) == 1


@pytest.mark.asyncio
async def test_dev_secret_on_a_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="jdkit.server")
    async with served(db=str(tmp_path / "dev.db"), insecure_dev_secret=True):
        pass
    assert "dev secret" in caplog.text
    with pytest.raises(ConfigError):  # a dev-sealed key does not open with another secret
        await EmbeddedJD.start(db=str(tmp_path / "dev.db"), csa_secret=SECRET)


@pytest.mark.asyncio
async def test_bad_db_and_empty_secret_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await EmbeddedJD.start(db=str(tmp_path / "no" / "such" / "dir" / "x.db"), csa_secret=SECRET)
    with pytest.raises(ConfigError):
        await EmbeddedJD.start(db="")
    with pytest.raises(ConfigError, match="csa_secret"):
        await EmbeddedJD.start(csa_secret="")


@pytest.mark.asyncio
async def test_secrets_stay_out_of_logs_and_reprs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = str(tmp_path / "s.db")
    async with served(db=db, csa_secret=SECRET) as (srv, jd):
        await add_node(jd, 1)
        assert SECRET not in repr(srv) and SECRET not in str(vars(srv))
    with pytest.raises(ConfigError) as info:
        await EmbeddedJD.start(db=db, csa_secret="wrong secret")
    assert "wrong secret" not in str(info.value)
    assert SECRET not in caplog.text and "wrong secret" not in caplog.text
    import sqlite3

    with sqlite3.connect(db) as conn:
        (sealed,) = conn.execute("SELECT sealed_private_key FROM jd_csa_keypairs").fetchone()
    assert SECRET not in sealed and "ct" in sealed


# -------------------------------------------------------------- Postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.mark.asyncio
async def test_postgres_survives_restart(pg: Postgres) -> None:
    await check_restart(pg.new_database())


@pytest.mark.asyncio
async def test_postgres_rules_match_sqlite(pg: Postgres) -> None:
    """The same checks the SQLite-backed suites make, on Postgres."""
    async with served(db=pg.new_database(), csa_secret=SECRET) as (_srv, jd):
        made = [(await add_node(jd, i, labels=[lbl("i", str(i % 3))])).id for i in range(7)]
        page = await jd.list_nodes(node.ListNodesRequest(page_size=3, page=2))
        assert [n.id for n in page.nodes] == made[3:6] and page.total_count == 7
        sel = label.Selector(key="i", op=label.SelectorOp.IN, value="0, 2")
        flt = node.ListNodesRequestFilter(selectors=[sel])
        found = (await jd.list_nodes(node.ListNodesRequest(filter=flt))).nodes
        assert [n.id for n in found] == [m for i, m in enumerate(made) if i % 3 in (0, 2)]
        many = node.ListNodesRequestFilter(ids=[f"node_{i}" for i in range(800)] + made[:1])
        assert [
            n.id for n in (await jd.list_nodes(node.ListNodesRequest(filter=many))).nodes
        ] == made[:1]
        with pytest.raises(InvalidArgumentError, match="NUL"):
            await jd.get_node(node.GetNodeRequest(id="\x00"))
        with pytest.raises(AlreadyExistsError):
            await add_node(jd, 0)
        ext = str(uuid.uuid4())
        revs = [(await propose(jd, made[0], ext)).revision for _ in range(3)]
        assert revs == [1, 2, 3]
        most = [lbl(f"k{i}", "v") for i in range(100)]  # the rulebook's cap
        n = await jd.register_node(
            node.RegisterNodeRequest(name="big", public_key=pubkey(99), labels=most)
        )
        assert n.node is not None and len(n.node.labels) == 100
        with pytest.raises(InvalidArgumentError, match="the limit is 100"):
            await jd.register_node(
                node.RegisterNodeRequest(
                    name="bigger", public_key=pubkey(98), labels=[*most, lbl("one-more")]
                )
            )


async def check_concurrency(db: str) -> None:
    """Many clients at once: no lost or duplicate revisions, no errors."""
    async with served(db=db, csa_secret=SECRET) as (_srv, jd):
        n = await add_node(jd, 1)
        ext = str(uuid.uuid4())

        async def one(i: int) -> int:
            if i % 5 == 0:
                await jd.list_jobs()
            return (await propose(jd, n.id, ext)).revision

        revisions = await asyncio.gather(*(one(i) for i in range(60)))
        assert sorted(revisions) == list(range(1, 61))
        nodes = await asyncio.gather(*(add_node(jd, 100 + i) for i in range(30)))
        assert len({x.id for x in nodes}) == 30


@pytest.mark.asyncio
async def test_concurrent_writes_sqlite(tmp_path: Path) -> None:
    await check_concurrency(str(tmp_path / "c.db"))


@pytest.mark.asyncio
async def test_concurrent_writes_postgres(pg: Postgres) -> None:
    await check_concurrency(pg.new_database())


@pytest.mark.asyncio
async def test_two_servers_on_one_postgres_database(pg: Postgres) -> None:
    """Replicas sharing DATABASE_URL: writes serialize across them, reads are consistent."""
    db = pg.new_database()
    async with (
        served(db=db, csa_secret=SECRET) as (_a, jd_a),
        served(db=db, csa_secret=SECRET) as (_b, jd_b),
    ):
        n = await add_node(jd_a, 1)
        ext = str(uuid.uuid4())
        clients = [jd_a, jd_b]
        revisions = await asyncio.gather(*(propose(clients[i % 2], n.id, ext) for i in range(40)))
        assert sorted(p.revision for p in revisions) == list(range(1, 41))
        jobs = (await jd_b.list_jobs()).jobs
        assert len(jobs) == 1 and len(jobs[0].proposal_ids) == 40

        policies = await asyncio.gather(
            *(
                clients[i % 2].create_rollback_policy(
                    probation.CreateRollbackPolicyRequest(
                        policy=protobuf.Struct.from_dict({"i": i})
                    )
                )
                for i in range(20)
            )
        )
        assert len({p.rollback_policy.id for p in policies}) == 20  # type: ignore[union-attr]

        async def register() -> None:
            for i in range(60):
                await add_node(clients[i % 2], 1000 + i)

        async def read() -> list[tuple[int, int]]:
            seen = []
            for _ in range(60):
                got = await jd_b.list_nodes()
                seen.append((len(got.nodes), got.total_count))
            return seen

        _, reads = await asyncio.gather(register(), read())
        assert all(count == total for count, total in reads)
