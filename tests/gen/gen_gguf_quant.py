#!/usr/bin/env python3
"""gen_gguf_quant.py — quantisation vectors of every GGUF type lorakit writes (Q4_0, Q8_0, IQ4_NL,
Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) for tests/test_quant_formats.c
(test_gguf_quant_vs_ggml).

Peer: ggml itself, ggml_quantize_chunk with no importance matrix (which runs quantize_row_*_ref, or
quantize_iq4_xs with NULL weights), from the libggml-base.so that /root/peers/llama.cpp-build built
from llama-cpp-python 0.3.36's vendored llama.cpp, called through ctypes. gguf-py 0.19.0's numpy
quantisers of Q4_1 / Q5_0 / Q5_1 are compared too (printed; they agree with ggml).

Run by hand:
    /root/peers/venv/bin/python tests/gen/gen_gguf_quant.py tests/data/quant [LIBGGML_BASE]
Output (little-endian):
    gguf_quant_in.f32          ROWS x N fp32 inputs (cases below, one per row)
    gguf_quant_<type>.bin      ROWS rows of ggml's blocks of that type
"""
import ctypes
import os
import sys

import numpy as np

ROWS, N = 24, 512
TYPES = [("q4_0", 2), ("q8_0", 8), ("iq4_nl", 20), ("q4_1", 3), ("q5_0", 6), ("q5_1", 7),
         ("q2_k", 10), ("q3_k", 11), ("q4_k", 12), ("q5_k", 13), ("q6_k", 14),
         ("iq4_xs", 23)]  # ggml_type numbers
LIB = "/root/peers/llama.cpp-build/bin/libggml-base.so"


def inputs():
    rng = np.random.default_rng(1414)
    x = rng.standard_normal((ROWS, N)).astype(np.float32)
    x[1] *= 0.02                                     # weight-like scale
    x[2] = rng.standard_normal(N) * 0.02             # outliers in a weight-like row
    x[2, [3, 100, 300, 511]] = [1.5, -2.0, 0.9, -0.7]
    x[3, 32:64] = 0.0                                # an all-zero block of 32
    x[3, 256:512] = 0.0                              # an all-zero super-block
    x[4] *= 1e-30                                    # tiny values
    x[5, :256] *= 1e-39                              # subnormal values (and normal after)
    x[5, 256:] *= 1e-6
    x[6] = np.abs(x[6]) + 0.1                        # all positive (k-quant min > 0 path)
    x[7] = -np.abs(x[7]) - 0.1                       # all negative
    x[8] = 0.5                                       # constant row
    x[9] *= 1000.0                                   # large values
    x[10] = 0.0
    x[10, ::37] = 1.0                                # one-hot-ish sparse row
    for j in range(N // 32):                         # sub-blocks with very different scales
        x[11, 32 * j:32 * j + 32] *= np.float32(10.0 ** ((j % 8) - 4))
    x[12] = np.round(x[12] * 4) / 4                  # values on a grid: exact ties
    x[13, :32] = np.float32(0.5) * np.arange(-16, 16, dtype=np.float32)
    x[14] = rng.uniform(-1, 1, N)                    # uniform
    x[15] = rng.laplace(0, 0.05, N)                  # heavy-tailed
    x[16, 0:16] = -x[16, 0:16]                       # sign flips
    x[17, 5] = 30000.0                               # one huge value in a normal row
    x[18] = np.float32(1e-3) * np.sign(x[18])        # equal magnitudes, both signs
    x[19, :128] = 0.0
    x[19, 7] = -1e-20                                # a lone tiny value
    # rows 20-23 stay N(0, 1)
    return x.astype(np.float32)


def ggml_quantize(lib, qtype, x):
    rows, n = x.shape
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    rb = lib.ggml_row_size(qtype, n)
    out = np.zeros(rows * rb, dtype=np.uint8)
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init(qtype)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    xc = np.ascontiguousarray(x, dtype=np.float32)
    got = lib.ggml_quantize_chunk(qtype, xc.ctypes.data, out.ctypes.data, 0, rows, n, None)
    assert got == rows * rb, (got, rows * rb)
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant"
    lib = ctypes.CDLL(sys.argv[2] if len(sys.argv) > 2 else LIB, mode=ctypes.RTLD_GLOBAL)
    x = inputs()
    x.tofile(os.path.join(out, "gguf_quant_in.f32"))
    try:
        from gguf import GGMLQuantizationType as QT
        from gguf.quants import quantize
    except ImportError:
        quantize = None
    for name, qt in TYPES:
        g = ggml_quantize(lib, qt, x)
        g.tofile(os.path.join(out, f"gguf_quant_{name}.bin"))
        line = f"{name}: {g.size} bytes"
        if quantize is not None and name in ("q4_0", "q8_0", "q4_1", "q5_0", "q5_1"):
            q = quantize(x, QT[name.upper()])
            line += f", gguf-py == ggml: {bool(np.array_equal(q.reshape(-1), g))}"
        print(line)
    print("wrote", out)


if __name__ == "__main__":
    main()
