"""`jdkit jobs ...`, `jdkit proposals ...` and `jdkit wait`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
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
from jdkit._cli._inputs import labels_of, read_spec, selectors_of
from jdkit._cli._output import Output
from jdkit._display import Column, Table, fmt_time, fmt_value
from jdkit._exceptions import ConfigError, NotFoundError
from jdkit._tasks import Rollout
from jdkit._tasks._waiters import parse_status
from jdkit.pb import job

STATUSES = [s.name for s in job.ProposalStatus if s != job.ProposalStatus.UNSPECIFIED]


# ------------------------------------------------------------------ shared


def proposal_table(pairs: Sequence[tuple[str, job.Proposal]], title: str | None = None) -> Table:
    """Proposals with the node each one went to (JD's Proposal does not say)."""
    return Table(
        pairs,
        title=title,
        columns=(
            Column("ID", lambda r: r[1].id),
            Column("Node", lambda r: r[0]),
            Column("Job", lambda r: r[1].job_id),
            Column("Rev", lambda r: str(r[1].revision), justify="right"),
            Column("Status", lambda r: fmt_value(r[1].status), styled=True),
            Column("Delivery", lambda r: fmt_value(r[1].delivery_status), styled=True),
            Column("Updated", lambda r: fmt_time(r[1].updated_at)),
        ),
    )


async def node_of_jobs(jd: Any, job_ids: Sequence[str]) -> dict[str, str]:
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return {}
    return {j.id: j.node_id async for j in jd.iter_jobs(ids=ids, include_deleted=True)}


async def node_ids_for(
    jd: Any, node_ids: Sequence[str], selector: Sequence[str]
) -> list[str] | None:
    """The nodes `--node` and `-l` name together; None when neither was given."""
    if not node_ids and not selector:
        return None
    out = list(dict.fromkeys(node_ids))
    sels = selectors_of(selector)
    if sels:
        out += [n.id async for n in jd.iter_nodes(selector=sels) if n.id not in out]
    return out


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


# ------------------------------------------------------------------ jobs


@click.group()
def jobs() -> None:
    """Propose jobs, follow their rollout and manage them."""


@jobs.command("list")
@click.option("--id", "ids", multiple=True, metavar="ID", help="only this job id (repeatable)")
@click.option(
    "--node", "node_ids", multiple=True, metavar="ID", help="only this node's (repeatable)"
)
@click.option("--uuid", "uuids", multiple=True, metavar="UUID", help="only this externalJobID")
@selector_option("only jobs whose labels match")
@click.option("--include-deleted", is_flag=True, help="show deleted jobs too")
@wide_option
@read_command
def jobs_list(
    ids: tuple[str, ...],
    node_ids: tuple[str, ...],
    uuids: tuple[str, ...],
    selector: tuple[str, ...],
    include_deleted: bool,
) -> int:
    """List jobs."""
    st = state()
    out = st.output()
    sels = selectors_of(selector)

    async def go() -> None:
        async with st.connect(out) as jd:
            with out.waiting("listing jobs"):
                resp = await jd.list_jobs(
                    ids=list(ids),
                    node_ids=list(node_ids),
                    uuids=list(uuids),
                    selector=sels,
                    include_deleted=include_deleted,
                )
        out.result(resp)

    return run(go())


@jobs.command("get")
@click.argument("job_id", metavar="ID")
@read_command
def jobs_get(job_id: str) -> int:
    """Show one job."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            resp = await jd.get_job(id=job_id)
        out.result(resp.job, data=resp)

    return run(go())


def _propose_command(name: str, hidden: bool = False) -> click.Command:
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


jobs.add_command(_propose_command("propose"))
jobs.add_command(_propose_command("batch-propose", hidden=True))  # the 0.1 name


@contextlib.contextmanager
def unknown_job(command: str) -> Iterator[None]:
    """An id naming no job is the user's mistake: exit status 2, as `wait` gives."""
    try:
        yield
    except NotFoundError as exc:
        raise UsageError(f"{command}: {exc.message}") from None


@jobs.command("status")
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


@jobs.command("update")
@click.argument("job_id", metavar="ID")
@label_option("replaces all labels when given")
@click.option("--rollback-policy-id", type=int, help="rollback policy id")
@write_command
def jobs_update(job_id: str, labels: tuple[str, ...], rollback_policy_id: int | None) -> int:
    """Change a job's labels or rollback policy."""
    if not labels and rollback_policy_id is None:
        raise UsageError("jobs update: nothing to change; give --label or --rollback-policy-id")
    st = state()
    out = st.output()
    req = job.UpdateJobRequest(
        id=job_id, labels=labels_of(labels), rollback_policy_id=rollback_policy_id
    )

    async def go() -> None:
        async with st.connect(out) as jd:
            st.emit(out, await jd.update_job(req), title="updated")

    return run(go())


@jobs.command("revoke")
@click.argument("job_id", metavar="ID")
@write_command
def jobs_revoke(job_id: str) -> int:
    """Revoke a job's latest proposal (ID: the job id or that proposal's id)."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            st.emit(out, await jd.revoke_job(job.RevokeJobRequest(id=job_id)), title="revoked")

    return run(go())


@jobs.command("delete")
@click.argument("job_id", metavar="ID")
@write_command
def jobs_delete(job_id: str) -> int:
    """Delete a job (soft: sets deleted_at)."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            st.emit(out, await jd.delete_job(job.DeleteJobRequest(id=job_id)), title="deleted")

    return run(go())


# ------------------------------------------------------------------ proposals


@click.group()
def proposals() -> None:
    """Inspect proposals; play the node's answers (embedded JD)."""


@proposals.command("list")
@click.option("--id", "ids", multiple=True, metavar="ID", help="only this proposal (repeatable)")
@click.option("--job", "job_ids", multiple=True, metavar="ID", help="only this job's (repeatable)")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES, case_sensitive=False),
    help="only proposals in this status (repeatable)",
)
@click.option(
    "--node", "node_ids", multiple=True, metavar="ID", help="only this node's (repeatable)"
)
@selector_option("only proposals to nodes matching this selector")
@wide_option
@read_command
def proposals_list(
    ids: tuple[str, ...],
    job_ids: tuple[str, ...],
    statuses: tuple[str, ...],
    node_ids: tuple[str, ...],
    selector: tuple[str, ...],
) -> int:
    """List proposals, with the node each went to."""
    st = state()
    out = st.output()
    wanted = {parse_status(s) for s in statuses}

    async def go() -> None:
        async with st.connect(out) as jd:
            with out.waiting("listing proposals"):
                nodes = await node_ids_for(jd, node_ids, selector)
                jobs_filter = list(job_ids)
                if nodes is not None:
                    picked = [j.id async for j in jd.iter_jobs(node_ids=nodes)] if nodes else []
                    jobs_filter = [j for j in picked if not job_ids or j in job_ids]
                    if not jobs_filter:
                        got: list[job.Proposal] = []
                    else:
                        got = [
                            p async for p in jd.iter_proposals(ids=list(ids), job_ids=jobs_filter)
                        ]
                else:
                    got = [p async for p in jd.iter_proposals(ids=list(ids), job_ids=jobs_filter)]
                if wanted:
                    got = [p for p in got if p.status in wanted]
                node_of = (
                    await node_of_jobs(jd, [p.job_id for p in got]) if not out.json_mode else {}
                )
        out.result(
            proposal_table([(node_of.get(p.job_id, ""), p) for p in got]),
            data=job.ListProposalsResponse(proposals=got),
        )

    return run(go())


