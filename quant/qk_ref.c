/* qk_ref.c — the other GGUF types: Q4_1, Q5_0, Q5_1, the k-quants Q2_K..Q6_K and IQ4_XS (their
 * quantisers are in qk_quant.c). Block sizes, the reference decoder of a 32-value span (the
 * specification every SIMD decoder is tested against) and the check of stored scales.
 *
 * Reference: the block layouts of ggml-common.h and the dequantisation of gguf-py 0.19.0
 * (gguf/quants.py, dequantize_blocks), which computes every value in fp32 with one rounding per
 * operation: x = d*q + m (Q4_1, Q5_1), x = dl*q - ml with dl = d*sc, ml = dmin*m (k-quants).
 * Reimplemented from the layouts; this file is compiled in ISO C mode, so a*b+c is never
 * contracted into an fma (which would change the roundings; -ffp-contract=off as well, CMakeLists.txt).
 * See q4.h for the layouts. */
#include <math.h>
#include <string.h>

#include "q4.h"
#include "core/status.h"

int q4_is_kquant(int qtype)
{
    switch (qtype) {
    case LK_QTYPE_Q2_K:
    case LK_QTYPE_Q3_K:
    case LK_QTYPE_Q4_K:
    case LK_QTYPE_Q5_K:
    case LK_QTYPE_Q6_K:
    case LK_QTYPE_IQ4_XS: return 1;
    default: return 0;
    }
}

size_t q4_block_bytes(int qtype)
{
    switch (qtype) {
    case LK_QTYPE_Q4_0: return sizeof(q4_block_q4_0);
    case LK_QTYPE_Q8_0: return sizeof(q4_block_q8_0);
    case LK_QTYPE_IQ4_NL: return sizeof(q4_block_iq4_nl);
    case LK_QTYPE_Q4_1: return sizeof(q4_block_q4_1);
    case LK_QTYPE_Q5_0: return sizeof(q4_block_q5_0);
    case LK_QTYPE_Q5_1: return sizeof(q4_block_q5_1);
    case LK_QTYPE_Q2_K: return sizeof(q4_block_q2_k);
    case LK_QTYPE_Q3_K: return sizeof(q4_block_q3_k);
    case LK_QTYPE_Q4_K: return sizeof(q4_block_q4_k);
    case LK_QTYPE_Q5_K: return sizeof(q4_block_q5_k);
    case LK_QTYPE_Q6_K: return sizeof(q4_block_q6_k);
    case LK_QTYPE_IQ4_XS: return sizeof(q4_block_iq4_xs);
    default: return 0;
    }
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- blocks of 32 ------------------------------------------------------------------------- */

static void dec_q4_1(const q4_block_q4_1 *b, float *y)
{
    const float d = q4_fp16_to_fp32(b->d), m = q4_fp16_to_fp32(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b->qs[j] & 15) + m;
        y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
    }
}

/* The 5-bit codes of a Q5_0 / Q5_1 block: nibbles plus bit j of qh. */
static void q5_codes(const uint8_t *qh4, const uint8_t *qs, int *q)
{
    const uint32_t qh = le32(qh4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
}

static void dec_q5_0(const q4_block_q5_0 *b, float *y)
{
    const float d = q4_fp16_to_fp32(b->d);
    int q[32];
    q5_codes(b->qh, b->qs, q);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(q[j] - 16);
}

static void dec_q5_1(const q4_block_q5_1 *b, float *y)
{
    const float d = q4_fp16_to_fp32(b->d), m = q4_fp16_to_fp32(b->m);
    int q[32];
    q5_codes(b->qh, b->qs, q);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)q[j] + m;
}

/* ---- k-quants: values [i0, i0+32) of a super-block (i0 a multiple of 32) ------------------ */

static void dec_q2_k(const q4_block_q2_k *b, int i0, float *y)
{
    const float d = q4_fp16_to_fp32(b->d), dmin = q4_fp16_to_fp32(b->dmin);
    const int h = i0 / 128, s = (i0 % 128) / 32;
    for (int l = 0; l < 32; l++) {
        const int g = (i0 + l) / 16;
        const float dl = d * (float)(b->scales[g] & 15), ml = dmin * (float)(b->scales[g] >> 4);
        y[l] = dl * (float)((b->qs[32 * h + l] >> (2 * s)) & 3) - ml;
    }
}

/* The 16 signed 6-bit scales of a Q3_K super-block (already minus 32). */
static void q3_k_scales(const uint8_t *sc, int *out)
{
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? sc[j] & 15 : sc[j - 8] >> 4;
        const int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (lo | hi << 4) - 32;
    }
}

static void dec_q3_k(const q4_block_q3_k *b, int i0, float *y)
{
    const float d = q4_fp16_to_fp32(b->d);
    const int h = i0 / 128, s = (i0 % 128) / 32, bit = i0 / 32;
    int sc[16];
    q3_k_scales(b->scales, sc);
    for (int l = 0; l < 32; l++) {
        const float dl = d * (float)sc[(i0 + l) / 16];
        const int q = ((b->qs[32 * h + l] >> (2 * s)) & 3) - ((b->hmask[l] >> bit) & 1 ? 0 : 4);
        y[l] = dl * (float)q;
    }
}

/* Scale and min of sub-block j (0..7) of Q4_K / Q5_K (ggml's get_scale_min_k4). */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K and Q5_K: sub-block j = i0/32; qh NULL for Q4_K. */
static void dec_q45_k(uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qh,
                      const uint8_t *qs, int i0, float *y)
{
    const int j = i0 / 32;
    int sc, m;
    k4_scale_min(scales, j, &sc, &m);
    const float dl = q4_fp16_to_fp32(dh) * (float)sc, ml = q4_fp16_to_fp32(dminh) * (float)m;
    const uint8_t *q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; l++) {
        int v = (q[l] >> shift) & 15;
        if (qh)
            v |= ((qh[l] >> j) & 1) << 4;
        y[l] = dl * (float)v - ml;
    }
}

