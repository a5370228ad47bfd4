/* test_kd.c — the distillation losses of kd.c: forward KL, reverse KL and TRL's generalised JSD,
 * full-vocabulary and top-k teachers, against a float64 PyTorch reference (tests/gen/gen_kd.py,
 * cross-checked with trl 0.17.0's generalized_jsd_loss), finite differences of dh, the top-k
 * buckets against the full vocabulary where they must agree (a one-id or empty tail, a teacher
 * with no mass outside the k ids, a tail where p/q is constant, far below the rest), CE-only
 * equal to loss.c, a quantised LM head, thread-count independence, and the top-32 cache's error
 * against the full forward KL on real logits (stories260K-hf f32 teacher, NF4 student). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fastmath.h"
#include "nn/kd.h"
#include "nn/loss.h"
#include "core/rng.h"
#include "formats/safetensors.h"
#include "testutil.h"

typedef struct {
    double loss, ce, kd;
    int64_t n;
} kd_sums;

/* One kd_forward_backward call with its own scratch. */
static kd_sums run(const linear *head, const float *h, const int32_t *tg, int64_t T, kd_params kp,
                   const kd_teacher *tch, float gs, float *dh, int nt)
{
    const linear *th = tch ? tch->head : NULL;
    float *scr = malloc(sizeof(float) * (size_t)kd_scratch_floats(head, th, nt));
    assert_non_null(scr);
    kd_sums o = {0};
    kd_forward_backward(head, h, tg, T, &kp, tch, gs, dh, &o.loss, &o.ce, tch ? &o.kd : NULL, &o.n,
                        scr, nt);
    free(scr);
    return o;
}

static void fill_normal(float *x, int64_t n, float scale, rng_state *rg)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * (float)rng_normal(rg);
}

static float *identity(int64_t V)
{
    float *w = calloc((size_t)(V * V), sizeof *w);
    for (int64_t i = 0; i < V; i++)
        w[i * V + i] = 1.0f;
    return w;
}

static int rel_close(double got, double want, double rtol)
{
    if (fabs(got - want) <= rtol * fabs(want))
        return 1;
    fprintf(stderr, "got %.12g want %.12g (rel %.3g)\n", got, want, fabs(got - want) / fabs(want));
    return 0;
}

/* ---- fm_exp / fm_log against libm ------------------------------------------------------------ */

static double ulp_err(float got, double want)
{
    float w = (float)want;
    return fabs(got - want) / (double)(nextafterf(w, INFINITY) - w);
}

static void test_fastmath(void **state)
{
    (void)state;
    double we = 0, wl = 0;
    for (float x = -87.0f; x <= 88.0f; x += 1e-4f + fabsf(x) * 3e-6f)
        we = fmax(we, ulp_err(fm_exp(x), exp((double)x)));
    for (float x = 1e-37f; x < 1e37f; x *= 1.0000317f)
        wl = fmax(wl, ulp_err(fm_log(x), log((double)x)));
    for (float x = 0.25f; x < 4.0f; x = nextafterf(x, 8.0f) + x * 1e-6f) /* near 1: all mantissas */
        wl = fmax(wl, ulp_err(fm_log(x), log((double)x)));
    fprintf(stderr, "fm_exp within %.2f ulp of exp, fm_log within %.2f ulp of log\n", we, wl);
    assert_true(we <= 2 && wl <= 2);
    assert_true(fm_exp(-INFINITY) == 0 && fm_exp(-87.5f) == 0 && fm_exp(0) == 1);
    assert_true(isnan(fm_exp(NAN)) && fm_log(1.0f) == 0);
}

/* ---- against the PyTorch fixture -------------------------------------------------------------
 * Mirrors CASES of gen_kd.py: objective, τ, β, α, top-k. */
