"""launch/colab.ipynb executes top to bottom on CPU (nbclient), as a user would run it."""
import base64
import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "launch" / "colab.ipynb"


def _set_parameter(nb, name: str, value: str) -> None:
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{name} ="))
    lines[index] = f"{name} = {value!r}"
    cell.source = "\n".join(lines)


def test_notebook_runs_on_cpu(tmp_path, monkeypatch):
    """Install cell (a no-op: the package is importable), `synthflaw demo --quick`, the report
    and its plots displayed inline; the kernel sees one plain CPU device, like Colab's CPU runtime."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    out = tmp_path / "demo"
    _set_parameter(nb, "OUT", str(out))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # conftest's 8 fake devices are for the tests only
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "already importable: nothing to install" in text
    assert "1 CPU device(s)" in text
    assert (out / "report.md").is_file()
    pngs = [o.data["image/png"] for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pngs) >= 3 and all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    markdown = "".join(o.data.get("text/markdown", "") for o in outputs if o.output_type == "display_data")
    assert markdown.strip() and "![" not in markdown  # the report's text, with images shown as images
