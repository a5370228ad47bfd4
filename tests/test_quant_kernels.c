/* test_quant_kernels.c — every fused dequant-GEMM variant this host runs against the plain-C
 * reference (q4_gemm_*_ref), forward and backward, for every format, over sizes 1, odd, block
 * ±1, vector width ±1 and one large size, T from 1 to 600, several seeds; plus bit-identical
 * results across thread counts. Variants the host or build lacks are skipped visibly.
 *
 * Tolerance: errors are measured against S = Σ_k |a_k||w_k| of each output (the scale of a dot
 * product's rounding error), so cancellation in a sum does not make a correct kernel fail.
 * fp32 variants: |got - ref| <= 1e-5·S. bf16 variants (AMX): operands rounded to bf16 (unit
 * roundoff u = 2^-8) give per-product error <= 2u+u² and fp32 accumulation adds K·2^-24, so
 * |got - ref| <= (2^-7 + 1e-4)·S for K <= 600 (the bound documented in q4_amx.c).
 *
 * Work memory: every kernel call here gets exactly the bytes its variant reports, at the worst
 * alignment or at a 64-byte line, filled with NaNs and fenced by canary bytes that must be intact
 * afterwards; the reported sizes must cover every shorter call. The callers' one allocation of
 * work fails cleanly under RLIMIT_AS (LK_ERR_NOMEM naming the bytes), and the quantisers need none.
 */
#include <float.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "q4.h"
#include "core/status.h"
#include "testutil.h"
#include "nn/linear.h"
#include "train/train_graph.h"

static uint64_t g_rng;
static float frand(void) /* splitmix-style LCG, uniform in [-1, 1) */
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 40) / 8388608.0 - 1.0);
}

typedef struct {
    int qtype, block;
    int64_t out, in;
    uint8_t *data;
    float *deq; /* [out][in] dequantised, for the error scale */
    q4_weight w;
} wcase;

static void wcase_make(wcase *c, int qtype, int block, int64_t out, int64_t in)
{
    c->qtype = qtype;
    c->block = block;
    c->out = out;
    c->in = in;
    size_t rb = q4_row_bytes(qtype, block, in);
    c->data = lk_aligned_alloc(rb * (size_t)out);
    c->deq = malloc((size_t)(out * in) * sizeof(float));
    float *row = malloc((size_t)in * sizeof(float));
    assert_true(c->data && c->deq && row);
    for (int64_t o = 0; o < out; o++) {
        float scale = 0.02f * (1.0f + (float)(o % 5)); /* rows of different magnitude */
        for (int64_t k = 0; k < in; k++)
            row[k] = frand() * scale;
        q4_quantize_row(qtype, block, row, in, c->data + (size_t)o * rb);
        q4_dequantize_row(qtype, block, c->data + (size_t)o * rb, in, c->deq + o * in);
    }
    free(row);
    assert_ok(q4_weight_init(&c->w, qtype, block, out, in, c->data));
}

/* A weight of a type lorakit cannot quantise to (Q4_1 .. IQ4_XS): random code bytes, fp16 scales
 * planted so that rows have different magnitudes (d of the k-quants divided by their 4..6-bit
 * sub-scales' range; m / dmin a fraction of d, negative every third row). */
static void wcase_make_blocks(wcase *c, int qtype, int64_t out, int64_t in)
{
    c->qtype = qtype;
    c->block = 32;
    c->out = out;
    c->in = in;
    const size_t rb = q4_row_bytes(qtype, 32, in), bb = q4_block_bytes(qtype);
    const int64_t nb = (int64_t)(rb / bb);
    const float sub = q4_is_kquant(qtype) ? (qtype == LK_QTYPE_Q6_K ? 64.0f : 32.0f) : 1.0f;
    int off[2];
    test_gguf_scale_offsets(qtype, off);
    c->data = lk_aligned_alloc(rb * (size_t)out);
    c->deq = malloc((size_t)(out * in) * sizeof(float));
    assert_true(c->data && c->deq);
    for (size_t i = 0; i < rb * (size_t)out; i++)
        c->data[i] = (uint8_t)(frand() * 128.0f + 128.0f);
    for (int64_t o = 0; o < out; o++) {
        const float scale = 0.002f * (1.0f + (float)(o % 5)) / sub;
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = c->data + (size_t)o * rb + (size_t)b * bb;
            uint16_t d = q4_fp32_to_fp16(scale * (1.0f + 0.5f * frand()));
            uint16_t m = q4_fp32_to_fp16(scale * frand() * (o % 3 == 2 ? -4.0f : 4.0f));
            memcpy(blk + off[0], &d, 2);
            if (off[1] >= 0)
                memcpy(blk + off[1], &m, 2);
        }
        q4_dequantize_row(qtype, 32, c->data + (size_t)o * rb, in, c->deq + o * in);
    }
    assert_ok(q4_weight_init(&c->w, qtype, 32, out, in, c->data));
}

static void wcase_free(wcase *c)
{
    free(c->data);
    free(c->deq);
}

/* ---- work memory fenced by canaries ------------------------------------------------------ */

#define FENCE 64 /* canary bytes on each side of a work buffer */

typedef struct {
    uint8_t *block; /* 64-byte aligned: FENCE + shift canaries, the work, FENCE canaries */
    uint8_t *work;
    size_t size, shift;
} fenced;

