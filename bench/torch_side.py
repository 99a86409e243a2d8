#!/usr/bin/env python3
"""The PyTorch side of bench/compare.sh, and the workload generator and summariser.

    torch_side.py workload --model DIR --out W.json [--quick]   token ids both sides use
    torch_side.py run --model DIR --workload W.json --task T      one JSON line (like scir's)
    torch_side.py matmul [--n 2048]                               torch f32 matmul GFLOP/s
    torch_side.py summarise RESULTS.jsonl                         the Markdown table

Every `run` does a warm-up on a small slice (train: one whole step), then one timed pass,
with torch.set_num_threads(2) (or $BENCH_THREADS). The implementations are what a careful
PyTorch user writes with transformers: batched `generate` (sampling, T=1, no top-k/top-p),
log-probs from the hidden states at response positions only, last-position verdict logits,
and a DPO step as TRL's DPOTrainer computes it (concatenated chosen+rejected forward over
full logits, cached reference log-probs, sigmoid loss, clip 1.0, AdamW).
"""

import argparse
import json
import os
import random
import statistics
import sys
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
WARMUP_ROWS = 4
WARMUP_NEW_TOKENS = 4


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


# ---------------------------------------------------------------- workload


def make_workload(model_dir, quick):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    vocab = cfg["vocab_size"]
    rng = random.Random(1234)

    def ids(n):
        return [rng.randrange(1, vocab) for _ in range(n)]

    q = quick
    n_gen, samples, new_tokens = (8, 4, 16) if q else (64, 4, 64)
    n_score = 64 if q else 512
    n_judge = 32 if q else 256
    gen_prompts = [ids(rng.randint(24, 40)) for _ in range(n_gen)]
    score_prompts = [ids(rng.randint(24, 40)) for _ in range(n_score)]
    score_resp = [ids(96 - len(p)) for p in score_prompts]
    judge = []
    for _ in range(n_judge):
        x, y1, y2 = ids(rng.randint(16, 24)), ids(rng.randint(28, 36)), ids(rng.randint(28, 36))
        judge.append(x + [3] + y1 + [4] + y2 + [5])
        judge.append(x + [3] + y2 + [4] + y1 + [5])
    n_pairs = 8
    tp = [ids(32) for _ in range(n_pairs)]
    chosen = [ids(rng.randint(56, 64)) for _ in range(n_pairs)]
    rejected = [ids(rng.randint(56, 64)) for _ in range(n_pairs)]
    return {
        "generate": {"prompts": gen_prompts, "samples": samples, "new_tokens": new_tokens,
                     "temperature": 1.0},
        "score": {"prompts": score_prompts, "responses": score_resp, "chunk": 32},
        "judge": {"prompts": judge, "tokens": [6, 7], "chunk": 32},
        "train": {"prompts": tp, "chosen": chosen, "rejected": rejected,
                  "ref_chosen": [-float(8 * len(c)) for c in chosen],
                  "ref_rejected": [-float(8 * len(r)) for r in rejected],
                  "beta": 0.1, "lr": 5e-7},
    }


# ---------------------------------------------------------------- torch side


def pad(seqs, side, torch):
    t = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), t), dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        else:
            ids[i, t - len(s):] = torch.tensor(s)
            mask[i, t - len(s):] = 1
    return ids, mask


def response_logprobs(model, prompts, responses, torch, full_logits=False):
    """Sum of response-token log-probs per row, (b,). Right padding."""
    seqs = [p + r for p, r in zip(prompts, responses)]
    ids, mask = pad(seqs, "right", torch)
    b, t = ids.shape
    rows, targets, owner = [], [], []
    for r, (p, s) in enumerate(zip(prompts, seqs)):
        for i in range(len(p) - 1, len(s) - 1):
            rows.append(r * t + i)
            targets.append(s[i + 1])
            owner.append(r)
    rows, targets = torch.tensor(rows), torch.tensor(targets)
    owner = torch.tensor(owner)
    if full_logits:  # as TRL: logits at every position, then select
        logits = model(input_ids=ids, attention_mask=mask).logits.reshape(b * t, -1)[rows]
    else:
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden.reshape(b * t, -1)[rows])
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    return torch.zeros(b, dtype=logp.dtype).index_add(0, owner, logp)


def verdicts(model, prompts, tokens, torch):
    ids, mask = pad(prompts, "left", torch)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits
    return torch.softmax(logits[:, -1, tokens], dim=-1)


