#!/usr/bin/env python3
"""gen_gguf_types.py — dequantisation vectors of the GGUF types lorakit reads but does not write
(Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) for tests/test_quant_formats.c.

Peer: gguf-py (pip install gguf; gguf/quants.py dequantize, written to match ggml-quants.c's
dequantize_row_*). Per type the blocks are:
  - Q4_1 / Q5_0 / Q5_1: gguf-py's own quantiser applied to random rows with edge cases (a zero
    block, a constant block, all-negative, tiny and huge values), then random bytes with finite
    fp16 scales (zero, subnormal, negative and near-65504 ones included);
  - k-quants and IQ4_XS (gguf-py has no quantiser for them): random bytes with chosen fp16 d / dmin
    (normal, negative, subnormal, zero, large), a block of all-ones bits, and the first
    super-blocks of a real tensor of that type from a SmolLM2-135M-Instruct GGUF made by
    llama-quantize (if the file is given and holds the type).
The expected values are gguf-py's dequantisation of those bytes, as fp32 bits.

Run by hand (needs numpy and gguf):
    /root/peers/venv/bin/python tests/gen/gen_gguf_types.py tests/data/quant [MODELS_DIR]
MODELS_DIR (default /root/peers/models) holds SmolLM2-135M-Instruct.<TYPE>.gguf files (the Q4_1
one is taken from ../shared/models/smollm2-135m-instruct-gguf when MODELS_DIR lacks it).

Output, one file per type, gguf_dq_<type>.bin, little-endian:
    u32 block_len, u32 block_bytes, u32 n_blocks, n_blocks*block_bytes bytes of blocks,
    n_blocks*block_len f32 expected values.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

TYPES = [("q4_1", QT.Q4_1), ("q5_0", QT.Q5_0), ("q5_1", QT.Q5_1), ("q2_k", QT.Q2_K),
         ("q3_k", QT.Q3_K), ("q4_k", QT.Q4_K), ("q5_k", QT.Q5_K), ("q6_k", QT.Q6_K),
         ("iq4_xs", QT.IQ4_XS)]

# byte offsets of the fp16 d and (where present) m / dmin inside a block (ggml-common.h)
SCALES = {QT.Q4_1: (0, 2), QT.Q5_0: (0,), QT.Q5_1: (0, 2), QT.Q2_K: (80, 82), QT.Q3_K: (108,),
          QT.Q4_K: (0, 2), QT.Q5_K: (0, 2), QT.Q6_K: (208,), QT.IQ4_XS: (0,)}

# fp16 values to plant as scales: normal, negative, subnormal, zero, the largest, tiny normal
PLANT = np.array([0.0123, -0.031, 6e-8, 0.0, 65504.0, 6.1e-5, 1.5, -2.0e-3], dtype=np.float16)

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
                      "models", "smollm2-135m-instruct-gguf")
MODEL_FILE = {QT.Q4_1: "Q4_1", QT.Q5_0: "Q5_0", QT.Q5_1: "Q5_1", QT.Q2_K: "Q2_K-pure",
              QT.Q3_K: "Q3_K-pure", QT.Q4_K: "Q4_K-pure", QT.Q5_K: "Q5_K-pure",
              QT.Q6_K: "Q6_K-pure", QT.IQ4_XS: "IQ4_XS-pure"}


def random_blocks(rng, qt, n):
    """n blocks of random bytes whose fp16 scales are taken from PLANT (cycled)."""
    bl, bb = GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(n, bb), dtype=np.uint8)
    for i in range(n):
        for j, off in enumerate(SCALES[qt]):
            v = PLANT[(i + 3 * j) % len(PLANT)]
            b[i, off:off + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
    if n > 1:  # every code bit set (qs, qh, hmask, scales) except the scales themselves
        keep = [b[1, off:off + 2].copy() for off in SCALES[qt]]
        b[1, :] = 0xFF
        for off, k in zip(SCALES[qt], keep):
            b[1, off:off + 2] = k
    return b


def quantised_rows(rng, qt, rows):
    """gguf-py's quantiser on random rows of 32-blocks with edge cases."""
    x = rng.standard_normal((rows, 32)).astype(np.float32)
    x[0] = 0.0                                           # all zero
    x[1] = np.float32(0.75)                              # constant
    x[2] = -np.abs(x[2])                                 # all negative
    x[3] *= np.float32(1e-4)                             # tiny
    x[4] *= np.float32(2000.0)                           # huge
    x[5, :16] = np.float32(0.5) * np.arange(16)          # exact steps
    return quantize(x, qt).reshape(rows, -1)


def real_blocks(models, qt, n):
    path = os.path.join(models, f"SmolLM2-135M-Instruct.{MODEL_FILE[qt]}.gguf")
    if not os.path.exists(path):  # the Q4_1 original lives in the shared folder
        path = os.path.join(SHARED, f"SmolLM2-135M-Instruct.{MODEL_FILE[qt]}.gguf")
    if not os.path.exists(path):
        return None, None
    for t in GGUFReader(path).tensors:
        if t.tensor_type == qt:
            bb = GGML_QUANT_SIZES[qt][1]
            raw = np.asarray(t.data).reshape(-1).view(np.uint8)[:n * bb]
            return raw.reshape(n, bb), t.name
    return None, None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant"
    models = sys.argv[2] if len(sys.argv) > 2 else "/root/peers/models"
    from importlib.metadata import version
    print("gguf-py", version("gguf"), "numpy", np.__version__)
    rng = np.random.default_rng(1414)
    for name, qt in TYPES:
        bl, bb = GGML_QUANT_SIZES[qt]
        parts = []
        if bl == 32:
            parts.append(quantised_rows(rng, qt, 8))
            parts.append(random_blocks(rng, qt, 16))
        else:
            parts.append(random_blocks(rng, qt, 3))
        real, tname = real_blocks(models, qt, 4 if bl == 32 else 1)
        if real is not None:
            parts.append(real)
            print(f"{name}: real blocks from {tname}")
        blocks = np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.uint8)
        nb = blocks.shape[0]
        y = dequantize(blocks.reshape(-1), qt).astype(np.float32).reshape(-1)
        assert y.size == nb * bl
        with open(os.path.join(out, f"gguf_dq_{name}.bin"), "wb") as f:
            f.write(np.array([bl, bb, nb], dtype="<u4").tobytes())
            f.write(blocks.tobytes())
            f.write(y.astype("<f4").tobytes())
        print(f"{name}: {nb} blocks, {nb * bb + nb * bl * 4 + 12} bytes, "
              f"{int(np.sum(~np.isfinite(y)))} non-finite values")


if __name__ == "__main__":
    main()
