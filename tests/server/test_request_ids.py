"""The embedded JD logs each call with the caller's x-request-id (issue 10, item 7)."""

from __future__ import annotations

import logging

import grpc
import pytest
from grpc import aio

from jdkit import JobDistributor, NotFoundError
from jdkit._server import EmbeddedJD
from jdkit.server import StaticTokenVerifier
from tests.helpers.grpcio import stubs
from tests.helpers.server_fixtures import frame, h2_call

pytestmark = pytest.mark.asyncio

app_pb2 = stubs("v1.app.app_pb2")
app_grpc = stubs("v1.app.app_pb2_grpc")


def call_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jdkit.server"]


async def test_each_call_is_logged_with_its_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jdkit.server")
    async with EmbeddedJD.start() as srv:
        async with JobDistributor.connect(srv.address, timeout=10) as jd:
            await jd.version(metadata={"x-request-id": "req-given-1"})
            with pytest.raises(NotFoundError):
                await jd.get_node(id="nope", metadata={"x-request-id": "req-given-2"})
            await jd.list_nodes()  # the client makes one up
    lines = call_lines(caplog)
    assert any(
        "/api.app.v1.AppService/Version OK" in m and "x-request-id=req-given-1" in m for m in lines
    ), lines
    assert any("GetNode NOT_FOUND" in m and "x-request-id=req-given-2" in m for m in lines), lines
    listed = [m for m in lines if "ListNodes OK" in m]
    assert listed and "x-request-id=" in listed[0]


async def test_a_forged_request_id_cannot_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jdkit.server")
    async with EmbeddedJD.start() as srv:
        sneaky = "id ok\tFAKE" + "x" * 500  # grpcio would not even send this: raw h2
        status, _ = await h2_call(
            srv.port, "/api.app.v1.AppService/Version", frame(b""), headers={"x-request-id": sneaky}
        )
        assert status == "0"
    (line,) = [m for m in call_lines(caplog) if "Version" in m]
    assert "\t" not in line and "\\t" in line and len(line) < 300


async def test_refused_calls_are_logged_with_the_request_id_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jdkit.server")
    async with EmbeddedJD.start(auth=StaticTokenVerifier(["the-token"])) as srv:
        async with aio.insecure_channel(srv.address) as channel:
            stub = app_grpc.AppServiceStub(channel)
            with pytest.raises(aio.AioRpcError) as info:
                await stub.Version(app_pb2.VersionRequest(), metadata=[("x-request-id", "r-403")])
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert any("UNAUTHENTICATED x-request-id=r-403" in m for m in call_lines(caplog))
