#!/usr/bin/env python3
"""Build scir's reward-model (Bradley–Terry) parity fixtures with transformers and TRL.

What it writes (see tests/fixtures/README.md, section "Reward-model fixtures", for the schemas):

  <out>/models/rm_llama/   a tiny random LlamaForSequenceClassification (num_labels=1, a scalar
                           head `score.weight` [1, hidden], no bias), saved with `save_pretrained`
                           in float32 (config.json, model.safetensors, tokenizer.json,
                           tokenizer_config.json), and reference.json: transformers' scores for
                           token sequences run alone, as one right-padded batch and as one
                           left-padded batch, the position each score is read at, and a few
                           final hidden-state values
  <out>/models/rm_qwen2/   the same for Qwen2ForSequenceClassification (q/k/v biases)
  <out>/reward_loss.json   TRL's RewardTrainer loss (`compute_loss`, called on a real
                           RewardTrainer) on fixed rewards, with and without a margin column and
                           with `center_rewards_coefficient`, plus one end-to-end batch through
                           rm_llama with TRL's own collator

It reuses the shared tokenizer <out>/tokenizer/tokenizer.json written by
scripts/make_fixtures.py (run that first if it is missing) and that script's helpers
(seeded weight init, JSON writer). Seeded, CPU, single thread: two runs write identical bytes
(run it twice and `diff -r`).

Usage:
  /root/.cache/scir-venv/bin/python scripts/make_rm_fixtures.py --out tests/fixtures

Library versions: scripts/requirements-fixtures.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (helpers shared with the causal-LM fixtures)

SEED = 4321
SCORE_STD = 0.5  # std of score.weight, so scores are O(1), not tiny
SCORE_RTOL = 1e-5  # padded batch vs unpadded, relative, asserted here
MIN_ABS_SCORE = 0.05  # every score is at least this far from 0 (keeps relative checks meaningful)
HIDDEN_PREVIEW = 8  # values of the final hidden state recorded per debugged sequence
HIDDEN_SEQS = [0, 1]  # indices into the sequences whose hidden state is recorded

# Small on purpose: the two checkpoints together stay well under 300 KiB.
COMMON = dict(
    vocab_size=mf.VOCAB_SIZE,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
    num_labels=1,
)

RM_MODELS = {
    "rm_llama": dict(
        arch="llama",
        config=dict(rope_theta=10000.0, rms_norm_eps=1e-6),
        about="LlamaForSequenceClassification, num_labels 1 (reward model), GQA 4 heads / 2 kv heads, f32",
    ),
    "rm_qwen2": dict(
        arch="qwen2",
        config=dict(rope_theta=1000000.0, rms_norm_eps=1e-6),
        about="Qwen2ForSequenceClassification, num_labels 1 (reward model), random q/k/v biases, "
        "GQA 4 heads / 2 kv heads, f32",
    ),
}

# Texts scored by the reward models. `eos`: whether EOS is appended the way TRL's RewardTrainer
# does for plain-text data (the EOS *string* appended, then tokenised with special tokens).
SEQUENCES = [
    dict(text="Sort the letters: c a b a b c", eos=True),
    dict(text="Question: what is two plus two? The answer is four.", eos=True),
    dict(text="Hello world, hello again!", eos=False),
    dict(text="The quick brown fox jumps over the lazy dog.", eos=True),
    dict(text="Yes", eos=False),
    dict(text="Write a list: 1. apples\n2. pears", eos=True),
    dict(text="", eos=True),  # BOS EOS only
]

# (chosen_reward, rejected_reward, margin or None) for reward_loss.json.
LOSS_CASES = [
    (1.5, 0.5, None),
    (0.5, 1.5, None),
    (2.0, 2.0, None),  # a tie: loss ln 2
    (1.5, 0.5, 0.5),
    (0.25, -0.75, 2.0),  # margin larger than the reward gap
    (10.0, -10.0, None),  # large positive gap: loss near 0
    (-30.0, 30.0, None),  # large negative gap: loss 60, must stay finite
    (0.123456, -0.654321, 0.1),
]
CENTER_COEFFICIENTS = [None, 0.01]
# End-to-end pairs through rm_llama: (chosen sequence index, rejected sequence index, margin).
E2E_PAIRS = [(0, 2, 0.5), (3, 4, 0.0), (1, 6, 1.25)]


def make_config(spec):
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[spec["arch"]]
    kw = dict(COMMON)
    kw.update(spec["config"])
    theta = kw.pop("rope_theta")
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    return cls(**kw)


def build_model(spec, seed: int):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(make_config(spec), attn_implementation="eager")
    assert model.score.weight.shape == (1, COMMON["hidden_size"]) and model.score.bias is None
    mf.randomise(model, seed, 1.0)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        model.score.weight.copy_(SCORE_STD * torch.randn(model.score.weight.shape, generator=gen))
    model.eval()
    return model


def scored_index(ids: list[int], pad_id: int) -> int:
    """transformers 5's rule: the rightmost position whose id is not pad_token_id."""
    return max(i for i, t in enumerate(ids) if t != pad_id)


