/* lora_avx2.c — the LoRA products' kernel for AVX2 + FMA (lora_mm.h; compiled with -mavx2
 * -mfma): tiles of 6 rows × 16 columns of C in twelve ymm accumulators, the operands read where
 * they lie (no packed copies: with a rank of 16 either the columns or the reduction are 16 long, so
 * OpenBLAS's packing of the long operand cost as much as its products). */
#include <immintrin.h>
#include <stdint.h>

#include "nn/lora_mm.h"

#define MR 6  /* rows of a tile */
#define NR 16 /* columns of a tile: two ymm */

/* Row i of a tile: its two accumulators (declared, then each step's fmas, then stored). */
#define ROW_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps()
#define ROW_FMA(i)                                                                                 \
    if (mr > i) {                                                                                  \
        __m256 a = _mm256_broadcast_ss(x + i * sm);                                                \
        c##i##0 = _mm256_fmadd_ps(a, w0, c##i##0);                                                 \
        c##i##1 = _mm256_fmadd_ps(a, w1, c##i##1);                                                 \
    }
#define ROW_STORE(i)                                                                               \
    if (mr > i)                                                                                    \
        store_row(masked, acc, C + i * ldc, c##i##0, c##i##1, m0, m1, va)

/* o[0..16) = alpha·(r0, r1) (+ o with acc), only the columns of masks m0, m1 when masked. */
static inline __attribute__((always_inline)) void store_row(int masked, int acc, float *o,
                                                            __m256 r0, __m256 r1, __m256i m0,
                                                            __m256i m1, __m256 alpha)
{
    r0 = _mm256_mul_ps(alpha, r0);
    r1 = _mm256_mul_ps(alpha, r1);
    if (masked) {
        if (acc) {
            r0 = _mm256_add_ps(r0, _mm256_maskload_ps(o, m0));
            r1 = _mm256_add_ps(r1, _mm256_maskload_ps(o + 8, m1));
        }
        _mm256_maskstore_ps(o, m0, r0);
        _mm256_maskstore_ps(o + 8, m1, r1);
    } else {
        if (acc) {
            r0 = _mm256_add_ps(r0, _mm256_loadu_ps(o));
            r1 = _mm256_add_ps(r1, _mm256_loadu_ps(o + 8));
        }
        _mm256_storeu_ps(o, r0);
        _mm256_storeu_ps(o + 8, r1);
    }
}

/* Lanes of columns [0, 8) and [8, 16) below nr. */
static inline __attribute__((always_inline)) void masks(int64_t nr, __m256i *m0, __m256i *m1)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    *m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lane);
    *m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8), lane);
}

/* mr rows × nr columns (16 unless masked) of C = alpha·Σ_k X(i,k)·W[k,:] (+ C with acc); X(i, k)
 * at X[i·sm + k·sk]. Each element is one fma chain over k from 0, then alpha·chain (+ C): its
 * value does not depend on the tile it falls in. Registers: 2·mr accumulators, W's two vectors, a
 * broadcast, and with masked the two masks: masked tiles take at most 5 rows (17 > 16 ymm). The
 * masks and alpha are made again after the loop so that nothing else stays live across it. */
static inline __attribute__((always_inline)) void tile(int mr, int masked, const float *X,
                                                       int64_t sm, int64_t sk, const float *W,
                                                       int64_t ldw, int64_t K, float *C,
                                                       int64_t ldc, int64_t nr, float alpha,
                                                       int acc)
{
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    if (masked)
        masks(nr, &m0, &m1);
    ROW_DECL(0);
    ROW_DECL(1);
    ROW_DECL(2);
    ROW_DECL(3);
    ROW_DECL(4);
    ROW_DECL(5);
    for (int64_t k = 0; k < K; k++) {
        const float *w = W + k * ldw, *x = X + k * sk;
        __m256 w0 = masked ? _mm256_maskload_ps(w, m0) : _mm256_loadu_ps(w);
        __m256 w1 = masked ? _mm256_maskload_ps(w + 8, m1) : _mm256_loadu_ps(w + 8);
        ROW_FMA(0)
        ROW_FMA(1)
        ROW_FMA(2)
        ROW_FMA(3)
        ROW_FMA(4)
        ROW_FMA(5)
    }
    if (masked)
        masks(nr, &m0, &m1);
    const __m256 va = _mm256_set1_ps(alpha);
    ROW_STORE(0);
    ROW_STORE(1);
    ROW_STORE(2);
    ROW_STORE(3);
    ROW_STORE(4);
    ROW_STORE(5);
}

/* One tile of mr (1..6) rows, the compile-time cases of tile(); a masked tile of 6 rows as 5 + 1. */
#define TILE_CASES(masked, acc)                                                                    \
    switch (mr) {                                                                                  \
    case 1: tile(1, masked, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc); break;                  \
    case 2: tile(2, masked, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc); break;                  \
    case 3: tile(3, masked, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc); break;                  \
    case 4: tile(4, masked, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc); break;                  \
    case 5: tile(5, masked, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc); break;                  \
    default:                                                                                       \
        if (masked) {                                                                              \
            tile(5, 1, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc);                              \
            tile(1, 1, X + 5 * sm, sm, sk, W, ldw, K, C + 5 * ldc, ldc, nr, alpha, acc);           \
        } else {                                                                                   \
            tile(6, 0, X, sm, sk, W, ldw, K, C, ldc, nr, alpha, acc);                              \
        }                                                                                          \
        break;                                                                                     \
    }

static void tile_any(int mr, int64_t nr, const float *X, int64_t sm, int64_t sk, const float *W,
                     int64_t ldw, int64_t K, float *C, int64_t ldc, float alpha, int acc)
{
    if (nr == NR && acc)
        TILE_CASES(0, 1)
    else if (nr == NR)
        TILE_CASES(0, 0)
    else if (acc)
        TILE_CASES(1, 1)
    else
        TILE_CASES(1, 0)
}

/* Tiles of [m0, m1) × [n0, n1). A long reduction (K > 64: x·Aᵀ, dy·B, duᵀ·x, dyᵀ·u) goes down
 * the columns of a 16-wide panel of W, which stays in cache for every row tile; a short one (the
 * rank: u·Bᵀ, du·A) goes along the rows, each row tile of C written once, contiguously, with
 * W [K, N] (K·N floats) kept in cache. */
void lora_mm_avx2(const lora_mm_args *a, int64_t m0, int64_t m1, int64_t n0, int64_t n1)
{
    const int rows_outer = a->K <= 64;
    int64_t o0 = rows_outer ? m0 : n0, o1 = rows_outer ? m1 : n1, os = rows_outer ? MR : NR;
    int64_t i0 = rows_outer ? n0 : m0, i1 = rows_outer ? n1 : m1, is = rows_outer ? NR : MR;
    for (int64_t o = o0; o < o1; o += os)
        for (int64_t i = i0; i < i1; i += is) {
            int64_t m = rows_outer ? o : i, n = rows_outer ? i : o;
            int64_t nr = n1 - n < NR ? n1 - n : NR;
            int mr = (int)(m1 - m < MR ? m1 - m : MR);
            tile_any(mr, nr, a->X + m * a->sm, a->sm, a->sk, a->W + n, a->ldw, a->K,
                     a->C + m * a->ldc + n, a->ldc, a->alpha, a->acc);
        }
}
