"""The root `jdkit` command: connection options (once, here), output mode, errors.

Every command that talks to a JD gets its client from `State.connect()`,
which builds one `ClientOptions` from the flags given here and the
environment (`_config.client_options`) and opens a `RemoteProvider` with it.
Commands that do not connect (`serve`, `completion`, node-side answers) say
so by refusing connection flags, instead of silently ignoring them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from jdkit._cli._config import FIELD_FLAGS, FieldText, Seconds, UsageError, client_options
from jdkit._cli._output import Output

F = TypeVar("F", bound=Callable[..., Any])

#: Connection flags: where they belong (the root) and what they stand for.
CONNECTION_FLAGS = (
    "url",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_server_name",
    "token",
    "cognito_client_id",
    "cognito_username",
    "cognito_region",
    "cognito_endpoint_url",
    "allow_insecure_auth",
    "timeout",
    *(tf.name for tf in FIELD_FLAGS),
)


@dataclass
class State:
    """What the root options decided, for the command that runs."""

    flags: dict[str, Any] = field(default_factory=dict)
    json: bool = False
    dry_run: bool = False
    wide: bool = False
    #: Set by write commands: only they may say "may have been applied".
    write: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def output(self) -> Output:
        return Output(json_mode=self.json, wide=self.wide)

    def given_connection_flags(self) -> list[str]:
        return [
            "--" + k.replace("_", "-")
            for k in CONNECTION_FLAGS
            if self.flags.get(k) not in (None, False, "", ())
        ]

    def refuse_connection_flags(self, command: str) -> None:
        given = self.given_connection_flags()
        if given:
            raise UsageError(
                f"{command} does not connect to a JD, so {', '.join(given)} does not apply to it"
            )

    @contextlib.asynccontextmanager
    async def connect(self, out: Output) -> AsyncIterator[Any]:
        """A client from flags + environment; in a dry run of a write the plan is
        printed (instead of the command's result) when the command is done."""
        from jdkit._providers import RemoteProvider

        dry = self.dry_run and self.write
        opts = client_options(self.flags, self.env, dry_run=dry)
        async with RemoteProvider(opts) as jd:
            yield jd
            if dry and jd.journal is not None:
                if out.json_mode:
                    out.json({"dryRun": True, "writes": [e.to_dict() for e in jd.journal]})
                else:
                    out.text(jd.journal.plan())

    def emit(self, out: Output, obj: Any, *, title: str | None = None, data: Any = None) -> None:
        """Print a write's result, unless this is a dry run (the plan is printed instead)."""
        if self.dry_run and self.write:
            return
        out.result(obj, title=title, data=data)


def state() -> State:
    return click.get_current_context().ensure_object(State)


def run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a command's coroutine; its return value is the exit status (None: 0)."""
    return asyncio.run(coro) or 0


# -- options shared by several commands


def _state_flag(flag: str, attr: str, help_: str, *, hidden: bool = False) -> Callable[[F], F]:
    """A flag after the command that, when given, sets `State.<attr>` (as the root's does)."""

    def callback(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
        if value:
            setattr(ctx.ensure_object(State), attr, True)

    return click.option(
        flag, is_flag=True, hidden=hidden, expose_value=False, callback=callback, help=help_
    )


def json_option(f: F) -> F:
    """`--json` after the command too (shown once, at the top level)."""
    return _state_flag("--json", "json", "machine-readable output (proto JSON)", hidden=True)(f)


def write_command(f: F) -> F:
    """A command that writes: `--dry-run` applies, and Ctrl-C may leave it applied."""

    def _mark(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
        st = ctx.ensure_object(State)
        st.write = True
        if value:
            st.dry_run = True

    return click.option(
        "--dry-run",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_mark,
        help="send the reads, print the writes as a plan instead of sending them",
    )(json_option(f))


def read_command(f: F) -> F:
    return json_option(f)


def wide_option(f: F) -> F:
    return _state_flag("--wide", "wide", "show keys and addresses in full")(f)


def selector_option(help_: str = "label selector of the nodes") -> Callable[[F], F]:
    return click.option(
        "-l",
        "--selector",
        "selector",
        multiple=True,
        metavar="SELECTOR",
        help=f"{help_}: key=value, key!=value, 'key in (a,b)', 'key notin (a,b)', key, !key; "
        "comma-separated or repeated, all must match",
    )


def label_option(help_: str) -> Callable[[F], F]:
    return click.option(
        "--label",
        "labels",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"{help_} (repeatable; a bare KEY is a label without a value)",
    )


def spec_option(f: F) -> F:
    return click.option(
        "-f",
        "--spec",
        required=True,
        metavar="FILE",
        help="job spec (TOML with externalJobID); - reads stdin",
    )(f)


# -- the root group


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EPILOG = """\b
examples:
  jdkit serve --port 0 --db jd.sqlite --insecure-dev-secret   # prints: listening on HOST:PORT
  export JD_GRPC_URL=127.0.0.1:PORT
  jdkit nodes register --name n1 --public-key KEY --label env=dev
  jdkit jobs propose -l env=dev -f job.toml       # -f - reads stdin; --dry-run: the plan
  jdkit wait EXTERNAL_JOB_ID --timeout 600
  jdkit jobs status EXTERNAL_JOB_ID -l env=dev
  jdkit --json proposals list --status PROPOSED

\b
exit status: 0 ok; 1 a call failed (or some nodes of a rollout, or not SERVING);
2 a usage or configuration mistake; 130 interrupted.
"""


def _version_text() -> str:
    from jdkit import __version__

    return f"jdkit {__version__}"


def root_options(f: F) -> F:
    opts = [
        click.option(
            "--url",
            metavar="HOST:PORT",
            help="JD gRPC address (grpcs://host for TLS); env JD_GRPC_URL",
        ),
        click.option(
            "--tls", is_flag=True, default=None, help="TLS with the system roots; env JD_TLS=1"
        ),
        click.option("--tls-ca", metavar="FILE", help="CA bundle; env JD_TLS_CA_FILE"),
        click.option(
            "--tls-cert", metavar="FILE", help="client certificate (mTLS); env JD_TLS_CERT_FILE"
        ),
        click.option("--tls-key", metavar="FILE", help="client key (mTLS); env JD_TLS_KEY_FILE"),
        click.option(
            "--tls-server-name",
            metavar="NAME",
            help="name the server certificate must carry; env JD_TLS_SERVER_NAME",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            help="static bearer token; env JD_TOKEN (prefer the variable)",
        ),
        click.option(
            "--cognito-client-id",
            metavar="ID",
            help="Cognito app client id; env JD_COGNITO_CLIENT_ID (password: JD_COGNITO_PASSWORD)",
        ),
        click.option("--cognito-username", metavar="USER", help="env JD_COGNITO_USERNAME"),
        click.option(
            "--cognito-region", metavar="REGION", help="env JD_COGNITO_REGION / AWS_REGION"
        ),
        click.option("--cognito-endpoint-url", metavar="URL", help="env JD_COGNITO_ENDPOINT_URL"),
        click.option(
            "--allow-insecure-auth",
            is_flag=True,
            default=None,
            help="send tokens over plaintext (local testing only); env JD_ALLOW_INSECURE_AUTH=1",
        ),
        click.option(
            "--timeout",
            type=Seconds(),
            metavar="SECONDS",
            help="per-call deadline (0: none); env JD_TIMEOUT",
        ),
        *(
            click.option(
                tf.flag,
                tf.name,
                type=FieldText(tf.name),
                multiple=tf.multiple,
                metavar=tf.metavar,
                help=f"{tf.help}; env {tf.env}",
            )
            for tf in FIELD_FLAGS
        ),
        click.option(
            "--json", "json_", is_flag=True, help="machine-readable output: proto JSON, errors too"
        ),
        click.option(
            "--dry-run", is_flag=True, help="for writes: send the reads, print the writes as a plan"
        ),
        click.version_option(
            message="%(version)s", version=_version_text(), help="print jdkit's version"
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f
