/* kernels.c — every fused dequant-GEMM variant this build runs, checked against the plain-C
 * reference (q4_gemm_*_ref), for a build of quant/ alone on a CPU the project has no machine of:
 * .ci/arm.sh cross-compiles it with quant/ and core/{status,tensor,pool}.c for aarch64 and
 * runs it under qemu-aarch64, so the NEON kernels run in CI. No cmocka and no other library, so
 * nothing but Debian's cross compiler is needed; tests/test_quant_kernels.c does the same checks
 * natively (x86 variants) inside the cmocka suite.
 *
 * For each variant other than "ref" (on aarch64: "neon") and each weight type it reports having
 * kernels for: forward Y = X·Wᵀ (with and without bias) and backward dX = dY·W on odd shapes, NF4
 * at several blocksizes and T sampled from 1 to 600, against the reference, to the tolerance of
 * test_quant_kernels.c: |got - ref| <= 1e-5·S, S = Σ|a||w| of the output (bf16 variants:
 * (2^-7 + 1e-4)·S). Each call gets exactly the work its variant reports, 0 or 1 byte past a
 * 64-byte line, NaN-filled and fenced by canaries; reported sizes never grow as T, out or the
 * thread count shrink; results are bit-identical across 1..4 threads. For a type a variant lacks,
 * the dispatched entry points must give the reference's bits. Dispatch: --dispatch NAME requires
 * that the variant chosen for this CPU is NAME (run with LK_KERNELS=ref: the override works).
 *
 * The int8 GEMM variants (quant/q8.h; on aarch64 "neon", with the dotprod extension) and their
 * GEMVs (q8_gemv_*.c, taken for T <= gemv_t, also on their own up to T = 17) give the int8
 * reference's bits exactly, for every type with an int8 expander, over the same shapes, T from 1
 * to 600 and 1..3 threads, in exactly the work they report (fenced), and the same on an
 * interleaved copy of each Q4_0 / IQ4_NL / Q8_0 / Q4_1 weight (q8_ilv.h) for a variant that reads
 * that layout (the reference on it: the plain weight's bits); LK_KERNELS=ref makes the
 * int8 dispatch choose its reference too. Last, the thread pool runs 100,000 short jobs (check_pool).
 *
 * Usage: kernels [--dispatch NAME] [--dispatch-only]. Ends with "N passed, N failed"; exit 1 on
 * any failure, 2 on bad usage, also 1 when no variant besides the reference is found (nothing
 * would have been checked). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q4.h"
#include "q8.h"
#include "q8_ilv.h"
#include "core/pool.h"
#include "core/status.h"

static int g_pass, g_fail;

/* Count a check; print what failed (the first 20 failures, then only the count). */
#define CHECK(cond, ...)                                    \
    do {                                                    \
        if (cond) {                                         \
            g_pass++;                                       \
        } else {                                            \
            if (g_fail++ < 20) {                            \
                printf("FAIL %s:%d: ", __FILE__, __LINE__); \
                printf(__VA_ARGS__);                        \
                printf("\n");                               \
            }                                               \
        }                                                   \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        printf("out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static uint64_t g_rng;
static float frand(void) /* LCG, uniform in [-1, 1) (test_quant_kernels.c's) */
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 40) / 8388608.0 - 1.0);
}

/* ---- the weight types ------------------------------------------------------------------------
 * The variants list the types they have kernels for (q4_kernels.types) where quant/ has types that
 * some variants lack (the GGUF read-only ones); before that every variant had every type. */
#ifdef Q4_TYPES_BASE
static int has_type(const q4_kernels *k, int t)
{
    return q4_kernels_has(k, t);
}
static int can_quantize(int t)
{
    return q4_can_quantize(t);
}
static const q4_kernels *kernels_for(const q4_kernels *k, int t)
{
    return q4_kernels_for(k, t);
}
#else
static int has_type(const q4_kernels *k, int t)
{
    (void)k;
    return t == LK_QTYPE_Q4_0 || t == LK_QTYPE_Q8_0 || t == LK_QTYPE_IQ4_NL || t == LK_QTYPE_NF4;
}
static int can_quantize(int t)
{
    (void)t;
    return 1;
}
static const q4_kernels *kernels_for(const q4_kernels *k, int t)
{
    return has_type(k, t) ? k : q4_kernels_named("ref");
}
#endif

