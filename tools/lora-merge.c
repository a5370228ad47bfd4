/* lora-merge — merge LoRA/DoRA adapters (weighted: -a A:0.7 -a B:0.3) into a base model and write
 * a Hugging Face folder (f32/f16/bf16) or, for an output ending in .gguf, a llama.cpp GGUF model
 * (from a GGUF base: its tensor types kept).
 * Streams one tensor at a time; the output appears under its name only when complete. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-merge";

typedef struct {
    cJSON *tensors;        /* per-tensor report for --json (NULL otherwise) */
    int verbose, progress; /* progress: a counter on stderr when it is a terminal */
    int64_t n_merged_tensors;
    double max_err;
    const char *max_err_name;
    char max_name[128];
} merge_report;

static void on_tensor(void *user, const struct lk_merge_tensor *t)
{
    merge_report *r = user;
    if (t->n_merged)
        r->n_merged_tensors++;
    if (t->store_err > r->max_err || !r->max_err_name) {
        r->max_err = t->store_err;
        snprintf(r->max_name, sizeof r->max_name, "%s", t->name);
        r->max_err_name = r->max_name;
    }
    if (r->tensors) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddNumberToObject(o, "adapters", t->n_merged);
        cJSON_AddNumberToObject(o, "store_rel_err", t->store_err);
        cJSON_AddItemToArray(r->tensors, o);
    } else if (r->verbose) {
        printf("%-48s adapters %d  stored rel. error %.3g\n", t->name, t->n_merged, t->store_err);
    }
    if (r->progress)
        cli_line("%s: tensor %lld/%lld", TOOL, (long long)t->index + 1, (long long)t->count);
}

/* The base the adapters are merged into: --base-quant (none: the original weights), else the one
 * the first adapter records it was trained on (a quantised one: its dequantised weights, what the
 * adapter learned to correct). Sets p->base_quant and why[n]; says which on stderr and warns about
 * each adapter trained on another. Returns -1 to go on, or an exit code. */
static int choose_base(const struct arg_str *bq, const cli_adapters *ad, const char *model,
                       struct lk_merge_params *p, char *why, size_t n)
{
    struct lk_adapter_base b0 = {0};
    char d[96];
    if (ad->n > 0)
        lk_adapter_get_base(ad->a[0], &b0);
    int flag = bq->count > 0, none = flag && !strcasecmp(bq->sval[0], "none");
    p->base_quant = flag && !none ? bq->sval[0] : NULL;
    static char recorded[LK_ADAPTER_BASE_NAME]; /* p->base_quant outlives this call */
    snprintf(recorded, sizeof recorded, "%s", b0.quant);
    int gguf = !strcmp(b0.quant, "gguf"); /* a GGUF file's own types: nothing to dequantise */
    struct stat st;
    int gguf_model = stat(model, &st) == 0 && S_ISREG(st.st_mode); /* as lk_model_load decides */
    if (!flag && b0.recorded && !gguf && !gguf_model && strcasecmp(b0.quant, "f32") &&
        strcasecmp(b0.quant, "none"))
        p->base_quant = recorded;
    if (flag)
        snprintf(why, n, "as --base-quant %s asks", bq->sval[0]);
    else if (ad->n == 0)
        snprintf(why, n, "no adapter");
    else if (b0.recorded)
        snprintf(why, n, "%s was trained on the base %s%s", ad->path[0],
                 lk_adapter_base_describe(&b0, d, sizeof d),
                 p->base_quant ? "; --base-quant none merges into the original weights" : "");
    else
        snprintf(why, n,
                 "%s does not record the base it was trained on; give --base-quant TYPE "
                 "if it was a quantised one",
                 ad->path[0]);
    if (gguf_model && !p->base_quant)
        cli_note("merging into the GGUF file %s: each merged matrix dequantised from its own type "
                 "and quantised back to it (or --dtype)",
                 model);
    else if (p->base_quant)
        cli_note("merging into %s dequantised from %s: %s", model, p->base_quant, why);
    else
        cli_note("merging into the original weights of %s: %s", model, why);
    for (int i = 0; i < ad->n; i++) {
        struct lk_adapter_base b;
        lk_adapter_get_base(ad->a[i], &b);
        lk_qtype want, got = LK_QTYPE_F32;
        if (gguf_model && b.recorded && strcmp(b.quant, "gguf"))
            cli_warn("%s was trained on the base %s, but is merged into the GGUF file %s's own "
                     "tensor types: the merged model will not behave exactly as the adapter did "
                     "in training",
                     ad->path[i], lk_adapter_base_describe(&b, d, sizeof d), model);
        if (gguf_model)
            continue;
        if (b.recorded && !strcmp(b.quant, "gguf"))
            cli_warn("%s was trained on a GGUF model file's own tensor types, but is merged into "
                     "the weights of %s: the merged model will not behave exactly as the adapter "
                     "did in training",
                     ad->path[i], model);
        if (!b.recorded || lk_qtype_from_name(b.quant, &want) != LK_OK)
            continue;
        if (p->base_quant && lk_qtype_from_name(p->base_quant, &got) != LK_OK)
            continue; /* lk_merge_params_check names it */
        if (want != got)
            cli_warn("%s was trained on the base %s, but is merged into %s weights: the merged "
                     "model will not behave as the adapter did in training",
                     ad->path[i], lk_adapter_base_describe(&b, d, sizeof d),
                     p->base_quant ? p->base_quant : "the original");
        if (*b.quant_embed && strcasecmp(b.quant_embed, "f32"))
            cli_note("%s was trained with %s embeddings; the merged model keeps %s's (load it "
                     "with --quant-embed %s to match)",
                     ad->path[i], b.quant_embed, model, b.quant_embed);
    }
    return -1;
}

