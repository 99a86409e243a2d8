#!/usr/bin/env python3
"""Check that `scir export --preferences` output is a TRL preference dataset.

Loads every split file given (OUT/<arm>/iter-<k>.parquet) with `datasets.load_dataset`, checks
the columns TRL's DPOTrainer reads (`prompt`, `chosen`, `rejected`: strings, TRL's standard
form) and, with --model, runs one DPOTrainer step on the first split with that Hugging Face
model directory as policy (the reference is TRL's frozen copy). Not part of CI (it needs
torch, transformers, TRL and datasets: scripts/requirements-fixtures.txt).

Usage:
  scir export --preferences --artifacts ARTIFACTS
  /root/.cache/scir-venv/bin/python scripts/check_preferences.py \
      ARTIFACTS/exports/preferences/scir/iter-*.parquet --model examples/smollm2/model
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import datasets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="exported .parquet split files")
    ap.add_argument("--model", help="a Hugging Face model directory for one DPOTrainer step")
    args = ap.parse_args()

    splits = {f"split_{i}": path for i, path in enumerate(args.files)}
    ds = datasets.load_dataset("parquet", data_files=splits)
    for name, split in ds.items():
        missing = {"prompt", "chosen", "rejected"} - set(split.column_names)
        if missing:
            print(f"{splits[name]}: missing columns {sorted(missing)}", file=sys.stderr)
            return 1
        for column in ("prompt", "chosen", "rejected"):
            if split.features[column].dtype != "string":
                print(f"{splits[name]}: {column} is {split.features[column]}", file=sys.stderr)
                return 1
        print(f"{splits[name]}: {split.num_rows} rows, columns {split.column_names}")

    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        first = next(split for split in ds.values() if split.num_rows > 0)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(args.model)
        with tempfile.TemporaryDirectory() as out:
            config = DPOConfig(
                output_dir=out,
                max_steps=1,
                per_device_train_batch_size=2,
                report_to=[],
                logging_steps=1,
                save_strategy="no",
                use_cpu=True,
            )
            trainer = DPOTrainer(
                model=model,
                args=config,
                train_dataset=first,
                processing_class=tokenizer,
            )
            result = trainer.train()
        print(f"DPOTrainer: {result.global_step} step, loss {result.training_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
