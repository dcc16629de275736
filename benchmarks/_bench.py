"""The measurements, section by section; `run_all` runs the chosen ones.

Each section adds `Row`s to the report; the sections live in their own
modules (`_roundtrips` a/b, `_jobs` c/d, `_chain` e, `_nodes` f, `_rollout` g,
`_health` h) and share `_common`.
"""

from __future__ import annotations

from grpc import aio

from benchmarks._chain import bench_chain
from benchmarks._common import (
    _BIG,
    Report,
    Sizes,
    World,
    grpcio_stubs,
    jdkit_client,
    seed_nodes,
    server_process,
)
from benchmarks._jobs import bench_batch_and_list_jobs
from benchmarks._roundtrips import bench_round_trips, bench_start

SECTIONS = frozenset("abcdefgh")


async def run_all(sz: Sizes, *, profile: bool, only: frozenset[str] = SECTIONS) -> Report:
    """Run the sections in `only` ("c" and "d" share their seeding, so either runs both)."""
    report = Report()
    stubs = grpcio_stubs()
    stubs("v1.node.node_pb2")  # compile the official stubs before timing anything
    if "a" in only:
        print("(a) start time", flush=True)
        await bench_start(sz, report)
    if "f" in only:
        from benchmarks._nodes import bench_nodes

        print(f"(f) {sz.nodes:,} simulated nodes over the node-facing protocol", flush=True)
        await bench_nodes(sz.nodes, report)
    if "g" in only:
        from benchmarks._rollout import bench_rollout

        print("(g) propose + wait_for_proposals, node side approving", flush=True)
        await bench_rollout(sz, report)
    if "h" in only:
        from benchmarks._health import bench_health

        print("(h) health latency while one expensive request is served", flush=True)
        await bench_health(sz, report)
    if not only & set("bcde"):
        return report
    async with server_process() as addr:
        jd = jdkit_client(addr)
        channel = aio.insecure_channel(addr, options=[("grpc.max_receive_message_length", _BIG)])
        try:
            print(f"    seeding {sz.nodes:,} nodes on {addr}", flush=True)
            ids = await seed_nodes(jd, sz.nodes)
            w = World(addr, jd, channel, stubs, ids)
            if "b" in only:
                print("(b) round trips", flush=True)
                await bench_round_trips(sz, w, report)
            if "e" in only:
                print("(e) interceptor chain vs bare stub", flush=True)
                await bench_chain(sz, w, report, profile)
            if only & {"c", "d"}:
                print("(c)+(d) BatchProposeJob, then ListJobs over the seeded table", flush=True)
                await bench_batch_and_list_jobs(sz, w, report)
        finally:
            await jd.aclose()
            await channel.close()
    order = {k: i for i, k in enumerate("abcdefgh")}
    report.rows.sort(key=lambda r: order[r.key])  # stable: keeps order within a section
    return report


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("jdkit", "betterproto2", "grpclib", "grpcio", "protobuf", "anyio"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


__all__ = ["SECTIONS", "run_all", "versions"]
