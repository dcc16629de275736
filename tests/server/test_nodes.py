"""NodeService on the embedded JD, over real gRPC with the jdkit client."""

from __future__ import annotations

from typing import Any

import pytest

from jdkit import (
    AlreadyExistsError,
    InvalidArgumentError,
    JobDistributor,
    NotFoundError,
)
from jdkit._server import EmbeddedJD
from jdkit.pb import label, node
from tests.helpers.server_fixtures import add_node, lbl, pubkey

Op = label.SelectorOp
Env = tuple[EmbeddedJD, JobDistributor]


@pytest.mark.asyncio
async def test_register_creates_enabled_unconnected_node(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 1, labels=[lbl("env", "dev"), lbl("bare")])
    assert n.id.startswith("node_") and n.name == "node-1"
    assert n.public_key == pubkey(1)
    assert n.is_enabled and not n.is_connected
    assert [(x.key, x.value) for x in n.labels] == [("env", "dev"), ("bare", None)]
    assert n.created_at is not None and n.created_at == n.updated_at
    again = (await jd.get_node(node.GetNodeRequest(id=n.id))).node
    assert again is not None and again.to_dict() == n.to_dict()


@pytest.mark.asyncio
async def test_ids_are_unique_and_sortable(env: Env) -> None:
    _, jd = env
    ids = [(await add_node(jd, i)).id for i in range(20)]
    assert len(set(ids)) == 20 and ids == sorted(ids)


@pytest.mark.asyncio
async def test_register_rejects_duplicate_public_key(env: Env) -> None:
    _, jd = env
    first = await add_node(jd, 1)
    with pytest.raises(AlreadyExistsError) as info:
        await add_node(jd, 1, name="other")
    assert first.id in info.value.message
    # case does not make a key different
    with pytest.raises(AlreadyExistsError):
        await jd.register_node(node.RegisterNodeRequest(name="x", public_key=pubkey(1).upper()))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "key", "needle"),
    [
        ("n", "", "public_key"),
        ("n", "abc", "public_key"),
        ("n", "zz" * 32, "public_key"),
        ("n", "ab" * 33, "public_key"),
        ("n", "0x" + "ab" * 31, "public_key"),
        ("", pubkey(5), "name"),
    ],
)
async def test_register_validates(env: Env, name: str, key: str, needle: str) -> None:
    _, jd = env
    with pytest.raises(InvalidArgumentError) as info:
        await jd.register_node(node.RegisterNodeRequest(name=name, public_key=key))
    assert needle in info.value.message


@pytest.mark.asyncio
async def test_register_rejects_bad_labels(env: Env) -> None:
    _, jd = env
    with pytest.raises(InvalidArgumentError, match="appears more than once"):
        await add_node(jd, 1, labels=[lbl("a", "1"), lbl("a", "2")])
    with pytest.raises(InvalidArgumentError, match="key is empty"):
        await add_node(jd, 1, labels=[lbl("", "1")])


@pytest.mark.asyncio
async def test_get_node_by_id_or_public_key(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 7)
    by_key = (await jd.get_node(node.GetNodeRequest(public_key=pubkey(7)))).node
    assert by_key is not None and by_key.id == n.id
    by_upper = (await jd.get_node(node.GetNodeRequest(public_key=pubkey(7).upper()))).node
    assert by_upper is not None and by_upper.id == n.id
    with pytest.raises(NotFoundError):
        await jd.get_node(node.GetNodeRequest(id="node_nope"))
    with pytest.raises(NotFoundError):
        await jd.get_node(node.GetNodeRequest(public_key=pubkey(8)))
    with pytest.raises(NotFoundError):  # both given: both must match
        await jd.get_node(node.GetNodeRequest(id=n.id, public_key=pubkey(8)))
    with pytest.raises(InvalidArgumentError):
        await jd.get_node(node.GetNodeRequest())


