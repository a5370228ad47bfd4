#!/usr/bin/env python3
"""bench_kernels_table.py — run lora-bench-kernels several times and print the best GFLOP/s seen
for every cell as the Markdown table of BENCHMARKS.md ("Kernels"). On a shared or busy machine a
single run is noisy (another process holding one of two cores stalls every OpenMP barrier); the
best of several runs is the kernel's speed, not the machine's mood.

    python3 tools/bench_kernels_table.py BUILD_DIR RUNS [lora-bench-kernels args...]
"""
import json
import subprocess
import sys

build, runs, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
cols, best, head = None, {}, None
for _ in range(runs):
    out = subprocess.run([f"{build}/lora-bench-kernels", "--json", *extra], check=True,
                         capture_output=True, text=True).stdout
    doc = json.loads(out)
    head = doc
    for r in doc["results"]:
        if cols is None:  # the formats of --types, in the tool's column order
            cols = [k[:-len("_gflops")] for k in r if k.endswith("_gflops")]
        key = (r["out"], r["in"], r["T"], r["dir"])
        cell = best.setdefault(key, {c: None for c in cols})
        for c in cols:
            v = r[f"{c}_gflops"]  # null: the shape does not fit the format (k-quants)
            if v is not None:
                cell[c] = v if cell[c] is None else max(cell[c], v)
print(f"variant `{head['variant']}`, CPU features `{head['cpu']}`, {head['threads']} threads, "
      f"weights {'cold (streamed from DRAM)' if head['cold'] else 'hot (cache-resident)'}; "
      f"best of {runs} runs; GFLOP/s (× f32 BLAS)\n")
print("| out × in | T | dir | f32 BLAS | " + " | ".join(cols[1:]) + " |")
print("|---|---:|---|---:|" + "---:|" * (len(cols) - 1))
for (o, i, t, d), cell in best.items():
    row = f"| {o}×{i} | {t} | {d} | {cell['blas']:.1f} |"
    for c in cols[1:]:
        row += " n/a |" if cell[c] is None else f" {cell[c]:.1f} ({cell[c] / cell['blas']:.2f}×) |"
    print(row)
