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

#define NR 8 /* output rows per panel: two int32x4 */
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

/* One group g (values 4g..4g+3) of the block for 8 rows: ia[t] += w·x[t] lane l of vector x. */
#define DOT_GROUP(g, x, l)                                                          \
    do {                                                                            \
        const int8x16_t w0 = vld1q_s8((const int8_t *)(p + (g) * 32));              \
        const int8x16_t w1 = vld1q_s8((const int8_t *)(p + (g) * 32 + 16));         \
        for (int t = 0; t < mr; t++) {                                              \
            ia[t][0] = vdotq_laneq_s32(ia[t][0], w0, x[t], l);                      \
            ia[t][1] = vdotq_laneq_s32(ia[t][1], w1, x[t], l);                      \
        }                                                                           \
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

static inline __attribute__((always_inline)) void kernel_simple(const uint8_t *panel, int64_t nb,
                                                                const q8_ablock *A, int mr,
                                                                float32x4_t acc[MR][2])
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

static inline __attribute__((always_inline)) void kernel_general(const uint8_t *panel, int64_t nb,
                                                                 const q8_ablock *A, int mr,
                                                                 float32x4_t acc[MR][2])
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

static inline __attribute__((always_inline)) void rows(const job *j, const uint8_t *panel,
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
        float *y = j->Y + (t0 + t) * j->w->out + o0;
        float tmp[NR];
        vst1q_f32(tmp, acc[t][0]);
        vst1q_f32(tmp + 4, acc[t][1]);
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
        q8p_pack(j->w, j->expand, j->simple, o0, nrow, NR, j->nb, 0, panel);
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

size_t q8_gemm_fwd_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t tiles_n = (w->out + NR - 1) / NR;
    int nt = resolve_threads(n_threads);
    nt = nt < tiles_n ? nt : (int)tiles_n;
    return T > 0 ? q4_work_size(act_bytes(w, T) + (size_t)nt * panel_bytes(w)) : 0;
}

void q8_gemm_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    LK_ASSERT(q8_supports(w->qtype));
    uint8_t *base = q4_work_start(work, work_size, q8_gemm_fwd_work_neon(w, T, n_threads));
    job j = {.w = w,
             .bias = bias,
             .X = X,
             .Y = Y,
             .T = T,
             .nb = (w->in + Q8_QK - 1) / Q8_QK,
             .simple = q8_simple(w->qtype),
             .expand = q8_expander(w->qtype),
             .A = (q8_ablock *)(void *)base,
             .slots = base + act_bytes(w, T),
             .slot = panel_bytes(w)};
    par_for(n_threads, T, quant_rows, &j);
    par_for(n_threads, (w->out + NR - 1) / NR, tiles, &j);
}
