"""The jdkit client against Google's grpcio server: wire format, errors, retries, deadlines."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc import aio

from jdkit import (
    DeadlineExceededError,
    FailedPreconditionError,
    NotFoundError,
    ProtocolError,
    UnavailableError,
)
from jdkit._client import JobDistributor
from jdkit._retry import RetryPolicy
from jdkit.pb import health, job, label, node
from tests.helpers.grpcio import stubs

pytestmark = pytest.mark.asyncio

node_pb2: Any = stubs("v1.node.node_pb2")
node_grpc: Any = stubs("v1.node.node_pb2_grpc")
job_pb2: Any = stubs("v1.job.job_pb2")
job_grpc: Any = stubs("v1.job.job_pb2_grpc")
csa_pb2: Any = stubs("v1.csa.csa_pb2")
csa_grpc: Any = stubs("v1.csa.csa_pb2_grpc")
health_pb2: Any = stubs("jdhealth.health_pb2")
health_grpc: Any = stubs("jdhealth.health_pb2_grpc")
label_pb2: Any = stubs("v1.shared.ptypes.label_pb2")


class Nodes(node_grpc.NodeServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen_metadata: list[dict[str, str]] = []
        self.list_failures = 0
        self.register_calls = 0

    async def RegisterNode(self, request, context):
        self.register_calls += 1
        self.seen_metadata.append(dict(context.invocation_metadata()))
        n = node_pb2.Node(
            id="node_1",
            name=request.name,
            public_key=request.public_key,
            is_enabled=True,
            labels=request.labels,
            nop_friendly_name="nop",
            version="2.30.0",
        )
        n.created_at.FromDatetime(dt.datetime(2026, 1, 2, 3, 4, 5))
        n.p2p_key_bundles.add(peer_id="p2p_x", public_key="ab")
        return node_pb2.RegisterNodeResponse(node=n)

    async def GetNode(self, request, context):
        await context.abort(grpc.StatusCode.NOT_FOUND, f"node {request.id} not found")

    async def ListNodes(self, request, context):
        if self.list_failures:
            self.list_failures -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return node_pb2.ListNodesResponse(
            nodes=[node_pb2.Node(id=i) for i in request.filter.ids],
            total_count=len(request.filter.ids),
        )

    async def DisableNode(self, request, context):
        await context.abort(grpc.StatusCode.UNAVAILABLE, "overloaded")

    async def EnableNode(self, request, context):
        await asyncio.sleep(5)
        return node_pb2.EnableNodeResponse()


class Jobs(job_grpc.JobServiceServicer):  # type: ignore[misc]
    async def ProposeJob(self, request, context):
        return job_pb2.ProposeJobResponse()  # no proposal: a broken server

    async def RevokeJob(self, request, context):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "proposal is APPROVED")


class Keys(csa_grpc.CSAServiceServicer):  # type: ignore[misc]
    async def ListKeypairs(self, request, context):
        return csa_pb2.ListKeypairsResponse()

    async def GetKeypair(self, request, context):
        await context.abort(grpc.StatusCode.NOT_FOUND, "no keypair yet")


class Health(health_grpc.HealthServicer):  # type: ignore[misc]
    async def Check(self, request, context):
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest_asyncio.fixture
async def peer():
    server = aio.server()
    nodes = Nodes()
    node_grpc.add_NodeServiceServicer_to_server(nodes, server)
    job_grpc.add_JobServiceServicer_to_server(Jobs(), server)
    csa_grpc.add_CSAServiceServicer_to_server(Keys(), server)
    health_grpc.add_HealthServicer_to_server(Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", nodes
    finally:
        await server.stop(None)


async def test_messages_cross_the_wire_intact(peer) -> None:
    addr, nodes = peer
    async with JobDistributor.connect(addr, metadata={"x-run": "t1"}) as jd:
        got = await jd.register_node(
            node.RegisterNodeRequest(
                name="n1",
                public_key="aa" * 32,
                labels=[label.Label(key="env", value="dev"), label.Label(key="bare")],
            )
        )
    n = got.node
    assert n is not None
    assert (n.id, n.name, n.public_key, n.is_enabled) == ("node_1", "n1", "aa" * 32, True)
    assert [(lb.key, lb.value) for lb in n.labels] == [("env", "dev"), ("bare", None)]
    assert n.created_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert n.updated_at is None  # unset timestamps stay unset
    assert (n.nop_friendly_name, n.version) == ("nop", "2.30.0")
    assert n.p2p_key_bundles[0].peer_id == "p2p_x"
    assert nodes.seen_metadata[0]["x-run"] == "t1"


async def test_status_codes_become_typed_errors(peer) -> None:
    addr, _ = peer
    async with JobDistributor.connect(addr) as jd:
        with pytest.raises(NotFoundError) as info:
            await jd.get_node(node.GetNodeRequest(id="node_x"))
        assert info.value.method == "/api.node.v1.NodeService/GetNode"
        assert "node node_x not found" in str(info.value)
        with pytest.raises(FailedPreconditionError):
            await jd.revoke_job(job.RevokeJobRequest(id="job_1"))


async def test_proposal_less_answer_is_a_protocol_error(peer) -> None:
    addr, _ = peer
    async with JobDistributor.connect(addr) as jd:
        with pytest.raises(ProtocolError, match="no proposal"):
            await jd.propose_job(job.ProposeJobRequest(node_id="n", spec="x"))


async def test_csa_public_key_missing_is_not_found(peer) -> None:
    addr, _ = peer
    async with JobDistributor.connect(addr) as jd:
        with pytest.raises(NotFoundError, match="no CSA keypair"):
            await jd.get_csa_public_key()
        assert await jd.check_health() == health.HealthCheckResponseServingStatus.SERVING


async def test_reads_retry_on_unavailable_writes_do_not(peer) -> None:
    addr, nodes = peer
    nodes.list_failures = 2
    async with JobDistributor.connect(addr) as jd:
        got = await jd.list_nodes(
            node.ListNodesRequest(filter=node.ListNodesRequestFilter(ids=["a", "b"]))
        )
        assert [n.id for n in got.nodes] == ["a", "b"] and nodes.list_failures == 0
        nodes.list_failures = 2
        with pytest.raises(UnavailableError):
            await jd.list_nodes(retry=RetryPolicy.disabled())
        with pytest.raises(UnavailableError) as info:
            await jd.disable_node(node.DisableNodeRequest(id="x"))
        assert info.value.reached_server is None  # the server answered: never replayed


async def test_deadline_is_enforced(peer) -> None:
    addr, _ = peer
    async with JobDistributor.connect(addr) as jd:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(DeadlineExceededError):
            await jd.enable_node(node.EnableNodeRequest(id="x"), timeout=0.3)
        assert loop.time() - t0 < 2.0


async def test_dropped_connection_leaves_no_stray_cancel_on_the_task(peer) -> None:
    """grpclib cancels the task to wake it, then raises its own error: the
    caller's later timeouts must still time out, not escape as CancelledError."""
    import anyio

    from tests.helpers.faultproxy import FaultProxy

    addr, _ = peer
    async with FaultProxy(int(addr.rsplit(":", 1)[1])) as proxy:
        async with JobDistributor.connect(f"127.0.0.1:{proxy.port}", timeout=10) as jd:
            call = asyncio.ensure_future(jd.enable_node(node.EnableNodeRequest(id="x")))
            await asyncio.sleep(0.3)
            proxy.drop_all()
            with pytest.raises(UnavailableError):
                await call

            async def later_timeout() -> None:
                with pytest.raises(UnavailableError):
                    await jd.enable_node(
                        node.EnableNodeRequest(id="x"), retry=RetryPolicy.disabled()
                    )
                with pytest.raises(TimeoutError):
                    with anyio.fail_after(0.1):
                        await asyncio.sleep(1)
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await asyncio.sleep(1)

            task = asyncio.ensure_future(later_timeout())
            await asyncio.sleep(0.3)
            proxy.drop_all()
            await task
            assert task.cancelling() == 0


async def test_health_falls_back_to_a_keypair_probe_without_a_health_service() -> None:
    server = aio.server()
    csa_grpc.add_CSAServiceServicer_to_server(Keys(), server)  # no Health service here
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with JobDistributor.connect(f"127.0.0.1:{port}") as jd:
            assert await jd.check_health() == health.HealthCheckResponseServingStatus.SERVING
            await jd.wait_ready(timeout=5)
    finally:
        await server.stop(None)