static const struct {
    kd_kind kind;
    float tau, beta, alpha;
    int k;
} g_cases[] = {
    {KD_FKL, 1.0f, 0, 1.0f, 0},    {KD_FKL, 2.0f, 0, 0.5f, 0},    {KD_RKL, 1.0f, 0, 1.0f, 0},
    {KD_RKL, 0.7f, 0, 0.3f, 0},    {KD_JSD, 1.0f, 0.5f, 1.0f, 0}, {KD_JSD, 1.5f, 0.1f, 0.7f, 0},
    {KD_JSD, 1.0f, 0.0f, 1.0f, 0}, {KD_JSD, 2.0f, 1.0f, 0.9f, 0}, {KD_FKL, 1.0f, 0, 1.0f, 20},
    {KD_FKL, 2.0f, 0, 0.6f, 20},   {KD_RKL, 1.5f, 0, 1.0f, 20},   {KD_JSD, 1.0f, 0.3f, 0.8f, 20},
    {KD_JSD, 0.8f, 0.9f, 1.0f, 20}};

static const tensor_view *get(const st_file *f, const char *fmt, int n)
{
    char name[32];
    snprintf(name, sizeof name, fmt, n);
    const tensor_view *v = st_get(f, name);
    if (!v)
        fail_msg("fixture lacks %s", name);
    return v;
}

static void test_fixture(void **state)
{
    (void)state;
    st_file f;
    assert_ok(st_open(&f, data_path("kd/kd.safetensors"), 1));
    const tensor_view *h = get(&f, "h", 0), *hd = get(&f, "head", 0), *ht = get(&f, "ht", 0);
    const tensor_view *th = get(&f, "thead", 0), *tg = get(&f, "targets", 0);
    const int64_t T = h->shape[0], C = h->shape[1];
    linear head = {.name = "head", .w = hd->data, .in = C, .out = hd->shape[0]};
    linear thead = {.name = "thead", .w = th->data, .in = th->shape[1], .out = th->shape[0]};
    float *dh = malloc(sizeof(float) * (size_t)(T * C));
    for (int n = 0; n < (int)(sizeof g_cases / sizeof *g_cases); n++) {
        kd_params kp = {g_cases[n].kind, g_cases[n].tau, g_cases[n].beta, g_cases[n].alpha};
        kd_teacher tch = {.head = &thead, .ht = ht->data};
        if (g_cases[n].k) {
            tch = (kd_teacher){.k = g_cases[n].k,
                               .ids = get(&f, "ids.%d", n)->data,
                               .logp = get(&f, "logp.%d", n)->data,
                               .log_tail = get(&f, "log_tail.%d", n)->data};
        }
        kd_sums s = run(&head, h->data, tg->data, T, kp, &tch, 0.25f, dh, 2);
        double want[3] = {*(const double *)get(&f, "loss.%d", n)->data,
                          *(const double *)get(&f, "ce.%d", n)->data,
                          *(const double *)get(&f, "kd.%d", n)->data};
        fprintf(stderr, "case %d: relative error of the sums: loss %.1e, CE %.1e, D %.1e\n", n,
                fabs(s.loss / want[0] - 1), fabs(s.ce / want[1] - 1), fabs(s.kd / want[2] - 1));
        assert_int_equal(s.n, T - 5);
        assert_true(rel_close(s.loss, want[0], 1e-6) && rel_close(s.ce, want[1], 1e-7));
        assert_true(rel_close(s.kd, want[2], 1e-6));
        assert_true(check_close("dh", dh, get(&f, "dh.%d", n)->data, T * C, 5e-7, 1e-5));
    }
    free(dh);
    st_close(&f);
}

/* ---- finite differences ------------------------------------------------------------------- */

