/* q4_avx2.c — AVX2+FMA+F16C fused dequant-GEMM kernels (fp32 arithmetic, within fp32 summation
 * error of q4_gemm_*_ref). Follows the GotoBLAS/BLIS structure: a weight tile is dequantised into
 * a small packed panel P[k][16] (16 KB, L1-resident), and a 6x16 register-blocked microkernel
 * computes C[6][16] += A[6][k]·P[k][16]. Forward packs W transposed (P[k][r] = W[o0+r][k0+k]),
 * backward packs it as is (P[o][c] = W[o0+o][k0+c]); the full weight is never dequantised.
 * Forward with T <= 8 (decoding) takes a GEMV path that decodes 32 weights into registers (4-bit
 * codes looked up as fp32 byte planes with vpshufb, in a lane-interleaved order that X is permuted
 * to once per call) and scales each block's partial dot product once; backward with T = 1 keeps
 * 64 columns of dX in registers over all rows. The GGUF read-only types (Q4_1, Q5_0, Q5_1, the
 * k-quants, IQ4_XS) share all of it through their own decoders (qk_avx2.h), which deliver 32
 * scaled values in order (scale 1, no permutation). Each output element is produced by one task in
 * a fixed order, so results are identical for any thread count. Also the fp32-weight GEMV of decode
 * (q4_sgemv_avx2: rows one after another, one stream from DRAM). Helpers are static: this file is
 * compiled with -mavx2 -mfma -mf16c and must not leak code into generic callers. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "q4.h"
#include "qk_avx2.h"
#include "core/pool.h"
#include "core/status.h"

#define NR     16  /* panel width: two ymm of fp32 */
#define MR     6   /* microkernel rows: 6x2 accumulators + 2 panel + 1 broadcast registers */
#define KC     256 /* reduction chunk per panel (a multiple of 32) */
#define NP     4   /* panels per task: 64 output rows (fwd) or columns (bwd) */
#define GEMV_T 8   /* forward with T <= GEMV_T uses the register-decoding GEMV */

/* Per-call decoding state: the format and its lookup tables in registers. */
typedef struct {
    int qtype, bs, bs_log2; /* NF4 blocksize is a power of two: k/bs is a shift */
    int64_t nb;             /* blocks per row (NF4: absmax count) */
    __m128i tab_i8;         /* Q4_0: q-8; IQ4_NL: kvalues */
    __m256 tab_lo, tab_hi;  /* NF4 codes 0..7 and 8..15 */
    __m256i nf4_plane[4];   /* byte b of each NF4 code's fp32 bits, in both 128-bit lanes */
    __m256i i4_plane[2];    /* bytes 2, 3 of (float)(q-8) or (float)kvalues[q] (bytes 0, 1 are 0) */
    int8_t perm32[32];      /* dec32_gemv's order: position p holds value perm32[p] of the block */
    int gguf;               /* a GGUF read-only type (qk_avx2.h): decoded scaled, in order */
    int64_t blen, bbytes;   /* its block length and bytes (for prefetching) */
} dec_ctx;

