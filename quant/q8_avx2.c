/* q8_avx2.c — the AVX2 int8 GEMM (q8.h), bit for bit the reference's arithmetic. The structure of
 * q8_avx512.c (packed panels of the weight over all blocks, q8_pack.h, packed a chunk of up to
 * CHUNK_BYTES at a time and kept in L2 while every group of 4 activation rows runs over them,
 * then a register-blocked microkernel) with 8 output rows per ymm and 4 activation rows per
 * call. AVX2 has no vpdpbusd, and its vpmaddubsw (unsigned by signed bytes into saturating int16
 * pairs) costs as much as the vpmaddwd that widens it, so the products are arranged to add up in
 * int16 over a whole block (8 groups of 4 values) and be widened once per block:
 *  - Q4_0: the panel holds the nibbles (q + 8, 0..15); a pair sums to at most 2·15·127 = 3810, 8
 *    groups to 30480.
 *  - Q8_0 (the backward's transposed copies too), IQ4_NL and NF4: panels of 16 rows whose codes
 *    are widened to int16 at packing, as the activations are once per row (widen_row), so one
 *    vpmaddwd gives two exact products per int32 lane with no per-block widening: 16 vpmaddwd +
 *    15 vpaddd + 3 fp32 operations per 256 products and ymm, against the split codes' 16 + 16 + 6
 *    (about +10 %: 4x16 keeps 8 int32 sums, 2 weight vectors and a broadcast in registers).
 *  - every other type: the signed code q (-128..127) is stored split, q + 128 = 16·h + l with
 *    l, h in 0..15 (two 32-byte code planes per block): Σ x·q = Σ x·l + 16·Σ x·(h - 8), each
 *    of the two sums again exact in int16 over a block. Two vpmaddubsw per 32 products instead
 *    of the sign trick's vpsignb + vpmaddubsw + vpmaddwd (one pipe-pair op fewer, and no widening
 *    per group).
 * The -8·Σx of the nibbles (Q4_0's q = nibble - 8, the split codes' h - 8) needs no correction
 * per block: each int16 lane of those sums starts at -8 times the sum of its own 16 activations
 * (lane_inits: a dword per block or half-block, once per activation row, in the job's E), and
 * every partial sum stays within 16*8*127 = 16256.
 * Limits measured on this Zen 4 VM (one thread, CPU time; BENCHMARKS.md): a register-only loop
 * issues 2 vpmaddubsw but only ~1.3 vpaddw per cycle (8 + 8 in 4.9 cycles, 8 + 4 in 4.1), so 32
 * products of 8-bit codes (2 + 2 operations) take ~1.2 cycles: ~190 GFLOP/s at 3.64 GHz (fp32
 * FMA peak 116, sgemm ~100) before the widening and fp32 part per block (6 operations per 32 of
 * the inner loop); broadcasts from memory are free. The microkernel reaches ~140 with its data in
 * L1, 125-135 in lora-bench-kernels; the int16 kernel 140-150. Tried and not kept: the int16
 * kernel at 4x8 (5 loads per 8 operations: no faster than the split codes), 128 / 512 KiB chunks
 * (no change); without the pinned chains (PIN) the split kernel loses 30 %.
 * The fp32 part per block (convert, scale, fma by the activation's d) runs on 8 output rows at
 * once, in increasing block order for every (t, o), as q8_ref.c. The core types (Q4_0, IQ4_NL,
 * Q8_0, NF4) are packed straight from their blocks, four rows at a time through 4x4 transposes;
 * the others (the GGUF read-only types) are expanded 8 rows at a time (q8_expander_avx2) and go
 * through the same transposes (pack_expanded). Helpers are static (compiled with -mavx2). */
#include <immintrin.h>
#include <string.h>

#include "q8.h"
#include "q8_pack.h"
#include "q8_ilv.h"
#include "q8_x86.h"
#include "core/pool.h"
#include "core/status.h"

#define NR   8      /* output rows per panel: one ymm of int32 / fp32 lanes */
#define NR16 16     /* output rows per panel of the int16 kernel (Q8_0, IQ4_NL, NF4): two ymm */
#define MR   Q8P_MR /* activation rows per microkernel call */
/* Panels packed per chunk (q8p_npc): up to this many bytes, kept in the L2 cache while every
 * group of MR activation rows runs over them. */
