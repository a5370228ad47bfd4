/* q8_gemv_avx2.c — the AVX2 int8 matrix-vector kernel (q8_gemv.h), bit for bit q8_gemm_fwd_ref;
 * the avx2 table takes it for T <= gemv_t (q8_dispatch.c). The layout of q8_gemv_avx512.c on
 * ymm: groups of 8 output rows, a ymm holds 16 bytes of each of 2 rows (lane L: row 4L+k of the
 * group in the k-th of four ymm), the activation's half blocks broadcast to both lanes. The
 * products are vpmaddubsw + vpmaddwd: Q4_0 as its nibbles (q + 8, unsigned; a pair sums to at
 * most 2·15·127, so both halves add up in int16 before one vpmaddwd, and the block sum is
 * corrected by -8·Σx), the other types with the sign trick of q8_avx2.c (|w| times x·sign(w), a
 * pair at most 2·128·127: each half widened on its own). Two levels of vphaddd leave the 8 rows'
 * block sums in the lanes of one ymm in row order; then the fp32 update of q8.h. */
#include <immintrin.h>
#include <string.h>

#include "q8_gemv.h"
#include "q8_ilv.h"
#include "q8_x86.h"

#define R  8 /* output rows per group: the lanes of a ymm */
#define MT Q8V_MT

/* 16 bytes at offset off of rows k (low lane) and 4+k (high lane). */
static inline __m256i load2(const uint8_t *const *rows, int k, size_t off)
{
    return _mm256_loadu2_m128i((const __m128i *)(const void *)(rows[4 + k] + off),
                               (const __m128i *)(const void *)(rows[k] + off));
}

/* Lane L of the result: the sums of lane L of v[0..3] (element k: v[k]'s), i.e. rows in order. */
static inline __m256i red4(const __m256i v[4])
{
    return _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
}

/* red4 of int16 partial sums of nibbles times activations (8 per row, each of at most 4 products:
 * |.| <= 4·15·127): two levels of vphaddw (sums of 16 products, <= 30480, exact in int16) and
 * one vpmaddwd. */
static inline __m256i red4w(const __m256i v[4])
{
    const __m256i h =
        _mm256_hadd_epi16(_mm256_hadd_epi16(v[0], v[1]), _mm256_hadd_epi16(v[2], v[3]));
    return _mm256_madd_epi16(h, _mm256_set1_epi16(1));
}

/* The 4 int32 partial sums per lane of signed codes w times x (the sign trick). */
static inline __m256i dot_signed(__m256i w, __m256i x)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)),
                             _mm256_set1_epi16(1));
}

/* The activation half blocks of a broadcast to both lanes (NF4: even and odd values). */
static inline __attribute__((always_inline)) void act(int qt, const q8_ablock *a, __m256i *xl,
                                                      __m256i *xh)
{
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)a->q);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(a->q + 16));
    if (qt == LK_QTYPE_NF4) {
        const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        const __m128i l = _mm_shuffle_epi8(lo, eo), h = _mm_shuffle_epi8(hi, eo);
        *xl = _mm256_broadcastsi128_si256(_mm_unpacklo_epi64(l, h));
        *xh = _mm256_broadcastsi128_si256(_mm_unpackhi_epi64(l, h));
    } else {
        *xl = _mm256_broadcastsi128_si256(lo);
        *xh = _mm256_broadcastsi128_si256(hi);
    }
}