/* 1 for the quantised types (those the reference has kernels for). */
static int is_quantised(int t)
{
    return has_type(q4_kernels_named("ref"), t);
}

typedef struct {
    int qtype;
    uint8_t *data;
    float *deq; /* [out][in] dequantised, for the error scale */
    q4_weight w;
} wcase;

/* A random row of type t: quantised from random values where lorakit quantises t, else random
 * bytes (drawn again until every value decodes finite and below 1e4 in magnitude). */
static void make_row(int t, int block, int64_t in, float scale, uint8_t *dst, size_t rb, float *deq)
{
    if (can_quantize(t)) {
        float *x = xmalloc((size_t)in * sizeof(float));
        for (int64_t k = 0; k < in; k++)
            x[k] = frand() * scale;
        q4_quantize_row(t, block, x, in, dst);
        free(x);
        q4_dequantize_row(t, block, dst, in, deq);
        return;
    }
    for (int tries = 0;; tries++) {
        if (tries == 10000) {
            printf("no random row of type %s decodes finite\n", lk_qtype_name((lk_qtype)t));
            exit(1);
        }
        for (size_t i = 0; i < rb; i++)
            dst[i] = (uint8_t)(g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL,
                               g_rng >> 56);
        q4_dequantize_row(t, block, dst, in, deq);
        int64_t k = 0;
        while (k < in && fabsf(deq[k]) < 1e4f)
            k++;
        if (k == in)
            return;
    }
}

/* Weight [out, in] of type t (in rounded up to t's block where the kernels need whole blocks, as
 * the k-quants do). 0 if the type takes no such weight (a failure is counted). */
static int wcase_make(wcase *c, int t, int block, int64_t out, int64_t in)
{
    size_t rb = q4_row_bytes(t, block, in);
    if (rb && q4_weight_init(&c->w, t, block, out, in, (void *)1) != LK_OK) {
        const int64_t bl = q4_block_len(t, block);
        in = (in + bl - 1) / bl * bl;
        rb = q4_row_bytes(t, block, in);
    }
    CHECK(rb > 0, "%s block %d: no row size for %lld values", lk_qtype_name((lk_qtype)t), block,
          (long long)in);
    if (!rb)
        return 0;
    c->qtype = t;
    c->data = xmalloc(rb * (size_t)out);
    c->deq = xmalloc((size_t)(out * in) * sizeof(float));
    for (int64_t o = 0; o < out; o++) /* rows of different magnitude */
        make_row(t, block, in, 0.02f * (1.0f + (float)(o % 5)), c->data + (size_t)o * rb, rb,
                 c->deq + o * in);
    lk_status st = q4_weight_init(&c->w, t, block, out, in, c->data);
    CHECK(st == LK_OK, "%s [%lld x %lld]: q4_weight_init: %s", lk_qtype_name((lk_qtype)t),
          (long long)out, (long long)in, lk_last_error());
    if (st != LK_OK) {
        free(c->data), free(c->deq);
        return 0;
    }
    return 1;
}

static void wcase_free(wcase *c)
{
    free(c->data);
    free(c->deq);
}

/* ---- work memory fenced by canaries ---------------------------------------------------------- */

#define FENCE 64

static unsigned g_calls; /* alternates the work's alignment from one call to the next */

typedef struct {
    uint8_t *block, *work;
    size_t size, shift;
} fenced;

static fenced fence_open(size_t size)
{
    fenced f = {.size = size, .shift = g_calls++ & 1};
    f.block = aligned_alloc(64, (2 * FENCE + f.shift + size + 63) / 64 * 64);
    if (!f.block) {
        printf("out of memory (%zu bytes of work)\n", size);
        exit(1);
    }
    memset(f.block, 0xa5, FENCE + f.shift);
    f.work = f.block + FENCE + f.shift;
    memset(f.work, 0xff, size); /* NaNs */
    memset(f.work + size, 0xa5, FENCE);
    return f;
}