static void dec_init(dec_ctx *c, const q4_weight *w)
{
    static const int8_t q40[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};
    c->qtype = w->qtype;
    c->gguf = w->qtype > LK_QTYPE_NF4;
    c->blen = q4_block_len(w->qtype, w->block);
    c->bbytes = (int64_t)q4_block_bytes(w->qtype);
    c->bs = w->block;
    c->bs_log2 = __builtin_ctz((unsigned)w->block);
    c->nb = (w->in + w->block - 1) / w->block;
    c->tab_i8 =
        _mm_loadu_si128((const __m128i *)(w->qtype == LK_QTYPE_Q4_0 ? q40 : q4_iq4nl_values));
    c->tab_lo = _mm256_loadu_ps(q4_nf4_code);
    c->tab_hi = _mm256_loadu_ps(q4_nf4_code + 8);
    uint8_t planes[4][16];
    for (int i = 0; i < 16; i++) {
        uint32_t bits;
        memcpy(&bits, &q4_nf4_code[i], 4);
        for (int b = 0; b < 4; b++)
            planes[b][i] = (uint8_t)(bits >> (8 * b));
    }
    for (int b = 0; b < 4; b++)
        c->nf4_plane[b] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)planes[b]));
    /* Q4_0 and IQ4_NL grid values are integers below 256 in magnitude: exact in the top 16 bits
     * of their fp32 pattern (they are bf16 numbers) */
    const int8_t *grid = w->qtype == LK_QTYPE_Q4_0 ? q40 : q4_iq4nl_values;
    for (int i = 0; i < 16; i++) {
        float f = (float)grid[i];
        uint32_t bits;
        memcpy(&bits, &f, 4);
        planes[0][i] = (uint8_t)(bits >> 16);
        planes[1][i] = (uint8_t)(bits >> 24);
    }
    for (int b = 0; b < 2; b++)
        c->i4_plane[b] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)planes[b]));
    for (int p = 0; p < 32; p++) {
        const int f = p / 8, j = p % 8;
        if (w->qtype == LK_QTYPE_NF4) /* group f: even values in lane 0, odd in lane 1 */
            c->perm32[p] = (int8_t)(8 * f + (j < 4 ? 2 * j : 2 * (j - 4) + 1));
        else if (w->qtype == LK_QTYPE_Q8_0 || c->gguf)
            c->perm32[p] = (int8_t)p;
        else /* lane 0: values 4f..4f+3 (low nibbles), lane 1: 16+4f.. (high nibbles) */
            c->perm32[p] = (int8_t)(j < 4 ? 4 * f + j : 16 + 4 * f + j - 4);
    }
}

static inline __m256 i8x8_to_ps(__m128i v) /* low 8 signed bytes -> 8 floats */
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

static inline __m256 nf4_lut(const dec_ctx *c, __m128i idx8) /* low 8 byte indices -> codes */
{
    __m256i idx = _mm256_cvtepu8_epi32(idx8);
    __m256 lo = _mm256_permutevar8x32_ps(c->tab_lo, idx);
    __m256 hi = _mm256_permutevar8x32_ps(c->tab_hi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/* Decode the 32 values [k0, k0+32) of a row (k0 a multiple of 32) into v[0..3], in order, as
 * unscaled grid values (Q4_0: q-8, IQ4_NL: kvalues[q], Q8_0: q, NF4: code[q]); returns the scale
 * they multiply (fp16 d or NF4 absmax). v[i]*scale is exactly q4_decode_ref's value. The GGUF
 * read-only types, whose scale changes within 32 values or which add a min, come scaled (qk_dec32)
 * with a scale of 1. */
static inline float dec32_raw(const dec_ctx *c, const uint8_t *row, int64_t k0, __m256 v[4])
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    if (c->gguf) {
        qk_dec32(c->qtype, row, k0, v);
        return 1.0f;
    }
    switch (c->qtype) {
    case LK_QTYPE_Q4_0:
    case LK_QTYPE_IQ4_NL: {
        const uint8_t *blk = row + (k0 / 32) * 18;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i lo = _mm_shuffle_epi8(c->tab_i8, _mm_and_si128(q, m4)); /* values 0..15 */
        __m128i hi = _mm_shuffle_epi8(c->tab_i8, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
        v[0] = i8x8_to_ps(lo);
        v[1] = i8x8_to_ps(_mm_srli_si128(lo, 8));
        v[2] = i8x8_to_ps(hi);
        v[3] = i8x8_to_ps(_mm_srli_si128(hi, 8));
        return _cvtsh_ss(dh);
    }
    case LK_QTYPE_Q8_0: {
        const uint8_t *blk = row + (k0 / 32) * 34;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        for (int i = 0; i < 4; i++)
            v[i] = i8x8_to_ps(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i)));
        return _cvtsh_ss(dh);
    }
    default: { /* NF4: byte j = (value 2j << 4) | value 2j+1 */
        float amax;
        memcpy(&amax, row + c->nb * (c->bs / 2) + (k0 >> c->bs_log2) * 4, 4);
        __m128i q = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4), lo = _mm_and_si128(q, m4);
        __m128i v0 = _mm_unpacklo_epi8(hi, lo), v1 = _mm_unpackhi_epi8(hi, lo); /* in order */
        v[0] = nf4_lut(c, v0);
        v[1] = nf4_lut(c, _mm_srli_si128(v0, 8));
        v[2] = nf4_lut(c, v1);
        v[3] = nf4_lut(c, _mm_srli_si128(v1, 8));
        return amax;
    }
    }
}

