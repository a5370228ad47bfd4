/* lora-bench-kernels — GFLOP/s of the fused dequant-GEMM kernels (forward Y = X·Wᵀ, backward
 * dX = dY·W) for each weight format on the Qwen2.5-0.5B linear-layer shapes, beside OpenBLAS
 * cblas_sgemm / cblas_sgemv on the same shapes with fp32 weights, in one run. FLOPs are 2·T·out·in
 * per call; each timing is the best of --reps calls after one warm-up call. Output: a Markdown
 * table (BENCHMARKS.md's "Kernels" section) or, with --json, one JSON object. */
#define LK_EXPERIMENTAL 1
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *const TOOL = "lora-bench-kernels";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int64_t out, in, T;
    const float *W, *X, *dY; /* W[out][in] f32; X[T][in]; dY[T][out] */
    float *Y, *dX;           /* [T][out], [T][in] */
    const struct lk_qweight *qw;
    const char *variant;
    int threads, bwd;
} job;

/* One call of the job's kernel: f32 BLAS when qw is NULL, else the fused kernel. */
static int run_once(const job *j)
{
    if (!j->qw) {
        const int T = (int)j->T, out = (int)j->out, in = (int)j->in;
        if (T == 1 && !j->bwd) /* y[out] = W[out][in]·x */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, j->W, in, j->X, 1, 0.0f, j->Y,
                        1);
        else if (T == 1) /* dx[in] = Wᵀ·dy */
            cblas_sgemv(CblasRowMajor, CblasTrans, out, in, 1.0f, j->W, in, j->dY, 1, 0.0f, j->dX,
                        1);
        else if (!j->bwd) /* Y[T][out] = X[T][in]·Wᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, j->X, in, j->W,
                        in, 0.0f, j->Y, out);
        else /* dX[T][in] = dY[T][out]·W */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, in, out, 1.0f, j->dY, out,
                        j->W, in, 0.0f, j->dX, in);
        return 0;
    }
    lk_status s = j->bwd ? lk_qgemm_backward(j->qw, j->dY, j->T, j->dX, j->threads, j->variant)
                         : lk_qgemm_forward(j->qw, NULL, j->X, j->T, j->Y, j->threads, j->variant);
    return s == LK_OK ? 0 : -1;
}

/* Best-of-reps GFLOP/s, or -1 on failure. */
static double bench(const job *j, int reps)
{
    if (run_once(j))
        return -1;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        run_once(j);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    return 2.0 * (double)j->T * (double)j->out * (double)j->in / best * 1e-9;
}

