"""`SimulatedNode`: plays a Chainlink node against any JD's node-facing port.

It dials the JD (`NODE_RPC_PORT`) over TLS 1.3 with a certificate made from
its ed25519 key, checks that the server's key is the pinned JD key before it
sends a byte, reports itself with `UpdateNode`, serves `cfm.NodeService`
(ProposeJob, DeleteJob, RevokeJob, GetJobRuns) and answers proposals per its
policy. Like upstream's node it reconnects forever with backoff; only the
first connection is awaited by `async with`, so a refused key or a wrong JD
key is an error at once rather than a silent retry loop.

This module is the public class: its options, start/stop, waiting and the
calls a test makes. The connection (TLS, pin, reconnect) is `_connection`;
what the node serves and how it answers proposals is `_answers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import betterproto2

from jdkit._exceptions import ConfigError
from jdkit._proto import cfm
from jdkit._wsrpc._answers import NodeAnswers, ProposalPolicy, ReceivedProposal
from jdkit._wsrpc._connection import NodeBackoff, NodeConnection, parse_address
from jdkit._wsrpc._errors import NodeNotConnectedError, NodeProtocolError
from jdkit._wsrpc._keys import NodeKeyLike, load_private_key, parse_public_hex, public_hex
from jdkit._wsrpc._lifecycle import StartStop
from jdkit._wsrpc._rpc import DEFAULT_CALL_TIMEOUT, Endpoint
from jdkit._wsrpc._tls import client_context
from jdkit._wsrpc._ws import (
    CLIENT_HANDSHAKE_TIMEOUT,
    CLIENT_MAX_SIZE,
    NodeTiming,
    WsConnection,
    require_extra,
)


def _chain_config(cfg: Any) -> cfm.ChainConfig:
    # the v1 API's ChainConfig has the same fields 1-7 (plus node_id, 8)
    if isinstance(cfg, cfm.ChainConfig):
        return cfg
    if isinstance(cfg, betterproto2.Message):
        out = cfm.ChainConfig.parse(bytes(cfg))
        return out
    raise ConfigError("chain_configs", f"{type(cfg).__name__} is not a ChainConfig")


class SimulatedNode(StartStop, NodeConnection, NodeAnswers):
    """A Chainlink node's side of the JD protocol, in this process.

        async with SimulatedNode(srv.node_address, jd_key_hex, on_proposal="approve") as n:
            ...  # register n.public_key first; proposals to it are now approved

    `private_key`: ed25519 key (object, 32/64 raw bytes, hex, PEM, or a path
    to a file with hex or PEM); a new one when omitted. `on_proposal`:
    "approve", "reject", "ignore", or a callable given the `ReceivedProposal`
    that returns one of those (or None = ignore), possibly awaitable.
    `chain_configs`, `version`, `p2p_key_bundles`, `workflow_key`,
    `nop_friendly_name` go into the `UpdateNode` report. `backoff` is the
    reconnect schedule (`NodeBackoff`), `timing` wsrpc's keepalive
    (`NodeTiming`); `call` raises `NodeNotConnectedError` while the
    connection is down.
    """

    def __init__(
        self,
        jd_node_address: str,
        jd_public_key_hex: str,
        *,
        private_key: NodeKeyLike | None = None,
        on_proposal: ProposalPolicy = "approve",
        chain_configs: Sequence[Any] = (),
        version: str = "jdkit-simulated-node",
        p2p_key_bundles: Sequence[cfm.P2PKeyBundle | tuple[str, str]] = (),
        workflow_key: str | None = None,
        nop_friendly_name: str = "",
        connect_timeout: float = 10.0,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        handshake_timeout: float = CLIENT_HANDSHAKE_TIMEOUT,
        backoff: NodeBackoff | None = None,
        timing: NodeTiming | None = None,
        max_size: int = CLIENT_MAX_SIZE,
        name: str = "",
    ) -> None:
        require_extra("jdkit.SimulatedNode")  # websockets; raised here, not at import
        self._host, self._port = parse_address(jd_node_address)
        self.jd_node_address = jd_node_address
        self._jd_key = parse_public_hex(jd_public_key_hex, "jd_public_key_hex")
        self._key = load_private_key(private_key)
        self.public_key = public_hex(self._key)
        if not (callable(on_proposal) or on_proposal in ("approve", "reject", "ignore")):
            raise ConfigError(
                "on_proposal", f"{on_proposal!r}: use 'approve', 'reject', 'ignore' or a callable"
            )
        self.on_proposal: ProposalPolicy = on_proposal
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
        self.backoff = backoff or NodeBackoff()
        self.timing = timing or NodeTiming()
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
            self._first.set_exception(NodeNotConnectedError("node stopped"))
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
        """Any FeedsManager call on the JD (raises NodeNotConnectedError when down)."""
        ep = self._endpoint
        if ep is None or ep.closed:
            raise NodeNotConnectedError(f"{method}: node {self.name} is not connected")
        return await ep.call(method, request, response_type, timeout=self.call_timeout)

    async def update_node(self) -> dict[str, str]:
        """Send the report again (e.g. after changing `chain_configs`)."""
        resp = await self.call("UpdateNode", self.report(), cfm.UpdateNodeResponse)
        self.chain_config_errors = {k: v.message for k, v in resp.chain_config_errors.items()}
        await self._notify()
        return self.chain_config_errors

    async def healthcheck(self) -> None:
        await self.call("Healthcheck", cfm.HealthcheckRequest(), cfm.HealthcheckResponse)

    async def approve(self, proposal: str | ReceivedProposal, version: int | None = None) -> None:
        """ApprovedJob for a received proposal (its latest version unless given)."""
        await self._answer("ApprovedJob", self._find(proposal, version))

    async def reject(self, proposal: str | ReceivedProposal, version: int | None = None) -> None:
        await self._answer("RejectedJob", self._find(proposal, version))

    async def cancel(self, proposal: str | ReceivedProposal, version: int | None = None) -> None:
        await self._answer("CancelledJob", self._find(proposal, version))