/* As dec32_raw, scaled: the decoded weights themselves. */
static inline void dec32(const dec_ctx *c, const uint8_t *row, int64_t k0, __m256 v[4])
{
    const __m256 s = _mm256_set1_ps(dec32_raw(c, row, k0, v));
    for (int i = 0; c->gguf == 0 && i < 4; i++)
        v[i] = _mm256_mul_ps(v[i], s);
}

/* Ask for the bytes that decoding block k0 of `row` will read (walks down the rows are strided,
 * which the hardware prefetchers follow poorly). A prefetch never faults, even past the end. */
static inline void prefetch32(const dec_ctx *c, const uint8_t *row, int64_t k0)
{
    if (c->gguf) { /* the block, and the next line of a k-quant super-block */
        const char *b = (const char *)row + (k0 / c->blen) * c->bbytes;
        _mm_prefetch(b, _MM_HINT_T0);
        if (c->bbytes > 64)
            _mm_prefetch(b + 64, _MM_HINT_T0);
        return;
    }
    switch (c->qtype) {
    case LK_QTYPE_Q8_0: _mm_prefetch((const char *)row + (k0 / 32) * 34, _MM_HINT_T0); break;
    case LK_QTYPE_NF4:
        _mm_prefetch((const char *)row + k0 / 2, _MM_HINT_T0);
        _mm_prefetch((const char *)row + c->nb * (c->bs / 2) + (k0 >> c->bs_log2) * 4, _MM_HINT_T0);
        break;
    default: _mm_prefetch((const char *)row + (k0 / 32) * 18, _MM_HINT_T0); break;
    }
}

#define PF_ROWS 12 /* prefetch distance, in rows, when walking down a column of blocks */

/* As dec32_raw, for the GEMV paths: the 4-bit codes are looked up as byte planes of the fp32
 * value with vpshufb over both 128-bit lanes at once (NF4: 4 planes, 12 shuffles per 32 values
 * instead of 8 vpermps + 4 blends; Q4_0/IQ4_NL: 2 planes, no int->float conversions). The values
 * come in the order c->perm32 (lane 0 and lane 1 hold different halves); the callers permute X
 * (forward) or dX (backward) to match. Q8_0 comes in natural order. */
static inline float dec32_gemv(const dec_ctx *c, const uint8_t *row, int64_t k0, __m256 v[4])
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    if (c->qtype == LK_QTYPE_Q8_0 || c->gguf)
        return dec32_raw(c, row, k0, v);
    if (c->qtype != LK_QTYPE_NF4) {
        const uint8_t *blk = row + (k0 / 32) * 18;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        __m256i idx = _mm256_set_m128i(hi, lo); /* lane 0: values 0..15; lane 1: 16..31 */
        __m256i p2 = _mm256_shuffle_epi8(c->i4_plane[0], idx);
        __m256i p3 = _mm256_shuffle_epi8(c->i4_plane[1], idx);
        __m256i a = _mm256_unpacklo_epi8(p2, p3), b = _mm256_unpackhi_epi8(p2, p3);
        const __m256i z = _mm256_setzero_si256();
        v[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, a)); /* 0..3 | 16..19 */
        v[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, a)); /* 4..7 | 20..23 */
        v[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, b)); /* 8..11 | 24..27 */
        v[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, b)); /* 12..15 | 28..31 */
        return _cvtsh_ss(dh);
    }
    float amax;
    memcpy(&amax, row + c->nb * (c->bs / 2) + (k0 >> c->bs_log2) * 4, 4);
    __m128i q = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4), lo = _mm_and_si128(q, m4);
    __m256i idx = _mm256_set_m128i(lo, hi); /* lane 0: values 2j; lane 1: values 2j+1 */
    __m256i p0 = _mm256_shuffle_epi8(c->nf4_plane[0], idx);
    __m256i p1 = _mm256_shuffle_epi8(c->nf4_plane[1], idx);
    __m256i p2 = _mm256_shuffle_epi8(c->nf4_plane[2], idx);
    __m256i p3 = _mm256_shuffle_epi8(c->nf4_plane[3], idx);
    __m256i a = _mm256_unpacklo_epi8(p0, p1), b = _mm256_unpackhi_epi8(p0, p1); /* low halves */
    __m256i e = _mm256_unpacklo_epi8(p2, p3), d = _mm256_unpackhi_epi8(p2, p3); /* high */
    v[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(a, e)); /* 0,2,4,6 | 1,3,5,7 */
    v[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(a, e)); /* 8..14 even | 9..15 odd */
    v[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(b, d)); /* 16..22 even | 17..23 odd */
    v[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(b, d)); /* 24..30 even | 25..31 odd */
    return amax;
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- forward GEMV: T <= GEMV_T ------------------------------------------------------------- */

