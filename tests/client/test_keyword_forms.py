"""Keyword forms of the list/get methods, against the embedded JD."""

from __future__ import annotations

import pytest

from jdkit import ConfigError, NotFoundError, selectors
from jdkit.pb import job, label, node
from tests.helpers.server_fixtures import add_node, lbl, propose, pubkey, served

pytestmark = pytest.mark.asyncio


async def _three(jd):  # type: ignore[no-untyped-def]
    a = await add_node(jd, 1, "a", [lbl("env", "dev")])
    b = await add_node(jd, 2, "b", [lbl("env", "dev"), lbl("canary")])
    c = await add_node(jd, 3, "c", [lbl("env", "prod")])
    await jd.disable_node(node.DisableNodeRequest(id=b.id))
    return a, b, c


async def test_list_nodes_keywords() -> None:
    async with served() as (_, jd):
        a, _b, c = await _three(jd)

        async def names(**kw):  # type: ignore[no-untyped-def]
            return sorted(n.name for n in (await jd.list_nodes(**kw)).nodes)

        assert await names(selector="env=dev") == ["a", "b"]
        assert await names(selector="env=dev, !canary") == ["a"]
        assert await names(selector=["env=dev", "canary"]) == ["b"]
        assert await names(selector=selectors.parse_one("env=prod")) == ["c"]
        assert await names(selector=[label.Selector(key="env", op=label.SelectorOp.EXIST)]) == [
            "a",
            "b",
            "c",
        ]
        assert await names(enabled=True) == ["a", "c"]
        assert await names(enabled=False) == ["b"]
        assert await names(ids=[a.id, c.id]) == ["a", "c"]
        assert await names(public_keys=[pubkey(2)]) == ["b"]
        assert await names(selector="env=dev", enabled=True) == ["a"]
        page = await jd.list_nodes(page_size=2, page=2)
        assert page.total_count == 3 and len(page.nodes) == 1


async def test_get_node_by_id_or_key() -> None:
    async with served() as (_, jd):
        a = await add_node(jd, 1, "a")
        assert (await jd.get_node(id=a.id)).node.name == "a"  # type: ignore[union-attr]
        assert (await jd.get_node(public_key=pubkey(1))).node.id == a.id  # type: ignore[union-attr]
        with pytest.raises(NotFoundError):
            await jd.get_node(public_key=pubkey(9))
        # both: refused like the list methods' request+keywords, naming both
        with pytest.raises(TypeError, match=r"id= or public_key=, not both"):
            await jd.get_node(id=a.id, public_key=pubkey(9))


async def test_list_jobs_and_proposals_keywords() -> None:
    async with served() as (_, jd):
        a = await add_node(jd, 1, "a")
        b = await add_node(jd, 2, "b")
        ext = "7a4f6f0e-1d0c-4b8e-9a55-0a1b2c3d4e5f"
        pa = await propose(jd, a.id, ext, labels=[lbl("team", "x")])
        pb = await propose(jd, b.id, ext)
        other = await propose(jd, a.id)
        jobs = (await jd.list_jobs(uuids=[ext])).jobs
        assert {j.node_id for j in jobs} == {a.id, b.id}
        assert [j.id for j in (await jd.list_jobs(selector="team=x")).jobs] == [pa.job_id]
        assert {j.id for j in (await jd.list_jobs(node_ids=[a.id])).jobs} == {
            pa.job_id,
            other.job_id,
        }
        assert [j.id for j in (await jd.list_jobs(ids=[pb.job_id])).jobs] == [pb.job_id]
        await jd.delete_job(job.DeleteJobRequest(id=other.job_id))
        assert len((await jd.list_jobs(node_ids=[a.id])).jobs) == 1
        assert len((await jd.list_jobs(node_ids=[a.id], include_deleted=True)).jobs) == 2
        props = (await jd.list_proposals(job_ids=[pa.job_id, pb.job_id])).proposals
        assert {p.id for p in props} == {pa.id, pb.id}
        assert [p.id for p in (await jd.list_proposals(ids=[pb.id])).proposals] == [pb.id]
        assert (await jd.get_job(id=pa.job_id)).job.uuid == ext  # type: ignore[union-attr]
        assert (await jd.get_proposal(id=pa.id)).proposal.revision == 1  # type: ignore[union-attr]
        got = await jd.list_node_chain_configs(node_ids=[a.id])
        assert got.chain_configs == []


async def test_request_and_keywords_together_is_a_type_error() -> None:
    async with served() as (srv, jd):
        cases = [
            lambda: jd.list_nodes(node.ListNodesRequest(), selector="env=dev"),
            lambda: jd.list_nodes(node.ListNodesRequest(), enabled=False),
            lambda: jd.get_node(node.GetNodeRequest(id="x"), public_key="ab"),
            lambda: jd.list_jobs(job.ListJobsRequest(), include_deleted=False),
            lambda: jd.list_proposals(job.ListProposalsRequest(), ids=["p"]),
            lambda: jd.get_job(job.GetJobRequest(id="j"), id="j"),
        ]
        for make in cases:
            with pytest.raises(TypeError, match="not both"):
                await make()
        with pytest.raises(TypeError, match="needs a request"):
            await jd.get_node()
        with pytest.raises(TypeError, match=r"ids=\['node_1'\]"):
            await jd.list_nodes(ids="node_1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="enabled"):
            await jd.list_nodes(enabled="yes")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="selector"):
            await jd.list_nodes(selector="env in dev")
        assert srv.calls == {}  # refused before anything was sent
