/* lora-generate — continue a prompt with a model: greedy (--temp 0) or sampled (temperature,
 * top-k, top-p, --seed), using the KV cache so each new token costs one token's forward. Text is
 * streamed to stdout as it is generated; --json prints one object at the end instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-generate";

typedef struct {
    int32_t *ids; /* prompt followed by generated ids */
    int64_t n_prompt, n, cap;
} gen_seq;

typedef struct {
    const lk_tokenizer *tok; /* NULL: ids only */
    size_t printed;          /* bytes of the decoded text already written */
    int json;
} gen_out;

static int is_eos(const struct lk_model_config *cfg, const lk_tokenizer *tok, int32_t id)
{
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == id)
            return 1;
    return tok && id == lk_tokenizer_eos(tok);
}

/* Bytes of s[0..n) that end on a UTF-8 character boundary (a partial character waits). */
static size_t complete_utf8(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0)
        return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    return back + 1 >= need ? n : i - 1;
}

/* Write the newly decoded part of the whole sequence (decoding everything keeps the spacing that
 * SentencePiece-style decoders derive from the previous token). */
static void stream(gen_out *o, const gen_seq *seq, int final)
{
    if (o->json)
        return;
    if (!o->tok) {
        for (int64_t i = (int64_t)o->printed; i < seq->n; i++)
            printf("%s%d", i ? "," : "", seq->ids[i]);
        o->printed = (size_t)seq->n;
        fflush(stdout);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    /* a leading BOS is not text (some tokenizer.json files do not mark it special) */
    int64_t skip = seq->n > 0 && seq->ids[0] == lk_tokenizer_bos(o->tok);
    if (lk_tokenizer_decode(o->tok, seq->ids + skip, seq->n - skip, 1, &text, &len) != LK_OK)
        return;
    size_t upto = final ? len : complete_utf8(text, len);
    if (upto > o->printed) {
        fwrite(text + o->printed, 1, upto - o->printed, stdout);
        o->printed = upto;
        fflush(stdout);
    }
    free(text);
}

/* Generate up to n_new tokens after seq->ids[0..n_prompt). */
static lk_status generate(const lk_model *m, gen_seq *seq, int64_t n_new, lk_sampler *smp,
                          int stop_at_eos, gen_out *o)
{
    const struct lk_model_config *cfg = lk_model_get_config(m);
    lk_session *s;
    lk_status st = lk_session_create(m, seq->n_prompt + n_new, &s);
    if (st != LK_OK)
        return st;
    float *logits = malloc((size_t)cfg->vocab_size * sizeof(float));
    if (!logits) {
        lk_session_free(s);
        return LK_ERR_NOMEM;
    }
    st = lk_session_eval(s, seq->ids, seq->n_prompt, logits, 0);
    stream(o, seq, 0);
    for (int64_t i = 0; i < n_new && st == LK_OK; i++) {
        int32_t next = lk_sampler_sample(smp, logits, cfg->vocab_size);
        if (stop_at_eos && is_eos(cfg, o->tok, next))
            break;
        seq->ids[seq->n++] = next;
        stream(o, seq, 0);
        if (i + 1 < n_new)
            st = lk_session_eval(s, &next, 1, logits, 0);
    }
    stream(o, seq, 1);
    free(logits);
    lk_session_free(s);
    return st;
}

static void print_json(const cli_common *c, const gen_seq *seq, const lk_tokenizer *tok)
{
    cJSON *j = cli_json_new(c);
    cJSON *a = cJSON_CreateArray(), *p = cJSON_CreateArray();
    for (int64_t i = 0; i < seq->n_prompt; i++)
        cJSON_AddItemToArray(p, cJSON_CreateNumber(seq->ids[i]));
    for (int64_t i = seq->n_prompt; i < seq->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(seq->ids[i]));
    /* the continuation as it reads after the prompt: decode(all) minus decode(prompt), so the
     * space a SentencePiece decoder strips at the start of a text is kept */
    char *full = NULL, *pre = NULL;
    size_t lf, lp;
    if (tok && lk_tokenizer_decode(tok, seq->ids, seq->n, 1, &full, &lf) == LK_OK &&
        lk_tokenizer_decode(tok, seq->ids, seq->n_prompt, 1, &pre, &lp) == LK_OK)
        cJSON_AddStringToObject(j, "text", strncmp(full, pre, lp) == 0 ? full + lp : full);
    free(full);
    free(pre);
    cJSON_AddItemToObject(j, "prompt_ids", p);
    cJSON_AddItemToObject(j, "ids", a);
    cli_json_emit(j);
}

/* The prompt as ids: --ids as given, or --prompt encoded (rendered as a user turn with the chat
 * template and the assistant header first when --chat). */
static lk_status prompt_ids(const lk_tokenizer *tok, const char *prompt, int chat,
                            const struct lk_chat_params *cp, gen_seq *seq)
{
    if (!chat)
        return lk_tokenizer_encode(tok, prompt, strlen(prompt), 1, &seq->ids, &seq->n_prompt);
    struct lk_chat_message msg = {"user", prompt};
    char *text = NULL;
    size_t len;
    lk_status s = lk_chat_render(tok, cp, &msg, 1, &text, &len);
    if (s == LK_OK)
        s = lk_tokenizer_encode(tok, text, len, 0, &seq->ids, &seq->n_prompt);
    free(text);
    return s;
}

typedef struct {
    struct arg_file *model;
    struct arg_str *adapter, *prompt, *ids, *chat_template, *quant, *quant_embed;
    struct arg_int *nnew, *top_k;
    struct arg_dbl *temp, *top_p;
    struct arg_lit *chat, *ignore_eos;
} gen_args;

/* The sampler's and the chat template's options (the library's defaults, the flags given),
 * checked. */
static int map_options(const gen_args *a, const cli_common *c, struct lk_sampler_params *sp,
                       struct lk_chat_params *cp)
{
    *sp = lk_sampler_params_default();
    CLI_SET_DBL(a->temp, sp->temperature);
    CLI_SET_DBL(a->top_p, sp->top_p);
    CLI_SET_INT(a->top_k, sp->top_k);
    sp->seed = cli_seed(c);
    *cp = lk_chat_params_default();
    cp->add_generation_prompt = 1;
    if (a->chat_template->count &&
        lk_chat_format_from_name(a->chat_template->sval[0], &cp->format) != LK_OK)
        return cli_usage_error(TOOL, "--chat-template: %s", lk_last_error());
    return cli_usage_status(TOOL, lk_sampler_params_check(sp));
}

static int run(const gen_args *a, const cli_common *c, const struct lk_sampler_params *sp,
               const struct lk_chat_params *cp)
{
    int64_t n_new = a->nnew->count ? a->nnew->ival[0] : 128;
    gen_seq seq = {0};
    gen_out o = {.json = c->json->count > 0};
    lk_tokenizer *tok = NULL;
    lk_sampler *smp = NULL;
    lk_model *m = NULL;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(c);
    int qrc = cli_parse_quant(TOOL, a->quant, a->quant_embed, &mp);
    if (qrc >= 0)
        return qrc;
    lk_status s = lk_sampler_create(sp, &smp);
    if (s == LK_OK && a->ids->count) {
        s = cli_parse_ids(a->ids->sval[0], &seq.ids, &seq.n_prompt) == 0 ? LK_OK : LK_ERR_ARG;
    } else if (s == LK_OK) {
        s = lk_tokenizer_load(a->model->filename[0], &tok);
        if (s == LK_OK)
            s = prompt_ids(tok, a->prompt->sval[0], a->chat->count > 0, cp, &seq);
    }
    o.tok = tok;
    int32_t *grown = s == LK_OK ? realloc(seq.ids, (size_t)(seq.n_prompt + n_new + 1) * 4) : NULL;
    int rc = -1;
    if (s == LK_OK && !grown) {
        fprintf(stderr, "%s: error: out of memory for %lld tokens\n", TOOL,
                (long long)(seq.n_prompt + n_new));
        rc = CLI_FAIL;
    }
    if (grown)
        seq.ids = grown;
    seq.n = seq.n_prompt;
    cli_adapters ad = {0};
    if (s == LK_OK && rc < 0)
        rc = cli_adapters_load(TOOL, a->adapter, NULL, &ad);
    if (s == LK_OK && rc < 0)
        rc = cli_base_params(TOOL, &ad, a->quant, a->quant_embed, &mp);
    if (s == LK_OK && rc < 0)
        s = lk_model_load(a->model->filename[0], &mp, &m);
    if (s == LK_OK && rc < 0)
        rc = cli_adapters_attach(TOOL, &ad, m, a->model->filename[0]);
    if (s == LK_OK && rc < 0)
        s = generate(m, &seq, n_new, smp, !a->ignore_eos->count, &o);
    if (s == LK_OK && rc < 0 && o.json)
        print_json(c, &seq, tok);
    else if (s == LK_OK && rc < 0)
        printf("\n");
    lk_model_free(m);
    cli_adapters_free(&ad);
    lk_sampler_free(smp);
    lk_tokenizer_free(tok);
    free(seq.ids);
    if (rc >= 0)
        return rc;
    return s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    gen_args a;
    a.model = arg_file1("m", "model", "DIR|GGUF", "model folder or GGUF model file");
    a.adapter = arg_strn("a", "adapter", "DIR[:scale]", 0, 8,
                         "LoRA adapter to apply (PEFT folder or GGUF LoRA), repeatable");
    a.prompt = arg_str0("p", "prompt", "TEXT", "prompt text");
    a.quant = arg_str0(NULL, "quant", "TYPE",
                       "base format: none (f32), nf4, q4_0, iq4_nl, q8_0 (default: the one the "
                       "adapter was trained on, else none)");
    a.quant_embed = arg_str0(NULL, "quant-embed", "TYPE", "embeddings/LM head: f32 or q8_0");
    a.ids = arg_str0(NULL, "ids", "1,2,3", "prompt as token ids (no tokenizer needed)");
    a.nnew = arg_int0("n", NULL, "N", "tokens to generate (default 128)");
    const struct lk_sampler_params d = lk_sampler_params_default();
    a.temp = arg_dbl0(NULL, "temp", "T",
                      cli_help("temperature, 0 = greedy (default %g)", (double)d.temperature));
    a.top_p = arg_dbl0(NULL, "top-p", "P",
                       cli_help("nucleus sampling mass (default %g)", (double)d.top_p));
    a.top_k = arg_int0(NULL, "top-k", "K",
                       cli_help("keep the K most likely (default %d, 0 = all)", d.top_k));
    a.chat = arg_lit0(NULL, "chat", "wrap the prompt as a user turn in the chat template");
    a.chat_template = arg_str0(NULL, "chat-template", "NAME",
                               "chatml, qwen2.5, llama3, llama3.1, "
                               "llama2, mistral, alpaca (default: "
                               "the tokenizer's)");
    a.ignore_eos = arg_lit0(NULL, "ignore-eos", "do not stop at end-of-sequence");
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model,      a.adapter,
                  a.quant,      a.quant_embed,
                  a.prompt,     a.ids,
                  a.nnew,       a.temp,
                  a.top_p,      a.top_k,
                  a.chat,       a.chat_template,
                  a.ignore_eos, CLI_COMMON_ENTRIES(c),
                  end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Continue a prompt: greedy with --temp 0, else temperature/top-k/top-p "
                       "sampling seeded by --seed.",
                       NULL);
    if (rc >= 0)
        goto done;
    int32_t *probe = NULL;
    int64_t np;
    struct lk_sampler_params sp;
    struct lk_chat_params cp;
    if (a.prompt->count + a.ids->count != 1)
        rc = cli_usage_error(TOOL, "give exactly one of --prompt and --ids");
    else if (a.ids->count && cli_parse_ids(a.ids->sval[0], &probe, &np) != 0)
        rc = cli_usage_error(TOOL, "--ids: expected comma-separated non-negative integers");
    else if (a.chat->count && !a.prompt->count)
        rc = cli_usage_error(TOOL, "--chat needs --prompt");
    else if ((rc = cli_check_range(TOOL, a.nnew, 0, INT64_MAX, NULL)) >= 0)
        ;
    else if ((rc = map_options(&a, &c, &sp, &cp)) < 0)
        rc = run(&a, &c, &sp, &cp);
    free(probe);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
