/* test_q8.c — the int8 compute path (quant/q8.h): the expanders against q4_decode_ref (bit-exact
 * for Q4_0, IQ4_NL, Q8_0 and every other type with an expander; NF4 within absmax/254), the
 * activation quantiser against a restatement of its rule (zero rows and blocks, ties, subnormal
 * blocks, odd lengths), the reference GEMM against an fp64 product of the expanded weight and the
 * dequantised activations (tight: fp32 rounding only) and against the f32 kernels (loose: the
 * quantisation error bound computed per output), the transposed Q8_0 copy against the dequantised
 * Wᵀ and its fast build (every decoder × tile quantiser) byte for byte against q8_transpose_ref,
 * the row decoders of every variant against q4_decode_ref, and every SIMD variant this host runs
 * bit for bit against the reference over sizes 1, odd, block ±1, vector widths ±1, T from 1 to
 * 600, several seeds and thread counts (the GEMV that a variant's forward takes for T <= gemv_t
 * also on its own, for T past it, and on both sides of its single-thread cutoff, whose thread
 * counts test_gemv_threads pins). Work memory is exactly what each variant reports, NaN-filled,
 * at the worst alignment, fenced by canaries. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LK_EXPERIMENTAL 1
#include "q8.h"
#include "q8_gemv.h"
#include "q8_ilv.h"
#include "core/status.h"
#include "testutil.h"

static uint64_t g_rng;
static float frand(void) /* LCG, uniform in [-1, 1) */
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 40) / 8388608.0 - 1.0);
}

static const int k_types[] = {LK_QTYPE_Q4_0, LK_QTYPE_IQ4_NL, LK_QTYPE_Q8_0, LK_QTYPE_NF4};

typedef struct {
    uint8_t *data;
    q4_weight w;
} wcase;

/* A random weight [out, in] of qtype (rows of different magnitudes); Q8_0 gets a code of -128 in
 * every third row (llama.cpp never writes one, a file may hold one: the sign trick must cope). */
static void wcase_make(wcase *c, int qtype, int block, int64_t out, int64_t in)
{
    const size_t rb = q4_row_bytes(qtype, block, in);
    c->data = lk_aligned_alloc(rb * (size_t)out);
    float *row = malloc((size_t)in * sizeof(float));
    assert_true(c->data && row);
    for (int64_t o = 0; o < out; o++) {
        const float scale = 0.02f * (1.0f + (float)(o % 5));
        for (int64_t k = 0; k < in; k++)
            row[k] = frand() * scale;
        q4_quantize_row(qtype, block, row, in, c->data + (size_t)o * rb);
        if (qtype == LK_QTYPE_Q8_0 && o % 3 == 1) {
            q4_block_q8_0 *b = (q4_block_q8_0 *)(void *)(c->data + (size_t)o * rb);
            b[0].qs[(o / 3) % 32] = -128;
        }
    }
    free(row);
    assert_ok(q4_weight_init(&c->w, qtype, block, out, in, c->data));
}

/* A weight of a GGUF read-only type (Q4_1 .. IQ4_XS): random code bytes, finite fp16 scales and
 * mins of both signs planted (rows of the k-quants need in % 256 == 0). */
static void wcase_make_gguf(wcase *c, int qtype, int64_t out, int64_t in)
{
    const size_t rb = q4_row_bytes(qtype, 32, in), bb = q4_block_bytes(qtype);
    c->data = lk_aligned_alloc(rb * (size_t)out);
    assert_non_null(c->data);
    for (size_t i = 0; i < rb * (size_t)out; i++)
        c->data[i] = (uint8_t)(frand() * 128.0f + 128.0f);
    int off[2];
    test_gguf_scale_offsets(qtype, off);
    for (int64_t o = 0; o < out; o++) {
        for (size_t b = 0; b < rb / bb; b++) {
            uint8_t *blk = c->data + (size_t)o * rb + b * bb;
            const uint16_t d = q4_fp32_to_fp16(0.002f * (1.0f + 0.5f * frand()));
            const uint16_t m = q4_fp32_to_fp16(0.004f * frand());
            memcpy(blk + off[0], &d, 2);
            if (off[1] >= 0)
                memcpy(blk + off[1], &m, 2);
        }
    }
    assert_ok(q4_weight_init(&c->w, qtype, 32, out, in, c->data));
}

/* A weight of any type the int8 path supports: the core types quantised from random values, the
 * GGUF types random bytes with finite scales (every code pattern, which real quantisers rarely
 * write), the k-quant types in rows of round_up(in, 256). */
static void wcase_any(wcase *c, int qtype, int block, int64_t out, int64_t in)
{
    if (qtype == LK_QTYPE_Q4_0 || qtype == LK_QTYPE_Q8_0 || qtype == LK_QTYPE_IQ4_NL ||
        qtype == LK_QTYPE_NF4)
        wcase_make(c, qtype, block, out, in);
    else
        wcase_make_gguf(c, qtype, out, q4_is_kquant(qtype) ? (in + 255) / 256 * 256 : in);
}

static int64_t nblocks(int64_t n)
{
    return (n + Q8_QK - 1) / Q8_QK;
}

/* Expanded weight row o as fp32 values s*q + m, and its parts |s*q| + |m| (for error scales). */
static void expanded_row(const q4_weight *w, int64_t o, float *val, float *mag)
{
    const int64_t nb = nblocks(w->in);
    q8_wblock *e = malloc((size_t)nb * sizeof *e);
    q8_expander(w->qtype)(w, (const uint8_t *)w->data + (size_t)o * w->row_bytes, 0, nb, e);
    for (int64_t k = 0; k < nb * Q8_QK; k++) {
        const q8_wblock *b = &e[k / Q8_QK];
        const int h = (int)(k % Q8_QK) / 16;
        val[k] = b->s[h] * (float)b->q[k % Q8_QK] + b->m[h];
        if (mag)
            mag[k] = fabsf(b->s[h] * (float)b->q[k % Q8_QK]) + fabsf(b->m[h]);
    }
    free(e);
}

/* ---- expanders ------------------------------------------------------------------------------ */

static void check_expander(int qtype, int block, int64_t out, int64_t in)
{
    wcase c;
    wcase_any(&c, qtype, block, out, in);
    in = c.w.in;
    const int64_t nb = nblocks(in);
    float *val = malloc((size_t)(nb * Q8_QK) * 4), *ref = malloc((size_t)(nb * Q8_QK) * 4);
    for (int64_t o = 0; o < out; o++) {
        expanded_row(&c.w, o, val, NULL);
        q4_decode_ref(&c.w, o, 0, nb * Q8_QK, ref);
        /* an expansion of blocks [b0, b0+n) equals that part of the whole row's */
        q8_wblock part[3], whole[3];
        const int64_t b0 = nb > 3 ? nb / 2 : 0, n = nb - b0 < 3 ? nb - b0 : 3;
        const uint8_t *row = c.data + (size_t)o * c.w.row_bytes;
        q8_expander(qtype)(&c.w, row, b0, n, part);
        q8_wblock *all = malloc((size_t)nb * sizeof *all);
        q8_expander(qtype)(&c.w, row, 0, nb, all);
        memcpy(whole, all + b0, (size_t)n * sizeof *all);
        assert_memory_equal(part, whole, (size_t)n * sizeof *all);
        for (int64_t k = 0; k < nb * Q8_QK; k++) {
            const q8_wblock *b = &all[k / Q8_QK];
            if (q8_simple(qtype))
                assert_true(b->s[0] == b->s[1] && b->m[0] == 0.0f && b->m[1] == 0.0f);
            if (qtype != LK_QTYPE_NF4) {
                if (!(val[k] == ref[k]))
                    fail_msg("%s [%lld x %lld] row %lld value %lld: expanded %.9g, decoded %.9g",
                             lk_qtype_name((lk_qtype)qtype), (long long)out, (long long)in,
                             (long long)o, (long long)k, val[k], ref[k]);
            } else {
                const int64_t nbn = (in + block - 1) / block;
                float amax;
                memcpy(&amax, row + nbn * (block / 2) + (k / block) * 4, 4);
                assert_true(fabsf(val[k] - ref[k]) <= amax / 254.0f * (1 + 1e-5f));
            }
        }
        free(all);
    }
    free(val);
    free(ref);
    free(c.data);
}

