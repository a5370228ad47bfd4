/* lora-generate — continue a prompt with a model: greedy (--temp 0) or sampled (temperature,
 * top-k, top-p, --seed), using the KV cache so each new token costs one token's forward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-generate";

typedef struct {
    int32_t *ids; /* prompt followed by generated ids */
    int64_t n_prompt, n, cap;
} gen_seq;

static int is_eos(const struct lk_model_config *cfg, int32_t id)
{
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == id)
            return 1;
    return 0;
}

/* Generate up to n_new tokens after seq->ids[0..n_prompt). */
static lk_status generate(const lk_model *m, gen_seq *seq, int64_t n_new, lk_sampler *smp,
                          int stop_at_eos, int stream)
{
    const struct lk_model_config *cfg = lk_model_get_config(m);
    int64_t n_ctx = seq->n_prompt + n_new;
    lk_session *s;
    lk_status st = lk_session_create(m, n_ctx, &s);
    if (st != LK_OK)
        return st;
    float *logits = malloc((size_t)cfg->vocab_size * sizeof(float));
    if (!logits) {
        lk_session_free(s);
        return LK_ERR_NOMEM;
    }
    st = lk_session_eval(s, seq->ids, seq->n_prompt, logits, 0);
    for (int64_t i = 0; i < n_new && st == LK_OK; i++) {
        int32_t next = lk_sampler_sample(smp, logits, cfg->vocab_size);
        seq->ids[seq->n++] = next;
        if (stream) {
            printf("%s%d", i ? "," : "", next);
            fflush(stdout);
        }
        if (stop_at_eos && is_eos(cfg, next))
            break;
        if (i + 1 < n_new)
            st = lk_session_eval(s, &next, 1, logits, 0);
    }
    free(logits);
    lk_session_free(s);
    return st;
}

static void print_result(const cli_common *c, const gen_seq *seq)
{
    if (!c->json->count) {
        printf("\n");
        return;
    }
    cJSON *j = cli_json_new(c);
    cJSON *a = cJSON_CreateArray(), *p = cJSON_CreateArray();
    for (int64_t i = 0; i < seq->n_prompt; i++)
        cJSON_AddItemToArray(p, cJSON_CreateNumber(seq->ids[i]));
    for (int64_t i = seq->n_prompt; i < seq->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(seq->ids[i]));
    cJSON_AddItemToObject(j, "prompt_ids", p);
    cJSON_AddItemToObject(j, "ids", a);
    cli_json_emit(j);
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c, 1);
    struct arg_file *model = arg_file1("m", "model", "DIR", "model folder");
    struct arg_str *adapter = arg_strn("a", "adapter", "DIR[:scale]", 0, 8,
                                       "LoRA adapter to apply (PEFT folder or GGUF LoRA), "
                                       "repeatable");
    struct arg_str *ids = arg_str0(NULL, "ids", "1,2,3", "prompt as token ids");
    struct arg_int *nnew = arg_int0("n", NULL, "N", "tokens to generate (default 128)");
    struct arg_dbl *temp = arg_dbl0(NULL, "temp", "T", "temperature, 0 = greedy (default 0.8)");
    struct arg_dbl *top_p = arg_dbl0(NULL, "top-p", "P", "nucleus sampling mass (default 0.95)");
    struct arg_int *top_k = arg_int0(NULL, "top-k", "K", "keep the K most likely (default 40, 0 = all)");
    struct arg_lit *ignore_eos = arg_lit0(NULL, "ignore-eos", "do not stop at end-of-sequence");
    struct arg_end *end = arg_end(20);
    void *at[] = {model,      adapter, ids, nnew, temp, top_p, top_k,
                  ignore_eos, CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Continue a prompt: greedy with --temp 0, else temperature/top-k/top-p "
                       "sampling seeded by --seed.",
                       NULL);
    if (rc >= 0)
        goto done;
    struct lk_sampler_params sp = lk_sampler_params_default();
    sp.temperature = temp->count ? (float)temp->dval[0] : 0.8f;
    sp.top_p = top_p->count ? (float)top_p->dval[0] : 0.95f;
    sp.top_k = top_k->count ? top_k->ival[0] : 40;
    sp.seed = cli_seed(&c);
    int64_t n_new = nnew->count ? nnew->ival[0] : 128;
    if (n_new < 0) {
        rc = cli_usage_error(TOOL, "-n: expected >= 0");
        goto done;
    }
    gen_seq seq = {0};
    if (!ids->count || cli_parse_ids(ids->sval[0], &seq.ids, &seq.n_prompt) != 0) {
        rc = cli_usage_error(TOOL, "give the prompt with --ids (comma-separated token ids)");
        goto done;
    }
    seq.n = seq.n_prompt;
    seq.ids = realloc(seq.ids, (size_t)(seq.n_prompt + n_new) * sizeof *seq.ids);
    lk_sampler *smp = NULL;
    lk_model *m = NULL;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    lk_status s = seq.ids ? lk_sampler_create(&sp, &smp) : LK_ERR_NOMEM;
    if (s == LK_OK)
        s = lk_model_load(model->filename[0], &mp, &m);
    cli_adapters ad = {0};
    if (s == LK_OK && (rc = cli_adapters_load(TOOL, adapter, lk_model_get_config(m), &ad)) >= 0)
        goto free_all;
    for (int i = 0; i < ad.n && s == LK_OK; i++)
        s = lk_model_attach_adapter(m, ad.a[i], ad.w[i]);
    if (s == LK_OK)
        s = generate(m, &seq, n_new, smp, !ignore_eos->count, !c.json->count);
    if (s == LK_OK)
        print_result(&c, &seq);
    rc = s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
free_all:
    lk_model_free(m);
    cli_adapters_free(&ad);
    lk_sampler_free(smp);
    free(seq.ids);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
