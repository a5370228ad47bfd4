/* q8_expand.c — plain-C int8 expanders of the core weight types (Q4_0, IQ4_NL, Q8_0, NF4) and the
 * per-type tables of the int8 path (q8_expander, q8_supports, q8_simple): the specification every
 * SIMD expander is tested against. Q4_0, IQ4_NL and Q8_0 expand exactly (s*q equals
 * q4_decode_ref's value bit for bit); NF4 goes through its int8 codebook (q8.h). The GGUF
 * read-only types have their expanders in q8_expand_gguf.c (q8_expander_gguf). */
#include <string.h>

#include "q8.h"

const int8_t q8_nf4_i8[16] = {-127, -88, -67, -50, -36, -23, -12, 0,
                              10,   20,  31,  43,  56,  71,  92,  127};

/* s = d for every half, no min. */
static void set_scale(q8_wblock *o, float d)
{
    o->s[0] = o->s[1] = d;
    o->m[0] = o->m[1] = 0.0f;
}

static void exp_q4_0(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q4_0 *x = (const q4_block_q4_0 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < 16; j++) {
            dst[i].q[j] = (int8_t)((x[i].qs[j] & 15) - 8);
            dst[i].q[j + 16] = (int8_t)((x[i].qs[j] >> 4) - 8);
        }
        set_scale(&dst[i], q4_fp16_to_fp32(x[i].d));
    }
}

static void exp_iq4_nl(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_iq4_nl *x = (const q4_block_iq4_nl *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < 16; j++) {
            dst[i].q[j] = q4_iq4nl_values[x[i].qs[j] & 15];
            dst[i].q[j + 16] = q4_iq4nl_values[x[i].qs[j] >> 4];
        }
        set_scale(&dst[i], q4_fp16_to_fp32(x[i].d));
    }
}

static void exp_q8_0(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q8_0 *x = (const q4_block_q8_0 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        memcpy(dst[i].q, x[i].qs, 32);
        set_scale(&dst[i], q4_fp16_to_fp32(x[i].d));
    }
}

/* NF4 rows: packed codes (even value in the HIGH nibble), then the fp32 absmax of each block of
 * w->block values; a 32-block lies inside one NF4 block (blocksizes are powers of two >= 32). */
static void exp_nf4(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    const uint8_t *r = row;
    const int64_t nbn = (w->in + w->block - 1) / w->block;
    const int per = w->block / Q8_QK; /* 32-blocks per NF4 block */
    for (int64_t i = 0; i < nb; i++) {
        const int64_t b = b0 + i;
        const uint8_t *c = r + b * (Q8_QK / 2);
        for (int j = 0; j < 16; j++) {
            dst[i].q[2 * j] = q8_nf4_i8[c[j] >> 4];
            dst[i].q[2 * j + 1] = q8_nf4_i8[c[j] & 15];
        }
        float amax;
        memcpy(&amax, r + nbn * (w->block / 2) + (b / per) * 4, 4);
        set_scale(&dst[i], amax / 127.0f);
    }
}

q8_expand_fn q8_expander(int qtype)
{
    switch (qtype) {
    case LK_QTYPE_Q4_0: return exp_q4_0;
    case LK_QTYPE_IQ4_NL: return exp_iq4_nl;
    case LK_QTYPE_Q8_0: return exp_q8_0;
    case LK_QTYPE_NF4: return exp_nf4;
    default: return q8_expander_gguf(qtype); /* the GGUF read-only types, NULL for the rest */
    }
}

int q8_supports(int qtype)
{
    return q8_expander(qtype) != NULL;
}

int q8_simple(int qtype)
{
    switch (qtype) {
    case LK_QTYPE_Q4_0:
    case LK_QTYPE_IQ4_NL:
    case LK_QTYPE_Q8_0:
    case LK_QTYPE_NF4:
    case LK_QTYPE_Q5_0:
    case LK_QTYPE_IQ4_XS: return 1;
    default: return 0;
    }
}
