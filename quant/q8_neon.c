/* q8_neon.c — the NEON int8 GEMM (q8.h) with the dot-product instructions (sdot, Armv8.2-A
 * dotprod; offered only where the CPU reports them, q4_cpu_has("dotprod")), bit for bit the
 * reference's arithmetic. The structure of q8_avx2.c: a panel of 8 output rows over all blocks
 * (q8_pack.h, signed codes), then a 4x8 microkernel: per 4 values of a block, vdotq_laneq_s32
 * multiplies 4 rows' codes by the activation's 4 bytes taken straight from a lane of its block
 * (signed by signed, so no correction), int32 sums exact per block, then the fp32 update in the
 * reference's order (vfmaq_f32 is the fused fmaf). The file is compiled for the base AArch64
 * target; its functions get the dotprod extension through the pragma below. */
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>
#include <string.h>

#include "q8.h"
#include "q8_pack.h"
#include "core/pool.h"
#include "core/status.h"

#define NR 8      /* output rows per panel: two int32x4 */
#define MR Q8P_MR /* activation rows per microkernel call */

/* One group g (values 4g..4g+3) of the block for 8 rows: ia[t] += w·x[t] lane l of vector x. */
#define DOT_GROUP(g, x, l)                                                \
    do {                                                                  \
        const int8x16_t w0 = vld1q_s8((const int8_t *)(p + (g)*32));      \
        const int8x16_t w1 = vld1q_s8((const int8_t *)(p + (g)*32 + 16)); \
        for (int t = 0; t < mr; t++) {                                    \
            ia[t][0] = vdotq_laneq_s32(ia[t][0], w0, x[t], l);            \
            ia[t][1] = vdotq_laneq_s32(ia[t][1], w1, x[t], l);            \
        }                                                                 \
    } while (0)

/* Int32 sums over the first (h = 0) or second (h = 1) half of block b for mr rows. */
static inline __attribute__((always_inline)) void half_sums(const uint8_t *p, const q8_ablock *A,
                                                            int64_t nb, int64_t b, int mr, int h,
                                                            int32x4_t ia[MR][2])
{
    int8x16_t x[MR];
    for (int t = 0; t < mr; t++) {
        x[t] = vld1q_s8(A[t * nb + b].q + 16 * h);
        ia[t][0] = ia[t][1] = vdupq_n_s32(0);
    }
    p += h * 4 * 32;
    DOT_GROUP(0, x, 0);
    DOT_GROUP(1, x, 1);
    DOT_GROUP(2, x, 2);
    DOT_GROUP(3, x, 3);
}

static inline __attribute__((always_inline)) void
kernel_simple(const uint8_t *panel, int64_t nb, const q8_ablock *A, int mr, float32x4_t acc[MR][2])
{
    const size_t pb = q8p_block_bytes(NR, 1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *S = (const float *)(const void *)(p + NR * 32);
        int32x4_t i0[MR][2], i1[MR][2];
        half_sums(p, A, nb, b, mr, 0, i0);
        half_sums(p, A, nb, b, mr, 1, i1);
        const float32x4_t s0 = vld1q_f32(S), s1 = vld1q_f32(S + 4);
        for (int t = 0; t < mr; t++) {
            const float32x4_t d = vdupq_n_f32(A[t * nb + b].d);
            const float32x4_t v0 = vmulq_f32(s0, vcvtq_f32_s32(vaddq_s32(i0[t][0], i1[t][0])));
            const float32x4_t v1 = vmulq_f32(s1, vcvtq_f32_s32(vaddq_s32(i0[t][1], i1[t][1])));
            acc[t][0] = vfmaq_f32(acc[t][0], d, v0);
            acc[t][1] = vfmaq_f32(acc[t][1], d, v1);
        }
    }
}

static inline __attribute__((always_inline)) void
kernel_general(const uint8_t *panel, int64_t nb, const q8_ablock *A, int mr, float32x4_t acc[MR][2])
{
    const size_t pb = q8p_block_bytes(NR, 0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *F = (const float *)(const void *)(p + NR * 32); /* S0 S1 M0 M1 */
        int32x4_t i0[MR][2], i1[MR][2];
        half_sums(p, A, nb, b, mr, 0, i0);
        half_sums(p, A, nb, b, mr, 1, i1);
        for (int r = 0; r < 2; r++) {
            const float32x4_t s0 = vld1q_f32(F + 4 * r), s1 = vld1q_f32(F + NR + 4 * r);
            const float32x4_t m0 = vld1q_f32(F + 2 * NR + 4 * r);
            const float32x4_t m1 = vld1q_f32(F + 3 * NR + 4 * r);
            for (int t = 0; t < mr; t++) {
                const q8_ablock *a = &A[t * nb + b];
                float32x4_t v = vmulq_f32(s0, vcvtq_f32_s32(i0[t][r]));
                v = vfmaq_f32(v, s1, vcvtq_f32_s32(i1[t][r]));
                v = vfmaq_f32(v, m0, vdupq_n_f32((float)a->s16[0]));
                v = vfmaq_f32(v, m1, vdupq_n_f32((float)a->s16[1]));
                acc[t][r] = vfmaq_f32(acc[t][r], vdupq_n_f32(a->d), v);
            }
        }
    }
}

static inline __attribute__((always_inline)) void rows(const q8p_job *j, const uint8_t *panel,
                                                       int64_t t0, int mr, int64_t o0, int nrow)
{
    float32x4_t acc[MR][2];
    for (int t = 0; t < mr; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    const q8_ablock *A = j->A + t0 * j->nb;
    if (j->simple)
        kernel_simple(panel, j->nb, A, mr, acc);
    else
        kernel_general(panel, j->nb, A, mr, acc);
    for (int t = 0; t < mr; t++) {
        float tmp[NR];
        vst1q_f32(tmp, acc[t][0]);
        vst1q_f32(tmp + 4, acc[t][1]);
        q8p_store(j, t0 + t, o0, nrow, tmp);
    }
}

Q8P_ROWS_FNS(rows)

size_t q8_gemm_fwd_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    return q8p_work(w, T, n_threads, NR);
}

/* The forward, one term (two 0) or two (q8_fwd2_fn), accumulating with add (q8_fwd_add_fn; the
 * reference's quantiser). */
static void fwd_run(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                    int n_threads, void *work, size_t work_size, int two, int add)
{
    q8p_job j = {.w = w,
                 .bias = bias,
                 .X = X,
                 .Y = Y,
                 .T = T,
                 .nr = NR,
                 .kshift = 0,
                 .quant = q8_quantize_act,
                 .quant2 = two ? q8_quantize_act2 : NULL,
                 .add = add,
                 .rows = {rows_1, rows_2, rows_3, rows_4}};
    q8p_run(&j, n_threads, work, work_size);
}

void q8_gemm_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 0, 0);
}

size_t q8_gemm_fwd2_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_neon(w, 2 * T, n_threads);
}

void q8_gemm_fwd2_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                       int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 1, 0);
}

size_t q8_gemm_fwd_add_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_neon(w, T, n_threads);
}

void q8_gemm_fwd_add_neon(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                          void *work, size_t work_size)
{
    fwd_run(w, NULL, X, T, Y, n_threads, work, work_size, 0, 1);
}
