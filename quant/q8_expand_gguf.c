/* q8_expand_gguf.c — plain-C int8 expanders of the GGUF read-only types (Q4_1, Q5_0, Q5_1,
 * Q2_K..Q6_K, IQ4_XS) for the int8 GEMM (q8.h): the specification every SIMD expander is tested
 * against. Each turns blocks [b0, b0+nb) of 32 values of one stored row into q8_wblock {q, s, m}
 * with s[k/16]*q[k] + m[k/16] equal to q4_decode32_gguf's value bit for bit; the expansions and
 * why they are exact are in q8_gguf.h. Block b of a k-quant row is sub-block b%8 of super-block
 * b/8 (values 32*(b%8) .. +31 of it, the order of the layouts in q4.h). */
#include "q8_gguf.h"

/* The 32 5-bit codes of a Q5_0 / Q5_1 block minus `off`: nibble j plus bit j of the LE u32 qh. */
static void q5_codes(const uint8_t *qh4, const uint8_t *qs, int off, int8_t *q)
{
    const uint32_t qh =
        (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 | (uint32_t)qh4[2] << 16 | (uint32_t)qh4[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 15) | (int)((qh >> j) & 1) << 4) - off);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - off);
    }
}

/* ---- blocks of 32 ---------------------------------------------------------------------------- */

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
        q5_codes(x[i].qh, x[i].qs, 16, dst[i].q);
        q8g_sm32(&dst[i], q4_fp16_to_fp32(x[i].d), -0.0f);
    }
}

static void exp_q5_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_1 *x = (const q4_block_q5_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        q5_codes(x[i].qh, x[i].qs, 0, dst[i].q);
        q8g_sm32(&dst[i], q4_fp16_to_fp32(x[i].d), q4_fp16_to_fp32(x[i].m));
    }
}

/* ---- k-quants: the codes of sub-block j of a super-block; h = j/4 is the half (128 values), s =
 * j%4 the 32-value span within it. */

static void codes_q2_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q2_k *x = (const q4_block_q2_k *)(const void *)sb;
    for (int l = 0; l < 32; l++)
        q[l] = (int8_t)((x->qs[32 * (j / 4) + l] >> (2 * (j % 4))) & 3);
}

static void codes_q3_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q3_k *x = (const q4_block_q3_k *)(const void *)sb;
    for (int l = 0; l < 32; l++) /* a clear hmask bit j subtracts 4 */
        q[l] = (int8_t)(((x->qs[32 * (j / 4) + l] >> (2 * (j % 4))) & 3) -
                        ((x->hmask[l] >> j) & 1 ? 0 : 4));
}

static void codes_q4_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q4_k *x = (const q4_block_q4_k *)(const void *)sb;
    for (int l = 0; l < 32; l++)
        q[l] = (int8_t)((x->qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15);
}

static void codes_q5_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q5_k *x = (const q4_block_q5_k *)(const void *)sb;
    for (int l = 0; l < 32; l++)
        q[l] = (int8_t)(((x->qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15) | ((x->qh[l] >> j) & 1)
                                                                                << 4);
}

/* Q6_K: value r (0..127) of half h has its low 4 bits in nibble r/64 of ql[64h + r%64] and its
 * high 2 bits in bits 2(r/32).. of qh[32h + r%32]. */
static void codes_q6_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q6_k *x = (const q4_block_q6_k *)(const void *)sb;
    const int h = j / 4, s = j % 4;
    const uint8_t *ql = x->ql + 64 * h + 32 * (s % 2);
    for (int l = 0; l < 32; l++) {
        const int lo = (ql[l] >> (4 * (s / 2))) & 15, hi = (x->qh[32 * h + l] >> (2 * s)) & 3;
        q[l] = (int8_t)((lo | hi << 4) - 32);
    }
}

static void codes_iq4_xs(const uint8_t *sb, int j, int8_t *q)
{
    const uint8_t *qs = ((const q4_block_iq4_xs *)(const void *)sb)->qs + 16 * j;
    for (int l = 0; l < 16; l++) {
        q[l] = q4_iq4nl_values[qs[l] & 15];
        q[l + 16] = q4_iq4nl_values[qs[l] >> 4];
    }
}

Q8G_SCALAR_SM(q2_k, LK_QTYPE_Q2_K)
Q8G_SCALAR_SM(q3_k, LK_QTYPE_Q3_K)
Q8G_SCALAR_SM(iq4_xs, LK_QTYPE_IQ4_XS)
Q8G_SCALAR_SM(q4_k, LK_QTYPE_Q4_K)
Q8G_SCALAR_SM(q6_k, LK_QTYPE_Q6_K)
Q8G_KQUANT_EXPANDERS

Q8G_EXPANDER_TABLE(q8_expander_gguf)

#if !defined(LK_HAVE_AVX2) /* no AVX2 file in this build: no AVX2 expanders */
q8_expand_fn q8_expander_gguf_avx2(int qtype)
{
    (void)qtype;
    return NULL;
}

q8_expand_fn q8_expander_avx2(int qtype)
{
    return q8_expander(qtype);
}
#endif
