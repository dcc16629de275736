"""(f) The node-facing protocol at scale: simulated nodes against one embedded JD.

The JD (with its node port) runs in a child process, as in (b)-(e); the
nodes are `jdkit.SimulatedFleet` in this process, each with its own TLS 1.3
+ WebSocket connection over loopback. Timed: all nodes connected (TLS, the
upgrade and each node's UpdateNode answered); one BatchProposeJob to all of
them until every node's ApprovedJob was accepted, then checked through
ListProposals; memory is the RSS growth of each process per connected node.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from benchmarks._common import server_child
from jdkit import JobDistributor, SimulatedFleet
from jdkit.pb import job

ROOT = Path(__file__).resolve().parent.parent


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int | None = None) -> int:
    """Resident set size in KiB (Linux /proc); 0 where unavailable."""
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.asynccontextmanager
async def node_server() -> AsyncIterator[tuple[str, str, int]]:
    """(gRPC address, node address, pid) of an embedded JD in a child process."""
    async with server_child("--node-port") as (words, pid):
        if len(words) != 4 or words[2] != "NODES":
            raise RuntimeError(f"benchmark server did not start: {' '.join(words)!r}")
        yield words[1], words[3], pid


def _spec() -> str:
    return f'type = "offchainreporting2"\nschemaVersion = 1\nexternalJobID = "{uuid.uuid4()}"\n'


async def measure(count: int) -> dict[str, float]:
    """Connect `count` nodes, propose to all, wait for all approvals."""
    out: dict[str, float] = {"nodes": count}
    async with node_server() as (addr, node_addr, pid):
        async with JobDistributor.connect(addr, timeout=60) as jd:
            key = await jd.get_csa_public_key()
            fleet = SimulatedFleet(
                node_addr, key, count, concurrency=200, on_proposal="approve", connect_timeout=60
            )
            t = time.perf_counter()
            await fleet.register(jd)
            out["register_s"] = time.perf_counter() - t
            gc.collect()
            jd_before, here_before = rss_kib(pid), rss_kib()
            t, jd_cpu, here_cpu = time.perf_counter(), cpu_s(pid), time.process_time()
            await fleet.start()
            out["connect_s"] = time.perf_counter() - t
            out["connect_jd_cpu_s"] = cpu_s(pid) - jd_cpu
            out["connect_nodes_cpu_s"] = time.process_time() - here_cpu
            try:
                await asyncio.sleep(0.5)  # let the JD settle its connection bookkeeping
                gc.collect()
                out["jd_kib_per_node"] = (rss_kib(pid) - jd_before) / count
                out["node_kib_per_node"] = (rss_kib() - here_before) / count
                t, jd_cpu, here_cpu = time.perf_counter(), cpu_s(pid), time.process_time()
                resp = await jd.batch_propose_job(
                    job.BatchProposeJobRequest(node_ids=fleet.node_ids, spec=_spec())
                )
                out["batch_call_s"] = time.perf_counter() - t
                await fleet.wait_until(
                    lambda n: bool(n.proposals) and n.proposals[0].answer == "approved",
                    timeout=120,
                )
                out["all_approved_s"] = time.perf_counter() - t
                out["approve_jd_cpu_s"] = cpu_s(pid) - jd_cpu
                out["approve_nodes_cpu_s"] = time.process_time() - here_cpu
                ids = [r.proposal.id for r in resp.success_responses.values() if r.proposal]
                got = await jd.list_proposals(
                    job.ListProposalsRequest(filter=job.ListProposalsRequestFilter(ids=ids))
                )
                approved = sum(p.status == job.ProposalStatus.APPROVED for p in got.proposals)
                out["approved"] = approved
                if approved != count:
                    raise RuntimeError(f"only {approved} of {count} proposals are APPROVED")
            finally:
                await fleet.stop()
    return out


async def bench_nodes(nodes: int, report: object) -> None:
    """Section (f): rows for the report (`benchmarks._common.Report`)."""
    from benchmarks._common import Row

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    r = await measure(nodes)
    add = report.add  # type: ignore[attr-defined]
    add(
        Row(
            "f",
            f"{nodes:,} simulated nodes connect to one embedded JD "
            "(TLS 1.3 + WebSocket + UpdateNode each)",
            f"{r['connect_s']:.1f} s",
            "target < 10 s",
            "",
            f"CPU used: JD {r['connect_jd_cpu_s']:.1f} s, nodes {r['connect_nodes_cpu_s']:.1f} s; "
            f"load average {load:.1f} at start (shared machine); "
            f"registering them first took {r['register_s']:.1f} s",
        ),
        Row(
            "f",
            f"BatchProposeJob to all {nodes:,}, until every node's ApprovedJob was taken",
            f"{r['all_approved_s']:.1f} s",
            "target < 5 s",
            "",
            f"the call itself {r['batch_call_s'] * 1000:.0f} ms; CPU used: JD "
            f"{r['approve_jd_cpu_s']:.1f} s, nodes {r['approve_nodes_cpu_s']:.1f} s; "
            f"{int(r['approved']):,} APPROVED in ListProposals",
        ),
        Row(
            "f",
            "memory per connected node (RSS growth / nodes)",
            f"JD {r['jd_kib_per_node']:.0f} KiB",
            f"SimulatedNode {r['node_kib_per_node']:.0f} KiB",
            "",
            "JD: TLS session, WebSocket protocol, RPC endpoint; node: the same plus its own "
            "TLS context",
        ),
    )
