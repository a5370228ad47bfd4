/* linear.c — fp32 linear layers through OpenBLAS, with a naive reference. */
#include "linear.h"

#include <cblas.h>

void linear_forward(const linear *L, const float *x, int64_t T, float *y, int n_threads)
{
    openblas_set_num_threads(n_threads);
    if (T == 1) {
        /* y[out] = W[out,in]·x[in] */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)L->out, (int)L->in, 1.0f, L->w,
                    (int)L->in, x, 1, 0.0f, y, 1);
    } else {
        /* y[T,out] = x[T,in]·W[out,in]ᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)L->out, (int)L->in,
                    1.0f, x, (int)L->in, L->w, (int)L->in, 0.0f, y, (int)L->out);
    }
    if (L->b)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < L->out; o++)
                y[t * L->out + o] += L->b[o];
}

void linear_forward_ref(const linear *L, const float *x, int64_t T, float *y)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < L->out; o++) {
            double acc = L->b ? L->b[o] : 0.0;
            for (int64_t i = 0; i < L->in; i++)
                acc += (double)x[t * L->in + i] * L->w[o * L->in + i];
            y[t * L->out + o] = (float)acc;
        }
}