static void dec_q6_k(const q4_block_q6_k *b, int i0, float *y)
{
    const float d = q4_fp16_to_fp32(b->d);
    const int h = i0 / 128, r0 = i0 % 128, s = r0 / 32;
    for (int l = 0; l < 32; l++) {
        const int r = r0 + l;
        const int lo = (b->ql[64 * h + r % 64] >> (4 * (r / 64))) & 15;
        const int hi = (b->qh[32 * h + l] >> (2 * s)) & 3;
        const float dl = d * (float)b->scales[(i0 + l) / 16];
        y[l] = dl * (float)((lo | hi << 4) - 32);
    }
}

static void dec_iq4_xs(const q4_block_iq4_xs *b, int i0, float *y)
{
    const int j = i0 / 32;
    const int ls = ((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((b->scales_h >> (2 * j)) & 3)
                                                                      << 4;
    const float dl = q4_fp16_to_fp32(b->d) * (float)(ls - 32);
    const uint8_t *q = b->qs + 16 * j;
    for (int l = 0; l < 16; l++) {
        y[l] = dl * (float)q4_iq4nl_values[q[l] & 15];
        y[l + 16] = dl * (float)q4_iq4nl_values[q[l] >> 4];
    }
}

void q4_decode32_gguf(int qtype, const uint8_t *row, int64_t k0, float *dst)
{
    const int64_t b = k0 / 32, sb = k0 / Q4_QK_K;
    const int i0 = (int)(k0 % Q4_QK_K);
    switch (qtype) {
    case LK_QTYPE_Q4_1: dec_q4_1((const q4_block_q4_1 *)(const void *)row + b, dst); break;
    case LK_QTYPE_Q5_0: dec_q5_0((const q4_block_q5_0 *)(const void *)row + b, dst); break;
    case LK_QTYPE_Q5_1: dec_q5_1((const q4_block_q5_1 *)(const void *)row + b, dst); break;
    case LK_QTYPE_Q2_K: dec_q2_k((const q4_block_q2_k *)(const void *)row + sb, i0, dst); break;
    case LK_QTYPE_Q3_K: dec_q3_k((const q4_block_q3_k *)(const void *)row + sb, i0, dst); break;
    case LK_QTYPE_Q4_K: {
        const q4_block_q4_k *x = (const q4_block_q4_k *)(const void *)row + sb;
        dec_q45_k(x->d, x->dmin, x->scales, NULL, x->qs, i0, dst);
        break;
    }
    case LK_QTYPE_Q5_K: {
        const q4_block_q5_k *x = (const q4_block_q5_k *)(const void *)row + sb;
        dec_q45_k(x->d, x->dmin, x->scales, x->qh, x->qs, i0, dst);
        break;
    }
    case LK_QTYPE_Q6_K: dec_q6_k((const q4_block_q6_k *)(const void *)row + sb, i0, dst); break;
    case LK_QTYPE_IQ4_XS:
        dec_iq4_xs((const q4_block_iq4_xs *)(const void *)row + sb, i0, dst);
        break;
    default: LK_ASSERT(0);
    }
}

/* ---- stored scales ------------------------------------------------------------------------ */

/* Byte offsets of the fp16 scales (d, then m / dmin, or -1) in a block of a GGUF type. */
static void scale_offsets(int qtype, int *o0, int *o1)
{
    *o1 = -1;
    switch (qtype) {
    case LK_QTYPE_Q2_K: *o0 = 80, *o1 = 82; break;
    case LK_QTYPE_Q3_K: *o0 = 108; break;
    case LK_QTYPE_Q6_K: *o0 = 208; break;
    case LK_QTYPE_Q4_1:
    case LK_QTYPE_Q5_1:
    case LK_QTYPE_Q4_K:
    case LK_QTYPE_Q5_K: *o0 = 0, *o1 = 2; break;
    default: *o0 = 0; break; /* Q4_0, Q8_0, IQ4_NL, Q5_0, IQ4_XS: d first */
    }
}

static int fp16_at(const uint8_t *p, float *v)
{
    uint16_t h;
    memcpy(&h, p, 2);
    *v = q4_fp16_to_fp32(h);
    return ((h >> 10) & 0x1f) != 0x1f; /* exponent all ones: Inf or NaN */
}

int q4_find_bad_scale(int qtype, int block, const void *rows, int64_t nrows, int64_t in,
                      int64_t *row, int64_t *blk, float *val)
{
    const size_t rb = q4_row_bytes(qtype, block, in);
    const int64_t bl = q4_block_len(qtype, block), nb = (in + bl - 1) / bl;
    const size_t bb = q4_block_bytes(qtype);
    int o0, o1;
    scale_offsets(qtype, &o0, &o1);
    if (rb == 0 || (qtype != LK_QTYPE_NF4 && bb == 0))
        return 0; /* plain types: nothing to check */
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *p = (const uint8_t *)rows + (size_t)r * rb;
        for (int64_t b = 0; b < nb; b++) {
            int ok = 1;
            if (qtype == LK_QTYPE_NF4) {
                memcpy(val, p + nb * (block / 2) + b * 4, 4);
                ok = isfinite(*val);
            } else {
                ok = fp16_at(p + (size_t)b * bb + o0, val);
                if (ok && o1 >= 0)
                    ok = fp16_at(p + (size_t)b * bb + o1, val);
            }
            if (!ok) {
                *row = r;
                *blk = b;
                return 1;
            }
        }
    }
    return 0;
}
