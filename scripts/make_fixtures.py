#!/usr/bin/env python3
"""Build scir's parity fixtures with Hugging Face transformers, tokenizers and TRL.

What it writes (see tests/fixtures/README.md for the exact JSON schemas):

  <out>/tokenizer/                 the shared tiny byte-level BPE tokenizer (tokenizer.json,
                                   tokenizer_config.json), trained here on fixed text
  <out>/models/<name>/             tiny random checkpoints saved with `save_pretrained`
                                   (config.json, model.safetensors, generation_config.json,
                                   tokenizer.json, tokenizer_config.json, [chat_template.jinja])
                                   and reference.json: transformers' logits, response log-prob
                                   sums, greedy generations and a padded batch
  <out>/dpo_loss.json              TRL's own `sigmoid` DPO loss and implicit rewards on fixed
                                   log-prob numbers

Everything is seeded and single-threaded, so two runs write identical bytes (the script
checks its own determinism only in the sense that it asserts reloads match; run it twice
and `diff -r` to check reproducibility).

Usage:
  python scripts/make_fixtures.py --out tests/fixtures
  python scripts/make_fixtures.py --check-scir-checkpoint DIR [--ids 1,5,9 | --prompt P --response R [--eos]]
                                 [--expect-logprob X [--rtol 1e-4]]

The second form loads a checkpoint that scir saved, with AutoModelForCausalLM +
AutoTokenizer, runs one forward pass and prints a JSON object with the logits and
log-probs (same field names as `scir model logprobs --json`), so scir's numbers can be
compared with transformers'; with --expect-logprob it exits 1 when the sum differs by more
than --rtol (relative).

Library versions: scripts/requirements-fixtures.txt (install into a venv outside the repo:
`python3 -m venv /root/.cache/scir-venv && /root/.cache/scir-venv/bin/pip install -r
scripts/requirements-fixtures.txt`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
from pathlib import Path

import torch

SEED = 1234
VOCAB_SIZE = 320
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END]  # ids 0..4 in this order
GREEDY_NEW_TOKENS = 12
LOGPROB_RTOL = 1e-5  # batched vs unbatched, relative, asserted here (f32 on CPU)

# ChatML, with the BOS token first (as Llama-family templates do).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_CONVERSATION = [
    {"role": "system", "content": "You sort letters."},
    {"role": "user", "content": "Sort: d b a c"},
    {"role": "assistant", "content": "a b c d"},
    {"role": "user", "content": "Sort: z x y"},
]

# (prompt, response) pairs; the first one also gives the full-logits sequence.
PAIRS = [
    ("Sort the letters: c a b", " a b c"),
    ("Question: what is two plus two?", " The answer is four."),
    ("Hello", " world, hello again!"),
    ("The quick brown fox", " jumps over the lazy dog."),
    ("Write a list: ", "1. apples\n2. pears"),
    ("Ünïcödé test — ok?", " Yes ✓"),
    ("Say: he", "llo world"),  # joint tokenisation merges across the seam (see trl_joint)
]
GREEDY_PROMPTS = [0, 1, 2, 3]  # indices into PAIRS
BATCH_ROWS = [0, 1, 2, 3, 4, 5, 6]  # rows of the padded batch (indices into PAIRS)

WORDS = (
    "the a an and or of to in on at with for from by is are was were be been sort sorted "
    "letters letter answer question what which who how why when two three four five six "
    "plus minus times equals hello world again quick brown fox jumps over lazy dog cat "
    "apples pears list write read model reward judge better worse response prompt yes no "
    "first second third last order alphabet abc xyz good bad correct wrong because"
).split()


def corpus() -> list[str]:
    """A few hundred fixed lines to train the BPE on (deterministic)."""
    rng = random.Random(SEED)
    lines = [p + r for p, r in PAIRS]
    for i in range(400):
        n = rng.randint(3, 12)
        words = [rng.choice(WORDS) for _ in range(n)]
        if i % 5 == 0:
            words.append(" ".join(sorted(rng.sample("abcdefghijklmnopqrstuvwxyz", 4))))
        if i % 7 == 0:
            words.append(f"{rng.randint(0, 99)} + {rng.randint(0, 99)} = {rng.randint(0, 199)}")
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":", ""]))
    return lines


def build_tokenizer():
    """Byte-level BPE, vocab VOCAB_SIZE, post-processor adding BOS to single sequences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A",
                pair=f"{BOS} $A {BOS} $B:1",
                special_tokens=[(BOS, bos_id), (EOS, eos_id)],
            ),
        ]
    )
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def hf_tokenizer(raw, chat_template: str | None):
    from transformers import PreTrainedTokenizerFast

    kwargs = dict(tokenizer_object=raw, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    if chat_template is not None:
        kwargs["chat_template"] = chat_template
    tok = PreTrainedTokenizerFast(**kwargs)
    tok.padding_side = "right"
    return tok


# --- models -------------------------------------------------------------------------------

COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

# name -> (architecture, config kwargs, on-disk dtype, chat template storage, legacy config)
MODELS = {
    "llama_tied": dict(
        arch="llama",
        config=dict(num_key_value_heads=4, tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-6),
        dtype="float32",
        chat=None,
        legacy_config=False,
        about="Llama, tied embeddings (no lm_head.weight in the file), MHA, f32",
    ),
    "qwen2_bias": dict(
        arch="qwen2",
        config=dict(num_key_value_heads=4, tie_word_embeddings=False, rope_theta=1000000.0, rms_norm_eps=1e-6),
        dtype="float32",
        chat="tokenizer_config",
        legacy_config=False,
        about="Qwen2, random q/k/v biases, untied lm_head, MHA, f32, ChatML chat_template in tokenizer_config.json",
    ),
    "mistral_gqa": dict(
        arch="mistral",
        config=dict(
            num_key_value_heads=2, tie_word_embeddings=False, rope_theta=50000.0, rms_norm_eps=1e-5, sliding_window=None
        ),
        dtype="float32",
        chat="jinja_file",
        legacy_config=False,
        eos_row_gain=1.6,
        about="Mistral, GQA 4 heads / 2 kv heads, untied, f32, ChatML template in chat_template.jinja "
        "(transformers' default layout)",
    ),
    "llama_gqa_bf16": dict(
        arch="llama",
        config=dict(num_key_value_heads=1, tie_word_embeddings=False, rope_theta=500000.0, rms_norm_eps=1e-5),
        dtype="bfloat16",
        chat=None,
        legacy_config=True,
        about="Llama, multi-query (4 heads / 1 kv head), untied, stored in bf16, config.json in the "
        "transformers 4.x layout (top-level rope_theta, torch_dtype)",
    ),
}


def make_config(spec):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[spec["arch"]]
    kw = dict(COMMON)
    kw.update(spec["config"])
    theta = kw.pop("rope_theta")
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    return cls(**kw)


EMBED_STD = 0.4  # embeddings and lm_head
RESIDUAL_GAIN = 2.0  # o_proj / down_proj, relative to 1/sqrt(fan_in)
MIN_GREEDY_MARGIN = 1e-3  # top-1 minus top-2 logit at every greedy step, asserted


def randomise(model, seed: int, eos_row_gain: float) -> None:
    """Seeded weights, larger than HF's default init so logits are peaked (greedy is robust).

    Norm weights and q/k/v biases are random too (HF initialises them to 1 and 0, which
    would hide a missing norm weight or bias in a port)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(EMBED_STD * torch.randn(p.shape, generator=gen))
                # A stronger EOS row, so some greedy runs stop at EOS before max_new_tokens.
                p[COMMON["eos_token_id"]] *= eos_row_gain
            else:
                gain = RESIDUAL_GAIN if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def build_model(spec, seed: int):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = make_config(spec)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomise(model, seed, spec.get("eos_row_gain", 1.0))
    if spec["dtype"] == "bfloat16":
        # Round to bf16 once, so the f32 model holds exactly the weights that get stored.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    model.eval()
    return model


def rewrite_legacy_config(path: Path) -> None:
    """Rewrite config.json the way transformers 4.x wrote it: top-level rope_theta."""
    cfg = json.loads((path / "config.json").read_text())
    rp = cfg.pop("rope_parameters")
    assert rp == {"rope_theta": rp["rope_theta"], "rope_type": "default"}, rp
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["rope_scaling"] = None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# --- reference numbers --------------------------------------------------------------------


def f(x) -> float:
    return float(x)


def token_logprobs(model, ids: list[int], start: int) -> list[float]:
    """log p(ids[t] | ids[:t]) for t in [start, len(ids)), from one unpadded forward."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [f(lp[t - 1, ids[t]]) for t in range(start, len(ids))]


def greedy(model, prompt_ids: list[int], eos_id: int, pad_id: int):
    """Greedy ids (generated only) and the smallest top-1/top-2 logit gap seen on the way."""
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=GREEDY_NEW_TOKENS,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            output_scores=True,
            return_dict_in_generate=True,
        )
    gen = out.sequences[0, len(prompt_ids) :].tolist()
    margins = []
    for s in out.scores:
        top = torch.topk(s[0].float(), 2).values
        margins.append(f(top[0] - top[1]))
    assert min(margins) > MIN_GREEDY_MARGIN, (prompt_ids, margins)
    return gen, min(margins)


