"""jdkit's pytest plugin, loaded through the `pytest11` entry point.

Fixtures:

| fixture       | scope    | what                                                        |
|---------------|----------|-------------------------------------------------------------|
| `jd_server`   | session  | one embedded JD (`jdkit.testing.ThreadedJD`); play the node  |
|               |          | with `await jd_server.approve_proposal(id)` and friends      |
| `jd`          | function | a `JobDistributor` on `jd_server`, emptied before each test  |
| `jd_dry_run`  | function | a dry-run client on `jd_server`: assert on `.journal`        |
| `jd_nodes`    | function | `make(**options)` of `jdkit.SimulatedNode`s for `jd_server`'s |
|               |          | node port (with `jdkit[node]` installed, `jd_server` serves  |
|               |          | the node-facing protocol too)                                |
| `jd_docker`   | session  | a client for JD + Postgres in Docker (opt-in: `--jd-docker`  |
|               |          | or `@pytest.mark.jd_docker`; skips without an engine unless  |
|               |          | the environment variable CI is set)                          |

    @pytest.mark.asyncio                     # or @pytest.mark.anyio, or asyncio_mode=auto
    async def test_register(jd, jd_server):
        resp = await jd.register_node(node.RegisterNodeRequest(name="n", public_key=key))
        ...

They are plain (sync) fixtures over a server thread and loop-agnostic clients,
so they need no event-loop scope and work under pytest-asyncio (strict or
auto) and anyio's plugin alike; `jdkit.testing` says why and has the
factories to build your own (other scopes, auth, a file database, a remote JD).
"""

from __future__ import annotations

import pytest

from jdkit._server._config import node_port_available
from jdkit.testing import (
    docker_opt_in_required,
    jd_client_factory,
    jd_docker_factory,
    jd_server_factory,
    simulated_node_factory,
)

DOCKER_OPT_IN = "needs Docker: run pytest with --jd-docker or mark the test @pytest.mark.jd_docker"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jdkit")
    group.addoption(
        "--jd-docker",
        action="store_true",
        default=False,
        help="jdkit: run the tests that use the jd_docker fixture (JD + Postgres in Docker)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "jd_docker: the test may start JD + Postgres in Docker (the jd_docker fixture)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests that use an opt-in Docker fixture without having opted in.

    Decided per test at collection (not inside the session fixture, whose
    skip pytest would cache for every later test)."""
    if config.getoption("--jd-docker"):
        return
    skip = pytest.mark.skip(reason=DOCKER_OPT_IN)
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("jd_docker") is not None:
            continue
        for name in info.names_closure:
            defs = info.name2fixturedefs.get(name, ())
            if defs and docker_opt_in_required(defs[-1].func):
                item.add_marker(skip)
                break


jd_server = jd_server_factory(scope="session", node_port=0 if node_port_available() else None)
jd = jd_client_factory("jd_server")
jd_dry_run = jd_client_factory("jd_server", dry_run=True)
jd_docker = jd_docker_factory(scope="session")
jd_nodes = simulated_node_factory("jd_server")
