"""Conversion benchmark: peak RSS and wall time of HF <-> Orbax on a random bf16 Llama.

    python bench/convert_memory.py [--workdir /tmp/x] [--preset 1b|small] [--keep] [--profile] [--prototypes]

Writes a random Llama-3.2-1B-shaped HF directory (config.json + safetensors shards) tensor by
tensor, then measures, each in its own child process (peak RSS read in the child with
getrusage at the end, so every peak is its own):
  import_only   python importing jax + synthflaw_jax.convert (fixed cost)
  hf_to_orbax   `python -m synthflaw_jax convert hf-to-orbax` as a user starts it (a process of
                its own, which may re-execute itself: synthflaw_jax/malloc_tuning.py)
  orbax_to_hf   `python -m synthflaw_jax convert orbax-to-hf`, likewise
  torch_resave  transformers from_pretrained(dtype=bfloat16) + save_pretrained (the baseline)
  torch_import  python importing torch + transformers (the baseline's fixed cost)
Prints a table and writes bench/results/convert_memory.json (or --out). When the memory target is missed (or
with --profile) it also runs the library step by step, sampling RSS (anonymous and file-backed)
after and during every step. --prototypes also measures bench-only prototypes of the proposed
streaming fix and checks that the prototype's HF output is bit-identical to the input.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "convert_memory.json"
TARGET = 1.0  # peak RSS / checkpoint bytes (issue 18; issue 3 asked for 1.3)
TIME_TARGET = 1.0  # wall time / PyTorch's load + save, median of per-round ratios
SHARD_BYTES = 10**9

PRESETS = {
    # shaped like meta-llama/Llama-3.2-1B
    "1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, head_dim=64,
               max_position_embeddings=131072, rope_theta=500000.0, rope_factor=32.0,
               rope_original_max_position_embeddings=8192),
    # ~47M parameters, for a quick check of the script itself
    "small": dict(vocab_size=32000, hidden_size=512, intermediate_size=2048, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                  max_position_embeddings=8192, rope_theta=500000.0, rope_factor=8.0,
                  rope_original_max_position_embeddings=1024),
}


# --------------------------------------------------------------------------- random HF directory
def make_config(preset: str):
    """The ModelConfig of a preset: tied embeddings, llama3 rope scaling, bf16."""
    sys.path.insert(0, str(REPO))
    from synthflaw_jax.models.config import ModelConfig

    return ModelConfig(model_type="llama", rope_type="llama3", rope_low_freq_factor=1.0,
                       rope_high_freq_factor=4.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                       bos_token_id=128000, eos_token_id=128001, param_dtype="bfloat16",
                       dtype="bfloat16", **PRESETS[preset])


def hf_tensor_specs(cfg) -> list[tuple[str, tuple[int, ...]]]:
    """(HF name, shape) of every tensor, in HF order, from the library's own mapping."""
    from synthflaw_jax import hf_weights

    specs = []
    for m in hf_weights.tensor_maps(cfg):
        for i in range(cfg.num_hidden_layers if m.layered else 1):
            specs.append((m.hf_name.format(i=i), m.hf_shape))
    return specs


