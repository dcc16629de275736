"""Shared set-up for the node-protocol tests: an embedded JD with a node port,
an API client, and quick ways to register and connect simulated nodes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from jdkit import JobDistributor, SimulatedNode
from jdkit._server import EmbeddedJD
from jdkit._wsrpc._connection import NodeBackoff
from jdkit.pb import job, node
from jdkit.pb import node as node_pb

FAST = NodeBackoff(initial=0.05, factor=1.6, jitter=0.2, cap=0.5)


def spec(ext_id: str | None = None) -> str:
    ext_id = ext_id or str(uuid.uuid4())
    return f'type = "offchainreporting2"\nschemaVersion = 1\nexternalJobID = "{ext_id}"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    srv: EmbeddedJD
    jd: JobDistributor
    jd_key: str

    def node(self, **kw: Any) -> SimulatedNode:
        kw.setdefault("backoff", FAST)
        kw.setdefault("connect_timeout", 5.0)
        return SimulatedNode(self.srv.node_address, self.jd_key, **kw)

    async def register(self, n: SimulatedNode, name: str | None = None) -> str:
        resp = await self.jd.register_node(
            node.RegisterNodeRequest(name=name or n.name, public_key=n.public_key)
        )
        assert resp.node is not None
        return resp.node.id

    async def get_node(self, node_id: str) -> node_pb.Node:
        got = (await self.jd.get_node(node.GetNodeRequest(id=node_id))).node
        assert got is not None
        return got

    async def propose(self, node_id: str, ext_id: str | None = None) -> job.Proposal:
        resp = await self.jd.propose_job(job.ProposeJobRequest(node_id=node_id, spec=spec(ext_id)))
        assert resp.proposal is not None
        return resp.proposal

    async def proposal(self, prop_id: str) -> job.Proposal:
        resp = await self.jd.list_proposals(
            job.ListProposalsRequest(filter=job.ListProposalsRequestFilter(ids=[prop_id]))
        )
        return resp.proposals[0]

    async def job_uuid(self, prop: job.Proposal) -> str:
        got = (await self.jd.get_job(job.GetJobRequest(id=prop.job_id))).job
        assert got is not None
        return got.uuid


@contextlib.asynccontextmanager
async def jd_env(**kw: Any) -> AsyncIterator[Env]:
    kw.setdefault("node_port", 0)
    async with EmbeddedJD.start(**kw) as srv:
        async with JobDistributor.connect(srv.address, timeout=10) as jd:
            yield Env(srv, jd, await jd.get_csa_public_key())


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll an (async) check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or check}")
        await asyncio.sleep(0.02)
