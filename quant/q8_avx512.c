/* q8_avx512.c — the avx512vnni int8 GEMM (q8.h), bit for bit the reference's arithmetic. Each
 * thread takes tiles of 32 output rows: it packs the tile's weight over all blocks into a panel
 * (q8_pack.h: codes with the 32 rows in the lanes of a zmm, per-row scales), then runs a 4x32
 * register-blocked microkernel over the activation rows: per 4 values of a block, one broadcast of
 * 4 activation bytes and one vpdpbusd per 16 rows; the int32 sums are exact per block, then the
 * block's fp32 update follows the reference's order. vpdpbusd multiplies unsigned by signed
 * bytes: the panel holds the weight codes as q + K (Q4_0: its nibble, K = 8; the others q + 128),
 * the activations stay signed, and each block sum starts at -K·Σx (the activation block's half
 * sums), so it ends exactly at Σ x·q. The core types (Q4_0, IQ4_NL, Q8_0, NF4) are packed straight
 * from their blocks, four rows at a time through 4x4 transposes; the others (the GGUF read-only
 * types) are expanded 16 rows at a time (q8_expander_avx2) and go through the same transposes
 * (pack_expanded). A whole group of 16 rows of an interleaved weight (q8_ilv.h) is copied from its
 * records, each 64-byte chunk one panel group of the 16 rows (pack_ilv16). At T = 1 the same code
 * is the GEMV: every weight block is read and
 * expanded once, and the panel stays in L1/L2. Helpers are static (this file is compiled with
 * -mavx512* flags and must not leak code into generic callers). */
#include <immintrin.h>
#include <string.h>

#include "q8.h"
#include "q8_pack.h"
#include "q8_ilv.h"
#include "q8_x86.h"
#include "core/pool.h"
#include "core/status.h"

#define NR 32     /* output rows per panel: two zmm of int32 / fp32 lanes */
#define MR Q8P_MR /* activation rows per microkernel call: 4x2 int32 + 4x2 fp32 accumulators */

/* ---- packing the core types straight from their blocks -------------------------------------- */

/* r[k] lane L holding 4 dwords (groups g0..g0+3) of row 4L+k: a 4x4 dword transpose in each lane
 * leaves group g0+g of rows 0..15 in order in one zmm, stored at W[g0+g][r0..r0+15] (p). */
static inline void store_t16(const __m512i r[4], uint8_t *p)
{
    const __m512i a = _mm512_unpacklo_epi32(r[0], r[1]), b = _mm512_unpackhi_epi32(r[0], r[1]);
    const __m512i c = _mm512_unpacklo_epi32(r[2], r[3]), d = _mm512_unpackhi_epi32(r[2], r[3]);
    _mm512_storeu_si512(p + 0 * NR * 4, _mm512_unpacklo_epi64(a, c));
    _mm512_storeu_si512(p + 1 * NR * 4, _mm512_unpackhi_epi64(a, c));
    _mm512_storeu_si512(p + 2 * NR * 4, _mm512_unpacklo_epi64(b, d));
    _mm512_storeu_si512(p + 3 * NR * 4, _mm512_unpackhi_epi64(b, d));
}

/* The u8 codes q + K of values 0..15 (lo[k]) and 16..31 (hi[k]) of block b of 16 rows (lanes as
 * q8x_load4), and each row's scale s[r]. */
