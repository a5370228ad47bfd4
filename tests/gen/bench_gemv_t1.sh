#!/usr/bin/env bash
# The int8 GEMV at T = 1 on Qwen2.5-0.5B's layer shapes with hot weights (issue 13's "3x sgemv"):
# lora-bench-kernels of the builds given, alternating, ROUNDS times, at 1 and 2 threads, with the
# default kernels and LK_KERNELS=avx2 (OPENBLAS_CORETYPE=Haswell for sgemv); one JSON object per run
# in OUT/<kernels>.t<threads>.<build index>.<round>.json (-t 1: --cpu-time), then the medians over the rounds as a
# Markdown table per setting (fwd rows; sgemv the median of every build's runs). By hand, never in
# CI. Usage: bench_gemv_t1.sh ROUNDS OUT BUILD... (e.g. /tmp/base8/build build)
set -eu
R=$1 O=$2
shift 2
mkdir -p "$O"
for r in $(seq "$R"); do
    for k in default avx2; do
        for t in 1 2; do
            for i in $(seq 0 $(($# - 1))); do
                b=${*:$((i + 1)):1}
                env=()
                [ $k = avx2 ] && env=(LK_KERNELS=avx2 OPENBLAS_CORETYPE=Haswell)
                reps="200 --cpu-time" # -t 1: the thread's CPU time (a shared machine)
                [ $t = 2 ] && reps=50
                env "${env[@]}" "$b/lora-bench-kernels" -t $t --reps $reps --compute f32,int8 \
                    --tokens 1 --types q4_0,q8_0,q4_1 --shapes qwen2.5-0.5b --json \
                    > "$O/$k.t$t.$i.$r.json"
            done
        done
    done
done
python3 - "$O" "$#" <<'PY'
import glob, json, statistics, sys
out, nb = sys.argv[1], int(sys.argv[2])
def rows(f):
    d = json.load(open(f))
    for x in d["results"]:
        if x.get("dir", "fwd") == "fwd" and x.get("T", 1) == 1:
            yield x
for k in ("default", "avx2"):
    for t in (1, 2):
        cells = {}
        for i in range(nb):
            for f in sorted(glob.glob(f"{out}/{k}.t{t}.{i}.*.json")):
                for x in rows(f):
                    shape = f'{x["out"]}x{x["in"]}'
                    for key, v in x.items():
                        if isinstance(v, (int, float)) and key not in ("out", "in", "T"):
                            if key == "blas_gflops" or key.endswith("_int8_gflops"):
                                cells.setdefault((shape, key, i if key != "blas_gflops" else -1), []).append(v)
        print(f"\n{k} kernels, {t} thread(s), T = 1, fwd, GFLOP/s median of the rounds")
        shapes = sorted({s for s, _, _ in cells}, key=lambda s: list(map(int, s.split("x"))))
        keys = sorted({c for _, c, _ in cells if c != "blas_gflops"})
        print("| out x in | sgemv | " + " | ".join(f"{c[:-7]} (build {i})" for c in keys for i in range(nb)) + " |")
        for s in shapes:
            bl = statistics.median(cells[(s, "blas_gflops", -1)])
            line = [s, f"{bl:.1f}"]
            for c in keys:
                for i in range(nb):
                    v = statistics.median(cells[(s, c, i)])
                    line.append(f"{v:.1f} ({v / bl:.2f}x)")
            print("| " + " | ".join(line) + " |")
PY
