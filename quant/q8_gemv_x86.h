/* q8_gemv_x86.h — the x86 int8 matrix-vector kernels (q8_gemv.h) as static inline templates,
 * included by q8_gemv_avx2.c (GV_VNNI 0) and q8_gemv_avx512.c (GV_VNNI 1) and compiled with their
 * flags. Per block of a group of 8 output rows: each row's 32 codes come straight from its stored
 * block (or from its expanded block), one 256-bit product with the activation block gives 8 int32
 * partial sums per row (lane i: values 4i..4i+3), and two levels of vphaddd plus a lane swap
 * leave i0 (values 0..15) and i1 (16..31) of the 8 rows in the lanes of two vectors; the fp32
 * update of q8.h then runs on the 8 rows at once. The products:
 *   AVX2: vpmaddubsw + vpmaddwd. Q4_0 as its nibbles (q + 8, unsigned: a pair sums to at most
 *         2·15·127), the other types with the sign trick of q8_avx2.c (|w| times x·sign(w)).
 *   VNNI: vpdpbusd (256-bit, AVX512-VL) with unsigned codes q + K (Q4_0 its nibbles, K = 8; the
 *         others q + 128, from the tables or by flipping the top bit).
 * Unsigned codes give Σ x·q + K·Σx: the block's sums are corrected by -K times the activation's
 * half sums (exact int32). */
#ifndef LK_Q8_GEMV_X86_H
#define LK_Q8_GEMV_X86_H

#include <immintrin.h>
#include <string.h>

#include "q8_gemv.h"
#include "q8_x86.h"

#ifndef GV_VNNI
#error "define GV_VNNI (0: AVX2, 1: AVX512-VNNI) before including q8_gemv_x86.h"
#endif

#define GV_R  8 /* output rows per group: the fp32 lanes of a ymm */
#define GV_MT Q8V_MT

/* K of the codes the products take: Q4_0's nibbles are q + 8; VNNI's codes are q + 128. */
static inline int gv_k(int qt)
{
    return qt == LK_QTYPE_Q4_0 ? 8 : GV_VNNI ? 128 : 0;
}

/* The 8 int32 partial sums (lane i: values 4i..4i+3) of codes w (as the variant holds them for a
 * type with K = k) times the activation codes x. */
static inline __attribute__((always_inline)) __m256i gv_dot(__m256i w, __m256i x, int k)
{
#if GV_VNNI
    (void)k;
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    if (k) /* Q4_0: unsigned nibbles */
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)),
                             ones);
#endif
}

/* The codebook of a table type (IQ4_NL, NF4) in both lanes, + 128 under VNNI. */
static inline __m256i gv_table(int qt)
{
    const int8_t *src = qt == LK_QTYPE_NF4 ? q8_nf4_i8 : q4_iq4nl_values;
    int8_t t[16];
    for (int i = 0; i < 16; i++)
        t[i] = (int8_t)(GV_VNNI ? src[i] ^ 0x80 : src[i]);
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)t));
}

/* The codes of block b of a row of a core type, as gv_dot takes them. */
static inline __attribute__((always_inline)) __m256i gv_codes(int qt, const uint8_t *row, int64_t b,
                                                              __m256i tab)
{
    const __m128i m4 = _mm_set1_epi8(15);
    if (qt == LK_QTYPE_Q8_0) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(row + b * 34 + 2));
        return GV_VNNI ? _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)) : q;
    }
    if (qt == LK_QTYPE_NF4) { /* byte k holds value 2k (high nibble) and 2k+1 */
        const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(row + b * 16));
        const __m128i h = _mm_and_si128(_mm_srli_epi16(c, 4), m4), l = _mm_and_si128(c, m4);
        return _mm256_shuffle_epi8(
            tab, _mm256_set_m128i(_mm_unpackhi_epi8(h, l), _mm_unpacklo_epi8(h, l)));
    }
    /* Q4_0 (nibbles as they are) and IQ4_NL (through the table): 18-byte blocks */
    const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(row + b * 18 + 2));
    const __m256i v =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(c, 4), c), _mm256_set1_epi8(15));
    return qt == LK_QTYPE_IQ4_NL ? _mm256_shuffle_epi8(tab, v) : v;
}

