"""The locally built images: the Postgres image keeps the official image's
environment contract, the JD image follows jdkit's source, and the Python
side hashes the base images the way build-rootfs.sh does."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from jdkit._providers._docker._images import build_script
from tests.helpers.docker_helpers import engine, require_docker
from tests.helpers.paths import ROOT

LABEL = "jdkit.test"

# scripts/docker_images.py, loaded the way the provider loads it from a checkout
_images: Any = build_script()
assert _images is not None, "scripts/docker_images.py is missing from the checkout"
BASE_POSTGRES, BASE_PYTHON = _images.BASE_POSTGRES, _images.BASE_PYTHON
CONTEXT_LABEL, JD_IMAGE, POSTGRES_IMAGE = (
    _images.CONTEXT_LABEL,
    _images.JD_IMAGE,
    _images.POSTGRES_IMAGE,
)
ensure_images, find_source_tree = _images.ensure_images, _images.find_source_tree
jd_context_hash, rootfs_spec_hash = _images.jd_context_hash, _images.rootfs_spec_hash


# -- no engine needed


def test_rootfs_hash_matches_the_script() -> None:
    tree = find_source_tree()
    for tag in (BASE_POSTGRES, BASE_PYTHON):
        out = subprocess.run(
            ["bash", str(tree.rootfs_script), "--spec-hash", tag],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert out == rootfs_spec_hash(tree, tag)


def test_jd_hash_follows_the_source(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "docker", copy / "docker")
    shutil.copytree(ROOT / "jdkit", copy / "jdkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    tree = find_source_tree(copy / "jdkit" / "__init__.py")
    assert tree.root == copy
    before = jd_context_hash(tree)
    (copy / "jdkit" / "_pycache_noise.pyc").write_bytes(b"ignored")
    assert jd_context_hash(tree) == before
    with (copy / "jdkit" / "_providers" / "_base.py").open("a") as f:
        f.write("\n# changed\n")
    assert jd_context_hash(tree) != before


def test_no_checkout_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(_images.ImageBuildError, match="source checkout"):
        find_source_tree(tmp_path)


def test_wheels_are_chosen_for_the_image_python_not_ours() -> None:
    args = _images._platform_args()
    assert args[args.index("--python-version") + 1] == "3.11"
    assert args[args.index("--abi") + 1] == "cp311"
    assert "--only-binary=:all:" in args
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0].startswith("manylinux_2_36_")  # bookworm's glibc, newest first
    assert any(p.startswith("manylinux2014_") for p in platforms)


def _installed_copy(tmp_path: Path) -> dict[str, str]:
    """An environment whose `jdkit` is the package alone, as a wheel installs
    it: no scripts/, docker/ or pyproject.toml around it."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "jdkit", site / "jdkit", ignore=shutil.ignore_patterns("__pycache__"))
    return {**os.environ, "PYTHONPATH": str(site)}


