"""`jdkit serve`: run the embedded JD in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from jdkit._cli._app import read_command, run, state
from jdkit._cli._config import UsageError
from jdkit._signals import stop_on_signals

CSA_SECRET_VAR = "CSA_KEY_ENCRYPTION_SECRET"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port", type=int, default=14231, show_default=True, help="gRPC port (0: a free one)"
)
@click.option(
    "--db",
    default=":memory:",
    show_default=True,
    metavar="PATH",
    help="SQLite file (state survives restarts; `proposals approve --db` reaches it), "
    "postgresql:// URL, or :memory:",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="TOKEN",
    help="require this bearer token on every call (repeatable); prefer --token-file",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="require one of the bearer tokens in FILE (one per line; # comments)",
)
@click.option(
    "--insecure-dev-secret",
    is_flag=True,
    help=f"without {CSA_SECRET_VAR}, seal the CSA key of a file or Postgres database with "
    "the public dev secret (throwaway dev databases only)",
)
@click.option(
    "--max-receive-message-size",
    type=int,
    metavar="BYTES",
    help="largest request message accepted (default 4194304, as grpc-go)",
)
@click.option(
    "--max-send-message-size",
    type=int,
    metavar="BYTES",
    help="largest reply message sent (default: no limit, as grpc-go)",
)
@click.option(
    "--node-port",
    type=int,
    default=None,
    metavar="PORT",
    help="also serve the node-facing wsrpc protocol (NODE_RPC_PORT) on PORT (0: a free one; "
    "needs jdkit[node])",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="log to stderr from this level; info: one line per call (method, status, "
    "duration, x-request-id)",
)
@read_command
def serve(
    host: str,
    port: int,
    db: str,
    tokens: tuple[str, ...],
    token_file: str | None,
    insecure_dev_secret: bool,
    max_receive_message_size: int | None,
    max_send_message_size: int | None,
    node_port: int | None,
    log_level: str,
) -> int:
    """Run jdkit's embedded JD until Ctrl-C / SIGTERM.

    The first line on stdout says where it listens. The CSA key is sealed
    with $CSA_KEY_ENCRYPTION_SECRET; without it a file or Postgres database
    needs --insecure-dev-secret, and an in-memory one uses the dev secret.
    """
    st = state()
    st.refuse_connection_flags("serve")
    out = st.output()
    # the same format as `python -m jdkit._server` (JDKIT_LOG_LEVEL there)
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    allowed = list(tokens)
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as fh:
                lines = [ln.strip() for ln in fh]
        except OSError as exc:
            raise UsageError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
        allowed += [ln for ln in lines if ln and not ln.startswith("#")]
        if not allowed:
            raise UsageError(f"--token-file: {token_file} holds no token")
    secret = os.environ.get(CSA_SECRET_VAR) or None
    if secret is None and insecure_dev_secret:
        out.note(
            f"warning: {CSA_SECRET_VAR} is not set: the CSA key in {db} is sealed with the "
            f"public dev secret (fine for tests, not for anything real); set {CSA_SECRET_VAR}"
        )

    async def go() -> int | None:
        from jdkit._server._limits import ServerLimits
        from jdkit._server._serve import tune_for_serving
        from jdkit.server import EmbeddedJD, StaticTokenVerifier

        tune_for_serving()  # this process only serves: see its docstring

        sizes = {
            name: value
            for name, value in (
                ("max_receive_message_size", max_receive_message_size),
                ("max_send_message_size", max_send_message_size),
            )
            if value is not None
        }
        stop = asyncio.Event()
        with stop_on_signals(stop):
            async with EmbeddedJD.start(
                host=host,
                port=port,
                db=db,
                csa_secret=secret,
                auth=StaticTokenVerifier(allowed) if allowed else None,
                limits=ServerLimits(**sizes),
                insecure_dev_secret=insecure_dev_secret,
                node_port=node_port,
            ) as srv:
                if out.json_mode:
                    extra = {"node_address": srv.node_address} if node_port is not None else {}
                    out.json({"listening": srv.address, "db": db, **extra}, one_line=True)
                else:
                    out.text(f"listening on {srv.address}")
                    if node_port is not None:
                        out.text(f"node port on {srv.node_address}")
                    hint = (
                        "   # with --token TOKEN (plaintext: --allow-insecure-auth)"
                        if allowed
                        else ""
                    )
                    out.note(f"export JD_GRPC_URL={srv.address}{hint}   # then: jdkit nodes list")
                await stop.wait()
                out.note("stopping")
        return None

    return run(go())
