"""The interop fixture: an embedded JD and an official grpcio client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from grpc import aio

from jdkit._server import EmbeddedJD
from tests.helpers.grpcio_peer import (
    Peer,
    app_grpc,
    csa_grpc,
    health_grpc,
    job_grpc,
    node_grpc,
    probation_grpc,
)


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[Peer]:
    async with EmbeddedJD.start() as srv:
        async with aio.insecure_channel(srv.address) as channel:
            yield Peer(
                srv=srv,
                channel=channel,
                nodes=node_grpc.NodeServiceStub(channel),
                jobs=job_grpc.JobServiceStub(channel),
                csa=csa_grpc.CSAServiceStub(channel),
                app=app_grpc.AppServiceStub(channel),
                policies=probation_grpc.RollbackPolicyServiceStub(channel),
                health=health_grpc.HealthStub(channel),
            )
