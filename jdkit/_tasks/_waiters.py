"""Wait until nodes have answered their proposals (`wait_for_proposals`).

JD has no server-side wait or watch for proposals, so this polls ListProposals
for the ids still pending, with a growing, jittered pause between polls, until
every proposal reached the wanted status or ended in another final one, or
the timeout passed. Each poll is an ordinary client call: it runs through the
deadline (never past the wait's own), retry and auth interceptors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict, Unpack

import anyio

from jdkit._exceptions import ConfigError, DeadlineExceededError, JDError
from jdkit._options import check_timeout
from jdkit._tasks._rollout import Rollout
from jdkit.pb import job

if TYPE_CHECKING:
    from jdkit._client import CallOptions, JobDistributor
    from jdkit._retry import RetryPolicy


class PollOptions(TypedDict, total=False):
    """Per-call options for each poll; the deadline is the wait's own `timeout`."""

    retry: RetryPolicy
    metadata: Mapping[str, str]


def call_options(opts: PollOptions) -> CallOptions:
    out: CallOptions = {}
    if "retry" in opts:
        out["retry"] = opts["retry"]
    if "metadata" in opts:
        out["metadata"] = opts["metadata"]
    return out


Status = job.ProposalStatus

#: Statuses a proposal does not leave by itself. (A node may still cancel an
#: APPROVED proposal and an operator revoke a CANCELLED one, but neither is
#: something to wait for.)
FINAL = frozenset({Status.APPROVED, Status.REJECTED, Status.CANCELLED, Status.REVOKED})

#: Poll pauses: 50 ms growing x1.5 to 1 s, each scaled by a random 0.5-1.0 so
#: many waiting clients do not poll in step.
POLL_INITIAL, POLL_MAX, POLL_MULTIPLIER = 0.05, 1.0, 1.5

#: `progress(reached, total)`: called after each poll.
WaitProgress = Callable[[int, int], object]

ProposalsLike = Rollout | Mapping[str, job.Proposal] | Iterable[job.Proposal]


def status_name(status: Status | int) -> str:
    """`APPROVED`, not `PROPOSAL_STATUS_APPROVED` (betterproto2 strips the prefix)."""
    try:
        return Status(status).name or str(int(status))
    except ValueError:
        return str(int(status))


def parse_status(value: Status | str | int) -> Status:
    """`APPROVED`, `approved`, `PROPOSAL_STATUS_APPROVED` or the enum itself."""
    if isinstance(value, Status):
        return value
    if isinstance(value, str):
        key = value.strip().upper().removeprefix("PROPOSAL_STATUS_")
        for s in Status:
            if s.name == key:
                return s
        names = ", ".join(s.name or "" for s in Status if s != Status.UNSPECIFIED)
        raise ConfigError("status", f"unknown proposal status {value!r}; expected one of {names}")
    return Status(value)


class ProposalWaitError(JDError):
    """Some proposals did not reach the wanted status.

    `ended` holds the nodes whose proposal ended in another final status
    (REJECTED, CANCELLED, REVOKED, or APPROVED when waiting for something
    else), `pending` those still undecided when the time ran out; both map
    node id -> the proposal as last seen. `reached` holds the rest.
    """

    def __init__(
        self,
        target: Status,
        *,
        reached: dict[str, job.Proposal],
        ended: dict[str, job.Proposal],
        pending: dict[str, job.Proposal],
        timeout: float | None,
    ) -> None:
        self.target = target
        self.reached = reached
        self.ended = ended
        self.pending = pending
        self.timed_out = bool(pending)
        total = len(reached) + len(ended) + len(pending)
        parts = [f"{len(reached)} of {total} proposals reached {status_name(target)}"]
        for group, what in ((ended, ""), (pending, " still")):
            by_status: dict[str, list[str]] = {}
            for node_id, p in group.items():
                by_status.setdefault(status_name(p.status), []).append(node_id)
            for name, nodes in sorted(by_status.items()):
                after = f" after {timeout:g} s" if what and timeout is not None else ""
                parts.append(f"{len(nodes)}{what} {name}{after}: {', '.join(sorted(nodes))}")
        super().__init__("; ".join(parts))

    @property
    def counts(self) -> dict[str, int]:
        """Nodes per last-seen status, over every proposal waited for."""
        out: dict[str, int] = {}
        for group in (self.reached, self.ended, self.pending):
            for p in group.values():
                name = status_name(p.status)
                out[name] = out.get(name, 0) + 1
        return out


async def by_node(
    jd: JobDistributor, proposals: ProposalsLike, opts: CallOptions
) -> dict[str, job.Proposal]:
    """node id -> proposal; bare proposals are matched to nodes through their jobs."""
    if isinstance(proposals, Rollout):
        return dict(proposals.proposals)
    if isinstance(proposals, Mapping):
        return dict(proposals)
    items = list(proposals)
    for p in items:
        if not isinstance(p, job.Proposal):
            raise TypeError(
                f"wait_for_proposals: expected a Rollout, a {{node id: Proposal}} mapping or "
                f"Proposals, got {type(p).__name__}"
            )
    job_ids = list(dict.fromkeys(p.job_id for p in items))
    node_of = {
        j.id: j.node_id async for j in jd.iter_jobs(ids=job_ids, include_deleted=True, **opts)
    }
    out: dict[str, job.Proposal] = {}
    for p in items:
        # a proposal whose job is gone is still waited for, under its own id
        out[node_of.get(p.job_id, p.id)] = p
    return out


async def wait_for_proposals(
    jd: JobDistributor,
    proposals: ProposalsLike,
    *,
    status: Status | str = Status.APPROVED,
    timeout: float | None,
    progress: WaitProgress | None = None,
    **opts: Unpack[PollOptions],
) -> dict[str, job.Proposal]:
    target = parse_status(status)
    check_timeout("timeout", timeout)  # the ConfigError every other deadline gets
    poll_opts = call_options(opts)
    latest = await by_node(jd, proposals, poll_opts)
    total = len(latest)
    if jd.journal is not None:
        # A dry run has no node to answer and sends nothing: the plan is the
        # answer, returned at once with its (PROPOSED) proposals, not a wait
        # that could only time out; status/timeout are still checked above.
        return latest
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = POLL_INITIAL
    while True:
        pending = {n: p for n, p in latest.items() if not _settled(p, target)}
        if pending:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                poll_opts["timeout"] = remaining  # no poll outlives the wait
            try:
                ids = [p.id for p in pending.values()]
                fresh = {p.id: p async for p in jd.iter_proposals(ids=ids, **poll_opts)}
            except DeadlineExceededError:
                break
            for node_id, p in pending.items():
                latest[node_id] = fresh.get(p.id, p)
            pending = {n: p for n, p in latest.items() if not _settled(p, target)}
        if progress is not None:
            progress(sum(p.status == target for p in latest.values()), total)
        if not pending:
            break
        sleep = pause * random.uniform(0.5, 1.0)
        if deadline is not None:
            sleep = min(sleep, max(deadline - time.monotonic(), 0.0))
        await anyio.sleep(sleep)
        pause = min(pause * POLL_MULTIPLIER, POLL_MAX)
    reached = {n: p for n, p in latest.items() if p.status == target}
    if len(reached) == total:
        return latest
    ended = {n: p for n, p in latest.items() if p.status != target and p.status in FINAL}
    still = {n: p for n, p in latest.items() if not _settled(p, target)}
    raise ProposalWaitError(target, reached=reached, ended=ended, pending=still, timeout=timeout)


def _settled(p: job.Proposal, target: Status) -> bool:
    return p.status == target or p.status in FINAL