static void test_expanders(void **state)
{
    (void)state;
    g_rng = 1;
    for (int i = 0; i < 16; i++) /* the int8 NF4 codebook is the rounding of 127 * code */
        assert_int_equal(q8_nf4_i8[i], (int)nearbyintf(127.0f * q4_nf4_code[i]));
    for (size_t t = 0; t < sizeof k_types / sizeof k_types[0]; t++)
        assert_true(q8_supports(k_types[t]));
    for (int q = LK_QTYPE_Q4_0; q < LK_QTYPE_COUNT; q++) {
        if (!q8_supports(q))
            continue; /* the GGUF types until their expanders are merged */
        check_expander(q, 64, 7, 1);
        check_expander(q, 64, 9, 100);
        check_expander(q, 64, 3, 333);
    }
    check_expander(LK_QTYPE_NF4, 32, 5, 95);
    check_expander(LK_QTYPE_NF4, 256, 5, 300);
    check_expander(LK_QTYPE_NF4, 4096, 2, 300);
    assert_false(q8_supports(LK_QTYPE_F32) || q8_supports(LK_QTYPE_F16) ||
                 q8_supports(LK_QTYPE_BF16));
}

/* ---- the activation quantiser ------------------------------------------------------------- */

/* The rule of q8.h restated with doubles where exact, then compared code by code. */
static void check_act(const float *x, int64_t n)
{
    const int64_t nb = nblocks(n);
    q8_ablock *a = malloc((size_t)nb * sizeof *a);
    memset(a, 0x5a, (size_t)nb * sizeof *a);
    q8_quantize_act(x, n, a);
    for (int64_t b = 0; b < nb; b++) {
        float amax = 0;
        for (int64_t k = b * 32; k < n && k < b * 32 + 32; k++)
            amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        const float d = amax / 127.0f;
        const float id = d == 0.0f || isinf(1.0f / d) ? 0.0f : 1.0f / d;
        assert_true(a[b].d == d);
        int s[2] = {0, 0};
        for (int k = 0; k < 32; k++) {
            const float v = b * 32 + k < n ? x[b * 32 + k] : 0.0f;
            const double p = (double)(v * id), fl = floor(p);
            /* nearest, ties to even */
            double r = p - fl > 0.5   ? fl + 1
                       : p - fl < 0.5 ? fl
                                      : (fmod(fl, 2.0) == 0 ? fl : fl + 1);
            if (a[b].q[k] != (int)r)
                fail_msg("block %lld value %d (%.9g): code %d, expected %d", (long long)b, k, v,
                         a[b].q[k], (int)r);
            assert_true(a[b].q[k] >= -127 && a[b].q[k] <= 127);
            s[k / 16] += a[b].q[k];
        }
        assert_int_equal(a[b].s16[0], s[0]);
        assert_int_equal(a[b].s16[1], s[1]);
    }
    free(a);
}

static void fwd_fenced_n(const q8_kernels *k, const q4_weight *w, const float *bias,
                         const float *X, int64_t T, float *Y, int nt, int mode);
static void fwd_fenced(const q8_kernels *k, const q4_weight *w, const float *bias, const float *X,
                       int64_t T, float *Y, int nt);
static float *make_x(int64_t T, int64_t in);

static void test_quantize_act(void **state)
{
    (void)state;
    g_rng = 2;
    float x[200];
    for (int n = 1; n <= 200; n += (n < 70 ? 1 : 13)) {
        for (int i = 0; i < n; i++)
            x[i] = frand() * (i % 7 == 0 ? 30.0f : 1.0f);
        check_act(x, n);
    }
    memset(x, 0, sizeof x); /* a zero row, then zero blocks inside a row */
    check_act(x, 200);
    for (int i = 40; i < 90; i++)
        x[i] = frand();
    check_act(x, 200);
    for (int i = 0; i < 32; i++) /* subnormal block: 1/d overflows, codes 0 */
        x[i] = 1e-40f * (float)(i - 16);
    check_act(x, 32);
    /* ties: amax 127 gives d = 1, and halves round to even */
    const float ties[8] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f};
    const int want[8] = {127, 0, 2, 2, 0, -2, -2, 4};
    q8_ablock a;
    q8_quantize_act(ties, 8, &a);
    for (int i = 0; i < 8; i++)
        assert_int_equal(a.q[i], want[i]);
    for (int i = 8; i < 32; i++)
        assert_int_equal(a.q[i], 0);
    check_act(ties, 8);
}

/* What the int8 form of x[n] leaves, r = x − d·q per value: the rule linear.c applied before
 * q8_quantize_act2 (q by the 1.5·2^23 trick, the same value as nearbyintf for |x·id| <= 127). */
static void residual_of(const float *x, int64_t n, float *r)
{
    for (int64_t b = 0; b < n; b += 32) {
        const int64_t m = n - b < 32 ? n - b : 32;
        float amax = 0.0f;
        for (int64_t k = 0; k < m; k++)
            amax = fabsf(x[b + k]) > amax ? fabsf(x[b + k]) : amax;
        const float d = amax / 127.0f;
        const float id = d == 0.0f || isinf(1.0f / d) ? 0.0f : 1.0f / d;
        for (int64_t k = 0; k < m; k++) {
            const float q = (x[b + k] * id + 0x1.8p23f) - 0x1.8p23f;
            r[b + k] = x[b + k] - d * q;
        }
    }
}

/* q8_quantize_act2: x1 is q8_quantize_act(x), r1 q8_quantize_act of residual_of(x), block for
 * block (bytes of the padded blocks too). */
static void check_act2(const float *x, int64_t n)
{
    const int64_t nb = nblocks(n);
    q8_ablock *a = malloc((size_t)(4 * nb) * sizeof *a);
    float *r = malloc((size_t)n * sizeof *r);
    memset(a, 0x5a, (size_t)(4 * nb) * sizeof *a);
    q8_quantize_act2(x, n, a, a + nb);
    q8_quantize_act(x, n, a + 2 * nb);
    residual_of(x, n, r);
    q8_quantize_act(r, n, a + 3 * nb);
    if (memcmp(a, a + 2 * nb, (size_t)nb * sizeof *a) ||
        memcmp(a + nb, a + 3 * nb, (size_t)nb * sizeof *a))
        fail_msg("q8_quantize_act2 of %lld values: not q8_quantize_act of x and of its residual",
                 (long long)n);
    free(a);
    free(r);
}