#define CHUNK_BYTES (256 * 1024)

static inline __m256i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* Keeps v in a register at this point of its chain of adds, so that the compiler does not
 * re-associate the chains of the MR rows into trees with more live vectors than the 16 ymm
 * registers (spills in the inner loop). The integer sums are exact in any order. */
#define PIN(v) __asm__("" : "+x"(v))

/* The starting values of the int16 accumulators (the job's E: two dwords per activation block).
 * A code c in -8..7 is stored as c + 8 (Q4_0's nibble q + 8; the high part h of the split codes
 * of the other types, h - 8 = c), so a lane summing the 16 products c·x of its activations by
 * vpmaddubsw starts at -8·Σ of those 16 activations: every partial sum is then a sum of 16 terms
 * of at most 8·127 (c·x done, -8·x still to come), in int16, and the lane ends at exactly Σ x·c
 * with no correction per block. Lane 0 of a dword takes values 4g, 4g+1 of the block, lane 1
 * 4g+2, 4g+3. Simple types: one dword for the whole block (E[0]); the others one per half
 * (groups 0..3: E[0], 4..7: E[1]). */
static void lane_inits(const q8p_job *j, int64_t t)
{
    const q8_ablock *A = j->A + t * j->nb;
    int32_t *E = (int32_t *)(void *)(j->E + (size_t)(t * j->nb) * 8); /* [nb][2] */
    const __m256i ones = _mm256_set1_epi8(1);
    const __m128i m8 = _mm_set1_epi16(-8);
    for (int64_t b = 0; b < j->nb; b++) {
        /* pair sums x[2i] + x[2i+1]: dword g of the block holds lanes 0 and 1 of group g */
        const __m256i p =
            _mm256_maddubs_epi16(ones, _mm256_loadu_si256((const __m256i *)(const void *)A[b].q));
        __m128i h0 = _mm256_castsi256_si128(p), h1 = _mm256_extracti128_si256(p, 1);
        h0 = _mm_add_epi16(h0, _mm_shuffle_epi32(h0, 0x4e));
        h0 = _mm_add_epi16(h0, _mm_shuffle_epi32(h0, 0xb1)); /* groups 0..3 in every dword */
        h1 = _mm_add_epi16(h1, _mm_shuffle_epi32(h1, 0x4e));
        h1 = _mm_add_epi16(h1, _mm_shuffle_epi32(h1, 0xb1)); /* groups 4..7 */
        if (j->simple) {
            E[2 * b] = _mm_cvtsi128_si32(_mm_mullo_epi16(_mm_add_epi16(h0, h1), m8));
            E[2 * b + 1] = 0;
        } else {
            E[2 * b] = _mm_cvtsi128_si32(_mm_mullo_epi16(h0, m8));
            E[2 * b + 1] = _mm_cvtsi128_si32(_mm_mullo_epi16(h1, m8));
        }
    }
}

/* Q4_0 (panel of nibbles, q + 8): the block's int32 sums Σ x·q for mr activation rows, each
 * int16 lane started at its E value (lane_inits) and widened once. */
static inline __attribute__((always_inline)) void block_sums_q4_0(const uint8_t *p,
                                                                  const q8_ablock *A,
                                                                  const int32_t *E, int64_t nb,
                                                                  int64_t b, int mr, __m256i ia[MR])
{
    __m256i s16[MR];
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        s16[t] = _mm256_set1_epi32(E[2 * (t * nb + b)]);
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(p + g * 32));
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            s16[t] =
                _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(w, bcast4(A[t * nb + b].q + 4 * g)));
            PIN(s16[t]);
        }
    }
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        ia[t] = _mm256_madd_epi16(s16[t], ones);
}

/* The other types (split codes, u = q + 128 = 16·h + l): the int32 sums Σ x·q over groups
 * [g0, g1) of block b for mr activation rows, as Σ x·l + 16·Σ x·(h - 8). vpmaddubsw takes l or
 * h (0..15, unsigned) by x (|x| <= 127): a pair sums to at most 2·15·127 = 3810, so the 8 groups
 * of a block add up in int16 (<= 30480); the h lanes start at their E value (lane_inits: e,
 * index 0 for a whole block, 1 for the second half) and end at Σ x·(h - 8). vpmaddwd widens them
 * (by 1 and by 16, exact in int32). */
