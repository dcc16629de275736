"""Property: whatever a server does with paging, the pager yields every node once."""

from __future__ import annotations

import asyncio

from grpc import aio
from hypothesis import given, settings
from hypothesis import strategies as st

from jdkit import JobDistributor

from .test_pagers import Paging, _ids, node_grpc


async def walk(n: int, mode: str, page_size: int) -> tuple[list[str], int]:
    server = aio.server()
    svc = Paging(n, mode)
    node_grpc.add_NodeServiceServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with JobDistributor.connect(f"127.0.0.1:{port}", timeout=10) as jd:
            return await _ids(jd.iter_nodes(page_size=page_size)), len(svc.requests)
    finally:
        await server.stop(None)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 60),
    mode=st.sampled_from(["ignore", "faithful", "no-total"]),
    page_size=st.integers(1, 25),
)
def test_every_server_behaviour_yields_each_node_once(n: int, mode: str, page_size: int) -> None:
    got, calls = asyncio.run(walk(n, mode, page_size))
    assert got == [f"node_{i:03d}" for i in range(n)]  # each once, in the server's order
    assert calls <= n // page_size + 2  # never loops on a server that repeats itself
