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
a `jdkit.ClientOptions` as `options=` and/or its fields as keywords.

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

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlparse

try:
    import pytest
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess
    if exc.name != "pytest":
        raise
    raise ImportError(
        "jdkit.testing needs pytest: install it with pip install 'jdkit[pytest]'"
    ) from exc
from grpclib.client import Channel
from grpclib.config import Configuration

from jdkit._channel import open_channel
from jdkit._client import JobDistributor
from jdkit._exceptions import ConfigError
from jdkit._options import ClientOptions

if TYPE_CHECKING:
    from jdkit._providers._base import Provider
    from jdkit.auth import TokenSource
    from jdkit.pb import job, node
    from jdkit.server import EmbeddedJD

__all__ = [
    "AnyLoopChannel",
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

T = TypeVar("T")
Scope = Literal["session", "package", "module", "class", "function"]

#: how long a blocking call into the server thread may take
THREAD_CALL_TIMEOUT = 60.0


# ------------------------------------------------------------------ a loop in a thread


class _LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = THREAD_CALL_TIMEOUT) -> T:
        """Run `coro` on the thread's loop and block for its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking call from the server thread itself would deadlock")
        return self.submit(coro).result(timeout)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro`, run on the thread's loop, from another asyncio loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def close(self) -> None:
        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.run(_drain(), timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


class ThreadedJD:
    """An `EmbeddedJD` serving from its own event loop in a background thread.

        srv = ThreadedJD.start()                  # blocks until it listens
        srv.address                               # "127.0.0.1:PORT"
        await srv.approve_proposal(pid)           # the node's side, from any asyncio loop
        srv.call("reset")                         # ... or blocking, from sync code
        srv.stop()

    The node-side methods have the same names and arguments as
    `EmbeddedJD`'s (`approve_proposal`, `reject_proposal`, `cancel_proposal`,
    `set_node_connected`, `add_chain_config`, `reset`). `.server` is the
    EmbeddedJD itself: use it only on its loop (`call` / `acall` do that).
    """

    def __init__(self, server: EmbeddedJD, runner: _LoopThread) -> None:
        self.server = server
        self._runner = runner
        self.address: str = server.address
        #: the node-facing wsrpc port (`node_port=` given), else None
        self.node_address: str | None = (
            server.node_address if server.node_port is not None else None
        )
        #: the JD's CSA public key (hex): what nodes pin
        self.csa_public_key: str = runner.run(server.state.get_keypair()).public_key
        #: client fixtures built on this server empty it before each test
        self.reset_between_tests = True

    @classmethod
    def start(cls, **server_options: Any) -> ThreadedJD:
        """Start an EmbeddedJD (`EmbeddedJD.start(**server_options)`) in a new thread."""
        from jdkit.server import EmbeddedJD

        server_options.setdefault("host", "127.0.0.1")
        server_options.setdefault("port", 0)
        runner = _LoopThread("jdkit-embedded-jd")

        async def _start() -> EmbeddedJD:
            return await EmbeddedJD.start(**server_options)

        try:
            server = runner.run(_start())
        except BaseException:
            runner.close()
            raise
        return cls(server, runner)

    def __repr__(self) -> str:
        return f"<ThreadedJD {self.address}>"

    # generic bridges

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Blocking: `await server.<method>(*args, **kwargs)` on the server's loop."""
        fn = getattr(self.server, method)

        async def _call() -> Any:
            return await fn(*args, **kwargs)

        return self._runner.run(_call())

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`await server.<method>(...)` on the server's loop, awaited from this loop."""
        fn = getattr(self.server, method)

        async def _call() -> Any:
            return await fn(*args, **kwargs)

        return await self._runner.run_async(_call())

    # the node's side, awaitable from any asyncio loop

    async def approve_proposal(self, proposal_id: str) -> job.Proposal:
        result: job.Proposal = await self.acall("approve_proposal", proposal_id)
        return result

    async def reject_proposal(self, proposal_id: str) -> job.Proposal:
        result: job.Proposal = await self.acall("reject_proposal", proposal_id)
        return result

    async def cancel_proposal(self, proposal_id: str) -> job.Proposal:
        result: job.Proposal = await self.acall("cancel_proposal", proposal_id)
        return result

    async def set_node_connected(self, node_id: str, connected: bool = True) -> node.Node:
        result: node.Node = await self.acall("set_node_connected", node_id, connected)
        return result

    async def add_chain_config(self, node_id: str, config: node.ChainConfig) -> node.ChainConfig:
        result: node.ChainConfig = await self.acall("add_chain_config", node_id, config)
        return result

    async def reset(self) -> None:
        await self.acall("reset")

    @property
    def write_calls(self) -> int:
        return int(self.server.write_calls)

    @property
    def calls(self) -> dict[str, int]:
        return dict(self.server.calls)

    def stop(self) -> None:
        """Stop the server and its thread. Safe to call twice."""
        with contextlib.suppress(Exception):
            self._runner.run(self.server.stop(), timeout=30)
        self._runner.close()


