"""gs:// paths end to end against a real GCS JSON API emulator (gcp-storage-emulator, started
in this process on a free localhost port by the `gcs_bucket` fixture in conftest.py).

The commands run as child processes (`python -m synthflaw_jax`) with the emulator settings
in their environment: TensorStore, which writes Orbax's checkpoints, reads its endpoint
setting once when it is imported. Every bucket result is compared with the same command on
local disk, bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from synthflaw_jax import convert
from synthflaw_jax.cli import main
from tests.test_faults import _kill_on_call, _killed
from tests.helpers import write_tiny_hf

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "tiny.py")
# six steps, a checkpoint every two: the kill below falls while step 4 is being saved
OVERRIDES = ["--config.train.steps=6", "--config.checkpoint.every=2", "--config.train.log_every=1",
             "--config.data.seq_len=64", "--config.checkpoint.keep=3"]


def _cli(bucket, argv, patch: str = "", then=None) -> subprocess.CompletedProcess:
    """`synthflaw ARGV` (and, if it succeeds, `synthflaw THEN`: one process start for both) in a
    child process that reaches the emulator, after running `patch`."""
    code = textwrap.dedent(patch) + f"\nimport sys\nfrom synthflaw_jax.cli import main\nrc = main({argv!r})\n"
    if then:
        code += f"rc = rc or main({then!r})\n"
    code += "sys.exit(rc)\n"
    env = {**os.environ, **bucket.env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def _ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _local_hashes(path: pathlib.Path) -> dict:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _bucket_hashes(bucket, key: str) -> dict:
    fs, prefix = bucket.fs, f"{bucket.name}/{key.rstrip('/')}/"
    return {o[len(prefix):]: hashlib.sha256(fs.cat_file(o)).hexdigest() for o in sorted(fs.find(prefix))}


def _hidden(bucket) -> list[str]:
    """Objects under a temporary (hidden) name anywhere in the bucket."""
    return [o for o in bucket.fs.find(bucket.name + "/") if any(part.startswith(".") for part in o.split("/"))]


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return write_tiny_hf(tmp_path_factory.mktemp("bucket_hf"), seed=3)


def test_convert_from_and_to_the_bucket(gcs_bucket, tiny_hf, tmp_path):
    """HF dir in the bucket -> checkpoint in the bucket -> HF dir in the bucket, identical to
    the same conversions on local disk; no temporary object is left behind."""
    gcs_bucket.fs.put(str(tiny_hf) + "/", f"{gcs_bucket.name}/convert/hf/", recursive=True)
    hf, ckpt, back = (gcs_bucket.url(f"convert/{name}") for name in ("hf", "ckpt", "back"))
    started = time.perf_counter()
    _ok(_cli(gcs_bucket, ["convert", "hf-to-orbax", hf, ckpt, "--no-progress"],
             then=["convert", "orbax-to-hf", ckpt, back, "--no-progress"]))
    elapsed = time.perf_counter() - started

    local_ckpt, local_back = tmp_path / "ckpt", tmp_path / "back"
    started = time.perf_counter()
    assert main(["convert", "hf-to-orbax", str(tiny_hf), str(local_ckpt), "--no-progress"]) == 0
    assert main(["convert", "orbax-to-hf", str(local_ckpt), str(local_back), "--no-progress"]) == 0
    print(f"\nconvert round trip: bucket {elapsed:.1f}s (1 process), local {time.perf_counter() - started:.1f}s (in-process)")

    assert _bucket_hashes(gcs_bucket, "convert/back") == _local_hashes(local_back)  # bit for bit
    # the checkpoint: same files outside Orbax's randomly named ones, same arrays
    got = _bucket_hashes(gcs_bucket, "convert/ckpt")
    want = _local_hashes(local_ckpt)
    assert {k: v for k, v in got.items() if not k.startswith("params/")} == \
        {k: v for k, v in want.items() if not k.startswith("params/")}
    downloaded = tmp_path / "downloaded"
    gcs_bucket.fs.get(f"{gcs_bucket.name}/convert/ckpt/", str(downloaded) + "/", recursive=True)
    for x, y in zip(jax.tree.leaves(convert.load_model_checkpoint(local_ckpt)[1]),
                    jax.tree.leaves(convert.load_model_checkpoint(downloaded)[1])):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert not _hidden(gcs_bucket)

    # an existing output without --overwrite is refused, and left as it was
    before = _bucket_hashes(gcs_bucket, "convert/back")
    assert main(["convert", "orbax-to-hf", str(local_ckpt), back, "--no-progress"]) == 2
    assert _bucket_hashes(gcs_bucket, "convert/back") == before


def _write_data(root: pathlib.Path) -> None:
    """The tiny config's sample corpora as JSONL: forget split over two files (read by a
    glob), replay as a directory of files."""
    from synthflaw_jax.data import sample_data

    qa = sample_data.synthetic_qa_records()
    text = [{"text": d} for d in sample_data.stdlib_docstrings()]
    for name, records in (("forget/part-0.jsonl", qa[: len(qa) // 2]), ("forget/part-1.jsonl", qa[len(qa) // 2:]),
                          ("replay/a.jsonl", text[: len(text) // 2]), ("replay/b.jsonl", text[len(text) // 2:])):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _data_overrides(root: str) -> list[str]:
    return [f"--config.data.streams.forget.source={root}/forget/*.jsonl",
            "--config.data.streams.forget.source_type=jsonl",
            f"--config.data.streams.replay.source={root}/replay",
            "--config.data.streams.replay.source_type=jsonl"]


def test_unlearn_in_the_bucket_resumes_after_a_kill(gcs_bucket, tmp_path, monkeypatch):
    """Data and workdir in the bucket; killed (SIGKILL) while the second checkpoint is being
    saved; the rerun resumes from the last complete checkpoint and exports an HF directory
    identical, file for file, to an uninterrupted run on local disk, and removes the downloads
    the killed process left in TMPDIR."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the children's download directories
    (tmp_path / "tmp").mkdir()
    downloads = lambda: sorted((tmp_path / "tmp").glob("synthflaw-bucket-*"))  # noqa: E731
    data = tmp_path / "data"
    _write_data(data)
    gcs_bucket.fs.put(str(data) + "/", f"{gcs_bucket.name}/unlearn/data/", recursive=True)

    started = time.perf_counter()
    straight = tmp_path / "straight"
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(straight), "--no-progress",
                 *OVERRIDES, *_data_overrides(str(data))]) == 0
    local_s = time.perf_counter() - started

    work = gcs_bucket.url("unlearn/work")
    argv = ["unlearn", "--config", CONFIG, "--workdir", work, "--no-progress", *OVERRIDES,
            *_data_overrides(gcs_bucket.url("unlearn/data").rstrip("/"))]
    started = time.perf_counter()
    # killed right after the save of step 4 started (step 2's save has committed: Orbax waits
    # for the previous save before it starts the next)
    _killed(_cli(gcs_bucket, argv, _kill_on_call("synthflaw_jax.checkpoint", "TrainCheckpointer.save", 2)))
    fs, ckpts = gcs_bucket.fs, f"{gcs_bucket.name}/unlearn/work/checkpoints"
    committed = sorted(int(p.rsplit("/", 1)[-1]) for p in fs.ls(ckpts, detail=False)
                       if p.rsplit("/", 1)[-1].isdigit() and fs.exists(f"{p}/commit_success.txt"))
    assert committed and 2 in committed and max(committed) <= 4
    assert not fs.exists(f"{gcs_bucket.name}/unlearn/work/hf/config.json")
    assert len(downloads()) == 1  # the killed process's exit handler never ran

    result = _ok(_cli(gcs_bucket, argv))
    assert downloads() == []  # the rerun removed it (and its own at exit)
    bucket_s = time.perf_counter() - started
    print(f"\nunlearn: bucket {bucket_s:.1f}s (killed run + resumed run, 2 processes), local {local_s:.1f}s (in-process, uninterrupted)")
    summary = json.loads(fs.cat_file(f"{gcs_bucket.name}/unlearn/work/summary.json"))
    assert summary["resumed_from"] in committed and summary["final_step"] == 6, result.stderr[-2000:]

    assert _bucket_hashes(gcs_bucket, "unlearn/work/hf") == _local_hashes(straight / "hf")  # bit for bit
    recorded = json.loads(fs.cat_file(f"{gcs_bucket.name}/unlearn/work/config.json"))
    expected = json.loads((straight / "config.json").read_text())
    for name in ("forget", "replay"):  # the one difference: where the data was read from
        assert recorded["data"]["streams"][name].pop("source").startswith(gcs_bucket.url("unlearn/data/"))
        expected["data"]["streams"][name].pop("source")
    assert recorded == expected
    steps = [json.loads(line)["step"] for line in fs.cat_file(f"{gcs_bucket.name}/unlearn/work/metrics.jsonl").splitlines()]
    assert steps[-1] == 6 and set(steps) == set(range(1, 7))
    assert fs.find(f"{gcs_bucket.name}/unlearn/work/tensorboard/")  # event files made it up
    assert not _hidden(gcs_bucket)


