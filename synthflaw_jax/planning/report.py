"""The plan as text: memory per device, FLOPs, the roofline estimate and the verdict."""
from __future__ import annotations

GIB = 2**30


def _gib(x: float) -> str:
    return f"{x / GIB:8.2f} GiB"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _collectives(per_kind: dict) -> str:
    if not per_kind:
        return "none"
    parts = ", ".join(f"{kind} {b / GIB:.1f} GiB" for kind, b in sorted(per_kind.items(), key=lambda kv: -kv[1]))
    return f"{parts} (XLA:CPU emits gradient all-reduces where TPU's XLA uses reduce-scatter, half the bytes)"


def format_plan(r: dict) -> str:
    """A human report of a `run_plan` result; every estimate says it is one."""
    topo, model, mem, fl, roof = r["topology"], r["model"], r["memory_per_device"], r["flops"], r["roofline"]
    b = r["batch"]
    ana, shd, xla = mem["analytic"], mem["from_shardings"], mem["xla"]
    mesh = " ".join(f"{k}={v}" for k, v in r["mesh"].items())
    rows = " + ".join(f"{k} {v}" for k, v in b["rows"].items())
    refs = [k for k, v in b["reference_forward"].items() if v]
    lines = [
        f"synthflaw plan: {r['config']} on {topo['name']} ({topo['chips']} chips, {topo['hosts']} "
        f"host{'s' if topo['hosts'] != 1 else ''}, "
        f"accelerator type {topo['accelerator_type']})",
        f"model   {model['model_type']} from {model['source']}: {model['num_params'] / 1e9:.2f}B params, "
        f"compute {model['dtype']}, params/optimizer {model['param_dtype']}, remat {model['remat_policy']}",
        f"mesh    {mesh}; batch {rows} rows x {b['seq_len']} tokens per step, grad_accum {b['grad_accum']}",
        f"loss    {r['loss_method']}; reference forward on: {', '.join(refs) if refs else 'none'}",
        "",
        "memory per device                         analytic     compiled",
        f"  params                              {_gib(ana['params'])} {_gib(shd['params'])}  (from shardings)",
        f"  optimizer state (AdamW mu, nu)      {_gib(ana['optimizer'])} {_gib(shd['optimizer'])}",
        f"  reference params                    {_gib(ana['reference_params'])} {_gib(shd['reference_params'])}",
        f"  state total                         {_gib(mem['state_analytic'])} {_gib(mem['state_xla'])}"
        "  (XLA argument bytes less the batch)",
        f"  gradients (inside temporaries)      {_gib(ana['gradients'])}",
        f"  temporaries (activations, grads)                 {_gib(xla['temp_size_in_bytes'])}  (XLA:CPU estimate)",
        f"  peak: arguments + temporaries + unaliased outputs {_gib(mem['peak_estimate'])}  (estimate)",
        f"  HBM per chip ({topo['chip']})                                {_gib(topo['hbm_bytes'])}",
        "",
        "FLOPs per step (all chips)",
        f"  model FLOPs: 6N x tokens + attention, 2N x reference tokens  {fl['model_per_step']:.3e}  (analytic)",
        f"  hardware FLOPs: model FLOPs + rematerialisation recompute    {fl['hardware_analytic_per_step']:.3e}"
        "  (analytic)",
        f"  compiled matmuls: HLO dots x loop trip counts                {fl['hlo_dot_per_step']:.3e}",
        f"  XLA cost_analysis() per device (each loop body once)         {fl['cost_analysis_per_device']:.3e}",
        "",
        f"estimated step on TPU {topo['chip']} ({topo['peak_bf16_flops'] / 1e12:.0f} TFLOP/s bf16, "
        f"{topo['hbm_bandwidth'] / 1e9:.0f} GB/s HBM, {topo['ici_bandwidth'] / 1e9:.0f} GB/s ICI per chip)",
        f"  compute {roof['compute_s']:.3f} s | HBM (weights, optimizer) {roof['hbm_s']:.3f} s | "
        f"ICI collectives {roof['ici_s']:.3f} s",
        f"  collectives per chip as compiled: {_collectives(r['collectives_per_device'])}",
        f"  step time  {roof['step_s_overlap']:.3f} s (perfect overlap) .. {roof['step_s_serial']:.3f} s "
        "(no overlap)  [estimate]",
        f"  MFU        {_pct(roof['mfu_overlap'])} .. {_pct(roof['mfu_serial'])}  [estimate; bound by {roof['bound']}]",
        f"  tokens/s/chip {roof['tokens_per_s_per_chip_overlap']:,.0f} .. "
        f"{roof['tokens_per_s_per_chip_serial']:,.0f}  [estimate]",
        f"  calibrated {_pct(roof['mfu_calibrated'])} MFU, {roof['step_s_calibrated']:.3f} s, "
        f"{roof['tokens_per_s_per_chip_calibrated']:,.0f} tokens/s/chip  [fitted to MaxText's published MFU "
        "on v5e/v5p/v6e, within 9 points there; docs/plan.md]",
        "",
        f"verdict: {'FITS' if r['fits'] else 'DOES NOT FIT'} - estimated peak {mem['peak_estimate'] / GIB:.2f} GiB "
        f"of {topo['hbm_bytes'] / GIB:.0f} GiB HBM per chip ({_pct(r['hbm_fraction'])}; XLA:CPU temporaries "
        "stand in for the TPU's)",
    ]
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
