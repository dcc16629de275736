"""Pagers against the embedded JD (which pages) and against grpcio servers that
page differently: one that ignores paging, one that pages but leaves
total_count unset, one that pages faithfully."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from grpc import aio

from jdkit import ConfigError, JobDistributor
from jdkit.pb import node
from tests.helpers.grpcio import stubs
from tests.helpers.server_fixtures import add_node, lbl, propose, served

pytestmark = pytest.mark.asyncio

node_pb2: Any = stubs("v1.node.node_pb2")
node_grpc: Any = stubs("v1.node.node_pb2_grpc")


class Paging(node_grpc.NodeServiceServicer):  # type: ignore[misc]
    """ListNodes over `n` nodes; `mode` says how faithfully it pages."""

    def __init__(self, n: int, mode: str) -> None:
        self.nodes = [node_pb2.Node(id=f"node_{i:03d}", name=f"n{i}") for i in range(n)]
        self.mode = mode
        self.requests: list[tuple[int, int]] = []

    async def ListNodes(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append((request.page_size, request.page))
        if self.mode == "ignore" or request.page_size == 0:
            return node_pb2.ListNodesResponse(nodes=self.nodes)  # total_count left unset
        page = max(request.page, 1)
        chunk = self.nodes[(page - 1) * request.page_size : page * request.page_size]
        total = len(self.nodes) if self.mode == "faithful" else 0
        return node_pb2.ListNodesResponse(nodes=chunk, total_count=total)


@pytest_asyncio.fixture
async def grpcio_jd() -> AsyncIterator:  # type: ignore[type-arg]
    servers = []

    async def start(n: int, mode: str) -> tuple[JobDistributor, Paging]:
        server = aio.server()
        svc = Paging(n, mode)
        node_grpc.add_NodeServiceServicer_to_server(svc, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        jd = JobDistributor.connect(f"127.0.0.1:{port}", timeout=10)
        servers.append((server, jd))
        return jd, svc

    yield start
    for server, jd in servers:
        await jd.aclose()
        await server.stop(None)


async def _ids(it: AsyncIterator[node.Node]) -> list[str]:
    return [n.id async for n in it]


@pytest.mark.parametrize(
    ("n", "page_size", "calls"),
    [(25, 10, 1), (10, 10, 2), (5, 10, 1), (0, 10, 1)],
)
async def test_server_that_ignores_paging(grpcio_jd, n: int, page_size: int, calls: int) -> None:  # type: ignore[no-untyped-def]
    jd, svc = await grpcio_jd(n, "ignore")
    got = await _ids(jd.iter_nodes(page_size=page_size))
    assert got == [f"node_{i:03d}" for i in range(n)]  # each node once, in order
    assert len(svc.requests) == calls


@pytest.mark.parametrize("mode", ["faithful", "no-total"])
@pytest.mark.parametrize(("n", "page_size"), [(25, 10), (20, 10), (3, 1), (0, 5)])
async def test_server_that_pages(grpcio_jd, mode: str, n: int, page_size: int) -> None:  # type: ignore[no-untyped-def]
    jd, svc = await grpcio_jd(n, mode)
    got = await _ids(jd.iter_nodes(page_size=page_size))
    assert got == [f"node_{i:03d}" for i in range(n)]
    pages = [p for _, p in svc.requests]
    assert pages == list(range(1, len(pages) + 1))
    # a faithful total stops right after the last full page; without it one more call
    full = n // page_size
    assert len(pages) in (max(full, 1), full + 1)
    if mode == "faithful" and n and n % page_size == 0:
        assert len(pages) == full


async def test_embedded_jd_pages_with_filters() -> None:
    async with served() as (_srv, jd):
        for i in range(23):
            await add_node(jd, i, labels=[lbl("env", "dev" if i % 2 else "prod")])
        dev = [n.name async for n in jd.iter_nodes(selector="env=dev", page_size=4)]
        assert sorted(dev) == sorted(f"node-{i}" for i in range(23) if i % 2)
        assert len(dev) == len(set(dev)) == 11
        everything = [n.id async for n in jd.iter_nodes(page_size=5)]
        assert len(set(everything)) == 23
        for bad in (0, -1, True, 2.5):
            with pytest.raises(ConfigError) as info:
                await _ids(jd.iter_nodes(page_size=bad))  # type: ignore[arg-type]
            assert info.value.field == "page_size"
        with pytest.raises(ConfigError) as info:
            await jd.list_nodes(page_size=-1)
        assert info.value.field == "page_size"


async def test_iter_jobs_and_proposals_chunk_long_id_lists(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jdkit._tasks import _pagers

    monkeypatch.setattr(_pagers, "ID_CHUNK", 3)
    async with served() as (srv, jd):
        nodes = [await add_node(jd, i) for i in range(8)]
        props = [await propose(jd, n.id) for n in nodes]
        job_ids = [p.job_id for p in props]
        before = srv.calls.get("/api.job.v1.JobService/ListJobs", 0)
        jobs = [j.id async for j in jd.iter_jobs(ids=job_ids)]
        assert sorted(jobs) == sorted(job_ids)
        assert srv.calls["/api.job.v1.JobService/ListJobs"] - before == 3
        got = [p.id async for p in jd.iter_proposals(job_ids=job_ids)]
        assert sorted(got) == sorted(p.id for p in props)
        assert [p.id async for p in jd.iter_proposals(ids=[props[0].id])] == [props[0].id]
