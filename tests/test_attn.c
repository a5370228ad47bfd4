/* test_attn.c — the blocked attention kernels (src/nn/attn_kernel.h) against a naive fp64
 * reference written here from the definition, over odd shapes: T = 1..600 (block sizes are 32,
 * so block edges and partial blocks), head dims 64/48/8, H/KVH 9/3, 4/1, 2/2, 14/2, a KV cache
 * (kpos0 > 0, forward), packed sequences and sliding windows (lo); finite differences of the
 * forward on a small case crossing block edges; and bit-identical results for 1, 2 and 3 threads
 * (work memory and outputs start as NaN).
 * ctest runs it once per variant this machine has (LK_KERNELS=ref / avx2 / the default).
 *
 * With --bench T H KVH hd reps [threads], it times attention forward and backward instead (best
 * of reps, milliseconds; BENCHMARKS.md, issue 13). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/ops.h"
#include "core/rng.h"
#include "testutil.h"

typedef struct {
    int64_t T, H, KVH, hd, kpos0;
    int lo_kind; /* 0 causal, 1 packed, 2 window, 3 packed + window, 4 cache window */
    int64_t param;
} att_case;

typedef struct {
    att_case c;
    int64_t nk, qd, kvd;
    int64_t *lo;
    float *q, *k, *v, *dout;         /* inputs */
    float *out, *lse, *dq, *dk, *dv; /* kernel results */
    float *D, *work;
    double *rout, *rlse, *rdq, *rdk, *rdv; /* reference */
} att_data;

static void fill(float *x, int64_t n, rng_state *r, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r) * scale;
}

/* lo[t] for the case (non-decreasing, lo[t] <= kpos0 + t). */
static void make_lo(const att_case *c, int64_t *lo)
{
    for (int64_t t = 0; t < c->T; t++) {
        int64_t p = c->kpos0 + t, l = 0;
        if (c->lo_kind == 1 || c->lo_kind == 3) { /* examples of lengths 37, 100, 5, 37, ... */
            static const int64_t len[] = {37, 100, 5};
            int64_t s = 0, i = 0;
            while (s + len[i % 3] <= t)
                s += len[i++ % 3];
            l = s;
        }
        if (c->lo_kind >= 2 && p - c->param + 1 > l)
            l = p - c->param + 1;
        lo[t] = l;
    }
}

static void data_init(att_data *d, const att_case *c, int nt, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->c = *c;
    d->nk = c->kpos0 + c->T;
    d->qd = c->H * c->hd;
    d->kvd = c->KVH * c->hd;
    int64_t nq = c->T * d->qd, nkv = d->nk * d->kvd, nl = c->T * c->H;
    d->lo = malloc((size_t)c->T * sizeof *d->lo);
    float **f[] = {&d->q, &d->dout, &d->out, &d->dq};
    for (int i = 0; i < 4; i++)
        *f[i] = calloc((size_t)nq, sizeof(float));
    float **g[] = {&d->k, &d->v, &d->dk, &d->dv};
    for (int i = 0; i < 4; i++)
        *g[i] = calloc((size_t)nkv, sizeof(float));
    d->lse = calloc((size_t)nl, sizeof(float));
    d->D = calloc((size_t)nl, sizeof(float));
    d->work = malloc((size_t)attention_work_floats(d->nk, c->H, c->KVH, c->hd, nt, c->kpos0 == 0) *
                     sizeof(float));
    /* the work memory, and the outputs the kernels overwrite, start as NaN */
    int64_t nw = attention_work_floats(d->nk, c->H, c->KVH, c->hd, nt, c->kpos0 == 0);
    for (int64_t i = 0; i < nw; i++)
        d->work[i] = NAN;
    for (int64_t i = 0; i < nq; i++)
        d->dq[i] = NAN;
    for (int64_t i = 0; i < nkv; i++)
        d->dk[i] = d->dv[i] = NAN;
    make_lo(c, d->lo);
    rng_state r;
    rng_seed(&r, seed, 7);
    fill(d->q, nq, &r, 1.0f);
    fill(d->k, nkv, &r, 1.0f);
    fill(d->v, nkv, &r, 1.0f);
    fill(d->dout, nq, &r, 1.0f);
}

