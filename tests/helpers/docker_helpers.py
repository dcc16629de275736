"""Shared helpers for the tests that drive a real Docker engine.

`require_docker()` skips (saying why) when no engine answers, unless `CI` is
set: under CI a missing engine fails the test, since .ci/setup-docker.sh is
supposed to have started one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jdkit._providers._docker import LABEL_PID, LABEL_RUN, DockerConfig
from jdkit._providers._docker._sweep import _REUSED

_engine: tuple[bool, str] | None = None
_lock = threading.Lock()


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _probe() -> tuple[bool, str]:
    try:
        import aiodocker
    except ImportError:
        return False, "aiodocker is not installed (pip install 'jdkit[docker]')"

    async def ping() -> str:
        async with aiodocker.Docker() as docker:
            version = await asyncio.wait_for(docker.version(), 10)
            return str(version.get("Version"))

    result: list[tuple[bool, str]] = []

    def run() -> None:  # own thread: callers may already be inside an event loop
        try:
            result.append((True, asyncio.run(ping())))
        except Exception as exc:
            result.append((False, f"no Docker engine answers ({type(exc).__name__}: {exc})"))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return result[0]


def docker_engine() -> tuple[bool, str]:
    """(available, version or reason), probed once per process."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _probe()
        return _engine


def require_docker() -> None:
    ok, why = docker_engine()
    if ok:
        return
    if _ci():
        pytest.fail(f"CI is set but {why}; .ci/setup-docker.sh should have started dockerd")
    print(f"\nskipping Docker tests: {why}", file=sys.stderr)
    pytest.skip(why)


@contextlib.asynccontextmanager
async def engine() -> AsyncIterator[Any]:
    import aiodocker

    async with aiodocker.Docker() as docker:
        yield docker


async def labelled(docker: Any, label: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(containers, networks) carrying `label` (`key` or `key=value`)."""
    import json

    containers = await docker.containers.list(all=True, filters=json.dumps({"label": [label]}))
    networks = await docker.networks.list(filters={"label": [label]})
    return [c._container for c in containers], networks


async def leftovers(run_id: str | None = None) -> list[str]:
    """Names of what is left of `run_id`, or of any run of this process (but
    the runs kept on purpose by `reuse=True` providers)."""
    label = f"{LABEL_RUN}={run_id}" if run_id else f"{LABEL_PID}={os.getpid()}"
    kept = {run.run_id for run, _ in _REUSED.values()} if run_id is None else set()
    async with engine() as docker:
        containers, networks = await labelled(docker, label)
    return [
        f"container {c['Names'][0]}" for c in containers if c["Labels"][LABEL_RUN] not in kept
    ] + [f"network {n['Name']}" for n in networks if n["Labels"][LABEL_RUN] not in kept]


async def assert_nothing_left(run_id: str | None) -> None:
    assert run_id, "the provider never got as far as a run id"
    assert await leftovers(run_id) == []
    assert await leftovers() == [], "another run of this process left something behind"


def config(**kw: Any) -> DockerConfig:
    """A test config: short timeouts so failures show quickly."""
    kw.setdefault("ready_timeout", 90.0)
    kw.setdefault("pull_timeout", 30.0)
    return DockerConfig(**kw)
