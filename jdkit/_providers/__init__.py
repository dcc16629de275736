"""Providers own a JD connection's lifecycle; `connect()` picks one for you."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from jdkit import _exports
from jdkit._options import ENV_URL, ClientOptions
from jdkit._providers._base import Provider, ProviderNotInitializedError
from jdkit._providers._embedded import EmbeddedProvider
from jdkit._providers._remote import RemoteConfig, RemoteProvider

__all__ = [
    "DockerConfig",
    "DockerProvider",
    "DockerProviderError",
    "EmbeddedProvider",
    "Provider",
    "ProviderNotInitializedError",
    "RemoteConfig",
    "RemoteProvider",
    "connect",
    "release_docker_reused",
    "sweep_docker",
]

if TYPE_CHECKING:  # imported on first use at run time (__getattr__); typed for checkers
    from jdkit._providers._docker import (
        DockerConfig,
        DockerProvider,
        DockerProviderError,
        release_docker_reused,
        sweep_docker,
    )

_DOCKER = {
    "DockerConfig",
    "DockerProvider",
    "DockerProviderError",
    "release_docker_reused",
    "sweep_docker",
}


def __getattr__(name: str) -> Any:
    # The Docker provider needs the `docker` extra (aiodocker): import it on use.
    if name in _DOCKER:
        from jdkit._providers import _docker

        return getattr(_docker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(
    url: str | None = None, *, options: ClientOptions | None = None, **overrides: Any
) -> Provider:
    """The provider for `url`, else `options.target`, else `$JD_GRPC_URL`, else a fresh embedded JD.

        async with jdkit.connect() as jd:
            ...

    `options` and keyword overrides of its fields (`ClientOptions`) are the
    same whichever provider is picked; a keyword that is not an option is a
    TypeError naming it. With `$JD_GRPC_URL` the rest of the environment is
    read too (`ClientOptions.from_env`), but every field given here wins.
    """
    opts = ClientOptions.of(options, **overrides)
    if url is not None:
        return RemoteProvider(opts.replace(target=url))
    if opts.target is not None:
        return RemoteProvider(opts)
    if os.environ.get(ENV_URL, "").strip():
        # What the caller gave (by keyword or in their object, even a default)
        # wins over the environment; its variables are then not read at all.
        given = {k: v for k, v in opts.given().items() if k != "target"}
        return RemoteProvider(ClientOptions.from_env(**given))
    return EmbeddedProvider(opts)


_exports.publish_lazy(globals())  # what jdkit imports from here on first use