static inline void codes16(const q8p_job *j, const uint8_t *const *rows, int64_t b, __m512i tab,
                           __m512i lo[4], __m512i hi[4], float s[16])
{
    const __m512i m4 = _mm512_set1_epi8(15);
    const int qt = j->w->qtype;
    if (qt == LK_QTYPE_Q8_0) {
        const __m512i f = _mm512_set1_epi8((char)0x80);
        for (int k = 0; k < 4; k++) {
            lo[k] = _mm512_xor_si512(q8x_load4(rows, k, (size_t)b * 34 + 2), f);
            hi[k] = _mm512_xor_si512(q8x_load4(rows, k, (size_t)b * 34 + 18), f);
        }
    } else if (qt == LK_QTYPE_NF4) { /* byte k holds value 2k (high nibble) and 2k+1 */
        for (int k = 0; k < 4; k++) {
            const __m512i c = q8x_load4(rows, k, (size_t)b * 16);
            const __m512i h = _mm512_and_si512(_mm512_srli_epi16(c, 4), m4);
            const __m512i l = _mm512_and_si512(c, m4);
            lo[k] = _mm512_shuffle_epi8(tab, _mm512_unpacklo_epi8(h, l));
            hi[k] = _mm512_shuffle_epi8(tab, _mm512_unpackhi_epi8(h, l));
        }
    } else { /* Q4_0 (nibbles as they are, K = 8) and IQ4_NL (through the table): 18-byte blocks */
        for (int k = 0; k < 4; k++) {
            const __m512i c = q8x_load4(rows, k, (size_t)b * 18 + 2);
            lo[k] = _mm512_and_si512(c, m4);
            hi[k] = _mm512_and_si512(_mm512_srli_epi16(c, 4), m4);
            if (qt == LK_QTYPE_IQ4_NL) {
                lo[k] = _mm512_shuffle_epi8(tab, lo[k]);
                hi[k] = _mm512_shuffle_epi8(tab, hi[k]);
            }
        }
    }
    /* the 16 rows' scales: scalar loads into one vector, converted at once (a gather is slower) */
    if (qt == LK_QTYPE_NF4) {
        const int bs = j->w->block;
        const int64_t off = (j->w->in + bs - 1) / bs * (bs / 2) + (b * Q8_QK / bs) * 4;
        float amax[16];
        for (int r = 0; r < 16; r++)
            memcpy(&amax[r], rows[r] + off, 4);
        _mm512_storeu_ps(s, _mm512_div_ps(_mm512_loadu_ps(amax), _mm512_set1_ps(127.0f)));
    } else {
        const size_t off = (size_t)b * (qt == LK_QTYPE_Q8_0 ? 34 : 18);
        uint16_t d[16];
        for (int r = 0; r < 16; r++)
            memcpy(&d[r], rows[r] + off, 2);
        _mm512_storeu_ps(s, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)d)));
    }
}

/* Rows [o, o+16) of an interleaved weight, a whole group (q8_ilv.h), into panel rows [r0, r0+16):
 * each 64-byte chunk of a record is already one panel group of the 16 rows (Q8_0: codes + 128; the
 * 4-bit types: low nibbles group c, high nibbles group 4 + c), the scales (and Q4_1's mins) one
 * vcvtph2ps; Q4_1's codes go in as q + 128 as pack_expanded's, its S1 = S0 and M1 = M0. */
static void pack_ilv16(const q8p_job *j, int64_t o, int r0, uint8_t *panel)
{
    const q4_weight *w = j->w;
    const int qt = w->qtype;
    int8_t t8[64];
    for (int i = 0; i < 64; i++)
        t8[i] = (int8_t)(q4_iq4nl_values[i % 16] ^ 0x80);
    const __m512i tab = _mm512_loadu_si512(t8);
    const __m512i f = _mm512_set1_epi8((char)0x80);
    const size_t pb = q8p_block_bytes(NR, j->simple), hb = q8i_hb(qt);
    const uint8_t *rec = q8i_record(w, o / 16, 0);
    for (int64_t b = 0; b < j->nb; b++, rec += 16 * q8i_bsz(qt)) {
        uint8_t *p = panel + (size_t)b * pb;
        const uint8_t *c0 = rec + 16 * hb;
        if (qt == LK_QTYPE_Q8_0) {
            for (int g = 0; g < 8; g++)
                _mm512_storeu_si512(p + (g * NR + r0) * 4,
                                    _mm512_xor_si512(_mm512_loadu_si512(c0 + 64 * g), f));
        } else {
            for (int c = 0; c < 4; c++) {
                __m512i lo, hi;
                q8x_ilv_nibbles(qt, c0 + 64 * c, tab, &lo, &hi);
                if (qt == LK_QTYPE_Q4_1) {
                    lo = _mm512_or_si512(lo, f);
                    hi = _mm512_or_si512(hi, f);
                }
                _mm512_storeu_si512(p + (c * NR + r0) * 4, lo);
                _mm512_storeu_si512(p + ((4 + c) * NR + r0) * 4, hi);
            }
        }
        float *S = (float *)(void *)(p + NR * 32) + r0; /* S0 [S1 M0 M1] */
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)rec));
        _mm512_storeu_ps(S, d);
        if (qt == LK_QTYPE_Q4_1) {
            const __m512 m =
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(rec + 32)));
            _mm512_storeu_ps(S + NR, d);
            _mm512_storeu_ps(S + 2 * NR, m);
            _mm512_storeu_ps(S + 3 * NR, m);
        }
    }
}

