"""Every example runs, as a user would run it: a subprocess of this interpreter.

The notebook has its own test (test_notebook.py). The Docker suite runs when
a Docker engine answers, or when CI is set (then a missing engine fails it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jdkit.testing import docker_engine_problem
from tests.helpers.paths import ROOT

EXAMPLES = ROOT / "examples"

#: script -> (modules it needs, lines its output must contain)
SCRIPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "quickstart.py": (
        (),
        (
            "approved by 2 nodes",
            "revision 2: 1 node(s) not yet approved: node-b",
            "quickstart finished",
        ),
    ),
    "dry_run_plan.py": ((), ("Dry-run plan: 3 writes (none sent)", "nothing was written")),
    "metrics_interceptor.py": ((), ("GetNode", "NOT_FOUND=2", "INVALID_ARGUMENT=1")),
    "custom_provider.py": ((), ("after a restart the JD still knows: ['persistent']",)),
    "simulated_node.py": (
        ("websockets", "OpenSSL"),
        (
            "GetNode: is_connected=True version=2.21.0",
            "ListProposals: APPROVED / ACKNOWLEDGED, revision 1",
            "chain configs the node reported: ['11155111']",
            "simulated node example finished",
        ),
    ),
    "cognito_auth.py": (
        ("moto", "boto3", "aiobotocore", "jwt", "httpx"),
        (
            "without a token: UNAUTHENTICATED",
            "with a Cognito token: registered node_",
            "RemoteProvider.from_env: 1 node(s)",
            "jdkit nodes list (JD_COGNITO_* in the environment): ['authed']",
        ),
    ),
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JD_", "JDKIT_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_every_example_script_is_run_here() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(SCRIPTS), "add new examples to SCRIPTS"
    assert (EXAMPLES / "walkthrough.ipynb").exists()
    assert (EXAMPLES / "docker_suite" / "test_deploy.py").exists()


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs(script: str, tmp_path: Path) -> None:
    needs, expected = SCRIPTS[script]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script} needs {', '.join(missing)} (the test/cognito extras)")
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}\n{r.stderr}"
    for line in expected:
        assert line in r.stdout, f"{script}: {line!r} not in\n{r.stdout}"
    assert "Traceback" not in r.stderr


def test_docker_suite_example(tmp_path: Path) -> None:
    problem = docker_engine_problem()
    if problem is not None and not os.environ.get("CI"):
        pytest.skip(f"examples/docker_suite needs Docker: {problem}")
    r = subprocess.run(
        [
            sys.executable, "-m", "pytest", str(EXAMPLES / "docker_suite"),
            "--jd-docker", "-p", "no:cacheprovider", "-q", "-rs",
            "--rootdir", str(ROOT),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, f"docker suite failed:\n{r.stdout[-5000:]}\n{r.stderr[-3000:]}"
    assert "5 passed" in r.stdout, r.stdout[-2000:]