def test_the_image_builder_is_not_part_of_the_package(tmp_path: Path) -> None:
    assert not (ROOT / "jdkit" / "_providers" / "_images.py").exists()
    # fcntl (POSIX only) is the build lock's; nothing in the package imports it
    for path in (ROOT / "jdkit").rglob("*.py"):
        for stmt in ast.parse(path.read_text()).body:
            names = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else []
            assert "fcntl" not in names, path
    probe = (
        "import jdkit\n"
        "from jdkit._providers._docker._images import build_script\n"
        "print(jdkit.__file__, build_script())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=_installed_copy(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(tmp_path / "site-packages" / "jdkit" / "__init__.py"), "None"]


@pytest.mark.docker
def test_an_installed_jdkit_names_the_build_script_when_an_image_is_missing(
    tmp_path: Path,
) -> None:
    require_docker()
    missing = f"jdkit/jd:never-built-{uuid.uuid4().hex[:8]}"
    # The engine here has jdkit/jd:dev, so a tag it lacks stands in for it: the
    # copy is told that this tag is the one scripts/docker_images.py builds.
    probe = f"""
import anyio
from jdkit import DockerConfig, DockerProvider, DockerProviderError
from jdkit._providers._docker import _images

_images._BUILDERS[{missing!r}] = "ensure_jd_image"
async def main():
    try:
        async with DockerProvider(DockerConfig(jd_image={missing!r}, ready_timeout=30)):
            pass
    except DockerProviderError as exc:
        print(exc)
anyio.run(main)
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=_installed_copy(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert f"image {missing} is not present" in message
    assert "not a source checkout" in message and "python scripts/docker_images.py" in message
    assert "CTF_JD_IMAGE" in message


@pytest.mark.docker
@pytest.mark.asyncio
async def test_jdkit_tags_are_never_pulled() -> None:
    from jdkit import DockerConfig, DockerProviderError
    from jdkit._providers._docker import _images as bridge

    require_docker()
    missing = f"jdkit/postgres:never-built-{uuid.uuid4().hex[:8]}"
    async with engine() as d:
        with pytest.raises(DockerProviderError) as info:
            await bridge.postgres_image(d, DockerConfig(postgres_image=missing))
    assert f"image {missing} is not present" in str(info.value)
    assert "never pulled" in str(info.value) and "scripts/docker_images.py" in str(info.value)
    assert missing not in bridge._PULL_FAILED  # no pull was tried


# -- with an engine


@pytest_asyncio.fixture
async def docker() -> AsyncIterator[Any]:
    require_docker()
    async with engine() as d:
        await ensure_images(d)
        yield d


@pytest.mark.docker
@pytest.mark.asyncio
async def test_images_are_up_to_date_and_a_second_check_is_cheap(docker: Any) -> None:
    t0 = time.monotonic()
    assert await ensure_images(docker) == [POSTGRES_IMAGE, JD_IMAGE]
    assert time.monotonic() - t0 < 5
    assert await _images.stale_images(docker) == []
    info = await docker.images.inspect(JD_IMAGE)
    assert info["Config"]["Labels"][CONTEXT_LABEL] == jd_context_hash(find_source_tree())
    assert {"14231/tcp", "8080/tcp", "8081/tcp"} <= set(info["Config"]["ExposedPorts"])


async def _run(
    docker: Any,
    image: str,
    env: dict[str, str],
    cmd: list[str] | None = None,
    network: tuple[str, str] | None = None,
) -> Any:
    config: dict[str, Any] = {
        "Image": image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {LABEL: "1"},
    }
    if cmd is not None:
        config["Cmd"] = cmd
    if network is not None:
        config["HostConfig"] = {"NetworkMode": network[0]}
        config["NetworkingConfig"] = {"EndpointsConfig": {network[0]: {"Aliases": [network[1]]}}}
    container = await docker.containers.create(config, name=f"jdkit-test-{uuid.uuid4().hex[:8]}")
    await container.start()
    return container


async def _exec(
    container: Any, cmd: list[str], env: dict[str, str] | None = None
) -> tuple[int, str]:
    exe = await container.exec(cmd, environment=env)
    out = []
    async with exe.start(detach=False) as stream:
        while (msg := await stream.read_out()) is not None:
            out.append(msg.data.decode(errors="replace"))
    return (await exe.inspect())["ExitCode"], "".join(out)


async def _wait_tcp_ready(container: Any) -> None:
    with anyio.fail_after(60):
        while (await _exec(container, ["pg_isready", "-q", "-h", "127.0.0.1"]))[0] != 0:
            state = (await container.show())["State"]
            assert state["Running"], "".join(await container.log(stdout=True, stderr=True))
            await anyio.sleep(0.2)


@pytest.mark.docker
@pytest.mark.asyncio
async def test_postgres_image_honours_the_official_contract(docker: Any) -> None:
    password = "s3cret pw'\"$"
    net = await docker.networks.create(
        {"Name": f"jdkit-test-{uuid.uuid4().hex[:8]}", "Labels": {LABEL: "1"}}
    )
    pg = await _run(
        docker,
        POSTGRES_IMAGE,
        {
            "POSTGRES_USER": "app",
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "appdb",
            "POSTGRES_INITDB_ARGS": "--data-checksums",
        },
        network=(net.id, "db"),
    )
    # A second container: connections over the network must use the password
    # (inside the container, initdb's defaults trust the socket and loopback).
    client = await _run(docker, POSTGRES_IMAGE, {}, cmd=["sleep", "300"], network=(net.id, "c"))
    try:
        await _wait_tcp_ready(pg)
        psql = ["psql", "-h", "db", "-U", "app", "-d", "appdb", "-tA", "-c"]
        code, out = await _exec(
            client,
            [*psql, "select current_user || ' ' || current_database()"],
            {"PGPASSWORD": password},
        )
        assert (code, out.strip()) == (0, "app appdb")
        code, out = await _exec(client, [*psql, "show data_checksums"], {"PGPASSWORD": password})
        assert (code, out.strip()) == (0, "on")  # POSTGRES_INITDB_ARGS reached initdb
        code, out = await _exec(client, [*psql, "select 1"], {"PGPASSWORD": "wrong"})
        assert code != 0 and "password authentication failed" in out
        code, out = await _exec(client, [*psql, "select 1"], {})
        assert code != 0
        # PID 1 is postgres itself, running as the postgres user (signals reach it).
        code, out = await _exec(pg, ["sh", "-c", "cat /proc/1/comm; stat -c %U /proc/1"])
        assert out.split() == ["postgres", "postgres"]
        t0 = time.monotonic()
        await pg.stop(t=20)
        assert time.monotonic() - t0 < 10  # SIGINT: fast shutdown, not a 10 s kill
        assert (await pg.show())["State"]["ExitCode"] == 0
    finally:
        for c in (client, pg):
            await c.delete(force=True, v=True)
        await net.delete()


@pytest.mark.docker
@pytest.mark.asyncio
async def test_postgres_image_refuses_to_init_without_a_password(docker: Any) -> None:
    pg = await _run(docker, POSTGRES_IMAGE, {})
    try:
        with anyio.fail_after(30):
            result = await pg.wait()
        assert result["StatusCode"] == 1
        logs = "".join(await pg.log(stdout=True, stderr=True))
        assert "POSTGRES_PASSWORD is not set" in logs
    finally:
        await pg.delete(force=True, v=True)


@pytest.mark.docker
@pytest.mark.asyncio
async def test_jd_image_runs_jdkit_as_a_non_root_user_offline(docker: Any) -> None:
    jd = await _run(
        docker,
        JD_IMAGE,
        {},
        cmd=[
            "python",
            "-c",
            "import os, jdkit, psycopg, jdkit._server; print(os.getuid(), jdkit.__file__)",
        ],
    )
    try:
        with anyio.fail_after(60):
            result = await jd.wait()
        out = "".join(await jd.log(stdout=True, stderr=True))
        assert result["StatusCode"] == 0, out
        uid, path = out.split()
        assert uid != "0" and path.startswith("/opt/jd/")
    finally:
        await jd.delete(force=True, v=True)