def score_one(model, ids: list[int]) -> float:
    with torch.no_grad():
        return mf.f(model(torch.tensor([ids])).logits[0, 0])


def score_batch(model, rows: list[list[int]], pad_id: int, side: str, mask_positions: bool = False):
    width = max(len(r) for r in rows)
    if side == "right":
        ids = [r + [pad_id] * (width - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
    else:
        ids = [[pad_id] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    kwargs = dict(attention_mask=torch.tensor(mask))
    if mask_positions:
        m = torch.tensor(mask)
        kwargs["position_ids"] = (m.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(torch.tensor(ids), **kwargs).logits
    assert logits.shape == (len(rows), 1), logits.shape
    return ids, mask, [mf.f(v) for v in logits[:, 0]]


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def rm_reference(name: str, spec, model, tok, raw) -> dict:
    from trl.data_utils import _tokenize

    bos_id, eos_id, pad_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    assert (bos_id, eos_id, pad_id) == (1, 2, 0)
    assert model.config.pad_token_id == pad_id
    seqs = []
    for s in SEQUENCES:
        text = s["text"] + (tok.eos_token if s["eos"] else "")
        ids = list(_tokenize(tok, text)["input_ids"])  # TRL's own tokenisation (special tokens on)
        assert ids == raw.encode(text, add_special_tokens=True).ids, (text, ids)
        assert ids[0] == bos_id and (ids[-1] == eos_id) == s["eos"] and pad_id not in ids, ids
        idx = scored_index(ids, pad_id)
        assert idx == len(ids) - 1
        score = score_one(model, ids)
        assert abs(score) > MIN_ABS_SCORE, (name, ids, score)
        seqs.append({"text": s["text"], "eos_appended": s["eos"], "ids": ids, "score_index": idx, "score": score})
    assert len({len(s["ids"]) for s in seqs}) == len(seqs), "lengths must differ"

    rows = [s["ids"] for s in seqs]
    singles = [s["score"] for s in seqs]
    batches = {}
    for side in ("right", "left"):
        ids, mask, scores = score_batch(model, rows, pad_id, side)
        diffs = [rel(a, b) for a, b in zip(scores, singles, strict=True)]
        assert max(diffs) < SCORE_RTOL, (name, side, diffs)
        if side == "left":
            # Positions from the mask (as generate does) give the same scores: RoPE is relative.
            _, _, scores_mp = score_batch(model, rows, pad_id, side, mask_positions=True)
            assert max(rel(a, b) for a, b in zip(scores_mp, singles, strict=True)) < SCORE_RTOL
        batches[side] = {
            "padding_side": side,
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": "arange",  # none passed: transformers uses 0..L-1
            "score_index": [scored_index(r, pad_id) for r in ids],
            "scores": scores,
            "max_rel_diff_vs_single": max(diffs),
        }

    w = model.score.weight[0].detach()
    hidden = []
    for i in HIDDEN_SEQS:
        ids, idx = seqs[i]["ids"], seqs[i]["score_index"]
        with torch.no_grad():
            h = model.model(torch.tensor([ids])).last_hidden_state[0, idx]
        assert rel(mf.f(h @ w), seqs[i]["score"]) < SCORE_RTOL
        hidden.append(
            {
                "sequence_index": i,
                "position": idx,
                "first_values": [mf.f(v) for v in h[:HIDDEN_PREVIEW]],
                "l2_norm": mf.f(h.norm()),
            }
        )

    cfg = model.config
    return {
        "schema_version": 1,
        "model": name,
        "about": spec["about"],
        "versions": mf.versions(),
        "architecture": cfg.architectures[0],
        "model_type": cfg.model_type,
        "dtype_on_disk": "float32",
        "compute_dtype": "float32",
        "config": {
            **mf.config_summary(cfg),
            "num_labels": cfg.num_labels,
            "qkv_bias": spec["arch"] == "qwen2",
        },
        "special_tokens": {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id},
        "score_head": {"name": "score.weight", "shape": list(model.score.weight.shape), "bias": False},
        "score_rule": "rightmost position whose input id != pad_token_id (GenericForSequenceClassification)",
        "sequences": seqs,
        "batch_right": batches["right"],
        "batch_left": batches["left"],
        "hidden_states": hidden,
    }


def make_rm(out: Path, name: str, spec, seed: int, raw):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = out / "models" / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model = build_model(spec, seed)
    probe = torch.tensor([[1, 10, 20, 30, 40]])
    with torch.no_grad():
        before = model(probe).logits
    model.save_pretrained(d, safe_serialization=True)
    mf.hf_tokenizer(raw, None).save_pretrained(d)
    for fname in ("tokenizer.json", "tokenizer_config.json"):
        shared = out / "tokenizer" / fname
        assert (d / fname).read_bytes() == shared.read_bytes(), f"{d / fname} differs from {shared}"

    tok = AutoTokenizer.from_pretrained(d)
    reloaded = AutoModelForSequenceClassification.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    assert reloaded.config.num_labels == 1
    with torch.no_grad():
        after = reloaded(probe).logits
    assert torch.equal(before, after), (name, (before - after).abs().max())
    mf.write_json(d / "reference.json", rm_reference(name, spec, reloaded, tok, raw))
    return reloaded, tok


# --- TRL's reward loss --------------------------------------------------------------------


class _FixedRewards(torch.nn.Module):
    """Stands in for the reward model in `RewardTrainer.compute_loss`: returns the given
    rewards as `logits` [2B, 1] (chosen rows first, as TRL's collator stacks them)."""

    def __init__(self, rewards: torch.Tensor):
        super().__init__()
        self.rewards = rewards

    def forward(self, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.rewards.reshape(-1, 1))


def reward_trainer(model, tok, coef):
    """A real trl.RewardTrainer (CPU) around `model`; only `compute_loss` is used."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        output_dir="/tmp/scir-fixtures-rm",
        center_rewards_coefficient=coef,
        report_to=[],
        use_cpu=True,
        seed=SEED,
    )
    ds = Dataset.from_dict({"chosen_ids": [[1, 5, 2]], "rejected_ids": [[1, 6, 2]], "margin": [0.0]})
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.model.eval()  # metrics go to the "eval" bucket; no dropout anyway
    return trainer


def trl_loss(trainer, chosen, rejected, margins):
    b = len(chosen)
    rewards = torch.tensor(list(chosen) + list(rejected), dtype=torch.float64)
    inputs = {
        "input_ids": torch.ones(2 * b, 1, dtype=torch.long),
        "attention_mask": torch.ones(2 * b, 1, dtype=torch.long),
    }
    if margins is not None:
        inputs["margin"] = torch.tensor(margins, dtype=torch.float64)
    trainer._metrics["eval"].clear()
    loss = trainer.compute_loss(_FixedRewards(rewards), inputs)
    assert loss.dtype == torch.float64
    metrics = {k: v[-1] for k, v in sorted(trainer._metrics["eval"].items()) if k != "num_tokens"}
    return mf.f(loss), metrics


def make_reward_loss(out: Path, rm_model, tok) -> None:
    import inspect

    import trl
    from trl.trainer.reward_trainer import DataCollatorForPreference, RewardTrainer

    src_lines, start = inspect.getsourcelines(RewardTrainer.compute_loss)
    src_file = Path(inspect.getsourcefile(RewardTrainer)).as_posix()
    src_file = src_file[src_file.index("trl/") :]
    loss_lines = [
        (start + i, ln.rstrip()) for i, ln in enumerate(src_lines) if "logsigmoid" in ln or "center_rewards" in ln
    ]

    cases, batches = [], []
    for coef in CENTER_COEFFICIENTS:
        trainer = reward_trainer(rm_model, tok, coef)
        for rc, rl, m in LOSS_CASES:
            loss, _ = trl_loss(trainer, [rc], [rl], None if m is None else [m])
            cases.append(
                {"chosen_reward": rc, "rejected_reward": rl, "margin": m, "center_rewards_coefficient": coef, "loss": loss}
            )
        for with_margin in (False, True):
            margins = [0.0 if m is None else m for _, _, m in LOSS_CASES] if with_margin else None
            chosen = [c[0] for c in LOSS_CASES]
            rejected = [c[1] for c in LOSS_CASES]
            loss, metrics = trl_loss(trainer, chosen, rejected, margins)
            batches.append(
                {
                    "chosen_rewards": chosen,
                    "rejected_rewards": rejected,
                    "margins": margins,
                    "center_rewards_coefficient": coef,
                    "loss": loss,
                    "metrics": metrics,
                }
            )

    # Our own check of the formula TRL uses (float64).
    for c in cases:
        x = torch.tensor(c["chosen_reward"] - c["rejected_reward"] - (c["margin"] or 0.0), dtype=torch.float64)
        want = -torch.nn.functional.logsigmoid(x)
        if c["center_rewards_coefficient"] is not None:
            want = want + c["center_rewards_coefficient"] * (c["chosen_reward"] + c["rejected_reward"]) ** 2
        assert abs(mf.f(want) - c["loss"]) <= 1e-12 * max(1.0, abs(c["loss"])), (c, mf.f(want))

    # End to end: TRL's collator and compute_loss on the real rm_llama.
    ref = json.loads((out / "models" / "rm_llama" / "reference.json").read_text())
    seqs = ref["sequences"]
    examples = [
        {"chosen_ids": seqs[c]["ids"], "rejected_ids": seqs[r]["ids"], "margin": m} for c, r, m in E2E_PAIRS
    ]
    collator = DataCollatorForPreference(pad_token_id=tok.pad_token_id)
    batch = collator(examples)
    trainer = reward_trainer(rm_model, tok, None)
    trainer._metrics["eval"].clear()
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    rewards = [mf.f(v) for v in outputs.logits[:, 0]]
    n = len(E2E_PAIRS)
    for k, (c, r, _) in enumerate(E2E_PAIRS):
        assert rel(rewards[k], seqs[c]["score"]) < SCORE_RTOL and rel(rewards[n + k], seqs[r]["score"]) < SCORE_RTOL
    e2e = {
        "model": "rm_llama",
        "pairs": [{"chosen_sequence": c, "rejected_sequence": r, "margin": m} for c, r, m in E2E_PAIRS],
        "input_ids": batch["input_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(),
        "margin": [mf.f(v) for v in batch["margin"]],
        "margin_dtype": str(batch["margin"].dtype).replace("torch.", ""),
        "rewards_chosen": rewards[:n],
        "rewards_rejected": rewards[n:],
        "loss": mf.f(loss),
        "center_rewards_coefficient": None,
    }

    mf.write_json(
        out / "reward_loss.json",
        {
            "schema_version": 1,
            "source": f"trl.RewardTrainer.compute_loss ({src_file}, lines {start}-{start + len(src_lines) - 1}), "
            "called on a real RewardTrainer with a stand-in model returning the given rewards as logits; "
            "float64 rewards and margins",
            "source_lines": [f"{src_file}:{n_}: {ln.strip()}" for n_, ln in loss_lines],
            "trl_version": trl.__version__,
            "torch_version": torch.__version__,
            "cases": cases,
            "batches": batches,
            "end_to_end": e2e,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="fixture directory, e.g. tests/fixtures")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from tokenizers import Tokenizer

    out = args.out
    raw = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    assert raw.get_vocab_size() == mf.VOCAB_SIZE
    loaded = {}
    for i, (name, spec) in enumerate(RM_MODELS.items()):
        loaded[name] = make_rm(out, name, spec, SEED + i, raw)
        print(f"wrote {out / 'models' / name}", file=sys.stderr)
    make_reward_loss(out, *loaded["rm_llama"])
    print(f"wrote {out / 'reward_loss.json'}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
