/* test_ops.c — every backward in src/ops.c against central finite differences of its forward, on
 * tiny odd shapes: L = Σ r·forward(x) for a fixed random r, so ∂L/∂x is the backward of r; and the
 * AVX2 build of the element-wise loops (ops_avx2.c) against the plain one, bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/ops_ew.h"
#include "core/rng.h"
#include "testutil.h"

static void fill(float *x, int64_t n, rng_state *r, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r) * scale;
}

static double sum_prod(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ---- RMSNorm ---- */
typedef struct {
    float *x, *w, *out, *r;
    int64_t T, C;
} rms_ctx;

static double rms_loss(void *p)
{
    rms_ctx *c = p;
    rmsnorm_forward(c->out, NULL, c->x, c->w, c->T, c->C, 1e-5f);
    return sum_prod(c->out, c->r, c->T * c->C);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 1, 99);
    int64_t T = 3, C = 13;
    float x[39], w[13], out[39], r[39], rstd[3], dx[39] = {0};
    fill(x, T * C, &rg, 1);
    fill(w, C, &rg, 1);
    fill(r, T * C, &rg, 1);
    rmsnorm_forward(out, rstd, x, w, T, C, 1e-5f);
    rmsnorm_backward(dx, r, x, w, rstd, T, C);
    rms_ctx c = {x, w, out, r, T, C};
    check_grad("rmsnorm dx", x, dx, T * C, rms_loss, &c, 2e-3);
}

/* ---- RoPE ---- */
typedef struct {
    float *x, *y, *cs, *sn, *r;
    int64_t T, nh, hd;
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *c = p;
    int64_t n = c->T * c->nh * c->hd;
    memcpy(c->y, c->x, (size_t)n * sizeof(float));
    rope_forward(c->y, c->cs, c->sn, c->T, c->nh, c->hd);
    return sum_prod(c->y, c->r, n);
}

static void test_rope(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 2, 99);
    enum { T = 4, NH = 3, HD = 6, N = T * NH * HD };
    float x[N], y[N], r[N], d[N], cs[T * HD / 2], sn[T * HD / 2], inv[HD / 2] = {1.0f, 0.1f, 0.01f};
    int32_t pos[T] = {0, 5, 1, 2}; /* positions restart, as in packed sequences */
    fill(x, N, &rg, 1);
    fill(r, N, &rg, 1);
    rope_tables(cs, sn, inv, HD / 2, pos, 0, T);
    memcpy(d, r, sizeof d);
    rope_backward(d, cs, sn, T, NH, HD);
    rope_ctx c = {x, y, cs, sn, r, T, NH, HD};
    check_grad("rope dx", x, d, N, rope_loss, &c, 2e-3);
}

/* ---- attention ---- */
typedef struct {
    float *q, *k, *v, *out, *r, *scores;
    attn_shape a;
} att_ctx;

static double att_loss(void *p)
{
    att_ctx *c = p;
    attention_forward(c->out, NULL, c->q, c->k, c->v, &c->a, c->scores, 1);
    return sum_prod(c->out, c->r, c->a.T * c->a.H * c->a.hd);
}

