/* lora-teacher — run a teacher model once over a dataset and write its top-k next-token
 * log-probabilities at every trained position to a teacher cache, for lora-train
 * --teacher-cache (format: docs/teacher-cache.md). The data options are lora-train's, so that the
 * examples (tokens and loss masks) are the ones the trainer will see. Under mpirun (or srun)
 * every process is one rank (lorakit/dist.h): the ranks split the examples, rank 0 alone prints
 * and writes the one cache file, the same bytes one process writes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-teacher";
static char g_tool[48]; /* "lora-teacher[rank R]" on the other ranks of a group */

typedef struct {
    struct arg_file *model, *data, *out;
    struct arg_str *adapter, *quant, *quant_embed, *compute, *memory_limit;
    struct arg_int *top_k, *seq_len, *vocab;
    struct arg_dbl *kd_temp;
    struct arg_lit *force;
    cli_data_opts d;
} teacher_args;

typedef struct {
    int tty, quiet;
    double t0, last;
} progress_state;

/* After each example: stop on a signal; a progress line (redrawn on a terminal, every 10 s
 * otherwise). */
static int on_progress(void *user, int64_t done, int64_t total)
{
    progress_state *ps = user;
    if (cli_stop_signal())
        return cli_stop_signal();
    double t = cli_now();
    if (ps->quiet || (done < total && t - ps->last < (ps->tty ? 0.2 : 10.0)))
        return 0;
    ps->last = t;
    if (!ps->tty) {
        fprintf(stderr, "[%s] %lld/%lld examples  %.1f s\n", TOOL, (long long)done,
                (long long)total, t - ps->t0);
        return 0;
    }
    cli_line("[%s] %lld/%lld examples  %.1f s", TOOL, (long long)done, (long long)total,
             t - ps->t0);
    if (done == total)
        cli_line_end();
    return 0;
}

static void report(const teacher_args *a, const cli_common *c, const lk_model *m,
                   const struct lk_teacher_params *p, const struct lk_teacher_stats *st,
                   double secs)
{
    double bpp = st->positions ? (double)st->bytes / (double)st->positions : 0;
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "model", a->model->filename[0]);
        cJSON_AddStringToObject(j, "data", a->data->filename[0]);
        cJSON_AddStringToObject(j, "output", a->out->filename[0]);
        cJSON_AddNumberToObject(j, "top_k", (double)p->top_k);
        cJSON_AddNumberToObject(j, "temperature", p->temp);
        cJSON_AddNumberToObject(j, "vocab", (double)p->vocab);
        cJSON_AddNumberToObject(j, "examples", (double)st->examples);
        cJSON_AddNumberToObject(j, "tokens", (double)st->tokens);
        cJSON_AddNumberToObject(j, "positions", (double)st->positions);
        cJSON_AddNumberToObject(j, "forward_tokens", (double)st->forward_tokens);
        cJSON_AddNumberToObject(j, "bytes", (double)st->bytes);
        cJSON_AddNumberToObject(j, "bytes_per_position", bpp);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "tokens_per_second",
                                secs > 0 ? (double)st->forward_tokens / secs : 0);
        cJSON_AddStringToObject(j, "compute", lk_compute_name(lk_model_compute(m)));
        cJSON_AddStringToObject(j, "compute_reason", lk_model_compute_reason(m));
        cli_json_emit(j);
        return;
    }
    printf("%s: %lld examples, %lld tokens, %lld positions (top-%lld at temperature %g over %lld "
           "ids)\n%lld bytes, %.1f bytes/position, %.1f s (%.0f tokens/s through the teacher)\n",
           a->out->filename[0], (long long)st->examples, (long long)st->tokens,
           (long long)st->positions, (long long)p->top_k, (double)p->temp, (long long)p->vocab,
           (long long)st->bytes, bpp, secs, secs > 0 ? (double)st->forward_tokens / secs : 0);
}

/* "adapters=DIR:w,..." for the cache's teacher description (heap; NULL when none). */
static char *adapter_note(const cli_adapters *ad)
{
    size_t n = 16;
    for (int i = 0; i < ad->n; i++)
        n += strlen(ad->path[i]) + 32;
    char *s = ad->n ? malloc(n) : NULL;
    if (!s)
        return NULL;
    size_t k = (size_t)snprintf(s, n, "adapters=");
    for (int i = 0; i < ad->n; i++)
        k += (size_t)snprintf(s + k, n - k, "%s%s:%g", i ? "," : "", ad->path[i], (double)ad->w[i]);
    return s;
}

