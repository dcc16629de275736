"""jdkit's embedded Job Distributor: a JD v1-compatible gRPC server.

    from jdkit._server import EmbeddedJD

    async with EmbeddedJD.start() as srv:       # in-memory SQLite, random port
        ...                                     # connect a client to srv.address
        await srv.approve_proposal(proposal_id) # play the node's part

Behaviour follows the JD semantics the SDK documents; where the upstream
record is silent, the choices are written in `_state`'s docstring.
"""

from jdkit._server._csa import DEV_CSA_SECRET
from jdkit._server._embedded import EmbeddedJD
from jdkit._server._selectors import matches as selector_matches
from jdkit._server._serve import run_until_signalled, serve_forever

__all__ = [
    "DEV_CSA_SECRET",
    "EmbeddedJD",
    "run_until_signalled",
    "selector_matches",
    "serve_forever",
]