/* Sorted-by-logit top-k cache of teacher logits y[T, V] at τ, in double: ids, logp, log_tail. */
static void make_cache(const float *y, int64_t T, int64_t V, float tau, int64_t k, int32_t *ids,
                       float *logp, float *log_tail)
{
    for (int64_t t = 0; t < T; t++) {
        const float *r = y + t * V;
        double mx = -INFINITY, s = 0, top = 0;
        for (int64_t i = 0; i < V; i++)
            mx = r[i] > mx ? r[i] : mx;
        for (int64_t i = 0; i < V; i++)
            s += exp(((double)r[i] - mx) / tau);
        double lse = mx / tau + log(s);
        char *used = calloc((size_t)V, 1);
        for (int64_t j = 0; j < k; j++) { /* j-th largest */
            int64_t b = -1;
            for (int64_t i = 0; i < V; i++)
                if (!used[i] && (b < 0 || r[i] > r[b]))
                    b = i;
            used[b] = 1;
            ids[t * k + j] = (int32_t)b;
            logp[t * k + j] = (float)(r[b] / tau - lse);
        }
        double tmx = -INFINITY;
        for (int64_t i = 0; i < V; i++)
            tmx = !used[i] && r[i] > tmx ? r[i] : tmx;
        for (int64_t i = 0; i < V; i++)
            top += used[i] ? 0 : exp(((double)r[i] - tmx) / tau);
        log_tail[t] = k == V ? -INFINITY : (float)(tmx / tau + log(top) - lse);
        free(used);
    }
}

/* ∂(Σ loss)/∂h by central differences against dh, for a full (k = 0) or top-k teacher. */
static void check_fd(kd_params kp, int64_t k)
{
    enum { T = 4, C = 5, V = 37, CT = 4, VT = 41 };
    float h[T * C], w[V * C], ht[T * CT], tw[VT * CT], y[T * V], dh[T * C], logp[T * V];
    float tail[T];
    int32_t ids[T * V], tg[T] = {3, -100, 36, 0};
    rng_state rg;
    rng_seed(&rg, 11, (uint64_t)kp.kind * 10 + (uint64_t)k);
    fill_normal(h, T * C, 1.0f, &rg);
    fill_normal(w, V * C, 0.8f, &rg);
    fill_normal(ht, T * CT, 1.0f, &rg);
    fill_normal(tw, VT * CT, 0.8f, &rg);
    linear head = {.name = "s", .w = w, .in = C, .out = V};
    linear thead = {.name = "t", .w = tw, .in = CT, .out = VT};
    kd_teacher tch = {.head = &thead, .ht = ht};
    if (k) {
        linear_forward_ref(&(linear){.w = tw, .in = CT, .out = V}, ht, T, y);
        make_cache(y, T, V, kp.temp, k, ids, logp, tail);
        tch = (kd_teacher){.k = k, .ids = ids, .logp = logp, .log_tail = tail};
    }
    run(&head, h, tg, T, kp, &tch, 1.0f, dh, 1);
    const float eps = 3e-3f;
    double worst = 0;
    for (int i = 0; i < T * C; i++) {
        float keep = h[i];
        h[i] = keep + eps;
        double lp = run(&head, h, tg, T, kp, &tch, 1.0f, NULL, 1).loss;
        h[i] = keep - eps;
        double lm = run(&head, h, tg, T, kp, &tch, 1.0f, NULL, 1).loss;
        h[i] = keep;
        double fd = (lp - lm) / (2.0 * (double)eps), err = fabs(fd - dh[i]) / (1 + fabs(fd));
        worst = err > worst ? err : worst;
        if (err > 2e-3)
            fail_msg("kind %d k %lld: dh[%d] = %g, finite difference %g", kp.kind, (long long)k, i,
                     dh[i], fd);
    }
    for (int i = C; i < 2 * C; i++) /* the masked position gets no gradient */
        assert_true(dh[i] == 0.0f);
    fprintf(stderr, "kind %d k %lld: worst |fd - dh|/(1 + |fd|) = %.2e\n", kp.kind, (long long)k,
            worst);
}

static void test_finite_differences(void **state)
{
    (void)state;
    const kd_params ps[] = {{KD_FKL, 1.0f, 0, 1.0f},
                            {KD_RKL, 0.7f, 0, 0.6f},
                            {KD_JSD, 1.3f, 0.4f, 0.8f},
                            {KD_FKL, 2.0f, 0, 0.5f}};
    for (int i = 0; i < 4; i++) {
        check_fd(ps[i], 0);
        check_fd(ps[i], 6);
        check_fd(ps[i], 36); /* V − 1: a one-id tail */
    }
}

