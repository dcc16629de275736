"""A JD and its Postgres in Docker containers, one private network per run.

    async with DockerProvider() as jd:          # DockerConfig() defaults
        print(await jd.version())
    # containers and network are gone, whatever happened inside

What a run does (all through the Docker Engine API, with aiodocker):

1. `sweep_docker()`: removes the containers and networks of earlier runs
   whose process is dead (`_sweep.py`).
2. Images. JD: `DockerConfig.jd_image`, else `$CTF_JD_IMAGE`, else the local
   `jdkit/jd:dev`, which is built (or rebuilt when jdkit's source changed)
   from the checkout by `scripts/docker_images.py` (`_images.py`). Postgres:
   `postgres_image` (default `postgres:16`) when it is present or can be
   pulled; otherwise `postgres_fallback` (default the locally built
   `jdkit/postgres:15`, Debian's PostgreSQL with the official image's
   environment contract). A failed pull is remembered for the process.
3. A bridge network `jdkit-<run>`; Postgres on it under the alias `postgres`;
   JD with `DATABASE_URL=postgresql://user:pw@postgres:5432/db`, `PORT`,
   `NODE_RPC_PORT` and `CSA_KEY_ENCRYPTION_SECRET`. JD's ports are published
   on 127.0.0.1 with ephemeral host ports (read back after start), so runs
   never collide: `address` (gRPC), `node_address` (the node-facing port
   nodes dial), `healthz_url`.
4. Ready when the JD container runs, the gRPC health check answers SERVING
   and `GET /healthz` answers 200, polled with exponential backoff under one
   overall timeout (`ready_timeout`). A container that exits, or a timeout,
   raises `DockerProviderError` carrying the last lines of both containers'
   logs, with the Postgres password and the CSA secret redacted.
5. Teardown (normal exit, exception or cancellation; shielded) force-removes
   every container and network labelled with the run's id.

Every container and network carries labels naming its run and process
(`_sweep.py`).

Reuse: with `reuse=True` the containers outlive `aclose()`; a later provider
in the same process with an equal config (secrets aside: the first run's stay
in force) attaches to them instead of starting anew, which saves the start-up
time in a test session. Call `await release_reused()` at the end of the
session; if the process dies first, the next run's `sweep_docker()` removes them.

aiodocker runs on asyncio only, so this provider does too. The engine must
run on this machine: JD's ports are published on its 127.0.0.1.

Images, set-up and the Postgres contract: docker/README.md.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from jdkit._options import ClientOptions
from jdkit._providers._base import Provider
from jdkit._providers._docker import _images
from jdkit._providers._docker._config import (
    PG_ALIAS,
    PG_PORT,
    DockerConfig,
    DockerProviderError,
    provider_options,
)
from jdkit._providers._docker._probe import JD_POLL_MAX, PG_POLL_MAX, HealthProbe, exited
from jdkit._providers._docker._sweep import (
    _REUSED,
    LABEL_ROLE,
    _Run,
    remove_run,
    run_labels,
    sweep_docker,
)

if TYPE_CHECKING:
    from aiodocker import Docker
    from aiodocker.containers import DockerContainer

    from jdkit._client import JobDistributor

log = logging.getLogger("jdkit.docker")


class DockerProvider(Provider):
    """JD + Postgres in Docker; see the module doc for the life of a run.

    `config` (and keywords naming `DockerConfig` fields) say how to run the
    containers; `options` (and keywords naming `ClientOptions` fields) how
    the client talks to the JD, as for every provider (a `ClientOptions`
    given first is `options`); any other keyword is a TypeError naming it.
    """

    name = "docker"

    def __init__(
        self,
        config: DockerConfig | ClientOptions | None = None,
        *,
        options: ClientOptions | None = None,
        **overrides: Any,
    ) -> None:
        self.config, opts = provider_options(config, options, overrides)
        super().__init__(opts)
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
    def node_address(self) -> str:
        """`127.0.0.1:<port>` of JD's node-facing (wsrpc) port, `NODE_RPC_PORT`
        in the container: where `jdkit.SimulatedNode` (or a real node) dials."""
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
            swept = await sweep_docker(docker)
            if swept:
                log.info("swept %d dead run(s)", len(swept))
        except DockerError as exc:
            log.warning("sweeping dead runs failed: %s", exc.message)

        if cfg.reuse:
            client = await self._attach_reused(docker)
            if client is not None:
                self.timings = {"images": 0.0, "ready": 0.0, "total": time.monotonic() - t0}
                return client

        jd_image = await _images.jd_image(docker, cfg)
        pg_image = await _images.postgres_image(docker, cfg)
        t1 = time.monotonic()
        self.timings["images"] = t1 - t0

        run = self._run = _Run(run_id=uuid.uuid4().hex, jd_image=jd_image, postgres_image=pg_image)
        self._last_run_id = run.run_id
        labels = run_labels(run.run_id, reuse=cfg.reuse)
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
            "NetworkingConfig": {"EndpointsConfig": {run.network: {"Aliases": [PG_ALIAS]}}},
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
                raise await self._failure(docker, run, exited("JD", state)) from None
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
                raise await self._failure(docker, run, exited("Postgres", state))
            exe = await pg.exec(
                [
                    "pg_isready",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(PG_PORT),
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
            delay = min(delay * 2, PG_POLL_MAX)

    async def _wait_ready(self, docker: Docker, run: _Run) -> JobDistributor:
        """Poll JD's container state, gRPC health and /healthz with backoff
        (the caller bounds the whole wait)."""
        cfg = self.config
        delay = 0.05
        self._last_probe = "no answer yet"
        async with HealthProbe(run.grpc_port, run.healthz_port, cfg.check_healthz) as probe:
            while True:
                state = await self._state(docker, run.jd_id)
                if state.get("Status") != "running":
                    raise await self._failure(docker, run, exited("JD", state))
                ok, self._last_probe = await probe.check()
                if ok:
                    break
                await anyio.sleep(delay)
                delay = min(delay * 2, JD_POLL_MAX)
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
                    async with HealthProbe(run.grpc_port, run.healthz_port, False) as probe:
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
