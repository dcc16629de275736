"""The embedded JD's node-facing port: wsrpc over mutual TLS 1.3 (`NODE_RPC_PORT`).

Nodes dial in with a certificate made from their ed25519 CSA key; the JD
answers with its own CSA key (the one `GetKeypair` returns). The handshake
accepts only keys of registered, enabled nodes (pyOpenSSL's verify callback:
the standard `ssl` module cannot do this server role), and one connection
per key. Over the connection the node calls `cfm.FeedsManager` here and we
call its `cfm.NodeService`.

State changes go through `JDState` like every other write, so the Python
node-side helpers (`approve_proposal`, ...) and real answers share one set of
transitions. `LiveState` is the `JDState` the server uses when a node port
runs: after each operator write it tells the port, which reaches the node.

Choices where the record is silent are listed in `README.md` beside this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import betterproto2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jdkit._exceptions import JDError
from jdkit._proto import cfm
from jdkit._proto.api.job.v1 import Job, Proposal, ProposalStatus
from jdkit._proto.api.label import Label
from jdkit._proto.api.node.v1 import ChainConfig, Node
from jdkit._server._listen import host_port
from jdkit._server._state import JDState
from jdkit._wsrpc._errors import NodeProtocolError
from jdkit._wsrpc._rpc import Endpoint, Handler
from jdkit._wsrpc._strict import decoder
from jdkit._wsrpc._tls import ServerTLSStream, server_context
from jdkit._wsrpc._ws import (
    SERVER_HANDSHAKE_TIMEOUT,
    SERVER_MAX_SIZE,
    HandshakeError,
    NodeTiming,
    WsConnection,
    refuse,
    server_handshake,
)

log = logging.getLogger("jdkit.server.nodeport")

M = TypeVar("M", bound=betterproto2.Message)

#: How long the JD waits for a node's answer to one of its calls.
CALL_TIMEOUT = 10.0
#: A TLS handshake must be done within this long.
TLS_HANDSHAKE_TIMEOUT = 10.0


class _NodeConn:
    """One node's live connection."""

    def __init__(self, port: NodePort, node_id: str, key: bytes) -> None:
        self.port = port
        self.node_id = node_id
        self.key = key
        self.ws: WsConnection | None = None
        self.ready = False  # set by the node's first request: it has its handlers
        self.sent: set[str] = set()
        self.endpoint = Endpoint(
            self._send,
            port._handlers(self),
            name=f"jd<-{node_id}",
            on_request=self._first_request,
        )

    async def _send(self, data: bytes) -> None:
        if self.ws is None:
            raise ConnectionError("not connected")
        await self.ws.send(data)

    def _first_request(self, method: str) -> None:
        if not self.ready:
            self.ready = True
            self.port._spawn(self.port._send_backlog(self))

    async def close(self, reason: str) -> None:
        if self.ws is not None:
            await self.ws.close(1000, reason)


