/* lora-eval — mean next-token cross-entropy and perplexity of a model over a text, a file or a
 * list of token ids. Plain-text files are scored as one document; JSONL/JSON files go through the
 * dataset loader (any supported format), so prompt and padding tokens are not scored. With
 * --teacher, also the mean KL(teacher ‖ model) per scored token. With --generate, the model
 * answers each example of --data (greedy, the example's prompt as training renders it) and the
 * answers are scored against the references (lk_dataset_answer): accuracy, per example with -v
 * or --json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lorakit/generate.h"

static const char *TOOL = "lora-eval";

typedef struct {
    double nll, kl;
    int64_t count, examples;
    const lk_model *teacher;
    int dataset; /* --data read as examples (JSONL/JSON), not as one text */
} eval_acc;

typedef struct {
    struct arg_file *model, *data;
    struct arg_str *adapter, *text, *ids, *fields, *quant, *quant_embed, *compute, *memory_limit;
    struct arg_str *teacher, *teacher_adapter, *teacher_quant;
    struct arg_int *ctx, *nnew, *eval_max;
    struct arg_lit *generate;
    struct arg_str *match;
} eval_args;

/* What was scored, as the summary's label: "MODEL + ADAPTER[:w] ..., base nf4, int8 compute". */
static void label(const char *model, const cli_adapters *ad, const lk_model *m, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "%s", model);
    for (int i = 0; i < ad->n && k < n; i++)
        k += ad->w[i] == 1 ? (size_t)snprintf(buf + k, n - k, " + %s", ad->path[i])
                           : (size_t)snprintf(buf + k, n - k, " + %s:%g", ad->path[i], ad->w[i]);
    struct lk_adapter_base rec;
    lk_model_base_record(m, &rec);
    if (k < n && strcmp(rec.quant, "gguf") == 0) /* a GGUF file may mix types (Q4_K_M) */
        k += (size_t)snprintf(buf + k, n - k, ", base gguf (the file's own tensor types)");
    else if (k < n)
        k += (size_t)snprintf(
            buf + k, n - k, ", base %s%s%s", lk_qtype_name(lk_model_quant(m)),
            lk_model_quant_embed(m) != LK_QTYPE_F32 ? " with embeddings " : "",
            lk_model_quant_embed(m) != LK_QTYPE_F32 ? lk_qtype_name(lk_model_quant_embed(m)) : "");
    if (k < n)
        snprintf(buf + k, n - k, ", %s compute", rec.compute);
}

/* The numbers in words: what was scored, and how. */
static void explain(const eval_args *a, const eval_acc *acc)
{
    const char *file = a->data->count ? a->data->filename[0] : NULL;
    printf("  loss: the mean next-token cross-entropy (nats) over %lld scored tokens",
           (long long)acc->count);
    if (a->ids->count)
        printf(" of the ids given");
    else if (a->text->count || !acc->dataset)
        printf(" of the %s (windows of %s)", file ? "file read as one text" : "text",
               a->ctx->count ? "--ctx tokens" : "the model's context");
    else
        printf(" of %lld examples of %s: only their trained tokens (answers) count, prompts "
               "and padding do not; each example on its own, never packed with others",
               (long long)acc->examples, file);
    printf("; perplexity = exp(loss)%s\n",
           acc->teacher ? "; kl_to_teacher: the mean KL(teacher || model) per scored token" : "");
}

