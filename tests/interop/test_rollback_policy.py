"""RollbackPolicyService through Google's grpcio client: nested Struct policies round-trip."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from tests.helpers.grpcio_peer import NESTED_POLICY, Peer, probation_pb2, struct_of


@pytest.mark.asyncio
async def test_rollback_policies_round_trip_nested_struct(peer: Peer) -> None:
    created = (
        await peer.policies.CreateRollbackPolicy(
            probation_pb2.CreateRollbackPolicyRequest(policy=struct_of(NESTED_POLICY))
        )
    ).rollback_policy
    assert created.id and created.policy == struct_of(NESTED_POLICY)
    assert created.HasField("created_at") and created.HasField("updated_at")
    got = (
        await peer.policies.GetRollbackPolicy(probation_pb2.GetRollbackPolicyRequest(id=created.id))
    ).rollback_policy
    assert got == created
    other = (
        await peer.policies.CreateRollbackPolicy(probation_pb2.CreateRollbackPolicyRequest())
    ).rollback_policy
    assert other.id != created.id and other.policy == struct_pb2.Struct()

    req = probation_pb2.ListRollbackPoliciesRequest
    assert [p.id for p in (await peer.policies.ListRollbackPolicies(req())).rollback_policies] == [
        created.id,
        other.id,
    ]
    only = await peer.policies.ListRollbackPolicies(req(filter=req.Filter(ids=[other.id])))
    assert list(only.rollback_policies) == [other]

    new = {"v": 2, "list": [{"a": {"b": {"c": [None]}}}]}
    updated = (
        await peer.policies.UpdateRollbackPolicy(
            probation_pb2.UpdateRollbackPolicyRequest(id=created.id, policy=struct_of(new))
        )
    ).rollback_policy
    assert updated.policy == struct_of(new)
    assert updated.updated_at.ToDatetime() > created.updated_at.ToDatetime()
    again = (
        await peer.policies.GetRollbackPolicy(probation_pb2.GetRollbackPolicyRequest(id=created.id))
    ).rollback_policy
    assert again.policy == struct_of(new)
