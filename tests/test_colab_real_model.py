"""launch/colab.ipynb's real-model section executes on CPU at the smoke size (nbclient): the
cells tagged "real-model", on a random tiny model standing in for SmolLM2 (too slow for CI)."""
import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "launch" / "colab.ipynb"


def _set(cell, name: str, value) -> None:
    lines = cell.source.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{name} ="))
    lines[index] = f"{name} = {value!r}"
    cell.source = "\n".join(lines)


def test_real_model_section_runs_on_cpu(tmp_path, monkeypatch, shared_data):
    from synthflaw_jax import convert
    from synthflaw_jax.data.tokenizer import tiny_tokenizer_dir
    from synthflaw_jax.models import presets
    from synthflaw_jax.models.loading import random_model

    model = random_model(presets.tiny(), seed=0)
    convert.save_hf(model.params, model.config, tmp_path / "model", assets_from=tiny_tokenizer_dir(), progress=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if "real-model" in c.metadata.get("tags", [])]
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    params = next(c for c in cells if "real-model-parameters" in c.metadata.get("tags", []))
    out = tmp_path / "real"
    _set(params, "REAL_MODEL", str(tmp_path / "model"))
    _set(params, "TOFU", str(shared_data / "tofu" / "full.json"))
    _set(params, "IFEVAL_PROMPTS", str(shared_data / "ifeval" / "input_data.jsonl"))
    _set(params, "REAL_OUT", str(out))
    nb.cells = cells
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"real-model experiment wrote {out}" in text
    markdown = "".join(o.data.get("text/markdown", "") for o in outputs if o.output_type == "display_data")
    assert "# Real-model experiment" in markdown and "| b_unlearn_hinge |" in markdown
    assert (out / "results.json").is_file()
