/* attn.c — the attention kernels (src/nn/attn_kernel.h, the portable variant attn_ref.c: on
 * aarch64 its generic vectors are NEON) against a naive fp64 reference written from the
 * definition, for a CPU the project has no machine of: .ci/arm.sh cross-compiles it with
 * src/nn/{ops,attn_ref}.c, quant/ and core/{status,tensor,pool}.c and runs it under qemu-aarch64.
 * No cmocka; tests/test_attn.c does the full checks natively for every x86 variant.
 *
 * Cases: grouped heads (4/1, 9/3, 2/2), head dims 48 / 64 / 8, T across block edges, packed
 * sequences with sliding windows, 2 threads; out, dq, dk, dv within 1e-4 of the reference (inputs
 * in [-1, 1]), and bit-identical results on 1 and 2 threads. Ends with "N passed, N failed"; exit
 * 1 on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"

typedef struct {
    int T, H, KVH, hd, win;
} acase;

typedef struct {
    float *q, *k, *v, *dout, *out, *lse, *D, *dq, *dk, *dv, *work;
} outs;

static double uniform(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 16777216.0 * 2 - 1;
}

/* The example boundary at 37 (packing) and a window of win keys. */
static void make_lo(int64_t *lo, int T, int win)
{
    for (int t = 0; t < T; t++) {
        int64_t l = t >= 37 ? 37 : 0, w = t - win + 1;
        lo[t] = w > l ? w : l;
    }
}

static void run_kernels(const acase *c, const int64_t *lo, outs *o, int nt)
{
    attn_shape a = {.T = c->T, .H = c->H, .KVH = c->KVH, .hd = c->hd, .kpos0 = 0, .lo = lo};
    attention_forward(o->out, o->lse, o->q, o->k, o->v, &a, o->work, nt);
    attention_backward(o->dq, o->dk, o->dv, o->D, o->dout, o->q, o->k, o->v, o->out, o->lse, &a,
                       o->work, nt);
}

/* Largest |kernel − reference| of out, dq, dk, dv (err[4]). */
static void compare(const acase *c, const int64_t *lo, const outs *o, double *err)
{
    int T = c->T, H = c->H, hd = c->hd, qd = H * hd, kvd = c->KVH * hd, grp = H / c->KVH;
    double *rdk = calloc((size_t)(T * kvd), sizeof *rdk),
           *rdv = calloc((size_t)(T * kvd), sizeof *rdv);
    double *p = malloc((size_t)T * sizeof *p), *dp = malloc((size_t)T * sizeof *dp);
    double sc = 1 / sqrt((double)hd);
    memset(err, 0, 4 * sizeof *err);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int g = h / grp;
            const float *q = o->q + t * qd + h * hd, *dout = o->dout + t * qd + h * hd;
            double mx = -INFINITY, sum = 0, pdp = 0;
            for (int64_t j = lo[t]; j <= t; j++) {
                double s = 0;
                for (int i = 0; i < hd; i++)
                    s += (double)q[i] * o->k[j * kvd + g * hd + i];
                p[j] = s * sc;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int64_t j = lo[t]; j <= t; j++)
                sum += exp(p[j] - mx);
            for (int64_t j = lo[t]; j <= t; j++) {
                p[j] = exp(p[j] - mx) / sum;
                dp[j] = 0;
                for (int i = 0; i < hd; i++)
                    dp[j] += (double)dout[i] * o->v[j * kvd + g * hd + i];
                pdp += p[j] * dp[j];
            }
            for (int i = 0; i < hd; i++) {
                double out = 0, dq = 0;
                for (int64_t j = lo[t]; j <= t; j++) {
                    out += p[j] * o->v[j * kvd + g * hd + i];
                    dq += p[j] * (dp[j] - pdp) * sc * o->k[j * kvd + g * hd + i];
                    rdk[j * kvd + g * hd + i] += p[j] * (dp[j] - pdp) * sc * q[i];
                    rdv[j * kvd + g * hd + i] += p[j] * dout[i];
                }
                err[0] = fmax(err[0], fabs(out - o->out[t * qd + h * hd + i]));
                err[1] = fmax(err[1], fabs(dq - o->dq[t * qd + h * hd + i]));
            }
        }
    for (int i = 0; i < T * kvd; i++) {
        err[2] = fmax(err[2], fabs(rdk[i] - o->dk[i]));
        err[3] = fmax(err[3], fabs(rdv[i] - o->dv[i]));
    }
    free(rdk);
    free(rdv);
    free(p);
    free(dp);
}

