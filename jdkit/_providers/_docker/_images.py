"""Which images a run uses: the configured ones (pulled when absent) or jdkit's own.

jdkit's own images (`jdkit/jd:dev`, `jdkit/postgres:15`) are built on this
machine by `scripts/docker_images.py`, which is not in the wheel: it needs the
Dockerfiles under docker/, the checkout's source for the JD image, and (the
first time, as root) debootstrap for the base images. In a checkout the
provider loads that script and lets it build or refresh them; in an installed
jdkit a missing local image is a `DockerProviderError` naming the script.
Tags under `jdkit/` are never pulled: no registry has them.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import anyio

from jdkit._providers._docker._config import (
    ENV_JD_IMAGE,
    LOCAL_JD_IMAGE,
    LOCAL_POSTGRES_IMAGE,
    LOCAL_PREFIX,
    DockerConfig,
    DockerProviderError,
)

if TYPE_CHECKING:
    from aiodocker import Docker

log = logging.getLogger("jdkit.docker")

BUILD_SCRIPT = "scripts/docker_images.py"
_MODULE = "jdkit_docker_images"  # sys.modules name of the loaded script
_BUILDERS = {LOCAL_JD_IMAGE: "ensure_jd_image", LOCAL_POSTGRES_IMAGE: "ensure_postgres_image"}
_PULL_FAILED: dict[str, str] = {}  # image -> why, for this process


def build_script() -> ModuleType | None:
    """The checkout's `scripts/docker_images.py`, loaded once; None when jdkit
    is not running from a checkout (an installed wheel has no such file)."""
    loaded = sys.modules.get(_MODULE)
    if loaded is not None:
        return loaded
    root = Path(__file__).resolve().parents[3]
    path = root / BUILD_SCRIPT
    if not (
        path.is_file()
        and (root / "docker" / "jd" / "Dockerfile").is_file()
        and (root / "pyproject.toml").is_file()
    ):
        return None
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always loads
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE]
        raise
    return module


async def image_exists(docker: Docker, tag: str) -> bool:
    from aiodocker.exceptions import DockerError

    try:
        await docker.images.inspect(tag)
    except DockerError as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def pull(docker: Docker, image: str, timeout: float) -> str | None:
    """Pull `image`; None on success, else why not (remembered per process)."""
    from aiodocker.exceptions import DockerError

    if image in _PULL_FAILED:
        return _PULL_FAILED[image]
    log.info("pulling %s", image)
    try:
        with anyio.fail_after(timeout):
            await docker.images.pull(image)
        return None
    except TimeoutError:
        why = f"no answer within {timeout:g}s"
    except DockerError as exc:
        why = str(exc.message).strip() or f"status {exc.status}"
    _PULL_FAILED[image] = why
    return why


async def jd_image(docker: Docker, cfg: DockerConfig) -> str:
    image = cfg.jd_image
    if image.startswith(LOCAL_PREFIX):
        return await _local(docker, image, cfg)
    if await image_exists(docker, image):
        return image
    why = await pull(docker, image, cfg.pull_timeout)
    if why is None:
        return image
    raise DockerProviderError(
        f"JD image {image} is not present and pulling it failed ({why}); "
        f"set DockerConfig(jd_image=...) or ${ENV_JD_IMAGE} to an image you have"
    )


async def postgres_image(docker: Docker, cfg: DockerConfig) -> str:
    image = cfg.postgres_image
    if image.startswith(LOCAL_PREFIX):
        return await _local(docker, image, cfg)
    if await image_exists(docker, image):
        return image
    why = await pull(docker, image, cfg.pull_timeout)
    if why is None:
        return image
    fallback = cfg.postgres_fallback
    if fallback is None:
        raise DockerProviderError(
            f"Postgres image {image} is not present and pulling it failed ({why})"
        )
    log.info("%s is not available (%s); using %s", image, why, fallback)
    if fallback.startswith(LOCAL_PREFIX):
        return await _local(docker, fallback, cfg)
    if await image_exists(docker, fallback):
        return fallback
    raise DockerProviderError(f"neither {image} ({why}) nor the fallback {fallback} is present")


async def _local(docker: Docker, image: str, cfg: DockerConfig) -> str:
    """One of jdkit's own images: built or refreshed from the checkout when
    allowed and possible, else used as it is, never pulled."""
    script = build_script() if cfg.build_images and image in _BUILDERS else None
    if script is not None:
        try:
            built: str = await getattr(script, _BUILDERS[image])(docker, script.find_source_tree())
            return built
        except script.ImageBuildError as exc:
            # A stale Postgres image still works; a stale JD image would test old code.
            if image == LOCAL_POSTGRES_IMAGE and await image_exists(docker, image):
                return image
            raise DockerProviderError(f"cannot build {image}: {exc}") from exc
    if await image_exists(docker, image):
        return image
    if image not in _BUILDERS:
        why = (
            f"images under {LOCAL_PREFIX} are built locally, never pulled, and "
            f"{BUILD_SCRIPT} builds only {LOCAL_JD_IMAGE} and {LOCAL_POSTGRES_IMAGE}"
        )
    elif not cfg.build_images:
        why = f"build_images=False; build it with `python {BUILD_SCRIPT}` in a jdkit checkout"
    else:
        why = (
            f"this jdkit is not a source checkout, and the image is built from one: "
            f"run `python {BUILD_SCRIPT}` in a jdkit checkout on this machine "
            "(as root the first time, or after `sudo .ci/setup-docker.sh`, for the base images)"
        )
    hint = (
        f"; or set DockerConfig(jd_image=...) or ${ENV_JD_IMAGE} to a JD image you have"
        if image == cfg.jd_image
        else ""
    )
    raise DockerProviderError(f"image {image} is not present: {why}{hint}")
