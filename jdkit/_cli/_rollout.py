"""`jdkit jobs propose`, `jdkit jobs status` and `jdkit wait`: a rollout, from
proposing a spec to nodes to where it stands and waiting for the answers."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from jdkit import selectors
from jdkit._cli._app import (
    State,
    label_option,
    read_command,
    run,
    selector_option,
    spec_option,
    state,
    wide_option,
    write_command,
)
from jdkit._cli._config import Seconds, UsageError
from jdkit._cli._inputs import labels_of, node_ids_for, read_spec, selectors_of
from jdkit._cli._output import Output
from jdkit._cli._proposals import STATUSES, proposal_table
from jdkit._exceptions import ConfigError, NotFoundError
from jdkit._tasks import Rollout
from jdkit._tasks._waiters import parse_status
from jdkit.pb import job


def report_rollout(st: State, out: Output, rollout: Rollout) -> int:
    """Print a rollout (a dry run printed its plan instead); exit status 1, and a
    line on stderr, when some nodes failed (or would fail)."""
    if not st.dry_run:
        out.result(rollout)
    if rollout.failed:
        first = sorted(rollout.failed.items())[0]
        print(
            f"error: {len(rollout.failed)} of {len(rollout)} nodes failed "
            f"(first: {first[0]}: {first[1]})",
            file=sys.stderr,
        )
        return 1
    return 0


def propose_command(name: str, hidden: bool = False) -> click.Command:
    @click.option("--node", "node_ids", multiple=True, metavar="ID", help="a node id (repeatable)")
    @selector_option("propose to the enabled nodes matching this selector")
    @spec_option
    @label_option("a job label")
    @click.option(
        "--chunk-size",
        type=click.IntRange(min=1),
        default=200,
        show_default=True,
        help="nodes per BatchProposeJob call (the progress bar moves per chunk)",
    )
    @write_command
    def cmd(
        node_ids: tuple[str, ...],
        selector: tuple[str, ...],
        spec: str,
        labels: tuple[str, ...],
        chunk_size: int,
    ) -> int:
        if not node_ids and not selector:
            raise UsageError(
                f"jobs {name}: give the nodes with --node ID (repeatable) and/or -l SELECTOR"
            )
        st = state()
        out = st.output()
        text = read_spec(spec)
        lbls = labels_of(labels)
        sels = selectors_of(selector)
        nodes: Any = list(dict.fromkeys(node_ids)) if node_ids else sels

        async def go() -> int:
            nonlocal nodes
            async with st.connect(out) as jd:
                if node_ids and sels:  # both: the ids, then the enabled nodes matching
                    picked = [n.id async for n in jd.iter_nodes(selector=sels, enabled=True)]
                    if not picked:
                        raise UsageError(f"-l: no enabled node matches {selectors.format(sels)!r}")
                    nodes = list(dict.fromkeys([*node_ids, *picked]))
                with out.progress("proposing", None) as advance:
                    done = 0

                    def moved(n: int, total: int) -> None:
                        nonlocal done
                        advance(n - done, total=total)
                        done = n

                    try:
                        rollout = await jd.propose(
                            text, nodes=nodes, labels=lbls, chunk_size=chunk_size, progress=moved
                        )
                    except ConfigError as exc:
                        if exc.field == "nodes":
                            raise UsageError(f"-l: {exc.problem}") from None
                        raise
            return report_rollout(st, out, rollout)

        return run(go())

    cmd.__doc__ = (
        "Propose a job spec to nodes, by id or selector.\n\n"
        "Each node succeeds or fails on its own (exit status 1 if any failed). "
        "Proposing a spec again with the same externalJobID makes the next revision."
    )
    return click.command(name, hidden=hidden)(cmd)


@contextlib.contextmanager
def unknown_job(command: str) -> Iterator[None]:
    """An id naming no job is the user's mistake: exit status 2, as `wait` gives."""
    try:
        yield
    except NotFoundError as exc:
        raise UsageError(f"{command}: {exc.message}") from None


