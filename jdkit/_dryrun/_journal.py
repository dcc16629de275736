"""The journal: the writes a dry run recorded instead of sending, and the plan
it renders for a deployment script to print before doing it for real."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jdkit._core import validate
from jdkit._dryrun._overlay import _PREFIX, Overlay
from jdkit._interceptors import Message
from jdkit._json import to_json_dict
from jdkit.pb import job, label, node


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One write that was not sent."""

    method: str
    request: Message
    response: Message
    at: datetime

    @property
    def name(self) -> str:
        return self.method.rsplit("/", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "at": self.at.isoformat(),
            "request": to_json_dict(self.request),
            "response": to_json_dict(self.response),
        }


@dataclass
class Journal:
    """The writes a dry run would have made, in order.

    Writes through one journal are decided one at a time (reads, rules,
    planned change), as JD decides each in its own transaction, so
    concurrent writes (`asyncio.gather`) get the answers JD would give them
    in the order they arrived.
    """

    entries: list[JournalEntry] = field(default_factory=list)
    # the journal's own workings, not constructor parameters (init=False)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1), init=False, repr=False)
    #: What this dry run's writes would have made the state: later writes and reads see it.
    _overlay: Overlay = field(default_factory=lambda: Overlay(), init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False, compare=False)
    _lock_loop: asyncio.AbstractEventLoop | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.entries)

    def methods(self) -> list[str]:
        return [e.name for e in self.entries]

    def new_id(self, kind: str) -> str:
        return f"{_PREFIX}{kind}_{next(self._ids)}"

    def _write_lock(self) -> asyncio.Lock:
        """The lock each write holds from its first read to its planned change
        (one per event loop: an asyncio.Lock belongs to the loop it waited in)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def clear(self) -> None:
        self.entries.clear()
        self._overlay = Overlay()

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps([e.to_dict() for e in self.entries], indent=indent)

    def plan(self) -> str:
        if not self.entries:
            return "Dry-run plan: nothing to write."
        n = len(self.entries)
        lines = [f"Dry-run plan: {n} write{'s' if n != 1 else ''} (none sent)"]
        for i, entry in enumerate(self.entries, 1):
            lines.append(f"{i:>3}. {entry.name}: {_summary(entry)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.plan()


def _labels(labels: list[label.Label]) -> str:
    return (
        "{"
        + ", ".join(f"{lb.key}={lb.value}" if lb.value is not None else lb.key for lb in labels)
        + "}"
    )


def _summary(entry: JournalEntry) -> str:
    r, out = entry.request, entry.response
    if isinstance(r, node.RegisterNodeRequest):
        return f"register node {r.name!r} key {r.public_key[:12]}… labels {_labels(r.labels)}"
    if isinstance(r, job.ProposeJobRequest) and isinstance(out, job.ProposeJobResponse):
        rev = out.proposal.revision if out.proposal else "?"
        return f"propose job {_external_id(r.spec) or '?'} to node {r.node_id} (revision {rev})"
    if isinstance(r, job.BatchProposeJobRequest) and isinstance(out, job.BatchProposeJobResponse):
        n = len(out.success_responses)
        text = f"propose job {_external_id(r.spec) or '?'} to {n} node{'s' if n != 1 else ''}"
        if out.failed_responses:
            text += f"; {len(out.failed_responses)} would fail: " + ", ".join(
                f"{k} ({v.error_message})" for k, v in sorted(out.failed_responses.items())
            )
        return text
    fields = {k: v for k, v in r.to_dict().items() if k != "spec"}
    return json.dumps(fields, sort_keys=True, default=str)


_external_id = validate.external_job_id_or_none
