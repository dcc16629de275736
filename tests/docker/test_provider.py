"""The Docker provider against a real engine: a full cycle through every
service, ephemeral ports, Postgres really used, reuse, and teardown."""

from __future__ import annotations

import json
import statistics
import sys
import uuid

import anyio
import pytest

from jdkit import JobDistributor, NotFoundError
from jdkit._providers._docker import (
    LABEL_HOST,
    LABEL_PID,
    LABEL_PIDSTART,
    LABEL_ROLE,
    LABEL_RUN,
    DockerProvider,
    release_docker_reused,
)
from jdkit.pb import app, csa, health, job, label, node, probation, protobuf
from tests.helpers.docker_helpers import (
    assert_nothing_left,
    config,
    engine,
    labelled,
    require_docker,
)

pytestmark = [pytest.mark.docker]


@pytest.fixture(autouse=True)
def _engine_required() -> None:
    require_docker()


def _spec(ext_id: str) -> str:
    return f'type = "offchainreporting2"\nschemaVersion = 1\nexternalJobID = "{ext_id}"\n'


async def _every_service(jd: JobDistributor) -> None:
    """One call (or more) to every RPC of every service."""
    assert (await jd.version(app.VersionRequest())).version
    kp = (await jd.get_keypair(csa.GetKeypairRequest())).keypair
    assert kp is not None and len(kp.public_key) == 64
    assert [k.public_key for k in (await jd.list_keypairs()).keypairs] == [kp.public_key]
    assert await jd.check_health() == health.HealthCheckResponseServingStatus.SERVING

    keys = [f"{i:064x}" for i in (1, 2)]
    nodes = []
    for i, key in enumerate(keys):
        resp = await jd.register_node(
            node.RegisterNodeRequest(
                name=f"n{i}", public_key=key, labels=[label.Label(key="env", value="test")]
            )
        )
        assert resp.node is not None and resp.node.is_enabled
        nodes.append(resp.node)
    got = (await jd.get_node(node.GetNodeRequest(id=nodes[0].id))).node
    assert got is not None and got.public_key == keys[0]
    listed = await jd.list_nodes(
        node.ListNodesRequest(
            filter=node.ListNodesRequestFilter(
                selectors=[label.Selector(key="env", op=label.SelectorOp.EQ, value="test")]
            )
        )
    )
    assert sorted(n.id for n in listed.nodes) == sorted(n.id for n in nodes)
    renamed = (await jd.update_node(node.UpdateNodeRequest(id=nodes[1].id, name="renamed"))).node
    assert renamed is not None and renamed.name == "renamed"
    disabled = (await jd.disable_node(node.DisableNodeRequest(id=nodes[1].id))).node
    assert disabled is not None and not disabled.is_enabled
    enabled = (await jd.enable_node(node.EnableNodeRequest(id=nodes[1].id))).node
    assert enabled is not None and enabled.is_enabled
    await jd.list_node_chain_configs(node.ListNodeChainConfigsRequest())

    ext = str(uuid.uuid4())
    proposal = (
        await jd.propose_job(job.ProposeJobRequest(node_id=nodes[0].id, spec=_spec(ext)))
    ).proposal
    assert proposal is not None and proposal.revision == 1
    assert proposal.status == job.ProposalStatus.PROPOSED
    batch = await jd.batch_propose_job(
        job.BatchProposeJobRequest(
            node_ids=[nodes[1].id, "node_missing"], spec=_spec(str(uuid.uuid4()))
        )
    )
    assert set(batch.success_responses) == {nodes[1].id}
    assert set(batch.failed_responses) == {"node_missing"}
    jobs = (
        await jd.list_jobs(
            job.ListJobsRequest(filter=job.ListJobsRequestFilter(node_ids=[nodes[0].id]))
        )
    ).jobs
    assert [j.uuid for j in jobs] == [ext]
    the_job = (await jd.get_job(job.GetJobRequest(id=proposal.job_id))).job
    assert the_job is not None and the_job.proposal_ids == [proposal.id]
    assert (await jd.get_proposal(job.GetProposalRequest(id=proposal.id))).proposal is not None
    props = (
        await jd.list_proposals(
            job.ListProposalsRequest(
                filter=job.ListProposalsRequestFilter(job_ids=[proposal.job_id])
            )
        )
    ).proposals
    assert [p.id for p in props] == [proposal.id]

    policy = (
        await jd.create_rollback_policy(
            probation.CreateRollbackPolicyRequest(
                policy=protobuf.Struct.from_dict({"max_failures": 3})
            )
        )
    ).rollback_policy
    assert policy is not None
    fetched = (
        await jd.get_rollback_policy(probation.GetRollbackPolicyRequest(id=policy.id))
    ).rollback_policy
    assert fetched is not None and fetched.policy is not None
    assert fetched.policy.to_dict() == {"max_failures": 3}
    assert [
        p.id
        for p in (
            await jd.list_rollback_policies(probation.ListRollbackPoliciesRequest())
        ).rollback_policies
    ] == [policy.id]
    await jd.update_rollback_policy(
        probation.UpdateRollbackPolicyRequest(
            id=policy.id, policy=protobuf.Struct.from_dict({"max_failures": 5})
        )
    )
    updated = (
        await jd.update_job(
            job.UpdateJobRequest(
                id=proposal.job_id,
                labels=[label.Label(key="team", value="a")],
                rollback_policy_id=int(policy.id),
            )
        )
    ).job
    assert updated is not None and updated.rollback_policy_id == int(policy.id)

    revoked = (await jd.revoke_job(job.RevokeJobRequest(id=proposal.job_id))).proposal
    assert revoked is not None and revoked.status == job.ProposalStatus.REVOKED
    deleted = (await jd.delete_job(job.DeleteJobRequest(id=proposal.job_id))).job
    assert deleted is not None and deleted.deleted_at is not None
    assert (
        await jd.list_jobs(
            job.ListJobsRequest(filter=job.ListJobsRequestFilter(node_ids=[nodes[0].id]))
        )
    ).jobs == []
    with pytest.raises(NotFoundError):
        await jd.get_node(node.GetNodeRequest(id="node_missing"))


