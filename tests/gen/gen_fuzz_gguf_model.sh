#!/usr/bin/env bash
# Seeds of fuzz_model's GGUF path (tests/fuzz/corpus/model/*.gguf): micro llama/qwen2 GGUF model
# files written with gguf-py 0.19.0 (random f32 weights), then given every tensor type lorakit
# reads by llama.cpp's llama-quantize (--tensor-type per tensor; K-quants and IQ4_XS on a file
# whose rows are 256 values). Run by hand: bash tests/gen/gen_fuzz_gguf_model.sh
#   environment: PY_GGUF (default /root/peers/venv/bin/python), LLAMA_QUANTIZE (default
#   /root/peers/llama.cpp-build/bin/llama-quantize)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
C=$here/tests/fuzz/corpus/model
PY=${PY_GGUF:-/root/peers/venv/bin/python}
Q=${LLAMA_QUANTIZE:-/root/peers/llama.cpp-build/bin/llama-quantize}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$PY" - "$T" <<'PYEOF'
import sys
import numpy as np
import gguf

def write(path, arch, C, F, H, KVH, V, bias):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KVH)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    hd = C // H
    mat = lambda o, i: (rng.standard_normal((o, i)) * 0.05).astype(np.float32)
    w.add_tensor("token_embd.weight", mat(V, C))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(C, np.float32))
    for n, o, i in (("attn_q", H * hd, C), ("attn_k", KVH * hd, C), ("attn_v", KVH * hd, C),
                    ("attn_output", C, H * hd), ("ffn_gate", F, C), ("ffn_up", F, C),
                    ("ffn_down", C, F)):
        w.add_tensor(f"blk.0.{n}.weight", mat(o, i))
        if bias and n in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"blk.0.{n}.bias", (rng.standard_normal(o) * 0.05).astype(np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(C, np.float32))
    w.add_tensor("output_norm.weight", np.ones(C, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

d = sys.argv[1]
write(f"{d}/f32.gguf", "llama", 32, 64, 2, 1, 32, False)
write(f"{d}/qwen2.gguf", "qwen2", 32, 64, 2, 1, 32, True)
write(f"{d}/k256.gguf", "llama", 256, 256, 2, 1, 32, False)
PYEOF
cp "$T/f32.gguf" "$C/f32.gguf"
"$Q" --tensor-type attn_q=q4_0 --tensor-type attn_k=q4_1 --tensor-type attn_v=q5_0 \
    --tensor-type attn_output=q5_1 --tensor-type ffn_gate=iq4_nl --tensor-type ffn_up=q8_0 \
    --tensor-type ffn_down=f16 --token-embedding-type bf16 "$T/f32.gguf" "$C/types32.gguf" Q8_0 1 \
    >/dev/null 2>&1
"$Q" --pure "$T/qwen2.gguf" "$C/qwen2-q8_0.gguf" Q8_0 1 >/dev/null 2>&1
"$Q" --tensor-type attn_q=q2_k --tensor-type attn_k=q3_k --tensor-type attn_v=q4_k \
    --tensor-type attn_output=q5_k --tensor-type ffn_gate=q6_k --tensor-type ffn_up=iq4_xs \
    --tensor-type ffn_down=q4_k --token-embedding-type q8_0 "$T/k256.gguf" "$C/types256.gguf" \
    Q4_K_M 1 >/dev/null 2>&1
ls -la "$C"/*.gguf