static unsigned g_calls; /* alternates the work's alignment from one call to the next */

/* size bytes of work starting shift bytes past a 64-byte line, canaries around it, the work itself
 * NaN bytes. */
static fenced fence_open(size_t size, size_t shift)
{
    fenced f = {.size = size, .shift = shift};
    f.block = lk_aligned_alloc(2 * FENCE + f.shift + size);
    assert_non_null(f.block);
    memset(f.block, 0xa5, FENCE + f.shift);
    f.work = f.block + FENCE + f.shift;
    memset(f.work, 0xff, size);
    memset(f.work + size, 0xa5, FENCE);
    return f;
}

static void fence_close(fenced *f, const char *what, const q4_weight *w, int64_t T, int nt)
{
    for (size_t i = 0; i < FENCE + f->shift; i++)
        if (f->block[i] != 0xa5)
            fail_msg("%s [%lld x %lld] T=%lld, %d threads: wrote %zu bytes before its work", what,
                     (long long)w->out, (long long)w->in, (long long)T, nt, FENCE + f->shift - i);
    for (size_t i = 0; i < FENCE; i++)
        if (f->work[f->size + i] != 0xa5)
            fail_msg("%s [%lld x %lld] T=%lld, %d threads: wrote byte %zu past its %zu bytes of "
                     "work",
                     what, (long long)w->out, (long long)w->in, (long long)T, nt, i, f->size);
    free(f->block);
}

/* The variant's forward / backward with exactly the work it reports, checked; the work starts on
 * a 64-byte line or 1 byte past one (a kernel then skips 63 bytes to align: the most it may). */
static void fwd_fenced(const q4_kernels *k, const q4_weight *w, const float *bias, const float *X,
                       int64_t T, float *Y, int nt)
{
    fenced f = fence_open(k->fwd_work(w, T, nt), g_calls++ & 1);
    k->fwd(w, bias, X, T, Y, nt, f.size ? f.work : NULL, f.size);
    fence_close(&f, k->name, w, T, nt);
}

static void bwd_fenced(const q4_kernels *k, const q4_weight *w, const float *dY, int64_t T,
                       float *dX, int nt)
{
    fenced f = fence_open(k->bwd_work(w, T, nt), g_calls++ & 1);
    k->bwd(w, dY, T, dX, nt, f.size ? f.work : NULL, f.size);
    fence_close(&f, k->name, w, T, nt);
}

/* A plan for T rows, out rows and nt threads covers fewer rows of either kind: sizes never grow
 * as T, out or the thread count shrink (callers plan for their longest call; the LM head goes
 * through in chunks of rows). */
static void check_work_monotone(const q4_kernels *k, const q4_weight *w)
{
    q4_weight half = *w;
    half.out = (w->out + 1) / 2;
    for (int nt = 1; nt <= 4; nt++) {
        for (int64_t T = 0; T <= 80; T++) {
            const size_t f = k->fwd_work(w, T, nt), b = k->bwd_work(w, T, nt);
            if (T > 0)
                assert_true(f >= k->fwd_work(w, T - 1, nt) && b >= k->bwd_work(w, T - 1, nt));
            if (nt > 1)
                assert_true(f >= k->fwd_work(w, T, nt - 1) && b >= k->bwd_work(w, T, nt - 1));
            assert_true(f >= k->fwd_work(&half, T, nt) && b >= k->bwd_work(&half, T, nt));
            if (T == 0)
                assert_true(f == 0 && b == 0);
        }
    }
}

/* |got - want| <= tol·S elementwise; S computed from the dequantised weight. fwd: S[t][o] =
 * Σ_k |X[t,k]||W[o,k]|; bwd: S[t][k] = Σ_o |dY[t,o]||W[o,k]|. */
static void check_scaled(const char *what, const wcase *c, int bwd, const float *A, int64_t T,
                         const float *got, const float *want, double tol)
{
    const int64_t nout = bwd ? c->in : c->out, red = bwd ? c->out : c->in;
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < nout; j++) {
            double s = 0;
            for (int64_t r = 0; r < red; r++)
                s += fabs(A[t * red + r]) * fabs(bwd ? c->deq[r * c->in + j] : c->deq[j * red + r]);
            double d = fabs((double)got[t * nout + j] - (double)want[t * nout + j]);
            double rel = d / (s + 1e-30);
            if (rel > worst)
                worst = rel;
            if (!(d <= tol * s + 1e-30))
                fail_msg("%s %s block %d [%lld x %lld] T=%lld: [%lld][%lld] got %.9g want %.9g "
                         "(err %.3g, scale %.3g, tol %.3g)",
                         what, lk_qtype_name((lk_qtype)c->qtype), c->block, (long long)c->out,
                         (long long)c->in, (long long)T, (long long)t, (long long)j,
                         got[t * nout + j], want[t * nout + j], d, s, tol * s);
        }
    }
}

