"""No single request stalls the event loop (issue 10, item 4): a bounded test.

While the embedded JD serves one expensive request (a ~4 MiB spec, a large
label set, a large list reply, selector matching over many rows), every step
the event loop runs (each callback and each task step) is measured in CPU
time of the loop's thread, which other processes' load does not inflate. The
bound is 100 ms per step, the budget within which a health check must be
answered; the work that would exceed it runs in worker threads.

The control proves the measurement sees a stall: with off-loading disabled,
decoding the same 4 MiB request is one long step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc import aio

from jdkit._server import EmbeddedJD
from jdkit._server._grpc import _messages
from jdkit._server._limits import MiB
from jdkit.pb import job, label, node
from tests.helpers.server_fixtures import pubkey, spec

pytestmark = pytest.mark.asyncio

BUDGET = 0.100  # seconds of loop-thread CPU per step


class StepMeter:
    """The longest loop step, in CPU seconds of the loop's thread."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.longest = 0.0
        self.where = ""

    def wrap(self, run: Callable[[Any], None]) -> Callable[[Any], None]:
        meter = self

        def _run(handle: Any) -> None:
            if threading.get_ident() != meter.thread:
                return run(handle)
            t0 = time.thread_time()
            try:
                return run(handle)
            finally:
                spent = time.thread_time() - t0
                if spent > meter.longest:
                    meter.longest, meter.where = spent, repr(handle)[:160]

        return _run


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[StepMeter]:
    m = StepMeter()
    monkeypatch.setattr(asyncio.events.Handle, "_run", m.wrap(asyncio.events.Handle._run))
    yield m


def _identity(b: bytes) -> bytes:
    return b


async def call(channel: aio.Channel, path: str, body: bytes) -> grpc.StatusCode:
    try:
        await channel.unary_unary(
            path, request_serializer=_identity, response_deserializer=_identity
        )(body, timeout=120)
    except aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def measured(meter: StepMeter, channel: aio.Channel, path: str, body: bytes) -> float:
    await asyncio.sleep(0)
    meter.longest = 0.0
    code = await call(channel, path, body)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), code
    return meter.longest


UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


async def test_a_4_mib_request_is_decoded_off_the_loop(meter: StepMeter) -> None:
    async with EmbeddedJD.start() as srv:
        n = await srv.state.register_node("n", pubkey(1), [])
        labels = [label.Label(key=f"k{i}", value="v") for i in range(200)]
        body = bytes(
            job.ProposeJobRequest(
                node_id=n.id, spec=spec(extra="# " + "x" * int(3.9 * MiB) + "\n"), labels=labels
            )
        )
        async with aio.insecure_channel(srv.address, options=UNLIMITED) as ch:
            longest = await measured(meter, ch, "/api.job.v1.JobService/ProposeJob", body)
    print(f"\nProposeJob {len(body) / MiB:.1f} MiB: longest loop step {longest * 1000:.1f} ms")
    assert longest < BUDGET, meter.where


async def test_control_decoding_on_the_loop_is_one_long_step(
    meter: StepMeter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_messages, "OFFLOAD_SIZE", 2**40)
    async with EmbeddedJD.start() as srv:
        labels = [label.Label(key=f"key-{i}", value=f"value-{i}") for i in range(150_000)]
        body = bytes(node.RegisterNodeRequest(name="n", public_key=pubkey(2), labels=labels))
        assert len(body) < 4 * MiB
        async with aio.insecure_channel(srv.address, options=UNLIMITED) as ch:
            await call(ch, "/api.node.v1.NodeService/RegisterNode", body)
    assert meter.longest > BUDGET  # the meter does see a blocked loop


async def test_a_large_list_reply_is_encoded_off_the_loop(meter: StepMeter) -> None:
    async with EmbeddedJD.start() as srv:
        for i in range(2000):
            labels = [label.Label(key=f"key-{j}", value=f"value-{i}-{j}") for j in range(5)]
            await srv.state.register_node(f"node-{i:05d}", pubkey(10 + i), labels)
        async with aio.insecure_channel(srv.address, options=UNLIMITED) as ch:
            body = bytes(node.ListNodesRequest())
            longest = await measured(meter, ch, "/api.node.v1.NodeService/ListNodes", body)
    print(f"\nListNodes of 2,000 nodes: longest loop step {longest * 1000:.1f} ms", meter.where)
    assert longest < BUDGET, meter.where
