/* q8_expand_gguf_avx2.c — AVX2 int8 expanders of the GGUF read-only types, bit-exact with the
 * plain-C ones of q8_expand_gguf.c (tests/test_q8_gguf.c compares them block for block). The 32
 * codes of a block are unpacked with the byte shuffles and shifts of qk_avx2.h (shared with the
 * fp32 decoders) and stored with one 32-byte store; the scales and mins come from the same scalar
 * helpers as the reference (q8_gguf.h), with the fp16 scales converted by F16C (exact, as
 * q4_fp16_to_fp32). Compiled with -mavx2 -mfma -mf16c; used by the AVX2 and AVX-512 kernels. */
#include "q8_gguf.h"
#include "qk_avx2.h"

static void store32(int8_t *q, __m256i v)
{
    _mm256_storeu_si256((__m256i *)(void *)q, v);
}

static void exp_q4_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q4_1 *x = (const q4_block_q4_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        store32(dst[i].q, qk_nibbles(x[i].qs));
        q8g_sm32(&dst[i], _cvtsh_ss(x[i].d), _cvtsh_ss(x[i].m));
    }
}

static void exp_q5_0(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_0 *x = (const q4_block_q5_0 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_or_si256(qk_nibbles(x[i].qs), qk_bits16(x[i].qh));
        store32(dst[i].q, _mm256_sub_epi8(q, _mm256_set1_epi8(16)));
        q8g_sm32(&dst[i], _cvtsh_ss(x[i].d), -0.0f);
    }
}

static void exp_q5_1(const q4_weight *w, const void *row, int64_t b0, int64_t nb, q8_wblock *dst)
{
    (void)w;
    const q4_block_q5_1 *x = (const q4_block_q5_1 *)row + b0;
    for (int64_t i = 0; i < nb; i++) {
        store32(dst[i].q, _mm256_or_si256(qk_nibbles(x[i].qs), qk_bits16(x[i].qh)));
        q8g_sm32(&dst[i], _cvtsh_ss(x[i].d), _cvtsh_ss(x[i].m));
    }
}

/* ---- k-quants: the codes of sub-block j of a super-block (see q8_expand_gguf.c) ------------- */

static void codes_q2_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q2_k *x = (const q4_block_q2_k *)(const void *)sb;
    store32(q, qk_shift_mask(x->qs + 32 * (j / 4), 2 * (j % 4), 3));
}

static void codes_q3_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q3_k *x = (const q4_block_q3_k *)(const void *)sb;
    const __m256i ql = qk_shift_mask(x->qs + 32 * (j / 4), 2 * (j % 4), 3);
    const __m256i hb = qk_shift_mask(x->hmask, j, 1); /* 1: no offset, 0: minus 4 */
    store32(q, _mm256_sub_epi8(_mm256_add_epi8(ql, _mm256_slli_epi16(hb, 2)), _mm256_set1_epi8(4)));
}

static void codes_q4_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q4_k *x = (const q4_block_q4_k *)(const void *)sb;
    store32(q, qk_shift_mask(x->qs + 32 * (j / 2), 4 * (j % 2), 15));
}

static void codes_q5_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q5_k *x = (const q4_block_q5_k *)(const void *)sb;
    const __m256i lo = qk_shift_mask(x->qs + 32 * (j / 2), 4 * (j % 2), 15);
    const __m256i hi = _mm256_slli_epi16(qk_shift_mask(x->qh, j, 1), 4); /* stays in its byte */
    store32(q, _mm256_or_si256(lo, hi));
}

static void codes_q6_k(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_q6_k *x = (const q4_block_q6_k *)(const void *)sb;
    const int h = j / 4, s = j % 4;
    const __m256i lo = qk_shift_mask(x->ql + 64 * h + 32 * (s % 2), 4 * (s / 2), 15);
    const __m256i hi = _mm256_slli_epi16(qk_shift_mask(x->qh + 32 * h, 2 * s, 3), 4);
    store32(q, _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32)));
}

static void codes_iq4_xs(const uint8_t *sb, int j, int8_t *q)
{
    const q4_block_iq4_xs *x = (const q4_block_iq4_xs *)(const void *)sb;
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)q4_iq4nl_values));
    store32(q, _mm256_shuffle_epi8(tab, qk_nibbles(x->qs + 16 * j)));
}

