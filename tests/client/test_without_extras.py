"""Every public name imports without the optional extras (pyproject's
optional-dependencies); what needs one says which to install when used."""

from __future__ import annotations

import subprocess
import sys

#: the top-level modules the extras provide
OPTIONAL = (
    *("OpenSSL", "websockets", "httpx", "aiobotocore", "jwt", "aiodocker"),
    *("opentelemetry", "psycopg", "rich"),
)

BLOCK = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], capture_output=True, text=True, check=True
    ).stdout


def test_every_public_name_imports_without_any_extra() -> None:
    out = _run(
        "import importlib, jdkit\n"
        "ns = {}\n"
        "exec('from jdkit import *', ns)\n"
        "for m in ('jdkit', 'jdkit.auth', 'jdkit.server', 'jdkit.testing', 'jdkit.pb',\n"
        "          'jdkit.selectors', 'jdkit.display'):\n"
        "    mod = importlib.import_module(m)\n"
        "    for n in mod.__all__:\n"
        "        getattr(mod, n)\n"
        "import pydoc\n"
        "pydoc.render_doc(jdkit, renderer=pydoc.plaintext)  # help(jdkit)\n"
        "print(len(ns) > 50, ns['NodeProtocolError'].__module__)\n"
    )
    assert out.split() == ["True", "jdkit"]


def test_what_needs_an_extra_names_it() -> None:
    out = _run(
        "import jdkit\n"
        "try:\n"
        "    import jdkit.otel\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "try:\n"
        "    jdkit.SimulatedNode('127.0.0.1:1', '00' * 32, private_key=None)\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert "jdkit.otel needs OpenTelemetry: pip install 'jdkit[otel]'" in out
    assert "jdkit.SimulatedNode needs the `node` extra: pip install 'jdkit[node]'" in out
