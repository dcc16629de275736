"""What a `SimulatedNode` serves and how it answers: the proposals it received,
its policy, and the ApprovedJob / RejectedJob / CancelledJob calls it makes.

The JD calls the node's `cfm.NodeService` (ProposeJob, DeleteJob, RevokeJob,
GetJobRuns); a proposal is answered per the policy only after our ProposeJob
response has gone out, as a real node does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import betterproto2

from jdkit import _exports
from jdkit._exceptions import ConfigError
from jdkit._proto import cfm
from jdkit._wsrpc._errors import NodeProtocolError
from jdkit._wsrpc._rpc import Handler, handler

log = logging.getLogger("jdkit.node")

Answer = Literal["approve", "reject", "ignore"]


@dataclass
class ReceivedProposal:
    """A `ProposeJob` the node received (`id` is what it echoes back as `uuid`)."""

    id: str
    spec: str
    version: int
    multiaddrs: list[str]
    received_at: dt.datetime
    #: "approved" / "rejected" / "cancelled" once the JD took an answer
    answer: str | None = None
    #: the JD's error text when it refused an answer
    answer_error: str | None = None
    revoked: bool = False


ProposalPolicy = Answer | Callable[[ReceivedProposal], Answer | Awaitable[Answer | None] | None]
"""How a `SimulatedNode` answers proposals (`on_proposal=`): "approve", "reject",
"ignore", or a callable given the `ReceivedProposal` that returns one of those (or
None = ignore), possibly awaitable."""


class NodeAnswers:
    """The answering half of `SimulatedNode`: its `cfm.NodeService` handlers and answers."""

    # set by SimulatedNode
    name: str
    on_proposal: ProposalPolicy
    proposals: list[ReceivedProposal]
    deleted: list[str]
    revoked: list[str]
    _answer_tasks: set[asyncio.Task[None]]

    if TYPE_CHECKING:

        async def call(
            self, method: str, request: betterproto2.Message, response_type: type[Any]
        ) -> Any: ...

        async def _notify(self) -> None: ...

    def _handlers(self) -> dict[str, Handler]:
        return {
            "ProposeJob": handler(cfm.ProposeJobRequest, self._on_propose),
            "DeleteJob": handler(cfm.DeleteJobRequest, self._on_delete),
            "RevokeJob": handler(cfm.RevokeJobRequest, self._on_revoke),
            "GetJobRuns": handler(cfm.GetJobRunsRequest, self._on_job_runs),
        }

    async def _on_propose(self, req: cfm.ProposeJobRequest) -> cfm.ProposeJobResponse:
        p = ReceivedProposal(
            id=req.id,
            spec=req.spec,
            version=req.version,
            multiaddrs=list(req.multiaddrs),
            received_at=dt.datetime.now(dt.UTC),
        )
        self.proposals.append(p)
        # answer after our ProposeJob response has gone out
        task = asyncio.ensure_future(self._apply_policy(p))
        self._answer_tasks.add(task)
        task.add_done_callback(self._answer_tasks.discard)
        return cfm.ProposeJobResponse(id=req.id)

    async def _apply_policy(self, p: ReceivedProposal) -> None:
        await self._notify()
        policy = self.on_proposal
        choice: Any = policy
        if callable(policy):
            try:
                choice = policy(p)
                if inspect.isawaitable(choice):
                    choice = await choice
            except Exception:
                log.exception("%s: on_proposal callable failed for %s", self.name, p.id)
                return
        if choice == "approve":
            await self._answer_quietly("ApprovedJob", p)
        elif choice == "reject":
            await self._answer_quietly("RejectedJob", p)

    async def _answer_quietly(self, method: str, p: ReceivedProposal) -> None:
        with contextlib.suppress(NodeProtocolError):
            await self._answer(method, p)

    async def _on_delete(self, req: cfm.DeleteJobRequest) -> cfm.DeleteJobResponse:
        self.deleted.append(req.id)
        await self._notify()
        return cfm.DeleteJobResponse(id=req.id)

    async def _on_revoke(self, req: cfm.RevokeJobRequest) -> cfm.RevokeJobResponse:
        self.revoked.append(req.id)
        for p in self.proposals:
            if p.id == req.id and p.answer is None:
                p.revoked = True
        await self._notify()
        return cfm.RevokeJobResponse(id=req.id)

    async def _on_job_runs(self, req: cfm.GetJobRunsRequest) -> cfm.GetJobRunsResponse:
        return cfm.GetJobRunsResponse(runs=[])

    def _find(self, ident: str | ReceivedProposal, version: int | None) -> ReceivedProposal:
        if isinstance(ident, ReceivedProposal):
            return ident
        found = [
            p for p in self.proposals if p.id == ident and (version is None or p.version == version)
        ]
        if not found:
            raise ConfigError("proposal", f"this node received no proposal {ident!r}")
        return max(found, key=lambda p: p.version)

    _REQ = {
        "ApprovedJob": (cfm.ApprovedJobRequest, cfm.ApprovedJobResponse, "approved"),
        "RejectedJob": (cfm.RejectedJobRequest, cfm.RejectedJobResponse, "rejected"),
        "CancelledJob": (cfm.CancelledJobRequest, cfm.CancelledJobResponse, "cancelled"),
    }

    async def _answer(self, method: str, p: ReceivedProposal) -> None:
        req_t, resp_t, word = self._REQ[method]
        try:
            await self.call(method, req_t(uuid=p.id, version=p.version), resp_t)
        except NodeProtocolError as exc:
            p.answer_error = str(exc)
            await self._notify()
            raise
        p.answer, p.answer_error = word, None
        await self._notify()


_exports.publish_lazy(globals())  # what jdkit imports from here on first use
