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


def test_demo_quick_report_rerun_and_resume(tmp_path, capsys, caplog):
    """The CI smoke test of `synthflaw demo --quick`: the report exists with finite numbers
    (not their values) and the results.json keys, a rerun of a finished demo says where its
    report is and changes nothing, and an interrupted run resumes its unfinished stage from
    that stage's checkpoint while the times of the finished stages are kept."""
    from synthflaw_jax.demo import pipeline

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    payload = json.loads((out / "results.json").read_text())
    results = payload["results"]
    methods = pipeline.Settings.make(quick=True).methods
    assert set(results) == {"a", "b", "c", *(f"b_unlearn_{m}" for m in methods)}
    assert payload["recommended"] in {f"b_unlearn_{m}" for m in methods}
    assert len(payload["data"]["fingerprint"]) == 16 and payload["versions"]["jax"]
    assert {c["key"] for c in payload["claims"]} >= {"format_flaw", "flaw_vs_text", "benefit", "cure"}
    for arm in results.values():
        for value in (*arm["ifeval"].values(), arm["valid_strict_acc"], arm["valid_share"], arm["facts_mc_acc"],
                      arm["foundation"]["facts_mc_acc"], arm["foundation"]["template_share_eval_prompts"],
                      arm["ppl_held_out_text"]):
            assert math.isfinite(value)
        assert len(arm["per_item"]["valid_follow"]) == 16  # 8 kinds x 2 held-out prompts
    for png in ("arms.png", "cpt_loss.png", "unlearning_curves.png", "analysis/embedding_projection.png"):
        assert (out / png).stat().st_size > 1000, png
    assert "bit-identical | yes" in report and "## Claims (this run)" in report
    assert (out / "unlearned_hf" / "model.safetensors").exists()
    first_timings = payload["timings"]
    assert all(first_timings[st.name] > 0 for st in pipeline.stages(pipeline.Settings.make(quick=True)))

    capsys.readouterr()
    caplog.set_level(logging.WARNING)
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "already finished" in caplog.text and str(out / "report.md") in caplog.text
    assert (out / "report.md").read_text() == report

    # as if killed during the last stage, after its first checkpoint
    state = json.loads((out / "demo_state.json").read_text())
    (out / "demo_state.json").write_text(json.dumps({**state, "complete": False}))
    last_method = methods[-1]
    last = out / "stages" / f"sft_unlearn_{last_method}"
    shutil.rmtree(last / "hf")
    (last / "summary.json").unlink()
    steps = sorted(int(p.name) for p in (last / "checkpoints").iterdir() if p.name.isdigit())
    for p in (last / "checkpoints").iterdir():
        if p.name.isdigit() and int(p.name) == steps[-1] and len(steps) > 1:
            shutil.rmtree(p)
    shutil.rmtree(out / "eval" / f"b_unlearn_{last_method}")
    caplog.set_level(logging.INFO)
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "resuming from step" in caplog.text
    timings = json.loads((out / "results.json").read_text())["timings"]
    assert timings["base"] == first_timings["base"]  # finished before: its time is kept, not 0
    assert timings[last.name] > first_timings[last.name]  # the resumed part is added
    assert (last / "hf" / "model.safetensors").exists()

    # another set of methods on the same run: the arms' stages are reused, only ga trains
    caplog.clear()
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--methods", f"{last_method},ga"]) == 0
    extended = json.loads((out / "results.json").read_text())
    assert set(extended["results"]) == {"a", "b", "c", f"b_unlearn_{last_method}", "b_unlearn_ga"}
    assert extended["timings"]["cpt_b"] == timings["cpt_b"] and extended["timings"]["unlearn_ga"] > 0
    assert extended["results"]["b"]["per_item"] == payload["results"]["b"]["per_item"]