/* Rows [o0, o0+nrow) of a core type into the panel, 16 at a time (rows past nrow: scale 0). */
static void pack_core(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel)
{
    const q4_weight *w = j->w;
    int8_t t8[64];
    for (int i = 0; i < 64; i++)
        t8[i] = (int8_t)((w->qtype == LK_QTYPE_NF4 ? q8_nf4_i8[i % 16] : q4_iq4nl_values[i % 16]) ^
                         0x80);
    const __m512i tab = _mm512_loadu_si512(t8);
    const size_t pb = q8p_block_bytes(NR, 1);
    for (int r0 = 0; r0 < NR && r0 < nrow; r0 += 16) {
        if (w->ilv && nrow - r0 >= 16) { /* a whole interleaved group */
            pack_ilv16(j, o0 + r0, r0, panel);
            continue;
        }
        const uint8_t *rows[16]; /* in lane order: rows[4L+k] is row r0+4L+k */
        for (int i = 0; i < 16; i++) {
            const int r = r0 + i < nrow ? r0 + i : nrow - 1;
            rows[i] = (const uint8_t *)w->data + (size_t)(o0 + r) * w->row_bytes;
        }
        for (int64_t b = 0; b < j->nb; b++) {
            uint8_t *p = panel + (size_t)b * pb;
            __m512i lo[4], hi[4];
            float *S = (float *)(void *)(p + NR * 32) + r0;
            codes16(j, rows, b, tab, lo, hi, S);
            for (int i = nrow - r0; i < 16; i++)
                S[i] = 0.0f;
            store_t16(lo, p + r0 * 4);
            store_t16(hi, p + 4 * NR * 4 + r0 * 4);
        }
    }
    for (int r0 = (nrow + 15) / 16 * 16; r0 < NR; r0 += 16) /* a panel's unused half */
        for (int64_t b = 0; b < j->nb; b++)
            memset(panel + (size_t)b * pb + NR * 32 + (size_t)r0 * 4, 0, 16 * sizeof(float));
}

/* ---- packing the other types: 16 rows expanded, then the transposes of pack_core ---------- */

#define PE_CHUNK 8 /* blocks expanded per row at a time (a k-quant super-block) */

/* Rows [o0, o0+nrow) of a type without a direct packer: each group of 16 rows is expanded
 * PE_CHUNK blocks at a time by j->expand (the AVX2 expanders of the GGUF types), and the codes
 * go into the panel as q + 128 through the same 4x4 transposes as pack_core; the same panel as
 * q8p_pack's, without its per-row scatter. Rows past nrow repeat the last row with scales and
 * mins 0. */
static void pack_expanded(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel)
{
    const q4_weight *w = j->w;
    const int nf = j->simple ? 1 : 4; /* S0 [S1 M0 M1], NR floats each */
    const size_t pb = q8p_block_bytes(NR, j->simple);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    q8_wblock e[16][PE_CHUNK];
    for (int r0 = 0; r0 < NR && r0 < nrow; r0 += 16) {
        if (w->ilv && nrow - r0 >= 16) { /* a whole interleaved group (Q4_1) */
            pack_ilv16(j, o0 + r0, r0, panel);
            continue;
        }
        const uint8_t *rows[16];
        for (int i = 0; i < 16; i++) {
            const int r = r0 + i < nrow ? r0 + i : nrow - 1;
            rows[i] = (const uint8_t *)w->data + (size_t)(o0 + r) * w->row_bytes;
        }
        for (int64_t b0 = 0; b0 < j->nb; b0 += PE_CHUNK) {
            const int64_t n = j->nb - b0 < PE_CHUNK ? j->nb - b0 : PE_CHUNK;
            for (int i = 0; i < 16 && r0 + i < nrow; i++)
                j->expand(w, rows[i], b0, n, e[i]);
            for (int64_t c = 0; c < n; c++) {
                uint8_t *p = panel + (size_t)(b0 + c) * pb;
                const uint8_t *er[16]; /* lane order as q8x_load4: er[4L+k] is row r0+4L+k */
                for (int i = 0; i < 16; i++)
                    er[i] = (const uint8_t *)e[r0 + i < nrow ? i : nrow - 1 - r0][c].q;
                __m512i lo[4], hi[4];
                for (int k = 0; k < 4; k++) {
                    lo[k] = _mm512_xor_si512(q8x_load4(er, k, 0), flip);
                    hi[k] = _mm512_xor_si512(q8x_load4(er, k, 16), flip);
                }
                store_t16(lo, p + r0 * 4);
                store_t16(hi, p + 4 * NR * 4 + r0 * 4);
                float *f = (float *)(void *)(p + NR * 32) + r0;
                for (int i = 0; i < 16; i++) {
                    const q8_wblock *x = &e[i][c];
                    const int in = r0 + i < nrow;
                    f[i] = in ? x->s[0] : 0.0f;
                    if (nf == 4) {
                        f[NR + i] = in ? x->s[1] : 0.0f;
                        f[2 * NR + i] = in ? x->m[0] : 0.0f;
                        f[3 * NR + i] = in ? x->m[1] : 0.0f;
                    }
                }
            }
        }
    }
    for (int r0 = (nrow + 15) / 16 * 16; r0 < NR; r0 += 16) /* a panel's unused half */
        for (int64_t b = 0; b < j->nb; b++)
            for (int a = 0; a < nf; a++)
                memset(panel + (size_t)b * pb + NR * 32 + (size_t)(a * NR + r0) * 4, 0,
                       16 * sizeof(float));
}

