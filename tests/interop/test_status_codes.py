"""Contract check: refusals reach the official client as JD's status codes.

Every refusal also carries details saying why.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import struct_pb2

from tests.helpers.grpcio_peer import (
    Peer,
    job_pb2,
    lbl,
    node_pb2,
    probation_pb2,
    pubkey,
    spec,
    status_of,
)

pytestmark = pytest.mark.filterwarnings("ignore:GetJobRequest.uuid is deprecated")


@dataclass
class World:
    node_id: str
    disabled_id: str
    job_id: str
    approved_id: str
    deleted_job_id: str


@pytest_asyncio.fixture
async def world(peer: Peer) -> World:
    n = await peer.register(1)
    off = await peer.register(2)
    await peer.nodes.DisableNode(node_pb2.DisableNodeRequest(id=off.id))
    p = await peer.propose(n.id, str(uuid.uuid4()))
    await peer.srv.approve_proposal(p.id)
    gone = await peer.propose(n.id, str(uuid.uuid4()))
    await peer.jobs.DeleteJob(job_pb2.DeleteJobRequest(id=gone.job_id))
    return World(n.id, off.id, p.job_id, p.id, gone.job_id)


Case = Callable[[Peer, World], Awaitable[Any]]
NF, IA = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
AE, FP = grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION

ERROR_CASES: dict[str, tuple[grpc.StatusCode, Case]] = {
    # NOT_FOUND
    "GetNode unknown id": (NF, lambda p, w: p.nodes.GetNode(node_pb2.GetNodeRequest(id="node_x"))),
    "GetNode unknown public_key": (
        NF,
        lambda p, w: p.nodes.GetNode(node_pb2.GetNodeRequest(public_key=pubkey(99))),
    ),
    "EnableNode unknown": (
        NF,
        lambda p, w: p.nodes.EnableNode(node_pb2.EnableNodeRequest(id="node_x")),
    ),
    "DisableNode unknown": (
        NF,
        lambda p, w: p.nodes.DisableNode(node_pb2.DisableNodeRequest(id="node_x")),
    ),
    "UpdateNode unknown": (
        NF,
        lambda p, w: p.nodes.UpdateNode(node_pb2.UpdateNodeRequest(id="node_x", name="n")),
    ),
    "ProposeJob unknown node": (
        NF,
        lambda p, w: p.jobs.ProposeJob(
            job_pb2.ProposeJobRequest(node_id="node_x", spec=spec(str(uuid.uuid4())))
        ),
    ),
    "GetJob unknown": (NF, lambda p, w: p.jobs.GetJob(job_pb2.GetJobRequest(id="job_x"))),
    "GetProposal unknown": (
        NF,
        lambda p, w: p.jobs.GetProposal(job_pb2.GetProposalRequest(id="prop_x")),
    ),
    "RevokeJob unknown": (NF, lambda p, w: p.jobs.RevokeJob(job_pb2.RevokeJobRequest(id="job_x"))),
    "DeleteJob unknown": (NF, lambda p, w: p.jobs.DeleteJob(job_pb2.DeleteJobRequest(id="job_x"))),
    "UpdateJob unknown": (NF, lambda p, w: p.jobs.UpdateJob(job_pb2.UpdateJobRequest(id="job_x"))),
    "UpdateJob unknown rollback policy": (
        NF,
        lambda p, w: p.jobs.UpdateJob(
            job_pb2.UpdateJobRequest(id=w.job_id, rollback_policy_id=424242)
        ),
    ),
    "GetRollbackPolicy unknown": (
        NF,
        lambda p, w: p.policies.GetRollbackPolicy(probation_pb2.GetRollbackPolicyRequest(id="77")),
    ),
    "GetRollbackPolicy non-numeric": (
        NF,
        lambda p, w: p.policies.GetRollbackPolicy(probation_pb2.GetRollbackPolicyRequest(id="x")),
    ),
    "UpdateRollbackPolicy unknown": (
        NF,
        lambda p, w: p.policies.UpdateRollbackPolicy(
            probation_pb2.UpdateRollbackPolicyRequest(id="77", policy=struct_pb2.Struct())
        ),
    ),
    # INVALID_ARGUMENT
    "RegisterNode no name": (
        IA,
        lambda p, w: p.nodes.RegisterNode(node_pb2.RegisterNodeRequest(public_key=pubkey(50))),
    ),
    "RegisterNode bad public_key": (
        IA,
        lambda p, w: p.nodes.RegisterNode(node_pb2.RegisterNodeRequest(name="n", public_key="zz")),
    ),
    "RegisterNode empty label key": (
        IA,
        lambda p, w: p.nodes.RegisterNode(
            node_pb2.RegisterNodeRequest(name="n", public_key=pubkey(50), labels=[lbl("", "v")])
        ),
    ),
    "RegisterNode duplicate label key": (
        IA,
        lambda p, w: p.nodes.RegisterNode(
            node_pb2.RegisterNodeRequest(
                name="n", public_key=pubkey(50), labels=[lbl("k", "1"), lbl("k", "2")]
            )
        ),
    ),
    "GetNode neither id nor key": (IA, lambda p, w: p.nodes.GetNode(node_pb2.GetNodeRequest())),
    "ListNodes negative page_size": (
        IA,
        lambda p, w: p.nodes.ListNodes(node_pb2.ListNodesRequest(page_size=-1)),
    ),
    "ListNodes negative page": (
        IA,
        lambda p, w: p.nodes.ListNodes(node_pb2.ListNodesRequest(page=-1)),
    ),
    "ProposeJob spec not TOML": (
        IA,
        lambda p, w: p.jobs.ProposeJob(job_pb2.ProposeJobRequest(node_id=w.node_id, spec="[[")),
    ),
    "ProposeJob spec without externalJobID": (
        IA,
        lambda p, w: p.jobs.ProposeJob(
            job_pb2.ProposeJobRequest(node_id=w.node_id, spec='type = "cron"\n')
        ),
    ),
    "ProposeJob externalJobID not a UUID": (
        IA,
        lambda p, w: p.jobs.ProposeJob(
            job_pb2.ProposeJobRequest(node_id=w.node_id, spec='externalJobID = "nope"\n')
        ),
    ),
    "ProposeJob empty node_id": (
        IA,
        lambda p, w: p.jobs.ProposeJob(job_pb2.ProposeJobRequest(spec=spec(str(uuid.uuid4())))),
    ),
    "BatchProposeJob no nodes": (
        IA,
        lambda p, w: p.jobs.BatchProposeJob(
            job_pb2.BatchProposeJobRequest(spec=spec(str(uuid.uuid4())))
        ),
    ),
    "BatchProposeJob bad spec": (
        IA,
        lambda p, w: p.jobs.BatchProposeJob(
            job_pb2.BatchProposeJobRequest(node_ids=[w.node_id], spec="not toml =")
        ),
    ),
    "GetJob no id": (IA, lambda p, w: p.jobs.GetJob(job_pb2.GetJobRequest())),
    "GetJob deprecated uuid": (
        IA,
        lambda p, w: p.jobs.GetJob(job_pb2.GetJobRequest(uuid=str(uuid.uuid4()))),
    ),
    "GetProposal no id": (IA, lambda p, w: p.jobs.GetProposal(job_pb2.GetProposalRequest())),
    "GetRollbackPolicy no id": (
        IA,
        lambda p, w: p.policies.GetRollbackPolicy(probation_pb2.GetRollbackPolicyRequest()),
    ),
    "UpdateRollbackPolicy without policy": (
        IA,
        lambda p, w: p.policies.UpdateRollbackPolicy(
            probation_pb2.UpdateRollbackPolicyRequest(id="1")
        ),
    ),
    # ALREADY_EXISTS
    "RegisterNode same public_key": (
        AE,
        lambda p, w: p.nodes.RegisterNode(
            node_pb2.RegisterNodeRequest(name="again", public_key=pubkey(1))
        ),
    ),
    "RegisterNode same public_key other case": (
        AE,
        lambda p, w: p.nodes.RegisterNode(
            node_pb2.RegisterNodeRequest(name="again", public_key=pubkey(1).upper())
        ),
    ),
    "UpdateNode to a taken public_key": (
        AE,
        lambda p, w: p.nodes.UpdateNode(
            node_pb2.UpdateNodeRequest(id=w.node_id, public_key=pubkey(2))
        ),
    ),
    # FAILED_PRECONDITION
    "ProposeJob to disabled node": (
        FP,
        lambda p, w: p.jobs.ProposeJob(
            job_pb2.ProposeJobRequest(node_id=w.disabled_id, spec=spec(str(uuid.uuid4())))
        ),
    ),
    "RevokeJob approved proposal": (
        FP,
        lambda p, w: p.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=w.job_id)),
    ),
    "DeleteJob twice": (
        FP,
        lambda p, w: p.jobs.DeleteJob(job_pb2.DeleteJobRequest(id=w.deleted_job_id)),
    ),
    "UpdateJob deleted job": (
        FP,
        lambda p, w: p.jobs.UpdateJob(
            job_pb2.UpdateJobRequest(id=w.deleted_job_id, labels=[lbl("a", "b")])
        ),
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(ERROR_CASES))
async def test_error_status_codes(peer: Peer, world: World, case: str) -> None:
    expected, make = ERROR_CASES[case]
    code, details = await status_of(make(peer, world))
    assert code == expected, details
    assert details  # every refusal says why


@pytest.mark.asyncio
async def test_error_cases_cover_every_mapped_code() -> None:
    assert {c for c, _ in ERROR_CASES.values()} == {NF, IA, AE, FP}
