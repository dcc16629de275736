"""Dry-run reads: paging over the merged list, the server's order and
answers, and planned rollback policies a script can name (review of issue 8,
findings 2, 3 and 16).

Each comparison plans writes in a dry run, reads through it, then makes the
same writes for real on the same embedded JD and reads again: the answers
must be the same (nodes compared by their unique names, ids aside).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from jdkit import JobDistributor, NotFoundError
from jdkit._dryrun import _reads
from jdkit.pb import job, label, node, probation, protobuf
from jdkit.server import EmbeddedJD

pytestmark = pytest.mark.asyncio

SPEC = 'type = "offchainreporting2"\nexternalJobID = "11111111-1111-1111-1111-111111111111"\n'


@pytest_asyncio.fixture
async def real() -> AsyncIterator[JobDistributor]:
    async with EmbeddedJD.start() as srv:
        async with JobDistributor.connect(srv.address, timeout=30) as jd:
            yield jd


def _labels(**kv: str) -> list[label.Label]:
    return [label.Label(key=k, value=v) for k, v in kv.items()]


async def _plan(jd: JobDistributor, ids: list[str]) -> None:
    """Changes some of the server's nodes in and out of the filters, adds new ones."""
    for i in (0, 3, 4, 9, 17):  # env flips: in and out of env=a
        env = "b" if i % 2 == 0 else "a"
        await jd.update_node(node.UpdateNodeRequest(id=ids[i], labels=_labels(env=env, tier="x")))
    for i in (1, 4, 12):
        await jd.disable_node(node.DisableNodeRequest(id=ids[i]))
    await jd.update_node(node.UpdateNodeRequest(id=ids[20], name="renamed20"))
    for i in range(4):
        await jd.register_node(
            node.RegisterNodeRequest(
                name=f"new{i}", public_key=f"{900 + i:064x}", labels=_labels(env="ab"[i % 2])
            )
        )


FILTERS = [
    node.ListNodesRequestFilter(),
    node.ListNodesRequestFilter(
        selectors=[label.Selector(key="env", op=label.SelectorOp.EQ, value="a")]
    ),
    node.ListNodesRequestFilter(enabled=node.EnableState.DISABLED),
    node.ListNodesRequestFilter(
        enabled=node.EnableState.ENABLED,
        selectors=[label.Selector(key="tier", op=label.SelectorOp.NOT_EXIST)],
    ),
]