/* ---- the microkernel --------------------------------------------------------------------------
 */

static inline __m512i bcast4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* Int32 sums Σ x·q over groups [g0, g1) of block b (panel block p) for mr activation rows; the
 * panel's codes are q + K, so each sum starts at -K·Σx (the half sums of the groups). */
static inline __attribute__((always_inline)) void block_sums(const uint8_t *p, const q8_ablock *A,
                                                             int64_t nb, int64_t b, int mr,
                                                             int kshift, int g0, int g1,
                                                             __m512i ia[MR][2])
{
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++) {
        const q8_ablock *a = &A[t * nb + b];
        const int32_t sx = g1 - g0 == 8 ? a->s16[0] + a->s16[1] : a->s16[g0 / 4];
        ia[t][0] = ia[t][1] = _mm512_set1_epi32(-(int32_t)((uint32_t)sx << kshift));
    }
#pragma GCC unroll 8
    for (int g = g0; g < g1; g++) {
        const __m512i w0 = _mm512_loadu_si512(p + g * 128);
        const __m512i w1 = _mm512_loadu_si512(p + g * 128 + 64);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const __m512i x = bcast4(A[t * nb + b].q + 4 * g);
            ia[t][0] = _mm512_dpbusd_epi32(ia[t][0], w0, x);
            ia[t][1] = _mm512_dpbusd_epi32(ia[t][1], w1, x);
        }
    }
}

/* acc[t] += the nb blocks of a panel against activation rows A[t] (t < mr): simple types. */
static inline __attribute__((always_inline)) void kernel_simple(const uint8_t *panel, int64_t nb,
                                                                const q8_ablock *A, int mr,
                                                                int kshift, __m512 acc[MR][2])
{
    const size_t pb = q8p_block_bytes(NR, 1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *S = (const float *)(const void *)(p + NR * 32);
        __m512i ia[MR][2];
        block_sums(p, A, nb, b, mr, kshift, 0, 8, ia);
        const __m512 s0 = _mm512_loadu_ps(S), s1 = _mm512_loadu_ps(S + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const __m512 d = _mm512_set1_ps(A[t * nb + b].d);
            acc[t][0] =
                _mm512_fmadd_ps(d, _mm512_mul_ps(s0, _mm512_cvtepi32_ps(ia[t][0])), acc[t][0]);
            acc[t][1] =
                _mm512_fmadd_ps(d, _mm512_mul_ps(s1, _mm512_cvtepi32_ps(ia[t][1])), acc[t][1]);
        }
    }
}

/* The same for the other types: two scales and mins per block (q8.h's general product). */
static inline __attribute__((always_inline)) void kernel_general(const uint8_t *panel, int64_t nb,
                                                                 const q8_ablock *A, int mr,
                                                                 int kshift, __m512 acc[MR][2])
{
    const size_t pb = q8p_block_bytes(NR, 0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)b * pb;
        const float *F = (const float *)(const void *)(p + NR * 32); /* S0 S1 M0 M1 */
        __m512i ia[MR][2];
        __m512 v[MR][2];
        block_sums(p, A, nb, b, mr, kshift, 0, 4, ia);
        const __m512 s00 = _mm512_loadu_ps(F), s01 = _mm512_loadu_ps(F + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            v[t][0] = _mm512_mul_ps(s00, _mm512_cvtepi32_ps(ia[t][0]));
            v[t][1] = _mm512_mul_ps(s01, _mm512_cvtepi32_ps(ia[t][1]));
        }
        block_sums(p, A, nb, b, mr, kshift, 4, 8, ia);
        const __m512 s10 = _mm512_loadu_ps(F + NR), s11 = _mm512_loadu_ps(F + NR + 16);
        const __m512 m00 = _mm512_loadu_ps(F + 2 * NR), m01 = _mm512_loadu_ps(F + 2 * NR + 16);
        const __m512 m10 = _mm512_loadu_ps(F + 3 * NR), m11 = _mm512_loadu_ps(F + 3 * NR + 16);
#pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            const q8_ablock *a = &A[t * nb + b];
            const __m512 x0 = _mm512_set1_ps((float)a->s16[0]), x1 = _mm512_set1_ps(a->s16[1]);
            const __m512 d = _mm512_set1_ps(a->d);
            __m512 u0 = _mm512_fmadd_ps(s10, _mm512_cvtepi32_ps(ia[t][0]), v[t][0]);
            __m512 u1 = _mm512_fmadd_ps(s11, _mm512_cvtepi32_ps(ia[t][1]), v[t][1]);
            u0 = _mm512_fmadd_ps(m10, x1, _mm512_fmadd_ps(m00, x0, u0));
            u1 = _mm512_fmadd_ps(m11, x1, _mm512_fmadd_ps(m01, x0, u1));
            acc[t][0] = _mm512_fmadd_ps(d, u0, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(d, u1, acc[t][1]);
        }
    }
}