/* Y[0..tn)[o] for one row: per block, the unscaled grid values are dotted with X and the block sum
 * is scaled once (acc += scale·Σ q·x). Xp rows are in_pad long, zero-padded (and for NF4 in the
 * perm8 order of dec32_gemv). tn is a literal at every call site. */
static inline __attribute__((always_inline)) void gemv_row(int tn, const dec_ctx *c,
                                                           const uint8_t *row, const float *Xp,
                                                           int64_t in_pad, float *y, int64_t ldy,
                                                           float b)
{
    /* tn <= 2: two accumulator sets (even and odd blocks) hide the FMA latency; more rows have
     * enough independent work and would run out of registers */
    const int sets = tn <= 2 ? 2 : 1;
    __m256 acc[2][GEMV_T], v[4];
    for (int t = 0; t < GEMV_T; t++)
        acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (int64_t k0 = 0; k0 < in_pad; k0 += 64) {
        for (int h = 0; h < 2; h++) {
            if (k0 + 32 * h >= in_pad)
                break;
            const __m256 s = _mm256_set1_ps(dec32_gemv(c, row, k0 + 32 * h, v));
            for (int t = 0; t < GEMV_T; t++) {
                if (t >= tn)
                    break;
                const float *x = Xp + t * in_pad + k0 + 32 * h; /* [32] */
                __m256 s0 = _mm256_mul_ps(v[0], _mm256_loadu_ps(x));
                __m256 s1 = _mm256_mul_ps(v[1], _mm256_loadu_ps(x + 8));
                s0 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(x + 16), s0);
                s1 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(x + 24), s1);
                acc[h % sets][t] = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), s, acc[h % sets][t]);
            }
        }
    }
    for (int t = 0; t < GEMV_T && sets == 2; t++)
        acc[0][t] = _mm256_add_ps(acc[0][t], acc[1][t]);
    for (int t = 0; t < GEMV_T; t++) {
        if (t >= tn)
            break;
        y[t * ldy] = hsum(acc[0][t]) + b;
    }
}

typedef struct {
    const dec_ctx *c;
    const q4_weight *w;
    const float *bias, *X, *dY;
    float *Y, *dX;
    int64_t T, in_pad;
    uint8_t *slots; /* the panel GEMMs: one SLOT_BYTES slot per thread */
} avx2_job;

static void gemv_rows(void *ctx, int64_t o0, int64_t o1, int thread)
{
    const avx2_job *j = ctx;
    const q4_weight *w = j->w;
    const dec_ctx *c = j->c;
    const float *Xp = j->X, *bias = j->bias;
    const int64_t T = j->T, in_pad = j->in_pad, out = w->out;
    float *Y = j->Y;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
        const float b = bias ? bias[o] : 0.0f;
        switch (T) {
        case 1: gemv_row(1, c, row, Xp, in_pad, Y + o, out, b); break;
        case 2: gemv_row(2, c, row, Xp, in_pad, Y + o, out, b); break;
        case 3: gemv_row(3, c, row, Xp, in_pad, Y + o, out, b); break;
        case 4: gemv_row(4, c, row, Xp, in_pad, Y + o, out, b); break;
        case 5: gemv_row(5, c, row, Xp, in_pad, Y + o, out, b); break;
        case 6: gemv_row(6, c, row, Xp, in_pad, Y + o, out, b); break;
        case 7: gemv_row(7, c, row, Xp, in_pad, Y + o, out, b); break;
        default: gemv_row(8, c, row, Xp, in_pad, Y + o, out, b); break;
        }
    }
}

