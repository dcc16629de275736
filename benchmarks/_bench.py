"""The measurements. Each returns `Row`s for the report; all timing is
`time.perf_counter`, medians over several runs after warm-up calls, and every
comparison (jdkit vs grpcio, full chain vs bare stub) interleaves its two
sides run by run so drift hits both alike."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import importlib.util
import io
import logging
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from grpc import aio
from grpclib.client import Channel

from jdkit import JobDistributor
from jdkit._auth import StaticToken
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit._proto.api.node.v1 import NodeServiceStub
from jdkit._server import EmbeddedJD
from jdkit._server._grpc import Codec as ServerCodec
from jdkit.pb import job, label, node

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-static-token"
BEARER = f"Bearer {TOKEN}"
#: jdkit's default deadline; the grpcio calls get the same, so both send grpc-timeout
TIMEOUT = 30.0

log = logging.getLogger("benchmarks.user")


@dataclass(frozen=True)
class Sizes:
    runs: int  # timed runs per measurement (median reported)
    start_runs: int
    warmup: int  # untimed calls before each measured loop
    small_calls: int  # GetNode calls per run
    nodes: int  # nodes registered; ListNodes returns all; batch size of BatchProposeJob
    large_calls: int  # ListNodes calls per run
    batches_timed: int  # BatchProposeJob calls timed one by one
    total_jobs: int  # jobs in the table ListJobs searches
    list_jobs_calls: int
    chain_calls: int  # GetNode calls per run in the chain-overhead comparison
    decode_reps: int


FULL = Sizes(
    runs=5,
    start_runs=7,
    warmup=100,
    small_calls=2000,
    nodes=1000,
    large_calls=10,
    batches_timed=5,
    total_jobs=100_000,
    list_jobs_calls=5,
    chain_calls=2000,
    decode_reps=20,
)
QUICK = Sizes(
    runs=2,
    start_runs=2,
    warmup=5,
    small_calls=30,
    nodes=20,
    large_calls=3,
    batches_timed=2,
    total_jobs=100,
    list_jobs_calls=2,
    chain_calls=30,
    decode_reps=3,
)


@dataclass
class Row:
    """One line of the report. `ref` is the reference side (grpcio or bare stub)."""

    key: str
    what: str
    jdkit: str
    ref: str = ""
    ratio: str = ""
    notes: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    profile: str = ""
    chain_overhead: float | None = None

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for r in rows:
            cells = [r.jdkit, r.ref, r.ratio]
            print(f"  {r.key:<3} {r.what}: " + " | ".join(c for c in cells if c), flush=True)


# ----------------------------------------------------------------- helpers


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float], fmt: Callable[[float], str]) -> str:
    return f"runs {fmt(min(xs))}-{fmt(max(xs))}" if len(xs) > 1 else ""


def ms(x: float) -> str:
    return f"{x * 1e3:,.1f} ms" if x >= 0.01 else f"{x * 1e3:,.2f} ms"


def us(x: float) -> str:
    return f"{x * 1e6:,.0f} µs"


def per_s(x: float) -> str:
    return f"{x:,.0f}/s" if x >= 100 else f"{x:,.1f}/s"


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """Seconds for `n` sequential awaits of `fn()`."""
    t0 = time.perf_counter()
    for _ in range(n):
        await fn()
    return time.perf_counter() - t0


async def warm(fn: Callable[[], Awaitable[Any]], n: int) -> None:
    for _ in range(max(n, 1)):
        await fn()


async def interleaved(
    sides: dict[str, Callable[[], Awaitable[Any]]], calls: int, runs: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call for each side, one list entry per run; sides alternate
    within each run (and their order flips every run)."""
    for fn in sides.values():
        await warm(fn, warmup)
    out: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(runs):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(await timed(sides[name], calls) / calls)
    return out


