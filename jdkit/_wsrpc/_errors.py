"""Errors of the node-facing protocol, in jdkit's one hierarchy (all `JDError`)."""

from __future__ import annotations

from jdkit import _exports
from jdkit._exceptions import JDError


class NodeProtocolError(JDError):
    """Something went wrong on the node-facing (wsrpc) connection."""


class WsrpcCallError(NodeProtocolError):
    """The other side answered a call with an error.

    wsrpc has no status codes: `text` is exactly the peer's error text.
    """

    def __init__(self, method: str, text: str) -> None:
        self.method = method
        self.text = text
        super().__init__(f"{method}: {text}")


class WsrpcTimeoutError(NodeProtocolError, TimeoutError):
    """No answer within the call's timeout.

    The protocol answers an unknown method or an undecodable payload with
    nothing at all, so this is also what those look like to the caller.
    """

    def __init__(self, method: str, timeout: float) -> None:
        self.method = method
        self.timeout = timeout
        super().__init__(
            f"{method}: no answer within {timeout:g}s (wsrpc does not answer unknown "
            "methods or undecodable payloads)"
        )


class NodeNotConnectedError(NodeProtocolError):
    """A call was made while the connection was down (fails at once, as upstream does)."""


class NodeKeyRefusedError(NodeProtocolError):
    """The JD refused this node's key during the TLS handshake."""

    def __init__(self, public_key: str, detail: str) -> None:
        self.public_key = public_key
        super().__init__(
            f"the JD does not know this node's key {public_key} (or the node is disabled): "
            f"it refused the client certificate ({detail}); register the node with this "
            "public_key (NodeService/RegisterNode) and enable it"
        )


class JDKeyMismatchError(NodeProtocolError):
    """The server's certificate key is not the JD public key the node pins."""

    def __init__(self, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            f"the server at this address is not the expected JD: its key is {got}, "
            f"the node pins {expected} (CSAService/GetKeypair gives the JD's key)"
        )


class NodeAlreadyConnectedError(NodeProtocolError):
    """The JD refused the connection because this node key already has one."""


_exports.publish_lazy(globals())  # what jdkit imports from here on first use
