"""How an `EmbeddedJD` is configured: its options, the JD image's environment,
and which secret seals the CSA key.

The CSA secret is the one choice here with a security cost: the public dev
secret is used only where nothing outlives the process (in memory) or where
the caller accepted it explicitly; a database at rest without a secret is
refused (see `choose_secret`).
"""

from __future__ import annotations

import logging
import os
import ssl as _ssl
from collections.abc import Mapping
from typing import Any, TypedDict

from jdkit._exceptions import ConfigError
from jdkit._redact import redact_url
from jdkit._server._auth import Verifier
from jdkit._server._csa import DEV_CSA_SECRET
from jdkit._server._db import is_memory
from jdkit._server._limits import ServerLimits

log = logging.getLogger("jdkit.server")

#: gRPC port a real JD uses in upstream's test containers; from_env's default.
DEFAULT_ENV_PORT = 14231
DEFAULT_HEALTHZ_PORT = 8081


class ServeOptions(TypedDict, total=False):
    """`EmbeddedJD`'s keyword options besides where it listens and its database
    (`serve` takes those three positionally); see `EmbeddedJD`."""

    csa_secret: str | None
    auth: Verifier | None
    ssl: _ssl.SSLContext | None
    healthz_port: int | None
    node_port: int | None
    limits: ServerLimits
    compression: str | None
    insecure_dev_secret: bool


class StartOptions(ServeOptions, total=False):
    """Every keyword of `EmbeddedJD(...)` and `EmbeddedJD.start(...)`."""

    host: str
    port: int
    db: str


def options_from_env(environ: Mapping[str, str] | None = None) -> StartOptions:
    """`EmbeddedJD` options from the environment the real JD image reads
    (see `EmbeddedJD.from_env`)."""
    env = os.environ if environ is None else environ
    secret = env.get("CSA_KEY_ENCRYPTION_SECRET", "")
    if not secret:
        raise ConfigError(
            "CSA_KEY_ENCRYPTION_SECRET", "is not set; JD needs it to seal its CSA private key"
        )
    node_rpc = env.get("NODE_RPC_PORT")
    node_port = None
    if node_rpc:
        node_port = _port_from(node_rpc, "NODE_RPC_PORT")
        if not node_port_available():
            log.warning(
                "NODE_RPC_PORT=%s not served: the node-facing protocol needs "
                "jdkit[node] (websockets, pyOpenSSL)",
                node_rpc,
            )
            node_port = None
    return StartOptions(
        host=env.get("JDKIT_HOST") or "0.0.0.0",
        port=_port_from(env.get("PORT") or str(DEFAULT_ENV_PORT), "PORT"),
        db=env.get("DATABASE_URL") or env.get("JDKIT_DB") or ":memory:",
        csa_secret=secret,
        healthz_port=_port_from(
            env.get("HEALTHZ_PORT") or str(DEFAULT_HEALTHZ_PORT), "HEALTHZ_PORT"
        ),
        node_port=node_port,
    )


def choose_secret(given: str | None, db_url: str, insecure_dev_secret: bool) -> str:
    """The CSA secret: given, else $CSA_KEY_ENCRYPTION_SECRET, else the dev
    secret where that is harmless (in memory) or explicitly accepted."""
    if given is not None:
        return given
    from_env = os.environ.get("CSA_KEY_ENCRYPTION_SECRET")
    if from_env:
        return from_env
    where = redact_url(db_url)
    if is_memory(db_url):
        _warn_once(
            "no CSA_KEY_ENCRYPTION_SECRET (or csa_secret=): the in-memory JD seals its "
            "CSA key with the public dev secret; fine, since nothing outlives the process"
        )
        return DEV_CSA_SECRET
    if insecure_dev_secret:
        log.warning(
            "no CSA_KEY_ENCRYPTION_SECRET: the CSA private key in %s is sealed with the "
            "public dev secret (insecure_dev_secret=True); anyone who can read that "
            "database can unseal it",
            where,
        )
        return DEV_CSA_SECRET
    raise ConfigError(
        "CSA_KEY_ENCRYPTION_SECRET",
        f"is not set, and {where} keeps JD's CSA private key at rest: set "
        "CSA_KEY_ENCRYPTION_SECRET (or pass csa_secret=) to seal it, or, for a "
        "throwaway dev database only, accept the public dev secret with "
        "insecure_dev_secret=True (jdkit serve --insecure-dev-secret)",
    )


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _port_from(value: str, name: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(name, f"{port} is outside 0-65535")
    return port


def node_port_available() -> bool:
    """Whether the optional dependencies of the node port are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("websockets", "OpenSSL"))


def import_nodeport() -> Any:
    try:
        import OpenSSL  # noqa: F401 - the JD's TLS role (jdkit._wsrpc._tls imports it if present)
        import websockets  # noqa: F401

        from jdkit._server import _nodeport
    except ImportError as exc:
        raise ConfigError(
            "node_port",
            f"the node-facing protocol needs the `node` extra: pip install 'jdkit[node]' ({exc})",
        ) from None
    return _nodeport