/* mr (1..MR, a constant after inlining) activation rows against one panel; stores + bias. */
static inline __attribute__((always_inline)) void rows(const q8p_job *j, const uint8_t *panel,
                                                       int64_t t0, int mr, int64_t o0, int nrow)
{
    __m512 acc[MR][2];
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++)
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    const q8_ablock *A = j->A + t0 * j->nb;
    if (j->simple)
        kernel_simple(panel, j->nb, A, mr, j->kshift, acc);
    else
        kernel_general(panel, j->nb, A, mr, j->kshift, acc);
    const __mmask16 k0 = (__mmask16)(nrow >= 16 ? 0xffff : (1u << nrow) - 1);
    const __mmask16 k1 = (__mmask16)(nrow >= 32   ? 0xffff
                                     : nrow <= 16 ? 0
                                                  : (1u << (nrow - 16)) - 1);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (j->bias) {
        b0 = _mm512_maskz_loadu_ps(k0, j->bias + o0);
        b1 = _mm512_maskz_loadu_ps(k1, j->bias + o0 + 16);
    }
#pragma GCC unroll 4
    for (int t = 0; t < mr; t++) {
        float *y = q8p_yrow(j, t0 + t) + o0;
        if (q8p_adds(j, t0 + t)) { /* a two-term job's second term: y + r1·Wᵀ */
            acc[t][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(k0, y), acc[t][0]);
            acc[t][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(k1, y + 16), acc[t][1]);
        } else if (j->bias) {
            acc[t][0] = _mm512_add_ps(acc[t][0], b0);
            acc[t][1] = _mm512_add_ps(acc[t][1], b1);
        }
        _mm512_mask_storeu_ps(y, k0, acc[t][0]);
        _mm512_mask_storeu_ps(y + 16, k1, acc[t][1]);
    }
}

Q8P_ROWS_FNS(rows)

/* Panels packed per chunk (q8p_npc): up to this many bytes, kept in the L2 cache while every
 * group of Q8P_MR activation rows runs over them. */
#define CHUNK_BYTES (256 * 1024)

size_t q8_gemm_fwd_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads)
{
    return q8p_work_chunked(w, T, n_threads, NR, 32, CHUNK_BYTES);
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
                 .kshift = w->qtype == LK_QTYPE_Q4_0 ? 3 : 7,
                 .quant = q8x_quantize_act,
                 .quant2 = two ? q8x_quantize_act2 : NULL,
                 .add = add,
                 .pack = q8p_core(w->qtype) ? pack_core : pack_expanded,
                 .ilv = 1,
                 .expand = q8_expander_avx2(w->qtype),
                 .chunk_bytes = CHUNK_BYTES,
                 .rows = {rows_1, rows_2, rows_3, rows_4}};
    q8p_run(&j, n_threads, work, work_size);
}

void q8_gemm_fwd_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                            float *Y, int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 0, 0);
}

size_t q8_gemm_fwd2_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_avx512vnni(w, 2 * T, n_threads);
}

void q8_gemm_fwd2_avx512vnni(const q4_weight *w, const float *bias, const float *X, int64_t T,
                             float *Y, int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 1, 0);
}

size_t q8_gemm_fwd_add_work_avx512vnni(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_avx512vnni(w, T, n_threads);
}

void q8_gemm_fwd_add_avx512vnni(const q4_weight *w, const float *X, int64_t T, float *Y,
                                int n_threads, void *work, size_t work_size)
{
    fwd_run(w, NULL, X, T, Y, n_threads, work, work_size, 0, 1);
}