static void print_summary(const cli_common *c, merge_report *r, const cli_adapters *ad,
                          const char *base, const char *out, const struct lk_merge_params *p,
                          const char *why, double secs)
{
    const char *dtype = p->dtype;
    char used[96]; /* which base the adapters were added to */
    struct stat st;
    int own = !p->base_quant && stat(base, &st) == 0 && S_ISREG(st.st_mode); /* a GGUF base */
    if (p->base_quant)
        snprintf(used, sizeof used, "dequantised from %s", p->base_quant);
    else if (own)
        snprintf(used, sizeof used, "the GGUF file's own types, dequantised");
    else
        snprintf(used, sizeof used, "original (unquantised)");
    const char *fmt = strlen(out) > 5 && !strcmp(out + strlen(out) - 5, ".gguf") ? "gguf" : "hf";
    const char *kept = own ? "each tensor's own type" : *fmt == 'g' ? "f16" : "base dtype";
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < ad->n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "path", ad->path[i]);
            cJSON_AddNumberToObject(o, "weight", ad->w[i]);
            cJSON_AddItemToArray(a, o);
        }
        cJSON_AddStringToObject(j, "base", base);
        cJSON_AddStringToObject(j, "base_weights", used);
        cJSON_AddStringToObject(j, "base_reason", why);
        cJSON_AddItemToObject(j, "adapters", a);
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddStringToObject(j, "format", fmt);
        cJSON_AddStringToObject(j, "dtype", dtype ? dtype : own || *fmt != 'g' ? "base" : "f16");
        cJSON_AddNumberToObject(j, "merged_tensors", (double)r->n_merged_tensors);
        cJSON_AddNumberToObject(j, "max_store_rel_err", r->max_err);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "peak_rss_mib", cli_peak_rss_mib());
        cJSON_AddItemToObject(j, "tensors", r->tensors);
        r->tensors = NULL;
        cli_json_emit(j);
        return;
    }
    printf("merged %d adapter(s) into %lld tensors of %s (base weights: %s; %s)\n", ad->n,
           (long long)r->n_merged_tensors, base, used, why);
    printf("wrote %s (%s, %s) in %.2f s, peak RSS %.0f MiB\n", out, fmt,
           dtype ? dtype : kept, secs, cli_peak_rss_mib());
    printf("largest storage error: %.3g (%s)\n", r->max_err,
           r->max_err_name ? r->max_err_name : "-");
}

