"""The Docker provider when things go wrong: a JD that dies at start, one that
never gets ready, exceptions and cancellation inside `async with`, a process
killed mid-run. Whatever happens, nothing of the run may stay behind."""

from __future__ import annotations

import os
import signal
import sys
import textwrap

import anyio
import pytest

from jdkit._providers._docker import (
    LABEL_PID,
    LABEL_RUN,
    DockerProvider,
    DockerProviderError,
    sweep_docker,
)
from jdkit.pb import node
from tests.helpers.docker_helpers import (
    assert_nothing_left,
    config,
    engine,
    labelled,
    leftovers,
    require_docker,
)
from tests.helpers.paths import ROOT

pytestmark = [pytest.mark.docker]


@pytest.fixture(autouse=True)
def _engine_required() -> None:
    require_docker()


class Boom(Exception):
    pass


@pytest.mark.asyncio
async def test_jd_that_exits_at_start_raises_with_both_logs_and_no_secrets() -> None:
    cfg = config(
        jd_command=[
            "sh",
            "-c",
            'echo "jd-boom-marker $DATABASE_URL $CSA_KEY_ENCRYPTION_SECRET" >&2; exit 3',
        ]
    )
    provider = DockerProvider(cfg)
    with pytest.raises(DockerProviderError) as caught:
        await provider.initialize()
    message = str(caught.value)
    assert "JD container exited (code 3)" in message
    assert "jd-boom-marker" in message  # JD's log tail
    assert "--- postgres container log" in message
    assert "ready to accept connections" in message  # Postgres's log tail
    assert "[redacted]" in message
    assert cfg.postgres_password not in message and cfg.csa_secret not in message
    await assert_nothing_left(provider.run_id)


@pytest.mark.asyncio
async def test_jd_with_a_bad_database_url_fails_with_its_own_error() -> None:
    cfg = config(jd_env={"DATABASE_URL": "postgresql://jd:wrong@postgres:5432/jd"})
    provider = DockerProvider(cfg)
    with pytest.raises(DockerProviderError, match="JD container exited") as caught:
        await provider.initialize()
    message = str(caught.value)
    assert "password authentication failed" in message  # what Postgres told JD
    assert cfg.postgres_password not in message and cfg.csa_secret not in message
    await assert_nothing_left(provider.run_id)


@pytest.mark.asyncio
async def test_jd_that_never_gets_ready_times_out_with_logs() -> None:
    cfg = config(ready_timeout=6, jd_command=["sh", "-c", "echo sleepy-marker; sleep 600"])
    provider = DockerProvider(cfg)
    with pytest.raises(DockerProviderError) as caught:
        await provider.initialize()
    message = str(caught.value)
    assert "not ready after 6s" in message and "sleepy-marker" in message
    await assert_nothing_left(provider.run_id)


@pytest.mark.asyncio
async def test_exception_inside_async_with_leaves_nothing() -> None:
    provider = DockerProvider(config())
    with pytest.raises(Boom):
        async with provider as jd:
            await jd.register_node(node.RegisterNodeRequest(name="x", public_key=f"{3:064x}"))
            raise Boom
    await assert_nothing_left(provider.run_id)


@pytest.mark.asyncio
async def test_cancellation_inside_async_with_leaves_nothing() -> None:
    provider = DockerProvider(config())
    entered = False
    with anyio.move_on_after(60) as scope:
        async with provider as jd:
            entered = True
            await jd.list_nodes()
            scope.cancel()
            await anyio.sleep(30)  # cancelled here
    assert entered and scope.cancelled_caught
    await assert_nothing_left(provider.run_id)


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [0.3, 1.0, 2.0])
async def test_cancellation_during_start_leaves_nothing(after: float) -> None:
    """Cancelled while creating the network or containers or waiting for them."""
    provider = DockerProvider(config())
    await provider.initialize()  # images built and swept, so timing hits the containers
    await provider.aclose()
    provider = DockerProvider(config())
    with anyio.move_on_after(after) as scope:
        await provider.initialize()
    if scope.cancelled_caught:
        assert provider.run_id is None or await leftovers(provider.run_id) == []
    else:
        await provider.aclose()
    assert await leftovers() == []


_CHILD = textwrap.dedent("""
    import asyncio, sys
    from jdkit._providers._docker import DockerProvider, DockerConfig

    async def main():
        provider = DockerProvider(DockerConfig(ready_timeout=90))
        await provider.initialize()
        print(provider.run_id, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


@pytest.mark.asyncio
async def test_run_of_a_killed_process_is_swept_by_the_next_run() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = await anyio.open_process([sys.executable, "-c", _CHILD], env=env)
    assert child.stdout is not None and child.stderr is not None
    try:
        out = b""
        with anyio.fail_after(180):
            while not out.endswith(b"\n"):
                try:
                    out += await child.stdout.receive()
                except anyio.EndOfStream:
                    err = await child.stderr.receive()
                    pytest.fail(f"child died before it was ready: {err.decode()}")
        run_id = out.decode().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
        await child.aclose()

    # The killed process could not clean up: its run is still there.
    async with engine() as docker:
        containers, networks = await labelled(docker, f"{LABEL_RUN}={run_id}")
    assert len(containers) == 2 and len(networks) == 1
    assert {c["Labels"][LABEL_PID] for c in containers} == {str(child.pid)}

    # A sweep from a live process leaves live runs alone ...
    provider = DockerProvider(config())
    async with provider:
        # ... and the provider's start swept the dead one.
        assert await leftovers(run_id) == []
        assert await sweep_docker() == []  # its own run is alive: untouched
        assert provider.run_id is not None and await leftovers(provider.run_id) != []
    await assert_nothing_left(provider.run_id)