/* One weight case against the reference for every T in Ts; forward with and without bias. */
static void run_case(const q4_kernels *k, wcase *c, const int64_t *Ts, int nT)
{
    const double tol = k->bf16 ? 0x1p-7 + 1e-4 : 1e-5;
    float *bias = malloc((size_t)c->out * sizeof(float));
    for (int64_t o = 0; o < c->out; o++)
        bias[o] = frand();
    for (int ti = 0; ti < nT; ti++) {
        int64_t T = Ts[ti];
        float *X = malloc((size_t)(T * c->in) * 4), *Y = malloc((size_t)(T * c->out) * 4);
        float *Yr = malloc((size_t)(T * c->out) * 4), *dY = malloc((size_t)(T * c->out) * 4);
        float *dX = malloc((size_t)(T * c->in) * 4), *dXr = malloc((size_t)(T * c->in) * 4);
        for (int64_t i = 0; i < T * c->in; i++)
            X[i] = frand();
        for (int64_t i = 0; i < T * c->out; i++)
            dY[i] = frand() * 0.1f;
        for (int b = 0; b < 2; b++) {
            const float *bb = b ? bias : NULL;
            fwd_fenced(q4_kernels_named("ref"), &c->w, bb, X, T, Yr, 2);
            fwd_fenced(k, &c->w, bb, X, T, Y, 2);
            /* the bias adds |bias| to the error scale; fold it into a relative check */
            for (int64_t i = 0; b && i < T * c->out; i++) {
                Y[i] -= bias[i % c->out];
                Yr[i] -= bias[i % c->out];
            }
            check_scaled(b ? "fwd+bias" : "fwd", c, 0, X, T, Y, Yr, b ? tol + 1e-6 : tol);
        }
        bwd_fenced(q4_kernels_named("ref"), &c->w, dY, T, dXr, 2);
        for (int64_t i = 0; i < T * c->in; i++)
            dX[i] = NAN; /* bwd overwrites */
        bwd_fenced(k, &c->w, dY, T, dX, 2);
        check_scaled("bwd", c, 1, dY, T, dX, dXr, tol);
        free(X);
        free(Y);
        free(Yr);
        free(dY);
        free(dX);
        free(dXr);
    }
    free(bias);
}

static const int k_qtypes[] = {LK_QTYPE_Q4_0, LK_QTYPE_IQ4_NL, LK_QTYPE_Q8_0, LK_QTYPE_NF4};

static void test_variant(const char *name)
{
    const q4_kernels *k = q4_kernels_named(name);
    if (!k) {
        printf("SKIPPED: kernel variant '%s' not compiled into this build or not supported by "
               "this CPU (features: %s)\n",
               name, lk_cpu_features());
        skip();
    }
    /* (out, in): 1, odd, block ±1, vector width ±1 (8, 16), panel ±1 (16, 64 rows/columns) */
    static const int64_t shapes[][2] = {{1, 1},   {1, 32},  {3, 7},    {5, 9},   {2, 15},
                                        {17, 17}, {16, 31}, {15, 33},  {65, 63}, {63, 64},
                                        {64, 65}, {7, 172}, {33, 100}, {1, 300}, {129, 96}};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13};
    for (int seed = 1; seed <= 3; seed++) {
        g_rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
        for (size_t q = 0; q < sizeof k_qtypes / sizeof k_qtypes[0]; q++) {
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                wcase c;
                wcase_make(&c, k_qtypes[q], 64, shapes[s][0], shapes[s][1]);
                check_work_monotone(k, &c.w);
                run_case(k, &c, Ts, (int)(sizeof Ts / sizeof Ts[0]));
                wcase_free(&c);
            }
        }
    }
    /* NF4 at other blocksizes, including blocks longer than the row and the kernels' chunks */
    static const int blocks[] = {32, 128, 256, 4096};
    static const int64_t Ts2[] = {1, 9};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        wcase c;
        wcase_make(&c, LK_QTYPE_NF4, blocks[b], 19, 300);
        run_case(k, &c, Ts2, 2);
        wcase_free(&c);
    }
    /* T = 0 needs no work and writes nothing */
    {
        wcase c;
        float x[8] = {0}, y[8], dx[8];
        for (int i = 0; i < 8; i++)
            y[i] = dx[i] = 7.0f;
        wcase_make(&c, LK_QTYPE_Q4_0, 32, 5, 8);
        k->fwd(&c.w, NULL, x, 0, y, 2, NULL, 0);
        k->bwd(&c.w, x, 0, dx, 2, NULL, 0);
        for (int i = 0; i < 8; i++)
            assert_true(y[i] == 7.0f && dx[i] == 7.0f);
        wcase_free(&c);
    }
    /* one large size: several KC chunks, several tasks per thread, T up to 600 */
    static const int64_t Tl[] = {64, 600};
    for (size_t q = 0; q < sizeof k_qtypes / sizeof k_qtypes[0]; q++) {
        wcase c;
        wcase_make(&c, k_qtypes[q], 64, 72, 520);
        check_work_monotone(k, &c.w);
        run_case(k, &c, Tl, 2);
        wcase_free(&c);
    }
}

/* ---- the GGUF read-only types ------------------------------------------------------------- */

static const int k_gguf_types[] = {LK_QTYPE_Q4_1, LK_QTYPE_Q5_0, LK_QTYPE_Q5_1,
                                   LK_QTYPE_Q2_K, LK_QTYPE_Q3_K, LK_QTYPE_Q4_K,
                                   LK_QTYPE_Q5_K, LK_QTYPE_Q6_K, LK_QTYPE_IQ4_XS};