/* ---- top-k buckets against the full vocabulary ------------------------------------------------
 * Identity heads (C = V): h holds the logits, dh is ∂loss/∂z. The teacher's logits y are given
 * to both: as ht with an identity teacher head, and as the cache made from them. */
static void compare_topk_full(const float *z, const float *y, int64_t T, int64_t V, int64_t k,
                              kd_params kp, const int32_t *ids, const float *logp,
                              const float *tail, double rtol)
{
    float *I = identity(V), *d1 = malloc(sizeof(float) * T * V),
          *d2 = malloc(sizeof(float) * T * V);
    int32_t *tg = malloc(sizeof(int32_t) * T);
    for (int64_t t = 0; t < T; t++)
        tg[t] = (int32_t)((t * 7) % V);
    linear head = {.name = "I", .w = I, .in = V, .out = V};
    kd_teacher full = {.head = &head, .ht = y};
    kd_teacher top = {.k = k, .ids = ids, .logp = logp, .log_tail = tail};
    kd_sums a = run(&head, z, tg, T, kp, &full, 1.0f, d1, 2);
    kd_sums b = run(&head, z, tg, T, kp, &top, 1.0f, d2, 2);
    fprintf(stderr, "kind %d k %lld: D full %.9g, buckets %.9g\n", kp.kind, (long long)k, a.kd,
            b.kd);
    assert_true(isfinite(b.loss) && rel_close(b.kd, a.kd, rtol));
    assert_true(rel_close(b.loss, a.loss, rtol));
    assert_true(check_close("dz", d2, d1, T * V, 1e-6, 1e-4));
    free(I);
    free(d1);
    free(d2);
    free(tg);
}

static const kd_params g_three[] = {
    {KD_FKL, 1.3f, 0, 0.6f}, {KD_RKL, 1.3f, 0, 0.6f}, {KD_JSD, 1.3f, 0.35f, 0.6f}};

/* k = V − 1 (the tail is one id) and k = V (no tail): the buckets are the vocabulary. */
static void test_topk_exact(void **state)
{
    (void)state;
    enum { T = 5, V = 50 };
    float z[T * V], y[T * V], logp[T * V], tail[T];
    int32_t ids[T * V];
    rng_state rg;
    rng_seed(&rg, 12, 0);
    fill_normal(z, T * V, 2.0f, &rg);
    fill_normal(y, T * V, 2.0f, &rg);
    for (int i = 0; i < 3; i++)
        for (int64_t k = V - 1; k <= V; k++) {
            make_cache(y, T, V, g_three[i].temp, k, ids, logp, tail);
            compare_topk_full(z, y, T, V, k, g_three[i], ids, logp, tail, 2e-6);
        }
}

/* The teacher has no mass outside its k ids (log_tail = −inf, logits −1e30 in the full view):
 * forward KL and JSD agree; reverse KL, infinite in exact arithmetic, stays finite (the floor). */
static void test_topk_support(void **state)
{
    (void)state;
    enum { T = 4, V = 60, K = 9 };
    float z[T * V], y[T * V], logp[T * K], tail[T], dz[T * V];
    int32_t ids[T * K];
    rng_state rg;
    rng_seed(&rg, 13, 0);
    fill_normal(z, T * V, 2.0f, &rg);
    fill_normal(y, T * V, 2.0f, &rg);
    for (int64_t i = 0; i < T * V; i++)
        y[i] = i % V < V - K ? -1e30f : y[i]; /* support: the last K ids */
    for (int i = 0; i < 3; i++) {
        make_cache(y, T, V, g_three[i].temp, K, ids, logp, tail);
        for (int t = 0; t < T; t++) { /* exp(−1e30) is 0: no mass */
            assert_true(ids[t * K] >= V - K && tail[t] < -1e29f);
            tail[t] = -INFINITY;
        }
        if (g_three[i].kind != KD_RKL) {
            compare_topk_full(z, y, T, V, K, g_three[i], ids, logp, tail, 2e-6);
            continue;
        }
        float *I = identity(V);
        int32_t tg[T] = {0, 1, 2, 3};
        linear head = {.name = "I", .w = I, .in = V, .out = V};
        kd_teacher top = {.k = K, .ids = ids, .logp = logp, .log_tail = tail};
        kd_sums s = run(&head, z, tg, T, g_three[i], &top, 1.0f, dz, 1);
        assert_true(isfinite(s.loss) && s.kd > 0);
        for (int j = 0; j < T * V; j++)
            assert_true(isfinite(dz[j]));
        free(I);
    }
}