static void data_free(att_data *d)
{
    void *p[] = {d->lo, d->q, d->k,    d->v,    d->dout, d->out, d->lse, d->dq, d->dk,
                 d->dv, d->D, d->work, d->rout, d->rlse, d->rdq, d->rdk, d->rdv};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

static attn_shape shape_of(const att_data *d)
{
    const att_case *c = &d->c;
    return (attn_shape){
        .T = c->T, .H = c->H, .KVH = c->KVH, .hd = c->hd, .kpos0 = c->kpos0, .lo = d->lo};
}

/* The definition in fp64: P = softmax over keys lo..kpos0+t of q·k/√hd, O = P·v; and the
 * gradients of Σ dout·O (dS = P∘(dP − rowsum(P∘dP))). */
static void reference(att_data *d, int backward)
{
    const att_case *c = &d->c;
    int64_t T = c->T, H = c->H, hd = c->hd, grp = H / c->KVH, qd = d->qd, kvd = d->kvd;
    d->rout = calloc((size_t)(T * qd), sizeof(double));
    d->rlse = calloc((size_t)(T * H), sizeof(double));
    d->rdq = calloc((size_t)(T * qd), sizeof(double));
    d->rdk = calloc((size_t)(d->nk * kvd), sizeof(double));
    d->rdv = calloc((size_t)(d->nk * kvd), sizeof(double));
    double *p = malloc((size_t)d->nk * sizeof *p), *dp = malloc((size_t)d->nk * sizeof *dp);
    double scale = 1.0 / sqrt((double)hd);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / grp, lo = d->lo[t], hi = c->kpos0 + t;
            const float *q = d->q + t * qd + h * hd, *dout = d->dout + t * qd + h * hd;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = lo; j <= hi; j++) {
                double s = 0;
                for (int64_t i = 0; i < hd; i++)
                    s += (double)q[i] * d->k[j * kvd + g * hd + i];
                p[j] = s * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int64_t j = lo; j <= hi; j++)
                sum += exp(p[j] - mx);
            d->rlse[t * H + h] = mx + log(sum);
            double *o = d->rout + t * qd + h * hd, pdp = 0;
            for (int64_t j = lo; j <= hi; j++) {
                p[j] = exp(p[j] - mx) / sum;
                dp[j] = 0;
                for (int64_t i = 0; i < hd; i++) {
                    o[i] += p[j] * d->v[j * kvd + g * hd + i];
                    dp[j] += (double)dout[i] * d->v[j * kvd + g * hd + i];
                }
                pdp += p[j] * dp[j];
            }
            if (!backward)
                continue;
            for (int64_t j = lo; j <= hi; j++) {
                double ds = p[j] * (dp[j] - pdp) * scale;
                for (int64_t i = 0; i < hd; i++) {
                    d->rdq[t * qd + h * hd + i] += ds * d->k[j * kvd + g * hd + i];
                    d->rdk[j * kvd + g * hd + i] += ds * q[i];
                    d->rdv[j * kvd + g * hd + i] += p[j] * dout[i];
                }
            }
        }
    free(p);
    free(dp);
}

/* max |got − want| <= tol·(1 + max |want|) */
static void expect_close(const char *what, const att_case *c, const float *got, const double *want,
                         int64_t n, double tol)
{
    double err = 0, mag = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        if (!(e <= err)) { /* NaN counts */
            err = e;
            at = i;
        }
        mag = fabs(want[i]) > mag ? fabs(want[i]) : mag;
    }
    if (!(err <= tol * (1 + mag)))
        fail_msg("%s: T %lld H %lld/%lld hd %lld kpos0 %lld lo %d/%lld: max error %.3g at %lld "
                 "(got %.7g, want %.7g; scale %.3g)",
                 what, (long long)c->T, (long long)c->H, (long long)c->KVH, (long long)c->hd,
                 (long long)c->kpos0, c->lo_kind, (long long)c->param, err, (long long)at,
                 (double)got[at], want[at], mag);
}