/* Held-out loss of a model folder (quantised at load as q says, computing as mc says) with the
 * adapters attached. */
static lk_status heldout_loss(const char *dir, const char *tok_dir, lk_qtype q,
                              const struct lk_model_params *mc, const cli_adapters *ad,
                              const char *data, double *loss)
{
    struct lk_model_params mp = *mc;
    mp.quant = q;
    lk_model *m = NULL;
    lk_tokenizer *tok = NULL;
    cli_score sc = {0};
    lk_status s = lk_model_load(dir, &mp, &m);
    for (int i = 0; ad && i < ad->n && s == LK_OK; i++)
        s = lk_model_attach_adapter(m, ad->a[i], ad->w[i]);
    if (s == LK_OK)
        s = lk_tokenizer_load(tok_dir, &tok);
    if (s == LK_OK)
        s = cli_score_file(TOOL, m, tok, data, NULL, 0, &sc);
    *loss = sc.count ? sc.nll / (double)sc.count : NAN;
    lk_tokenizer_free(tok);
    lk_model_free(m);
    return s;
}

/* --eval-data: the loss of base + adapters (on the 4-bit base with --base-quant) and of the
 * merged folder, and the change. */
static lk_status eval_change(const cli_common *c, const char *base, const char *out, const char *bq,
                             const struct lk_model_params *mc, const cli_adapters *ad,
                             const char *data)
{
    lk_qtype q = LK_QTYPE_F32;
    if (bq && lk_qtype_from_name(bq, &q) != LK_OK)
        return LK_ERR_ARG;
    double before, after;
    CLI_TRY(heldout_loss(base, base, q, mc, ad, data, &before));
    CLI_TRY(heldout_loss(out, base, LK_QTYPE_F32, mc, NULL, data, &after));
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "type", "eval");
        cJSON_AddNumberToObject(j, "loss_base_plus_adapters", before);
        cJSON_AddNumberToObject(j, "loss_merged", after);
        cJSON_AddNumberToObject(j, "loss_change", after - before);
        cli_json_emit(j);
    } else {
        printf("held-out loss on %s: base%s + adapters %.6f, merged %.6f (change %+.3g)\n", data,
               bq ? " (dequantised)" : "", before, after, after - before);
    }
    return LK_OK;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init_noseed(&c);
    struct arg_file *model = arg_file1("m", "model", "DIR|GGUF", "base model folder or .gguf file");
    struct arg_str *adapter = arg_strn("a", "adapter", "DIR[:W]", 0, 64,
                                       "adapter (PEFT folder or GGUF LoRA) with weight W "
                                       "(default 1); repeatable");
    struct arg_file *out = arg_file1("o", "out", "OUT", "output folder, or FILE.gguf");
    struct arg_str *dtype = arg_str0(NULL, "dtype", "T",
                                     "f32|f16|bf16 (folders); f16|f32|bf16|q8_0|q4_0|iq4_nl|"
                                     "q4_1|q5_0|q5_1|q2_k..q6_k|iq4_xs (.gguf)");
    struct arg_str *bq = arg_str0(NULL, "base-quant", "T",
                                  "merge onto the dequantised nf4|q4_0|iq4_nl|q8_0 base, or "
                                  "none (default: what the adapter was trained on)");
    struct arg_lit *force = arg_lit0(NULL, "force", "replace an existing output");
    struct arg_file *eval = arg_file0(NULL, "eval-data", "FILE",
                                      "held-out text or JSONL: loss before and after the merge "
                                      "(folder outputs)");
    struct arg_str *compute = cli_compute_arg(); /* --eval-data's forwards */
    struct arg_str *limit = cli_memory_limit_arg();
    struct arg_end *end = arg_end(20);
    void *at[] = {model, adapter, out,     dtype, bq,
                  force, eval,    compute, limit, CLI_COMMON_ENTRIES_NOSEED(c),
                  end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Merge adapters into a base: W' = W + sum_i w_i * s_i * B_i * A_i "
                       "(DoRA: magnitude-rescaled).",
                       "An output ending in .gguf is a llama.cpp model (default dtype f16);\n"
                       "otherwise a Hugging Face folder (default: the base's dtypes).\n"
                       "A .gguf base merges into a .gguf output that keeps its metadata and\n"
                       "tensor types: merged matrices are dequantised, merged and quantised\n"
                       "back to their own type (or --dtype; llama-quantize's fallback type when\n"
                       "rows are not whole blocks), the others copied byte for byte.\n"
                       "-v lists every tensor with its storage error.\n");
    if (rc >= 0)
        goto done;
    size_t on = strlen(out->filename[0]);
    if (eval->count && on > 5 && strcmp(out->filename[0] + on - 5, ".gguf") == 0) {
        rc = cli_usage_error(TOOL, "--eval-data needs a folder output (GGUF models are not "
                                   "loaded here; merge to a folder to compare the losses)");
        goto done;
    }
    struct lk_merge_params p = lk_merge_params_default();
    char why[4400];
    if (dtype->count)
        p.dtype = dtype->sval[0];
    if (bq->count && strcasecmp(bq->sval[0], "none")) /* none: the original weights */
        p.base_quant = bq->sval[0];
    p.n_threads = cli_threads(&c);
    p.force = force->count > 0;
    struct lk_model_params mc = lk_model_params_default(); /* --eval-data's forwards */
    mc.n_threads = p.n_threads;
    if ((rc = cli_usage_status(TOOL, lk_merge_params_check(&p))) >= 0 ||
        (rc = cli_parse_compute(TOOL, compute, &mc)) >= 0 ||
        (rc = cli_parse_memory_limit(TOOL, limit, &mc)) >= 0)
        goto done;
    cli_adapters ad = {0};
    struct lk_model_config cfg;
    lk_status s = lk_config_load(model->filename[0], &cfg);
    if (s != LK_OK) {
        rc = cli_fail(TOOL, s);
        goto done;
    }
    if ((rc = cli_adapters_load(TOOL, adapter, &cfg, &ad)) >= 0 ||
        (rc = choose_base(bq, &ad, model->filename[0], &p, why, sizeof why)) >= 0 ||
        (rc = cli_usage_status(TOOL, lk_merge_params_check(&p))) >= 0)
        goto free_adapters;
    merge_report rep = {.verbose = c.verbose->count > 0,
                        .progress = !c.quiet->count && isatty(STDERR_FILENO)};
    if (c.json->count)
        rep.tensors = cJSON_CreateArray();
    p.on_tensor = on_tensor;
    p.user = &rep;
    double t0 = cli_now();
    s = lk_merge(model->filename[0], (const lk_adapter *const *)ad.a, ad.w, ad.n, out->filename[0],
                 &p);
    if (rep.progress)
        cli_line_end();
    if (s == LK_OK) {
        print_summary(&c, &rep, &ad, model->filename[0], out->filename[0], &p, why, cli_now() - t0);
        rc = CLI_OK;
        if (eval->count) {
            s = eval_change(&c, model->filename[0], out->filename[0], p.base_quant, &mc, &ad,
                            eval->filename[0]);
            if (s != LK_OK)
                rc = cli_fail(TOOL, s);
        }
    } else {
        rc = cli_fail(TOOL, s);
    }
    cJSON_Delete(rep.tensors);
free_adapters:
    cli_adapters_free(&ad);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