/* The exit code of an interrupted run: 143 for SIGTERM, else 130 (with a group, the signal any
 * rank caught: every rank exits alike). */
static int interrupted_code(lk_dist *g)
{
    int64_t sig = cli_stop_signal();
    if (lk_dist_max(g, &sig) != LK_OK)
        return CLI_FAIL;
    return sig == SIGTERM ? 143 : CLI_INTERRUPTED;
}

/* Model (with adapters), tokenizer, data; then the cache (with a group, only once every rank has
 * loaded its own). */
static int run(const teacher_args *a, const cli_common *c, struct lk_teacher_params *p,
               struct lk_model_params *mp, struct lk_dataset_params *dp)
{
    lk_model *m = NULL;
    lk_tokenizer *tok = NULL;
    lk_dataset *d = NULL;
    cli_adapters ad = {0};
    char *note = NULL;
    int rc = -1;
    progress_state ps = {isatty(2), c->quiet->count > 0, cli_now(), 0};
    struct lk_teacher_stats st;
    const char *dir = a->model->filename[0];
    lk_status s = LK_OK;
    if ((rc = cli_adapters_load(TOOL, a->adapter, NULL, &ad)) >= 0 ||
        (rc = cli_base_params(TOOL, &ad, a->quant, a->quant_embed, a->compute, mp)) >= 0)
        s = LK_ERR_IO; /* its error is printed; the other ranks are told below */
    if (s == LK_OK)
        s = lk_model_load(dir, mp, &m);
    if (s == LK_OK && (rc = cli_adapters_attach(TOOL, &ad, m, dir)) >= 0)
        s = LK_ERR_IO;
    if (s == LK_OK)
        s = lk_tokenizer_load(dir, &tok);
    if (s == LK_OK) {
        dp->seq_len =
            a->seq_len->count ? a->seq_len->ival[0] : lk_model_get_config(m)->max_position;
        s = lk_dataset_load(a->data->filename[0], tok, dp, &d);
    }
    lk_status all = lk_dist_agree(p->dist, s);
    if (rc >= 0)
        goto done;
    s = all;
    if (s == LK_OK) /* --compute auto alike on every rank */
        s = lk_trainer_agree_compute(p->dist, m);
    if (s == LK_OK) {
        note = adapter_note(&ad);
        p->teacher_dir = dir;
        p->teacher_note = note;
        p->data_path = a->data->filename[0];
        p->progress = on_progress;
        p->user = &ps;
        ps.t0 = ps.last = cli_now();
        s = lk_teacher_cache_write(m, d, a->out->filename[0], p, &st);
    }
    if (s == LK_OK && lk_dist_rank(p->dist) == 0)
        report(a, c, m, p, &st, cli_now() - ps.t0);
    else if (s == LK_ERR_INTERRUPTED && lk_dist_rank(p->dist) == 0) {
        cli_line_end(); /* the progress line stays: where it stopped */
        fprintf(stderr, "%s: interrupted; %s not written\n", TOOL, a->out->filename[0]);
    }
    rc = s == LK_OK                ? CLI_OK
         : s != LK_ERR_INTERRUPTED ? cli_fail(TOOL, s)
                                   : interrupted_code(p->dist);
done:
    free(note);
    lk_dataset_free(d);
    lk_tokenizer_free(tok);
    cli_adapters_free(&ad);
    lk_model_free(m);
    return rc;
}

/* The flags onto the library's options, checked (the cache's with the model's config, for the
 * vocabulary; the data's as training data, since the cache is made for a training run). */
static int check_args(const teacher_args *a, struct lk_teacher_params *p,
                      struct lk_dataset_params *dp)
{
    p->top_k = a->top_k->ival[0];
    CLI_SET_DBL(a->kd_temp, p->temp);
    CLI_SET_INT(a->vocab, p->vocab);
    p->force = a->force->count > 0;
    int rc = cli_usage_status(TOOL, lk_teacher_params_check(p, NULL));
    if (rc < 0 && a->seq_len->count) {
        dp->seq_len = a->seq_len->ival[0];
        rc = cli_usage_status(TOOL, lk_train_data_params_check(dp));
    }
    if (rc < 0)
        rc = cli_data_params(TOOL, &a->d, dp);
    if (rc >= 0)
        return rc;
    struct lk_model_config cfg;
    lk_status s = lk_config_load(a->model->filename[0], &cfg);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    rc = cli_usage_status(TOOL, lk_teacher_params_check(p, &cfg));
    if (!p->vocab)
        p->vocab = cfg.vocab_size; /* for the report */
    return rc;
}