def generate(model, prompts, samples, new_tokens, temperature, torch):
    ids, mask = pad(prompts, "left", torch)
    torch.manual_seed(0)
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                         temperature=temperature, top_k=0, top_p=1.0,
                         num_return_sequences=samples, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, pad_token_id=0, eos_token_id=None)
    return (out.shape[1] - ids.shape[1]) * out.shape[0]


def dpo_step(model, opt, tr, torch):
    n = len(tr["prompts"])
    prompts = tr["prompts"] + tr["prompts"]
    lp = response_logprobs(model, prompts, tr["chosen"] + tr["rejected"], torch, True)
    ref_c, ref_r = torch.tensor(tr["ref_chosen"]), torch.tensor(tr["ref_rejected"])
    logits = (lp[:n] - ref_c) - (lp[n:] - ref_r)
    loss = -torch.nn.functional.logsigmoid(tr["beta"] * logits).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()


def run_task(model_dir, workload, task):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    w = json.load(open(workload))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    if task == "train":
        model.train()
        tr = w["train"]
        opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=0.0)
        dpo_step(model, opt, tr, torch)
        start = time.perf_counter()
        dpo_step(model, opt, tr, torch)
        secs, count = time.perf_counter() - start, 1
    else:
        model.eval()
        with torch.inference_mode():
            secs, count = infer_task(model, w, task, torch)
    print(json.dumps({"task": task, "seconds": secs, "count": count, "rate": count / secs,
                      "peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads()}))


def chunks(xs, n):
    return [xs[i:i + n] for i in range(0, len(xs), n)]


def infer_task(model, w, task, torch):
    if task == "generate":
        g = w["generate"]
        generate(model, g["prompts"][:WARMUP_ROWS], 1, WARMUP_NEW_TOKENS, g["temperature"], torch)
        start = time.perf_counter()
        count = generate(model, g["prompts"], g["samples"], g["new_tokens"], g["temperature"],
                         torch)
        return time.perf_counter() - start, count
    if task == "score":
        s = w["score"]
        response_logprobs(model, s["prompts"][:WARMUP_ROWS], s["responses"][:WARMUP_ROWS], torch)
        start = time.perf_counter()
        for p, r in zip(chunks(s["prompts"], s["chunk"]), chunks(s["responses"], s["chunk"])):
            response_logprobs(model, p, r, torch).tolist()
        return time.perf_counter() - start, len(s["prompts"])
    if task == "judge":
        j = w["judge"]
        verdicts(model, j["prompts"][:WARMUP_ROWS], j["tokens"], torch)
        start = time.perf_counter()
        for part in chunks(j["prompts"], j["chunk"]):
            verdicts(model, part, j["tokens"], torch).tolist()
        return time.perf_counter() - start, len(j["prompts"]) // 2
    raise SystemExit(f"unknown task {task}")


def matmul(n):
    import torch

    torch.set_num_threads(THREADS)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(5))
    print(json.dumps({"n": n, "seconds": best, "gflops": 2 * n ** 3 / best / 1e9,
                      "threads": torch.get_num_threads()}))


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


# ---------------------------------------------------------------- FLOPs and summary


def flops(cfg, w, task):
    """Approximate FLOPs of one timed pass (matmuls only; 2 per multiply-add)."""
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    vocab = cfg["vocab_size"]
    body = layers * (h * heads * hd * 2 + 2 * h * kv * hd + 3 * h * inter)  # weights per token
    head = vocab * h

    def tok(ctx):  # one token at context length ctx, without the head
        return 2 * body + 4 * layers * heads * hd * ctx

    if task == "generate":
        g = w["generate"]
        total = 0
        for p in g["prompts"]:
            rows = g["samples"]
            total += rows * sum(tok(i + 1) for i in range(len(p)))
            total += rows * sum(tok(len(p) + i + 1) + 2 * head for i in range(g["new_tokens"]))
        return total
    if task == "score":
        s = w["score"]
        return sum(sum(tok(i + 1) for i in range(len(p) + len(r))) + 2 * head * len(r)
                   for p, r in zip(s["prompts"], s["responses"]))
    if task == "judge":
        return sum(sum(tok(i + 1) for i in range(len(p))) + 2 * head for p in w["judge"]["prompts"])
    if task == "train":
        t = w["train"]
        # forward + backward = 3× forward; the head over the response positions.
        return 3 * sum(sum(tok(i + 1) for i in range(len(p) + len(r))) + 2 * head * len(r)
                       for p, r in zip(t["prompts"] * 2, t["chosen"] + t["rejected"]))
    return 0


UNITS = {"generate": "tokens/s", "score": "sequences/s", "judge": "prompts/s",
         "train": "s/step", "run": "ms", "sql": "ms"}


def summarise(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    peak = max((r["gflops"] for r in rows if r.get("kind") == "matmul"), default=None)
    for r in rows:
        if r.get("kind") == "matmul":
            print(f"- f32 matmul peak ({r['side']}, n={r['n']}, {r['threads']} threads): "
                  f"{r['gflops']:.1f} GFLOP/s")
    print()
    print("| size | workload | unit | scir (median) | PyTorch (median) | scir/PyTorch speed "
          "| scir GFLOP/s (% peak) | torch GFLOP/s (% peak) | scir peak RSS MiB "
          "| torch peak RSS MiB | reps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for r in rows:
        k = (r.get("size"), r.get("task"))
        if r.get("kind") == "work" and k not in keys:
            keys.append(k)
    for size, task in keys:
        side = {s: [r for r in rows if r.get("kind") == "work" and r["size"] == size
                    and r["task"] == task and r["side"] == s] for s in ("scir", "torch")}
        print(row(size, task, side, peak))
    for r in rows:
        if r.get("kind") == "overhead":
            print(f"| - | {r['task']} | ms | {r['ms']:.0f} | - | - | - | - | - | - | "
                  f"{r.get('reps', 1)} |")


def row(size, task, side, peak):
    def med(s, key):
        xs = [r[key] for r in side[s]]
        return statistics.median(xs) if xs else None

    secs = {s: med(s, "seconds") for s in side}
    count = {s: med(s, "count") for s in side}
    rate = {s: count[s] / secs[s] if secs[s] else None for s in side}
    best = {s: min((r["seconds"] for r in side[s]), default=None) for s in side}
    rss = {s: med(s, "peak_rss_mib") for s in side}
    fl = side["scir"][0].get("flops") if side["scir"] else None

    def gf(s):
        if not secs[s] or not fl:
            return "-"
        g = fl / secs[s] / 1e9
        return f"{g:.1f} ({100 * g / peak:.0f} %)" if peak else f"{g:.1f}"

    def fmt(s):
        if rate[s] is None:
            return "-"
        return f"{secs[s]:.3f}" if task == "train" else f"{rate[s]:.1f}"

    ratio = "-"
    if secs["scir"] and secs["torch"]:
        ratio = f"{secs['torch'] / secs['scir']:.2f}× (best {best['torch'] / best['scir']:.2f}×)"
    reps = f"{len(side['scir'])}+{len(side['torch'])}"
    if side["scir"] and side["scir"][0].get("counts") == "--quick":
        size += " (quick counts)"
    return (f"| {size} | {task} | {UNITS[task]} | {fmt('scir')} | {fmt('torch')} | {ratio} "
            f"| {gf('scir')} | {gf('torch')} | {fmt_rss(rss['scir'])} | {fmt_rss(rss['torch'])} "
            f"| {reps} |")


def fmt_rss(x):
    return "-" if x is None else f"{x:.0f}"


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("workload")
    a.add_argument("--model", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--quick", action="store_true")
    a = sub.add_parser("run")
    a.add_argument("--model", required=True)
    a.add_argument("--workload", required=True)
    a.add_argument("--task", required=True, choices=["generate", "score", "judge", "train"])
    a = sub.add_parser("matmul")
    a.add_argument("--n", type=int, default=2048)
    a = sub.add_parser("flops")
    a.add_argument("--model", required=True)
    a.add_argument("--workload", required=True)
    a.add_argument("--task", required=True)
    a = sub.add_parser("summarise")
    a.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "workload":
        json.dump(make_workload(args.model, args.quick), open(args.out, "w"))
    elif args.cmd == "run":
        run_task(args.model, args.workload, args.task)
    elif args.cmd == "matmul":
        matmul(args.n)
    elif args.cmd == "flops":
        cfg = json.load(open(os.path.join(args.model, "config.json")))
        print(flops(cfg, json.load(open(args.workload)), args.task))
    else:
        summarise(args.results)


if __name__ == "__main__":
    sys.exit(main())
