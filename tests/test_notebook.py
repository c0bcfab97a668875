"""The walkthrough notebook runs top to bottom on the bundled sample."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT


def test_walkthrough_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # let the kernel use its inline backend
    nb = nbformat.read(REPO_ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "rows read" in text and "forecast for the week of 2019-12-30" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows its plots"
