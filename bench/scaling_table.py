"""The table and log-log chart of bench/scaling.sh (stdlib only).

    python3 bench/scaling_table.py OUT/results.jsonl OUT

Writes the Markdown table to stdout and OUT/scaling.svg: seconds per SCIR iteration (all
tasks, and each model-using stage) against parameters for the random-weight models at the
smallest prompt count, and against prompts per iteration for SmolLM2; both axes logarithmic.
"""
import json
import math
import os
import sys
from collections import defaultdict

STAGES = ["generate", "score-irm", "score-grm", "consistency-filter", "train"]
COLORS = {"iteration": "#000000", "generate": "#1f77b4", "score-irm": "#ff7f0e",
          "score-grm": "#2ca02c", "train": "#d62728"}


def parameters(config):
    """Parameter count of a Llama-family config.json."""
    c = json.load(open(config))
    h, v, i, n = c["hidden_size"], c["vocab_size"], c["intermediate_size"], c["num_hidden_layers"]
    d = c.get("head_dim", h // c["num_attention_heads"])
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h
    head = 0 if c.get("tie_word_embeddings", False) else v * h
    return v * h + n * layer + h + head


def load(path, out):
    runs = defaultdict(dict)
    for line in open(path):
        d = json.loads(line)
        r = runs[(d["run"], d["prompts"])]
        r[d["stage"]] = r.get(d["stage"], 0.0) + d["seconds"]
        r["wall"] = d["wall"]
        if d["stage"] == "generate":
            r["pairs"] = d["rows"].get("pairs", 0)
    root = os.path.dirname(os.path.abspath(__file__))
    for (name, _), r in runs.items():
        cfg = (os.path.join(root, "..", "examples", "smollm2", "model", "config.json")
               if name == "smollm2" else os.path.join(out, f"model-{name}", "config.json"))
        r["params"] = parameters(cfg)
        r["iteration"] = sum(r.get(s, 0.0) for s in STAGES)
    return runs


def table(runs):
    print("| model | parameters | prompts | pairs | " + " | ".join(STAGES)
          + " | iteration (sum) | wall (load included) |")
    print("|" + " --- |" * (len(STAGES) + 6))
    for (name, prompts), r in sorted(runs.items(), key=lambda kv: (kv[1]["params"], kv[0][1])):
        cells = [f"{r.get(s, 0.0):.1f}" for s in STAGES]
        print(f"| {name} | {r['params'] / 1e6:.0f} M | {prompts} | {r.get('pairs', '-')} | "
              + " | ".join(cells)
              + f" | {r['iteration']:.1f} | {r['wall']:.1f} |")
    print("\nSeconds per task (from the run record).")


def panel(x0, title, xlabel, points):
    """SVG of one log-log panel at x offset x0; points: {series: [(x, y)]}."""
    w, h, pad = 420, 300, 50
    xs = [x for s in points.values() for x, _ in s]
    ys = [y for s in points.values() for _, y in s if y > 0]
    if not xs or not ys:
        return ""
    lx = (math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)) + 1e-9))
    ly = (math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)) + 1e-9))
    lx = (lx[0], max(lx[1], lx[0] + 1))
    ly = (ly[0], max(ly[1], ly[0] + 1))
    px = lambda x: x0 + pad + (math.log10(x) - lx[0]) / (lx[1] - lx[0]) * (w - 2 * pad)
    py = lambda y: h - pad - (math.log10(y) - ly[0]) / (ly[1] - ly[0]) * (h - 2 * pad)
    s = [f'<text x="{x0 + w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
         f'<rect x="{x0 + pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
         'fill="none" stroke="#888"/>',
         f'<text x="{x0 + w / 2}" y="{h - 10}" text-anchor="middle" font-size="12">{xlabel}</text>',
         f'<text x="{x0 + 14}" y="{h / 2}" font-size="12" transform="rotate(-90 {x0 + 14} '
         f'{h / 2})" text-anchor="middle">seconds</text>']
    for e in range(lx[0], lx[1] + 1):
        s.append(f'<text x="{px(10 ** e)}" y="{h - pad + 15}" text-anchor="middle" '
                 f'font-size="10">1e{e}</text>')
    for e in range(ly[0], ly[1] + 1):
        s.append(f'<text x="{x0 + pad - 4}" y="{py(10 ** e) + 3}" text-anchor="end" '
                 f'font-size="10">1e{e}</text>')
    for i, (name, pts) in enumerate(points.items()):
        pts = sorted(p for p in pts if p[1] > 0)
        c = COLORS.get(name, "#555")
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        s.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        s += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>' for x, y in pts]
        s.append(f'<text x="{x0 + pad + 6}" y="{pad + 14 + 13 * i}" font-size="11" '
                 f'fill="{c}">{name}</text>')
    return "\n".join(s)


def chart(runs, out):
    series = ["iteration", "generate", "score-irm", "score-grm", "train"]
    fixed = min(p for (_, p) in runs)
    by_size = {s: [(r["params"], r.get(s, 0.0)) for (n, p), r in runs.items()
                   if p == fixed and n.startswith("random")] for s in series}
    by_prompts = {s: [(p, r.get(s, 0.0)) for (n, p), r in runs.items() if n == "smollm2"]
                  for s in series}
    body = panel(0, f"random-weight Llama by size ({fixed} prompts)", "parameters", by_size) + "\n" + panel(
        440, "SmolLM2-135M by prompts per iteration", "prompts", by_prompts)
    with open(os.path.join(out, "scaling.svg"), "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="860" height="300" '
                f'font-family="sans-serif">\n<rect width="860" height="300" fill="white"/>\n'
                f"{body}\n</svg>\n")


if __name__ == "__main__":
    runs = load(sys.argv[1], sys.argv[2])
    table(runs)
    chart(runs, sys.argv[2])
