/* q8_avx2.c — the AVX2 int8 GEMM (q8.h), bit for bit the reference's arithmetic. The structure of
 * q8_avx512.c (a packed panel of the tile's weight over all blocks, q8_pack.h, then a
 * register-blocked microkernel over the activation rows) with 8 output rows per ymm and 4
 * activation rows per call. AVX2 has no vpdpbusd: vpmaddubsw multiplies unsigned by signed bytes
 * into saturating int16 pairs, so the sign trick makes its operands |w| (0..128) and x·sign(w)
 * (|x| <= 127): a pair sums to at most 2·128·127 = 32512, never saturating, and vpmaddwd by ones
 * widens to exact int32 sums (the weight may be -128, a Q8_0 code; the activation never is, so
 * the sign goes onto the activation). Helpers are static (compiled with -mavx2 -mfma). */
#include <immintrin.h>
#include <string.h>

#include "q8.h"
#include "q8_pack.h"
#include "q8_x86.h"
#include "core/pool.h"
#include "core/status.h"

#define NR 8      /* output rows per panel: one ymm of int32 / fp32 lanes */
#define MR Q8P_MR /* activation rows per microkernel call */

static inline __m256i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* Σ over 4 values of x·w for 8 rows, added to acc (the sign trick above). */
static inline __m256i dot4(__m256i acc, __m256i x, __m256i w, __m256i aw, __m256i ones)
{
    const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
}

/* Int32 sums over groups [g0, g1) of block b for mr activation rows. */
static inline __attribute__((always_inline)) void block_sums(const uint8_t *p, const q8_ablock *A,
                                                             int64_t nb, int64_t b, int mr, int g0,
                                                             int g1, __m256i ia[MR])
{
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        ia[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = g0; g < g1; g++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(p + g * 32));
        const __m256i aw = _mm256_abs_epi8(w);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++)
            ia[t] = dot4(ia[t], bcast4(A[t * nb + b].q + 4 * g), w, aw, ones);
    }
}

static inline __attribute__((always_inline)) void
kernel_simple(const uint8_t *panel, int64_t nb, const q8_ablock *A, int mr, __m256 acc[MR])
{
    const size_t pb = q8p_block_bytes(NR, 1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        __m256i ia[MR];
        block_sums(p, A, nb, b, mr, 0, 8, ia);
        const __m256 s = _mm256_loadu_ps((const float *)(const void *)(p + NR * 32));
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(A[t * nb + b].d),
                                     _mm256_mul_ps(s, _mm256_cvtepi32_ps(ia[t])), acc[t]);
    }
}

static inline __attribute__((always_inline)) void
kernel_general(const uint8_t *panel, int64_t nb, const q8_ablock *A, int mr, __m256 acc[MR])
{
    const size_t pb = q8p_block_bytes(NR, 0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *F = (const float *)(const void *)(p + NR * 32); /* S0 S1 M0 M1 */
        __m256i ia[MR];
        __m256 v[MR];
        block_sums(p, A, nb, b, mr, 0, 4, ia);
        const __m256 s0 = _mm256_loadu_ps(F), s1 = _mm256_loadu_ps(F + NR);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++)
            v[t] = _mm256_mul_ps(s0, _mm256_cvtepi32_ps(ia[t]));
        block_sums(p, A, nb, b, mr, 4, 8, ia);
        const __m256 m0 = _mm256_loadu_ps(F + 2 * NR), m1 = _mm256_loadu_ps(F + 3 * NR);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m256 u = _mm256_fmadd_ps(s1, _mm256_cvtepi32_ps(ia[t]), v[t]);
            u = _mm256_fmadd_ps(m0, _mm256_set1_ps((float)a->s16[0]), u);
            u = _mm256_fmadd_ps(m1, _mm256_set1_ps((float)a->s16[1]), u);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a->d), u, acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void rows(const q8p_job *j, const uint8_t *panel,
                                                       int64_t t0, int mr, int64_t o0, int nrow)
{
    __m256 acc[MR];
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        acc[t] = _mm256_setzero_ps();
    const q8_ablock *A = j->A + t0 * j->nb;
    if (j->simple)
        kernel_simple(panel, j->nb, A, mr, acc);
    else
        kernel_general(panel, j->nb, A, mr, acc);
    const int64_t out = j->w->out;
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++) {
        float *y = j->Y + (t0 + t) * out + o0;
        float tmp[NR];
        _mm256_storeu_ps(tmp, acc[t]);
        for (int r = 0; r < nrow; r++)
            y[r] = j->bias ? tmp[r] + j->bias[o0 + r] : tmp[r];
    }
}

Q8P_ROWS_FNS(rows)

size_t q8_gemm_fwd_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    return q8p_work(w, T, n_threads, NR);
}

void q8_gemm_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    q8p_job j = {.w = w,
                 .bias = bias,
                 .X = X,
                 .Y = Y,
                 .T = T,
                 .nr = NR,
                 .kshift = 0,
                 .quant = q8x_quantize_act,
                 .expand = q8_expander_avx2(w->qtype),
                 .rows = {rows_1, rows_2, rows_3, rows_4}};
    q8p_run(&j, n_threads, work, work_size);
}