/* The data-parallel group this process belongs to (alone without a launcher); the other ranks
 * print nothing but errors, which name their rank. */
static int open_group(lk_dist **g, cli_common *c)
{
    lk_status s = lk_dist_open(g);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    if (lk_dist_rank(*g) > 0) {
        snprintf(g_tool, sizeof g_tool, "%s[rank %d]", TOOL, lk_dist_rank(*g));
        TOOL = g_tool;
        c->quiet->count = 1;
        cli_set_voice(TOOL, 1);
        c->json->count = 0;
        lk_set_log_level(LK_LOG_ERROR);
    }
    return -1;
}

static const char *GLOSSARY =
    "Each example of --data (any lora-train format; the same --fields, --chat-template and\n"
    "--seq-len as training) runs through the teacher on its own from position 0; at every\n"
    "position whose next token is trained, the cache keeps the K most likely next ids with their\n"
    "log-probabilities of softmax(logits / --kd-temp) and the log of the remaining mass.\n"
    "lora-train --teacher-cache FILE checks the cache against its data (same tokens; a training\n"
    "--seq-len up to the one used here). The output is written to a temporary file and renamed\n"
    "when complete; Ctrl-C (SIGTERM) leaves nothing behind and exits 130 (143).\n"
    "mpirun -np N lora-teacher ... splits the examples across N processes (or hosts); rank 0\n"
    "writes the file, the same bytes one process writes.\n";

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init_noseed(&c);
    teacher_args a;
    a.model = arg_file1("m", "model", "DIR|GGUF",
                        "teacher model folder (Hugging Face) or GGUF model file");
    a.adapter = arg_strn("a", "adapter", "DIR[:scale]", 0, 8,
                         "LoRA adapter applied to the teacher (PEFT folder or GGUF), repeatable");
    a.quant = arg_str0(NULL, "quant", "TYPE",
                       "teacher weights: none (f32), nf4, q4_0, iq4_nl, q8_0 (default: the "
                       "base -a was trained on, else none)");
    a.quant_embed = arg_str0(NULL, "quant-embed", "TYPE", "embeddings/LM head: f32 or q8_0");
    a.compute = cli_compute_arg();
    a.memory_limit = cli_memory_limit_arg();
    a.data = arg_file1(NULL, "data", "FILE", "training data (JSONL or JSON array)");
    a.top_k = arg_int1(NULL, "top-k", "K", "ids kept per position (1 .. vocabulary - 1)");
    a.kd_temp = arg_dbl0(NULL, "kd-temp", "TAU",
                         cli_help("temperature of the log-probabilities (default %g)",
                                  (double)lk_teacher_params_default().temp));
    a.vocab = arg_int0(NULL, "vocab", "N",
                       "softmax over ids [0, N) only, e.g. a student's smaller vocabulary "
                       "(default: the teacher's vocab_size)");
    a.seq_len = arg_int0(NULL, "seq-len", "T",
                         "truncate examples to T tokens (default: the model's context)");
    cli_data_opts_init(&a.d);
    a.out = arg_file1("o", "out", "FILE", "teacher cache to write");
    a.force = arg_lit0(NULL, "force", "replace an existing output file");
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model,
                  a.adapter,
                  a.quant,
                  a.quant_embed,
                  a.compute,
                  a.memory_limit,
                  a.data,
                  a.top_k,
                  a.kd_temp,
                  a.vocab,
                  a.seq_len,
                  CLI_DATA_ENTRIES(a.d),
                  a.out,
                  a.force,
                  CLI_COMMON_ENTRIES_NOSEED(c),
                  end};
    int rc =
        cli_parse(argc, argv, at, end, &c, TOOL,
                  "Write a teacher cache (top-k log-probabilities) for distillation.", GLOSSARY);
    if (rc >= 0)
        goto done;
    struct lk_teacher_params p = lk_teacher_params_default();
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.pack = 0;
    dp.shuffle = 0;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    if ((rc = cli_parse_quant(TOOL, a.quant, a.quant_embed, &mp)) >= 0 ||
        (rc = cli_parse_compute(TOOL, a.compute, &mp)) >= 0 ||
        (rc = cli_parse_memory_limit(TOOL, a.memory_limit, &mp)) >= 0 ||
        (rc = check_args(&a, &p, &dp)) >= 0 || (rc = open_group(&p.dist, &c)) >= 0)
        goto done;
    cli_catch_stop();
    rc = run(&a, &c, &p, &mp, &dp);
    lk_dist_close(p.dist);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