async def _psql(container_id: str, user: str, db: str, sql: str) -> str:
    """Run `sql` in the Postgres container (over its socket) and return stdout."""
    async with engine() as docker:
        exe = await docker.containers.container(container_id).exec(
            ["psql", "-U", user, "-d", db, "-tAc", sql]
        )
        async with exe.start(detach=False) as stream:
            out = []
            while (msg := await stream.read_out()) is not None:
                if msg.stream == 1:
                    out.append(msg.data.decode())
        assert (await exe.inspect())["ExitCode"] == 0, out
        return "".join(out).strip()


@pytest.mark.asyncio
async def test_full_cycle_every_service_then_nothing_left() -> None:
    cfg = config()
    provider = DockerProvider(cfg)
    async with provider as jd:
        run_id = provider.run_id
        assert run_id is not None
        host, port = provider.address.split(":")
        assert host == "127.0.0.1" and int(port) != cfg.grpc_port  # ephemeral, not fixed
        await _every_service(jd)

        # Both containers and the network carry the run's labels.
        async with engine() as docker:
            containers, networks = await labelled(docker, f"{LABEL_RUN}={run_id}")
        roles = {c["Labels"][LABEL_ROLE]: c for c in containers}
        assert set(roles) == {"jd", "postgres"} and len(networks) == 1
        for obj in [*containers, *networks]:
            labels = obj["Labels"]
            assert labels[LABEL_PID] and labels[LABEL_HOST] and "jdkit.created" in labels
            if sys.platform == "linux":
                assert labels[LABEL_PIDSTART]
        # Only loopback, ephemeral host ports are published.
        published = [b for b in roles["jd"]["Ports"] if b.get("PublicPort")]
        assert {b["PrivatePort"] for b in published} == {
            cfg.grpc_port,
            cfg.node_rpc_port,
            cfg.healthz_port,
        }
        assert all(b["IP"] == "127.0.0.1" for b in published)
        assert not [b for b in roles["postgres"]["Ports"] if b.get("PublicPort")]

        # JD keeps its state in that Postgres (not in a fallback SQLite).
        count = await _psql(
            roles["postgres"]["Id"],
            cfg.postgres_user,
            cfg.postgres_db,
            "select count(*) from jd_nodes",
        )
        assert count == "2"

        # Secrets are in the containers' environment, never in labels or repr.
        blob = json.dumps([containers, networks]) + repr(cfg) + repr(provider)
        assert cfg.postgres_password not in blob and cfg.csa_secret not in blob
    await assert_nothing_left(run_id)
    assert provider.timings["ready"] > 0


@pytest.mark.asyncio
async def test_two_runs_side_by_side_do_not_collide() -> None:
    a, b = DockerProvider(config()), DockerProvider(config())
    async with a as jd_a, b as jd_b:
        assert a.address != b.address and a.run_id != b.run_id
        await jd_a.register_node(node.RegisterNodeRequest(name="a", public_key=f"{1:064x}"))
        assert len((await jd_a.list_nodes()).nodes) == 1
        assert (await jd_b.list_nodes()).nodes == []  # separate databases
    await assert_nothing_left(a.run_id)
    await assert_nothing_left(b.run_id)


@pytest.mark.asyncio
async def test_reuse_keeps_one_run_for_the_session() -> None:
    cfg = config(reuse=True)
    try:
        first = DockerProvider(cfg)
        async with first as jd:
            await jd.register_node(node.RegisterNodeRequest(name="kept", public_key=f"{7:064x}"))
        second = DockerProvider(config(reuse=True))  # equal but for its random secrets
        async with second as jd:
            assert second.reused and second.run_id == first.run_id
            assert [n.name for n in (await jd.list_nodes()).nodes] == ["kept"]
        async with engine() as docker:
            containers, _ = await labelled(docker, f"{LABEL_RUN}={first.run_id}")
        assert len(containers) == 2  # still there after both providers closed
    finally:
        await release_docker_reused()
    await assert_nothing_left(first.run_id)


@pytest.mark.asyncio
async def test_time_to_ready(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a benchmark gate: records how long start-up takes (warm images)."""
    times = []
    for _ in range(3):
        provider = DockerProvider(config())
        async with provider:
            times.append(provider.timings["ready"])
        await assert_nothing_left(provider.run_id)
    median = statistics.median(times)
    with capsys.disabled():
        print(
            f"\nDocker provider time to ready: median {median:.2f}s of "
            f"{', '.join(f'{t:.2f}' for t in times)}"
        )
    assert median < 60


@pytest.mark.asyncio
async def test_client_stays_usable_until_exit_and_health_watch_works() -> None:
    async with DockerProvider(config()) as jd:
        with anyio.fail_after(10):
            async for status in jd.watch_health():
                assert status == health.HealthCheckResponseServingStatus.SERVING
                break
