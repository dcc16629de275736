"""The Docker fixture: is an engine there, the `jd_docker` factory, its opt-in.

`jd_docker_factory` marks the fixtures it makes as opt-in;
`docker_opt_in_required` reads that mark, so the pytest plugin can skip the
tests that did not opt in (at collection, not inside the session fixture).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from jdkit._client import JobDistributor
from jdkit._options import ClientOptions
from jdkit.testing._any_loop import any_loop_client
from jdkit.testing._factories import Scope
from jdkit.testing._threaded import ThreadedProvider


def docker_engine_problem(docker_host: str | None = None) -> str | None:
    """Why no Docker engine can be used here, or None when one answers `/_ping`."""
    host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            if not os.path.exists(url.path):
                return f"no Docker engine: {url.path} does not exist"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(url.path)
        elif url.scheme in ("tcp", "http"):
            sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 2375), 5)
        else:
            return None  # https/ssh engines: let the provider try and say what went wrong
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = sock.recv(1024)
    except OSError as exc:
        return f"no Docker engine answers at {host}: {exc}"
    if b" 200 " not in answer.split(b"\r\n", 1)[0]:
        first = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        return f"the Docker engine at {host} answered {first!r}"
    return None


def jd_docker_factory(
    scope: Scope = "session",
    *,
    opt_in: bool = True,
    options: ClientOptions | None = None,
    **docker_options: Any,
) -> Callable[..., Any]:
    """A fixture yielding a client for a JD + Postgres in Docker (`DockerProvider`).

    With `opt_in` (the default) a test gets it only when the run has
    `--jd-docker` or the test is marked `@pytest.mark.jd_docker`; otherwise the
    plugin skips it, saying how to opt in. Without a Docker engine it skips with the
    reason, unless the environment variable CI is set: then it fails, so CI
    cannot pass by skipping. `options` and `docker_options` go to
    `DockerProvider` (`DockerConfig` fields and `ClientOptions` fields alike),
    checked now, when the fixture is defined, not when a test runs.
    """
    from jdkit._providers._docker import DockerProvider

    if options is not None or docker_options:  # a mistake fails here (no engine needed)
        DockerProvider(options=options, **docker_options)

    def _jd_docker() -> Iterator[JobDistributor]:
        problem = docker_engine_problem(docker_options.get("docker_host"))
        if problem is not None:
            if os.environ.get("CI"):
                pytest.fail(f"jd_docker: {problem} (CI is set, so this is not skipped)")
            pytest.skip(f"jd_docker: {problem}")
        started = ThreadedProvider(DockerProvider(options=options, **docker_options))
        opts = started.provider.options.replace(target=started.address)
        client, channel = any_loop_client(options=opts)
        client.provider = started.provider  # type: ignore[attr-defined]
        try:
            yield client
        finally:
            channel.close()
            started.stop()

    _jd_docker.__doc__ = (
        "A JobDistributor for JD + Postgres in Docker (DockerProvider), removed afterwards. "
        "Opt in with --jd-docker or @pytest.mark.jd_docker; skips without a Docker engine "
        "unless CI is set."
    )
    # the plugin skips the tests that use this fixture unless they opted in
    _jd_docker._jdkit_docker_opt_in = opt_in  # type: ignore[attr-defined]
    return pytest.fixture(scope=scope)(_jd_docker)


def docker_opt_in_required(fixture_func: Any) -> bool:
    """Whether a fixture function was made by `jd_docker_factory(opt_in=True)`."""
    while fixture_func is not None:
        if getattr(fixture_func, "_jdkit_docker_opt_in", False):
            return True
        fixture_func = getattr(fixture_func, "__wrapped__", None)
    return False
