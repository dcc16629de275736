"""A deployment test suite against a real JD in Docker (JD + Postgres containers).

The `jd_docker` fixture (jdkit's pytest plugin) starts a JD and its Postgres on
a private Docker network once per session, hands each test a client, and
removes the containers at the end, failed tests or not. It is opt-in, since it
needs an engine and takes a while:

    pytest examples/docker_suite --jd-docker      # or mark tests @pytest.mark.jd_docker

Without a Docker engine these tests skip and say why (unless CI is set: then
they fail, so a CI run cannot pass by skipping them). The JD image is
$CTF_JD_IMAGE when set, else jdkit's own image built from this checkout.

The JD is shared by the session's tests, so each test works on its own nodes
(its own label value) rather than assuming an empty JD.
"""

from __future__ import annotations

import os
import uuid

import pytest

import jdkit
from jdkit import selectors
from jdkit.pb import job, label, node

pytestmark = [pytest.mark.jd_docker, pytest.mark.asyncio]

SPEC = """\
type = "offchainreporting2"
schemaVersion = 1
name = "{name}"
externalJobID = "{external_id}"
"""


async def register_fleet(jd: jdkit.JobDistributor, run: str, n: int) -> list[node.Node]:
    fleet = []
    for i in range(n):
        resp = await jd.register_node(
            node.RegisterNodeRequest(
                name=f"{run}-{i}",
                public_key=os.urandom(32).hex(),
                labels=[label.Label(key="run", value=run), label.Label(key="tier", value="t1")],
            )
        )
        assert resp.node is not None
        fleet.append(resp.node)
    return fleet


async def test_jd_is_healthy(jd_docker: jdkit.JobDistributor) -> None:
    assert await jd_docker.check_health() == jdkit.ServingStatus.SERVING
    assert (await jd_docker.version()).version
    assert len(await jd_docker.get_csa_public_key()) == 64


async def test_roll_out_a_job_to_a_fleet(jd_docker: jdkit.JobDistributor) -> None:
    run = uuid.uuid4().hex[:10]
    fleet = await register_fleet(jd_docker, run, 3)
    mine = node.ListNodesRequestFilter(selectors=selectors.parse(f"run={run}, tier in (t1)"))
    listed = await jd_docker.list_nodes(node.ListNodesRequest(filter=mine))
    assert {n.id for n in listed.nodes} == {n.id for n in fleet}

    spec = SPEC.format(name=f"feed {run}", external_id=uuid.uuid4())
    batch = await jd_docker.batch_propose_job(
        job.BatchProposeJobRequest(node_ids=[n.id for n in fleet], spec=spec)
    )
    assert set(batch.success_responses) == {n.id for n in fleet}
    assert not batch.failed_responses

    jobs = await jd_docker.list_jobs(
        job.ListJobsRequest(filter=job.ListJobsRequestFilter(node_ids=[n.id for n in fleet]))
    )
    assert len(jobs.jobs) == 3 and all(len(j.proposal_ids) == 1 for j in jobs.jobs)


async def test_revise_and_revoke(jd_docker: jdkit.JobDistributor) -> None:
    (target,) = await register_fleet(jd_docker, uuid.uuid4().hex[:10], 1)
    spec = SPEC.format(name="revisable", external_id=uuid.uuid4())
    first = await jd_docker.propose_job(job.ProposeJobRequest(node_id=target.id, spec=spec))
    second = await jd_docker.propose_job(job.ProposeJobRequest(node_id=target.id, spec=spec))
    assert first.proposal is not None and second.proposal is not None
    assert (first.proposal.revision, second.proposal.revision) == (1, 2)
    assert first.proposal.job_id == second.proposal.job_id

    revoked = await jd_docker.revoke_job(job.RevokeJobRequest(id=second.proposal.job_id))
    assert revoked.proposal is not None and revoked.proposal.id == second.proposal.id
    assert revoked.proposal.status == job.ProposalStatus.REVOKED


async def test_mistakes_come_back_typed(jd_docker: jdkit.JobDistributor) -> None:
    with pytest.raises(jdkit.NotFoundError):
        await jd_docker.get_node(node.GetNodeRequest(id="node_does_not_exist"))
    with pytest.raises(jdkit.InvalidArgumentError):
        await jd_docker.propose_job(job.ProposeJobRequest(node_id="x", spec="not = [toml"))
