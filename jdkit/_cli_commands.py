"""What each `jdkit` command does (the parser is in `_cli.py`).

Every handler takes the parsed arguments and the `Output`, returns an exit
status (None for 0) and raises `JDError`s for `main()` to print as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from jdkit import selectors
from jdkit._cli import Handler, UsageError, describe, remote_config
from jdkit._cli_output import Output
from jdkit._client import JobDistributor
from jdkit._display import BatchResult, Table, batch_results
from jdkit._exceptions import ConfigError, JDError
from jdkit.pb import csa, job, label, node

#: page size `nodes list` fetches with when it pages through everything
LIST_PAGE = 500


# ------------------------------------------------------------------ plumbing


@contextlib.asynccontextmanager
async def connected(args: argparse.Namespace, out: Output) -> AsyncIterator[JobDistributor]:
    """A client from flags + environment; in dry-run, writes go to a journal that
    is printed (instead of the command's result) when the command is done."""
    from jdkit._providers import RemoteProvider

    dry = bool(args.dry_run) and bool(getattr(args, "write", False))
    async with RemoteProvider(remote_config(args), dry_run=dry) as jd:
        yield jd
        if dry and jd.journal is not None:
            if out.json_mode:
                out.json({"dry_run": True, "writes": [e.to_dict() for e in jd.journal]})
            else:
                out.text(jd.journal.plan())


def emit(args: argparse.Namespace, out: Output, obj: Any, *, title: str | None = None) -> None:
    """Print a write's result, unless this is a dry run (the plan is printed instead)."""
    if args.dry_run and getattr(args, "write", False):
        return
    out.result(obj, title=title)


def write_by_id(rpc: str, request: Callable[..., Any], title: str) -> Handler:
    """A write command whose one argument is an id: send it, print what JD answered."""

    async def run(args: argparse.Namespace, out: Output) -> int | None:
        async with connected(args, out) as jd:
            resp = await getattr(jd, rpc)(request(id=args.id))
            emit(args, out, resp, title=title)
        return None

    return run


nodes_enable = write_by_id("enable_node", node.EnableNodeRequest, "enabled")
nodes_disable = write_by_id("disable_node", node.DisableNodeRequest, "disabled")
jobs_revoke = write_by_id("revoke_job", job.RevokeJobRequest, "revoked")
jobs_delete = write_by_id("delete_job", job.DeleteJobRequest, "deleted")


def read_spec(path: str) -> str:
    """The spec text from `path` or stdin (`-`), checked locally so mistakes are named
    before anything is sent: valid TOML with an `externalJobID` UUID."""
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except FileNotFoundError:
        raise ConfigError("spec", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("spec", f"cannot read {where}: {exc}") from None
    if not text.strip():
        raise ConfigError("spec", f"{where} is empty")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("spec", f"{where} is not valid TOML: {exc}") from None
    ext = doc.get("externalJobID")
    if not isinstance(ext, str) or not ext:
        raise ConfigError(
            "spec", f"{where} has no externalJobID (every JD job spec needs a UUID there)"
        )
    try:
        uuid.UUID(ext)
    except ValueError:
        raise ConfigError("spec", f"externalJobID {ext!r} in {where} is not a UUID") from None
    return text


def labels_of(args: argparse.Namespace) -> list[label.Label]:
    return selectors.parse_labels(args.label) if args.label else []


def selectors_of(args: argparse.Namespace) -> list[label.Selector]:
    return selectors.parse(args.selector) if args.selector else []


# ------------------------------------------------------------------ serve / health / version


async def serve(args: argparse.Namespace, out: Output) -> int | None:
    """Run an embedded JD until SIGINT/SIGTERM; the first line says where it listens."""
    from jdkit._server import EmbeddedJD
    from jdkit._server._embedded import tune_for_serving
    from jdkit._server._limits import ServerLimits

    tune_for_serving()

    # None: the server reads CSA_KEY_ENCRYPTION_SECRET, and refuses a file or
    # Postgres database without it unless --insecure-dev-secret
    secret = os.environ.get("CSA_KEY_ENCRYPTION_SECRET") or None
    sizes = {
        name: value
        for name in ("max_receive_message_size", "max_send_message_size")
        if (value := getattr(args, name, None)) is not None
    }
    limits = ServerLimits(**sizes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with EmbeddedJD.start(
            host=args.host,
            port=args.port,
            db=args.db,
            csa_secret=secret,
            limits=limits,
            insecure_dev_secret=args.insecure_dev_secret,
        ) as srv:
            if out.json_mode:
                out.json({"listening": srv.address, "db": args.db}, one_line=True)
            else:
                out.text(f"listening on {srv.address}")
                out.note(f"export JD_GRPC_URL={srv.address}   # then try: jdkit nodes list")
            await stop.wait()
            out.note("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return None


async def health(args: argparse.Namespace, out: Output) -> int | None:
    async with connected(args, out) as jd:
        status = await jd.check_health(args.service)
    name = status.name or str(int(status))
    if out.json_mode:
        out.json({"status": name})
    else:
        out.text(name)
    return 0 if name == "SERVING" else 1


async def version(args: argparse.Namespace, out: Output) -> int | None:
    from jdkit import __version__

    try:
        cfg = remote_config(args)
    except UsageError:
        cfg = None
    server: str | None = None
    error: str | None = None
    if cfg is not None:
        try:
            async with connected(args, out) as jd:
                server = (await jd.version()).version
        except JDError as exc:
            error = describe(exc)
    if out.json_mode:
        out.json({"jdkit": __version__, "server": server, **({"error": error} if error else {})})
    else:
        out.text(f"jdkit {__version__}")
        if server is not None:
            out.text(f"server {server}")
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return None


# ------------------------------------------------------------------ nodes


async def nodes_list(args: argparse.Namespace, out: Output) -> int | None:
    enabled = (
        node.EnableState.ENABLED
        if args.enabled
        else node.EnableState.DISABLED
        if args.disabled
        else node.EnableState.UNSPECIFIED
    )
    flt = node.ListNodesRequestFilter(
        ids=args.id, public_keys=args.public_key, enabled=enabled, selectors=selectors_of(args)
    )
    async with connected(args, out) as jd:
        if args.page_size is not None or args.page is not None:
            resp = await jd.list_nodes(
                node.ListNodesRequest(
                    filter=flt, page_size=args.page_size or 0, page=args.page or 0
                )
            )
            out.result(resp)
            return None
        # all of them, a page at a time, with a progress bar (on a terminal);
        # robust to servers that leave total_count at 0 or ignore `page`
        got: list[node.Node] = []
        seen: set[str] = set()
        total = 0
        with out.progress("listing nodes", None) as advance:
            page = 1
            while True:
                resp = await jd.list_nodes(
                    node.ListNodesRequest(filter=flt, page_size=LIST_PAGE, page=page)
                )
                fresh = [n for n in resp.nodes if n.id not in seen]
                got.extend(fresh)
                seen.update(n.id for n in fresh)
                total = resp.total_count
                advance(len(fresh), total=max(total, len(got)))
                if not fresh or len(resp.nodes) < LIST_PAGE or (total and len(got) >= total):
                    break
                page += 1
    out.result(node.ListNodesResponse(nodes=got, total_count=max(total, len(got))))
    return None


async def nodes_get(args: argparse.Namespace, out: Output) -> int | None:
    if bool(args.id) == bool(args.public_key):
        raise UsageError("nodes get: give a node id or --public-key (one of the two)")
    req = node.GetNodeRequest(id=args.id or "", public_key=args.public_key or None)
    async with connected(args, out) as jd:
        resp = await jd.get_node(req)
    out.result(resp.node, data=resp)
    return None


async def nodes_register(args: argparse.Namespace, out: Output) -> int | None:
    req = node.RegisterNodeRequest(
        name=args.name, public_key=args.public_key, labels=labels_of(args)
    )
    async with connected(args, out) as jd:
        resp = await jd.register_node(req)
        emit(args, out, resp, title="registered")
    return None


async def nodes_update(args: argparse.Namespace, out: Output) -> int | None:
    req = node.UpdateNodeRequest(
        id=args.id, name=args.name, public_key=args.public_key, labels=labels_of(args)
    )
    if not (args.name or args.public_key or args.label):
        raise UsageError("nodes update: nothing to change; give --name, --public-key or --label")
    async with connected(args, out) as jd:
        resp = await jd.update_node(req)
        emit(args, out, resp, title="updated")
    return None


async def nodes_chain_configs(args: argparse.Namespace, out: Output) -> int | None:
    req = node.ListNodeChainConfigsRequest(
        filter=node.ListNodeChainConfigsRequestFilter(node_ids=args.node)
    )
    async with connected(args, out) as jd:
        with out.waiting("listing chain configs"):
            resp = await jd.list_node_chain_configs(req)
    out.result(resp)
    return None


# ------------------------------------------------------------------ jobs


async def jobs_list(args: argparse.Namespace, out: Output) -> int | None:
    req = job.ListJobsRequest(
        filter=job.ListJobsRequestFilter(
            ids=args.id,
            node_ids=args.node,
            uuids=args.uuid,
            selectors=selectors_of(args),
            include_deleted=args.include_deleted,
        )
    )
    async with connected(args, out) as jd:
        with out.waiting("listing jobs"):
            resp = await jd.list_jobs(req)
    out.result(resp)
    return None


async def jobs_get(args: argparse.Namespace, out: Output) -> int | None:
    async with connected(args, out) as jd:
        resp = await jd.get_job(job.GetJobRequest(id=args.id))
    out.result(resp.job, data=resp)
    return None


async def jobs_propose(args: argparse.Namespace, out: Output) -> int | None:
    req = job.ProposeJobRequest(
        node_id=args.node, spec=read_spec(args.spec), labels=labels_of(args)
    )
    async with connected(args, out) as jd:
        resp = await jd.propose_job(req)
        emit(args, out, resp, title="proposed")
    return None


async def jobs_batch_propose(args: argparse.Namespace, out: Output) -> int | None:
    if args.chunk_size < 1:
        raise UsageError("--chunk-size must be at least 1")
    if not args.node and not args.selector:
        raise UsageError("jobs batch-propose: give the nodes with --node ID or -l SELECTOR")
    spec = read_spec(args.spec)
    labels = labels_of(args)
    sels = selectors_of(args)
    async with connected(args, out) as jd:
        node_ids = list(dict.fromkeys(args.node))
        if sels:
            listed = await jd.list_nodes(
                node.ListNodesRequest(filter=node.ListNodesRequestFilter(selectors=sels))
            )
            node_ids.extend(n.id for n in listed.nodes if n.id not in node_ids)
            if not node_ids:
                raise UsageError(f"no node matches {selectors.format(sels)!r}")
        results: list[BatchResult] = []
        with out.progress("proposing", len(node_ids)) as advance:
            for i in range(0, len(node_ids), args.chunk_size):
                chunk = node_ids[i : i + args.chunk_size]
                resp = await jd.batch_propose_job(
                    job.BatchProposeJobRequest(node_ids=chunk, spec=spec, labels=labels)
                )
                results.extend(batch_results(resp))
                advance(len(chunk))
        if args.dry_run:
            return None
        failed = [r for r in results if not r.ok]
        ok = len(results) - len(failed)
        if out.json_mode:
            out.json(
                {
                    "success_responses": {r.node_id: r.proposal_id for r in results if r.ok},
                    "failed_responses": {r.node_id: r.error for r in failed},
                    "results": [
                        {
                            "node_id": r.node_id,
                            "ok": r.ok,
                            "proposal_id": r.proposal_id,
                            "revision": r.revision,
                            "error": r.error,
                        }
                        for r in results
                    ],
                }
            )
        else:
            out.result(Table(results, title=f"{ok} proposed, {len(failed)} failed"))
        if failed:
            print(
                f"error: {len(failed)} of {len(results)} nodes failed "
                f"(first: {failed[0].node_id}: {failed[0].error})",
                file=sys.stderr,
            )
            return 1
    return None


async def jobs_update(args: argparse.Namespace, out: Output) -> int | None:
    if not args.label and args.rollback_policy_id is None:
        raise UsageError("jobs update: nothing to change; give --label or --rollback-policy-id")
    req = job.UpdateJobRequest(
        id=args.id, labels=labels_of(args), rollback_policy_id=args.rollback_policy_id
    )
    async with connected(args, out) as jd:
        resp = await jd.update_job(req)
        emit(args, out, resp, title="updated")
    return None


# ------------------------------------------------------------------ proposals


async def proposals_list(args: argparse.Namespace, out: Output) -> int | None:
    req = job.ListProposalsRequest(
        filter=job.ListProposalsRequestFilter(ids=args.id, job_ids=args.job)
    )
    async with connected(args, out) as jd:
        with out.waiting("listing proposals"):
            resp = await jd.list_proposals(req)
    out.result(resp)
    return None


async def proposals_get(args: argparse.Namespace, out: Output) -> int | None:
    async with connected(args, out) as jd:
        resp = await jd.get_proposal(job.GetProposalRequest(id=args.id))
    out.result(resp.proposal, data=resp)
    return None


async def node_side(args: argparse.Namespace, out: Output) -> int | None:
    """approve / reject / cancel as the node, on the embedded JD's database.

    A real node answers over JD's node-facing port, which jdkit's JD does not
    serve; the embedded JD's own helpers (`EmbeddedJD.approve_proposal`, ...)
    play that part. This command runs them in a short-lived EmbeddedJD on the
    same database as `jdkit serve --db PATH` (SQLite in WAL mode takes the two
    processes; the serving JD keeps no state outside the database), bound to a
    throwaway loopback port, so the rules are exactly the server's.
    """
    from jdkit._server import EmbeddedJD

    check_node_side_db(args.verb, args.db)
    if args.dry_run:
        if out.json_mode:
            out.json({"dry_run": True, "node_side": [{"op": args.verb, "proposal_id": args.id}]})
        else:
            out.text(f"Dry-run plan: 1 node-side answer (not made)\n  1. {args.verb} {args.id}")
        return None
    # The same secret `jdkit serve` used: CSA_KEY_ENCRYPTION_SECRET, else the dev
    # one (--insecure-dev-secret). The database exists (checked above) and holds
    # its key already, so the dev secret here seals nothing new: with the wrong
    # secret the start fails, naming CSA_KEY_ENCRYPTION_SECRET.
    async with EmbeddedJD.start(
        host="127.0.0.1", port=0, db=args.db, insecure_dev_secret=True
    ) as srv:
        answer = {
            "approve": srv.approve_proposal,
            "reject": srv.reject_proposal,
            "cancel": srv.cancel_proposal,
        }[args.verb]
        proposal = await answer(args.id)
    past = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[args.verb]
    out.result(proposal, title=past, data=job.GetProposalResponse(proposal=proposal))
    return None


def check_node_side_db(verb: str, db: str | None) -> None:
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


# ------------------------------------------------------------------ keys


async def keys_list(args: argparse.Namespace, out: Output) -> int | None:
    async with connected(args, out) as jd:
        resp = await jd.list_keypairs(csa.ListKeypairsRequest())
    out.result(resp)
    return None


async def keys_public(args: argparse.Namespace, out: Output) -> int | None:
    async with connected(args, out) as jd:
        key = await jd.get_csa_public_key()
    if out.json_mode:
        out.json({"public_key": key})
    else:
        out.text(key)
    return None
