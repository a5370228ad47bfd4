/* linear.h — the one place every linear layer of the model goes through: y = x·Wᵀ + b.
 * Later issues plug the quantised kernels (quant/) and the LoRA delta in here. */
#ifndef LK_LINEAR_H
#define LK_LINEAR_H

#include <stdint.h>

/* One low-rank update attached to a linear layer: ΔW = scale · B·A. */
typedef struct {
    const float *A; /* [r, in] */
    const float *B; /* [out, r] */
    int64_t r;
    float scale;    /* s = alpha/r (alpha/sqrt(r) with rsLoRA) times the user's weight */
} lora_delta;

#define LINEAR_MAX_LORA 8

typedef struct {
    const char *name; /* tensor name, for messages */
    const float *w;   /* [out, in] row-major fp32 */
    const float *b;   /* [out] or NULL */
    int64_t in, out;
    lora_delta lora[LINEAR_MAX_LORA]; /* adapters applied on top of W, in order */
    int n_lora;
} linear;

/* y[T,out] = x[T,in]·Wᵀ + b + Σ scale·(x·Aᵀ)·Bᵀ, using n_threads (OpenBLAS sgemm; sgemv for
 * T = 1). tmp: [T, max r] scratch when the layer has adapters, else may be NULL. */
void linear_forward(const linear *L, const float *x, int64_t T, float *y, float *tmp,
                    int n_threads);

/* Largest rank attached to L (0 without adapters). */
int64_t linear_max_rank(const linear *L);

/* Naive triple loop of the same (the spec for tests). */
void linear_forward_ref(const linear *L, const float *x, int64_t T, float *y);

#endif /* LK_LINEAR_H */
