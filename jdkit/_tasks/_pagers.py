"""Pagers: every matching node, job or proposal as one async iterator.

    async for n in jd.iter_nodes(selector="env=dev", page_size=500):
        ...

Only ListNodes pages on the wire (`page_size`, 1-based `page`, `total_count`).
Servers differ in how faithfully they do it, and the pager must be right with
all of them:

- a server that pages: ask page 1, 2, ... until a short page, or until
  `total_count` items were seen;
- a server that ignores paging answers every page with everything: a page
  longer than asked, or one with nothing new, ends the walk (items are
  de-duplicated by id, so nothing is yielded twice);
- a server that leaves `total_count` unset (0): the short-page and
  nothing-new rules still end the walk.

ListJobs and ListProposals have no paging in JD's API, so their pagers make
one call; long id filters are sent in chunks so a request stays small.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Unpack

from jdkit._exceptions import ConfigError
from jdkit.pb import job, node

if TYPE_CHECKING:
    from jdkit._client import CallOptions, JobDistributor

#: Default ListNodes page: large enough that 10,000 nodes take 20 calls, small
#: enough that one reply stays well under grpclib's 4 MiB message limit.
NODE_PAGE = 500

#: Ids per ListJobs / ListProposals call when a filter lists many ids.
ID_CHUNK = 500


async def iter_nodes(
    jd: JobDistributor,
    base: node.ListNodesRequest,
    page_size: int = NODE_PAGE,
    **opts: Unpack[CallOptions],
) -> AsyncIterator[node.Node]:
    """Every node matching `base`'s filter, `page_size` at a time."""
    if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
        raise ConfigError("page_size", f"must be a positive int, got {page_size!r}")
    seen: set[str] = set()
    page = 1
    while True:
        resp = await jd.list_nodes(
            node.ListNodesRequest(filter=base.filter, page_size=page_size, page=page), **opts
        )
        fresh = 0
        for n in resp.nodes:
            if n.id not in seen:
                seen.add(n.id)
                fresh += 1
                yield n
        if (
            fresh == 0
            or len(resp.nodes) != page_size  # short page, or paging ignored
            or (resp.total_count > 0 and len(seen) >= resp.total_count)
        ):
            return
        page += 1


def _chunks(items: list[str]) -> list[list[str]]:
    if not items:
        return [[]]
    return [items[i : i + ID_CHUNK] for i in range(0, len(items), ID_CHUNK)]


async def iter_jobs(
    jd: JobDistributor, base: job.ListJobsRequest, **opts: Unpack[CallOptions]
) -> AsyncIterator[job.Job]:
    """Every job matching `base`'s filter, the longest id list in chunks."""
    flt = base.filter
    assert flt is not None
    # Chunk the longest id list; the others go whole with each chunk (ANDed filters).
    name = max(("ids", "node_ids", "uuids"), key=lambda n: len(getattr(flt, n)))
    seen: set[str] = set()
    for chunk in _chunks(list(getattr(flt, name))):
        part = job.ListJobsRequestFilter(
            ids=flt.ids,
            node_ids=flt.node_ids,
            uuids=flt.uuids,
            selectors=flt.selectors,
            include_deleted=flt.include_deleted,
        )
        setattr(part, name, chunk)
        resp = await jd.list_jobs(job.ListJobsRequest(filter=part), **opts)
        for j in resp.jobs:
            if j.id not in seen:
                seen.add(j.id)
                yield j


async def iter_proposals(
    jd: JobDistributor, base: job.ListProposalsRequest, **opts: Unpack[CallOptions]
) -> AsyncIterator[job.Proposal]:
    """Every proposal matching `base`'s filter, the longer id list in chunks."""
    flt = base.filter
    assert flt is not None
    name = "ids" if len(flt.ids) >= len(flt.job_ids) else "job_ids"
    seen: set[str] = set()
    for chunk in _chunks(list(getattr(flt, name))):
        part = job.ListProposalsRequestFilter(ids=flt.ids, job_ids=flt.job_ids)
        setattr(part, name, chunk)
        resp = await jd.list_proposals(job.ListProposalsRequest(filter=part), **opts)
        for p in resp.proposals:
            if p.id not in seen:
                seen.add(p.id)
                yield p
