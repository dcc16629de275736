"""Retries, deadlines and TLS against the real embedded JD: restarts, faults, mTLS."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from pathlib import Path

import pytest
import trustme

from jdkit import (
    DeadlineExceededError,
    JDError,
    JobDistributor,
    RetryPolicy,
    TLSConfig,
    UnavailableError,
)
from jdkit._server import EmbeddedJD
from jdkit.pb import job, node
from tests.helpers.faultproxy import FaultProxy

SECRET = "resilience-test-secret"

pytestmark = pytest.mark.asyncio

PATIENT = RetryPolicy(max_attempts=30, initial_backoff=0.05, max_backoff=0.3)


def _spec(ext: str) -> str:
    return f'type = "offchainreporting2"\nexternalJobID = "{ext}"\n'


async def test_restart_mid_workload_reads_recover_and_writes_never_duplicate(tmp_path) -> None:
    db = str(tmp_path / "jd.sqlite")
    srv = await EmbeddedJD.start(db=db, csa_secret=SECRET)
    port = srv.port
    async with JobDistributor.connect(srv.address, retry=PATIENT, timeout=20) as jd:
        registered = await jd.register_node(
            node.RegisterNodeRequest(name="n", public_key="ab" * 32)
        )
        assert registered.node is not None
        node_id = registered.node.id
        stop = asyncio.Event()
        reads_ok = 0
        write_results: dict[str, bool | JDError] = {}

        async def reader() -> None:
            nonlocal reads_ok
            while not stop.is_set():
                await jd.list_nodes()  # must never fail: reads are retried
                reads_ok += 1
                await asyncio.sleep(0.005)

        async def writer(i: int) -> None:
            while not stop.is_set():
                ext = str(uuid.uuid4())
                try:
                    await jd.propose_job(job.ProposeJobRequest(node_id=node_id, spec=_spec(ext)))
                    write_results[ext] = True
                except UnavailableError as exc:
                    # only a request that may have reached the server surfaces here
                    assert exc.reached_server is not False
                    write_results[ext] = exc
                await asyncio.sleep(0.01)

        async def restarter() -> None:
            nonlocal srv
            for _ in range(3):
                await asyncio.sleep(0.3)
                await srv.stop(grace=0.2)
                await asyncio.sleep(0.2)
                srv = await EmbeddedJD.start(db=db, port=port, csa_secret=SECRET)
            await asyncio.sleep(0.3)
            stop.set()

        await asyncio.gather(reader(), reader(), writer(1), writer(2), restarter())

        jobs = (await jd.list_jobs()).jobs
        by_uuid = {j.uuid: j for j in jobs}
        for ext, outcome in write_results.items():
            if outcome is True:
                assert ext in by_uuid, "an acknowledged write was lost"
        for j in jobs:
            assert len(j.proposal_ids) == 1, f"job {j.uuid} got a duplicated proposal"
        assert reads_ok > 10
        assert sum(1 for v in write_results.values() if v is True) > 5
    await srv.stop()


@pytest.mark.parametrize("mode", ["pass", "reset", "stall", "blackhole"])
async def test_every_call_ends_within_its_deadline_whatever_the_network_does(mode: str) -> None:
    async with EmbeddedJD.start() as srv, FaultProxy(srv.port) as proxy:
        proxy.mode = mode
        proxy.stall_after = 40  # let part of the HTTP/2 preface through, then stall
        deadline = 0.8
        async with JobDistributor.connect(f"127.0.0.1:{proxy.port}", timeout=deadline) as jd:
            for call in (
                jd.list_nodes(),
                jd.version(),
                jd.register_node(node.RegisterNodeRequest(name="x", public_key="cd" * 32)),
            ):
                t0 = time.monotonic()
                try:
                    await call
                    outcome = "ok"
                except JDError as exc:
                    outcome = type(exc).__name__
                elapsed = time.monotonic() - t0
                assert elapsed < deadline + 0.5, f"{mode}: {outcome} after {elapsed:.2f}s"
                if mode == "pass":
                    assert outcome == "ok"
                else:
                    assert outcome != "ok"
        if mode == "reset":
            assert proxy.connections > 1  # reads and refused-before-sent writes were retried


async def test_connection_dropped_mid_session_recovers() -> None:
    async with EmbeddedJD.start() as srv, FaultProxy(srv.port) as proxy:
        async with JobDistributor.connect(f"127.0.0.1:{proxy.port}", timeout=5) as jd:
            await jd.version()
            proxy.drop_all()
            assert (await jd.version()).version  # a fresh connection, transparently


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    ca = trustme.CA()
    d: Path = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("jd.test")
    client = ca.issue_cert("deployer@jd.test")
    paths = {"ca": d / "ca.pem", "server": d / "server.pem", "client": d / "client.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths["server"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return {k: str(v) for k, v in paths.items()}


def _mtls_server_context(pki: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    ctx.load_cert_chain(pki["server"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def test_mutual_tls(pki: dict[str, str]) -> None:
    async with EmbeddedJD.start(ssl=_mtls_server_context(pki)) as srv:
        good = TLSConfig(
            ca_file=pki["ca"],
            cert_file=pki["client"],
            key_file=pki["client"],
            server_name="jd.test",
        )
        async with JobDistributor.connect(srv.address, tls=good, timeout=5) as jd:
            assert (await jd.version()).version

        no_cert = TLSConfig(ca_file=pki["ca"], server_name="jd.test")
        async with JobDistributor.connect(
            srv.address, tls=no_cert, timeout=3, retry=RetryPolicy.disabled()
        ) as jd:
            with pytest.raises(UnavailableError) as info:
                await jd.version()
        assert "TLS" in str(info.value) or "stream" in str(info.value)

        wrong_name = TLSConfig(
            ca_file=pki["ca"],
            cert_file=pki["client"],
            key_file=pki["client"],
            server_name="other.test",
        )
        async with JobDistributor.connect(
            srv.address, tls=wrong_name, timeout=3, retry=RetryPolicy.disabled()
        ) as jd:
            with pytest.raises(UnavailableError, match="TLS handshake failed"):
                await jd.version()


@pytest.mark.parametrize("db", [":memory:", "file"])
async def test_cancelled_calls_never_wedge_the_embedded_jd(db: str, tmp_path) -> None:
    """Callers giving up mid-call (the server's handler is cancelled at any
    point, BEGIN included) must leave no transaction open behind them."""
    import random

    path = db if db == ":memory:" else str(tmp_path / "jd.sqlite")
    rng = random.Random(7)
    async with (
        EmbeddedJD.start(db=path, csa_secret=SECRET) as srv,
        JobDistributor.connect(srv.address) as jd,
    ):
        for _ in range(300):
            try:
                await asyncio.wait_for(jd.list_nodes(), rng.uniform(0.00005, 0.004))
            except (TimeoutError, DeadlineExceededError):
                pass
        got = await jd.register_node(node.RegisterNodeRequest(name="ok", public_key="ab" * 32))
        assert got.node is not None
        assert [n.name for n in (await jd.list_nodes()).nodes] == ["ok"]
