"""Fixture factories for the embedded JD, clients on it, simulated nodes, a remote JD.

Each returns a pytest fixture; the plugin's `jd_server`, `jd`, `jd_dry_run`
and `jd_nodes` are made with them (the Docker one is in `_docker`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import pytest

from jdkit._client import JobDistributor
from jdkit._exceptions import ConfigError
from jdkit._options import ClientOptions
from jdkit.auth import TokenSource
from jdkit.testing._any_loop import any_loop_client
from jdkit.testing._threaded import ThreadedJD

Scope = Literal["session", "package", "module", "class", "function"]
"""A pytest fixture scope, as the factories' `scope=` takes it."""


def jd_server_factory(
    scope: Scope = "session", *, reset: bool = True, **server_options: Any
) -> Callable[..., Any]:
    """A fixture yielding a `ThreadedJD` (an EmbeddedJD in a background thread).

    `server_options` go to `EmbeddedJD.start` (`db=`, `auth=`, `ssl=`,
    `csa_secret=`, ...). `reset` is recorded for client fixtures built on it:
    they empty the server's state before each test. An unknown option is a
    TypeError now, not when a test first uses the fixture.
    """
    if server_options:  # (the plugin's own fixture has none: no server import then)
        _check_server_options(server_options)

    def _jd_server() -> Iterator[ThreadedJD]:
        srv = ThreadedJD.start(**server_options)
        srv.reset_between_tests = reset
        try:
            yield srv
        finally:
            srv.stop()

    _jd_server.__doc__ = (
        "An embedded JD (jdkit.testing.ThreadedJD) in a background thread, shared by the tests "
        "of its scope. Play the node with `await jd_server.approve_proposal(id)`, "
        "`reject_proposal`, `cancel_proposal`, `set_node_connected`, `add_chain_config`, "
        "or with real simulated nodes on its node port (`jd_nodes`, when started with node_port=)."
    )
    return pytest.fixture(scope=scope)(_jd_server)


def _check_server_options(server_options: Mapping[str, Any]) -> None:
    from jdkit.server import StartOptions

    known = StartOptions.__required_keys__ | StartOptions.__optional_keys__
    unknown = sorted(set(server_options) - known)
    if unknown:
        raise TypeError(
            f"unknown server option(s) {', '.join(map(repr, unknown))}: not EmbeddedJD "
            f"keywords; EmbeddedJD takes {', '.join(sorted(known))}"
        )


def jd_client_factory(
    server_fixture_name: str = "jd_server",
    *,
    scope: Scope = "function",
    auth: TokenSource | Callable[[], TokenSource] | None = None,
    reset: bool | None = None,
    options: ClientOptions | None = None,
    **client_options: Any,
) -> Callable[..., Any]:
    """A fixture yielding a `JobDistributor` connected to the server fixture
    `server_fixture_name` (anything with an `.address`: `ThreadedJD`,
    `ThreadedProvider`, or a `host:port` string).

    `auth` is a token source, or a zero-argument callable making one per
    client (prefer that for sources holding an HTTP client, such as Cognito
    or OAuth2: such a client belongs to the event loop it was opened on).
    `dry_run=True` gives a dry-run client (`client.journal` holds the writes;
    reads reach the server). `reset` (default: the server fixture's
    choice, True for `jd_server_factory`) empties the server's state before
    each test, so every test starts from nothing. `options` and the other
    keywords are `ClientOptions` (checked now, not when a test runs). The
    client works from any event loop (module docstring).
    """

    base = ClientOptions.of(options, **client_options)

    def _jd_client(request: pytest.FixtureRequest) -> Iterator[JobDistributor]:
        server = request.getfixturevalue(server_fixture_name)
        address = server if isinstance(server, str) else server.address
        do_reset = reset if reset is not None else getattr(server, "reset_between_tests", False)
        if do_reset and isinstance(server, ThreadedJD):
            server.call("reset")
        opts = base.replace(target=address)
        if auth is not None:
            source = auth() if callable(auth) and not hasattr(auth, "fetch") else auth
            opts = opts.replace(auth=source)
        if opts.allow_insecure_auth is None:
            # tokens in plaintext are fine on the embedded JD's loopback port
            opts = opts.replace(allow_insecure_auth=isinstance(server, ThreadedJD))
        client, channel = any_loop_client(options=opts)
        try:
            yield client
        finally:
            channel.close()

    _jd_client.__doc__ = (
        f"A dry-run JobDistributor on `{server_fixture_name}`: reads reach it, writes are only "
        "recorded in `.journal`."
        if base.dry_run is not False
        else f"A JobDistributor connected to `{server_fixture_name}`"
        + (", whose state is emptied before each test." if reset is not False else ".")
    ) + " Works from any event loop (pytest-asyncio strict or auto, anyio)."
    return pytest.fixture(scope=scope)(_jd_client)


