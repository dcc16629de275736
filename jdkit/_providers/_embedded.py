"""Start jdkit's own JD in this process and connect to it: zero set-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jdkit._exceptions import ConfigError
from jdkit._options import ClientOptions
from jdkit._providers._base import Provider

if TYPE_CHECKING:
    from jdkit._client import JobDistributor
    from jdkit.server import EmbeddedJD


class EmbeddedProvider(Provider):
    """An embedded JD on a free loopback port, SQLite in memory (or `db=` a file).

    `provider.server` is the running `jdkit.server.EmbeddedJD`, for playing
    the node's part (approve / reject / cancel proposals, connect nodes, add
    chain configs). Client options are a `ClientOptions` and/or its fields as
    keywords, as for every provider, but for what this JD cannot serve (a
    `ConfigError`): `target` (it is this JD's) and `tls` unless
    `server_options` has `ssl=` (it serves plaintext). Bearer tokens may flow
    in plaintext here unless `allow_insecure_auth=False` is given: the channel
    never leaves loopback. `server_options` go to `EmbeddedJD.start`
    (`auth=`, `ssl=`, and `client_tls=` for the client's side of a TLS server).
    """

    name = "embedded"

    def __init__(
        self,
        options: ClientOptions | None = None,
        *,
        db: str | os.PathLike[str] = ":memory:",
        host: str = "127.0.0.1",
        port: int = 0,
        server_options: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(options, **overrides)
        self.db, self.host, self.port = os.fspath(db), host, port
        self.server_options = dict(server_options or {})
        # Options this JD cannot serve are refused, not silently ignored.
        if self.options.target is not None:
            raise ConfigError(
                "target",
                f"{self.options.target!r} given, but EmbeddedProvider starts its own JD and "
                "connects to it; for a JD elsewhere use RemoteProvider or jdkit.connect(url)",
            )
        if self.options.tls not in (None, False) and "ssl" not in self.server_options:
            raise ConfigError(
                "tls",
                "the embedded JD serves plaintext; for TLS give it a certificate with "
                "server_options={'ssl': ..., 'client_tls': TLSConfig(...)}",
            )
        self._server: EmbeddedJD | None = None

    def __repr__(self) -> str:  # not db: a Postgres URL may hold a password
        if self._server is None or self._client is None:
            return "<EmbeddedProvider not started>"
        return f"<EmbeddedProvider {self._server.address} started>"

    @property
    def server(self) -> EmbeddedJD:
        """The running embedded JD (after `initialize()`)."""
        if self._server is None:
            self.client  # noqa: B018 -- raises the not-initialized error
        assert self._server is not None
        return self._server

    async def _start(self) -> JobDistributor:
        from jdkit.server import EmbeddedJD

        options = dict(self.server_options)
        tls = options.pop("client_tls", None)  # the client's side of a TLS server
        self._server = await EmbeddedJD.start(host=self.host, port=self.port, db=self.db, **options)
        return self._connect(
            self._server.address,
            allow_insecure_auth=True,
            tls=tls if tls is not None else self.options.tls,
        )

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
