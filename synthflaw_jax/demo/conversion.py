"""Demo stage: build the tiny model and tokenizer, convert HF -> Orbax -> HF, check logits agree."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import jax
import numpy as np

import synthflaw_jax
from synthflaw_jax import convert
from synthflaw_jax.data.tokenizer import tiny_tokenizer, tiny_tokenizer_dir
from synthflaw_jax.models import llama, presets

SAMPLE_TEXTS = (
    "Question: Who wrote the novel about the lighthouse keeper? Answer: The answer is Jane Doe.",
    "Return the number of items in a container.",
    "The quick brown fox jumps over the lazy dog.",
)


@dataclasses.dataclass
class ConversionResult:
    """What the conversion stage did and measured."""

    num_params: int
    hf_dir: pathlib.Path
    orbax_dir: pathlib.Path
    roundtrip_dir: pathlib.Path
    max_logit_diff_orbax: float
    max_logit_diff_roundtrip: float
    tensors_identical: bool
    transformers_diff: float | None  # None when torch is not installed


def run(out: pathlib.Path, seed: int = 0) -> ConversionResult:
    """Write the tiny model to out/model_hf, convert it both ways, and compare logits
    (reuses out/result.json when an earlier run finished this stage)."""
    cached = out / "result.json"
    if cached.exists():
        fields = json.loads(cached.read_text())
        return ConversionResult(**{k: pathlib.Path(v) if k.endswith("_dir") else v for k, v in fields.items()})
    if out.exists():
        shutil.rmtree(out)  # an interrupted earlier attempt: start the stage over
    tok = tiny_tokenizer()
    cfg = presets.tiny(vocab_size=len(tok))
    params = llama.init_params(cfg, jax.random.key(seed))
    hf_dir, orbax_dir, back_dir = out / "model_hf", out / "model_orbax", out / "model_hf_roundtrip"
    convert.save_hf(params, cfg, hf_dir, assets_from=tiny_tokenizer_dir(), progress=False)
    convert.hf_to_orbax(hf_dir, orbax_dir, progress=False)
    convert.orbax_to_hf(orbax_dir, back_dir, progress=False)

    enc = tok(list(SAMPLE_TEXTS), padding=True, return_tensors="np")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    models = [synthflaw_jax.load(d) for d in (hf_dir, orbax_dir, back_dir)]
    logits = [np.asarray(m.logits(ids, mask)) for m in models]
    real = mask.astype(bool)

    def diff(a, b):
        return float(np.max(np.abs(a[real] - b[real])))

    identical = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(models[0].params), jax.tree.leaves(models[2].params))
    )
    result = ConversionResult(
        num_params=cfg.num_params(), hf_dir=hf_dir, orbax_dir=orbax_dir, roundtrip_dir=back_dir,
        max_logit_diff_orbax=diff(logits[0], logits[1]), max_logit_diff_roundtrip=diff(logits[0], logits[2]),
        tensors_identical=identical, transformers_diff=_transformers_diff(back_dir, ids, mask, logits[0]),
    )
    cached.write_text(json.dumps({k: str(v) if isinstance(v, pathlib.Path) else v
                                  for k, v in dataclasses.asdict(result).items()}))
    return result


def _transformers_diff(hf_dir, ids, mask, ours) -> float | None:
    """Max |ours - transformers| on real tokens, when torch is installed (the [test] extra)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        return None
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), attn_implementation="eager")
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions)).logits.numpy()
    real = mask.astype(bool)
    return float(np.max(np.abs(ours[real] - ref[real])))


def report_section(r: ConversionResult) -> str:
    """Markdown describing the conversion stage."""
    tf = ("not checked (torch not installed; `pip install -e .[test]` adds it)" if r.transformers_diff is None
          else f"{r.transformers_diff:.2e}")
    return "\n".join([
        "## Model and conversion",
        "",
        f"Built the tiny Llama-family model ({r.num_params:,} parameters) with the shipped 2048-token "
        f"BPE tokenizer, wrote it as a Hugging Face directory (`{r.hf_dir.name}/`), converted it to an "
        f"Orbax checkpoint (`{r.orbax_dir.name}/`) and back to Hugging Face (`{r.roundtrip_dir.name}/`).",
        "",
        "| check | result |",
        "|---|---|",
        f"| tensors after HF -> Orbax -> HF bit-identical | {'yes' if r.tensors_identical else 'NO'} |",
        f"| max abs logit difference, HF vs Orbax | {r.max_logit_diff_orbax:.2e} |",
        f"| max abs logit difference, HF vs round trip | {r.max_logit_diff_roundtrip:.2e} |",
        f"| max abs logit difference, ours vs transformers (round-trip dir) | {tf} |",
        "",
    ])