class NodePort:
    """Serves wsrpc to nodes; see the module docstring."""

    def __init__(
        self,
        state: JDState,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timing: NodeTiming | None = None,
        call_timeout: float = CALL_TIMEOUT,
        handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
        ws_handshake_timeout: float = SERVER_HANDSHAKE_TIMEOUT,
        max_size: int = SERVER_MAX_SIZE,
    ) -> None:
        self.state = state
        self.host = host
        self._requested_port = port
        self.timing = timing or NodeTiming()
        self.call_timeout = call_timeout
        self.handshake_timeout = handshake_timeout
        self.ws_handshake_timeout = ws_handshake_timeout
        self.max_size = max_size
        self._keys: dict[bytes, str] = {}  # raw key -> node id (enabled nodes only)
        self._key_of: dict[str, bytes] = {}
        self._conns: dict[str, _NodeConn] = {}
        self._sockets: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._stopping = False
        #: connections refused or dropped before they were a node's (for tests and logs)
        self.refused = 0

    # ----------------------------------------------------------- life

    async def start(self, csa_key: Ed25519PrivateKey, sock: socket.socket) -> None:
        await self.state.clear_connections()
        for node_id, pk in await self.state.enabled_node_keys():
            self._set_key(node_id, bytes.fromhex(pk))
        ctx = server_context(csa_key, lambda raw: raw in self._keys)
        self._ctx = ctx
        self._port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._on_socket, sock=sock, limit=2**16)
        log.info("node port listening on %s (wsrpc, TLS 1.3)", self.address)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        await asyncio.gather(
            *(c.close("JD stopping") for c in list(self._conns.values())), return_exceptions=True
        )
        for w in list(self._sockets):
            w.close()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("node port not started")
        return self._port

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def connected(self) -> dict[str, str]:
        """node id -> public key hex of every live connection."""
        return {nid: c.key.hex() for nid, c in self._conns.items() if c.ws is not None}

    def has_connection(self, node_id: str) -> bool:
        return node_id in self._conns

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------- keys

    def _set_key(self, node_id: str, raw: bytes | None) -> None:
        old = self._key_of.pop(node_id, None)
        if old is not None:
            self._keys.pop(old, None)
        if raw is not None:
            self._keys[raw] = node_id
            self._key_of[node_id] = raw

    def node_changed(self, node: Node) -> None:
        """A node was registered, re-keyed, enabled or disabled."""
        raw = bytes.fromhex(node.public_key) if node.is_enabled else None
        self._set_key(node.id, raw)
        conn = self._conns.get(node.id)
        if conn is not None and conn.key != raw:
            why = "node disabled" if not node.is_enabled else "node key changed"
            self._spawn(conn.close(why))

    def forget_all(self) -> None:
        """The state was reset: nobody is known any more."""
        self._keys.clear()
        self._key_of.clear()
        for conn in list(self._conns.values()):
            self._spawn(conn.close("JD state reset"))

    # ----------------------------------------------------- connection

    async def _on_socket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            writer.close()
            return
        self._sockets.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, peer)
        except Exception:
            log.exception("node port: connection from %s failed unexpectedly", peer)
        finally:
            self._sockets.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any
    ) -> None:
        tls = ServerTLSStream(self._ctx, reader, writer)
        try:
            await asyncio.wait_for(tls.handshake(), self.handshake_timeout)
        except (TimeoutError, ConnectionError, OSError) as exc:
            self.refused += 1
            log.info("node port: TLS from %s refused: %s", peer, exc or "timed out")
            return
        key = tls.peer_key()
        node_id = self._keys.get(key) if key is not None else None
        if key is None or node_id is None:  # disabled or re-keyed since the handshake
            self.refused += 1
            log.info("node port: %s presented a key no enabled node has", peer)
            tls.close()
            return
        conn = _NodeConn(self, node_id, key)

        def decide(request: Any) -> Any:
            if self._keys.get(key) != node_id:
                return refuse(403, "this node key is no longer accepted\n")
            if node_id in self._conns:
                # upstream answers a second connection for a key with a plain 200
                return refuse(200, "this node key already has a connection\n")
            self._conns[node_id] = conn
            return None

        try:
            proto, early = await server_handshake(
                tls, decide, max_size=self.max_size, timeout=self.ws_handshake_timeout
            )
        except (HandshakeError, ConnectionError, OSError) as exc:
            self.refused += 1
            if self._conns.get(node_id) is conn:
                del self._conns[node_id]
            log.info("node port: upgrade from %s (node %s) refused: %s", peer, node_id, exc)
            tls.close()
            return
        conn.ws = WsConnection(
            tls, proto, conn.endpoint.feed, timing=self.timing, early=early, name=node_id
        )
        try:
            await self.state.set_node_link(node_id, True)
            log.info("node %s connected from %s", node_id, peer)
            reason = await conn.ws.run()
            log.info("node %s disconnected: %s", node_id, reason)
        finally:
            conn.endpoint.close()
            if self._conns.get(node_id) is conn:
                del self._conns[node_id]
            with contextlib.suppress(Exception):
                await self.state.set_node_link(node_id, False)

    # ----------------------------------------------- the node calls us

    def _handlers(self, conn: _NodeConn) -> dict[str, Handler]:
        nid = conn.node_id

        def h(cls: type[M], fn: Callable[[M], Awaitable[betterproto2.Message]]) -> Handler:
            async def run(req: Any) -> betterproto2.Message:
                try:
                    return await fn(req)
                except JDError:
                    raise
                except Exception:
                    log.exception("node port: %s from node %s failed", cls.__name__, nid)
                    raise RuntimeError("internal error in the JD") from None

            return Handler(decode=decoder(cls), fn=run)

        async def healthcheck(req: cfm.HealthcheckRequest) -> cfm.HealthcheckResponse:
            return cfm.HealthcheckResponse()

        async def update_node(req: cfm.UpdateNodeRequest) -> cfm.UpdateNodeResponse:
            errors = await self.state.apply_node_report(
                nid,
                version=req.version,
                workflow_key=req.workflow_key,
                nop_friendly_name=req.nop_friendly_name,
                p2p_key_bundles=[(b.peer_id, b.public_key) for b in req.p2p_key_bundles],
                chain_configs=[ChainConfig.parse(bytes(c)) for c in req.chain_configs],
            )
            return cfm.UpdateNodeResponse(
                chain_config_errors={k: cfm.ChainConfigError(message=v) for k, v in errors.items()}
            )

        async def answer(
            uuid: str, version: int, to: ProposalStatus, allowed: Sequence[ProposalStatus]
        ) -> None:
            prop_id = await self.state.node_proposal(
                nid, uuid, version, latest_only=to == ProposalStatus.APPROVED
            )
            await self.state.answer_proposal(prop_id, to, allowed)

        async def approved(req: cfm.ApprovedJobRequest) -> cfm.ApprovedJobResponse:
            await answer(req.uuid, req.version, ProposalStatus.APPROVED, [ProposalStatus.PROPOSED])
            return cfm.ApprovedJobResponse()

        async def rejected(req: cfm.RejectedJobRequest) -> cfm.RejectedJobResponse:
            await answer(req.uuid, req.version, ProposalStatus.REJECTED, [ProposalStatus.PROPOSED])
            return cfm.RejectedJobResponse()

        async def cancelled(req: cfm.CancelledJobRequest) -> cfm.CancelledJobResponse:
            await answer(
                req.uuid,
                req.version,
                ProposalStatus.CANCELLED,
                [ProposalStatus.PROPOSED, ProposalStatus.APPROVED],
            )
            return cfm.CancelledJobResponse()

        return {
            "Healthcheck": h(cfm.HealthcheckRequest, healthcheck),
            "UpdateNode": h(cfm.UpdateNodeRequest, update_node),
            "ApprovedJob": h(cfm.ApprovedJobRequest, approved),
            "RejectedJob": h(cfm.RejectedJobRequest, rejected),
            "CancelledJob": h(cfm.CancelledJobRequest, cancelled),
        }

    # ---------------------------------------------- we call the node

    async def _call(
        self, conn: _NodeConn, method: str, req: betterproto2.Message, resp: Any
    ) -> Any:
        return await conn.endpoint.call(method, req, resp, timeout=self.call_timeout)

    async def _deliver(
        self, conn: _NodeConn, prop_id: str, uuid: str, revision: int, spec: str
    ) -> None:
        if prop_id in conn.sent:
            return
        conn.sent.add(prop_id)
        try:
            await self._call(
                conn,
                "ProposeJob",
                cfm.ProposeJobRequest(id=uuid, spec=spec, version=revision, multiaddrs=[]),
                cfm.ProposeJobResponse,
            )
        except NodeProtocolError as exc:
            conn.sent.discard(prop_id)
            log.info("node %s did not take proposal %s: %s", conn.node_id, prop_id, exc)
            return
        await self.state.mark_delivered(prop_id)

    async def _send_backlog(self, conn: _NodeConn) -> None:
        for prop_id, uuid, revision, spec in await self.state.pending_deliveries(conn.node_id):
            if conn.endpoint.closed:
                return
            await self._deliver(conn, prop_id, uuid, revision, spec)

    def proposed(self, node_id: str, prop_id: str) -> None:
        self._spawn(self._on_proposed(node_id, prop_id))

    async def _on_proposed(self, node_id: str, prop_id: str) -> None:
        conn = self._conns.get(node_id)
        if conn is not None and not conn.ready:
            return  # the backlog goes out after the node's first request
        info = await self.state.delivery(prop_id)
        if info is None:
            return
        _, uuid, revision, spec, _ = info
        conn = self._conns.get(node_id)
        if conn is not None and conn.ready:
            await self._deliver(conn, prop_id, uuid, revision, spec)

    def job_gone(self, node_id: str, uuid: str, method: str) -> None:
        """The operator revoked (`RevokeJob`) or deleted (`DeleteJob`) a job."""
        conn = self._conns.get(node_id)
        if conn is None or conn.ws is None:
            return
        if method == "RevokeJob":
            req: betterproto2.Message = cfm.RevokeJobRequest(id=uuid)
            resp: Any = cfm.RevokeJobResponse
        else:
            req, resp = cfm.DeleteJobRequest(id=uuid), cfm.DeleteJobResponse

        async def go() -> None:
            try:
                await self._call(conn, method, req, resp)
            except NodeProtocolError as exc:
                log.info("node %s: %s %s failed: %s", node_id, method, uuid, exc)

        self._spawn(go())