/* The student's tail 1000 nats below its top ids (its mass underflows even in double) while the
 * teacher's tail holds ~30%, with p/q constant over the tail so that buckets lose nothing. */
static void test_topk_tail_underflow(void **state)
{
    (void)state;
    enum { T = 3, V = 40, K = 6 };
    float z[T * V], y[T * V], logp[T * K], tail[T];
    int32_t ids[T * K];
    rng_state rg;
    rng_seed(&rg, 14, 0);
    for (int64_t i = 0; i < T * V; i++) {
        int top = i % V < K;
        z[i] = top ? (float)rng_normal(&rg) : -1000.0f + (float)rng_uniform(&rg);
        y[i] = top ? (float)rng_normal(&rg) : z[i] + 1000.0f - 3.0f;
    }
    for (int i = 0; i < 3; i++) {
        kd_params kp = g_three[i];
        make_cache(y, T, V, kp.temp, K, ids, logp, tail);
        for (int t = 0; t < T; t++) /* the cache's top ids are the top ones */
            assert_true(ids[t * K] < K && tail[t] > -3.0f);
        compare_topk_full(z, y, T, V, K, kp, ids, logp, tail, 1e-5);
    }
}

/* ---- CE, quantised head, threads ------------------------------------------------------------ */

typedef struct {
    int64_t T, C, V, CT, VT;
    float *h, *w, *ht, *tw;
    int32_t *tg;
} problem;

static problem make_problem(int64_t T, int64_t C, int64_t V, int64_t CT, uint64_t seed)
{
    problem p = {.T = T, .C = C, .V = V, .CT = CT, .VT = V + 13};
    rng_state rg;
    rng_seed(&rg, seed, 1);
    p.h = malloc(sizeof(float) * (size_t)(T * C));
    p.w = malloc(sizeof(float) * (size_t)(V * C));
    p.ht = malloc(sizeof(float) * (size_t)(T * CT));
    p.tw = malloc(sizeof(float) * (size_t)(p.VT * CT));
    p.tg = malloc(sizeof(int32_t) * (size_t)T);
    fill_normal(p.h, T * C, 1.0f, &rg);
    fill_normal(p.w, V * C, 2.0f / sqrtf((float)C), &rg);
    fill_normal(p.ht, T * CT, 1.0f, &rg);
    fill_normal(p.tw, p.VT * CT, 2.0f / sqrtf((float)CT), &rg);
    for (int64_t t = 0; t < T; t++)
        p.tg[t] = t % 9 == 4 ? -100 : (int32_t)rng_below(&rg, (uint64_t)V);
    return p;
}

static void free_problem(problem *p)
{
    free(p->h);
    free(p->w);
    free(p->ht);
    free(p->tw);
    free(p->tg);
}

