/* clang-format off */
/* q8.h — the int8 compute path for the frozen base (issue 13 items 2 and 5): weights expanded to
 * int8 blocks, activations quantised per row to int8 blocks, products summed in int32 per block
 * and in fp32 across blocks. The contract is /work/notes/int8_spec.md; the exact arithmetic is
 * defined by the plain-C reference (q8_ref.c) and every variant reproduces it bit for bit.
 *
 * Layouts (all in the caller's work memory, never stored in a file):
 *   q8_wblock  one 32-value block of a weight row: int8 q[32], fp32 s[2], m[2]; value k is
 *              s[k/16]*q[k] + m[k/16] (fp32). Produced by the expander of the weight's type
 *              (q8_expander); exact (equal to q4_decode_ref's value) for every type but NF4, whose
 *              codes go through the int8 codebook q8_nf4_i8 (= nearbyintf(127*nf4)) with
 *              s = absmax/127 (|error| <= absmax/254).
 *   q8_ablock  one 32-value block of an activation row: int8 q[32], fp32 d, int16 s16[2] (the
 *              sums of q over each half). Rule (q8_quantize_act): amax = max|x|, d = amax/127,
 *              id = 1/d (0 when d is 0 or 1/d is not finite), q = nearbyintf(x*id) (ties to even);
 *              rows padded with zeros to whole blocks. X must be finite.
 * Product of activation row t and weight row o (Y[t,o]): per block b, exact int32 sums
 *   i0 = Σ_{k<16} xq[k]·wq[k], i1 = Σ_{k>=16} xq[k]·wq[k]; then in fp32, b increasing from acc=0:
 *   simple types (q8_simple: one scale per 32, no min):
 *       acc = fmaf(d_b, s0 * (float)(i0 + i1), acc)
 *   the others:
 *       v = s0 * (float)i0; v = fmaf(s1, (float)i1, v); v = fmaf(m0, (float)s16_0, v);
 *       v = fmaf(m1, (float)s16_1, v); acc = fmaf(d_b, v, acc)
 *   and Y = acc + bias[o] (when bias is given). Every (float) of an int here is exact (< 2^24).
 * The transposed copy (q8_transpose): Wᵀ[in, out] as Q8_0 rows (block_q8_0, fp16 d), each 32×32
 *   tile of the dequantised W (q4_decode_ref) quantised with the activation rule, d stored as
 *   fp16(d) (the codes come from the fp32 d). Then dX = dY·W is q8_gemm_fwd(&wt, NULL, dY, ...).
 * Variants (q8_kernels): ref (plain C), avx2 (vpmaddubsw/vpmaddwd), avx512vnni (vpdpbusd),
 *   neon (vdotq_s32, dotprod). A variant is offered where its file is compiled (LK_HAVE_*) and the
 *   CPU runs it; LK_KERNELS picks one as for q4 (q8_kernels_get). Above gemv_t activation rows
 *   the SIMD variants share the packed weight panel and driver of q8_pack.h (output rows per
 *   panel: 32 in avx512vnni, 8 in neon, in avx2 16 for Q8_0 / IQ4_NL / NF4 (int16 codes by int16
 *   activations, vpmaddwd) and 8 for the others; codes as q, or as q + K where an instruction
 *   wants unsigned bytes, each block sum then corrected by -K·Σx from the activation's half sums;
 *   avx2 splits q + 128 into two 4-bit parts so that its products add up in int16 over a block,
 *   its int16 lanes starting at -8 times their activations' sum instead of a correction).
 *   For T <= gemv_t (decode) they run their GEMV (q8_gemv.h, q8_gemv_*.c): no panel, every
 *   stored weight block read once per pass of up to 4 activation rows, straight from its blocks
 *   for Q4_0, IQ4_NL, Q8_0, NF4 and Q4_1, through the expander a few blocks of a row at a time
 *   (on the stack) for the other types; the output rows of a group (16 in avx512vnni, 8 in avx2
 *   and neon) share one vector, so the fp32 update runs on all of them at once. The activation
 *   is quantised once per call, before any thread starts; a call under 2^19 multiply-adds runs
 *   on the calling thread (q8v_threads: below that a second thread's wake-up costs more than its
 *   half), larger ones hand out chunks of row groups to whichever thread is free. At T = 1 the
 *   kernels are bound by vector instructions, not by the weight stream, while the weights sit in
 *   L2/L3 (avx512vnni about 100 GFLOP/s per core on Q4_0, 28 GB/s of its blocks, against a
 *   100 GB/s plain read loop; BENCHMARKS.md "int8 GEMV at T = 1, wave 6"), most of them gathering
 *   16 rows' blocks and scales; so a variant may read weights in the row-interleaved layout
 *   (q8_ilv.h: 16 rows' scales and 4-byte code chunks side by side, made in place at load) with
 *   plain loads: avx512vnni reads it in every entry point (q8_kernels.reads_ilv; its GEMV about
 *   200 GFLOP/s per core on Q4_0) and wants it (wants_ilv: the model converts its decoder
 *   matrices, model_int8.c); the reference reads both layouts; avx2 and neon read rows only
 *   (their entry points assert it). BENCHMARKS.md "int8 GEMV on interleaved rows".
 * Two more entry points run the same products with another epilogue, every variant bit for bit
 *   its reference (q8_ref.c), on the panel GEMM for every T: q8_gemm_fwd2, a training forward's
 *   two int8 terms (q8_quantize_act2: x1, and r1 of the residual x − x1) in one call, the rows of
 *   both running over each packed panel while it is in cache and the microkernel storing
 *   (x1·Wᵀ + bias) + r1·Wᵀ; and q8_gemm_fwd_add, Y += X·Wᵀ (the backward's dX on the transposed
 *   copy, added into dx). Each equals the one-term forward(s) followed by fp32 adds, bit for bit
 *   (test_q8 test_fwd2_composition); BENCHMARKS.md "The two int8 terms in one pass". */