static inline __attribute__((always_inline)) void block_sums(const uint8_t *p, const q8_ablock *A,
                                                             const int32_t *E, int64_t nb,
                                                             int64_t b, int mr, int g0, int g1,
                                                             int e, __m256i ia[MR])
{
    __m256i sl[MR], sh[MR];
    {
        const __m256i l = _mm256_loadu_si256((const __m256i *)(const void *)(p + g0 * 32));
        const __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(p + 256 + g0 * 32));
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const __m256i x = bcast4(A[t * nb + b].q + 4 * g0);
            sl[t] = _mm256_maddubs_epi16(l, x);
            sh[t] = _mm256_add_epi16(_mm256_set1_epi32(E[2 * (t * nb + b) + e]),
                                     _mm256_maddubs_epi16(h, x));
            PIN(sl[t]);
            PIN(sh[t]);
        }
    }
#pragma GCC unroll 8
    for (int g = g0 + 1; g < g1; g++) {
        const __m256i l = _mm256_loadu_si256((const __m256i *)(const void *)(p + g * 32));
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            sl[t] =
                _mm256_add_epi16(sl[t], _mm256_maddubs_epi16(l, bcast4(A[t * nb + b].q + 4 * g)));
            PIN(sl[t]);
        }
        const __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(p + 256 + g * 32));
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            sh[t] =
                _mm256_add_epi16(sh[t], _mm256_maddubs_epi16(h, bcast4(A[t * nb + b].q + 4 * g)));
            PIN(sh[t]);
        }
    }
    const __m256i ones = _mm256_set1_epi16(1), k16 = _mm256_set1_epi16(16);
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        ia[t] = _mm256_add_epi32(_mm256_madd_epi16(sl[t], ones), _mm256_madd_epi16(sh[t], k16));
}

static inline __attribute__((always_inline)) void kernel_simple(const uint8_t *panel, int64_t nb,
                                                                const q8_ablock *A,
                                                                const int32_t *E, int mr, int q4_0,
                                                                __m256 acc[MR])
{
    const int cb = q4_0 ? 32 : 64;
    const size_t pb = q8p_block_bytes_cb(NR, 1, cb);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        __m256i ia[MR];
        if (q4_0)
            block_sums_q4_0(p, A, E, nb, b, mr, ia);
        else
            block_sums(p, A, E, nb, b, mr, 0, 8, 0, ia);
        const __m256 s = _mm256_loadu_ps((const float *)(const void *)(p + NR * cb));
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(A[t * nb + b].d),
                                     _mm256_mul_ps(s, _mm256_cvtepi32_ps(ia[t])), acc[t]);
    }
}

static inline __attribute__((always_inline)) void kernel_general(const uint8_t *panel, int64_t nb,
                                                                 const q8_ablock *A,
                                                                 const int32_t *E, int mr,
                                                                 __m256 acc[MR])
{
    const size_t pb = q8p_block_bytes_cb(NR, 0, 64);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *F = (const float *)(const void *)(p + NR * 64); /* S0 S1 M0 M1 */
        __m256i ia[MR];
        __m256 v[MR];
        block_sums(p, A, E, nb, b, mr, 0, 4, 0, ia);
        const __m256 s0 = _mm256_loadu_ps(F), s1 = _mm256_loadu_ps(F + NR);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++)
            v[t] = _mm256_mul_ps(s0, _mm256_cvtepi32_ps(ia[t]));
        block_sums(p, A, E, nb, b, mr, 4, 8, 1, ia);
        const __m256 m0 = _mm256_loadu_ps(F + 2 * NR), m1 = _mm256_loadu_ps(F + 3 * NR);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const q8_ablock *a = &A[t * nb + b];
            __m256 u = _mm256_fmadd_ps(s1, _mm256_cvtepi32_ps(ia[t]), v[t]);
            u = _mm256_fmadd_ps(m0, _mm256_set1_ps((float)a->s16[0]), u);
            u = _mm256_fmadd_ps(m1, _mm256_set1_ps((float)a->s16[1]), u);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a->d), u, acc[t]);
        }
    }
}

