"""The Markdown table of bench/llamacpp.sh: medians of its results.jsonl (stdlib only).

    python3 bench/llamacpp_table.py OUT/results.jsonl

One row per workload (pp, tg, generate), one column per side and weight format, plus
scir's speed as a ratio of each llama.cpp column (> 1: scir is faster).
"""
import json
import statistics
import sys
from collections import defaultdict

WORKLOADS = [
    ("pp", "batch-1 prompt processing, 128 tokens", "prompt tok/s"),
    ("tg", "batch-1 greedy decode, 64 tokens", "tok/s"),
    ("generate", "16 prompts x 4 samples x 64 new tokens, 64 rows at once", "generated tok/s"),
]
LLAMA = ["Q4_1", "F16", "F32"]


def workload_and_rate(d):
    """(workload, tokens/s) of one result line."""
    if d["side"] == "scir":
        name = {"prefill": "pp", "decode": "tg", "generate": "generate"}[d["task"]]
        return name, d["rate"]
    if d.get("batched"):
        return "generate", d["pl"] * d["tg"] / d["t"]
    return ("pp" if d["n_prompt"] > 0 else "tg"), d["avg_ts"]


def main(path):
    rates = defaultdict(list)
    for line in open(path):
        d = json.loads(line)
        w, r = workload_and_rate(d)
        rates[(w, d["side"], d["weights"])].append(r)
    med = {k: statistics.median(v) for k, v in rates.items()}
    n = min(len(v) for v in rates.values())
    cols = ["scir f32"] + [f"llama.cpp {t}" for t in LLAMA]
    print(f"Medians of {n} runs per cell, sides interleaved.\n")
    print("| workload | unit | " + " | ".join(cols) + " | scir / llama.cpp "
          + " / ".join(LLAMA) + " |")
    print("|" + " --- |" * (len(cols) + 3))
    for w, what, unit in WORKLOADS:
        s = med.get((w, "scir", "f32"))
        cells = [s] + [med.get((w, "llama.cpp", t)) for t in LLAMA]
        ratios = [f"{s / c:.2f}" if s and c else "-" for c in cells[1:]]
        shown = [f"{c:.1f}" if c else "-" for c in cells]
        print(f"| {w}: {what} | {unit} | " + " | ".join(shown) + " | "
              + " / ".join(ratios) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