static int report(const cli_common *c, const eval_args *a, const char *what, const eval_acc *acc)
{
    if (acc->count == 0) {
        fprintf(stderr,
                "%s: error: no token to score (the input needs at least 2 tokens with "
                "a label)\n",
                TOOL);
        return CLI_FAIL;
    }
    double loss = acc->nll / (double)acc->count;
    if (!isfinite(loss)) {
        fprintf(stderr, "%s: error: loss is not finite (%g)\n", TOOL, loss);
        return CLI_FAIL;
    }
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "model", a->model->filename[0]);
        cJSON_AddStringToObject(j, "what", what);
        cJSON_AddNumberToObject(j, "loss", loss);
        cJSON_AddNumberToObject(j, "perplexity", exp(loss));
        cJSON_AddNumberToObject(j, "tokens", (double)acc->count);
        cJSON_AddNumberToObject(j, "examples", (double)acc->examples);
        if (acc->teacher)
            cJSON_AddNumberToObject(j, "kl", acc->kl / (double)acc->count);
        cli_json_emit(j);
    } else if (acc->teacher) {
        printf("%s: loss %.6f  perplexity %.4f  kl_to_teacher %.6f  tokens %lld\n", what, loss,
               exp(loss), acc->kl / (double)acc->count, (long long)acc->count);
        explain(a, acc);
    } else {
        printf("%s: loss %.6f  perplexity %.4f  tokens %lld\n", what, loss, exp(loss),
               (long long)acc->count);
        explain(a, acc);
    }
    return CLI_OK;
}

static lk_status run(const eval_args *a, const cli_common *c, const lk_model *m, eval_acc *acc)
{
    int64_t ctx = a->ctx->count ? a->ctx->ival[0] : 0;
    if (ctx > lk_model_get_config(m)->max_position)
        cli_warn("--ctx %lld is longer than the model's context of %lld tokens: tokens past it "
                 "are scored at positions it was never trained on",
                 (long long)ctx, (long long)lk_model_get_config(m)->max_position);
    if (a->ids->count) {
        int32_t *tok = NULL;
        int64_t n = 0;
        if (cli_parse_ids(a->ids->sval[0], &tok, &n) != 0)
            return LK_ERR_ARG; /* checked before the model was loaded */
        lk_status s = LK_OK;
        if (n >= 2)
            s = acc->teacher ? lk_model_kl_labels(m, acc->teacher, tok, NULL, n, ctx, &acc->nll,
                                                  &acc->kl, &acc->count)
                             : lk_model_nll(m, tok, n, ctx, &acc->nll, &acc->count);
        acc->examples = 1;
        free(tok);
        return s;
    }
    lk_tokenizer *tok = NULL;
    lk_status s = lk_tokenizer_load(a->model->filename[0], &tok);
    cli_score sc = {.teacher = acc->teacher, .progress = isatty(2) && !c->quiet->count};
    if (s == LK_OK && a->text->count)
        s = cli_score_text(m, tok, a->text->sval[0], strlen(a->text->sval[0]), ctx, &sc);
    else if (s == LK_OK)
        s = cli_score_file(TOOL, m, tok, a->data->filename[0],
                           a->fields->count ? a->fields->sval[0] : NULL, ctx, &sc);
    acc->nll += sc.nll;
    acc->kl += sc.kl;
    acc->count += sc.count;
    acc->examples += sc.examples;
    acc->dataset = sc.dataset;
    lk_tokenizer_free(tok);
    return s;
}

/* Examples answered: all, or --eval-max of them spread evenly (example floor(i·E/n)), as
 * lora-train's --eval-max picks them. */
static int64_t sample_size(const eval_args *a, int64_t n_ex)
{
    int64_t n = a->eval_max->count ? a->eval_max->ival[0] : n_ex;
    return n < n_ex ? n : n_ex;
}

static void print_answer(int64_t k, const struct lk_answer *r)
{
    printf("--- example %lld (line %lld): %s\nprompt:\n%s\nreply:     %s\nreference: %s\n",
           (long long)k + 1, (long long)r->line, r->correct ? "right" : "wrong", r->prompt,
           r->reply, r->reference);
}

static cJSON *answer_json(const struct lk_answer *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", (double)r->line);
    cJSON_AddStringToObject(o, "prompt", r->prompt);
    cJSON_AddStringToObject(o, "reply", r->reply);
    cJSON_AddStringToObject(o, "reference", r->reference);
    cJSON_AddBoolToObject(o, "correct", r->correct);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)r->n_prompt);
    cJSON_AddNumberToObject(o, "reply_tokens", (double)r->n_reply);
    return o;
}