/* Variant `name` against the reference for every GGUF read-only type it has kernels for (the
 * others are named with the variant that stands in for them): odd shapes (k-quants: rows of
 * 256..768 values), T = 1..9, 13, and a large case with T = 64 and 600. */
static void test_gguf_types_of(const char *name)
{
    const q4_kernels *k = q4_kernels_named(name);
    if (!k) {
        printf("SKIPPED: kernel variant '%s' unavailable here\n", name);
        skip();
    }
    static const int64_t shapes32[][2] = {{1, 32},  {3, 7},   {17, 17}, {15, 33},
                                          {65, 63}, {64, 65}, {7, 172}, {129, 96}};
    static const int64_t shapesK[][2] = {{1, 256},  {3, 256},  {17, 512},
                                         {65, 256}, {16, 768}, {33, 256}};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13}, Tl[] = {64, 600};
    int tested = 0;
    for (size_t q = 0; q < sizeof k_gguf_types / sizeof k_gguf_types[0]; q++) {
        const int qt = k_gguf_types[q];
        if (!q4_kernels_has(k, qt)) {
            const q4_kernels *f = q4_kernels_for(k, qt);
            assert_true(f != k && q4_kernels_has(f, qt));
            printf("%s: no %s kernels, dispatch uses '%s'\n", name, lk_qtype_name((lk_qtype)qt),
                   f->name);
            continue;
        }
        tested++;
        g_rng = 0x51ed270b27c5ULL + (uint64_t)qt;
        const int kq = q4_is_kquant(qt);
        const size_t ns =
            kq ? sizeof shapesK / sizeof shapesK[0] : sizeof shapes32 / sizeof shapes32[0];
        for (size_t si = 0; si < ns; si++) {
            wcase c;
            wcase_make_blocks(&c, qt, kq ? shapesK[si][0] : shapes32[si][0],
                              kq ? shapesK[si][1] : shapes32[si][1]);
            check_work_monotone(k, &c.w);
            run_case(k, &c, Ts, (int)(sizeof Ts / sizeof Ts[0]));
            wcase_free(&c);
        }
        wcase c;
        wcase_make_blocks(&c, qt, 72, kq ? 1024 : 520);
        run_case(k, &c, Tl, 2);
        /* the variant's decoder is exact: a one-hot dY (T = 1) gives back row o of W as
         * q4_dequantize_row computes it (fp32 products by 1 and 0, sums with 0) */
        float *dY = calloc(72, sizeof(float)), *dX = malloc((size_t)c.in * sizeof(float));
        for (int64_t o = 0; o < 72; o += 7) {
            dY[o] = 1.0f;
            bwd_fenced(k, &c.w, dY, 1, dX, 2);
            dY[o] = 0.0f;
            for (int64_t i = 0; i < c.in; i++)
                if (dX[i] != c.deq[o * c.in + i])
                    fail_msg("%s %s: row %lld value %lld decodes to %.9g, expected %.9g", name,
                             lk_qtype_name((lk_qtype)qt), (long long)o, (long long)i, dX[i],
                             c.deq[o * c.in + i]);
        }
        free(dY);
        free(dX);
        wcase_free(&c);
    }
    printf("%s: %d of %zu GGUF read-only types checked against the reference\n", name, tested,
           sizeof k_gguf_types / sizeof k_gguf_types[0]);
}

/* The reference kernels on the GGUF read-only types against f32 dequantisation (q4_dequantize_row,
 * bit-exact with gguf-py) and a double-precision matmul; k-quant rows that are not whole
 * super-blocks are refused. */
static void test_gguf_ref_vs_dequant(void **state)
{
    (void)state;
    const q4_kernels *ref = q4_kernels_named("ref");
    for (size_t q = 0; q < sizeof k_gguf_types / sizeof k_gguf_types[0]; q++) {
        const int qt = k_gguf_types[q];
        g_rng = 31 + (uint64_t)qt;
        enum { T = 3, OUT = 5 };
        const int64_t in = q4_is_kquant(qt) ? 512 : 72;
        wcase c;
        wcase_make_blocks(&c, qt, OUT, in);
        float X[T * 512], Y[T * OUT], dY[T * OUT], dX[T * 512], bias[OUT];
        for (int i = 0; i < T * in; i++)
            X[i] = frand();
        for (int i = 0; i < T * OUT; i++)
            dY[i] = frand();
        for (int i = 0; i < OUT; i++)
            bias[i] = frand();
        fwd_fenced(ref, &c.w, bias, X, T, Y, 2);
        bwd_fenced(ref, &c.w, dY, T, dX, 2);
        for (int t = 0; t < T; t++) {
            for (int o = 0; o < OUT; o++) {
                double s = bias[o], sa = fabs(bias[o]);
                for (int64_t k = 0; k < in; k++) {
                    s += (double)X[t * in + k] * c.deq[o * in + k];
                    sa += fabs((double)X[t * in + k] * c.deq[o * in + k]);
                }
                if (!(fabs(Y[t * OUT + o] - s) <= 1e-6 * sa + 1e-30))
                    fail_msg("%s fwd [%d][%d]: got %.9g want %.9g", lk_qtype_name((lk_qtype)qt), t,
                             o, Y[t * OUT + o], s);
            }
            for (int64_t k = 0; k < in; k++) {
                double s = 0, sa = 0;
                for (int o = 0; o < OUT; o++) {
                    s += (double)dY[t * OUT + o] * c.deq[o * in + k];
                    sa += fabs((double)dY[t * OUT + o] * c.deq[o * in + k]);
                }
                if (!(fabs(dX[t * in + k] - s) <= 1e-6 * sa + 1e-30))
                    fail_msg("%s bwd [%d][%lld]: got %.9g want %.9g", lk_qtype_name((lk_qtype)qt),
                             t, (long long)k, dX[t * in + k], s);
            }
        }
        if (q4_is_kquant(qt)) {
            q4_weight w;
            assert_status(q4_weight_init(&w, qt, 32, OUT, 300, c.data), LK_ERR_SHAPE,
                          "expected a multiple of 256");
        }
        wcase_free(&c);
    }
}

