/* ops_avx2.c — ops_ew.h's loops compiled with AVX2 (-mavx2 -mfma -mf16c; ISO C, so no fused
 * multiply-adds: the same bits as ops.c's build of them). */
#include "nn/ops_ew.h"

void rmsnorm_forward_avx2(float *out, float *rstd, const float *x, const float *w, int64_t T,
                          int64_t C, float eps)
{
    ew_rmsnorm_forward(out, rstd, x, w, T, C, eps);
}

void rmsnorm_backward_avx2(float *dx, const float *dout, const float *x, const float *w,
                           const float *rstd, int64_t T, int64_t C)
{
    ew_rmsnorm_backward(dx, dout, x, w, rstd, T, C);
}

void swiglu_forward_avx2(float *h, const float *g, const float *u, int64_t n)
{
    ew_swiglu_forward(h, g, u, n);
}

void swiglu_backward_avx2(float *dg, float *du, const float *dh, const float *g, const float *u,
                          int64_t n)
{
    ew_swiglu_backward(dg, du, dh, g, u, n);
}
