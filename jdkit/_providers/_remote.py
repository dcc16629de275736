"""Connect to a JD that is already running somewhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jdkit._exceptions import ConfigError
from jdkit._options import ENV_URL, ClientOptions
from jdkit._providers._base import Provider

if TYPE_CHECKING:
    from jdkit._client import JobDistributor

__all__ = ["ENV_URL", "RemoteConfig", "RemoteProvider"]


def _remote_options(options: ClientOptions) -> ClientOptions:
    """`options` from the environment, which must name a JD: a remote one has no default."""
    if options.target is None:
        raise ConfigError(ENV_URL, "is not set; expected host:port of the JD gRPC API")
    return options


class RemoteConfig(ClientOptions):
    """`ClientOptions` with the target required, spelled `url` (the 0.1 name).

    `RemoteConfig(url="grpcs://jd.example.com", auth=...)` is
    `ClientOptions(target=..., auth=...)`; `RemoteConfig.from_env()` is
    `ClientOptions.from_env()` (see there for the variables).
    """

    def __init__(self, url: str | None = None, /, **options: Any) -> None:
        if url is not None or "url" in options:
            options["target"] = options.pop("url", url)
        super().__init__(**options)
        object.__setattr__(self, "_given", frozenset(options))
        if self.target is None:
            ClientOptions.parsed_target(self)  # ConfigError("target", "is not set; ...")

    @property
    def url(self) -> str:
        """The target (the 0.1 name of the field)."""
        self.parsed_target()
        assert self.target is not None
        return self.target

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **changes: Any) -> ClientOptions:
        return _remote_options(ClientOptions.from_env(env, **changes))


class RemoteProvider(Provider):
    """A JD reached over the network; nothing to start, only a channel to own.

    RemoteProvider(ClientOptions(target="grpcs://jd.example.com", auth=source))
    RemoteProvider("grpcs://jd.example.com", auth=source)
    """

    name = "remote"

    def __init__(self, options: ClientOptions | str | None = None, **overrides: Any) -> None:
        if isinstance(options, str):
            overrides.setdefault("target", options)
            options = None
        super().__init__(options, **overrides)
        self.options.parsed_target()  # a remote JD needs to be somewhere

    def __repr__(self) -> str:  # host:port only: no options (tokens), no user info
        state = "connected" if self._client is not None else "not connected"
        return f"<RemoteProvider {self.options.parsed_target()} {state}>"

    @property
    def config(self) -> ClientOptions:
        """The options (the 0.1 name)."""
        return self.options

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        /,
        options: ClientOptions | None = None,
        **overrides: Any,
    ) -> RemoteProvider:
        """A provider for `ClientOptions.from_env(env)` with `options` (the fields
        given in it) and then `overrides` applied; those win over the environment."""
        given = ClientOptions.of(options, **overrides).given()
        return cls(_remote_options(ClientOptions.from_env(env, **given)))

    async def _start(self) -> JobDistributor:
        assert self.options.target is not None
        return self._connect(self.options.target)
