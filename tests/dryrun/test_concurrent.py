"""Concurrent writes in one dry run get the answers the real JD gives them.

JD decides each write in its own transaction, so writes sent at once
(`asyncio.gather`) are decided one after another. The dry run holds its
journal's lock from a write's first read to its planned change, so it does
the same. Each test runs the same calls through a dry run and then for real
against one embedded JD (the dry run writes nothing, so it cannot influence
the real side) and compares the answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from jdkit import JDError, JobDistributor, RPCError
from jdkit.pb import job, node
from jdkit.server import EmbeddedJD

pytestmark = pytest.mark.asyncio

EXT = "11111111-1111-1111-1111-111111111111"
KEY = "ab" * 32


def _spec(extra: str = "") -> str:
    return f'type = "offchainreporting2"\nexternalJobID = "{EXT}"\n{extra}'


@pytest_asyncio.fixture
async def real() -> AsyncIterator[JobDistributor]:
    async with EmbeddedJD.start() as srv:
        async with JobDistributor.connect(srv.address, timeout=20) as jd:
            yield jd


def _status(result: object) -> str:
    if isinstance(result, RPCError):
        return result.code.name
    if isinstance(result, BaseException):
        return type(result).__name__
    return "OK"


async def _gather(*calls: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def _both(
    real: JobDistributor, calls: Callable[[JobDistributor], list[Awaitable[Any]]]
) -> tuple[list[Any], list[Any]]:
    """(dry-run results, real results) of the same calls sent at once."""
    dry = await _gather(*calls(real.with_dry_run()))
    return dry, await _gather(*calls(real))


async def _node(jd: JobDistributor, name: str, key: str) -> node.Node:
    got = (await jd.register_node(node.RegisterNodeRequest(name=name, public_key=key))).node
    assert got is not None
    return got


async def test_the_same_key_registered_twice_at_once(real: JobDistributor) -> None:
    dry, out = await _both(
        real,
        lambda jd: [
            jd.register_node(node.RegisterNodeRequest(name=f"n{i}", public_key=KEY))
            for i in range(2)
        ],
    )
    assert [_status(r) for r in out] == ["OK", "ALREADY_EXISTS"]
    assert [_status(r) for r in dry] == [_status(r) for r in out]
    assert str(dry[1]).replace(dry[0].node.id, "<id>") == str(out[1]).replace(
        out[0].node.id, "<id>"
    )


async def test_three_proposals_of_one_job_at_once(real: JobDistributor) -> None:
    n = await _node(real, "n", KEY)

    def calls(jd: JobDistributor) -> list[Awaitable[Any]]:
        return [
            jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec(f"x = {i}\n")))
            for i in range(3)
        ]

    dry_client = real.with_dry_run()
    dry = await _gather(*calls(dry_client))
    dry_jobs = (await dry_client.list_jobs()).jobs  # before the real writes show in its reads
    dry_props = (await dry_client.list_proposals()).proposals
    out = await _gather(*calls(real))
    for results in (dry, out):
        assert [_status(r) for r in results] == ["OK"] * 3
    # one job, revisions 1, 2, 3 in the order sent, as the real JD says
    assert [r.proposal.revision for r in dry] == [r.proposal.revision for r in out] == [1, 2, 3]
    assert len({r.proposal.job_id for r in dry}) == len({r.proposal.job_id for r in out}) == 1
    assert [r.proposal.spec for r in dry] == [r.proposal.spec for r in out]
    assert len(dry_jobs) == len((await real.list_jobs()).jobs) == 1
    real_props = (await real.list_proposals()).proposals
    assert [p.revision for p in dry_props] == [p.revision for p in real_props] == [1, 2, 3]


async def test_disable_while_proposing(real: JobDistributor) -> None:
    n = await _node(real, "n", KEY)
    dry, out = await _both(
        real,
        lambda jd: [
            jd.disable_node(node.DisableNodeRequest(id=n.id)),
            jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec())),
        ],
    )
    assert [_status(r) for r in out] == ["OK", "FAILED_PRECONDITION"]
    assert [_status(r) for r in dry] == [_status(r) for r in out]
    assert str(dry[1]) == str(out[1])


async def test_many_writes_at_once_match_the_server(real: JobDistributor) -> None:
    """A burst of mixed writes: every answer's status and revision match."""
    nodes = [await _node(real, f"n{i}", f"{i + 1:064x}") for i in range(3)]

    def calls(jd: JobDistributor) -> list[Awaitable[Any]]:
        out: list[Awaitable[Any]] = []
        for round_ in range(3):
            for i, n in enumerate(nodes):
                out.append(jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec())))
                if round_ == 1 and i == 2:
                    out.append(jd.disable_node(node.DisableNodeRequest(id=n.id)))
            out.append(
                jd.register_node(node.RegisterNodeRequest(name=f"r{round_}", public_key=KEY))
            )
        return out

    dry, out = await _both(real, calls)

    def summary(results: list[Any]) -> list[tuple[str, int | None]]:
        return [
            (_status(r), getattr(getattr(r, "proposal", None), "revision", None)) for r in results
        ]

    assert summary(dry) == summary(out)
    assert not any(isinstance(r, BaseException) and not isinstance(r, JDError) for r in dry)
