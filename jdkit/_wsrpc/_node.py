"""`SimulatedNode`: plays a Chainlink node against any JD's node-facing port.

It dials the JD (`NODE_RPC_PORT`) over TLS 1.3 with a certificate made from
its ed25519 key, checks that the server's key is the pinned JD key before it
sends a byte, reports itself with `UpdateNode`, serves `cfm.NodeService`
(ProposeJob, DeleteJob, RevokeJob, GetJobRuns) and answers proposals per its
policy. Like upstream's node it reconnects forever with backoff; only the
first connection is awaited by `async with`, so a refused key or a wrong JD
key is an error at once rather than a silent retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NoReturn, Self

import betterproto2

from jdkit._exceptions import ConfigError
from jdkit._proto import cfm
from jdkit._wsrpc._errors import (
    JDKeyMismatchError,
    NodeAlreadyConnectedError,
    NodeKeyRefusedError,
    NodeProtocolError,
    NotConnectedError,
)
from jdkit._wsrpc._keys import (
    KeyLike,
    ed25519_key_from_cert,
    load_private_key,
    parse_public_hex,
    public_hex,
    same_key,
)
from jdkit._wsrpc._rpc import DEFAULT_CALL_TIMEOUT, Endpoint, Handler, handler
from jdkit._wsrpc._tls import ClientStream, client_context
from jdkit._wsrpc._ws import (
    CLIENT_HANDSHAKE_TIMEOUT,
    CLIENT_MAX_SIZE,
    HandshakeError,
    Timing,
    WsConnection,
    client_handshake,
)

log = logging.getLogger("jdkit.node")

Answer = Literal["approve", "reject", "ignore"]
Policy = Answer | Callable[["ReceivedProposal"], "Answer | Awaitable[Answer | None] | None"]

#: TLS alerts by which a server says it does not accept our certificate
_CERT_ALERTS = (
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "HANDSHAKE_FAILURE",
)


@dataclass(frozen=True)
class Backoff:
    """Upstream's reconnect schedule: 1 s, times 1.6, 20 % jitter either way, at most 120 s."""

    initial: float = 1.0
    factor: float = 1.6
    jitter: float = 0.2
    cap: float = 120.0

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.initial * self.factor**attempt)
        return max(0.0, base * (1 + self.jitter * random.uniform(-1, 1)))


@dataclass
class ReceivedProposal:
    """A `ProposeJob` the node received (`id` is what it echoes back as `uuid`)."""

    id: str
    spec: str
    version: int
    multiaddrs: list[str]
    received_at: dt.datetime
    #: "approved" / "rejected" / "cancelled" once the JD took an answer
    answer: str | None = None
    #: the JD's error text when it refused an answer
    answer_error: str | None = None
    revoked: bool = False


