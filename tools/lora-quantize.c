/* lora-quantize — turn a float Hugging Face model folder into a quantised base: lorakit's folder
 * (mapped zero-copy by lora-eval/-generate/-train -m OUT), a llama.cpp GGUF file, or a
 * bitsandbytes NF4 folder; or re-quantise a GGUF model file into another GGUF type. Prints each
 * tensor's round-trip RMSE, max abs error and bits/weight. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-quantize";

typedef struct {
    cJSON *tensors; /* --json: one object per tensor */
    int progress;
    int header; /* the table's header was printed (with the first tensor: not before a failure) */
    double se, n, max_abs, bytes, qbytes, qn; /* totals: squared error, values, stored bytes */
} report;

static void on_tensor(void *user, const struct lk_quantize_tensor *t)
{
    report *r = user;
    double n = (double)(t->rows * t->cols);
    r->se += t->rmse * t->rmse * n;
    r->n += n;
    r->bytes += t->bits_per_weight * n / 8;
    if (t->type != LK_QTYPE_F32) {
        r->qbytes += t->bits_per_weight * n / 8;
        r->qn += n;
    }
    r->max_abs = t->max_abs > r->max_abs ? t->max_abs : r->max_abs;
    if (r->tensors) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON *sh = cJSON_CreateArray();
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->rows));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->cols));
        cJSON_AddItemToObject(o, "shape", sh);
        cJSON_AddStringToObject(o, "type", lk_qtype_name(t->type));
        cJSON_AddNumberToObject(o, "rmse", t->rmse);
        cJSON_AddNumberToObject(o, "max_abs_err", t->max_abs);
        cJSON_AddNumberToObject(o, "bits_per_weight", t->bits_per_weight);
        cJSON_AddItemToArray(r->tensors, o);
    } else {
        if (!r->header++)
            printf("%-44s %15s %-6s %10s %10s %7s\n", "tensor", "shape", "type", "rmse", "max_abs",
                   "bits/w");
        printf("%-44s %6lld x %-6lld %-6s %10.3e %10.3e %7.3f\n", t->name, (long long)t->rows,
               (long long)t->cols, lk_qtype_name(t->type), t->rmse, t->max_abs, t->bits_per_weight);
    }
    if (r->progress)
        cli_line("%s: tensor %lld/%lld", TOOL, (long long)t->index + 1, (long long)t->count);
}

static void print_summary(const cli_common *c, report *r, const char *in, const char *out,
                          const struct lk_quantize_params *p, const char *format, double secs)
{
    double rmse = r->n > 0 ? sqrt(r->se / r->n) : 0;
    double bpw = r->qn > 0 ? 8 * r->qbytes / r->qn : 0;
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "model", in);
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddStringToObject(j, "format", format);
        cJSON_AddStringToObject(j, "type", lk_qtype_name(p->type));
        cJSON_AddStringToObject(j, "quant_embed", lk_qtype_name(p->embed_type));
        cJSON_AddNumberToObject(j, "rmse", rmse);
        cJSON_AddNumberToObject(j, "max_abs_err", r->max_abs);
        cJSON_AddNumberToObject(j, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(j, "bytes", r->bytes);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddItemToObject(j, "tensors", r->tensors);
        r->tensors = NULL;
        cli_json_emit(j);
        return;
    }
    printf("total: RMSE %.3e, max abs error %.3e, %.3f bits/weight over the quantised tensors; "
           "%.0f bytes of matrices\n",
           rmse, r->max_abs, bpw, r->bytes);
    printf("wrote %s (%s, %s, embeddings %s) in %.2f s\n", out, format, lk_qtype_name(p->type),
           lk_qtype_name(p->embed_type), secs);
}

/* --format, --type, --quant-embed, --double-quant onto p, checked by the library; returns -1 to
 * go on or 2 after a usage message. */
static int parse_opts(const struct arg_str *type, const struct arg_str *qe,
                      const struct arg_str *fmt, const struct arg_lit *dq,
                      struct lk_quantize_params *p)
{
    if (fmt->count && lk_qformat_from_name(fmt->sval[0], &p->format) != LK_OK)
        return cli_usage_status(TOOL, LK_ERR_ARG);
    if (lk_qtype_from_name(type->sval[0], &p->type) != LK_OK)
        return cli_usage_error(TOOL, "--type: %s", lk_last_error());
    if (qe->count && lk_qtype_from_name(qe->sval[0], &p->embed_type) != LK_OK)
        return cli_usage_error(TOOL, "--quant-embed: %s", lk_last_error());
    p->double_quant = dq->count > 0;
    return cli_usage_status(TOOL, lk_quantize_params_check(p));
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init_noseed(&c);
    struct arg_file *model = arg_file1("m", "model", "DIR|GGUF", "float model folder, or .gguf");
    struct arg_str *type = arg_str1(NULL, "type", "T",
                                    "nf4|q4_0|iq4_nl|q8_0; gguf also q4_1|q5_0|q5_1|q2_k|q3_k|"
                                    "q4_k|q5_k|q6_k|iq4_xs");
    struct arg_file *out = arg_file1("o", "out", "OUT", "output folder (FILE.gguf for gguf)");
    struct arg_str *qe = arg_str0(NULL, "quant-embed", "T", "embeddings/LM head: f32|q8_0");
    struct arg_str *fmt = arg_str0(NULL, "format", "F", "lorakit (default)|gguf|hf-bnb");
    struct arg_lit *dq = arg_lit0(NULL, "double-quant", "hf-bnb: 8-bit absmax (bnb double quant)");
    struct arg_lit *force = arg_lit0(NULL, "force", "replace an existing output");
    struct arg_end *end = arg_end(20);
    void *at[] = {model, type, out, qe, fmt, dq, force, CLI_COMMON_ENTRIES_NOSEED(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Quantise a model folder into a base that loads without re-quantising.",
                       "Formats: lorakit = folder for lora-eval/-generate/-train -m OUT (mapped,\n"
                       "  64-byte aligned rows); gguf = llama.cpp model (every GGUF type,\n"
                       "  bit-exact with llama-quantize without an imatrix; a tensor whose rows\n"
                       "  are not whole blocks gets llama-quantize's fallback type, f16 at worst,\n"
                       "  with a warning); hf-bnb = bitsandbytes 4-bit nf4 folder.\n"
                       "A .gguf model is re-quantised into --format gguf: its matrices are\n"
                       "  dequantised and quantised again (losing precision, with a warning, as\n"
                       "  llama-quantize --allow-requantize), metadata and norms kept.\n"
                       "Columns: tensor, shape, type, RMSE and max abs error of the round trip,\n"
                       "bits per weight (scales and block padding included).\n");
    if (rc >= 0)
        goto done;
    struct lk_quantize_params p = lk_quantize_params_default();
    if ((rc = parse_opts(type, qe, fmt, dq, &p)) >= 0)
        goto done;
    report r = {.progress = !c.quiet->count && !c.json->count && isatty(STDERR_FILENO)};
    if (c.json->count)
        r.tensors = cJSON_CreateArray();
    p.n_threads = cli_threads(&c);
    p.force = force->count > 0;
    p.on_tensor = on_tensor;
    p.user = &r;
    double t0 = cli_now();
    lk_status s = lk_quantize_model(model->filename[0], out->filename[0], &p);
    if (r.progress)
        cli_line_end();
    if (s == LK_OK) {
        print_summary(&c, &r, model->filename[0], out->filename[0], &p, lk_qformat_name(p.format),
                      cli_now() - t0);
        rc = CLI_OK;
    } else {
        rc = cli_fail(TOOL, s);
    }
    cJSON_Delete(r.tensors);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