/* Answer the sample of --data's examples and report the accuracy. */
static lk_status answer_all(const eval_args *a, const cli_common *c, const lk_model *m,
                            const struct lk_answer_params *ap, const char *what)
{
    const char *path = a->data->filename[0];
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = lk_model_get_config(m)->max_position; /* the whole example */
    dp.pack = 0;
    dp.shuffle = 0;
    dp.fields = a->fields->count ? a->fields->sval[0] : NULL;
    lk_tokenizer *tok = NULL;
    lk_dataset *d = NULL;
    lk_status s = lk_tokenizer_load(a->model->filename[0], &tok);
    if (s == LK_OK)
        s = lk_dataset_load(path, tok, &dp, &d);
    int64_t n_ex = s == LK_OK ? lk_dataset_get_stats(d)->examples : 0, n = sample_size(a, n_ex);
    int64_t right = 0, k = 0;
    int progress = isatty(2) && !c->quiet->count, json = c->json->count > 0;
    cJSON *results = json ? cJSON_CreateArray() : NULL;
    for (; k < n && s == LK_OK; k++) {
        struct lk_answer r;
        s = lk_dataset_answer(m, tok, d, n < n_ex ? k * n_ex / n : k, ap, &r);
        if (s != LK_OK)
            break;
        right += r.correct;
        if (json)
            cJSON_AddItemToArray(results, answer_json(&r));
        else if (c->verbose->count)
            print_answer(k, &r);
        lk_answer_free(&r);
        if (progress)
            cli_line("answering %s: %lld/%lld examples, %lld right", path, (long long)k + 1,
                     (long long)n, (long long)right);
    }
    cli_line_clear();
    if (s == LK_OK && json) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "model", a->model->filename[0]);
        cJSON_AddStringToObject(j, "what", what);
        cJSON_AddNumberToObject(j, "examples", (double)n);
        cJSON_AddNumberToObject(j, "correct", (double)right);
        cJSON_AddNumberToObject(j, "accuracy", n ? (double)right / (double)n : 0);
        if (ap->match)
            cJSON_AddStringToObject(j, "match", ap->match);
        else
            cJSON_AddNullToObject(j, "match");
        cJSON_AddNumberToObject(j, "max_new_tokens", (double)ap->gen.max_new_tokens);
        cJSON_AddItemToObject(j, "results", results);
        results = NULL;
        cli_json_emit(j);
    } else if (s == LK_OK) {
        printf("%s: accuracy %lld/%lld (%.1f%%)\n", what, (long long)right, (long long)n,
               n ? 100.0 * (double)right / (double)n : 0.0);
        printf("  accuracy: the share of %lld examples of %s whose greedy reply (at most %lld "
               "tokens, up to the end of the turn) %s%s%s\n",
               (long long)n, path, (long long)ap->gen.max_new_tokens,
               ap->match ? "matches the pattern '"
                         : "equals the reference reply (whitespace "
                           "runs read as one space, ends stripped)",
               ap->match ? ap->match : "", ap->match ? "'" : "");
    }
    cJSON_Delete(results);
    lk_dataset_free(d);
    lk_tokenizer_free(tok);
    return s;
}

/* The --generate options that do not go with scoring the loss, and those that need it. */
static int check_generate(const eval_args *a)
{
    if (!a->generate->count) {
        const char *opt = a->match->count      ? "--match"
                          : a->nnew->count     ? "--max-new-tokens"
                          : a->eval_max->count ? "--eval-max"
                                               : NULL;
        return opt ? cli_usage_error(TOOL, "%s needs --generate", opt) : -1;
    }
    if (!a->data->count)
        return cli_usage_error(TOOL, "--generate needs --data (examples with reference replies)");
    if (a->teacher->count || a->ctx->count)
        return cli_usage_error(TOOL, "--generate does not go with %s",
                               a->teacher->count ? "--teacher" : "--ctx");
    int rc = cli_check_range(TOOL, a->eval_max, 1, INT64_MAX, NULL);
    return rc >= 0 ? rc : cli_check_range(TOOL, a->nnew, 0, INT64_MAX, NULL);
}