/* The scales of block b of 8 rows of a core type. */
static inline __attribute__((always_inline)) __m256 gv_scales(int qt, const q4_weight *w,
                                                              const uint8_t *const *rows, int64_t b)
{
    if (qt == LK_QTYPE_NF4) {
        const int bs = w->block;
        const int64_t off = (w->in + bs - 1) / bs * (bs / 2) + (b * Q8_QK / bs) * 4;
        float amax[GV_R];
        for (int r = 0; r < GV_R; r++)
            memcpy(&amax[r], rows[r] + off, 4);
        return _mm256_div_ps(_mm256_loadu_ps(amax), _mm256_set1_ps(127.0f));
    }
    const size_t off = (size_t)b * (qt == LK_QTYPE_Q8_0 ? 34 : 18);
    uint16_t d[GV_R];
    for (int r = 0; r < GV_R; r++)
        memcpy(&d[r], rows[r] + off, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)d));
}

/* h[t][0] = [i0 of rows 0..3 | i1 of rows 0..3], h[t][1] the same for rows 4..7, from the codes
 * wr[8] of one block of the group's rows and the activation blocks x[t]. */
static inline __attribute__((always_inline)) void
gv_sums(const __m256i wr[GV_R], const __m256i x[GV_MT], int mt, int k, __m256i h[GV_MT][2])
{
#pragma GCC unroll 2
    for (int half = 0; half < 2; half++) {
        __m256i q[GV_MT][2];
#pragma GCC unroll 2
        for (int pr = 0; pr < 2; pr++) {
            const __m256i w0 = wr[4 * half + 2 * pr], w1 = wr[4 * half + 2 * pr + 1];
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++)
                q[t][pr] = _mm256_hadd_epi32(gv_dot(w0, x[t], k), gv_dot(w1, x[t], k));
        }
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            h[t][half] = _mm256_hadd_epi32(q[t][0], q[t][1]);
    }
}

/* acc += d·(s·(i0 + i1)) for one block (simple types), K corrected. */
static inline __attribute__((always_inline)) void gv_update_simple(const __m256i h[GV_MT][2],
                                                                   const q8_ablock *const a[GV_MT],
                                                                   int mt, int k, __m256 s,
                                                                   __m256 acc[GV_MT])
{
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        __m256i i = _mm256_add_epi32(_mm256_permute2x128_si256(h[t][0], h[t][1], 0x20),
                                     _mm256_permute2x128_si256(h[t][0], h[t][1], 0x31));
        if (k)
            i = _mm256_sub_epi32(i, _mm256_set1_epi32(k * (a[t]->s16[0] + a[t]->s16[1])));
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a[t]->d), _mm256_mul_ps(s, _mm256_cvtepi32_ps(i)),
                                 acc[t]);
    }
}

/* The general update of q8.h for one block (two scales and mins per row), K corrected. */
static inline __attribute__((always_inline)) void
gv_update_general(const __m256i h[GV_MT][2], const q8_ablock *const a[GV_MT], int mt, int k,
                  const __m256 f[4], __m256 acc[GV_MT])
{
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        __m256i i0 = _mm256_permute2x128_si256(h[t][0], h[t][1], 0x20);
        __m256i i1 = _mm256_permute2x128_si256(h[t][0], h[t][1], 0x31);
        if (k) {
            i0 = _mm256_sub_epi32(i0, _mm256_set1_epi32(k * a[t]->s16[0]));
            i1 = _mm256_sub_epi32(i1, _mm256_set1_epi32(k * a[t]->s16[1]));
        }
        __m256 v = _mm256_mul_ps(f[0], _mm256_cvtepi32_ps(i0));
        v = _mm256_fmadd_ps(f[1], _mm256_cvtepi32_ps(i1), v);
        v = _mm256_fmadd_ps(f[2], _mm256_set1_ps((float)a[t]->s16[0]), v);
        v = _mm256_fmadd_ps(f[3], _mm256_set1_ps((float)a[t]->s16[1]), v);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a[t]->d), v, acc[t]);
    }
}