class ThreadedProvider:
    """Any `jdkit.Provider` initialized on its own loop in a background thread,
    so it outlives the test loops (used for the session-scoped `jd_docker`)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self._runner = _LoopThread(f"jdkit-{provider.name}-provider")
        try:
            client = self._runner.run(provider.initialize(), timeout=None)
        except BaseException:
            self._runner.close()
            raise
        self.address = str(getattr(provider, "address", None) or client.target)
        self.secure = client.secure

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._runner.run(self.provider.aclose(), timeout=120)
        self._runner.close()


# ------------------------------------------------------------------ loop-agnostic clients


class AnyLoopChannel(Channel):
    """A grpclib `Channel` usable from any event loop: it keeps one real channel
    per loop, opened on first use in that loop.

    A plain grpclib channel belongs to the loop it was made on. Test fixtures
    outlive loops (a session fixture sees one loop per test), so they hand out
    clients over this. Each per-loop channel is closed by `close()`, or at the
    latest when its loop's runner shuts down (a guard task in that loop closes
    it when cancelled), so no connection outlives its loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: Any = None,
        config: Configuration | None = None,
        codec: Any = None,
    ) -> None:
        # No super().__init__(): that would bind a loop now.
        self._jd_args: dict[str, Any] = dict(
            host=host, port=port, ssl=ssl, config=config, codec=codec
        )
        self._per_loop: dict[asyncio.AbstractEventLoop, tuple[Channel, asyncio.Event]] = {}
        self._protocol = None  # what grpclib's Channel.__del__ looks at

    def _for_running_loop(self) -> Channel:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._per_loop if lp.is_closed()]:
            del self._per_loop[other]
        entry = self._per_loop.get(loop)
        if entry is None:
            channel = Channel(**self._jd_args)
            done = asyncio.Event()
            self._per_loop[loop] = entry = (channel, done)
            guard = loop.create_task(_close_when_done(channel, done), name="jdkit-channel-guard")
            _GUARDS.add(guard)
            guard.add_done_callback(_GUARDS.discard)
        return entry[0]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return self._for_running_loop().request(*args, **kwargs)

    def close(self) -> None:
        """Close every per-loop channel whose loop is still open."""
        entries, self._per_loop = self._per_loop, {}
        for loop, (channel, done) in entries.items():
            if loop.is_closed():
                continue
            with contextlib.suppress(Exception):
                channel.close()
            with contextlib.suppress(Exception):
                done.set()

    def __del__(self) -> None:
        return None

    def __repr__(self) -> str:
        a = self._jd_args
        return f"<AnyLoopChannel {a['host']}:{a['port']} loops={len(self._per_loop)}>"


_GUARDS: set[asyncio.Task[None]] = set()


async def _close_when_done(channel: Channel, done: asyncio.Event) -> None:
    try:
        await done.wait()
    finally:
        channel.close()


def any_loop_client(
    address: str | None = None, *, options: ClientOptions | None = None, **overrides: Any
) -> tuple[JobDistributor, AnyLoopChannel]:
    """A `JobDistributor` for `address` over an `AnyLoopChannel` (see there).

    `options` / keyword overrides are `ClientOptions` as everywhere; `address`
    overrides their target. Returns the client and its channel;
    `channel.close()` closes it from sync code (a fixture's teardown),
    `await client.aclose()` from async code.
    """
    if address is not None:
        overrides["target"] = address
    opts = ClientOptions.of(options, **overrides)
    channel = open_channel(opts.parsed_target(), opts, AnyLoopChannel)
    return JobDistributor(channel, opts), channel