/* T=9 tokens packed as two examples [0..4) and [4..9) with a window of 3 in the second. */
static void test_attention(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 3, 99);
    enum { T = 9, H = 4, KVH = 2, HD = 5, QN = T * H * HD, KN = T * KVH * HD };
    int64_t lo[T] = {0, 0, 0, 0, 4, 4, 4, 5, 6};
    float q[QN], k[KN], v[KN], out[QN], r[QN], lse[T * H], D[T * H];
    float *scores = malloc((size_t)attention_work_floats(T, H, KVH, HD, 4, 1) * sizeof(float));
    float dq[QN], dk[KN], dv[KN];
    fill(q, QN, &rg, 1);
    fill(k, KN, &rg, 1);
    fill(v, KN, &rg, 1);
    fill(r, QN, &rg, 1);
    att_ctx c = {
        q, k, v, out, r, scores, {.T = T, .H = H, .KVH = KVH, .hd = HD, .kpos0 = 0, .lo = lo}};
    for (int nt = 1; nt <= 4; nt *= 4) {
        attention_forward(out, lse, q, k, v, &c.a, scores, nt);
        attention_backward(dq, dk, dv, D, r, q, k, v, out, lse, &c.a, scores, nt);
        check_grad("attention dq", q, dq, QN, att_loss, &c, 2e-3);
        check_grad("attention dk", k, dk, KN, att_loss, &c, 2e-3);
        check_grad("attention dv", v, dv, KN, att_loss, &c, 2e-3);
    }
    /* the packing boundary is real: the second example's outputs ignore the first's keys */
    float out2[QN];
    attention_forward(out, NULL, q, k, v, &c.a, scores, 1);
    k[0] += 10.0f;
    v[1] += 10.0f;
    attention_forward(out2, NULL, q, k, v, &c.a, scores, 1);
    assert_memory_equal(out2 + 4 * H * HD, out + 4 * H * HD, (size_t)(5 * H * HD) * sizeof(float));
    assert_true(max_abs_diff(out2, out, 4 * H * HD) > 1e-3);
    free(scores);
}

/* ---- SwiGLU ---- */
typedef struct {
    float *g, *u, *h, *r;
    int64_t n;
} swi_ctx;

static double swi_loss(void *p)
{
    swi_ctx *c = p;
    swiglu_forward(c->h, c->g, c->u, c->n);
    return sum_prod(c->h, c->r, c->n);
}

static void test_swiglu(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 4, 99);
    enum { N = 23 };
    float g[N], u[N], h[N], r[N], dg[N], du[N];
    fill(g, N, &rg, 2);
    fill(u, N, &rg, 1);
    fill(r, N, &rg, 1);
    swiglu_backward(dg, du, r, g, u, N);
    swi_ctx c = {g, u, h, r, N};
    check_grad("swiglu dg", g, dg, N, swi_loss, &c, 2e-3);
    check_grad("swiglu du", u, du, N, swi_loss, &c, 2e-3);
}

/* ---- the dispatched builds (ops_avx2.c under LK_KERNELS avx2/avx512/amx) equal this file's
 * build of ops_ew.h (SSE2 on x86-64) bit for bit, tails and saturated exponentials included ---- */
static void test_same_bits(void **state)
{
    (void)state;
    rng_state rg;
    rng_seed(&rg, 5, 99);
    enum { N = 1003, T = 3, C = 331 };
    static float g[N], u[N], dh[N], a1[N], a2[N], b1[N], b2[N];
    fill(g, N, &rg, 30); /* well past fm_exp's range at both ends */
    fill(u, N, &rg, 1);
    fill(dh, N, &rg, 1);
    g[0] = -100.0f;
    g[1] = 100.0f;
    for (int64_t n = 1; n <= N; n += 97) {
        swiglu_forward(a1, g, u, n);
        ew_swiglu_forward(a2, g, u, n);
        assert_memory_equal(a1, a2, (size_t)n * sizeof *a1);
        swiglu_backward(a1, b1, dh, g, u, n);
        ew_swiglu_backward(a2, b2, dh, g, u, n);
        assert_memory_equal(a1, a2, (size_t)n * sizeof *a1);
        assert_memory_equal(b1, b2, (size_t)n * sizeof *b1);
    }
    float w[C], r1[T], r2[T];
    fill(w, C, &rg, 1);
    for (int64_t c = 1; c <= C; c += 55) {
        rmsnorm_forward(a1, r1, g, w, T, c, 1e-5f);
        ew_rmsnorm_forward(a2, r2, g, w, T, c, 1e-5f);
        assert_memory_equal(a1, a2, (size_t)(T * c) * sizeof *a1);
        assert_memory_equal(r1, r2, sizeof r1);
        memcpy(b1, u, (size_t)(T * c) * sizeof *b1);
        memcpy(b2, u, (size_t)(T * c) * sizeof *b2);
        rmsnorm_backward(b1, dh, g, w, r1, T, c);
        ew_rmsnorm_backward(b2, dh, g, w, r1, T, c);
        assert_memory_equal(b1, b2, (size_t)(T * c) * sizeof *b1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
