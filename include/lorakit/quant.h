/* lorakit/quant.h — weight formats of the frozen base and the kernels that compute with them.
 *
 * The base model lives in one of these formats. 4-bit: NF4 (bitsandbytes' NormalFloat, blocks of
 * 64 with an fp32 absmax each), Q4_0 and IQ4_NL (llama.cpp/GGUF, blocks of 32 with an fp16 scale);
 * 8-bit: Q8_0 (GGUF); plain: F32, F16, BF16. Read from GGUF files (dequantisation and the fused
 * kernels, bit-exact with ggml's dequantize_row_*, but no quantiser): Q4_1, Q5_0, Q5_1 (blocks of
 * 32) and the k-quants Q2_K..Q6_K and IQ4_XS (super-blocks of 256 values). Quantisation is
 * bit-exact with the reference quantisers (bitsandbytes' blockwise NF4, llama.cpp's
 * quantize_row_*_ref), so a file never depends on the CPU that wrote it. Rows whose length is not a
 * multiple of the block are padded with zeros up to a whole block, per row (see quant/q4.h for the
 * exact byte layouts). */
#ifndef LORAKIT_QUANT_H
#define LORAKIT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "lorakit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Storage formats of a weight matrix. The numeric values are stable (they may be written to
 * files); LK_QTYPE_COUNT is not a format. */
typedef enum {
    LK_QTYPE_F32 = 0,
    LK_QTYPE_F16 = 1,
    LK_QTYPE_BF16 = 2,
    LK_QTYPE_Q4_0 = 3,   /* GGUF: 32 values, fp16 scale d, x = d*(q-8) */
    LK_QTYPE_Q8_0 = 4,   /* GGUF: 32 values, fp16 scale d, x = d*q, q int8 */
    LK_QTYPE_IQ4_NL = 5, /* GGUF: 32 values, fp16 scale d, x = d*kvalues[q] (non-linear grid) */
    LK_QTYPE_NF4 = 6,    /* bitsandbytes NF4: 64 values, fp32 absmax, x = absmax*nf4[q] */
    /* the other GGUF types of llama.cpp files (quantised as llama.cpp does without an imatrix) */
    LK_QTYPE_Q4_1 = 7,    /* 32 values, fp16 d and m, x = d*q + m, q 0..15 */
    LK_QTYPE_Q5_0 = 8,    /* 32 values, fp16 d, x = d*(q-16), q 0..31 */
    LK_QTYPE_Q5_1 = 9,    /* 32 values, fp16 d and m, x = d*q + m, q 0..31 */
    LK_QTYPE_Q2_K = 10,   /* super-blocks of 256: 16 groups of 16, 4-bit scale and min, 2-bit q */
    LK_QTYPE_Q3_K = 11,   /* 256: 16 groups of 16, 6-bit signed scale, 3-bit q */
    LK_QTYPE_Q4_K = 12,   /* 256: 8 groups of 32, 6-bit scale and min, 4-bit q */
    LK_QTYPE_Q5_K = 13,   /* 256: 8 groups of 32, 6-bit scale and min, 5-bit q */
    LK_QTYPE_Q6_K = 14,   /* 256: 16 groups of 16, int8 scale, 6-bit q */
    LK_QTYPE_IQ4_XS = 15, /* 256: 8 groups of 32, 6-bit scale, IQ4_NL's non-linear grid */
    LK_QTYPE_COUNT = 16
} lk_qtype;

/* Lower-case name, llama.cpp's ("f32", "f16", "bf16", "q4_0", "q8_0", "iq4_nl", "nf4", "q4_1",
 * "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs"); "?" when out of range. */
const char *lk_qtype_name(lk_qtype t);

/* Parse a name as printed by lk_qtype_name (case-insensitive; "none", the command lines' word for
 * an unquantised base, is LK_QTYPE_F32). LK_ERR_ARG if unknown. */
lk_status lk_qtype_from_name(const char *name, lk_qtype *out);

/* Bytes of one stored row of n values (NF4 at blocksize 64, absmax stored in the row), including
 * the padding of the last block. 0 for an invalid type or n <= 0. */