/* The int32 partial sums of block b of rows k, 4+k of a core type times the activation halves. */
static inline __attribute__((always_inline)) __m256i
sums_core(int qt, const uint8_t *const *rows, int k, int64_t b, __m256i tab, __m256i xl, __m256i xh)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    if (qt == LK_QTYPE_Q4_0) { /* nibbles: int16 sums of 4 values (<= 4·15·127), red4w */
        const __m256i c = load2(rows, k, (size_t)b * 18 + 2);
        const __m256i lo = _mm256_and_si256(c, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
        return _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
    }
    __m256i lo, hi;
    if (qt == LK_QTYPE_Q8_0) {
        lo = load2(rows, k, (size_t)b * 34 + 2);
        hi = load2(rows, k, (size_t)b * 34 + 18);
    } else if (qt == LK_QTYPE_NF4) {
        const __m256i c = load2(rows, k, (size_t)b * 16);
        lo = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(c, 4), m4));
        hi = _mm256_shuffle_epi8(tab, _mm256_and_si256(c, m4));
    } else { /* IQ4_NL */
        const __m256i c = load2(rows, k, (size_t)b * 18 + 2);
        lo = _mm256_shuffle_epi8(tab, _mm256_and_si256(c, m4));
        hi = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(c, 4), m4));
    }
    return _mm256_add_epi32(dot_signed(lo, xl), dot_signed(hi, xh));
}

/* The fp16 values at offset off of the 8 rows, as fp32 (built in a register: 8 narrow stores and
 * a wide load would stall). */
static inline __attribute__((always_inline)) __m256 fp16s(const uint8_t *const *rows, size_t off)
{
    __m128i h = _mm_cvtsi32_si128(*(const uint16_t *)(const void *)(rows[0] + off));
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[1] + off), 1);
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[2] + off), 2);
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[3] + off), 3);
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[4] + off), 4);
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[5] + off), 5);
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[6] + off), 6);
    h = _mm_insert_epi16(h, *(const uint16_t *)(const void *)(rows[7] + off), 7);
    return _mm256_cvtph_ps(h);
}

/* The scales of block b of the 8 rows of a core type. */
static inline __attribute__((always_inline)) __m256 scales(int qt, const q4_weight *w,
                                                           const uint8_t *const *rows, int64_t b)
{
    if (qt == LK_QTYPE_NF4) {
        const int bs = w->block;
        const int64_t off = (w->in + bs - 1) / bs * (bs / 2) + (b * Q8_QK / bs) * 4;
        float amax[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            memcpy(&amax[r], rows[r] + off, 4);
        return _mm256_div_ps(_mm256_loadu_ps(amax), _mm256_set1_ps(127.0f));
    }
    return fp16s(rows, (size_t)b * (qt == LK_QTYPE_Q8_0 ? 34 : 18));
}

static inline __attribute__((always_inline)) void store(const q8v_job *j, const __m256 acc[MT],
                                                        int mt, int64_t o0, int nrow, int64_t t0)
{
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        float *y = j->Y + (t0 + t) * j->w->out + o0;
        if (nrow == R) {
            _mm256_storeu_ps(y, j->bias ? _mm256_add_ps(acc[t], _mm256_loadu_ps(j->bias + o0))
                                        : acc[t]);
        } else {
            float tmp[R];
            _mm256_storeu_ps(tmp, acc[t]);
            for (int r = 0; r < nrow; r++)
                y[r] = j->bias ? tmp[r] + j->bias[o0 + r] : tmp[r];
        }
    }
}

/* A group of a core type (simple) in the row layout, read straight from its blocks. */
static inline __attribute__((always_inline)) void group_rows(const q8v_job *j, int qt, int64_t o0,
                                                             int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128(
        (const __m128i *)(const void *)(qt == LK_QTYPE_NF4 ? q8_nf4_i8 : q4_iq4nl_values)));
    const q8_ablock *A = j->A + t0 * nb;
    const q8v_pf pf = q8v_next(j, o0);
    __m256 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i xl[MT], xh[MT], p[MT][4];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            act(qt, &A[t * nb + b], &xl[t], &xh[t]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++)
                p[t][k] = sums_core(qt, rows, k, b, tab, xl[t], xh[t]);
        const __m256 s = scales(qt, j->w, rows, b);
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m256i i = qt == LK_QTYPE_Q4_0 ? red4w(p[t]) : red4(p[t]);
            if (qt == LK_QTYPE_Q4_0)
                i = _mm256_sub_epi32(i, _mm256_set1_epi32(8 * (a->s16[0] + a->s16[1])));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a->d), _mm256_mul_ps(s, _mm256_cvtepi32_ps(i)),
                                     acc[t]);
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