/* q8p_store of the 8 lanes of v at Y's columns [o0, o0+nrow), nrow >= 1: vector loads and
 * stores for a whole 8 (the same fp32 sums). */
static inline __attribute__((always_inline)) void store8(const q8p_job *j, int64_t t, int64_t o0,
                                                         int nrow, __m256 v)
{
    if (nrow >= NR) {
        float *y = q8p_yrow(j, t) + o0;
        if (q8p_adds(j, t))
            v = _mm256_add_ps(_mm256_loadu_ps(y), v);
        else if (j->bias)
            v = _mm256_add_ps(v, _mm256_loadu_ps(j->bias + o0));
        _mm256_storeu_ps(y, v);
        return;
    }
    float tmp[NR];
    _mm256_storeu_ps(tmp, v);
    q8p_store(j, t, o0, nrow, tmp);
}

static inline __attribute__((always_inline)) void rows(const q8p_job *j, const uint8_t *panel,
                                                       int64_t t0, int mr, int64_t o0, int nrow)
{
    __m256 acc[MR];
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        acc[t] = _mm256_setzero_ps();
    const q8_ablock *A = j->A + t0 * j->nb;
    const int32_t *E = (const int32_t *)(const void *)(j->E + (size_t)(t0 * j->nb) * 8);
    if (j->kshift == 3) /* separate copies: a constant q4_0 in each */
        kernel_simple(panel, j->nb, A, E, mr, 1, acc);
    else if (j->simple)
        kernel_simple(panel, j->nb, A, E, mr, 0, acc);
    else
        kernel_general(panel, j->nb, A, E, mr, acc);
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        store8(j, t0 + t, o0, nrow, acc[t]);
}

/* ---- packing the core types straight from their blocks -------------------------------------- */

/* 4x4 dword transpose: group g0+g of rows r0..r0+3 to W[g0+g][r0..r0+3] (p). */
static inline void store_t4s(const __m128i r[4], uint8_t *p, size_t stride)
{
    const __m128i a = _mm_unpacklo_epi32(r[0], r[1]), b = _mm_unpackhi_epi32(r[0], r[1]);
    const __m128i c = _mm_unpacklo_epi32(r[2], r[3]), d = _mm_unpackhi_epi32(r[2], r[3]);
    _mm_storeu_si128((__m128i *)(void *)(p + 0 * stride), _mm_unpacklo_epi64(a, c));
    _mm_storeu_si128((__m128i *)(void *)(p + 1 * stride), _mm_unpackhi_epi64(a, c));
    _mm_storeu_si128((__m128i *)(void *)(p + 2 * stride), _mm_unpacklo_epi64(b, d));
    _mm_storeu_si128((__m128i *)(void *)(p + 3 * stride), _mm_unpackhi_epi64(b, d));
}

static inline void store_t4(const __m128i r[4], uint8_t *p)
{
    store_t4s(r, p, NR * 4);
}

/* The codes of values 0..15 (lo) and 16..31 (hi) of 4 rows into the panel block p at rows
 * r0..r0+3: Q4_0's nibbles as they are (split 0), the signed codes of the others split as
 * q + 128 = 16·h + l, l at p (groups 0..7), h 8 groups further (split 1). */
static inline void store_codes(const __m128i lo[4], const __m128i hi[4], int split, uint8_t *p,
                               int r0)
{
    if (!split) {
        store_t4(lo, p + r0 * 4);
        store_t4(hi, p + 4 * NR * 4 + r0 * 4);
        return;
    }
    const __m128i m4 = _mm_set1_epi8(15), k80 = _mm_set1_epi8((char)0x80);
    __m128i l[4], h[4];
    for (int half = 0; half < 2; half++) {
        for (int i = 0; i < 4; i++) {
            const __m128i u = _mm_xor_si128(half ? hi[i] : lo[i], k80);
            l[i] = _mm_and_si128(u, m4);
            h[i] = _mm_and_si128(_mm_srli_epi16(u, 4), m4);
        }
        store_t4(l, p + half * 4 * NR * 4 + r0 * 4);
        store_t4(h, p + 8 * NR * 4 + half * 4 * NR * 4 + r0 * 4);
    }
}