def trl_joint_seam(tok, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """How TRL 1.16's DPOTrainer splits a non-conversational pair: EOS appended as text, prompt
    and prompt+completion tokenised separately (with special tokens), the completion starting
    where the two diverge (TRL's own `_tokenize` and `common_prefix_length`)."""
    from trl.data_utils import _tokenize, common_prefix_length

    p_ids = _tokenize(tok, prompt)["input_ids"]
    pc_ids = _tokenize(tok, prompt + response + tok.eos_token)["input_ids"]
    n = common_prefix_length(p_ids, pc_ids)
    return list(p_ids[:n]), list(pc_ids[n:])


def strip_after_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids


def padded_batch(model, rows: list[list[int]], starts: list[int], pad_id: int):
    """Right-padded batch forward; per-row sum of log-probs of tokens [start, len)."""
    width = max(len(r) for r in rows)
    ids = [r + [pad_id] * (width - len(r)) for r in rows]
    mask = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
    with torch.no_grad():
        logits = model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.float()
    lp = torch.log_softmax(logits, dim=-1)
    sums = []
    for b, (r, s) in enumerate(zip(rows, starts, strict=True)):
        sums.append(f(math.fsum(f(lp[b, t - 1, r[t]]) for t in range(s, len(r)))))
    return ids, mask, sums


def greedy_batch(model, prompts: list[list[int]], eos_id: int, pad_id: int):
    """Left-padded batched greedy generation (HF derives positions from the mask)."""
    width = max(len(p) for p in prompts)
    ids = [[pad_id] * (width - len(p)) + p for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    with torch.no_grad():
        out = model.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            do_sample=False,
            max_new_tokens=GREEDY_NEW_TOKENS,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    gens = [strip_after_eos(row[width:].tolist(), eos_id) for row in out]
    return ids, mask, gens


def chat_reference(model, tok, raw):
    text = tok.apply_chat_template(CHAT_CONVERSATION, add_generation_prompt=True, tokenize=False)
    ids = tok.apply_chat_template(CHAT_CONVERSATION, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    plain = tok(text, add_special_tokens=False)["input_ids"]
    assert list(ids) == plain, "apply_chat_template ids differ from encode(text, add_special_tokens=False)"
    assert raw.encode(text, add_special_tokens=False).ids == plain, "tokenizers and transformers disagree"
    with torch.no_grad():
        last = torch.log_softmax(model(torch.tensor([plain])).logits[0, -1].float(), dim=-1)
    return {
        "messages": CHAT_CONVERSATION,
        "add_generation_prompt": True,
        "text": text,
        "ids": list(ids),
        "ids_with_special_tokens": tok(text, add_special_tokens=True)["input_ids"],
        "next_token_logprobs": [f(v) for v in last],
    }


def model_reference(name: str, spec, model, tok, raw_tok_path: Path) -> dict:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(raw_tok_path))
    bos_id, eos_id, pad_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    pairs = []
    for prompt, response in PAIRS:
        p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
        r_ids = tok(response, add_special_tokens=False)["input_ids"]
        # The Rust side uses the tokenizers crate on tokenizer.json: it must agree.
        assert raw.encode(prompt, add_special_tokens=True).ids == p_ids, (prompt, p_ids)
        assert raw.encode(response, add_special_tokens=False).ids == r_ids, (response, r_ids)
        tl = token_logprobs(model, p_ids + r_ids, len(p_ids))
        tl_eos = token_logprobs(model, p_ids + r_ids + [eos_id], len(p_ids))
        joint_p, joint_c = trl_joint_seam(tok, prompt, response)
        pairs.append(
            {
                "prompt": prompt,
                "response": response,
                "prompt_ids": p_ids,
                "response_ids": r_ids,
                "token_logprobs": tl,
                "logprob": f(math.fsum(tl)),
                "token_logprobs_eos": tl_eos,
                "logprob_eos": f(math.fsum(tl_eos)),
                "trl_joint": {
                    "prompt_ids": joint_p,
                    "completion_ids": joint_c,
                    "same_as_separate": joint_p + joint_c == p_ids + r_ids + [eos_id],
                    "logprob": f(math.fsum(token_logprobs(model, joint_p + joint_c, len(joint_p)))),
                },
            }
        )

    p0 = pairs[0]
    seq = p0["prompt_ids"] + p0["response_ids"] + [eos_id]
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].float()

    greedy_out = []
    for i in GREEDY_PROMPTS:
        gen, margin = greedy(model, pairs[i]["prompt_ids"], eos_id, pad_id)
        greedy_out.append(
            {
                "pair_index": i,
                "prompt_ids": pairs[i]["prompt_ids"],
                "max_new_tokens": GREEDY_NEW_TOKENS,
                "generated_ids": gen,
                "stopped_at_eos": bool(gen and gen[-1] == eos_id),
                "min_top2_logit_margin": margin,
            }
        )

    rows = [pairs[i]["prompt_ids"] + pairs[i]["response_ids"] + [eos_id] for i in BATCH_ROWS]
    starts = [len(pairs[i]["prompt_ids"]) for i in BATCH_ROWS]
    b_ids, b_mask, b_sums = padded_batch(model, rows, starts, pad_id)
    diffs = [
        abs(s - pairs[i]["logprob_eos"]) / abs(pairs[i]["logprob_eos"]) for s, i in zip(b_sums, BATCH_ROWS, strict=True)
    ]
    assert max(diffs) < LOGPROB_RTOL, diffs

    gb_prompts = [pairs[i]["prompt_ids"] for i in GREEDY_PROMPTS]
    gb_ids, gb_mask, gb_gens = greedy_batch(model, gb_prompts, eos_id, pad_id)
    for g, single in zip(gb_gens, greedy_out, strict=True):
        assert g == single["generated_ids"], (name, g, single["generated_ids"])

    cfg = model.config
    ref = {
        "schema_version": 1,
        "model": name,
        "about": spec["about"],
        "versions": versions(),
        "architecture": cfg.architectures[0] if cfg.architectures else None,
        "model_type": cfg.model_type,
        "dtype_on_disk": spec["dtype"],
        "compute_dtype": "float32",
        "config": {
            **config_summary(cfg),
            "rope_theta_in_config_json": "top_level" if spec["legacy_config"] else "rope_parameters",
            "tie_word_embeddings": bool(cfg.tie_word_embeddings),
            "qkv_bias": spec["arch"] == "qwen2",
        },
        "special_tokens": {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id},
        "pairs": pairs,
        "logits": {"pair_index": 0, "ids": seq, "values": [[f(v) for v in row] for row in logits]},
        "greedy": greedy_out,
        "batch": {
            "padding_side": "right",
            "pair_indices": BATCH_ROWS,
            "input_ids": b_ids,
            "attention_mask": b_mask,
            "response_start": starts,
            "logprobs": b_sums,
        },
        "greedy_batch": {
            "padding_side": "left",
            "pair_indices": GREEDY_PROMPTS,
            "input_ids": gb_ids,
            "attention_mask": gb_mask,
            "max_new_tokens": GREEDY_NEW_TOKENS,
            "generated_ids": gb_gens,
        },
    }
    if spec["chat"] is not None:
        ref["chat_template"] = dict(chat_reference(model, tok, raw), stored_in=spec["chat"])
    return ref


def versions() -> dict:
    import safetensors
    import tokenizers
    import transformers
    import trl

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "trl": trl.__version__,
    }


