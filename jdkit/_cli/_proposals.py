"""`jdkit proposals ...`: list and show proposals (with the node each went
to), and play the node's answers on jdkit's embedded JD."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

from jdkit._cli._app import read_command, run, selector_option, state, wide_option, write_command
from jdkit._cli._config import UsageError
from jdkit._cli._inputs import node_ids_for
from jdkit._display import Column, Table
from jdkit._display._cells import fmt_time, fmt_value
from jdkit._tasks._waiters import parse_status
from jdkit.pb import job

STATUSES = [s.name for s in job.ProposalStatus if s != job.ProposalStatus.UNSPECIFIED]


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