static void test_gguf_types_avx2(void **state)
{
    (void)state;
    test_gguf_types_of("avx2");
}
static void test_gguf_types_avx512(void **state)
{
    (void)state;
    test_gguf_types_of("avx512");
}
static void test_gguf_types_amx(void **state)
{
    (void)state;
    test_gguf_types_of("amx");
}
static void test_gguf_types_neon(void **state)
{
    (void)state;
    test_gguf_types_of("neon");
}

/* Same variant, thread counts 1, 2, 3, 4: bit-identical outputs. */
static void test_threads_deterministic_of(const char *name)
{
    const q4_kernels *k = q4_kernels_named(name);
    if (!k) {
        printf("SKIPPED: kernel variant '%s' unavailable here\n", name);
        skip();
    }
    g_rng = 99;
    const int64_t T = 37, out = 200, in = 333;
    wcase c;
    wcase_make(&c, LK_QTYPE_NF4, 64, out, in);
    float *X = malloc((size_t)(T * in) * 4), *Y1 = malloc((size_t)(T * out) * 4);
    float *Yn = malloc((size_t)(T * out) * 4), *dX1 = malloc((size_t)(T * in) * 4);
    float *dXn = malloc((size_t)(T * in) * 4), *dY = malloc((size_t)(T * out) * 4);
    for (int64_t i = 0; i < T * in; i++)
        X[i] = frand();
    for (int64_t i = 0; i < T * out; i++)
        dY[i] = frand();
    static const int64_t Tsub[] = {1, 3, 37};
    for (int ti = 0; ti < 3; ti++) {
        int64_t t = Tsub[ti];
        fwd_fenced(k, &c.w, NULL, X, t, Y1, 1);
        bwd_fenced(k, &c.w, dY, t, dX1, 1);
        for (int nt = 2; nt <= 4; nt++) {
            fwd_fenced(k, &c.w, NULL, X, t, Yn, nt);
            bwd_fenced(k, &c.w, dY, t, dXn, nt);
            assert_memory_equal(Y1, Yn, (size_t)(t * out) * 4);
            assert_memory_equal(dX1, dXn, (size_t)(t * in) * 4);
        }
    }
    free(X);
    free(Y1);
    free(Yn);
    free(dX1);
    free(dXn);
    free(dY);
    wcase_free(&c);
}

static void test_ref_small_exact(void **state)
{
    (void)state;
    /* the reference against a hand computation on a 2x40 Q8_0 weight */
    g_rng = 5;
    wcase c;
    wcase_make(&c, LK_QTYPE_Q8_0, 32, 2, 40);
    float X[3 * 40], Y[3 * 2], dY[3 * 2], dX[3 * 40], bias[2] = {0.5f, -1.0f};
    for (int i = 0; i < 120; i++)
        X[i] = frand();
    for (int i = 0; i < 6; i++)
        dY[i] = frand();
    fwd_fenced(q4_kernels_named("ref"), &c.w, bias, X, 3, Y, 1);
    bwd_fenced(q4_kernels_named("ref"), &c.w, dY, 3, dX, 1);
    for (int t = 0; t < 3; t++) {
        for (int o = 0; o < 2; o++) {
            double s = bias[o];
            for (int k = 0; k < 40; k++)
                s += (double)X[t * 40 + k] * c.deq[o * 40 + k];
            assert_true(fabs(Y[t * 2 + o] - s) <= 1e-6 * (1 + fabs(s)));
        }
        for (int k = 0; k < 40; k++) {
            double s = 0;
            for (int o = 0; o < 2; o++)
                s += (double)dY[t * 2 + o] * c.deq[o * 40 + k];
            assert_true(fabs(dX[t * 40 + k] - s) <= 1e-6 * (1 + fabs(s)));
        }
    }
    wcase_free(&c);
}

static void test_dispatch(void **state)
{
    (void)state;
    const q4_kernels *k = q4_kernels_get();
    assert_non_null(k);
    assert_string_equal(k->name, lk_kernel_variant());
    assert_non_null(q4_kernels_named("ref"));
    assert_null(q4_kernels_named("sse9"));
    printf("chosen kernel variant: %s (cpu: %s)\n", k->name, lk_cpu_features());
}

/* q4_sgemver of each variant: NULL for ref and neon (callers keep cblas_sgemv), else a GEMV
 * within fp32 summation error of a double-precision product, tails (K % 32) included; q4_sgemv's
 * result does not depend on the thread count (whole rows per thread). */
