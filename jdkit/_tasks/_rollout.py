"""Propose one spec to many nodes (`propose` -> `Rollout`), and register nodes idempotently.

JD's BatchProposeJob takes node ids only, reports each node on its own
(`success_responses` / `failed_responses`) and has no limit on the batch in
its contract; `propose` resolves a selector to node ids first, sends the ids
in chunks (so one reply stays small and a progress hook can move), and folds
the answers into one `Rollout`. A dry-run client answers the same calls from
its plan, so `propose` under dry-run returns the same shape with `dryrun_`
ids and nothing sent.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from jdkit._exceptions import (
    AlreadyExistsError,
    ConfigError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
)
from jdkit._tasks._requests import LabelsLike, label_list, selector_list
from jdkit.pb import job, label, node
from jdkit.selectors import format as format_selectors

if TYPE_CHECKING:
    from jdkit._client import CallOptions, JobDistributor

T = TypeVar("T")

#: Nodes per BatchProposeJob call. 1,000 nodes in one call take ~0.14 s on the
#: embedded JD; 200 keeps each reply under ~100 KiB and lets progress move.
DEFAULT_CHUNK = 200

#: `progress(done, total)`: called after each chunk with nodes handled so far.
Progress = Callable[[int, int], object]

#: What `nodes=` accepts: selector text, `Selector`(s), or node ids / `Node`s.
NodesLike = str | label.Selector | Sequence[str] | Sequence[node.Node] | Sequence[label.Selector]

# Failures of the whole BatchProposeJob call that would be the same for every
# chunk (the spec, the labels, the caller): raised, not recorded per node.
_REQUEST_ERRORS = (InvalidArgumentError, UnauthenticatedError, PermissionDeniedError)


def required(value: T | None, what: str) -> T:
    """A response sub-message that JD always sets; its absence is a `ProtocolError`.

    proto3 makes every sub-message optional on the wire, so the generated
    types say `X | None`; the helpers check once here and return `X`.
    """
    if value is None:
        raise ProtocolError(f"{what} was not set in the server's answer")
    return value


@dataclass(frozen=True)
class Rollout:
    """What `JobDistributor.propose` did: per node, a proposal or the reason it failed.

    `proposals` and `failed` are keyed by node id and together hold every node
    the rollout targeted. Pass the rollout to `wait_for_proposals` to wait for
    the nodes' answers, or `jdkit.show` it.
    """

    #: The spec's externalJobID (the job's `uuid` on every node); "" if unreadable.
    external_job_id: str
    #: node id -> the new proposal (revision 1 for a new job, +1 for each re-proposal).
    proposals: dict[str, job.Proposal] = field(default_factory=dict)
    #: node id -> why JD refused that node (unknown, disabled, ...).
    failed: dict[str, str] = field(default_factory=dict)
    #: True when made by a dry-run client: nothing was sent, ids are `dryrun_...`.
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Every targeted node got a proposal."""
        return not self.failed

    @property
    def node_ids(self) -> list[str]:
        """Every targeted node, proposed ones first."""
        return [*self.proposals, *self.failed]

    def __len__(self) -> int:
        return len(self.proposals) + len(self.failed)

    def __repr__(self) -> str:
        dry = " dry-run" if self.dry_run else ""
        return (
            f"<Rollout {self.external_job_id or '?'}{dry}: "
            f"{len(self.proposals)} proposed, {len(self.failed)} failed>"
        )


def external_job_id(spec: str) -> str:
    """The spec's externalJobID for display; JD itself validates the spec."""
    try:
        value = tomllib.loads(spec).get("externalJobID")
    except (tomllib.TOMLDecodeError, RecursionError, TypeError):
        return ""
    return value if isinstance(value, str) else ""


