/* q4_avx512.c — AVX-512 (F/BW/VL/DQ) fused dequant-GEMM kernels, fp32 arithmetic (within fp32
 * summation error of q4_gemm_*_ref). The same structure as q4_avx2.c with 512-bit vectors: a
 * dequantised panel P[k][32] (two zmm per k, 32 KB) and an 8x32 register-blocked microkernel; the
 * NF4 codebook lookup is one vpermps over 16 lanes. Forward with T <= 8 (decoding) runs the AVX2
 * GEMV of q4_avx2.c: its byte-plane lookups and once-per-block scaling with two accumulator
 * chains beat decoding into zmm and this file's panels (AMD EPYC with AVX-512, 1 thread, 896x896,
 * GFLOP/s: T = 1 Q4_0 18.6 vs 14.1, Q8_0 29.4 vs 15.3; T = 8 Q4_0 66.5 vs 31.1 with panels).
 * Results do not depend on the thread count. The AMX
 * variant (q4_amx.c) reuses these entry points for small T. Helpers are static (this file is
 * compiled with -mavx512*). tests/test_quant_kernels checks it against the reference wherever the
 * CPU has AVX-512 (the development machine of the GGUF types, an AMD EPYC, has). */
#include <immintrin.h>
#include <string.h>

#include "q4.h"
#include "qk_avx2.h"
#include "core/pool.h"
#include "core/status.h"

#define NR     32  /* panel width: two zmm */
#define MR     8   /* microkernel rows: 16 accumulators + 2 panel + 1 broadcast registers */
#define KC     256 /* reduction chunk (a multiple of 32) */
#define NP     2   /* panels per task: 64 output rows (fwd) or columns (bwd) */
#define GEMV_T 8   /* forward with T <= GEMV_T runs the AVX2 GEMV (q4_avx2.c GEMV_T) */

typedef struct {
    int qtype, bs, bs_log2; /* NF4 blocksize is a power of two: k/bs is a shift */
    int64_t nb;
    __m128i tab_i8; /* Q4_0: q-8; IQ4_NL: kvalues */
    __m512 tab_nf4; /* the 16 NF4 codes */
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

/* Decode values [k0, k0+32) of a row (k0 a multiple of 32) into v[0..1], in order, with the same
 * fp32 operations as q4_decode_ref. The GGUF read-only types (Q4_1 .. IQ4_XS) go through the
 * 256-bit decoders of qk_avx2.h, joined into two zmm. */
static inline void dec32(const dec_ctx *c, const uint8_t *row, int64_t k0, __m512 v[2])
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    if (c->qtype > LK_QTYPE_NF4) {
        __m256 h[4];
        qk_dec32(c->qtype, row, k0, h);
        v[0] = _mm512_insertf32x8(_mm512_castps256_ps512(h[0]), h[1], 1);
        v[1] = _mm512_insertf32x8(_mm512_castps256_ps512(h[2]), h[3], 1);
        return;
    }
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
        v[0] = _mm512_mul_ps(i8x16_to_ps(lo), d);
        v[1] = _mm512_mul_ps(i8x16_to_ps(hi), d);
        break;
    }
    case LK_QTYPE_Q8_0: {
        const uint8_t *blk = row + (k0 / 32) * 34;
        uint16_t dh;
        memcpy(&dh, blk, 2);
        __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        v[0] = _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i *)(blk + 2))), d);
        v[1] = _mm512_mul_ps(i8x16_to_ps(_mm_loadu_si128((const __m128i *)(blk + 18))), d);
        break;
    }
    default: { /* NF4: byte j = (value 2j << 4) | value 2j+1 */
        float amax;
        memcpy(&amax, row + c->nb * (c->bs / 2) + (k0 >> c->bs_log2) * 4, 4);
        __m512 a = _mm512_set1_ps(amax);
        __m128i q = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4), lo = _mm_and_si128(q, m4);
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
        __m512i i1 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo));
        v[0] = _mm512_mul_ps(_mm512_permutexvar_ps(i0, c->tab_nf4), a);
        v[1] = _mm512_mul_ps(_mm512_permutexvar_ps(i1, c->tab_nf4), a);
        break;
    }
    }
}

typedef struct {
    const dec_ctx *c;
    const q4_weight *w;
    const float *bias, *X, *dY;
    float *Y, *dX;
    int64_t T;
    uint8_t *slots; /* the panel GEMMs: one SLOT_BYTES slot per thread */
} avx512_job;

