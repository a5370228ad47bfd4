#!/usr/bin/python3
"""gen_nf4.py — NF4 reference vectors for tests/test_quant_formats.c.

A numpy re-implementation of bitsandbytes' blockwise NF4 quantisation (CUDA kQuantizeBlockwise
with DATA_TYPE=NF4: absmax per block, values multiplied by 1/absmax in fp32, code chosen by the
dQuantizeNF4 comparison tree, first value of a pair in the HIGH nibble) and of its double
quantisation (quantize_4bit(compress_statistics=True): absmax - mean(absmax), then 8-bit blockwise
quantisation in blocks of 256 with create_dynamic_map(signed=True) and dQuantize's binary search).
The dynamic map is built with torch (Debian python3-torch) because its values depend on
torch.linspace's fp32 arithmetic.

Run by hand with Debian's python (needs python3-numpy, python3-torch):
    /usr/bin/python3 tests/gen/gen_nf4.py tests/data/quant          # writes the fixtures
    /usr/bin/python3 tests/gen/gen_nf4.py --c-table                 # prints the C dynamic map
Outputs (little-endian) are described in tests/data/quant/README.md.
"""
import os
import re
import sys

import numpy as np

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)

# thresholds of dQuantizeNF4 (midpoints between neighbouring codes), as fp32 like the CUDA
# literals; the tree below is equivalent to "count thresholds strictly below v" for finite v.
NF4_MID = np.array([-0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
                    -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
                    -0.045525018125772476, 0.03979014977812767, 0.1202552504837513,
                    0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                    0.5016634166240692, 0.6427869200706482, 0.8614784181118011],
                   dtype=np.float32)


def dynamic_map():
    """bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    import torch
    data = []
    for i in range(7):  # fraction_items = 2**i + 1 for the signed map
        bounds = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 256
    data.sort()
    return np.array(data, dtype=np.float32)


def nf4_index(v):
    """dQuantizeNF4 for an array of fp32 values; NaN (0*inf of an all-zero block) gives 0."""
    idx = np.searchsorted(NF4_MID, v, side="left")  # number of thresholds < v
    return np.where(np.isnan(v), 0, idx).astype(np.uint8)


def quantize_nf4_row(x, bs):
    """One row, zero-padded to whole blocks: returns (codes bytes, absmax fp32)."""
    n = len(x)
    nb = (n + bs - 1) // bs
    xp = np.zeros(nb * bs, dtype=np.float32)
    xp[:n] = x
    blocks = xp.reshape(nb, bs)
    absmax = np.abs(blocks[:, :]).max(axis=1).astype(np.float32)
    # absmax over the valid values only equals this, since the padding is 0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (np.float32(1.0) / absmax).astype(np.float32)
        v = (blocks * inv[:, None]).astype(np.float32)
    q = nf4_index(v).reshape(-1)
    codes = ((q[0::2] << 4) | q[1::2]).astype(np.uint8)
    return codes, absmax


def dyn_index(cmap, x):
    """bitsandbytes dQuantize<0>: binary search over the sorted 256-value map."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = np.float32(-1.0), np.float32(1.0)
    val = cmap[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = cmap[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = cmap[upper_pivot]
    if lower_pivot == 0:
        lower = cmap[lower_pivot]
    if x > val:
        mid = np.float32((upper + val) * np.float32(0.5))
        return upper_pivot if x > mid else pivot
    mid = np.float32((lower + val) * np.float32(0.5))
    return lower_pivot if x < mid else pivot


def quantize_dynamic(cmap, x, bs=256):
    n = len(x)
    nb = (n + bs - 1) // bs
    codes = np.zeros(n, dtype=np.uint8)
    scale = np.zeros(nb, dtype=np.float32)
    for b in range(nb):
        blk = x[b * bs:(b + 1) * bs]
        am = np.float32(np.abs(blk).max())
        scale[b] = am
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.float32(np.float32(1.0) / am)
            for j, v in enumerate(blk):
                codes[b * bs + j] = dyn_index(cmap, np.float32(v * inv))
    return codes, scale


def double_quant(cmap, absmax):
    # mean: fp32 of the exact-ish double sum (torch's fp32 mean may differ in the last ulp)
    offset = np.float32(np.sum(absmax.astype(np.float64)) / len(absmax))
    centred = (absmax - offset).astype(np.float32)
    codes, scale = quantize_dynamic(cmap, centred, 256)
    deq = (cmap[codes] * np.repeat(scale, 256)[:len(codes)]).astype(np.float32)
    deq = (deq + offset).astype(np.float32)
    return offset, codes, scale, deq


def c_table(cmap):
    lines = []
    for i in range(0, 256, 4):
        hexs = [re.sub(r"\.?0+p", "p", float(v).hex()) + "f" for v in cmap[i:i + 4]]
        lines.append("    " + ", ".join(hexs) + ",")
    return "\n".join(lines)


def main():
    cmap = dynamic_map()
    if len(sys.argv) > 1 and sys.argv[1] == "--c-table":
        print(c_table(cmap))
        return
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant"
    rng = np.random.default_rng(20240604)
    rows, n = 3, 1000
    x = rng.standard_normal((rows, n)).astype(np.float32)
    x[1, 64:128] = 0.0            # an all-zero block at blocksize 64
    x[2, :10] *= 100.0            # an outlier-dominated block
    x[0, 5] = -x[0, 6]            # equal magnitudes of both signs
    x.tofile(os.path.join(out, "nf4_in.f32"))
    for bs in (32, 64, 128, 256, 4096):
        with open(os.path.join(out, f"nf4_b{bs}.bin"), "wb") as f:
            for r in range(rows):
                codes, absmax = quantize_nf4_row(x[r], bs)
                f.write(codes.tobytes())
                f.write(absmax.astype("<f4").tobytes())
    # double quantisation of the absmax of a 48 x 4096 matrix at blocksize 64: 3072 values,
    # 12 nested blocks
    w = (rng.standard_normal((48, 4096)) * 0.02).astype(np.float32)
    w[3, :] *= 10.0
    absmax = np.concatenate([quantize_nf4_row(w[r], 64)[1] for r in range(48)])
    offset, codes, scale, deq = double_quant(cmap, absmax)
    absmax.astype("<f4").tofile(os.path.join(out, "nf4_dq_absmax.f32"))
    with open(os.path.join(out, "nf4_dq.bin"), "wb") as f:
        f.write(np.float32(offset).tobytes())
        f.write(codes.tobytes())
        f.write(scale.astype("<f4").tobytes())
        f.write(deq.astype("<f4").tobytes())
    print("wrote NF4 fixtures to", out)


if __name__ == "__main__":
    main()