static void run_case(const att_case *c, int nt)
{
    att_data d;
    data_init(&d, c, nt, (uint64_t)(c->T * 131 + c->hd * 7 + c->H));
    attn_shape a = shape_of(&d);
    int bwd = c->kpos0 == 0;
    reference(&d, bwd);
    attention_forward(d.out, d.lse, d.q, d.k, d.v, &a, d.work, nt);
    expect_close("out", c, d.out, d.rout, c->T * d.qd, 2e-5);
    expect_close("lse", c, d.lse, d.rlse, c->T * c->H, 2e-6);
    if (bwd) {
        attention_backward(d.dq, d.dk, d.dv, d.D, d.dout, d.q, d.k, d.v, d.out, d.lse, &a, d.work,
                           nt);
        expect_close("dq", c, d.dq, d.rdq, c->T * d.qd, 3e-5);
        expect_close("dk", c, d.dk, d.rdk, d.nk * d.kvd, 3e-5);
        expect_close("dv", c, d.dv, d.rdv, d.nk * d.kvd, 3e-5);
    }
    data_free(&d);
}

static void test_variant(void **state)
{
    (void)state;
    const char *env = getenv("LK_KERNELS");
    fprintf(stderr, "attention variant: %s (LK_KERNELS=%s)\n", attention_variant(), env ? env : "");
    if (env && !strcmp(env, "ref"))
        assert_string_equal(attention_variant(), "ref");
}

