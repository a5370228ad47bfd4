/* linear.c — fp32 linear layers through OpenBLAS, with a naive reference. */
#include "linear.h"

#include <cblas.h>

int64_t linear_max_rank(const linear *L)
{
    int64_t r = 0;
    for (int i = 0; i < L->n_lora; i++)
        r = L->lora[i].r > r ? L->lora[i].r : r;
    return r;
}

/* y[T,out] += scale · (x[T,in]·Aᵀ)·Bᵀ, through tmp[T, r] */
static void lora_forward(const lora_delta *d, const float *x, int64_t T, int64_t in, int64_t out,
                         float *y, float *tmp)
{
    int r = (int)d->r;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, r, (int)in, 1.0f, x, (int)in,
                d->A, (int)in, 0.0f, tmp, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)out, r, d->scale, tmp, r,
                d->B, r, 1.0f, y, (int)out);
}

void linear_forward(const linear *L, const float *x, int64_t T, float *y, float *tmp,
                    int n_threads)
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
    for (int i = 0; i < L->n_lora; i++)
        lora_forward(&L->lora[i], x, T, L->in, L->out, y, tmp);
}

void linear_forward_ref(const linear *L, const float *x, int64_t T, float *y)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < L->out; o++) {
            double acc = L->b ? L->b[o] : 0.0;
            for (int64_t i = 0; i < L->in; i++) {
                double w = L->w[o * L->in + i];
                /* W + Σ scale·B·A, formed element by element */
                for (int k = 0; k < L->n_lora; k++) {
                    const lora_delta *d = &L->lora[k];
                    for (int64_t j = 0; j < d->r; j++)
                        w += (double)d->scale * d->B[o * d->r + j] * d->A[j * L->in + i];
                }
                acc += (double)x[t * L->in + i] * w;
            }
            y[t * L->out + o] = (float)acc;
        }
}
