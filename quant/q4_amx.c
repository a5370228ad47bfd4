/* q4_amx.c — AMX-BF16 fused dequant-GEMM kernels for large T (Intel Sapphire Rapids and later).
 *
 * Forward Y = X·Wᵀ: X is rounded to bf16 once per call (Xb[Tp][Kp], zero-padded to multiples of
 * 32); each task dequantises 32 weight rows over all of K into bf16 tiles in AMX's VNNI layout
 * (B[k/2][n][2], 1 KB per 32x16 tile; 2·Kp bf16 per row, so <= 320 KB for K = 4864) and a 2x2
 * block of 16x16 fp32 accumulator tiles runs tdpbf16ps over K. Backward dX = dY·W does the same
 * with dY in bf16 and 32 weight columns per task (W rows paired along the reduction). Each
 * output is computed by one task in a fixed order: results do not depend on the thread count.
 * T < 32 goes to the AVX-512 fp32 kernels.
 *
 * Error bound: x and w are rounded to bf16 (8-bit significand, unit roundoff u = 2^-8), so each
 * product carries a relative error <= 2u + u² and the fp32 accumulation of K terms adds at most
 * about K·2^-24; for an output y = Σ_k x_k·w_k:
 *     |y_amx - y| <= (2^-7 + 2^-16 + K·2^-24) · Σ_k |x_k|·|w_k|
 * (tests use (2^-7 + 1e-4)·Σ|x||w| with K <= 600). bitsandbytes' 4-bit matmul computes in bf16
 * or fp16 the same way. Requires the Linux AMX permission (dispatch.c asks for it once).
 * Not yet run: the development and CI machines have no AMX; tests/test_quant_kernels checks it
 * against the reference wherever the CPU has it. */
#include <immintrin.h>
#include <string.h>

#include "q4.h"
#include "core/pool.h"
#include "core/status.h"

#define AMX_MIN_T 32  /* below this, the fp32 AVX-512 kernels */
#define TILE_BF16 512 /* bf16 elements per 16x32 (A) or 32x16 VNNI (B) tile */

/* AMX tile configuration (palette 1): tiles 0-3 fp32 C 16x16, 4-5 bf16 A 16x32, 6-7 bf16 B. */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;
static_assert(sizeof(tilecfg) == 64, "AMX tile config is 64 bytes");

static void tile_config(void)
{
    tilecfg cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64; /* 16 fp32, 32 bf16 or 16 bf16 pairs per row */
        cfg.rows[i] = 16;
    }
    _tile_loadconfig(&cfg);
}

/* ---- decoding (as q4_avx512.c; per-ISA files are self-contained) ----------------------------- */

typedef struct {
    int qtype, bs, bs_log2; /* NF4 blocksize is a power of two: k/bs is a shift */
    int64_t nb;
    __m128i tab_i8;
    __m512 tab_nf4;
} dec_ctx;

static void dec_init(dec_ctx *c, const q4_weight *w)
{
    static const int8_t q40[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};
    c->qtype = w->qtype;
    c->bs = w->block;
    c->bs_log2 = __builtin_ctz((unsigned)w->block);
    c->nb = (w->in + w->block - 1) / w->block;
    c->tab_i8 =
        _mm_loadu_si128((const __m128i *)(w->qtype == LK_QTYPE_Q4_0 ? q40 : q4_iq4nl_values));
    c->tab_nf4 = _mm512_loadu_ps(q4_nf4_code);
}

static inline __m512 i8x16_to_ps(__m128i v)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v));
}