/* Codes of values 0..15 (lo) and 16..31 (hi) of block b of a row, and its scale: Q4_0 as its
 * nibbles (q + 8), the others signed. */
static inline void codes4(int qt, const q4_weight *w, const uint8_t *row, int64_t b, __m128i tab,
                          __m128i *lo, __m128i *hi, float *s)
{
    const __m128i m4 = _mm_set1_epi8(15);
    if (qt == LK_QTYPE_Q8_0) {
        const q4_block_q8_0 *x = (const q4_block_q8_0 *)(const void *)row + b;
        *lo = _mm_loadu_si128((const __m128i *)(const void *)x->qs);
        *hi = _mm_loadu_si128((const __m128i *)(const void *)(x->qs + 16));
        *s = _cvtsh_ss(x->d);
    } else if (qt == LK_QTYPE_NF4) { /* byte k holds value 2k (high nibble) and 2k+1 */
        const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(row + b * 16));
        const __m128i h = _mm_and_si128(_mm_srli_epi16(c, 4), m4), l = _mm_and_si128(c, m4);
        *lo = _mm_shuffle_epi8(tab, _mm_unpacklo_epi8(h, l));
        *hi = _mm_shuffle_epi8(tab, _mm_unpackhi_epi8(h, l));
        const int bs = w->block;
        float amax;
        memcpy(&amax, row + (w->in + bs - 1) / bs * (bs / 2) + (b * Q8_QK / bs) * 4, 4);
        *s = amax / 127.0f;
    } else { /* Q4_0 (nibbles) and IQ4_NL (signed, through the table): the same layout */
        const q4_block_q4_0 *x = (const q4_block_q4_0 *)(const void *)row + b;
        const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)x->qs);
        *lo = _mm_and_si128(c, m4);
        *hi = _mm_and_si128(_mm_srli_epi16(c, 4), m4);
        if (qt == LK_QTYPE_IQ4_NL) {
            *lo = _mm_shuffle_epi8(tab, *lo);
            *hi = _mm_shuffle_epi8(tab, *hi);
        }
        *s = _cvtsh_ss(x->d);
    }
}

/* v[k] dword i -> out[i] dword k (a 4x4 dword transpose). */
static inline void transpose4(const __m128i v[4], __m128i out[4])
{
    const __m128i a = _mm_unpacklo_epi32(v[0], v[1]), b = _mm_unpacklo_epi32(v[2], v[3]);
    const __m128i c = _mm_unpackhi_epi32(v[0], v[1]), d = _mm_unpackhi_epi32(v[2], v[3]);
    out[0] = _mm_unpacklo_epi64(a, b);
    out[1] = _mm_unpackhi_epi64(a, b);
    out[2] = _mm_unpacklo_epi64(c, d);
    out[3] = _mm_unpackhi_epi64(c, d);
}

/* codes4 of block b of the 4 rows o..o+3 (o % 4 == 0) of a whole group of an interleaved weight
 * (q8_ilv.h): their 4-byte pieces of each 64-byte chunk are 16 contiguous bytes, a 4x4 dword
 * transpose makes each row's code bytes; the 4 scales are one conversion. */
static inline void codes4_ilv(int qt, const q4_weight *w, int64_t o, int64_t b, __m128i tab,
                              __m128i lo[4], __m128i hi[4], float s[4])
{
    const __m128i m4 = _mm_set1_epi8(15);
    const uint8_t *rec = q8i_record(w, o / Q8I_R, b);
    const size_t r = (size_t)(o % Q8I_R);
    const uint8_t *c0 = rec + 2 * Q8I_R + 4 * r;
    __m128i v[4];
    for (int c = 0; c < 4; c++)
        v[c] = _mm_loadu_si128((const __m128i *)(const void *)(c0 + 64 * c));
    transpose4(v, lo);
    if (qt == LK_QTYPE_Q8_0) {
        for (int c = 0; c < 4; c++)
            v[c] = _mm_loadu_si128((const __m128i *)(const void *)(c0 + 64 * (4 + c)));
        transpose4(v, hi);
    } else { /* Q4_0 (nibbles) and IQ4_NL (signed, through the table) */
        for (int i = 0; i < 4; i++) {
            hi[i] = _mm_and_si128(_mm_srli_epi16(lo[i], 4), m4);
            lo[i] = _mm_and_si128(lo[i], m4);
            if (qt == LK_QTYPE_IQ4_NL) {
                lo[i] = _mm_shuffle_epi8(tab, lo[i]);
                hi[i] = _mm_shuffle_epi8(tab, hi[i]);
            }
        }
    }
    _mm_storeu_ps(s, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)(rec + 2 * r))));
}

