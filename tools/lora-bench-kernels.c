/* lora-bench-kernels — GFLOP/s of the fused dequant-GEMM kernels (forward Y = X·Wᵀ, backward
 * dX = dY·W) for each weight format on the Qwen2.5-0.5B linear-layer shapes, beside OpenBLAS
 * cblas_sgemm / cblas_sgemv on the same shapes with fp32 weights, in one run. FLOPs are 2·T·out·in
 * per call; each timing is the best of --reps calls after one warm-up call (the kernels' work
 * memory is allocated once per shape, outside the timings). With --cold, every weight is replicated
 * into enough copies (>= 96 MB per format) that successive calls read it from DRAM, as a forward
 * pass over many layers does, instead of from the last-level cache. --types picks the weight
 * formats; those lorakit reads from GGUF files but cannot quantise to (q4_1 .. iq4_xs) are filled
 * with random bytes in 0x20..0x5f, so that every fp16 scale is finite and normal (the speed does
 * not depend on the values). Output: a Markdown table (BENCHMARKS.md's "Kernels" section) or,
 * with --json, one JSON object. --compute f32,int8 adds, per format, the int8 path (quant/q8.h:
 * activations quantised per row to int8 blocks inside the call, int32 block sums; the backward
 * runs as a forward of the transposed Q8_0 copy, built once outside the timings), measured in the
 * same run, right after the f32 kernel of the same format and shape; its forward reads the weight
 * as a model holds it, interleaved (lk_q8_interleave) where the int8 variant wants that layout. */
#define LK_EXPERIMENTAL 1
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const TOOL = "lora-bench-kernels";

typedef struct {
    int64_t out, in, T;
    float *const *Wc;             /* ncopy copies of W[out][in] f32 */
    const float *X, *dY;          /* X[T][in]; dY[T][out] */
    float *Y, *dX;                /* [T][out], [T][in] */
    const struct lk_qweight *qwc; /* ncopy copies of the quantised weight, or NULL: BLAS */
    const struct lk_qweight *qtc; /* int8: their transposed Q8_0 copies (backward), else NULL */
    const struct lk_qweight *qic; /* int8: what its forward reads (qwc, interleaved if wanted) */
    int ncopy, ncopy_q, *cursor;  /* calls rotate over the copies */
    const char *variant;
    int threads, bwd;
    int cpu_clock; /* --cpu-time: the calling thread's CPU time instead of the wall clock */
    void *work;    /* the kernels' work memory, work_size bytes (planned once per shape) */
    size_t work_size;
} job;

/* One call of the job's kernel: f32 BLAS when qwc is NULL, else the fused kernel. */
static int run_once(const job *j)
{
    const int c = (*j->cursor)++;
    if (!j->qwc) {
        const float *W = j->Wc[c % j->ncopy];
        const int T = (int)j->T, out = (int)j->out, in = (int)j->in;
        if (T == 1 && !j->bwd) /* y[out] = W[out][in]·x */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, j->X, 1, 0.0f, j->Y, 1);
        else if (T == 1) /* dx[in] = Wᵀ·dy */
            cblas_sgemv(CblasRowMajor, CblasTrans, out, in, 1.0f, W, in, j->dY, 1, 0.0f, j->dX, 1);
        else if (!j->bwd) /* Y[T][out] = X[T][in]·Wᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, j->X, in, W, in,
                        0.0f, j->Y, out);
        else /* dX[T][in] = dY[T][out]·W */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, in, out, 1.0f, j->dY, out, W,
                        in, 0.0f, j->dX, in);
        return 0;
    }
    const struct lk_qweight *qw = &j->qwc[c % j->ncopy_q];
    if (j->qtc) /* int8 compute: the backward is a forward of the transposed copy */
        return (j->bwd ? lk_q8gemm_forward(&j->qtc[c % j->ncopy_q], NULL, j->dY, j->T, j->dX,
                                           j->threads, NULL, j->work, j->work_size)
                       : lk_q8gemm_forward(&j->qic[c % j->ncopy_q], NULL, j->X, j->T, j->Y,
                                           j->threads, NULL, j->work, j->work_size)) == LK_OK
                   ? 0
                   : -1;
    lk_status s = j->bwd ? lk_qgemm_backward(qw, j->dY, j->T, j->dX, j->threads, j->variant,
                                             j->work, j->work_size)
                         : lk_qgemm_forward(qw, NULL, j->X, j->T, j->Y, j->threads, j->variant,
                                            j->work, j->work_size);
    return s == LK_OK ? 0 : -1;
}

