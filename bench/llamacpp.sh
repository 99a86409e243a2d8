#!/usr/bin/env bash
# scir vs llama.cpp on SmolLM2-135M-Instruct: the same GGUF file scir imports (see
# BENCHMARKS.md, "SmolLM2: scir against llama.cpp").
#
#   bench/llamacpp.sh [--reps N] [--out DIR]
#
# llama.cpp is built from the source vendored in the llama-cpp-python sdist on PyPI (pinned
# below; cmake and ninja from PyPI into a venv; CPU only, -DGGML_NATIVE=ON) under
# LLAMACPP_DIR (default bench/.llama.cpp; reused when its tools are there). The model comes
# from examples/smollm2/setup.sh: the wheel's Q4_1 GGUF, imported by scir as f32. F16 and
# F32 GGUF files are made from the same Q4_1 file with `llama-quantize --allow-requantize`,
# so every side computes with the same (Q4_1-rounded) weights, stored at 4.5, 16 or 32 bits.
#
# Three workloads, each run REPS times, the sides interleaved (scir, llama.cpp Q4_1, F16, F32,
# scir, …; one process per run, warm-up inside it), same threads (BENCH_THREADS, default 2):
#   pp        batch-1 prompt processing, 128 random tokens: prompt tokens/s
#             (scir: one greedy token after the prompt; llama-bench -p 128)
#   tg        batch-1 greedy decode of 64 tokens after a one-token prompt: tokens/s
#             (scir: greedy, no stop; llama-bench -n 64)
#   generate  the SCIR generate workload, 16 prompts x 4 samples of 64 new tokens after
#             64-token prompts, all 64 rows at once: generated tokens / total seconds
#             (scir: sampling at temperature 0.7; llama-batched-bench -npp 64 -ntg 64
#             -npl 64, which decodes fixed tokens without sampling and prefills 64 prompts)
# Results: DIR/results.jsonl (one line per run); the Markdown table (medians) is printed
# and written to DIR/table.md. scir is built with SCIR_BENCH_PROFILE (default dev: every
# crate the model's time goes through is at opt-level 3 there; see Cargo.toml).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPS=3
OUT="$ROOT/bench/out-llamacpp"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench/llamacpp.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

THREADS="${BENCH_THREADS:-2}"
export RAYON_NUM_THREADS="$THREADS"
LLAMA_CPP_PYTHON=0.3.36
LLAMACPP_DIR="${LLAMACPP_DIR:-$ROOT/bench/.llama.cpp}"
CACHE="${SCIR_CACHE:-$HOME/.cache/scir}/smollm2"
Q4_1="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL="$ROOT/examples/smollm2/model"

# --- scir and the model ----------------------------------------------------------------
source "$ROOT/bench/scir_bin.sh"
SCIR="$SCIR" "$ROOT/examples/smollm2/setup.sh" >&2

# --- llama.cpp -------------------------------------------------------------------------
BIN="$LLAMACPP_DIR/build/bin"
if [[ ! -x "$BIN/llama-bench" || ! -x "$BIN/llama-batched-bench" || ! -x "$BIN/llama-quantize" ]]; then
  echo "building llama.cpp (llama-cpp-python $LLAMA_CPP_PYTHON's vendored source) in $LLAMACPP_DIR" >&2
  tools="$LLAMACPP_DIR.tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet cmake ninja
  # The sdist itself (not `pip download`, which would prepare its metadata with a build).
  python3 - "$LLAMA_CPP_PYTHON" "$tools" <<'EOF'
import hashlib, json, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
name = f"llama_cpp_python-{version}.tar.gz"
index = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                               headers={"Accept": "application/vnd.pypi.simple.v1+json"})
(sdist,) = [f for f in json.load(urllib.request.urlopen(index))["files"] if f["filename"] == name]
data = urllib.request.urlopen(sdist["url"]).read()
if hashlib.sha256(data).hexdigest() != sdist["hashes"]["sha256"]:
    sys.exit(f"{name}: SHA-256 differs from PyPI's")
open(f"{dest}/{name}", "wb").write(data)
EOF
  src="$tools/src"
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$tools/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz" -C "$src"
  rm -rf "$LLAMACPP_DIR"
  mv "$src/llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp" "$LLAMACPP_DIR"
  PATH="$tools/bin:$PATH" cmake -S "$LLAMACPP_DIR" -B "$LLAMACPP_DIR/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON >&2
  PATH="$tools/bin:$PATH" cmake --build "$LLAMACPP_DIR/build" -j "$(nproc)" \
    --target llama-bench llama-batched-bench llama-quantize >&2
fi

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
declare -A GGUF=([Q4_1]="$Q4_1")
for t in F16 F32; do
  GGUF[$t]="$OUT/SmolLM2-135M-Instruct.$t.gguf"
  [[ -f "${GGUF[$t]}" ]] || "$BIN/llama-quantize" --allow-requantize "$Q4_1" "${GGUF[$t]}" "$t" >&2
done

# --- the workload file (token ids, seeded) ---------------------------------------------
WL="$OUT/workload.json"
python3 - "$MODEL/config.json" "$WL" <<'EOF'
import json, random, sys
vocab = json.load(open(sys.argv[1]))["vocab_size"]
rng = random.Random(1234)
ids = lambda n: [rng.randrange(1, vocab) for _ in range(n)]
json.dump({
    "prefill": {"prompt": ids(128)},
    "decode": {"start": ids(1)[0], "new_tokens": 64},
    "generate": {"prompts": [ids(64) for _ in range(16)], "samples": 4, "new_tokens": 64,
                 "temperature": 0.7},
}, open(sys.argv[2], "w"))
EOF

# record JSON-FIELDS: append stdin's JSON lines, each plus FIELDS, to the results.
record() {
  python3 -c 'import json, sys
extra = json.loads(sys.argv[1])
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line); d.update(extra); print(json.dumps(d))' "$1" >> "$RESULTS"
}

for rep in $(seq "$REPS"); do
  echo "[$(date -u +%T)] rep $rep/$REPS: scir" >&2
  for task in prefill decode generate; do
    "$SCIR" model bench-compare run --model "$MODEL" --workload "$WL" --task "$task" \
      | record "{\"side\":\"scir\",\"weights\":\"f32\",\"rep\":$rep}"
  done
  for t in Q4_1 F16 F32; do
    echo "[$(date -u +%T)] rep $rep/$REPS: llama.cpp $t" >&2
    "$BIN/llama-bench" -m "${GGUF[$t]}" -t "$THREADS" -p 128 -n 64 -r 1 -o jsonl 2>/dev/null \
      | record "{\"side\":\"llama.cpp\",\"weights\":\"$t\",\"rep\":$rep}"
    "$BIN/llama-batched-bench" -m "${GGUF[$t]}" -t "$THREADS" -c 8192 -npp 64 -ntg 64 -npl 64 \
      --output-format jsonl 2>/dev/null \
      | record "{\"side\":\"llama.cpp\",\"weights\":\"$t\",\"rep\":$rep,\"batched\":true}"
  done
done

python3 "$ROOT/bench/llamacpp_table.py" "$RESULTS" | tee "$OUT/table.md"
