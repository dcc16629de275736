"""`python -m jdkit.server --help` explains the environment it reads instead of
failing for want of CSA_KEY_ENCRYPTION_SECRET; stray arguments are refused."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CSA_KEY_ENCRYPTION_SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "jdkit.server", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_the_environment_and_exits_0() -> None:
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    for var in ("CSA_KEY_ENCRYPTION_SECRET", "DATABASE_URL", "PORT", "NODE_RPC_PORT"):
        assert var in proc.stdout


def test_an_unexpected_argument_is_a_usage_error() -> None:
    proc = _run("--port", "1")
    assert proc.returncode == 2
    assert "unexpected arguments" in proc.stderr and "usage:" in proc.stderr
