"""AppService through Google's grpcio client.

Unary round trips are not stalled by Nagle.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.grpcio_peer import Peer, app_pb2


@pytest.mark.asyncio
async def test_unary_round_trip_is_not_stalled_by_nagle(peer: Peer) -> None:
    # not a benchmark: the stall is 40x the normal round trip, so a generous bound
    # separates the two cases on any machine
    await peer.app.Version(app_pb2.VersionRequest())
    times = []
    for _ in range(15):
        t0 = asyncio.get_running_loop().time()
        await peer.app.Version(app_pb2.VersionRequest())
        times.append(asyncio.get_running_loop().time() - t0)
    times.sort()
    assert times[len(times) // 2] < 0.020, f"median round trip {times[len(times) // 2]:.3f}s"
