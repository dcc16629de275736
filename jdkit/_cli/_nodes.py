"""`jdkit nodes ...`"""

from __future__ import annotations

import click

from jdkit._cli._app import (
    label_option,
    read_command,
    run,
    selector_option,
    state,
    wide_option,
    write_command,
)
from jdkit._cli._config import UsageError
from jdkit._cli._inputs import labels_of, selectors_of
from jdkit.pb import node

#: Page size `nodes list` walks every page with.
LIST_PAGE = 500


@click.group()
def nodes() -> None:
    """Register, inspect and change nodes."""


@nodes.command("list")
@click.option("--id", "ids", multiple=True, metavar="ID", help="only this node id (repeatable)")
@click.option(
    "--public-key", "keys", multiple=True, metavar="KEY", help="only this key (repeatable)"
)
@click.option("--enabled/--disabled", default=None, help="only enabled / only disabled nodes")
@selector_option("only nodes matching this label selector")
@click.option("--page-size", type=click.IntRange(min=1), help="fetch one page of this size")
@click.option("--page", type=click.IntRange(min=1), help="which page (1-based; with --page-size)")
@wide_option
@read_command
def nodes_list(
    ids: tuple[str, ...],
    keys: tuple[str, ...],
    enabled: bool | None,
    selector: tuple[str, ...],
    page_size: int | None,
    page: int | None,
) -> int:
    """List nodes (every page, unless --page-size asks for one)."""
    st = state()
    out = st.output()
    sels = selectors_of(selector)
    if page is not None and page_size is None:
        raise UsageError("--page needs --page-size")

    async def go() -> None:
        async with st.connect(out) as jd:
            filters = dict(selector=sels, enabled=enabled, ids=list(ids), public_keys=list(keys))
            if page_size is not None:
                with out.waiting("listing nodes"):
                    resp = await jd.list_nodes(page_size=page_size, page=page, **filters)
                out.result(resp)
                return
            got: list[node.Node] = []
            with out.progress("listing nodes", None) as advance:
                async for n in jd.iter_nodes(page_size=LIST_PAGE, **filters):
                    got.append(n)
                    advance(1)
        out.result(node.ListNodesResponse(nodes=got, total_count=len(got)))

    return run(go())


@nodes.command("get")
@click.argument("node_id", metavar="[ID]", required=False)
@click.option("--public-key", metavar="KEY", help="find the node by its CSA public key instead")
@read_command
def nodes_get(node_id: str | None, public_key: str | None) -> int:
    """Show one node, by id or --public-key."""
    if bool(node_id) == bool(public_key):
        raise UsageError("nodes get: give a node ID or --public-key (one of the two)")
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            resp = await jd.get_node(id=node_id or None, public_key=public_key)
        out.result(resp.node, data=resp)

    return run(go())


@nodes.command("register")
@click.option("--name", required=True, help="the node's name")
@click.option("--public-key", required=True, metavar="KEY", help="the node's CSA public key (hex)")
@label_option("a label")
@click.option(
    "--ensure",
    is_flag=True,
    help="if a node has this key already, return it (renamed/relabelled to match) "
    "instead of failing",
)
@write_command
def nodes_register(name: str, public_key: str, labels: tuple[str, ...], ensure: bool) -> int:
    """Register a node."""
    st = state()
    out = st.output()
    lbls = labels_of(labels)

    async def go() -> None:
        async with st.connect(out) as jd:
            if ensure:
                n = await jd.ensure_node(name, public_key, lbls if labels else None)
                st.emit(out, n, title="node", data=node.GetNodeResponse(node=n))
                return
            resp = await jd.register_node(
                node.RegisterNodeRequest(name=name, public_key=public_key, labels=lbls)
            )
            st.emit(out, resp, title="registered")

    return run(go())


@nodes.command("update")
@click.argument("node_id", metavar="ID")
@click.option("--name", default="", help="new name")
@click.option("--public-key", default="", metavar="KEY", help="new CSA public key")
@label_option("replaces all labels when given")
@write_command
def nodes_update(node_id: str, name: str, public_key: str, labels: tuple[str, ...]) -> int:
    """Change a node's name, key or labels."""
    if not (name or public_key or labels):
        raise UsageError("nodes update: nothing to change; give --name, --public-key or --label")
    st = state()
    out = st.output()
    req = node.UpdateNodeRequest(
        id=node_id, name=name, public_key=public_key, labels=labels_of(labels)
    )

    async def go() -> None:
        async with st.connect(out) as jd:
            st.emit(out, await jd.update_node(req), title="updated")

    return run(go())


def _toggle(verb: str, enable: bool) -> click.Command:
    @click.argument("node_id", metavar="ID")
    @write_command
    def cmd(node_id: str) -> int:
        st = state()
        out = st.output()

        async def go() -> None:
            async with st.connect(out) as jd:
                if enable:
                    resp = await jd.enable_node(node.EnableNodeRequest(id=node_id))
                else:
                    resp = await jd.disable_node(node.DisableNodeRequest(id=node_id))
                st.emit(out, resp, title=f"{verb}d")

        return run(go())

    cmd.__doc__ = f"{verb.capitalize()} a node."
    return click.command(verb)(cmd)


nodes.add_command(_toggle("enable", True))
nodes.add_command(_toggle("disable", False))


@nodes.command("chain-configs")
@click.option(
    "--node", "node_ids", multiple=True, metavar="ID", help="only this node's (repeatable)"
)
@wide_option
@read_command
def nodes_chain_configs(node_ids: tuple[str, ...]) -> int:
    """List the chain configs nodes reported."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            with out.waiting("listing chain configs"):
                resp = await jd.list_node_chain_configs(node_ids=list(node_ids))
        out.result(resp)

    return run(go())