static void test_quantize_act2(void **state)
{
    (void)state;
    g_rng = 3;
    float x[200];
    for (int n = 1; n <= 200; n += (n < 70 ? 1 : 13)) {
        for (int i = 0; i < n; i++)
            x[i] = frand() * (i % 7 == 0 ? 30.0f : 1.0f);
        check_act2(x, n);
    }
    memset(x, 0, sizeof x); /* zero blocks, a subnormal block, ties */
    check_act2(x, 200);
    for (int i = 0; i < 32; i++)
        x[i] = 1e-40f * (float)(i - 16);
    for (int i = 32; i < 64; i++)
        x[i] = i == 32 ? 127.0f : (float)(i % 9) - 4.5f;
    check_act2(x, 100);
    /* r1 is the finer term: x1 + r1 is much closer to x than x1 */
    for (int i = 0; i < 64; i++)
        x[i] = frand();
    q8_ablock a[4];
    q8_quantize_act2(x, 64, a, a + 2);
    for (int i = 0; i < 64; i++) {
        const q8_ablock *x1 = &a[i / 32], *r1 = &a[2 + i / 32];
        const float v1 = x1->d * x1->q[i % 32], v2 = v1 + r1->d * r1->q[i % 32];
        assert_true(fabsf(x[i] - v2) <= x1->d / 200.0f);
        assert_true(fabsf(x[i] - v1) <= x1->d / 2.0f * 1.0001f);
    }
}

/* The two-term forward is bit for bit the composition it replaced in linear.c:
 * Y = fwd(X, bias) then Y += fwd(residual_of(X), no bias), and the accumulating one
 * Y += fwd(X) (the backward's dX), for the reference and the dispatched variant alike. */
static void test_fwd2_composition(void **state)
{
    (void)state;
    g_rng = 4;
    static const int qt[] = {LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, LK_QTYPE_NF4, LK_QTYPE_Q4_K};
    static const int64_t shapes[][2] = {{17, 40}, {72, 520}, {33, 96}};
    static const int64_t Ts[] = {1, 5, 33, 130};
    const q8_kernels *ks[] = {q8_kernels_named("ref"), q8_kernels_get()};
    for (size_t q = 0; q < sizeof qt / sizeof qt[0]; q++) {
        if (!q8_supports(qt[q]))
            continue;
        for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
            wcase c;
            wcase_any(&c, qt[q], 64, shapes[sh][0], shapes[sh][1]);
            const int64_t out = c.w.out, in = c.w.in;
            float *bias = malloc((size_t)out * 4);
            for (int64_t o = 0; o < out; o++)
                bias[o] = frand();
            for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
                const int64_t T = Ts[ti];
                float *X = make_x(T, in), *R = malloc((size_t)(T * in) * 4);
                float *Y = malloc((size_t)(T * out) * 4), *Y2 = malloc((size_t)(T * out) * 4);
                float *Yc = malloc((size_t)(T * out) * 4);
                for (int64_t t = 0; t < T; t++)
                    residual_of(X + t * in, in, R + t * in);
                for (size_t v = 0; v < 2; v++) {
                    const int nt = 1 + (int)((ti + v) % 3);
                    fwd_fenced(ks[v], &c.w, bias, X, T, Yc, nt);
                    fwd_fenced(ks[v], &c.w, NULL, R, T, Y2, nt);
                    for (int64_t i = 0; i < T * out; i++)
                        Yc[i] += Y2[i];
                    fwd_fenced_n(ks[v], &c.w, bias, X, T, Y, nt, 1);
                    if (memcmp(Y, Yc, (size_t)(T * out) * 4))
                        fail_msg("%s fwd2 %s [%lld x %lld] T=%lld: not (x1·Wᵀ + b) + r1·Wᵀ as "
                                 "two forwards give it",
                                 ks[v]->name, lk_qtype_name((lk_qtype)qt[q]), (long long)out,
                                 (long long)in, (long long)T);
                    fwd_fenced_n(ks[v], &c.w, NULL, R, T, Y, nt, 2); /* Y = Yc + R·Wᵀ */
                    for (int64_t i = 0; i < T * out; i++)
                        Yc[i] += Y2[i];
                    if (memcmp(Y, Yc, (size_t)(T * out) * 4))
                        fail_msg("%s fwd_add %s [%lld x %lld] T=%lld: not Y + the forward",
                                 ks[v]->name, lk_qtype_name((lk_qtype)qt[q]), (long long)out,
                                 (long long)in, (long long)T);
                }
                free(X);
                free(R);
                free(Y);
                free(Y2);
                free(Yc);
            }
            free(bias);
            free(c.data);
        }
    }
}

/* ---- work memory ------------------------------------------------------------------------------
 */

#define FENCE 64
static unsigned g_calls;

/* k's forward with exactly the work it reports (NaN bytes, canaries around, start 0 or 1 byte
 * past a 64-byte line). */
/* mode 0: k's forward, 1: its two-term forward (fwd2), 2: its accumulating one (fwd_add, bias
 * ignored). */
static void fwd_fenced_n(const q8_kernels *k, const q4_weight *w, const float *bias,
                         const float *X, int64_t T, float *Y, int nt, int mode)
{
    const q8_work_fn work_fn = mode == 1 ? k->fwd2_work : mode == 2 ? k->fwd_add_work : k->fwd_work;
    const size_t size = work_fn(w, T, nt), shift = g_calls++ & 1;
    uint8_t *block = lk_aligned_alloc(2 * FENCE + shift + size);
    assert_non_null(block);
    memset(block, 0xa5, FENCE + shift);
    uint8_t *work = block + FENCE + shift;
    memset(work, 0xff, size);
    memset(work + size, 0xa5, FENCE);
    void *wk = size ? work : NULL;
    if (mode == 2)
        k->fwd_add(w, X, T, Y, nt, wk, size);
    else
        (mode ? k->fwd2 : k->fwd)(w, bias, X, T, Y, nt, wk, size);
    for (size_t i = 0; i < FENCE + shift; i++)
        assert_int_equal(block[i], 0xa5);
    for (size_t i = 0; i < FENCE; i++)
        if (work[size + i] != 0xa5)
            fail_msg("%s mode %d [%lld x %lld] T=%lld nt %d: wrote past its %zu bytes of work",
                     k->name, mode, (long long)w->out, (long long)w->in,
                     (long long)T, nt, size);
    free(block);
}

static void fwd_fenced(const q8_kernels *k, const q4_weight *w, const float *bias, const float *X,
                       int64_t T, float *Y, int nt)
{
    fwd_fenced_n(k, w, bias, X, T, Y, nt, 0);
}

static void check_work_monotone(const q8_kernels *k, const q4_weight *w)
{
    q4_weight half = *w;
    half.out = (w->out + 1) / 2;
    for (int mode = 0; mode <= (k->fwd2 ? 2 : 0); mode++) {
        const q8_work_fn work = mode == 1 ? k->fwd2_work : mode ? k->fwd_add_work : k->fwd_work;
        for (int nt = 1; nt <= 3; nt++) {
            for (int64_t T = 0; T <= 70; T++) {
                const size_t f = work(w, T, nt);
                if (T > 0)
                    assert_true(f >= work(w, T - 1, nt));
                if (nt > 1)
                    assert_true(f >= work(w, T, nt - 1));
                assert_true(f >= work(&half, T, nt));
                if (T == 0)
                    assert_true(f == 0);
            }
        }
    }
}