size_t lk_quant_row_bytes(lk_qtype t, int64_t n);

/* Bits per weight of a row of n values: 8*lk_quant_row_bytes(t, n)/n (padding included). */
double lk_qtype_bits_per_weight(lk_qtype t, int64_t n);

/* Quantise one row x[n] into dst (lk_quant_row_bytes(t, n) bytes), for every type: the GGUF types
 * bit-exact with llama.cpp's quantisers without an importance matrix (ggml_quantize_chunk), NF4
 * with bitsandbytes'. Deterministic and identical on every CPU. LK_ERR_ARG for a bad type or
 * n <= 0, LK_ERR_NUMERIC if x holds a NaN or Inf. Thread-safe. */
lk_status lk_quantize_row(lk_qtype t, const float *x, int64_t n, void *dst);

/* Inverse of lk_quantize_row: src (lk_quant_row_bytes(t, n) bytes) to y[n], for every type
 * (bit-exact with ggml's dequantize_row_* / gguf-py's dequantize). Thread-safe. */
lk_status lk_dequantize_row(lk_qtype t, const void *src, int64_t n, float *y);

/* Name of the kernel variant chosen for this CPU ("ref", "avx2", "avx512", "amx", "neon"), after
 * the LK_KERNELS environment variable (ref|avx2|avx512|amx|neon) has been applied. Detection runs
 * once, thread-safely, on first use. Borrowed static string. */
const char *lk_kernel_variant(void);

/* Space-separated CPU features the kernels care about that this CPU has and the OS enables
 * (e.g. "avx2 fma f16c avx512f avx512bw avx512vl avx512bf16 amx-tile amx-bf16"). Static string. */
const char *lk_cpu_features(void);

/* ---- experimental: quantised matrices and the fused kernels (may change) ------------------- */
#ifdef LK_EXPERIMENTAL

/* A quantised weight matrix W[out, in]: `out` rows, each as lk_quantize_row stores it but with
 * NF4 blocksize `block` (32..4096, power of two; ignored by the other types). Borrowed view. */
struct lk_qweight {
    lk_qtype type; /* any quantised type (Q4_0 .. IQ4_XS; k-quants: in % 256 == 0) */
    int block;
    int64_t out, in;
    const void *data; /* [out][lk_qweight_row_bytes(w)] */
    int interleaved;  /* 1: rows interleaved in place for the int8 path (lk_q8_interleave) */
};

/* Bytes of one row of w (NF4 with its blocksize). */
size_t lk_qweight_row_bytes(const struct lk_qweight *w);

/* Quantise src[out][in] (f32) into dst[out][row bytes] using n_threads threads (0 = all CPUs).
 * Deterministic. If rmse/max_abs are non-NULL, the round-trip error over all values is stored.
 * Allocates nothing. LK_ERR_ARG / LK_ERR_UNSUPPORTED on bad arguments, LK_ERR_NUMERIC if src
 * holds a NaN or Inf. */
lk_status lk_quantize_matrix(const struct lk_qweight *w, const float *src, void *dst, int n_threads,
                             double *rmse, double *max_abs);

/* The fused kernels never allocate: the caller provides their work memory, as with ggml's
 * work_size/work_data. Ask once for the largest call (the size for T rows covers every call of
 * 1..T rows on the same weight, thread count and variant), allocate it (any alignment), and pass
 * it to every call; its contents are scratch, neither read before written nor kept. A size of 0
 * is a valid answer (work may then be NULL). The size depends on the shape alone: w->data may
 * be NULL here. Writes the bytes to *bytes; LK_ERR_ARG / LK_ERR_UNSUPPORTED as the calls below. */
lk_status lk_qgemm_forward_work(const struct lk_qweight *w, int64_t T, int n_threads,
                                const char *variant, size_t *bytes);
lk_status lk_qgemm_backward_work(const struct lk_qweight *w, int64_t T, int n_threads,
                                 const char *variant, size_t *bytes);

