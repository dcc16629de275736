"""What `jdkit` exports from the node protocol (imported on first use: needs `jdkit[node]`)."""

from __future__ import annotations

from jdkit import _exports
from jdkit._wsrpc._answers import ReceivedProposal
from jdkit._wsrpc._connection import Backoff
from jdkit._wsrpc._errors import (
    JDKeyMismatchError,
    NodeAlreadyConnectedError,
    NodeKeyRefusedError,
    NodeProtocolError,
    NotConnectedError,
    WsrpcCallError,
    WsrpcTimeoutError,
)
from jdkit._wsrpc._fleet import SimulatedFleet
from jdkit._wsrpc._node import SimulatedNode

__all__ = [
    "Backoff",
    "JDKeyMismatchError",
    "NodeAlreadyConnectedError",
    "NodeKeyRefusedError",
    "NodeProtocolError",
    "NotConnectedError",
    "ReceivedProposal",
    "SimulatedFleet",
    "SimulatedNode",
    "WsrpcCallError",
    "WsrpcTimeoutError",
]

_exports.publish_lazy(globals())  # what jdkit imports from here on first use
