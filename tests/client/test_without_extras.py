"""The node protocol's errors and plain types import without `jdkit[node]`;
what needs the extra says which one to install."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('OpenSSL', 'websockets'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def test_node_errors_and_types_need_no_node_extra() -> None:
    code = BLOCK + (
        "import jdkit\n"
        "from jdkit import NodeProtocolError, WsrpcTimeoutError, ReceivedProposal, NodeKeyLike\n"
        "assert issubclass(NodeProtocolError, jdkit.JDError)\n"
        "assert NodeProtocolError.__module__ == 'jdkit'\n"
        "try:\n"
        "    jdkit.SimulatedNode\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "jdkit.SimulatedNode needs the 'node' extra: pip install 'jdkit[node]'" in out
