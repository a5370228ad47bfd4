/* q8_avx512.c — the avx512vnni int8 GEMM (q8.h), bit for bit the reference's arithmetic. Each
 * thread takes tiles of 32 output rows: it packs the tile's weight over all blocks into a panel
 * (q8_pack.h: int8 codes with 32 rows in the lanes of a zmm, per-row scales and corrections), then
 * runs a 4x32 register-blocked microkernel over the activation rows: per 4 values of a block, one
 * broadcast of 4 activation bytes and one vpdpbusd per 16 rows, int32 sums exact per block, then
 * the block's fp32 update in the reference's order. vpdpbusd multiplies unsigned by signed bytes:
 * the activations are stored as x + 128 (1..255) and the accumulator starts at -128 * Σ w (the
 * panel's correction), so each block's int32 sum is exactly Σ x·w. At T = 1 the same code is the
 * GEMV: every weight block is read and expanded once. Helpers are static (this file is compiled
 * with -mavx512* flags and must not leak code into generic callers). */
#include <immintrin.h>
#include <string.h>

#include "q8.h"
#include "q8_pack.h"
#include "core/pool.h"
#include "core/status.h"

#define NR 32 /* output rows per panel: two zmm of int32 / fp32 lanes */
#define MR 4  /* activation rows per microkernel call: 4x2 int32 + 4x2 fp32 accumulators */

typedef struct {
    const q4_weight *w;
    const float *bias, *X;
    float *Y;
    int64_t T, nb;
    int simple;
    q8_expand_fn expand;
    q8_ablock *A;   /* [T][nb], codes stored as x + 128 */
    uint8_t *slots; /* per thread: one panel */
    size_t slot;
} job;

/* Quantise rows of X (the reference quantiser) and store the codes as x + 128. */
static void quant_rows(void *ctx, int64_t t0, int64_t t1, int thread)
{
    (void)thread;
    const job *j = ctx;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t t = t0; t < t1; t++) {
        q8_ablock *a = j->A + t * j->nb;
        q8_quantize_act(j->X + t * j->w->in, j->w->in, a);
        for (int64_t b = 0; b < j->nb; b++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)a[b].q);
            _mm256_storeu_si256((__m256i *)(void *)a[b].q, _mm256_xor_si256(q, flip));
        }
    }
}

static inline __m512i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* Int32 sums over groups [g0, g1) of block b (panel block p) for mr activation rows, starting
 * from the correction C[32]. */
static inline __attribute__((always_inline)) void block_sums(const uint8_t *p, const int32_t *C,
                                                             const q8_ablock *A, int64_t nb,
                                                             int64_t b, int mr, int g0, int g1,
                                                             __m512i ia[MR][2])
{
    const __m512i c0 = _mm512_loadu_si512(C), c1 = _mm512_loadu_si512(C + 16);
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++) {
        ia[t][0] = c0;
        ia[t][1] = c1;
    }
#pragma GCC unroll 8
    for (int g = g0; g < g1; g++) {
        const __m512i w0 = _mm512_loadu_si512(p + g * 128);
        const __m512i w1 = _mm512_loadu_si512(p + g * 128 + 64);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const __m512i x = bcast4(A[t * nb + b].q + 4 * g);
            ia[t][0] = _mm512_dpbusd_epi32(ia[t][0], x, w0);
            ia[t][1] = _mm512_dpbusd_epi32(ia[t][1], x, w1);
        }
    }
}

/* acc[t] += the blocks of a panel of nb blocks against activation rows A[t] (t < mr): simple
 * types (one scale per block). */
static inline __attribute__((always_inline)) void
kernel_simple(const uint8_t *panel, int64_t nb, const q8_ablock *A, int mr, __m512 acc[MR][2])
{
    const size_t pb = q8p_block_bytes(NR, 1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *S = (const float *)(const void *)(p + NR * 32); /* S0 C0 */
        __m512i ia[MR][2];
        block_sums(p, (const int32_t *)(const void *)(S + NR), A, nb, b, mr, 0, 8, ia);
        const __m512 s0 = _mm512_loadu_ps(S), s1 = _mm512_loadu_ps(S + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const __m512 d = _mm512_set1_ps(A[t * nb + b].d);
            acc[t][0] =
                _mm512_fmadd_ps(d, _mm512_mul_ps(s0, _mm512_cvtepi32_ps(ia[t][0])), acc[t][0]);
            acc[t][1] =
                _mm512_fmadd_ps(d, _mm512_mul_ps(s1, _mm512_cvtepi32_ps(ia[t][1])), acc[t][1]);
        }
    }
}

