"""Providers own a JD connection's lifecycle; `connect()` picks one for you."""

from __future__ import annotations

import os
from typing import Any

from jdkit._providers._base import Provider, ProviderNotInitializedError
from jdkit._providers._embedded import EmbeddedProvider
from jdkit._providers._remote import ENV_URL, RemoteConfig, RemoteProvider

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
]


_DOCKER = {"DockerConfig", "DockerProvider", "DockerProviderError", "sweep_docker"}


def __getattr__(name: str) -> Any:
    # The Docker provider needs the `docker` extra (aiodocker): import it on use.
    if name in _DOCKER:
        from jdkit._providers import _docker

        return getattr(_docker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(url: str | None = None, *, dry_run: bool = False, **options: Any) -> Provider:
    """The provider for `url`, else `$JD_GRPC_URL`, else a fresh embedded JD.

        async with jdkit.connect() as jd:
            ...

    `options` go to `RemoteConfig` (remote) or `EmbeddedProvider` (embedded).
    """
    if url is None and os.environ.get(ENV_URL, "").strip():
        provider = RemoteProvider.from_env(dry_run=dry_run)
        if options:
            from dataclasses import replace

            provider.config = replace(provider.config, **options)
        return provider
    if url is not None:
        return RemoteProvider(RemoteConfig(url=url, **options), dry_run=dry_run)
    return EmbeddedProvider(dry_run=dry_run, **options)