def simulated_node_factory(
    server_fixture_name: str = "jd_server",
    *,
    scope: Scope = "function",
    **node_options: Any,
) -> Callable[..., Any]:
    """A fixture yielding `make(**options) -> jdkit.SimulatedNode` for the
    node port of the server fixture `server_fixture_name` (a `ThreadedJD`
    started with `node_port=`, as the plugin's `jd_server` is when
    `jdkit[node]` is installed, or anything with `.node_address` and
    `.csa_public_key`). Use each node as `async with make() as n:` in the
    test; register `n.public_key` first. `node_options` are defaults for
    every node (`on_proposal=`, `chain_configs=`, ...).
    """

    def _nodes(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
        server = request.getfixturevalue(server_fixture_name)
        address = getattr(server, "node_address", None)
        if not address:
            raise pytest.UsageError(
                f"fixture {server_fixture_name!r} has no node port: start it with node_port=0 "
                "(needs jdkit[node])"
            )
        from jdkit._wsrpc._node import SimulatedNode

        def make(**options: Any) -> SimulatedNode:
            return SimulatedNode(address, server.csa_public_key, **{**node_options, **options})

        yield make

    _nodes.__doc__ = (
        f"make(**options) -> jdkit.SimulatedNode for the node port of `{server_fixture_name}`: "
        "register `node.public_key`, then `async with make(on_proposal='approve') as node:`; "
        "the node answers proposals over the real node-facing protocol (jdkit[node])."
    )
    return pytest.fixture(scope=scope)(_nodes)


def jd_remote_factory(
    scope: Scope = "session",
    *,
    env: Mapping[str, str] | None = None,
    skip_without_url: bool = True,
    options: ClientOptions | None = None,
    **client_options: Any,
) -> Callable[..., Any]:
    """A fixture yielding a client for the JD that `ClientOptions.from_env()` names
    (JD_GRPC_URL, JD_TLS*, token variables, `JD_<FIELD>`), with `options` and
    the other keywords (`ClientOptions`, e.g. `dry_run=True`; checked now, not
    when a test runs) winning over the environment. Without JD_GRPC_URL the
    tests that use it skip (`skip_without_url=False`: fail instead)."""
    given = ClientOptions.of(options, **client_options).given()

    def _jd_remote() -> Iterator[JobDistributor]:
        environ = os.environ if env is None else env
        if not environ.get("JD_GRPC_URL", "").strip():
            if skip_without_url:
                pytest.skip("JD_GRPC_URL is not set: no remote JD to test against")
            raise ConfigError("JD_GRPC_URL", "is not set: no remote JD to test against")
        opts = ClientOptions.from_env(environ, **given)
        client, channel = any_loop_client(options=opts)
        try:
            yield client
        finally:
            channel.close()

    _jd_remote.__doc__ = (
        "A JobDistributor for the JD that JD_GRPC_URL (and JD_TLS*, JD_TOKEN, ...) names; "
        "skips when JD_GRPC_URL is unset."
    )
    return pytest.fixture(scope=scope)(_jd_remote)
