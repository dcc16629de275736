"""What every benchmark section shares: sizes, the report, timing helpers,
the server child process and the seeded nodes.

Timing is `time.perf_counter` (wall) and `time.process_time` (this process's
CPU, all threads), after untimed warm-up calls. Every comparison (jdkit vs
grpcio, chain vs bare stub) runs its sides in short rounds that alternate,
with the order rotated every round, so load from other processes on a shared
machine hits all sides alike; figures are medians over the rounds, and
overheads are medians of the per-round ratios.
"""

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from grpc import aio

from jdkit import JobDistributor
from jdkit._interceptors import Interceptor
from jdkit.auth import StaticToken
from jdkit.pb import label, node

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-static-token"
BEARER = f"Bearer {TOKEN}"
#: receive limit of both clients: above the 4 MiB default, for the large listings
_BIG = 256 * 1024 * 1024
#: jdkit's default deadline; the grpcio calls get the same, so both send grpc-timeout
TIMEOUT = 30.0

log = logging.getLogger("benchmarks.user")


@dataclass(frozen=True)
class Sizes:
    rounds: int  # alternating rounds per comparison (medians over these)
    start_runs: int
    warmup: int  # untimed calls per side before a comparison
    small_calls: int  # GetNode calls per side per round
    nodes: int  # registered nodes: ListNodes returns all; the BatchProposeJob batch size
    large_calls: int  # ListNodes calls per side per round
    batches_timed: int  # BatchProposeJob calls reported for (c)
    total_jobs: int  # jobs in the table (d) searches
    list_jobs_budget: float  # seconds per side per round for one ListJobs case
    chain_rounds: int
    chain_calls: int  # GetNode calls per variant per round in (e)
    noio_calls: int  # chain calls without I/O, per run
    codec_reps: int  # decode/encode repetitions per run in (b)


FULL = Sizes(
    rounds=7,
    start_runs=7,
    warmup=100,
    small_calls=500,
    nodes=1000,
    large_calls=3,
    batches_timed=5,
    total_jobs=100_000,
    list_jobs_budget=1.0,
    chain_rounds=100,
    chain_calls=80,
    noio_calls=5000,
    codec_reps=5,
)
QUICK = Sizes(
    rounds=2,
    start_runs=2,
    warmup=5,
    small_calls=30,
    nodes=20,
    large_calls=2,
    batches_timed=2,
    total_jobs=100,
    list_jobs_budget=0.05,
    chain_rounds=2,
    chain_calls=30,
    noio_calls=200,
    codec_reps=2,
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
    client_profile: str = ""
    chain_overhead: float | None = None
    findings: list[str] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for r in rows:
            cells = [r.jdkit, r.ref, r.ratio]
            print(f"  {r.key:<3} {r.what}: " + " | ".join(c for c in cells if c), flush=True)


# ----------------------------------------------------------------- helpers


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float], fmt: Callable[[float], str]) -> str:
    return f"range {fmt(min(xs))}-{fmt(max(xs))}" if len(xs) > 1 else ""


def ms(x: float) -> str:
    return f"{x * 1e3:,.1f} ms" if x >= 0.01 else f"{x * 1e3:,.2f} ms"


def us(x: float) -> str:
    return f"{x * 1e6:,.0f} µs" if x >= 1e-5 else f"{x * 1e6:,.1f} µs"


def per_s(x: float) -> str:
    return f"{x:,.0f}/s" if x >= 100 else f"{x:,.1f}/s"


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


async def warm(fn: Callable[[], Awaitable[Any]], n: int) -> None:
    for _ in range(max(n, 1)):
        await fn()


