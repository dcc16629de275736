"""A unary request leaves in one socket write when it can, and still works when it cannot."""

from __future__ import annotations

from typing import Any

import pytest

from jdkit import JobDistributor, RPCError
from jdkit._server import EmbeddedJD
from jdkit.pb import node

pytestmark = pytest.mark.asyncio


def _count_writes(jd: JobDistributor) -> list[int]:
    """Wrap the connection's real asyncio transport to record each write's size."""
    conn: Any = jd._channel._protocol.processor.connection  # type: ignore[union-attr]
    real: Any = conn._jdkit_writer._transport
    sizes: list[int] = []
    write = real.write

    def counting(data: bytes) -> None:
        sizes.append(len(data))
        write(data)

    real.write = counting
    return sizes


async def test_headers_and_message_go_out_in_one_write() -> None:
    async with EmbeddedJD.start() as srv, JobDistributor.connect(srv.address) as jd:
        reg = await jd.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))
        assert reg.node is not None
        sizes = _count_writes(jd)
        for _ in range(3):
            got = await jd.get_node(id=reg.node.id)
            assert got.node is not None and got.node.name == "n"
        assert len(sizes) == 3  # one per call: HEADERS and DATA together


async def test_a_request_over_the_flow_control_window_still_goes_out() -> None:
    async with EmbeddedJD.start() as srv, JobDistributor.connect(srv.address) as jd:
        await jd.list_nodes()
        sizes = _count_writes(jd)
        h2 = jd._channel._protocol.processor.connection._connection  # type: ignore[union-attr]
        window = min(h2.remote_settings.initial_window_size, h2.outbound_flow_control_window)
        name = "n" * (window + 10)  # over the stream's flow-control credit: not held
        with pytest.raises(RPCError):  # the server's answer (a size limit), not a hang
            await jd.register_node(node.RegisterNodeRequest(name=name, public_key="cd" * 32))
        assert len(sizes) >= 2