/* ---- groups of an interleaved weight (q8_ilv.h) ---------------------------------------------- */

/* The 4 activation bytes q[0..3] broadcast to every dword. */
static inline __m256i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* The first record of the 8 rows from o0 (a whole group's half, o0 % 8 == 0) and their offset
 * in it: the half h's scales at rec + 16h, its code bytes at 32h of each 64-byte chunk. */
static inline const uint8_t *ilv_rec(const q8v_job *j, int64_t o0, size_t *half)
{
    *half = (size_t)(o0 % Q8I_R) / R;
    return q8i_record(j->w, o0 / Q8I_R, 0);
}

/* A half group of a simple core type (Q4_0, IQ4_NL, Q8_0) from its records: per block one
 * vcvtph2ps of the 8 rows' scales and one 32-byte load per 4 code bytes of the 8 rows (a dword
 * lane per row) by the 4 matching activation bytes broadcast, the lanes already the rows' sums.
 * Q4_0's nibbles (q + 8) add up in int16 over the block (8 pair sums of at most 2·15·127: 30480)
 * before one vpmaddwd; IQ4_NL and Q8_0 take the sign trick per chunk. */
static inline __attribute__((always_inline)) void group_ilv(const q8v_job *j, int qt, int64_t o0,
                                                            int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    size_t h;
    const uint8_t *rec = ilv_rec(j, o0, &h);
    const size_t rs = (size_t)Q8I_R * q8i_bsz(qt);
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)q4_iq4nl_values));
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi16(1);
    const q8_ablock *A = j->A + t0 * nb;
    const q8v_pf pf = q8v_next(j, o0);
    __m256 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, rec += rs) {
        const uint8_t *c0 = rec + 2 * Q8I_R + 32 * h;
        __m256i p[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            p[t] = _mm256_setzero_si256();
        if (qt == LK_QTYPE_Q8_0) {
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(c0 + 64 * c));
#pragma GCC unroll 4
                for (int t = 0; t < mt; t++)
                    p[t] = _mm256_add_epi32(p[t], dot_signed(w, bcast4(A[t * nb + b].q + 4 * c)));
            }
        } else {
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m256i ch = _mm256_loadu_si256((const __m256i *)(const void *)(c0 + 64 * c));
                const __m256i lo = _mm256_and_si256(ch, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(ch, 4), m4);
#pragma GCC unroll 4
                for (int t = 0; t < mt; t++) {
                    const __m256i xl = bcast4(A[t * nb + b].q + 4 * c);
                    const __m256i xh = bcast4(A[t * nb + b].q + 16 + 4 * c);
                    if (qt == LK_QTYPE_Q4_0)
                        p[t] =
                            _mm256_add_epi16(p[t], _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl),
                                                                    _mm256_maddubs_epi16(hi, xh)));
                    else
                        p[t] = _mm256_add_epi32(
                            p[t], _mm256_add_epi32(dot_signed(_mm256_shuffle_epi8(tab, lo), xl),
                                                   dot_signed(_mm256_shuffle_epi8(tab, hi), xh)));
                }
            }
        }
        const __m256 s =
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(rec + 16 * h)));
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m256i i = p[t];
            if (qt == LK_QTYPE_Q4_0)
                i = _mm256_sub_epi32(_mm256_madd_epi16(i, one),
                                     _mm256_set1_epi32(8 * (a->s16[0] + a->s16[1])));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a->d), _mm256_mul_ps(s, _mm256_cvtepi32_ps(i)),
                                     acc[t]);
        }
    }
    store(j, acc, mt, o0, R, t0);
}

/* A half group of Q4_1 from its records: the nibbles are the unsigned codes (K = 0), i0 (low
 * nibbles) and i1 each added up in int16 (4 pair sums of at most 2·15·127), d and m one vcvtph2ps
 * each. */
