/* lora-eval — mean next-token cross-entropy and perplexity of a model over a text, a file or a
 * list of token ids. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-eval";

typedef struct {
    double nll;
    int64_t count;
} eval_acc;

static lk_status eval_ids(const lk_model *m, const int32_t *ids, int64_t n, int64_t ctx,
                          eval_acc *acc)
{
    if (n < 2)
        return LK_OK; /* nothing to predict */
    return lk_model_nll(m, ids, n, ctx, &acc->nll, &acc->count);
}

static int report(const cli_common *c, const char *model, const eval_acc *acc)
{
    if (acc->count == 0) {
        fprintf(stderr, "%s: error: no token to predict (the input needs at least 2 tokens)\n",
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
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddNumberToObject(j, "loss", loss);
        cJSON_AddNumberToObject(j, "perplexity", exp(loss));
        cJSON_AddNumberToObject(j, "tokens", (double)acc->count);
        cli_json_emit(j);
    } else {
        printf("loss %.6f  perplexity %.4f  tokens %lld\n", loss, exp(loss),
               (long long)acc->count);
    }
    return CLI_OK;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c, 1);
    struct arg_file *model = arg_file1("m", "model", "DIR", "model folder (config.json + safetensors)");
    struct arg_str *adapter = arg_strn("a", "adapter", "DIR[:scale]", 0, 8,
                                       "LoRA adapter to apply (PEFT folder or GGUF LoRA), "
                                       "repeatable");
    struct arg_str *ids = arg_str0(NULL, "ids", "1,2,3", "token ids to evaluate");
    struct arg_int *ctx = arg_int0(NULL, "ctx", "N", "window length in tokens (default: the "
                                                      "model's context, at most 4096)");
    struct arg_end *end = arg_end(20);
    void *at[] = {model, adapter, ids, ctx, CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Mean next-token cross-entropy (nats), perplexity and token count.",
                       "Sequences longer than --ctx are scored in consecutive windows.\n");
    if (rc >= 0)
        goto done;
    int32_t *tok = NULL;
    int64_t n = 0;
    if (!ids->count) {
        rc = cli_usage_error(TOOL, "give --ids");
        goto done;
    }
    if (cli_parse_ids(ids->sval[0], &tok, &n) != 0) {
        rc = cli_usage_error(TOOL, "--ids: expected comma-separated non-negative integers");
        goto done;
    }
    if (ctx->count && ctx->ival[0] < 2) {
        free(tok);
        rc = cli_usage_error(TOOL, "--ctx: expected >= 2, got %d", ctx->ival[0]);
        goto done;
    }
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    lk_model *m = NULL;
    lk_status s = lk_model_load(model->filename[0], &mp, &m);
    eval_acc acc = {0, 0};
    cli_adapters ad = {0};
    if (s == LK_OK && (rc = cli_adapters_load(TOOL, adapter, lk_model_get_config(m), &ad)) >= 0)
        goto free_model;
    for (int i = 0; i < ad.n && s == LK_OK; i++)
        s = lk_model_attach_adapter(m, ad.a[i], ad.w[i]);
    if (s == LK_OK)
        s = eval_ids(m, tok, n, ctx->count ? ctx->ival[0] : 0, &acc);
    rc = s == LK_OK ? report(&c, model->filename[0], &acc) : cli_fail(TOOL, s);
free_model:
    lk_model_free(m);
    cli_adapters_free(&ad);
    free(tok);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
