/* q8_gemv_avx512.c — the AVX512-VNNI int8 matrix-vector kernel (q8_gemv.h), bit for bit
 * q8_gemm_fwd_ref; the avx512vnni table takes it for T <= gemv_t (q8_dispatch.c). Groups of 16
 * output rows; a zmm holds 16 bytes of each of 4 rows (lane L: row 4L+k of the group in the k-th
 * of four zmm), so one 32-value block of 16 rows is 8 zmm of codes read straight from the stored
 * blocks (or from the rows' expansion, for the types without a direct reader), and one vpdpbusd
 * per zmm and activation row multiplies them by the activation's half block broadcast to the four
 * lanes. vpdpbusd takes the codes unsigned, as q + K (Q4_0 its nibbles, K = 8; the others
 * q + 128, from the tables or by flipping the top bit); the block sum is then corrected by -K
 * times the activation's half sums (exact int32). Simple types add both halves into one
 * accumulator; the others keep i0 and i1 apart. A 4x4 transpose-add per 128-bit lane leaves the
 * 16 rows' block sums in the lanes of one zmm in row order, and the fp32 update of q8.h runs on
 * them at once. NF4 packs values 2k and 2k+1 into byte k: its high nibbles are the even values, so
 * they meet the activation's even bytes and the low nibbles its odd bytes. A whole group of a
 * weight in the interleaved layout (q8_ilv.h) reads its records instead: per block one vcvtph2ps
 * of 16 scales and one 64-byte load per 4 code bytes of the 16 rows, the lanes already the rows'
 * sums (group_ilv, group_ilv_q4_1: no gather, no reduction). */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "q8_gemv.h"
#include "q8_ilv.h"
#include "q8_x86.h"

#define R  16 /* output rows per group: the lanes of a zmm */
#define MT Q8V_MT

/* Lane L of the result: the sums of lane L of v[0..3] (element k: v[k]'s), i.e. rows in order. */
static inline __m512i red4(const __m512i v[4])
{
    const __m512i a =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
    const __m512i b =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* K of the codes: Q4_0's nibbles are q + 8, every other type's codes q + 128. */
static inline int code_k(int qt)
{
    return qt == LK_QTYPE_Q4_0 ? 8 : 128;
}

/* The activation half blocks of a[t] broadcast to the four lanes (NF4: even and odd values). */
static inline __attribute__((always_inline)) void act(int qt, const q8_ablock *a, __m512i *xl,
                                                      __m512i *xh)
{
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)a->q);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(a->q + 16));
    if (qt == LK_QTYPE_NF4) {
        const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        const __m128i l = _mm_shuffle_epi8(lo, eo), h = _mm_shuffle_epi8(hi, eo);
        *xl = _mm512_broadcast_i32x4(_mm_unpacklo_epi64(l, h));
        *xh = _mm512_broadcast_i32x4(_mm_unpackhi_epi64(l, h));
    } else {
        *xl = _mm512_broadcast_i32x4(lo);
        *xh = _mm512_broadcast_i32x4(hi);
    }
}

/* The u8 codes of block b of rows 4L+k of a core type: *lo pairs with xl, *hi with xh. */
static inline __attribute__((always_inline)) void
codes(int qt, const uint8_t *const *rows, int k, size_t boff, __m512i tab, __m512i *lo, __m512i *hi)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    if (qt == LK_QTYPE_Q8_0) {
        const __m512i f = _mm512_set1_epi8((char)0x80);
        *lo = _mm512_xor_si512(q8x_load4(rows, k, boff + 2), f);
        *hi = _mm512_xor_si512(q8x_load4(rows, k, boff + 18), f);
    } else if (qt == LK_QTYPE_NF4) {
        const __m512i c = q8x_load4(rows, k, boff);
        *lo = _mm512_shuffle_epi8(tab, _mm512_and_si512(_mm512_srli_epi16(c, 4), m4));
        *hi = _mm512_shuffle_epi8(tab, _mm512_and_si512(c, m4));
    } else {
        const __m512i c = q8x_load4(rows, k, boff + 2);
        *lo = _mm512_and_si512(c, m4);
        *hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), m4);
        if (qt == LK_QTYPE_IQ4_NL) {
            *lo = _mm512_shuffle_epi8(tab, *lo);
            *hi = _mm512_shuffle_epi8(tab, *hi);
        }
    }
}

/* The fp16 values at offset off of the 16 rows, as fp32 (built in registers: 16 narrow stores
 * and a wide load would stall). */
