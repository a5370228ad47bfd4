/* lora-bench — speed and memory of the forward on a model folder: prefill tokens/s over a
 * sequence, decode tokens/s with the KV cache, load time and peak RSS. Benchmarks, not tests:
 * the figures go to BENCHMARKS.md with the exact command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static const char *TOOL = "lora-bench";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

typedef struct {
    double load_s, prefill_tps, decode_tps, rss_mib;
} bench_result;

/* Best of `repeat` prefills of T tokens, then n_decode single-token steps after them. */
static lk_status run(const lk_model *m, int64_t T, int repeat, int64_t n_decode, uint64_t seed,
                     bench_result *r)
{
    const struct lk_model_config *c = lk_model_get_config(m);
    int32_t *tok = malloc((size_t)(T + n_decode) * sizeof *tok);
    float *logits = malloc((size_t)c->vocab_size * sizeof(float));
    lk_session *s = NULL;
    lk_status st = (tok && logits) ? lk_session_create(m, T + n_decode, &s) : LK_ERR_NOMEM;
    uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; tok && i < T + n_decode; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((x >> 33) % (uint64_t)c->vocab_size);
    }
    double best = 1e30;
    for (int k = 0; k < repeat && st == LK_OK; k++) {
        lk_session_reset(s);
        double t0 = now();
        st = lk_session_eval(s, tok, T, logits, 0);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    r->prefill_tps = (double)T / best;
    double t0 = now();
    for (int64_t i = 0; i < n_decode && st == LK_OK; i++)
        st = lk_session_eval(s, tok + T + i, 1, logits, 0);
    r->decode_tps = n_decode ? (double)n_decode / (now() - t0) : 0;
    lk_session_free(s);
    free(tok);
    free(logits);
    return st;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c, 1);
    struct arg_file *model = arg_file1("m", "model", "DIR", "model folder");
    struct arg_int *tokens = arg_int0("n", "tokens", "T", "prefill length (default 512)");
    struct arg_int *repeat = arg_int0(NULL, "repeat", "R", "prefill repetitions, best kept (default 3)");
    struct arg_int *decode = arg_int0(NULL, "decode", "N", "decode steps after the prefill (default 32)");
    struct arg_end *end = arg_end(20);
    void *at[] = {model, tokens, repeat, decode, CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Forward speed (prefill and decode tokens/s), load time and peak RSS.",
                       NULL);
    if (rc >= 0)
        goto done;
    int64_t T = tokens->count ? tokens->ival[0] : 512;
    int R = repeat->count ? repeat->ival[0] : 3;
    int64_t D = decode->count ? decode->ival[0] : 32;
    if (T < 1 || R < 1 || D < 0) {
        rc = cli_usage_error(TOOL, "--tokens and --repeat must be >= 1, --decode >= 0");
        goto done;
    }
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    lk_model *m = NULL;
    bench_result r = {0};
    double t0 = now();
    lk_status s = lk_model_load(model->filename[0], &mp, &m);
    r.load_s = now() - t0;
    if (s == LK_OK)
        s = run(m, T, R, D, cli_seed(&c), &r);
    r.rss_mib = peak_rss_mib();
    if (s != LK_OK) {
        rc = cli_fail(TOOL, s);
    } else if (c.json->count) {
        cJSON *j = cli_json_new(&c);
        cJSON_AddStringToObject(j, "model", model->filename[0]);
        cJSON_AddNumberToObject(j, "threads", mp.n_threads);
        cJSON_AddNumberToObject(j, "tokens", (double)T);
        cJSON_AddNumberToObject(j, "load_s", r.load_s);
        cJSON_AddNumberToObject(j, "prefill_tokens_per_s", r.prefill_tps);
        cJSON_AddNumberToObject(j, "decode_tokens_per_s", r.decode_tps);
        cJSON_AddNumberToObject(j, "peak_rss_mib", r.rss_mib);
        cli_json_emit(j);
        rc = CLI_OK;
    } else {
        printf("load %.2f s  prefill %lld tokens: %.1f tokens/s  decode: %.2f tokens/s  "
               "peak RSS %.0f MiB\n",
               r.load_s, (long long)T, r.prefill_tps, r.decode_tps, r.rss_mib);
        rc = CLI_OK;
    }
    lk_model_free(m);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