def grpcio_stubs() -> Callable[[str], ModuleType]:
    """tests/_grpcio.py, imported by path: official stubs built from proto/."""
    path = ROOT / "tests" / "_grpcio.py"
    spec = importlib.util.spec_from_file_location("_jdkit_bench_grpcio", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.stubs  # type: ignore[no-any-return]


def pubkey(i: int) -> str:
    return f"{0xBE9C0000 + i:064x}"


def job_spec(ext_id: str) -> str:
    return (
        'type = "offchainreporting2"\nschemaVersion = 1\n'
        f'name = "bench {ext_id[:8]}"\nexternalJobID = "{ext_id}"\n'
        'contractID = "0x0000000000000000000000000000000000000001"\n'
    )


def node_labels(i: int) -> list[label.Label]:
    return [
        label.Label(key="env", value="prod" if i % 2 else "staging"),
        label.Label(key="region", value=("eu-west-1", "us-east-1", "ap-south-1")[i % 3]),
        label.Label(key="nop", value=f"operator-{i % 17}"),
        label.Label(key="index", value=str(i)),
        label.Label(key="bootstrap") if i % 10 == 0 else label.Label(key="oracle"),
    ]


@contextlib.asynccontextmanager
async def server_process(token: str | None = TOKEN) -> AsyncIterator[str]:
    """An embedded JD in a child process (its own interpreter and core); yields
    its address. The child exits when we close its stdin."""
    args = [sys.executable, "-m", "benchmarks._server"]
    if token:
        args += ["--token", token]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def jdkit_client(addr: str, *, interceptors: Sequence[Interceptor] = ()) -> JobDistributor:
    """The client as a user builds it: bearer token from a StaticToken source."""
    return JobDistributor.connect(
        addr, auth=StaticToken(TOKEN), allow_insecure_auth=True, interceptors=interceptors
    )


class DebugLogging(Interceptor):
    """A typical user interceptor: logs every call at DEBUG level."""

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        log.debug("-> %s attempt %d", call.method.path, call.attempt)
        reply = await proceed(call)
        log.debug("<- %s", call.method.path)
        return reply


# ------------------------------------------------------------ (a) start


async def bench_start(sz: Sizes, report: Report) -> None:
    """Embedded JD: start() until the first successful call returns; then the
    latency of a small call with client and server in this process."""

    async def once() -> tuple[float, float]:
        t0 = time.perf_counter()
        srv = await EmbeddedJD.start()
        t1 = time.perf_counter()
        try:
            async with JobDistributor.connect(srv.address) as jd:
                await jd.get_keypair()
            t2 = time.perf_counter()
        finally:
            await srv.stop()
        return t1 - t0, t2 - t0

    await once()  # warm-up: first-use imports
    listening, first_call = zip(*[await once() for _ in range(sz.start_runs)], strict=True)

    async def cold() -> float:
        t0 = time.perf_counter()
        async with server_process(token=None) as addr:
            async with JobDistributor.connect(addr) as jd:
                await jd.get_keypair()
            return time.perf_counter() - t0

    colds = [await cold() for _ in range(max(2, sz.start_runs // 2))]
    report.add(
        Row(
            "a",
            "Embedded JD start → first successful call (in process, in-memory SQLite)",
            ms(median(first_call)),
            notes=f"start() alone {ms(median(listening))}; {spread(first_call, ms)}; "
            f"{len(first_call)} runs",
        ),
        Row(
            "a",
            "… in a fresh interpreter (spawn `python -m benchmarks._server` → first call)",
            ms(median(colds)),
            notes=f"imports included; {spread(colds, ms)}; {len(colds)} runs",
        ),
    )

    async def latency() -> float:
        async with EmbeddedJD.start() as srv, JobDistributor.connect(srv.address) as jd:
            await warm(jd.version, 3)
            return median([await timed(jd.version, 1) for _ in range(max(sz.small_calls // 50, 9))])

    small = await latency()
    report.add(
        Row(
            "a",
            "Version round trip, client and embedded JD in one process (one event loop)",
            ms(small),
            notes="median of single calls; the round trips below use a server in its own process",
        )
    )


# --------------------------------------------- (b)-(e) against one server


@dataclass
class World:
    addr: str
    jd: JobDistributor
    channel: aio.Channel
    stubs: Callable[[str], ModuleType]
    node_ids: list[str]
    md: tuple[tuple[str, str], ...] = (("authorization", BEARER),)


async def seed_nodes(jd: JobDistributor, n: int) -> list[str]:
    async def one(i: int) -> str:
        resp = await jd.register_node(
            node.RegisterNodeRequest(
                name=f"bench-node-{i}", public_key=pubkey(i), labels=node_labels(i)
            )
        )
        assert resp.node is not None
        return resp.node.id

    ids: list[str] = []
    for start in range(0, n, 50):
        ids += await asyncio.gather(*(one(i) for i in range(start, min(start + 50, n))))
    return ids


async def bench_round_trips(sz: Sizes, w: World, report: Report) -> None:
    node_pb2 = w.stubs("v1.node.node_pb2")
    stub = w.stubs("v1.node.node_pb2_grpc").NodeServiceStub(w.channel)

    small_bp = node.GetNodeRequest(id=w.node_ids[0])
    small_pb = node_pb2.GetNodeRequest(id=w.node_ids[0])
    got = await w.jd.get_node(small_bp)
    assert got.node is not None and got.node.id == w.node_ids[0]
    small = await interleaved(
        {
            "jdkit": lambda: w.jd.get_node(small_bp),
            "grpcio": lambda: stub.GetNode(small_pb, metadata=w.md, timeout=TIMEOUT),
        },
        sz.small_calls,
        sz.runs,
        sz.warmup,
    )
    rate_j = [1 / s for s in small["jdkit"]]
    rate_g = [1 / s for s in small["grpcio"]]
    report.add(
        Row(
            "b",
            "GetNode round trips/s (1 node, 5 labels)",
            per_s(median(rate_j)),
            per_s(median(rate_g)),
            f"{median(rate_j) / median(rate_g):.2f}x",
            f"{us(median(small['jdkit']))} vs {us(median(small['grpcio']))} per call; "
            f"{sz.small_calls} calls x {sz.runs} runs",
        )
    )

    large_bp = node.ListNodesRequest()
    large_pb = node_pb2.ListNodesRequest()
    listed = await w.jd.list_nodes(large_bp)
    assert len(listed.nodes) == sz.nodes and listed.total_count == sz.nodes
    pb_listed = await stub.ListNodes(large_pb, metadata=w.md, timeout=TIMEOUT)
    assert len(pb_listed.nodes) == sz.nodes
    large = await interleaved(
        {
            "jdkit": lambda: w.jd.list_nodes(large_bp, timeout=120),
            "grpcio": lambda: stub.ListNodes(large_pb, metadata=w.md, timeout=120),
        },
        sz.large_calls,
        sz.runs,
        max(2, sz.warmup // 50),
    )
    rate_j = [1 / s for s in large["jdkit"]]
    rate_g = [1 / s for s in large["grpcio"]]
    report.add(
        Row(
            "b",
            f"ListNodes round trips/s ({sz.nodes:,} nodes x 5 labels per reply)",
            per_s(median(rate_j)),
            per_s(median(rate_g)),
            f"{median(rate_j) / median(rate_g):.2f}x",
            f"{ms(median(large['jdkit']))} vs {ms(median(large['grpcio']))} per call; "
            f"{sz.large_calls} calls x {sz.runs} runs",
        )
    )

    # Where the large call's time goes: the same reply bytes, decoded and encoded
    # in this process by each runtime (no network, no server).
    raw = await w.channel.unary_unary(
        "/api.node.v1.NodeService/ListNodes",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )(b"", metadata=w.md, timeout=120)

    def clock(fn: Callable[[], Any]) -> float:
        fn()
        best = []
        for _ in range(sz.runs):
            t0 = time.perf_counter()
            for _ in range(sz.decode_reps):
                fn()
            best.append((time.perf_counter() - t0) / sz.decode_reps)
        return median(best)

    def walk_pb() -> None:
        # upb builds Python objects lazily: touch every field a caller would read
        for n in node_pb2.ListNodesResponse.FromString(raw).nodes:
            _ = (n.id, n.name, n.public_key, n.is_enabled, n.created_at.ToDatetime())
            for lb in n.labels:
                _ = (lb.key, lb.value)

    bp_decode = clock(lambda: node.ListNodesResponse.parse(raw))
    pb_decode = clock(lambda: node_pb2.ListNodesResponse.FromString(raw))
    pb_walk = clock(walk_pb)
    parsed_bp = node.ListNodesResponse.parse(raw)
    parsed_pb = node_pb2.ListNodesResponse.FromString(raw)
    codec = ServerCodec()
    srv_encode = clock(lambda: codec.encode(parsed_bp, node.ListNodesResponse))
    bp_encode = clock(lambda: bytes(parsed_bp))
    pb_encode = clock(lambda: parsed_pb.SerializeToString())
    report.add(
        Row(
            "b",
            f"… decode the {len(raw) / 1024:,.0f} KiB ListNodes reply (betterproto2 vs protobuf)",
            ms(bp_decode),
            ms(pb_decode),
            f"{bp_decode / pb_decode:.0f}x slower",
            f"in process, no I/O. protobuf (upb) makes Python objects lazily; decoding and "
            f"reading every node's fields takes {ms(pb_walk)}, so betterproto2 is "
            f"{bp_decode / pb_walk:.1f}x slower than that",
        ),
        Row(
            "b",
            "… encode the same reply: the embedded JD's codec vs protobuf",
            ms(srv_encode),
            ms(pb_encode),
            f"{srv_encode / pb_encode:.0f}x slower",
            f"what the server pays per ListNodes for both clients above; plain betterproto2 "
            f"`bytes()` takes {ms(bp_encode)}",
        ),
    )


async def bench_batch_and_list_jobs(sz: Sizes, w: World, report: Report) -> None:
    job_pb2 = w.stubs("v1.job.job_pb2")
    label_pb2 = w.stubs("v1.shared.ptypes.label_pb2")
    jobs_stub = w.stubs("v1.job.job_pb2_grpc").JobServiceStub(w.channel)
    batches = max(sz.total_jobs // len(w.node_ids), sz.batches_timed)

    def request(b: int) -> job.BatchProposeJobRequest:
        return job.BatchProposeJobRequest(
            node_ids=w.node_ids,
            spec=job_spec(str(uuid.uuid4())),
            labels=[
                label.Label(key="batch", value=str(b)),
                label.Label(key="env", value="prod" if b % 2 else "staging"),
                label.Label(key="team", value=f"team-{b % 7}"),
            ],
        )

    per_batch: list[float] = []
    t_seed = time.perf_counter()
    for b in range(batches):
        req = request(b)
        t0 = time.perf_counter()
        resp = await w.jd.batch_propose_job(req, timeout=600)
        per_batch.append(time.perf_counter() - t0)
        if len(resp.success_responses) != len(w.node_ids) or resp.failed_responses:
            raise RuntimeError(f"batch {b}: {len(resp.failed_responses)} nodes failed")
        if b == 0 or (b + 1) % 20 == 0:
            print(f"     seeded {(b + 1) * len(w.node_ids):,} jobs", flush=True)
    seed_time = time.perf_counter() - t_seed
    timed_batches = per_batch[: sz.batches_timed]
    total = batches * len(w.node_ids)
    report.add(
        Row(
            "c",
            f"BatchProposeJob to {len(w.node_ids):,} nodes, time per batch",
            ms(median(timed_batches)),
            notes=f"first {len(timed_batches)} batches on a fresh server "
            f"({spread(timed_batches, ms)}); median over all {batches} batches while the "
            f"table grew to {total:,} jobs: {ms(median(per_batch))}; "
            f"≈{len(w.node_ids) / median(timed_batches):,.0f} proposals/s",
        )
    )

    count = await w.jd.list_jobs(job.ListJobsRequest())
    assert len(count.jobs) == total, (len(count.jobs), total)
    Sel, Op = label.Selector, label.SelectorOp
    cases = [
        ("`batch = 7`", [Sel(key="batch", op=Op.EQ, value=str(min(7, batches - 1)))],
         [label_pb2.Selector(key="batch", op=label_pb2.EQ, value=str(min(7, batches - 1)))]),
        ("`env = prod`, `team in (team-1, team-2)`",
         [Sel(key="env", op=Op.EQ, value="prod"),
          Sel(key="team", op=Op.IN, value="team-1,team-2")],
         [label_pb2.Selector(key="env", op=label_pb2.EQ, value="prod"),
          label_pb2.Selector(key="team", op=label_pb2.IN, value="team-1,team-2")]),
        ("`batch = none` (no match: the search alone)",
         [Sel(key="batch", op=Op.EQ, value="none")],
         [label_pb2.Selector(key="batch", op=label_pb2.EQ, value="none")]),
    ]  # fmt: skip
    for title, sels_bp, sels_pb in cases:
        req_bp = job.ListJobsRequest(filter=job.ListJobsRequestFilter(selectors=sels_bp))
        req_pb = job_pb2.ListJobsRequest(filter=job_pb2.ListJobsRequest.Filter(selectors=sels_pb))
        matches = len((await w.jd.list_jobs(req_bp, timeout=120)).jobs)
        res = await interleaved(
            {
                "jdkit": lambda r=req_bp: w.jd.list_jobs(r, timeout=120),
                "grpcio": lambda r=req_pb: jobs_stub.ListJobs(r, metadata=w.md, timeout=120),
            },
            sz.list_jobs_calls,
            sz.runs,
            1,
        )
        report.add(
            Row(
                "d",
                f"ListJobs over {total:,} jobs, selector {title}: {matches:,} matches",
                ms(median(res["jdkit"])),
                ms(median(res["grpcio"])),
                f"{median(res['jdkit']) / median(res['grpcio']):.2f}x",
                f"time per call; {spread(res['jdkit'], ms)}",
            )
        )
    report.add(
        Row(
            "d",
            f"… seeding {total:,} jobs ({batches} BatchProposeJob calls over the API)",
            f"{seed_time:,.1f} s",
            notes="not a benchmark target; shows what the figures above were built on",
        )
    )


async def bench_chain(sz: Sizes, w: World, report: Report, profile: bool) -> None:
    """Per-call cost of jdkit's interceptor chain vs the bare generated stub."""
    host, port = w.addr.rsplit(":", 1)
    bare_channel = Channel(host, int(port))
    bare = NodeServiceStub(bare_channel, metadata={"authorization": BEARER})
    bare_timeout = NodeServiceStub(
        bare_channel, metadata={"authorization": BEARER}, timeout=TIMEOUT
    )
    # the chain minus auth: the token as static metadata instead of AuthInterceptor
    no_auth = JobDistributor.connect(w.addr, metadata={"authorization": BEARER})
    auth_only = jdkit_client(w.addr)
    full = jdkit_client(w.addr, interceptors=[DebugLogging()])
    assert not log.isEnabledFor(logging.DEBUG)  # DEBUG is off, as in production
    req = node.GetNodeRequest(id=w.node_ids[0])
    try:
        res = await interleaved(
            {
                "bare": lambda: bare.get_node(req),
                "bare+timeout": lambda: bare_timeout.get_node(req),
                "deadline+retry": lambda: no_auth.get_node(req),
                "+auth": lambda: auth_only.get_node(req),
                "full": lambda: full.get_node(req),
            },
            sz.chain_calls,
            sz.runs,
            sz.warmup,
        )
        if profile:
            report.profile = await profile_calls(lambda: full.get_node(req), sz.chain_calls)
    finally:
        bare_channel.close()
        for c in (no_auth, auth_only, full):
            await c.aclose()
    base = median(res["bare"])
    overhead = median(res["full"]) / base - 1
    # per-run ratios too: the runs interleave, so each pair saw the same conditions
    paired = [f / b - 1 for f, b in zip(res["full"], res["bare"], strict=True)]
    report.chain_overhead = overhead
    verdict = "met" if overhead < 0.10 else "NOT met"
    report.add(
        Row(
            "e",
            "GetNode per call: full chain (deadline → logging → retry → auth) vs bare stub",
            us(median(res["full"])),
            us(base),
            f"{overhead * 100:+.1f}%",
            f"target < 10 %: **{verdict}**; per-run pairs {min(paired) * 100:+.1f}% to "
            f"{max(paired) * 100:+.1f}%; {sz.chain_calls} calls x {sz.runs} runs",
        )
    )
    for name, what in [
        ("bare+timeout", "… bare stub with timeout=30 s (server-side deadline handling)"),
        ("deadline+retry", "… jdkit, deadline + retry only (token as static metadata)"),
        ("+auth", "… jdkit, + AuthInterceptor(StaticToken)"),
    ]:
        report.add(
            Row(
                "e",
                what,
                us(median(res[name])),
                us(base),
                f"{(median(res[name]) / base - 1) * 100:+.1f}%",
            )
        )


async def profile_calls(fn: Callable[[], Awaitable[Any]], n: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        await fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


async def run_all(sz: Sizes, *, profile: bool) -> Report:
    report = Report()
    stubs = grpcio_stubs()
    stubs("v1.node.node_pb2")  # compile the official stubs before timing anything
    print("(a) start time", flush=True)
    await bench_start(sz, report)
    async with server_process() as addr:
        jd = jdkit_client(addr)
        channel = aio.insecure_channel(addr)
        try:
            print(f"    seeding {sz.nodes:,} nodes on {addr}", flush=True)
            ids = await seed_nodes(jd, sz.nodes)
            w = World(addr, jd, channel, stubs, ids)
            print("(b) round trips", flush=True)
            await bench_round_trips(sz, w, report)
            print("(e) interceptor chain vs bare stub", flush=True)
            await bench_chain(sz, w, report, profile)
            print("(c)+(d) BatchProposeJob, then ListJobs over the seeded table", flush=True)
            await bench_batch_and_list_jobs(sz, w, report)
        finally:
            await jd.aclose()
            await channel.close()
    order = {k: i for i, k in enumerate("abcde")}
    report.rows.sort(key=lambda r: order[r.key])  # stable: keeps order within a section
    return report


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("jdkit", "betterproto2", "grpclib", "grpcio", "protobuf"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


__all__ = ["FULL", "QUICK", "Report", "Row", "Sizes", "run_all", "versions"]
