"""Keys at rest (issue 10, D6): private database files, and no public dev
secret sealing a key that outlives the process unless asked for by name."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jdkit._exceptions import ConfigError
from jdkit._server import EmbeddedJD, _config
from tests.helpers.server_fixtures import pubkey, served


@pytest.fixture
def no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSA_KEY_ENCRYPTION_SECRET", raising=False)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what makes SQLite's own files 0644
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path | os.DirEntry[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.asyncio
@pytest.mark.usefixtures("usual_umask")
async def test_sqlite_file_wal_and_shm_are_created_0600(tmp_path: Path) -> None:
    db = tmp_path / "jd.sqlite"
    async with served(db=str(db), csa_secret="at-rest-secret") as (srv, _):
        await srv.state.register_node("n", pubkey(1), [])
        files = {p.name: mode(p) for p in os.scandir(tmp_path)}
    assert {"jd.sqlite", "jd.sqlite-wal", "jd.sqlite-shm"} <= files.keys(), files
    assert all(m == 0o600 for m in files.values()), {k: oct(v) for k, v in files.items()}


@pytest.mark.asyncio
async def test_an_existing_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "shared.sqlite"
    db.touch(mode=0o644)
    db.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="jdkit.server")
    async with served(db=str(db), csa_secret="at-rest-secret"):
        pass
    assert "readable by others (mode 0644)" in caplog.text and "chmod 600" in caplog.text


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_env_secret")
@pytest.mark.parametrize(
    "db", ["FILE", "sqlite:///FILE", "postgresql://jd:pw@127.0.0.1:1/jd", "postgres://h/jd"]
)
async def test_a_lasting_database_without_a_secret_is_refused(tmp_path: Path, db: str) -> None:
    db = db.replace("FILE", str(tmp_path / "jd.sqlite"))
    with pytest.raises(ConfigError) as info:
        await EmbeddedJD.start(db=db)
    assert info.value.field == "CSA_KEY_ENCRYPTION_SECRET"
    assert "insecure_dev_secret=True" in str(info.value)
    assert "pw" not in str(info.value)  # the URL is shown redacted
    assert os.listdir(tmp_path) == []  # refused before anything was created


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_env_secret")
async def test_the_dev_secret_on_a_file_needs_the_explicit_opt_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "dev.sqlite")
    caplog.set_level(logging.WARNING, logger="jdkit.server")
    async with served(db=db, insecure_dev_secret=True):
        pass
    assert "public dev secret (insecure_dev_secret=True)" in caplog.text
    with pytest.raises(ConfigError):  # the key is sealed with the dev secret, not another
        await EmbeddedJD.start(db=db, csa_secret="another secret")


@pytest.mark.asyncio
async def test_the_secret_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "env.sqlite")
    monkeypatch.setenv("CSA_KEY_ENCRYPTION_SECRET", "from-the-environment")
    async with served(db=db):
        pass
    monkeypatch.delenv("CSA_KEY_ENCRYPTION_SECRET")
    async with served(db=db, csa_secret="from-the-environment"):
        pass
    with pytest.raises(ConfigError, match="does not decrypt"):
        await EmbeddedJD.start(db=db, csa_secret="something else")


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_env_secret")
async def test_in_memory_keeps_the_dev_secret_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "_warned", set())
    caplog.set_level(logging.WARNING, logger="jdkit.server")
    async with served():
        pass
    async with served():
        pass
    warnings = [r for r in caplog.records if "CSA_KEY_ENCRYPTION_SECRET" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not once per test server


def _serve(args: list[str], env_secret: str | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CSA_KEY_ENCRYPTION_SECRET"}
    if env_secret is not None:
        env["CSA_KEY_ENCRYPTION_SECRET"] = env_secret
    return subprocess.Popen(
        [sys.executable, "-m", "jdkit", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_jdkit_serve_refuses_a_file_without_a_secret_in_one_line(tmp_path: Path) -> None:
    proc = _serve(["--db", str(tmp_path / "jd.sqlite")], None)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and out == ""
    assert "CSA_KEY_ENCRYPTION_SECRET" in err and "--insecure-dev-secret" in err
    assert "Traceback" not in err
    assert not (tmp_path / "jd.sqlite").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_jdkit_serve_starts_with_the_flag_or_a_secret(tmp_path: Path, how: str) -> None:
    db = tmp_path / "jd.sqlite"
    args = ["--db", str(db)] + (["--insecure-dev-secret"] if how == "flag" else [])
    proc = _serve(args, "a-real-secret" if how == "env" else None)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("listening on ")
        assert mode(db) == 0o600
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
