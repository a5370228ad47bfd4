/* ops_ew.h — the element-wise and per-row loops of ops.c (RMSNorm, SwiGLU), written once and
 * compiled twice: in ops.c for any CPU (SSE2 on x86-64) and in ops_avx2.c with AVX2 (8 lanes
 * instead of 4). Both builds are ISO C without fp contraction (GCC does not fuse a·b + c there),
 * and every lane runs the same operations in the same order, so both give the same bits. */
#ifndef LK_OPS_EW_H
#define LK_OPS_EW_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/fastmath.h"

/* The 8 running sums of ew_sumsq and ew_dot3 (lane j takes i ≡ j mod 8, so that their loops
 * vectorise without reassociation), added in a fixed tree. */
static inline double ew_tree(const double *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Σ x_i² in double. */
static inline double ew_sumsq(const float *x, int64_t n)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += (double)x[i + j] * x[i + j];
    double t = ew_tree(s);
    for (; i < n; i++)
        t += (double)x[i] * x[i];
    return t;
}

/* Σ a_i·b_i·c_i in double. */
static inline double ew_dot3(const float *a, const float *b, const float *c, int64_t n)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += (double)a[i + j] * b[i + j] * c[i + j];
    double t = ew_tree(s);
    for (; i < n; i++)
        t += (double)a[i] * b[i] * c[i];
    return t;
}

static inline void ew_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                                      int64_t T, int64_t C, float eps)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * C;
        double ss = ew_sumsq(xr, C);
        float r = 1.0f / sqrtf((float)(ss / (double)C) + eps);
        if (rstd)
            rstd[t] = r;
        for (int64_t i = 0; i < C; i++)
            out[t * C + i] = (xr[i] * r) * w[i];
    }
}

/* ∂y_i/∂x_j = w_i·r·δ_ij − w_i·x_i·r³·x_j/C, so dx_j = r·(dy_j·w_j − x_j·r²·mean(dy·w·x)) */
static inline void ew_rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                                       const float *rstd, int64_t T, int64_t C)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * C, *dy = dout + t * C;
        float r = rstd[t];
        double dot = ew_dot3(dy, w, xr, C);
        float k = (float)(dot / (double)C) * r * r;
        for (int64_t i = 0; i < C; i++)
            dx[t * C + i] += r * (dy[i] * w[i] - xr[i] * k);
    }
}

/* e^−x for σ(x) = 1/(1 + e^−x): fm_exp (loops the compiler vectorises; libm's expf is a call per
 * element), −x capped at 88 where fm_exp's range ends: below x = −88, σ(x) < 6e−39 and silu(x),
 * silu'(x) come out as tiny as with libm's e^−x (which overflows to inf there: −0). */
static inline float ew_exp_neg(float x)
{
    float z = -x, cap = 88.0f;
    uint32_t zb, cb, m = z < cap ? 0xffffffffu : 0u; /* a bit select: see fm_exp */
    memcpy(&zb, &z, 4);
    memcpy(&cb, &cap, 4);
    zb = (zb & m) | (cb & ~m);
    memcpy(&z, &zb, 4);
    return fm_exp(z);
}

static inline void ew_swiglu_forward(float *h, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        h[i] = x / (1.0f + ew_exp_neg(x)) * u[i];
    }
}

/* silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
static inline void ew_swiglu_backward(float *dg, float *du, const float *dh, const float *g,
                                      const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i], s = 1.0f / (1.0f + ew_exp_neg(x));
        du[i] = dh[i] * x * s;
        dg[i] = dh[i] * u[i] * s * (1.0f + x * (1.0f - s));
    }
}

/* The AVX2 builds of the same (ops_avx2.c; LK_HAVE_AVX2). */
void rmsnorm_forward_avx2(float *out, float *rstd, const float *x, const float *w, int64_t T,
                          int64_t C, float eps);
void rmsnorm_backward_avx2(float *dx, const float *dout, const float *x, const float *w,
                           const float *rstd, int64_t T, int64_t C);
void swiglu_forward_avx2(float *h, const float *g, const float *u, int64_t n);
void swiglu_backward_avx2(float *dg, float *du, const float *dh, const float *g, const float *u,
                          int64_t n);

#endif /* LK_OPS_EW_H */
