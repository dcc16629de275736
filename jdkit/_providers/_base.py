"""The provider protocol: something that owns a JD connection's whole lifecycle.

    async with SomeProvider(config) as jd:     # initialize() on enter
        await jd.list_nodes()
    # on exit (normal, exception or cancellation): every channel closed and
    # everything the provider started (servers, containers) stopped.

`initialize()` is idempotent: a second call returns the same client.

Every provider takes the same `ClientOptions` (and keyword overrides of its
fields) for the client it hands out; `options.target` is the provider's to
set where it starts the JD itself. With `dry_run` set, the client handed out
is a dry-run view of the real one (reads reach the JD, writes are journaled).
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from jdkit._exceptions import JDError
from jdkit._options import ClientOptions

if TYPE_CHECKING:
    from jdkit._client import JobDistributor


class ProviderNotInitializedError(JDError):
    """The provider's client was asked for before `initialize()`."""


class Provider:
    """Base class; subclasses implement `_start()` and `_stop()`.

    `_start()` returns the connected client; `_stop()` must release everything
    `_start()` acquired and must tolerate a partial start.
    """

    name: str = "provider"

    def __init__(self, options: ClientOptions | None = None, **overrides: Any) -> None:
        self.options = ClientOptions.of(options, **overrides)
        self._client: JobDistributor | None = None
        self._real: JobDistributor | None = None
        self._lock = anyio.Lock()

    @property
    def dry_run(self) -> bool:
        """Whether the client handed out journals its writes."""
        return self.options.dry_run is not False

    def _connect(self, target: str, **defaults: Any) -> JobDistributor:
        """A client for the JD at `target` with this provider's options.

        `defaults` are the provider's own choices for options the caller left
        at None (e.g. `allow_insecure_auth` for a JD on loopback it started).
        """
        from jdkit._client import JobDistributor

        opts = self.options.replace(target=target, dry_run=False)
        unset = {k: v for k, v in defaults.items() if getattr(opts, k) is None}
        return JobDistributor.connect(options=opts.replace(**unset))

    @property
    def client(self) -> JobDistributor:
        if self._client is None:
            raise ProviderNotInitializedError(
                f"{self.name} provider is not initialized; call `await provider.initialize()` "
                "or use `async with provider as jd:`"
            )
        return self._client

    async def initialize(self) -> JobDistributor:
        async with self._lock:
            if self._client is None:
                try:
                    self._real = await self._start()
                    await self._real.check_version()  # min_version: fail at start, not later
                    # dry_run: reads go to the real client, writes to the journal
                    dry = self.options.dry_run
                    if dry is False:
                        self._client = self._real
                    else:
                        self._client = self._real.with_dry_run(None if dry is True else dry)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        # e.g. min_version not met: the channel is open already
                        real, self._real, self._client = self._real, None, None
                        if real is not None:
                            with contextlib.suppress(Exception):
                                await real.aclose()
                        await self._stop()
                    raise
            return self._client

    async def aclose(self) -> None:
        # Shielded so cancellation of the caller cannot leave servers,
        # containers or channels behind.
        with anyio.CancelScope(shield=True):
            clients = (self._client, self._real)
            self._client = self._real = None
            for client in clients:
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()
            await self._stop()

    async def _start(self) -> JobDistributor:
        raise NotImplementedError

    async def _stop(self) -> None:
        return None

    async def __aenter__(self) -> JobDistributor:
        return await self.initialize()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