@proposals.command("get")
@click.argument("proposal_id", metavar="ID")
@read_command
def proposals_get(proposal_id: str) -> int:
    """Show one proposal, with its spec."""
    st = state()
    out = st.output()

    async def go() -> None:
        async with st.connect(out) as jd:
            resp = await jd.get_proposal(id=proposal_id)
        out.result(resp.proposal, data=resp)

    return run(go())


def _check_node_side_db(verb: str, db: str | None) -> str:
    if not db:
        raise UsageError(
            f"proposals {verb} plays the node's side of jdkit's embedded JD and needs "
            "its database: start it with `jdkit serve --db PATH` and pass --db PATH here "
            "(or set JDKIT_DB)"
        )
    if db == ":memory:":
        raise UsageError("--db :memory: is private to the process that serves it; use a file")
    if "://" not in db and not os.path.exists(db):
        raise UsageError(f"--db {db}: no such file (give the path `jdkit serve --db` was given)")
    return db


def _node_side(verb: str, help_: str) -> click.Command:
    @click.argument("proposal_id", metavar="ID")
    @click.option(
        "--db",
        envvar="JDKIT_DB",
        metavar="PATH",
        help="the SQLite file (or postgresql:// URL) of `jdkit serve --db PATH`; env JDKIT_DB",
    )
    @write_command
    def cmd(proposal_id: str, db: str | None) -> int:
        st = state()
        st.refuse_connection_flags(f"proposals {verb}")
        out = st.output()
        path = _check_node_side_db(verb, db)
        if st.dry_run:
            if out.json_mode:
                out.json({"dryRun": True, "nodeSide": [{"op": verb, "proposalId": proposal_id}]})
            else:
                out.text(f"Dry-run plan: 1 node-side answer (not made)\n  1. {verb} {proposal_id}")
            return 0

        async def go() -> None:
            from jdkit.server import EmbeddedJD

            # A real node answers over JD's node-facing port; here a short-lived
            # EmbeddedJD on the same database as `jdkit serve --db` plays it, so the
            # rules are the server's. The database holds its sealed key already:
            # with the wrong CSA_KEY_ENCRYPTION_SECRET the start fails, naming it.
            async with EmbeddedJD.start(
                host="127.0.0.1", port=0, db=path, insecure_dev_secret=True
            ) as srv:
                answer = {
                    "approve": srv.approve_proposal,
                    "reject": srv.reject_proposal,
                    "cancel": srv.cancel_proposal,
                }[verb]
                proposal = await answer(proposal_id)
            past = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[verb]
            out.result(proposal, title=past, data=job.GetProposalResponse(proposal=proposal))

        return run(go())

    cmd.__doc__ = f"As the node: {help_} (embedded JD only; needs --db)."
    return click.command(verb)(cmd)


proposals.add_command(_node_side("approve", "approve a PROPOSED proposal"))
proposals.add_command(_node_side("reject", "reject a PROPOSED proposal"))
proposals.add_command(_node_side("cancel", "cancel a PROPOSED or APPROVED proposal"))


# ------------------------------------------------------------------ wait


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