def parse_address(address: str, field: str = "jd_node_address") -> tuple[str, int]:
    text = address.strip()
    for prefix in ("wss://", "ws://"):
        text = text.removeprefix(prefix)
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(field, f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _chain_config(cfg: Any) -> cfm.ChainConfig:
    # the v1 API's ChainConfig has the same fields 1-7 (plus node_id, 8)
    if isinstance(cfg, cfm.ChainConfig):
        return cfg
    if isinstance(cfg, betterproto2.Message):
        out = cfm.ChainConfig.parse(bytes(cfg))
        return out
    raise ConfigError("chain_configs", f"{type(cfg).__name__} is not a ChainConfig")


def _is_cert_refusal(exc: ssl.SSLError) -> bool:
    text = f"{exc.reason or ''} {exc}".upper()
    return "ALERT" in text and any(a in text for a in _CERT_ALERTS)


class SimulatedNode:
    """A Chainlink node's side of the JD protocol, in this process.

        async with SimulatedNode(srv.node_address, jd_key_hex, on_proposal="approve") as n:
            ...  # register n.public_key first; proposals to it are now approved

    `private_key`: ed25519 key (object, 32/64 raw bytes, hex, PEM, or a path
    to a file with hex or PEM); a new one when omitted. `on_proposal`:
    "approve", "reject", "ignore", or a callable given the `ReceivedProposal`
    that returns one of those (or None = ignore), possibly awaitable.
    `chain_configs`, `version`, `p2p_key_bundles`, `workflow_key`,
    `nop_friendly_name` go into the `UpdateNode` report.
    """

    def __init__(
        self,
        jd_node_address: str,
        jd_public_key_hex: str,
        *,
        private_key: KeyLike | None = None,
        on_proposal: Policy = "approve",
        chain_configs: Sequence[Any] = (),
        version: str = "jdkit-simulated-node",
        p2p_key_bundles: Sequence[cfm.P2PKeyBundle | tuple[str, str]] = (),
        workflow_key: str | None = None,
        nop_friendly_name: str = "",
        connect_timeout: float = 10.0,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        handshake_timeout: float = CLIENT_HANDSHAKE_TIMEOUT,
        backoff: Backoff | None = None,
        timing: Timing | None = None,
        max_size: int = CLIENT_MAX_SIZE,
        name: str = "",
    ) -> None:
        self._host, self._port = parse_address(jd_node_address)
        self.jd_node_address = jd_node_address
        self._jd_key = parse_public_hex(jd_public_key_hex, "jd_public_key_hex")
        self._key = load_private_key(private_key)
        self.public_key = public_hex(self._key)
        if not (callable(on_proposal) or on_proposal in ("approve", "reject", "ignore")):
            raise ConfigError(
                "on_proposal", f"{on_proposal!r}: use 'approve', 'reject', 'ignore' or a callable"
            )
        self.on_proposal: Policy = on_proposal
        self.chain_configs = [_chain_config(c) for c in chain_configs]
        self.version = version
        self.p2p_key_bundles = [
            b
            if isinstance(b, cfm.P2PKeyBundle)
            else cfm.P2PKeyBundle(peer_id=b[0], public_key=b[1])
            for b in p2p_key_bundles
        ]
        self.workflow_key = workflow_key
        self.nop_friendly_name = nop_friendly_name
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.handshake_timeout = handshake_timeout
        self.backoff = backoff or Backoff()
        self.timing = timing or Timing()
        self.max_size = max_size
        self.name = name or f"node-{self.public_key[:8]}"
        #: every ProposeJob received, in order
        self.proposals: list[ReceivedProposal] = []
        #: job ids the JD sent DeleteJob / RevokeJob for
        self.deleted: list[str] = []
        self.revoked: list[str] = []
        #: chain id -> error text, from the JD's last UpdateNode answer
        self.chain_config_errors: dict[str, str] = {}
        #: why the last connection attempt or connection ended
        self.last_error: BaseException | None = None
        #: successful connections so far (reconnects add one each)
        self.connections = 0
        self._ctx: ssl.SSLContext | None = None
        self._endpoint: Endpoint | None = None
        self._ws: WsConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Condition | None = None
        self._first: asyncio.Future[None] | None = None
        self._stopping = False
        self._answer_tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<SimulatedNode {self.name} key={self.public_key[:12]}… {state}>"

    # ------------------------------------------------------------ life

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self, *, wait: bool = True) -> None:
        """Start connecting; with `wait`, until the first connection is up
        (raises NodeKeyRefusedError, JDKeyMismatchError, ... when it cannot be)."""
        if self._task is not None:
            raise RuntimeError("a SimulatedNode starts once")
        self._ctx = client_context(self._key)
        self._changed = asyncio.Condition()
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"jdkit-node-{self.name}")
        if wait:
            try:
                await asyncio.wait_for(asyncio.shield(self._first), self.connect_timeout)
            except TimeoutError:
                await self.stop()
                raise NodeProtocolError(
                    f"node {self.public_key[:12]}…: no connection to the JD at "
                    f"{self.jd_node_address} within {self.connect_timeout:g}s "
                    f"(last error: {self.last_error!r})"
                ) from None
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Close the connection (WebSocket close) and stop reconnecting."""
        self._stopping = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "node stopping")
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for t in list(self._answer_tasks):
            t.cancel()
        if self._first is not None and not self._first.done():
            self._first.set_exception(NotConnectedError("node stopped"))
            self._first.exception()  # retrieved: nobody else may be waiting

    @property
    def connected(self) -> bool:
        return self._endpoint is not None and not self._endpoint.closed

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds (checked after every event); TimeoutError if not."""
        assert self._changed is not None, "start the node first"
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: self.connected, timeout)

    async def wait_for_proposals(
        self, count: int = 1, timeout: float = 10.0
    ) -> list[ReceivedProposal]:
        await self.wait_until(lambda: len(self.proposals) >= count, timeout)
        return self.proposals[:count]

    # ------------------------------------------------------------ loop

    async def _run(self) -> None:
        attempt = 0
        assert self._first is not None
        while not self._stopping:
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except (NodeKeyRefusedError, JDKeyMismatchError, NodeAlreadyConnectedError) as exc:
                self.last_error = exc
                if not self._first.done():
                    self._first.set_exception(exc)
                    self._first.exception()  # start(wait=False) may never await it
                    return
                log.warning("%s: %s", self.name, exc)
            except (
                OSError,
                ConnectionError,
                HandshakeError,
                NodeProtocolError,
                TimeoutError,
            ) as exc:
                self.last_error = exc
                log.info("%s: connection to %s failed: %r", self.name, self.jd_node_address, exc)
            except Exception as exc:  # a bug here must not end the reconnect loop silently
                self.last_error = exc
                log.warning("%s: connection attempt failed unexpectedly", self.name, exc_info=True)
            if self._stopping:
                return
            delay = self.backoff.delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        assert self._ctx is not None and self._first is not None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, ssl=self._ctx),
                self.handshake_timeout,
            )
        except TimeoutError:
            raise HandshakeError(f"TLS handshake took over {self.handshake_timeout:g}s") from None
        stream = ClientStream(reader, writer)
        try:
            # pin check first: nothing is sent to a server that is not our JD
            ssl_obj = writer.get_extra_info("ssl_object")
            try:
                der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            except ValueError:
                # the JD closed the TLS connection as soon as it was up (under TLS
                # 1.3 a refused client certificate shows only now): read its alert
                await self._raise_closed_early(reader)
            got = ed25519_key_from_cert(der) if der else None
            if got is None or not same_key(got, self._jd_key):
                raise JDKeyMismatchError(
                    self._jd_key.hex(), got.hex() if got else "no ed25519 certificate"
                )
            try:
                proto, early = await client_handshake(
                    stream,
                    self._host,
                    self._port,
                    max_size=self.max_size,
                    timeout=self.handshake_timeout,
                )
            except ssl.SSLError as exc:
                if _is_cert_refusal(exc):
                    raise NodeKeyRefusedError(self.public_key, exc.reason or str(exc)) from None
                raise
            except HandshakeError as exc:
                if exc.status == 200:
                    raise NodeAlreadyConnectedError(
                        f"the JD refused a second connection for node key {self.public_key}: "
                        "another process is connected with this key"
                    ) from None
                if exc.status == 403:
                    raise NodeKeyRefusedError(self.public_key, "HTTP 403") from None
                raise
            endpoint: Endpoint

            def on_message(data: bytes) -> None:
                endpoint.feed(data)

            ws = WsConnection(
                stream, proto, on_message, timing=self.timing, early=early, name=self.name
            )
            endpoint = Endpoint(ws.send, self._handlers(), name=f"{self.name}->jd")
            run = asyncio.ensure_future(ws.run())
            try:
                try:
                    resp = await endpoint.call(
                        "UpdateNode",
                        self.report(),
                        cfm.UpdateNodeResponse,
                        timeout=self.call_timeout,
                    )
                except NodeProtocolError:
                    if run.done():
                        raise ConnectionError(f"connection closed: {run.result()}") from None
                    raise
                self.chain_config_errors = {
                    k: v.message for k, v in resp.chain_config_errors.items()
                }
                self._ws, self._endpoint = ws, endpoint
                self.connections += 1
                if not self._first.done():
                    self._first.set_result(None)
                log.info("%s: connected to %s", self.name, self.jd_node_address)
                await self._notify()
                reason = await run
                self.last_error = ConnectionError(f"connection ended: {reason}")
                log.info("%s: disconnected: %s", self.name, reason)
            finally:
                endpoint.close()
                if not run.done():
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await run
                self._ws = self._endpoint = None
                await self._notify()
        finally:
            stream.close()

    async def _raise_closed_early(self, reader: asyncio.StreamReader) -> NoReturn:
        try:
            await asyncio.wait_for(reader.read(1), self.handshake_timeout)
        except ssl.SSLError as exc:
            if _is_cert_refusal(exc):
                raise NodeKeyRefusedError(self.public_key, exc.reason or str(exc)) from None
            raise ConnectionError(f"TLS connection failed: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"TLS connection closed at once: {exc!r}") from None
        raise ConnectionError("the JD closed the TLS connection right after the handshake")

    # ---------------------------------------------------- what we serve

    def _handlers(self) -> dict[str, Handler]:
        return {
            "ProposeJob": handler(cfm.ProposeJobRequest, self._on_propose),
            "DeleteJob": handler(cfm.DeleteJobRequest, self._on_delete),
            "RevokeJob": handler(cfm.RevokeJobRequest, self._on_revoke),
            "GetJobRuns": handler(cfm.GetJobRunsRequest, self._on_job_runs),
        }

    async def _on_propose(self, req: cfm.ProposeJobRequest) -> cfm.ProposeJobResponse:
        p = ReceivedProposal(
            id=req.id,
            spec=req.spec,
            version=req.version,
            multiaddrs=list(req.multiaddrs),
            received_at=dt.datetime.now(dt.UTC),
        )
        self.proposals.append(p)
        # answer after our ProposeJob response has gone out
        task = asyncio.ensure_future(self._apply_policy(p))
        self._answer_tasks.add(task)
        task.add_done_callback(self._answer_tasks.discard)
        return cfm.ProposeJobResponse(id=req.id)

    async def _apply_policy(self, p: ReceivedProposal) -> None:
        await self._notify()
        policy = self.on_proposal
        choice: Any = policy
        if callable(policy):
            try:
                choice = policy(p)
                if inspect.isawaitable(choice):
                    choice = await choice
            except Exception:
                log.exception("%s: on_proposal callable failed for %s", self.name, p.id)
                return
        if choice == "approve":
            await self._answer_quietly("ApprovedJob", p)
        elif choice == "reject":
            await self._answer_quietly("RejectedJob", p)

    async def _answer_quietly(self, method: str, p: ReceivedProposal) -> None:
        with contextlib.suppress(NodeProtocolError):
            await self._answer(method, p)

    async def _on_delete(self, req: cfm.DeleteJobRequest) -> cfm.DeleteJobResponse:
        self.deleted.append(req.id)
        await self._notify()
        return cfm.DeleteJobResponse(id=req.id)

    async def _on_revoke(self, req: cfm.RevokeJobRequest) -> cfm.RevokeJobResponse:
        self.revoked.append(req.id)
        for p in self.proposals:
            if p.id == req.id and p.answer is None:
                p.revoked = True
        await self._notify()
        return cfm.RevokeJobResponse(id=req.id)

    async def _on_job_runs(self, req: cfm.GetJobRunsRequest) -> cfm.GetJobRunsResponse:
        return cfm.GetJobRunsResponse(runs=[])

    # ------------------------------------------------ what we call

    def report(self) -> cfm.UpdateNodeRequest:
        """The `UpdateNode` this node sends on every connection."""
        return cfm.UpdateNodeRequest(
            version=self.version,
            chains=[c.chain for c in self.chain_configs if c.chain is not None],
            chain_configs=self.chain_configs,
            p2p_key_bundles=self.p2p_key_bundles,
            workflow_key=self.workflow_key,
            nop_friendly_name=self.nop_friendly_name,
        )

    async def call(
        self, method: str, request: betterproto2.Message, response_type: type[Any]
    ) -> Any:
        """Any FeedsManager call on the JD (raises NotConnectedError when down)."""
        ep = self._endpoint
        if ep is None or ep.closed:
            raise NotConnectedError(f"{method}: node {self.name} is not connected")
        return await ep.call(method, request, response_type, timeout=self.call_timeout)

    async def update_node(self) -> dict[str, str]:
        """Send the report again (e.g. after changing `chain_configs`)."""
        resp = await self.call("UpdateNode", self.report(), cfm.UpdateNodeResponse)
        self.chain_config_errors = {k: v.message for k, v in resp.chain_config_errors.items()}
        await self._notify()
        return self.chain_config_errors

    async def healthcheck(self) -> None:
        await self.call("Healthcheck", cfm.HealthcheckRequest(), cfm.HealthcheckResponse)

    def _find(self, ident: str | ReceivedProposal, version: int | None) -> ReceivedProposal:
        if isinstance(ident, ReceivedProposal):
            return ident
        found = [
            p for p in self.proposals if p.id == ident and (version is None or p.version == version)
        ]
        if not found:
            raise ConfigError("proposal", f"this node received no proposal {ident!r}")
        return max(found, key=lambda p: p.version)

    _REQ = {
        "ApprovedJob": (cfm.ApprovedJobRequest, cfm.ApprovedJobResponse, "approved"),
        "RejectedJob": (cfm.RejectedJobRequest, cfm.RejectedJobResponse, "rejected"),
        "CancelledJob": (cfm.CancelledJobRequest, cfm.CancelledJobResponse, "cancelled"),
    }

    async def _answer(self, method: str, p: ReceivedProposal) -> None:
        req_t, resp_t, word = self._REQ[method]
        try:
            await self.call(method, req_t(uuid=p.id, version=p.version), resp_t)
        except NodeProtocolError as exc:
            p.answer_error = str(exc)
            await self._notify()
            raise
        p.answer, p.answer_error = word, None
        await self._notify()

    async def approve(self, proposal: str | ReceivedProposal, version: int | None = None) -> None:
        """ApprovedJob for a received proposal (its latest version unless given)."""
        await self._answer("ApprovedJob", self._find(proposal, version))

    async def reject(self, proposal: str | ReceivedProposal, version: int | None = None) -> None:
        await self._answer("RejectedJob", self._find(proposal, version))

    async def cancel(self, proposal: str | ReceivedProposal, version: int | None = None) -> None:
        await self._answer("CancelledJob", self._find(proposal, version))