/* clang-format on */
#ifndef LK_Q8_H
#define LK_Q8_H

#include <stddef.h>
#include <stdint.h>

#include "q4.h"

#define Q8_QK 32 /* values per int8 block (weights and activations) */

typedef struct {
    int8_t q[32];
    float s[2], m[2];
} q8_wblock;
static_assert(sizeof(q8_wblock) == 48, "q8_wblock: 32 codes and four floats");

typedef struct {
    int8_t q[32];
    float d;
    int16_t s16[2];
} q8_ablock;
static_assert(sizeof(q8_ablock) == 40, "q8_ablock: 32 codes, a float and two int16");

/* Expand blocks [b0, b0+nb) (32 values each) of one stored row `row` of w into dst[nb]. */
typedef void (*q8_expand_fn)(const q4_weight *w, const void *row, int64_t b0, int64_t nb,
                             q8_wblock *dst);
/* The expander of a weight type, NULL if the int8 path does not support it. */
q8_expand_fn q8_expander(int qtype);
/* The expanders of the GGUF read-only types (Q4_1 .. IQ4_XS), quant/q8_expand_gguf.c (i13-q8g);
 * NULL for the other types. */
q8_expand_fn q8_expander_gguf(int qtype);
/* The fastest expander of qtype for a CPU that runs AVX2: an AVX2 one where a file has it
 * (quant/q8_expand_gguf_avx2.c: the GGUF read-only types), else q8_expander(qtype); bit-exact
 * with q8_expander's; for the AVX2 and AVX-512 variants (q8_expander(qtype) in builds without
 * the AVX2 file). */
q8_expand_fn q8_expander_avx2(int qtype);
/* 1 if q8_expander(qtype) != NULL. */
int q8_supports(int qtype);
/* 1 for the types whose expansion has s[0] == s[1] and no min in every block, whose blocks take
 * the simple product above: Q4_0, IQ4_NL, Q8_0, NF4, Q5_0, IQ4_XS. */
int q8_simple(int qtype);

/* NF4's int8 codebook: nearbyintf(127 * q4_nf4_code[c]). */
extern const int8_t q8_nf4_i8[16];

