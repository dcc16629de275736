"""What `jdkit` exports from the node protocol (imported on first use).

A `SimulatedNode` needs `jdkit[node]` when made; the errors and types do not.
"""

from __future__ import annotations

from jdkit import _exports
from jdkit._wsrpc._answers import ProposalPolicy, ReceivedProposal
from jdkit._wsrpc._connection import NodeBackoff
from jdkit._wsrpc._errors import (
    JDKeyMismatchError,
    NodeAlreadyConnectedError,
    NodeKeyRefusedError,
    NodeNotConnectedError,
    NodeProtocolError,
    WsrpcCallError,
    WsrpcTimeoutError,
)
from jdkit._wsrpc._fleet import SimulatedFleet
from jdkit._wsrpc._keys import NodeKeyLike
from jdkit._wsrpc._node import SimulatedNode
from jdkit._wsrpc._ws import NodeTiming

__all__ = [
    "JDKeyMismatchError",
    "NodeAlreadyConnectedError",
    "NodeBackoff",
    "NodeKeyLike",
    "NodeKeyRefusedError",
    "NodeNotConnectedError",
    "NodeProtocolError",
    "NodeTiming",
    "ProposalPolicy",
    "ReceivedProposal",
    "SimulatedFleet",
    "SimulatedNode",
    "WsrpcCallError",
    "WsrpcTimeoutError",
]

_exports.publish_lazy(globals())  # what jdkit imports from here on first use