static void fence_close(fenced *f, const char *what, const q4_weight *w, int64_t T, int nt)
{
    size_t bad = 0;
    for (size_t i = 0; i < FENCE + f->shift; i++)
        bad += f->block[i] != 0xa5;
    for (size_t i = 0; i < FENCE; i++)
        bad += f->work[f->size + i] != 0xa5;
    CHECK(bad == 0,
          "%s %s [%lld x %lld] T=%lld, %d threads: wrote %zu bytes outside its %zu "
          "bytes of work",
          what, lk_qtype_name((lk_qtype)w->qtype), (long long)w->out, (long long)w->in,
          (long long)T, nt, bad, f->size);
    free(f->block);
}

static void fwd_fenced(const q4_kernels *k, const q4_weight *w, const float *bias, const float *X,
                       int64_t T, float *Y, int nt)
{
    fenced f = fence_open(k->fwd_work(w, T, nt));
    k->fwd(w, bias, X, T, Y, nt, f.size ? f.work : NULL, f.size);
    fence_close(&f, k->name, w, T, nt);
}

static void bwd_fenced(const q4_kernels *k, const q4_weight *w, const float *dY, int64_t T,
                       float *dX, int nt)
{
    fenced f = fence_open(k->bwd_work(w, T, nt));
    k->bwd(w, dY, T, dX, nt, f.size ? f.work : NULL, f.size);
    fence_close(&f, k->name, w, T, nt);
}

/* Sizes never grow as T, out or the thread count shrink; T = 0 needs none. */
static void check_work_monotone(const q4_kernels *k, const q4_weight *w)
{
    q4_weight half = *w;
    half.out = (w->out + 1) / 2;
    int ok = 1;
    for (int nt = 1; nt <= 4; nt++) {
        for (int64_t T = 0; T <= 80; T++) {
            const size_t f = k->fwd_work(w, T, nt), b = k->bwd_work(w, T, nt);
            if (T > 0)
                ok &= f >= k->fwd_work(w, T - 1, nt) && b >= k->bwd_work(w, T - 1, nt);
            if (nt > 1)
                ok &= f >= k->fwd_work(w, T, nt - 1) && b >= k->bwd_work(w, T, nt - 1);
            ok &= f >= k->fwd_work(&half, T, nt) && b >= k->bwd_work(&half, T, nt);
            if (T == 0)
                ok &= f == 0 && b == 0;
        }
    }
    CHECK(ok, "%s %s [%lld x %lld]: work sizes grow as T, out or threads shrink", k->name,
          lk_qtype_name((lk_qtype)w->qtype), (long long)w->out, (long long)w->in);
}

/* |got - want| <= tol·S elementwise (S from the dequantised weight); one check per call. A bias
 * (forward) is one more term of the sum, 1·bias[o]: it adds |bias[o]| to S (a kernel may start
 * its sums from the bias). */
static void check_scaled(const char *what, const char *variant, const wcase *c, int bwd,
                         const float *A, int64_t T, const float *bias, const float *got,
                         const float *want, double tol)
{
    const int64_t in = c->w.in, nout = bwd ? in : c->w.out, red = bwd ? c->w.out : in;
    int64_t bad = 0, bt = 0, bj = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < nout; j++) {
            double s = 0;
            for (int64_t r = 0; r < red; r++)
                s += fabs(A[t * red + r]) * fabs(bwd ? c->deq[r * in + j] : c->deq[j * in + r]);
            double d = fabs((double)got[t * nout + j] - (double)want[t * nout + j]);
            if (bias)
                s += fabs(bias[j]);
            if (!(d <= tol * s + 1e-30) && bad++ == 0)
                bt = t, bj = j;
        }
    }
    CHECK(bad == 0,
          "%s %s %s block %d [%lld x %lld] T=%lld: %lld outputs off, first [%lld][%lld] got "
          "%.9g want %.9g",
          variant, what, lk_qtype_name((lk_qtype)c->qtype), c->w.block, (long long)c->w.out,
          (long long)in, (long long)T, (long long)bad, (long long)bt, (long long)bj,
          bad ? got[bt * nout + bj] : 0.0, bad ? want[bt * nout + bj] : 0.0);
}

/* Inputs and two outputs of T rows through a weight [out, in]: X[T][in] and dY[T][out] random
 * (dY scaled by dy_scale), Y[2][T][out] and dX[2][T][in] for two runs to compare. */
typedef struct {
    float *X, *dY, *Y[2], *dX[2];
} io;

