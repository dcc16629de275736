"""Servers and providers on their own event loop, in a background thread.

A server started on one event loop is not served while a test runs on
another; these run theirs on a loop of their own (`_LoopThread`), so they
serve every test whatever loop, scope or plugin it uses (`jdkit.testing`
says why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from jdkit.pb import job, node

if TYPE_CHECKING:
    from jdkit._providers._base import Provider
    from jdkit.server import EmbeddedJD

T = TypeVar("T")

#: how long a blocking call into the server thread may take
THREAD_CALL_TIMEOUT = 60.0


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

    def __init__(self, **server_options: Any) -> None:
        """Start an EmbeddedJD (`EmbeddedJD.start(**server_options)`) in a new
        thread and block until it listens: what `ThreadedJD.start` does."""
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
        return cls(**server_options)

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
