"""A JD and its Postgres in Docker containers, one private network per run.

    async with DockerProvider() as jd:          # DockerConfig() defaults
        print(await jd.version())
    # containers and network are gone, whatever happened inside

What a run does (all through the Docker Engine API, with aiodocker):

1. `sweep()`: removes the containers and networks of earlier runs whose
   process is dead (see `sweep`).
2. Images. JD: `DockerConfig.jd_image`, else `$CTF_JD_IMAGE`, else the local
   `jdkit/jd:dev`, which is built (or rebuilt when jdkit's source changed)
   from the checkout by `jdkit._providers._images`. Postgres:
   `postgres_image` (default `postgres:16`) when it is present or can be
   pulled; otherwise `postgres_fallback` (default the locally built
   `jdkit/postgres:15`, Debian's PostgreSQL with the official image's
   environment contract). A failed pull is remembered for the process.
3. A bridge network `jdkit-<run>`; Postgres on it under the alias `postgres`;
   JD with `DATABASE_URL=postgresql://user:pw@postgres:5432/db`, `PORT`,
   `NODE_RPC_PORT` and `CSA_KEY_ENCRYPTION_SECRET`. JD's ports are published
   on 127.0.0.1 with ephemeral host ports (read back after start), so runs
   never collide.
4. Ready when the JD container runs, the gRPC health check answers SERVING
   and `GET /healthz` answers 200, polled with exponential backoff under one
   overall timeout (`ready_timeout`). A container that exits, or a timeout,
   raises `DockerProviderError` carrying the last lines of both containers'
   logs, with the Postgres password and the CSA secret redacted.
5. Teardown (normal exit, exception or cancellation; shielded) force-removes
   every container and network labelled with the run's id.

Every container and network carries `jdkit.run=<uuid>`, `jdkit.pid`,
`jdkit.pidstart` (the process's start time, against pid reuse),
`jdkit.host`, `jdkit.created` and `jdkit.role`.

Reuse: with `reuse=True` the containers outlive `aclose()`; a later provider
in the same process with an equal config (secrets aside: the first run's stay
in force) attaches to them instead of starting anew, which saves the start-up
time in a test session. Call `await release_reused()` at the end of the
session; if the process dies first, the next run's `sweep()` removes them.

aiodocker runs on asyncio only, so this provider does too. The engine must
run on this machine: JD's ports are published on its 127.0.0.1.

Images, set-up and the Postgres contract: docker/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from jdkit._exceptions import ConfigError, JDError
from jdkit._options import ClientOptions
from jdkit._providers._base import Provider
from jdkit._providers._images import (
    JD_IMAGE as LOCAL_JD_IMAGE,
)
from jdkit._providers._images import (
    POSTGRES_IMAGE as LOCAL_POSTGRES_IMAGE,
)
from jdkit._providers._images import (
    ImageBuildError,
    ensure_jd_image,
    ensure_postgres_image,
    find_source_tree,
    image_exists,
)
from jdkit._redact import scrub

if TYPE_CHECKING:
    from aiodocker import Docker
    from aiodocker.containers import DockerContainer

    from jdkit._client import JobDistributor

log = logging.getLogger("jdkit.docker")

ENV_JD_IMAGE = "CTF_JD_IMAGE"
DEFAULT_POSTGRES_IMAGE = "postgres:16"

LABEL_RUN = "jdkit.run"
LABEL_PID = "jdkit.pid"
LABEL_PIDSTART = "jdkit.pidstart"
LABEL_HOST = "jdkit.host"
LABEL_CREATED = "jdkit.created"
LABEL_ROLE = "jdkit.role"
LABEL_REUSE = "jdkit.reuse"

# Readiness polls back off exponentially from 50 ms up to these caps: start-up
# takes seconds, so a higher cap would mostly add idle waiting.
_PG_POLL_MAX = 0.25
_JD_POLL_MAX = 0.5
_PG_ALIAS = "postgres"
_PG_PORT = 5432
_REDACTED = "<redacted>"

_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@+-]*$", re.IGNORECASE)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://", "npipe://")


class DockerProviderError(JDError):
    """The Docker provider could not start (or reach) its JD; carries container logs."""


def _default_jd_image() -> str:
    return os.environ.get(ENV_JD_IMAGE, "").strip() or LOCAL_JD_IMAGE


def _random_password() -> str:
    return secrets.token_urlsafe(24)


def _random_secret() -> str:
    return secrets.token_hex(32)  # 64 hex digits, the form upstream's JD uses


@dataclass(frozen=True, kw_only=True, repr=False)
class DockerConfig:
    """How to run JD in Docker; every field is checked on construction.

    | field | default |
    |---|---|
    | `jd_image` | `$CTF_JD_IMAGE`, else the locally built `jdkit/jd:dev` |
    | `postgres_image` | `postgres:16` (used when present locally or pullable) |
    | `postgres_fallback` | `jdkit/postgres:15`, built locally; None: no fallback |
    | `postgres_user` / `postgres_db` | `jd` / `jd` |
    | `postgres_password`, `csa_secret` | random for each config (never shown by repr) |
    | `ready_timeout` | 120 s from creating the containers to SERVING |
    | `pull_timeout` | 120 s for one image pull |
    | `reuse` | False; True keeps the containers for the process (module doc) |
    | `docker_host` | `$DOCKER_HOST`, else the local socket |
    | `build_images` | True: build/refresh `jdkit/*` images from the checkout |
    | `jd_command` | None (the image's CMD); a list replaces it |
    | `jd_env` | extra environment for JD (wins over the provider's) |
    | `grpc_port`, `node_rpc_port`, `healthz_port` | JD's ports inside its container |
    | `check_healthz` | True: readiness also needs `GET /healthz` to answer 200 |
    | `fast_postgres` | True: fsync off and a tmpfs data directory (test data only) |
    | `call_timeout` | the returned client's default per-call deadline (30 s) |
    | `log_tail` | lines of each container's log put into errors (50) |
    """

    jd_image: str = field(default_factory=_default_jd_image)
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    postgres_fallback: str | None = LOCAL_POSTGRES_IMAGE
    postgres_user: str = "jd"
    postgres_password: str = field(default_factory=_random_password)
    postgres_db: str = "jd"
    csa_secret: str = field(default_factory=_random_secret)
    ready_timeout: float = 120.0
    pull_timeout: float = 120.0
    reuse: bool = False
    docker_host: str | None = None
    build_images: bool = True
    jd_command: Sequence[str] | None = None
    jd_env: Mapping[str, str] = field(default_factory=dict)
    grpc_port: int = 14231
    node_rpc_port: int = 8080
    healthz_port: int = 8081
    check_healthz: bool = True
    fast_postgres: bool = True
    call_timeout: float | None = 30.0
    log_tail: int = 50

    def __post_init__(self) -> None:
        env_image = os.environ.get(ENV_JD_IMAGE, "").strip()
        for name in ("jd_image", "postgres_image", "postgres_fallback"):
            value = getattr(self, name)
            if value is None and name == "postgres_fallback":
                continue
            if not isinstance(value, str) or not _IMAGE_RE.match(value):
                source = (
                    f" (from ${ENV_JD_IMAGE})"
                    if name == "jd_image" and value == env_image and env_image
                    else ""
                )
                raise ConfigError(name, f"not an image reference: {value!r}{source}")
        for name in ("postgres_user", "postgres_db"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _IDENT_RE.match(value):
                raise ConfigError(
                    name,
                    f"must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 "
                    f"characters), got {value!r}",
                )
        for name in ("postgres_password", "csa_secret"):
            value = getattr(self, name)
            # The value itself is never put into the message.
            if not isinstance(value, str) or not value:
                raise ConfigError(name, "must be a non-empty string")
            if any(c in value for c in "\0\n\r"):
                raise ConfigError(name, "must not contain NUL or line breaks")
        for name in ("ready_timeout", "pull_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(name, f"must be a positive number of seconds, got {value!r}")
        if self.call_timeout is not None and (
            isinstance(self.call_timeout, bool)
            or not isinstance(self.call_timeout, int | float)
            or self.call_timeout <= 0
        ):
            raise ConfigError(
                "call_timeout", f"must be positive seconds or None, got {self.call_timeout!r}"
            )
        for name in ("reuse", "build_images", "check_healthz", "fast_postgres"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be True or False, got {getattr(self, name)!r}")
        if self.docker_host is not None and (
            not isinstance(self.docker_host, str) or not self.docker_host.startswith(_HOST_SCHEMES)
        ):
            raise ConfigError(
                "docker_host",
                f"expected a URL starting with one of {', '.join(_HOST_SCHEMES)}, "
                f"got {self.docker_host!r}",
            )
        for name in ("grpc_port", "node_rpc_port", "healthz_port"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise ConfigError(name, f"must be a port number 1-65535, got {value!r}")
        if len({self.grpc_port, self.node_rpc_port, self.healthz_port}) != 3:
            raise ConfigError("grpc_port", "grpc_port, node_rpc_port and healthz_port must differ")
        if self.jd_command is not None:
            if (
                isinstance(self.jd_command, str)
                or not all(isinstance(a, str) for a in self.jd_command)
                or not self.jd_command
            ):
                raise ConfigError("jd_command", "must be a non-empty list of strings (or None)")
            object.__setattr__(self, "jd_command", tuple(self.jd_command))
        if not isinstance(self.jd_env, Mapping):
            raise ConfigError("jd_env", f"must be a mapping, got {type(self.jd_env).__name__}")
        for key, value in self.jd_env.items():
            if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
                raise ConfigError("jd_env", f"not an environment variable name: {key!r}")
            if not isinstance(value, str):
                raise ConfigError("jd_env", f"value of {key} must be a string")
        object.__setattr__(self, "jd_env", dict(self.jd_env))
        tail = self.log_tail
        if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
            raise ConfigError("log_tail", f"must be a whole number >= 0, got {self.log_tail!r}")

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("postgres_password", "csa_secret"):
                parts.append(f"{f.name}={_REDACTED}")
            elif f.name == "jd_env":
                parts.append(f"jd_env={{{', '.join(f'{k!r}: ...' for k in value)}}}")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"DockerConfig({', '.join(parts)})"

    __str__ = __repr__

    def database_url(self, host: str = _PG_ALIAS, port: int = _PG_PORT) -> str:
        """The URL JD is given (it contains the password: do not log it)."""
        return (
            f"postgresql://{quote(self.postgres_user, safe='')}:"
            f"{quote(self.postgres_password, safe='')}@{host}:{port}/"
            f"{quote(self.postgres_db, safe='')}"
        )

    def redact(self, text: str) -> str:
        """`text` with the password and the CSA secret (in any quoting) masked."""
        env_secrets = (v for k, v in self.jd_env.items() if _looks_secret(k) and v)
        return scrub(
            text,
            self.postgres_password,
            quote(self.postgres_password),
            self.csa_secret,
            *env_secrets,
            placeholder=_REDACTED,
        )

    def _reuse_key(self) -> str:
        """Equal for configs that may share containers (secrets left out)."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name
            not in (
                "postgres_password",
                "csa_secret",
                "ready_timeout",
                "pull_timeout",
                "call_timeout",
                "log_tail",
                "reuse",
            )
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode()).hexdigest()


def _looks_secret(key: str) -> bool:
    return any(w in key.upper() for w in ("SECRET", "PASSWORD", "TOKEN", "KEY", "DATABASE_URL"))


# -- process identity, for labels and sweeping


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int, start: str | None) -> bool:
    """Whether `pid` is a live process on this host (and the same one, when
    its start time was recorded and can be read)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start:
        now = _process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


def _run_labels(run_id: str, *, reuse: bool) -> dict[str, str]:
    pid = os.getpid()
    labels = {
        LABEL_RUN: run_id,
        LABEL_PID: str(pid),
        LABEL_HOST: socket.gethostname(),
        LABEL_CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        LABEL_REUSE: "true" if reuse else "false",
    }
    start = _process_start(pid)
    if start:
        labels[LABEL_PIDSTART] = start
    return labels


# -- engine helpers


def _filters(**filters: Sequence[str]) -> str:
    return json.dumps({k: list(v) for k, v in filters.items()})


async def _list_containers(docker: Docker, label: str) -> list[dict[str, Any]]:
    containers = await docker.containers.list(all=True, filters=_filters(label=[label]))
    return [c._container for c in containers]


async def _list_networks(docker: Docker, label: str) -> list[dict[str, Any]]:
    return await docker.networks.list(filters={"label": [label]})


async def _remove_container(docker: Docker, container_id: str) -> None:
    from aiodocker.exceptions import DockerError

    try:
        await docker.containers.container(container_id).delete(force=True, v=True)
    except DockerError as exc:
        if exc.status == 404:
            return
        if exc.status == 409 and "in progress" in str(exc.message):
            return  # another sweeper got there first
        raise


async def _remove_network(docker: Docker, network_id: str) -> None:
    from aiodocker.exceptions import DockerError

    for attempt in range(20):
        try:
            await (await docker.networks.get(network_id)).delete()
            return
        except DockerError as exc:
            if exc.status == 404:
                return
            # "has active endpoints" right after a container removal
            if attempt == 19:
                raise
        await anyio.sleep(0.1)


async def remove_run(docker: Docker, run_id: str, *, settle: bool = False) -> int:
    """Force-remove every container and network labelled with `run_id`.

    `settle`: look again after a short pause, for a create request that was
    interrupted client-side but may still complete in the engine.
    Returns how many objects were removed.
    """
    label = f"{LABEL_RUN}={run_id}"
    removed = 0
    for round_ in range(3 if settle else 1):
        if round_:
            await anyio.sleep(0.3)
        containers = await _list_containers(docker, label)
        for c in containers:
            await _remove_container(docker, c["Id"])
        networks = await _list_networks(docker, label)
        for n in networks:
            await _remove_network(docker, n["Id"])
        removed += len(containers) + len(networks)
    return removed


async def sweep(docker: Docker | None = None, *, docker_host: str | None = None) -> list[str]:
    """Remove the containers and networks of runs whose process is dead.

    A run is dead when its `jdkit.host` label is this host and its
    `jdkit.pid` is not a live process here (or is one that started later
    than the run's process: pid reuse). Runs of other hosts are left alone.
    Returns the ids of the runs removed.
    """
    if docker is None:
        import aiodocker

        async with aiodocker.Docker(url=docker_host) as own:
            return await sweep(own)
    host = socket.gethostname()
    runs: dict[str, dict[str, str]] = {}
    for obj in [
        *(c.get("Labels") or {} for c in await _list_containers(docker, LABEL_RUN)),
        *(n.get("Labels") or {} for n in await _list_networks(docker, LABEL_RUN)),
    ]:
        run_id = obj.get(LABEL_RUN)
        if run_id:
            runs.setdefault(run_id, obj)
    dead = []
    for run_id, labels in runs.items():
        if labels.get(LABEL_HOST) != host:
            continue
        try:
            pid = int(labels.get(LABEL_PID, ""))
        except ValueError:
            pid = -1
        if _pid_alive(pid, labels.get(LABEL_PIDSTART)):
            continue
        log.info("sweeping leftovers of run %s (pid %s is gone)", run_id, pid)
        await remove_run(docker, run_id)
        dead.append(run_id)
    return dead


# -- runs kept for reuse within this process


@dataclass
class _Run:
    run_id: str
    network: str = ""
    postgres_id: str = ""
    jd_id: str = ""
    grpc_port: int = 0
    node_rpc_port: int = 0
    healthz_port: int = 0
    jd_image: str = ""
    postgres_image: str = ""


_REUSED: dict[str, tuple[_Run, str | None]] = {}  # reuse key -> (run, docker_host)
_PULL_FAILED: dict[str, str] = {}  # image -> why, for this process


async def release_reused() -> int:
    """Remove the containers kept by `reuse=True` providers of this process."""
    import aiodocker

    removed = 0
    while _REUSED:
        _, (run, docker_host) = _REUSED.popitem()
        with anyio.CancelScope(shield=True):
            async with aiodocker.Docker(url=docker_host) as docker:
                removed += await remove_run(docker, run.run_id)
    return removed


# -- the provider


class DockerProvider(Provider):
    """JD + Postgres in Docker; see the module doc for the life of a run.

    `config` (and keywords naming `DockerConfig` fields) say how to run the
    containers; `options` (and keywords naming `ClientOptions` fields) how
    the client talks to the JD, as for every provider. The client's default
    deadline is `DockerConfig.call_timeout` unless `timeout` is given.
    """

    name = "docker"

    def __init__(
        self,
        config: DockerConfig | None = None,
        *,
        options: ClientOptions | None = None,
        **overrides: Any,
    ) -> None:
        client_names = set(ClientOptions.names())
        client = {k: overrides.pop(k) for k in list(overrides) if k in client_names}
        super().__init__(options, **client)
        if config is None:
            config = DockerConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        if options is None and "timeout" not in client:
            self.options = self.options.replace(timeout=config.call_timeout)
        self._docker: Docker | None = None
        self._run: _Run | None = None
        self._keep = False
        self._interrupted = False
        #: seconds spent: "images", "ready" (containers created to SERVING), "total"
        self.timings: dict[str, float] = {}
        self.reused = False
        self._last_run_id: str | None = None

    def __repr__(self) -> str:
        where = f" {self.address}" if self._run and self._run.grpc_port else ""
        return f"<DockerProvider{where} run={self.run_id}>"

    # -- what a started run exposes

    @property
    def run_id(self) -> str | None:
        """The id of the current run, or of the last one after `aclose()`."""
        return self._run.run_id if self._run else self._last_run_id

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>` of JD's gRPC API."""
        return f"127.0.0.1:{self._started().grpc_port}"

    @property
    def healthz_url(self) -> str:
        return f"http://127.0.0.1:{self._started().healthz_port}/healthz"

    @property
    def node_rpc_address(self) -> str:
        return f"127.0.0.1:{self._started().node_rpc_port}"

    @property
    def images(self) -> tuple[str, str]:
        """(JD image, Postgres image) this run uses."""
        run = self._started()
        return run.jd_image, run.postgres_image

    def _started(self) -> _Run:
        if self._run is None or not self._run.grpc_port:
            raise DockerProviderError("the Docker provider has not started a JD")
        return self._run

    # -- start

    async def _start(self) -> JobDistributor:
        cfg = self.config
        t0 = time.monotonic()
        try:
            import aiodocker
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise DockerProviderError(
                "the Docker provider needs aiodocker: pip install 'jdkit[docker]'"
            ) from exc
        from aiodocker.exceptions import DockerError

        try:
            self._docker = docker = aiodocker.Docker(url=cfg.docker_host)
        except ValueError as exc:  # no DOCKER_HOST and no socket found
            raise DockerProviderError(f"no Docker engine found: {exc}") from exc
        try:
            await docker.version()
        except DockerError as exc:
            raise DockerProviderError(f"no Docker engine answers: {exc.message}") from exc
        try:
            swept = await sweep(docker)
            if swept:
                log.info("swept %d dead run(s)", len(swept))
        except DockerError as exc:
            log.warning("sweeping dead runs failed: %s", exc.message)

        if cfg.reuse:
            client = await self._attach_reused(docker)
            if client is not None:
                self.timings = {"images": 0.0, "ready": 0.0, "total": time.monotonic() - t0}
                return client

        jd_image = await self._jd_image(docker)
        pg_image = await self._postgres_image(docker)
        t1 = time.monotonic()
        self.timings["images"] = t1 - t0

        run = self._run = _Run(run_id=uuid.uuid4().hex, jd_image=jd_image, postgres_image=pg_image)
        self._last_run_id = run.run_id
        labels = _run_labels(run.run_id, reuse=cfg.reuse)
        try:
            with anyio.fail_after(cfg.ready_timeout):
                await self._create(docker, run, labels)
                client = await self._wait_ready(docker, run)
        except TimeoutError as exc:
            raise await self._failure(
                docker, run, f"JD was not ready after {cfg.ready_timeout:g}s ({self._last_probe})"
            ) from exc
        t2 = time.monotonic()
        self.timings.update(ready=t2 - t1, total=t2 - t0)
        log.info(
            "JD ready at 127.0.0.1:%d in %.2fs (run %s, images %s, %s)",
            run.grpc_port,
            t2 - t1,
            run.run_id,
            jd_image,
            pg_image,
        )
        if cfg.reuse:
            _REUSED[cfg._reuse_key()] = (run, cfg.docker_host)
            self._keep = True
        return client

    async def _jd_image(self, docker: Docker) -> str:
        cfg = self.config
        image = cfg.jd_image
        if image == LOCAL_JD_IMAGE and cfg.build_images:
            try:
                tree = find_source_tree()
            except ImageBuildError:
                tree = None  # an installed jdkit: use the image if it is there
            if tree is not None:
                try:
                    return await ensure_jd_image(docker, tree)
                except ImageBuildError as exc:
                    raise DockerProviderError(f"cannot build {image}: {exc}") from exc
        if await image_exists(docker, image):
            return image
        why = await self._pull(docker, image)
        if why is None:
            return image
        hint = (
            "build it in a jdkit checkout: .ci/setup-docker.sh builds every image"
            if image == LOCAL_JD_IMAGE
            else f"set DockerConfig(jd_image=...) or ${ENV_JD_IMAGE} to an image you have"
        )
        raise DockerProviderError(
            f"JD image {image} is not present and pulling it failed ({why}); {hint}"
        )

    async def _postgres_image(self, docker: Docker) -> str:
        cfg = self.config
        image = cfg.postgres_image
        if image == LOCAL_POSTGRES_IMAGE:
            return await self._local_postgres(docker, image)
        if await image_exists(docker, image):
            return image
        why = await self._pull(docker, image)
        if why is None:
            return image
        if cfg.postgres_fallback is None:
            raise DockerProviderError(
                f"Postgres image {image} is not present and pulling it failed ({why})"
            )
        log.info("%s is not available (%s); using %s", image, why, cfg.postgres_fallback)
        if cfg.postgres_fallback == LOCAL_POSTGRES_IMAGE:
            return await self._local_postgres(docker, cfg.postgres_fallback)
        if await image_exists(docker, cfg.postgres_fallback):
            return cfg.postgres_fallback
        raise DockerProviderError(
            f"neither {image} ({why}) nor the fallback {cfg.postgres_fallback} is present"
        )

    async def _local_postgres(self, docker: Docker, image: str) -> str:
        if self.config.build_images:
            try:
                return await ensure_postgres_image(docker, find_source_tree())
            except ImageBuildError as exc:
                if await image_exists(docker, image):
                    return image
                raise DockerProviderError(f"cannot build {image}: {exc}") from exc
        if await image_exists(docker, image):
            return image
        raise DockerProviderError(f"{image} is not present (build_images=False)")

    async def _pull(self, docker: Docker, image: str) -> str | None:
        """Pull `image`; None on success, else why not (remembered per process)."""
        from aiodocker.exceptions import DockerError

        if image in _PULL_FAILED:
            return _PULL_FAILED[image]
        log.info("pulling %s", image)
        try:
            with anyio.fail_after(self.config.pull_timeout):
                await docker.images.pull(image)
            return None
        except TimeoutError:
            why = f"no answer within {self.config.pull_timeout:g}s"
        except DockerError as exc:
            why = str(exc.message).strip() or f"status {exc.status}"
        _PULL_FAILED[image] = why
        return why

    async def _create(self, docker: Docker, run: _Run, labels: dict[str, str]) -> None:
        cfg = self.config
        short = run.run_id[:12]
        run.network = f"jdkit-{short}"
        await self._guarded(
            docker.networks.create(
                {
                    "Name": run.network,
                    "Driver": "bridge",
                    "CheckDuplicate": True,
                    "Labels": labels,
                }
            )
        )

        pg_env = {
            "POSTGRES_USER": cfg.postgres_user,
            "POSTGRES_PASSWORD": cfg.postgres_password,
            "POSTGRES_DB": cfg.postgres_db,
        }
        pg_host: dict[str, Any] = {"NetworkMode": run.network}
        pg_cmd: list[str] | None = None
        if cfg.fast_postgres:
            pg_env["POSTGRES_INITDB_ARGS"] = "--no-sync"
            pg_host["Tmpfs"] = {"/var/lib/postgresql/data": "rw"}
            pg_cmd = [
                "postgres",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        pg_config: dict[str, Any] = {
            "Image": run.postgres_image,
            "Env": [f"{k}={v}" for k, v in pg_env.items()],
            "Labels": {**labels, LABEL_ROLE: "postgres"},
            "HostConfig": pg_host,
            "NetworkingConfig": {"EndpointsConfig": {run.network: {"Aliases": [_PG_ALIAS]}}},
        }
        if pg_cmd:
            pg_config["Cmd"] = pg_cmd
        pg = await self._guarded(
            docker.containers.create(pg_config, name=f"jdkit-{short}-postgres")
        )
        run.postgres_id = pg.id
        t_pg = time.monotonic()
        await self._guarded(pg.start())
        await self._wait_postgres(docker, run, pg)
        self.timings["postgres"] = time.monotonic() - t_pg

        ports = [cfg.grpc_port, cfg.node_rpc_port, cfg.healthz_port]
        env = {
            "DATABASE_URL": cfg.database_url(),
            "PORT": str(cfg.grpc_port),
            "NODE_RPC_PORT": str(cfg.node_rpc_port),
            "CSA_KEY_ENCRYPTION_SECRET": cfg.csa_secret,
            **cfg.jd_env,
        }
        jd_config: dict[str, Any] = {
            "Image": run.jd_image,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": {**labels, LABEL_ROLE: "jd"},
            "ExposedPorts": {f"{p}/tcp": {} for p in ports},
            "HostConfig": {
                "NetworkMode": run.network,
                # Ephemeral host ports on loopback only: no two runs collide.
                "PortBindings": {
                    f"{p}/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}] for p in ports
                },
            },
            "NetworkingConfig": {"EndpointsConfig": {run.network: {"Aliases": ["jd"]}}},
        }
        if cfg.jd_command is not None:
            jd_config["Cmd"] = list(cfg.jd_command)
        jd = await self._guarded(docker.containers.create(jd_config, name=f"jdkit-{short}-jd"))
        run.jd_id = jd.id
        await self._guarded(jd.start())
        info = await jd.show()
        bound = (info.get("NetworkSettings") or {}).get("Ports") or {}
        try:
            run.grpc_port, run.node_rpc_port, run.healthz_port = (
                int(bound[f"{p}/tcp"][0]["HostPort"]) for p in ports
            )
        except (KeyError, IndexError, TypeError, ValueError):
            state = dict(info.get("State") or {})
            if state.get("Status") != "running":
                raise await self._failure(docker, run, _exited("JD", state)) from None
            raise await self._failure(
                docker, run, f"the engine reported no host ports for JD ({bound!r})"
            ) from None

    async def _guarded(self, op: Any) -> Any:
        """Await an engine request that creates something; if it is interrupted,
        teardown looks for late arrivals."""
        try:
            return await op
        except BaseException:
            self._interrupted = True
            raise

    async def _state(self, docker: Docker, container_id: str) -> dict[str, Any]:
        info = await docker.containers.container(container_id).show()
        return dict(info.get("State") or {})

    async def _wait_postgres(self, docker: Docker, run: _Run, pg: DockerContainer) -> None:
        """Until Postgres accepts TCP connections (the official image's
        initialization server listens on its socket only)."""
        cfg = self.config
        delay = 0.05
        self._last_probe = "Postgres not ready yet"
        while True:
            state = await self._state(docker, pg.id)
            if state.get("Status") != "running":
                raise await self._failure(docker, run, _exited("Postgres", state))
            exe = await pg.exec(
                [
                    "pg_isready",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(_PG_PORT),
                    "-U",
                    cfg.postgres_user,
                    "-d",
                    cfg.postgres_db,
                ],
                stdout=False,
                stderr=False,
            )
            await exe.start(detach=True)
            for _ in range(100):
                result = await exe.inspect()
                if not result.get("Running"):
                    break
                await anyio.sleep(0.02)
            if result.get("ExitCode") == 0:
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, _PG_POLL_MAX)

    async def _wait_ready(self, docker: Docker, run: _Run) -> JobDistributor:
        """Poll JD's container state, gRPC health and /healthz with backoff
        (the caller bounds the whole wait)."""
        cfg = self.config
        delay = 0.05
        self._last_probe = "no answer yet"
        async with _HealthProbe(run.grpc_port, run.healthz_port, cfg.check_healthz) as probe:
            while True:
                state = await self._state(docker, run.jd_id)
                if state.get("Status") != "running":
                    raise await self._failure(docker, run, _exited("JD", state))
                ok, self._last_probe = await probe.check()
                if ok:
                    break
                await anyio.sleep(delay)
                delay = min(delay * 2, _JD_POLL_MAX)
        return self._connect(f"127.0.0.1:{run.grpc_port}")

    async def _attach_reused(self, docker: Docker) -> JobDistributor | None:
        from aiodocker.exceptions import DockerError

        cfg = self.config
        entry = _REUSED.get(cfg._reuse_key())
        if entry is None:
            return None
        run = entry[0]
        try:
            state = await self._state(docker, run.jd_id)
            healthy = False
            if state.get("Status") == "running":
                with anyio.move_on_after(5):
                    async with _HealthProbe(run.grpc_port, run.healthz_port, False) as probe:
                        healthy, _ = await probe.check()
        except DockerError:
            healthy = False
        if not healthy:
            log.info("kept run %s is not healthy any more; starting a new one", run.run_id)
            _REUSED.pop(cfg._reuse_key(), None)
            with anyio.CancelScope(shield=True):
                await remove_run(docker, run.run_id)
            return None
        self._run, self._keep, self.reused = run, True, True
        self._last_run_id = run.run_id
        log.info("reusing run %s at 127.0.0.1:%d", run.run_id, run.grpc_port)
        return self._connect(f"127.0.0.1:{run.grpc_port}")

    _last_probe: str = ""

    async def _failure(self, docker: Docker, run: _Run, what: str) -> DockerProviderError:
        """An error for `what`, carrying both containers' log tails (redacted)."""
        cfg = self.config
        parts = [what]
        for role, cid in (("jd", run.jd_id), ("postgres", run.postgres_id)):
            if not cid:
                parts.append(f"--- {role}: not created")
                continue
            tail = await self._logs(docker, cid)
            parts.append(f"--- {role} container log (last {cfg.log_tail} lines) ---\n{tail}")
        return DockerProviderError(cfg.redact("\n".join(parts)))

    async def _logs(self, docker: Docker, container_id: str) -> str:
        from aiodocker.exceptions import DockerError

        try:
            with anyio.move_on_after(10):
                chunks = await docker.containers.container(container_id).log(
                    stdout=True, stderr=True, tail=self.config.log_tail
                )
                lines = "".join(chunks).splitlines()[-self.config.log_tail :]
                return "\n".join(lines) if lines else "(empty)"
            return "(logs did not arrive within 10s)"
        except DockerError as exc:
            return f"(logs unavailable: {exc.message})"

    # -- stop

    async def _stop(self) -> None:
        docker, self._docker = self._docker, None
        run = self._run
        keep, self._keep = self._keep, False
        if docker is None:
            return
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(60) as scope:
                if run is not None and not keep:
                    await remove_run(docker, run.run_id, settle=self._interrupted)
            if scope.cancelled_caught:
                log.warning(
                    "removing run %s took over 60s; the next sweep will finish it",
                    run.run_id if run else "?",
                )
        finally:
            with anyio.CancelScope(shield=True):
                await docker.close()
            if not keep:
                self._run = None


def _exited(role: str, state: Mapping[str, Any]) -> str:
    status = state.get("Status") or "gone"
    what = f"exited (code {state.get('ExitCode')})" if status == "exited" else status
    oom = ", killed for lack of memory" if state.get("OOMKilled") else ""
    error = f": {state['Error']}" if state.get("Error") else ""
    return f"the {role} container {what}{oom}{error}"


class _HealthProbe:
    """One readiness check: gRPC health SERVING, then GET /healthz -> 200."""

    def __init__(self, grpc_port: int, healthz_port: int, check_healthz: bool) -> None:
        self.grpc_port = grpc_port
        self.healthz_port = healthz_port
        self.check_healthz = check_healthz

    async def __aenter__(self) -> _HealthProbe:
        from grpclib.client import Channel

        from jdkit.pb import health

        self._channel = Channel("127.0.0.1", self.grpc_port)
        self._stub = health.HealthStub(self._channel)
        self._http: Any = None
        if self.check_healthz:
            import aiohttp

            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._channel.close()
        if self._http is not None:
            # Shielded: a cleanup await hit by the pending cancellation would
            # hide the timeout that cancelled us.
            with anyio.CancelScope(shield=True):
                await self._http.close()

    async def check(self) -> tuple[bool, str]:
        from jdkit.pb import health

        serving = health.HealthCheckResponseServingStatus.SERVING
        outcome: list[health.HealthCheckResponse | str] = []

        async def grpc_check() -> None:
            try:
                with anyio.fail_after(2):
                    outcome.append(await self._stub.check(health.HealthCheckRequest(service="")))
            except TimeoutError:
                outcome.append("gRPC health check: no answer within 2s")
            except Exception as exc:
                outcome.append(f"gRPC health check: {type(exc).__name__}: {exc}")

        # In a task of its own: when a connection drops (docker-proxy accepts
        # before JD listens, then closes), grpclib cancels the awaiting task
        # and raises its own error instead, leaving a cancellation request
        # counted on that task (Task.cancelling()). In our task, that would
        # make the enclosing anyio.fail_after take its own timeout for an
        # outside cancellation and let CancelledError escape.
        async with anyio.create_task_group() as tg:
            tg.start_soon(grpc_check)
        reply = outcome[0]
        if isinstance(reply, str):
            return False, reply
        if reply.status != serving:
            return False, f"gRPC health: {reply.status.name}"
        if self._http is None:
            return True, "SERVING"
        try:
            url = f"http://127.0.0.1:{self.healthz_port}/healthz"
            async with self._http.get(url) as resp:
                if resp.status == 200:
                    return True, "SERVING, /healthz 200"
                return False, f"/healthz answered {resp.status}"
        except Exception as exc:
            return False, f"/healthz: {type(exc).__name__}: {exc}"
