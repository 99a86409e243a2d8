"""Check that a LoRA adapter scir wrote loads in Hugging Face peft with the same logits.

Usage (needs torch, transformers and peft):
    SCIR_LORA_EXPORT_DIR=/tmp/x cargo test --test tests lora_export -- --ignored
    python scripts/check_lora_peft.py /tmp/x

The directory holds `base/` (a model scir saved), `adapter/` (`LoraSet::save_peft`) and
`expect.json` (scir's logits for `ids` with adapters on and off). Prints one JSON object
and exits 1 when a difference exceeds 1e-5.
"""

import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

TOLERANCE = 1e-5


def main() -> int:
    root = Path(sys.argv[1])
    expect = json.loads((root / "expect.json").read_text())
    ids = torch.tensor([expect["ids"]])
    base = AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        off = base(ids).logits.flatten()
        model = PeftModel.from_pretrained(base, root / "adapter")
        on = model(ids).logits.flatten()
        merged = model.merge_and_unload()(ids).logits.flatten()
    want_on, want_off = torch.tensor(expect["on"]), torch.tensor(expect["off"])
    result = {
        "base_vs_scir_off": (off - want_off).abs().max().item(),
        "peft_vs_scir_on": (on - want_on).abs().max().item(),
        "peft_merged_vs_scir_on": (merged - want_on).abs().max().item(),
        "adapter_effect": (want_on - want_off).abs().max().item(),
    }
    print(json.dumps(result))
    ok = max(result["base_vs_scir_off"], result["peft_vs_scir_on"], result["peft_merged_vs_scir_on"]) <= TOLERANCE
    return 0 if ok and result["adapter_effect"] > 100 * TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
