"""NodeService through Google's grpcio client: labels, lookups, selectors, paging, chain configs."""

from __future__ import annotations

from typing import Any

import pytest

from jdkit.pb import node
from tests.helpers.grpcio_peer import (
    Peer,
    chain_config_bp,
    chain_config_pb2,
    label_pb2,
    lbl,
    node_pb2,
    pubkey,
    sel,
)


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


@pytest.mark.asyncio
async def test_list_node_chain_configs(peer: Peer) -> None:
    a = await peer.register(1)
    b = await peer.register(2)
    await peer.srv.add_chain_config(a.id, chain_config_bp("ignored-the-server-sets-it"))
    await peer.srv.add_chain_config(
        b.id,
        node.ChainConfig(chain=node.Chain(id="5", type=node.ChainType.SOLANA)),
    )
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
