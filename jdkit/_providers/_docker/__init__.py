"""JD and its Postgres in Docker containers (the `docker` extra: aiodocker).

By concern: `_config` (DockerConfig, checked without an engine), `_images`
(which images, built from a checkout by scripts/docker_images.py), `_sweep`
(labels, removing runs, `sweep_docker`), `_probe` (readiness), `_provider`
(DockerProvider: the life of a run).
"""

from __future__ import annotations

from jdkit import _exports
from jdkit._providers._docker._config import (
    DEFAULT_POSTGRES_IMAGE,
    ENV_JD_IMAGE,
    LOCAL_JD_IMAGE,
    LOCAL_POSTGRES_IMAGE,
    DockerConfig,
    DockerProviderError,
)
from jdkit._providers._docker._provider import DockerProvider
from jdkit._providers._docker._sweep import (
    LABEL_CREATED,
    LABEL_HOST,
    LABEL_PID,
    LABEL_PIDSTART,
    LABEL_REUSE,
    LABEL_ROLE,
    LABEL_RUN,
    release_docker_reused,
    remove_run,
    sweep_docker,
)

__all__ = [
    "DEFAULT_POSTGRES_IMAGE",
    "ENV_JD_IMAGE",
    "LABEL_CREATED",
    "LABEL_HOST",
    "LABEL_PID",
    "LABEL_PIDSTART",
    "LABEL_REUSE",
    "LABEL_ROLE",
    "LABEL_RUN",
    "LOCAL_JD_IMAGE",
    "LOCAL_POSTGRES_IMAGE",
    "DockerConfig",
    "DockerProvider",
    "DockerProviderError",
    "release_docker_reused",
    "remove_run",
    "sweep_docker",
]

# what jdkit imports on first use, through _providers
_exports.publish_lazy(globals(), "._providers")
