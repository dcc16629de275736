"""Hand-written modules stay small enough to read in one sitting.

Issue 8 asked for modules split by concern, none over ~500 hand-written
lines without a reason. Size is a proxy: a module that keeps growing past it
has usually picked up a second concern that deserves its own name. This test
keeps the rule true as features land; a module that must be longer is listed
in `REASONS` with the reason, so the exception is a decision someone wrote
down rather than drift.

It covers the package and the project's own tooling (`scripts/`,
`benchmarks/`). Generated code does not count: everything under `jdkit/_proto` (written by
`scripts/gen_protos.py`) and any file marked "DO NOT EDIT" in its header
(the fast codec written by `scripts/gen_fastcodec.py`).
"""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "jdkit"
TREES = (PACKAGE, ROOT / "scripts", ROOT / "benchmarks")
LIMIT = 500

#: module (relative to the repository) -> why it is longer than LIMIT
REASONS: dict[str, str] = {
    "scripts/docker_images.py": (
        "the Docker provider loads this one file by path from a source checkout "
        "(it is not in the wheel; jdkit/_providers/_docker/_images.py), so it "
        "cannot import sibling modules without a loader of its own"
    ),
}


def _generated(path: pathlib.Path) -> bool:
    if (PACKAGE / "_proto") in path.parents:
        return True
    head = path.read_text(encoding="utf-8").splitlines()[:5]
    return any("DO NOT EDIT" in line for line in head)


def _hand_written() -> dict[str, int]:
    return {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for tree in TREES
        for path in sorted(tree.rglob("*.py"))
        if not _generated(path)
    }


def test_no_hand_written_module_is_over_the_limit() -> None:
    sizes = _hand_written()
    assert len(sizes) > 50, "the walk found too few modules: is ROOT right?"
    over = {name: n for name, n in sizes.items() if n > LIMIT and name not in REASONS}
    assert not over, (
        f"hand-written modules over {LIMIT} lines (split by concern, or add the "
        f"reason to REASONS): {over}"
    )


def test_every_exception_is_still_needed() -> None:
    sizes = _hand_written()
    stale = {name for name in REASONS if sizes.get(name, 0) <= LIMIT}
    assert not stale, f"REASONS lists modules that are gone or within the limit: {stale}"


def test_generated_code_is_recognised() -> None:
    # the walk must not mistake the generated codec for hand-written code, nor
    # hand-written codec runtime for generated code
    sizes = _hand_written()
    assert "jdkit/_codec/_generated.py" not in sizes
    assert "jdkit/_codec/_runtime.py" in sizes
    assert not any(name.startswith("jdkit/_proto/") for name in sizes)
