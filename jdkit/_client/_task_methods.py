"""The task helpers as `JobDistributor` methods: thin calls into `jdkit._tasks`,
where their logic lives (loops and joins over the RPC methods)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Unpack, cast

from jdkit._client._calls import CallOptions
from jdkit._client._rpcs import RPCMethods
from jdkit._tasks import _pagers, _requests, _rollout, _status, _waiters
from jdkit._tasks._requests import LabelsLike, SelectorLike
from jdkit.pb import job, node

if TYPE_CHECKING:
    from jdkit._client import JobDistributor


class TaskMethods(RPCMethods):
    """The task helper methods of `JobDistributor`."""

    @property
    def _jd(self) -> JobDistributor:
        return cast("JobDistributor", self)

    async def iter_nodes(
        self,
        *,
        selector: SelectorLike | None = None,
        enabled: bool | None = None,
        ids: Sequence[str] | None = None,
        public_keys: Sequence[str] | None = None,
        page_size: int = _pagers.NODE_PAGE,
        **opts: Unpack[CallOptions],
    ) -> AsyncIterator[node.Node]:
        """Every matching node, page by page: `async for n in jd.iter_nodes(selector=...)`.

        Correct against servers that page, servers that ignore paging and
        servers that leave `total_count` unset; no node is yielded twice.
        """
        request = _requests.list_nodes(
            None,
            selector=selector,
            enabled=enabled,
            ids=ids,
            public_keys=public_keys,
            page_size=None,
            page=None,
        )
        async for n in _pagers.iter_nodes(self._jd, request, page_size, **opts):
            yield n

    async def iter_jobs(
        self,
        *,
        selector: SelectorLike | None = None,
        ids: Sequence[str] | None = None,
        node_ids: Sequence[str] | None = None,
        uuids: Sequence[str] | None = None,
        include_deleted: bool = False,
        **opts: Unpack[CallOptions],
    ) -> AsyncIterator[job.Job]:
        """Every matching job (JD's ListJobs does not page; long id lists go in chunks)."""
        request = _requests.list_jobs(
            None,
            selector=selector,
            ids=ids,
            node_ids=node_ids,
            uuids=uuids,
            include_deleted=include_deleted,
        )
        async for j in _pagers.iter_jobs(self._jd, request, **opts):
            yield j

    async def iter_proposals(
        self,
        *,
        ids: Sequence[str] | None = None,
        job_ids: Sequence[str] | None = None,
        **opts: Unpack[CallOptions],
    ) -> AsyncIterator[job.Proposal]:
        """Every matching proposal (ListProposals does not page; long id lists go in chunks)."""
        request = _requests.list_proposals(None, ids=ids, job_ids=job_ids)
        async for p in _pagers.iter_proposals(self._jd, request, **opts):
            yield p

    async def propose(
        self,
        spec: str,
        *,
        nodes: _rollout.NodesLike,
        labels: LabelsLike = (),
        chunk_size: int = _rollout.DEFAULT_CHUNK,
        progress: _rollout.Progress | None = None,
        **opts: Unpack[CallOptions],
    ) -> _rollout.Rollout:
        """Propose `spec` to many nodes; per node a proposal or the reason it failed.

        `nodes` is selector text or `Selector`s (the enabled nodes that match;
        none matching is a `ConfigError`), or node ids / `Node`s. Proposing a
        spec again with the same externalJobID makes the next revision.
        BatchProposeJob is sent `chunk_size` nodes at a time and
        `progress(done, total)` is called after each chunk. A chunk that fails
        as a whole (e.g. UNAVAILABLE) marks its nodes failed and the rest go on;
        a spec or auth problem raises. Under dry-run nothing is sent and the
        rollout holds the planned proposals.
        """
        return await _rollout.propose(
            self._jd,
            spec,
            nodes=nodes,
            labels=labels,
            chunk_size=chunk_size,
            progress=progress,
            **opts,
        )

    async def wait_for_proposals(
        self,
        proposals: _waiters.ProposalsLike,
        *,
        status: job.ProposalStatus | str = job.ProposalStatus.APPROVED,
        timeout: float | None,
        progress: _waiters.WaitProgress | None = None,
        **opts: Unpack[_waiters.PollOptions],
    ) -> dict[str, job.Proposal]:
        """Poll until every proposal has `status`; node id -> final proposal.

        Takes a `Rollout`, a `{node id: Proposal}` mapping or Proposals.
        Raises `ProposalWaitError` naming every node whose proposal ended in
        another final status (REJECTED, CANCELLED, REVOKED) or was still
        undecided after `timeout` seconds (None: no limit). Polls back off
        from 50 ms to 1 s; `progress(reached, total)` is called after each.
        A bad `status` or `timeout` is a `ConfigError` naming it.

        Under dry-run it returns at once, without error, the planned
        proposals as they are (PROPOSED): nothing was sent, so no node can
        answer, and waiting could only time out. So a script can be planned
        end to end; check `jd.journal` (or `rollout.dry_run`) before reading
        the statuses as approvals.
        """
        return await _waiters.wait_for_proposals(
            self._jd, proposals, status=status, timeout=timeout, progress=progress, **opts
        )

    async def rollout_status(
        self,
        external_job_id: str | None = None,
        *,
        job_ids: Sequence[str] | None = None,
        selector: SelectorLike | None = None,
        nodes: _rollout.NodesLike | None = None,
        include_deleted: bool = False,
        **opts: Unpack[CallOptions],
    ) -> _status.RolloutStatus:
        """Per node: latest revision, its status, delivery status and when.

        Pick the jobs by externalJobID, `job_ids=`, `selector=` (job labels)
        and/or `nodes=` (a node selector or ids; matching nodes without the
        job show as "not proposed"). `jdkit.show(status)` prints the table.
        An externalJobID or `job_ids=` that names no job (without `nodes=`)
        is a `NotFoundError` naming it, not an empty status.
        """
        return await _status.rollout_status(
            self._jd,
            external_job_id,
            job_ids=job_ids,
            selector=selector,
            nodes=nodes,
            include_deleted=include_deleted,
            **opts,
        )

    async def ensure_node(
        self,
        name: str,
        public_key: str,
        labels: LabelsLike | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.Node:
        """Register the node with `public_key`, or return it, updated to `name`/`labels`.

        Safe to run again and again (and concurrently: a registration that
        loses the race updates the winner's node). `labels=None` leaves an
        existing node's labels alone.
        """
        return await _rollout.ensure_node(self._jd, name, public_key, labels, **opts)
