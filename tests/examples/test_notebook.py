"""examples/walkthrough.ipynb runs top to bottom in a real Jupyter kernel
(nbclient + ipykernel on this interpreter), and its tables are HTML tables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "examples" / "walkthrough.ipynb"
KERNEL = "jdkit-test-python"


@pytest.fixture
def kernel_for_this_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec in a private Jupyter path that starts this very interpreter."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter"
    install(kernel_name=KERNEL, prefix=str(prefix), display_name="jdkit tests")
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in list(os.environ):
        if k.startswith("JD_"):
            monkeypatch.delenv(k)  # nothing configured: the notebook uses the embedded JD
    spec = (prefix / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json").read_text()
    assert sys.executable in spec or os.path.basename(sys.executable) in spec
    return KERNEL


def test_walkthrough_runs_top_to_bottom(kernel_for_this_python: str) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_for_this_python,
        timeout=180,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    tables = [h for h in html if 'class="jdkit-table"' in h]
    # nodes, dev nodes, rollout, rollout status, jobs, proposals, dry-run plan
    assert len(tables) >= 7, html
    assert any("rollout of" in h and "REJECTED" in h for h in tables)  # the status table
    assert any("node-c" in h and "env=prod, region=eu" in h for h in tables)
    assert any("APPROVED" in h and "REJECTED" in h for h in tables)
    assert any('class="jdkit-detail"' in h and "externalJobID" in h for h in html)
    # and the text form next to it is a table too, not a dataclass dump
    plain = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert not any("Node(id=" in p for p in plain)
    stream = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Dry-run plan: 2 writes (none sent)" in stream
    assert "1 of 2 proposals reached APPROVED; 1 REJECTED" in stream