/* The same for the other types: two scales and mins per block (q8.h's general product). */
static inline __attribute__((always_inline)) void
kernel_general(const uint8_t *panel, int64_t nb, const q8_ablock *A, int mr, __m512 acc[MR][2])
{
    const size_t pb = q8p_block_bytes(NR, 0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *F = (const float *)(const void *)(p + NR * 32); /* S0 C0 S1 M0 M1 C1 */
        __m512i ia[MR][2];
        __m512 v[MR][2];
        block_sums(p, (const int32_t *)(const void *)(F + NR), A, nb, b, mr, 0, 4, ia);
        const __m512 s00 = _mm512_loadu_ps(F), s01 = _mm512_loadu_ps(F + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            v[t][0] = _mm512_mul_ps(s00, _mm512_cvtepi32_ps(ia[t][0]));
            v[t][1] = _mm512_mul_ps(s01, _mm512_cvtepi32_ps(ia[t][1]));
        }
        block_sums(p, (const int32_t *)(const void *)(F + 5 * NR), A, nb, b, mr, 4, 8, ia);
        const __m512 s10 = _mm512_loadu_ps(F + 2 * NR), s11 = _mm512_loadu_ps(F + 2 * NR + 16);
        const __m512 m00 = _mm512_loadu_ps(F + 3 * NR), m01 = _mm512_loadu_ps(F + 3 * NR + 16);
        const __m512 m10 = _mm512_loadu_ps(F + 4 * NR), m11 = _mm512_loadu_ps(F + 4 * NR + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const q8_ablock *a = &A[t * nb + b];
            const __m512 x0 = _mm512_set1_ps((float)a->s16[0]), x1 = _mm512_set1_ps(a->s16[1]);
            const __m512 d = _mm512_set1_ps(a->d);
            __m512 u0 = _mm512_fmadd_ps(s10, _mm512_cvtepi32_ps(ia[t][0]), v[t][0]);
            __m512 u1 = _mm512_fmadd_ps(s11, _mm512_cvtepi32_ps(ia[t][1]), v[t][1]);
            u0 = _mm512_fmadd_ps(m10, x1, _mm512_fmadd_ps(m00, x0, u0));
            u1 = _mm512_fmadd_ps(m11, x1, _mm512_fmadd_ps(m01, x0, u1));
            acc[t][0] = _mm512_fmadd_ps(d, u0, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(d, u1, acc[t][1]);
        }
    }
}

/* mr (1..MR, a constant after inlining) activation rows against one panel; stores + bias. */
static inline __attribute__((always_inline)) void rows(const job *j, const uint8_t *panel,
                                                       int64_t t0, int mr, int64_t o0, int nrow)
{
    __m512 acc[MR][2];
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    const q8_ablock *A = j->A + t0 * j->nb;
    if (j->simple)
        kernel_simple(panel, j->nb, A, mr, acc);
    else
        kernel_general(panel, j->nb, A, mr, acc);
    const __mmask16 k0 = (__mmask16)(nrow >= 16 ? 0xffff : (1u << nrow) - 1);
    const __mmask16 k1 = (__mmask16)(nrow >= 32   ? 0xffff
                                     : nrow <= 16 ? 0
                                                  : (1u << (nrow - 16)) - 1);
    const int64_t out = j->w->out;
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (j->bias) {
        b0 = _mm512_maskz_loadu_ps(k0, j->bias + o0);
        b1 = _mm512_maskz_loadu_ps(k1, j->bias + o0 + 16);
    }
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++) {
        float *y = j->Y + (t0 + t) * out + o0;
        if (j->bias) {
            acc[t][0] = _mm512_add_ps(acc[t][0], b0);
            acc[t][1] = _mm512_add_ps(acc[t][1], b1);
        }
        _mm512_mask_storeu_ps(y, k0, acc[t][0]);
        _mm512_mask_storeu_ps(y + 16, k1, acc[t][1]);
    }
}

static void tiles(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const job *j = ctx;
    uint8_t *panel = j->slots + (size_t)thread * j->slot;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t o0 = i * NR;
        const int nrow = (int)(j->w->out - o0 < NR ? j->w->out - o0 : NR);
        q8p_pack(j->w, j->expand, j->simple, o0, nrow, NR, j->nb, panel);
        int64_t t = 0;
        for (; t + MR <= j->T; t += MR)
            rows(j, panel, t, MR, o0, nrow);
        switch (j->T - t) {
        case 3: rows(j, panel, t, 3, o0, nrow); break;
        case 2: rows(j, panel, t, 2, o0, nrow); break;
        case 1: rows(j, panel, t, 1, o0, nrow); break;
        default: break;
        }
    }
}

static size_t act_bytes(const q4_weight *w, int64_t T)
{
    return q4_line((size_t)T * (size_t)((w->in + Q8_QK - 1) / Q8_QK) * sizeof(q8_ablock));
}

static size_t panel_bytes(const q4_weight *w)
{
    return q4_slot((size_t)((w->in + Q8_QK - 1) / Q8_QK) *
                   q8p_block_bytes(NR, q8_simple(w->qtype)));
}

size_t q8_gemm_fwd_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t tiles_n = (w->out + NR - 1) / NR;
    int nt = resolve_threads(n_threads);
    nt = nt < tiles_n ? nt : (int)tiles_n;
    return T > 0 ? q4_work_size(act_bytes(w, T) + (size_t)nt * panel_bytes(w)) : 0;
}

void q8_gemm_fwd_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                            float *Y, int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    LK_ASSERT(q8_supports(w->qtype));
    uint8_t *base = q4_work_start(work, work_size, q8_gemm_fwd_work_avx512vnni(w, T, n_threads));
    job j = {.w = w,
             .bias = bias,
             .X = X,
             .Y = Y,
             .T = T,
             .nb = (w->in + Q8_QK - 1) / Q8_QK,
             .simple = q8_simple(w->qtype),
             .expand = q8_expander_avx2(w->qtype),
             .A = (q8_ablock *)(void *)base,
             .slots = base + act_bytes(w, T),
             .slot = panel_bytes(w)};
    par_for(n_threads, T, quant_rows, &j);
    par_for(n_threads, (w->out + NR - 1) / NR, tiles, &j);
}