/* --generate's options into the library's, checked. */
static int map_answer(const eval_args *a, struct lk_answer_params *ap)
{
    *ap = lk_answer_params_default();
    if (a->match->count)
        ap->match = a->match->sval[0];
    CLI_SET_INT(a->nnew, ap->gen.max_new_tokens);
    return cli_usage_status(TOOL, lk_answer_params_check(ap));
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init_noseed(&c);
    eval_args a;
    a.model = arg_file1("m", "model", "DIR|GGUF",
                        "model folder (config.json, safetensors, tokenizer) or GGUF file");
    a.adapter = arg_strn("a", "adapter", "DIR[:scale]", 0, 8,
                         "LoRA adapter to apply (PEFT folder or GGUF LoRA), repeatable");
    a.text = arg_str0(NULL, "text", "STR", "text to score");
    a.quant = arg_str0(NULL, "quant", "TYPE",
                       "base format: none (f32), nf4, q4_0, iq4_nl, q8_0 (default: the one the "
                       "adapter was trained on, else none)");
    a.quant_embed = arg_str0(NULL, "quant-embed", "TYPE", "embeddings/LM head: f32 or q8_0");
    a.compute = cli_compute_arg();
    a.memory_limit = cli_memory_limit_arg();
    a.data = arg_file0(NULL, "data", "FILE",
                       "plain text, or JSONL/JSON examples (any lora-train "
                       "format; only trained tokens are scored)");
    a.ids = arg_str0(NULL, "ids", "1,2,3", "token ids to score (no tokenizer needed)");
    a.fields = arg_str0(NULL, "fields", "K=COL,...",
                        "column names of --data (e.g. "
                        "prompt=question,completion=answer)");
    a.ctx = arg_int0(NULL, "ctx", "N",
                     "window length in tokens (default: the model's context, "
                     "at most 4096)");
    a.teacher = arg_str0(NULL, "teacher", "DIR|self",
                         "also report the mean KL(teacher || model) per token; self: this "
                         "model's folder, unquantised");
    a.teacher_adapter =
        arg_strn(NULL, "teacher-adapter", "DIR[:scale]", 0, 8, "adapter applied to the teacher");
    a.teacher_quant =
        arg_str0(NULL, "teacher-quant", "TYPE",
                 "teacher format: none, nf4, ... (default: the base --teacher-adapter was "
                 "trained on, else none)");
    a.generate = arg_lit0(NULL, "generate",
                          "answer each example of --data (greedy; its prompt as lora-train "
                          "renders it, chat messages through the chat template) and score the "
                          "replies against the references: accuracy");
    a.match = arg_str0(NULL, "match", "REGEX",
                       "with --generate: a reply is right when it matches this PCRE2 pattern "
                       "(default: when it equals the reference, whitespace runs read as one "
                       "space)");
    a.nnew = arg_int0("n", "max-new-tokens", "N",
                      cli_help("with --generate: tokens per reply at most (default %lld)",
                               (long long)lk_generate_params_default().max_new_tokens));
    a.eval_max = arg_int0(NULL, "eval-max", "N",
                          "with --generate: answer N examples spread evenly over --data "
                          "(default: all)");
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model,
                  a.adapter,
                  a.quant,
                  a.quant_embed,
                  a.compute,
                  a.memory_limit,
                  a.text,
                  a.data,
                  a.ids,
                  a.fields,
                  a.ctx,
                  a.teacher,
                  a.teacher_adapter,
                  a.teacher_quant,
                  a.generate,
                  a.match,
                  a.nnew,
                  a.eval_max,
                  CLI_COMMON_ENTRIES_NOSEED(c),
                  end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Mean next-token cross-entropy (nats), perplexity and token count.",
                       "Sequences longer than --ctx are scored in consecutive windows.\n"
                       "With --generate, prints the accuracy of the model's replies instead "
                       "(-v: each example's prompt, reply, reference and verdict).\n");
    if (rc >= 0)
        goto done;
    int32_t *probe = NULL;
    int64_t np;
    if (a.text->count + a.data->count + a.ids->count != 1) {
        rc = cli_usage_error(TOOL, "give exactly one of --text, --data, --ids");
        goto done;
    }
    if (a.ids->count && cli_parse_ids(a.ids->sval[0], &probe, &np) != 0) {
        rc = cli_usage_error(TOOL, "--ids: expected comma-separated non-negative integers");
        goto done;
    }
    free(probe);
    if (!a.teacher->count && (a.teacher_adapter->count || a.teacher_quant->count)) {
        rc = cli_usage_error(TOOL, "--teacher-adapter and --teacher-quant need --teacher");
        goto done;
    }
    if ((rc = cli_check_range(TOOL, a.ctx, 2, INT64_MAX, NULL)) >= 0)
        goto done;
    struct lk_answer_params ap;
    if ((rc = check_generate(&a)) >= 0 || (a.generate->count && (rc = map_answer(&a, &ap)) >= 0))
        goto done;
    struct lk_dataset_params dp = lk_dataset_params_default(); /* --fields is read with --data */
    if (a.fields->count)
        dp.fields = a.fields->sval[0];
    if ((rc = cli_usage_status(TOOL, lk_dataset_params_check(&dp))) >= 0)
        goto done;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    if ((rc = cli_parse_quant(TOOL, a.quant, a.quant_embed, &mp)) >= 0 ||
        (rc = cli_parse_compute(TOOL, a.compute, &mp)) >= 0 ||
        (rc = cli_parse_memory_limit(TOOL, a.memory_limit, &mp)) >= 0)
        goto done;
    lk_model *m = NULL;
    eval_acc acc = {0};
    cli_adapters ad = {0};
    cli_teacher teacher = {0};
    if ((rc = cli_adapters_load(TOOL, a.adapter, NULL, &ad)) >= 0 ||
        (rc = cli_base_params(TOOL, &ad, a.quant, a.quant_embed, a.compute, &mp)) >= 0)
        goto free_model;
    if (a.teacher->count &&
        (rc = cli_teacher_load(TOOL, a.teacher->sval[0], a.model->filename[0], a.teacher_adapter,
                               a.teacher_quant, a.compute, mp.n_threads, mp.memory_limit, 0,
                               &teacher)) >= 0)
        goto free_model;
    acc.teacher = teacher.m;
    if (teacher.m) /* the model's --compute auto: within what the teacher, loaded first, leaves */
        mp.memory_held = lk_model_weight_bytes(teacher.m);
    lk_status s = lk_model_load(a.model->filename[0], &mp, &m);
    if (s == LK_OK && (rc = cli_adapters_attach(TOOL, &ad, m, a.model->filename[0])) >= 0)
        goto free_model;
    char what[4400] = "";
    if (s == LK_OK)
        label(a.model->filename[0], &ad, m, what, sizeof what);
    if (s == LK_OK && a.generate->count) {
        s = answer_all(&a, &c, m, &ap, what);
        rc = s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
        goto free_model;
    }
    if (s == LK_OK)
        s = run(&a, &c, m, &acc);
    rc = s == LK_OK ? report(&c, &a, what, &acc)
                    : (s == LK_ERR_IO && !*lk_last_error() ? CLI_FAIL : cli_fail(TOOL, s));
free_model:
    lk_model_free(m);
    cli_adapters_free(&ad);
    cli_teacher_free(&teacher);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
