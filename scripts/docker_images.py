"""Local Docker images for the Docker provider, built without a registry.

Three steps, each skipped when its result is up to date:

1. Base images: a Debian root file system made by `debootstrap` on the host
   and `docker import`ed (`docker/base/build-rootfs.sh`, one line per image in
   `docker/base/rootfs.list`). Needs root and debootstrap; about a minute.
   `.ci/setup-docker.sh` builds them; `ensure_images()` builds them too when
   they are missing and it may.
2. `jdkit/postgres:15`: Debian's PostgreSQL behind an entrypoint that honours
   the official image's environment (`docker/postgres/`).
3. `jdkit/jd:dev`: jdkit's embedded JD. Wheels of jdkit (with the `postgres`
   extra) and of every dependency are made on the host for the image's
   CPython 3.11 / manylinux, then `docker/jd/Dockerfile` installs them with
   `pip --no-index` into a venv, so no container needs network.

Steps 2 and 3 are `docker build`s from a tar context sent through aiodocker;
each image is labelled with a hash of what went into it
(`jdkit.context-hash`) and rebuilt when that changes, so editing jdkit's
source gives a new JD image at the next `ensure_images()`.

This needs a source checkout (the `docker/` folder beside `jdkit/`), so it
lives here and not in the wheel; the Docker provider loads this file from the
checkout it runs from (`jdkit/_providers/_docker/_images.py`), and in an
installed jdkit it names this script when an image is missing. From the
shell, with the project's venv (or PYTHONPATH=. to find jdkit):

    python scripts/docker_images.py            # build what is missing or stale
    python scripts/docker_images.py --force    # rebuild the top images
    python scripts/docker_images.py --check    # exit 1 if anything is missing or stale
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import io
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from jdkit._exceptions import JDError
from jdkit._providers._docker._config import LOCAL_JD_IMAGE as JD_IMAGE
from jdkit._providers._docker._config import LOCAL_POSTGRES_IMAGE as POSTGRES_IMAGE

if TYPE_CHECKING:
    from aiodocker import Docker

log = logging.getLogger("jdkit.docker")

BASE_POSTGRES = "jdkit/base-postgres:bookworm"
BASE_PYTHON = "jdkit/base-python:bookworm"

CONTEXT_LABEL = "jdkit.context-hash"
ROOTFS_LABEL = "jdkit.rootfs.spec"

# What the JD base image runs: Debian bookworm's CPython and glibc. Wheels for
# the image are chosen for these, whatever Python runs this module.
IMAGE_PYTHON = "3.11"
IMAGE_GLIBC = (2, 36)
JD_EXTRAS = ("postgres", "server", "node")  # those that pyproject.toml defines are used


class ImageBuildError(JDError):
    """A local image could not be built; the message says what to do."""


@dataclass(frozen=True)
class SourceTree:
    """The checkout the images are built from."""

    root: Path

    @property
    def docker_dir(self) -> Path:
        return self.root / "docker"

    @property
    def rootfs_script(self) -> Path:
        return self.docker_dir / "base" / "build-rootfs.sh"

    @property
    def rootfs_list(self) -> Path:
        return self.docker_dir / "base" / "rootfs.list"

    @property
    def cache_dir(self) -> Path:
        override = os.environ.get("JDKIT_IMAGE_CACHE")
        return Path(override) if override else self.root / ".ci" / "cache" / "docker"


def find_source_tree(start: Path | None = None) -> SourceTree:
    """The checkout holding this module (or `start`); ImageBuildError if none."""
    here = (start or Path(__file__)).resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "docker" / "jd" / "Dockerfile").is_file() and (
            candidate / "pyproject.toml"
        ).is_file():
            return SourceTree(candidate)
    raise ImageBuildError(
        "the jdkit images are built from a source checkout (docker/ beside jdkit/), "
        f"and none holds {here}; build them there, or name a prebuilt image "
        "(DockerConfig(jd_image=...) or CTF_JD_IMAGE)"
    )


# -- hashing what goes into an image


def _walk(base: Path, rel: Path) -> Iterator[Path]:
    path = base / rel
    if path.is_file():
        yield rel
        return
    for child in sorted(path.rglob("*")):
        parts = child.relative_to(base).parts
        if "__pycache__" in parts or child.suffix in {".pyc", ".pyo"} or not child.is_file():
            continue
        yield child.relative_to(base)


def _hash_files(base: Path, files: list[Path], *extra: str) -> str:
    digest = hashlib.sha256()
    for item in extra:
        digest.update(item.encode() + b"\0")
    for rel in files:
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((base / rel).read_bytes()).digest())
    return digest.hexdigest()[:16]


def jd_source_files(tree: SourceTree) -> list[Path]:
    """Files that make up the JD image: jdkit's package, its metadata, docker/jd."""
    files = [*_walk(tree.root, Path("jdkit")), *_walk(tree.root, Path("docker/jd"))]
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (tree.root / name).is_file():
            files.append(Path(name))
    return files


