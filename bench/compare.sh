#!/usr/bin/env bash
# scir vs PyTorch/transformers on the same checkpoint, prompts and threads (see BENCHMARKS.md).
#
#   bench/compare.sh [--quick] [--reps N] [--sizes "tiny small30m"] [--quick-sizes SIZES]
#                    [--out DIR]
#
# Builds scir (--release; SCIR_BENCH_PROFILE=dev reuses a dev build), makes sure a Python
# environment with pinned torch/transformers/trl exists (SCIR_BENCH_VENV, default
# bench/.venv; created from PyPI if absent), writes one random-weight checkpoint per size
# and one workload file (token ids) per size, then runs every workload A B A B … (scir,
# torch, scir, torch, …; one process per run: warm-up on a small slice, one timed pass),
# the pipeline overhead (`scir run` fully cached, `scir sql` GROUP BY over all tables) and
# the f32 matmul peak of both libraries. Results: DIR/results.jsonl; the Markdown table is
# printed at the end and written to DIR/table.md. Threads: BENCH_THREADS (default 2).
# --quick: small counts for every size and 1 repetition; --quick-sizes "small30m": small
# counts for those sizes only (repetitions unchanged).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUICK=""
QUICK_SIZES=""
REPS=3
SIZES="tiny small30m"
OUT="$ROOT/bench/out"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK="--quick"; REPS=1; shift ;;
    --reps) REPS="$2"; shift 2 ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --quick-sizes) QUICK_SIZES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench/compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

THREADS="${BENCH_THREADS:-2}"
export RAYON_NUM_THREADS="$THREADS" BENCH_THREADS="$THREADS"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
PROFILE="${SCIR_BENCH_PROFILE:-release}"
TORCH_VERSION=2.15.0
TRANSFORMERS_VERSION=5.24.0
TRL_VERSION=1.16.0

# --- scir ------------------------------------------------------------------------------
(cd "$ROOT" && cargo build --profile "$PROFILE" --bin scir >&2)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$PROFILE" == dev ]] && PROFILE_DIR=debug || PROFILE_DIR="$PROFILE"
SCIR="$TARGET/$PROFILE_DIR/scir"

# --- Python ----------------------------------------------------------------------------
VENV="${SCIR_BENCH_VENV:-$ROOT/bench/.venv}"
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, transformers, trl" 2>/dev/null; then
  echo "creating $VENV (torch $TORCH_VERSION, transformers $TRANSFORMERS_VERSION, trl $TRL_VERSION)" >&2
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" \
    "trl==$TRL_VERSION"
fi
TORCH_SIDE="$ROOT/bench/torch_side.py"

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

# record JSON-FIELDS: append stdin's last line (a JSON object) plus FIELDS to the results.
record() {
  "$PY" -c 'import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1]); d.update(json.loads(sys.argv[1]))
print(json.dumps(d))' "$1" >> "$RESULTS"
}

# --- hardware bound --------------------------------------------------------------------
"$SCIR" model bench-compare matmul --n 2048 | record '{"kind":"matmul","side":"scir (candle)"}'
"$PY" "$TORCH_SIDE" matmul --n 2048 | record '{"kind":"matmul","side":"torch"}'

# --- model workloads -------------------------------------------------------------------
for size in $SIZES; do
  ckpt="$OUT/ckpt-$size"
  rm -rf "$ckpt"
  "$SCIR" model bench-compare init --size "$size" --out "$ckpt" >&2
  wl="$OUT/workload-$size.json"
  counts="$QUICK"
  [[ " $QUICK_SIZES " == *" $size "* ]] && counts="--quick"
  "$PY" "$TORCH_SIDE" workload --model "$ckpt" --out "$wl" $counts
  for task in generate score judge train; do
    flops=$("$PY" "$TORCH_SIDE" flops --model "$ckpt" --workload "$wl" --task "$task")
    meta="{\"kind\":\"work\",\"size\":\"$size\",\"counts\":\"${counts:-full}\",\"task\":\"$task\",\"flops\":$flops"
    for rep in $(seq "$REPS"); do
      echo "[$(date -u +%T)] $size $task rep $rep/$REPS" >&2
      "$SCIR" model bench-compare run --model "$ckpt" --workload "$wl" --task "$task" \
        | record "$meta,\"side\":\"scir\"}"
      "$PY" "$TORCH_SIDE" run --model "$ckpt" --workload "$wl" --task "$task" 2>/dev/null \
        | record "$meta,\"side\":\"torch\"}"
    done
  done
done

# --- pipeline overhead -----------------------------------------------------------------
pipe="$OUT/pipeline"
rm -rf "$pipe" && mkdir -p "$pipe" && cp "$ROOT/pipeline.yaml" "$pipe/"
(cd "$pipe" && "$SCIR" run pipeline.yaml >/dev/null)  # fills the cache
median_ms() {  # median wall ms of REPS+2 runs of "$@" (in $pipe)
  "$PY" - "$((REPS + 2))" "$@" <<'EOF'
import statistics, subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
def once():
    t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return 1000 * (time.perf_counter() - t)
print(statistics.median(once() for _ in range(n)))
EOF
}
tables=$(cd "$pipe" && "$SCIR" sql --format csv \
  "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1" \
  | tail -n +2)
query="SELECT t, COUNT(*) AS n FROM ("
sep=""
for t in $tables; do query+="$sep SELECT '$t' AS t FROM $t"; sep=" UNION ALL"; done
query+=") GROUP BY t ORDER BY t"
ms=$(cd "$pipe" && median_ms "$SCIR" run pipeline.yaml)
echo "{\"kind\":\"overhead\",\"task\":\"scir run (fully cached)\",\"ms\":$ms,\"reps\":$((REPS + 2))}" >> "$RESULTS"
ms=$(cd "$pipe" && median_ms "$SCIR" sql "$query")
echo "{\"kind\":\"overhead\",\"task\":\"scir sql GROUP BY over $(echo $tables | wc -w) tables\",\"ms\":$ms,\"reps\":$((REPS + 2))}" >> "$RESULTS"

# --- the table -------------------------------------------------------------------------
"$PY" "$TORCH_SIDE" summarise "$RESULTS" | tee "$OUT/table.md"