async def _pages(jd: JobDistributor, ids: list[str]) -> list[tuple[int, int, int, list[str], int]]:
    out = []
    filters = [*FILTERS, node.ListNodesRequestFilter(ids=[ids[i] for i in (0, 1, 2, 3, 20, 24)])]
    for f, flt in enumerate(filters):
        for size in (0, 1, 3, 7, 40):
            for page in range(0, 32 // max(size, 1) + 3):
                got = await jd.list_nodes(
                    node.ListNodesRequest(filter=flt, page_size=size, page=page)
                )
                out.append((f, size, page, [n.name for n in got.nodes], got.total_count))
    return out


@pytest.mark.parametrize("window_max", [_reads.WINDOW_MAX, 0])
async def test_list_nodes_pages_match_the_server(
    real: JobDistributor, window_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page of every filter, as the server pages after the same writes
    (window_max 0: the whole-list path the window falls back to)."""
    monkeypatch.setattr(_reads, "WINDOW_MAX", window_max)
    ids = []
    for i in range(25):
        r = await real.register_node(
            node.RegisterNodeRequest(
                name=f"n{i}", public_key=f"{i + 1:064x}", labels=_labels(env="ab"[i % 2])
            )
        )
        assert r.node is not None
        ids.append(r.node.id)
    dry = real.with_dry_run()
    await _plan(dry, ids)
    planned = await _pages(dry, ids)
    await _plan(real, ids)
    assert planned == await _pages(real, ids)


async def test_paging_a_dry_run_is_linear() -> None:
    """iter_nodes over 600 nodes with planned changes costs about what it
    costs without them (was quadratic: ~1 ms per node per page)."""
    async with EmbeddedJD.start() as srv:
        async with JobDistributor.connect(srv.address, timeout=60) as jd:
            for i in range(600):
                await jd.register_node(
                    node.RegisterNodeRequest(
                        name=f"n{i}", public_key=f"{i + 1:064x}", labels=_labels(env="dev")
                    )
                )
            dry = jd.with_dry_run()
            first = (await jd.list_nodes()).nodes[0]
            await dry.update_node(node.UpdateNodeRequest(id=first.id, name="renamed"))
            await dry.register_node(
                node.RegisterNodeRequest(
                    name="new", public_key="ee" * 32, labels=_labels(env="dev")
                )
            )
            t0 = time.perf_counter()
            plain = [n async for n in jd.iter_nodes(selector="env=dev", page_size=20)]
            t1 = time.perf_counter()
            merged = [n async for n in dry.iter_nodes(selector="env=dev", page_size=20)]
            t2 = time.perf_counter()
    assert len(plain) == 600 and len(merged) == 601 and merged[0].name == "renamed"
    assert [n.id for n in merged[1:600]] == [n.id for n in plain[1:]]
    assert t2 - t1 < 5 * (t1 - t0) + 2, (t1 - t0, t2 - t1)


async def test_get_node_by_a_key_planned_away_is_jds_not_found(real: JobDistributor) -> None:
    old, new = "0a" * 32, "0b" * 32
    n = (await real.register_node(node.RegisterNodeRequest(name="n", public_key=old))).node
    assert n is not None
    answers = []
    for jd in (real.with_dry_run(), real):  # dry first: it writes nothing
        await jd.update_node(node.UpdateNodeRequest(id=n.id, public_key=new))
        for req in (
            node.GetNodeRequest(public_key=old),
            node.GetNodeRequest(id=n.id, public_key=old),
        ):
            with pytest.raises(NotFoundError) as info:
                await jd.get_node(req)
            answers.append(info.value.message)
        got = (await jd.get_node(node.GetNodeRequest(public_key=new.upper()))).node
        assert got is not None and got.id == n.id
    assert answers[:2] == answers[2:]
    assert answers[0] == f"no node with public_key {old!r}"


async def test_a_planned_policy_has_the_id_jd_would_give_and_can_be_used(
    real: JobDistributor,
) -> None:
    n = (await real.register_node(node.RegisterNodeRequest(name="n", public_key="cd" * 32))).node
    assert n is not None
    p = (await real.propose_job(job.ProposeJobRequest(node_id=n.id, spec=SPEC))).proposal
    assert p is not None
    for body in ({"a": 1}, {"b": 2}):
        await real.create_rollback_policy(
            probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict(body))
        )
    seen = []
    for jd in (real.with_dry_run(), real):
        made = []
        for body in ({"max": 1}, {"max": 2}):
            pol = (
                await jd.create_rollback_policy(
                    probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict(body))
                )
            ).rollback_policy
            assert pol is not None
            made.append(pol.id)
        got = (
            await jd.update_job(job.UpdateJobRequest(id=p.job_id, rollback_policy_id=int(made[1])))
        ).job
        assert got is not None and got.rollback_policy_id == int(made[1])
        fetched = (
            await jd.get_rollback_policy(probation.GetRollbackPolicyRequest(id=made[0]))
        ).rollback_policy
        assert fetched is not None and fetched.policy is not None
        assert fetched.policy.to_dict() == {"max": 1}
        listed = (await jd.list_rollback_policies()).rollback_policies
        seen.append((made, [x.id for x in listed]))
    # the ids JD gives, above the server's existing "1" and "2", listed in its order
    assert seen[0] == seen[1] == (["3", "4"], ["1", "2", "3", "4"])