def jd_context_hash(tree: SourceTree) -> str:
    return _hash_files(tree.root, jd_source_files(tree), _base_line(tree, BASE_PYTHON))


def postgres_context_hash(tree: SourceTree) -> str:
    return _hash_files(
        tree.root, list(_walk(tree.root, Path("docker/postgres"))), _base_line(tree, BASE_POSTGRES)
    )


def _base_line(tree: SourceTree, tag: str) -> str:
    for line in tree.rootfs_list.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and fields[0] == tag:
            return " ".join(fields[:3])
    raise ImageBuildError(f"{tree.rootfs_list} has no line for {tag}")


def rootfs_spec_hash(tree: SourceTree, tag: str) -> str:
    """The label build-rootfs.sh puts on `tag` (same recipe as its spec_hash)."""
    data = (_base_line(tree, tag) + "\n").encode() + tree.rootfs_script.read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


# -- talking to the engine


async def _labels(docker: Docker, tag: str) -> dict[str, str] | None:
    """The image's labels, or None when the tag does not exist."""
    from aiodocker.exceptions import DockerError

    try:
        info = await docker.images.inspect(tag)
    except DockerError as exc:
        if exc.status == 404:
            return None
        raise
    return dict((info.get("Config") or {}).get("Labels") or {})


async def image_exists(docker: Docker, tag: str) -> bool:
    return await _labels(docker, tag) is not None


@contextlib.asynccontextmanager
async def _file_lock(name: str) -> AsyncIterator[None]:
    """Serialize builds across processes (tests may start several providers)."""
    lock_dir = Path(os.environ.get("JDKIT_LOCK_DIR", tempfile.gettempdir()))
    path = lock_dir / f"jdkit-image-{name.replace('/', '_').replace(':', '_')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        await anyio.to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _run(cmd: list[str], what: str, *, cwd: Path | None = None) -> str:
    """Run a command; ImageBuildError with its output's tail when it fails."""
    log.debug("running %s", " ".join(cmd))
    result = await anyio.run_process(cmd, cwd=cwd, check=False, stderr=subprocess.STDOUT)
    output = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return output