/* Training shapes (kpos0 0, forward and backward). */
static void test_against_reference(void **state)
{
    (void)state;
    static const att_case cases[] = {
        {1, 2, 2, 8, 0, 0, 0},      {2, 4, 1, 8, 0, 0, 0},     {31, 9, 3, 64, 0, 0, 0},
        {32, 4, 1, 48, 0, 0, 0},    {33, 2, 2, 8, 0, 0, 0},    {64, 9, 3, 64, 0, 1, 0},
        {100, 4, 1, 48, 0, 2, 17},  {130, 2, 2, 64, 0, 3, 40}, {257, 9, 3, 64, 0, 1, 0},
        {257, 14, 2, 64, 0, 2, 64}, {600, 4, 1, 64, 0, 0, 0},  {600, 2, 2, 48, 0, 3, 33},
        {77, 4, 1, 8, 0, 2, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 2);
}

/* A KV cache: queries at kpos0.. see the cached keys (forward only, as generation). */
static void test_kv_cache(void **state)
{
    (void)state;
    static const att_case cases[] = {
        {1, 9, 3, 64, 200, 0, 0}, {1, 14, 2, 64, 31, 4, 16}, {5, 4, 1, 48, 63, 0, 0},
        {40, 2, 2, 8, 90, 4, 50}, {64, 9, 3, 64, 33, 0, 0},  {1, 2, 2, 8, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 2);
}

/* Bit-identical results on 1, 2 and 3 threads (work large enough to run on several; the
 * backward's key blocks of a kv head add to dq in order, also with a single kv head). */
static void test_threads(void **state)
{
    (void)state;
    static const att_case cases[] = {{300, 9, 3, 64, 0, 1, 0}, {260, 4, 1, 48, 0, 2, 70}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        att_data d[3];
        for (int i = 0; i < 3; i++) {
            data_init(&d[i], &cases[ci], 3, 11);
            attn_shape a = shape_of(&d[i]);
            attention_forward(d[i].out, d[i].lse, d[i].q, d[i].k, d[i].v, &a, d[i].work, i + 1);
            attention_backward(d[i].dq, d[i].dk, d[i].dv, d[i].D, d[i].dout, d[i].q, d[i].k, d[i].v,
                               d[i].out, d[i].lse, &a, d[i].work, i + 1);
        }
        const att_case *c = &cases[ci];
        size_t nq = (size_t)(c->T * c->H * c->hd) * sizeof(float);
        size_t nkv = (size_t)(c->T * c->KVH * c->hd) * sizeof(float);
        for (int i = 1; i < 3; i++) {
            assert_memory_equal(d[0].out, d[i].out, nq);
            assert_memory_equal(d[0].lse, d[i].lse, (size_t)(c->T * c->H) * sizeof(float));
            assert_memory_equal(d[0].dq, d[i].dq, nq);
            assert_memory_equal(d[0].dk, d[i].dk, nkv);
            assert_memory_equal(d[0].dv, d[i].dv, nkv);
        }
        for (int i = 0; i < 3; i++)
            data_free(&d[i]);
    }
}

/* Central differences of L = Σ r·out(q, k, v) on a case crossing block edges (T 40, window). */
typedef struct {
    att_data *d;
    attn_shape a;
} fd_ctx;

static double fd_loss(void *ctx)
{
    fd_ctx *f = ctx;
    att_data *d = f->d;
    attention_forward(d->out, NULL, d->q, d->k, d->v, &f->a, d->work, 1);
    double s = 0;
    for (int64_t i = 0; i < d->c.T * d->qd; i++)
        s += (double)d->out[i] * d->dout[i];
    return s;
}

static void test_finite_differences(void **state)
{
    (void)state;
    att_case c = {40, 4, 2, 8, 0, 3, 20};
    att_data d;
    data_init(&d, &c, 1, 5);
    fd_ctx f = {&d, shape_of(&d)};
    attention_forward(d.out, d.lse, d.q, d.k, d.v, &f.a, d.work, 1);
    attention_backward(d.dq, d.dk, d.dv, d.D, d.dout, d.q, d.k, d.v, d.out, d.lse, &f.a, d.work, 1);
    check_grad("attention dq", d.q, d.dq, c.T * d.qd, fd_loss, &f, 2e-3);
    check_grad("attention dk", d.k, d.dk, c.T * d.kvd, fd_loss, &f, 2e-3);
    check_grad("attention dv", d.v, d.dv, c.T * d.kvd, fd_loss, &f, 2e-3);
    data_free(&d);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Useful multiply-adds (x2) of the causal products: query t meets kpos0 + t + 1 keys. */
static double causal_flop(const att_case *c, int products)
{
    double pairs = (double)c->T * (double)c->kpos0 + (double)c->T * (double)(c->T + 1) / 2;
    return 2.0 * products * pairs * (double)(c->H * c->hd);
}

/* --bench T H KVH hd reps [threads [kpos0]]: best forward and backward times, causal mask; with
 * kpos0 > 0 the forward alone, T queries after kpos0 cached keys (decoding). Wall time and the
 * process's CPU time (all threads; what a shared machine disturbs less), and GFLOP/s of the
 * useful causal products by CPU time (forward 2, backward 5). */
static int bench(int argc, char **argv)
{
    if (argc < 7)
        return fprintf(stderr, "usage: test_attn --bench T H KVH hd reps [threads [kpos0]]\n"), 2;
    att_case c = {atoll(argv[2]),
                  atoll(argv[3]),
                  atoll(argv[4]),
                  atoll(argv[5]),
                  argc > 8 ? atoll(argv[8]) : 0,
                  0,
                  0};
    int reps = atoi(argv[6]), nt = argc > 7 ? atoi(argv[7]) : 1;
    att_data d;
    data_init(&d, &c, nt, 1);
    attn_shape a = shape_of(&d);
    double bf = 1e30, bb = 1e30, cf = 1e30, cb = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = clock_s(CLOCK_MONOTONIC), u0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        attention_forward(d.out, d.lse, d.q, d.k, d.v, &a, d.work, nt);
        double t1 = clock_s(CLOCK_MONOTONIC), u1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (c.kpos0 == 0)
            attention_backward(d.dq, d.dk, d.dv, d.D, d.dout, d.q, d.k, d.v, d.out, d.lse, &a,
                               d.work, nt);
        double t2 = clock_s(CLOCK_MONOTONIC), u2 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        bf = t1 - t0 < bf ? t1 - t0 : bf;
        bb = t2 - t1 < bb ? t2 - t1 : bb;
        cf = u1 - u0 < cf ? u1 - u0 : cf;
        cb = u2 - u1 < cb ? u2 - u1 : cb;
    }
    printf("{\"variant\": \"%s\", \"T\": %lld, \"H\": %lld, \"KVH\": %lld, \"hd\": %lld, "
           "\"kpos0\": %lld, \"threads\": %d, \"forward_ms\": %.4f, \"backward_ms\": %.3f, "
           "\"forward_cpu_ms\": %.4f, \"backward_cpu_ms\": %.3f, \"forward_gflops_cpu\": %.1f, "
           "\"backward_gflops_cpu\": %.1f}\n",
           attention_variant(), (long long)c.T, (long long)c.H, (long long)c.KVH, (long long)c.hd,
           (long long)c.kpos0, nt, bf * 1e3, bb * 1e3, cf * 1e3, cb * 1e3,
           causal_flop(&c, 2) / cf * 1e-9, c.kpos0 == 0 ? causal_flop(&c, 5) / cb * 1e-9 : 0.0);
    data_free(&d);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--bench"))
        return bench(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variant),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
