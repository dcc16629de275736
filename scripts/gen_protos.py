"""Regenerate jdkit/_proto from proto/ with betterproto2 (async client + async server).

`--check` regenerates into a temporary folder and fails when the committed
code differs, which is how CI catches hand edits and stale stubs.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "jdkit" / "_proto"
OPTS = "client_generation=async,server_generation=async"


def generate(dest: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_betterproto2_out={dest}",
            f"--python_betterproto2_opt={OPTS}",
            *files,
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)


def tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    check = "--check" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_proto"
        fresh.mkdir()
        generate(fresh)
        if check:
            new, old = tree(fresh), tree(OUT)
            drift = sorted(set(new) ^ set(old)) + sorted(
                k for k in set(new) & set(old) if not filecmp.cmp(new[k], old[k], shallow=False)
            )
            if drift:
                print(
                    "generated code differs from proto/ (run `nox -s protos`):", *drift, sep="\n  "
                )
                return 1
            print("jdkit/_proto matches proto/")
            return 0
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(fresh, OUT)
        print(f"regenerated {len(tree(OUT))} files in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