/* Best-of-reps GFLOP/s, or -1 on failure. */
static double bench(const job *j, int reps)
{
    if (run_once(j))
        return -1;
    double best = 1e30;
    double (*clock)(void) = j->cpu_clock ? cli_thread_cpu_now : cli_now;
    for (int r = 0; r < reps; r++) {
        double t0 = clock();
        run_once(j);
        double dt = clock() - t0;
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

#define MAXTYPES LK_QTYPE_COUNT

typedef struct {
    lk_qtype types[MAXTYPES]; /* the formats measured, in column order */
    int ntypes;
    int f32, int8; /* the compute paths measured (--compute) */
    int nrep, threads, json, cold, first;
    const char *variant;
    const int32_t *Ts;
    int64_t nT;
    uint64_t seed;
    int cpu_clock; /* --cpu-time */
} opts;

/* 1 if lorakit quantises to t (else the benchmark weights are random blocks). */
static int quantizable(lk_qtype t)
{
    float x[256] = {0};
    unsigned char q[1024];
    return lk_quantize_row(t, x, 256, q) == LK_OK; /* LK_ERR_UNSUPPORTED: read-only type */
}

/* Random bytes in 0x20..0x5f: any block of any type then has finite, normal fp16 scales. */
static void random_blocks(unsigned char *d, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        d[i] = (unsigned char)(0x20 + (*s >> 58));
    }
}

/* --types: a comma-separated list of formats with fused kernels. NULL when valid, else the
 * first name that is not one (in bad[64]). */
static const char *parse_types(const char *list, opts *o, char *bad)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    o->ntypes = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        lk_qtype q;
        if (lk_qtype_from_name(t, &q) != LK_OK || q == LK_QTYPE_F32 || q == LK_QTYPE_F16 ||
            q == LK_QTYPE_BF16 || o->ntypes == MAXTYPES) {
            snprintf(bad, 64, "%s", t);
            return bad;
        }
        o->types[o->ntypes++] = q;
    }
    snprintf(bad, 64, "(empty)");
    return o->ntypes > 0 ? NULL : bad;
}

/* Copies needed so one rotation over them exceeds 96 MB (3x a 32 MB last-level cache). */
static int copies(const opts *o, size_t bytes)
{
    return o->cold ? (int)((96u << 20) / bytes + 1) : 1;
}

/* The measured columns: per format its f32 kernel, then its int8 path, as --compute asks. Column
 * c (0-based, after BLAS) is format c / paths, path int8 when c % paths == paths - 1 and int8. */
static int npaths(const opts *o)
{
    return o->f32 + o->int8;
}

static int col_int8(const opts *o, int c)
{
    return o->int8 && c % npaths(o) == npaths(o) - 1;
}

static void print_row(opts *o, int64_t out, int64_t in, int T, int bwd, const double *g)
{
    const int ncol = o->ntypes * npaths(o);
    if (o->json) {
        printf("%s{\"out\":%lld,\"in\":%lld,\"T\":%d,\"dir\":\"%s\",\"blas_gflops\":%.2f",
               o->first ? "" : ",", (long long)out, (long long)in, T, bwd ? "bwd" : "fwd", g[0]);
        for (int c = 0; c < ncol; c++) {
            const char *name = lk_qtype_name(o->types[c / npaths(o)]);
            const char *sfx = col_int8(o, c) ? "_int8" : "";
            if (isnan(g[c + 1])) /* the shape does not fit the format */
                printf(",\"%s%s_gflops\":null", name, sfx);
            else
                printf(",\"%s%s_gflops\":%.2f", name, sfx, g[c + 1]);
        }
        printf("}");
        o->first = 0;
        return;
    }
    printf("| %lldx%lld | %d | %s | %.1f |", (long long)out, (long long)in, T, bwd ? "bwd" : "fwd",
           g[0]);
    for (int c = 0; c < ncol; c++) {
        if (isnan(g[c + 1]))
            printf(" n/a |");
        else
            printf(" %.1f (%.2fx) |", g[c + 1], g[c + 1] / g[0]);
    }
    printf("\n");
    fflush(stdout);
}

