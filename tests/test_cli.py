"""The command line: help for every command, the demo end to end, exit codes."""
import json
import logging
import math
import shutil
import subprocess
import sys

import pytest

from synthflaw_jax.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: synthflaw " + command in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "synthflaw_jax", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout


def test_demo_quick_report_refuses_reuse_and_resumes(tmp_path, capsys, caplog):
    """The CI smoke test of `synthflaw demo --quick`: the report exists with finite numbers
    (not their values), a second run refuses the non-empty --out, and an interrupted run
    resumes its unfinished stage from that stage's checkpoint."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"a", "b", "b_unlearn_lb", "b_unlearn_ga", "b_unlearn_npo"}
    for arm in results.values():
        for value in (*arm["ifeval"].values(), arm["facts_mc_acc"], *arm["foundation"].values(),
                      arm["ppl_held_out_text"], arm["template_share"]):
            assert math.isfinite(value)
    for png in ("arms.png", "cpt_loss.png", "unlearning_curves.png", "analysis/embedding_projection.png"):
        assert (out / png).stat().st_size > 1000, png
    assert "bit-identical | yes" in report
    assert (out / "unlearned_hf" / "model.safetensors").exists()

    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "report.md").read_text() == report

    # as if killed during the last stage, after its first checkpoint
    state = json.loads((out / "demo_state.json").read_text())
    (out / "demo_state.json").write_text(json.dumps({**state, "complete": False}))
    last = out / "stages" / "sft_unlearn_npo"
    shutil.rmtree(last / "hf")
    (last / "summary.json").unlink()
    steps = sorted(int(p.name) for p in (last / "checkpoints").iterdir() if p.name.isdigit())
    for p in (last / "checkpoints").iterdir():
        if p.name.isdigit() and int(p.name) == steps[-1] and len(steps) > 1:
            shutil.rmtree(p)
    shutil.rmtree(out / "eval" / "b_unlearn_npo")
    caplog.set_level(logging.INFO)
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "resuming from step" in caplog.text
    assert (last / "hf" / "model.safetensors").exists()
