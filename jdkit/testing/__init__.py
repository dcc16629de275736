"""Test helpers and pytest fixture factories (the pytest-postgresql way).

The `jdkit` pytest plugin builds its fixtures (`jd_server`, `jd`, `jd_dry_run`,
`jd_docker`) from these factories; build your own the same way, in a
conftest.py:

    from jdkit.testing import jd_client_factory, jd_server_factory

    jd_tls_server = jd_server_factory(scope="session", db="/tmp/jd.sqlite")
    jd_admin = jd_client_factory("jd_tls_server", auth=StaticToken("t"))
    jd_plan = jd_client_factory("jd_server", dry_run=True)
    jd_staging = jd_remote_factory()                # ClientOptions.from_env()

Every factory takes client options as every other way to get a client does:
a `jdkit.ClientOptions` as `options=` and/or its fields as keywords, and a
pytest fixture scope as `scope=` (`Scope`, the type of it).

Why these fixtures are plain (sync) pytest fixtures, and work from any loop
---------------------------------------------------------------------------
A session-scoped *async* fixture would have to run on a session-scoped event
loop, and a server started on one loop is not served while a test runs on
another (pytest-asyncio gives each test its own loop by default; anyio's
plugin has its own runner). jdkit avoids the problem instead of configuring
around it:

* the embedded JD runs on its own event loop in a background thread
  (`ThreadedJD`), so it serves every test whatever loop, scope or plugin the
  test uses;
* the clients handed to tests are `JobDistributor`s over a channel that opens
  one connection per event loop, on first use in that loop (`any_loop_client`),
  so a client from a session-scoped fixture works in function-scoped loops too.

So the fixtures need no `loop_scope`, work under pytest-asyncio's strict and
auto modes and under anyio's plugin (asyncio backend: grpclib is
asyncio-only), and your own async fixtures may depend on them at any scope.
"""

from __future__ import annotations

try:  # the fixture factories need pytest: say which extra installs it
    import pytest  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess
    if exc.name != "pytest":
        raise
    raise ImportError(
        "jdkit.testing needs pytest: install it with pip install 'jdkit[pytest]'"
    ) from exc

from jdkit import _exports
from jdkit.testing._any_loop import AnyLoopChannel, any_loop_client
from jdkit.testing._docker import docker_engine_problem, jd_docker_factory
from jdkit.testing._factories import (
    Scope,
    jd_client_factory,
    jd_remote_factory,
    jd_server_factory,
    simulated_node_factory,
)
from jdkit.testing._threaded import ThreadedJD, ThreadedProvider

__all__ = [
    "AnyLoopChannel",
    "Scope",
    "ThreadedJD",
    "ThreadedProvider",
    "any_loop_client",
    "docker_engine_problem",
    "jd_client_factory",
    "jd_docker_factory",
    "jd_remote_factory",
    "jd_server_factory",
    "simulated_node_factory",
]


_exports.publish_all(globals())  # help(), reprs, tracebacks name this module; dir()