/* α = 0 is loss.c's cross-entropy; α = 1 still reports it in ce_sum. */
static void test_ce_only(void **state)
{
    (void)state;
    problem p = make_problem(40, 16, 5000, 12, 15);
    linear head = {.name = "s", .w = p.w, .in = p.C, .out = p.V};
    linear thead = {.name = "t", .w = p.tw, .in = p.CT, .out = p.VT};
    kd_teacher tch = {.head = &thead, .ht = p.ht};
    float *d1 = malloc(sizeof(float) * (size_t)(p.T * p.C));
    float *d2 = malloc(sizeof(float) * (size_t)(p.T * p.C));
    float *scr = malloc(sizeof(float) * (size_t)ce_scratch_floats(&head, 2));
    double ce = 0;
    int64_t n = 0;
    ce_forward_backward(&head, p.h, p.tg, p.T, 0.5f, d1, &ce, &n, scr, 2);
    kd_sums a =
        run(&head, p.h, p.tg, p.T, (kd_params){KD_JSD, 2.0f, 0.5f, 0.0f}, NULL, 0.5f, d2, 2);
    assert_int_equal(a.n, n);
    assert_true(rel_close(a.loss, ce, 1e-7) && rel_close(a.ce, ce, 1e-7) && a.kd == 0);
    assert_true(check_close("dh", d2, d1, p.T * p.C, 1e-7, 1e-5));
    kd_sums b = run(&head, p.h, p.tg, p.T, (kd_params){KD_RKL, 2.0f, 0, 0.0f}, &tch, 0.5f, d2, 2);
    assert_true(rel_close(b.loss, ce, 1e-7) && b.kd > 0);
    assert_true(check_close("dh", d2, d1, p.T * p.C, 1e-7, 1e-5));
    kd_sums c = run(&head, p.h, p.tg, p.T, (kd_params){KD_FKL, 2.0f, 0, 1.0f}, &tch, 0.5f, NULL, 2);
    assert_true(rel_close(c.ce, ce, 1e-7) && rel_close(c.loss, c.kd, 1e-12));
    free(d1);
    free(d2);
    free(scr);
    free_problem(&p);
}

/* A quantised layer next to the fp32 layer of its dequantised weights. */
static linear quantised(const char *name, const float *w, int64_t out, int64_t in, int qtype,
                        void **data, float **deq)
{
    int block = qtype == LK_QTYPE_NF4 ? Q4_NF4_BLOCK : Q4_QK;
    size_t rb = q4_row_bytes(qtype, block, in);
    *data = malloc(rb * (size_t)out);
    *deq = malloc(sizeof(float) * (size_t)(out * in));
    q4_quantize_matrix(qtype, block, w, out, in, *data, 1, NULL, NULL);
    for (int64_t r = 0; r < out; r++)
        q4_dequantize_row(qtype, block, (const uint8_t *)*data + r * rb, in, *deq + r * in);
    linear L = {.name = name, .in = in, .out = out};
    assert_ok(q4_weight_init(&L.qw, qtype, block, out, in, *data));
    return L;
}

/* A problem's student and teacher heads quantised (types qs, qt), with fp32 twins of their
 * dequantised weights. */
typedef struct {
    linear qs, qt, fs, ft;
    void *data[2];
    float *deq[2];
} qheads;

static qheads make_qheads(const problem *p, int qs, int qt)
{
    qheads q;
    q.qs = quantised("s", p->w, p->V, p->C, qs, &q.data[0], &q.deq[0]);
    q.qt = quantised("t", p->tw, p->VT, p->CT, qt, &q.data[1], &q.deq[1]);
    q.fs = (linear){.name = "s", .w = q.deq[0], .in = p->C, .out = p->V};
    q.ft = (linear){.name = "t", .w = q.deq[1], .in = p->CT, .out = p->VT};
    return q;
}

static void free_qheads(qheads *q)
{
    for (int i = 0; i < 2; i++) {
        free(q->data[i]);
        free(q->deq[i]);
    }
}

