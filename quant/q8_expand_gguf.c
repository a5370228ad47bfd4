/* q8_expand_gguf.c — plain-C int8 expanders of the GGUF read-only types (Q4_1, Q5_0, Q5_1,
 * Q2_K..Q6_K, IQ4_XS) for the int8 GEMM (q8.h): the specification every SIMD expander is tested
 * against. Each turns blocks [b0, b0+nb) of 32 values of one stored row into q8_wblock {q, s, m}
 * with s[k/16]*q[k] + m[k/16] equal to q4_decode32_gguf's value bit for bit; the expansions and
 * why they are exact are in q8_gguf.h. Block b of a k-quant row is sub-block b%8 of super-block
 * b/8 (values 32*(b%8) .. +31 of it, the order of the layouts in q4.h). */
#include "q8_gguf.h"

/* The 5-bit code of value j (0..31) of a Q5_0 / Q5_1 block: nibble plus bit j of the LE u32 qh. */
static int q5_code(const uint8_t *qh4, const uint8_t *qs, int j)
{
    const uint32_t qh =
        (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 | (uint32_t)qh4[2] << 16 | (uint32_t)qh4[3] << 24;
    const int nib = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
    return nib | (int)((qh >> j) & 1) << 4;
}

/* ---- blocks of 32 -----------------------------------------------------------------------------
 */

static void exp_q4_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q4_1 *x = (const q4_block_q4_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < 16; j++) {
            dst[i].q[j] = (int8_t)(x[i].qs[j] & 15);
            dst[i].q[j + 16] = (int8_t)(x[i].qs[j] >> 4);
        }
        q8g_sm32(&dst[i], q4_fp16_to_fp32(x[i].d), q4_fp16_to_fp32(x[i].m));
    }
}

static void exp_q5_0(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_0 *x = (const q4_block_q5_0 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < 32; j++)
            dst[i].q[j] = (int8_t)(q5_code(x[i].qh, x[i].qs, j) - 16);
        q8g_sm32(&dst[i], q4_fp16_to_fp32(x[i].d), -0.0f);
    }
}

static void exp_q5_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_1 *x = (const q4_block_q5_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < 32; j++)
            dst[i].q[j] = (int8_t)q5_code(x[i].qh, x[i].qs, j);
        q8g_sm32(&dst[i], q4_fp16_to_fp32(x[i].d), q4_fp16_to_fp32(x[i].m));
    }
}

/* ---- k-quants: block b is values 32*(b%8).. of super-block b/8; h = half (128 values), s = the
 * 32-value span within the half ---------------------------------------------------------------- */

static void exp_q2_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q2_k *x = (const q4_block_q2_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8), h = j / 4, s = j % 4;
        for (int l = 0; l < 32; l++)
            dst[i].q[l] = (int8_t)((x->qs[32 * h + l] >> (2 * s)) & 3);
        q8g_sm_q2_k(x, q4_fp16_to_fp32(x->d), q4_fp16_to_fp32(x->dmin), 2 * j, &dst[i]);
    }
}

static void exp_q3_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q3_k *x = (const q4_block_q3_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8), h = j / 4, s = j % 4;
        for (int l = 0; l < 32; l++) /* a clear hmask bit j subtracts 4 */
            dst[i].q[l] =
                (int8_t)(((x->qs[32 * h + l] >> (2 * s)) & 3) - ((x->hmask[l] >> j) & 1 ? 0 : 4));
        q8g_sm_q3_k(x, q4_fp16_to_fp32(x->d), 2 * j, &dst[i]);
    }
}

static void exp_q4_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q4_k *x = (const q4_block_q4_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        const uint8_t *q = x->qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++)
            dst[i].q[l] = (int8_t)((q[l] >> (4 * (j % 2))) & 15);
        q8g_sm_k4(x->scales, q4_fp16_to_fp32(x->d), q4_fp16_to_fp32(x->dmin), j, &dst[i]);
    }
}

static void exp_q5_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q5_k *x = (const q4_block_q5_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        const uint8_t *q = x->qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++)
            dst[i].q[l] = (int8_t)(((q[l] >> (4 * (j % 2))) & 15) | ((x->qh[l] >> j) & 1) << 4);
        q8g_sm_k4(x->scales, q4_fp16_to_fp32(x->d), q4_fp16_to_fp32(x->dmin), j, &dst[i]);
    }
}

/* Q6_K: value r (0..127) of half h has its low 4 bits in nibble r/64 of ql[64h + r%64] and its
 * high 2 bits in bits 2s.. of qh[32h + r%32] (s = r/32). */
static void exp_q6_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q6_k *x = (const q4_block_q6_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8), h = j / 4, s = j % 4;
        const uint8_t *ql = x->ql + 64 * h + 32 * (s % 2);
        for (int l = 0; l < 32; l++) {
            const int lo = (ql[l] >> (4 * (s / 2))) & 15, hi = (x->qh[32 * h + l] >> (2 * s)) & 3;
            dst[i].q[l] = (int8_t)((lo | hi << 4) - 32);
        }
        q8g_sm_q6_k(x, q4_fp16_to_fp32(x->d), 2 * j, &dst[i]);
    }
}

static void exp_iq4_xs(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_iq4_xs *x = (const q4_block_iq4_xs *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        const uint8_t *q = x->qs + 16 * j;
        for (int l = 0; l < 16; l++) {
            dst[i].q[l] = q4_iq4nl_values[q[l] & 15];
            dst[i].q[l + 16] = q4_iq4nl_values[q[l] >> 4];
        }
        q8g_sm_iq4_xs(x, q4_fp16_to_fp32(x->d), j, &dst[i]);
    }
}

q8_expand_fn q8_expander_gguf(int qtype)
{
    switch (qtype) {
    case LK_QTYPE_Q4_1: return exp_q4_1;
    case LK_QTYPE_Q5_0: return exp_q5_0;
    case LK_QTYPE_Q5_1: return exp_q5_1;
    case LK_QTYPE_Q2_K: return exp_q2_k;
    case LK_QTYPE_Q3_K: return exp_q3_k;
    case LK_QTYPE_Q4_K: return exp_q4_k;
    case LK_QTYPE_Q5_K: return exp_q5_k;
    case LK_QTYPE_Q6_K: return exp_q6_k;
    case LK_QTYPE_IQ4_XS: return exp_iq4_xs;
    default: return NULL;
    }
}

#if !defined(LK_HAVE_AVX2)
q8_expand_fn q8_expander_gguf_avx2(int qtype)
{
    (void)qtype;
    return NULL;
}
#endif