static void test_sgemv(void **state)
{
    (void)state;
    static const char *const names[] = {"ref", "avx2", "avx512", "amx", "neon"};
    static const int64_t Ks[] = {1, 7, 31, 32, 33, 100, 576};
    const int64_t N = 37;
    float *W = malloc((size_t)(N * 576) * sizeof *W), x[576], y[37];
    assert_non_null(W);
    for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
        const q4_kernels *k = q4_kernels_named(names[v]);
        if (!k) {
            printf("SKIPPED sgemv %s: not compiled or not supported by this CPU\n", names[v]);
            continue;
        }
        const q4_sgemv_fn fn = q4_sgemver(k);
        if (!strcmp(names[v], "ref") || !strcmp(names[v], "neon")) {
            assert_null(fn);
            continue;
        }
        assert_non_null(fn);
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            const int64_t K = Ks[ki];
            g_rng = 7 + (uint64_t)K;
            for (int64_t i = 0; i < N * K; i++)
                W[i] = frand();
            for (int64_t i = 0; i < K; i++)
                x[i] = frand();
            fn(N, K, W, x, y);
            for (int64_t n = 0; n < N; n++) {
                double e = 0, a = 0;
                for (int64_t i = 0; i < K; i++) {
                    e += (double)W[n * K + i] * x[i];
                    a += fabs((double)W[n * K + i] * x[i]);
                }
                assert_true(fabs(y[n] - e) <= (double)(K + 2) * FLT_EPSILON * a + 1e-30);
            }
        }
    }
    free(W);
    /* the dispatched one: 1 thread and 2 threads give the same bits */
    const int64_t N2 = 600, K2 = 576;
    float *W2 = malloc((size_t)(N2 * K2) * sizeof *W2), *y1 = malloc((size_t)N2 * sizeof *y1),
          *y2 = malloc((size_t)N2 * sizeof *y2);
    assert_true(W2 && y1 && y2);
    g_rng = 99;
    for (int64_t i = 0; i < N2 * K2; i++)
        W2[i] = frand();
    for (int64_t i = 0; i < K2; i++)
        x[i] = frand();
    const int ran = q4_sgemv(N2, K2, W2, x, y1, 1);
    assert_int_equal(ran, q4_sgemver(q4_kernels_get()) != NULL);
    if (ran) {
        assert_int_equal(q4_sgemv(N2, K2, W2, x, y2, 2), 1);
        assert_memory_equal(y1, y2, (size_t)N2 * sizeof *y1);
    }
    free(W2);
    free(y1);
    free(y2);
}

static void test_avx2(void **state)
{
    (void)state;
    test_variant("avx2");
}
static void test_avx512(void **state)
{
    (void)state;
    test_variant("avx512");
}
static void test_amx(void **state)
{
    (void)state;
    test_variant("amx");
}
static void test_neon(void **state)
{
    (void)state;
    test_variant("neon");
}
static void test_threads_ref(void **state)
{
    (void)state;
    test_threads_deterministic_of("ref");
}
static void test_threads_chosen(void **state)
{
    (void)state;
    test_threads_deterministic_of(lk_kernel_variant());
}

/* ---- linear layers over the kernels ---------------------------------------------------------- */

/* Two copies L[0], L[1] of a quantised layer (c.w) with a trained LoRA adapter (dropout 0.1) and
 * a frozen one, each training into its own gradients dA[v], dB[v] (zeroed). */
enum { LT_OUT = 70, LT_IN = 100, LT_R = 3 };
typedef struct {
    wcase c;
    float A[2][LT_R * LT_IN], B[2][LT_OUT * LT_R], dA[2][LT_R * LT_IN], dB[2][LT_OUT * LT_R];
    lora_train tr[2];
    linear L[2];
} lora_twins;

static void twins_make(lora_twins *t, int qtype)
{
    memset(t, 0, sizeof *t);
    wcase_make(&t->c, qtype, 64, LT_OUT, LT_IN);
    for (int i = 0; i < LT_R * LT_IN; i++)
        t->A[0][i] = frand(), t->A[1][i] = frand();
    for (int i = 0; i < LT_OUT * LT_R; i++)
        t->B[0][i] = frand(), t->B[1][i] = frand();
    for (int v = 0; v < 2; v++) {
        t->tr[v] = (lora_train){.dA = t->dA[v], .dB = t->dB[v], .dropout = 0.1f};
        t->L[v] =
            (linear){.name = "l",
                     .qw = t->c.w,
                     .in = LT_IN,
                     .out = LT_OUT,
                     .n_lora = 2,
                     .lora = {{t->A[0], t->B[0], LT_R, 0.5f}, {t->A[1], t->B[1], LT_R, 0.25f}},
                     .train = &t->tr[v]};
    }
}

/* A quantised layer with a trained LoRA adapter (dropout on) and a frozen one: forward and
 * backward in exactly linear_work_bytes for their T (fenced), against the same calls in one
 * buffer planned for the longest T: the same bits. */