/* ---- the reference GEMM ------------------------------------------------------------------- */

/* X[T, in] with a zero row, a row with a zero block, and rows of different magnitudes. */
static float *make_x(int64_t T, int64_t in)
{
    float *X = malloc((size_t)(T * in) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < in; k++)
            X[t * in + k] = t == 1 ? 0.0f : frand() * (1.0f + (float)(t % 4) * 3.0f);
    if (T > 2)
        for (int64_t k = 0; k < in && k < 32; k++)
            X[2 * in + k] = 0.0f;
    if (T > 3) /* a block of ties: amax 127 (d = 1) and halves, rounded to even */
        for (int64_t k = 0; k < in && k < 32; k++)
            X[3 * in + k] = k == 0 ? 127.0f : (float)(k % 9) - 4.5f;
    return X;
}

/* The reference against (a) fp64 of the expanded weight times the dequantised activations, within
 * the fp32 rounding of its block sums, and (b) the f32 kernels' product of the unquantised X and
 * the decoded W, within the quantisation error bound computed for each output. */
static void check_ref_gemm(int qtype, int block, int64_t out, int64_t in, int64_t T)
{
    wcase c;
    wcase_any(&c, qtype, block, out, in);
    in = c.w.in;
    const int64_t nb = nblocks(in), inp = nb * Q8_QK;
    float *X = make_x(T, in), *Y = malloc((size_t)(T * out) * 4),
          *Yf = malloc((size_t)(T * out) * 4);
    float *bias = malloc((size_t)out * 4);
    for (int64_t o = 0; o < out; o++)
        bias[o] = frand();
    fwd_fenced(q8_kernels_named("ref"), &c.w, bias, X, T, Y, 2);
    const q4_kernels *f32 = q4_kernels_named("ref");
    void *fw = malloc(f32->fwd_work(&c.w, T, 2) + 1);
    f32->fwd(&c.w, bias, X, T, Yf, 2, fw, f32->fwd_work(&c.w, T, 2));
    free(fw);
    q8_ablock *A = malloc((size_t)(T * nb) * sizeof *A);
    for (int64_t t = 0; t < T; t++)
        q8_quantize_act(X + t * in, in, A + t * nb);
    float *wv = malloc((size_t)inp * 4), *wm = malloc((size_t)inp * 4),
          *wd = malloc((size_t)inp * 4);
    for (int64_t o = 0; o < out; o++) {
        expanded_row(&c.w, o, wv, wm);
        q4_decode_ref(&c.w, o, 0, inp, wd);
        float amax_w = 0; /* NF4: bound of |expanded - decoded| */
        for (int64_t k = 0; k < inp; k++)
            amax_w = fmaxf(amax_w, fabsf(wv[k] - wd[k]));
        for (int64_t t = 0; t < T; t++) {
            const q8_ablock *a = A + t * nb;
            double exact = 0, scale = 0, qbound = 0, sxw = 0;
            for (int64_t k = 0; k < inp; k++) {
                const double xh = (double)a[k / 32].d * a[k / 32].q[k % 32];
                exact += xh * wv[k];
                scale += fabs(xh) * wm[k];
                const double xk = k < in ? X[t * in + k] : 0.0;
                qbound += (a[k / 32].d * 0.5000001) * fabs((double)wd[k]) + fabs(xh) * amax_w;
                sxw += fabs(xk) * fabs((double)wd[k]);
            }
            const double got = (double)Y[t * out + o] - bias[o];
            const double tight = (double)(nb + 6) * 0x1p-24 * scale + 1e-30;
            /* + the rounding of acc + bias */
            if (!(fabs(got - exact) <= tight + 0x1p-24 * fabs((double)Y[t * out + o])))
                fail_msg("%s [%lld x %lld] T=%lld [%lld][%lld]: int8 %.9g, fp64 %.9g (tol %.3g)",
                         lk_qtype_name((lk_qtype)qtype), (long long)out, (long long)in,
                         (long long)T, (long long)t, (long long)o, got, exact, tight);
            const double loose = qbound + tight + 1e-5 * sxw + 1e-6 * fabs(bias[o]);
            if (!(fabs((double)Y[t * out + o] - Yf[t * out + o]) <= loose))
                fail_msg("%s [%lld x %lld] T=%lld [%lld][%lld]: int8 %.9g, f32 %.9g (bound %.3g)",
                         lk_qtype_name((lk_qtype)qtype), (long long)out, (long long)in,
                         (long long)T, (long long)t, (long long)o, Y[t * out + o], Yf[t * out + o],
                         loose);
        }
    }
    free(wv);
    free(wm);
    free(wd);
    free(A);
    free(X);
    free(Y);
    free(Yf);
    free(bias);
    free(c.data);
}

static void test_ref_gemm(void **state)
{
    (void)state;
    g_rng = 3;
    for (int q = LK_QTYPE_Q4_0; q < LK_QTYPE_COUNT; q++) {
        if (!q8_supports(q))
            continue;
        check_ref_gemm(q, 64, 5, 1, 3);
        check_ref_gemm(q, 64, 17, 100, 7);
        check_ref_gemm(q, 64, 9, 333, 4);
    }
    check_ref_gemm(LK_QTYPE_NF4, 256, 6, 300, 5);
    /* T = 0 needs no work and writes nothing */
    wcase c;
    wcase_make(&c, LK_QTYPE_Q4_0, 32, 5, 8);
    float x[8] = {0}, y[8];
    for (int i = 0; i < 8; i++)
        y[i] = 7.0f;
    q8_kernels_named("ref")->fwd(&c.w, NULL, x, 0, y, 2, NULL, 0);
    for (int i = 0; i < 8; i++)
        assert_true(y[i] == 7.0f);
    free(c.data);
}

/* ---- the transposed copy ------------------------------------------------------------------- */

