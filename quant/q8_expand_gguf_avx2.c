/* q8_expand_gguf_avx2.c — AVX2 int8 expanders of the GGUF read-only types, bit-exact with the
 * plain-C ones of q8_expand_gguf.c (tests/test_q8_gguf.c compares them block for block). The 32
 * codes of a block are unpacked with the byte shuffles and shifts of qk_avx2.h (shared with the
 * fp32 decoders) and stored with one 32-byte store; the scales and mins come from the same scalar
 * helpers as the reference (q8_gguf.h), with the fp16 scales converted by F16C (exact, as
 * q4_fp16_to_fp32). Compiled with -mavx2 -mfma -mf16c; used by the AVX2 and AVX-512 kernels. */
#include "q8_gguf.h"
#include "qk_avx2.h"

static void store32(q8_wblock *o, __m256i q)
{
    _mm256_storeu_si256((__m256i *)(void *)o->q, q);
}

static void exp_q4_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q4_1 *x = (const q4_block_q4_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        store32(&dst[i], qk_nibbles(x[i].qs));
        q8g_sm32(&dst[i], _cvtsh_ss(x[i].d), _cvtsh_ss(x[i].m));
    }
}

static void exp_q5_0(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_0 *x = (const q4_block_q5_0 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_or_si256(qk_nibbles(x[i].qs), qk_bits16(x[i].qh));
        store32(&dst[i], _mm256_sub_epi8(q, _mm256_set1_epi8(16)));
        q8g_sm32(&dst[i], _cvtsh_ss(x[i].d), -0.0f);
    }
}

static void exp_q5_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_1 *x = (const q4_block_q5_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        store32(&dst[i], _mm256_or_si256(qk_nibbles(x[i].qs), qk_bits16(x[i].qh)));
        q8g_sm32(&dst[i], _cvtsh_ss(x[i].d), _cvtsh_ss(x[i].m));
    }
}

static void exp_q2_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q2_k *x = (const q4_block_q2_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8), h = j / 4, s = j % 4;
        store32(&dst[i], qk_shift_mask(x->qs + 32 * h, 2 * s, 3));
        q8g_sm_q2_k(x, _cvtsh_ss(x->d), _cvtsh_ss(x->dmin), 2 * j, &dst[i]);
    }
}

static void exp_q3_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q3_k *x = (const q4_block_q3_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8), h = j / 4, s = j % 4;
        const __m256i ql = qk_shift_mask(x->qs + 32 * h, 2 * s, 3);
        const __m256i hb = qk_shift_mask(x->hmask, j, 1); /* 1: no offset, 0: minus 4 */
        store32(&dst[i], _mm256_sub_epi8(_mm256_add_epi8(ql, _mm256_slli_epi16(hb, 2)),
                                         _mm256_set1_epi8(4)));
        q8g_sm_q3_k(x, _cvtsh_ss(x->d), 2 * j, &dst[i]);
    }
}

static void exp_q4_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q4_k *x = (const q4_block_q4_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        store32(&dst[i], qk_shift_mask(x->qs + 32 * (j / 2), 4 * (j % 2), 15));
        q8g_sm_k4(x->scales, _cvtsh_ss(x->d), _cvtsh_ss(x->dmin), j, &dst[i]);
    }
}

static void exp_q5_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q5_k *x = (const q4_block_q5_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        const __m256i lo = qk_shift_mask(x->qs + 32 * (j / 2), 4 * (j % 2), 15);
        const __m256i hi = _mm256_slli_epi16(qk_shift_mask(x->qh, j, 1), 4); /* stays in byte */
        store32(&dst[i], _mm256_or_si256(lo, hi));
        q8g_sm_k4(x->scales, _cvtsh_ss(x->d), _cvtsh_ss(x->dmin), j, &dst[i]);
    }
}

static void exp_q6_k(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_q6_k *x = (const q4_block_q6_k *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8), h = j / 4, s = j % 4;
        const __m256i lo = qk_shift_mask(x->ql + 64 * h + 32 * (s % 2), 4 * (s / 2), 15);
        const __m256i hi = _mm256_slli_epi16(qk_shift_mask(x->qh + 32 * h, 2 * s, 3), 4);
        store32(&dst[i], _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32)));
        q8g_sm_q6_k(x, _cvtsh_ss(x->d), 2 * j, &dst[i]);
    }
}

static void exp_iq4_xs(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)q4_iq4nl_values));
    for (int64_t i = 0; i < nb; i++) {
        const q4_block_iq4_xs *x = (const q4_block_iq4_xs *)row + (b0 + i) / 8;
        const int j = (int)((b0 + i) % 8);
        store32(&dst[i], _mm256_shuffle_epi8(tab, qk_nibbles(x->qs + 16 * j)));
        q8g_sm_iq4_xs(x, _cvtsh_ss(x->d), j, &dst[i]);
    }
}

q8_expand_fn q8_expander_gguf_avx2(int qtype)
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
