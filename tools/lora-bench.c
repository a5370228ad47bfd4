/* lora-bench — speed and memory of the forward on a model folder: prefill tokens/s over a
 * sequence, decode tokens/s with the KV cache, load time and peak RSS. Benchmarks, not tests:
 * the figures go to BENCHMARKS.md with the exact command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-bench";

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
        double t0 = cli_now();
        st = lk_session_eval(s, tok, T, logits, 0);
        double dt = cli_now() - t0;
        best = dt < best ? dt : best;
    }
    r->prefill_tps = (double)T / best;
    double t0 = cli_now();
    for (int64_t i = 0; i < n_decode && st == LK_OK; i++)
        st = lk_session_eval(s, tok + T + i, 1, logits, 0);
    r->decode_tps = n_decode ? (double)n_decode / (cli_now() - t0) : 0;
    lk_session_free(s);
    free(tok);
    free(logits);
    return st;
}

/* ---- training steps ---- */

typedef struct {
    double setup_s, s_per_step, tps; /* setup: lk_trainer_create (int8: the transposed copies) */
    double cpu_s_per_step; /* CPU seconds of the whole process (all threads), median step */
} train_result;

/* The median of v[n] (sorted in place); 0 when n is 0. */
static double median(double *v, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    return n ? v[n / 2] : 0;
}

/* A JSONL file of n pre-tokenised examples of T random ids (all trained). */
static int write_random_ids(const char *path, int64_t n, int64_t T, int64_t vocab, uint64_t seed)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    uint64_t x = seed * 2862933555777941757ull + 3037000493ull;
    for (int64_t i = 0; i < n; i++) {
        fputs("{\"input_ids\":[", f);
        for (int64_t t = 0; t < T; t++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            fprintf(f, "%s%lld", t ? "," : "", (long long)((x >> 33) % (uint64_t)vocab));
        }
        fputs("]}\n", f);
    }
    return fclose(f);
}

/* Median seconds (wall and process CPU) of `steps` training steps (after one warm-up) at T tokens,
 * rank r. */
