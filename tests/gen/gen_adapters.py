#!/usr/bin/python3
"""Adapter fixtures and references for lorakit's adapter, merge, export and inspect tests.

Adapters are made by the real peer, Hugging Face PEFT (get_peft_model + save_pretrained), with
non-zero random factors (init_lora_weights=False) so that every ΔW matters. References:

  reference.safetensors   merged.<fixture>.<tensor>: weights after PEFT's merge_and_unload()
                          (float32); logits.<fixture>: PEFT model logits for `tokens` (float32);
                          combo.<tensor>: numpy float64 W + 0.7·s1·B1·A1 + 0.3·s2·B2·A2
  inspect_ref.json        numpy SVD of ΔW = s·B·A for every module of stories-lora, and the diff
                          of stories-lora vs stories-lora-b (cosine, relative Frobenius difference,
                          principal-angle cosines) computed on the dense ΔW
  stories-lora.gguf       GGUF LoRA written with gguf-py (llama.cpp's own package) following
  llama3-rslora.gguf      llama.cpp's conventions (convert_lora_to_gguf.py): general.type adapter,
                          adapter.type lora, adapter.lora.alpha, blk.N.<stem>.weight.lora_a/b,
                          q/k rows of B permuted as convert_hf_to_gguf.py's LlamaModel.permute;
                          for rsLoRA/patterns the scale is folded into B and alpha is 0

Run by hand: PYTHONPATH=/usr/lib/python3/dist-packages /usr/bin/python3 tests/gen/gen_adapters.py
(PYTHONPATH puts Debian's torch before any pip-installed one; if a bitsandbytes that needs
torch >= 2.3 is installed, PEFT fails to import with torch 1.13: run without PYTHONPATH then.)
(Debian torch 1.13, transformers 4.46.3, peft 0.13.2, gguf 0.10.0; ../shared/models beside the
checkout.)  `gen_adapters.py check-peft DIR BASE` loads a PEFT folder written by lorakit with PEFT
and prints the max logit difference against the merged reference (the round-trip check).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

import gguf
import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "adapters")
SHARED = os.path.join(HERE, "..", "..", "..", "shared")
STORIES = os.path.join(SHARED, "models", "stories260K-hf")
TOKENS = [1, 403, 407, 261, 378, 432]

FIXTURES = {
    # name: (base folder, LoraConfig kwargs, seed)
    "stories-lora": (STORIES, dict(r=4, lora_alpha=8,
                                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]), 1),
    "stories-lora-b": (STORIES, dict(r=2, lora_alpha=4, target_modules="all-linear"), 2),
    "llama3-rslora": (os.path.join(DATA, "models", "llama3-tiny"),
                      dict(r=4, lora_alpha=6, use_rslora=True,
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                           rank_pattern={"layers.1.self_attn.q_proj": 2, "down_proj": 3},
                           alpha_pattern={"v_proj": 3}), 3),
    "qwen2-lora": (os.path.join(DATA, "models", "qwen2-tiny"),
                   dict(r=3, lora_alpha=5, target_modules=["q_proj", "k_proj", "v_proj",
                                                           "gate_proj"]), 4),
    "qwen2-dora": (os.path.join(DATA, "models", "qwen2-tiny"),
                   dict(r=2, lora_alpha=4, use_dora=True,
                        target_modules=["q_proj", "v_proj", "up_proj"]), 5),
}

# merged tensors kept as references (small: a few per fixture)
MERGED = {
    "stories-lora": ["model.layers.0.self_attn.q_proj.weight",
                     "model.layers.4.self_attn.k_proj.weight"],
    "llama3-rslora": ["model.layers.1.self_attn.q_proj.weight",
                      "model.layers.1.self_attn.v_proj.weight",
                      "model.layers.0.mlp.down_proj.weight"],
    "qwen2-lora": ["model.layers.1.self_attn.k_proj.weight"],
    "qwen2-dora": ["model.layers.0.self_attn.q_proj.weight"],
}


# PEFT forward logits kept for attach tests (DoRA cannot attach; stories-lora-b is covered by
# the combination reference)
LOGITS = ["stories-lora", "llama3-rslora", "qwen2-lora"]


def load_base(path):
    m = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    m.eval()
    return m


def make(name):
    base_dir, kw, seed = FIXTURES[name]
    torch.manual_seed(seed)
    model = load_base(base_dir)
    cfg = LoraConfig(init_lora_weights=False, lora_dropout=0.0, bias="none", **kw)
    pm = get_peft_model(model, cfg)
    if kw.get("use_dora"):
        # move the magnitudes away from ‖W + sBA‖ so the DoRA rescaling is exercised
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_magnitude_vector" in n:
                    p.mul_(1 + 0.2 * torch.rand_like(p))
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    pm.save_pretrained(out)
    # the config records the absolute base path; keep the fixture relocatable
    cpath = os.path.join(out, "adapter_config.json")
    c = json.load(open(cpath))
    c["base_model_name_or_path"] = os.path.basename(base_dir.rstrip("/"))
    json.dump(c, open(cpath, "w"), indent=2, sort_keys=True)
    os.path.exists(os.path.join(out, "README.md")) and os.remove(os.path.join(out, "README.md"))
    refs = {}
    vocab = pm.config.vocab_size
    toks = torch.tensor([[t % vocab for t in TOKENS]])
    with torch.no_grad():
        if name in LOGITS:
            refs["logits." + name] = pm(toks).logits[0].numpy().astype(np.float32)
        merged = pm.merge_and_unload()
        sd = merged.state_dict()
        for t in MERGED.get(name, []):
            refs["merged.%s.%s" % (name, t)] = sd[t].numpy().astype(np.float32)
    return refs


def adapter_np(name):
    """{module path: (A, B, scale)} from a PEFT folder, as PEFT computes the scale."""
    d = os.path.join(OUT, name)
    c = json.load(open(os.path.join(d, "adapter_config.json")))
    w = load_file(os.path.join(d, "adapter_model.safetensors"))
    import re
    mods = {}
    for k in w:
        if k.endswith("lora_A.weight"):
            stem = k[len("base_model.model."):-len(".lora_A.weight")]
            A = w[k].astype(np.float64)
            B = w[k.replace("lora_A", "lora_B")].astype(np.float64)
            keys = list(c["rank_pattern"]) + list(c["alpha_pattern"])
            hit = next((p for p in keys if re.match(r".*\.%s$" % p, stem)), stem)
            r = c["rank_pattern"].get(hit, c["r"])
            alpha = c["alpha_pattern"].get(hit, c["lora_alpha"])
            assert r == A.shape[0]
            s = alpha / np.sqrt(r) if c["use_rslora"] else alpha / r
            mods[stem] = (A, B, s)
    return mods


def inspect_ref():
    a = adapter_np("stories-lora")
    b = adapter_np("stories-lora-b")
    out = {"stats": {}, "diff": {}}
    for stem, (A, B, s) in sorted(a.items()):
        dw = s * B @ A
        sv = np.linalg.svd(dw, compute_uv=False)[:A.shape[0]]
        out["stats"][stem] = {"norm_a": float(np.linalg.norm(A)), "norm_b": float(np.linalg.norm(B)),
                              "norm_delta": float(np.linalg.norm(dw)), "sv": sv.tolist()}
        A2, B2, s2 = b[stem]
        dw2 = s2 * B2 @ A2
        cos = float(np.sum(dw * dw2) / (np.linalg.norm(dw) * np.linalg.norm(dw2)))
        rel = float(np.linalg.norm(dw - dw2) / np.linalg.norm(dw))
        u1 = np.linalg.svd(dw)[0][:, :A.shape[0]]
        u2 = np.linalg.svd(dw2)[0][:, :A2.shape[0]]
        pc = np.linalg.svd(u1.T @ u2, compute_uv=False)
        out["diff"][stem] = {"cosine": cos, "rel_diff": rel, "cos_angles": pc.tolist(),
                             "subspace": float(np.mean(pc ** 2))}
    json.dump(out, open(os.path.join(OUT, "inspect_ref.json"), "w"), indent=1, sort_keys=True)


def combo_ref():
    """numpy reference for lora-merge -a stories-lora:0.7 -a stories-lora-b:0.3."""
    base = load_file(os.path.join(STORIES, "model.safetensors"))
    a, b = adapter_np("stories-lora"), adapter_np("stories-lora-b")
    refs = {}
    for t in ["model.layers.2.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight"]:
        stem = t[:-len(".weight")]
        w = base[t].astype(np.float64)
        for ad, wt in ((a, 0.7), (b, 0.3)):
            if stem in ad:
                A, B, s = ad[stem]
                w = w + wt * s * B @ A
        refs["combo." + t] = w.astype(np.float32)
    return refs


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute (reimplemented from its documented maths)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_ref(name, base_dir):
    hp = json.load(open(os.path.join(base_dir, "config.json")))
    c = json.load(open(os.path.join(OUT, name, "adapter_config.json")))
    mods = adapter_np(name)
    uniform = not c["use_rslora"] and not c["rank_pattern"] and not c["alpha_pattern"]
    stems = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    w = gguf.GGUFWriter(os.path.join(OUT, name + ".gguf"), "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_name(c["base_model_name_or_path"])
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(c["lora_alpha"]) if uniform else 0.0)
    nh, nkv = hp["num_attention_heads"], hp["num_key_value_heads"]
    for stem in sorted(mods, key=lambda s: (int(s.split(".")[2]), list(stems).index(s.split(".", 3)[3]))):
        A, B, s = mods[stem]
        layer = int(stem.split(".")[2])
        hf = stem.split(".", 3)[3]
        A32 = A.astype(np.float32)
        B32 = B.astype(np.float32) if uniform else (B * s).astype(np.float32)
        if hf == "self_attn.q_proj":
            B32 = permute(B32, nh, nh)
        elif hf == "self_attn.k_proj":
            B32 = permute(B32, nh, nkv)
        g = "blk.%d.%s.weight" % (layer, stems[hf])
        w.add_tensor(g + ".lora_a", np.ascontiguousarray(A32))
        w.add_tensor(g + ".lora_b", np.ascontiguousarray(B32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check_peft(folder, base_dir):
    """Round trip: a PEFT folder written by lorakit, loaded by PEFT, against the reference."""
    model = load_base(base_dir)
    pm = PeftModel.from_pretrained(model, folder)
    toks = torch.tensor([[t % model.config.vocab_size for t in TOKENS]])
    with torch.no_grad():
        got = pm(toks).logits[0].numpy()
    ref = load_file(os.path.join(OUT, "reference.safetensors"))
    name = os.path.basename(folder.rstrip("/"))
    key = next(k for k in ref if k.startswith("logits.") and k[7:] in name)
    print("%s: PEFT %s loads it; max |logit diff| vs %s = %.3g" %
          (folder, peft.__version__, key, np.abs(got - ref[key]).max()))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "check-peft":
        return check_peft(sys.argv[2], sys.argv[3])
    os.makedirs(OUT, exist_ok=True)
    refs = {}
    for name in FIXTURES:
        refs.update(make(name))
    refs.update(combo_ref())
    refs["tokens"] = np.array(TOKENS, dtype=np.int32)
    save_file(refs, os.path.join(OUT, "reference.safetensors"))
    inspect_ref()
    gguf_ref("stories-lora", STORIES)
    gguf_ref("llama3-rslora", FIXTURES["llama3-rslora"][0])
    print("peft", peft.__version__, "gguf-py", gguf.__version__ if hasattr(gguf, "__version__") else "0.10.0",
          "transformers", transformers.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