/* Which formats cannot hold the shape (k-quant rows must be whole super-blocks of 256: the
 * kernels refuse them with LK_ERR_SHAPE) in unfit[f], and which have no int8 path (no expander)
 * in unfit[MAXTYPES + f]; those are reported as n/a. */
static void unfit_types(const opts *o, int64_t out, int64_t in, int *unfit)
{
    for (int f = 0; f < o->ntypes; f++) {
        struct lk_qweight proto = {o->types[f], 64, out, in, NULL, 0};
        size_t b;
        unfit[f] = lk_qgemm_forward_work(&proto, 1, o->threads, o->variant, &b) == LK_ERR_SHAPE;
        unfit[MAXTYPES + f] =
            unfit[f] || lk_q8gemm_forward_work(&proto, 1, o->threads, NULL, &b) != LK_OK;
    }
}

/* Bytes of kernel work for every format's forward and backward on up to Tmax rows of [out, in]
 * (the kernels allocate nothing: this is allocated once per shape). */
static lk_status plan_work(const opts *o, int64_t out, int64_t in, int64_t Tmax, const int *unfit,
                           size_t *bytes)
{
    *bytes = 0;
    for (int f = 0; f < o->ntypes; f++) {
        if (unfit[f])
            continue;
        struct lk_qweight proto = {o->types[f], 64, out, in, NULL, 0};
        size_t fw, bw;
        CLI_TRY(lk_qgemm_forward_work(&proto, Tmax, o->threads, o->variant, &fw));
        CLI_TRY(lk_qgemm_backward_work(&proto, Tmax, o->threads, o->variant, &bw));
        *bytes = fw > *bytes ? fw : *bytes;
        *bytes = bw > *bytes ? bw : *bytes;
        if (o->int8 && !unfit[MAXTYPES + f]) {
            struct lk_qweight tr = {LK_QTYPE_Q8_0, 32, in, out, NULL, 0};
            CLI_TRY(lk_q8gemm_forward_work(&proto, Tmax, o->threads, NULL, &fw));
            CLI_TRY(lk_q8gemm_forward_work(&tr, Tmax, o->threads, NULL, &bw));
            *bytes = fw > *bytes ? fw : *bytes;
            *bytes = bw > *bytes ? bw : *bytes;
        }
    }
    return LK_OK;
}

/* The int8 forward's weights, as a model holds them: where the dispatched int8 variant wants the
 * interleaved layout (lk_q8_interleave_wanted) and the type has one, n interleaved copies of
 * qw[n] (each `bytes`) in *out; else *out stays NULL (the int8 path reads qw). A CLI code or -1. */
static int interleave_copies(const struct lk_qweight *qw, int n, size_t bytes,
                             struct lk_qweight **out)
{
    struct lk_qweight probe = qw[0];
    if (!lk_q8_interleave_wanted() ||
        lk_q8_interleave(&probe, NULL) == LK_ERR_UNSUPPORTED) /* no layout for the type */
        return -1;
    if (!(*out = calloc((size_t)n, sizeof **out)))
        return cli_fail(TOOL, LK_ERR_NOMEM);
    for (int i = 0; i < n; i++) {
        void *d = malloc(bytes);
        if (!d)
            return cli_fail(TOOL, LK_ERR_NOMEM);
        memcpy(d, qw[i].data, bytes);
        (*out)[i] = qw[i];
        (*out)[i].data = d;
        lk_status st = lk_q8_interleave(&(*out)[i], d);
        if (st != LK_OK) {
            (*out)[i].data = NULL;
            free(d);
            return cli_fail(TOOL, st);
        }
    }
    return -1;
}

