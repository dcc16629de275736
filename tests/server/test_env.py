"""Starting the embedded JD the way the real JD image is started: from the
environment, with /healthz, as a process that stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jdkit import ConfigError, JobDistributor
from jdkit._server import EmbeddedJD
from jdkit.pb import health
from tests.helpers.paths import ROOT
from tests.helpers.server_fixtures import add_node


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


BASE_ENV = {
    "JDKIT_HOST": "127.0.0.1",
    "PORT": "0",
    "HEALTHZ_PORT": "0",
    "CSA_KEY_ENCRYPTION_SECRET": "s3cret-from-env",
    "NODE_RPC_PORT": "0",
}


@pytest.mark.asyncio
async def test_from_env_serves_grpc_and_healthz(tmp_path: Path) -> None:
    env = {**BASE_ENV, "JDKIT_DB": str(tmp_path / "env.db")}
    async with EmbeddedJD.from_env(env) as srv:
        assert srv.healthz_port
        assert await http_get(srv.healthz_port, "/healthz") == (200, "ok\n")
        assert (await http_get(srv.healthz_port, "/healthz?x=1"))[0] == 200
        assert (await http_get(srv.healthz_port, "/other"))[0] == 404
        assert (await http_get(srv.healthz_port, "/healthz", "POST"))[0] == 405
        assert await http_get(srv.healthz_port, "/healthz", "HEAD") == (200, "")
        async with JobDistributor.connect(srv.address, timeout=5) as jd:
            assert await jd.check_health() == health.HealthCheckResponseServingStatus.SERVING
            await add_node(jd, 1)
    async with EmbeddedJD.from_env(env) as srv:  # same secret, same file: same state
        async with JobDistributor.connect(srv.address, timeout=5) as jd:
            assert len((await jd.list_nodes()).nodes) == 1


@pytest.mark.asyncio
async def test_from_env_config_errors() -> None:
    with pytest.raises(ConfigError, match="CSA_KEY_ENCRYPTION_SECRET"):
        EmbeddedJD.from_env({k: v for k, v in BASE_ENV.items() if k != "CSA_KEY_ENCRYPTION_SECRET"})
    for key, value in [("PORT", "http"), ("HEALTHZ_PORT", "70000"), ("NODE_RPC_PORT", "x")]:
        with pytest.raises(ConfigError, match=key):
            EmbeddedJD.from_env({**BASE_ENV, key: value})
    with pytest.raises(ConfigError, match="Postgres"):
        await EmbeddedJD.from_env({**BASE_ENV, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})


@pytest.mark.asyncio
async def test_start_forms_and_stop_twice() -> None:
    srv = await EmbeddedJD.start()
    assert srv.address == f"127.0.0.1:{srv.port}"
    await srv.stop()
    await srv.stop()
    async with EmbeddedJD(port=0) as srv2:
        assert srv2.port > 0
    with pytest.raises(RuntimeError):
        await srv2.__aenter__()  # one start per object
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="port"):
            await EmbeddedJD.start(port=taken.getsockname()[1])


@pytest.mark.asyncio
async def test_calls_during_stop_are_unavailable_and_stop_is_quick() -> None:
    srv = await EmbeddedJD.start()
    async with JobDistributor.connect(srv.address, timeout=5) as jd:
        await jd.version()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await srv.stop()
        assert loop.time() - t0 < 2
        with pytest.raises(Exception):  # noqa: B017 - gone: any transport/RPC error
            await jd.version()


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=full,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for _ in range(20):
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line:
            break
    proc.kill()
    raise AssertionError(f"no {prefix!r} line; stderr: {proc.communicate()[1]}")


@pytest.mark.asyncio
async def test_python_m_runs_from_env_and_stops_on_sigterm() -> None:
    proc = _spawn(["-m", "jdkit.server"], BASE_ENV)
    try:
        line = await asyncio.to_thread(_wait_line, proc, "listening on ")
        address = line.removeprefix("listening on ")
        hz = await asyncio.to_thread(_wait_line, proc, "healthz on ")
        hz_port = int(hz.rsplit(":", 1)[1].split("/")[0])
        assert (await http_get(hz_port, "/healthz"))[0] == 200
        async with JobDistributor.connect(address, timeout=5) as jd:
            assert (await jd.version()).version
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        assert proc.stderr is not None
        assert "s3cret-from-env" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.asyncio
async def test_python_m_without_secret_fails_clearly() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "CSA_KEY_ENCRYPTION_SECRET"}
    proc = _spawn(["-m", "jdkit.server"], {**env, "CSA_KEY_ENCRYPTION_SECRET": ""})
    _out, err = await asyncio.to_thread(proc.communicate, None, 20)
    assert proc.returncode == 2 and "CSA_KEY_ENCRYPTION_SECRET" in err


@pytest.mark.asyncio
async def test_serve_prints_address_and_stops_on_sigint() -> None:
    code = (
        "import asyncio; from jdkit.server import serve; "
        "asyncio.run(serve('127.0.0.1', 0, ':memory:'))"
    )
    proc = _spawn(["-c", code], {"CSA_KEY_ENCRYPTION_SECRET": ""})
    try:
        line = await asyncio.to_thread(_wait_line, proc, "listening on 127.0.0.1:")
        async with JobDistributor.connect(line.removeprefix("listening on "), timeout=5) as jd:
            await add_node(jd, 1)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