/* Values [k0, k0+32) of a row as 32 bf16 (round to nearest even) in out[32], in order. */
static inline void dec32_bf16(const dec_ctx *c, const uint8_t *row, int64_t k0, uint16_t *out)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m512 v0, v1;
    switch (c->qtype) {
    case LK_QTYPE_Q4_0:
    case LK_QTYPE_IQ4_NL: {
        const uint8_t *blk = row + (k0 / 32) * 18;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i lo = _mm_shuffle_epi8(c->tab_i8, _mm_and_si128(q, m4));
        __m128i hi = _mm_shuffle_epi8(c->tab_i8, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
        v0 = _mm512_mul_ps(i8x16_to_ps(lo), d);
        v1 = _mm512_mul_ps(i8x16_to_ps(hi), d);
        break;
    }
    case LK_QTYPE_Q8_0: {
        const uint8_t *blk = row + (k0 / 32) * 34;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        v0 = _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i *)(blk + 2))), d);
        v1 = _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i *)(blk + 18))), d);
        break;
    }
    default: {
        float amax;
        memcpy(&amax, row + c->nb * (c->bs / 2) + (k0 >> c->bs_log2) * 4, 4);
        __m512 a = _mm512_set1_ps(amax);
        __m128i q = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4), lo = _mm_and_si128(q, m4);
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
        __m512i i1 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo));
        v0 = _mm512_mul_ps(_mm512_permutexvar_ps(i0, c->tab_nf4), a);
        v1 = _mm512_mul_ps(_mm512_permutexvar_ps(i1, c->tab_nf4), a);
        break;
    }
    }
    __m512bh b = _mm512_cvtne2ps_pbh(v1, v0); /* low half from v0: values 0..15 */
    memcpy(out, &b, 64);
}

/* A[rows][cols] fp32 -> Ab[Rp][Cp] bf16, zero-padded (Rp, Cp multiples of 32). */
typedef struct {
    const float *A;
    int64_t rows, cols, Cp;
    uint16_t *Ab;
} bf16_job;

static void bf16_rows(void *ctx, int64_t r0, int64_t r1, int thread)
{
    const bf16_job *j = ctx;
    const float *A = j->A;
    const int64_t rows = j->rows, cols = j->cols, Cp = j->Cp;
    uint16_t *Ab = j->Ab;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t c = 0; c < Cp; c += 32) {
            __m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
            const int64_t n = cols - c;
            if (r < rows && n > 0) {
                __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
                __mmask16 m1 = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
                v0 = _mm512_maskz_loadu_ps(m0, A + r * cols + c);
                v1 = _mm512_maskz_loadu_ps(m1, A + r * cols + c + 16);
            }
            __m512bh b = _mm512_cvtne2ps_pbh(v1, v0);
            memcpy(Ab + r * Cp + c, &b, 64);
        }
    }
}

static void to_bf16(const float *A, int64_t rows, int64_t cols, int64_t Rp, int64_t Cp,
                    uint16_t *Ab, int nt)
{
    bf16_job j = {A, rows, cols, Cp, Ab};
    par_for(nt, Rp, bf16_rows, &j);
}

/* C[32][32] = A[32 rows of Ab from t0][Kp] · B (nkc chunks of two VNNI tiles), into Cbuf as four
 * 16x16 fp32 tiles: Cbuf[(i/16)*2 + j/16][i%16][j%16]. */
static void tiles_2x2(const uint16_t *Ab, int64_t lda, int64_t nkc, const uint16_t *B, float *Cbuf)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t c = 0; c < nkc; c++) {
        _tile_loadd(4, Ab + c * 32, lda * 2);
        _tile_loadd(5, Ab + 16 * lda + c * 32, lda * 2);
        _tile_loadd(6, B + (c * 2) * TILE_BF16, 64);
        _tile_loadd(7, B + (c * 2 + 1) * TILE_BF16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, Cbuf, 64);
    _tile_stored(1, Cbuf + 256, 64);
    _tile_stored(2, Cbuf + 512, 64);
    _tile_stored(3, Cbuf + 768, 64);
}

/* Copy the valid part of a 32x32 Cbuf block to C[t0.., j0..] (+bias[j]). */
static void store_block(const float *Cbuf, int64_t ti, int64_t nj, float *C, int64_t ldc,
                        const float *bias)
{
    for (int64_t i = 0; i < ti; i++)
        for (int64_t j = 0; j < nj; j++)
            C[i * ldc + j] = Cbuf[((i / 16) * 2 + j / 16) * 256 + (i % 16) * 16 + j % 16] +
                             (bias ? bias[j] : 0.0f);
}

/* Forward task: 32 output rows o0.. over all K. B element (k, n) sits in tile (k/32, n/16) at
 * VNNI position [(k%32)/2][n%16][k%2]. */