async def ensure_base_image(
    docker: Docker, tree: SourceTree, tag: str, *, force: bool = False
) -> None:
    """Build a debootstrapped base image when missing or its spec changed."""
    want = rootfs_spec_hash(tree, tag)
    labels = await _labels(docker, tag)
    if not force and labels is not None and labels.get(ROOTFS_LABEL) == want:
        return
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        state = "missing" if labels is None else "out of date"
        raise ImageBuildError(
            f"base image {tag} is {state}; building it needs root and debootstrap: "
            f"run `sudo {tree.root / '.ci' / 'setup-docker.sh'}` "
            f"(or `sudo {tree.rootfs_script} {tag}`)"
        )
    log.info("building base image %s with debootstrap (about a minute)", tag)
    cmd = ["bash", str(tree.rootfs_script), *(["--force"] if force else []), tag]
    await _run(cmd, f"building {tag}")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _context(files: dict[str, tuple[bytes, int]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(files):
            data, mode = files[name]
            _add_bytes(tar, name, data, mode)
    buf.seek(0)
    return buf


async def _build(
    docker: Docker,
    context: io.BytesIO,
    tag: str,
    labels: dict[str, str],
    buildargs: dict[str, str] | None = None,
) -> None:
    from aiodocker.exceptions import DockerError

    lines: list[str] = []
    try:
        async for chunk in docker.images.build(
            fileobj=context,
            encoding="identity",
            tag=tag,
            labels=labels,
            buildargs=buildargs,
            rm=True,
            forcerm=True,
            stream=True,
        ):
            text = chunk.get("stream")
            if text:
                lines.extend(text.rstrip("\n").splitlines())
    except DockerError as exc:
        tail = "\n".join(lines[-40:])
        raise ImageBuildError(f"docker build of {tag} failed: {exc.message}\n{tail}") from exc
    log.debug("built %s:\n%s", tag, "\n".join(lines[-10:]))


async def ensure_postgres_image(docker: Docker, tree: SourceTree, *, force: bool = False) -> str:
    """`jdkit/postgres:15`, built (with its base) when missing or stale."""
    want = postgres_context_hash(tree)
    async with _file_lock(POSTGRES_IMAGE):
        labels = await _labels(docker, POSTGRES_IMAGE)
        if not force and labels is not None and labels.get(CONTEXT_LABEL) == want:
            return POSTGRES_IMAGE
        await ensure_base_image(docker, tree, BASE_POSTGRES)
        files: dict[str, tuple[bytes, int]] = {}
        for rel in _walk(tree.root, Path("docker/postgres")):
            path = tree.root / rel
            mode = 0o755 if path.suffix == ".sh" or os.access(path, os.X_OK) else 0o644
            files[rel.relative_to("docker/postgres").as_posix()] = (path.read_bytes(), mode)
        log.info("building %s", POSTGRES_IMAGE)
        await _build(
            docker,
            _context(files),
            POSTGRES_IMAGE,
            {CONTEXT_LABEL: want},
            {"BASE": BASE_POSTGRES},
        )
    return POSTGRES_IMAGE


def _jd_extras(tree: SourceTree) -> list[str]:
    meta = tomllib.loads((tree.root / "pyproject.toml").read_text())
    defined = meta.get("project", {}).get("optional-dependencies", {})
    return [e for e in JD_EXTRAS if e in defined]


def _platform_args() -> list[str]:
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    major, top = IMAGE_GLIBC
    plats = [f"manylinux_{major}_{minor}_{arch}" for minor in range(top, 16, -1)]
    plats.append(f"manylinux2014_{arch}")  # pip adds manylinux2010/manylinux1 for it
    args = ["--only-binary=:all:", "--python-version", IMAGE_PYTHON, "--implementation", "cp"]
    abi = "cp" + IMAGE_PYTHON.replace(".", "")
    for a in (abi, "abi3", "none"):
        args += ["--abi", a]
    for p in plats:
        args += ["--platform", p]
    return args


async def _make_wheels(tree: SourceTree, snapshot: Path, out: Path, extras: list[str]) -> None:
    """jdkit's wheel into out/jdkit, every dependency's into out/deps."""
    py = sys.executable
    pip = [py, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    (out / "jdkit").mkdir(parents=True)
    (out / "deps").mkdir()
    wheel_cmd = [*pip, "wheel", "--no-deps", "--wheel-dir", str(out / "jdkit"), str(snapshot)]
    if importlib.util.find_spec("hatchling") is not None:  # else pip fetches it
        wheel_cmd.insert(len(pip) + 1, "--no-build-isolation")
    await _run(wheel_cmd, "building the jdkit wheel")
    (wheel,) = (out / "jdkit").glob("jdkit-*.whl")
    requirement = f"jdkit[{','.join(extras)}] @ {wheel.as_uri()}" if extras else str(wheel)

    # A persistent wheelhouse: resolve from it offline when it already has
    # everything, and top it up from the index only when it does not.
    house = tree.cache_dir / "wheels"
    house.mkdir(parents=True, exist_ok=True)
    download = [*pip, "download", "--quiet", *_platform_args()]
    offline = [
        *download,
        "--no-index",
        "--find-links",
        str(house),
        "-d",
        str(out / "deps"),
        requirement,
    ]
    try:
        await _run(offline, "resolving jdkit's dependencies from the local wheelhouse")
    except ImageBuildError:
        log.info("fetching wheels for the JD image into %s", house)
        await _run(
            [*download, "-d", str(house), requirement],
            f"downloading jdkit's dependencies (CPython {IMAGE_PYTHON}, manylinux wheels)",
        )
        for stray in house.glob("jdkit-*"):
            stray.unlink()  # the wheel is made afresh each time
        await _run(offline, "resolving jdkit's dependencies from the local wheelhouse")
    for stray in (out / "deps").glob("jdkit-*"):
        stray.unlink()


async def ensure_jd_image(docker: Docker, tree: SourceTree, *, force: bool = False) -> str:
    """`jdkit/jd:dev` for the checkout's current source; rebuilt when it changed."""
    want = jd_context_hash(tree)
    async with _file_lock(JD_IMAGE):
        labels = await _labels(docker, JD_IMAGE)
        if not force and labels is not None and labels.get(CONTEXT_LABEL) == want:
            return JD_IMAGE
        await ensure_base_image(docker, tree, BASE_PYTHON)
        extras = _jd_extras(tree)
        log.info("building %s (source %s)", JD_IMAGE, want)
        with tempfile.TemporaryDirectory(prefix="jdkit-jd-image-") as tmp:
            # Build from a snapshot of exactly the hashed files.
            snapshot = Path(tmp) / "src"
            files = jd_source_files(tree)
            for rel in files:
                if rel.parts[0] == "docker":
                    continue
                dest = snapshot / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(tree.root / rel, dest)
            if not (snapshot / "README.md").exists():
                (snapshot / "README.md").write_text("jdkit\n")  # pyproject names it
            wheels = Path(tmp) / "wheels"
            await _make_wheels(tree, snapshot, wheels, extras)
            ctx: dict[str, tuple[bytes, int]] = {
                "Dockerfile": ((tree.root / "docker/jd/Dockerfile").read_bytes(), 0o644)
            }
            for sub in ("deps", "jdkit"):
                for w in sorted((wheels / sub).iterdir()):
                    ctx[f"{sub}/{w.name}"] = (w.read_bytes(), 0o644)
            await _build(
                docker,
                _context(ctx),
                JD_IMAGE,
                {CONTEXT_LABEL: want},
                {"BASE": BASE_PYTHON, "JDKIT_EXTRAS": ",".join(extras) or "postgres"},
            )
    return JD_IMAGE


async def ensure_images(
    docker: Docker | None = None,
    *,
    postgres: bool = True,
    jd: bool = True,
    force: bool = False,
    docker_host: str | None = None,
) -> list[str]:
    """Make sure the local images exist and match the checkout; build what does not.

    Returns the tags checked. Quick (two image inspections) when all is up to
    date; a few seconds to rebuild the JD image after a source change; about a
    minute more for each missing base image.
    """
    tree = find_source_tree()
    if docker is None:
        import aiodocker

        async with aiodocker.Docker(url=docker_host) as own:
            return await ensure_images(own, postgres=postgres, jd=jd, force=force)
    tags = []
    if postgres:
        tags.append(await ensure_postgres_image(docker, tree, force=force))
    if jd:
        tags.append(await ensure_jd_image(docker, tree, force=force))
    return tags


async def stale_images(docker: Docker) -> list[str]:
    """The local images that are missing or do not match the checkout."""
    tree = find_source_tree()
    stale = []
    for tag, want, label in (
        (BASE_POSTGRES, rootfs_spec_hash(tree, BASE_POSTGRES), ROOTFS_LABEL),
        (BASE_PYTHON, rootfs_spec_hash(tree, BASE_PYTHON), ROOTFS_LABEL),
        (POSTGRES_IMAGE, postgres_context_hash(tree), CONTEXT_LABEL),
        (JD_IMAGE, jd_context_hash(tree), CONTEXT_LABEL),
    ):
        labels = await _labels(docker, tag)
        if labels is None or labels.get(label) != want:
            stale.append(tag)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/docker_images.py",
        description="Build the local images of jdkit's Docker provider (no registry needed).",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the top images")
    parser.add_argument("--only", choices=["jd", "postgres"], help="just this image")
    parser.add_argument(
        "--check",
        action="store_true",
        help="build nothing; exit 1 when an image is missing or stale",
    )
    parser.add_argument("--docker-host", help="engine URL (default: DOCKER_HOST or the socket)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="[images] %(message)s"
    )

    async def go() -> int:
        import aiodocker

        async with aiodocker.Docker(url=args.docker_host) as docker:
            if args.check:
                stale = await stale_images(docker)
                for tag in stale:
                    print(f"missing or stale: {tag}")
                return 1 if stale else 0
            tags = await ensure_images(
                docker,
                postgres=args.only in (None, "postgres"),
                jd=args.only in (None, "jd"),
                force=args.force,
            )
            for tag in tags:
                print(f"ready: {tag}")
            return 0

    try:
        return anyio.run(go)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
