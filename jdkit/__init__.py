"""jdkit: an asyncio-native Python SDK for the Chainlink Job Distributor gRPC API.

    import jdkit
    async with jdkit.connect() as jd:          # embedded JD when no URL is configured
        await jd.list_nodes()

Every way to a client takes one `ClientOptions` (or its fields as keywords).
The public modules: `jdkit` (client, options, errors, providers, dry-run
journal), `jdkit.auth` (token sources), `jdkit.server` (the embedded JD and
its token verifiers), `jdkit.testing` (fixtures), `jdkit.pb` (message types),
`jdkit.selectors`, `jdkit.display` (tables). `Selector` is the label
selector message (`jdkit.pb.label.Selector`, as `jdkit.selectors.parse`
returns): selectors are text or `Selector` objects. Every error is a `JDError`; the
errors of a call are `RPCError`s named after the gRPC status. The Docker
provider's names (`DockerProvider`, `DockerConfig`, `DockerProviderError`,
`sweep_docker`, `release_docker_reused`) are imported on first use: they
need the `docker` extra.

Also here: `METHODS` (every RPC's `Method`, by path) and `WRITES` (the paths
of the writes: what dry-run journals and what is retried only when it
provably never arrived); `ServingStatus`, the gRPC health states;
`UnaryNext` and `StreamNext`, the types of the `proceed` an `Interceptor` is
given; `__version__`. `Target` is where a client connects, parsed
(`ClientOptions.parsed_target()`, `JobDistributor.target`). For
`SimulatedNode`: `NodeKeyLike` (the forms of its `private_key`) and
`ProposalPolicy` (its `on_proposal`) are type aliases; `NodeBackoff` and
`NodeTiming` its reconnect schedule and keepalive.
"""

from typing import TYPE_CHECKING

# The core (errors, the RPC table, messages, selectors) is imported now; the
# client side on first use. So `import jdkit.server` and the embedded JD load
# no client module (the package is imported before any of its submodules),
# and the Docker and node-protocol names need their extras only when used.
from jdkit import _exports, pb, selectors
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
    VersionError,
    WrongEventLoopError,
)
from jdkit._methods import METHODS, WRITES, Method
from jdkit.selectors import Selector

if TYPE_CHECKING:  # imported on first use at run time (__getattr__); typed for checkers
    from jdkit._channel import Target, TLSConfig
    from jdkit._client import CallOptions, JobDistributor, ServingStatus
    from jdkit._display import show, table
    from jdkit._dryrun import Journal, JournalEntry
    from jdkit._interceptors import Call, Interceptor, Message, StreamNext, UnaryNext
    from jdkit._options import ClientOptions
    from jdkit._providers import (
        EmbeddedProvider,
        Provider,
        ProviderNotInitializedError,
        RemoteConfig,
        RemoteProvider,
        connect,
    )
    from jdkit._providers._docker import (
        DockerConfig,
        DockerProvider,
        DockerProviderError,
        release_docker_reused,
        sweep_docker,
    )
    from jdkit._retry import RetryPolicy
    from jdkit._tasks import NodeRollout, ProposalWaitError, Rollout, RolloutStatus
    from jdkit._wsrpc._api import (
        JDKeyMismatchError,
        NodeAlreadyConnectedError,
        NodeBackoff,
        NodeKeyLike,
        NodeKeyRefusedError,
        NodeNotConnectedError,
        NodeProtocolError,
        NodeTiming,
        ProposalPolicy,
        ReceivedProposal,
        SimulatedFleet,
        SimulatedNode,
        WsrpcCallError,
        WsrpcTimeoutError,
    )

__version__ = "0.2.0"

