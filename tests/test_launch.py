"""launch/ scripts in --dry-run: the gcloud commands they print, and exit 2 on bad arguments."""
import pathlib
import shlex
import subprocess
import sys
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ["create", "install", "copy_data", "run", "logs", "stop", "delete"]
BASE = ["--project", "my-proj", "--zone", "us-east5-a", "--name", "unlearn-7b", "--dry-run"]


def launch(script, *args):
    return subprocess.run([sys.executable, str(REPO / "launch" / f"{script}.py"), *args],
                          capture_output=True, text=True, timeout=60)


def commands(proc):
    """The printed gcloud/tar commands, each split into its argv."""
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line[len("[dry-run] "):]) for line in proc.stdout.splitlines() if line.startswith("[dry-run] ")]


def gcloud(cmds):
    return [c for c in cmds if c[0] == "gcloud"]


def assert_located(cmd):
    assert "--zone=us-east5-a" in cmd and "--project=my-proj" in cmd, cmd


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    proc = launch(script, "--help")
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "--project" in proc.stdout


@pytest.mark.parametrize("topology,accel,version", [
    ("v5p-16", "v5p-16", "v2-alpha-tpuv5"), ("v5e-64", "v5litepod-64", "v2-alpha-tpuv5-lite"),
    ("v6e-8", "v6e-8", "v2-alpha-tpuv6e"), ("v4-32", "v4-32", "tpu-ubuntu2204-base"),
])
def test_create(topology, accel, version):
    (cmd,) = commands(launch("create", *BASE, "--topology", topology))
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "unlearn-7b"]
    assert_located(cmd)
    assert f"--accelerator-type={accel}" in cmd and f"--version={version}" in cmd


def test_create_queued_spot():
    cmds = commands(launch("create", *BASE, "--topology", "v5p-128", "--queued", "--spot",
                           "--valid-until-duration", "6h"))
    create, describe = cmds
    assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "unlearn-7b-qr"]
    assert_located(create)
    for flag in ("--node-id=unlearn-7b", "--accelerator-type=v5p-128", "--runtime-version=v2-alpha-tpuv5",
                 "--spot", "--valid-until-duration=6h"):
        assert flag in create
    assert describe[4] == "describe"


def test_install_copies_checkout_and_installs_on_all_workers():
    cmds = commands(launch("install", *BASE))
    assert cmds[0][0] == "tar" and str(REPO) in cmds[0]
    remote = gcloud(cmds)
    assert remote[0][4] == "scp" and "unlearn-7b:~/synthflaw_jax-src.tar.gz" in remote[0]
    for cmd in remote:
        assert_located(cmd)
        assert "--worker=all" in cmd
    text = " ".join(" ".join(c) for c in remote)
    assert "jax[tpu]==0.10.2" in text and "uv venv" in text and "-e ~/synthflaw_jax" in text
    assert "jax.device_count()" in text


