/* linear.h — the one place every linear layer of the model goes through: y = x·Wᵀ + b.
 * Later issues plug the quantised kernels (quant/) and the LoRA delta in here. */
#ifndef LK_LINEAR_H
#define LK_LINEAR_H

#include <stdint.h>

typedef struct {
    const char *name; /* tensor name, for messages */
    const float *w;   /* [out, in] row-major fp32 */
    const float *b;   /* [out] or NULL */
    int64_t in, out;
} linear;

/* y[T,out] = x[T,in]·Wᵀ + b, using n_threads (OpenBLAS sgemm; sgemv for T = 1). */
void linear_forward(const linear *L, const float *x, int64_t T, float *y, int n_threads);

/* Naive triple loop of the same (the spec for tests). */
void linear_forward_ref(const linear *L, const float *x, int64_t T, float *y);

#endif /* LK_LINEAR_H */