#: name -> the module (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "Target": "._channel",
    "TLSConfig": "._channel",
    "CallOptions": "._client",
    "JobDistributor": "._client",
    "ServingStatus": "._client",
    "show": "._display",
    "table": "._display",
    "Journal": "._dryrun",
    "JournalEntry": "._dryrun",
    "Call": "._interceptors",
    "Interceptor": "._interceptors",
    "Message": "._interceptors",
    "StreamNext": "._interceptors",
    "UnaryNext": "._interceptors",
    "ClientOptions": "._options",
    "EmbeddedProvider": "._providers",
    "Provider": "._providers",
    "ProviderNotInitializedError": "._providers",
    "RemoteConfig": "._providers",
    "RemoteProvider": "._providers",
    "connect": "._providers",
    # the Docker provider needs the `docker` extra
    "DockerConfig": "._providers",
    "DockerProvider": "._providers",
    "DockerProviderError": "._providers",
    "release_docker_reused": "._providers",
    "sweep_docker": "._providers",
    "RetryPolicy": "._retry",
    "NodeRollout": "._tasks",
    "ProposalWaitError": "._tasks",
    "Rollout": "._tasks",
    "RolloutStatus": "._tasks",
    # the node protocol: its errors and plain types need no extra ...
    **dict.fromkeys(
        (
            "NodeProtocolError",
            "NodeNotConnectedError",
            "NodeKeyRefusedError",
            "JDKeyMismatchError",
            "NodeAlreadyConnectedError",
            "WsrpcCallError",
            "WsrpcTimeoutError",
        ),
        "._wsrpc._errors",
    ),
    "ReceivedProposal": "._wsrpc._answers",
    "ProposalPolicy": "._wsrpc._answers",
    "NodeKeyLike": "._wsrpc._keys",
    # ... the node itself needs the `node` extra (websockets) when made
    **dict.fromkeys(
        ("SimulatedNode", "SimulatedFleet", "NodeBackoff", "NodeTiming"), "._wsrpc._api"
    ),
}


#: 0.1 names that 0.2 renamed, for a pointer in the AttributeError
_RENAMED = {
    "sweep": "jdkit.sweep_docker",
    "Backoff": "jdkit.NodeBackoff",
    "Timing": "jdkit.NodeTiming",
    "NotConnectedError": "jdkit.NodeNotConnectedError",
    "KeyLike": "jdkit.NodeKeyLike",
    "Policy": "jdkit.ProposalPolicy",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise _exports.no_attribute("jdkit", name, _RENAMED)
    import importlib

    # the module publishes its names (jdkit._exports) as it loads
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
    "ClientOptions",
    "ConfigError",
    "DeadlineExceededError",
    "DockerConfig",
    "DockerProvider",
    "DockerProviderError",
    "DryRunError",
    "EmbeddedProvider",
    "FailedPreconditionError",
    "Interceptor",
    "InternalError",
    "InvalidArgumentError",
    "JDError",
    "JDKeyMismatchError",
    "JobDistributor",
    "Journal",
    "JournalEntry",
    "Message",
    "Method",
    "NodeAlreadyConnectedError",
    "NodeBackoff",
    "NodeKeyLike",
    "NodeKeyRefusedError",
    "NodeNotConnectedError",
    "NodeProtocolError",
    "NodeRollout",
    "NodeTiming",
    "NotFoundError",
    "PermissionDeniedError",
    "ProposalPolicy",
    "ProposalWaitError",
    "ProtocolError",
    "Provider",
    "ProviderNotInitializedError",
    "RPCError",
    "ReceivedProposal",
    "RemoteConfig",
    "RemoteProvider",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Rollout",
    "RolloutStatus",
    "Selector",
    "ServingStatus",
    "SimulatedFleet",
    "SimulatedNode",
    "StreamNext",
    "TLSConfig",
    "Target",
    "UnaryNext",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "VersionError",
    "WrongEventLoopError",
    "WsrpcCallError",
    "WsrpcTimeoutError",
    "__version__",
    "connect",
    "pb",
    "release_docker_reused",
    "selectors",
    "show",
    "sweep_docker",
    "table",
]

# the names imported above (the others as they load); dir() lists __all__
_exports.publish_all(globals())
