#!/usr/bin/env bash
# The demo over several seeds (not run in CI): writes runs/demo_seed<N>/ and prints the
# summary table of bench/summarize_demo_seeds.py; docs/results.md reports it.
#   bash bench/demo_seeds.sh [SEEDS...]   (default: 0 1 2)
set -euo pipefail
seeds=("${@:-0 1 2}")
here="$(cd "$(dirname "$0")" && pwd)"
dirs=()
mkdir -p runs
for seed in ${seeds[@]}; do
  python -m synthflaw_jax demo --seed "$seed" --out "runs/demo_seed$seed" --overwrite --no-progress > "runs/demo_seed$seed.log" 2>&1 \
    || { echo "seed $seed failed, see runs/demo_seed$seed.log"; exit 1; }
  dirs+=("runs/demo_seed$seed")
done
python "$here/summarize_demo_seeds.py" "${dirs[@]}"
