"""Google's gRPC implementation, built from the project's own protos at test time.

grpcio-tools compiles proto/ into a temporary folder (test-only dependency);
the interop tests use these official stubs as the peer that proves jdkit's
wire format is the real one.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from grpc_tools import protoc

# computed here, not imported: benchmarks/_bench.py loads this file by path
ROOT = Path(__file__).resolve().parents[2]

_cache: dict[str, ModuleType] = {}


def _build() -> Path:
    out = Path(tempfile.mkdtemp(prefix="jdkit-grpcio-"))
    src = out / "src"
    shutil.copytree(ROOT / "proto" / "v1", src / "v1")
    # The health proto's package is what travels on the wire; its file path only
    # names the Python module, which must not shadow the real `grpc` package.
    (src / "jdhealth").mkdir()
    shutil.copy(ROOT / "proto" / "grpc" / "health" / "v1" / "health.proto", src / "jdhealth")
    files = [str(p.relative_to(src)) for p in src.rglob("*.proto")]
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(
        [
            "protoc",
            f"-I{src}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
    )
    if rc != 0:
        raise RuntimeError(f"grpcio-tools failed on proto/ (exit {rc})")
    for pkg in {p.parent for p in out.rglob("*_pb2.py")}:
        d = pkg
        while d != out:
            (d / "__init__.py").touch()
            d = d.parent
    return out


def stubs(name: str) -> Any:
    """E.g. `stubs("v1.node.node_pb2")`, `stubs("jdhealth.health_pb2_grpc")`.

    Any, not ModuleType: the generated classes are untyped, and tests subclass
    the servicers.
    """
    if not _cache:
        sys.path.insert(0, str(_build()))
    if name not in _cache:
        _cache[name] = importlib.import_module(name)
    return _cache[name]