static void fwd_task(const dec_ctx *dc, const q4_weight *w, const float *bias, const uint16_t *Xb,
                     int64_t T, int64_t Kp, float *Y, int64_t o0, uint16_t *B, float *Cbuf)
{
    const int64_t out = w->out, nkc = Kp / 32, o1 = o0 + 32 < out ? o0 + 32 : out;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
        const int64_t n = o - o0;
        for (int64_t c = 0; c < nkc; c++) {
            uint16_t v[32];
            uint32_t pairs[16];
            dec32_bf16(dc, row, c * 32, v);
            memcpy(pairs, v, 64); /* pair p = values 2p, 2p+1 */
            uint16_t *tile = B + (c * 2 + n / 16) * TILE_BF16;
            for (int p = 0; p < 16; p++)
                memcpy(tile + (p * 16 + n % 16) * 2, &pairs[p], 4);
        }
    }
    for (int64_t t0 = 0; t0 < T; t0 += 32) {
        tiles_2x2(Xb + t0 * Kp, Kp, nkc, B, Cbuf);
        store_block(Cbuf, T - t0 < 32 ? T - t0 : 32, o1 - o0, Y + t0 * out + o0, out,
                    bias ? bias + o0 : NULL);
    }
}

/* Backward task: 32 input columns k0.. over all rows. B element (o, n) sits in tile
 * (o/32, n/16) at VNNI position [(o%32)/2][n%16][o%2]. */
static void bwd_task(const dec_ctx *dc, const q4_weight *w, const uint16_t *dYb, int64_t T,
                     int64_t Op, float *dX, int64_t k0, uint16_t *B, float *Cbuf)
{
    const int64_t in = w->in, k1 = k0 + 32 < in ? k0 + 32 : in;
    for (int64_t o = 0; o < w->out; o++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
        uint16_t v[32];
        dec32_bf16(dc, row, k0, v);
        uint16_t *base = B + (o / 32) * 2 * TILE_BF16 + ((o % 32) / 2) * 32 + (o & 1);
        for (int n = 0; n < 32; n++)
            base[(n / 16) * TILE_BF16 + (n % 16) * 2] = v[n];
    }
    for (int64_t t0 = 0; t0 < T; t0 += 32) {
        tiles_2x2(dYb + t0 * Op, Op, Op / 32, B, Cbuf);
        store_block(Cbuf, T - t0 < 32 ? T - t0 : 32, k1 - k0, dX + t0 * in + k0, in, NULL);
    }
}

#define CBUF_BYTES ((size_t)4 * 256 * sizeof(float)) /* one thread's four 16x16 fp32 tiles */

/* Bytes of the AMX path's pieces for T rows of A [T][K] (X or dY, K its reduction length): A in
 * bf16 [Tp][Kp], then per thread the B tiles [Kp/32][2][16][16][2] (bf16) and Cbuf. */
static inline size_t amx_need(int64_t T, int64_t K, int nt)
{
    const int64_t Kp = (K + 31) / 32 * 32, Tp = (T + 31) / 32 * 32;
    const size_t bbytes = q4_line((size_t)(Kp / 32) * 2 * TILE_BF16 * 2);
    return q4_line((size_t)(Tp * Kp) * 2) + (size_t)nt * q4_slot(bbytes + CBUF_BYTES);
}

/* Work of a call of T rows and reduction length K, given `small`, the AVX-512 kernel's work for
 * min(T, AMX_MIN_T - 1) rows: that below AMX_MIN_T rows, else the larger of it and the AMX
 * path's (so that the size for T covers every T' <= T). */
static inline size_t amx_work(size_t small, int64_t T, int64_t K, int n_threads)
{
    if (T < AMX_MIN_T)
        return small;
    const size_t big = q4_work_size(amx_need(T, K, resolve_threads(n_threads)));
    return big > small ? big : small;
}

/* Forward: Xb [Tp][Kp] and per thread the B tiles of 32 weight rows over Kp and Cbuf. */
size_t q4_gemm_fwd_work_amx(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t ts = T < AMX_MIN_T ? T : AMX_MIN_T - 1;
    return amx_work(q4_gemm_fwd_work_avx512(w, ts, n_threads), T, w->in, n_threads);
}