/* Quantise x[n] (finite) into dst[ceil(n/32)] by the activation rule (zero-padded last block). */
void q8_quantize_act(const float *x, int64_t n, q8_ablock *dst);
/* The two int8 terms of x[n] (a training forward's, linear.act2): x1[ceil(n/32)] =
 * q8_quantize_act(x), and r1 = q8_quantize_act(r) of what x1 leaves, r[k] = x[k] − d·(float)q[k]
 * per value (d, q of x's block; the product and the difference each rounded in fp32; 0 past n). */
void q8_quantize_act2(const float *x, int64_t n, q8_ablock *x1, q8_ablock *r1);

/* Kernels. Work memory as q4.h's kernels (q4_work_size / q4_work_start conventions): the size for
 * T rows covers every call with 1..T rows (or fewer output rows) and the same thread count. */
typedef size_t (*q8_work_fn)(const q4_weight *w, int64_t T, int n_threads);
/* Y[T,out] = X[T,in]·Wᵀ (+ bias) with int8 products; X quantised inside (into work). */
typedef void (*q8_fwd_fn)(const q4_weight *w, const float *bias, const float *X, int64_t T,
                          float *Y, int n_threads, void *work, size_t work_size);

/* Y[T,out] = (x1·Wᵀ + bias) + r1·Wᵀ, x1 and r1 the two int8 terms of X (q8_quantize_act2): per
 * element the first term's fp32 result plus bias (as q8_fwd_fn's Y), then plus the second's, in
 * that order; one pass over the packed weight for both terms (the activation rows of both run over
 * a panel while it is in cache). */
typedef void (*q8_fwd2_fn)(const q4_weight *w, const float *bias, const float *X, int64_t T,
                           float *Y, int n_threads, void *work, size_t work_size);

/* Y[T,out] += X·Wᵀ (no bias): each element Y + the fp32 result q8_fwd_fn would store (the
 * backward's dX += dY·W on the transposed copy, with no [T, out] scratch and no pass to add it). */
typedef void (*q8_fwd_add_fn)(const q4_weight *w, const float *X, int64_t T, float *Y,
                              int n_threads, void *work, size_t work_size);

/* A variant's table: fwd is its whole forward (the GEMV below for T <= gemv_t, its packed-panel
 * GEMM above; ref: the reference for every T); gemv is its matrix-vector kernel alone (any T, one
 * pass over the weight per 4 rows; ref: the reference), for tests and benchmarks. gemv_t is where
 * the GEMV stopped beating the panel GEMM on the AVX-512 VNNI machine of BENCHMARKS.md ("int8 GEMV
 * at small T"): avx512vnni 4 (one pass), avx2 6 (against the reworked AVX2 GEMM of 5ff2159),
 * neon 4 (not measured); 0 for ref. */
typedef struct {
    const char *name;
    q8_fwd_fn fwd;
    q8_work_fn fwd_work;
    q8_fwd_fn gemv;
    q8_work_fn gemv_work;
    int gemv_t;
    q8_fwd2_fn fwd2; /* the two-term forward (ref: the reference; SIMD: their panel GEMM, any T) */
    q8_work_fn fwd2_work;
    q8_fwd_add_fn fwd_add; /* the accumulating forward (as fwd2: the panel GEMM for any T) */
    q8_work_fn fwd_add_work;
    int reads_ilv; /* every entry takes weights in the interleaved layout too (q8_ilv.h) */
    int wants_ilv; /* its GEMV is faster on that layout: a model converts its matrices at load */
} q8_kernels;