static void fill(float *p, int64_t n, float scale, uint64_t *s)
{
    for (int64_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = scale * (float)((double)(*s >> 40) / 8388608.0 - 1.0);
    }
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c, 1);
    struct arg_int *reps = arg_int0(NULL, "reps", "N", "timed calls per measurement (default 5)");
    struct arg_str *variant = arg_str0(NULL, "variant", "NAME",
                                       "kernel variant: ref|avx2|avx512|amx|neon (default: "
                                       "the dispatched one)");
    struct arg_str *tlist = arg_str0(NULL, "tokens", "LIST", "T values (default 1,64,512)");
    struct arg_end *end = arg_end(20);
    void *argtable[] = {CLI_COMMON_ENTRIES(c), reps, variant, tlist, end};
    int rc = cli_parse(argc, argv, argtable, end, &c, TOOL,
                       "Benchmark the fused dequant-GEMM kernels against OpenBLAS fp32.",
                       "Shapes are Qwen2.5-0.5B's linear layers (out x in): q/o 896x896, "
                       "k/v 128x896,\ngate/up 4864x896, down 896x4864. GFLOP/s = 2*T*out*in / "
                       "best time.\n");
    if (rc >= 0) {
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return rc;
    }
    int nrep = reps->count ? reps->ival[0] : 5, threads = cli_threads(&c);
    const char *var = variant->count ? variant->sval[0] : NULL;
    int32_t *Ts = NULL;
    int64_t nT = 0;
    if (cli_parse_ids(tlist->count ? tlist->sval[0] : "1,64,512", &Ts, &nT) || nT == 0) {
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return cli_usage_error(TOOL, "--tokens: expected a list like 1,64,512");
    }
    if (threads <= 0)
        threads = 2;
    openblas_set_num_threads(threads);
    const int json = c.json->count;
    uint64_t seed = cli_seed(&c);
    static const int64_t shapes[][2] = {{896, 896}, {128, 896}, {4864, 896}, {896, 4864}};
    static const lk_qtype types[] = {LK_QTYPE_NF4, LK_QTYPE_Q4_0, LK_QTYPE_IQ4_NL, LK_QTYPE_Q8_0};
    const int ntypes = 4;
    const char *vname = var ? var : lk_kernel_variant();
    if (json)
        printf("{\"version\":\"%s\",\"seed\":%llu,\"threads\":%d,\"variant\":\"%s\",\"cpu\":\"%s\","
               "\"results\":[",
               lk_version(), (unsigned long long)seed, threads, vname, lk_cpu_features());
    else {
        printf("kernel variant: %s; CPU features: %s; threads: %d; best of %d\n\n", vname,
               lk_cpu_features(), threads, nrep);
        printf("| out x in | T | dir | f32 BLAS | nf4 | q4_0 | iq4_nl | q8_0 |\n");
        printf("|---|---:|---|---:|---:|---:|---:|---:|\n");
    }
    int first = 1, fail = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && !fail; s++) {
        const int64_t out = shapes[s][0], in = shapes[s][1];
        int64_t Tmax = 0;
        for (int64_t i = 0; i < nT; i++)
            Tmax = Ts[i] > Tmax ? Ts[i] : Tmax;
        float *W = malloc((size_t)(out * in) * 4), *X = malloc((size_t)(Tmax * in) * 4);
        float *dY = malloc((size_t)(Tmax * out) * 4), *Y = malloc((size_t)(Tmax * out) * 4);
        float *dX = malloc((size_t)(Tmax * in) * 4);
        void *q[4] = {0};
        struct lk_qweight qw[4];
        fill(W, out * in, 0.05f, &seed);
        fill(X, Tmax * in, 1.0f, &seed);
        fill(dY, Tmax * out, 1.0f, &seed);
        for (int f = 0; f < ntypes; f++) {
            qw[f] = (struct lk_qweight){types[f], 64, out, in, NULL};
            q[f] = malloc(lk_qweight_row_bytes(&qw[f]) * (size_t)out);
            lk_status st = lk_quantize_matrix(&qw[f], W, q[f], threads, NULL, NULL);
            qw[f].data = q[f];
            if (st != LK_OK)
                fail = cli_fail(TOOL, st);
        }
        for (int64_t ti = 0; ti < nT && !fail; ti++) {
            for (int bwd = 0; bwd < 2 && !fail; bwd++) {
                job j = {out, in, Ts[ti], W, X, dY, Y, dX, NULL, var, threads, bwd};
                double g[5];
                g[0] = bench(&j, nrep);
                for (int f = 0; f < ntypes; f++) {
                    j.qw = &qw[f];
                    g[f + 1] = bench(&j, nrep);
                    if (g[f + 1] < 0)
                        fail = cli_fail(TOOL, LK_ERR_UNSUPPORTED);
                }
                if (json) {
                    printf(
                        "%s{\"out\":%lld,\"in\":%lld,\"T\":%d,\"dir\":\"%s\",\"blas_gflops\":%.2f",
                        first ? "" : ",", (long long)out, (long long)in, Ts[ti],
                        bwd ? "bwd" : "fwd", g[0]);
                    for (int f = 0; f < ntypes; f++)
                        printf(",\"%s_gflops\":%.2f", lk_qtype_name(types[f]), g[f + 1]);
                    printf("}");
                    first = 0;
                } else {
                    printf("| %lldx%lld | %d | %s | %.1f |", (long long)out, (long long)in, Ts[ti],
                           bwd ? "bwd" : "fwd", g[0]);
                    for (int f = 0; f < ntypes; f++)
                        printf(" %.1f (%.2fx) |", g[f + 1], g[f + 1] / g[0]);
                    printf("\n");
                    fflush(stdout);
                }
            }
        }
        for (int f = 0; f < ntypes; f++)
            free(q[f]);
        free(W);
        free(X);
        free(dY);
        free(Y);
        free(dX);
    }
    if (json)
        printf("]}\n");
    free(Ts);
    arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
    return fail ? CLI_FAIL : CLI_OK;
}
