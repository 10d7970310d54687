"""Train-step benchmark: our jitted unlearning step vs the same model in PyTorch, on this CPU.

    python bench/train_step.py [--rounds 9] [--quiet-wait 30] [--variants nll,full]
                               [--model 10m|smollm2] [--skip-memory] [--skip-torch]
                               [--torch-huge-pages] [--out PATH]
    JAX_PLATFORMS=cuda python bench/train_step.py --skip-memory   # both sides on the GPU

Model: a 10.0M-parameter Llama (vocab 8192, hidden 256, 8 layers, 8 heads / 4 KV heads,
head_dim 32, SwiGLU 688, untied head; `--model smollm2`: SmolLM2-135M's shape, 30 layers,
hidden 576, 9 / 3 heads, MLP 1536, vocab 49152, tied), float32, batch 8 x 256 per stream, AdamW (b2 0.95)
after global-norm clipping at 1.0 on both sides. Two steps, each timed against its PyTorch
twin (`transformers.LlamaForCausalLM` + `torch.optim.AdamW`, same shapes, same loss):

  nll   plain language-model step (our loss method "lm"): one 8 x 256 batch, mean token
        NLL over the target tokens (the first quarter of every row is prompt), fwd + bwd +
        AdamW; the like-for-like comparison with an ordinary PyTorch training step.
  full  the paper's unlearning step (loss method "lower_bounded", smooth bound 5, replay
        and bias weights 1): forget batch 8 x 256 and replay batch 8 x 256 through the
        policy, replay batch through the frozen reference (no grad), KL(ref || policy) on
        replay target tokens, fwd + bwd + AdamW.

Processes: each side runs in a worker process of its own, as a user would run it: ours with
the glibc heap settings that `synthflaw unlearn` re-executes itself with (GLIBC_TUNABLES:
huge pages, and freed memory kept for reuse, where glibc and the kernel allow it;
synthflaw_jax/malloc_tuning.py), PyTorch as a plain script with glibc's defaults.
`--torch-huge-pages` adds a third side, torch_hp: PyTorch given the same settings, which it
gains from too. The parent drives the
workers turn by turn, so the rounds still alternate. In its turn a side runs
`--steps-per-turn` steps (2) back to back and only the last is timed, as in a training loop:
on this VM (Firecracker, which takes memory a process has freed back to the host after about
two seconds) the first step after another side's turn paid up to a third more for touching
cold memory, ours more than PyTorch's (XLA maps and frees its temporaries on every call;
PyTorch's buffers stay in glibc's heap). Those first steps are kept in the JSON
(`first_step_of_turn_s`).

Timing: after compilation and warm-up, `--rounds` rounds; each round runs one turn of every
variant on every side in turn (ours nll, torch nll, [torch_hp nll,] ours full, ...) and then
a 2048^3 matmul, so background load on a shared machine hits all sides alike. For every step the CPU that other
processes used meanwhile is read from /proc/stat ("foreign", in cores); a round is "quiet"
when both sides' steps ran with foreign < --quiet-foreign (0.3 cores). `--quiet-wait S`
waits up to S seconds before each round for such a moment. Reported: medians over all
rounds, best times, and the median of per-round ratios over the quiet rounds (the figure
to quote: PyTorch's OpenMP threads slow down far more than XLA's under contention, so
ratios taken under load flatter us). tokens/s counts trained tokens (2,048 per nll step,
4,096 per full step); ratio = ours / PyTorch tokens/s.

MFU: model FLOPs per step (6 x matmul params x trained tokens + 2 x matmul params x
reference tokens, plus dense attention QK^T and PV, 4 x L x T x H x hd per token forward,
x3 for trained tokens; elementwise work not counted) / best step time / the best rate of a
jitted 2048^3 float32 matmul seen over the rounds.

Memory: in a subprocess with 8 fake host devices (XLA_FLAGS=--xla_force_host_platform_device_count=8),
the full step is compiled (not run) on 1 device and on 8 (fsdp=8; fsdp=4 x tensor=2;
data=8); `compiled.memory_analysis()` per device, plus the train state's bytes per device
from its shardings (checked: <= total / 8 + 5% on the meshes that shard the state).

Writes bench/results/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "train_step.json"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

BATCH, SEQ = 8, 256
MODEL = dict(model_type="llama", vocab_size=8192, hidden_size=256, intermediate_size=688,
             num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
             max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
OPTIM = dict(learning_rate=1e-4, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0, grad_clip=1.0)
SMOLLM2 = dict(MODEL, vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, tie_word_embeddings=True)
SHAPES = {"10m": dict(MODEL), "smollm2": SMOLLM2}
SIDES = ("jax", "torch", "torch_hp")  # torch_hp: PyTorch with our heap settings (--torch-huge-pages)
LOSSES = {"nll": {"method": "lm"}, "full": {"method": "lower_bounded"}}


def host_batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, MODEL["vocab_size"], (BATCH, SEQ)).astype(np.int32)
    mask = np.ones((BATCH, SEQ), np.int32)
    mask[:, : SEQ // 4] = 0  # prompt
    return {"input_ids": ids, "loss_mask": mask, "segment_ids": np.ones((BATCH, SEQ), np.int32),
            "positions": np.broadcast_to(np.arange(SEQ, dtype=np.int32), (BATCH, SEQ)).copy()}


def streams(variant: str) -> dict:
    return {"replay": host_batch(1)} if variant == "nll" else {"forget": host_batch(0), "replay": host_batch(1)}


def model_config(**runtime):
    from synthflaw_jax.models.config import ModelConfig

    return ModelConfig(**MODEL, **runtime)


def optim_config():
    from synthflaw_jax import train

    c = train.default_optim_config()
    c.update(OPTIM)
    c.warmup_steps = 0
    c.schedule = "constant"
    return c


# ------------------------------------------------------------------------------------ JAX
def jax_step(variant: str, cfg=None):
    """A closure running one step of our jitted step (state carried over, blocking)."""
    import jax
    import jax.numpy as jnp

    from synthflaw_jax import train
    from synthflaw_jax.models import llama
    from synthflaw_jax.sharding import make_mesh, logical_to_sharding

    cfg = cfg or model_config()
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    oc = optim_config()
    schedule = train.make_schedule(oc, 1000)
    tx = train.make_optimizer(oc, schedule)
    shardings = train.state_shardings(cfg, tx, mesh)
    params = llama.init_params(cfg, jax.random.key(0), mesh)
    needs = train.reference_needs(LOSSES[variant])
    ref = jax.tree.map(jnp.copy, params) if needs.any else None
    state = train.create_state(params, tx, shardings, 0)
    step = train.make_train_step(cfg, LOSSES[variant], tx, schedule, mesh, shardings)
    batch = {k: jax.device_put(v, logical_to_sharding(("batch", "length"), (BATCH, SEQ), mesh))
             for k, v in streams(variant).items()}
    box = {"state": state}

    def run():
        box["state"], metrics = step(box["state"], batch, ref)
        return float(jax.block_until_ready(metrics["loss"]))

    run.step, run.args = step, (lambda: (box["state"], batch, ref))
    return run


# ---------------------------------------------------------------------------------- torch
def torch_step(variant: str):
    """The same step in PyTorch: transformers' Llama, our losses written in torch, AdamW."""
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    import devices

    device = devices.torch_device()
    torch.manual_seed(0)
    hf = LlamaConfig(vocab_size=MODEL["vocab_size"], hidden_size=MODEL["hidden_size"],
                     intermediate_size=MODEL["intermediate_size"], num_hidden_layers=MODEL["num_hidden_layers"],
                     num_attention_heads=MODEL["num_attention_heads"],
                     num_key_value_heads=MODEL["num_key_value_heads"],
                     max_position_embeddings=MODEL["max_position_embeddings"], rms_norm_eps=MODEL["rms_norm_eps"],
                     rope_theta=MODEL["rope_theta"], tie_word_embeddings=MODEL["tie_word_embeddings"],
                     attention_dropout=0.0)
    model = LlamaForCausalLM(hf).float().to(device).train()
    ref = None
    if variant == "full":
        ref = LlamaForCausalLM(hf).float().to(device).eval()
        ref.load_state_dict(model.state_dict())
        for p in ref.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=OPTIM["learning_rate"], betas=(OPTIM["b1"], OPTIM["b2"]),
                            eps=OPTIM["eps"], weight_decay=OPTIM["weight_decay"])
    data = {k: {n: torch.from_numpy(v.astype(np.int64)).to(device) for n, v in b.items()}
            for k, b in streams(variant).items()}

    def token_nll(logits, b):
        targets = b["input_ids"][:, 1:]
        w = b["loss_mask"][:, 1:].float()
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), reduction="none")
        return nll.view_as(w), w

    def forget_nll(logits, b):
        nll, w = token_nll(logits, b)
        return (nll * w).sum(1) / w.sum(1).clamp_min(1.0)  # per-example mean NLL

    def run():
        opt.zero_grad(set_to_none=True)
        r = data["replay"]
        r_logits = model(input_ids=r["input_ids"], position_ids=r["positions"]).logits
        nll, w = token_nll(r_logits, r)
        loss = (nll * w).sum() / w.sum().clamp_min(1.0)  # replay / plain LM loss
        if variant == "full":
            f = data["forget"]
            f_logits = model(input_ids=f["input_ids"], position_ids=f["positions"]).logits
            bound = 5.0
            loss = loss + (F.softplus(bound - forget_nll(f_logits, f)) - bound).mean()
            with torch.no_grad():
                ref_logp = F.log_softmax(ref(input_ids=r["input_ids"], position_ids=r["positions"]).logits[:, :-1], -1)
            logp = F.log_softmax(r_logits[:, :-1], -1)
            kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
            loss = loss + (kl * w).sum() / w.sum().clamp_min(1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM["grad_clip"])
        opt.step()
        return float(loss.detach())  # waits for the device, like ours

    run.threads = torch.get_num_threads()
    run.attn = getattr(model.config, "_attn_implementation", "?")
    return run


