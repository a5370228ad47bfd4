#!/usr/bin/env python3
"""gen_gguf.py — Q4_0, Q8_0 and IQ4_NL reference vectors for tests/test_quant_formats.c.

Peers: gguf-py's numpy quantisers (pip install gguf; gguf/quants.py, written to be bit-exact with
ggml-quants.c) for Q4_0 and Q8_0; gguf-py has no IQ4_NL quantiser, so IQ4_NL comes from ggml
itself through ctypes (ggml_quantize_chunk in the libggml that pip install llama-cpp-python
builds), which also cross-checks Q4_0 and Q8_0. Run by hand:
    python3 tests/gen/gen_gguf.py tests/data/quant
Versions used are printed and recorded in tests/data/quant/README.md.
"""
import ctypes
import glob
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize


def find_libggml():
    try:
        import llama_cpp
    except ImportError:
        return None, None
    d = os.path.dirname(llama_cpp.__file__)
    for name in ("libggml-base.so", "libggml.so"):
        hits = glob.glob(os.path.join(d, "**", name), recursive=True)
        if hits:
            lib = ctypes.CDLL(hits[0], mode=ctypes.RTLD_GLOBAL)
            return lib, llama_cpp.__version__
    return None, None


def ggml_quantize(lib, qtype, x):
    rows, n = x.shape
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    rb = lib.ggml_row_size(int(qtype), n)
    out = np.zeros(rows * rb, dtype=np.uint8)
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init(int(qtype))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    xc = np.ascontiguousarray(x, dtype=np.float32)
    lib.ggml_quantize_chunk(int(qtype), xc.ctypes.data, out.ctypes.data, 0, rows, n, None)
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant"
    rng = np.random.default_rng(77)
    rows, n = 8, 256
    x = rng.standard_normal((rows, n)).astype(np.float32)
    x[1, 32:64] = 0.0                  # an all-zero block
    x[2, 0:32] = -np.abs(x[2, 0:32])   # largest magnitude negative
    x[3, 64:96] *= 1e-3                # tiny block
    x[4, :] *= 1000.0                  # large values
    x[5, 7] = 70000.0                  # fp16 overflow of Q8_0's d? (70000/127 fits)
    x[6, 40] = -x[6, 41]               # equal magnitudes, both signs
    x[7, :32] = np.float32(0.5) * np.arange(-16, 16, dtype=np.float32)  # exact ties
    x.tofile(os.path.join(out, "gguf_in.f32"))
    lib, llama_ver = find_libggml()
    from importlib.metadata import version
    print("gguf-py", version("gguf"), "numpy", np.__version__, "llama-cpp-python", llama_ver)
    for qt, name in ((QT.Q4_0, "q4_0"), (QT.Q8_0, "q8_0")):
        q = quantize(x, qt)
        q.tofile(os.path.join(out, f"gguf_{name}.bin"))
        if lib is not None:
            g = ggml_quantize(lib, qt, x)
            print(name, "gguf-py == ggml:", bool(np.array_equal(g, q.reshape(-1))))
    if lib is None:
        sys.exit("IQ4_NL needs libggml from llama-cpp-python")
    g = ggml_quantize(lib, QT.IQ4_NL, x)
    g.tofile(os.path.join(out, "gguf_iq4_nl.bin"))
    print("wrote GGUF fixtures to", out)


if __name__ == "__main__":
    main()
