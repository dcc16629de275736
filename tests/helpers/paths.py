"""Where the tests find the checkout and the published JD contract.

One place, so moving a test file between component folders never changes
what `Path(__file__).parents[n]` means.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository checkout (the folder holding pyproject.toml)."""


def jd_api(name: str) -> Path:
    """A file of the shared JD facts (`shared/jd-api/`).

    CI copies shared/ beside the checkout and worktrees have it as a symlink
    beside them. When nothing exists the path beside the checkout is
    returned, so the caller's error names where it looked.
    """
    for p in (ROOT.parent / "shared" / "jd-api" / name, Path("/work/shared/jd-api") / name):
        if p.exists():
            return p
    return ROOT.parent / "shared" / "jd-api" / name
