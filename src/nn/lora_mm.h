/* lora_mm.h — the fp32 products of a LoRA adapter, where one dimension is the rank (16 or so):
 * u = x·Aᵀ, y += s·u·Bᵀ, du = s·dy·B, dx += du·A (the rank the columns or the reduction) and
 * dA += duᵀ·x, dB += s·dyᵀ·u (the rank the rows or the columns, the reduction over the tokens).
 * With AVX2 kernels (lora_avx2.c, the dispatched variant avx2, avx512 or amx) they run on one
 * register-blocked kernel that reads its operands in place; otherwise through gemm_par
 * (OpenBLAS). Every element of C is computed by one thread in one fixed order, so the results do
 * not depend on the thread count. */
#ifndef LK_LORA_MM_H
#define LK_LORA_MM_H

#include <stdint.h>

/* C[M,N] = alpha·op(X)·op(W) (+ C when acc), row-major. op(X) = Xᵀ with X [K, M] when trans_x,
 * else X [M, K]; op(W) = Wᵀ with W [N, K] when trans_w, else W [K, N]; leading dimensions in
 * elements. wt: scratch of N·K floats for the kernel's copy of Wᵀ (used only when trans_w; may
 * be NULL when lora_mm_scratch_floats is 0). */
void lora_mm(int trans_x, int trans_w, int64_t M, int64_t N, int64_t K, float alpha, const float *X,
             int64_t ldx, const float *W, int64_t ldw, int acc, float *C, int64_t ldc, float *wt,
             int n_threads);

/* Floats of wt that lora_mm needs for a transposed W of n·k elements (0 when it runs on gemm_par).
 */
int64_t lora_mm_scratch_floats(int64_t n, int64_t k);

/* The kernel's view of one product: C[M,N] = alpha·Σ_k X(i,k)·W[k,:] (+ C), X(i, k) at
 * X[i·sm + k·sk], W [K, N] row-major. */
typedef struct {
    const float *X;
    int64_t sm, sk;
    const float *W; /* [K, N] */
    int64_t ldw;
    float *C; /* [M, N] */
    int64_t ldc, M, N, K;
    float alpha;
    int acc;
} lora_mm_args;

/* Rows [m0, m1) × columns [n0, n1) of a's C (AVX2 + FMA; lora_avx2.c). */
void lora_mm_avx2(const lora_mm_args *a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

#endif /* LK_LORA_MM_H */