# ------------------------------------------------------------------ Docker engine


def docker_engine_problem(docker_host: str | None = None) -> str | None:
    """Why no Docker engine can be used here, or None when one answers `/_ping`."""
    host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            if not os.path.exists(url.path):
                return f"no Docker engine: {url.path} does not exist"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(url.path)
        elif url.scheme in ("tcp", "http"):
            sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 2375), 5)
        else:
            return None  # https/ssh engines: let the provider try and say what went wrong
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = sock.recv(1024)
    except OSError as exc:
        return f"no Docker engine answers at {host}: {exc}"
    if b" 200 " not in answer.split(b"\r\n", 1)[0]:
        first = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        return f"the Docker engine at {host} answered {first!r}"
    return None


# ------------------------------------------------------------------ fixture factories


def jd_server_factory(
    scope: Scope = "session", *, reset: bool = True, **server_options: Any
) -> Callable[..., Any]:
    """A fixture yielding a `ThreadedJD` (an EmbeddedJD in a background thread).

    `server_options` go to `EmbeddedJD.start` (`db=`, `auth=`, `ssl=`,
    `csa_secret=`, ...). `reset` is recorded for client fixtures built on it:
    they empty the server's state before each test.
    """

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
    **client_options: Any,
) -> Callable[..., Any]:
    """A fixture yielding a client for the JD that `ClientOptions.from_env()` names
    (JD_GRPC_URL, JD_TLS*, token variables), with `client_options` (e.g.
    `dry_run=True`) applied over them. Without JD_GRPC_URL the tests that use
    it skip (`skip_without_url=False`: fail instead)."""
    ClientOptions.of(**client_options)  # a bad option fails now, not in a test

    def _jd_remote() -> Iterator[JobDistributor]:
        environ = os.environ if env is None else env
        if not environ.get("JD_GRPC_URL", "").strip():
            if skip_without_url:
                pytest.skip("JD_GRPC_URL is not set: no remote JD to test against")
            raise ConfigError("JD_GRPC_URL", "is not set: no remote JD to test against")
        opts = ClientOptions.from_env(environ, **client_options)
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


def jd_docker_factory(
    scope: Scope = "session", *, opt_in: bool = True, **docker_options: Any
) -> Callable[..., Any]:
    """A fixture yielding a client for a JD + Postgres in Docker (`DockerProvider`).

    With `opt_in` (the default) a test gets it only when the run has
    `--jd-docker` or the test is marked `@pytest.mark.jd_docker`; otherwise the
    plugin skips it, saying how to opt in. Without a Docker engine it skips with the
    reason, unless the environment variable CI is set: then it fails, so CI
    cannot pass by skipping. `docker_options` go to `DockerProvider`
    (`DockerConfig` fields and `ClientOptions` fields alike).
    """

    def _jd_docker() -> Iterator[JobDistributor]:
        problem = docker_engine_problem(docker_options.get("docker_host"))
        if problem is not None:
            if os.environ.get("CI"):
                pytest.fail(f"jd_docker: {problem} (CI is set, so this is not skipped)")
            pytest.skip(f"jd_docker: {problem}")
        from jdkit._providers._docker import DockerProvider

        started = ThreadedProvider(DockerProvider(**docker_options))
        opts = started.provider.options.replace(target=started.address)
        client, channel = any_loop_client(options=opts)
        client.provider = started.provider  # type: ignore[attr-defined]
        try:
            yield client
        finally:
            channel.close()
            started.stop()

    _jd_docker.__doc__ = (
        "A JobDistributor for JD + Postgres in Docker (DockerProvider), removed afterwards. "
        "Opt in with --jd-docker or @pytest.mark.jd_docker; skips without a Docker engine "
        "unless CI is set."
    )
    # the plugin skips the tests that use this fixture unless they opted in
    _jd_docker._jdkit_docker_opt_in = opt_in  # type: ignore[attr-defined]
    return pytest.fixture(scope=scope)(_jd_docker)


def docker_opt_in_required(fixture_func: Any) -> bool:
    """Whether a fixture function was made by `jd_docker_factory(opt_in=True)`."""
    while fixture_func is not None:
        if getattr(fixture_func, "_jdkit_docker_opt_in", False):
            return True
        fixture_func = getattr(fixture_func, "__wrapped__", None)
    return False