static void test_quantised_heads(void **state)
{
    (void)state;
    problem p = make_problem(37, 96, 4500, 40, 16);
    qheads q = make_qheads(&p, LK_QTYPE_NF4, LK_QTYPE_Q8_0);
    float *d1 = malloc(sizeof(float) * (size_t)(p.T * p.C));
    float *d2 = malloc(sizeof(float) * (size_t)(p.T * p.C));
    kd_params kp = {KD_JSD, 1.2f, 0.5f, 0.5f};
    kd_sums a = run(&q.qs, p.h, p.tg, p.T, kp, &(kd_teacher){.head = &q.qt, .ht = p.ht}, 1, d1, 2);
    kd_sums b = run(&q.fs, p.h, p.tg, p.T, kp, &(kd_teacher){.head = &q.ft, .ht = p.ht}, 1, d2, 2);
    assert_true(rel_close(a.loss, b.loss, 1e-5) && rel_close(a.kd, b.kd, 1e-4));
    assert_true(check_close("dh", d1, d2, p.T * p.C, 1e-5, 1e-3));
    free_qheads(&q);
    free(d1);
    free(d2);
    free_problem(&p);
}

/* 1, 2 and 3 threads: the same bits with quantised heads (the fused kernels reduce in a fixed
 * order; so do kd.c's rows), and within rounding with fp32 heads (OpenBLAS's kernels may change
 * with the width of a thread's column slice). Full and top-k teachers, all three divergences. */
static void test_threads(void **state)
{
    (void)state;
    problem p = make_problem(45, 64, 5000, 32, 17);
    qheads q = make_qheads(&p, LK_QTYPE_Q4_0, LK_QTYPE_NF4);
    linear fh = {.name = "s", .w = p.w, .in = p.C, .out = p.V};
    linear ft = {.name = "t", .w = p.tw, .in = p.CT, .out = p.VT};
    float *y = malloc(sizeof(float) * (size_t)(p.T * p.V)),
          *logp = malloc(sizeof(float) * p.T * 32);
    float tail[45];
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)p.T * 32);
    linear_forward(&(linear){.w = p.tw, .in = p.CT, .out = p.V}, p.ht, p.T, y, NULL, 0, 1);
    const int64_t n = p.T * p.C;
    float *d[3] = {malloc(sizeof(float) * n), malloc(sizeof(float) * n), malloc(sizeof(float) * n)};
    for (int i = 0; i < 6; i++) {
        int quant = i % 2;
        kd_params kp = g_three[i / 2];
        make_cache(y, p.T, p.V, kp.temp, 32, ids, logp, tail);
        kd_teacher full = {.head = quant ? &q.qt : &ft, .ht = p.ht};
        kd_teacher top = {.k = 32, .ids = ids, .logp = logp, .log_tail = tail};
        for (int m = 0; m < 2; m++) {
            kd_sums s[3];
            for (int nt = 1; nt <= 3; nt++)
                s[nt - 1] = run(quant ? &q.qs : &fh, p.h, p.tg, p.T, kp, m ? &top : &full, 0.5f,
                                d[nt - 1], nt);
            for (int nt = 1; nt < 3 && quant; nt++) {
                assert_true(s[nt].loss == s[0].loss && s[nt].kd == s[0].kd);
                assert_memory_equal(d[nt], d[0], sizeof(float) * n);
            }
            for (int nt = 1; nt < 3 && !quant; nt++) {
                assert_true(rel_close(s[nt].loss, s[0].loss, 1e-6));
                assert_true(check_close("dh", d[nt], d[0], n, 1e-7, 1e-5));
            }
        }
    }
    for (int i = 0; i < 3; i++)
        free(d[i]);
    free(y);
    free(logp);
    free(ids);
    free_qheads(&q);
    free_problem(&p);
}

/* ---- top-32 on real logits ------------------------------------------------------------------ */

