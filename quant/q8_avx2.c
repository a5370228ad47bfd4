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
#include "core/pool.h"
#include "core/status.h"

#define NR 8 /* output rows per panel: one ymm of int32 / fp32 lanes */
#define MR 4 /* activation rows per microkernel call */

typedef struct {
    const q4_weight *w;
    const float *bias, *X;
    float *Y;
    int64_t T, nb;
    int simple;
    q8_expand_fn expand;
    q8_ablock *A;   /* [T][nb] */
    uint8_t *slots; /* per thread: one panel */
    size_t slot;
} job;

static void quant_rows(void *ctx, int64_t t0, int64_t t1, int thread)
{
    (void)thread;
    const job *j = ctx;
    for (int64_t t = t0; t < t1; t++)
        q8_quantize_act(j->X + t * j->w->in, j->w->in, j->A + t * j->nb);
}

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
        const float *F = (const float *)(const void *)(p + NR * 32); /* S0 C0 S1 M0 M1 C1 */
        __m256i ia[MR];
        __m256 v[MR];
        block_sums(p, A, nb, b, mr, 0, 4, ia);
        const __m256 s0 = _mm256_loadu_ps(F), s1 = _mm256_loadu_ps(F + 2 * NR);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++)
            v[t] = _mm256_mul_ps(s0, _mm256_cvtepi32_ps(ia[t]));
        block_sums(p, A, nb, b, mr, 4, 8, ia);
        const __m256 m0 = _mm256_loadu_ps(F + 3 * NR), m1 = _mm256_loadu_ps(F + 4 * NR);
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

static inline __attribute__((always_inline)) void rows(const job *j, const uint8_t *panel,
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

size_t q8_gemm_fwd_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t tiles_n = (w->out + NR - 1) / NR;
    int nt = resolve_threads(n_threads);
    nt = nt < tiles_n ? nt : (int)tiles_n;
    return T > 0 ? q4_work_size(act_bytes(w, T) + (size_t)nt * panel_bytes(w)) : 0;
}

void q8_gemm_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    LK_ASSERT(q8_supports(w->qtype));
    uint8_t *base = q4_work_start(work, work_size, q8_gemm_fwd_work_avx2(w, T, n_threads));
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
