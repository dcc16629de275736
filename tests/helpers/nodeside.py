"""The node's side for helper tests: answer proposals as they arrive on an embedded JD.

A real node answers over JD's node-facing port; the embedded JD's own
`approve_proposal` / `reject_proposal` play that part here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from jdkit._server import EmbeddedJD
from jdkit.pb import job

Decide = Callable[[job.Proposal], str | None]


def approve_all(p: job.Proposal) -> str | None:
    return "approve"


@contextlib.asynccontextmanager
async def answering(
    srv: EmbeddedJD, decide: Decide = approve_all, *, every: float = 0.01
) -> AsyncIterator[list[str]]:
    """Answer each PROPOSED proposal as `decide` says ("approve", "reject",
    "cancel" or None: leave it); yields the ids answered so far."""
    answered: list[str] = []
    seen: set[str] = set()

    async def loop() -> None:
        while True:
            for p in await srv.state.list_proposals([], []):
                if p.id in seen or p.status != job.ProposalStatus.PROPOSED:
                    continue
                seen.add(p.id)
                verb = decide(p)
                if verb is None:
                    continue
                await getattr(srv, f"{verb}_proposal")(p.id)
                answered.append(p.id)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield answered
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