/* All measurements of one weight shape; returns a CLI exit code or -1 to go on. */
static int bench_shape(opts *o, int64_t out, int64_t in)
{
    int64_t Tmax = 0;
    for (int64_t i = 0; i < o->nT; i++)
        Tmax = o->Ts[i] > Tmax ? o->Ts[i] : Tmax;
    const int nf = copies(o, (size_t)(out * in) * 4);
    float **Wc = calloc((size_t)nf, sizeof *Wc);
    float *X = malloc((size_t)(Tmax * in) * 4), *dY = malloc((size_t)(Tmax * out) * 4);
    float *Y = malloc((size_t)(Tmax * out) * 4), *dX = malloc((size_t)(Tmax * in) * 4);
    struct lk_qweight *qwc[MAXTYPES] = {0}, *qtc[MAXTYPES] = {0}, *qic[MAXTYPES] = {0};
    int nq[MAXTYPES] = {0}, unfit[2 * MAXTYPES], rc = -1, cursor = 0;
    unfit_types(o, out, in, unfit);
    int ok = Wc && X && dY && Y && dX;
    for (int i = 0; ok && i < nf; i++) {
        ok = (Wc[i] = malloc((size_t)(out * in) * 4)) != NULL;
        if (ok && i == 0)
            fill(Wc[0], out * in, 0.05f, &o->seed);
        else if (ok)
            memcpy(Wc[i], Wc[0], (size_t)(out * in) * 4);
    }
    if (ok) {
        fill(X, Tmax * in, 1.0f, &o->seed);
        fill(dY, Tmax * out, 1.0f, &o->seed);
    }
    for (int f = 0; f < o->ntypes && rc < 0 && ok; f++) {
        if (unfit[f])
            continue;
        struct lk_qweight proto = {o->types[f], 64, out, in, NULL, 0};
        const size_t bytes = lk_qweight_row_bytes(&proto) * (size_t)out;
        nq[f] = copies(o, bytes);
        ok = (qwc[f] = calloc((size_t)nq[f], sizeof *qwc[f])) != NULL;
        for (int i = 0; ok && i < nq[f]; i++) {
            void *d = malloc(bytes);
            if (!(ok = d != NULL))
                break;
            qwc[f][i] = proto;
            qwc[f][i].data = d;
            if (i == 0 && !quantizable(proto.type)) {
                random_blocks(d, bytes, &o->seed);
            } else if (i == 0) {
                lk_status st = lk_quantize_matrix(&proto, Wc[0], d, o->threads, NULL, NULL);
                if (st != LK_OK)
                    rc = cli_fail(TOOL, st);
            } else {
                memcpy(d, qwc[f][0].data, bytes);
            }
        }
        if (o->int8 && !unfit[MAXTYPES + f] && ok && rc < 0)
            ok = (qtc[f] = calloc((size_t)nq[f], sizeof *qtc[f])) != NULL;
        for (int i = 0; o->int8 && qtc[f] && ok && rc < 0 && i < nq[f]; i++) {
            void *d = malloc(lk_q8_transpose_bytes(&qwc[f][i]));
            lk_status st = d ? lk_q8_transpose(&qwc[f][i], d, &qtc[f][i], o->threads) : LK_OK;
            if (!(ok = d != NULL))
                break;
            if (st != LK_OK) {
                free(d);
                rc = cli_fail(TOOL, st);
            }
        }
        rc = rc < 0 && ok && qtc[f] ? interleave_copies(qwc[f], nq[f], bytes, &qic[f]) : rc;
    }
    size_t work_size = 0;
    void *work = NULL;
    if (ok && rc < 0) {
        lk_status st = plan_work(o, out, in, Tmax, unfit, &work_size);
        if (st != LK_OK)
            rc = cli_fail(TOOL, st);
        else
            ok = (work = malloc(work_size ? work_size : 1)) != NULL;
    }
    if (!ok) {
        fprintf(stderr, "%s: error: out of memory for the %lldx%lld benchmark buffers\n", TOOL,
                (long long)out, (long long)in);
        rc = CLI_FAIL;
    }
    /* OpenBLAS's and OpenMP's idle worker threads both spin for a while after a call; on a small
     * machine the spinning pool steals the cores from the other one. So all BLAS timings of the
     * shape come first, then a pause that lets OpenBLAS's threads go to sleep, then ours. */
    double g[64][2 * MAXTYPES + 1];
    const int64_t nrow = o->nT * 2 < 64 ? o->nT * 2 : 64;
    for (int phase = 0; phase < 2 && rc < 0; phase++) {
        for (int64_t r = 0; r < nrow && rc < 0; r++) {
            job j = {.out = out,
                     .in = in,
                     .T = o->Ts[r / 2],
                     .Wc = Wc,
                     .X = X,
                     .dY = dY,
                     .Y = Y,
                     .dX = dX,
                     .ncopy = nf,
                     .ncopy_q = 1,
                     .cursor = &cursor,
                     .variant = o->variant,
                     .threads = o->threads,
                     .cpu_clock = o->cpu_clock,
                     .bwd = (int)(r % 2),
                     .work = work,
                     .work_size = work_size};
            if (phase == 0)
                g[r][0] = bench(&j, o->nrep);
            for (int c = 0; phase == 1 && c < o->ntypes * npaths(o); c++) {
                const int f = c / npaths(o), i8 = col_int8(o, c);
                if (unfit[f] || (i8 && unfit[MAXTYPES + f])) {
                    g[r][c + 1] = NAN;
                    continue;
                }
                j.qwc = qwc[f];
                j.qtc = i8 ? qtc[f] : NULL;
                j.qic = qic[f] ? qic[f] : qwc[f];
                j.ncopy_q = nq[f];
                g[r][c + 1] = bench(&j, o->nrep);
                if (g[r][c + 1] < 0)
                    rc = cli_fail(TOOL, LK_ERR_UNSUPPORTED);
            }
        }
        if (phase == 0)
            nanosleep(&(struct timespec){0, 300000000}, NULL);
    }
    for (int64_t r = 0; r < nrow && rc < 0; r++)
        print_row(o, out, in, o->Ts[r / 2], (int)(r % 2), g[r]);
    for (int f = 0; f < o->ntypes; f++) {
        for (int i = 0; qwc[f] && i < nq[f]; i++)
            free((void *)qwc[f][i].data);
        for (int i = 0; qtc[f] && i < nq[f]; i++)
            free((void *)qtc[f][i].data);
        for (int i = 0; qic[f] && i < nq[f]; i++)
            free((void *)qic[f][i].data);
        free(qic[f]);
        free(qwc[f]);
        free(qtc[f]);
    }
    for (int i = 0; Wc && i < nf; i++)
        free(Wc[i]);
    free(Wc);
    free(work);
    free(X);
    free(dY);
    free(Y);
    free(dX);
    return rc;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    struct arg_int *reps = arg_int0(NULL, "reps", "N", "timed calls per measurement (default 5)");
    struct arg_str *variant = arg_str0(NULL, "variant", "NAME",
                                       "kernel variant: ref|avx2|avx512|amx|neon (default: "
                                       "the dispatched one)");
    struct arg_str *tlist = arg_str0(NULL, "tokens", "LIST", "T values (default 1,64,512)");
    struct arg_str *types =
        arg_str0(NULL, "types", "LIST",
                 "weight formats (default nf4,q4_0,iq4_nl,q8_0; also q4_1,q5_0,q5_1,q2_k,q3_k,"
                 "q4_k,q5_k,q6_k,iq4_xs)");
    struct arg_lit *cold =
        arg_lit0(NULL, "cold", "rotate over >= 96 MB of weight copies (weights from DRAM)");
    struct arg_str *compute =
        arg_str0(NULL, "compute", "LIST",
                 "compute paths per format: f32, int8 or f32,int8 (default f32; int8 uses the "
                 "dispatched int8 variant, LK_KERNELS picks another, on the weight laid out as a "
                 "model lays it out for that variant)");
    struct arg_lit *cpu_time =
        arg_lit0(NULL, "cpu-time",
                 "time each call by the CPU time of the calling thread instead of the wall clock "
                 "(with -t 1 only: on a shared machine, time other processes take is not counted)");
    struct arg_str *model =
        arg_str0(NULL, "shapes", "NAME",
                 "layer shapes: qwen2.5-0.5b (default) or smollm2-135m (with its LM head)");
    struct arg_end *end = arg_end(20);
    void *argtable[] = {
        CLI_COMMON_ENTRIES(c), reps, variant, tlist, types, cold, compute, cpu_time, model, end};
    int rc = cli_parse(argc, argv, argtable, end, &c, TOOL,
                       "Benchmark the fused dequant-GEMM kernels against OpenBLAS fp32.",
                       "Shapes are Qwen2.5-0.5B's linear layers (out x in): q/o 896x896, "
                       "k/v 128x896,\ngate/up 4864x896, down 896x4864; --shapes smollm2-135m: "
                       "576x576, 192x576,\n1536x576, 576x1536 and the LM head 49152x576. "
                       "GFLOP/s = 2*T*out*in / best time.\n");
    if (rc >= 0) {
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return rc;
    }
    opts o = {{LK_QTYPE_F32},
              0,
              1,
              0,
              reps->count ? reps->ival[0] : 5,
              cli_threads(&c),
              c.json->count,
              cold->count,
              1,
              variant->count ? variant->sval[0] : NULL,
              NULL,
              0,
              cli_seed(&c),
              cpu_time->count};
    int32_t *Ts = NULL;
    if (cli_parse_ids(tlist->count ? tlist->sval[0] : "1,64,512", &Ts, &o.nT) || o.nT == 0) {
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return cli_usage_error(TOOL, "--tokens: expected a list like 1,64,512");
    }
    o.Ts = Ts;
    char bad[64];
    if (parse_types(types->count ? types->sval[0] : "nf4,q4_0,iq4_nl,q8_0", &o, bad)) {
        free(Ts);
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return cli_usage_error(TOOL,
                               "--types: '%s' is not a quantised format, expected a list like "
                               "nf4,q4_0,q4_k",
                               bad);
    }
    const char *cl = compute->count ? compute->sval[0] : "f32";
    if (strcmp(cl, "f32") && strcmp(cl, "int8") && strcmp(cl, "f32,int8")) {
        free(Ts);
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return cli_usage_error(TOOL, "--compute: '%s', expected f32, int8 or f32,int8", cl);
    }
    if (o.cpu_clock && o.threads != 1) {
        free(Ts);
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return cli_usage_error(TOOL,
                               "--cpu-time: needs -t 1 (the CPU time of one thread), got "
                               "-t %d",
                               o.threads > 0 ? o.threads : 2);
    }
    o.f32 = strstr(cl, "f32") != NULL;
    o.int8 = strstr(cl, "int8") != NULL;
    if (o.threads <= 0)
        o.threads = 2;
    openblas_set_num_threads(o.threads);
    static const int64_t qwen[][2] = {{896, 896}, {128, 896}, {4864, 896}, {896, 4864}};
    static const int64_t smol[][2] = {
        {576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    const char *sh = model->count ? model->sval[0] : "qwen2.5-0.5b";
    if (strcmp(sh, "qwen2.5-0.5b") && strcmp(sh, "smollm2-135m")) {
        free(Ts);
        arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
        return cli_usage_error(TOOL, "--shapes: '%s', expected qwen2.5-0.5b or smollm2-135m", sh);
    }
    const int64_t(*shapes)[2] = strcmp(sh, "qwen2.5-0.5b") ? smol : qwen;
    const size_t nshapes = strcmp(sh, "qwen2.5-0.5b") ? 5 : 4;
    const char *vname = o.variant ? o.variant : lk_kernel_variant();
    if (o.json)
        printf("{\"version\":\"%s\",\"seed\":%llu,\"threads\":%d,\"variant\":\"%s\","
               "\"cpu\":\"%s\",\"cold\":%s,\"int8_variant\":\"%s\",\"clock\":\"%s\","
               "\"results\":[",
               lk_version(), (unsigned long long)o.seed, o.threads, vname, lk_cpu_features(),
               o.cold ? "true" : "false", o.int8 ? lk_q8_kernel_variant() : "",
               o.cpu_clock ? "thread_cpu" : "wall");
    else {
        if (o.int8)
            printf("int8 variant: %s\n", lk_q8_kernel_variant());
        printf("kernel variant: %s; CPU features: %s; threads: %d; best of %d; weights %s; "
               "%s\n\n"
               "| out x in | T | dir | f32 BLAS |",
               vname, lk_cpu_features(), o.threads, o.nrep,
               o.cold ? "cold (streamed from DRAM)" : "hot (cache-resident after warm-up)",
               o.cpu_clock ? "thread CPU time" : "wall clock");
        for (int col = 0; col < o.ntypes * npaths(&o); col++)
            printf(" %s%s |", lk_qtype_name(o.types[col / npaths(&o)]),
                   col_int8(&o, col) ? " int8" : "");
        printf("\n|---|---:|---|---:|");
        for (int col = 0; col < o.ntypes * npaths(&o); col++)
            printf("---:|");
        printf("\n");
    }
    rc = -1;
    for (size_t s = 0; s < nshapes && rc < 0; s++)
        rc = bench_shape(&o, shapes[s][0], shapes[s][1]);
    if (o.json && rc < 0)
        printf("]}\n");
    free(Ts);
    arg_freetable(argtable, sizeof argtable / sizeof argtable[0]);
    return rc < 0 ? CLI_OK : rc;
}
