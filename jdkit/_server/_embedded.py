"""`EmbeddedJD`: a JD-compatible gRPC server in this process, for tests and local use.

This module is its lifecycle: the gRPC server, the node port and the health
endpoint started over one database and stopped gracefully, plus the helpers
that play the node's side. Its options, the JD image's environment and the
CSA secret are `_config`; its listening sockets `_listen`; running it as a
process's whole job `_serve`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any, Self, Unpack

from grpclib.events import RecvRequest, listen

from jdkit._exceptions import ConfigError
from jdkit._proto.api.job.v1 import Proposal, ProposalStatus
from jdkit._proto.api.node.v1 import ChainConfig, Node
from jdkit._redact import install as _install_redaction
from jdkit._redact import redact_url
from jdkit._server import _csa, _grpc
from jdkit._server._auth import Verifier
from jdkit._server._config import StartOptions, choose_secret, import_nodeport, options_from_env
from jdkit._server._db import Database, open_database
from jdkit._server._grpc import Codec, Runtime, ServingStatus
from jdkit._server._healthz import HealthzServer
from jdkit._server._limits import DEFAULT_LIMITS, ServerLimits
from jdkit._server._listen import bind, host_port
from jdkit._server._state import JDState

log = logging.getLogger("jdkit.server")


class Starting:
    """What `EmbeddedJD.start()` and `from_env()` return: `await` it for the
    started `EmbeddedJD`, or `async with` it to stop the server on exit."""

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
        auth: Verifier | None = None,
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
    def start(cls, **options: Unpack[StartOptions]) -> Starting:
        """Start a server; `await` the result, or `async with` it to stop on exit.

        Takes the keywords of `EmbeddedJD(...)`. `node_port` (0 = any free
        port) also serves the node-facing wsrpc protocol there (needs
        `jdkit[node]`); see `node_address`.
        """
        # hpack logs callers' headers at DEBUG before any verifier has seen the
        # token in them: the record factory redacts credential headers from then on.
        _install_redaction()
        return Starting(cls(**options))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        auth: Verifier | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> Starting:
        """Start the way the real JD image is configured.

        DATABASE_URL (Postgres; unset means SQLite at JDKIT_DB, default
        in-memory), PORT (gRPC, default 14231), JDKIT_HOST (default 0.0.0.0),
        CSA_KEY_ENCRYPTION_SECRET (required: no dev default here),
        HEALTHZ_PORT (HTTP /healthz, default 8081), NODE_RPC_PORT (the
        node-facing wsrpc port; unset: not served; set without the `node`
        extra installed: a warning, not served).
        """
        options = options_from_env(environ)
        options["auth"], options["ssl"] = auth, ssl
        return Starting(cls(**options))

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
        secret = choose_secret(secret, self.db_url, self._insecure_dev_secret)
        nodeport = import_nodeport() if self._node_port_wanted is not None else None
        self._db = await open_database(self.db_url)
        try:
            state = JDState if nodeport is None else nodeport.LiveState
            self._state = state._over(self._db)
            await self._state.init(secret)
            self._rt = Runtime(self._state, self._auth, self._limits, self._compression)
            server = _grpc.Server(
                _grpc.services(self._state, self._rt), codec=Codec(), limits=self._limits
            )
            listen(server, RecvRequest, self._rt.on_request)
            if self._ssl is not None:
                self._ssl.set_alpn_protocols(["h2"])
            sock = bind(self.host, self._requested_port)
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
        sock = bind(self.host, self._node_port_wanted or 0, "node_port", backlog=1024)
        await port.start(key, sock)
        del key  # from here on only the TLS context holds it
        self._nodeport = port

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
        return host_port(self.host, self.port)

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
        """JD's data and rules behind this server (a `jdkit.server.JDState`)."""
        if self._state is None:
            raise RuntimeError("server not started")
        return self._state

    @property
    def calls(self) -> dict[str, int]:
        """How many calls arrived per method path (answered or refused)."""
        return dict(self._rt.calls) if self._rt else {}

    @property
    def write_calls(self) -> int:
        """Write RPCs received (per `jdkit.WRITES`), succeeded or failed."""
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
