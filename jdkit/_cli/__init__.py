"""The `jdkit` command line: a JD from the shell.

    jdkit serve --port 0                       # an embedded JD; prints `listening on HOST:PORT`
    export JD_GRPC_URL=127.0.0.1:14231
    jdkit nodes register --name n1 --public-key $KEY --label env=dev
    jdkit jobs propose -l env=dev -f job.toml
    jdkit wait $EXTERNAL_JOB_ID && jdkit jobs status $EXTERNAL_JOB_ID
    jdkit --json proposals list --status PROPOSED

Built on click: its groups give each command a `--help` of its own options
(connection options appear once, in `jdkit --help`), and it writes the
bash/zsh/fish completion scripts `jdkit completion SHELL` prints. Tables
come from `jdkit.display` (rich on a terminal, plain text in pipes).

Layout: `_app` (root options, `State`: flags -> one `ClientOptions`),
`_config` (flags + environment -> `ClientOptions`, blaming the right flag),
`_errors`, `_output`, `_inputs`, and one module per command family (`_jobs`;
`_rollout`: `jobs propose`, `jobs status`, `wait`; `_proposals`). Nothing
here imports this package's `__init__` but `completion` (lazily), so there is
no import cycle.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from jdkit._cli._app import CONTEXT, EPILOG, State, root_options
from jdkit._cli._completion import completion
from jdkit._cli._errors import describe, error_json, exit_code
from jdkit._cli._health import health
from jdkit._cli._jobs import jobs
from jdkit._cli._keys import keys
from jdkit._cli._node import node
from jdkit._cli._nodes import nodes
from jdkit._cli._proposals import proposals
from jdkit._cli._rollout import wait
from jdkit._cli._serve import serve
from jdkit._cli._version import version
from jdkit._exceptions import JDError
from jdkit._tasks import ProposalWaitError

__all__ = ["cli", "main"]


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@root_options
@click.pass_context
def cli(ctx: click.Context, /, json_: bool, dry_run: bool, **flags: Any) -> None:
    """Talk to a Chainlink Job Distributor, or run jdkit's embedded one.

    Connection options come before the command, from flags or the
    environment (JD_GRPC_URL, JD_TLS*, JD_TOKEN, JD_OAUTH2_*, JD_COGNITO_*,
    and JD_<OPTION> for every other option: JD_TIMEOUT, JD_METADATA, ...);
    a flag wins over its variable. Secrets such as passwords come from the
    environment only.
    """
    st = ctx.ensure_object(State)
    st.flags = flags
    st.json = st.json or json_
    st.dry_run = st.dry_run or dry_run


for command in (serve, health, version, nodes, node, jobs, proposals, wait, keys, completion):
    cli.add_command(command)


def _print_error(st: State, exc: JDError) -> None:
    if st.json:
        body = error_json(exc)
        if isinstance(exc, ProposalWaitError):
            body = {"code": "NOT_REACHED", "message": str(exc), "counts": exc.counts}
        print(json.dumps({"error": body}), file=sys.stderr, flush=True)
    else:
        print(f"error: {describe(exc)}", file=sys.stderr, flush=True)


_ROOT_OPTIONS = {
    name for param in cli.params for name in getattr(param, "opts", ()) if name.startswith("--")
} - {"--json", "--dry-run", "--help"}


def _command_words(argv: Sequence[str] | None) -> list[str]:
    words = list(argv) if argv is not None else sys.argv[1:]
    out: list[str] = []
    for w in words:
        if w.startswith("-"):
            break
        out.append(w)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run `jdkit` with `argv` (default: the process's); returns the exit status."""
    st = State()
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="jdkit",
            standalone_mode=False,
            obj=st,
        )
    except click.exceptions.Exit as exc:  # --help, --version
        return int(exc.exit_code)
    except click.Abort:
        # Ctrl-C: only a write may have been sent and applied before it
        note = " (a write already sent may have been applied; check with a list command)"
        print(f"interrupted{note if st.write else ''}", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        message = exc.format_message()
        if isinstance(exc, click.NoSuchOption) and exc.option_name in _ROOT_OPTIONS:
            message = (
                f"{exc.option_name} is a connection option: it goes before the command, "
                f"e.g. `jdkit {exc.option_name} ... {' '.join(_command_words(argv))}`"
            )
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        if st.json:
            print(json.dumps({"error": {"code": "USAGE", "message": message}}), file=sys.stderr)
        else:
            print(f"error: {message}", file=sys.stderr, flush=True)
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except JDError as exc:
        _print_error(st, exc)
        return exit_code(exc)
    except BrokenPipeError:
        # `jdkit nodes list | head`: the reader went away; nothing left to say
        with contextlib.suppress(Exception):
            sys.stdout.close()
        return 0
    return int(rv or 0)


if __name__ == "__main__":
    sys.exit(main())