@click.command("status")
@click.argument("external_job_id", metavar="[EXTERNAL_JOB_ID]", required=False)
@click.option("--job", "job_ids", multiple=True, metavar="ID", help="this job id (repeatable)")
@click.option(
    "--job-label", "job_selector", multiple=True, metavar="SELECTOR", help="jobs whose labels match"
)
@click.option("--node", "node_ids", multiple=True, metavar="ID", help="only this node (repeatable)")
@selector_option("only nodes matching this selector (unproposed ones show too)")
@click.option("--include-deleted", is_flag=True, help="deleted jobs too")
@wide_option
@read_command
def jobs_status(
    external_job_id: str | None,
    job_ids: tuple[str, ...],
    job_selector: tuple[str, ...],
    node_ids: tuple[str, ...],
    selector: tuple[str, ...],
    include_deleted: bool,
) -> int:
    """Where a rollout stands: per node, the latest revision, its status and delivery, when."""
    if not (external_job_id or job_ids or job_selector or node_ids or selector):
        raise UsageError("jobs status: give an EXTERNAL_JOB_ID, --job, --job-label, --node or -l")
    st = state()
    out = st.output()
    job_sels = selectors_of(job_selector, "--job-label")

    async def go() -> None:
        async with st.connect(out) as jd:
            nodes = await node_ids_for(jd, node_ids, selector)
            with out.waiting("reading the rollout"), unknown_job("jobs status"):
                status = await jd.rollout_status(
                    external_job_id,
                    job_ids=list(job_ids) or None,
                    selector=job_sels or None,
                    nodes=nodes,
                    include_deleted=include_deleted,
                )
        out.result(status)

    return run(go())


@click.command()
@click.argument("external_job_id", metavar="[EXTERNAL_JOB_ID]", required=False)
@click.option(
    "--proposal",
    "proposal_ids",
    multiple=True,
    metavar="ID",
    help="wait for this proposal (repeatable)",
)
@click.option(
    "--node", "node_ids", multiple=True, metavar="ID", help="only this node's (repeatable)"
)
@selector_option("only nodes matching this selector")
@click.option(
    "--status",
    type=click.Choice(STATUSES, case_sensitive=False),
    default="APPROVED",
    show_default=True,
    help="the status to wait for",
)
@click.option(
    "--timeout",
    "wait_timeout",
    type=Seconds(),
    default="300",
    show_default=True,
    metavar="SECONDS",
    help="how long to wait in all (0: no limit)",
)
@wide_option
@read_command
def wait(
    external_job_id: str | None,
    proposal_ids: tuple[str, ...],
    node_ids: tuple[str, ...],
    selector: tuple[str, ...],
    status: str,
    wait_timeout: float,
) -> int:
    """Wait until nodes answered a job's latest proposals (by externalJobID) or --proposal IDs.

    Exit status 1 names every node whose proposal ended in another status or
    was still undecided when the time ran out.
    """
    if bool(external_job_id) == bool(proposal_ids):
        raise UsageError("wait: give an EXTERNAL_JOB_ID or --proposal ID (one of the two)")
    st = state()
    out = st.output()
    target = parse_status(status)

    async def go() -> None:
        async with st.connect(out) as jd:
            if external_job_id:
                nodes = await node_ids_for(jd, node_ids, selector)
                with unknown_job("wait"):
                    rs = await jd.rollout_status(external_job_id, nodes=nodes)
                ids = [r.proposal_id for r in rs if r.proposed]
                missing = [r.node_id for r in rs if not r.proposed]
                if missing:
                    out.note(f"not proposed (not waited for): {', '.join(missing)}")
                if not ids:
                    raise UsageError(f"no proposal of job {external_job_id} to wait for")
            else:
                ids = list(proposal_ids)
            got = [p async for p in jd.iter_proposals(ids=ids)]
            unknown = sorted(set(ids) - {p.id for p in got})
            if unknown:
                raise UsageError(f"--proposal: no such proposal: {', '.join(unknown)}")
            with out.progress(f"waiting for {target.name}", len(got)) as advance:
                seen = 0

                def moved(reached: int, total: int) -> None:
                    nonlocal seen
                    advance(reached - seen)
                    seen = reached

                final = await jd.wait_for_proposals(
                    got, status=target, timeout=wait_timeout or None, progress=moved
                )
        out.result(
            proposal_table(sorted(final.items()), title=f"{len(final)} {target.name}"),
            data=job.ListProposalsResponse(proposals=list(final.values())),
        )

    return run(go())