static lk_status run_train(lk_model *m, const char *tok_dir, int64_t T, int64_t r, int steps,
                           uint64_t seed, int64_t memory_limit, train_result *res)
{
    lk_tokenizer *tok = NULL;
    CLI_TRY(lk_tokenizer_load(tok_dir, &tok));
    int64_t vocab = lk_model_get_config(m)->vocab_size; /* ids both tokenizer and model know */
    if (lk_tokenizer_vocab_size(tok) < vocab)
        vocab = lk_tokenizer_vocab_size(tok);
    char path[] = "/tmp/lora-bench-XXXXXX.jsonl";
    int fd = mkstemps(path, 6);
    if (fd < 0 || write_random_ids(path, steps + 1, T, vocab, seed) != 0) {
        fprintf(stderr, "lora-bench: error: cannot write %s\n", path);
        lk_tokenizer_free(tok);
        return LK_ERR_IO;
    }
    close(fd);
    lk_dataset *d = NULL;
    lk_trainer *t = NULL;
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = T;
    dp.pack = 0;
    struct lk_train_params tp = lk_train_params_default();
    tp.rank = r;
    tp.steps = steps + 1;
    tp.memory_limit = memory_limit; /* --compute auto's plan, and what the trainer keeps */
    lk_status s = lk_dataset_load(path, tok, &dp, &d);
    const double t_setup = cli_now();
    if (s == LK_OK)
        s = lk_trainer_create(m, d, &tp, &t);
    res->setup_s = cli_now() - t_setup;
    double times[64], cpu[64];
    int n = 0;
    for (int i = 0; i <= steps && s == LK_OK; i++) {
        struct lk_step_stats st;
        double t0 = cli_now(), c0 = cli_process_cpu_now();
        s = lk_trainer_step(t, &st);
        if (i > 0 && n < 64) {
            cpu[n] = cli_process_cpu_now() - c0;
            times[n++] = cli_now() - t0;
        }
    }
    res->s_per_step = median(times, n);
    res->cpu_s_per_step = median(cpu, n);
    res->tps = n ? (double)T / res->s_per_step : 0;
    lk_trainer_free(t);
    lk_dataset_free(d);
    lk_tokenizer_free(tok);
    remove(path);
    return s;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    struct arg_file *model = arg_file1("m", "model", "DIR|GGUF", "model folder or GGUF model file");
    struct arg_int *tokens = arg_int0("n", "tokens", "T", "prefill length (default 512)");
    struct arg_int *repeat =
        arg_int0(NULL, "repeat", "R", "prefill repetitions, best kept (default 3)");
    struct arg_int *decode =
        arg_int0(NULL, "decode", "N", "decode steps after the prefill (default 32)");
    struct arg_lit *train = arg_lit0(NULL, "train", "time LoRA training steps instead");
    struct arg_str *quant = arg_str0(NULL, "quant", "TYPE",
                                     "base format: none (f32), nf4, q4_0, "
                                     "iq4_nl, q8_0");
    struct arg_str *qembed = arg_str0(NULL, "quant-embed", "TYPE", "embeddings: f32 or q8_0");
    struct arg_str *compute = cli_compute_arg();
    struct arg_str *limit = cli_memory_limit_arg();
    struct arg_int *rank =
        arg_int0(NULL, "rank", "R", "--train: LoRA rank, all seven modules (default 16)");
    struct arg_int *steps =
        arg_int0(NULL, "steps", "N", "--train: timed steps after one warm-up (default 3)");
    struct arg_file *tokdir =
        arg_file0(NULL, "tokenizer", "DIR", "--train: tokenizer folder (default: the model's)");
    struct arg_end *end = arg_end(20);
    void *at[] = {model,
                  tokens,
                  repeat,
                  decode,
                  train,
                  quant,
                  qembed,
                  compute,
                  limit,
                  rank,
                  steps,
                  tokdir,
                  CLI_COMMON_ENTRIES(c),
                  end};
    int rc =
        cli_parse(argc, argv, at, end, &c, TOOL,
                  "Forward speed (prefill and decode tokens/s), load time and peak RSS; with "
                  "--train, LoRA training steps. --compute auto decides within --memory-limit: "
                  "on the weights, and with --train on the trainer's least plan (the trainer "
                  "then keeps what its plan within the limit keeps).",
                  NULL);
    if (rc >= 0)
        goto done;
    int64_t T = tokens->count ? tokens->ival[0] : 512;
    int R = repeat->count ? repeat->ival[0] : 3;
    int64_t D = decode->count ? decode->ival[0] : 32;
    if ((rc = cli_check_range(TOOL, tokens, 1, INT64_MAX, NULL)) >= 0 ||
        (rc = cli_check_range(TOOL, repeat, 1, INT64_MAX, NULL)) >= 0 ||
        (rc = cli_check_range(TOOL, decode, 0, INT64_MAX, NULL)) >= 0 ||
        (rc = cli_check_range(TOOL, rank, 1, INT64_MAX, NULL)) >= 0 ||
        (rc = cli_check_range(TOOL, steps, 1, INT64_MAX, NULL)) >= 0)
        goto done;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    if ((rc = cli_parse_quant(TOOL, quant, qembed, &mp)) >= 0 ||
        (rc = cli_parse_compute(TOOL, compute, &mp)) >= 0 ||
        (rc = cli_parse_memory_limit(TOOL, limit, &mp)) >= 0)
        goto done;
    lk_model *m = NULL;
    bench_result r = {0};
    double t0 = cli_now();
    lk_status s = lk_model_load(model->filename[0], &mp, &m);
    r.load_s = cli_now() - t0;
    train_result tr = {0, 0, 0, 0};
    if (s == LK_OK && train->count)
        s = run_train(m, tokdir->count ? tokdir->filename[0] : model->filename[0], T,
                      rank->count ? rank->ival[0] : 16, steps->count ? steps->ival[0] : 3,
                      cli_seed(&c), mp.memory_limit, &tr);
    else if (s == LK_OK)
        s = run(m, T, R, D, cli_seed(&c), &r);
    r.rss_mib = cli_peak_rss_mib();
    const char *why = m ? lk_model_compute_reason(m) : "";
    if (m) /* the compute run: --compute auto's choice (a trainer's within its plan) */
        mp.compute = lk_model_compute(m);
    if (s != LK_OK) {
        rc = cli_fail(TOOL, s);
    } else if (train->count) {
        cJSON *j = cli_json_new(&c);
        cJSON_AddStringToObject(j, "model", model->filename[0]);
        cJSON_AddNumberToObject(j, "threads", mp.n_threads);
        cJSON_AddNumberToObject(j, "tokens", (double)T);
        cJSON_AddNumberToObject(j, "rank", rank->count ? rank->ival[0] : 16);
        cJSON_AddStringToObject(j, "quant", lk_qtype_name(mp.quant));
        cJSON_AddStringToObject(j, "compute", lk_compute_name(mp.compute));
        cJSON_AddStringToObject(j, "compute_reason", why);
        cJSON_AddNumberToObject(j, "load_s", r.load_s);
        cJSON_AddNumberToObject(j, "setup_s", tr.setup_s);
        cJSON_AddNumberToObject(j, "s_per_step", tr.s_per_step);
        cJSON_AddNumberToObject(j, "tokens_per_s", tr.tps);
        cJSON_AddNumberToObject(j, "cpu_s_per_step", tr.cpu_s_per_step);
        cJSON_AddNumberToObject(j, "peak_rss_mib", r.rss_mib);
        if (c.json->count)
            cli_json_emit(j);
        else {
            printf("load %.2f s  setup %.2f s  train: %.3f s/step  %.1f tokens/s  %.3f CPU s/step  "
                   "peak RSS %.0f MiB\n",
                   r.load_s, tr.setup_s, tr.s_per_step, tr.tps, tr.cpu_s_per_step, r.rss_mib);
            cJSON_Delete(j);
        }
        rc = CLI_OK;
    } else if (c.json->count) {
        cJSON *j = cli_json_new(&c);
        cJSON_AddStringToObject(j, "model", model->filename[0]);
        cJSON_AddNumberToObject(j, "threads", mp.n_threads);
        cJSON_AddNumberToObject(j, "tokens", (double)T);
        cJSON_AddStringToObject(j, "compute", lk_compute_name(mp.compute));
        cJSON_AddStringToObject(j, "compute_reason", why);
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