/* The codes of 4 rows as int16 pairs into the int16 panel block p (16 rows, see pack_w16). */
static inline void store_codes16(const __m128i lo[4], const __m128i hi[4], uint8_t *p, int r0)
{
    __m128i v[4][4];
    for (int i = 0; i < 4; i++) {
        v[0][i] = _mm_cvtepi8_epi16(lo[i]);
        v[1][i] = _mm_cvtepi8_epi16(_mm_srli_si128(lo[i], 8));
        v[2][i] = _mm_cvtepi8_epi16(hi[i]);
        v[3][i] = _mm_cvtepi8_epi16(_mm_srli_si128(hi[i], 8));
    }
    for (int k = 0; k < 4; k++) /* pairs 4k .. 4k+3 */
        store_t4s(v[k], p + k * 4 * NR16 * 4 + r0 * 4, NR16 * 4);
}

/* Rows [o0, o0+nrow) of a core type into a panel of nr rows, 4 at a time (rows past nrow: scale
 * 0): codes as nibbles (split 0, Q4_0), split (1) or int16 (2, panels of 16 rows). */
static inline __attribute__((always_inline)) void
pack_direct(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel, int nr, int split)
{
    const q4_weight *w = j->w;
    const int qt = w->qtype;
    const __m128i tab = _mm_loadu_si128(
        (const __m128i *)(const void *)(qt == LK_QTYPE_NF4 ? q8_nf4_i8 : q4_iq4nl_values));
    const size_t pb = q8p_block_bytes_cb(nr, 1, j->cb);
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const uint8_t *rows[4];
        for (int i = 0; i < 4; i++) {
            const int r = r0 + i < nrow ? r0 + i : nrow - 1;
            rows[i] = (const uint8_t *)w->data + (size_t)(o0 + r) * w->row_bytes;
        }
        const int ilv = o0 + r0 + 4 <= q8i_rows(w); /* 4 rows of a whole interleaved group */
        for (int64_t b = 0; b < j->nb; b++) {
            uint8_t *p = panel + (size_t)b * pb;
            __m128i lo[4], hi[4];
            float *S = (float *)(void *)(p + (size_t)nr * j->cb) + r0;
            if (ilv)
                codes4_ilv(qt, w, o0 + r0, b, tab, lo, hi, S);
            for (int i = 0; !ilv && i < 4; i++) {
                codes4(qt, w, rows[i], b, tab, &lo[i], &hi[i], &S[i]);
                if (r0 + i >= nrow)
                    S[i] = 0.0f;
            }
            if (split == 2)
                store_codes16(lo, hi, p, r0);
            else
                store_codes(lo, hi, split, p, r0);
        }
    }
}

static void pack_core(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel)
{
    pack_direct(j, o0, nrow, panel, NR, j->w->qtype != LK_QTYPE_Q4_0);
}

/* ---- packing the other types: 8 rows expanded, then the transposes of pack_core ------------ */

#define PE_CHUNK 8 /* blocks expanded per row at a time (a k-quant super-block) */

/* Rows [o0, o0+nrow) of a type without a direct packer (the GGUF read-only types): the 8 rows
 * are expanded PE_CHUNK blocks at a time by j->expand (q8_expander_avx2) and their signed codes go
 * into the panel through store_t4; the same panel as q8p_pack's, without its per-row scatter.
 * Rows past nrow repeat the last row with scales and mins 0. */
