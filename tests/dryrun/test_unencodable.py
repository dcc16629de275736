"""A request the client cannot encode (a lone surrogate in a string, a value
of the wrong type) is refused in a dry run exactly as the client refuses it:
the same `InvalidArgumentError`, before anything is planned, so the overlay
and the journal stay as they were and later reads keep working."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import jdkit
from jdkit import EmbeddedProvider, InvalidArgumentError
from jdkit.pb import job, label, node, probation, protobuf

pytestmark = pytest.mark.asyncio

BAD = "\ud800"
EXT = "11111111-1111-1111-1111-111111111111"


def _spec(name: str = "ok") -> str:
    return f'type = "offchainreporting2"\nexternalJobID = "{EXT}"\nname = "{name}"\n'


Case = Callable[[jdkit.JobDistributor], Awaitable[Any]]


def _cases(node_id: str, job_id: str, policy_id: str) -> dict[str, Case]:
    bad_label = [label.Label(key="k", value=BAD)]
    return {
        "register name": lambda j: j.register_node(
            node.RegisterNodeRequest(name=BAD, public_key="cd" * 32)
        ),
        "register label": lambda j: j.register_node(
            node.RegisterNodeRequest(name="x", public_key="cd" * 32, labels=bad_label)
        ),
        "register name of the wrong type": lambda j: j.register_node(
            node.RegisterNodeRequest(name=123, public_key="cd" * 32)  # type: ignore[arg-type]
        ),
        "update name": lambda j: j.update_node(
            node.UpdateNodeRequest(id=node_id, name=BAD, public_key="ab" * 32)
        ),
        "enable id": lambda j: j.enable_node(node.EnableNodeRequest(id=BAD)),
        "disable id": lambda j: j.disable_node(node.DisableNodeRequest(id=BAD)),
        "propose spec": lambda j: j.propose_job(
            job.ProposeJobRequest(node_id=node_id, spec=_spec(BAD))
        ),
        "propose label": lambda j: j.propose_job(
            job.ProposeJobRequest(node_id=node_id, spec=_spec(), labels=bad_label)
        ),
        "batch propose spec": lambda j: j.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=[node_id], spec=_spec(BAD))
        ),
        "batch propose node id": lambda j: j.batch_propose_job(
            job.BatchProposeJobRequest(node_ids=[BAD], spec=_spec())
        ),
        "update job labels": lambda j: j.update_job(
            job.UpdateJobRequest(id=job_id, labels=bad_label)
        ),
        "revoke id": lambda j: j.revoke_job(job.RevokeJobRequest(id=BAD)),
        "delete id": lambda j: j.delete_job(job.DeleteJobRequest(id=BAD)),
        "create policy": lambda j: j.create_rollback_policy(
            probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict({"name": BAD}))
        ),
        "update policy": lambda j: j.update_rollback_policy(
            probation.UpdateRollbackPolicyRequest(
                id=policy_id, policy=protobuf.Struct.from_dict({"name": BAD})
            )
        ),
        "get node id": lambda j: j.get_node(node.GetNodeRequest(id=BAD)),
        "list nodes selector": lambda j: j.list_nodes(selector=f"env={BAD}"),
    }


async def _refusal(f: Case, client: jdkit.JobDistributor) -> tuple[type, str, str | None]:
    with pytest.raises(InvalidArgumentError) as info:
        await f(client)
    return type(info.value), str(info.value), info.value.method


async def test_a_dry_run_refuses_what_the_client_cannot_encode_as_the_client_does() -> None:
    async with EmbeddedProvider() as jd:
        n = (await jd.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))).node
        assert n is not None
        p = (await jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec()))).proposal
        pol = (
            await jd.create_rollback_policy(
                probation.CreateRollbackPolicyRequest(
                    policy=protobuf.Struct.from_dict({"name": "p"})
                )
            )
        ).rollback_policy
        assert n is not None and p is not None and pol is not None
        dry = jd.with_dry_run()
        assert dry.journal is not None
        for name, f in _cases(n.id, p.job_id, pol.id).items():
            real = await _refusal(f, jd)
            assert "request cannot be encoded" in real[1], name
            assert await _refusal(f, dry) == real, name
        # nothing was planned: the overlay and the journal are untouched
        overlay = dry.journal._overlay
        assert len(dry.journal) == 0
        assert not (overlay.nodes or overlay.jobs or overlay.proposals or overlay.policies)
        assert not overlay.created
        # and later reads and writes in the same dry run still work
        assert [x.name for x in (await dry.list_nodes()).nodes] == ["n"]
        await dry.register_node(node.RegisterNodeRequest(name="m", public_key="cd" * 32))
        assert sorted(x.name for x in (await dry.list_nodes()).nodes) == ["m", "n"]
        assert dry.journal.methods() == ["RegisterNode"]


async def test_a_dry_run_refuses_a_request_over_max_send_message_size_as_the_client_does() -> None:
    # the plan must not promise a write the client would refuse to send
    from jdkit import ResourceExhaustedError

    async with EmbeddedProvider(max_send_message_size=2000) as jd:
        n = (await jd.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))).node
        assert n is not None
        big = job.ProposeJobRequest(node_id=n.id, spec=_spec("x" * 5000))
        with pytest.raises(ResourceExhaustedError) as real:
            await jd.propose_job(big)
        dry = jd.with_dry_run()
        assert dry.journal is not None
        with pytest.raises(ResourceExhaustedError) as planned:
            await dry.propose_job(big)
        assert str(planned.value) == str(real.value)
        assert "max_send_message_size" in str(planned.value)
        assert len(dry.journal) == 0
        # a request within the limit is still planned
        await dry.propose_job(job.ProposeJobRequest(node_id=n.id, spec=_spec()))
        assert dry.journal.methods() == ["ProposeJob"]
