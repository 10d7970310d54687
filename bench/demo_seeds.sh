#!/usr/bin/env bash
# The demo over several seeds (not run in CI): writes runs/demo_seed<N>/ and prints each
# seed's results table; docs/results.md summarises them.
#   bash bench/demo_seeds.sh [SEEDS...]   (default: 0 1 2)
set -euo pipefail
seeds=("${@:-0 1 2}")
for seed in ${seeds[@]}; do
  python -m synthflaw_jax demo --seed "$seed" --out "runs/demo_seed$seed" --overwrite --no-progress > "runs/demo_seed$seed.log" 2>&1 \
    || { echo "seed $seed failed, see runs/demo_seed$seed.log"; exit 1; }
  python - "$seed" <<'PY'
import json, sys
seed = sys.argv[1]
r = json.load(open(f"runs/demo_seed{seed}/results.json"))["results"]
for arm, v in r.items():
    print(seed, arm, round(v["ifeval"]["prompt_level_strict_acc"], 3), round(v["facts_mc_acc"], 3),
          round(v["ppl_held_out_text"], 1), round(v["template_share"], 3))
PY
done
