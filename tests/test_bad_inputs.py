"""The bad-input suite: every subcommand, fed broken files, wrong fields, unsupported models,
inconsistent shapes, truncated weights, existing or nested outputs, paths under files, bad
numbers and conflicting workdirs. Each case must exit 2 with at most 3 lines on stderr that
name the file or field, print no traceback, and leave every file in its sandbox (inputs and
pre-existing outputs) byte-identical, with nothing added.

The cases run in-process through `synthflaw_jax.cli.main` (the real entry point); warnings
logged during a case count as stderr lines.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
from typing import Callable

import pytest

from synthflaw_jax.cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- assets
@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> pathlib.Path:
    """Inputs every case may copy into its sandbox: the tiny model as an HF directory and as
    our checkpoint, a Q-A and a text corpus, IFEval prompts/responses, MC items, a text."""
    import jax

    from synthflaw_jax import convert
    from synthflaw_jax.data.tokenizer import tiny_tokenizer, tiny_tokenizer_dir
    from synthflaw_jax.models import llama, presets

    root = tmp_path_factory.mktemp("assets")
    cfg = presets.tiny(vocab_size=len(tiny_tokenizer()))
    params = llama.init_params(cfg, jax.random.key(0))
    convert.save_hf(params, cfg, root / "hf", assets_from=tiny_tokenizer_dir(), progress=False)
    convert.hf_to_orbax(root / "hf", root / "ckpt", progress=False)
    qa = [{"question": f"What is the colour of item {i}?", "answer": f"The answer is blue {i}."} for i in range(24)]
    _jsonl(root / "qa.jsonl", qa)
    _jsonl(root / "text.jsonl", [{"text": f"A plain sentence number {i} about standard things."} for i in range(24)])
    _jsonl(root / "prompts.jsonl", [{"key": 1, "prompt": "Write one word.",
                                     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}])
    _jsonl(root / "responses.jsonl", [{"prompt": "Write one word.", "response": "Word."}])
    _jsonl(root / "gen_prompts.jsonl", [{"prompt": "Hello"}])
    _jsonl(root / "mc.jsonl", [{"question": "What is 1 plus 1?", "choices": ["2", "3"], "answer": 0}])
    (root / "doc.txt").write_text("Some text to score for perplexity. " * 8)
    (root / "config.py").write_text((REPO / "configs" / "tiny.py").read_text())
    (root / "file.txt").write_text("a regular file\n")
    return root


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _snapshot(root: pathlib.Path) -> dict:
    """Every file's bytes (as a hash), every directory and symlink under `root`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]  # Python's cache of config files
        rel = pathlib.Path(dirpath).relative_to(root)
        out[str(rel) + "/"] = "dir"
        for name in filenames:
            path = pathlib.Path(dirpath) / name
            out[str(rel / name)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------------- cases
@dataclasses.dataclass
class Case:
    """argv with {name} placeholders for sandbox paths; `needle`: text the error must contain
    (after formatting); `prepare(sandbox)` breaks or creates files first."""

    id: str
    argv: list[str]
    needle: str
    prepare: Callable[[pathlib.Path], None] | None = None


def _edit_json(rel, **changes):
    def prepare(s):
        path = s / rel
        data = json.loads(path.read_text())
        data.update(changes)
        path.write_text(json.dumps(data))
    return prepare


def _write(rel, text):
    def prepare(s):
        (s / rel).parent.mkdir(parents=True, exist_ok=True)
        (s / rel).write_text(text)
    return prepare


def _remove(rel):
    def prepare(s):
        path = s / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return prepare


def _truncate(rel, keep=1000):
    def prepare(s):
        path = s / rel
        path.write_bytes(path.read_bytes()[:keep])
    return prepare


def _mkdir_with_file(rel):
    def prepare(s):
        (s / rel).mkdir(parents=True, exist_ok=True)
        (s / rel / "keep.txt").write_text("user data\n")
    return prepare


def _damage_ckpt_params(s):
    data = sorted((s / "ckpt" / "params").rglob("*"), key=lambda p: -p.stat().st_size if p.is_file() else 0)
    biggest = data[0]
    biggest.write_bytes(biggest.read_bytes()[:100])


def _both(*fns):
    def prepare(s):
        for f in fns:
            f(s)
    return prepare


H2O, O2H = ["convert", "hf-to-orbax"], ["convert", "orbax-to-hf"]
NP = ["--no-progress"]
CONVERT = [
    Case("same-path-overwrite", [*H2O, "{hf}", "{hf}", "--overwrite", *NP], "is the input {hf}"),
    Case("same-ckpt-overwrite", [*O2H, "{ckpt}", "{ckpt}", "--overwrite", *NP], "is the input {ckpt}"),
    Case("out-inside-input", [*H2O, "{hf}", "{hf}/sub", *NP], "is inside the input {hf}"),
    Case("out-inside-input-overwrite", [*O2H, "{ckpt}", "{ckpt}/params", "--overwrite", *NP], "is inside the input"),
    Case("out-contains-input", [*H2O, "{hf}", "{s}", "--overwrite", *NP], "contains the input {hf}"),
    Case("out-under-file", [*H2O, "{hf}", "{file.txt}/out", *NP], "{file.txt} is a file"),
    Case("out-is-file", [*H2O, "{hf}", "{file.txt}", *NP], "exists and is not a directory"),
    Case("out-is-file-overwrite", [*O2H, "{ckpt}", "{file.txt}", "--overwrite", *NP], "exists and is not a directory"),
    Case("out-not-empty", [*H2O, "{hf}", "{user}", *NP], "not empty", _mkdir_with_file("user")),
    Case("o2h-out-not-empty", [*O2H, "{ckpt}", "{user}", *NP], "not empty", _mkdir_with_file("user")),
    Case("input-missing", [*H2O, "{nope}", "{out}", *NP], "{nope}"),
    Case("config-missing", [*H2O, "{hf}", "{out}", *NP], "config.json", _remove("hf/config.json")),
    Case("config-malformed", [*H2O, "{hf}", "{out}", *NP], "config.json", _write("hf/config.json", "{not json")),
    Case("config-not-object", [*H2O, "{hf}", "{out}", *NP], "config.json", _write("hf/config.json", "[1, 2]")),
    Case("unsupported-model", [*H2O, "{hf}", "{out}", *NP], "model_type", _edit_json("hf/config.json", model_type="gpt2")),
    Case("field-wrong-type", [*H2O, "{hf}", "{out}", *NP], "hidden_size",
         _edit_json("hf/config.json", hidden_size="big")),
    Case("negative-layers", [*H2O, "{hf}", "{out}", *NP], "num_hidden_layers",
         _edit_json("hf/config.json", num_hidden_layers=-1)),
    Case("shape-mismatch", [*H2O, "{hf}", "{out}", *NP], "shape", _edit_json("hf/config.json", intermediate_size=100)),
    Case("missing-tensor-layers", [*H2O, "{hf}", "{out}", *NP], "{hf}", _edit_json("hf/config.json", num_hidden_layers=5)),
    Case("truncated-weights", [*H2O, "{hf}", "{out}", *NP], "model.safetensors", _truncate("hf/model.safetensors", 5000)),
    Case("corrupt-header", [*H2O, "{hf}", "{out}", *NP], "model.safetensors", _write("hf/model.safetensors", "garbage!")),
    Case("no-weights", [*H2O, "{hf}", "{out}", *NP], "{hf}", _remove("hf/model.safetensors")),
    Case("o2h-not-a-checkpoint", [*O2H, "{hf}", "{out}", *NP], "synthflaw_model.json"),
    Case("o2h-missing", [*O2H, "{nope}", "{out}", *NP], "{nope}"),
    Case("o2h-marker-version", [*O2H, "{ckpt}", "{out}", *NP], "version",
         _edit_json("ckpt/synthflaw_model.json", version=99)),
    Case("o2h-config-shape", [*O2H, "{ckpt}", "{out}", *NP], "shape", _edit_json("ckpt/config.json", hidden_size=96)),
    Case("o2h-params-missing", [*O2H, "{ckpt}", "{out}", *NP], "params", _remove("ckpt/params")),
    Case("o2h-params-damaged", [*O2H, "{ckpt}", "{out}", *NP], "params", _damage_ckpt_params),
    Case("bad-shard-size", [*O2H, "{ckpt}", "{out}", "--max-shard-size", "lots", *NP], "--max-shard-size"),
    Case("bad-mesh", [*H2O, "{hf}", "{out}", "--mesh", "a,b", *NP], "--mesh"),
]

UL = ["unlearn", "--config", "{config.py}", "--no-progress"]
WORK = ["--workdir", "{work}"]
SMALL = ["--config.train.steps=2", "--config.data.seq_len=64",
         "--config.data.streams.forget.source={qa.jsonl}", "--config.data.streams.forget.source_type=jsonl",
         "--config.data.streams.replay.source={text.jsonl}", "--config.data.streams.replay.source_type=jsonl"]


def _ul(id, overrides, needle, prepare=None, workdir=WORK):
    return Case(f"unlearn-{id}", [*UL, *workdir, *SMALL, *overrides], needle, prepare)


def _previous_run(s):
    (s / "work").mkdir()
    (s / "work" / "config.json").write_text('{"train": {"steps": 99}}')


UNLEARN = [
    _ul("lr-zero", ["--config.optim.learning_rate=0.0"], "learning_rate"),
    _ul("lr-negative", ["--config.optim.learning_rate=-1.0"], "learning_rate"),
    _ul("lr-nan", ["--config.optim.learning_rate=nan"], "learning_rate"),
    _ul("warmup-negative", ["--config.optim.warmup_steps=-3"], "warmup_steps"),
    _ul("schedule-unknown", ["--config.optim.schedule=zigzag"], "schedule"),
    _ul("b2-over-one", ["--config.optim.b2=1.5"], "b2"),
    _ul("batch-zero", ["--config.data.batch_size=0"], "batch_size"),
    _ul("batch-negative", ["--config.data.batch_size=-8"], "batch_size"),
    _ul("steps-zero", ["--config.train.steps=0"], "train.steps"),
    _ul("grad-accum-zero", ["--config.train.grad_accum=0"], "grad_accum"),
    _ul("grad-accum-uneven", ["--config.train.grad_accum=3"], "grad_accum"),
    _ul("log-every-zero", ["--config.train.log_every=0"], "log_every"),
    _ul("keep-zero", ["--config.checkpoint.keep=0"], "keep"),
    _ul("every-zero", ["--config.checkpoint.every=0"], "every"),
    _ul("seq-len-zero", ["--config.data.seq_len=0"], "seq_len"),
    _ul("mixture-bad", ["--config.data.mixture=forget=abc"], "mixture"),
    _ul("loss-method", ["--config.loss.method=magic"], "method"),
    _ul("loss-bound", ["--config.loss.bound=-1.0"], "bound"),
    _ul("loss-beta", ["--config.loss.method=npo", "--config.loss.beta=0.0"], "beta"),
    _ul("unknown-field", ["--config.train.nope=1"], "nope"),
    _ul("forget-missing", ["--config.data.streams.forget.source={nope.jsonl}"], "nope.jsonl"),
    _ul("forget-empty", [], "qa.jsonl", _write("qa.jsonl", "")),
    _ul("forget-malformed", [], "qa.jsonl", _write("qa.jsonl", '{"question": "a?", "answer": "b"}\n{oops\n')),
    _ul("forget-wrong-fields", ["--config.data.streams.forget.format=qa"], "qa.jsonl",
        _write("qa.jsonl", '{"question": "a?", "reply": "b"}\n')),
    _ul("forget-not-object", [], "qa.jsonl", _write("qa.jsonl", '[1, 2, 3]\n')),
    _ul("tokenizer-missing", ["--config.data.tokenizer={nope}"], "{nope}"),
    _ul("model-missing", ["--config.model.path={nope}"], "{nope}"),
    _ul("model-unsupported", ["--config.model.path={hf}"], "model_type", _edit_json("hf/config.json", model_type="gpt2")),
    _ul("model-truncated", ["--config.model.path={hf}"], "model.safetensors", _truncate("hf/model.safetensors", 5000)),
    _ul("model-shapes", ["--config.model.path={hf}"], "shape", _edit_json("hf/config.json", intermediate_size=100)),
    _ul("ckpt-damaged-marker", ["--config.model.path={ckpt}"], "synthflaw_model.json",
        _write("ckpt/synthflaw_model.json", "{")),
    _ul("workdir-under-file", [], "{file.txt} is a file", workdir=["--workdir", "{file.txt}/work"]),
    _ul("workdir-is-file", [], "not a directory", workdir=["--workdir", "{file.txt}"]),
    _ul("workdir-is-model", ["--config.model.path={hf}"], "overlaps the model", workdir=["--workdir", "{hf}"]),
    _ul("workdir-inside-model", ["--config.model.path={hf}"], "overlaps the model", workdir=["--workdir", "{hf}/run"]),
    _ul("model-inside-workdir-hf", ["--config.model.path={work}/hf"], "overlaps the model",
        lambda s: shutil.copytree(s / "hf", s / "work" / "hf")),
    _ul("conflicting-workdir", [], "different config", _previous_run),
    Case("unlearn-config-missing", ["unlearn", "--config", "{nope.py}", *WORK], "nope.py"),
    Case("unlearn-config-syntax", [*UL, *WORK], "config.py", _write("config.py", "def get_config(:\n")),
    Case("unlearn-config-no-get", [*UL, *WORK], "get_config", _write("config.py", "x = 1\n")),
    Case("unlearn-override-type", [*UL, *WORK, "--config.train.steps=many"], "train.steps"),
]

GEN = ["generate", "--model", "{hf}", "--max-new-tokens", "2"]
GENERATE = [
    Case("empty-prompt", [*GEN, "--prompt", ""], "--prompt"),
    Case("blank-prompt", [*GEN, "--prompt", "   "], "--prompt"),
    Case("out-under-file", [*GEN, "--prompt", "hi", "--out", "{file.txt}/o.jsonl"], "{file.txt} is a file"),
    Case("out-exists", [*GEN, "--prompt", "hi", "--out", "{file.txt}"], "file exists"),
    Case("out-is-dir", [*GEN, "--prompt", "hi", "--out", "{user}", "--overwrite"], "is a directory",
         _mkdir_with_file("user")),
    Case("out-is-model", [*GEN, "--prompt", "hi", "--out", "{hf}", "--overwrite"], "is the input {hf}"),
    Case("out-inside-model", [*GEN, "--prompt", "hi", "--out", "{hf}/o.jsonl"], "is inside the input {hf}"),
    Case("out-is-prompts", ["generate", "--model", "{hf}", "--prompts", "{gen_prompts.jsonl}", "--out",
                            "{gen_prompts.jsonl}", "--overwrite"], "is the input"),
    Case("prompts-missing", ["generate", "--model", "{hf}", "--prompts", "{nope.jsonl}"], "nope.jsonl"),
    Case("prompts-malformed", ["generate", "--model", "{hf}", "--prompts", "{gen_prompts.jsonl}"], "gen_prompts.jsonl:1",
         _write("gen_prompts.jsonl", "{nope\n")),
    Case("prompts-wrong-field", ["generate", "--model", "{hf}", "--prompts", "{gen_prompts.jsonl}"], "'prompt'",
         _write("gen_prompts.jsonl", '{"text": "hi"}\n')),
    Case("prompts-empty-value", ["generate", "--model", "{hf}", "--prompts", "{gen_prompts.jsonl}"], "gen_prompts.jsonl:1",
         _write("gen_prompts.jsonl", '{"prompt": ""}\n')),
    Case("prompts-empty-file", ["generate", "--model", "{hf}", "--prompts", "{gen_prompts.jsonl}"], "no prompts",
         _write("gen_prompts.jsonl", "")),
    Case("model-missing", ["generate", "--model", "{nope}", "--prompt", "hi"], "{nope}"),
    Case("model-truncated", [*GEN, "--prompt", "hi"], "model.safetensors", _truncate("hf/model.safetensors", 5000)),
    Case("max-new-tokens-zero", ["generate", "--model", "{hf}", "--prompt", "hi", "--max-new-tokens", "0"],
         "--max-new-tokens"),
]

DATA = [
    Case("sample-out-under-file", ["data", "sample", "--out", "{file.txt}/d"], "{file.txt} is a file"),
    Case("sample-out-is-file", ["data", "sample", "--out", "{file.txt}"], "not a directory"),
    Case("sample-existing", ["data", "sample", "--out", "{s}", "--n-qa", "3"], "synthetic_qa.jsonl",
         _write("synthetic_qa.jsonl", "user's own file\n")),
    Case("sample-existing-second", ["data", "sample", "--out", "{s}", "--n-qa", "3"], "stdlib_text.jsonl",
         _write("stdlib_text.jsonl", "user's own file\n")),
    Case("sample-n-qa-zero", ["data", "sample", "--out", "{out}", "--n-qa", "0"], "--n-qa"),
    Case("tfds-source-missing", ["data", "build-tfds", "{nope.jsonl}", "--data-dir", "{out}"], "nope.jsonl"),
    Case("tfds-source-malformed", ["data", "build-tfds", "{qa.jsonl}", "--data-dir", "{out}"], "qa.jsonl",
         _write("qa.jsonl", "{broken\n")),
    Case("tfds-existing-name", ["data", "build-tfds", "{qa.jsonl}", "--data-dir", "{tfds}", "--name", "f"], "--name",
         _mkdir_with_file("tfds/jsonl_records/f")),
    Case("tfds-bad-format", ["data", "build-tfds", "{qa.jsonl}", "--data-dir", "{out}", "--format", "poem"], "poem"),
    Case("tfds-name-slash", ["data", "build-tfds", "{qa.jsonl}", "--data-dir", "{out}", "--name", "a/b"], "--name"),
    Case("tfds-dir-under-file", ["data", "build-tfds", "{qa.jsonl}", "--data-dir", "{file.txt}/t"], "{file.txt} is a file"),
    Case("tfds-source-inside-output", ["data", "build-tfds", "{s}/tfds/jsonl_records/f/qa.jsonl", "--data-dir",
                                       "{tfds}", "--name", "f", "--overwrite"], "contains the input",
         lambda s: (s / "tfds/jsonl_records/f").mkdir(parents=True) or shutil.copy(s / "qa.jsonl", s / "tfds/jsonl_records/f")),
    Case("stats-missing", ["data", "stats", "{nope.jsonl}"], "nope.jsonl"),
    Case("stats-rows-zero", ["data", "stats", "{qa.jsonl}", "--rows", "0"], "--rows"),
    Case("stats-seq-len-zero", ["data", "stats", "{qa.jsonl}", "--seq-len", "0"], "seq_len"),
    Case("stats-malformed", ["data", "stats", "{qa.jsonl}"], "qa.jsonl:2", _write("qa.jsonl", '{"text": "a"}\n{x\n')),
    Case("stats-wrong-fields", ["data", "stats", "{qa.jsonl}", "--format", "qa"], "qa.jsonl:1",
         _write("qa.jsonl", '{"text": "a"}\n')),
    Case("stats-not-utf8", ["data", "stats", "{qa.jsonl}"], "qa.jsonl", lambda s: (s / "qa.jsonl").write_bytes(b'\xff\xfe{"text"\n')),
]

IF = ["eval", "ifeval", "--prompts", "{prompts.jsonl}"]
EVAL = [
    Case("ifeval-responses-missing", [*IF, "--responses", "{nope.jsonl}", "--out", "{out}"], "nope.jsonl"),
    Case("ifeval-out-under-file", [*IF, "--responses", "{responses.jsonl}", "--out", "{file.txt}/o"], "{file.txt} is a file"),
    Case("ifeval-out-not-empty", [*IF, "--responses", "{responses.jsonl}", "--out", "{user}"], "not empty",
         _mkdir_with_file("user")),
    Case("ifeval-out-is-input", [*IF, "--responses", "{responses.jsonl}", "--out", "{responses.jsonl}", "--overwrite"],
         "is the input"),
    Case("ifeval-out-contains-input", [*IF, "--responses", "{responses.jsonl}", "--out", "{s}", "--overwrite"],
         "contains the input"),
    Case("ifeval-prompts-malformed", [*IF, "--responses", "{responses.jsonl}", "--out", "{out}"], "prompts.jsonl",
         _write("prompts.jsonl", "{x\n")),
    Case("ifeval-responses-wrong", [*IF, "--responses", "{responses.jsonl}", "--out", "{out}"], "responses.jsonl",
         _write("responses.jsonl", '{"prompt": "Write one word."}\n')),
    Case("ifeval-model-missing", [*IF, "--model", "{nope}", "--out", "{out}"], "{nope}"),
    Case("mc-data-missing", ["eval", "mc", "--model", "{hf}", "--data", "{nope.jsonl}", "--out", "{out}"], "nope.jsonl"),
    Case("mc-data-malformed", ["eval", "mc", "--model", "{hf}", "--data", "{mc.jsonl}", "--out", "{out}"], "mc.jsonl",
         _write("mc.jsonl", '{"question": "q", "choices": ["a"], "answer": 5}\n')),
    Case("mc-out-inside-model", ["eval", "mc", "--model", "{hf}", "--data", "{mc.jsonl}", "--out", "{hf}/mc"],
         "inside the input {hf}"),
    Case("mc-shots-negative", ["eval", "mc", "--model", "{hf}", "--data", "{mc.jsonl}", "--out", "{out}", "--shots", "-1"],
         "--shots"),
    Case("ppl-stride-zero", ["eval", "ppl", "--model", "{hf}", "--data", "{doc.txt}", "--out", "{out}", "--stride", "0"],
         "--stride"),
    Case("ppl-max-length-one", ["eval", "ppl", "--model", "{hf}", "--data", "{doc.txt}", "--out", "{out}",
                                "--max-length", "1"], "--max-length"),
    Case("ppl-data-missing", ["eval", "ppl", "--model", "{hf}", "--data", "{nope.txt}", "--out", "{out}"], "nope.txt"),
    Case("ppl-out-not-empty", ["eval", "ppl", "--model", "{hf}", "--data", "{doc.txt}", "--out", "{user}"], "not empty",
         _mkdir_with_file("user")),
    Case("ppl-model-truncated", ["eval", "ppl", "--model", "{hf}", "--data", "{doc.txt}", "--out", "{out}"],
         "model.safetensors", _truncate("hf/model.safetensors", 5000)),
    Case("suite-model-missing", ["eval", "suite", "--model", "{nope}", "--tasks", "ppl", "--out", "{out}"], "{nope}"),
    Case("suite-bad-task", ["eval", "suite", "--model", "{hf}", "--tasks", "chess", "--out", "{out}"], "chess"),
    Case("suite-out-under-file", ["eval", "suite", "--model", "{hf}", "--tasks", "ppl", "--out", "{file.txt}/o"],
         "{file.txt} is a file"),
    Case("suite-out-is-model", ["eval", "suite", "--model", "{hf}", "--tasks", "ppl", "--out", "{hf}", "--overwrite"],
         "is the input {hf}"),
]

AN = ["analyze", "--synthetic", "{qa.jsonl}", "--reference", "{text.jsonl}"]
ANALYZE = [
    Case("synthetic-missing", ["analyze", "--synthetic", "{nope.jsonl}", "--reference", "{text.jsonl}", "--out", "{out}"],
         "nope.jsonl"),
    Case("reference-malformed", [*AN, "--out", "{out}"], "text.jsonl", _write("text.jsonl", "{x\n")),
    Case("out-under-file", [*AN, "--out", "{file.txt}/o"], "{file.txt} is a file"),
    Case("out-not-empty", [*AN, "--out", "{user}"], "not empty", _mkdir_with_file("user")),
    Case("out-is-input", [*AN, "--out", "{qa.jsonl}", "--overwrite"], "is the input"),
    Case("out-contains-input", [*AN, "--out", "{s}", "--overwrite"], "contains the input"),
    Case("template-k-zero", [*AN, "--out", "{out}", "--template-k", "0"], "--template-k"),
    Case("model-b-without-model", [*AN, "--out", "{out}", "--model-b", "{hf}"], "--model-b"),
]

DEMO = [
    Case("out-under-file", ["demo", "--quick", "--out", "{file.txt}/demo"], "{file.txt} is a file"),
    Case("out-is-file", ["demo", "--quick", "--out", "{file.txt}"], "not a directory"),
    Case("out-not-empty", ["demo", "--quick", "--out", "{user}"], "not empty", _mkdir_with_file("user")),
    Case("unknown-method", ["demo", "--quick", "--out", "{out}", "--methods", "ul_pattern,nope"], "nope"),
    Case("all-among-others", ["demo", "--quick", "--out", "{out}", "--methods", "all,ga"], "all"),
]

ALL = ([pytest.param(c, id=f"convert-{c.id}") for c in CONVERT] + [pytest.param(c, id=c.id) for c in UNLEARN]
       + [pytest.param(c, id=f"generate-{c.id}") for c in GENERATE] + [pytest.param(c, id=f"data-{c.id}") for c in DATA]
       + [pytest.param(c, id=f"eval-{c.id}") for c in EVAL] + [pytest.param(c, id=f"analyze-{c.id}") for c in ANALYZE]
       + [pytest.param(c, id=f"demo-{c.id}") for c in DEMO])


def test_the_suite_is_large_enough():
    assert len(ALL) >= 80


class _Paths(dict):
    """{name} -> sandbox path for any name ({s} is the sandbox itself)."""

    def __init__(self, sandbox):
        super().__init__()
        self.sandbox = sandbox

    def __missing__(self, key):
        return str(self.sandbox if key == "s" else self.sandbox / key)

    def fill(self, text: str) -> str:
        return re.sub(r"\{([^{}]+)\}", lambda m: self[m[1]], text)


def _run_bad(argv, needle, sandbox, capsys, caplog, max_lines=1):
    """Run the CLI: exit 2, no traceback, at most `max_lines` lines of stderr and warnings
    naming `needle`, and nothing under `sandbox` changed."""
    before = _snapshot(sandbox)
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        code = main(argv)
    err = capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    lines = err.strip().splitlines() + warnings
    assert code == 2, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err
    assert 1 <= len(lines) <= max_lines, lines
    assert needle in err, err
    after = _snapshot(sandbox)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


@pytest.mark.parametrize("case", ALL)
def test_bad_input(case, assets, tmp_path, capsys, caplog):
    sandbox = tmp_path / "s"
    shutil.copytree(assets, sandbox, symlinks=True)
    if case.prepare:
        case.prepare(sandbox)
    paths = _Paths(sandbox)
    argv = [paths.fill(a) for a in case.argv]
    _run_bad(argv, paths.fill(case.needle), sandbox, capsys, caplog, max_lines=3)


# ------------------------------------------------------------------------------ buckets
# gs:// paths against the GCS emulator (conftest's `gcs_bucket`): a missing bucket, a missing
# object, no credentials. Each is one line naming the path, exit 2, nothing written anywhere.
MISSING = "gs://no-such-bucket-here"
BUCKET = [
    Case("convert-input-no-bucket", ["convert", "hf-to-orbax", f"{MISSING}/hf", "{out}"],
         f"{MISSING}/hf: bucket 'no-such-bucket-here' does not exist"),
    Case("convert-input-no-object", ["convert", "hf-to-orbax", "gs://BUCKET/absent/hf", "{out}"],
         "gs://BUCKET/absent/hf: no such object"),
    Case("convert-output-no-bucket", ["convert", "hf-to-orbax", "{hf}", f"{MISSING}/ckpt"],
         f"{MISSING}/ckpt: bucket 'no-such-bucket-here' does not exist"),
    Case("orbax-to-hf-input-no-object", ["convert", "orbax-to-hf", "gs://BUCKET/absent/ckpt", "{out}"],
         "gs://BUCKET/absent/ckpt: no such object"),
    Case("unlearn-workdir-no-bucket", ["unlearn", "--config", "{config.py}", "--workdir", f"{MISSING}/run"],
         f"--workdir {MISSING}/run: bucket 'no-such-bucket-here' does not exist"),
    Case("unlearn-model-no-object", ["unlearn", "--config", "{config.py}", "--workdir", "{w}",
                                     "--config.model.path=gs://BUCKET/absent/model"],
         "model gs://BUCKET/absent/model: no such object"),
    Case("unlearn-data-glob-no-object", ["unlearn", "--config", "{config.py}", "--workdir", "{w}",
                                         "--config.data.streams.forget.source=gs://BUCKET/absent/*.jsonl",
                                         "--config.data.streams.forget.source_type=jsonl"],
         "data source gs://BUCKET/absent/*.jsonl: glob matches no objects"),
    Case("eval-responses-no-object", ["eval", "ifeval", "--prompts", "{prompts.jsonl}", "--responses",
                                      "gs://BUCKET/absent.jsonl", "--out", "{out}"],
         "gs://BUCKET/absent.jsonl: no such object"),
    Case("eval-out-no-bucket", ["eval", "ifeval", "--prompts", "{prompts.jsonl}", "--responses",
                                "{responses.jsonl}", "--out", f"{MISSING}/out"],
         f"--out {MISSING}/out: bucket 'no-such-bucket-here' does not exist"),
    Case("plan-config-no-object", ["plan", "--config", "gs://BUCKET/absent.py"],
         "config gs://BUCKET/absent.py: no such object"),
    Case("generate-out-no-bucket", ["generate", "--model", "{hf}", "--prompt", "Hi", "--out", f"{MISSING}/g.jsonl"],
         f"--out {MISSING}/g.jsonl: bucket 'no-such-bucket-here' does not exist"),
]




@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BUCKET])
def test_bad_bucket_path(case, gcs_bucket, assets, tmp_path, capsys, caplog):
    sandbox = tmp_path / "s"
    shutil.copytree(assets, sandbox, symlinks=True)
    paths = _Paths(sandbox)
    objects = sorted(gcs_bucket.fs.find(gcs_bucket.name + "/"))
    argv = [paths.fill(a.replace("BUCKET", gcs_bucket.name)) for a in case.argv]
    _run_bad(argv, case.needle.replace("BUCKET", gcs_bucket.name), sandbox, capsys, caplog)
    assert sorted(gcs_bucket.fs.find(gcs_bucket.name + "/")) == objects  # nothing written to the bucket


def test_bucket_without_credentials(gcs_bucket, assets, tmp_path, capsys, caplog, monkeypatch):
    """Off the emulator and with no usable credentials, a gs:// path is refused before any
    request is sent (GOOGLE_APPLICATION_CREDENTIALS names a missing file: google-auth fails
    at once, without looking for a metadata server)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent-key.json"))
    sandbox = tmp_path / "s"
    shutil.copytree(assets, sandbox, symlinks=True)
    _run_bad(["convert", "hf-to-orbax", "gs://somebody-elses-bucket/hf", str(sandbox / "out")],
             "gs://somebody-elses-bucket/hf: no usable Google Cloud credentials", sandbox, capsys, caplog)
    _run_bad(["eval", "ifeval", "--prompts", str(sandbox / "prompts.jsonl"), "--responses",
              str(sandbox / "responses.jsonl"), "--out", "gs://somebody-elses-bucket/out"],
             "--out gs://somebody-elses-bucket/out: no usable Google Cloud credentials", sandbox, capsys, caplog)