def plan_shards(specs, max_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Group tensors into consecutive shards of at most max_bytes of bf16 data each."""
    shards, size = [[]], 0
    for name, shape in specs:
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def random_bf16(rng: np.random.Generator, shape, name: str) -> np.ndarray:
    """Random weights in bf16: ones for norms, N(0, 0.02) elsewhere, built in row chunks."""
    import ml_dtypes

    if name.endswith("norm.weight"):
        return np.ones(shape, ml_dtypes.bfloat16)
    out = np.empty(shape, ml_dtypes.bfloat16)
    rows = max(1, (1 << 24) // max(1, int(np.prod(shape[1:]))))  # ~16M values (64 MB f32) per chunk
    for start in range(0, shape[0], rows):
        chunk = rng.standard_normal((min(rows, shape[0] - start),) + tuple(shape[1:]), dtype=np.float32)
        chunk *= 0.02
        out[start:start + rows] = chunk.astype(ml_dtypes.bfloat16)
    return out


def write_shard(path: pathlib.Path, tensors, rng: np.random.Generator) -> int:
    """Write one safetensors file, generating and writing one tensor at a time; returns data bytes."""
    with open(path, "wb") as f:
        f.write(_safetensors_header(tensors))
        for name, shape in tensors:
            f.write(random_bf16(rng, shape, name).tobytes())
    return sum(2 * int(np.prod(shape)) for _, shape in tensors)


def write_random_hf_dir(cfg, out: pathlib.Path, seed: int = 0) -> None:
    """config.json + model-0000k-of-0000n.safetensors + index, never holding more than one tensor."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_hf_dict(), indent=2) + "\n")
    rng = np.random.default_rng(seed)
    shards = plan_shards(hf_tensor_specs(cfg), SHARD_BYTES)
    n, weight_map, total = len(shards), {}, 0
    for k, tensors in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        total += write_shard(out / fname, tensors, rng)
        weight_map.update({name: fname for name, _ in tensors})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def dir_bytes(path: pathlib.Path) -> int:
    """Total size of the files under path."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- child processes
def peak_rss_bytes(children: bool = False) -> int:
    """This process's peak resident set size, or with `children` the larger of it and the
    largest child's it waited for (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return peak * 1024


def child_job(kind: str, src: str, dst: str) -> None:
    """Run one measured job in this (child) process and print its peak RSS as a JSON line."""
    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    if kind == "generate":
        write_random_hf_dir(make_config(src), pathlib.Path(dst))
    elif kind == "import_only":
        import jax  # noqa: F401

        import synthflaw_jax.convert  # noqa: F401
    elif kind == "torch_import":
        import torch  # noqa: F401
        import transformers  # noqa: F401
    elif kind in ("hf_to_orbax", "orbax_to_hf"):
        # the command as a user starts it (it may re-execute itself: synthflaw_jax/malloc_tuning.py);
        # its peak RSS comes back through RUSAGE_CHILDREN (peak_rss_bytes(children=True))
        cmd = [sys.executable, "-m", "synthflaw_jax", "convert", kind.replace("_", "-"), src, dst, "--no-progress"]
        rc = subprocess.run(cmd).returncode
        if rc:
            raise SystemExit(f"{kind} failed with exit code {rc}")
    elif kind == "torch_resave":
        import torch
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
        model.save_pretrained(dst)
    else:
        raise SystemExit(f"unknown child job {kind!r}")
    seconds = time.perf_counter() - start
    print("RESULT " + json.dumps({"peak_rss_bytes": peak_rss_bytes(children=True), "job_seconds": seconds}),
          flush=True)


def run_child(kind: str, src: str = "", dst: str = "") -> dict:
    """Start this script as a child for one job; return its peak RSS and wall seconds."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    env.pop("XLA_FLAGS", None)  # one plain CPU device, as a user's shell would have
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", kind, src, dst],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"child {kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    result["wall_seconds"] = wall
    return result


# --------------------------------------------------------------------------- profile
class RssSampler:
    """Background thread sampling /proc/self/status (VmRSS, RssAnon, RssFile) every 20 ms."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self):
        self.peak = dict.fromkeys(self.FIELDS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @classmethod
    def now(cls) -> dict:
        """Current values in bytes."""
        out = {}
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in cls.FIELDS:
                out[key] = int(line.split()[1]) * 1024
        return out

    def _run(self):
        while not self._stop.is_set():
            for key, value in self.now().items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _gb(x: int) -> str:
    return f"{x / 1e9:.2f}"


def profile_step(name: str, fn, rows: list):
    """Run fn() under an RssSampler; record RSS after the step and the peak during it."""
    start = time.perf_counter()
    with RssSampler() as sampler:
        value = fn()
    after = RssSampler.now()
    rows.append({"step": name, "seconds": time.perf_counter() - start, "after": after,
                 "peak_during": dict(sampler.peak), "ru_maxrss_so_far": peak_rss_bytes()})
    r = rows[-1]
    print(f"  {name:<44} {r['seconds']:6.1f}s  after: rss {_gb(after['VmRSS'])} GB "
          f"(anon {_gb(after['RssAnon'])}, file {_gb(after['RssFile'])})  peak during: rss "
          f"{_gb(sampler.peak['VmRSS'])} (anon {_gb(sampler.peak['RssAnon'])}, "
          f"file {_gb(sampler.peak['RssFile'])})", flush=True)
    return value


def profile_to_orbax(hf_dir: str, out: pathlib.Path, rows: list) -> None:
    """hf-to-orbax as the library does it: convert.load_hf, then convert.save_model_checkpoint."""
    from synthflaw_jax import convert

    cfg, params = profile_step("convert.load_hf", lambda: convert.load_hf(hf_dir, progress=False), rows)
    profile_step("convert.save_model_checkpoint", lambda: convert.save_model_checkpoint(params, cfg, out), rows)


def profile_to_hf(ckpt_dir: str, out: pathlib.Path, rows: list) -> None:
    """orbax-to-hf as the library does it: convert.load_model_checkpoint, then convert.save_hf."""
    from synthflaw_jax import convert

    cfg, params = profile_step("convert.load_model_checkpoint", lambda: convert.load_model_checkpoint(ckpt_dir), rows)
    profile_step("convert.save_hf (default 5 GB shards)",
                 lambda: convert.save_hf(params, cfg, out, progress=False), rows)


# Prototypes of the proposed fix, kept here as evidence (not the library's code path).
def _aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data is `align`-byte aligned (jax.device_put aliases it on CPU)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _stored(reader, name: str) -> tuple[int, np.dtype]:
    """File offset of one stored tensor's bytes and its numpy dtype, from the safetensors header."""
    import ml_dtypes

    dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32}
    with open(reader.location[name], "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(header_len))[name]
    return 8 + header_len + entry["data_offsets"][0], np.dtype(dtypes[entry["dtype"]])


def _read_into(reader, name: str, out: np.ndarray) -> None:
    """Read one stored tensor's bytes straight into `out` with a plain read (no mmap)."""
    offset, _ = _stored(reader, name)
    with open(reader.location[name], "rb", buffering=0) as f:
        f.seek(offset)
        f.readinto(memoryview(out.reshape(-1).view(np.uint8)))


def _read_one_param(reader, cfg, m) -> np.ndarray:
    """One stacked parameter in our layout, built in an aligned buffer, one HF tensor at a time."""
    from synthflaw_jax import hf_weights

    layers = cfg.num_hidden_layers
    names = hf_weights._hf_names(m, layers)
    dtype = _stored(reader, names[0])[1]  # stored dtype kept, as the library does
    ours_shape = m.to_ours(np.empty(m.hf_shape, dtype)).shape
    buf = _aligned_empty(((layers,) if m.layered else ()) + ours_shape, dtype)
    for i, name in enumerate(names):
        target = buf[i] if m.layered else buf
        if m.to_ours is hf_weights._identity:
            _read_into(reader, name, target)
        else:
            tmp = np.empty(m.hf_shape, dtype)
            _read_into(reader, name, tmp)
            target[...] = m.to_ours(tmp)
    return buf


def prototype_to_orbax(hf_dir: str, out: pathlib.Path, rows: list) -> None:
    """Each parameter read (no mmap, zero-copy device_put) and written to Orbax at once
    (orbax v1 partial save), so only one parameter is ever held."""
    import jax
    from orbax.checkpoint.experimental import v1 as ocp_v1

    from synthflaw_jax import hf_weights
    from synthflaw_jax.models.config import ModelConfig

    def stream():
        cfg = ModelConfig.from_file(pathlib.Path(hf_dir) / "config.json")
        reader = hf_weights.SafetensorsReader(hf_dir)
        device = jax.local_devices()[0]
        for m in hf_weights.tensor_maps(cfg):
            tree: dict = {}
            hf_weights._set(tree, m.path, jax.device_put(_read_one_param(reader, cfg, m), device))
            ocp_v1.partial.save(out / "params", tree)
            del tree
        ocp_v1.partial.finalize(out / "params")  # pytree lands in params/state

    profile_step("prototype: read one param, partial-save it", stream, rows)


def prototype_to_hf(ckpt_dir: str, out: pathlib.Path, rows: list) -> None:
    """Orbax leaves restored one at a time (partial_restore) and streamed into one safetensors
    file whose header is written first from the planned shapes."""
    import jax
    import orbax.checkpoint as ocp

    from synthflaw_jax import hf_weights
    from synthflaw_jax.models.config import ModelConfig

    def stream():
        cfg = ModelConfig.from_file(pathlib.Path(ckpt_dir) / "config.json")
        checkpointer, sharding = ocp.PyTreeCheckpointer(), jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        stored = checkpointer.metadata(pathlib.Path(ckpt_dir) / "params").item_metadata.tree
        maps = hf_weights.tensor_maps(cfg)
        specs = [(n, m.hf_shape) for m in maps for n in hf_weights._hf_names(m, cfg.num_hidden_layers)]
        out.mkdir(parents=True)
        with open(out / "model.safetensors", "wb") as f:
            f.write(_safetensors_header(specs))
            for m in maps:
                meta = hf_weights._get(stored, m.path)
                item, restore_args = {}, {}
                hf_weights._set(item, m.path, jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=sharding))
                hf_weights._set(restore_args, m.path, ocp.ArrayRestoreArgs(sharding=sharding))
                restored = checkpointer.restore(pathlib.Path(ckpt_dir) / "params", args=ocp.args.PyTreeRestore(
                    item=item, restore_args=restore_args, partial_restore=True))
                host = np.asarray(hf_weights._get(restored, m.path))
                for i in range(cfg.num_hidden_layers if m.layered else 1):
                    f.write(np.ascontiguousarray(m.to_hf(host[i] if m.layered else host)).tobytes())
                del restored, host

    profile_step("prototype: restore one leaf, stream it out", stream, rows)


def _safetensors_header(specs, dtype: str = "BF16", itemsize: int = 2) -> bytes:
    """Length prefix + JSON header of a safetensors file holding `specs` (name, shape) in order."""
    header, offset = {}, 0
    for name, shape in specs:
        nbytes = itemsize * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data section 8-byte aligned, as safetensors writes it
    return len(blob).to_bytes(8, "little") + blob


def same_params(ckpt_dir: pathlib.Path, prototype_params: pathlib.Path) -> bool:
    """True when the prototype's Orbax pytree equals the library's, leaf by leaf, bit for bit."""
    import jax
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    ours = checkpointer.restore(ckpt_dir / "params")
    proto = checkpointer.restore(prototype_params)
    if jax.tree.structure(ours) != jax.tree.structure(proto):
        return False
    return all(a.dtype == b.dtype and a.shape == b.shape and np.asarray(a).tobytes() == np.asarray(b).tobytes()
               for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(proto)))