static void pack_expanded(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel)
{
    const q4_weight *w = j->w;
    const size_t pb = q8p_block_bytes_cb(NR, j->simple, j->cb);
    q8_wblock e[NR][PE_CHUNK];
    uint8_t plain[PE_CHUNK * sizeof(q4_block_q8_0)]; /* an interleaved row's blocks (Q4_1) */
    const int last = nrow > 1 ? nrow - 1 : 0;        /* nrow >= 1 */
    for (int64_t b0 = 0; b0 < j->nb; b0 += PE_CHUNK) {
        const int64_t n = j->nb - b0 < PE_CHUNK ? j->nb - b0 : PE_CHUNK;
        for (int r = 0; r < nrow; r++)
            if (w->ilv)
                j->expand(w, q8i_blocks(w, o0 + r, b0, n, plain), 0, n, e[r]);
            else
                j->expand(w, (const uint8_t *)w->data + (size_t)(o0 + r) * w->row_bytes, b0, n,
                          e[r]);
        for (int64_t c = 0; c < n; c++) {
            uint8_t *p = panel + (size_t)(b0 + c) * pb;
            float *f = (float *)(void *)(p + NR * j->cb); /* S0 [S1 M0 M1] */
            for (int r0 = 0; r0 < NR; r0 += 4) {
                __m128i lo[4], hi[4];
                for (int i = 0; i < 4; i++) {
                    const int8_t *q = e[r0 + i < nrow ? r0 + i : last][c].q;
                    lo[i] = _mm_loadu_si128((const __m128i *)(const void *)q);
                    hi[i] = _mm_loadu_si128((const __m128i *)(const void *)(q + 16));
                }
                store_codes(lo, hi, 1, p, r0);
            }
            for (int r = 0; r < NR; r++) {
                const q8_wblock *x = &e[r < nrow ? r : 0][c];
                const int in = r < nrow;
                f[r] = in ? x->s[0] : 0.0f;
                if (!j->simple) {
                    f[NR + r] = in ? x->s[1] : 0.0f;
                    f[2 * NR + r] = in ? x->m[0] : 0.0f;
                    f[3 * NR + r] = in ? x->m[1] : 0.0f;
                }
            }
        }
    }
}

Q8P_ROWS_FNS(rows)

/* ---- Q8_0, IQ4_NL, NF4: int16 codes, 16 output rows per panel ------------------------------ */

/* 1 for the types that take it: the core types with signed 8-bit codes (Q8_0, the backward's
 * transposed copies, IQ4_NL and NF4 through their int8 codebooks). */
static int is_w16(int qtype)
{
    return qtype == LK_QTYPE_Q8_0 || qtype == LK_QTYPE_IQ4_NL || qtype == LK_QTYPE_NF4;
}

/* The activation row t widened to int16 (the job's E: [nb][32] int16). */
static void widen_row(const q8p_job *j, int64_t t)
{
    const q8_ablock *A = j->A + t * j->nb;
    int16_t *X16 = (int16_t *)(void *)(j->E + (size_t)(t * j->nb) * 64);
    for (int64_t b = 0; b < j->nb; b++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)A[b].q);
        _mm256_storeu_si256((__m256i *)(void *)(X16 + 32 * b),
                            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)));
        _mm256_storeu_si256((__m256i *)(void *)(X16 + 32 * b + 16),
                            _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)));
    }
}

/* Rows [o0, o0+nrow) into an int16 panel: per block, pair k (values 2k, 2k+1) of the 16 rows at
 * p + 64k (rows 0..7 in its first 32 bytes, 8..15 in the next), then S0[16]. Rows past nrow
 * repeat the last one with scale 0. */
static void pack_w16(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel)
{
    pack_direct(j, o0, nrow, panel, NR16, 2);
}

/* Y rows [t0, t0+mr) for the 16 rows of an int16 panel: per block, vpmaddwd of each pair of
 * codes by the activation pair (int32, exact), 16 pairs summed in int32 in two ymm per row. */
static inline __attribute__((always_inline)) void rows16(const q8p_job *j, const uint8_t *panel,
                                                         int64_t t0, int mr, int64_t o0, int nrow)
{
    const int64_t nb = j->nb;
    const q8_ablock *A = j->A + t0 * nb;
    const int16_t *X16 = (const int16_t *)(const void *)(j->E + (size_t)(t0 * nb) * 64);
    const size_t pb = q8p_block_bytes_cb(NR16, 1, 64);
    __m256 acc[MR][2];
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        __m256i ia[MR][2];
        {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)p);
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
#pragma GCC unroll 4
            for (int t = 0; t < mr; t++) {
                const __m256i x = bcast4((const int8_t *)(X16 + (t * nb + b) * 32));
                ia[t][0] = _mm256_madd_epi16(w0, x);
                ia[t][1] = _mm256_madd_epi16(w1, x);
                PIN(ia[t][0]);
                PIN(ia[t][1]);
            }
        }