static inline __attribute__((always_inline)) void group_ilv_q4_1(const q8v_job *j, int64_t o0,
                                                                 int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    size_t h;
    const uint8_t *rec = ilv_rec(j, o0, &h);
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi16(1);
    const q8_ablock *A = j->A + t0 * nb;
    const q8v_pf pf = q8v_next(j, o0);
    __m256 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, rec += Q8I_R * 20) {
        const uint8_t *c0 = rec + 4 * Q8I_R + 32 * h;
        __m256i pl[MT], ph[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            pl[t] = ph[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i ch = _mm256_loadu_si256((const __m256i *)(const void *)(c0 + 64 * c));
            const __m256i lo = _mm256_and_si256(ch, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(ch, 4), m4);
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                pl[t] = _mm256_add_epi16(pl[t],
                                         _mm256_maddubs_epi16(lo, bcast4(A[t * nb + b].q + 4 * c)));
                ph[t] = _mm256_add_epi16(
                    ph[t], _mm256_maddubs_epi16(hi, bcast4(A[t * nb + b].q + 16 + 4 * c)));
            }
        }
        const __m256 s =
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(rec + 16 * h)));
        const __m256 m =
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(rec + 32 + 16 * h)));
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m256 v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_madd_epi16(pl[t], one)));
            v = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_madd_epi16(ph[t], one)), v);
            v = _mm256_fmadd_ps(m, _mm256_set1_ps((float)a->s16[0]), v);
            v = _mm256_fmadd_ps(m, _mm256_set1_ps((float)a->s16[1]), v);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a->d), v, acc[t]);
        }
    }
    store(j, acc, mt, o0, R, t0);
}

/* A group of a core type (simple), read straight from its blocks. */
static inline __attribute__((always_inline)) void group_core(const q8v_job *j, int qt, int64_t o0,
                                                             int nrow, int64_t t0, int mt)
{
    if (o0 < q8i_rows(j->w)) /* half of a whole interleaved group (never NF4) */
        group_ilv(j, qt, o0, t0, mt);
    else
        group_rows(j, qt, o0, nrow, t0, mt);
}

/* A group of Q4_1 (d, m, 16 bytes of nibbles q = 0..15: value d·q + m), read straight from its
 * blocks: the nibbles are unsigned codes as they are (no correction), i0 and i1 kept apart for
 * the general product with s = d and m in both halves. */
static inline __attribute__((always_inline)) void group_q4_1(const q8v_job *j, int64_t o0, int nrow,
                                                             int64_t t0, int mt)
{
    if (o0 < q8i_rows(j->w)) { /* half of a whole interleaved group */
        group_ilv_q4_1(j, o0, t0, mt);
        return;
    }
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const q8_ablock *A = j->A + t0 * nb;
    const q8v_pf pf = q8v_next(j, o0);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i xl[MT], xh[MT], pl[MT][4], ph[MT][4];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            act(0, &A[t * nb + b], &xl[t], &xh[t]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m256i c = load2(rows, k, (size_t)b * 20 + 4);
            const __m256i lo = _mm256_and_si256(c, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                pl[t][k] = _mm256_maddubs_epi16(lo, xl[t]); /* <= 2·15·127: red4w */
                ph[t][k] = _mm256_maddubs_epi16(hi, xh[t]);
            }
        }
        const __m256 s = fp16s(rows, (size_t)b * 20), m = fp16s(rows, (size_t)b * 20 + 2);
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m256 v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(red4w(pl[t])));
            v = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(red4w(ph[t])), v);
            v = _mm256_fmadd_ps(m, _mm256_set1_ps((float)a->s16[0]), v);
            v = _mm256_fmadd_ps(m, _mm256_set1_ps((float)a->s16[1]), v);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a->d), v, acc[t]);
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

