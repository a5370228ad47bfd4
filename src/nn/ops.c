/* ops.c — forward and backward of RMSNorm, RoPE (rotate_half, as Hugging Face), grouped-query
 * causal attention and SwiGLU. Each backward is derived beside its forward; tests/test_ops.c checks
 * every one against finite differences. */
#include "nn/ops.h"

#include <math.h>
#include <string.h>

#include "core/pool.h"

/* ---- RMSNorm: y = x·r·w, r = (mean(x²) + eps)^-1/2 ---- */

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t T, int64_t C,
                     float eps)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++)
            ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / (double)C) + eps);
        if (rstd)
            rstd[t] = r;
        for (int64_t i = 0; i < C; i++)
            out[t * C + i] = (xr[i] * r) * w[i];
    }
}

/* ∂y_i/∂x_j = w_i·r·δ_ij − w_i·x_i·r³·x_j/C, so dx_j = r·(dy_j·w_j − x_j·r²·mean(dy·w·x)) */
void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t T, int64_t C)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * C, *dy = dout + t * C;
        float r = rstd[t];
        double dot = 0;
        for (int64_t i = 0; i < C; i++)
            dot += (double)dy[i] * w[i] * xr[i];
        float k = (float)(dot / (double)C) * r * r;
        for (int64_t i = 0; i < C; i++)
            dx[t * C + i] += r * (dy[i] * w[i] - xr[i] * k);
    }
}

/* ---- RoPE ---- */

void rope_tables(float *cs, float *sn, const float *inv_freq, int64_t half, const int32_t *pos,
                 int64_t pos0, int64_t T)
{
    for (int64_t t = 0; t < T; t++) {
        float p = pos ? (float)pos[t] : (float)(pos0 + t);
        for (int64_t i = 0; i < half; i++) {
            float a = p * inv_freq[i];
            cs[t * half + i] = cosf(a);
            sn[t * half + i] = sinf(a);
        }
    }
}

/* (a, b) -> (a·c − b·s, b·c + a·s) for the pair (i, i + hd/2) */
void rope_forward(float *x, const float *cs, const float *sn, int64_t T, int64_t nh, int64_t hd)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *v = x + (t * nh + h) * hd;
            const float *c = cs + t * half, *s = sn + t * half;
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
}

/* the rotation is orthogonal: its transpose turns by −angle */
void rope_backward(float *d, const float *cs, const float *sn, int64_t T, int64_t nh, int64_t hd)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *v = d + (t * nh + h) * hd;
            const float *c = cs + t * half, *s = sn + t * half;
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] + b * s[i];
                v[i + half] = b * c[i] - a * s[i];
            }
        }
}

/* ---- attention ---- */

/* Multiply-adds below which the attention loops stay on one thread (waking the team costs more). */
#define PAR_MIN_WORK (1 << 21)

