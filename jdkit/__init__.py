"""jdkit: an asyncio-native Python SDK for the Chainlink Job Distributor gRPC API.

    import jdkit
    async with jdkit.connect() as jd:          # embedded JD when no URL is configured
        await jd.list_nodes()

Message types live in `jdkit.pb`; errors are described in `jdkit._exceptions`.
"""

from jdkit import pb, selectors
from jdkit._channel import TLSConfig
from jdkit._client import CallOptions, JobDistributor, ServingStatus
from jdkit._display import show, table
from jdkit._dryrun import Journal, JournalEntry
from jdkit._exceptions import (
    AlreadyExistsError,
    AuthError,
    CancelledError,
    ChallengeRequiredError,
    ClientClosedError,
    ConfigError,
    DeadlineExceededError,
    DryRunError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    JDError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ResourceExhaustedError,
    RPCError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    WrongEventLoopError,
)
from jdkit._interceptors import Call, Interceptor, Message, StreamNext, UnaryNext
from jdkit._methods import METHODS, WRITES, Method
from jdkit._providers import (
    EmbeddedProvider,
    Provider,
    ProviderNotInitializedError,
    RemoteConfig,
    RemoteProvider,
    connect,
)
from jdkit._retry import RetryPolicy

__version__ = "0.1.0"


_NODE = {
    "SimulatedNode",
    "SimulatedFleet",
    "ReceivedProposal",
    "NodeProtocolError",
    "NodeKeyRefusedError",
    "JDKeyMismatchError",
    "NodeAlreadyConnectedError",
    "WsrpcCallError",
    "WsrpcTimeoutError",
}


def __getattr__(name: str) -> object:
    # DockerProvider & co. need the optional `docker` extra: resolved on use.
    from jdkit import _providers

    if name in _providers._DOCKER:
        return getattr(_providers, name)
    if name in _NODE:
        # the node protocol needs the optional `node` extra: resolved on use
        from jdkit._wsrpc import _api

        return getattr(_api, name)
    raise AttributeError(f"module 'jdkit' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "WRITES",
    "AlreadyExistsError",
    "AuthError",
    "Call",
    "CallOptions",
    "CancelledError",
    "ChallengeRequiredError",
    "ClientClosedError",
    "ConfigError",
    "DeadlineExceededError",
    "DryRunError",
    "EmbeddedProvider",
    "FailedPreconditionError",
    "Interceptor",
    "InternalError",
    "InvalidArgumentError",
    "JDError",
    "JobDistributor",
    "Journal",
    "JournalEntry",
    "Message",
    "Method",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "Provider",
    "ProviderNotInitializedError",
    "RPCError",
    "RemoteConfig",
    "RemoteProvider",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServingStatus",
    "SimulatedNode",
    "StreamNext",
    "TLSConfig",
    "UnaryNext",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "WrongEventLoopError",
    "__version__",
    "connect",
    "pb",
    "selectors",
    "show",
    "table",
]