static inline __attribute__((always_inline)) __m512 fp16s(const uint8_t *const *rows, size_t off)
{
    __m128i h[2];
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        const uint8_t *const *p = rows + 8 * i;
        h[i] = _mm_cvtsi32_si128(*(const uint16_t *)(const void *)(p[0] + off));
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[1] + off), 1);
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[2] + off), 2);
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[3] + off), 3);
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[4] + off), 4);
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[5] + off), 5);
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[6] + off), 6);
        h[i] = _mm_insert_epi16(h[i], *(const uint16_t *)(const void *)(p[7] + off), 7);
    }
    return _mm512_cvtph_ps(_mm256_set_m128i(h[1], h[0]));
}

/* Bytes per 32-value block of a core type. */
static inline int block_bytes(int qt)
{
    return qt == LK_QTYPE_Q8_0 ? 34 : qt == LK_QTYPE_NF4 ? 16 : 18;
}

/* The scales of block b of the 16 rows of a core type (rows[r] + boff: the block's start). */
static inline __attribute__((always_inline)) __m512
scales(int qt, const q4_weight *w, const uint8_t *const *rows, int64_t b, size_t boff)
{
    if (qt == LK_QTYPE_NF4) {
        const int bs = w->block;
        const int64_t off = (w->in + bs - 1) / bs * (bs / 2) + (b * Q8_QK / bs) * 4 -
                            (int64_t)b * 16 + (int64_t)boff;
        float amax[R];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
            memcpy(&amax[r], rows[r] + off, 4);
        return _mm512_div_ps(_mm512_loadu_ps(amax), _mm512_set1_ps(127.0f));
    }
    return fp16s(rows, boff);
}

static inline __attribute__((always_inline)) void store(const q8v_job *j, const __m512 acc[MT],
                                                        int mt, int64_t o0, int nrow, int64_t t0)
{
    const __mmask16 m = (__mmask16)(nrow >= R ? 0xffff : (1u << nrow) - 1);
    const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(m, j->bias + o0) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        const __m512 v = j->bias ? _mm512_add_ps(acc[t], bias) : acc[t];
        _mm512_mask_storeu_ps(j->Y + (t0 + t) * j->w->out + o0, m, v);
    }
}

/* The 16 row pointers of a whole group at block offset P from 6 registers (P, P9 = P + 9 rb, rb,
 * 3 rb, 5 rb, -rb): every row an x86 address base + index·{1,2,4,8}, so that the group's rows
 * need no spilled pointer table. */
static inline __attribute__((always_inline)) void strided_rows(const uint8_t *P, const uint8_t *P9,
                                                               ptrdiff_t r1, ptrdiff_t r3,
                                                               ptrdiff_t r5, ptrdiff_t rm,
                                                               const uint8_t **rp)
{
    rp[0] = P, rp[1] = P + r1, rp[2] = P + 2 * r1, rp[3] = P + r3;
    rp[4] = P + 4 * r1, rp[5] = P + r5, rp[6] = P + 2 * r3, rp[7] = P9 + 2 * rm;
    rp[8] = P + 8 * r1, rp[9] = P9, rp[10] = P9 + r1, rp[11] = P9 + 2 * r1;
    rp[12] = P + 4 * r3, rp[13] = P9 + 4 * r1, rp[14] = P9 + r5, rp[15] = P9 + 2 * r3;
}

/* A group of a core type (simple), read straight from its blocks; strided: a whole group (16
 * consecutive rows), else rows past nrow repeat the last one (q8v_rows). */
static inline __attribute__((always_inline)) void
group_core_body(const q8v_job *j, int qt, int strided, int64_t o0, int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    int8_t t8[64];
    for (int i = 0; i < 64; i++)
        t8[i] = (int8_t)((qt == LK_QTYPE_NF4 ? q8_nf4_i8[i % 16] : q4_iq4nl_values[i % 16]) ^ 0x80);
    const __m512i tab = _mm512_loadu_si512(t8);
    const int kk = code_k(qt);
    const q8v_pf pf = q8v_next(j, o0);
    const q8_ablock *A = j->A + t0 * nb;
    const ptrdiff_t rb = (ptrdiff_t)j->w->row_bytes, bsz = block_bytes(qt);
    const uint8_t *P = rows[0], *P9 = rows[0] + 9 * rb;
    const int64_t nf4_mask = qt == LK_QTYPE_NF4 ? j->w->block / Q8_QK - 1 : 0; /* a power of 2 */
    __m512 acc[MT], s = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, P += bsz, P9 += bsz) {
        const uint8_t *rp[R];
        if (strided)
            strided_rows(P, P9, rb, 3 * rb, 5 * rb, -rb, rp);
        const uint8_t *const *rr = strided ? rp : rows;
        const size_t boff = strided ? 0 : (size_t)(b * bsz);
        __m512i xl[MT], xh[MT], p[MT][4];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            act(qt, &A[t * nb + b], &xl[t], &xh[t]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m512i lo, hi;
            codes(qt, rr, k, boff, tab, &lo, &hi);
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++)
                p[t][k] = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl[t]), hi, xh[t]);
        }
        if (qt != LK_QTYPE_NF4 || (b & nf4_mask) == 0) /* NF4: one absmax per w->block values */
            s = scales(qt, j->w, rr, b, boff);
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            const __m512i i =
                _mm512_sub_epi32(red4(p[t]), _mm512_set1_epi32(kk * (a->s16[0] + a->s16[1])));
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a->d), _mm512_mul_ps(s, _mm512_cvtepi32_ps(i)),
                                     acc[t]);
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