/* Next-token logits of every story of the TinyStories sample: *T rows of [V]. */
static float *story_logits(const lk_model *m, const lk_tokenizer *tok, int64_t *T)
{
    FILE *f = fopen(shared_path("data/tinystories/tinystories_sample.txt"), "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    const int64_t V = lk_model_get_config(m)->vocab_size;
    float *out = NULL;
    *T = 0;
    for (char *s = text, *e; *s; s = e) {
        e = strstr(s, "<|endoftext|>");
        e = e ? e : s + strlen(s);
        int32_t *ids;
        int64_t n;
        assert_ok(lk_tokenizer_encode(tok, s, (size_t)(e - s), 1, &ids, &n));
        n = n > 512 ? 512 : n;
        out = realloc(out, sizeof(float) * (size_t)((*T + n) * V));
        assert_ok(lk_model_forward(m, ids, n, out + *T * V));
        *T += n;
        free(ids);
        e += *e ? strlen("<|endoftext|>") : 0;
    }
    return out;
}

static void test_topk32_on_stories(void **state)
{
    (void)state;
    require_file(shared_path("data/tinystories/tinystories_sample.txt"));
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", shared_path("models/stories260K-hf"));
    require_file(dir);
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 1; /* a tiny model: one thread is fastest */
    lk_model *tm, *sm;
    lk_tokenizer *tok;
    assert_ok(lk_model_load(dir, &mp, &tm));
    mp.quant = LK_QTYPE_NF4;
    assert_ok(lk_model_load(dir, &mp, &sm));
    assert_ok(lk_tokenizer_load(dir, &tok));
    int64_t T, T2, V = 512, K = 32;
    float *y = story_logits(tm, tok, &T), *z = story_logits(sm, tok, &T2);
    assert_int_equal(T, T2);
    float *I = identity(V), *logp = malloc(sizeof(float) * (size_t)(T * K));
    float *tail = malloc(sizeof(float) * (size_t)T);
    float *d1 = malloc(sizeof(float) * (size_t)(T * V)),
          *d2 = malloc(sizeof(float) * (size_t)(T * V));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(T * K)), *tg = calloc((size_t)T, 4);
    linear head = {.name = "I", .w = I, .in = V, .out = V};
    /* bounds: measured relative errors of D (2.38%, 3.65%, 2.55%) with some room */
    const double bound[3] = {0.03, 0.045, 0.035};
    for (int i = 0; i < 3; i++) {
        kd_params kp = g_three[i];
        kp.temp = 1.0f;
        kp.weight = 1.0f;
        make_cache(y, T, V, kp.temp, K, ids, logp, tail);
        kd_teacher full = {.head = &head, .ht = y};
        kd_teacher top = {.k = K, .ids = ids, .logp = logp, .log_tail = tail};
        kd_sums a = run(&head, z, tg, T, kp, &full, 1, d1, 1);
        kd_sums b = run(&head, z, tg, T, kp, &top, 1, d2, 1);
        double rel = fabs(b.kd - a.kd) / a.kd, dot = 0, n1 = 0, n2 = 0;
        for (int64_t j = 0; j < T * V; j++) {
            dot += (double)d1[j] * d2[j];
            n1 += (double)d1[j] * d1[j];
            n2 += (double)d2[j] * d2[j];
        }
        double cosine = dot / sqrt(n1 * n2);
        fprintf(stderr,
                "stories260K f32 teacher / nf4 student, %lld positions, kind %d: D per position "
                "full %.6f, top-32 %.6f, relative error %.3f%%; gradient cosine %.5f\n",
                (long long)T, kp.kind, a.kd / (double)T, b.kd / (double)T, 100 * rel, cosine);
        /* buckets merge the tail: by the data-processing inequality D can only shrink */
        assert_true(b.kd <= a.kd * (1 + 1e-6));
        assert_true(rel < bound[i] && cosine > 0.997);
    }
    free(d1);
    free(d2);
    free(I);
    free(logp);
    free(tail);
    free(ids);
    free(tg);
    free(y);
    free(z);
    lk_tokenizer_free(tok);
    lk_model_free(tm);
    lk_model_free(sm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fastmath),
        cmocka_unit_test(test_fixture),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_topk_exact),
        cmocka_unit_test(test_topk_support),
        cmocka_unit_test(test_topk_tail_underflow),
        cmocka_unit_test(test_ce_only),
        cmocka_unit_test(test_quantised_heads),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_topk32_on_stories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