@pytest.mark.asyncio
async def test_list_nodes_filters(env: Env) -> None:
    _, jd = env
    a = await add_node(jd, 1, labels=[lbl("env", "prod"), lbl("team", "a")])
    b = await add_node(jd, 2, labels=[lbl("env", "dev"), lbl("team", "a")])
    c = await add_node(jd, 3, labels=[lbl("env", "prod")])
    await jd.disable_node(node.DisableNodeRequest(id=c.id))

    async def ids(**f: Any) -> list[str]:
        resp = await jd.list_nodes(node.ListNodesRequest(filter=node.ListNodesRequestFilter(**f)))
        assert resp.total_count == len(resp.nodes)
        return [n.id for n in resp.nodes]

    assert await ids() == [a.id, b.id, c.id]
    assert await ids(ids=[c.id, a.id]) == [a.id, c.id]
    assert await ids(public_keys=[pubkey(2)]) == [b.id]
    assert await ids(enabled=node.EnableState.ENABLED) == [a.id, b.id]
    assert await ids(enabled=node.EnableState.DISABLED) == [c.id]
    sel = label.Selector
    assert await ids(selectors=[sel(key="env", op=Op.EQ, value="prod")]) == [a.id, c.id]
    assert await ids(
        selectors=[sel(key="env", op=Op.EQ, value="prod"), sel(key="team", op=Op.EXIST)]
    ) == [a.id]
    assert await ids(selectors=[sel(key="team", op=Op.NOT_EXIST)]) == [c.id]
    assert await ids(selectors=[sel(key="env", op=Op.IN, value="dev, qa")]) == [b.id]
    assert await ids(ids=[a.id], enabled=node.EnableState.DISABLED) == []
    assert await ids(ids=["node_unknown"]) == []
    # more ids than go into SQL: filtered in Python, same answer
    many = [f"node_x{i}" for i in range(1000)] + [b.id]
    assert await ids(ids=many) == [b.id]
    many_sel = [sel(key="team", op=Op.EXIST)] * 40 + [sel(key="env", op=Op.EQ, value="dev")]
    assert await ids(selectors=many_sel) == [b.id]


@pytest.mark.asyncio
async def test_list_nodes_paging(env: Env) -> None:
    _, jd = env
    made = [(await add_node(jd, i)).id for i in range(7)]

    async def page(size: int, number: int) -> tuple[list[str], int]:
        resp = await jd.list_nodes(node.ListNodesRequest(page_size=size, page=number))
        return [n.id for n in resp.nodes], resp.total_count

    assert await page(0, 0) == (made, 7)
    assert await page(0, 3) == (made, 7)  # page_size 0: everything
    assert await page(3, 0) == (made[:3], 7)  # page 0 means 1
    assert await page(3, 1) == (made[:3], 7)
    assert await page(3, 2) == (made[3:6], 7)
    assert await page(3, 3) == (made[6:], 7)
    assert await page(3, 4) == ([], 7)
    assert await page(2**31 - 1, 2**31 - 1) == ([], 7)
    # paging with a filter SQL cannot do exactly
    flt = node.ListNodesRequestFilter(ids=[f"node_x{i}" for i in range(500)] + made[2:])
    resp = await jd.list_nodes(node.ListNodesRequest(filter=flt, page_size=2, page=2))
    assert [n.id for n in resp.nodes] == made[4:6] and resp.total_count == 5
    for size, number in [(-1, 1), (1, -1)]:
        with pytest.raises(InvalidArgumentError):
            await jd.list_nodes(node.ListNodesRequest(page_size=size, page=number))


@pytest.mark.asyncio
async def test_list_nodes_unknown_enable_state_is_invalid(env: Env) -> None:
    _, jd = env
    flt = node.ListNodesRequestFilter(enabled=node.EnableState(9))
    with pytest.raises(InvalidArgumentError, match="EnableState"):
        await jd.list_nodes(node.ListNodesRequest(filter=flt))


@pytest.mark.asyncio
async def test_update_node(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 1, labels=[lbl("env", "dev")])
    other = await add_node(jd, 2)
    same = (await jd.update_node(node.UpdateNodeRequest(id=n.id))).node
    assert same is not None and same.to_dict() == n.to_dict()  # empty = unchanged
    up = (await jd.update_node(node.UpdateNodeRequest(id=n.id, name="renamed"))).node
    assert up is not None and up.name == "renamed" and up.labels == n.labels
    assert up.public_key == n.public_key
    assert up.updated_at is not None and n.updated_at is not None
    assert up.updated_at > n.updated_at
    up2 = (
        await jd.update_node(
            node.UpdateNodeRequest(id=n.id, public_key=pubkey(3), labels=[lbl("team", "b")])
        )
    ).node
    assert up2 is not None and up2.public_key == pubkey(3)
    assert [(x.key, x.value) for x in up2.labels] == [("team", "b")]  # replaced
    sel = label.Selector(key="env", op=Op.EXIST)
    listed = await jd.list_nodes(
        node.ListNodesRequest(filter=node.ListNodesRequestFilter(selectors=[sel]))
    )
    assert listed.nodes == []  # the label index follows the replacement
    with pytest.raises(AlreadyExistsError):
        await jd.update_node(node.UpdateNodeRequest(id=n.id, public_key=other.public_key))
    with pytest.raises(InvalidArgumentError):
        await jd.update_node(node.UpdateNodeRequest(id=n.id, public_key="nothex"))
    with pytest.raises(NotFoundError):
        await jd.update_node(node.UpdateNodeRequest(id="node_nope", name="x"))
    with pytest.raises(InvalidArgumentError):
        await jd.update_node(node.UpdateNodeRequest(name="x"))


