"""The command line: help for every command, the demo end to end, exit codes."""
import json
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


def test_demo_writes_report_and_refuses_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "bit-identical | yes" in report
    assert (out / "model_hf" / "model.safetensors").exists()
    assert json.loads((out / "model_orbax" / "synthflaw_model.json").read_text())["version"] == 1
    assert (out / "model_hf_roundtrip" / "tokenizer.json").exists()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "report.md").read_text() == report
