"""The `jdkit` command line: a JD from the shell.

    jdkit serve --port 0                       # an embedded JD; prints `listening on HOST:PORT`
    export JD_GRPC_URL=127.0.0.1:14231
    jdkit nodes register --name n1 --public-key $KEY --label env=dev
    jdkit nodes list -l 'env=dev, region in (eu,us)'
    jdkit jobs propose --node node_... --spec job.toml      # or --spec - (stdin)
    jdkit --dry-run jobs batch-propose -l env=dev --spec job.toml
    jdkit --json proposals list

Global options may come before or after the command. Connection settings come
from flags, else from the environment `RemoteConfig.from_env()` reads
(JD_GRPC_URL, JD_TLS*, JD_TIMEOUT, JD_ALLOW_INSECURE_AUTH, JD_TOKEN,
JD_OAUTH2_*, JD_COGNITO_*); secrets (passwords, client secrets) are read from
the environment only, so they stay out of `ps` and shell history.

Exit status: 0 success; 1 a call failed (the one-line `error: STATUS: ...`
says why), some nodes of a batch failed, or health is not SERVING; 2 a usage
or configuration mistake (bad flag, selector, label or spec file; no URL);
130 interrupted.

Built on argparse (stdlib) for parsing and rich (the `cli` extra) for tables
and progress bars on a terminal; without rich, or in a pipe, output is plain
aligned text, and `--json` prints proto JSON for every command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from jdkit._cli_output import Output
from jdkit._exceptions import (
    ConfigError,
    JDError,
    RPCError,
    UnavailableError,
)

Handler = Callable[[argparse.Namespace, Output], Awaitable[int | None]]

#: flag dest -> environment variable it stands for
_ENV_FLAGS: dict[str, str] = {
    "url": "JD_GRPC_URL",
    "tls_ca": "JD_TLS_CA_FILE",
    "tls_cert": "JD_TLS_CERT_FILE",
    "tls_key": "JD_TLS_KEY_FILE",
    "tls_server_name": "JD_TLS_SERVER_NAME",
    "timeout": "JD_TIMEOUT",
    "token": "JD_TOKEN",
    "cognito_client_id": "JD_COGNITO_CLIENT_ID",
    "cognito_username": "JD_COGNITO_USERNAME",
    "cognito_region": "JD_COGNITO_REGION",
    "cognito_endpoint_url": "JD_COGNITO_ENDPOINT_URL",
}
_AUTH_PREFIXES = ("JD_TOKEN", "JD_OAUTH2_", "JD_COGNITO_")

NO_URL = (
    "no JD to talk to: pass --url HOST:PORT or set JD_GRPC_URL "
    "(start a local one with `jdkit serve`)"
)


EPILOG = """\
examples:
  jdkit serve --port 0 --db jd.sqlite        # prints: listening on 127.0.0.1:PORT
                                 # (needs CSA_KEY_ENCRYPTION_SECRET or --insecure-dev-secret)
  export JD_GRPC_URL=127.0.0.1:PORT
  jdkit nodes register --name n1 --public-key KEY --label env=dev
  jdkit nodes list -l 'env=dev, region in (eu,us), !canary'
  jdkit jobs batch-propose -l env=dev -f job.toml      # -f - reads stdin
  jdkit --dry-run jobs propose --node NODE_ID -f job.toml
  jdkit proposals approve PROP_ID --db jd.sqlite       # as the node (embedded JD)
  jdkit --json proposals list

The node's answers (approve/reject/cancel) reach jdkit's embedded JD through
its database: `jdkit serve --db FILE`, then the same --db here.