/* Backward: dYb [Tp][Op] and per thread the B tiles over Op rows of W and Cbuf. */
size_t q4_gemm_bwd_work_amx(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t ts = T < AMX_MIN_T ? T : AMX_MIN_T - 1;
    return amx_work(q4_gemm_bwd_work_avx512(w, ts, n_threads), T, w->out, n_threads);
}

typedef struct {
    const dec_ctx *dc;
    const q4_weight *w;
    const float *bias;
    const uint16_t *Ab; /* Xb or dYb */
    float *C;           /* Y or dX */
    int64_t T, Kp;      /* Kp: Xb's row length (forward) or dYb's, Op (backward) */
    uint8_t *per_thread;
    size_t bbytes;
    int bwd;
} amx_job;

/* tasks [i0, i1) of 32 outputs each, with this thread's B panel and C tiles */
static void amx_tasks(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const amx_job *j = ctx;
    uint8_t *mine = j->per_thread + (size_t)thread * q4_slot(j->bbytes + CBUF_BYTES);
    uint16_t *B = (uint16_t *)(void *)mine; /* forward: [Kp/32][2 tiles][16][16][2] bf16 */
    float *Cbuf = (float *)(void *)(mine + j->bbytes);
    memset(B, 0, j->bbytes); /* backward: rows >= out stay zero */
    tile_config();
    for (int64_t i = i0; i < i1; i++) {
        if (j->bwd)
            bwd_task(j->dc, j->w, j->Ab, j->T, j->Kp, j->C, i * 32, B, Cbuf);
        else
            fwd_task(j->dc, j->w, j->bias, j->Ab, j->T, j->Kp, j->C, i * 32, B, Cbuf);
    }
    _tile_release();
}

void q4_gemm_fwd_amx(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    if (T < AMX_MIN_T) {
        q4_gemm_fwd_avx512(w, bias, X, T, Y, n_threads, work, work_size);
        return;
    }
    const int nt = resolve_threads(n_threads);
    const int64_t Kp = (w->in + 31) / 32 * 32, Tp = (T + 31) / 32 * 32;
    const size_t bbytes = q4_line((size_t)(Kp / 32) * 2 * TILE_BF16 * 2);
    uint8_t *base = q4_work_start(work, work_size, q4_gemm_fwd_work_amx(w, T, n_threads));
    uint16_t *Xb = (uint16_t *)(void *)base; /* [Tp][Kp] bf16 */
    uint8_t *per_thread = base + q4_line((size_t)(Tp * Kp) * 2);
    to_bf16(X, T, w->in, Tp, Kp, Xb, nt);
    dec_ctx dc;
    dec_init(&dc, w);
    const int64_t ntask = (w->out + 31) / 32;
    amx_job j = {&dc, w, bias, Xb, Y, T, Kp, per_thread, bbytes, 0};
    par_for(nt, ntask, amx_tasks, &j);
}

void q4_gemm_bwd_amx(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                     void *work, size_t work_size)
{
    if (T <= 0)
        return;
    if (T < AMX_MIN_T) {
        q4_gemm_bwd_avx512(w, dY, T, dX, n_threads, work, work_size);
        return;
    }
    const int nt = resolve_threads(n_threads);
    const int64_t Op = (w->out + 31) / 32 * 32, Tp = (T + 31) / 32 * 32;
    const size_t bbytes = q4_line((size_t)(Op / 32) * 2 * TILE_BF16 * 2);
    uint8_t *base = q4_work_start(work, work_size, q4_gemm_bwd_work_amx(w, T, n_threads));
    uint16_t *dYb = (uint16_t *)(void *)base; /* [Tp][Op] bf16 */
    uint8_t *per_thread = base + q4_line((size_t)(Tp * Op) * 2);
    to_bf16(dY, T, w->out, Tp, Op, dYb, nt);
    dec_ctx dc;
    dec_init(&dc, w);
    const int64_t ntask = (w->in + 31) / 32;
    amx_job j = {&dc, w, NULL, dYb, dX, T, Op, per_thread, bbytes, 1};
    par_for(nt, ntask, amx_tasks, &j);
}