def test_eval_ifeval_reads_and_writes_the_bucket(gcs_bucket, tmp_path):
    """Prompts and responses read from the bucket, --out written to it: the same files as
    the same evaluation on local disk (bar the input paths it records)."""
    from synthflaw_jax.eval.ifeval import default_prompts_path, load_prompts

    records = load_prompts(default_prompts_path())[:6]
    prompts = tmp_path / "prompts.jsonl"
    lines = [line for line in pathlib.Path(default_prompts_path()).read_text().splitlines() if line.strip()]
    prompts.write_text("\n".join(lines[: len(records)]) + "\n")
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps({"prompt": r.prompt, "response": f"Answer {i}, in brief."}) + "\n"
                                 for i, r in enumerate(records)))
    for f in (prompts, responses):
        gcs_bucket.fs.put_file(str(f), f"{gcs_bucket.name}/ifeval/{f.name}")

    local = tmp_path / "out"
    assert main(["eval", "ifeval", "--prompts", str(prompts), "--responses", str(responses), "--out", str(local)]) == 0
    out = gcs_bucket.url("ifeval/out")
    started = time.perf_counter()
    _ok(_cli(gcs_bucket, ["eval", "ifeval", "--prompts", gcs_bucket.url("ifeval/prompts.jsonl"),
                          "--responses", gcs_bucket.url("ifeval/responses.jsonl"), "--out", out]))
    print(f"\neval ifeval in the bucket: {time.perf_counter() - started:.1f}s (1 process)")

    got = _bucket_hashes(gcs_bucket, "ifeval/out")
    want = _local_hashes(local)
    assert sorted(got) == sorted(want) == ["metrics.json", "per_prompt.jsonl"]
    assert got["per_prompt.jsonl"] == want["per_prompt.jsonl"]
    metrics = json.loads(gcs_bucket.fs.cat_file(f"{gcs_bucket.name}/ifeval/out/metrics.json"))
    expected = json.loads((local / "metrics.json").read_text())
    assert metrics.pop("responses_file") == gcs_bucket.url("ifeval/responses.jsonl")
    assert metrics.pop("prompts_file") == gcs_bucket.url("ifeval/prompts.jsonl")
    expected.pop("responses_file"), expected.pop("prompts_file")
    assert metrics == expected