/* ---- whole groups of an interleaved weight (q8_ilv.h) ---------------------------------------- */

/* The 4 activation bytes 4c..4c+3 of a broadcast to every lane. */
static inline __m512i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* A whole group of a simple core type (Q4_0, IQ4_NL, Q8_0) from its records: per block, the 16
 * rows' scales are one vcvtph2ps and each 64-byte chunk (16 rows x 4 code bytes) one vpdpbusd per
 * activation row and nibble half with the 4 matching activation bytes broadcast, its lanes the
 * rows' sums: no reduction. Two accumulators per activation row (even and odd chunks). */
static inline __attribute__((always_inline)) void group_ilv(const q8v_job *j, int qt, int64_t o0,
                                                            int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rec = q8i_record(j->w, o0 / R, 0);
    const size_t rs = (size_t)R * q8i_bsz(qt);
    int8_t t8[64];
    for (int i = 0; i < 64; i++)
        t8[i] = (int8_t)(q4_iq4nl_values[i % 16] ^ 0x80);
    const __m512i tab = _mm512_loadu_si512(t8);
    const __m512i f = _mm512_set1_epi8((char)0x80);
    const int kk = code_k(qt);
    const q8v_pf pf = q8v_next(j, o0);
    const q8_ablock *A = j->A + t0 * nb;
    __m512 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, rec += rs) {
        const uint8_t *c0 = rec + 2 * R;
        __m512i p0[MT], p1[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            p0[t] = p1[t] = _mm512_setzero_si512();
        if (qt == LK_QTYPE_Q8_0) {
#pragma GCC unroll 8
            for (int c = 0; c < 8; c += 2) {
                const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(c0 + 64 * c), f);
                const __m512i v = _mm512_xor_si512(_mm512_loadu_si512(c0 + 64 * (c + 1)), f);
#pragma GCC unroll 4
                for (int t = 0; t < mt; t++) {
                    const int8_t *x = A[t * nb + b].q;
                    p0[t] = _mm512_dpbusd_epi32(p0[t], u, bcast4(x + 4 * c));
                    p1[t] = _mm512_dpbusd_epi32(p1[t], v, bcast4(x + 4 * c + 4));
                }
            }
        } else {
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i lo, hi;
                q8x_ilv_nibbles(qt, c0 + 64 * c, tab, &lo, &hi);
#pragma GCC unroll 4
                for (int t = 0; t < mt; t++) {
                    const int8_t *x = A[t * nb + b].q;
                    p0[t] = _mm512_dpbusd_epi32(p0[t], lo, bcast4(x + 4 * c));
                    p1[t] = _mm512_dpbusd_epi32(p1[t], hi, bcast4(x + 16 + 4 * c));
                }
            }
        }
        const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)rec));
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            const __m512i i = _mm512_sub_epi32(_mm512_add_epi32(p0[t], p1[t]),
                                               _mm512_set1_epi32(kk * (a->s16[0] + a->s16[1])));
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a->d), _mm512_mul_ps(s, _mm512_cvtepi32_ps(i)),
                                     acc[t]);
        }
    }
    store(j, acc, mt, o0, R, t0);
}

/* A whole group of Q4_1 from its records: the nibbles are the unsigned codes (K = 0), i0 (low
 * nibbles, values 0..15) and i1 kept apart for the general product, d and m one vcvtph2ps each. */