/* xp[in_pad] = x[in] in dec32_gemv's value order, zero-padded: whole blocks of Q8_0 and the GGUF
 * types as they are, of Q4_0 / IQ4_NL as two 128-bit halves per 8 (values 4f..4f+3, 16+4f..), the
 * rest (NF4, the last block) through perm32. */
static void permute_x(const dec_ctx *c, const float *x, int64_t in, int64_t in_pad, float *xp)
{
    const int64_t full = in / 32 * 32;
    int64_t k = 0;
    if (c->qtype == LK_QTYPE_Q8_0 || c->gguf) {
        memcpy(xp, x, (size_t)full * sizeof *x);
        k = full;
    } else if (c->qtype != LK_QTYPE_NF4) {
        for (; k < full; k += 32)
            for (int f = 0; f < 4; f++)
                _mm256_storeu_ps(xp + k + 8 * f, _mm256_set_m128(_mm_loadu_ps(x + k + 16 + 4 * f),
                                                                 _mm_loadu_ps(x + k + 4 * f)));
    }
    for (; k < in_pad; k++) {
        const int64_t src = k / 32 * 32 + c->perm32[k % 32];
        xp[k] = src < in ? x[src] : 0.0f;
    }
}

/* Xp [T][in_pad]: X zero-padded to whole blocks, in the decoder's value order (work memory). */
static void fwd_gemv(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int nt, float *Xp)
{
    const int64_t in = w->in, out = w->out, in_pad = (in + 31) / 32 * 32;
    dec_ctx c;
    dec_init(&c, w);
    for (int64_t t = 0; t < T; t++)
        permute_x(&c, X + t * in, in, in_pad, Xp + t * in_pad);
    avx2_job j = {.c = &c, .w = w, .bias = bias, .X = Xp, .Y = Y, .T = T, .in_pad = in_pad};
    par_for(nt, out, gemv_rows, &j);
}

/* ---- fp32 weights, T = 1 (q4.h q4_sgemv_avx2) ------------------------------------------------ */

void q4_sgemv_avx2(int64_t N, int64_t K, const float *W, const float *x, float *y)
{
    const int64_t K32 = K / 32 * 32;
    for (int64_t n = 0; n < N; n++) {
        const float *r = W + n * K; /* [K] */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t k = 0; k < K32; k += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k), _mm256_loadu_ps(x + k), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 8), _mm256_loadu_ps(x + k + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 16), _mm256_loadu_ps(x + k + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 24), _mm256_loadu_ps(x + k + 24), a3);
        }
        float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (int64_t k = K32; k < K; k++)
            s = fmaf(r[k], x[k], s);
        y[n] = s;
    }
}

/* ---- backward for T = 1: dX[64 columns] accumulated in registers over all rows ----------- */

/* tasks [i0, i1) of bwd_t1: 64 columns of dX each */
static void bwd_t1_tasks(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const avx2_job *job = ctx;
    const q4_weight *w = job->w;
    const dec_ctx c = *job->c;
    const float *dY = job->dY;
    float *dX = job->dX;
    const int64_t in = w->in, out = w->out;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t k0 = i * 64, nblk = in - k0 > 32 ? 2 : 1;
        __m256 acc[8], v[4];
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_ps();
        for (int64_t o = 0; o < out; o++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
            prefetch32(&c, row + PF_ROWS * w->row_bytes, k0);
            for (int64_t b = 0; b < nblk; b++) {
                /* dY[o]·scale once per block, then dX += (dY·scale)·q */
                const __m256 g = _mm256_set1_ps(dY[o] * dec32_gemv(&c, row, k0 + 32 * b, v));
                for (int j = 0; j < 4; j++)
                    acc[4 * b + j] = _mm256_fmadd_ps(g, v[j], acc[4 * b + j]);
            }
        }
        float tmp[64], col[64];
        for (int j = 0; j < 8; j++)
            _mm256_storeu_ps(tmp + 8 * j, acc[j]);
        for (int j = 0; j < 64; j++) /* undo the decoder's order */
            col[j / 32 * 32 + c.perm32[j % 32]] = tmp[j];
        memcpy(dX + k0, col, (size_t)(in - k0 < 64 ? in - k0 : 64) * sizeof(float));
    }
}