def test_tfds_and_jsonl_sources_from_the_bucket(gcs_bucket, tmp_path):
    """A prepared TFDS dataset read from the bucket (by its directory, and by name under a
    bucket data_dir) and a JSONL glob give the records the local copies give."""
    from synthflaw_jax.data.sources import JsonlSource, TfdsSource, open_source
    from synthflaw_jax.data.tfds_builder import build_tfds

    records = [{"question": f"q{i}", "answer": f"a{i} \u00e9"} for i in range(40)]
    src = tmp_path / "in"
    src.mkdir()
    for part in (0, 1):
        (src / f"part{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[part::2]))
    prepared = build_tfds(str(src), tmp_path / "tfds", name="forget")
    gcs_bucket.fs.put(str(tmp_path / "tfds") + "/", f"{gcs_bucket.name}/sources/tfds/", recursive=True)
    gcs_bucket.fs.put(str(src) + "/", f"{gcs_bucket.name}/sources/in/", recursive=True)

    def strip(record):  # where each record was read, as a bucket path, is checked below
        return {k: v for k, v in record.items() if k not in ("_origin", "_source_origin")}

    local = TfdsSource(str(prepared))
    want = [strip(local[i]) for i in range(len(local))]
    remote_dir = gcs_bucket.url(f"sources/tfds/{prepared.relative_to(tmp_path / 'tfds').as_posix()}")
    by_dir = TfdsSource(remote_dir)
    by_name = open_source("jsonl_records/forget", "tfds", data_dir=gcs_bucket.url("sources/tfds"))
    assert [strip(by_dir[i]) for i in range(len(by_dir))] == want
    assert [strip(by_name[i]) for i in range(len(by_name))] == want
    # built from JSONL in the bucket into a bucket data_dir (`synthflaw data build-tfds`)
    built = build_tfds(gcs_bucket.url("sources/in"), gcs_bucket.url("sources/tfds2"), name="forget")
    assert str(built).startswith(gcs_bucket.url("sources/tfds2/jsonl_records/forget/"))
    rebuilt = open_source("jsonl_records/forget", "tfds", data_dir=gcs_bucket.url("sources/tfds2"))
    assert [strip(rebuilt[i]) for i in range(len(rebuilt))] == want
    glob = JsonlSource(gcs_bucket.url("sources/in/*.jsonl"))
    assert [strip(glob[i]) for i in range(len(glob))] == [strip(r) for r in (JsonlSource(str(src / "*.jsonl"))[i]
                                                                           for i in range(len(glob)))]
    # records and the dataset built from bucket files name them by their gs:// paths
    assert glob[0]["_origin"] == gcs_bucket.url("sources/in/part0.jsonl:1")
    assert rebuilt[0]["_source_origin"].startswith(gcs_bucket.url("sources/in/part"))


def test_config_model_and_generate_out_in_the_bucket(gcs_bucket, tiny_hf, tmp_path):
    """A config file, a model directory and prompts read from the bucket, `generate --out`
    written to it: the same as with local paths."""
    from synthflaw_jax import config_io

    gcs_bucket.fs.put_file(CONFIG, f"{gcs_bucket.name}/gen/tiny.py")
    assert config_io.load_config_file(gcs_bucket.url("gen/tiny.py")).to_dict() == config_io.load_config_file(CONFIG).to_dict()

    gcs_bucket.fs.put(str(tiny_hf) + "/", f"{gcs_bucket.name}/gen/hf/", recursive=True)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Hello", "What is a bucket?")))
    gcs_bucket.fs.put_file(str(prompts), f"{gcs_bucket.name}/gen/prompts.jsonl")
    local = tmp_path / "out.jsonl"
    assert main(["generate", "--model", str(tiny_hf), "--prompts", str(prompts), "--out", str(local),
                 "--max-new-tokens", "4"]) == 0
    out = gcs_bucket.url("gen/out.jsonl")
    assert main(["generate", "--model", gcs_bucket.url("gen/hf"), "--prompts", gcs_bucket.url("gen/prompts.jsonl"),
                 "--out", out, "--max-new-tokens", "4"]) == 0
    assert gcs_bucket.fs.cat_file(f"{gcs_bucket.name}/gen/out.jsonl") == local.read_bytes()
    # an existing --out is refused without --overwrite and kept
    assert main(["generate", "--model", str(tiny_hf), "--prompt", "Hi", "--out", out, "--max-new-tokens", "2"]) == 2
    assert gcs_bucket.fs.cat_file(f"{gcs_bucket.name}/gen/out.jsonl") == local.read_bytes()


def test_bucket_outputs_contract(gcs_bucket):
    """outputs.directory/file on a bucket: a failed block leaves nothing; --overwrite replaces
    the old directory (its extra objects removed, markers present); a dead run's hidden
    prefix is removed by the next write; an existing output needs overwrite."""
    from synthflaw_jax import outputs
    from synthflaw_jax.errors import SynthflawError

    fs, root = gcs_bucket.fs, f"{gcs_bucket.name}/contract"
    out = gcs_bucket.url("contract/out")
    with pytest.raises(RuntimeError):
        with outputs.directory(out) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("failed half way")
    with pytest.raises(RuntimeError):
        with outputs.file(gcs_bucket.url("contract/one.json")) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("failed half way")
    assert not fs.find(root + "/")

    with outputs.directory(out) as tmp:
        (tmp / "config.json").write_text('{"v": 1}')
        (tmp / "old-only.bin").write_bytes(b"x")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"1")
    fs.pipe(f"{root}/.out.tmp-999999999-deadbeef/w.bin", b"left by a killed run")
    with pytest.raises(SynthflawError, match="not empty"):
        with outputs.directory(out) as tmp:
            pass
    with outputs.directory(out, overwrite=True) as tmp:
        (tmp / "config.json").write_text('{"v": 2}')
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"2")
    assert sorted(fs.find(root + "/")) == [f"{root}/out/config.json", f"{root}/out/sub/w.bin"]
    assert fs.cat_file(f"{root}/out/config.json") == b'{"v": 2}' and fs.cat_file(f"{root}/out/sub/w.bin") == b"2"

    outputs.write_text(gcs_bucket.url("contract/one.json"), "first", overwrite=False)
    with pytest.raises(SynthflawError, match="file exists"):
        outputs.write_text(gcs_bucket.url("contract/one.json"), "second", overwrite=False)
    with pytest.raises(SynthflawError, match="is a directory"):
        outputs.write_text(out, "x", overwrite=True)
    assert fs.cat_file(f"{root}/one.json") == b"first"


def test_only_dead_processes_download_directories_are_removed(tmp_path):
    from synthflaw_jax import runtime

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    made = {name: tmp_path / f"synthflaw-bucket-{name}" for name in (
        f"h-{finished.pid}-dead", f"h-{os.getpid()}-alive", f"other-{finished.pid}-otherhost", "h-x1-odd")}
    for path in made.values():
        (path / "0").mkdir(parents=True)
    runtime._remove_dead_caches(tmp_path, "h")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for name, p in made.items() if not name.endswith("-dead"))