exit status: 0 ok; 1 a call failed (or some nodes of a batch, or not SERVING);
2 a usage or configuration mistake; 130 interrupted.
"""


class UsageError(JDError):
    """A mistake on the command line that argparse cannot see (exit status 2)."""


# ------------------------------------------------------------------ parser


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command accepts; `suppress` keeps subparser defaults from
    overwriting values given before the command."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("connection and output (before or after the command)")
    g.add_argument(
        "--url",
        default=d(None),
        metavar="HOST:PORT",
        help="JD gRPC address; env JD_GRPC_URL (grpcs://host for TLS)",
    )
    g.add_argument(
        "--tls",
        action="store_true",
        default=d(False),
        help="TLS with the system roots; env JD_TLS=1",
    )
    g.add_argument(
        "--tls-ca", default=d(None), metavar="FILE", help="CA bundle; env JD_TLS_CA_FILE"
    )
    g.add_argument(
        "--tls-cert",
        default=d(None),
        metavar="FILE",
        help="client certificate (mTLS); env JD_TLS_CERT_FILE",
    )
    g.add_argument(
        "--tls-key", default=d(None), metavar="FILE", help="client key (mTLS); env JD_TLS_KEY_FILE"
    )
    g.add_argument(
        "--tls-server-name",
        default=d(None),
        metavar="NAME",
        help="name to verify the server certificate against; env JD_TLS_SERVER_NAME",
    )
    g.add_argument(
        "--token",
        default=d(None),
        metavar="TOKEN",
        help="static bearer token; env JD_TOKEN (prefer the env var)",
    )
    g.add_argument(
        "--cognito-client-id",
        default=d(None),
        metavar="ID",
        help="Cognito app client id; env JD_COGNITO_CLIENT_ID "
        "(password: JD_COGNITO_PASSWORD, secret: JD_COGNITO_CLIENT_SECRET)",
    )
    g.add_argument(
        "--cognito-username", default=d(None), metavar="USER", help="env JD_COGNITO_USERNAME"
    )
    g.add_argument(
        "--cognito-region",
        default=d(None),
        metavar="REGION",
        help="env JD_COGNITO_REGION / AWS_REGION",
    )
    g.add_argument(
        "--cognito-endpoint-url",
        default=d(None),
        metavar="URL",
        help="Cognito endpoint override; env JD_COGNITO_ENDPOINT_URL",
    )
    g.add_argument(
        "--allow-insecure-auth",
        action="store_true",
        default=d(False),
        help="send tokens over plaintext; env JD_ALLOW_INSECURE_AUTH=1",
    )
    g.add_argument(
        "--timeout",
        default=d(None),
        metavar="SECONDS",
        help="per-call deadline (0: none); env JD_TIMEOUT",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        default=d(False),
        help="send reads, print the writes as a plan instead of sending them",
    )
    g.add_argument(
        "--json", action="store_true", default=d(False), help="machine-readable output (proto JSON)"
    )


def _cmd(
    sub: Any, name: str, handler: Handler, help_: str, *, write: bool = False
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    _global_options(p, suppress=True)
    p.set_defaults(handler=handler, write=write)
    return p


def _group(sub: Any, name: str, help_: str) -> Any:
    p = sub.add_parser(name, help=help_, description=help_)
    _global_options(p, suppress=True)
    inner = p.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return inner


def _selector_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-l",
        "--selector",
        action="append",
        default=[],
        metavar="SELECTOR",
        help="label selector: key=value, key!=value, 'key in (a,b)', 'key notin (a,b)', key, !key; "
        "comma-separated or repeated, all must match",
    )


def _label_opt(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{what} (repeatable; a bare KEY is a label without a value)",
    )


def _spec_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--spec",
        required=True,
        metavar="FILE",
        help="job spec (TOML with externalJobID); - reads stdin",
    )


def _wide_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wide", action="store_true", help="show keys and addresses in full")


def build_parser() -> argparse.ArgumentParser:
    from jdkit import _cli_commands as c

    parser = argparse.ArgumentParser(
        prog="jdkit",
        description="Talk to a Chainlink Job Distributor, or run jdkit's embedded one.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _cmd(sub, "serve", c.serve, "run an embedded JD until Ctrl-C / SIGTERM")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=14231, help="gRPC port (default 14231; 0 picks a free one)"
    )
    p.add_argument(
        "--db",
        default=":memory:",
        metavar="PATH",
        help="SQLite file (state survives restarts; lets `proposals approve --db` reach it), "
        "postgresql:// URL, or :memory: (default)",
    )
    p.add_argument(
        "--insecure-dev-secret",
        action="store_true",
        help="without CSA_KEY_ENCRYPTION_SECRET, seal the CSA key of a file or Postgres "
        "database with the public dev secret (throwaway dev databases only)",
    )
    p.add_argument(
        "--max-receive-message-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="largest request message accepted (default 4194304, as grpc-go)",
    )
    p.add_argument(
        "--max-send-message-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="largest reply message sent (default: no limit, as grpc-go)",
    )

    p = _cmd(sub, "health", c.health, "check the JD's gRPC health (exit 1 unless SERVING)")
    p.add_argument("--service", default="", help="health service name (default: the server)")
    _cmd(sub, "version", c.version, "print jdkit's version and, with a URL, the JD's")

    # nodes
    nodes = _group(sub, "nodes", "register, inspect and change nodes")
    p = _cmd(nodes, "list", c.nodes_list, "list nodes")
    p.add_argument("--id", action="append", default=[], help="only this node id (repeatable)")
    p.add_argument("--public-key", action="append", default=[], help="only this key (repeatable)")
    en = p.add_mutually_exclusive_group()
    en.add_argument("--enabled", action="store_true", help="only enabled nodes")
    en.add_argument("--disabled", action="store_true", help="only disabled nodes")
    _selector_opt(p)
    p.add_argument("--page-size", type=int, default=None, help="one page of this size")
    p.add_argument("--page", type=int, default=None, help="which page (1-based)")
    _wide_opt(p)
    p = _cmd(nodes, "get", c.nodes_get, "show one node, by id or --public-key")
    p.add_argument("id", nargs="?", help="node id")
    p.add_argument("--public-key", help="find the node by its CSA public key instead")
    p = _cmd(nodes, "register", c.nodes_register, "register a node", write=True)
    p.add_argument("--name", required=True)
    p.add_argument("--public-key", required=True, help="the node's CSA public key (hex)")
    _label_opt(p, "a label")
    p = _cmd(nodes, "update", c.nodes_update, "change a node's name, key or labels", write=True)
    p.add_argument("id", help="node id")
    p.add_argument("--name", default="", help="new name")
    p.add_argument("--public-key", default="", help="new CSA public key")
    _label_opt(p, "replaces all labels when given")
    p = _cmd(nodes, "enable", c.nodes_enable, "enable a node", write=True)
    p.add_argument("id", help="node id")
    p = _cmd(nodes, "disable", c.nodes_disable, "disable a node", write=True)
    p.add_argument("id", help="node id")
    p = _cmd(nodes, "chain-configs", c.nodes_chain_configs, "list nodes' chain configs")
    p.add_argument("--node", action="append", default=[], help="only this node (repeatable)")
    _wide_opt(p)

    # jobs
    jobs = _group(sub, "jobs", "propose jobs and manage them")
    p = _cmd(jobs, "list", c.jobs_list, "list jobs")
    p.add_argument("--id", action="append", default=[], help="only this job id (repeatable)")
    p.add_argument("--node", action="append", default=[], help="only this node's (repeatable)")
    p.add_argument("--uuid", action="append", default=[], help="only this externalJobID")
    _selector_opt(p)
    p.add_argument("--include-deleted", action="store_true", help="show deleted jobs too")
    _wide_opt(p)
    p = _cmd(jobs, "get", c.jobs_get, "show one job")
    p.add_argument("id", help="job id")
    p = _cmd(jobs, "propose", c.jobs_propose, "propose a job spec to a node", write=True)
    p.add_argument("--node", required=True, help="node id")
    _spec_opt(p)
    _label_opt(p, "a job label")
    p = _cmd(
        jobs,
        "batch-propose",
        c.jobs_batch_propose,
        "propose a job spec to many nodes (each node succeeds or fails on its own)",
        write=True,
    )
    p.add_argument("--node", action="append", default=[], help="a node id (repeatable)")
    _selector_opt(p)
    p.add_argument(
        "--chunk-size",
        type=int,
        default=50,
        help="nodes per BatchProposeJob call (default 50; the progress bar moves per chunk)",
    )
    _spec_opt(p)
    _label_opt(p, "a job label")
    p = _cmd(jobs, "update", c.jobs_update, "change a job's labels or rollback policy", write=True)
    p.add_argument("id", help="job id")
    _label_opt(p, "replaces all labels when given")
    p.add_argument("--rollback-policy-id", type=int, default=None, help="rollback policy id")
    p = _cmd(jobs, "revoke", c.jobs_revoke, "revoke a job's latest proposal", write=True)
    p.add_argument("id", help="job id (or proposal id)")
    p = _cmd(jobs, "delete", c.jobs_delete, "delete a job (soft: sets deleted_at)", write=True)
    p.add_argument("id", help="job id")

    # proposals
    props = _group(sub, "proposals", "inspect proposals; play the node's answers (embedded JD)")
    p = _cmd(props, "list", c.proposals_list, "list proposals")
    p.add_argument("--id", action="append", default=[], help="only this proposal (repeatable)")
    p.add_argument("--job", action="append", default=[], help="only this job's (repeatable)")
    _wide_opt(p)
    p = _cmd(props, "get", c.proposals_get, "show one proposal, with its spec")
    p.add_argument("id", help="proposal id")
    for verb, helptext in (
        ("approve", "as the node: approve a PROPOSED proposal"),
        ("reject", "as the node: reject a PROPOSED proposal"),
        ("cancel", "as the node: cancel a PROPOSED or APPROVED proposal"),
    ):
        p = _cmd(props, verb, c.node_side, helptext + " (embedded JD only; needs --db)")
        p.add_argument("id", help="proposal id")
        p.add_argument(
            "--db",
            default=os.environ.get("JDKIT_DB") or None,
            metavar="PATH",
            help="the SQLite file (or postgresql:// URL) of `jdkit serve --db PATH`; env JDKIT_DB",
        )
        p.set_defaults(verb=verb)

    # keys
    keys = _group(sub, "keys", "JD's CSA keys")
    _cmd(keys, "list", c.keys_list, "list JD's CSA keypairs")
    _cmd(keys, "public", c.keys_public, "print JD's CSA public key")
    return parser


# ------------------------------------------------------------------ config


def environment(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The JD_* environment with the command-line flags laid over it."""
    out = dict(os.environ if env is None else env)
    if any(getattr(args, f, None) for f in ("token", "cognito_client_id", "cognito_username")):
        # an auth flag picks the family: others in the environment would conflict
        for k in list(out):
            if k.startswith(_AUTH_PREFIXES):
                del out[k]
    for dest, var in _ENV_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and value != "":
            out[var] = str(value)
    if getattr(args, "tls", False):
        out["JD_TLS"] = "1"
    if getattr(args, "allow_insecure_auth", False):
        out["JD_ALLOW_INSECURE_AUTH"] = "1"
    return out


