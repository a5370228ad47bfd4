#!/usr/bin/env python3
"""Check that adapters carrying lorakit's training-base record still load in Hugging Face PEFT.

lora-train writes the base an adapter was trained on into adapter_model.safetensors'
"__metadata__" (lorakit.base_quant, lorakit.base_quant_embed, lorakit.base_compute, beside
PEFT's own "format": "pt"). This script trains a small adapter with lorakit (stories260K-hf, NF4
base, 3 steps), then with the PEFT of the running Python:
  - loads it with PeftModel.from_pretrained on the f32 base (no missing or unexpected keys),
  - checks every loaded lora_A/lora_B equals the file's tensors,
  - compares PEFT's mean next-token loss on fixed ids with `lora-eval --quant none -a DIR --ids`
    (the same adapter on the same unquantised base: equal to ~1e-5),
  - saves it again with save_pretrained and reloads that.
Run by hand with each PEFT (its outcome is noted in tests/data/README.md):
  /root/peers/venv/bin/python tests/gen/check_peft_record.py build          (PEFT 0.13.2)
  /root/peers/venv-peft-new/bin/python tests/gen/check_peft_record.py build  (PEFT 0.21.2)
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import peft
import transformers
from peft import PeftModel
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..")
BASE = os.path.abspath(os.path.join(SRC, "..", "shared", "models", "stories260K-hf"))
IDS = [1, 403, 407, 261, 378, 432, 295, 260, 349, 440, 287, 351, 260, 263, 301]


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def lorakit_loss(build, adapter):
    out = subprocess.run([os.path.join(build, "lora-eval"), "-m", BASE, "--quant", "none", "-a",
                          adapter, "--ids", ",".join(map(str, IDS)), "--json", "-q"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["loss"]


def peft_check(adapter):
    base = transformers.AutoModelForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    file = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    state = model.state_dict()
    worst = 0.0
    for k, v in file.items():  # PEFT names its keys with the adapter name ".default."
        key = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight")
        worst = max(worst, (state[key] - v).abs().max().item())
    with torch.no_grad():
        ids = torch.tensor([IDS])
        loss = model(input_ids=ids, labels=ids).loss.item()
    return model, worst, loss


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build"))
    tmp = tempfile.mkdtemp()
    adapter = os.path.join(tmp, "adapter")
    subprocess.run([os.path.join(build, "lora-train"), "-m", BASE, "--data",
                    os.path.join(SRC, "samples", "data", "whale-train.jsonl"), "-o", adapter,
                    "--steps", "3", "--seq-len", "128", "--lr", "1e-2", "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    meta = metadata(os.path.join(adapter, "adapter_model.safetensors"))
    print("peft", peft.__version__, "transformers", transformers.__version__)
    print("metadata:", meta)
    assert meta.get("format") == "pt" and meta.get("lorakit.base_quant") == "nf4", meta
    model, worst, loss = peft_check(adapter)
    ref = lorakit_loss(build, adapter)
    print(f"factors: max |PEFT - file| {worst:.3g}; loss PEFT {loss:.6f}, lorakit {ref:.6f}, "
          f"difference {abs(loss - ref):.2e}")
    assert worst == 0.0 and abs(loss - ref) < 1e-4
    again = os.path.join(tmp, "resaved")
    model.save_pretrained(again)
    _, worst2, loss2 = peft_check(again)
    print(f"re-saved by PEFT: factors {worst2:.3g}, loss {loss2:.6f}; metadata "
          f"{metadata(os.path.join(again, 'adapter_model.safetensors'))}")
    assert abs(loss2 - loss) < 1e-6
    print("OK")


if __name__ == "__main__":
    main()