/* Y rows t0.. of the group (+ bias); only its nrow rows are stored. */
static inline __attribute__((always_inline)) void
gv_store(const q8v_job *j, const __m256 acc[GV_MT], int mt, int64_t o0, int nrow, int64_t t0)
{
    const int64_t out = j->w->out;
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        float *y = j->Y + (t0 + t) * out + o0;
        if (nrow == GV_R) {
            const __m256 v =
                j->bias ? _mm256_add_ps(acc[t], _mm256_loadu_ps(j->bias + o0)) : acc[t];
            _mm256_storeu_ps(y, v);
        } else {
            float tmp[GV_R];
            _mm256_storeu_ps(tmp, acc[t]);
            for (int r = 0; r < nrow; r++)
                y[r] = j->bias ? tmp[r] + j->bias[o0 + r] : tmp[r];
        }
    }
}

static inline void gv_rows(const q8v_job *j, int64_t o0, int nrow, const uint8_t *rows[GV_R])
{
    const q4_weight *w = j->w;
    for (int r = 0; r < GV_R; r++) /* rows past nrow repeat the last one (not stored) */
        rows[r] =
            (const uint8_t *)w->data + (size_t)(o0 + (r < nrow ? r : nrow - 1)) * w->row_bytes;
}

/* A group of a core type, read straight from its blocks. */
static inline __attribute__((always_inline)) void gv_core(const q8v_job *j, int qt, int64_t o0,
                                                          int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[GV_R];
    gv_rows(j, o0, nrow, rows);
    const __m256i tab = gv_table(qt);
    const int k = gv_k(qt);
    const q8_ablock *A = j->A + t0 * nb;
    __m256 acc[GV_MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const q8_ablock *a[GV_MT];
        __m256i x[GV_MT], wr[GV_R], h[GV_MT][2];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            a[t] = &A[t * nb + b];
            x[t] = _mm256_loadu_si256((const __m256i *)(const void *)a[t]->q);
        }
#pragma GCC unroll 8
        for (int r = 0; r < GV_R; r++)
            wr[r] = gv_codes(qt, rows[r], b, tab);
        gv_sums(wr, x, mt, k, h);
        gv_update_simple(h, a, mt, k, gv_scales(qt, j->w, rows, b), acc);
    }
    gv_store(j, acc, mt, o0, nrow, t0);
}

