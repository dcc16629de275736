"""(g) A whole rollout through the task helpers: `propose` by selector, then
`wait_for_proposals`, while the node side approves each proposal as it arrives.

Server, client and node side share this process and its event loop (the node
side needs `EmbeddedJD.approve_proposal`), so the figure is end to end on one
core: client encode/decode, the server's writes, every approval's write, and
the waiter's polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator

from benchmarks._common import Report, Row, Sizes, job_spec, seed_nodes
from jdkit import JobDistributor
from jdkit.pb import job
from jdkit.server import EmbeddedJD


@contextlib.asynccontextmanager
async def approving(srv: EmbeddedJD) -> AsyncIterator[list[float]]:
    """The node side: approve each PROPOSED proposal as soon as it is seen."""
    seen: set[str] = set()
    approved_at: list[float] = []

    async def loop() -> None:
        while True:
            fresh = [
                p.id
                for p in await srv.state.list_proposals([], [])
                if p.status == job.ProposalStatus.PROPOSED and p.id not in seen
            ]
            for pid in fresh:
                seen.add(pid)
                await srv.approve_proposal(pid)
                approved_at.append(time.perf_counter())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(loop())
    try:
        yield approved_at
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def bench_rollout(sz: Sizes, report: Report) -> None:
    n = sz.nodes
    runs = max(2, min(sz.rounds, 5))
    totals: list[float] = []
    proposing: list[float] = []
    lag: list[float] = []
    for _ in range(runs):
        async with EmbeddedJD.start() as srv:
            async with JobDistributor.connect(srv.address, timeout=600) as jd:
                await seed_nodes(jd, n)  # labels: env=prod on odd, staging on even
                spec = job_spec(str(uuid.uuid4()))
                async with approving(srv) as approved_at:
                    t0 = time.perf_counter()
                    rollout = await jd.propose(spec, nodes="env in (prod, staging)")
                    t1 = time.perf_counter()
                    final = await jd.wait_for_proposals(rollout, timeout=600)
                    t2 = time.perf_counter()
                assert len(final) == n and not rollout.failed
                assert {p.status for p in final.values()} == {job.ProposalStatus.APPROVED}
                totals.append(t2 - t0)
                proposing.append(t1 - t0)
                lag.append(t2 - max(approved_at))  # last approval -> the waiter returns
    med = statistics.median
    report.add(
        Row(
            "g",
            f"`propose` by selector + `wait_for_proposals` to {n:,} nodes, "
            "node side approving as proposals arrive (in process)",
            f"{med(totals):.2f} s",
            notes=f"median of {runs} fresh servers ({min(totals):.2f} to {max(totals):.2f} s); "
            f"propose alone {med(proposing):.2f} s (selector → ListNodes pages, "
            f"BatchProposeJob in chunks of 200); the waiter returned {med(lag) * 1000:.0f} ms "
            "after the last approval (polls back off to 1 s)",
        )
    )