static void test_linear_work_fenced(void **state)
{
    (void)state;
    enum { OUT = LT_OUT, IN = LT_IN, TMAX = 40 };
    g_rng = 23;
    static lora_twins tw; /* L[0]: fenced exact work; L[1]: the planned buffer */
    twins_make(&tw, LK_QTYPE_NF4);
    const uint64_t key = 7; /* the dropout mask of both calls */
    linear *L = tw.L;
    wcase c = tw.c;
    float X[TMAX * IN], dY[TMAX * OUT], Y[2][TMAX * OUT], dX[2][TMAX * IN];
    for (int i = 0; i < TMAX * IN; i++)
        X[i] = frand();
    for (int i = 0; i < TMAX * OUT; i++)
        dY[i] = frand();
    static const int64_t Ts[] = {1, 5, 9, 40};
    for (int nt = 1; nt <= 3; nt++) {
        size_t planned = linear_work_bytes(&L[1], TMAX, nt, 1);
        void *big = lk_aligned_alloc(planned);
        assert_non_null(big);
        for (int ti = 0; ti < 4; ti++) {
            const int64_t T = Ts[ti];
            fenced f = fence_open(linear_work_bytes(&L[0], T, nt, 0), 4 * (g_calls++ & 1));
            linear_forward_train(&L[0], X, T, Y[0], f.work, f.size, key, nt);
            fence_close(&f, "linear forward", &c.w, T, nt);
            f = fence_open(linear_work_bytes(&L[0], T, nt, 1), 4 * (g_calls++ & 1));
            memset(dX[0], 0, sizeof dX[0]);
            linear_backward(&L[0], X, dY, T, dX[0], f.work, f.size, key, nt);
            fence_close(&f, "linear backward", &c.w, T, nt);
            linear_forward_train(&L[1], X, T, Y[1], big, planned, key, nt);
            memset(dX[1], 0, sizeof dX[1]);
            linear_backward(&L[1], X, dY, T, dX[1], big, planned, key, nt);
            assert_memory_equal(Y[0], Y[1], (size_t)(T * OUT) * sizeof(float));
            assert_memory_equal(dX[0], dX[1], (size_t)(T * IN) * sizeof(float));
        }
        free(big);
    }
    assert_memory_equal(tw.dA[0], tw.dA[1], sizeof tw.dA[0]);
    assert_memory_equal(tw.dB[0], tw.dB[1], sizeof tw.dB[0]);
    wcase_free(&c);
}

/* The same layer with u = x_d·Aᵀ kept from the forward (linear_forward_train_keep, into a buffer
 * of NaNs) for the backward (linear_backward_kept, adding into dx and setting it): y, dx, dA and
 * dB with the bits of the pair that recomputes u, whatever the thread count. */
static void test_linear_keep_u(void **state)
{
    (void)state;
    enum { OUT = LT_OUT, IN = LT_IN, R = LT_R, T = 9 };
    g_rng = 29;
    static lora_twins tw; /* L[0]: u recomputed; L[1]: u kept */
    twins_make(&tw, LK_QTYPE_Q4_0);
    linear *L = tw.L;
    float X[T * IN], dY[T * OUT], Y[2][T * OUT], dX[2][T * IN], U[T * R];
    for (int i = 0; i < T * IN; i++)
        X[i] = frand();
    for (int i = 0; i < T * OUT; i++)
        dY[i] = frand();
    for (int nt = 1; nt <= 2; nt++)
        for (int set = 0; set < 2; set++)
            for (uint64_t key = 0; key < 2; key++) { /* 0: no dropout */
                size_t n = linear_work_bytes(&L[0], T, nt, 1);
                void *w = lk_aligned_alloc(n);
                assert_non_null(w);
                for (int i = 0; i < T * R; i++)
                    U[i] = NAN;
                for (int i = 0; i < T * IN; i++)
                    dX[0][i] = dX[1][i] = set ? NAN : (float)i;
                linear_forward_train(&L[0], X, T, Y[0], w, n, key, nt);
                linear_forward_train_keep(&L[1], X, T, Y[1], U, w, n, key, nt);
                if (set)
                    linear_backward_set(&L[0], X, dY, T, dX[0], w, n, key, nt);
                else
                    linear_backward(&L[0], X, dY, T, dX[0], w, n, key, nt);
                linear_backward_kept(&L[1], X, dY, T, dX[1], U, set, w, n, key, nt);
                assert_memory_equal(Y[0], Y[1], sizeof Y[0]);
                assert_memory_equal(dX[0], dX[1], sizeof dX[0]);
                free(w);
            }
    assert_memory_equal(tw.dA[0], tw.dA[1], sizeof tw.dA[0]);
    assert_memory_equal(tw.dB[0], tw.dB[1], sizeof tw.dB[0]);
    for (int i = 0; i < R * IN; i++)
        assert_false(isnan(tw.dA[1][i]));
    wcase_free(&tw.c);
}

/* ---- the callers' one allocation, under RLIMIT_AS ---------------------------------------- */

static size_t vm_bytes(void) /* this process's address space now */
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld", &pages), 1);
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Limit the address space to 8 MiB above the process's size now (old gets the limit to restore);
 * skips when a lower limit is already set. Real failures: main() fixes malloc's mmap threshold at
 * 1 MiB (larger blocks are mapped, and unmapped when freed) and these tests run first, before
 * other tests leave large free chunks behind that could serve a request. */
