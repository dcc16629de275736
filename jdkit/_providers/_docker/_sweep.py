"""Labels on everything a run creates, and removing runs by them.

Every container and network carries `jdkit.run=<uuid>`, `jdkit.pid`,
`jdkit.pidstart` (the process's start time, against pid reuse),
`jdkit.host`, `jdkit.created` and `jdkit.role`, so a run can be removed
whole by its id, and the runs of dead processes can be found later by
`sweep_docker()` without any state kept outside the engine.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from aiodocker import Docker

log = logging.getLogger("jdkit.docker")

LABEL_RUN = "jdkit.run"
LABEL_PID = "jdkit.pid"
LABEL_PIDSTART = "jdkit.pidstart"
LABEL_HOST = "jdkit.host"
LABEL_CREATED = "jdkit.created"
LABEL_ROLE = "jdkit.role"
LABEL_REUSE = "jdkit.reuse"


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


def run_labels(run_id: str, *, reuse: bool) -> dict[str, str]:
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


async def sweep_docker(
    docker: Docker | None = None, *, docker_host: str | None = None
) -> list[str]:
    """Remove the containers and networks of runs whose process is dead.

    A run is dead when its `jdkit.host` label is this host and its
    `jdkit.pid` is not a live process here (or is one that started later
    than the run's process: pid reuse). Runs of other hosts are left alone.
    Returns the ids of the runs removed.
    """
    if docker is None:
        import aiodocker

        async with aiodocker.Docker(url=docker_host) as own:
            return await sweep_docker(own)
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


async def release_docker_reused() -> int:
    """Remove the containers kept by `reuse=True` providers of this process."""
    import aiodocker

    removed = 0
    while _REUSED:
        _, (run, docker_host) = _REUSED.popitem()
        with anyio.CancelScope(shield=True):
            async with aiodocker.Docker(url=docker_host) as docker:
                removed += await remove_run(docker, run.run_id)
    return removed