static float dot(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* One query row over keys lo..p: out[hd] = Σ_j softmax_j(q·k_j·scale)·v_j; returns the lse. */
static float attend_row(float *out, const float *q, const float *k, const float *v, int64_t kvd,
                        int64_t hd, int64_t lo, int64_t p, float *sc)
{
    float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY;
    for (int64_t j = lo; j <= p; j++) {
        sc[j] = dot(q, k + j * kvd, hd) * scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    double sum = 0;
    for (int64_t j = lo; j <= p; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = (float)(1.0 / sum);
    memset(out, 0, (size_t)hd * sizeof *out);
    for (int64_t j = lo; j <= p; j++)
        axpy(out, sc[j] * inv, v + j * kvd, hd);
    return mx + (float)log(sum);
}

/* Query row th (token th / H, head th % H) of attention_forward; sc: its thread's scores row. */
static void attend_query(float *out, float *lse, const float *q, const float *k, const float *v,
                         const attn_shape *a, float *sc, int64_t th)
{
    int64_t H = a->H, hd = a->hd, kvd = a->KVH * hd, grp = a->H / a->KVH;
    int64_t t = th / H, g = (th % H) / grp;
    float l = attend_row(out + th * hd, q + th * hd, k + g * hd, v + g * hd, kvd, hd, a->lo[t],
                         a->kpos0 + t, sc);
    if (lse)
        lse[th] = l;
}

typedef struct {
    float *out, *lse;
    const float *q, *k, *v;
    const attn_shape *a;
    float *scores; /* [nt][n_keys] */
} attn_fwd_job;

static void attend_queries(void *ctx, int64_t th0, int64_t th1, int thread)
{
    const attn_fwd_job *j = ctx;
    float *sc = j->scores + (int64_t)thread * (j->a->kpos0 + j->a->T); /* [n_keys] */
    for (int64_t th = th0; th < th1; th++)
        attend_query(j->out, j->lse, j->q, j->k, j->v, j->a, sc, th);
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const attn_shape *a, float *scores, int nt)
{
    int64_t n = a->T * a->H;
    if ((a->kpos0 + a->T / 2) * a->T * a->H * a->hd <= PAR_MIN_WORK)
        nt = 1; /* faster for little work */
    attn_fwd_job j = {out, lse, q, k, v, a, scores};
    par_for_dynamic(nt, n, 4, attend_queries, &j);
}

/* With P = softmax(S), S = scale·q·kᵀ and O = P·v:
 *   dv_j = Σ_t P_tj·dO_t,  dP_tj = dO_t·v_j,  dS_tj = P_tj·(dP_tj − D_t), D_t = dO_t·O_t,
 *   dq_t = scale·Σ_j dS_tj·k_j,  dk_j = scale·Σ_t dS_tj·q_t.
 * Pass 1 (parallel over query rows) gives dq and D; pass 2 (parallel over key rows and kv heads)
 * gives dk and dv, recomputing P from the saved lse. Every output is owned by one thread. */
typedef struct {
    float *dq, *dk, *dv, *D;
    const float *dout, *q, *k, *v, *out, *lse;
    const attn_shape *a;
} attn_grads;

/* Pass 1 for query row th: dq_t and D_t. */
static void backward_query(const attn_grads *x, int64_t th)
{
    const attn_shape *a = x->a;
    int64_t H = a->H, hd = a->hd, kvd = a->KVH * hd, grp = H / a->KVH;
    int64_t t = th / H, g = (th % H) / grp;
    float scale = 1.0f / sqrtf((float)hd);
    const float *qr = x->q + th * hd, *dor = x->dout + th * hd;
    float *dqr = x->dq + th * hd;
    float Dt = dot(dor, x->out + th * hd, hd);
    x->D[th] = Dt;
    memset(dqr, 0, (size_t)hd * sizeof *dqr);
    for (int64_t j = a->lo[t]; j <= t; j++) {
        const float *kj = x->k + j * kvd + g * hd;
        float p = expf(dot(qr, kj, hd) * scale - x->lse[th]);
        float ds = p * (dot(dor, x->v + j * kvd + g * hd, hd) - Dt);
        axpy(dqr, ds * scale, kj, hd);
    }
}

/* Pass 2 for key row j of kv head g (jg = j·KVH + g): dk_j and dv_j. */
static void backward_key(const attn_grads *x, int64_t jg)
{
    const attn_shape *a = x->a;
    int64_t T = a->T, H = a->H, hd = a->hd, KVH = a->KVH, kvd = KVH * hd, grp = H / KVH;
    int64_t j = jg / KVH, g = jg % KVH;
    float scale = 1.0f / sqrtf((float)hd);
    const float *kj = x->k + j * kvd + g * hd, *vj = x->v + j * kvd + g * hd;
    float *dkj = x->dk + j * kvd + g * hd, *dvj = x->dv + j * kvd + g * hd;
    memset(dkj, 0, (size_t)hd * sizeof *dkj);
    memset(dvj, 0, (size_t)hd * sizeof *dvj);
    for (int64_t t = j; t < T && a->lo[t] <= j; t++)
        for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
            int64_t th = t * H + h;
            const float *qr = x->q + th * hd, *dor = x->dout + th * hd;
            float p = expf(dot(qr, kj, hd) * scale - x->lse[th]);
            float ds = p * (dot(dor, vj, hd) - x->D[th]);
            axpy(dvj, p, dor, hd);
            axpy(dkj, ds * scale, qr, hd);
        }
}

static void backward_queries(void *ctx, int64_t th0, int64_t th1, int thread)
{
    for (int64_t th = th0; th < th1; th++)
        backward_query(ctx, th);
}

static void backward_keys(void *ctx, int64_t jg0, int64_t jg1, int thread)
{
    for (int64_t jg = jg0; jg < jg1; jg++)
        backward_key(ctx, jg);
}

void attention_backward(float *dq, float *dk, float *dv, float *D, const float *dout,
                        const float *q, const float *k, const float *v, const float *out,
                        const float *lse, const attn_shape *a, int nt)
{
    attn_grads x = {dq, dk, dv, D, dout, q, k, v, out, lse, a};
    int64_t T = a->T, nq = T * a->H, nk = T * a->KVH;
    if (T * T * a->H * a->hd <= PAR_MIN_WORK)
        nt = 1; /* one thread (as the forward) */
    par_for_dynamic(nt, nq, 4, backward_queries, &x);
    par_for_dynamic(nt, nk, 4, backward_keys, &x);
}

/* ---- SwiGLU: h = silu(g)·u, silu(g) = g·σ(g) ---- */

void swiglu_forward(float *h, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        h[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

/* silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                     int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = g[i], s = 1.0f / (1.0f + expf(-x));
        du[i] = dh[i] * x * s;
        dg[i] = dh[i] * u[i] * s * (1.0f + x * (1.0f - s));
    }
}