static void check_transpose(int qtype, int block, int64_t out, int64_t in)
{
    wcase c;
    wcase_any(&c, qtype, block, out, in);
    in = c.w.in;
    const int64_t inp = nblocks(in) * 32, outp = nblocks(out) * 32;
    float *W = calloc((size_t)(outp * inp), 4); /* [outp][inp], rows past out zero */
    for (int64_t o = 0; o < out; o++)
        q4_decode_ref(&c.w, o, 0, inp, W + o * inp);
    const size_t bytes = q8_transpose_bytes(&c.w);
    assert_true(bytes == (size_t)in * (size_t)nblocks(out) * sizeof(q4_block_q8_0));
    uint8_t *dst = malloc(bytes);
    q4_weight wt;
    assert_ok(q8_transpose(&c.w, dst, &wt, 2));
    assert_true(wt.qtype == LK_QTYPE_Q8_0 && wt.out == in && wt.in == out && wt.data == dst);
    for (int64_t k = 0; k < in; k++) {
        const q4_block_q8_0 *row = (const q4_block_q8_0 *)(void *)(dst + (size_t)k * wt.row_bytes);
        for (int64_t ob = 0; ob < outp / 32; ob++) {
            float amax = 0;
            for (int r = 0; r < 32; r++)
                amax = fmaxf(amax, fabsf(W[(ob * 32 + r) * inp + k]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            assert_int_equal(row[ob].d, q4_fp32_to_fp16(d));
            for (int r = 0; r < 32; r++) {
                const float v = W[(ob * 32 + r) * inp + k];
                assert_int_equal(row[ob].qs[r], (int)nearbyintf(v * id));
                const float back = q4_fp16_to_fp32(row[ob].d) * row[ob].qs[r];
                /* d's fp16 rounding: half an ulp, relative 2^-11 or absolute 2^-25 (subnormal) */
                const float dd = fmaxf(d * 0x1p-11f, 0x1p-25f);
                assert_true(fabsf(back - v) <= (d * 0.5f + 127.0f * dd) * 1.0001f);
                if (ob * 32 + r >= out)
                    assert_int_equal(row[ob].qs[r], 0);
            }
        }
    }
    /* dX = dY·W through the copy, against fp64 of the copy's values (tight) */
    const int64_t T = 3;
    float *dY = make_x(T, out), *dX = malloc((size_t)(T * in) * 4);
    fwd_fenced(q8_kernels_named("ref"), &wt, NULL, dY, T, dX, 2);
    float *wv = malloc((size_t)outp * 4), *wm = malloc((size_t)outp * 4);
    q8_ablock *a = malloc((size_t)nblocks(out) * sizeof *a);
    for (int64_t t = 0; t < T; t++) {
        q8_quantize_act(dY + t * out, out, a);
        for (int64_t k = 0; k < in; k++) {
            expanded_row(&wt, k, wv, wm);
            double e = 0, s = 0;
            for (int64_t o = 0; o < outp; o++) {
                const double g = (double)a[o / 32].d * a[o / 32].q[o % 32];
                e += g * wv[o];
                s += fabs(g) * wm[o];
            }
            assert_true(fabs(dX[t * in + k] - e) <=
                        (double)(nblocks(out) + 6) * 0x1p-24 * s + 1e-30);
        }
    }
    free(a);
    free(wv);
    free(wm);
    free(dY);
    free(dX);
    free(dst);
    free(W);
    free(c.data);
}

static void test_transpose(void **state)
{
    (void)state;
    g_rng = 4;
    for (int q = LK_QTYPE_Q4_0; q < LK_QTYPE_COUNT; q++) {
        if (!q8_supports(q))
            continue;
        check_transpose(q, 64, 1, 1);
        check_transpose(q, 64, 33, 65);
        check_transpose(q, 64, 70, 31);
    }
    /* a plain weight has no transposed int8 copy */
    float f[4] = {0};
    q4_weight w = {LK_QTYPE_F32, 1, 2, 2, 8, f, 0}, wt;
    uint8_t dst[64];
    assert_int_equal(q8_transpose(&w, dst, &wt, 1), LK_ERR_UNSUPPORTED);
}

/* Every decoder (q4_decoder of each variant this host runs) equals q4_decode_ref, and every
 * decoder × tile quantiser builds q8_transpose_ref's bytes, on 1 to 3 threads; q8_transpose too. */
static void check_transpose_same(int qtype, int block, int64_t out, int64_t in)
{
    static const char *const q4_names[] = {"ref", "avx2", "avx512", "amx", "neon"};
    static const char *const q8_names[] = {"ref", "avx2", "avx512vnni", "neon"};
    wcase c;
    wcase_any(&c, qtype, block, out, in);
    in = c.w.in;
    const int64_t inp = nblocks(in) * 32;
    float *ref = malloc((size_t)(out * inp) * 4), *got = malloc((size_t)(out * inp) * 4);
    q4_decode_rows_ref(&c.w, 0, out, 0, inp, ref, inp);
    for (int64_t o = 0; o < out; o++) { /* the rows form is the row decoder's */
        float *row = malloc((size_t)inp * 4);
        q4_decode_ref(&c.w, o, 0, inp, row);
        assert_memory_equal(row, ref + o * inp, (size_t)inp * 4);
        free(row);
    }
    const size_t bytes = q8_transpose_bytes(&c.w);
    uint8_t *want = malloc(bytes), *have = malloc(bytes);
    q4_weight wt, wt2;
    assert_ok(q8_transpose_ref(&c.w, want, &wt, 2));
    for (size_t i = 0; i < sizeof q4_names / sizeof q4_names[0]; i++) {
        const q4_kernels *k4 = q4_kernels_named(q4_names[i]);
        if (!k4)
            continue;
        const q4_decode_fn dec = q4_decoder(k4);
        /* whole rows, and a span from an odd block with a partial tail */
        memset(got, 0xff, (size_t)(out * inp) * 4);
        dec(&c.w, 0, out, 0, inp, got, inp);
        assert_memory_equal(got, ref, (size_t)(out * inp) * 4);
        if (inp > 64) {
            const int64_t r0 = out / 2, nr = out - r0, n = inp - 32 - 5;
            dec(&c.w, r0, nr, 32, n, got, n);
            for (int64_t r = 0; r < nr; r++)
                assert_memory_equal(got + r * n, ref + (r0 + r) * inp + 32, (size_t)n * 4);
        }
        for (size_t t = 0; t < sizeof q8_names / sizeof q8_names[0]; t++) {
            const q8_kernels *k8 = q8_kernels_named(q8_names[t]);
            if (!k8)
                continue;
            for (int nt = 1; nt <= 3; nt++) {
                memset(have, 0xa5, bytes);
                assert_ok(q8_transpose_with(&c.w, have, &wt2, nt, dec, q8_tiler(k8)));
                assert_memory_equal(have, want, bytes);
                assert_true(wt2.qtype == wt.qtype && wt2.out == wt.out && wt2.in == wt.in &&
                            wt2.row_bytes == wt.row_bytes && wt2.data == have);
            }
        }
    }
    memset(have, 0xa5, bytes);
    assert_ok(q8_transpose(&c.w, have, &wt2, 2));
    assert_memory_equal(have, want, bytes);
    free(want);
    free(have);
    free(ref);
    free(got);
    free(c.data);
}

static void test_transpose_fast(void **state)
{
    (void)state;
    g_rng = 13;
    for (int q = LK_QTYPE_Q4_0; q < LK_QTYPE_COUNT; q++) {
        if (!q8_supports(q))
            continue;
        check_transpose_same(q, 64, 1, 1);
        check_transpose_same(q, 64, 33, 65);
        check_transpose_same(q, 64, 70, 31);
        check_transpose_same(q, 64, 97, 600); /* several chunks of 8 column blocks per thread */
        if (q == LK_QTYPE_NF4)
            check_transpose_same(q, 128, 40, 300);
    }
    /* the tile quantisers on awkward columns: zero, -0, subnormal, ties, huge (the values are
     * finite, as decoded weights are) */
    float tile[32][24];
    for (int r = 0; r < 32; r++)
        for (int k = 0; k < 24; k++)
            tile[r][k] = frand() * (float)(k + 1);
    for (int r = 0; r < 32; r++) {
        tile[r][0] = 0.0f;
        tile[r][1] = r % 2 ? -0.0f : 0.0f;
        tile[r][2] = (float)r * 0x1p-140f;   /* subnormal: d subnormal, id not finite */
        tile[r][3] = (float)(r - 16) * 0.5f; /* x*id at ties */
        tile[r][4] = r == 5 ? 3e38f : frand();
        tile[r][9] = 0x1p-126f * (float)(r + 1);
    }
    tile[7][5] = -3.4e38f;
    tile[8][6] = 0x1p-149f; /* the smallest subnormal beside normal values */
    const size_t rb = 3 * sizeof(q4_block_q8_0);
    uint8_t want[24 * 3 * sizeof(q4_block_q8_0)], have[sizeof want];
    for (int64_t ncol = 1; ncol <= 21; ncol += 4) {
        memset(want, 0x11, sizeof want);
        q8_tile_ref(tile[0], 24, ncol, want, rb);
        for (size_t t = 0; t < 4; t++) {
            static const char *const q8_names[] = {"ref", "avx2", "avx512vnni", "neon"};
            const q8_kernels *k8 = q8_kernels_named(q8_names[t]);
            if (!k8)
                continue;
            memset(have, 0x11, sizeof have);
            q8_tiler(k8)(tile[0], 24, ncol, have, rb);
            assert_memory_equal(have, want, sizeof want);
        }
    }
}

/* ---- variants bit for bit ------------------------------------------------------------------ */

static void run_case(const q8_kernels *k, const q4_weight *w, const int64_t *Ts, int nT, int nt)
{
    float *bias = malloc((size_t)w->out * 4);
    for (int64_t o = 0; o < w->out; o++)
        bias[o] = frand();
    for (int ti = 0; ti < nT; ti++) {
        const int64_t T = Ts[ti];
        float *X = make_x(T, w->in), *Y = malloc((size_t)(T * w->out) * 4);
        float *Yr = malloc((size_t)(T * w->out) * 4);
        /* b & 1: with a bias; mode (b / 2) 1: the two-term forward, 2: the accumulating one
         * (into Y holding values), for a table with them (not the GEMV's) */
        for (int b = 0; b < 6; b++) {
            const int mode = b / 2;
            if (mode && !k->fwd2)
                break;
            if (mode == 2 && (b & 1))
                continue;
            for (int64_t i = 0; mode == 2 && i < T * w->out; i++)
                Y[i] = Yr[i] = frand() * 3.0f;
            fwd_fenced_n(q8_kernels_named("ref"), w, b & 1 ? bias : NULL, X, T, Yr, 2, mode);
            fwd_fenced_n(k, w, b & 1 ? bias : NULL, X, T, Y, nt, mode);
            for (int64_t i = 0; i < T * w->out; i++)
                if (memcmp(&Y[i], &Yr[i], 4))
                    fail_msg("%s mode %d %s block %d [%lld x %lld] T=%lld nt %d%s: [%lld][%lld] "
                             "%.9g, ref %.9g",
                             k->name, mode, lk_qtype_name((lk_qtype)w->qtype),
                             w->block, (long long)w->out, (long long)w->in, (long long)T, nt,
                             b & 1 ? " bias" : "", (long long)(i / w->out),
                             (long long)(i % w->out), Y[i], Yr[i]);
        }
        free(X);
        free(Y);
        free(Yr);
    }
    free(bias);
}

static void test_variant(const char *name)
{
    const q8_kernels *k = q8_kernels_named(name);
    if (!k) {
        printf("SKIPPED: int8 variant '%s' not compiled into this build or not supported by this "
               "CPU (features: %s)\n",
               name, lk_cpu_features());
        skip();
    }
    static const int64_t shapes[][2] = {
        {1, 1},   {1, 32},  {3, 7},   {5, 9},    {2, 15},  {17, 17},  {16, 31},  {15, 33}, {65, 63},
        {63, 64}, {64, 65}, {7, 172}, {33, 100}, {1, 300}, {129, 96}, {31, 129}, {40, 520}};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17}, Tv[] = {1, 2, 3, 5, 9};
    /* the variant's matrix-vector kernel on its own (its fwd takes it for T <= gemv_t) */
    const q8_kernels gemv = {k->name, k->gemv, k->gemv_work, k->gemv, k->gemv_work, 0,
                             NULL,    NULL,    NULL,         NULL,    k->reads_ilv, 0};
    for (int seed = 1; seed <= 2; seed++) {
        g_rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
        for (int q = LK_QTYPE_Q4_0; q < LK_QTYPE_COUNT; q++) {
            if (!q8_supports(q))
                continue; /* the GGUF types until their expanders are merged */
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                wcase c;
                wcase_any(&c, q, 64, shapes[s][0], shapes[s][1]);
                check_work_monotone(k, &c.w);
                check_work_monotone(&gemv, &c.w);
                run_case(k, &c.w, Ts, (int)(sizeof Ts / sizeof Ts[0]), 1 + (int)(s % 3));
                /* the GEMV alone, past gemv_t too (passes of Q8V_MT rows) */
                run_case(&gemv, &c.w, Tv, (int)(sizeof Tv / sizeof Tv[0]), 1 + (int)((s + 1) % 3));
                free(c.data);
            }
        }
    }
    static const int blocks[] = {32, 128, 4096};
    static const int64_t Ts2[] = {1, 9};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        wcase c;
        wcase_make(&c, LK_QTYPE_NF4, blocks[b], 19, 300);
        run_case(k, &c.w, Ts2, 2, 2);
        free(c.data);
    }
    /* large: several tiles per thread, T up to 600; and the transposed copy (Q8_0 with out rows) */
    static const int64_t Tl[] = {64, 600, 333}; /* 600, 333: two passes in fwd2, T odd */
    for (int q = LK_QTYPE_Q4_0; q < LK_QTYPE_COUNT; q++) {
        if (!q8_supports(q))
            continue;
        wcase c;
        wcase_any(&c, q, 64, 72, 520);
        run_case(k, &c.w, Tl, 3, 2);
        run_case(k, &c.w, Ts, 3, 3); /* the GEMV with rows not a multiple of the thread split */
        uint8_t *dst = malloc(q8_transpose_bytes(&c.w));
        q4_weight wt;
        assert_ok(q8_transpose(&c.w, dst, &wt, 2));
        run_case(k, &wt, Tl, 1, 3);
        free(dst);
        free(c.data);
    }
    /* many output rows: the SIMD variants' panels in several chunks per thread, the last chunk
     * short and the last panel partial (1001 rows: 126 panels of 8, 32 of 32), 1..3 threads */
    static const int64_t Tc[] = {5, 70};
    static const int cq[] = {LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, LK_QTYPE_IQ4_NL, LK_QTYPE_Q4_K};
    for (size_t i = 0; i < sizeof cq / sizeof cq[0]; i++) {
        if (!q8_supports(cq[i]))
            continue;
        wcase c;
        wcase_any(&c, cq[i], 64, 1001, 96);
        check_work_monotone(k, &c.w);
        for (int nt = 1; nt <= 3; nt++)
            run_case(k, &c.w, Tc, 2, nt);
        free(c.data);
    }
    /* the GEMV's single-thread cutoff (q8v_threads: one thread below Q8V_MIN_MACS multiply-adds,
     * one more per whole Q8V_MIN_MACS): just below and above its steps to 2 and 3 threads, rows
     * that leave a short last group (511 = 31·16 + 15 = 63·8 + 7; 513 = 32·16 + 1, 1025 too) */
    static const int64_t cut[][2] = {{511, 1024}, {513, 1024}, {1023, 1024}, {1025, 1024}};
    static const int ct[] = {LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, LK_QTYPE_NF4, LK_QTYPE_Q4_1,
                             LK_QTYPE_Q5_0};
    static const int64_t T1[] = {1};
    for (size_t q = 0; q < sizeof ct / sizeof ct[0]; q++) {
        if (!q8_supports(ct[q]))
            continue;
        for (size_t s = 0; s < sizeof cut / sizeof cut[0]; s++) {
            wcase c;
            wcase_any(&c, ct[q], 64, cut[s][0], cut[s][1]);
            for (int nt = 1; nt <= 3; nt++)
                run_case(&gemv, &c.w, T1, 1, nt);
            free(c.data);
        }
    }
    /* T = 0 needs no work and writes nothing */
    wcase c;
    wcase_make(&c, LK_QTYPE_Q4_0, 32, 5, 8);
    float x[8] = {0}, y[8];
    for (int i = 0; i < 8; i++)
        y[i] = 7.0f;
    k->fwd(&c.w, NULL, x, 0, y, 2, NULL, 0);
    for (int i = 0; i < 8; i++)
        assert_true(y[i] == 7.0f);
    free(c.data);
}

