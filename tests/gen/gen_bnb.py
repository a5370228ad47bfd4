#!/usr/bin/python3
"""gen_bnb.py — bitsandbytes 4-bit NF4 model folders for tests/test_qbase.c, made by bitsandbytes
itself, plus reference logits from transformers running on bitsandbytes' own dequantisation.

Every nn.Linear weight of the decoder is quantised with bitsandbytes.functional.quantize_4bit
(CPU backend, blocksize 64, nf4) and stored as bnb.nn.Linear4bit._save_to_state_dict does:
"<name>.weight" (packed uint8 [n/2, 1]) and "<name>.weight.<key>" for every entry of
QuantState.as_dict(packed=True) (absmax, quant_map, nested_absmax, nested_quant_map,
quant_state.bitsandbytes__nf4). Embeddings, norms and lm_head stay float, config.json gets the
quantization_config transformers writes for BitsAndBytesConfig(load_in_4bit=True, nf4).
(transformers 4.46's own from_pretrained(quantization_config=...) refuses bnb's CPU backend,
so the state dict is assembled here the same way.)

Reference: transformers' LlamaForCausalLM with each quantised weight replaced by
bitsandbytes.functional.dequantize_4bit of its state; logits of IDS written as logits.f32.

Run by hand with Debian's python (python3-torch; pip install --break-system-packages
bitsandbytes transformers):
    /usr/bin/python3 tests/gen/gen_bnb.py tests/data/bnb
"""
import json
import os
import shutil
import sys

import bitsandbytes
import bitsandbytes.functional as F
import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

IDS = [1, 403, 407, 261, 378, 432, 260, 284]
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def make(src, out, double_quant, ids):
    os.makedirs(out, exist_ok=True)
    sd = load_file(os.path.join(src, "model.safetensors"))
    qsd, deq = {}, {}
    for name, w in sd.items():
        if name.endswith(".weight") and name.split(".")[-2] in LINEAR:
            q, st = F.quantize_4bit(w.float().contiguous(), blocksize=64, quant_type="nf4",
                                    compress_statistics=double_quant,
                                    quant_storage=torch.uint8)
            qsd[name] = q
            for k, v in st.as_dict(packed=True).items():
                qsd[name + "." + k] = v.contiguous()
            deq[name] = F.dequantize_4bit(q, st).float()
        else:
            qsd[name] = w.float().contiguous()
            deq[name] = w.float()
    save_file(qsd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["quantization_config"] = {
        "_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": double_quant, "llm_int8_enable_fp32_cpu_offload": False,
        "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
        "llm_int8_threshold": 6.0, "load_in_4bit": True, "load_in_8bit": False,
        "quant_method": "bitsandbytes"}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), os.path.join(out, f))
    conf = transformers.AutoConfig.from_pretrained(src)
    model = transformers.AutoModelForCausalLM.from_config(conf, torch_dtype=torch.float32)
    model.load_state_dict(deq, strict=False)
    if conf.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().numpy()
    logits.astype("<f4").tofile(os.path.join(out, "logits.f32"))
    np.array(ids, dtype="<i4").tofile(os.path.join(out, "ids.i32"))
    print(out, "bitsandbytes", bitsandbytes.__version__, "transformers", transformers.__version__,
          "torch", torch.__version__)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/bnb"
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.path.join(here, "..", "..", "..", "shared", "models", "stories260K-hf")
    make(shared, os.path.join(out, "stories260K-nf4-dq"), True, IDS)
    tiny = os.path.join(here, "..", "data", "models", "llama3-tiny")
    make(tiny, os.path.join(out, "llama3-tiny-nf4"), False, [1, 5, 77, 200, 31, 9])


if __name__ == "__main__":
    main()
