/* linear.h — the one place every linear layer of the model goes through: y = x·Wᵀ + b.
 * Later issues plug the quantised kernels (quant/) and the LoRA delta in here. */
#ifndef LK_LINEAR_H
#define LK_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "q4.h"

/* One low-rank update attached to a linear layer: ΔW = scale · B·A. */
typedef struct {
    const float *A; /* [r, in] */
    const float *B; /* [out, r] */
    int64_t r;
    float scale; /* s = alpha/r (alpha/sqrt(r) with rsLoRA) times the user's weight */
} lora_delta;

#define LINEAR_MAX_LORA 8

/* Training state of the first adapter slot (lora[0]) of a linear layer. */
typedef struct {
    float *dA, *dB; /* [r, in], [out, r]: gradients, accumulated by linear_backward */
    float dropout;  /* probability of zeroing an input of the LoRA path (PEFT's lora_dropout) */
    int64_t index;  /* the adapter's index in the trained set: its dropout stream */
} lora_train;

typedef struct {
    const char *name; /* tensor name, for messages */
    const float *w;   /* [out, in] row-major fp32, or NULL when the weight is quantised */
    q4_weight qw;     /* the quantised weight when w is NULL (quant/: fused dequant-GEMM) */
    const float *b;   /* [out] or NULL */
    int64_t in, out;
    int64_t perm_heads; /* > 0: W's rows (and b) are in llama.cpp's q/k order for this many heads
                         * (a GGUF llama base: within each head, row 2i+j holds Hugging Face row
                         * j·hd/2+i); the layer still computes the Hugging Face function, its
                         * outputs, adapters and gradients in Hugging Face order. 0: plain. */
    lora_delta lora[LINEAR_MAX_LORA]; /* adapters applied on top of W, in order */
    int n_lora;
    lora_train *train; /* non-NULL while lora[0] is being trained */
    int int8;          /* 1: the products with qw run on int8 (quant/q8.h; --compute int8) */
    q4_weight qwt;     /* with int8: Wᵀ[in, out] as Q8_0 rows (q8_transpose) for dx in the
                        * backward; data NULL: none (dx through qw's fp32 backward) */
    int act2;          /* with int8: training forwards (linear_forward_train) quantise x in two
                        * int8 terms, x ≈ d1·q1 + d2·q2 (q2 the residual's, two products summed in
                        * fp32): about 16-bit activations for twice the int8 products; inference
                        * forwards (linear_forward, _multi) take one term, as llama.cpp does */
    q4_weight qwc;     /* with act2 on an NF4 matrix: what its int8 codebook (q8_nf4_i8) misses of
                        * each value, as Q4_0 rows of W's shape, added by one more int8 product in
                        * every forward; data NULL: none */
} linear;


/* Work memory of linear_forward (backward 0) or of linear_forward, linear_forward_train and
 * linear_backward (backward 1) on up to T rows with n_threads threads, in bytes: the LoRA
 * products' scratch and the fused kernel's work (q4_gemm_*_work). linear_forward_train needs
 * backward 1's only on a layer with two int8 terms (linear.act2), whose [T, in + out] area
 * inference does without (an NF4 correction keeps [T, out] of it). The callers plan it once for their longest call and largest
 * layer; the calls allocate nothing. Any alignment of 4 bytes or more. */
size_t linear_work_bytes(const linear *L, int64_t T, int n_threads, int backward);

/* y[T,out] = x[T,in]·Wᵀ + b + Σ scale·(x·Aᵀ)·Bᵀ, using n_threads (OpenBLAS sgemm; sgemv for
 * T = 1). work: work_size bytes, at least linear_work_bytes(L, T, n_threads, 0) (may be NULL when
 * that is 0). No dropout: the inference forward, and training's where dropout is off. */
void linear_forward(const linear *L, const float *x, int64_t T, float *y, void *work,
                    size_t work_size, int n_threads);

/* ys[i][T, Ls[i]->out] = linear_forward(Ls[i], x, T, ...) for the n layers that share the input x
 * (q/k/v, gate/up): the same bits. With T = 1 and more than one thread, the base products of all n
 * run in ONE parallel region (each thread its rows of every layer) instead of n: decoding wakes the
 * threads half as often (not with an NF4 codebook correction, linear.qwc: then one layer after
 * the other). work: at least linear_forward_multi_work_bytes(Ls, n, n_threads) bytes
 * for T = 1, and linear_work_bytes of every layer for T rows otherwise. */
void linear_forward_multi(const linear *const *Ls, int n, const float *x, int64_t T,
                          float *const *ys, void *work, size_t work_size, int n_threads);
size_t linear_forward_multi_work_bytes(const linear *const *Ls, int n, int n_threads);

/* The same under training (with L->act2, two int8 terms): with L->train, dropout > 0 and
 * mask_key != 0, the first adapter sees
 * dropout(x), the mask a stateless hash of (mask_key, element), so the same key gives the same
 * mask (a recomputed forward under activation checkpointing matches the first). */
void linear_forward_train(const linear *L, const float *x, int64_t T, float *y, void *work,
                          size_t work_size, uint64_t mask_key, int n_threads);

/* dx[T,in] += dy[T,out]·(W + Σ scale·B·A); for a trained first adapter also dA += s·(dy·B)ᵀ·x_d,
 * dB += s·dyᵀ·(x_d·Aᵀ), x_d the input dropped out with mask_key's mask (as the forward's; 0: no
 * dropout). dx may be NULL (input needs no gradient). work: at least
 * linear_work_bytes(L, T, n_threads, 1) bytes. */
void linear_backward(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                     void *work, size_t work_size, uint64_t mask_key, int n_threads);
/* The same with dx[T,in] = dy·(W + Σ scale·B·A) (overwritten, never read; dx not NULL): the
 * first gradient into a buffer, without zeroing it first and adding. */
void linear_backward_set(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                         void *work, size_t work_size, uint64_t mask_key, int n_threads);

/* The training forward and backward of a layer with a trained adapter (L->train) that keep the
 * adapter's u = x_d·Aᵀ [T, L->lora[0].r] between them: linear_forward_train_keep is
 * linear_forward_train writing u into the caller's buffer; linear_backward_kept is
 * linear_backward (set 0) or linear_backward_set (set 1) reading it there instead of recomputing
 * it (one product and a transposition of A fewer), for the same x, mask_key and adapter values:
 * the same bits as the pair without u. */
void linear_forward_train_keep(const linear *L, const float *x, int64_t T, float *y, float *u,
                               void *work, size_t work_size, uint64_t mask_key, int n_threads);
void linear_backward_kept(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                          const float *u, int set, void *work, size_t work_size, uint64_t mask_key,
                          int n_threads);

/* Largest rank attached to L (0 without adapters). */
int64_t linear_max_rank(const linear *L);

/* Rows [r0, r0+n) of L as their own layer (no bias, no adapters): for chunking the LM head. With
 * a transposed copy, r0 must be a multiple of 32 (its columns [r0, r0+n) are whole blocks). */
linear linear_rows(const linear *L, int64_t r0, int64_t n);

/* Naive triple loop of the same (the spec for tests). */
void linear_forward_ref(const linear *L, const float *x, int64_t T, float *y);

#endif /* LK_LINEAR_H */