static io io_make(int64_t T, int64_t out, int64_t in, float dy_scale)
{
    const size_t ni = (size_t)(T * in) * sizeof(float), no = (size_t)(T * out) * sizeof(float);
    io b = {xmalloc(ni), xmalloc(no), {xmalloc(no), xmalloc(no)}, {xmalloc(ni), xmalloc(ni)}};
    for (int64_t i = 0; i < T * in; i++)
        b.X[i] = frand();
    for (int64_t i = 0; i < T * out; i++)
        b.dY[i] = frand() * dy_scale;
    return b;
}

static void io_free(io *b)
{
    free(b->X), free(b->dY), free(b->Y[0]), free(b->Y[1]), free(b->dX[0]), free(b->dX[1]);
}

/* One weight against the reference for every T in Ts (2 threads); forward with and without
 * bias, backward. */
static void run_case(const q4_kernels *k, wcase *c, const int64_t *Ts, int nT)
{
    const q4_kernels *ref = q4_kernels_named("ref");
    const double tol = k->bf16 ? 0x1p-7 + 1e-4 : 1e-5;
    const int64_t out = c->w.out, in = c->w.in;
    float *bias = xmalloc((size_t)out * sizeof(float));
    for (int64_t o = 0; o < out; o++)
        bias[o] = frand();
    for (int ti = 0; ti < nT; ti++) {
        const int64_t T = Ts[ti];
        io b = io_make(T, out, in, 0.1f); /* [0]: the reference, [1]: k */
        for (int wb = 0; wb < 2; wb++) {
            fwd_fenced(ref, &c->w, wb ? bias : NULL, b.X, T, b.Y[0], 2);
            fwd_fenced(k, &c->w, wb ? bias : NULL, b.X, T, b.Y[1], 2);
            check_scaled(wb ? "fwd+bias" : "fwd", k->name, c, 0, b.X, T, wb ? bias : NULL, b.Y[1],
                         b.Y[0], tol);
        }
        bwd_fenced(ref, &c->w, b.dY, T, b.dX[0], 2);
        for (int64_t i = 0; i < T * in; i++)
            b.dX[1][i] = NAN; /* bwd overwrites */
        bwd_fenced(k, &c->w, b.dY, T, b.dX[1], 2);
        check_scaled("bwd", k->name, c, 1, b.dY, T, NULL, b.dX[1], b.dX[0], tol);
        io_free(&b);
    }
    free(bias);
}

/* Thread counts 1..4 give the same bits (T = 1, 3, 37 on a 200 x 333 weight). */
static void check_threads(const q4_kernels *k, int t)
{
    wcase c;
    if (!wcase_make(&c, t, 64, 200, 333))
        return;
    const int64_t out = c.w.out, in = c.w.in;
    io b = io_make(37, out, in, 1.0f);
    static const int64_t Tsub[] = {1, 3, 37};
    for (int ti = 0; ti < 3; ti++) {
        const int64_t Tt = Tsub[ti];
        fwd_fenced(k, &c.w, NULL, b.X, Tt, b.Y[0], 1);
        bwd_fenced(k, &c.w, b.dY, Tt, b.dX[0], 1);
        for (int nt = 2; nt <= 4; nt++) {
            fwd_fenced(k, &c.w, NULL, b.X, Tt, b.Y[1], nt);
            bwd_fenced(k, &c.w, b.dY, Tt, b.dX[1], nt);
            CHECK(!memcmp(b.Y[0], b.Y[1], (size_t)(Tt * out) * 4) &&
                      !memcmp(b.dX[0], b.dX[1], (size_t)(Tt * in) * 4),
                  "%s %s T=%lld: %d threads differ from 1", k->name, lk_qtype_name((lk_qtype)t),
                  (long long)Tt, nt);
        }
    }
    io_free(&b);
    wcase_free(&c);
}

