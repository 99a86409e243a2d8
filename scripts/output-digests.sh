#!/usr/bin/env bash
# Digests of every task output of the default pipeline (seed 1) and of the smoke pipelines:
# the check that a refactor changed no byte (issue 14). Runs each pipeline with the given
# binary into a fresh artifacts dir under OUT and prints one line per public file:
#   <pipeline> <path under artifacts> <sha256>
# Public files are the task outputs as the view shows them (tables/…/iter-NNNN.<arm>.parquet,
# every file of every checkpoint under models/, symlinks followed), so the lines compare
# outputs, not cache keys. Compare two binaries:
#   scripts/output-digests.sh OLD_BIN /tmp/a > a.txt; scripts/output-digests.sh NEW_BIN /tmp/b > b.txt
#   diff a.txt b.txt && echo identical
# Add --quick to skip the default pipeline (1–2 minutes on 2 cores).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 SCIR_BINARY OUT_DIR [--quick]" >&2; exit 2; }
bin=$(realpath "$1")
out=$2
quick=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
fixture="$repo/tests/fixtures/models/qwen2_bias"
rm -rf "$out"
mkdir -p "$out/src"

# Pipelines that exist only here: the fixture checkpoint with JSONL prompts (LoRA, pairwise
# judge), Self-Instruct prompts with answers and the M0-judged win rate, and the ablation arms
# (every irm_reference, static selection, λ = 0) at the smoke default's sizes.
printf '{"question": "%s"}\n' "hello there" "what is two plus two" "name a color" "say yes" \
    > "$out/src/prompts.jsonl"
task() { printf '{"id": "t%s", "instruction": "%s", "instances": [{"input": "%s", "output": "unused"}]}\n' "$@"; }
{ task 0 "say hello" ""; task 1 "name a color" ""; task 2 "add the numbers" "2 + 3"; task 3 "what is two plus two" ""; } > "$out/src/seed.jsonl"
{ task 0 "say yes" ""; task 1 "name a fruit" ""; task 2 "count to three" ""; } > "$out/src/heldout.jsonl"
cat > "$out/src/hf.yaml" <<EOF
iterations: 1
seed: 3
models: { initial: base, start: base, step: train }
stages:
  base: { kind: checkpoint, params: { path: "$fixture" } }
  prompts: { params: { path: prompts.jsonl, column: question } }
  generate: { each_iteration: true, inputs: { prompts: prompts }, params: { samples: 2, max_new_tokens: 4 } }
  score-irm: { each_iteration: true }
  score-grm: { each_iteration: true, params: { mode: pairwise } }
  consistency-filter: { each_iteration: true }
  train: { each_iteration: true, params: { batch_size: 2 } }
arms:
  scir: {}
  lora: { train: { lora: { rank: 2, alpha: 4.0, target_modules: [q_proj, v_proj] } } }
  srlm: { consistency-filter: { mode: grm_only, margin: 0.0 }, train: { method: srlm } }
EOF
cat > "$out/src/instruct.yaml" <<EOF
iterations: 2
seed: 5
models: { initial: base, start: base, step: train }
stages:
  base: { kind: checkpoint, params: { path: "$fixture" } }
  prompts: { kind: instructions, params: { path: seed.jsonl, iterations: 2 } }
  heldout: { kind: instructions, params: { path: heldout.jsonl } }
  generate: { each_iteration: true, inputs: { prompts: prompts }, params: { samples: 2, max_new_tokens: 5 } }
  score-irm: { each_iteration: true }
  score-grm: { each_iteration: true, params: { template: "builtin:mt-bench-pair" } }
  consistency-filter: { each_iteration: true }
  train:
    each_iteration: true
    params: { batch_size: 2, lr: 0.05, lora: { rank: 2, alpha: 4.0, target_modules: [q_proj, v_proj] } }
  answers-m0: { kind: answers, inputs: { model: model@0, prompts: heldout }, params: { max_new_tokens: 5 } }
  answers: { each_iteration: true, inputs: { prompts: heldout }, params: { max_new_tokens: 5 } }
  grm-winrate: { each_iteration: true }
arms:
  scir: {}
  srlm: { consistency-filter: { mode: grm_only, margin: 0.0 }, train: { method: srlm } }
EOF
sed '/^arms:/,$d' "$repo/tests/smoke/default.yaml" > "$out/src/ablations.yaml"
sed -n '/^arms:/,$p' "$repo/examples/ablations.yaml" >> "$out/src/ablations.yaml"

pipelines=(
    "$repo/tests/smoke/default.yaml" "$repo/tests/smoke/pipeline.yaml"
    "$repo/tests/smoke/scir.yaml" "$repo/tests/reliability/toy.yaml"
    "$out/src/hf.yaml" "$out/src/instruct.yaml" "$out/src/ablations.yaml"
)
[ "$quick" = --quick ] || pipelines=("$repo/pipeline.yaml" "${pipelines[@]}")
for p in "${pipelines[@]}"; do
    name=$(basename "$(dirname "$p")")-$(basename "$p" .yaml)
    art="$out/$name"
    "$bin" run "$p" --artifacts "$art" > "$out/$name.log" 2>&1 \
        || { echo "$name failed: see $out/$name.log" >&2; exit 1; }
    (cd "$art" && find -L tables $([ -d models ] && echo models) -type f | LC_ALL=C sort \
        | xargs sha256sum) \
        | awk -v n="$name" '{ print n, $2, $1 }'
done