static void bwd_t1(const q4_weight *w, const float *dY, float *dX, int nt)
{
    dec_ctx c;
    dec_init(&c, w);
    avx2_job j = {.c = &c, .w = w, .dY = dY, .dX = dX, .T = 1};
    par_for(nt, (w->in + 63) / 64, bwd_t1_tasks, &j);
}

/* ---- packed-panel GEMM ----------------------------------------------------------------------- */

static inline __m256i tail_mask(int n) /* lanes < n set; n in 0..8 */
{
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}

/* C[mr][0..ncols) += A[mr][0..kn) · P[kn][16]; A rows lda apart, C rows ldc apart, ncols <= 16.
 * mr is a literal at every call site, so the loops unroll and C lives in registers. */
static inline __attribute__((always_inline)) void microkernel(int mr, const float *A, int64_t lda,
                                                              const float *P, int64_t kn, float *C,
                                                              int64_t ldc, int ncols)
{
    __m256 c[MR][2];
    const int full = ncols == NR;
    const __m256i m0 = tail_mask(ncols < 8 ? ncols : 8), m1 = tail_mask(ncols > 8 ? ncols - 8 : 0);
    for (int i = 0; i < MR; i++) {
        if (i >= mr)
            break;
        c[i][0] = full ? _mm256_loadu_ps(C + i * ldc) : _mm256_maskload_ps(C + i * ldc, m0);
        c[i][1] = full ? _mm256_loadu_ps(C + i * ldc + 8) : _mm256_maskload_ps(C + i * ldc + 8, m1);
    }
    for (int64_t k = 0; k < kn; k++) {
        const __m256 b0 = _mm256_load_ps(P + k * NR), b1 = _mm256_load_ps(P + k * NR + 8);
        for (int i = 0; i < MR; i++) {
            if (i >= mr)
                break;
            const __m256 a = _mm256_broadcast_ss(A + i * lda + k);
            c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        if (i >= mr)
            break;
        if (full) {
            _mm256_storeu_ps(C + i * ldc, c[i][0]);
            _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
        } else {
            _mm256_maskstore_ps(C + i * ldc, m0, c[i][0]);
            _mm256_maskstore_ps(C + i * ldc + 8, m1, c[i][1]);
        }
    }
}

/* All rows of A (T of them, lda apart) against one panel; C columns ncols. */
static void panel_rows(const float *A, int64_t lda, int64_t T, const float *P, int64_t kn, float *C,
                       int64_t ldc, int ncols)
{
    int64_t t = 0;
    for (; t + MR <= T; t += MR)
        microkernel(MR, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols);
    switch (T - t) {
    case 1: microkernel(1, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    case 2: microkernel(2, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    case 3: microkernel(3, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    case 4: microkernel(4, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    case 5: microkernel(5, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    default: break;
    }
}

/* Forward packing: rows r0..r0+7 (those >= o1 as zeros) of W, columns [kc0, kc0+kc), into
 * Pp[k][0..7] (Pp already offset to the rows' lanes of their panel, NR floats per k). Each row's
 * 32-block is decoded (dec32_gemv order, scaled) into tmp, and 8x8 tiles are transposed in
 * registers; the perm32 order only changes which k each transposed vector is stored to. */
static void pack_rows8(const dec_ctx *dc, const q4_weight *w, int64_t r0, int64_t o1, int64_t kc0,
                       int64_t kc, float *Pp)
{
    float tmp[8][32] __attribute__((aligned(32)));
    for (int64_t k = 0; k < kc; k += 32) {
        for (int r = 0; r < 8; r++) {
            __m256 v[4];
            if (r0 + r < o1) {
                const uint8_t *row = (const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes;
                const __m256 s = _mm256_set1_ps(dec32_gemv(dc, row, kc0 + k, v));
                for (int i = 0; i < 4; i++)
                    v[i] = _mm256_mul_ps(v[i], s);
            } else {
                for (int i = 0; i < 4; i++)
                    v[i] = _mm256_setzero_ps();
            }
            for (int i = 0; i < 4; i++)
                _mm256_store_ps(tmp[r] + 8 * i, v[i]);
        }
        for (int i = 0; i < 4; i++) {
            __m256 t[8];
            for (int r = 0; r < 8; r++)
                t[r] = _mm256_load_ps(tmp[r] + 8 * i);
            transpose8(t); /* t[j] = position 8i+j of the 8 rows */
            for (int j = 0; j < 8; j++)
                _mm256_storeu_ps(Pp + (k + dc->perm32[8 * i + j]) * NR, t[j]);
        }
    }
}

/* Forward: task = 64 output rows; P[p][k][r] = W[o0+16p+r][kc0+k]. */
static void fwd_task(const dec_ctx *dc, const q4_weight *w, const float *bias, const float *X,
                     int64_t T, float *Y, int64_t o0, float *P)
{
    const int64_t in = w->in, out = w->out, in_pad = (in + 31) / 32 * 32;
    const int64_t o1 = o0 + NP * NR < out ? o0 + NP * NR : out;
    const int np = (int)((o1 - o0 + NR - 1) / NR);
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = o0; o < o1; o++)
            Y[t * out + o] = bias ? bias[o] : 0.0f;
    for (int64_t kc0 = 0; kc0 < in_pad; kc0 += KC) {
        const int64_t kc = in_pad - kc0 < KC ? in_pad - kc0 : KC;
        const int64_t kn = in - kc0 < kc ? in - kc0 : kc; /* valid reduction length */
        for (int64_t r0 = o0; r0 < o1; r0 += 8) /* 8 rows at a time, transposed in registers */
            pack_rows8(dc, w, r0, o1, kc0, kc, P + ((r0 - o0) / NR) * KC * NR + (r0 - o0) % NR);
        for (int p = 0; p < np; p++) {
            const int64_t oc = o0 + p * NR;
            const int ncols = (int)(o1 - oc < NR ? o1 - oc : NR);
            panel_rows(X + kc0, in, T, P + (int64_t)p * KC * NR, kn, Y + oc, out, ncols);
        }
    }
}

/* Backward: task = 64 input columns; P[p][o][c] = W[oc0+o][k0+16p+c]. */
static void bwd_task(const dec_ctx *dc, const q4_weight *w, const float *dY, int64_t T, float *dX,
                     int64_t k0, float *P)
{
    const int64_t in = w->in, out = w->out;
    const int64_t k1 = k0 + NP * NR < in ? k0 + NP * NR : in;
    const int np = (int)((k1 - k0 + NR - 1) / NR);
    for (int64_t t = 0; t < T; t++)
        memset(dX + t * in + k0, 0, (size_t)(k1 - k0) * sizeof(float));
    for (int64_t oc0 = 0; oc0 < out; oc0 += KC) {
        const int64_t kn = out - oc0 < KC ? out - oc0 : KC;
        for (int64_t o = 0; o < kn; o++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)(oc0 + o) * w->row_bytes;
            prefetch32(dc, row + PF_ROWS * w->row_bytes, k0);
            for (int p = 0; p < np; p += 2) { /* one 32-block feeds panels p and p+1 */
                __m256 v[4];
                dec32(dc, row, k0 + p * NR, v);
                float *P0 = P + ((int64_t)p * KC + o) * NR, *P1 = P0 + KC * NR;
                _mm256_store_ps(P0, v[0]);
                _mm256_store_ps(P0 + 8, v[1]);
                _mm256_store_ps(P1, v[2]); /* NP is even: panel p+1 always has room */
                _mm256_store_ps(P1 + 8, v[3]);
            }
        }
        for (int p = 0; p < np; p++) {
            const int64_t kc = k0 + p * NR;
            const int ncols = (int)(k1 - kc < NR ? k1 - kc : NR);
            panel_rows(dY + oc0, out, T, P + (int64_t)p * KC * NR, kn, dX + kc, in, ncols);
        }
    }
}

#define PANEL_BYTES ((size_t)NP * KC * NR * sizeof(float)) /* one thread's P [NP][KC][NR] */
#define SLOT_BYTES  q4_slot(PANEL_BYTES)

/* tasks [i0, i1) of the panel GEMMs, with this thread's panel */
static void fwd_tasks(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const avx2_job *j = ctx;
    float *P = (float *)(void *)(j->slots + (size_t)thread * SLOT_BYTES);
    memset(P, 0, PANEL_BYTES); /* lanes never decoded stay 0 */
    for (int64_t i = i0; i < i1; i++)
        fwd_task(j->c, j->w, j->bias, j->X, j->T, j->Y, i * NP * NR, P);
}

static void bwd_tasks(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const avx2_job *j = ctx;
    float *P = (float *)(void *)(j->slots + (size_t)thread * SLOT_BYTES);
    memset(P, 0, PANEL_BYTES); /* lanes never decoded stay 0 */
    for (int64_t i = i0; i < i1; i++)
        bwd_task(j->c, j->w, j->dY, j->T, j->dX, i * NP * NR, P);
}

/* Work of the forward: Xp [T][in_pad] for the GEMV (T <= GEMV_T), one panel per thread for the
 * GEMM (T > GEMV_T); the larger of the two for the T' <= T a call may have. */
size_t q4_gemm_fwd_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t in_pad = (w->in + 31) / 32 * 32, tg = T < GEMV_T ? T : GEMV_T;
    const size_t gemv = T > 0 ? q4_line((size_t)(tg * in_pad) * sizeof(float)) : 0;
    const size_t gemm = T > GEMV_T ? (size_t)resolve_threads(n_threads) * SLOT_BYTES : 0;
    return q4_work_size(gemv > gemm ? gemv : gemm);
}

/* Work of the backward: one panel per thread (T = 1 keeps its sums in registers). */
size_t q4_gemm_bwd_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    (void)w;
    return T > 1 ? q4_work_size((size_t)resolve_threads(n_threads) * SLOT_BYTES) : 0;
}

void q4_gemm_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    const int nt = resolve_threads(n_threads);
    uint8_t *base = q4_work_start(work, work_size, q4_gemm_fwd_work_avx2(w, T, n_threads));
    if (T <= GEMV_T) {
        fwd_gemv(w, bias, X, T, Y, nt, (float *)(void *)base);
        return;
    }
    dec_ctx dc;
    dec_init(&dc, w);
    const int64_t ntask = (w->out + NP * NR - 1) / (NP * NR);
    avx2_job j = {.c = &dc, .w = w, .bias = bias, .X = X, .Y = Y, .T = T, .slots = base};
    par_for(nt, ntask, fwd_tasks, &j);
}

void q4_gemm_bwd_avx2(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                      void *work, size_t work_size)
{
    if (T <= 0)
        return;
    const int nt = resolve_threads(n_threads);
    if (T == 1) {
        bwd_t1(w, dY, dX, nt);
        return;
    }
    uint8_t *base = q4_work_start(work, work_size, q4_gemm_bwd_work_avx2(w, T, n_threads));
    dec_ctx dc;
    dec_init(&dc, w);
    const int64_t ntask = (w->in + NP * NR - 1) / (NP * NR);
    avx2_job j = {.c = &dc, .w = w, .dY = dY, .dX = dX, .T = T, .slots = base};
    par_for(nt, ntask, bwd_tasks, &j);
}

/* Rows [r0, r0+nr) of w, values [k0, k0+n), into dst[nr][ld] with dec32: bit-exact with
 * q4_decode_ref (q4_decode_fn; the decoder of the x86 variants, q4_decoder). */
void q4_decode_rows_avx2(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n,
                         float *dst, int64_t ld)
{
    dec_ctx c;
    dec_init(&c, w);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes;
        float *d = dst + r * ld;
        for (int64_t i = 0; i < n; i += 32) {
            __m256 v[4];
            dec32(&c, row, k0 + i, v);
            if (n - i >= 32) {
                for (int q = 0; q < 4; q++)
                    _mm256_storeu_ps(d + i + 8 * q, v[q]);
            } else {
                float span[32];
                for (int q = 0; q < 4; q++)
                    _mm256_storeu_ps(span + 8 * q, v[q]);
                memcpy(d + i, span, (size_t)(n - i) * sizeof(float));
            }
        }
    }
}
