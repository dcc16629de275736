"""The typed user script runs (mypy checks it in `nox -s typecheck`)."""

from __future__ import annotations

import pytest

from .user_script import deploy


@pytest.mark.asyncio
async def test_user_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    status = await deploy()
    assert len(status) == 7 and {r.revision for r in status} == {2}
    out = capsys.readouterr().out
    assert "rollout of" in out and "APPROVED 7" in out
