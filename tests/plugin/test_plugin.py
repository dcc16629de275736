"""The pytest plugin, run for real: pytester writes test files and runs pytest on
them in a subprocess under pytest-asyncio strict mode, auto mode, and anyio's
plugin, and the outcomes are checked."""

from __future__ import annotations

import os
import socket
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

pytest_plugins = ["pytester"]

_HAS_ENTRY_POINT = any(ep.value == "jdkit.pytest_plugin" for ep in entry_points(group="pytest11"))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in list(os.environ):
        if k.startswith(("JD_", "JDKIT_")) or k in ("CI", "DOCKER_HOST"):
            monkeypatch.delenv(k)


def run(pytester: pytest.Pytester, *args: str, mode: str = "strict") -> pytest.RunResult:
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        """
    )
    extra = [] if _HAS_ENTRY_POINT else ["-p", "jdkit.pytest_plugin"]
    return pytester.runpytest_subprocess(*extra, "-p", "no:cacheprovider", "-rs", *args)


COMMON = """
import os, uuid
import pytest
from jdkit.pb import job, node

def key():
    return os.urandom(32).hex()

def spec():
    return f'type = "offchainreporting2"\\nexternalJobID = "{uuid.uuid4()}"\\n'

async def register(jd, name="n", **labels):
    from jdkit.pb import label
    req = node.RegisterNodeRequest(
        name=name, public_key=key(),
        labels=[label.Label(key=k, value=v) for k, v in labels.items()])
    return (await jd.register_node(req)).node
"""


def test_strict_mode_fixtures_isolation_node_side_and_dry_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        COMMON
        + """
@pytest.mark.asyncio
async def test_register_propose_approve(jd, jd_server):
    n = await register(jd, env="dev")
    p = (await jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec()))).proposal
    approved = await jd_server.approve_proposal(p.id)
    assert approved.status == job.ProposalStatus.APPROVED
    got = (await jd.get_proposal(job.GetProposalRequest(id=p.id))).proposal
    assert got.status == job.ProposalStatus.APPROVED

@pytest.mark.asyncio
async def test_each_test_starts_empty(jd):
    assert (await jd.list_nodes()).total_count == 0
    await register(jd)

@pytest.mark.asyncio
async def test_still_empty_after_a_test_that_wrote(jd):
    assert (await jd.list_nodes()).nodes == []

@pytest.mark.asyncio
async def test_dry_run_journal(jd_dry_run, jd, jd_server):
    n = await register(jd)                      # a real write through the normal client
    writes = jd_server.write_calls
    await jd_dry_run.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec()))
    await register(jd_dry_run, "planned")
    assert jd_dry_run.journal.methods() == ["ProposeJob", "RegisterNode"]
    assert "propose job" in jd_dry_run.journal.plan()
    assert jd_server.write_calls == writes      # nothing was sent
    assert (await jd.list_nodes()).total_count == 1

@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop(jd):
    assert (await jd.version()).version

@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop(jd, jd_server):
    n = await register(jd)
    await jd_server.set_node_connected(n.id)
    assert (await jd.get_node(node.GetNodeRequest(id=n.id))).node.is_connected

def test_sync_test_can_use_the_server(jd_server):
    assert jd_server.address.startswith("127.0.0.1:")
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=7)


