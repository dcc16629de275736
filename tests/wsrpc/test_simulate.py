"""`jdkit node simulate`'s logic (`jdkit._wsrpc._simulate.simulate`) against the embedded JD."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jdkit._wsrpc._keys import public_hex
from jdkit._wsrpc._simulate import key_from_file, simulate
from jdkit.pb import job, node
from tests.helpers.wsrpc_helpers import FAST, eventually, jd_env

pytestmark = pytest.mark.asyncio


async def test_key_file_is_created_once_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = key_from_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_hex(key_from_file(path)) == public_hex(first)


async def test_simulate_approves_and_reports(tmp_path: Path) -> None:
    key_file = tmp_path / "node.key"
    pub = public_hex(key_from_file(key_file))
    lines: list[str] = []
    async with jd_env() as env:
        reg = await env.jd.register_node(node.RegisterNodeRequest(name="cli", public_key=pub))
        assert reg.node is not None
        stop = asyncio.Event()
        run = asyncio.ensure_future(
            simulate(
                env.srv.node_address,
                env.jd_key,
                key_file=str(key_file),
                echo=lines.append,
                stop=stop,
                backoff=FAST,
            )
        )
        await eventually(lambda: any("connected to" in ln for ln in lines), what="connected")
        prop = await env.propose(reg.node.id)
        await eventually(
            lambda: _approved(env, prop.id), what="the simulated node approved the proposal"
        )
        await env.jd.delete_job(job.DeleteJobRequest(id=prop.job_id))
        await eventually(lambda: any("deleted by the operator" in ln for ln in lines))
        stop.set()
        assert await asyncio.wait_for(run, 10) == 0
    assert lines[0] == f"node public key: {pub}"
    assert any(": approve" in ln for ln in lines)


async def _approved(env: object, prop_id: str) -> bool:
    p = await env.proposal(prop_id)  # type: ignore[attr-defined]
    return bool(p.status == job.ProposalStatus.APPROVED)


async def test_simulate_with_an_unknown_key_says_so_and_exits_1() -> None:
    lines: list[str] = []
    async with jd_env() as env:
        rc = await simulate(env.srv.node_address, env.jd_key, echo=lines.append, backoff=FAST)
    assert rc == 1
    assert "does not know this node's key" in lines[-1]