/* A group of a type read through its expander (Q8V_CH blocks of each row at a time). */
static inline __attribute__((always_inline)) void
gv_expanded(const q8v_job *j, int simple, int64_t o0, int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[GV_R];
    gv_rows(j, o0, nrow, rows);
    const int k = GV_VNNI ? 128 : 0;
    const q8_ablock *A = j->A + t0 * nb;
    __m256 acc[GV_MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    q8_wblock e[GV_R][Q8V_CH];
    const int last = nrow > 1 ? nrow - 1 : 0; /* nrow >= 1 */
    for (int64_t b0 = 0; b0 < nb; b0 += Q8V_CH) {
        const int64_t n = nb - b0 < Q8V_CH ? nb - b0 : Q8V_CH;
        for (int r = 0; r < nrow; r++)
            j->expand(j->w, rows[r], b0, n, e[r]);
        for (int64_t c = 0; c < n; c++) {
            const q8_ablock *a[GV_MT];
            __m256i x[GV_MT], wr[GV_R], h[GV_MT][2];
            const q8_wblock *eb[GV_R];
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                a[t] = &A[t * nb + b0 + c];
                x[t] = _mm256_loadu_si256((const __m256i *)(const void *)a[t]->q);
            }
#pragma GCC unroll 8
            for (int r = 0; r < GV_R; r++) {
                eb[r] = &e[r < nrow ? r : last][c];
                wr[r] = _mm256_loadu_si256((const __m256i *)(const void *)eb[r]->q);
                if (GV_VNNI)
                    wr[r] = _mm256_xor_si256(wr[r], _mm256_set1_epi8((char)0x80));
            }
            gv_sums(wr, x, mt, k, h);
            if (simple) {
                const __m256 s = _mm256_setr_ps(eb[0]->s[0], eb[1]->s[0], eb[2]->s[0], eb[3]->s[0],
                                                eb[4]->s[0], eb[5]->s[0], eb[6]->s[0], eb[7]->s[0]);
                gv_update_simple(h, a, mt, k, s, acc);
            } else { /* s0 s1 m0 m1 of the 8 rows: two 4x4 transposes */
                __m128 l[4], u[4];
                for (int i = 0; i < 4; i++) {
                    l[i] = _mm_loadu_ps(eb[i]->s);
                    u[i] = _mm_loadu_ps(eb[4 + i]->s);
                }
                _MM_TRANSPOSE4_PS(l[0], l[1], l[2], l[3]);
                _MM_TRANSPOSE4_PS(u[0], u[1], u[2], u[3]);
                __m256 f[4];
                for (int i = 0; i < 4; i++)
                    f[i] = _mm256_set_m128(u[i], l[i]);
                gv_update_general(h, a, mt, k, f, acc);
            }
        }
    }
    gv_store(j, acc, mt, o0, nrow, t0);
}

#define GV_CORE_FN(name, qt)                                                                       \
    static inline __attribute__((always_inline)) void name(const q8v_job *j, int64_t o0, int nrow, \
                                                           int64_t t0, int mt)                     \
    {                                                                                              \
        gv_core(j, qt, o0, nrow, t0, mt);                                                          \
    }                                                                                              \
    Q8V_GROUP_FNS(name)

GV_CORE_FN(gv_q4_0, LK_QTYPE_Q4_0)
GV_CORE_FN(gv_iq4_nl, LK_QTYPE_IQ4_NL)
GV_CORE_FN(gv_q8_0, LK_QTYPE_Q8_0)
GV_CORE_FN(gv_nf4, LK_QTYPE_NF4)

static inline __attribute__((always_inline)) void gv_exp_simple(const q8v_job *j, int64_t o0,
                                                                int nrow, int64_t t0, int mt)
{
    gv_expanded(j, 1, o0, nrow, t0, mt);
}
static inline __attribute__((always_inline)) void gv_exp_general(const q8v_job *j, int64_t o0,
                                                                 int nrow, int64_t t0, int mt)
{
    gv_expanded(j, 0, o0, nrow, t0, mt);
}
Q8V_GROUP_FNS(gv_exp_simple)
Q8V_GROUP_FNS(gv_exp_general)

/* The job of a call: the group functions of w's type. */
static inline q8v_job gv_job(const q4_weight *w, const float *bias, const float *X, int64_t T,
                             float *Y)
{
    q8v_job j = {
        .w = w, .bias = bias, .X = X, .Y = Y, .T = T, .nr = GV_R, .quant = q8x_quantize_act};
#define GV_SET(fn)           \
    do {                     \
        j.group[0] = fn##_1; \
        j.group[1] = fn##_2; \
        j.group[2] = fn##_3; \
        j.group[3] = fn##_4; \
    } while (0)
    switch (w->qtype) {
    case LK_QTYPE_Q4_0: GV_SET(gv_q4_0); break;
    case LK_QTYPE_IQ4_NL: GV_SET(gv_iq4_nl); break;
    case LK_QTYPE_Q8_0: GV_SET(gv_q8_0); break;
    case LK_QTYPE_NF4: GV_SET(gv_nf4); break;
    default:
        j.expand = q8_expander_avx2(w->qtype);
        if (q8_simple(w->qtype))
            GV_SET(gv_exp_simple);
        else
            GV_SET(gv_exp_general);
    }
#undef GV_SET
    return j;
}

#endif /* LK_Q8_GEMV_X86_H */
