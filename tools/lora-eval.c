/* lora-eval — mean next-token cross-entropy and perplexity of a model over a text, a file or a
 * list of token ids. Plain-text files are scored as one document; JSONL/JSON files go through the
 * dataset loader (any supported format), so prompt and padding tokens are not scored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-eval";

typedef struct {
    double nll;
    int64_t count, examples;
} eval_acc;

static int report(const cli_common *c, const char *model, const eval_acc *acc)
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
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddNumberToObject(j, "loss", loss);
        cJSON_AddNumberToObject(j, "perplexity", exp(loss));
        cJSON_AddNumberToObject(j, "tokens", (double)acc->count);
        cJSON_AddNumberToObject(j, "examples", (double)acc->examples);
        cli_json_emit(j);
    } else {
        printf("loss %.6f  perplexity %.4f  tokens %lld\n", loss, exp(loss), (long long)acc->count);
    }
    return CLI_OK;
}

typedef struct {
    struct arg_file *model, *data;
    struct arg_str *adapter, *text, *ids, *fields, *quant, *quant_embed;
    struct arg_int *ctx;
} eval_args;

static lk_status run(const eval_args *a, const cli_common *c, const lk_model *m, eval_acc *acc)
{
    int64_t ctx = a->ctx->count ? a->ctx->ival[0] : 0;
    if (a->ids->count) {
        int32_t *tok = NULL;
        int64_t n = 0;
        if (cli_parse_ids(a->ids->sval[0], &tok, &n) != 0)
            return LK_ERR_ARG; /* checked before the model was loaded */
        lk_status s = n >= 2 ? lk_model_nll(m, tok, n, ctx, &acc->nll, &acc->count) : LK_OK;
        acc->examples = 1;
        free(tok);
        return s;
    }
    lk_tokenizer *tok = NULL;
    lk_status s = lk_tokenizer_load(a->model->filename[0], &tok);
    cli_score sc = {0, 0, 0};
    if (s == LK_OK && a->text->count)
        s = cli_score_text(m, tok, a->text->sval[0], strlen(a->text->sval[0]), ctx, &sc);
    else if (s == LK_OK)
        s = cli_score_file(TOOL, m, tok, a->data->filename[0],
                           a->fields->count ? a->fields->sval[0] : NULL, ctx, &sc);
    acc->nll += sc.nll;
    acc->count += sc.count;
    acc->examples += sc.examples;
    lk_tokenizer_free(tok);
    (void)c;
    return s;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    eval_args a;
    a.model = arg_file1("m", "model", "DIR", "model folder (config.json, safetensors, tokenizer)");
    a.adapter = arg_strn("a", "adapter", "DIR[:scale]", 0, 8,
                         "LoRA adapter to apply (PEFT folder or GGUF LoRA), repeatable");
    a.text = arg_str0(NULL, "text", "STR", "text to score");
    a.quant = arg_str0(NULL, "quant", "TYPE", "base format: none (f32), nf4, q4_0, iq4_nl, q8_0");
    a.quant_embed = arg_str0(NULL, "quant-embed", "TYPE", "embeddings/LM head: f32 or q8_0");
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
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model, a.adapter, a.quant, a.quant_embed,         a.text, a.data,
                  a.ids,   a.fields,  a.ctx,   CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Mean next-token cross-entropy (nats), perplexity and token count.",
                       "Sequences longer than --ctx are scored in consecutive windows.\n");
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
    if (a.ctx->count && a.ctx->ival[0] < 2) {
        rc = cli_usage_error(TOOL, "--ctx: expected >= 2, got %d", a.ctx->ival[0]);
        goto done;
    }
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(&c);
    if ((rc = cli_parse_quant(TOOL, a.quant, a.quant_embed, &mp)) >= 0)
        goto done;
    lk_model *m = NULL;
    eval_acc acc = {0, 0, 0};
    cli_adapters ad = {0};
    lk_status s = lk_model_load(a.model->filename[0], &mp, &m);
    if (s == LK_OK && (rc = cli_adapters_load(TOOL, a.adapter, lk_model_get_config(m), &ad)) >= 0)
        goto free_model;
    for (int i = 0; i < ad.n && s == LK_OK; i++)
        s = lk_model_attach_adapter(m, ad.a[i], ad.w[i]);
    if (s == LK_OK)
        s = run(&a, &c, m, &acc);
    rc = s == LK_OK ? report(&c, a.model->filename[0], &acc)
                    : (s == LK_ERR_IO && !*lk_last_error() ? CLI_FAIL : cli_fail(TOOL, s));
free_model:
    lk_model_free(m);
    cli_adapters_free(&ad);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