def _install_module():
    """launch/install.py as a module (it imports its sibling `_common` by plain name)."""
    import importlib.util

    sys.path.insert(0, str(REPO / "launch"))
    try:
        spec = importlib.util.spec_from_file_location("launch_install", REPO / "launch" / "install.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "launch"))
    return module


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


def test_install_tars_only_what_git_keeps(tmp_path, monkeypatch):
    """A checkout with the demo's output, a venv and caches lying in it (ignored by the
    project's own .gitignore): the tarball holds the sources, local edits and new files, and
    none of those."""
    install = _install_module()
    root = tmp_path / "checkout"
    root.mkdir()
    _git(root, "init", "-q")
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    (root / "pkg").mkdir()
    (root / "pkg" / "a.py").write_text("a = 1\n")
    (root / "gone.py").write_text("")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "x")
    (root / "pkg" / "a.py").write_text("a = 2\n")  # local edit: copied as it is now
    (root / "gone.py").unlink()  # deleted locally: not copied (and tar must not fail on it)
    (root / "new.py").write_text("")  # not yet added: copied
    for junk in ("synthflaw_demo/report.md", "synthflaw_demo/stages/cpt_a/hf/model.safetensors",
                 ".venv/bin/python", "venv/lib/x.py", "pkg/__pycache__/a.cpython-311.pyc",
                 "synthflaw_jax.egg-info/PKG-INFO", ".pytest_cache/v/x", "out/y", ".cache/z"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("junk")
    monkeypatch.setattr(install, "TARBALL", str(tmp_path / "src.tar.gz"))
    cmd = install.pack_command(root)
    subprocess.run(cmd, check=True)
    with tarfile.open(tmp_path / "src.tar.gz") as tar:
        names = sorted(m.name.removeprefix("./") for m in tar.getmembers() if m.isfile())
        assert tar.extractfile("pkg/a.py").read() == b"a = 2\n"
    assert names == [".gitignore", "new.py", "pkg/a.py"]


def test_install_without_git_excludes_outputs(tmp_path):
    install = _install_module()
    assert install.source_files(tmp_path) is None  # not a git checkout
    cmd = install.pack_command(tmp_path)
    for pattern in ("synthflaw_demo", ".venv", "venv", "__pycache__", ".git"):
        assert f"--exclude={pattern}" in cmd


def test_install_from_git():
    cmds = commands(launch("install", *BASE, "--git-url", "https://github.com/me/synthflaw_jax.git",
                           "--git-ref", "v0.1.0"))
    assert all(c[0] == "gcloud" for c in cmds)
    assert "git clone --quiet https://github.com/me/synthflaw_jax.git" in cmds[0][-1]


def test_copy_data(tmp_path):
    ckpt = tmp_path / "llama-2-7b"
    ckpt.mkdir()
    cmds = commands(launch("copy_data", *BASE, "--upload", f"{ckpt}=gs://my-bucket/models/llama-2-7b",
                           "--copy", "gs://my-bucket/models/llama-2-7b=/data/models/llama-2-7b",
                           "--copy", "gs://my-bucket/tofu=/data/tofu"))
    upload, ssh = cmds
    assert upload[:3] == ["gcloud", "storage", "cp"] and "gs://my-bucket/models/llama-2-7b" in upload
    assert_located(ssh)
    assert "--worker=all" in ssh
    assert "gcloud storage cp --recursive gs://my-bucket/tofu /data/" in ssh[-1]


def test_run_on_all_workers():
    (cmd,) = commands(launch("run", *BASE, "--config", "configs/llama2_7b.py", "--workdir", "gs://b/runs/x",
                             "--env", "LIBTPU_INIT_ARGS=--xla_tpu_enable_async_all_gather=true",
                             "--", "--config.train.steps=20"))
    assert_located(cmd)
    assert "--worker=all" in cmd
    remote = cmd[-1]
    assert "synthflaw unlearn --config configs/llama2_7b.py --workdir gs://b/runs/x" in remote
    assert "--config.train.steps=20" in remote and "setsid nohup" in remote and "~/synthflaw-run.pid" in remote


def test_run_with_every_path_in_a_bucket():
    """Config, model, tokenizer, data and workdir all gs:// paths: passed through unchanged
    (synthflaw reads and writes the bucket itself, nothing is copied to the workers)."""
    (cmd,) = commands(launch("run", *BASE, "--config", "gs://my-bucket/configs/mine.py", "--workdir", "gs://my-bucket/runs/x",
                             "--", "--config.model.path=gs://my-bucket/models/llama-2-7b",
                             "--config.data.tokenizer=gs://my-bucket/models/llama-2-7b/assets",
                             "--config.data.streams.forget.source=gs://my-bucket/tofu/forget10.json"))
    remote = cmd[-1]
    assert "synthflaw unlearn --config gs://my-bucket/configs/mine.py --workdir gs://my-bucket/runs/x" in remote
    for path in ("model.path=gs://my-bucket/models/llama-2-7b", "tokenizer=gs://my-bucket/models/llama-2-7b/assets",
                 "forget.source=gs://my-bucket/tofu/forget10.json"):
        assert path in remote


def test_logs_and_stop_and_delete():
    (logs,) = commands(launch("logs", *BASE, "--follow"))
    assert "--worker=0" in logs and "tail -n 100 -f ~/synthflaw-run.log" in logs[-1]
    kill, stop_vm = commands(launch("stop", *BASE, "--vm"))
    assert "--worker=all" in kill and "synthflaw-run.pid" in kill[-1]
    assert stop_vm[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "stop"]
    (delete,) = commands(launch("delete", *BASE, "--yes"))
    assert delete[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "unlearn-7b"] and "--quiet" in delete
    assert_located(delete)
    (qdel,) = commands(launch("delete", *BASE, "--queued"))
    assert qdel[4:6] == ["delete", "unlearn-7b-qr"] and "--force" in qdel


@pytest.mark.parametrize("script,args", [
    ("create", ["--topology", "v5p-12"]),
    ("create", ["--topology", "v9-8"]),
    ("create", ["--topology", "v5e-16", "--valid-until-duration", "6h"]),
    ("create", []),
    ("run", ["--config", "configs/nope.py", "--workdir", "/data/runs/x"]),
    ("run", ["--config", "configs/llama2_7b.py", "--workdir", "relative/dir"]),
    ("run", ["--config", "configs/llama2_7b.py", "--workdir", "/data/x", "--", "--steps=3"]),
    ("run", ["--config", "gs://b/", "--workdir", "gs://b/runs/x"]),
    ("run", ["--config", "gs://Bad Bucket/c.py", "--workdir", "gs://b/runs/x"]),
    ("copy_data", ["--copy", "/local/path=/data/x"]),
    ("copy_data", []),
    ("logs", ["--worker", "first"]),
    ("install", ["--python", "three"]),
    ("delete", ["--queued-resource-id", "qr-1"]),
])
def test_bad_arguments_exit_2_with_one_line(script, args):
    proc = launch(script, *BASE, *args)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert "[dry-run]" not in proc.stdout


@pytest.mark.parametrize("flags", [
    ["--project", "My Project", "--zone", "us-east5-a", "--name", "x"],
    ["--project", "my-proj", "--zone", "east", "--name", "x"],
    ["--project", "my-proj", "--zone", "us-east5-a", "--name", "Bad_Name"],
])
def test_bad_common_flags(flags):
    proc = launch("logs", *flags, "--dry-run")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