/* Every check of variant k on type t. */
static void check_type(const q4_kernels *k, int t)
{
    /* (out, in): 1, odd, block ±1, vector width ±1, panels ±1 */
    static const int64_t shapes[][2] = {{1, 1},   {1, 32},  {3, 7},    {5, 9},   {2, 15},
                                        {17, 17}, {16, 31}, {15, 33},  {65, 63}, {63, 64},
                                        {64, 65}, {7, 172}, {33, 100}, {1, 300}, {129, 96}};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 13};
    static const int64_t Tl[] = {31, 64, 101, 600};
    for (int seed = 1; seed <= 2; seed++) {
        g_rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            wcase c;
            if (!wcase_make(&c, t, 64, shapes[s][0], shapes[s][1]))
                continue;
            check_work_monotone(k, &c.w);
            run_case(k, &c, Ts, (int)(sizeof Ts / sizeof Ts[0]));
            wcase_free(&c);
        }
    }
    /* the k-quants take rows of whole 256-value super-blocks only (none of the shapes above) */
    static const int64_t shapesK[][2] = {{1, 256}, {3, 256}, {17, 512}, {65, 256}, {16, 768}};
    for (size_t s = 0; q4_is_kquant(t) && s < sizeof shapesK / sizeof shapesK[0]; s++) {
        wcase c;
        if (!wcase_make(&c, t, 64, shapesK[s][0], shapesK[s][1]))
            continue;
        check_work_monotone(k, &c.w);
        run_case(k, &c, Ts, (int)(sizeof Ts / sizeof Ts[0]));
        wcase_free(&c);
    }
    wcase c; /* long rows, several tasks per thread, T up to 600 */
    if (wcase_make(&c, t, 64, 72, q4_is_kquant(t) ? 1024 : 520)) {
        check_work_monotone(k, &c.w);
        run_case(k, &c, Tl, (int)(sizeof Tl / sizeof Tl[0]));
        wcase_free(&c);
    }
    if (t == LK_QTYPE_NF4) { /* other blocksizes, including blocks longer than the row */
        static const int blocks[] = {32, 128, 256, 4096};
        static const int64_t T2[] = {1, 9};
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
            if (wcase_make(&c, t, blocks[b], 19, 300)) {
                run_case(k, &c, T2, 2);
                wcase_free(&c);
            }
        }
    }
    check_threads(k, t);
    /* T = 0 needs no work and writes nothing */
    if (wcase_make(&c, t, 32, 5, 8)) {
        float x[8] = {0}, y[8], dx[8];
        for (int i = 0; i < 8; i++)
            y[i] = dx[i] = 7.0f;
        k->fwd(&c.w, NULL, x, 0, y, 2, NULL, 0);
        k->bwd(&c.w, x, 0, dx, 2, NULL, 0);
        int same = 1;
        for (int i = 0; i < 8; i++)
            same &= y[i] == 7.0f && dx[i] == 7.0f;
        CHECK(same, "%s %s: T = 0 wrote", k->name, lk_qtype_name((lk_qtype)t));
        wcase_free(&c);
    }
}

/* A type variant k lacks: the stand-in is the reference or another variant that has it, and the
 * dispatched entry points (when k is the chosen one) give the stand-in's bits. */
static void check_fallback(const q4_kernels *k, int t)
{
    const q4_kernels *s = kernels_for(k, t);
    CHECK(s && s != k && has_type(s, t), "%s lacks %s: stand-in %s", k->name,
          lk_qtype_name((lk_qtype)t), s ? s->name : "(none)");
    wcase c;
    if (!s || s == k || q4_kernels_get() != k || !wcase_make(&c, t, 64, 33, 256))
        return;
    enum { T = 5 };
    const int64_t out = c.w.out, in = c.w.in;
    io b = io_make(T, out, in, 1.0f); /* [0]: the stand-in, [1]: dispatched */
    fwd_fenced(s, &c.w, NULL, b.X, T, b.Y[0], 2);
    bwd_fenced(s, &c.w, b.dY, T, b.dX[0], 2);
    size_t fw = q4_gemm_fwd_work(k, &c.w, T, 2), bw = q4_gemm_bwd_work(k, &c.w, T, 2);
    void *work = xmalloc(fw > bw ? fw : bw);
    q4_gemm_fwd(&c.w, NULL, b.X, T, b.Y[1], 2, work, fw);
    q4_gemm_bwd(&c.w, b.dY, T, b.dX[1], 2, work, bw);
    CHECK(!memcmp(b.Y[0], b.Y[1], (size_t)(T * out) * 4) &&
              !memcmp(b.dX[0], b.dX[1], (size_t)(T * in) * 4),
          "dispatched %s on %s: not the stand-in %s's result", k->name, lk_qtype_name((lk_qtype)t),
          s->name);
    free(work);
    io_free(&b);
    wcase_free(&c);
}

