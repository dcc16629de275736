"""SimulatedNode against the embedded JD's node port: real TLS 1.3, real
websockets, loopback. What an operator sees through the v1 API is what the
node did over the protocol."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from jdkit import JDError, SimulatedNode
from jdkit._proto import cfm
from jdkit._wsrpc._errors import (
    JDKeyMismatchError,
    NodeAlreadyConnectedError,
    NodeKeyRefusedError,
    WsrpcCallError,
)
from jdkit.pb import job, node
from tests.helpers.wsrpc_helpers import Env, eventually, free_port, jd_env, spec

S = job.ProposalStatus
D = job.ProposalDeliveryStatus
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async with jd_env() as e:
        yield e


async def test_connect_shows_is_connected_and_disconnect_clears_it(env: Env) -> None:
    n = env.node()
    node_id = await env.register(n)
    assert not (await env.get_node(node_id)).is_connected
    async with n:
        assert n.connected and n.connections == 1
        assert (await env.get_node(node_id)).is_connected
        assert env.srv.nodeport.connected == {node_id: n.public_key}
    await eventually(lambda: env.get_node(node_id), what="GetNode")
    await eventually(
        lambda: _not_connected(env, node_id), what="is_connected False after the node left"
    )


async def _not_connected(env: Env, node_id: str) -> bool:
    return not (await env.get_node(node_id)).is_connected


async def test_deliver_and_approve(env: Env) -> None:
    n = env.node(on_proposal="approve")
    node_id = await env.register(n)
    async with n:
        prop = await env.propose(node_id)
        (got,) = await n.wait_for_proposals(1)
        assert got.id == await env.job_uuid(prop)
        assert got.version == 1 and "offchainreporting2" in got.spec and got.multiaddrs == []
        await n.wait_until(lambda: got.answer == "approved")
        p = await env.proposal(prop.id)
        assert p.status == S.APPROVED and p.delivery_status == D.ACKNOWLEDGED
        assert p.acked_at is not None and p.response_received_at is not None


async def test_reject_policy(env: Env) -> None:
    n = env.node(on_proposal="reject")
    node_id = await env.register(n)
    async with n:
        prop = await env.propose(node_id)
        await n.wait_until(lambda: bool(n.proposals) and n.proposals[0].answer == "rejected")
        p = await env.proposal(prop.id)
        assert p.status == S.REJECTED and p.delivery_status == D.ACKNOWLEDGED


async def test_ignore_then_answer_by_hand_and_cancel(env: Env) -> None:
    n = env.node(on_proposal="ignore")
    node_id = await env.register(n)
    async with n:
        prop = await env.propose(node_id)
        (got,) = await n.wait_for_proposals(1)
        p = await eventually(
            lambda: _status_is(env, prop.id, S.PROPOSED, D.DELIVERED), what="DELIVERED"
        )
        assert p.acked_at is None
        await n.approve(got.id)
        assert (await env.proposal(prop.id)).status == S.APPROVED
        await n.cancel(got.id)
        assert (await env.proposal(prop.id)).status == S.CANCELLED


async def _status_is(env: Env, prop_id: str, status: int, delivery: int) -> job.Proposal | None:
    p = await env.proposal(prop_id)
    return p if (p.status, p.delivery_status) == (status, delivery) else None


async def test_callable_policy(env: Env) -> None:
    seen = []

    async def policy(p: object) -> str:
        seen.append(p)
        return "reject" if len(seen) == 1 else "approve"

    n = env.node(on_proposal=policy)
    node_id = await env.register(n)
    async with n:
        first, second = await env.propose(node_id), await env.propose(node_id)
        await n.wait_until(lambda: len(n.proposals) == 2 and all(p.answer for p in n.proposals))
        assert (await env.proposal(first.id)).status == S.REJECTED
        assert (await env.proposal(second.id)).status == S.APPROVED


async def test_offline_backlog_is_delivered_on_connect(env: Env) -> None:
    n = env.node(on_proposal="ignore")
    node_id = await env.register(n)
    props = [await env.propose(node_id) for _ in range(3)]
    for prop in props:
        p = await env.proposal(prop.id)
        assert p.delivery_status == D.UNSPECIFIED
    async with n:
        got = await n.wait_for_proposals(3)
        assert [g.id for g in got] == [await env.job_uuid(p) for p in props]
        for prop in props:
            await eventually(functools.partial(_status_is, env, prop.id, S.PROPOSED, D.DELIVERED))


async def test_revoke_and_delete_reach_the_node(env: Env) -> None:
    n = env.node(on_proposal="ignore")
    node_id = await env.register(n)
    async with n:
        prop = await env.propose(node_id)
        (got,) = await n.wait_for_proposals(1)
        await env.jd.revoke_job(job.RevokeJobRequest(id=prop.job_id))
        await n.wait_until(lambda: n.revoked == [got.id])
        assert got.revoked
        # the answer for a revoked proposal is refused, with the reason as text
        with pytest.raises(WsrpcCallError, match="REVOKED"):
            await n.approve(got.id)
        assert (await env.proposal(prop.id)).status == S.REVOKED

        prop2 = await env.propose(node_id)
        _, got2 = await n.wait_for_proposals(2)
        await env.jd.delete_job(job.DeleteJobRequest(id=prop2.job_id))
        await n.wait_until(lambda: n.deleted == [got2.id])
        with pytest.raises(WsrpcCallError, match="deleted"):
            await n.approve(got2.id)


async def test_stale_revision_cannot_be_approved(env: Env) -> None:
    n = env.node(on_proposal="ignore")
    node_id = await env.register(n)
    async with n:
        v1 = await env.propose(node_id, "6f2d1c1e-0000-4000-8000-000000000001")
        v2 = await env.propose(node_id, "6f2d1c1e-0000-4000-8000-000000000001")
        await n.wait_for_proposals(2)
        assert [p.version for p in n.proposals] == [1, 2]
        with pytest.raises(WsrpcCallError, match="stale"):
            await n.approve(n.proposals[0])
        await n.reject(n.proposals[0])  # an older revision may still be declined
        await n.approve(n.proposals[1])
        assert (await env.proposal(v1.id)).status == S.REJECTED
        assert (await env.proposal(v2.id)).status == S.APPROVED
        with pytest.raises(WsrpcCallError, match="no proposal version 7"):
            await n.call(
                "ApprovedJob",
                cfm.ApprovedJobRequest(uuid=n.proposals[1].id, version=7),
                cfm.ApprovedJobResponse,
            )


async def test_update_node_fills_chain_configs_and_node_fields(env: Env) -> None:
    cfg = node.ChainConfig(
        chain=node.Chain(id="11155111", type=node.ChainType.EVM),
        account_address="0xabc",
        admin_address="0xdef",
        ocr2_config=node.Ocr2Config(
            enabled=True,
            p2p_key_bundle=node.Ocr2ConfigP2PKeyBundle(peer_id="p2p_1", public_key="aa"),
            plugins=node.Ocr2ConfigPlugins(median=True),
            forwarder_address="0xf",
        ),
    )
    bad = node.ChainConfig(chain=node.Chain(id="1", type=node.ChainType.UNSPECIFIED))
    n = env.node(
        chain_configs=[cfg, bad],
        version="2.21.0",
        p2p_key_bundles=[("p2p_1", "aa")],
        workflow_key="wf-key",
        nop_friendly_name="Operator One",
    )
    node_id = await env.register(n)
    async with n:
        assert n.chain_config_errors == {"1": "chain.type is CHAIN_TYPE_UNSPECIFIED"}
        got = await env.get_node(node_id)
        assert (got.version, got.workflow_key, got.nop_friendly_name) == (
            "2.21.0",
            "wf-key",
            "Operator One",
        )
        assert [(b.peer_id, b.public_key) for b in got.p2p_key_bundles] == [("p2p_1", "aa")]
        listed = (await env.jd.list_nodes()).nodes[0]
        assert listed.version == "2.21.0"
        cfgs = (
            await env.jd.list_node_chain_configs(
                node.ListNodeChainConfigsRequest(
                    filter=node.ListNodeChainConfigsRequestFilter(node_ids=[node_id])
                )
            )
        ).chain_configs
        assert len(cfgs) == 1
        expected = node.ChainConfig.parse(bytes(cfg))
        expected.node_id = node_id
        assert cfgs[0] == expected
        # a new report replaces the old one
        n.chain_configs = []
        n.version = "2.22.0"
        assert await n.update_node() == {}
        assert (await env.get_node(node_id)).version == "2.22.0"
        assert not (
            await env.jd.list_node_chain_configs(
                node.ListNodeChainConfigsRequest(
                    filter=node.ListNodeChainConfigsRequestFilter(node_ids=[node_id])
                )
            )
        ).chain_configs


async def test_unknown_key_is_refused_quickly() -> None:
    async with jd_env() as env:
        n = env.node(connect_timeout=30)
        t = time.monotonic()
        with pytest.raises(NodeKeyRefusedError, match="does not know this node's key") as info:
            await n.start()
        assert time.monotonic() - t < 5
        assert isinstance(info.value, JDError)
        assert n.public_key in str(info.value)
        assert env.srv.nodeport.refused >= 1


async def test_wrong_jd_key_is_refused_before_sending(env: Env) -> None:
    n = SimulatedNode(env.srv.node_address, "ab" * 32, connect_timeout=5)
    await env.register(n)
    with pytest.raises(JDKeyMismatchError, match="not the expected JD") as info:
        await n.start()
    assert info.value.got == env.jd_key
    assert env.srv.nodeport.connected == {}


async def test_one_connection_per_key(env: Env) -> None:
    n = env.node(on_proposal="ignore")
    node_id = await env.register(n)
    async with n:
        twin = env.node(private_key=n._key)
        with pytest.raises(NodeAlreadyConnectedError):
            await twin.start()
        assert n.connected
        await env.propose(node_id)
        await n.wait_for_proposals(1)


async def test_disabled_node_is_dropped_and_refused_until_enabled(env: Env) -> None:
    n = env.node()
    node_id = await env.register(n)
    async with n:
        await env.jd.disable_node(node.DisableNodeRequest(id=node_id))
        await eventually(lambda: not n.connected, what="node dropped on disable")
        await eventually(lambda: _not_connected(env, node_id))
        await eventually(lambda: isinstance(n.last_error, NodeKeyRefusedError), what="refused")
        with pytest.raises(NodeKeyRefusedError):
            await env.node(private_key=n._key).start()
        await env.jd.enable_node(node.EnableNodeRequest(id=node_id))
        await n.wait_connected(timeout=5)
        assert (await env.get_node(node_id)).is_connected
        assert n.connections == 2


async def test_rekey_drops_the_old_key(env: Env) -> None:
    old = env.node()
    node_id = await env.register(old)
    new = env.node()
    async with old:
        await env.jd.update_node(node.UpdateNodeRequest(id=node_id, public_key=new.public_key))
        await eventually(lambda: not old.connected, what="old key dropped")
        async with new:
            assert env.srv.nodeport.connected == {node_id: new.public_key}


async def test_reconnect_after_jd_restart(tmp_path: Path) -> None:
    port = free_port()
    db = str(tmp_path / "jd.db")
    async with jd_env(db=db, node_port=port, csa_secret="restart-test-secret") as env:
        n = env.node(on_proposal="approve")
        node_id = await env.register(n)
        await n.start()
    try:
        await eventually(lambda: not n.connected, what="node saw the JD go")
        async with jd_env(db=db, node_port=port, csa_secret="restart-test-secret") as env2:
            await n.wait_connected(timeout=10)
            assert n.connections == 2
            assert (await env2.get_node(node_id)).is_connected
            prop = await env2.propose(node_id)
            await eventually(lambda: _status_is(env2, prop.id, S.APPROVED, D.ACKNOWLEDGED))
    finally:
        await n.stop()


async def test_python_helpers_still_share_the_transitions(env: Env) -> None:
    n = env.node(on_proposal="ignore")
    node_id = await env.register(n)
    async with n:
        prop = await env.propose(node_id)
        await n.wait_for_proposals(1)
        await env.srv.approve_proposal(prop.id)
        with pytest.raises(WsrpcCallError, match="APPROVED"):
            await n.approve(n.proposals[0])  # same rule as the helper: PROPOSED only
    # a node "connected" through the helper (no wsrpc) still gets DELIVERED at once,
    # in the ProposeJob answer itself
    other = await env.jd.register_node(
        node.RegisterNodeRequest(name="helper", public_key="cd" * 32)
    )
    assert other.node is not None
    await env.srv.set_node_connected(other.node.id)
    p = await env.propose(other.node.id)
    assert p.delivery_status == D.DELIVERED


def _approved_first(n: SimulatedNode) -> bool:
    return bool(n.proposals) and n.proposals[0].answer == "approved"


async def test_batch_propose_reaches_every_connected_node(env: Env) -> None:
    nodes = [env.node(on_proposal="approve") for _ in range(5)]
    ids = [await env.register(n) for n in nodes]
    for n in nodes:
        await n.start()
    try:
        resp = await env.jd.batch_propose_job(job.BatchProposeJobRequest(node_ids=ids, spec=spec()))
        assert len(resp.success_responses) == 5
        for n in nodes:
            await n.wait_until(functools.partial(_approved_first, n))
    finally:
        await asyncio.gather(*(n.stop() for n in nodes))


async def test_from_env_serves_node_rpc_port() -> None:
    from jdkit import JobDistributor
    from jdkit._server import EmbeddedJD

    env = {
        "JDKIT_HOST": "127.0.0.1",
        "PORT": "0",
        "HEALTHZ_PORT": "0",
        "NODE_RPC_PORT": "0",
        "CSA_KEY_ENCRYPTION_SECRET": "from-env-secret",
    }
    async with EmbeddedJD.from_env(env) as srv:
        assert srv.node_port
        async with JobDistributor.connect(srv.address, timeout=10) as jd:
            n = SimulatedNode(srv.node_address, await jd.get_csa_public_key())
            await jd.register_node(node.RegisterNodeRequest(name="env", public_key=n.public_key))
            async with n:
                assert n.connected


async def test_refusal_seen_only_after_the_connection_closed_is_still_a_refusal() -> None:
    """Under TLS 1.3 the JD's refusal can close the connection before the node
    looks at the JD's certificate; the node then reads the alert, not a crash."""
    import asyncio as aio

    async with jd_env() as env:
        n = env.node()
        host, port = env.srv.node_address.rsplit(":", 1)
        assert n._ctx is None
        from jdkit._wsrpc._tls import client_context

        reader, writer = await aio.open_connection(host, int(port), ssl=client_context(n._key))
        try:
            await aio.sleep(0.3)  # the JD's alert arrives and it hangs up
            with pytest.raises(NodeKeyRefusedError):
                await n._raise_closed_early(reader)
        finally:
            writer.close()
