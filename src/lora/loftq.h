/* loftq.h — LoftQ initialisation of LoRA factors (Li et al. 2023, one iteration): for every
 * targeted layer, the adapter starts as the rank-r truncated SVD of the quantisation residual
 * W − deq(Q(W)), so that the quantised base plus the fresh adapter is closer to W. */
#ifndef LK_LOFTQ_H
#define LK_LOFTQ_H

#include "lora/lora.h"
#include "lorakit/train.h"

/* Randomized SVD settings (Halko, Martinsson & Tropp 2011): extra probes beyond r, and power
 * passes (each one multiplies by R and by Rᵀ, re-orthonormalised). */
#define LOFTQ_OVERSAMPLE  8
#define LOFTQ_POWER_ITERS 4

/* Factors of R [out, in] (row-major) with scale·B·A ≈ U_r·S_r·V_rᵀ, R's best rank-r approximation:
 * B = U_r·√(S_r/scale) [out, r], A = √(S_r/scale)·V_rᵀ [r, in] (the singular values split evenly,
 * as PEFT's loftq_init; the signs of the singular pairs are arbitrary). Randomized subspace
 * iteration with min(r + LOFTQ_OVERSAMPLE, out, in) Gaussian probes from (seed, stream) and
 * `power` power passes, then an exact SVD of the projection. Ranks beyond min(out, in) get zero
 * rows of A and columns of B. scale > 0. The same bits for the same seed and thread count;
 * other thread counts agree to rounding (OpenBLAS may sum a split GEMM in another order). */
lk_status loftq_factor(const float *R, int64_t out, int64_t in, int64_t r, float scale, int power,
                       uint64_t seed, uint64_t stream, float *A, float *B, int n_threads);

/* Set the factors of every module of s (attached to m, whose base was quantised at load) from its
 * layer's residual, the full-precision W read again from m's safetensors; stats [s->n] gets the
 * norms (module i from stream i of seed). One info log line per layer. LK_ERR_ARG for an f32
 * base, LK_ERR_UNSUPPORTED for a pre-quantised one (no full-precision weights to start from). */
lk_status loftq_init_set(lk_model *m, lora_set *s, uint64_t seed, struct lk_loftq_stat *stats);

#endif /* LK_LOFTQ_H */
