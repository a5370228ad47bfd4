/* q4_neon.c — AArch64 Advanced SIMD fused dequant-GEMM kernels, fp32 arithmetic (within fp32
 * summation error of q4_gemm_*_ref). Kept simple: each 32-value block is decoded with plain C into
 * a small stack buffer (the exact operations of q4_decode_ref), then NEON FMAs do the work. Forward
 * keeps one decoded block and dots it with up to 4 X rows at a time (every row of W is decoded
 * once per 4 rows of X); backward owns 32 columns per task and accumulates dX[t][32] over all W
 * rows. Results do not depend on the thread count. Compiled only on aarch64. Every format: the
 * GGUF read-only types (Q4_1 .. IQ4_XS) are decoded by the reference's q4_decode32_gguf. Checked
 * against the reference under qemu by .ci/arm.sh (tests/cross/kernels.c). */
#include <arm_neon.h>
#include <string.h>

#include "q4.h"
#include "core/pool.h"
#include "core/status.h"

#define TB 4 /* X rows per pass in the forward kernel */

/* Values [k0, k0+32) of a row into out[32] (k0 a multiple of 32), as q4_decode_ref computes. */
static void dec32(const q4_weight *w, const uint8_t *row, int64_t k0, float *out)
{
    if (w->qtype > LK_QTYPE_NF4) { /* the GGUF read-only types */
        q4_decode32_gguf(w->qtype, row, k0, out);
        return;
    }
    switch (w->qtype) {
    case LK_QTYPE_Q4_0:
    case LK_QTYPE_IQ4_NL: {
        const uint8_t *blk = row + (k0 / 32) * 18;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        const float d = q4_fp16_to_fp32(dh);
        for (int j = 0; j < 16; j++) {
            int lo = blk[2 + j] & 15, hi = blk[2 + j] >> 4;
            if (w->qtype == LK_QTYPE_Q4_0) {
                out[j] = (float)(lo - 8) * d;
                out[j + 16] = (float)(hi - 8) * d;
            } else {
                out[j] = d * (float)q4_iq4nl_values[lo];
                out[j + 16] = d * (float)q4_iq4nl_values[hi];
            }
        }
        break;
    }
    case LK_QTYPE_Q8_0: {
        const uint8_t *blk = row + (k0 / 32) * 34;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        const float d = q4_fp16_to_fp32(dh);
        for (int j = 0; j < 32; j++)
            out[j] = d * (float)(int8_t)blk[2 + j];
        break;
    }
    default: {
        const int64_t nb = (w->in + w->block - 1) / w->block;
        float amax;
        memcpy(&amax, row + nb * (w->block / 2) + (k0 / w->block) * 4, 4);
        for (int j = 0; j < 16; j++) {
            uint8_t b = row[k0 / 2 + j];
            out[2 * j] = q4_nf4_code[b >> 4] * amax; /* HIGH nibble first */
            out[2 * j + 1] = q4_nf4_code[b & 15] * amax;
        }
        break;
    }
    }
}

/* The forward decodes into stack buffers: no work memory. */
size_t q4_gemm_fwd_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    (void)w, (void)T, (void)n_threads;
    return 0;
}

/* Work of the backward: one block of sums [T][32] per thread. */
size_t q4_gemm_bwd_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    (void)w;
    const size_t acc = q4_slot((size_t)T * 32 * sizeof(float));
    return T > 0 ? q4_work_size((size_t)resolve_threads(n_threads) * acc) : 0;
}

typedef struct {
    const q4_weight *w;
    const float *bias, *X, *dY;
    float *Y, *dX;
    int64_t T;
    uint8_t *accs; /* backward: one slot of sums per thread */
    size_t slot;
} neon_job;

static void fwd_rows(void *ctx, int64_t o0, int64_t o1, int thread)
{
    const neon_job *j = ctx;
    const q4_weight *w = j->w;
    const float *X = j->X, *bias = j->bias;
    float *Y = j->Y;
    const int64_t T = j->T, in = w->in, out = w->out, in32 = in / 32 * 32;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
        float wv[32], xt[32];
        for (int64_t t0 = 0; t0 < T; t0 += TB) {
            const int tb = (int)(T - t0 < TB ? T - t0 : TB);
            float32x4_t acc[TB];
            for (int i = 0; i < TB; i++)
                acc[i] = vdupq_n_f32(0.0f);
            for (int64_t k0 = 0; k0 < in; k0 += 32) {
                dec32(w, row, k0, wv);
                for (int i = 0; i < tb; i++) {
                    const float *x = X + (t0 + i) * in + k0; /* [32] or the tail */
                    if (k0 >= in32) {                        /* zero-padded copy of the tail */
                        memset(xt, 0, sizeof xt);
                        memcpy(xt, x, (size_t)(in - k0) * sizeof(float));
                        x = xt;
                    }
                    for (int k = 0; k < 32; k += 4)
                        acc[i] = vfmaq_f32(acc[i], vld1q_f32(wv + k), vld1q_f32(x + k));
                }
            }
            for (int i = 0; i < tb; i++)
                Y[(t0 + i) * out + o] = vaddvq_f32(acc[i]) + (bias ? bias[o] : 0.0f);
        }
    }
}

static void bwd_chunks(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const neon_job *j = ctx;
    const q4_weight *w = j->w;
    const float *dY = j->dY;
    float *dX = j->dX;
    const int64_t T = j->T, in = w->in, out = w->out;
    float *acc = (float *)(void *)(j->accs + (size_t)thread * j->slot); /* [T][32] */
    for (int64_t c = c0; c < c1; c++) {
        float wv[32];
        memset(acc, 0, (size_t)T * 32 * sizeof(float));
        for (int64_t o = 0; o < out; o++) {
            dec32(w, (const uint8_t *)w->data + (size_t)o * w->row_bytes, c * 32, wv);
            for (int64_t t = 0; t < T; t++) {
                const float32x4_t g = vdupq_n_f32(dY[t * out + o]);
                float *a = acc + t * 32;
                for (int k = 0; k < 32; k += 4)
                    vst1q_f32(a + k, vfmaq_f32(vld1q_f32(a + k), g, vld1q_f32(wv + k)));
            }
        }
        const int64_t ncol = in - c * 32 < 32 ? in - c * 32 : 32;
        for (int64_t t = 0; t < T; t++)
            memcpy(dX + t * in + c * 32, acc + t * 32, (size_t)ncol * sizeof(float));
    }
}

void q4_gemm_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    (void)work, (void)work_size;
    if (T <= 0)
        return;
    neon_job j = {.w = w, .bias = bias, .X = X, .Y = Y, .T = T};
    par_for(n_threads, w->out, fwd_rows, &j);
}

void q4_gemm_bwd_neon(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                      void *work, size_t work_size)
{
    if (T <= 0)
        return;
    neon_job j = {.w = w,
                  .dY = dY,
                  .dX = dX,
                  .T = T,
                  .accs = q4_work_start(work, work_size, q4_gemm_bwd_work_neon(w, T, n_threads)),
                  .slot = q4_slot((size_t)T * 32 * sizeof(float))};
    par_for(n_threads, (w->in + 31) / 32, bwd_chunks, &j);
}