@pytest.mark.asyncio
async def test_enable_disable(env: Env) -> None:
    _, jd = env
    n = await add_node(jd, 1)
    off = (await jd.disable_node(node.DisableNodeRequest(id=n.id))).node
    assert off is not None and not off.is_enabled
    assert off.updated_at is not None and n.updated_at is not None
    assert off.updated_at > n.updated_at
    again = (await jd.disable_node(node.DisableNodeRequest(id=n.id))).node
    assert again is not None and again.updated_at == off.updated_at  # no change, no move
    on = (await jd.enable_node(node.EnableNodeRequest(id=n.id))).node
    assert on is not None and on.is_enabled
    for call in (
        jd.enable_node(node.EnableNodeRequest(id="node_nope")),
        jd.disable_node(node.DisableNodeRequest(id="node_nope")),
    ):
        with pytest.raises(NotFoundError):
            await call
    with pytest.raises(InvalidArgumentError):
        await jd.enable_node(node.EnableNodeRequest(id=""))


@pytest.mark.asyncio
async def test_connected_flag_is_played_from_python(env: Env) -> None:
    srv, jd = env
    n = await add_node(jd, 1)
    await srv.set_node_connected(n.id)
    got = (await jd.get_node(node.GetNodeRequest(id=n.id))).node
    assert got is not None and got.is_connected
    await srv.set_node_connected(n.id, False)
    got = (await jd.get_node(node.GetNodeRequest(id=n.id))).node
    assert got is not None and not got.is_connected
    with pytest.raises(NotFoundError):
        await srv.set_node_connected("node_nope")


def _cfg(chain_id: str, kind: node.ChainType, account: str) -> node.ChainConfig:
    return node.ChainConfig(
        chain=node.Chain(id=chain_id, type=kind),
        account_address=account,
        admin_address="0xadmin",
        ocr2_config=node.Ocr2Config(
            enabled=True,
            p2p_key_bundle=node.Ocr2ConfigP2PKeyBundle(peer_id="p2p_12D3", public_key="ab"),
        ),
    )


@pytest.mark.asyncio
async def test_chain_configs(env: Env) -> None:
    srv, jd = env
    a, b = await add_node(jd, 1), await add_node(jd, 2)
    await srv.add_chain_config(a.id, _cfg("1", node.ChainType.EVM, "0xa1"))
    await srv.add_chain_config(a.id, _cfg("1", node.ChainType.SOLANA, "sol"))
    await srv.add_chain_config(b.id, _cfg("1", node.ChainType.EVM, "0xb1"))
    await srv.add_chain_config(a.id, _cfg("1", node.ChainType.EVM, "0xa2"))  # replaces
    everything = (await jd.list_node_chain_configs()).chain_configs
    assert len(everything) == 3
    only_a = (
        await jd.list_node_chain_configs(
            node.ListNodeChainConfigsRequest(
                filter=node.ListNodeChainConfigsRequestFilter(node_ids=[a.id])
            )
        )
    ).chain_configs
    assert {(c.node_id, c.chain.type if c.chain else None, c.account_address) for c in only_a} == {
        (a.id, node.ChainType.EVM, "0xa2"),
        (a.id, node.ChainType.SOLANA, "sol"),
    }
    assert only_a[0].ocr2_config is not None and only_a[0].ocr2_config.p2p_key_bundle
    none = await jd.list_node_chain_configs(
        node.ListNodeChainConfigsRequest(
            filter=node.ListNodeChainConfigsRequestFilter(node_ids=["node_nope"])
        )
    )
    assert none.chain_configs == []
    with pytest.raises(NotFoundError):
        await srv.add_chain_config("node_nope", _cfg("1", node.ChainType.EVM, "x"))
    with pytest.raises(InvalidArgumentError):
        await srv.add_chain_config(a.id, node.ChainConfig(account_address="no chain"))
