"""Layering: client → core ← server.

The client side never imports the server package; the server never imports
client internals; the core imports only the core. Modules that put a client
and a server together (providers, testing, the pytest plugin, the CLI) may
use both.

Two checks, because each misses something the other sees:
- a static one over every module's source (`ast`), which also catches imports
  inside functions that a given run may never execute;
- a runtime one in a fresh interpreter, which sees what really loads,
  transitively, third-party modules included (e.g. `sqlite3`).
We chose these over import-linter contracts: no new dependency, and the
runtime half checks what a user pays for, not only what the source says.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "jdkit"

CORE = (
    "jdkit",  # the package: its client names load on first use
    "jdkit._core",
    "jdkit._exceptions",
    "jdkit._exports",
    "jdkit._methods",
    "jdkit._redact",
    "jdkit._signals",  # SIGINT/SIGTERM for the long-running commands of both sides
    "jdkit._compression",
    "jdkit._codec",  # the generated fast codec, both ends of the gRPC API
    # the node protocol's transport, both ends (the JD's node port, SimulatedNode)
    "jdkit._wsrpc._errors",
    "jdkit._wsrpc._keys",
    "jdkit._wsrpc._rpc",
    "jdkit._wsrpc._strict",
    "jdkit._wsrpc._tls",
    "jdkit._wsrpc._ws",
    "jdkit._proto",
    "jdkit.pb",
    "jdkit.selectors",
)
SERVER = ("jdkit._server", "jdkit.server")
#: Put a client and a server together: may import both.
COMPOSITION = (
    "jdkit._providers",
    "jdkit.testing",
    "jdkit.pytest_plugin",
    "jdkit._cli",
    "jdkit._cli_commands",
    "jdkit._cli_output",
    "jdkit.__main__",
)


def _within(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in layer)


def layer_of(module: str) -> str:
    if module in ("jdkit", "jdkit._wsrpc"):  # packages whose __init__ loads nothing
        return "core"
    for name, layer in (("composition", COMPOSITION), ("server", SERVER)):
        if _within(module, layer):
            return name
    if _within(module, CORE[1:]):
        return "core"
    return "client"


ALLOWED = {
    "core": {"core"},
    "server": {"core", "server"},
    "client": {"core", "client"},
    "composition": {"core", "client", "server", "composition"},
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if not name.startswith("jdkit._proto"):
            out[name] = path
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (never executed)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("jdkit"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "jdkit":
                # `from jdkit import x`: x may be a submodule or a lazy client name
                found.update(
                    f"jdkit.{a.name}" if f"jdkit.{a.name}" in _modules() else "jdkit"
                    for a in node.names
                )
            elif node.module.startswith("jdkit"):
                found.add(node.module)
    return found


def test_every_module_imports_only_what_its_layer_may() -> None:
    problems = []
    for name, path in sorted(_modules().items()):
        mine = layer_of(name)
        for dep in sorted(_imports(path)):
            if layer_of(dep) not in ALLOWED[mine]:
                problems.append(f"{name} ({mine}) imports {dep} ({layer_of(dep)})")
    assert problems == []


def test_the_layer_table_knows_the_rules() -> None:
    assert layer_of("jdkit._server._state") == "server"
    assert layer_of("jdkit._dryrun") == "client"
    assert layer_of("jdkit._core.rules") == "core"
    assert layer_of("jdkit._providers._embedded") == "composition"
    assert "server" not in ALLOWED["client"] and "client" not in ALLOWED["server"]


def _loaded_by(code: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


SERVER_RUN = """
import asyncio
from jdkit.server import EmbeddedJD
from jdkit.pb import label

async def main():
    async with EmbeddedJD.start() as srv:
        await srv.state.register_node("n", "ab" * 32, [label.Label(key="k", value="v")])
asyncio.run(main())
"""

DRY_RUN_VALIDATION = """
import asyncio
import jdkit
from jdkit.pb import job

async def main():
    jd = jdkit.JobDistributor.connect("127.0.0.1:9", dry_run=True)
    try:
        await jd.propose_job(job.ProposeJobRequest(node_id="n", spec="not toml ["))
    except jdkit.InvalidArgumentError:
        pass
    else:
        raise SystemExit("expected InvalidArgumentError")
    await jd.aclose()
asyncio.run(main())
"""


def test_running_the_embedded_jd_loads_no_client_module() -> None:
    loaded = [m for m in _loaded_by(SERVER_RUN) if m.startswith("jdkit")]
    client = [m for m in loaded if layer_of(m) in ("client", "composition")]
    assert client == []
    assert "jdkit._server._state" in loaded  # (the check saw the server)


def test_a_dry_run_validation_loads_no_server_module_nor_sqlite() -> None:
    loaded = _loaded_by(DRY_RUN_VALIDATION)
    server = [m for m in loaded if m.startswith("jdkit") and layer_of(m) == "server"]
    assert server == []
    assert "sqlite3" not in loaded
    assert "jdkit._core.rules" in loaded and "jdkit._dryrun" in loaded


@pytest.mark.parametrize("module", ["jdkit._core.rules", "jdkit._core.validate"])
def test_the_core_loads_only_the_core(module: str) -> None:
    loaded = [m for m in _loaded_by(f"import {module}") if m.startswith("jdkit")]
    assert [m for m in loaded if layer_of(m) != "core"] == []
