"""Reads in a dry run: the server's answer with the planned writes merged in
(read-your-writes), in the server's order and paged as the server pages.

One function per read RPC that planned writes can change, each taking the
overlay, the caller's request and a `_Reader` for the rest of the chain;
with nothing planned of its kind a read goes through unchanged. A ListNodes
page asks the server only for the stretch of its list the page can come
from (the page widened by the number of planned changes to the server's
nodes), so paging through N nodes costs O(N), as it does without a dry run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jdkit._core import rules
from jdkit._core.match import (
    check_paging,
    job_matches,
    node_matches,
    page_offset,
    paginate,
    proposal_matches,
)
from jdkit._dryrun._overlay import Overlay, _copy, _created, _merged, _policy_order, _Reader
from jdkit._exceptions import NotFoundError, RPCError
from jdkit._interceptors import Message
from jdkit.pb import job, node, probation

#: More planned changes to the server's nodes than this, and a ListNodes page
#: reads the whole filtered list (the window, and the filter naming them,
#: would be that large anyway).
WINDOW_MAX = 1000


async def _get_node(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, node.GetNodeRequest)
    if not o.nodes:
        return await read.same()
    missing: RPCError
    try:
        got = await read.same()
    except NotFoundError as exc:
        found, missing = [], exc
    else:
        assert isinstance(got, node.GetNodeResponse)
        found = [got.node] if got.node and got.node.id not in o.nodes else []
        # the server's node is planned to change (its key, say): JD's answer for none
        missing = rules.no_node(r.id, r.public_key)
    key = (r.public_key or "").lower()
    for n in o.nodes.values():
        if (not r.id or n.id == r.id) and (not key or n.public_key == key):
            return node.GetNodeResponse(node=_copy(n))
    if found:
        return node.GetNodeResponse(node=found[0])
    raise missing


async def _server_nodes(
    read: _Reader, flt: node.ListNodesRequestFilter, page_size: int = 0, page: int = 0
) -> node.ListNodesResponse:
    got = await read("ListNodes", node.ListNodesRequest(filter=flt, page_size=page_size, page=page))
    assert isinstance(got, node.ListNodesResponse)
    return got


async def _window(
    read: _Reader, flt: node.ListNodesRequestFilter, lo: int, hi: int
) -> tuple[list[node.Node], int]:
    """The server's filtered list from index `lo` up to `hi` (fewer at its
    end), read as at most two of its pages, and the list's length."""
    size = hi - lo
    first = lo // size  # the page holding `lo`; the next one reaches past `hi`
    got = await _server_nodes(read, flt, size, first + 1)
    nodes, total = list(got.nodes), got.total_count
    if (first + 1) * size < min(hi, total):
        nodes += (await _server_nodes(read, flt, size, first + 2)).nodes
    base = first * size
    return nodes[lo - base : hi - base], total


async def _hidden(
    read: _Reader, flt: node.ListNodesRequestFilter, changed: Sequence[node.Node]
) -> list[tuple[Any, ...]]:
    """The list positions (sort keys) of the server's versions of the changed
    nodes that its filtered list holds: the planned copies replace them."""
    ids = [n.id for n in changed if not flt.ids or n.id in flt.ids]
    if not ids:
        return []
    sub = _copy(flt)
    sub.ids = ids
    return [_created(n) for n in (await _server_nodes(read, sub)).nodes]


async def _list_nodes(o: Overlay, r: Message, read: _Reader) -> Message:
    """Server order (created_at, id) with changed copies in place, then the
    planned new nodes; `total_count` and paging over that merged list."""
    assert isinstance(r, node.ListNodesRequest)
    if not o.nodes:
        return await read.same()
    check_paging(r.page_size, r.page)
    flt = r.filter or node.ListNodesRequestFilter()
    changed = o.changed_nodes()
    if r.page_size and len(changed) <= WINDOW_MAX:
        paged = await _list_nodes_page(o, flt, r.page_size, r.page, changed, read)
        if paged is not None:
            return paged
    got = await _server_nodes(read, flt)
    nodes = _merged(got.nodes, o.nodes, o.created, lambda n: node_matches(flt, n))
    return node.ListNodesResponse(
        nodes=paginate(nodes, r.page_size, r.page), total_count=len(nodes)
    )