static inline __attribute__((always_inline)) void group_ilv_q4_1(const q8v_job *j, int64_t o0,
                                                                 int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rec = q8i_record(j->w, o0 / R, 0);
    const __m512i m4 = _mm512_set1_epi8(15);
    const q8v_pf pf = q8v_next(j, o0);
    const q8_ablock *A = j->A + t0 * nb;
    __m512 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, rec += R * 20) {
        __m512i pl[MT], ph[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            pl[t] = ph[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i lo, hi;
            q8x_ilv_nibbles(LK_QTYPE_Q4_1, rec + 4 * R + 64 * c, m4, &lo, &hi);
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                const int8_t *x = A[t * nb + b].q;
                pl[t] = _mm512_dpbusd_epi32(pl[t], lo, bcast4(x + 4 * c));
                ph[t] = _mm512_dpbusd_epi32(ph[t], hi, bcast4(x + 16 + 4 * c));
            }
        }
        const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)rec));
        const __m512 m =
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(rec + 2 * R)));
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m512 v = _mm512_mul_ps(s, _mm512_cvtepi32_ps(pl[t]));
            v = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(ph[t]), v);
            v = _mm512_fmadd_ps(m, _mm512_set1_ps((float)a->s16[0]), v);
            v = _mm512_fmadd_ps(m, _mm512_set1_ps((float)a->s16[1]), v);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a->d), v, acc[t]);
        }
    }
    store(j, acc, mt, o0, R, t0);
}

static inline __attribute__((always_inline)) void group_core(const q8v_job *j, int qt, int64_t o0,
                                                             int nrow, int64_t t0, int mt)
{
    if (nrow == R && j->w->ilv) /* NF4 is never interleaved */
        group_ilv(j, qt, o0, t0, mt);
    else if (nrow == R && qt != LK_QTYPE_NF4) /* NF4's absmax sits apart: no gain measured */
        group_core_body(j, qt, 1, o0, nrow, t0, mt);
    else
        group_core_body(j, qt, 0, o0, nrow, t0, mt);
}

/* A group of Q4_1 (d, m, 16 bytes of nibbles q = 0..15: value d·q + m), read straight from its
 * blocks: the nibbles are the unsigned codes themselves (K = 0), i0 and i1 kept apart for the
 * general product with s = d and m in both halves. */
static inline __attribute__((always_inline)) void
group_q4_1_body(const q8v_job *j, int strided, int64_t o0, int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const q8_ablock *A = j->A + t0 * nb;
    const __m512i m4 = _mm512_set1_epi8(15);
    const q8v_pf pf = q8v_next(j, o0);
    __m512 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm512_setzero_ps();
    const ptrdiff_t rb = (ptrdiff_t)j->w->row_bytes;
    const uint8_t *P = rows[0], *P9 = rows[0] + 9 * rb;
    for (int64_t b = 0; b < nb; b++, P += 20, P9 += 20) {
        const uint8_t *rp[R];
        if (strided)
            strided_rows(P, P9, rb, 3 * rb, 5 * rb, -rb, rp);
        const uint8_t *const *rr = strided ? rp : rows;
        const size_t boff = strided ? 0 : (size_t)b * 20;
        __m512i xl[MT], xh[MT], pl[MT][4], ph[MT][4];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            act(0, &A[t * nb + b], &xl[t], &xh[t]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i c = q8x_load4(rr, k, boff + 4);
            const __m512i lo = _mm512_and_si512(c, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), m4);
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                pl[t][k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl[t]);
                ph[t][k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xh[t]);
            }
        }
        const __m512 s = fp16s(rr, boff), m = fp16s(rr, boff + 2);
        q8v_prefetch(&pf, b);
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m512 v = _mm512_mul_ps(s, _mm512_cvtepi32_ps(red4(pl[t])));
            v = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(red4(ph[t])), v);
            v = _mm512_fmadd_ps(m, _mm512_set1_ps((float)a->s16[0]), v);
            v = _mm512_fmadd_ps(m, _mm512_set1_ps((float)a->s16[1]), v);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a->d), v, acc[t]);
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

static inline __attribute__((always_inline)) void group_q4_1(const q8v_job *j, int64_t o0, int nrow,
                                                             int64_t t0, int mt)
{
    if (nrow == R && j->w->ilv)
        group_ilv_q4_1(j, o0, t0, mt);
    else if (nrow == R)
        group_q4_1_body(j, 1, o0, nrow, t0, mt);
    else
        group_q4_1_body(j, 0, o0, nrow, t0, mt);
}