static void limit_as(struct rlimit *old)
{
    struct rlimit lim;
    assert_int_equal(getrlimit(RLIMIT_AS, old), 0);
    lim = *old;
    lim.rlim_cur = (rlim_t)(vm_bytes() + ((size_t)8 << 20));
    if (old->rlim_cur != RLIM_INFINITY && old->rlim_cur < lim.rlim_cur)
        skip(); /* already limited below that */
    assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
}

/* The quantisers need no work memory: under a limit below the 16 MiB their scratch once took, the
 * round-trip error of a quantised matrix and a double quantisation give the same results. */
static void test_quantisers_allocate_nothing(void **state)
{
    (void)state;
    if (LK_TEST_ASAN)
        skip(); /* AddressSanitizer's shadow memory does not run under RLIMIT_AS */
    const int64_t in = (int64_t)1 << 22;
    g_rng = 17;
    float *X = malloc((size_t)(2 * in) * sizeof(float)), *am = malloc((size_t)in * sizeof(float));
    const size_t qb = 2 * q4_row_bytes(LK_QTYPE_Q8_0, Q4_QK, in), nsc = in / Q4_DQ_BLOCK;
    uint8_t *q[2] = {malloc(qb), malloc(qb)}, *codes[2] = {malloc((size_t)in), malloc((size_t)in)};
    float *scale[2] = {malloc(nsc * sizeof(float)), malloc(nsc * sizeof(float))};
    assert_true(X && am && q[0] && q[1] && codes[0] && codes[1] && scale[0] && scale[1]);
    for (int64_t i = 0; i < 2 * in; i++)
        X[i] = frand();
    for (int64_t i = 0; i < in; i++)
        am[i] = 1.0f + frand() * 0.5f;
    double rmse[2], mx[2];
    q4_nf4_dq dq[2];
    struct rlimit old;
    for (int v = 0; v < 2; v++) { /* v = 0 starts the pool's threads before the limit */
        if (v == 1)
            limit_as(&old);
        q4_quantize_matrix(LK_QTYPE_Q8_0, Q4_QK, X, 2, in, q[v], 2, &rmse[v], &mx[v]);
        dq[v] = (q4_nf4_dq){.n = in, .codes = codes[v], .scale = scale[v]};
        q4_nf4_dq_quantize(am, in, &dq[v]);
    }
    assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
    assert_true(rmse[0] > 0 && rmse[1] == rmse[0] && mx[1] == mx[0]);
    assert_memory_equal(q[0], q[1], qb);
    assert_true(dq[1].offset == dq[0].offset);
    assert_memory_equal(codes[0], codes[1], (size_t)in);
    assert_memory_equal(scale[0], scale[1], nsc * sizeof(float));
    free(X), free(am);
    for (int v = 0; v < 2; v++)
        free(q[v]), free(codes[v]), free(scale[v]);
}

/* A forward session and a training graph allocate their kernels' work once, when they are
 * made: with 65536 threads that is gigabytes (a panel or a decoded row per thread), which
 * RLIMIT_AS refuses; each reports LK_ERR_NOMEM naming what and the size, and is made once the
 * thread count is sane again. */
static void test_callers_work_nomem(void **state)
{
    (void)state;
    if (LK_TEST_ASAN)
        skip(); /* ASan's allocator aborts on the huge request instead of failing it */
    struct lk_model_params mp = lk_model_params_default();
    mp.quant = LK_QTYPE_Q4_0;
    mp.compute = LK_COMPUTE_F32; /* the f32 kernels' work */
    mp.n_threads = 2;
    lk_model *m;
    assert_ok(lk_model_load(data_path("models/llama3-tiny"), &mp, &m));
    lk_session *s = NULL;
    train_graph *g = NULL;
    lk_model_set_threads(m, 1 << 16);
    struct rlimit old;
    limit_as(&old);
    lk_status ss = lk_session_create(m, 8, &s);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lk_last_error());
    lk_status gs = graph_create(m, 8, 1, &g);
    assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
    assert_int_equal(ss, LK_ERR_NOMEM);
    assert_null(s);
    assert_non_null(strstr(msg, "session: out of memory for "));
    assert_non_null(strstr(msg, " bytes of work memory of the linear layers (65536 threads"));
    assert_status(gs, LK_ERR_NOMEM, "cannot allocate training buffers for 8 tokens");
    assert_null(g);
    printf("refused: %s\n", msg);
    lk_model_set_threads(m, 2);
    assert_ok(lk_session_create(m, 8, &s));
    assert_ok(graph_create(m, 8, 1, &g));
    lk_session_free(s);
    graph_free(g);
    lk_model_free(m);
}

int main(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 20); /* fixed (see limit_as) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantisers_allocate_nothing),
        cmocka_unit_test(test_callers_work_nomem),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_ref_small_exact),
        cmocka_unit_test(test_linear_work_fenced),
        cmocka_unit_test(test_linear_keep_u),
        cmocka_unit_test(test_sgemv),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_amx),
        cmocka_unit_test(test_neon),
        cmocka_unit_test(test_gguf_ref_vs_dequant),
        cmocka_unit_test(test_gguf_types_avx2),
        cmocka_unit_test(test_gguf_types_avx512),
        cmocka_unit_test(test_gguf_types_amx),
        cmocka_unit_test(test_gguf_types_neon),
        cmocka_unit_test(test_threads_ref),
        cmocka_unit_test(test_threads_chosen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