async def resolve_nodes(
    jd: JobDistributor, nodes: NodesLike, opts: CallOptions, *, enabled: bool | None = None
) -> tuple[list[str], str | None]:
    """Node ids (`nodes` as ids, Nodes, or the nodes a selector picks, `enabled`
    ones only when True), and the selector text when a selector picked them.

    The one resolver of `nodes=` (`propose`, `rollout_status`): an empty list
    or selector is a `ConfigError` naming `nodes`, as an empty target set is a
    mistake (an empty selector would pick every node).
    """
    if isinstance(nodes, node.Node):
        return [nodes.id], None
    sels: list[label.Selector] | None = None
    if isinstance(nodes, str | label.Selector):
        sels = selector_list(nodes)
    else:
        items = list(nodes)
        if not items:
            raise ConfigError("nodes", "no nodes given (pass node ids or a selector)")
        if all(isinstance(i, label.Selector) for i in items):
            sels = [i for i in items if isinstance(i, label.Selector)]
        else:
            ids: list[str] = []
            for i in items:
                if isinstance(i, node.Node):
                    ids.append(i.id)
                elif isinstance(i, str):
                    ids.append(i)
                else:
                    raise TypeError(
                        f"nodes: expected node ids, Nodes or a selector, got {type(i).__name__}"
                    )
            return list(dict.fromkeys(ids)), None
    text = format_selectors(sels)
    if not sels:
        raise ConfigError("nodes", "an empty selector would pick every node; pass it explicitly")
    picked = [n.id async for n in jd.iter_nodes(selector=sels, enabled=enabled, **opts)]
    return picked, text


async def propose(
    jd: JobDistributor,
    spec: str,
    *,
    nodes: NodesLike,
    labels: LabelsLike = (),
    chunk_size: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
    **opts: Unpack[CallOptions],
) -> Rollout:
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected the TOML text, got {type(spec).__name__}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigError("chunk_size", f"must be a positive int, got {chunk_size!r}")
    job_labels = label_list(labels)
    node_ids, text = await resolve_nodes(jd, nodes, opts, enabled=True)
    if not node_ids:
        raise ConfigError("nodes", f"no enabled node matches {text!r}")
    rollout = Rollout(external_job_id(spec), dry_run=jd.journal is not None)
    total = len(node_ids)
    done = 0
    for start in range(0, total, chunk_size):
        chunk = node_ids[start : start + chunk_size]
        try:
            resp = await jd.batch_propose_job(
                job.BatchProposeJobRequest(node_ids=chunk, spec=spec, labels=job_labels), **opts
            )
        except _REQUEST_ERRORS:
            raise
        except RPCError as exc:
            note = ""
            if not isinstance(exc, UnavailableError) or exc.reached_server is not False:
                note = " (the call may have been applied; check with rollout_status)"
            for node_id in chunk:
                rollout.failed[node_id] = f"{exc}{note}"
        else:
            for node_id, ok in resp.success_responses.items():
                rollout.proposals[node_id] = required(
                    ok.proposal, f"BatchProposeJob's proposal for node {node_id}"
                )
            for node_id, bad in resp.failed_responses.items():
                rollout.failed[node_id] = bad.error_message or "failed (no reason given)"
            for node_id in chunk:
                if node_id not in rollout.proposals and node_id not in rollout.failed:
                    rollout.failed[node_id] = "the server's answer did not mention this node"
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return rollout


def _label_set(labels: Iterable[label.Label]) -> set[tuple[str, str | None]]:
    return {(lb.key, lb.value) for lb in labels}


async def ensure_node(
    jd: JobDistributor,
    name: str,
    public_key: str,
    labels: LabelsLike | None = None,
    **opts: Unpack[CallOptions],
) -> node.Node:
    want = None if labels is None else label_list(labels)
    try:
        current = required((await jd.get_node(public_key=public_key, **opts)).node, "GetNode.node")
    except NotFoundError:
        try:
            resp = await jd.register_node(
                node.RegisterNodeRequest(name=name, public_key=public_key, labels=want or []),
                **opts,
            )
            return required(resp.node, "RegisterNode.node")
        except AlreadyExistsError:  # registered meanwhile by someone else: update that one
            current = required(
                (await jd.get_node(public_key=public_key, **opts)).node, "GetNode.node"
            )
    changes: dict[str, Any] = {}
    if current.name != name:
        changes["name"] = name
    if want is not None and _label_set(want) != _label_set(current.labels):
        if not want:
            raise ConfigError(
                "labels",
                f"node {current.id} has labels and JD's UpdateNode cannot remove all of them "
                "(an empty list means 'unchanged'); pass labels=None to keep them",
            )
        changes["labels"] = want
    if not changes:
        return current
    resp2 = await jd.update_node(node.UpdateNodeRequest(id=current.id, **changes), **opts)
    return required(resp2.node, "UpdateNode.node")