class LiveState(JDState):
    """`JDState` whose operator writes reach connected nodes through `port`."""

    port: NodePort | None = None

    def _delivered_on_create(self, node_id: str, connected: bool) -> bool:
        # a node on a wsrpc connection: DELIVERED once it took ProposeJob;
        # one connected only through the Python helper: at once, as before
        return connected and (self.port is None or not self.port.has_connection(node_id))

    async def register_node(self, name: str, public_key: str, labels: Sequence[Label]) -> Node:
        node = await super().register_node(name, public_key, labels)
        if self.port is not None:
            self.port.node_changed(node)
        return node

    async def update_node(
        self, node_id: str, name: str, public_key: str, labels: Sequence[Label]
    ) -> Node:
        node = await super().update_node(node_id, name, public_key, labels)
        if self.port is not None:
            self.port.node_changed(node)
        return node

    async def set_node_enabled(self, node_id: str, enabled: bool) -> Node:
        node = await super().set_node_enabled(node_id, enabled)
        if self.port is not None:
            self.port.node_changed(node)
        return node

    async def reset(self) -> None:
        await super().reset()
        if self.port is not None:
            self.port.forget_all()

    async def propose_job(self, node_id: str, spec: str, labels: Sequence[Label]) -> Proposal:
        prop = await super().propose_job(node_id, spec, labels)
        if self.port is not None:
            self.port.proposed(node_id, prop.id)
        return prop

    async def batch_propose_job(
        self, node_ids: Sequence[str], spec: str, labels: Sequence[Label]
    ) -> tuple[dict[str, Proposal], dict[str, str]]:
        ok, failed = await super().batch_propose_job(node_ids, spec, labels)
        if self.port is not None:
            for node_id, prop in ok.items():
                self.port.proposed(node_id, prop.id)
        return ok, failed

    async def revoke_job(self, ident: str) -> Proposal:
        prop = await super().revoke_job(ident)
        if self.port is not None:
            job = await self.get_job(prop.job_id)
            self.port.job_gone(job.node_id, job.uuid, "RevokeJob")
        return prop

    async def delete_job(self, job_id: str) -> Job:
        job = await super().delete_job(job_id)
        if self.port is not None:
            self.port.job_gone(job.node_id, job.uuid, "DeleteJob")
        return job
