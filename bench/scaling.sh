#!/usr/bin/env bash
# How the cost of one SCIR iteration grows (see BENCHMARKS.md, "How cost grows").
#
#   bench/scaling.sh [--out DIR] [--runs "MODEL:PROMPTS …"]
#
# One SCIR iteration (generate, score-IRM, score-GRM, consistency filter, LoRA train; the
# settings of examples/smollm2.yaml, iterations: 1, no evaluation) per run, each in a fresh
# artifacts directory, timed per task from the run record. Default runs:
#   smollm2 (SmolLM2-135M-Instruct) at 8, 32 and 128 prompts;
#   random-weight Llama configs with SmolLM2's tokenizer at 8 prompts: random135m
#   (SmolLM2-135M's shape), random360m (SmolLM2-360M's) and random1b (~1.2 B: TinyLlama-1.1B's
#   shape with SmolLM2's 49 152-token vocabulary, untied).
# Random models never emit the end token, so every answer runs to max_new_tokens: their
# generate times are an upper bound for that size; the other stages see fixed lengths.
# Results: DIR/results.jsonl (one line per run and task) and DIR/table.md. Threads:
# BENCH_THREADS (default 2). scir is built with SCIR_BENCH_PROFILE (default dev), unless
# SCIR names a binary to use instead (so a long run is not disturbed by rebuilding).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out-scaling"
RUNS="smollm2:8 smollm2:32 smollm2:128 random135m:8 random360m:8 random1b:8"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/scaling.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
export RAYON_NUM_THREADS="${BENCH_THREADS:-2}"
source "$ROOT/bench/scir_bin.sh"
SCIR="$SCIR" "$ROOT/examples/smollm2/setup.sh" >&2
SMOLLM2="$ROOT/examples/smollm2/model"
SEEDS="$(cd "$ROOT/.." && pwd)/shared/data/self-instruct/seed_tasks.jsonl"
mkdir -p "$OUT"

# model NAME: the checkpoint directory of NAME (random ones made once, seeded).
model() {
  case "$1" in
    smollm2) echo "$SMOLLM2"; return ;;
    random135m) shape='{}' ;;
    random360m) shape='{"hidden_size":960,"intermediate_size":2560,"num_hidden_layers":32,
      "num_attention_heads":15,"num_key_value_heads":5,"head_dim":64}' ;;
    random1b) shape='{"hidden_size":2048,"intermediate_size":5632,"num_hidden_layers":22,
      "num_attention_heads":32,"num_key_value_heads":4,"head_dim":64,
      "tie_word_embeddings":false}' ;;
    *) echo "bench/scaling.sh: unknown model $1" >&2; exit 2 ;;
  esac
  dir="$OUT/model-$1"
  if [[ ! -f "$dir/model.safetensors" ]]; then
    python3 -c 'import json, sys
cfg = json.load(open(sys.argv[1])); cfg.update(json.loads(sys.argv[2]))
json.dump(cfg, open(sys.argv[3], "w"), indent=1)' "$SMOLLM2/config.json" "$shape" "$OUT/$1.json"
    "$SCIR" model init --tokenizer "$SMOLLM2" --config "$OUT/$1.json" --seed 1 --out "$dir" >&2
  fi
  echo "$dir"
}

: > "$OUT/results.jsonl"
for run in $RUNS; do
  IFS=: read -r name prompts <<< "$run"
  dir="$OUT/run-$name-$prompts"
  rm -rf "$dir" && mkdir -p "$dir"
  path="$(model "$name")"
  cat > "$dir/pipeline.yaml" <<EOF
iterations: 1
seed: 1
models: { initial: m0, start: m0, step: train }
stages:
  m0: { kind: checkpoint, params: { path: $path } }
  prompts:
    kind: instructions
    params: { path: $SEEDS, limit: $prompts, iterations: 1 }
  generate:
    each_iteration: true
    inputs: { prompts: prompts }
    params: { samples: 2, temperature: 0.7, top_p: 0.9, max_new_tokens: 40, pairs: all, batch_size: 8 }
  score-irm: { each_iteration: true, params: { beta: 0.1, batch_size: 8 } }
  score-grm:
    each_iteration: true
    params: { mode: pairwise, template: "builtin:mt-bench-pair", swap: true, batch_size: 4 }
  consistency-filter: { each_iteration: true, params: { mode: dynamic, delta: 0.0 } }
  train:
    each_iteration: true
    params:
      method: scir
      lr: 5.0e-4
      epochs: 1
      batch_size: 2
      beta: 0.1
      lambda: 1.0
      gamma: 0.1
      lora: { rank: 8, alpha: 16.0, target_modules: [q_proj, v_proj] }
arms: { scir: {} }
EOF
  echo "[$(date -u +%T)] $name, $prompts prompts" >&2
  start=$(date +%s.%N)
  "$SCIR" run "$dir/pipeline.yaml" --artifacts "$dir/artifacts" >&2
  wall=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
  python3 - "$dir/artifacts" "$name" "$prompts" "$wall" >> "$OUT/results.jsonl" <<'EOF'
import glob, json, sys
arts, name, prompts, wall = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
(run,) = glob.glob(f"{arts}/.scir/runs/*/run.json")
for t in json.load(open(run))["tasks"]:
    print(json.dumps({"run": name, "prompts": prompts, "stage": t["stage"],
                      "seconds": t["seconds"], "rows": t["rows"], "wall": wall}))
EOF
done
python3 "$ROOT/bench/scaling_table.py" "$OUT/results.jsonl" "$OUT" | tee "$OUT/table.md"