def test_auto_mode_and_user_fixtures_at_every_scope(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest, pytest_asyncio
from jdkit.testing import jd_client_factory

# a session-scoped client, used from function-scoped loops below
jd_session = jd_client_factory("jd_server", scope="session", reset=False)

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def csa_key(jd_session):
    # a session-scoped async fixture on a session loop, using a jdkit client
    return await jd_session.get_csa_public_key()

@pytest_asyncio.fixture
async def registered(jd):
    from jdkit.pb import node
    import os
    return (await jd.register_node(node.RegisterNodeRequest(
        name="fx", public_key=os.urandom(32).hex()))).node
"""
    )
    pytester.makepyfile(
        COMMON
        + """
async def test_no_marker_needed_in_auto_mode(jd, registered):
    assert (await jd.list_nodes()).nodes[0].id == registered.id

async def test_session_fixture_on_a_function_loop(jd_session, csa_key):
    assert await jd_session.get_csa_public_key() == csa_key

async def test_session_client_again_on_another_loop(jd_session):
    assert (await jd_session.version()).version

class TestClassScope:
    async def test_one(self, jd):
        await register(jd)
        assert (await jd.list_nodes()).total_count == 1

    async def test_two(self, jd):
        assert (await jd.list_nodes()).total_count == 0
"""
    )
    result = run(pytester, mode="auto")
    result.assert_outcomes(passed=5)


ANYIO_TESTS = (
    COMMON
    + """
@pytest.fixture
def anyio_backend():
    return "asyncio"          # grpclib (under jdkit) runs on asyncio only

@pytest.mark.anyio
async def test_anyio_register(jd, jd_server):
    n = await register(jd)
    p = (await jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec()))).proposal
    assert (await jd_server.reject_proposal(p.id)).status == job.ProposalStatus.REJECTED

@pytest.mark.anyio
async def test_anyio_isolated(jd):
    assert (await jd.list_nodes()).total_count == 0

@pytest.fixture
async def two_nodes(jd):      # an anyio async fixture on top of jd
    return [await register(jd, "a"), await register(jd, "b")]

@pytest.mark.anyio
async def test_anyio_fixture(jd, two_nodes):
    assert {n.id for n in (await jd.list_nodes()).nodes} == {n.id for n in two_nodes}
"""
)


def test_anyio_plugin_alongside_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ANYIO_TESTS)
    run(pytester).assert_outcomes(passed=3)


def test_anyio_plugin_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ANYIO_TESTS)
    pytester.makeini("[pytest]\n")
    extra = [] if _HAS_ENTRY_POINT else ["-p", "jdkit.pytest_plugin"]
    result = pytester.runpytest_subprocess(*extra, "-p", "no:asyncio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_failing_test_still_tears_everything_down(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    record = tmp_path / "address"
    pytester.makepyfile(
        COMMON
        + f"""
@pytest.mark.asyncio
async def test_fails_mid_way(jd, jd_server):
    open({str(record)!r}, "w").write(jd_server.address)
    await register(jd)
    assert False, "the user's test fails"

@pytest.fixture
def broken(jd):
    raise RuntimeError("the user's fixture fails")

@pytest.mark.asyncio
async def test_with_broken_fixture(broken):
    pass

@pytest.mark.asyncio
async def test_after_the_failures_state_is_clean(jd):
    assert (await jd.list_nodes()).total_count == 0
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*the user's test fails*"])
    # the process ended (no thread left serving) and the port is closed
    host, port = record.read_text().rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass


def test_jd_docker_is_opt_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

def test_uses_docker_without_opting_in(jd_docker):
    raise AssertionError("must not run")

def test_plain():
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*--jd-docker*@pytest.mark.jd_docker*"])