static void outs_alloc(outs *o, const acase *c)
{
    size_t nq = (size_t)(c->T * c->H * c->hd), nkv = (size_t)(c->T * c->KVH * c->hd);
    size_t nl = (size_t)(c->T * c->H);
    o->work = malloc((size_t)attention_work_floats(c->T, c->H, c->KVH, c->hd, 2, 1) * 4);
    float **q[] = {&o->q, &o->dout, &o->out, &o->dq}, **k[] = {&o->k, &o->v, &o->dk, &o->dv};
    for (int i = 0; i < 4; i++) {
        *q[i] = malloc(nq * sizeof(float));
        *k[i] = malloc(nkv * sizeof(float));
    }
    o->lse = malloc(nl * sizeof(float));
    o->D = malloc(nl * sizeof(float));
}

static void outs_free(outs *o)
{
    float *all[] = {o->q, o->k, o->v, o->dout, o->out, o->lse, o->D, o->dq, o->dk, o->dv, o->work};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* Reference check on 2 threads, then the same bits on 1. Returns 1 when both hold. */
static int check(const acase *c)
{
    int64_t *lo = malloc((size_t)c->T * sizeof *lo);
    make_lo(lo, c->T, c->win);
    outs o[2];
    for (int r = 0; r < 2; r++) {
        outs_alloc(&o[r], c);
        unsigned s = (unsigned)(c->T * 7 + c->hd);
        size_t nq = (size_t)(c->T * c->H * c->hd), nkv = (size_t)(c->T * c->KVH * c->hd);
        for (size_t i = 0; i < nq; i++) {
            o[r].q[i] = (float)uniform(&s);
            o[r].dout[i] = (float)uniform(&s);
        }
        for (size_t i = 0; i < nkv; i++) {
            o[r].k[i] = (float)uniform(&s);
            o[r].v[i] = (float)uniform(&s);
        }
        run_kernels(c, lo, &o[r], 2 - r);
    }
    double err[4];
    compare(c, lo, &o[0], err);
    size_t nq = (size_t)(c->T * c->H * c->hd) * 4, nkv = (size_t)(c->T * c->KVH * c->hd) * 4;
    int same = !memcmp(o[0].out, o[1].out, nq) && !memcmp(o[0].dq, o[1].dq, nq) &&
               !memcmp(o[0].dk, o[1].dk, nkv) && !memcmp(o[0].dv, o[1].dv, nkv);
    int ok = err[0] < 1e-4 && err[1] < 1e-4 && err[2] < 1e-4 && err[3] < 1e-4 && same;
    printf("%s T %d H %d/%d hd %d window %d [%s]: max error out %.2e dq %.2e dk %.2e dv %.2e; "
           "1 and 2 threads %s\n",
           ok ? "ok  " : "FAIL", c->T, c->H, c->KVH, c->hd, c->win, attention_variant(), err[0],
           err[1], err[2], err[3], same ? "the same bits" : "DIFFER");
    outs_free(&o[0]);
    outs_free(&o[1]);
    free(lo);
    return ok;
}

int main(void)
{
    static const acase cases[] = {{100, 4, 1, 48, 30}, {130, 9, 3, 64, 1000}, {33, 2, 2, 8, 5}};
    int pass = 0, fail = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]) ? pass++ : fail++;
    printf("%d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