/* A group of a type read through its expander, Q8V_CH blocks of each row at a time. */
static inline __attribute__((always_inline)) void
group_expanded(const q8v_job *j, int simple, int64_t o0, int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const q8_ablock *A = j->A + t0 * nb;
    const q8v_pf pf = q8v_next(j, o0);
    __m256 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm256_setzero_ps();
    q8_wblock e[R][Q8V_CH];
    const int last = nrow > 1 ? nrow - 1 : 0; /* nrow >= 1 */
    for (int64_t b0 = 0; b0 < nb; b0 += Q8V_CH) {
        const int64_t n = nb - b0 < Q8V_CH ? nb - b0 : Q8V_CH;
        for (int r = 0; r < nrow; r++)
            j->expand(j->w, rows[r], b0, n, e[r]);
        for (int64_t c = 0; c < n; c++)
            q8v_prefetch(&pf, b0 + c);
        for (int64_t c = 0; c < n; c++) {
            const uint8_t *er[R]; /* the rows' expanded block c, in load2's lane order */
#pragma GCC unroll 8
            for (int r = 0; r < R; r++)
                er[r] = (const uint8_t *)&e[r < nrow ? r : last][c];
            __m256i xl[MT], xh[MT], pl[MT][4], ph[MT][4], f[4];
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++)
                act(0, &A[t * nb + b0 + c], &xl[t], &xh[t]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i lo = load2(er, k, 0), hi = load2(er, k, 16);
                f[k] = load2(er, k, 32); /* s0 s1 m0 m1 */
#pragma GCC unroll 4
                for (int t = 0; t < mt; t++) {
                    pl[t][k] = dot_signed(lo, xl[t]);
                    ph[t][k] = dot_signed(hi, xh[t]);
                    if (simple)
                        pl[t][k] = _mm256_add_epi32(pl[t][k], ph[t][k]);
                }
            }
            /* 4x4 transposes per lane: s0, s1, m0, m1 of the 8 rows in row order */
            const __m256i u0 = _mm256_unpacklo_epi32(f[0], f[1]);
            const __m256i u1 = _mm256_unpackhi_epi32(f[0], f[1]);
            const __m256i u2 = _mm256_unpacklo_epi32(f[2], f[3]);
            const __m256i u3 = _mm256_unpackhi_epi32(f[2], f[3]);
            const __m256 s0 = _mm256_castsi256_ps(_mm256_unpacklo_epi64(u0, u2));
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                const q8_ablock *a = &A[t * nb + b0 + c];
                const __m256 d = _mm256_set1_ps(a->d);
                if (simple) {
                    const __m256 i = _mm256_cvtepi32_ps(red4(pl[t]));
                    acc[t] = _mm256_fmadd_ps(d, _mm256_mul_ps(s0, i), acc[t]);
                    continue;
                }
                const __m256 s1 = _mm256_castsi256_ps(_mm256_unpackhi_epi64(u0, u2));
                const __m256 m0 = _mm256_castsi256_ps(_mm256_unpacklo_epi64(u1, u3));
                const __m256 m1 = _mm256_castsi256_ps(_mm256_unpackhi_epi64(u1, u3));
                __m256 v = _mm256_mul_ps(s0, _mm256_cvtepi32_ps(red4(pl[t])));
                v = _mm256_fmadd_ps(s1, _mm256_cvtepi32_ps(red4(ph[t])), v);
                v = _mm256_fmadd_ps(m0, _mm256_set1_ps((float)a->s16[0]), v);
                v = _mm256_fmadd_ps(m1, _mm256_set1_ps((float)a->s16[1]), v);
                acc[t] = _mm256_fmadd_ps(d, v, acc[t]);
            }
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

Q8V_ALL_GROUPS

size_t q8_gemv_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    return q8v_work(w, T, n_threads);
}

void q8_gemv_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    q8v_job j = {
        .w = w, .bias = bias, .X = X, .Y = Y, .T = T, .nr = R, .ilv = 1, .quant = q8x_quantize_act};
    Q8V_SET_GROUPS(j, w->qtype, q8_expander_avx2(w->qtype));
    q8v_run(&j, n_threads, work, work_size);
}
