/* bench_kd.c — time of the distillation loss (src/kd.c) beside the cross-entropy (src/loss.c)
 * through an LM head of Qwen2.5-0.5B's shape (C = 896, V = 151936) for T positions, forward and
 * backward, and of the bare chunked GEMMs both make (so the rest is the element-wise work). A
 * benchmark run by hand, not a test; it uses internal headers, so it is built against the
 * library by hand after a Release build:
 *
 *   cc -O2 -std=c11 -Isrc -Iquant -Iinclude tests/gen/bench_kd.c build/liblorakit.a \
 *      $(pkg-config --libs openblas libzstd libcjson libpcre2-8 libutf8proc) -fopenmp -lm \
 *      -o /tmp/bench_kd && /tmp/bench_kd [T [THREADS [C [V [TAU]]]]]
 * (CPU=1 in the environment: CPU time instead of wall-clock time, for a busy machine and one
 * thread).
 *
 * Weights are random (logits of standard deviation ~2); the teacher shares the student's head
 * (C_T = C) with perturbed hidden states; the top-k cache has k = 32; temperature TAU (default
 * 1), KD weight 0.5. Best of 2 calls each. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/kd.h"
#include "nn/loss.h"
#include "core/rng.h"

/* Wall-clock seconds, or with CPU set the process's CPU seconds: on a machine shared with other
 * work a single-threaded run's CPU time is its cost, whatever the scheduler does. */
static int g_cpu;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(g_cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const linear *head;
    const float *h;
    const int32_t *tg;
    int64_t T;
    const kd_params *kp;
    const kd_teacher *tch;
    float *dh, *scratch;
    int nt, mode; /* 0: CE, 1: KD, 2: the GEMMs alone (two forward, one backward per block) */
} job;

static void gemms(const job *j)
{
    const linear *W = j->head;
    const int64_t V = W->out, C = W->in;
    float *logits = j->scratch, *dhb = j->scratch + CE_ROWS * V;
    for (int64_t t = 0; t < j->T; t += CE_ROWS) {
        int64_t R = j->T - t < CE_ROWS ? j->T - t : CE_ROWS;
        for (int pass = 0; pass < 3; pass++)
            for (int64_t v0 = 0; v0 < V; v0 += CE_VCHUNK) {
                int64_t n = V - v0 < CE_VCHUNK ? V - v0 : CE_VCHUNK;
                linear rows = linear_rows(W, v0, n);
                if (pass < 2)
                    linear_forward(&rows, j->h + t * C, R, logits + R * v0, NULL, 0, j->nt);
                else
                    linear_backward(&rows, NULL, logits + R * v0, R, dhb, NULL, 0, j->nt);
            }
    }
}

static double time_job(const job *j)
{
    double best = 1e30;
    for (int r = 0; r < 2; r++) {
        double l = 0, ce = 0, kd = 0, t0 = now_s();
        int64_t n = 0;
        if (j->mode == 0)
            ce_forward_backward(j->head, j->h, j->tg, j->T, 1.0f, j->dh, &l, &n, j->scratch, j->nt);
        else if (j->mode == 1)
            kd_forward_backward(j->head, j->h, j->tg, j->T, j->kp, j->tch, 1.0f, j->dh, &l, &ce,
                                &kd, &n, j->scratch, j->nt);
        else
            gemms(j);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
        if (j->mode < 2 && !isfinite(l)) {
            fprintf(stderr, "bench_kd: loss is not finite\n");
            exit(1);
        }
    }
    return best;
}