/* ---- the interleaved layout (q8_ilv.h) ------------------------------------------------------ */

/* c's weight interleaved in a copy (*data, *w), after checking that the conversion keeps every
 * row's blocks (q8i_blocks) and that q8i_revert gives back the bytes. */
static void ilv_copy(const wcase *c, uint8_t **data, q4_weight *w)
{
    const size_t bytes = (size_t)c->w.out * c->w.row_bytes, bsz = q8i_bsz(c->w.qtype);
    const int64_t nb = (int64_t)(c->w.row_bytes / bsz);
    *data = lk_aligned_alloc(bytes);
    uint8_t *scratch = malloc(q8i_scratch_bytes(&c->w)), *buf = malloc(c->w.row_bytes);
    assert_true(*data && scratch && buf);
    memcpy(*data, c->data, bytes);
    *w = c->w;
    w->data = *data;
    q8i_convert(w, *data, scratch);
    assert_int_equal(w->ilv, 1);
    if (c->w.out >= Q8I_R && nb > 0) /* a whole group moved */
        assert_true(memcmp(*data, c->data, (size_t)Q8I_R * c->w.row_bytes) != 0);
    for (int64_t o = 0; o < w->out; o++)
        for (int64_t b0 = 0; b0 < nb; b0 += 3) {
            const int64_t n = nb - b0 < 3 ? nb - b0 : 3;
            assert_memory_equal(q8i_blocks(w, o, b0, n, buf),
                                c->data + (size_t)o * c->w.row_bytes + (size_t)b0 * bsz,
                                (size_t)n * bsz);
        }
    q8i_revert(w, *data, scratch);
    assert_int_equal(w->ilv, 0);
    assert_memory_equal(*data, c->data, bytes);
    q8i_convert(w, *data, scratch);
    free(scratch);
    free(buf);
}

