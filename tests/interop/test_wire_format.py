"""Contract check: protobuf bytes from grpcio parse in betterproto2 and back.

Fully populated messages are crossed both ways, byte-compared where maps do
not make the order unspecified, and the server's replies decode the same in
both runtimes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import betterproto2
import pytest
from google.protobuf import timestamp_pb2

from jdkit.pb import health, job, label, node, probation, protobuf
from tests.helpers.grpcio_peer import (
    NESTED_POLICY,
    Peer,
    chain_config_bp,
    chain_config_pb2,
    health_pb2,
    job_pb2,
    label_pb2,
    lbl,
    node_pb2,
    probation_pb2,
    pubkey,
    raw,
    sel,
    spec,
    struct_of,
    ts,
    when,
)

pytestmark = pytest.mark.filterwarnings("ignore:GetJobRequest.uuid is deprecated")


def node_pb2_full() -> Any:
    n = node_pb2.Node(
        id="node_01",
        name="node one",
        public_key=pubkey(1),
        is_enabled=True,
        is_connected=True,
        labels=[lbl("env", "prod"), lbl("bootstrap"), lbl("empty", "")],
        created_at=ts(1_700_000_000, 123_456),
        updated_at=ts(1_700_000_001, 999_999),
        workflow_key="wf",
        p2p_key_bundles=[
            node_pb2.P2PKeyBundle(peer_id="p2p_a", public_key="aa"),
            node_pb2.P2PKeyBundle(peer_id="p2p_b", public_key="bb"),
        ],
        nop_friendly_name="NOP ☃",
        version="2.30.0",
    )
    return n


def node_bp_full() -> node.Node:
    return node.Node(
        id="node_01",
        name="node one",
        public_key=pubkey(1),
        is_enabled=True,
        is_connected=True,
        labels=[
            label.Label(key="env", value="prod"),
            label.Label(key="bootstrap"),
            label.Label(key="empty", value=""),
        ],
        created_at=when(1_700_000_000, 123_456),
        updated_at=when(1_700_000_001, 999_999),
        workflow_key="wf",
        p2p_key_bundles=[
            node.P2PKeyBundle(peer_id="p2p_a", public_key="aa"),
            node.P2PKeyBundle(peer_id="p2p_b", public_key="bb"),
        ],
        nop_friendly_name="NOP ☃",
        version="2.30.0",
    )


def job_pb2_full() -> Any:
    return job_pb2.Job(
        id="job_01",
        uuid=str(uuid.UUID(int=1)),
        node_id="node_01",
        proposal_ids=["prop_1", "prop_2"],
        created_at=ts(1, 1),
        updated_at=ts(2, 2),
        deleted_at=ts(3, 3),
        labels=[lbl("a", "1"), lbl("b")],
        rollback_policy_id=2**40 + 7,
    )


def job_bp_full() -> job.Job:
    return job.Job(
        id="job_01",
        uuid=str(uuid.UUID(int=1)),
        node_id="node_01",
        proposal_ids=["prop_1", "prop_2"],
        created_at=when(1, 1),
        updated_at=when(2, 2),
        deleted_at=when(3, 3),
        labels=[label.Label(key="a", value="1"), label.Label(key="b")],
        rollback_policy_id=2**40 + 7,
    )


def proposal_pb2_full(pid: str = "prop_01", revision: int = 3) -> Any:
    return job_pb2.Proposal(
        id=pid,
        revision=revision,
        status=job_pb2.PROPOSAL_STATUS_REVOKED,
        delivery_status=job_pb2.PROPOSAL_DELIVERY_STATUS_ACKNOWLEDGED,
        spec=spec(str(uuid.UUID(int=2)), 'name = "x"\n'),
        job_id="job_01",
        created_at=ts(10, 1),
        updated_at=ts(11, 2),
        acked_at=ts(12, 3),
        response_received_at=ts(13, 4),
    )


def proposal_bp_full(pid: str = "prop_01", revision: int = 3) -> job.Proposal:
    return job.Proposal(
        id=pid,
        revision=revision,
        status=job.ProposalStatus.REVOKED,
        delivery_status=job.ProposalDeliveryStatus.ACKNOWLEDGED,
        spec=spec(str(uuid.UUID(int=2)), 'name = "x"\n'),
        job_id="job_01",
        created_at=when(10, 1),
        updated_at=when(11, 2),
        acked_at=when(12, 3),
        response_received_at=when(13, 4),
    )


def batch_pb2_full() -> Any:
    r = job_pb2.BatchProposeJobResponse()
    r.success_responses["node_a"].proposal.CopyFrom(proposal_pb2_full("prop_a", 1))
    r.success_responses["node_b"].proposal.CopyFrom(proposal_pb2_full("prop_b", 2))
    r.success_responses["node_c"].CopyFrom(job_pb2.ProposeJobResponse())  # empty value
    r.failed_responses["node_x"].error_message = "node node_x not found"
    r.failed_responses[""].error_message = "node id is empty"
    return r


def batch_bp_full() -> job.BatchProposeJobResponse:
    return job.BatchProposeJobResponse(
        success_responses={
            "node_a": job.ProposeJobResponse(proposal=proposal_bp_full("prop_a", 1)),
            "node_b": job.ProposeJobResponse(proposal=proposal_bp_full("prop_b", 2)),
            "node_c": job.ProposeJobResponse(),
        },
        failed_responses={
            "node_x": job.ProposeJobFailure(error_message="node node_x not found"),
            "": job.ProposeJobFailure(error_message="node id is empty"),
        },
    )


def list_nodes_request_pb2() -> Any:
    F = node_pb2.ListNodesRequest.Filter
    return node_pb2.ListNodesRequest(
        filter=F(
            ids=["a", "b"],
            enabled=node_pb2.ENABLE_STATE_DISABLED,
            selectors=[
                sel("env", label_pb2.IN, "a,b"),
                sel("x", label_pb2.NOT_EXIST),
                sel("e", label_pb2.EQ, ""),
            ],
            public_keys=[pubkey(1)],
        ),
        page_size=50,
        page=2,
    )


def list_nodes_request_bp() -> node.ListNodesRequest:
    return node.ListNodesRequest(
        filter=node.ListNodesRequestFilter(
            ids=["a", "b"],
            enabled=node.EnableState.DISABLED,
            selectors=[
                label.Selector(key="env", op=label.SelectorOp.IN, value="a,b"),
                label.Selector(key="x", op=label.SelectorOp.NOT_EXIST),
                label.Selector(key="e", op=label.SelectorOp.EQ, value=""),
            ],
            public_keys=[pubkey(1)],
        ),
        page_size=50,
        page=2,
    )


def policy_pb2_full() -> Any:
    return probation_pb2.RollbackPolicy(
        id="1", policy=struct_of(NESTED_POLICY), created_at=ts(5, 5), updated_at=ts(6, 6)
    )


def policy_bp_full() -> probation.RollbackPolicy:
    return probation.RollbackPolicy(
        id="1",
        policy=protobuf.Struct.from_dict(NESTED_POLICY),
        created_at=when(5, 5),
        updated_at=when(6, 6),
    )


WIRE_PAIRS: dict[str, tuple[Callable[[], Any], Callable[[], betterproto2.Message]]] = {
    "Node": (node_pb2_full, node_bp_full),
    "Job": (job_pb2_full, job_bp_full),
    "Proposal": (proposal_pb2_full, proposal_bp_full),
    "ChainConfig": (lambda: chain_config_pb2("node_01"), lambda: chain_config_bp("node_01")),
    "BatchProposeJobResponse": (batch_pb2_full, batch_bp_full),
    "ListNodesRequest": (list_nodes_request_pb2, list_nodes_request_bp),
    "RollbackPolicy": (policy_pb2_full, policy_bp_full),
    "GetJobRequest(uuid)": (
        lambda: job_pb2.GetJobRequest(uuid="u-1"),
        lambda: job.GetJobRequest(uuid="u-1"),
    ),
    "UpdateJobRequest": (
        lambda: job_pb2.UpdateJobRequest(id="job_1", labels=[lbl("k")], rollback_policy_id=0),
        lambda: job.UpdateJobRequest(
            id="job_1", labels=[label.Label(key="k")], rollback_policy_id=0
        ),
    ),
    "GetNodeRequest(public_key='')": (
        lambda: node_pb2.GetNodeRequest(public_key=""),
        lambda: node.GetNodeRequest(public_key=""),
    ),
    "HealthCheckResponse": (
        lambda: health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING),
        lambda: health.HealthCheckResponse(status=health.HealthCheckResponseServingStatus.SERVING),
    ),
}


@pytest.mark.parametrize("name", list(WIRE_PAIRS))
def test_wire_format_grpcio_to_betterproto2(name: str) -> None:
    make_pb2, make_bp = WIRE_PAIRS[name]
    expected = make_bp()
    decoded = type(expected).parse(make_pb2().SerializeToString())
    assert decoded == expected
    assert decoded.to_dict() == expected.to_dict()


@pytest.mark.parametrize("name", list(WIRE_PAIRS))
def test_wire_format_betterproto2_to_grpcio(name: str) -> None:
    make_pb2, make_bp = WIRE_PAIRS[name]
    expected = make_pb2()
    decoded = type(expected).FromString(bytes(make_bp()))
    assert decoded == expected
    # presence survives: optional fields set to their default are still "set"
    for field, _ in expected.ListFields():
        assert decoded.HasField(field.name) if _has_presence(field) else True


def _has_presence(field: Any) -> bool:
    return bool(getattr(field, "has_presence", False)) and not field.is_repeated


# maps (BatchProposeJobResponse, Struct) have no specified entry order
WITHOUT_MAPS = [n for n in WIRE_PAIRS if n not in ("BatchProposeJobResponse", "RollbackPolicy")]


@pytest.mark.parametrize("name", WITHOUT_MAPS)
def test_wire_bytes_identical_without_maps(name: str) -> None:
    # without maps, both runtimes write fields in number order: the same bytes
    make_pb2, make_bp = WIRE_PAIRS[name]
    assert bytes(make_bp()) == make_pb2().SerializeToString(deterministic=True)


def test_unknown_enum_values_survive_betterproto2() -> None:
    # proto3 enums are open: a newer server's status must pass through untouched
    raw = job_pb2.Proposal(status=99, delivery_status=42).SerializeToString()
    decoded = job.Proposal.parse(raw)
    assert int(decoded.status) == 99 and int(decoded.delivery_status) == 42
    back = job_pb2.Proposal.FromString(bytes(decoded))
    assert back.status == 99 and back.delivery_status == 42


def test_timestamp_nanoseconds_are_truncated_to_microseconds() -> None:
    # betterproto2 unwraps Timestamp to datetime: sub-microsecond digits are lost.
    # JD timestamps are microseconds, so nothing JD sends is affected.
    raw = node_pb2.Node(created_at=timestamp_pb2.Timestamp(seconds=5, nanos=123_456_789))
    decoded = node.Node.parse(raw.SerializeToString())
    assert decoded.created_at == when(5, 123_456)
    assert node_pb2.Node.FromString(bytes(decoded)).created_at.nanos == 123_456_000


@pytest.mark.asyncio
async def test_server_replies_decode_identically_in_both_runtimes(peer: Peer) -> None:
    """What the embedded JD sends, read by protobuf and by betterproto2, is one message."""
    n = await peer.register(1, [lbl("env", "prod"), lbl("bootstrap")])
    p = await peer.propose(n.id, str(uuid.uuid4()), [lbl("x")])
    await peer.srv.add_chain_config(n.id, chain_config_bp(n.id))
    raw_calls: list[tuple[str, Any, type[betterproto2.Message]]] = [
        ("/api.node.v1.NodeService/ListNodes", node_pb2.ListNodesRequest(), node.ListNodesResponse),
        (
            "/api.job.v1.JobService/GetJob",
            job_pb2.GetJobRequest(id=p.job_id),
            job.GetJobResponse,
        ),
        (
            "/api.job.v1.JobService/GetProposal",
            job_pb2.GetProposalRequest(id=p.id),
            job.GetProposalResponse,
        ),
        (
            "/api.node.v1.NodeService/ListNodeChainConfigs",
            node_pb2.ListNodeChainConfigsRequest(),
            node.ListNodeChainConfigsResponse,
        ),
    ]
    for path, request, bp_type in raw_calls:
        reply = await raw(peer.channel, path)(request.SerializeToString(), timeout=10)
        pb2_type = _pb2_response_type(path)
        via_pb2 = pb2_type.FromString(reply)
        via_bp = bp_type.parse(reply)
        assert pb2_type.FromString(bytes(via_bp)) == via_pb2, path
        assert bp_type.parse(via_pb2.SerializeToString()) == via_bp, path


def _pb2_response_type(path: str) -> Any:
    service, method = path.strip("/").split("/")
    for mod in (node_pb2, job_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            if svc.full_name == service:
                out = svc.methods_by_name[method].output_type
                return getattr(mod, out.name)
    raise LookupError(path)