/* Fused dequant-GEMM forward Y[T,out] = X[T,in]·Wᵀ (+ bias[out] if non-NULL), never
 * dequantising all of W. variant: NULL for the dispatched one (for a type it has no kernels for,
 * the next one down that has: AVX-512, AVX2, the plain-C reference), or "ref", "avx2", "avx512",
 * "amx", "neon" (LK_ERR_UNSUPPORTED when not available here or without kernels for w's type:
 * AMX lacks Q4_1 .. IQ4_XS). n_threads 0 = all CPUs; the result does not depend on
 * n_threads. work: work_size bytes, at least what lk_qgemm_forward_work gives for these arguments
 * (LK_ERR_ARG otherwise); borrowed for the call. Allocates nothing; calls running at the same
 * time need separate work buffers. */
lk_status lk_qgemm_forward(const struct lk_qweight *w, const float *bias, const float *X, int64_t T,
                           float *Y, int n_threads, const char *variant, void *work,
                           size_t work_size);

/* Fused backward dX[T,in] = dY[T,out]·W (overwrites dX). Arguments as lk_qgemm_forward, with the
 * work of lk_qgemm_backward_work. */
lk_status lk_qgemm_backward(const struct lk_qweight *w, const float *dY, int64_t T, float *dX,
                            int n_threads, const char *variant, void *work, size_t work_size);

/* The int8 compute path (issue 13): Y[T,out] = X[T,in]·Wᵀ (+ bias) with X quantised per row
 * to int8 blocks of 32 and W expanded to int8 blocks, products summed in int32 per block and in
 * fp32 across blocks (quant/q8.h has the exact arithmetic; every variant gives the same bits).
 * variant: NULL for the dispatched one, or "ref", "avx2", "avx512vnni", "neon". Work as for
 * lk_qgemm_forward. LK_ERR_UNSUPPORTED for a type without an int8 expander. */
/* Name of the int8 variant chosen for this CPU (after LK_KERNELS). Static string. */
const char *lk_q8_kernel_variant(void);
lk_status lk_q8gemm_forward_work(const struct lk_qweight *w, int64_t T, int n_threads,
                                 const char *variant, size_t *bytes);
lk_status lk_q8gemm_forward(const struct lk_qweight *w, const float *bias, const float *X,
                            int64_t T, float *Y, int n_threads, const char *variant, void *work,
                            size_t work_size);

/* The backward's weight for the int8 path: Wᵀ[in, out] as Q8_0 rows (out zero-padded to a
 * multiple of 32), quantised from the dequantised W one 32x32 tile at a time; dX = dY·W is then
 * lk_q8gemm_forward(wt, NULL, dY, ...). dst: lk_q8_transpose_bytes(w) bytes (0 if w is invalid);
 * *wt describes the copy (its data is dst). */
size_t lk_q8_transpose_bytes(const struct lk_qweight *w);
lk_status lk_q8_transpose(const struct lk_qweight *w, void *dst, struct lk_qweight *wt,
                          int n_threads);

/* The int8 path's row-interleaved layout (quant/q8_ilv.h: 16 rows' blocks side by side, so that a
 * matrix-vector product reads them with contiguous loads): lk_q8_interleave rewrites w's rows in
 * place (data: w->data, writable; Q4_0, IQ4_NL, Q8_0 and Q4_1 only, LK_ERR_UNSUPPORTED for the
 * others) and sets w->interleaved. Such a weight is taken by lk_q8gemm_forward and lk_q8_transpose
 * (with the same results) for a variant that reads it (LK_ERR_UNSUPPORTED for another), and by
 * nothing else (lk_qgemm_*: LK_ERR_UNSUPPORTED). Allocates one group of rows of scratch
 * (LK_ERR_NOMEM). lk_q8_interleave_wanted: 1 when the dispatched int8 variant's matrix-vector
 * kernel is faster on the layout (the models convert their matrices for it). */
lk_status lk_q8_interleave(struct lk_qweight *w, void *data);
int lk_q8_interleave_wanted(void);

#endif /* LK_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_QUANT_H */