/* Q4_K / Q5_K scales and mins with SIMD (bit-exact with q8g_kquant_sm: the same exact int-to-float
 * conversions and single products): the 12 packed bytes rearranged into 8 scales and 8 mins as
 * ggml's utmp trick does, then d*sc and -(dmin*mn) eight at a time. */
static void sm_q4_k(const uint8_t *sb, q8g_sm sm)
{
    uint32_t u[4];
    memcpy(u, sb + 4, 12);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    u[3] = ((u[2] >> 4) & m4) | ((u[1] >> 6) & m2) << 4; /* mins 4..7 */
    const uint32_t mins03 = u[1] & m6;
    u[1] = (u[2] & m4) | ((u[0] >> 6) & m2) << 4; /* scales 4..7 */
    u[2] = mins03;
    u[0] &= m6; /* scales 0..3 */
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)u));
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(u + 2)));
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(qk_fp16(sb)), _mm256_cvtepi32_ps(b));
    const __m256 m =
        _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(qk_fp16(sb + 2)), _mm256_cvtepi32_ps(c)),
                      _mm256_set1_ps(-0.0f)); /* -(dmin*mn) */
    const __m256 lo = _mm256_unpacklo_ps(s, m),
                 hi = _mm256_unpackhi_ps(s, m); /* s0 m0 s1 m1 | s4 .. */
    const __m256 r[4] = {_mm256_permute_ps(lo, 0x50), _mm256_permute_ps(lo, 0xfa),
                         _mm256_permute_ps(hi, 0x50), _mm256_permute_ps(hi, 0xfa)}; /* j, j+4 */
    for (int k = 0; k < 4; k++) {
        _mm_storeu_ps(sm[k], _mm256_castps256_ps128(r[k]));
        _mm_storeu_ps(sm[k + 4], _mm256_extractf128_ps(r[k], 1));
    }
}

/* Q6_K scales d*scales[g] sixteen at a time; mins -0. */
static void sm_q6_k(const uint8_t *sb, q8g_sm sm)
{
    const q4_block_q6_k *x = (const q4_block_q6_k *)(const void *)sb;
    const __m256 d = _mm256_set1_ps(qk_fp16(sb + 208));
    const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)x->scales);
    const __m256d z = _mm256_castps_pd(_mm256_set1_ps(-0.0f));
    for (int h = 0; h < 2; h++) { /* groups 8h..8h+7 = blocks 4h..4h+3 */
        const __m256 s = _mm256_mul_ps(
            d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h ? _mm_srli_si128(sc, 8) : sc)));
        const __m256d lo = _mm256_unpacklo_pd(_mm256_castps_pd(s), z); /* s0 s1 z z | s4 s5 z z */
        const __m256d hi = _mm256_unpackhi_pd(_mm256_castps_pd(s), z); /* s2 s3 z z | s6 s7 z z */
        _mm_storeu_ps(sm[4 * h], _mm256_castps256_ps128(_mm256_castpd_ps(lo)));
        _mm_storeu_ps(sm[4 * h + 1], _mm256_castps256_ps128(_mm256_castpd_ps(hi)));
        _mm_storeu_ps(sm[4 * h + 2], _mm256_extractf128_ps(_mm256_castpd_ps(lo), 1));
        _mm_storeu_ps(sm[4 * h + 3], _mm256_extractf128_ps(_mm256_castpd_ps(hi), 1));
    }
}

Q8G_SCALAR_SM(q2_k, LK_QTYPE_Q2_K)
Q8G_SCALAR_SM(q3_k, LK_QTYPE_Q3_K)
Q8G_SCALAR_SM(iq4_xs, LK_QTYPE_IQ4_XS)
Q8G_KQUANT_EXPANDERS

Q8G_EXPANDER_TABLE(q8_expander_gguf_avx2)

q8_expand_fn q8_expander_avx2(int qtype)
{
    const q8_expand_fn f = q8_expander_gguf_avx2(qtype);
    return f ? f : q8_expander(qtype);
}
