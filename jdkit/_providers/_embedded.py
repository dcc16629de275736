"""Start jdkit's own JD in this process and connect to it: zero set-up."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jdkit._client import DEFAULT_TIMEOUT, JobDistributor
from jdkit._interceptors import Interceptor
from jdkit._providers._base import Provider
from jdkit._retry import RetryPolicy

if TYPE_CHECKING:
    from jdkit._auth import TokenSource
    from jdkit._server import EmbeddedJD


class EmbeddedProvider(Provider):
    """An embedded JD on a free loopback port, SQLite in memory (or `db=` a file).

    `provider.server` is the running `EmbeddedJD`, for playing the node's part
    (approve / reject / cancel proposals, connect nodes, add chain configs).
    Bearer tokens may flow in plaintext here: the channel never leaves loopback.
    """

    name = "embedded"

    def __init__(
        self,
        *,
        db: str | os.PathLike[str] = ":memory:",
        host: str = "127.0.0.1",
        port: int = 0,
        server_options: Mapping[str, Any] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        auth: TokenSource | None = None,
        interceptors: Sequence[Interceptor] = (),
        dry_run: bool = False,
    ) -> None:
        super().__init__(dry_run=dry_run)
        self.db, self.host, self.port = os.fspath(db), host, port
        self.server_options = dict(server_options or {})
        self._client_options: dict[str, Any] = dict(
            timeout=timeout, retry=retry, auth=auth, interceptors=interceptors
        )
        self._server: EmbeddedJD | None = None

    @property
    def server(self) -> EmbeddedJD:
        if self._server is None:
            self.client  # noqa: B018 -- raises the not-initialized error
        assert self._server is not None
        return self._server

    async def _start(self) -> JobDistributor:
        from jdkit._server import EmbeddedJD

        options = dict(self.server_options)
        tls = options.pop("client_tls", None)  # the client's side of a TLS server
        self._server = await EmbeddedJD.start(host=self.host, port=self.port, db=self.db, **options)
        return JobDistributor.connect(
            self._server.address, tls=tls, allow_insecure_auth=True, **self._client_options
        )

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