@dataclass
class Sides:
    """Per-call seconds for each side of a comparison, one entry per round."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def med(self, name: str) -> float:
        return median(self.wall[name])

    def cpu_med(self, name: str) -> float:
        return median(self.cpu[name])

    def paired(self, name: str, base: str) -> float:
        """Median over rounds of (name / base - 1): each pair ran back to back."""
        return median([a / b - 1 for a, b in zip(self.wall[name], self.wall[base], strict=True)])

    def best(self, name: str) -> float:
        """The least disturbed round (timeit's estimator)."""
        return min(self.wall[name])

    def cpu_paired(self, name: str, base: str) -> float:
        return median([a / b - 1 for a, b in zip(self.cpu[name], self.cpu[base], strict=True)])


async def compare(
    sides: dict[str, Callable[[], Awaitable[Any]]], calls: int, rounds: int, warmup: int
) -> Sides:
    """Run every side `calls` times per round, rotating the order each round."""
    for fn in sides.values():
        await warm(fn, warmup)
    names = list(sides)
    out = Sides({n: [] for n in names}, {n: [] for n in names})
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = sides[name]
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(calls):
                await fn()
            out.wall[name].append((time.perf_counter() - t0) / calls)
            out.cpu[name].append((time.process_time() - c0) / calls)
    return out


def grpcio_stubs() -> Callable[[str], ModuleType]:
    """tests/helpers/grpcio.py, imported by path: official stubs built from proto/."""
    path = ROOT / "tests" / "helpers" / "grpcio.py"
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
async def server_child(*flags: str) -> AsyncIterator[tuple[list[str], int]]:
    """`benchmarks._server` in a child process (its own interpreter and core);
    yields the words of its first line and its pid. The child exits when we
    close its stdin."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._server",
        *flags,
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
        yield line.split(), proc.pid
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def server_process(token: str | None = TOKEN) -> AsyncIterator[str]:
    """An embedded JD in a child process; yields its address."""
    async with server_child(*(["--token", token] if token else [])) as (words, _pid):
        yield words[1]


def jdkit_client(addr: str, *, interceptors: Sequence[Interceptor] = ()) -> JobDistributor:
    """The client as a user builds it: bearer token from a StaticToken source."""
    return JobDistributor.connect(
        addr,
        auth=StaticToken(TOKEN),
        allow_insecure_auth=True,
        interceptors=interceptors,
        max_receive_message_size=_BIG,  # (d) lists all 100,000 jobs once (21 MB)
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


async def profile_calls(fn: Callable[[], Awaitable[Any]], n: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        await fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(20)
    return out.getvalue()


_PACKAGES = (
    ("/jdkit/_codec/", "jdkit: codec (generated fast path)"),
    ("/jdkit/", "jdkit: client, interceptor chain"),
    ("/grpclib/", "grpclib"),
    ("/h2/", "h2"),
    ("/hpack/", "hpack"),
    ("/hyperframe/", "hyperframe"),
    ("/multidict/", "multidict"),
    ("/betterproto2/", "betterproto2"),
    ("/asyncio/", "asyncio (event loop, futures, timeouts)"),
    ("/logging/", "logging (disabled DEBUG calls from hpack/h2)"),
)


async def profile_by_package(fn: Callable[[], Awaitable[Any]], n: int) -> str:
    """Where a real call's client CPU goes: cProfile own time, summed by package.

    cProfile adds a roughly constant cost per Python call, so pure-Python
    packages look heavier than they are; the shares still show the order.
    """
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        await fn()
    prof.disable()
    stats = pstats.Stats(prof)
    buckets: dict[str, float] = {}
    for (path, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if path == "~":
            if "poll" in name or "select" in name:
                label = "waiting for the server (epoll)"
            elif "socket" in name:
                label = "socket syscalls (send/recv)"
            else:
                label = "C builtins called from Python"
        else:
            norm = path.replace(os.sep, "/")
            label = next((lb for key, lb in _PACKAGES if key in norm), "other Python")
        buckets[label] = buckets.get(label, 0.0) + tottime
    busy = sum(v for k, v in buckets.items() if not k.startswith("waiting"))
    lines = [f"{'where':<48} {'µs/call':>8} {'share of CPU':>13}"]
    for label, t in sorted(buckets.items(), key=lambda kv: -kv[1]):
        share = "" if label.startswith("waiting") else f"{t / busy * 100:12.1f}%"
        lines.append(f"{label:<48} {t / n * 1e6:8.1f} {share:>13}")
    return "\n".join(lines)