/* ---- the int8 GEMM (q8.h): every variant bit for bit the int8 reference ------------------- */

static void q8_fenced(const q8_kernels *k, const q4_weight *w, const float *bias, const float *X,
                      int64_t T, float *Y, int nt)
{
    fenced f = fence_open(k->fwd_work(w, T, nt));
    k->fwd(w, bias, X, T, Y, nt, f.size ? f.work : NULL, f.size);
    fence_close(&f, k->name, w, T, nt);
}

/* k's two-term forward (mode 1) or accumulating one (mode 2, into Y as it is; bias ignored). */
static void q8_fenced_mode(const q8_kernels *k, const q4_weight *w, const float *bias,
                           const float *X, int64_t T, float *Y, int nt, int mode)
{
    fenced f = fence_open(mode == 1 ? k->fwd2_work(w, T, nt) : k->fwd_add_work(w, T, nt));
    void *wk = f.size ? f.work : NULL;
    if (mode == 1)
        k->fwd2(w, bias, X, T, Y, nt, wk, f.size);
    else
        k->fwd_add(w, X, T, Y, nt, wk, f.size);
    fence_close(&f, k->name, w, T, nt);
}

static void check_int8_case(const q8_kernels *k, const q4_weight *w, const int64_t *Ts, int nT)
{
    const q8_kernels *ref = q8_kernels_named("ref");
    float *bias = xmalloc((size_t)w->out * 4);
    for (int64_t o = 0; o < w->out; o++)
        bias[o] = frand();
    for (int i = 0; i < nT; i++) {
        const int64_t T = Ts[i];
        io b = io_make(T, w->out, w->in, 1.0f);
        for (int nt = 1; nt <= 3; nt++) {
            const float *bb = nt == 2 ? bias : NULL;
            q8_fenced(ref, w, bb, b.X, T, b.Y[0], 2);
            q8_fenced(k, w, bb, b.X, T, b.Y[1], nt);
            CHECK(!memcmp(b.Y[0], b.Y[1], (size_t)(T * w->out) * 4),
                  "int8 %s %s block %d [%lld x %lld] T=%lld, %d threads: not the reference's bits",
                  k->name, lk_qtype_name((lk_qtype)w->qtype), w->block, (long long)w->out,
                  (long long)w->in, (long long)T, nt);
            /* its two-term forward, and its accumulating one (into Y holding the forward), on
             * one thread count per T (the thread split is the shared driver's, tested on x86) */
            for (int mode = 1; mode <= 2 && nt == 1 + i % 3; mode++) {
                if (mode == 2)
                    memcpy(b.Y[1], b.Y[0], (size_t)(T * w->out) * 4);
                q8_fenced_mode(ref, w, bb, b.X, T, b.Y[0], 2, mode);
                q8_fenced_mode(k, w, bb, b.X, T, b.Y[1], nt, mode);
                CHECK(!memcmp(b.Y[0], b.Y[1], (size_t)(T * w->out) * 4),
                      "int8 %s %s %s block %d [%lld x %lld] T=%lld, %d threads: not the "
                      "reference's bits",
                      k->name, mode == 1 ? "fwd2" : "fwd_add", lk_qtype_name((lk_qtype)w->qtype),
                      w->block, (long long)w->out, (long long)w->in, (long long)T, nt);
                if (mode == 2 && T <= 17)
                    q8_fenced(ref, w, bb, b.X, T, b.Y[0], 2); /* the forward again, for below */
            }
            /* the variant's GEMV on its own (its forward takes it for T <= gemv_t) */
            const q8_kernels gemv = {k->name, k->gemv, k->gemv_work, k->gemv, k->gemv_work, 0,
                                     NULL,    NULL,    NULL,         NULL,    0,            0};
            if (T > 17)
                continue;
            q8_fenced(&gemv, w, bb, b.X, T, b.Y[1], nt);
            CHECK(!memcmp(b.Y[0], b.Y[1], (size_t)(T * w->out) * 4),
                  "int8 GEMV %s %s block %d [%lld x %lld] T=%lld, %d threads: not the reference's "
                  "bits",
                  k->name, lk_qtype_name((lk_qtype)w->qtype), w->block, (long long)w->out,
                  (long long)w->in, (long long)T, nt);
        }
        io_free(&b);
    }
    free(bias);
}

