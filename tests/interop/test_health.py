"""grpc.health.v1 through Google's grpcio client: Check per service, Watch across shutdown."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio

from tests.helpers.grpcio_peer import Peer, health_pb2, status_of


@pytest.mark.asyncio
async def test_health_check(peer: Peer) -> None:
    Req = health_pb2.HealthCheckRequest
    SERVING = health_pb2.HealthCheckResponse.SERVING
    assert (await peer.health.Check(Req())).status == SERVING
    for svc in ("api.node.v1.NodeService", "api.job.v1.JobService", "api.csa.v1.CSAService"):
        assert (await peer.health.Check(Req(service=svc))).status == SERVING
    code, _ = await status_of(peer.health.Check(Req(service="no.such.Service")))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.asyncio
async def test_health_watch_follows_shutdown(peer: Peer) -> None:
    R = health_pb2.HealthCheckResponse
    call = peer.health.Watch(health_pb2.HealthCheckRequest())
    first = await asyncio.wait_for(call.read(), 5)
    assert first.status == R.SERVING
    unknown = peer.health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert (await asyncio.wait_for(unknown.read(), 5)).status == R.SERVICE_UNKNOWN

    stopping = asyncio.create_task(peer.srv.stop())
    second = await asyncio.wait_for(call.read(), 5)
    assert second.status == R.NOT_SERVING
    assert await asyncio.wait_for(call.read(), 5) is aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 10)