def remote_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Any:
    """`RemoteConfig.from_env` over flags + environment; UsageError without a URL."""
    from jdkit._providers import RemoteConfig

    merged = environment(args, env)
    if not merged.get("JD_GRPC_URL", "").strip():
        raise UsageError(NO_URL)
    return RemoteConfig.from_env(merged)


# ------------------------------------------------------------------ errors


def describe(exc: BaseException) -> str:
    """One line for the user, without a traceback."""
    if isinstance(exc, RPCError):
        msg = exc.message or exc.code.name
        line = f"{exc.code.name}: {msg}"
        if isinstance(exc, UnavailableError) and exc.reached_server is False:
            line += " (is a JD running there? `jdkit serve` starts one)"
        return line
    return str(exc) or type(exc).__name__


def _error_json(exc: JDError) -> dict[str, object]:
    if isinstance(exc, RPCError):
        return {"code": exc.code.name, "message": exc.message, "method": exc.method}
    if isinstance(exc, ConfigError):
        return {"code": "CONFIG", "field": exc.field, "message": exc.problem}
    return {"code": type(exc).__name__, "message": str(exc)}


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, UsageError | ConfigError):
        return 2
    return 1


async def _run(args: argparse.Namespace, out: Output) -> int:
    handler: Handler = args.handler
    return (await handler(args, out)) or 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=bool(args.json), wide=bool(getattr(args, "wide", False)))
    try:
        return asyncio.run(_run(args, out))
    except KeyboardInterrupt:
        # a write already sent may have been applied: say so rather than imply nothing happened
        print(
            "interrupted (a write already sent may have been applied; check with a list command)",
            file=sys.stderr,
        )
        return 130
    except JDError as exc:
        if out.json_mode:  # machine-readable errors too, still on stderr
            print(json.dumps({"error": _error_json(exc)}), file=sys.stderr, flush=True)
        else:
            print(f"error: {describe(exc)}", file=sys.stderr, flush=True)
        return _exit_code(exc)
    except BrokenPipeError:
        # `jdkit nodes list | head`: the reader went away; nothing left to say
        with contextlib.suppress(Exception):
            sys.stdout.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
