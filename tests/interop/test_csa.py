"""CSAService through Google's grpcio client: the keypair JD signs with.

The same test reads the version AppService reports.
"""

from __future__ import annotations

import pytest

import jdkit
from tests.helpers.grpcio_peer import Peer, app_pb2, csa_pb2


@pytest.mark.asyncio
async def test_csa_keypairs_and_version(peer: Peer) -> None:
    kp = (await peer.csa.GetKeypair(csa_pb2.GetKeypairRequest())).keypair
    assert kp.id == 1 and len(kp.public_key) == 64 and int(kp.public_key, 16) >= 0
    assert kp.HasField("created_at")
    listed = await peer.csa.ListKeypairs(csa_pb2.ListKeypairsRequest())
    assert list(listed.keypairs) == [kp]
    version = await peer.app.Version(app_pb2.VersionRequest())
    assert version.version == jdkit.__version__