def test_jd_docker_without_an_engine_skips_unless_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    pytester.makepyfile(
        """
import pytest

@pytest.mark.jd_docker
def test_marked(jd_docker):
    raise AssertionError("must not run")

def test_by_flag(jd_docker):
    raise AssertionError("must not run")
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=0, skipped=2)
    result.stdout.fnmatch_lines(["*no Docker engine*no-docker.sock*"])

    result = run(pytester, "--jd-docker")
    result.assert_outcomes(skipped=2)

    monkeypatch.setenv("CI", "true")
    result = run(pytester, "--jd-docker")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*CI is set, so this is not skipped*"])


def test_factories_file_db_no_reset_auth_and_remote(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    db = tmp_path / "jd.sqlite"
    pytester.makeconftest(
        f"""
import pytest
from jdkit.testing import jd_client_factory, jd_remote_factory, jd_server_factory
from jdkit.auth import StaticToken
from jdkit._server._auth import StaticTokens

file_server = jd_server_factory(scope="module", db={str(db)!r}, insecure_dev_secret=True)
kept = jd_client_factory("file_server", reset=False)
secured_server = jd_server_factory(auth=StaticTokens(["sesame"]))
authed = jd_client_factory("secured_server", auth=StaticToken("sesame"))
unauthed = jd_client_factory("secured_server")
planner = jd_client_factory("file_server", dry_run=True, reset=False)
remote = jd_remote_factory()
"""
    )
    pytester.makepyfile(
        COMMON
        + f"""
import jdkit

@pytest.mark.asyncio
async def test_first_writes(kept):
    await register(kept, "keep-me")

@pytest.mark.asyncio
async def test_second_sees_it(kept, planner):
    assert [n.name for n in (await kept.list_nodes()).nodes] == ["keep-me"]
    await register(planner, "only-planned")
    assert len(planner.journal) == 1

@pytest.mark.asyncio
async def test_tokens(authed, unauthed):
    assert (await authed.version()).version
    with pytest.raises(jdkit.UnauthenticatedError):
        await unauthed.version()

@pytest.mark.asyncio
async def test_remote(remote):
    assert (await remote.version()).version

def test_database_file_exists():
    assert os.path.exists({str(db)!r})
"""
    )
    # without JD_GRPC_URL the remote fixture skips, saying why
    result = run(pytester)
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*JD_GRPC_URL is not set*"])


def test_remote_factory_reaches_the_url(pytester: pytest.Pytester) -> None:
    from jdkit.testing import ThreadedJD

    srv = ThreadedJD.start()
    try:
        pytester.makeconftest(
            "from jdkit.testing import jd_remote_factory\nremote = jd_remote_factory()\n"
        )
        pytester.makepyfile(
            """
import pytest

@pytest.mark.asyncio
async def test_remote(remote):
    assert str(remote.target).endswith(remote.target.host + ":" + str(remote.target.port))
    assert (await remote.version()).version
"""
        )
        os.environ["JD_GRPC_URL"] = srv.address
        try:
            run(pytester).assert_outcomes(passed=1)
        finally:
            del os.environ["JD_GRPC_URL"]
    finally:
        srv.stop()


def test_plugin_help_lists_the_option(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--jd-docker*"])
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["*jd_docker*"])


def test_doc_example_in_module_docstring_is_current() -> None:
    import jdkit.pytest_plugin as plugin

    for name in ("jd_server", "jd", "jd_dry_run", "jd_docker"):
        assert hasattr(plugin, name)
        assert f"`{name}`" in (plugin.__doc__ or "")
    assert "jdkit.testing" in (plugin.__doc__ or "")


def test_jd_nodes_play_real_nodes_over_the_node_port(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        COMMON
        + """
@pytest.mark.asyncio
async def test_simulated_node_approves(jd, jd_nodes):
    sim = jd_nodes(on_proposal="approve", version="2.0.0")
    req = node.RegisterNodeRequest(name="sim", public_key=sim.public_key)
    n = (await jd.register_node(req)).node
    async with sim:
        assert (await jd.get_node(node.GetNodeRequest(id=n.id))).node.version == "2.0.0"
        p = (await jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=spec()))).proposal
        await sim.wait_until(lambda: bool(sim.proposals) and sim.proposals[0].answer == "approved")
        got = (await jd.get_proposal(job.GetProposalRequest(id=p.id))).proposal
        assert got.status == job.ProposalStatus.APPROVED

@pytest.mark.asyncio
async def test_reset_between_tests_forgets_the_node(jd, jd_nodes):
    assert (await jd.list_nodes()).nodes == []
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)


def test_testing_without_pytest_says_which_extra_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pytest'] = None\n"  # as if pytest were not installed
        "try:\n    import jdkit.testing\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ImportError |"), out.stdout + out.stderr
    assert "jdkit[pytest]" in out.stdout
