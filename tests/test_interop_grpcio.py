"""Google's grpcio client against jdkit's embedded JD, and the wire format both ways.

The peer here is the official runtime: a `grpc.aio` channel with stubs that
grpcio-tools compiles from the project's own protos (`tests/_grpcio.py`).
Every RPC of the five JD v1 services and both health RPCs are called through
it; errors are checked as `grpc.StatusCode`s. Then the encoders are crossed
(protobuf bytes parsed by betterproto2 and back, for fully populated
messages), and the compiled descriptors are compared with the reference
`jd-v1.desc` the wire contract ships.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import betterproto2
import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pb2, struct_pb2, timestamp_pb2
from grpc import aio

import jdkit
from jdkit._server import EmbeddedJD
from jdkit.pb import health, job, label, node, probation, protobuf

from ._grpcio import ROOT, stubs

node_pb2 = stubs("v1.node.node_pb2")
node_grpc = stubs("v1.node.node_pb2_grpc")
job_pb2 = stubs("v1.job.job_pb2")
job_grpc = stubs("v1.job.job_pb2_grpc")
csa_pb2 = stubs("v1.csa.csa_pb2")
csa_grpc = stubs("v1.csa.csa_pb2_grpc")
app_pb2 = stubs("v1.app.app_pb2")
app_grpc = stubs("v1.app.app_pb2_grpc")
probation_pb2 = stubs("v1.probation.probation_pb2")
probation_grpc = stubs("v1.probation.probation_pb2_grpc")
label_pb2 = stubs("v1.shared.ptypes.label_pb2")
health_pb2 = stubs("jdhealth.health_pb2")
health_grpc = stubs("jdhealth.health_pb2_grpc")

# the deprecated `uuid` variant is sent on purpose
pytestmark = pytest.mark.filterwarnings("ignore:GetJobRequest.uuid is deprecated")

# the published contract: shared/ lies beside the checkout (CI copies it there)
REFERENCE_DESC = next(
    (
        p
        for p in (
            Path(os.environ.get("JD_API_DESC", "/nonexistent")),
            Path(__file__).resolve().parents[2] / "shared" / "jd-api" / "jd-v1.desc",
            Path("/work/shared/jd-api/jd-v1.desc"),
        )
        if p.exists()
    ),
    Path("shared/jd-api/jd-v1.desc"),
)
UTC = dt.UTC


# ------------------------------------------------------------------ helpers


def pubkey(i: int) -> str:
    return f"{0xC5A0000 + i:064x}"


def spec(ext_id: str, body: str = "") -> str:
    return f'type = "offchainreporting2"\nschemaVersion = 1\nexternalJobID = "{ext_id}"\n{body}'


def lbl(key: str, value: str | None = None) -> Any:
    return label_pb2.Label(key=key) if value is None else label_pb2.Label(key=key, value=value)


def sel(key: str, op: int, value: str | None = None) -> Any:
    s = label_pb2.Selector(key=key, op=op)
    if value is not None:
        s.value = value
    return s


def ts(seconds: int, micros: int = 0) -> Any:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def when(seconds: int, micros: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC) + dt.timedelta(microseconds=micros)


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


@dataclass
class Peer:
    """The embedded JD and an official grpcio client to it."""

    srv: EmbeddedJD
    channel: aio.Channel
    nodes: Any
    jobs: Any
    csa: Any
    app: Any
    policies: Any
    health: Any

    async def register(self, i: int, labels: list[Any] | None = None) -> Any:
        resp = await self.nodes.RegisterNode(
            node_pb2.RegisterNodeRequest(name=f"node-{i}", public_key=pubkey(i), labels=labels)
        )
        return resp.node

    async def propose(self, node_id: str, ext_id: str, labels: list[Any] | None = None) -> Any:
        resp = await self.jobs.ProposeJob(
            job_pb2.ProposeJobRequest(node_id=node_id, spec=spec(ext_id), labels=labels)
        )
        return resp.proposal


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


def rpc_paths(*, streaming: bool | None = None) -> list[str]:
    """Every method the compiled (official) descriptors declare, as wire paths."""
    out = []
    for mod in (node_pb2, job_pb2, csa_pb2, app_pb2, probation_pb2, health_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                if streaming is None or m.server_streaming == streaming:
                    out.append(f"/{svc.full_name}/{m.name}")
    return out


# --------------------------------------------------------------- NodeService


@pytest.mark.asyncio
async def test_register_node_keeps_labels_with_and_without_value(peer: Peer) -> None:
    n = await peer.register(1, [lbl("env", "prod"), lbl("bootstrap"), lbl("empty", "")])
    assert n.id.startswith("node_")
    assert n.name == "node-1"
    assert n.public_key == pubkey(1)
    assert n.is_enabled and not n.is_connected
    assert n.HasField("created_at") and n.HasField("updated_at")
    got = {(x.key, x.value if x.HasField("value") else None) for x in n.labels}
    assert got == {("env", "prod"), ("bootstrap", None), ("empty", "")}
    assert not n.HasField("workflow_key")


@pytest.mark.asyncio
async def test_get_node_by_id_and_by_public_key(peer: Peer) -> None:
    n = await peer.register(1, [lbl("env", "prod")])
    await peer.register(2)
    by_id = (await peer.nodes.GetNode(node_pb2.GetNodeRequest(id=n.id))).node
    by_key = (await peer.nodes.GetNode(node_pb2.GetNodeRequest(public_key=pubkey(1)))).node
    upper = (await peer.nodes.GetNode(node_pb2.GetNodeRequest(public_key=pubkey(1).upper()))).node
    assert by_id == by_key == upper == n


@pytest.mark.asyncio
async def test_list_nodes_selectors_filters_and_paging(peer: Peer) -> None:
    made = []
    for i in range(7):
        labels = [lbl("env", "prod" if i % 2 == 0 else "dev"), lbl("idx", str(i))]
        if i < 3:
            labels.append(lbl("bootstrap"))
        made.append(await peer.register(i, labels))
    ids = [n.id for n in made]

    async def listed(flt: Any = None, page_size: int = 0, page: int = 0) -> tuple[list[str], int]:
        req = node_pb2.ListNodesRequest(page_size=page_size, page=page)
        if flt is not None:
            req.filter.CopyFrom(flt)
        resp = await peer.nodes.ListNodes(req)
        return [n.id for n in resp.nodes], resp.total_count

    F = node_pb2.ListNodesRequest.Filter
    assert await listed() == (ids, 7)
    prod = [ids[i] for i in (0, 2, 4, 6)]
    assert await listed(F(selectors=[sel("env", label_pb2.EQ, "prod")])) == (prod, 4)
    assert await listed(F(selectors=[sel("env", label_pb2.NOT_EQ, "prod")])) == (
        [ids[i] for i in (1, 3, 5)],
        3,
    )
    assert await listed(F(selectors=[sel("idx", label_pb2.IN, "1, 5,6")])) == (
        [ids[1], ids[5], ids[6]],
        3,
    )
    assert await listed(F(selectors=[sel("idx", label_pb2.NOT_IN, "0,1,2,3")])) == (ids[4:], 3)
    assert await listed(F(selectors=[sel("bootstrap", label_pb2.EXIST)])) == (ids[:3], 3)
    assert await listed(F(selectors=[sel("bootstrap", label_pb2.NOT_EXIST)])) == (ids[3:], 4)
    # a label without value: EQ never matches it
    assert await listed(F(selectors=[sel("bootstrap", label_pb2.EQ, "")])) == ([], 0)
    both = F(selectors=[sel("env", label_pb2.EQ, "prod"), sel("bootstrap", label_pb2.EXIST)])
    assert await listed(both) == ([ids[0], ids[2]], 2)
    # paging: total_count counts matches before paging; page 0 is page 1
    assert await listed(F(selectors=[sel("env", label_pb2.EQ, "prod")]), 3, 1) == (prod[:3], 4)
    assert await listed(F(selectors=[sel("env", label_pb2.EQ, "prod")]), 3, 0) == (prod[:3], 4)
    assert await listed(F(selectors=[sel("env", label_pb2.EQ, "prod")]), 3, 2) == (prod[3:], 4)
    assert await listed(F(selectors=[sel("env", label_pb2.EQ, "prod")]), 3, 3) == ([], 4)
    # ids, public keys, enabled
    assert await listed(F(ids=[ids[5], ids[1]])) == ([ids[1], ids[5]], 2)
    assert await listed(F(public_keys=[pubkey(3).upper()])) == ([ids[3]], 1)
    await peer.nodes.DisableNode(node_pb2.DisableNodeRequest(id=ids[2]))
    assert await listed(F(enabled=node_pb2.ENABLE_STATE_DISABLED)) == ([ids[2]], 1)
    enabled = await listed(F(enabled=node_pb2.ENABLE_STATE_ENABLED))
    assert enabled == ([i for i in ids if i != ids[2]], 6)


@pytest.mark.asyncio
async def test_update_enable_disable_node(peer: Peer) -> None:
    n = await peer.register(1, [lbl("env", "prod")])
    up = (
        await peer.nodes.UpdateNode(
            node_pb2.UpdateNodeRequest(id=n.id, name="renamed", labels=[lbl("env", "dev")])
        )
    ).node
    assert up.name == "renamed" and up.public_key == n.public_key
    assert [(x.key, x.value) for x in up.labels] == [("env", "dev")]
    assert up.updated_at.ToDatetime() > n.updated_at.ToDatetime()
    # empty fields leave things unchanged
    same = (await peer.nodes.UpdateNode(node_pb2.UpdateNodeRequest(id=n.id))).node
    assert same.name == "renamed" and [x.key for x in same.labels] == ["env"]
    moved = (
        await peer.nodes.UpdateNode(node_pb2.UpdateNodeRequest(id=n.id, public_key=pubkey(9)))
    ).node
    assert moved.public_key == pubkey(9)

    off = (await peer.nodes.DisableNode(node_pb2.DisableNodeRequest(id=n.id))).node
    assert not off.is_enabled
    assert not (await peer.nodes.GetNode(node_pb2.GetNodeRequest(id=n.id))).node.is_enabled
    on = (await peer.nodes.EnableNode(node_pb2.EnableNodeRequest(id=n.id))).node
    assert on.is_enabled


def chain_config_pb2(node_id: str, chain_id: str = "11155111") -> Any:
    """A ChainConfig with every field set (grpcio types)."""
    return node_pb2.ChainConfig(
        chain=node_pb2.Chain(id=chain_id, type=node_pb2.CHAIN_TYPE_EVM),
        account_address="0xabc",
        admin_address="0xdef",
        flux_monitor_config=node_pb2.FluxMonitorConfig(enabled=True),
        ocr1_config=node_pb2.OCR1Config(
            enabled=True,
            is_bootstrap=True,
            p2p_key_bundle=node_pb2.OCR1Config.P2PKeyBundle(peer_id="p2p_1", public_key="aa"),
            ocr_key_bundle=node_pb2.OCR1Config.OCRKeyBundle(
                bundle_id="b1",
                config_public_key="c1",
                offchain_public_key="o1",
                onchain_signing_address="s1",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/1",
        ),
        ocr2_config=node_pb2.OCR2Config(
            enabled=True,
            is_bootstrap=False,
            p2p_key_bundle=node_pb2.OCR2Config.P2PKeyBundle(peer_id="p2p_2", public_key="bb"),
            ocr_key_bundle=node_pb2.OCR2Config.OCRKeyBundle(
                bundle_id="b2",
                config_public_key="c2",
                offchain_public_key="o2",
                onchain_signing_address="s2",
                onchain_signing_pub_key="k2",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/2",
            plugins=node_pb2.OCR2Config.Plugins(
                commit=True, execute=True, median=True, mercury=True, rebalancer=True
            ),
            forwarder_address="0xf0",
        ),
        account_address_public_key="0xpub",
        node_id=node_id,
    )


def chain_config_bp(node_id: str, chain_id: str = "11155111") -> node.ChainConfig:
    """The same ChainConfig, built independently with betterproto2 types."""
    return node.ChainConfig(
        chain=node.Chain(id=chain_id, type=node.ChainType.EVM),
        account_address="0xabc",
        admin_address="0xdef",
        flux_monitor_config=node.FluxMonitorConfig(enabled=True),
        ocr1_config=node.Ocr1Config(
            enabled=True,
            is_bootstrap=True,
            p2p_key_bundle=node.Ocr1ConfigP2PKeyBundle(peer_id="p2p_1", public_key="aa"),
            ocr_key_bundle=node.Ocr1ConfigOcrKeyBundle(
                bundle_id="b1",
                config_public_key="c1",
                offchain_public_key="o1",
                onchain_signing_address="s1",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/1",
        ),
        ocr2_config=node.Ocr2Config(
            enabled=True,
            is_bootstrap=False,
            p2p_key_bundle=node.Ocr2ConfigP2PKeyBundle(peer_id="p2p_2", public_key="bb"),
            ocr_key_bundle=node.Ocr2ConfigOcrKeyBundle(
                bundle_id="b2",
                config_public_key="c2",
                offchain_public_key="o2",
                onchain_signing_address="s2",
                onchain_signing_pub_key="k2",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/2",
            plugins=node.Ocr2ConfigPlugins(
                commit=True, execute=True, median=True, mercury=True, rebalancer=True
            ),
            forwarder_address="0xf0",
        ),
        account_address_public_key="0xpub",
        node_id=node_id,
    )


@pytest.mark.asyncio
async def test_list_node_chain_configs(peer: Peer) -> None:
    a = await peer.register(1)
    b = await peer.register(2)
    await peer.srv.add_chain_config(a.id, chain_config_bp("ignored-the-server-sets-it"))
    await peer.srv.add_chain_config(b.id, node.ChainConfig(chain=node.Chain(id="5", type=2)))
    req = node_pb2.ListNodeChainConfigsRequest
    only_a = await peer.nodes.ListNodeChainConfigs(
        req(filter=req.Filter(node_ids=[a.id])), timeout=10
    )
    assert list(only_a.chain_configs) == [chain_config_pb2(a.id)]
    everything = await peer.nodes.ListNodeChainConfigs(req())
    assert sorted(c.node_id for c in everything.chain_configs) == sorted([a.id, b.id])
    solana = [c for c in everything.chain_configs if c.node_id == b.id]
    assert solana[0].chain == node_pb2.Chain(id="5", type=node_pb2.CHAIN_TYPE_SOLANA)
    none = await peer.nodes.ListNodeChainConfigs(req(filter=req.Filter(node_ids=["node_nope"])))
    assert list(none.chain_configs) == []


# ---------------------------------------------------------------- JobService


@pytest.mark.asyncio
async def test_propose_job_twice_makes_revision_two(peer: Peer) -> None:
    n = await peer.register(1)
    ext = str(uuid.uuid4())
    p1 = await peer.propose(n.id, ext, [lbl("team", "a"), lbl("canary")])
    assert p1.id.startswith("prop_") and p1.revision == 1
    assert p1.status == job_pb2.PROPOSAL_STATUS_PROPOSED
    assert p1.delivery_status == job_pb2.PROPOSAL_DELIVERY_STATUS_UNSPECIFIED  # not connected
    assert p1.spec == spec(ext)
    assert not p1.HasField("acked_at") and not p1.HasField("response_received_at")
    p2 = await peer.propose(n.id, ext.upper())  # same externalJobID, other spelling
    assert p2.revision == 2 and p2.job_id == p1.job_id and p2.id != p1.id

    j = (await peer.jobs.GetJob(job_pb2.GetJobRequest(id=p1.job_id))).job
    assert j.id == p1.job_id and j.uuid == ext and j.node_id == n.id
    assert list(j.proposal_ids) == [p1.id, p2.id]
    # empty labels on a re-proposal leave the job's labels alone
    assert [(x.key, x.value if x.HasField("value") else None) for x in j.labels] == [
        ("team", "a"),
        ("canary", None),
    ]
    assert not j.HasField("deleted_at") and not j.HasField("rollback_policy_id")

    got = (await peer.jobs.GetProposal(job_pb2.GetProposalRequest(id=p2.id))).proposal
    assert got == p2
    props = await peer.jobs.ListProposals(
        job_pb2.ListProposalsRequest(filter=job_pb2.ListProposalsRequest.Filter(job_ids=[j.id]))
    )
    assert [(p.id, p.revision) for p in props.proposals] == [(p1.id, 1), (p2.id, 2)]
    by_id = await peer.jobs.ListProposals(
        job_pb2.ListProposalsRequest(filter=job_pb2.ListProposalsRequest.Filter(ids=[p1.id]))
    )
    assert list(by_id.proposals) == [p1]

    # the node connects: waiting proposals are delivered; answering acks them
    await peer.srv.set_node_connected(n.id)
    delivered = (await peer.jobs.GetProposal(job_pb2.GetProposalRequest(id=p2.id))).proposal
    assert delivered.delivery_status == job_pb2.PROPOSAL_DELIVERY_STATUS_DELIVERED
    await peer.srv.approve_proposal(p2.id)
    approved = (await peer.jobs.GetProposal(job_pb2.GetProposalRequest(id=p2.id))).proposal
    assert approved.status == job_pb2.PROPOSAL_STATUS_APPROVED
    assert approved.delivery_status == job_pb2.PROPOSAL_DELIVERY_STATUS_ACKNOWLEDGED
    assert approved.HasField("acked_at") and approved.HasField("response_received_at")


@pytest.mark.asyncio
async def test_batch_propose_job_reports_each_node(peer: Peer) -> None:
    a = await peer.register(1)
    b = await peer.register(2)
    off = await peer.register(3)
    await peer.nodes.DisableNode(node_pb2.DisableNodeRequest(id=off.id))
    ext = str(uuid.uuid4())
    resp = await peer.jobs.BatchProposeJob(
        job_pb2.BatchProposeJobRequest(
            node_ids=[a.id, "node_unknown", b.id, off.id],
            spec=spec(ext),
            labels=[lbl("batch", "1")],
        )
    )
    assert set(resp.success_responses) == {a.id, b.id}
    assert set(resp.failed_responses) == {"node_unknown", off.id}
    assert "node_unknown" in resp.failed_responses["node_unknown"].error_message
    assert "disabled" in resp.failed_responses[off.id].error_message
    for node_id, ok in resp.success_responses.items():
        assert ok.proposal.revision == 1
        j = (await peer.jobs.GetJob(job_pb2.GetJobRequest(id=ok.proposal.job_id))).job
        assert j.node_id == node_id and j.uuid == ext
    again = await peer.jobs.BatchProposeJob(
        job_pb2.BatchProposeJobRequest(node_ids=[a.id], spec=spec(ext))
    )
    assert again.success_responses[a.id].proposal.revision == 2
    assert len(again.failed_responses) == 0


@pytest.mark.asyncio
async def test_list_jobs_filters(peer: Peer) -> None:
    a = await peer.register(1)
    b = await peer.register(2)
    e1, e2 = str(uuid.uuid4()), str(uuid.uuid4())
    ja = (await peer.propose(a.id, e1, [lbl("env", "prod")])).job_id
    jb = (await peer.propose(b.id, e1, [lbl("env", "dev")])).job_id
    jc = (await peer.propose(a.id, e2, [lbl("env", "prod"), lbl("x")])).job_id

    async def listed(**kw: Any) -> list[str]:
        flt = job_pb2.ListJobsRequest.Filter(**kw)
        return [j.id for j in (await peer.jobs.ListJobs(job_pb2.ListJobsRequest(filter=flt))).jobs]

    all_jobs = await peer.jobs.ListJobs(job_pb2.ListJobsRequest())
    assert [j.id for j in all_jobs.jobs] == [ja, jb, jc]
    assert await listed(node_ids=[a.id]) == [ja, jc]
    assert await listed(uuids=[e1.upper()]) == [ja, jb]
    assert await listed(ids=[jc, jb]) == [jb, jc]
    assert await listed(selectors=[sel("env", label_pb2.EQ, "prod")]) == [ja, jc]
    assert await listed(selectors=[sel("x", label_pb2.EXIST)]) == [jc]
    assert await listed(node_ids=[a.id], selectors=[sel("x", label_pb2.NOT_EXIST)]) == [ja]


@pytest.mark.asyncio
async def test_revoke_update_delete_job(peer: Peer) -> None:
    n = await peer.register(1)
    ext = str(uuid.uuid4())
    p1 = await peer.propose(n.id, ext, [lbl("env", "prod")])
    p2 = await peer.propose(n.id, ext)

    # an old revision cannot be revoked by its proposal id; the latest can, by job id
    code, _ = await status_of(peer.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=p1.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    revoked = (await peer.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=p1.job_id))).proposal
    assert revoked.id == p2.id and revoked.status == job_pb2.PROPOSAL_STATUS_REVOKED
    code, _ = await status_of(peer.jobs.RevokeJob(job_pb2.RevokeJobRequest(id=p2.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # already REVOKED

    policy = (
        await peer.policies.CreateRollbackPolicy(probation_pb2.CreateRollbackPolicyRequest())
    ).rollback_policy
    updated = (
        await peer.jobs.UpdateJob(
            job_pb2.UpdateJobRequest(
                id=p1.job_id, labels=[lbl("env", "dev")], rollback_policy_id=int(policy.id)
            )
        )
    ).job
    assert [(x.key, x.value) for x in updated.labels] == [("env", "dev")]
    assert updated.HasField("rollback_policy_id")
    assert updated.rollback_policy_id == int(policy.id)

    deleted = (await peer.jobs.DeleteJob(job_pb2.DeleteJobRequest(id=p1.job_id))).job
    assert deleted.HasField("deleted_at")
    assert deleted.rollback_policy_id == int(policy.id)
    listed = await peer.jobs.ListJobs(job_pb2.ListJobsRequest())
    assert list(listed.jobs) == []
    with_deleted = await peer.jobs.ListJobs(
        job_pb2.ListJobsRequest(filter=job_pb2.ListJobsRequest.Filter(include_deleted=True))
    )
    assert [j.id for j in with_deleted.jobs] == [p1.job_id]
    assert with_deleted.jobs[0] == deleted

    # re-proposing a deleted job revives it with the next revision
    p3 = await peer.propose(n.id, ext)
    assert p3.revision == 3 and p3.job_id == p1.job_id
    revived = (await peer.jobs.GetJob(job_pb2.GetJobRequest(id=p1.job_id))).job
    assert not revived.HasField("deleted_at")


# ------------------------------------------------- CSA, App, RollbackPolicies


@pytest.mark.asyncio
async def test_csa_keypairs_and_version(peer: Peer) -> None:
    kp = (await peer.csa.GetKeypair(csa_pb2.GetKeypairRequest())).keypair
    assert kp.id == 1 and len(kp.public_key) == 64 and int(kp.public_key, 16) >= 0
    assert kp.HasField("created_at")
    listed = await peer.csa.ListKeypairs(csa_pb2.ListKeypairsRequest())
    assert list(listed.keypairs) == [kp]
    version = await peer.app.Version(app_pb2.VersionRequest())
    assert version.version == jdkit.__version__


NESTED_POLICY: dict[str, Any] = {
    "max_failures": 3,
    "window": "10m",
    "enabled": True,
    "disabled": False,
    "nothing": None,
    "ratio": -0.25,
    "huge": 1e300,
    "text": "ünïcode ☃",
    "empty_obj": {},
    "empty_list": [],
    "steps": [
        {"action": "pause", "for": 30, "when": {"errors": [">", 5]}},
        ["nested", ["deeper", None, True]],
        1.5,
    ],
}


def struct_of(d: dict[str, Any]) -> Any:
    s = struct_pb2.Struct()
    s.update(d)
    return s


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


# ------------------------------------------------------------------- health


@pytest.mark.asyncio
async def test_health_check(peer: Peer) -> None:
    Req = health_pb2.HealthCheckRequest
    SERVING = health_pb2.HealthCheckResponse.SERVING
    assert (await peer.health.Check(Req())).status == SERVING
    for svc in ("api.node.v1.NodeService", "api.job.v1.JobService", "api.csa.v1.CSAService"):
        assert (await peer.health.Check(Req(service=svc))).status == SERVING
    code, _ = await status_of(peer.health.Check(Req(service="no.such.Service")))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.asyncio
async def test_health_watch_follows_shutdown(peer: Peer) -> None:
    R = health_pb2.HealthCheckResponse
    call = peer.health.Watch(health_pb2.HealthCheckRequest())
    first = await asyncio.wait_for(call.read(), 5)
    assert first.status == R.SERVING
    unknown = peer.health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert (await asyncio.wait_for(unknown.read(), 5)).status == R.SERVICE_UNKNOWN

    stopping = asyncio.create_task(peer.srv.stop())
    second = await asyncio.wait_for(call.read(), 5)
    assert second.status == R.NOT_SERVING
    assert await asyncio.wait_for(call.read(), 5) is aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 10)


# ------------------------------------------------------------------ latency


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


# ------------------------------------------------------------- error codes


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


# ------------------------------------------------------ malformed requests


def _raw(channel: aio.Channel, path: str) -> Any:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    return channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", rpc_paths(streaming=False))
async def test_garbage_request_body_is_invalid_argument(peer: Peer, path: str) -> None:
    code, details = await status_of(_raw(peer.channel, path)(b"\xff\xff\xff", timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "decode" in details


@pytest.mark.asyncio
async def test_garbage_request_body_on_server_stream_is_invalid_argument(peer: Peer) -> None:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    (path,) = rpc_paths(streaming=True)
    call = peer.channel.unary_stream(
        path, request_serializer=identity, response_deserializer=identity
    )(b"\xff\xff\xff", timeout=10)
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\x05ab",  # field 1, length 5, only 2 bytes follow
        b"\x0a",  # a tag with no length
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # varint longer than 10 bytes
        b"\x0f",  # wire type 7 does not exist
    ],
    ids=["truncated-string", "dangling-tag", "overlong-varint", "bad-wire-type"],
)
async def test_malformed_protobuf_is_invalid_argument(peer: Peer, body: bytes) -> None:
    code, details = await status_of(
        _raw(peer.channel, "/api.node.v1.NodeService/GetNode")(body, timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details


@pytest.mark.asyncio
async def test_empty_body_is_the_default_message(peer: Peer) -> None:
    # zero bytes are a valid encoding of any message: every field at its default
    reply = await _raw(peer.channel, "/api.app.v1.AppService/Version")(b"", timeout=10)
    assert app_pb2.VersionResponse.FromString(reply).version == jdkit.__version__


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/api.node.v1.NodeService/NoSuchMethod",
        "/api.node.v1.NoSuchService/GetNode",
        "/api.node.v2.NodeService/GetNode",
        "/grpc.health.v1.Health/List",
    ],
)
async def test_unknown_method_is_unimplemented(peer: Peer, path: str) -> None:
    code, _ = await status_of(_raw(peer.channel, path)(b"", timeout=10))
    assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.asyncio
async def test_unknown_fields_are_ignored(peer: Peer) -> None:
    # a newer client may send fields this server does not know (field 99, varint)
    body = node_pb2.RegisterNodeRequest(name="n", public_key=pubkey(7)).SerializeToString()
    reply = await _raw(peer.channel, "/api.node.v1.NodeService/RegisterNode")(
        body + b"\x98\x06\x01", timeout=10
    )
    assert node_pb2.RegisterNodeResponse.FromString(reply).node.public_key == pubkey(7)


# ----------------------------------------------- wire format, both directions


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
    raw_calls = [
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
        reply = await _raw(peer.channel, path)(request.SerializeToString(), timeout=10)
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


# ------------------------------------------------------------- descriptors


def _compile_descriptor_set(out: Path) -> Any:
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    rc = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *files,
        ]
    )
    assert rc == 0, "protoc failed on proto/"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def descriptor_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    if not REFERENCE_DESC.exists():
        if os.environ.get("CI"):
            pytest.fail("shared/jd-api/jd-v1.desc not found beside the checkout (set JD_API_DESC)")
        pytest.skip(f"reference descriptor set {REFERENCE_DESC} is not available")
    ours = _compile_descriptor_set(tmp_path_factory.mktemp("desc") / "jdkit.desc")
    ref = descriptor_pb2.FileDescriptorSet.FromString(REFERENCE_DESC.read_bytes())
    return {f.name: f for f in ours.file}, {f.name: f for f in ref.file}


def _field_facts(f: Any) -> tuple[Any, ...]:
    return (
        f.name,
        f.number,
        f.type,
        f.label,
        f.type_name,
        f.json_name,
        f.HasField("oneof_index") and f.oneof_index,
        f.proto3_optional,
        f.default_value,
        f.extendee,
    )


def _enum_facts(e: Any) -> tuple[Any, ...]:
    return (e.name, tuple((v.name, v.number) for v in e.value))


def _message_facts(m: Any) -> tuple[Any, ...]:
    return (
        m.name,
        tuple(_field_facts(f) for f in m.field),
        tuple(o.name for o in m.oneof_decl),
        tuple(_message_facts(n) for n in m.nested_type),
        tuple(_enum_facts(e) for e in m.enum_type),
        m.options.map_entry,
        tuple((r.start, r.end) for r in m.reserved_range),
        tuple(m.reserved_name),
    )


def _file_facts(fd: Any) -> dict[str, Any]:
    return {
        "package": fd.package,
        "syntax": fd.syntax,
        "dependency": tuple(fd.dependency),
        "messages": tuple(_message_facts(m) for m in fd.message_type),
        "enums": tuple(_enum_facts(e) for e in fd.enum_type),
        "services": tuple(
            (
                s.name,
                tuple(
                    (m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                    for m in s.method
                ),
            )
            for s in fd.service
        ),
    }


def test_descriptor_files_match_reference(descriptor_sets: tuple[dict[str, Any], Any]) -> None:
    ours, ref = descriptor_sets
    assert set(ref) <= set(ours), f"missing: {sorted(set(ref) - set(ours))}"
    # the extra files: the standard health service, which the reference leaves
    # out, and the node-facing protocol (checked against feeds-v1.desc in tests/wsrpc)
    assert set(ours) - set(ref) == {
        "grpc/health/v1/health.proto",
        "orchestrator/feedsmanager/feedsmanager.proto",
        "wsrpc/message.proto",
    }
    assert ours["grpc/health/v1/health.proto"].package == "grpc.health.v1"


@pytest.mark.parametrize(
    "name",
    [
        "v1/app/app.proto",
        "v1/csa/csa.proto",
        "v1/job/job.proto",
        "v1/node/node.proto",
        "v1/probation/probation.proto",
        "v1/shared/ptypes/label.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/struct.proto",
    ],
)
def test_descriptor_wire_contract_identical(
    descriptor_sets: tuple[dict[str, Any], Any], name: str
) -> None:
    """Names, packages, messages, fields (number/type/label/type_name), oneofs,
    enum values, services and methods: everything that reaches the wire."""
    ours, ref = descriptor_sets
    a, b = _file_facts(ours[name]), _file_facts(ref[name])
    for key in b:
        assert a[key] == b[key], f"{name}: {key} differs"


def _normalised(fd: Any) -> Any:
    """The file descriptor without comments and without empty option messages
    (`rpc X(A) returns (B) {}` records an empty MethodOptions, `...;` none)."""
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(fd)
    out.ClearField("source_code_info")
    for svc in out.service:
        for m in svc.method:
            if m.HasField("options") and m.options.ByteSize() == 0:
                m.ClearField("options")
    return out


def test_descriptor_options_identical(descriptor_sets: tuple[dict[str, Any], Any]) -> None:
    """Options too (go_package, deprecated on the uuid fields, map entries):
    the whole descriptor equals the reference, up to empty option messages."""
    ours, ref = descriptor_sets
    for name, fd in ref.items():
        assert _normalised(ours[name]) == _normalised(fd), name
        assert ours[name].options.go_package == fd.options.go_package


def test_descriptor_known_cosmetic_differences(
    descriptor_sets: tuple[dict[str, Any], Any],
) -> None:
    """Byte-for-byte the descriptors differ only where listed here (none affects the wire)."""
    ours, ref = descriptor_sets
    differing = set()
    for name, fd in ref.items():
        a = descriptor_pb2.FileDescriptorProto()
        a.CopyFrom(ours[name])
        a.ClearField("source_code_info")
        if a != fd:
            differing.add(name)
    # csa.proto declares `rpc ... {}` (empty MethodOptions); the reference has `rpc ...;`
    assert differing <= {"v1/csa/csa.proto"}