#pragma GCC unroll 15
        for (int k = 1; k < 16; k++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 64 * k));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 64 * k + 32));
#pragma GCC unroll 4
            for (int t = 0; t < mr; t++) {
                const __m256i x = bcast4((const int8_t *)(X16 + (t * nb + b) * 32 + 2 * k));
                ia[t][0] = _mm256_add_epi32(ia[t][0], _mm256_madd_epi16(w0, x));
                ia[t][1] = _mm256_add_epi32(ia[t][1], _mm256_madd_epi16(w1, x));
                PIN(ia[t][0]);
                PIN(ia[t][1]);
            }
        }
        const float *S = (const float *)(const void *)(p + NR16 * 64);
        const __m256 s0 = _mm256_loadu_ps(S), s1 = _mm256_loadu_ps(S + 8);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const __m256 d = _mm256_set1_ps(A[t * nb + b].d);
            acc[t][0] =
                _mm256_fmadd_ps(d, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(ia[t][0])), acc[t][0]);
            acc[t][1] =
                _mm256_fmadd_ps(d, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(ia[t][1])), acc[t][1]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++) {
        store8(j, t0 + t, o0, nrow, acc[t][0]);
        if (nrow > NR)
            store8(j, t0 + t, o0 + NR, nrow - NR, acc[t][1]);
    }
}

Q8P_ROWS_FNS(rows16)

/* Panel code bytes per row and block: Q4_0's nibbles, or the two parts of the split codes. */
static int code_bytes(const q4_weight *w)
{
    return w->qtype == LK_QTYPE_Q4_0 ? 32 : 64;
}

size_t q8_gemm_fwd_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    if (is_w16(w->qtype))
        return q8p_work_ext(w, T, n_threads, NR16, 64, CHUNK_BYTES, 64);
    return q8p_work_ext(w, T, n_threads, NR, code_bytes(w), CHUNK_BYTES, 8);
}

/* The forward, one term (two 0) or two (q8_fwd2_fn), accumulating with add (q8_fwd_add_fn). */
static void fwd_run(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                    int n_threads, void *work, size_t work_size, int two, int add)
{
    q8p_job j = {.w = w,
                 .bias = bias,
                 .X = X,
                 .Y = Y,
                 .T = T,
                 .nr = NR,
                 .kshift = w->qtype == LK_QTYPE_Q4_0 ? 3 : 0,
                 .quant = q8x_quantize_act,
                 .quant2 = two ? q8x_quantize_act2 : NULL,
                 .add = add,
                 .pack = q8p_core(w->qtype) ? pack_core : pack_expanded,
                 .ilv = 1,
                 .expand = q8_expander_avx2(w->qtype),
                 .chunk_bytes = CHUNK_BYTES,
                 .cb = code_bytes(w),
                 .ext_bytes = 8,
                 .ext = lane_inits,
                 .rows = {rows_1, rows_2, rows_3, rows_4}};
    if (is_w16(w->qtype)) {
        j.nr = NR16;
        j.pack = pack_w16;
        j.ext_bytes = 64;
        j.ext = widen_row;
        j.rows[0] = rows16_1;
        j.rows[1] = rows16_2;
        j.rows[2] = rows16_3;
        j.rows[3] = rows16_4;
    }
    q8p_run(&j, n_threads, work, work_size);
}

void q8_gemm_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 0, 0);
}

size_t q8_gemm_fwd2_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_avx2(w, 2 * T, n_threads);
}

void q8_gemm_fwd2_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                       int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 1, 0);
}

size_t q8_gemm_fwd_add_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_avx2(w, T, n_threads);
}

void q8_gemm_fwd_add_avx2(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                          void *work, size_t work_size)
{
    fwd_run(w, NULL, X, T, Y, n_threads, work, work_size, 0, 1);
}
