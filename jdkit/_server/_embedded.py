"""`EmbeddedJD`: a JD-compatible gRPC server in this process, for tests and local use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl as _ssl
import sys
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any, Self

from grpclib.events import RecvRequest, listen

from jdkit._exceptions import ConfigError
from jdkit._proto.api.job.v1 import Proposal, ProposalStatus
from jdkit._proto.api.node.v1 import ChainConfig, Node
from jdkit._redact import install as _install_redaction
from jdkit._redact import redact_url
from jdkit._server import _csa, _grpc
from jdkit._server._csa import DEV_CSA_SECRET
from jdkit._server._db import Database, is_memory, open_database
from jdkit._server._grpc import AuthHook, Codec, Runtime, ServingStatus
from jdkit._server._healthz import HealthzServer
from jdkit._server._limits import DEFAULT_LIMITS, ServerLimits
from jdkit._server._state import JDState

log = logging.getLogger("jdkit.server")

#: gRPC port a real JD uses in upstream's test containers; from_env's default.
DEFAULT_ENV_PORT = 14231
DEFAULT_HEALTHZ_PORT = 8081


class _Starting:
    """What `EmbeddedJD.start()` returns: await it, or use it as `async with`."""

    def __init__(self, jd: EmbeddedJD) -> None:
        self._jd = jd

    async def _go(self) -> EmbeddedJD:
        await self._jd._start()
        return self._jd

    def __await__(self) -> Generator[Any, None, EmbeddedJD]:
        return self._go().__await__()

    async def __aenter__(self) -> EmbeddedJD:
        return await self._go()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._jd.stop()


class EmbeddedJD:
    """A Job Distributor speaking the JD v1 gRPC API, backed by SQLite or Postgres.

        async with EmbeddedJD.start() as srv:          # or: srv = await EmbeddedJD.start()
            async with JobDistributor.connect(srv.address) as jd: ...

    `db` is ":memory:" (default), a SQLite file path (state survives restarts),
    or a `postgresql://` URL. `csa_secret` seals JD's CSA private key; when
    omitted, $CSA_KEY_ENCRYPTION_SECRET is used. Without either, a database
    that outlives the process (a file, Postgres) is refused, because the
    fallback, the public `DEV_CSA_SECRET`, would let anyone who can read the
    database unseal the key; `insecure_dev_secret=True` accepts that for a
    throwaway dev database. In memory the dev secret is used, with a warning.
    `auth`, when given, is awaited with each call's bearer token (or None) and
    raises `GRPCError(Status.UNAUTHENTICATED, ...)` to refuse; health checks
    skip it. `ssl` serves TLS (ALPN "h2" is set on the context). `limits`
    bounds what a caller may cost (message sizes, streams, timeouts; see
    `ServerLimits`). `compression` ("gzip", "deflate" or None) is what replies
    are compressed with for callers that accept it; compressed requests are
    always accepted.

    The node side of the protocol (answers, connection, chain configs) is
    played with the `approve_proposal`, `set_node_connected`, ... methods,
    or for real over wsrpc when started with `node_port=` (real nodes, or
    `jdkit.SimulatedNode`, dial `node_address`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        csa_secret: str | None = None,
        auth: AuthHook | None = None,
        ssl: _ssl.SSLContext | None = None,
        healthz_port: int | None = None,
        node_port: int | None = None,
        limits: ServerLimits = DEFAULT_LIMITS,
        compression: str | None = "gzip",
        insecure_dev_secret: bool = False,
    ) -> None:
        self.host = host
        if not isinstance(limits, ServerLimits):
            raise ConfigError("limits", f"{type(limits).__name__} is not a ServerLimits")
        if compression not in (None, "gzip", "deflate"):
            raise ConfigError("compression", f"{compression!r} is not 'gzip', 'deflate' or None")
        self._limits = limits
        self._compression = compression
        self._insecure_dev_secret = bool(insecure_dev_secret)
        if auth is not None and not callable(auth):
            raise ConfigError(
                "auth",
                f"{type(auth).__name__} is not a server auth hook; pass e.g. "
                "jdkit.server.StaticTokenVerifier([...]) (jdkit.auth.StaticToken is the "
                "client side)",
            )
        for name, value in (
            ("port", port),
            ("healthz_port", healthz_port),
            ("node_port", node_port),
        ):
            if value is not None and (isinstance(value, bool) or not 0 <= value <= 65535):
                raise ConfigError(name, f"{value!r} is not a port number in 0..65535")
        self._requested_port = port
        self.db_url = db
        self._secret = csa_secret
        self._auth = auth
        self._ssl = ssl
        self._healthz_port = healthz_port
        self._node_port_wanted = node_port
        self._nodeport: Any = None  # _nodeport.NodePort, imported only when asked for
        self._server: _grpc.Server | None = None
        self._db: Database | None = None
        self._state: JDState | None = None
        self._rt: Runtime | None = None
        self._healthz: HealthzServer | None = None
        self._port: int | None = None
        self._stopped = False

    def __repr__(self) -> str:
        where = self.address if self._port is not None else "not started"
        return f"<EmbeddedJD {where} db={redact_url(self.db_url)!r}>"

    # ------------------------------------------------------------ start

    @classmethod
    def start(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        csa_secret: str | None = None,
        auth: AuthHook | None = None,
        ssl: _ssl.SSLContext | None = None,
        healthz_port: int | None = None,
        node_port: int | None = None,
        limits: ServerLimits = DEFAULT_LIMITS,
        compression: str | None = "gzip",
        insecure_dev_secret: bool = False,
    ) -> _Starting:
        """Start a server; `await` the result, or `async with` it to stop on exit.

        `node_port` (0 = any free port) also serves the node-facing wsrpc
        protocol there (needs `jdkit[node]`); see `node_address`.
        """
        # hpack logs callers' headers at DEBUG before any verifier has seen the
        # token in them: the record factory redacts credential headers from then on.
        _install_redaction()
        return _Starting(
            cls(
                host=host,
                port=port,
                db=db,
                csa_secret=csa_secret,
                auth=auth,
                ssl=ssl,
                healthz_port=healthz_port,
                node_port=node_port,
                limits=limits,
                compression=compression,
                insecure_dev_secret=insecure_dev_secret,
            )
        )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        auth: AuthHook | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> _Starting:
        """Start the way the real JD image is configured.

        DATABASE_URL (Postgres; unset means SQLite at JDKIT_DB, default
        in-memory), PORT (gRPC, default 14231), JDKIT_HOST (default 0.0.0.0),
        CSA_KEY_ENCRYPTION_SECRET (required: no dev default here),
        HEALTHZ_PORT (HTTP /healthz, default 8081), NODE_RPC_PORT (the
        node-facing wsrpc port; unset: not served; set without the `node`
        extra installed: a warning, not served).
        """
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
        return _Starting(
            cls(
                host=env.get("JDKIT_HOST") or "0.0.0.0",
                port=_port_from(env.get("PORT") or str(DEFAULT_ENV_PORT), "PORT"),
                db=env.get("DATABASE_URL") or env.get("JDKIT_DB") or ":memory:",
                csa_secret=secret,
                auth=auth,
                ssl=ssl,
                healthz_port=_port_from(
                    env.get("HEALTHZ_PORT") or str(DEFAULT_HEALTHZ_PORT), "HEALTHZ_PORT"
                ),
                node_port=node_port,
            )
        )

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _start(self) -> None:
        if self._server is not None or self._stopped:
            raise RuntimeError("an EmbeddedJD starts once; make a new one")
        secret, self._secret = self._secret, None  # not kept past start
        secret = self._choose_secret(secret)
        nodeport = _import_nodeport() if self._node_port_wanted is not None else None
        self._db = await open_database(self.db_url)
        try:
            self._state = JDState(self._db) if nodeport is None else nodeport.LiveState(self._db)
            await self._state.init(secret)
            self._rt = Runtime(self._state, self._auth, self._limits, self._compression)
            server = _grpc.Server(
                _grpc.services(self._state, self._rt), codec=Codec(), limits=self._limits
            )
            listen(server, RecvRequest, self._rt.on_request)
            if self._ssl is not None:
                self._ssl.set_alpn_protocols(["h2"])
            sock = _bind(self.host, self._requested_port)
            self._port = sock.getsockname()[1]
            await server.start_on(sock, self._ssl)
            self._server = server
            if nodeport is not None:
                await self._start_node_port(nodeport, secret)
            if self._healthz_port is not None:
                self._healthz = await HealthzServer.start(
                    self.host,
                    self._healthz_port,
                    lambda: self._rt is not None and self._rt.status == ServingStatus.SERVING,
                )
        except BaseException:
            if self._nodeport is not None:
                await self._nodeport.stop()
            if self._server is not None:
                self._server.close()
            await self._db.close()
            self._db = None
            raise
        log.info(
            "embedded JD listening on %s (db %s%s)%s",
            self.address,
            redact_url(self.db_url),
            ", TLS" if self._ssl else "",
            f", node port {self.node_address}" if self._nodeport else "",
        )

    async def _start_node_port(self, nodeport: Any, secret: str) -> None:
        assert self._state is not None
        public_hex, sealed = await self._state.sealed_csa_key()
        key = await asyncio.to_thread(_csa.unseal, secret, public_hex, sealed)
        port = nodeport.NodePort(self._state, self.host, self._node_port_wanted or 0)
        self._state.port = port  # type: ignore[attr-defined]
        # a fleet of nodes dials at once (and reconnects at once after a JD restart)
        sock = _bind(self.host, self._node_port_wanted or 0, "node_port", backlog=1024)
        await port.start(key, sock)
        del key  # from here on only the TLS context holds it
        self._nodeport = port

    def _choose_secret(self, given: str | None) -> str:
        """The CSA secret: given, else $CSA_KEY_ENCRYPTION_SECRET, else the dev
        secret where that is harmless (in memory) or explicitly accepted."""
        if given is not None:
            return given
        from_env = os.environ.get("CSA_KEY_ENCRYPTION_SECRET")
        if from_env:
            return from_env
        where = redact_url(self.db_url)
        if is_memory(self.db_url):
            _warn_once(
                "no CSA_KEY_ENCRYPTION_SECRET (or csa_secret=): the in-memory JD seals its "
                "CSA key with the public dev secret; fine, since nothing outlives the process"
            )
            return DEV_CSA_SECRET
        if self._insecure_dev_secret:
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

    # ------------------------------------------------------------- stop

    async def stop(self, grace: float = 5.0) -> None:
        """Stop gracefully: health turns NOT_SERVING, watchers are told and
        released, new calls get UNAVAILABLE, in-flight calls get `grace`
        seconds to finish. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        rt, server = self._rt, self._server
        if rt is not None:
            rt.draining = True
            await rt.set_status(ServingStatus.NOT_SERVING)
            if not await rt.wait_idle(grace):
                log.warning("stopping with %d call(s) still running after %.1fs", rt.active, grace)
        if self._nodeport is not None:
            await self._nodeport.stop()
        if self._healthz is not None:
            await self._healthz.stop()
        if server is not None:
            server.close()
            server.close_connections()
            await server.wait_closed()
        if self._db is not None:
            await self._db.close()
        log.info("embedded JD on %s stopped", self.address if self._port else "-")

    async def wait_stopped(self) -> None:
        """Block until another task stops the server."""
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------- addressing

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        """`host:port` for a client (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def node_address(self) -> str:
        """`host:port` of the node-facing wsrpc port (start with `node_port=`)."""
        if self._nodeport is None:
            raise RuntimeError("no node port: start the server with node_port=0 (or a port number)")
        return str(self._nodeport.address)

    @property
    def node_port(self) -> int | None:
        return int(self._nodeport.port) if self._nodeport is not None else None

    @property
    def nodeport(self) -> Any:
        """The `NodePort` serving nodes (None without `node_port=`)."""
        return self._nodeport

    @property
    def healthz_port(self) -> int | None:
        return self._healthz.port if self._healthz else None

    @property
    def state(self) -> JDState:
        if self._state is None:
            raise RuntimeError("server not started")
        return self._state

    @property
    def calls(self) -> dict[str, int]:
        """How many calls arrived per method path (answered or refused)."""
        return dict(self._rt.calls) if self._rt else {}

    @property
    def write_calls(self) -> int:
        """Write RPCs received (per `jdkit._methods.WRITES`), succeeded or failed."""
        return self._rt.write_calls if self._rt else 0

    # ------------------------------------------------- the node's side

    async def approve_proposal(self, proposal_id: str) -> Proposal:
        """The node approves a PROPOSED proposal."""
        return await self.state.answer_proposal(
            proposal_id, ProposalStatus.APPROVED, [ProposalStatus.PROPOSED]
        )

    async def reject_proposal(self, proposal_id: str) -> Proposal:
        """The node rejects a PROPOSED proposal."""
        return await self.state.answer_proposal(
            proposal_id, ProposalStatus.REJECTED, [ProposalStatus.PROPOSED]
        )

    async def cancel_proposal(self, proposal_id: str) -> Proposal:
        """The node cancels a PROPOSED or APPROVED proposal."""
        return await self.state.answer_proposal(
            proposal_id,
            ProposalStatus.CANCELLED,
            [ProposalStatus.PROPOSED, ProposalStatus.APPROVED],
        )

    async def set_node_connected(self, node_id: str, connected: bool = True) -> Node:
        """The node (dis)connects; connecting delivers its pending proposals."""
        return await self.state.set_node_connected(node_id, connected)

    async def add_chain_config(self, node_id: str, config: ChainConfig) -> ChainConfig:
        """The node reports a chain config; replaces the one for the same chain id and type."""
        return await self.state.add_chain_config(node_id, config)

    async def reset(self) -> None:
        """Forget nodes, jobs, proposals, policies, chain configs and call counts;
        keep the CSA keypair. For per-test isolation on a shared server."""
        await self.state.reset()
        if self._rt is not None:
            self._rt.calls.clear()


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


def _import_nodeport() -> Any:
    try:
        from jdkit._server import _nodeport
    except ImportError as exc:
        raise ConfigError(
            "node_port",
            f"the node-facing protocol needs the `node` extra: pip install 'jdkit[node]' ({exc})",
        ) from None
    return _nodeport


def _bind(host: str, port: int, field: str = "port", backlog: int = 128) -> socket.socket:
    """Our own listening socket, so the real port is known when port=0."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted
        # sockets whose proto says TCP, and without it every unary answer
        # waits ~40 ms for Nagle and the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise ConfigError(field, f"cannot listen on {host}:{port}: {exc}") from exc


# -------------------------------------------------------- serve forever


#: GIL switch interval for a process that is a JD server (Python's default is 5 ms).
SERVING_SWITCH_INTERVAL = 0.001


def tune_for_serving() -> None:
    """Tune the interpreter of a process whose job is serving (`jdkit serve`,
    `python -m jdkit._server`), not of an application embedding a JD.

    Large decodes and spec parses run in worker threads, but they hold the
    GIL, and the event loop waits up to the switch interval for it each time
    it wakes. At Python's 5 ms a health check during a 3.9 MiB ProposeJob
    took up to ~150 ms; at 1 ms, ~35 ms.
    """
    sys.setswitchinterval(SERVING_SWITCH_INTERVAL)


async def run_until_signalled(starting: _Starting) -> None:
    """Start, print `listening on HOST:PORT`, stop gracefully on SIGINT/SIGTERM."""
    tune_for_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with starting as srv:
            print(f"listening on {srv.address}", flush=True)
            if srv.healthz_port is not None:
                print(f"healthz on http://{srv.host}:{srv.healthz_port}/healthz", flush=True)
            if srv.node_port is not None:
                print(f"node port on {srv.node_address}", flush=True)
            await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    db: str = ":memory:",
    *,
    csa_secret: str | None = None,
    auth: AuthHook | None = None,
    ssl: _ssl.SSLContext | None = None,
    healthz_port: int | None = None,
    node_port: int | None = None,
    limits: ServerLimits = DEFAULT_LIMITS,
    compression: str | None = "gzip",
    insecure_dev_secret: bool = False,
) -> None:
    """Run an embedded JD until SIGINT/SIGTERM.

    `csa_secret` defaults to $CSA_KEY_ENCRYPTION_SECRET; a file or Postgres
    database without either is refused unless `insecure_dev_secret=True`
    (see `EmbeddedJD`).
    """
    if (
        csa_secret is None
        and insecure_dev_secret
        and not os.environ.get("CSA_KEY_ENCRYPTION_SECRET")
        and not is_memory(db)
    ):
        print(
            "warning: no CSA_KEY_ENCRYPTION_SECRET; the CSA key is sealed with the public "
            "dev secret (--insecure-dev-secret)",
            file=sys.stderr,
            flush=True,
        )
    await run_until_signalled(
        EmbeddedJD.start(
            host=host,
            port=port,
            db=db,
            csa_secret=csa_secret,
            auth=auth,
            ssl=ssl,
            healthz_port=healthz_port,
            node_port=node_port,
            limits=limits,
            compression=compression,
            insecure_dev_secret=insecure_dev_secret,
        )
    )