/* c's weight interleaved in a copy: its rows' blocks kept (q8i_blocks), the int8 reference on it
 * the reference's bits on the plain one, and k's every entry point on it the reference's. */
static void check_int8_ilv(const q8_kernels *k, const wcase *c, const int64_t *Ts, int nT)
{
    const size_t bytes = (size_t)c->w.out * c->w.row_bytes, bsz = q8i_bsz(c->w.qtype);
    uint8_t *data = xmalloc(bytes), *scratch = xmalloc(q8i_scratch_bytes(&c->w));
    uint8_t *buf = xmalloc(c->w.row_bytes);
    memcpy(data, c->w.data, bytes);
    q4_weight w = c->w;
    w.data = data;
    q8i_convert(&w, data, scratch);
    const int64_t nb = (int64_t)(c->w.row_bytes / bsz);
    for (int64_t o = 0; o < w.out; o++)
        CHECK(!memcmp(q8i_blocks(&w, o, 0, nb, buf),
                      (const uint8_t *)c->w.data + (size_t)o * c->w.row_bytes, c->w.row_bytes),
              "interleaved %s [%lld x %lld]: row %lld's blocks changed",
              lk_qtype_name((lk_qtype)w.qtype), (long long)w.out, (long long)w.in, (long long)o);
    const q8_kernels *ref = q8_kernels_named("ref");
    io b = io_make(Ts[0], w.out, w.in, 1.0f);
    q8_fenced(ref, &c->w, NULL, b.X, Ts[0], b.Y[0], 2);
    q8_fenced(ref, &w, NULL, b.X, Ts[0], b.Y[1], 1);
    CHECK(!memcmp(b.Y[0], b.Y[1], (size_t)(Ts[0] * w.out) * 4),
          "int8 ref %s [%lld x %lld]: interleaved, not the plain weight's bits",
          lk_qtype_name((lk_qtype)w.qtype), (long long)w.out, (long long)w.in);
    io_free(&b);
    check_int8_case(k, &w, Ts, nT);
    free(buf);
    free(scratch);
    free(data);
}

static void check_int8(const q8_kernels *k, int t)
{
    static const int64_t shapes[][2] = {{1, 1},   {3, 7},    {17, 17}, {15, 33},
                                        {65, 63}, {7, 172},  {33, 100}, {40, 520}};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 9, 17}, Tl[] = {64, 600};
    g_rng = 77;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        wcase c;
        if (!wcase_make(&c, t, 64, shapes[s][0], shapes[s][1]))
            continue;
        check_int8_case(k, &c.w, Ts, (int)(sizeof Ts / sizeof Ts[0]));
        if (k->reads_ilv && q8i_supports(t)) /* the same weight interleaved (q8_ilv.h) */
            check_int8_ilv(k, &c, Ts, (int)(sizeof Ts / sizeof Ts[0]));
        if (s + 1 == sizeof shapes / sizeof shapes[0]) { /* large T, and the transposed copy */
            check_int8_case(k, &c.w, Tl, 2);
            uint8_t *dst = xmalloc(q8_transpose_bytes(&c.w));
            q4_weight wt;
            CHECK(q8_transpose(&c.w, dst, &wt, 2) == LK_OK, "q8_transpose: %s", lk_last_error());
            check_int8_case(k, &wt, Tl, 1);
            free(dst);
        }
        wcase_free(&c);
    }
    if (t == LK_QTYPE_NF4) {
        static const int blocks[] = {32, 128, 4096};
        for (size_t i = 0; i < 3; i++) {
            wcase c;
            if (!wcase_make(&c, t, blocks[i], 19, 300))
                continue;
            check_int8_case(k, &c.w, Ts, 3);
            wcase_free(&c);
        }
    }
}

