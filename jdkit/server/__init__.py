"""jdkit's embedded Job Distributor, a JD v1-compatible gRPC server, and its auth.

    from jdkit.server import EmbeddedJD, StaticTokenVerifier

    async with EmbeddedJD.start(auth=StaticTokenVerifier(["t1"])) as srv:
        ...                                     # connect a client to srv.address
        await srv.approve_proposal(proposal_id) # play the node's part

`EmbeddedJD.start()` returns a `Starting`: await it for the started server,
or use it as `async with` to stop the server on exit. `StartOptions` types
its keywords (`Unpack[StartOptions]`), `ServeOptions` those of `serve`.

The verifiers are the server's side of `jdkit.auth` (whose `StaticToken` is
what a client sends): `EmbeddedJD.start(auth=...)` awaits one with each
call's bearer token (`Verifier` is the type of such a hook, `bearer_token`
reads the token from an `authorization` value). `DEV_CSA_SECRET` is the
published secret a server without one seals its CSA key with: for tests
only. `serve` runs a server until SIGINT/SIGTERM, as `jdkit serve` does;
`python -m jdkit.server` runs one configured from the environment
(`EmbeddedJD.from_env`), as the JD image does. `ServerLimits` bounds what one
caller may cost (`EmbeddedJD.start(limits=...)`: message sizes,
per-connection caps, timeouts). `JDState` is the store and JD's rules behind
a server (`srv.state`). Behaviour follows the JD semantics the SDK
documents; where the upstream record is silent, the choices are written in
the server's state docstring.
"""

from jdkit import _exports
from jdkit._server import DEV_CSA_SECRET, EmbeddedJD, serve
from jdkit._server._auth import JWKSVerifier, StaticTokenVerifier, Verifier, bearer_token
from jdkit._server._config import ServeOptions, StartOptions
from jdkit._server._embedded import Starting
from jdkit._server._limits import ServerLimits
from jdkit._server._state import JDState

__all__ = [
    "DEV_CSA_SECRET",
    "EmbeddedJD",
    "JDState",
    "JWKSVerifier",
    "ServeOptions",
    "ServerLimits",
    "StartOptions",
    "Starting",
    "StaticTokenVerifier",
    "Verifier",
    "bearer_token",
    "serve",
]


#: 0.1 names that 0.2 renamed, for a pointer in the AttributeError
_RENAMED = {
    "StaticTokens": "jdkit.server.StaticTokenVerifier",
    "serve_forever": "jdkit.server.serve",
    "AuthHook": "jdkit.server.Verifier",
}


def __getattr__(name: str) -> object:
    raise _exports.no_attribute("jdkit.server", name, _RENAMED)


_exports.publish_all(globals())  # help(), reprs, tracebacks name this module; dir()