/* C[mr][0..ncols) += A[mr][0..kn) · P[kn][32]. mr is a literal at every call site. */
static inline __attribute__((always_inline)) void microkernel(int mr, const float *A, int64_t lda,
                                                              const float *P, int64_t kn, float *C,
                                                              int64_t ldc, int ncols)
{
    __m512 c[MR][2];
    const __mmask16 m0 = (__mmask16)(ncols >= 16 ? 0xffff : (1u << ncols) - 1);
    const __mmask16 m1 = (__mmask16)(ncols >= 32  ? 0xffff
                                     : ncols > 16 ? (1u << (ncols - 16)) - 1
                                                  : 0);
    for (int i = 0; i < MR; i++) {
        if (i >= mr)
            break;
        c[i][0] = _mm512_maskz_loadu_ps(m0, C + i * ldc);
        c[i][1] = _mm512_maskz_loadu_ps(m1, C + i * ldc + 16);
    }
    for (int64_t k = 0; k < kn; k++) {
        const __m512 b0 = _mm512_load_ps(P + k * NR), b1 = _mm512_load_ps(P + k * NR + 16);
        for (int i = 0; i < MR; i++) {
            if (i >= mr)
                break;
            const __m512 a = _mm512_set1_ps(A[i * lda + k]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        if (i >= mr)
            break;
        _mm512_mask_storeu_ps(C + i * ldc, m0, c[i][0]);
        _mm512_mask_storeu_ps(C + i * ldc + 16, m1, c[i][1]);
    }
}

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
    case 6: microkernel(6, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    case 7: microkernel(7, A + t * lda, lda, P, kn, C + t * ldc, ldc, ncols); break;
    default: break;
    }
}

/* Forward: task = 64 output rows; P[p][k][r] = W[o0+32p+r][kc0+k]. */
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
        const int64_t kn = in - kc0 < kc ? in - kc0 : kc;
        for (int64_t o = o0; o < o1; o++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
            float *Pp = P + ((o - o0) / NR) * KC * NR; /* [KC][NR] */
            const int r = (int)((o - o0) % NR);
            for (int64_t k = 0; k < kc; k += 32) {
                __m512 v[2];
                float tmp[32];
                dec32(dc, row, kc0 + k, v);
                _mm512_storeu_ps(tmp, v[0]);
                _mm512_storeu_ps(tmp + 16, v[1]);
                for (int j = 0; j < 32; j++)
                    Pp[(k + j) * NR + r] = tmp[j];
            }
        }
        for (int p = 0; p < np; p++) {
            const int64_t oc = o0 + p * NR;
            const int ncols = (int)(o1 - oc < NR ? o1 - oc : NR);
            panel_rows(X + kc0, in, T, P + (int64_t)p * KC * NR, kn, Y + oc, out, ncols);
        }
    }
}

/* Backward: task = 64 input columns; P[p][o][c] = W[oc0+o][k0+32p+c]. */
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
            for (int p = 0; p < np; p++) { /* one 32-block per panel row */
                __m512 v[2];
                dec32(dc, row, k0 + p * NR, v);
                float *Pp = P + ((int64_t)p * KC + o) * NR;
                _mm512_store_ps(Pp, v[0]);
                _mm512_store_ps(Pp + 16, v[1]);
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
    const avx512_job *j = ctx;
    float *P = (float *)(void *)(j->slots + (size_t)thread * SLOT_BYTES);
    memset(P, 0, PANEL_BYTES);
    for (int64_t i = i0; i < i1; i++)
        fwd_task(j->c, j->w, j->bias, j->X, j->T, j->Y, i * NP * NR, P);
}

static void bwd_tasks(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const avx512_job *j = ctx;
    float *P = (float *)(void *)(j->slots + (size_t)thread * SLOT_BYTES);
    memset(P, 0, PANEL_BYTES);
    for (int64_t i = i0; i < i1; i++)
        bwd_task(j->c, j->w, j->dY, j->T, j->dX, i * NP * NR, P);
}

/* Work of the forward: the AVX2 GEMV's for T <= GEMV_T, one panel per thread when T > GEMV_T;
 * the larger of the two for the T' <= T a call may have. */
size_t q4_gemm_fwd_work_avx512(const q4_weight *w, int64_t T, int n_threads)
{
    const size_t gemv = q4_gemm_fwd_work_avx2(w, T < GEMV_T ? T : GEMV_T, n_threads);
    const size_t gemm =
        T > GEMV_T ? q4_work_size((size_t)resolve_threads(n_threads) * SLOT_BYTES) : 0;
    return gemv > gemm ? gemv : gemm;
}

/* Work of the backward: one panel per thread. */
size_t q4_gemm_bwd_work_avx512(const q4_weight *w, int64_t T, int n_threads)
{
    (void)w;
    return T > 0 ? q4_work_size((size_t)resolve_threads(n_threads) * SLOT_BYTES) : 0;
}

void q4_gemm_fwd_avx512(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                        int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    if (T <= GEMV_T) { /* decoding: the AVX2 GEMV, faster than 512-bit decoding (see the top) */
        q4_gemm_fwd_avx2(w, bias, X, T, Y, n_threads, work, work_size);
        return;
    }
    const int nt = resolve_threads(n_threads);
    uint8_t *base = q4_work_start(work, work_size, q4_gemm_fwd_work_avx512(w, T, n_threads));
    dec_ctx dc;
    dec_init(&dc, w);
    const int64_t ntask = (w->out + NP * NR - 1) / (NP * NR);
    avx512_job j = {.c = &dc, .w = w, .bias = bias, .X = X, .Y = Y, .T = T, .slots = base};
    par_for(nt, ntask, fwd_tasks, &j);
}

void q4_gemm_bwd_avx512(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                        void *work, size_t work_size)
{
    if (T <= 0)
        return;
    const int nt = resolve_threads(n_threads);
    uint8_t *base = q4_work_start(work, work_size, q4_gemm_bwd_work_avx512(w, T, n_threads));
    dec_ctx dc;
    dec_init(&dc, w);
    const int64_t ntask = (w->in + NP * NR - 1) / (NP * NR);
    avx512_job j = {.c = &dc, .w = w, .dY = dY, .dX = dX, .T = T, .slots = base};
    par_for(nt, ntask, bwd_tasks, &j);
}
