#!/usr/bin/python3
"""check_quantize_gguf.py — cross-check `lora-quantize --format gguf` with llama.cpp's gguf-py.

Usage (after building; MODEL is a float folder whose rows are whole blocks of 32, with
tokenizer.json, e.g. from lora-random-model --dtype f32 plus stories260K's tokenizer files):
    lora-quantize -m MODEL --type q4_0 --quant-embed q8_0 --format gguf -o out.gguf
    /usr/bin/python3 tests/gen/check_quantize_gguf.py MODEL out.gguf
Reads the file with gguf.GGUFReader, undoes nothing: the source weights are permuted as
convert_hf_to_gguf.py does for q/k (Llama), quantised with gguf.quants.quantize (llama.cpp's
reference quantisers in numpy) and compared byte for byte; dequantised errors are printed.
Result (gguf-py from pip, 2026-11): every Q4_0 and Q8_0 tensor byte-identical, IQ4_NL dequantises
within its quantisation error; general.architecture llama.
"""
import sys

import gguf
import numpy as np
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file


def perm(w, h):
    return w.reshape(h, 2, w.shape[0] // h // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    model, path = sys.argv[1], sys.argv[2]
    import json
    cfg = json.load(open(model + "/config.json"))
    src = load_file(model + "/model.safetensors")
    r = gguf.GGUFReader(path)
    stems = {"attn_q": ("self_attn.q_proj", cfg["num_attention_heads"]),
             "attn_k": ("self_attn.k_proj", cfg.get("num_key_value_heads",
                                                    cfg["num_attention_heads"])),
             "attn_v": ("self_attn.v_proj", 0), "attn_output": ("self_attn.o_proj", 0),
             "ffn_gate": ("mlp.gate_proj", 0), "ffn_up": ("mlp.up_proj", 0),
             "ffn_down": ("mlp.down_proj", 0)}
    bad = 0
    for t in r.tensors:
        parts = t.name.split(".")
        if parts[0] == "blk" and parts[2] in stems:
            hf, h = stems[parts[2]]
            w = src[f"model.layers.{parts[1]}.{hf}.weight"].astype(np.float32)
            if h:
                w = perm(w, h)
            try:
                same = np.array_equal(quantize(w, t.tensor_type).reshape(-1),
                                      np.asarray(t.data).reshape(-1))
                verdict = "identical" if same else "DIFFERENT"
            except NotImplementedError:  # gguf-py has no IQ4_NL quantiser: dequantise only
                same, verdict = True, "(no gguf-py quantiser)"
            d = dequantize(t.data, t.tensor_type).reshape(w.shape)
            print(t.name, t.tensor_type.name, verdict,
                  "max|deq-src| %.3g" % float(np.abs(d - w).max()))
            bad += not same
    print("general.architecture", bytes(r.fields["general.architecture"].parts[-1]).decode())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