def same_tensors(hf_dir: pathlib.Path, other: pathlib.Path) -> bool:
    """True when both HF directories hold the same tensor names with bit-identical bytes."""
    from synthflaw_jax import hf_weights

    a, b = hf_weights.SafetensorsReader(hf_dir), hf_weights.SafetensorsReader(other)
    if sorted(a.names()) != sorted(b.names()):
        return False
    return all(a.get(n).tobytes() == b.get(n).tobytes() for n in a.names())


PROFILES = {"profile_to_orbax": profile_to_orbax, "profile_to_hf": profile_to_hf,
            "prototype_to_orbax": prototype_to_orbax, "prototype_to_hf": prototype_to_hf}


def child_profile(kind: str, src: str, out: str) -> None:
    """Import, then one profiled conversion; print the per-step rows as a JSON line."""
    sys.path.insert(0, str(REPO))
    rows: list = []
    profile_step("import jax + synthflaw_jax.convert", lambda: __import__("synthflaw_jax.convert"), rows)
    PROFILES[kind](src, pathlib.Path(out), rows)
    print("PROFILE " + json.dumps(rows), flush=True)


def run_profile(kind: str, src: pathlib.Path, out: pathlib.Path) -> list:
    """Run one profile in its own child process; echo its lines and return its rows."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    env.pop("XLA_FLAGS", None)
    shutil.rmtree(out, ignore_errors=True)
    print(f"{kind} (own child; RSS after each step and peak during it):", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(src), str(out)],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("PROFILE "):
            rows = json.loads(line[len("PROFILE "):])
            print(f"  child peak RSS (ru_maxrss) {_gb(rows[-1]['ru_maxrss_so_far'])} GB", flush=True)
            return rows
        print(line)
    return []


# --------------------------------------------------------------------------- report
def summarise(cfg, preset: str, ckpt_bytes: int, orbax_bytes: int, measured: dict, rounds: list) -> dict:
    """The JSON report: sizes, per-job figures (medians over the interleaved rounds), per-round
    time ratios ours / PyTorch, target verdicts."""
    from synthflaw_jax.demo.progress import cpu_name

    jobs = {}
    fixed = {"hf_to_orbax": "import_only", "orbax_to_hf": "import_only", "torch_resave": "torch_import"}
    for kind, r in measured.items():
        jobs[kind] = {"peak_rss_bytes": r["peak_rss_bytes"],
                      "peak_rss_over_checkpoint": r["peak_rss_bytes"] / ckpt_bytes,
                      "wall_seconds": r["wall_seconds"], "job_seconds": r["job_seconds"]}
        if "wall_seconds_all" in r:
            jobs[kind]["wall_seconds_all"] = r["wall_seconds_all"]
        if kind in fixed:  # the same figure with the job's import cost taken off
            extra = r["peak_rss_bytes"] - measured[fixed[kind]]["peak_rss_bytes"]
            jobs[kind]["peak_rss_above_imports_over_checkpoint"] = extra / ckpt_bytes
    torch = jobs["torch_resave"]
    ratios = {}
    for k in ("hf_to_orbax", "orbax_to_hf"):
        per_round = [r[k]["wall_seconds"] / r["torch_resave"]["wall_seconds"] for r in rounds]
        ratios[k] = {"peak_rss_ours_over_torch": jobs[k]["peak_rss_bytes"] / torch["peak_rss_bytes"],
                     "wall_ours_over_torch": float(np.median(per_round)),
                     "wall_ours_over_torch_per_round": per_round}
    worst = max(jobs["hf_to_orbax"]["peak_rss_over_checkpoint"], jobs["orbax_to_hf"]["peak_rss_over_checkpoint"])
    slowest = max(r["wall_ours_over_torch"] for r in ratios.values())
    return {"preset": preset, "parameters": cfg.num_params(), "checkpoint_bytes": ckpt_bytes,
            "orbax_checkpoint_bytes": orbax_bytes, "jobs": jobs, "ratios": ratios, "rounds": rounds,
            "target_peak_rss_over_checkpoint": TARGET, "target_met": worst <= TARGET,
            "target_wall_over_torch": TIME_TARGET, "time_target_met": slowest <= TIME_TARGET,
            "cpu": cpu_name(), "cpus": os.cpu_count()}


def print_table(report: dict) -> None:
    """Human-readable table of the report."""
    print(f"\n{report['preset']}: {report['parameters'] / 1e9:.3f}B parameters, HF checkpoint "
          f"{report['checkpoint_bytes'] / 2**30:.2f} GiB ({report['checkpoint_bytes']:,} bytes), Orbax "
          f"{report['orbax_checkpoint_bytes'] / 2**30:.2f} GiB; {report['cpus']} CPUs ({report['cpu']})")
    print(f"{'job':<14} {'peak RSS GiB':>12} {'RSS/ckpt':>9} {'(-imports)':>10} {'wall s':>8} {'job s':>8}")
    for kind, j in report["jobs"].items():
        above = j.get("peak_rss_above_imports_over_checkpoint")
        above = f"{above:10.2f}" if above is not None else f"{'':>10}"
        print(f"{kind:<14} {j['peak_rss_bytes'] / 2**30:12.2f} {j['peak_rss_over_checkpoint']:9.2f} {above} "
              f"{j['wall_seconds']:8.1f} {j['job_seconds']:8.1f}")
    for kind, r in report["ratios"].items():
        rounds = ", ".join(f"{x:.2f}" for x in r["wall_ours_over_torch_per_round"])
        print(f"{kind} / torch_resave: peak RSS x{r['peak_rss_ours_over_torch']:.2f}, "
              f"wall x{r['wall_ours_over_torch']:.2f} (median of rounds: {rounds})")
    loads = [r["loadavg_1min"] for r in report["rounds"]]
    print(f"1-min load average at the rounds' starts: {', '.join(f'{x:.1f}' for x in loads)}")
    verdict = "MET" if report["target_met"] else "NOT met"
    print(f"target peak RSS / checkpoint <= {report['target_peak_rss_over_checkpoint']}: {verdict}")
    verdict = "MET" if report["time_target_met"] else "NOT met"
    print(f"target wall time / PyTorch's <= {report['target_wall_over_torch']}: {verdict}")


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    """Command-line options (plus the hidden --child used to run one job)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", help="where the temporary checkpoints go (default: a new dir under /tmp)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    p.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds of (hf_to_orbax, torch_resave, orbax_to_hf, torch_resave); "
                        "figures are medians (default 3)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds to wait after deleting a job's old output, before the job (default 5)")
    p.add_argument("--profile", action="store_true", help="profile even when the target is met")
    p.add_argument("--out", help="write the results here (default: bench/results/convert_memory.json, "
                                 "or convert_memory_PRESET.json for other presets)")
    p.add_argument("--prototypes", action="store_true",
                   help="also measure prototypes of the proposed streaming fix (bench-only code)")
    p.add_argument("--child", nargs=3, metavar=("KIND", "SRC", "DST"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Generate the random checkpoint, measure every job in its own child, report, clean up."""
    args = parse_args(argv)
    if args.child:
        kind, src, dst = args.child
        child_profile(kind, src, dst) if kind in PROFILES else child_job(kind, src, dst)
        return 0
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="convert_memory-"))
    work.mkdir(parents=True, exist_ok=True)
    hf_dir, ckpt, hf_out, torch_out = (work / n for n in ("hf", "ckpt", "hf_out", "torch_out"))
    for path in (hf_dir, ckpt, hf_out, torch_out):
        shutil.rmtree(path, ignore_errors=True)
    try:
        cfg = make_config(args.preset)
        # in a child: Linux carries the parent's peak RSS over fork+exec as a floor of each
        # child's ru_maxrss, so the parent must never hold the generated tensors
        generated = run_child("generate", args.preset, str(hf_dir))
        ckpt_bytes = dir_bytes(hf_dir)
        print(f"wrote {hf_dir} ({ckpt_bytes / 2**30:.2f} GiB) in {generated['wall_seconds']:.0f}s; "
              f"parent peak RSS {peak_rss_bytes() / 2**20:.0f} MiB", flush=True)
        measured = {kind: run_child(kind) for kind in ("import_only", "torch_import")}
        rounds = []
        for k in range(max(args.rounds, 1)):
            # ours and PyTorch's back to back, PyTorch's twice so each of ours has a neighbour
            row = {"loadavg_1min": os.getloadavg()[0]}
            for kind, src, dst in (("hf_to_orbax", hf_dir, ckpt), ("torch_resave", hf_dir, torch_out),
                                   ("orbax_to_hf", ckpt, hf_out), ("torch_resave_2", hf_dir, torch_out)):
                shutil.rmtree(dst, ignore_errors=True)
                # each job starts with no dirty pages: otherwise it pays for flushing the
                # previous job's 2.5 GB of writes (the first job of round 1, the generator's)
                os.sync()
                # and with no memory freed just before it: a VM that reports free pages to its
                # host (Firecracker here) makes freshly freed pages cheap to touch again for a
                # few seconds and cold pages slow, so whichever job follows a deletion would win
                time.sleep(args.settle)
                row[kind] = run_child(kind.removesuffix("_2"), str(src), str(dst))
                print(f"  round {k + 1} {kind:<14} peak RSS {row[kind]['peak_rss_bytes'] / 2**30:.2f} GiB, "
                      f"{row[kind]['wall_seconds']:.1f}s (load {os.getloadavg()[0]:.1f})", flush=True)
            row["torch_resave"] = {"wall_seconds": (row["torch_resave"]["wall_seconds"]
                                                    + row.pop("torch_resave_2")["wall_seconds"]) / 2,
                                   "peak_rss_bytes": row["torch_resave"]["peak_rss_bytes"],
                                   "job_seconds": row["torch_resave"]["job_seconds"]}
            rounds.append(row)
        for kind in ("hf_to_orbax", "orbax_to_hf", "torch_resave"):
            walls = [r[kind]["wall_seconds"] for r in rounds]
            measured[kind] = {"peak_rss_bytes": max(r[kind]["peak_rss_bytes"] for r in rounds),
                              "wall_seconds": float(np.median(walls)), "wall_seconds_all": walls,
                              "job_seconds": float(np.median([r[kind]["job_seconds"] for r in rounds]))}
        report = summarise(cfg, args.preset, ckpt_bytes, dir_bytes(ckpt), measured, rounds)
        print_table(report)
        if args.profile or args.prototypes or not report["target_met"]:
            report["profile"] = {"profile_to_orbax": run_profile("profile_to_orbax", hf_dir, work / "p_ckpt"),
                                 "profile_to_hf": run_profile("profile_to_hf", ckpt, work / "p_hf")}
        if args.prototypes:
            report["prototypes"] = {"prototype_to_orbax": run_profile("prototype_to_orbax", hf_dir, work / "x_ckpt"),
                                    "prototype_to_hf": run_profile("prototype_to_hf", ckpt, work / "x_hf")}
            checks = {"prototype_to_orbax_equals_library": same_params(ckpt, work / "x_ckpt" / "params" / "state"),
                      "prototype_to_hf_equals_input": same_tensors(hf_dir, work / "x_hf")}
            report["prototypes"]["checks"] = checks
            print(f"prototype outputs bit-identical: {checks}")
        results = pathlib.Path(args.out) if args.out else \
            RESULTS if args.preset == "1b" else RESULTS.with_name(f"convert_memory_{args.preset}.json")
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {results}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