static void check_dispatch(const char *want)
{
    const q4_kernels *k = q4_kernels_get();
    printf("chosen kernel variant: %s (cpu features: %s)\n", k->name, lk_cpu_features());
    CHECK(!strcmp(k->name, lk_kernel_variant()), "lk_kernel_variant %s, table %s",
          lk_kernel_variant(), k->name);
    CHECK(q4_kernels_named("ref") != NULL && q4_kernels_named("sse9") == NULL,
          "q4_kernels_named: ref missing or an unknown name found");
    if (want)
        CHECK(!strcmp(k->name, want), "dispatch chose %s, expected %s", k->name, want);
    printf("chosen int8 variant: %s\n", q8_kernels_get()->name);
    if (want && !strcmp(want, "ref"))
        CHECK(!strcmp(q8_kernels_get()->name, "ref"), "int8 dispatch chose %s under ref",
              q8_kernels_get()->name);
}

/* The thread pool (src/core/pool.c) on this architecture: many short jobs, team sizes 2 to 4
 * in turn, every item counted once. A lost wakeup between a job's publication and a worker going
 * to sleep hangs it (it did, under qemu-user, before the pool's publishing stores became
 * exchanges); .ci/arm.sh runs this binary under a timeout, which turns a hang into a failure. */
static _Atomic int64_t pool_items;

static void pool_count(void *ctx, int64_t b, int64_t e, int thread)
{
    (void)ctx, (void)thread;
    atomic_fetch_add(&pool_items, e - b);
}

static void check_pool(void)
{
    const int64_t jobs = 100000;
    int64_t want = 0;
    for (int64_t i = 0; i < jobs; i++) {
        const int nt = 2 + (int)(i % 3);
        if (i % 2)
            par_for(nt, 4, pool_count, NULL);
        else
            par_for_dynamic(nt, 8, 1, pool_count, NULL);
        want += i % 2 ? 4 : 8;
    }
    CHECK(atomic_load(&pool_items) == want, "thread pool: %lld items run, expected %lld",
          (long long)atomic_load(&pool_items), (long long)want);
    printf("thread pool: %lld short jobs: %s\n", (long long)jobs,
           atomic_load(&pool_items) == want ? "ok" : "FAILED");
}

int main(int argc, char **argv)
{
    const char *want = NULL;
    int dispatch_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dispatch") && i + 1 < argc) {
            want = argv[++i];
        } else if (!strcmp(argv[i], "--dispatch-only")) {
            dispatch_only = 1;
        } else {
            fprintf(stderr, "usage: %s [--dispatch NAME] [--dispatch-only]\n", argv[0]);
            return 2;
        }
    }
    check_dispatch(want);
    static const char *const variants[] = {"neon", "avx2", "avx512", "amx"};
    int n_variants = 0;
    for (size_t v = 0; !dispatch_only && v < sizeof variants / sizeof variants[0]; v++) {
        const q4_kernels *k = q4_kernels_named(variants[v]);
        if (!k)
            continue;
        n_variants++;
        for (int t = 0; t < LK_QTYPE_COUNT; t++) {
            if (!is_quantised(t))
                continue;
            const int before = g_fail;
            if (has_type(k, t))
                check_type(k, t);
            else
                check_fallback(k, t);
            printf("%-6s %-7s %s: %s\n", k->name, lk_qtype_name((lk_qtype)t),
                   has_type(k, t) ? "kernels" : "stand-in", g_fail == before ? "ok" : "FAILED");
        }
    }
    static const char *const variants8[] = {"neon", "avx2", "avx512vnni"};
    for (size_t v = 0; !dispatch_only && v < sizeof variants8 / sizeof variants8[0]; v++) {
        const q8_kernels *k = q8_kernels_named(variants8[v]);
        if (!k) {
            printf("int8 %s: not in this build or not run by this CPU\n", variants8[v]);
            continue;
        }
        for (int t = 0; t < LK_QTYPE_COUNT; t++) {
            if (!q8_supports(t))
                continue;
            const int before = g_fail;
            check_int8(k, t);
            printf("int8 %-10s %-7s: %s\n", k->name, lk_qtype_name((lk_qtype)t),
                   g_fail == before ? "ok" : "FAILED");
        }
    }
    if (!dispatch_only)
        check_pool();
    CHECK(dispatch_only || n_variants > 0,
          "no kernel variant besides the reference in this build on this CPU (features: %s)",
          lk_cpu_features());
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
