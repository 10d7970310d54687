#!/usr/bin/env bash
# The demo over several seeds (not run in CI): writes runs/demo_seed<N>/ (rerunning resumes
# an interrupted seed and reuses a finished one) and prints the summary of
# bench/summarize_demo_seeds.py with the claims' intervals; docs/results.md reports it.
#   bash bench/demo_seeds.sh [SEEDS...]          (default: 0 1 2 3 4)
#   DEMO_ARGS="--methods ul_pattern,ga" bash bench/demo_seeds.sh 5 6 7
set -euo pipefail
seeds=("${@:-0 1 2 3 4}")
here="$(cd "$(dirname "$0")" && pwd)"
dirs=()
mkdir -p runs
for seed in ${seeds[@]}; do
  # shellcheck disable=SC2086
  python -m synthflaw_jax demo --seed "$seed" --out "runs/demo_seed$seed" --no-progress ${DEMO_ARGS:-} \
    > "runs/demo_seed$seed.log" 2>&1 || { echo "seed $seed failed, see runs/demo_seed$seed.log"; exit 1; }
  dirs+=("runs/demo_seed$seed")
done
python "$here/summarize_demo_seeds.py" "${dirs[@]}"