# ------------------------------------------------------------------------------ FLOPs
def step_flops(variant: str) -> float:
    """Model FLOPs of one step (matmuls and dense attention; elementwise work not counted)."""
    cfg = model_config()
    d, f, L, h, kv, hd, v = (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers,
                             cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.vocab_size)
    matmul_params = L * (d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f) + d * v
    attn_fwd_per_token = 4 * L * SEQ * h * hd
    fwd_per_token = 2 * matmul_params + attn_fwd_per_token
    tokens = BATCH * SEQ
    trained = tokens * (1 if variant == "nll" else 2)
    ref_tokens = 0 if variant == "nll" else tokens
    return 3 * fwd_per_token * trained + fwd_per_token * ref_tokens


def matmul_peak(n: int = 2048, reps: int = 9) -> float:
    """Best GFLOP/s of a jitted n^3 float32 matmul on this CPU."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    best = min(_timed(lambda: mm(a, b).block_until_ready()) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cpu_counters():
    """(busy seconds of the whole machine, this process's cpu seconds) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = float("nan")
    t = os.times()
    return busy, t.user + t.system


def measure(fn) -> tuple[float, float, float]:
    """(wall s, own cpu s, foreign load) of one call; foreign load = cores' worth of CPU
    that other processes used meanwhile (0 on an idle machine, up to the core count)."""
    busy0, own0 = _cpu_counters()
    wall = _timed(fn)
    busy1, own1 = _cpu_counters()
    return wall, own1 - own0, max(0.0, (busy1 - busy0) - (own1 - own0)) / wall


def wait_for_quiet(max_foreign: float, max_wait: float) -> float:
    """Sleep until other processes used < max_foreign cores over one second (or max_wait)."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0 = _cpu_counters()
        time.sleep(1.0)
        busy1, own1 = _cpu_counters()
        foreign = max(0.0, (busy1 - busy0) - (own1 - own0))
        if foreign < max_foreign or time.monotonic() > deadline:
            return foreign


# ----------------------------------------------------------------------------- memory
def memory_child() -> dict:
    """Runs in the 8-fake-device subprocess: compiled memory of the full step per mesh."""
    import jax

    from synthflaw_jax import train
    from synthflaw_jax.models import llama
    from synthflaw_jax.sharding import logical_to_sharding, make_mesh

    cfg = model_config()
    loss = LOSSES["full"]
    out = {"devices": len(jax.devices())}
    meshes = {"1 device": (1, 1, 1, jax.devices()[:1]), "fsdp=8": (1, 8, 1, None),
              "fsdp=4 x tensor=2": (1, 4, 2, None), "data=8": (8, 1, 1, None)}
    for name, (data, fsdp, tensor, devices) in meshes.items():
        mesh = make_mesh(data, fsdp, tensor, devices=devices)
        oc = optim_config()
        schedule = train.make_schedule(oc, 1000)
        tx = train.make_optimizer(oc, schedule)
        shardings = train.state_shardings(cfg, tx, mesh)
        state = train.abstract_state(cfg, tx, shardings)
        ref = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                           llama.abstract_params(cfg), shardings.params)
        bsh = logical_to_sharding(("batch", "length"), (BATCH, SEQ), mesh)
        batch = {k: {n: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=bsh) for n, v in b.items()}
                 for k, b in streams("full").items()}
        step = train.make_train_step(cfg, loss, tx, schedule, mesh, shardings)
        compiled = step.lower(state, batch, ref).compile()
        ma = compiled.memory_analysis()
        leaves = jax.tree.leaves(state)
        total = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)
        per_device = sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in leaves)
        n = mesh.devices.size
        checked = n > 1 and data == 1  # pure data parallelism replicates the state by design
        out[name] = {
            "mesh_devices": n,
            "state_bytes_total": total,
            "state_bytes_per_device": per_device,
            "state_limit_per_device": int(total / n * 1.05) if checked else None,
            "state_ok": per_device <= total / n * 1.05 if checked else None,
            "argument_bytes": int(ma.argument_size_in_bytes),
            "output_bytes": int(ma.output_size_in_bytes),
            "alias_bytes": int(ma.alias_size_in_bytes),
            "temp_bytes": int(ma.temp_size_in_bytes),
            "generated_code_bytes": int(ma.generated_code_size_in_bytes),
        }
    return out


def memory_report() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, __file__, "--memory-child"], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"memory child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- workers
def side_environment(side: str) -> dict:
    """The environment a side's worker runs in: ours as `synthflaw unlearn` runs (it re-executes
    itself with glibc heap settings where they apply: synthflaw_jax/malloc_tuning.py), PyTorch
    as a plain script (glibc's defaults), or PyTorch given the same settings (torch_hp)."""
    from synthflaw_jax import malloc_tuning

    env = dict(os.environ)
    env.pop(malloc_tuning.RELAUNCHED, None)
    if side == "torch":
        return env
    if malloc_tuning.should_relaunch(["unlearn"], env):
        env = malloc_tuning.relaunch_environment(["unlearn"], env)
    return env


def worker(side: str, variants: list[str], warmup: int) -> None:
    """`--worker SIDE`: build this side's steps, warm them up, then answer one command per
    stdin line with one '@@ {json}' stdout line: `run VARIANT N` (wall, own CPU and foreign
    load of each of N steps run back to back), `peak` (matmul GFLOP/s, ours only) and `info`
    (versions, device)."""
    import devices

    runs = {v: (jax_step(v) if side == "jax" else torch_step(v)) for v in variants}
    for _ in range(warmup):
        for fn in runs.values():
            fn()

    def reply(obj):
        print("@@ " + json.dumps(obj), flush=True)

    reply({"ready": True})
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "run":  # run VARIANT N: N steps back to back
            reply([dict(zip(("wall", "cpu", "foreign"), measure(runs[cmd[1]]))) for _ in range(int(cmd[2]))])
        elif cmd[0] == "peak":
            reply({"gflops": matmul_peak(reps=3)})
        elif cmd[0] == "info":
            info = {"glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
            if side == "jax":
                import jax

                info.update(jax=jax.__version__, device=devices.describe(), cpu=devices.cpu_name())
            else:
                import torch
                import transformers

                info.update(torch=torch.__version__, transformers=transformers.__version__,
                            torch_threads=torch.get_num_threads(), attn=runs[variants[0]].attn)
            reply(info)


class Worker:
    """One side's steps in a process of its own (so that each side runs with its own malloc
    settings), driven line by line so the rounds still alternate between the sides."""

    def __init__(self, side: str, args):
        cmd = [sys.executable, __file__, "--worker", side, "--model", args.model, "--variants", args.variants,
               "--warmup", str(args.warmup)]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=side_environment(side))

    def ask(self, command: str | None = None) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        raise SystemExit(f"the {self.side} worker stopped (exit code {self.proc.wait()})")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# ------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds (one step of every variant each)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", default="nll,full")
    ap.add_argument("--model", choices=sorted(SHAPES), default="10m", help="model shape (default: the 10M Llama)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--steps-per-turn", type=int, default=2,
                    help="steps a side runs back to back in its turn; only the last is timed (default 2)")
    ap.add_argument("--torch-huge-pages", action="store_true",
                    help="also time PyTorch with the glibc heap settings our commands use (side torch_hp)")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each round, wait up to this many seconds for other processes to go quiet")
    ap.add_argument("--quiet-foreign", type=float, default=0.3,
                    help="'quiet' = other processes used fewer cores than this over one second")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child()))
        return 0
    MODEL.clear()
    MODEL.update(SHAPES[args.model])
    variants = args.variants.split(",")
    if args.worker:
        worker(args.worker, variants, args.warmup)
        return 0

    side_names = ["jax"] + ([] if args.skip_torch else ["torch"] + (["torch_hp"] if args.torch_huge_pages else []))
    t0 = time.perf_counter()
    workers = {side: Worker(side, args) for side in side_names}  # they build and warm up concurrently
    for w in workers.values():
        w.ask()
    info = {side: w.ask("info") for side, w in workers.items()}
    print(f"built and warmed up in {time.perf_counter() - t0:.0f}s; timing {args.rounds} rounds", flush=True)
    runs = [(side, v) for v in variants for side in side_names]
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    foreign = {k: [] for k in runs}
    first_step = {k: [] for k in runs}
    load, peaks = [], []
    for r in range(args.rounds):
        if args.quiet_wait:
            wait_for_quiet(args.quiet_foreign, args.quiet_wait)
        load.append(os.getloadavg()[0])
        for side, v in runs:
            *first, m = workers[side].ask(f"run {v} {args.steps_per_turn}")
            times[(side, v)].append(m["wall"])
            cpu[(side, v)].append(m["cpu"])
            foreign[(side, v)].append(m["foreign"])
            first_step[(side, v)] += [f["wall"] for f in first[:1]]
        peaks.append(workers["jax"].ask("peak")["gflops"])
    for w in workers.values():
        w.close()
    peak = max(peaks)

    result = {
        "command": "python bench/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"device": info["jax"]["device"], "cpu": info["jax"]["cpu"], "cores": os.cpu_count(),
                    "loadavg_1min_per_round": [round(x, 2) for x in load],
                    "note": "shared machine: other processes ran during the measurement; 'foreign' "
                            "is the CPU (in cores) they used while a step ran"},
        "versions": {"jax": info["jax"]["jax"]},
        "glibc_tunables": {side: i["glibc_tunables"] for side, i in info.items()},
        "model": dict(MODEL, params=model_config().num_params(), batch=BATCH, seq=SEQ, dtype="float32"),
        "rounds": args.rounds,
        "quiet_foreign_cores": args.quiet_foreign,
        "matmul_peak_gflops": round(peak, 1),
        "matmul_peak_per_round": [round(x, 1) for x in peaks],
        "variants": {},
    }
    if not args.skip_torch:
        result["versions"].update({k: info["torch"][k] for k in ("torch", "transformers", "torch_threads")})
    print(f"\nran on {info['jax']['device']}; each side in its own process, GLIBC_TUNABLES: "
          + ", ".join(f"{side} {i['glibc_tunables'] or '(none)'}" for side, i in info.items()))
    print(f"matmul peak (best jitted 2048^3 f32 over the rounds): {peak:.0f} GFLOP/s; "
          f"1-min load avg {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} cores")
    print(f"quiet rounds: both sides' steps ran while other processes used < {args.quiet_foreign} cores")
    print(f"{'variant':8s} {'side':6s} {'median s':>9s} {'best s':>8s} {'cpu s':>6s} {'foreign':>8s} "
          f"{'tokens/s':>9s} {'MFU best':>9s} {'quiet med s':>11s}")
    for v in variants:
        tokens = BATCH * SEQ * (1 if v == "nll" else 2)
        flops = step_flops(v)
        entry = {"tokens_per_step": tokens, "model_gflop_per_step": round(flops / 1e9, 1)}
        sides = [side for side in SIDES if (side, v) in runs]
        quiet = [r for r in range(args.rounds)
                 if all(foreign[(side, v)][r] < args.quiet_foreign for side in sides)]
        entry["quiet_rounds"] = quiet
        for side in sides:
            ts = times[(side, v)]
            med, best = statistics.median(ts), min(ts)
            qmed = statistics.median([ts[r] for r in quiet]) if quiet else None
            entry[side] = {
                "median_s": round(med, 4), "best_s": round(best, 4),
                "quiet_median_s": None if qmed is None else round(qmed, 4),
                "median_cpu_s": round(statistics.median(cpu[(side, v)]), 4),
                "median_foreign_cores": round(statistics.median(foreign[(side, v)]), 2),
                "tokens_per_s_median": round(tokens / med, 1), "tokens_per_s_best": round(tokens / best, 1),
                "mfu_best": round(flops / best / (peak * 1e9), 4),
                "mfu_median": round(flops / med / (peak * 1e9), 4),
                "all_s": [round(x, 4) for x in ts],
                "all_foreign_cores": [round(x, 2) for x in foreign[(side, v)]],
                "first_step_of_turn_s": [round(x, 4) for x in first_step[(side, v)]],
            }
            e = entry[side]
            print(f"{v:8s} {side:6s} {med:9.3f} {best:8.3f} {e['median_cpu_s']:6.2f} "
                  f"{e['median_foreign_cores']:8.2f} {tokens / med:9.0f} {e['mfu_best']:9.1%} "
                  f"{'-' if qmed is None else f'{qmed:.3f}':>11s}")
        for side in [x for x in sides if x != "torch" and "torch" in entry]:
            per_round = [t / j for j, t in zip(times[(side, v)], times[("torch", v)])]
            r = {"median": round(entry["torch"]["median_s"] / entry[side]["median_s"], 3),
                 "per_round_median": round(statistics.median(per_round), 3),
                 "best": round(entry["torch"]["best_s"] / entry[side]["best_s"], 3),
                 "quiet_rounds_median": round(statistics.median([per_round[i] for i in quiet]), 3) if quiet else None}
            entry[f"ratio_{side}_over_torch"] = r
            q = r["quiet_rounds_median"]
            print(f"{v:8s} {side} / torch tokens/s: medians {r['median']:.2f}x, per-round "
                  f"{r['per_round_median']:.2f}x, best times {r['best']:.2f}x, quiet rounds "
                  f"{'-' if q is None else f'{q:.2f}x'} ({len(quiet)} of {args.rounds})")
        result["variants"][v] = entry

    if not args.skip_memory:
        mem = memory_report()
        result["memory"] = mem
        print("\ncompiled full step, per device (memory_analysis):")
        print(f"{'mesh':20s} {'state/dev MB':>12s} {'limit MB':>9s} {'ok':>5s} {'args MB':>8s} "
              f"{'out MB':>7s} {'alias MB':>8s} {'temp MB':>8s}")
        for name, m in mem.items():
            if not isinstance(m, dict):
                continue
            lim = "" if m["state_limit_per_device"] is None else f"{m['state_limit_per_device'] / 1e6:.1f}"
            ok = "" if m["state_ok"] is None else str(m["state_ok"])
            print(f"{name:20s} {m['state_bytes_per_device'] / 1e6:12.1f} {lim:>9s} {ok:>5s} "
                  f"{m['argument_bytes'] / 1e6:8.1f} {m['output_bytes'] / 1e6:7.1f} {m['alias_bytes'] / 1e6:8.1f} "
                  f"{m['temp_bytes'] / 1e6:8.1f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