void q8_gemm_fwd_ref(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd_work_ref(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd_work_avx2(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                            float *Y, int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd_work_neon(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd2_ref(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd2_work_ref(const q4_weight *w, int64_t T, int n_threads);
size_t q8_gemm_fwd_add_work_ref(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd2_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                       int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd2_work_avx2(const q4_weight *w, int64_t T, int n_threads);
size_t q8_gemm_fwd_add_work_avx2(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd2_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                             float *Y, int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd2_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads);
size_t q8_gemm_fwd_add_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd2_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                       int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd2_work_neon(const q4_weight *w, int64_t T, int n_threads);
size_t q8_gemm_fwd_add_work_neon(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd_add_ref(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                         void *work, size_t work_size);
void q8_gemm_fwd_add_avx2(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                          void *work, size_t work_size);
void q8_gemm_fwd_add_avx512vnni(const q4_weight *w, const float *X, int64_t T, float *Y,
                                int n_threads, void *work, size_t work_size);
void q8_gemm_fwd_add_neon(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                          void *work, size_t work_size);
/* The int8 matrix-vector kernels (q8_gemv.h: no packing, every stored weight block read once per
 * pass of up to 4 activation rows), bit for bit q8_gemm_fwd_ref, for any T. */
void q8_gemv_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
size_t q8_gemv_work_avx2(const q4_weight *w, int64_t T, int n_threads);
void q8_gemv_fwd_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                            float *Y, int n_threads, void *work, size_t work_size);
size_t q8_gemv_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads);
void q8_gemv_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
size_t q8_gemv_work_neon(const q4_weight *w, int64_t T, int n_threads);

/* The table chosen for this CPU: the best variant compiled and runnable, or the one LK_KERNELS
 * names (ref, avx2, avx512vnni, neon; the q4 names avx512 and amx mean avx512vnni here). */
const q8_kernels *q8_kernels_get(void);
/* The table of a named variant if this build has it and this CPU runs it, else NULL. */
const q8_kernels *q8_kernels_named(const char *name);

/* Through q8_kernels_get(). w's type must be supported (q8_supports). */
size_t q8_gemm_fwd_work(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                 int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd2_work(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                  int n_threads, void *work, size_t work_size);
size_t q8_gemm_fwd_add_work(const q4_weight *w, int64_t T, int n_threads);
void q8_gemm_fwd_add(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                     void *work, size_t work_size);

/* The backward's weight: Wᵀ[in, out] stored as Q8_0 rows of `out` values (zero-padded to a
 * multiple of 32), see above. dst holds q8_transpose_bytes(w) bytes; *wt describes it on return.
 * LK_ERR_UNSUPPORTED for plain (F32/F16/BF16) weights. */
size_t q8_transpose_bytes(const q4_weight *w);
lk_status q8_transpose(const q4_weight *w, void *dst, q4_weight *wt, int n_threads);
/* The same bytes, built by the reference: q4_decode_ref and q8_tile_ref, one 32×32 tile at a time
 * (the specification q8_transpose is tested against). */
lk_status q8_transpose_ref(const q4_weight *w, void *dst, q4_weight *wt, int n_threads);
/* The tile quantiser of the copy: columns [0, ncol) of tile[32][ld] (fp32, finite, as decoded
 * weights are) each become one block_q8_0 by the activation rule (codes from the fp32 d, d stored
 * as fp16), column k at dst + k*rb. The AVX2 one (q8_transpose_avx2.c) needs ld >= ncol rounded up
 * to 8 and gives q8_tile_ref's bytes. */
typedef void (*q8_tile_fn)(const float *tile, int64_t ld, int64_t ncol, uint8_t *dst, size_t rb);
void q8_tile_ref(const float *tile, int64_t ld, int64_t ncol, uint8_t *dst, size_t rb);
void q8_tile_avx2(const float *tile, int64_t ld, int64_t ncol, uint8_t *dst, size_t rb);
/* The tile quantiser for q8 variant k: AVX2 for avx2 and avx512vnni where compiled, else ref. */
q8_tile_fn q8_tiler(const q8_kernels *k);
/* q8_transpose with a given decoder and tile quantiser (256 columns of W decoded per tile);
 * q8_transpose is q8_transpose_with(q4_decoder(q4_kernels_get()), q8_tiler(q8_kernels_get())).
 * Every combination gives q8_transpose_ref's bytes (test_q8). */
lk_status q8_transpose_with(const q4_weight *w, void *dst, q4_weight *wt, int n_threads,
                            q4_decode_fn dec, q8_tile_fn tile);

#endif /* LK_Q8_H */
