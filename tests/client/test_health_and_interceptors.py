"""Health checks, watch across restarts, and user interceptors on unary and streaming calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from jdkit import Call, DeadlineExceededError, Interceptor, JobDistributor, ServingStatus
from jdkit._interceptors import Message, StreamNext, UnaryNext
from jdkit._server import EmbeddedJD
from jdkit.pb import node

pytestmark = pytest.mark.asyncio


class Recorder(Interceptor):
    def __init__(self) -> None:
        self.unary_calls: list[str] = []
        self.stream_calls: list[str] = []
        self.stream_messages = 0

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        call.metadata["x-trace"] = "abc"
        self.unary_calls.append(call.method.name)
        return await proceed(call)

    async def stream(self, call: Call, proceed: StreamNext) -> AsyncIterator[Message]:
        self.stream_calls.append(call.method.name)
        async for message in proceed(call):
            self.stream_messages += 1
            yield message


async def test_user_interceptor_sees_unary_and_streaming_calls() -> None:
    rec = Recorder()
    async with (
        EmbeddedJD.start() as srv,
        JobDistributor.connect(srv.address, interceptors=[rec]) as jd,
    ):
        await jd.list_nodes()
        await jd.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))
        watch = jd.watch_health()
        assert await anext(watch) == ServingStatus.SERVING
        assert isinstance(watch, AsyncGenerator)  # typed as an iterator; closable
        await watch.aclose()
    assert rec.unary_calls == ["ListNodes", "RegisterNode"]
    assert rec.stream_calls == ["Watch"] and rec.stream_messages == 1


async def test_watch_health_survives_a_restart() -> None:
    srv = await EmbeddedJD.start()
    port = srv.port
    seen: list[ServingStatus] = []
    changed = asyncio.Condition()
    async with JobDistributor.connect(srv.address) as jd:

        async def watch() -> None:
            async for status in jd.watch_health():
                async with changed:
                    seen.append(status)
                    changed.notify_all()
                if len(seen) == 3:
                    return

        task = asyncio.create_task(watch())
        async with changed:
            await changed.wait_for(lambda: len(seen) >= 1)
        await srv.stop(grace=0.1)
        async with changed:
            await changed.wait_for(lambda: len(seen) >= 2)
        srv = await EmbeddedJD.start(port=port)
        await asyncio.wait_for(task, 10)
    await srv.stop()
    assert seen == [ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]


async def test_wait_ready_waits_for_a_server_that_comes_up_late() -> None:
    srv = await EmbeddedJD.start()
    port = srv.port
    await srv.stop()
    async with JobDistributor.connect(f"127.0.0.1:{port}") as jd:

        async def late_start() -> EmbeddedJD:
            await asyncio.sleep(0.5)
            return await EmbeddedJD.start(port=port)

        starter = asyncio.create_task(late_start())
        t0 = time.monotonic()
        await jd.wait_ready(timeout=10)
        assert time.monotonic() - t0 >= 0.4
        srv = await starter
    await srv.stop()


async def test_wait_ready_gives_up_with_a_deadline_error() -> None:
    srv = await EmbeddedJD.start()
    port = srv.port
    await srv.stop()
    async with JobDistributor.connect(f"127.0.0.1:{port}") as jd:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"not ready after 0\.5s"):
            await jd.wait_ready(timeout=0.5)
        assert time.monotonic() - t0 < 1.5