/* A group of a type read through its expander, Q8V_CH blocks of each row at a time. */
static inline __attribute__((always_inline)) void
group_expanded(const q8v_job *j, int simple, int64_t o0, int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const q8_ablock *A = j->A + t0 * nb;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const q8v_pf pf = q8v_next(j, o0);
    __m512 acc[MT];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t] = _mm512_setzero_ps();
    q8_wblock e[R][Q8V_CH];
    const int last = nrow > 1 ? nrow - 1 : 0; /* nrow >= 1 */
    for (int64_t b0 = 0; b0 < nb; b0 += Q8V_CH) {
        const int64_t n = nb - b0 < Q8V_CH ? nb - b0 : Q8V_CH;
        for (int r = 0; r < nrow; r++)
            j->expand(j->w, rows[r], b0, n, e[r]);
        for (int64_t c = 0; c < n; c++)
            q8v_prefetch(&pf, b0 + c);
        for (int64_t c = 0; c < n; c++) {
            const uint8_t *er[R]; /* the rows' expanded block c, in q8x_load4's lane order */
#pragma GCC unroll 16
            for (int r = 0; r < R; r++)
                er[r] = (const uint8_t *)&e[r < nrow ? r : last][c];
            __m512i xl[MT], xh[MT], pl[MT][4], ph[MT][4], f[4];
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++)
                act(0, &A[t * nb + b0 + c], &xl[t], &xh[t]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i lo = _mm512_xor_si512(q8x_load4(er, k, 0), flip);
                const __m512i hi = _mm512_xor_si512(q8x_load4(er, k, 16), flip);
                f[k] = q8x_load4(er, k, 32); /* s0 s1 m0 m1 */
#pragma GCC unroll 4
                for (int t = 0; t < mt; t++) {
                    pl[t][k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl[t]);
                    if (simple)
                        pl[t][k] = _mm512_dpbusd_epi32(pl[t][k], hi, xh[t]);
                    else
                        ph[t][k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xh[t]);
                }
            }
            /* 4x4 transposes per lane: s0, s1, m0, m1 of the 16 rows in row order */
            const __m512i u0 = _mm512_unpacklo_epi32(f[0], f[1]),
                          u1 = _mm512_unpackhi_epi32(f[0], f[1]);
            const __m512i u2 = _mm512_unpacklo_epi32(f[2], f[3]),
                          u3 = _mm512_unpackhi_epi32(f[2], f[3]);
            const __m512 s0 = _mm512_castsi512_ps(_mm512_unpacklo_epi64(u0, u2));
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++) {
                const q8_ablock *a = &A[t * nb + b0 + c];
                const __m512 d = _mm512_set1_ps(a->d);
                if (simple) {
                    const __m512i i = _mm512_sub_epi32(
                        red4(pl[t]), _mm512_set1_epi32(128 * (a->s16[0] + a->s16[1])));
                    acc[t] = _mm512_fmadd_ps(d, _mm512_mul_ps(s0, _mm512_cvtepi32_ps(i)), acc[t]);
                    continue;
                }
                const __m512 s1 = _mm512_castsi512_ps(_mm512_unpackhi_epi64(u0, u2));
                const __m512 m0 = _mm512_castsi512_ps(_mm512_unpacklo_epi64(u1, u3));
                const __m512 m1 = _mm512_castsi512_ps(_mm512_unpackhi_epi64(u1, u3));
                const __m512i i0 =
                    _mm512_sub_epi32(red4(pl[t]), _mm512_set1_epi32(128 * a->s16[0]));
                const __m512i i1 =
                    _mm512_sub_epi32(red4(ph[t]), _mm512_set1_epi32(128 * a->s16[1]));
                __m512 v = _mm512_mul_ps(s0, _mm512_cvtepi32_ps(i0));
                v = _mm512_fmadd_ps(s1, _mm512_cvtepi32_ps(i1), v);
                v = _mm512_fmadd_ps(m0, _mm512_set1_ps((float)a->s16[0]), v);
                v = _mm512_fmadd_ps(m1, _mm512_set1_ps((float)a->s16[1]), v);
                acc[t] = _mm512_fmadd_ps(d, v, acc[t]);
            }
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

Q8V_ALL_GROUPS

size_t q8_gemv_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads)
{
    return q8v_work(w, T, n_threads);
}

void q8_gemv_fwd_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                            float *Y, int n_threads, void *work, size_t work_size)
{
    q8v_job j = {
        .w = w, .bias = bias, .X = X, .Y = Y, .T = T, .nr = R, .ilv = 1, .quant = q8x_quantize_act};
    Q8V_SET_GROUPS(j, w->qtype, q8_expander_avx2(w->qtype));
    q8v_run(&j, n_threads, work, work_size);
}