int main(int argc, char **argv)
{
    const int64_t T = argc > 1 ? atoll(argv[1]) : 512, C = argc > 3 ? atoll(argv[3]) : 896;
    const int nt = argc > 2 ? atoi(argv[2]) : 2;
    const int64_t V = argc > 4 ? atoll(argv[4]) : 151936, K = 32;
    const float tau = argc > 5 ? (float)atof(argv[5]) : 1.0f;
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_cpu = getenv("CPU") && atoi(getenv("CPU"));
    rng_state rg;
    rng_seed(&rg, 1, 2);
    float *w = malloc(sizeof(float) * (size_t)(V * C)),
          *h = malloc(sizeof(float) * (size_t)(T * C));
    float *ht = malloc(sizeof(float) * (size_t)(T * C)),
          *dh = malloc(sizeof(float) * (size_t)(T * C));
    const linear fp32_head = {.w = w, .in = C, .out = V}; /* fp32 heads need no kernel work */
    float *scratch = malloc(sizeof(float) * (size_t)kd_scratch_floats(&fp32_head, &fp32_head, nt));
    float *logp = malloc(sizeof(float) * (size_t)(T * K)),
          *tail = malloc(sizeof(float) * (size_t)T);
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)T),
            *ids = malloc(sizeof(int32_t) * (size_t)(T * K));
    if (!w || !h || !ht || !dh || !scratch || !logp || !tail || !tg || !ids) {
        fprintf(stderr, "bench_kd: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < V * C; i++)
        w[i] = (float)rng_normal(&rg) * 2.0f / sqrtf((float)C);
    for (int64_t i = 0; i < T * C; i++) {
        h[i] = (float)rng_normal(&rg);
        ht[i] = h[i] + 0.5f * (float)rng_normal(&rg);
    }
    for (int64_t t = 0; t < T; t++) {
        tg[t] = (int32_t)rng_below(&rg, (uint64_t)V);
        for (int64_t j = 0; j < K; j++) { /* distinct ids: one per stride of V/K */
            ids[t * K + j] = (int32_t)(j * (V / K) + (int64_t)rng_below(&rg, (uint64_t)(V / K)));
            logp[t * K + j] = logf(0.02f);
        }
        tail[t] = logf(1.0f - 0.02f * K);
    }
    linear head = {.name = "lm_head", .w = w, .in = C, .out = V};
    kd_teacher full = {.head = &head, .ht = ht},
               top = {.k = K, .ids = ids, .logp = logp, .log_tail = tail};
    kd_params kps[3] = {{KD_FKL, tau, 0, 0.5f}, {KD_RKL, tau, 0, 0.5f}, {KD_JSD, tau, 0.5f, 0.5f}};
    const char *names[3] = {"forward KL", "reverse KL", "JSD beta 0.5"};
    printf("LM head C = %lld, V = %lld, T = %lld, %d threads; %s seconds per forward+backward\n",
           (long long)C, (long long)V, (long long)T, nt, g_cpu ? "CPU" : "wall-clock");
    job j = {&head, h, tg, T, NULL, NULL, dh, scratch, nt, 2};
    double g = time_job(&j);
    const double pass = g / 3; /* one GEMM pass over the head: CE makes 2, KD 3 (2 with top-k) */
    printf("  one GEMM pass over the head:          %.3f s\n", pass);
    j.mode = 0;
    double ce = time_job(&j);
    printf(
        "  cross-entropy (loss.c):               %.3f s (%.0f tokens/s; beyond its GEMMs %.3f s)\n",
        ce, (double)T / ce, ce - 2 * pass);
    j.mode = 1;
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 3; i++) {
            kd_params kp = kps[i];
            j.kp = &kp;
            j.tch = m ? &top : &full;
            double s = time_job(&j);
            printf("  %-12s %-6s tau %g, alpha 0.5: %.3f s (%.0f tokens/s, %.2fx CE; beyond its "
                   "GEMMs %.3f s)\n",
                   names[i], m ? "top-32" : "full", (double)tau, s, (double)T / s, s / ce,
                   s - (3 - m) * pass);
        }
    free(w);
    free(h);
    free(ht);
    free(dh);
    free(scratch);
    free(logp);
    free(tail);
    free(tg);
    free(ids);
    return 0;
}