/* Every variant that reads the interleaved layout (ref, avx512vnni where it runs), its forward,
 * two-term and accumulating forwards and its GEMV alone, bit for bit the reference on the row
 * layout (run_case: the variant against ref on the interleaved weight; here ref on it against ref
 * on the plain one), with whole groups, a partial last group and none; the transposed copy of an
 * interleaved weight is that of the plain one, byte for byte. */
static void test_ilv(void **state)
{
    (void)state;
    static const int ty[] = {LK_QTYPE_Q4_0, LK_QTYPE_IQ4_NL, LK_QTYPE_Q8_0, LK_QTYPE_Q4_1};
    static const int64_t shapes[][2] = {{15, 64},  {16, 32}, {17, 33},  {48, 96},
                                        {72, 520}, {33, 7},  {161, 256}};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 9, 70};
    static const char *const names[] = {"ref", "avx2", "avx512vnni", "neon"};
    g_rng = 0x5eed1234ULL;
    for (size_t q = 0; q < sizeof ty / sizeof ty[0]; q++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            wcase c;
            wcase_any(&c, ty[q], 32, shapes[s][0], shapes[s][1]);
            uint8_t *data;
            q4_weight w;
            ilv_copy(&c, &data, &w);
            const int64_t T = 3;
            float *X = make_x(T, w.in), *Y = malloc((size_t)(T * w.out) * 4),
                  *Yr = malloc((size_t)(T * w.out) * 4);
            const q8_kernels *ref = q8_kernels_named("ref");
            assert_true(ref->reads_ilv);
            fwd_fenced(ref, &c.w, NULL, X, T, Yr, 2);
            fwd_fenced(ref, &w, NULL, X, T, Y, 1);
            assert_memory_equal(Y, Yr, (size_t)(T * w.out) * 4);
            for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
                const q8_kernels *k = q8_kernels_named(names[v]);
                if (!k || !k->reads_ilv)
                    continue;
                const q8_kernels gemv = {k->name, k->gemv, k->gemv_work, k->gemv, k->gemv_work,
                                         0,       NULL,    NULL,         NULL,    NULL,
                                         1,       0};
                run_case(k, &w, Ts, (int)(sizeof Ts / sizeof Ts[0]), 1 + (int)(s % 3));
                run_case(&gemv, &w, Ts, 4, 2 - (int)(s % 2));
            }
            const size_t tb = q8_transpose_bytes(&c.w);
            uint8_t *t0 = malloc(tb), *t1 = malloc(tb), *t2 = malloc(tb);
            q4_weight wt;
            assert_ok(q8_transpose_ref(&c.w, t0, &wt, 2));
            assert_ok(q8_transpose_ref(&w, t1, &wt, 2));
            assert_ok(q8_transpose(&w, t2, &wt, 3));
            assert_memory_equal(t1, t0, tb);
            assert_memory_equal(t2, t0, tb);
            free(t0);
            free(t1);
            free(t2);
            free(X);
            free(Y);
            free(Yr);
            free(data);
            free(c.data);
        }
}

static void test_threads_deterministic(void **state)
{
    (void)state;
    const q8_kernels *k = q8_kernels_get();
    g_rng = 99;
    const int64_t T = 37, out = 200, in = 333;
    wcase c;
    wcase_make(&c, LK_QTYPE_NF4, 64, out, in);
    float *X = make_x(T, in), *Y1 = malloc((size_t)(T * out) * 4),
          *Yn = malloc((size_t)(T * out) * 4);
    static const int64_t Tsub[] = {1, 3, 37};
    for (int ti = 0; ti < 3; ti++) {
        fwd_fenced(k, &c.w, NULL, X, Tsub[ti], Y1, 1);
        for (int nt = 2; nt <= 4; nt++) {
            fwd_fenced(k, &c.w, NULL, X, Tsub[ti], Yn, nt);
            assert_memory_equal(Y1, Yn, (size_t)(Tsub[ti] * out) * 4);
        }
    }
    free(X);
    free(Y1);
    free(Yn);
    free(c.data);
}

/* Where the GEMV stops waking threads (q8v_threads): the counts on both sides of each step. */
static void test_gemv_threads(void **state)
{
    (void)state;
    q4_weight w = {0};
    q8v_job j = {.w = &w, .T = 1};
    w.in = 1024;
    static const struct {
        int64_t out, T;
        int n_threads, want;
    } c[] = {{511, 1, 2, 1},  {512, 1, 2, 2},  {513, 1, 2, 2},  {1023, 1, 2, 2}, {1024, 1, 2, 2},
             {1023, 1, 3, 2}, {1024, 1, 3, 3}, {1025, 1, 3, 3}, {4096, 1, 3, 3}, {1, 1, 4, 1},
             {256, 2, 2, 2},  {255, 2, 2, 1},  {511, 1, 1, 1}};
    assert_int_equal(Q8V_MIN_MACS, 512 * 1024); /* the cases above are built around 2^19 */
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        w.out = c[i].out;
        j.T = c[i].T;
        if (q8v_threads(&j, c[i].n_threads) != c[i].want)
            fail_msg("[%lld x 1024] T = %lld, %d threads asked: %d, expected %d",
                     (long long)c[i].out, (long long)c[i].T, c[i].n_threads,
                     q8v_threads(&j, c[i].n_threads), c[i].want);
    }
}