async def _list_nodes_page(
    o: Overlay,
    flt: node.ListNodesRequestFilter,
    size: int,
    page: int,
    changed: list[node.Node],
    read: _Reader,
) -> node.ListNodesResponse | None:
    """One page of the merged list from a window of the server's list; None
    when the server changed between its reads (then the caller reads it all).

    The server part of the merged list is the server's list less the
    `hidden` nodes plus the matching changed copies (`mine`), so its item at
    index i is the server's item at an index within [i - |mine|, i + |hidden|].
    """
    offset, end = page_offset(size, page), page_offset(size, page) + size
    mine = sorted((n for n in changed if node_matches(flt, n)), key=_created)
    lo = max(0, offset - len(mine))
    window, server_total = await _window(read, flt, lo, end + len(changed))
    hidden = await _hidden(read, flt, changed)
    merged_total = server_total - len(hidden) + len(mine)
    out: list[node.Node] = []
    if offset < merged_total:
        if lo and not window:
            return None
        # the merged list between the window's first and last key (open at the list's ends)
        low = _created(window[0]) if lo else None
        high = _created(window[-1]) if lo + len(window) < server_total else None
        part = [n for n in window if n.id not in o.nodes]
        part += [
            n
            for n in mine
            if (low is None or _created(n) >= low) and (high is None or _created(n) <= high)
        ]
        part.sort(key=_created)
        start = 0
        if low is not None:
            start = lo - sum(k < low for k in hidden) + sum(_created(n) < low for n in mine)
        stop = min(end, merged_total)
        if start > offset or start + len(part) < stop:
            return None
        out = part[offset - start : stop - start]
    new = [n for n in o.new_nodes() if node_matches(flt, n)]
    out += new[max(0, offset - merged_total) : max(0, end - merged_total)]
    return node.ListNodesResponse(
        nodes=[_copy(n) if n.id in o.nodes else n for n in out],
        total_count=merged_total + len(new),
    )


async def _get_job(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, job.GetJobRequest)
    if r.id in o.jobs:
        return job.GetJobResponse(job=_copy(o.jobs[r.id]))
    return await read.same()


async def _list_jobs(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, job.ListJobsRequest)
    got = await read.same()
    if not o.jobs:
        return got
    assert isinstance(got, job.ListJobsResponse)
    flt = r.filter or job.ListJobsRequestFilter()
    return job.ListJobsResponse(
        jobs=_merged(got.jobs, o.jobs, o.created, lambda j: job_matches(flt, j))
    )


async def _get_proposal(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, job.GetProposalRequest)
    if r.id in o.proposals:
        return job.GetProposalResponse(proposal=_copy(o.proposals[r.id]))
    return await read.same()


async def _list_proposals(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, job.ListProposalsRequest)
    got = await read.same()
    if not o.proposals:
        return got
    assert isinstance(got, job.ListProposalsResponse)
    ids = r.filter.ids if r.filter else []
    job_ids = r.filter.job_ids if r.filter else []
    return job.ListProposalsResponse(
        proposals=_merged(
            got.proposals, o.proposals, o.created, lambda p: proposal_matches(ids, job_ids, p)
        )
    )


async def _get_policy(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, probation.GetRollbackPolicyRequest)
    if r.id in o.policies:
        return probation.GetRollbackPolicyResponse(rollback_policy=_copy(o.policies[r.id]))
    return await read.same()


async def _list_policies(o: Overlay, r: Message, read: _Reader) -> Message:
    assert isinstance(r, probation.ListRollbackPoliciesRequest)
    got = await read.same()
    if not o.policies:
        return got
    assert isinstance(got, probation.ListRollbackPoliciesResponse)
    ids = r.filter.ids if r.filter else []
    return probation.ListRollbackPoliciesResponse(
        rollback_policies=_merged(
            got.rollback_policies,
            o.policies,
            o.created,
            lambda p: not ids or p.id in ids,
            key=_policy_order,
        )
    )


#: The reads planned writes can change, by RPC name; other reads go through.
READS: dict[str, Callable[[Overlay, Message, _Reader], Awaitable[Message]]] = {
    "GetNode": _get_node,
    "ListNodes": _list_nodes,
    "GetJob": _get_job,
    "ListJobs": _list_jobs,
    "GetProposal": _get_proposal,
    "ListProposals": _list_proposals,
    "GetRollbackPolicy": _get_policy,
    "ListRollbackPolicies": _list_policies,
}
