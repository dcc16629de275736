"""`jdkit jobs ...`: list, show, change, revoke and delete jobs. The rollout
commands of the group (`propose`, `status`) are in `_rollout`."""

from __future__ import annotations

import click

from jdkit._cli._app import (
    label_option,
    read_command,
    run,
    selector_option,
    state,
    wide_option,
    write_command,
)
from jdkit._cli._config import UsageError
from jdkit._cli._inputs import labels_of, selectors_of
from jdkit._cli._rollout import jobs_status, propose_command
from jdkit.pb import job


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


jobs.add_command(propose_command("propose"))
jobs.add_command(propose_command("batch-propose", hidden=True))  # the 0.1 name
jobs.add_command(jobs_status)


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