static void test_dispatch(void **state)
{
    (void)state;
    const q8_kernels *k = q8_kernels_get();
    assert_non_null(k);
    assert_ptr_equal(q8_kernels_named(k->name), k);
    assert_non_null(q8_kernels_named("ref"));
    assert_null(q8_kernels_named("sse9"));
    printf("chosen int8 variant: %s (cpu: %s)\n", k->name, lk_cpu_features());
}

/* The public face (lorakit/quant.h): the same bits as the kernel, misuse as clear errors. */
static void test_public_api(void **state)
{
    (void)state;
    g_rng = 7;
    wcase c;
    wcase_make(&c, LK_QTYPE_Q4_0, 32, 40, 70);
    const struct lk_qweight w = {LK_QTYPE_Q4_0, 32, 40, 70, c.data, 0};
    float X[3 * 70], Y[3 * 40], Yk[3 * 40], dX[3 * 70];
    for (int i = 0; i < 3 * 70; i++)
        X[i] = frand();
    size_t bytes = 0;
    assert_ok(lk_q8gemm_forward_work(&w, 3, 2, "ref", &bytes));
    void *work = malloc(bytes);
    assert_ok(lk_q8gemm_forward(&w, NULL, X, 3, Y, 2, "ref", work, bytes));
    fwd_fenced(q8_kernels_named("ref"), &c.w, NULL, X, 3, Yk, 2);
    assert_memory_equal(Y, Yk, sizeof Y);
    assert_int_equal(lk_q8gemm_forward(&w, NULL, X, 3, Y, 2, "ref", work, bytes - 1), LK_ERR_ARG);
    assert_int_equal(lk_q8gemm_forward(&w, NULL, X, 0, Y, 2, "ref", work, bytes), LK_ERR_ARG);
    assert_int_equal(lk_q8gemm_forward(&w, NULL, X, 3, Y, 2, "sse9", work, bytes),
                     LK_ERR_UNSUPPORTED);
    assert_string_equal(lk_q8_kernel_variant(), q8_kernels_get()->name);
    const struct lk_qweight f = {LK_QTYPE_F16, 32, 40, 70, c.data, 0};
    assert_int_equal(lk_q8gemm_forward_work(&f, 3, 2, NULL, &bytes), LK_ERR_UNSUPPORTED);
    free(work);
    /* the transposed copy: dX = dY·W as a forward of the copy */
    const size_t tb = lk_q8_transpose_bytes(&w);
    assert_true(tb == q8_transpose_bytes(&c.w));
    uint8_t *dst = malloc(tb);
    struct lk_qweight wt;
    assert_ok(lk_q8_transpose(&w, dst, &wt, 2));
    assert_true(wt.type == LK_QTYPE_Q8_0 && wt.out == 70 && wt.in == 40 && wt.data == dst);
    assert_ok(lk_q8gemm_forward_work(&wt, 3, 2, NULL, &bytes));
    work = malloc(bytes);
    assert_ok(lk_q8gemm_forward(&wt, NULL, Y, 3, dX, 2, NULL, work, bytes));
    for (int i = 0; i < 3 * 70; i++)
        assert_true(isfinite(dX[i]));
    free(work);
    free(dst);
    free(c.data);
}

/* Extreme codes by extreme activations (every |x| quantised to 127): the int16 partial sums of
 * the AVX2 GEMM (nibble and split codes, lanes started at -8·Σx) at their bounds, in every
 * variant against the reference. Q8_0 rows of all 127, all -128, and mixes; Q4_0 rows of
 * nibbles 0 and 15; activation rows of +1, -1 and sign patterns that line up with the codes. */
static void test_extremes(void **state)
{
    (void)state;
    enum { OUT = 24, IN = 96, T = 12, NB = IN / 32 };
    q4_block_q8_0 w8[OUT][NB];
    q4_block_q4_0 w4[OUT][NB];
    for (int r = 0; r < OUT; r++)
        for (int b = 0; b < NB; b++) {
            w8[r][b].d = w4[r][b].d = 0x3c00; /* 1.0 */
            for (int k = 0; k < 32; k++) {
                const int hi = r % 6 == 0   ? 1
                               : r % 6 == 1 ? 0
                               : r % 6 == 2 ? k % 2
                               : r % 6 == 3 ? k % 4 < 2
                               : r % 6 == 4 ? k < 16
                                            : (k * 7 + r + b) % 3 != 0;
                w8[r][b].qs[k] = (int8_t)(hi ? 127 : -128);
                if (k < 16)
                    w4[r][b].qs[k] = 0;
                w4[r][b].qs[k % 16] |= (uint8_t)((hi ? 15 : 0) << (k < 16 ? 0 : 4));
            }
        }
    float X[T][IN];
    for (int t = 0; t < T; t++)
        for (int k = 0; k < IN; k++) {
            const int pos = t % 6 == 0   ? 1
                            : t % 6 == 1 ? 0
                            : t % 6 == 2 ? k % 2
                            : t % 6 == 3 ? k % 4 >= 2
                            : t % 6 == 4 ? k % 32 >= 16
                                         : (k * 5 + t) % 3 == 0;
            X[t][k] = pos ? 1.0f : -1.0f;
        }
    static const char *const names[] = {"avx2", "avx512vnni", "neon"};
    for (int q = 0; q < 2; q++) {
        q4_weight w;
        assert_ok(q4_weight_init(&w, q ? LK_QTYPE_Q4_0 : LK_QTYPE_Q8_0, 32, OUT, IN,
                                 q ? (const void *)w4 : (const void *)w8));
        float Yr[T * OUT], Y[T * OUT];
        fwd_fenced(q8_kernels_named("ref"), &w, NULL, X[0], T, Yr, 1);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            const q8_kernels *k = q8_kernels_named(names[i]);
            if (!k)
                continue;
            fwd_fenced(k, &w, NULL, X[0], T, Y, 2);
            assert_memory_equal(Y, Yr, sizeof Y);
        }
    }
}

static void test_avx2(void **state)
{
    (void)state;
    test_variant("avx2");
}
static void test_avx512vnni(void **state)
{
    (void)state;
    test_variant("avx512vnni");
}
static void test_neon(void **state)
{
    (void)state;
    test_variant("neon");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_expanders),
        cmocka_unit_test(test_quantize_act),
        cmocka_unit_test(test_quantize_act2),
        cmocka_unit_test(test_fwd2_composition),
        cmocka_unit_test(test_ref_gemm),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_transpose_fast),
        cmocka_unit_test(test_public_api),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512vnni),
        cmocka_unit_test(test_neon),
        cmocka_unit_test(test_ilv),
        cmocka_unit_test(test_threads_deterministic),
        cmocka_unit_test(test_gemv_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