def config_summary(cfg) -> dict:
    """The sizes and constants of a transformers config that reference.json records (the
    callers add their own fields after these)."""
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.hidden_size // cfg.num_attention_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_parameters["rope_theta"],
    }


def write_json(path: Path, obj) -> None:
    """Indented JSON, but each list of numbers on one line; floats in shortest round-trip form."""
    text = json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False)
    flat = re.sub(r"\[\s*([-0-9.eE+,\s]*?)\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    assert json.loads(flat) == obj
    path.write_text(flat + "\n")


def make_model(out: Path, name: str, spec, seed: int, raw_tok) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = out / "models" / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model = build_model(spec, seed)
    probe = torch.tensor([[1, 10, 20, 30, 40]])
    with torch.no_grad():
        before = model(probe).logits
    if spec["dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    chat = CHAT_TEMPLATE if spec["chat"] is not None else None
    hf_tokenizer(raw_tok, chat).save_pretrained(d, save_jinja_files=spec["chat"] == "jinja_file")
    if spec["legacy_config"]:
        rewrite_legacy_config(d)

    # Reference numbers come from the reloaded checkpoint, in f32 (bf16 weights upcast).
    tok = AutoTokenizer.from_pretrained(d)
    reloaded = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    assert reloaded.config.rope_parameters["rope_theta"] == spec["config"]["rope_theta"]
    with torch.no_grad():
        after = reloaded(probe).logits
    assert torch.equal(before, after), (name, (before - after).abs().max())
    write_json(d / "reference.json", model_reference(name, spec, reloaded, tok, d / "tokenizer.json"))


# --- DPO loss from TRL --------------------------------------------------------------------

# (policy_chosen, policy_rejected, reference_chosen, reference_rejected) sums of log-probs.
DPO_CASES = [
    (-10.0, -12.0, -11.0, -11.5),  # policy prefers chosen more than the reference does
    (-12.0, -10.0, -11.0, -11.0),  # the other way round
    (-5.0, -7.0, -5.0, -7.0),  # policy = reference: loss = ln 2, rewards 0
    (-20.25, -20.25, -19.5, -19.5),  # equal log-ratios (a tie)
    (-3.5, -60.0, -10.0, -10.0),  # large positive margin: loss near 0
    (-60.0, -3.5, -10.0, -10.0),  # large negative margin: loss large, must stay finite
    (-1.234567, -2.345678, -1.5, -2.0),
    (-150.75, -149.5, -151.0, -148.25),  # long sequences
]
DPO_BETAS = [0.1, 0.5, 1.0]


class _FakePolicy:
    """Stands in for the policy in TRL's `_compute_loss`: returns per-token log-probs whose
    sum over the completion is the given sequence log-prob (one completion token per row)."""

    def __init__(self, logps: torch.Tensor):
        self.logps = logps  # [2B], chosen rows then rejected rows

    def __call__(self, **kwargs):
        from types import SimpleNamespace

        n = self.logps.shape[0]
        col = self.logps.reshape(n, 1)
        zeros = torch.zeros_like(col)
        return SimpleNamespace(
            log_probs=col, entropy=zeros, mean_logits=zeros, is_top1=torch.zeros(n, 1, dtype=torch.bool)
        )


def trl_dpo(cases, beta: float, label_smoothing: float) -> tuple[float, dict]:
    """Run TRL's own DPOTrainer._compute_loss on `cases`; return (loss, logged metrics)."""
    from collections import defaultdict

    from accelerate import Accelerator
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir="/tmp/scir-fixtures-dpo",
        beta=beta,
        label_smoothing=label_smoothing,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=True,
        report_to=[],
        use_cpu=True,
    )
    trainer = DPOTrainer.__new__(DPOTrainer)
    # The attributes DPOTrainer.__init__ derives from args (same expressions as TRL's __init__).
    trainer.args = args
    trainer.beta = args.beta
    trainer.precompute_ref_logps = args.precompute_ref_log_probs
    trainer.loss_types = args.loss_type
    trainer.loss_weights = args.loss_weights or [1.0] * len(trainer.loss_types)
    trainer.ld_alpha = args.ld_alpha
    trainer.f_divergence_type = args.f_divergence_type
    trainer.f_alpha_divergence_coef = args.f_alpha_divergence_coef
    trainer.label_smoothing = args.label_smoothing
    trainer.use_weighting = args.use_weighting
    trainer.aux_loss_enabled = False
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer._total_train_tokens = 0
    trainer._tp_size = 1
    trainer.accelerator = Accelerator(cpu=True)
    trainer.model = torch.nn.Linear(1, 1).train()

    t = torch.tensor(cases, dtype=torch.float64)  # [B, 4]
    b = t.shape[0]
    inputs = {
        "input_ids": torch.ones(2 * b, 2, dtype=torch.long),
        "attention_mask": torch.ones(2 * b, 2, dtype=torch.long),
        "completion_mask": torch.tensor([[0, 1]] * (2 * b)),
        "ref_chosen_logps": t[:, 2],
        "ref_rejected_logps": t[:, 3],
    }
    policy = _FakePolicy(torch.cat([t[:, 0], t[:, 1]]))
    loss = DPOTrainer._compute_loss(trainer, policy, inputs, return_outputs=False)
    metrics = {k: v[-1] for k, v in sorted(trainer._metrics["train"].items())}
    return f(loss), metrics


def make_dpo(out: Path) -> None:
    label_smoothing = 0.0
    cases, batches = [], []
    for beta in DPO_BETAS:
        for pc, pr, rc, rr in DPO_CASES:
            loss, m = trl_dpo([(pc, pr, rc, rr)], beta, label_smoothing)
            cases.append(
                {
                    "policy_chosen_logps": pc,
                    "policy_rejected_logps": pr,
                    "reference_chosen_logps": rc,
                    "reference_rejected_logps": rr,
                    "beta": beta,
                    "label_smoothing": label_smoothing,
                    "loss": loss,
                    "chosen_reward": m["rewards/chosen"],
                    "rejected_reward": m["rewards/rejected"],
                }
            )
        loss, m = trl_dpo(DPO_CASES, beta, label_smoothing)
        batches.append(
            {
                "beta": beta,
                "label_smoothing": label_smoothing,
                "policy_chosen_logps": [c[0] for c in DPO_CASES],
                "policy_rejected_logps": [c[1] for c in DPO_CASES],
                "reference_chosen_logps": [c[2] for c in DPO_CASES],
                "reference_rejected_logps": [c[3] for c in DPO_CASES],
                "loss": loss,
                "metrics": {k: m[k] for k in TRL_METRICS},
            }
        )
    import trl

    write_json(
        out / "dpo_loss.json",
        {
            "schema_version": 1,
            "source": "trl.DPOTrainer._compute_loss (loss_type=['sigmoid'], f_divergence_type='reverse_kl', "
            "precompute_ref_log_probs=True), float64 inputs",
            "trl_version": trl.__version__,
            "torch_version": torch.__version__,
            "cases": cases,
            "batches": batches,
        },
    )


TRL_METRICS = [
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
]


# --- checking a checkpoint scir saved -----------------------------------------------------


def check_checkpoint(args) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = Path(args.check_scir_checkpoint)
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    if args.ids is not None:
        ids = [int(x) for x in args.ids.split(",") if x.strip()]
        start = 1
    else:
        if args.prompt is None or args.response is None:
            sys.exit("give --ids, or --prompt and --response")
        p_ids = tok(args.prompt, add_special_tokens=True)["input_ids"]
        ids = p_ids + tok(args.response, add_special_tokens=False)["input_ids"]
        if args.eos:
            ids.append(tok.eos_token_id)
        start = len(p_ids)
    if start >= len(ids):
        sys.exit("nothing to score: the sequence needs at least one token after the prompt")
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    tl = [f(lp[t - 1, ids[t]]) for t in range(start, len(ids))]
    out = {
        "checkpoint": str(d),
        "model_type": model.config.model_type,
        "versions": versions(),
        "ids": ids,
        "response_start": start,
        "token_logprobs": tl,
        "logprob": f(math.fsum(tl)),
        "tokens": len(tl),
        "logits": [[f(v) for v in row] for row in logits],
    }
    print(json.dumps(out, allow_nan=False))
    if args.expect_logprob is not None:
        err = abs(out["logprob"] - args.expect_logprob) / max(abs(out["logprob"]), 1e-12)
        if err > args.rtol:
            sys.exit(f"logprob mismatch: transformers {out['logprob']!r}, expected {args.expect_logprob!r}")


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="fixture directory to (re)write, e.g. tests/fixtures")
    ap.add_argument("--check-scir-checkpoint", metavar="DIR", help="load DIR in transformers and print JSON")
    ap.add_argument("--ids", help="with --check-scir-checkpoint: comma-separated token ids (scores ids[1:])")
    ap.add_argument("--prompt", help="with --check-scir-checkpoint: prompt text (encoded with special tokens)")
    ap.add_argument("--response", help="with --check-scir-checkpoint: response text (without special tokens)")
    ap.add_argument("--eos", action="store_true", help="with --check-scir-checkpoint: append EOS to the response")
    ap.add_argument(
        "--expect-logprob", type=float, help="with --check-scir-checkpoint: exit 1 unless logprob matches (e.g. scir's)"
    )
    ap.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance for --expect-logprob")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.check_scir_checkpoint:
        check_checkpoint(args)
        return
    if args.out is None:
        ap.error("give --out DIR or --check-scir-checkpoint DIR")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw_tok = build_tokenizer()
    tok_dir = out / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    hf_tokenizer(raw_tok, None).save_pretrained(tok_dir)
    for i, (name, spec) in enumerate(MODELS.items()):
        make_model(out, name, spec, SEED + i, raw_tok)
        print(f"wrote {out / 'models' / name}", file=sys.stderr)
    make_dpo(out)
    print(f"wrote {out / 'dpo_loss.json'}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
