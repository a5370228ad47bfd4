/* lora-generate — continue a prompt with a model: greedy (--temp 0) or sampled (temperature,
 * top-k, top-p, --seed), using the KV cache so each new token costs one token's forward
 * (lk_generate). Text is streamed to stdout as it is generated; --json prints one object at the
 * end instead. --chat answers the prompt as the chat template's assistant (the reply alone, up to
 * the end-of-turn token); --interactive holds a conversation, a user turn per line of stdin
 * (lk_conversation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lorakit/generate.h"

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

typedef struct {
    gen_seq *seq;
    gen_out *o;
} gen_stream;

/* lk_generate's callback: the new token joins the sequence and is written. */
static int on_token(void *user, const int32_t *out, int64_t n)
{
    gen_stream *g = user;
    g->seq->ids[g->seq->n_prompt + n - 1] = out[n - 1];
    g->seq->n = g->seq->n_prompt + n;
    stream(g->o, g->seq, 0);
    return 0;
}

/* Generate up to gp->max_new_tokens tokens after seq->ids[0..n_prompt). */
static lk_status generate(const lk_model *m, gen_seq *seq, const struct lk_generate_params *gp,
                          lk_sampler *smp, gen_out *o)
{
    lk_session *s;
    lk_status st = lk_session_create(m, seq->n_prompt + gp->max_new_tokens, &s);
    if (st != LK_OK)
        return st;
    gen_stream g = {seq, o};
    int64_t n_out;
    stream(o, seq, 0);
    if (seq->n_prompt > 0)
        st = lk_generate(s, smp, seq->ids, seq->n_prompt, gp, on_token, &g,
                         seq->ids + seq->n_prompt, &n_out);
    stream(o, seq, 1);
    lk_session_free(s);
    return st;
}

/* ---- --chat and --interactive: replies of a conversation ---- */

typedef struct {
    const lk_tokenizer *tok;
    const lk_conversation *conv;
    size_t printed;   /* bytes of the reply already written */
    int verbose;      /* -v: the rendered prompt before the reply */
    int shown_prompt; /* the prompt was written */
} reply_out;

static void show_prompt(reply_out *r)
{
    if (r->verbose && !r->shown_prompt)
        fputs(lk_conversation_prompt(r->conv), stdout);
    r->shown_prompt = 1;
}

/* lk_conversation_reply's callback: write the part of the reply decoded since the last call. */
static int on_reply_token(void *user, const int32_t *out, int64_t n)
{
    reply_out *r = user;
    char *text = NULL;
    show_prompt(r);
    if (lk_reply_text(r->tok, out, n, &text) != LK_OK)
        return 0;
    size_t len = strlen(text), upto = complete_utf8(text, len);
    if (upto > r->printed) {
        fwrite(text + r->printed, 1, upto - r->printed, stdout);
        r->printed = upto;
        fflush(stdout);
    }
    free(text);
    return 0;
}

/* One user turn: the reply streamed (or, with --json, one object), then a newline. */
static lk_status chat_turn(lk_conversation *conv, const lk_tokenizer *tok, const cli_common *c,
                           const char *user, lk_sampler *smp, const struct lk_generate_params *gp)
{
    int json = c->json->count > 0;
    reply_out r = {.tok = tok, .conv = conv, .verbose = c->verbose->count > 0 && !json};
    const char *reply;
    lk_status s =
        lk_conversation_reply(conv, user, smp, gp, json ? NULL : on_reply_token, &r, &reply);
    if (s != LK_OK)
        return s;
    if (json) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "prompt", lk_conversation_prompt(conv));
        cJSON_AddStringToObject(j, "reply", reply);
        cli_json_emit(j);
        return LK_OK;
    }
    show_prompt(&r);
    if (strlen(reply) > r.printed)
        fputs(reply + r.printed, stdout);
    printf("\n");
    fflush(stdout);
    return LK_OK;
}

/* --interactive: each line of stdin a user turn (a trailing newline dropped, empty lines
 * skipped), until EOF. */
static lk_status chat_loop(lk_conversation *conv, const lk_tokenizer *tok, const cli_common *c,
                           lk_sampler *smp, const struct lk_generate_params *gp)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int tty = isatty(0) && isatty(2);
    lk_status s = LK_OK;
    while (s == LK_OK) {
        if (tty)
            fputs("> ", stderr);
        if ((len = getline(&line, &cap, stdin)) < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len > 0)
            s = chat_turn(conv, tok, c, line, smp, gp);
    }
    free(line);
    return s;
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

typedef struct {
    struct arg_file *model;
    struct arg_str *adapter, *prompt, *ids, *chat_template, *quant, *quant_embed, *compute, *system;
    struct arg_str *memory_limit;
    struct arg_int *nnew, *top_k;
    struct arg_dbl *temp, *top_p;
    struct arg_lit *chat, *interactive, *ignore_eos;
} gen_args;

typedef struct {
    struct lk_sampler_params sp;
    struct lk_chat_params cp;
    struct lk_generate_params gp;
} gen_options;

/* The sampler's, the chat template's and generation's options (the library's defaults, the flags
 * given), checked. */
static int map_options(const gen_args *a, const cli_common *c, gen_options *op)
{
    op->sp = lk_sampler_params_default();
    CLI_SET_DBL(a->temp, op->sp.temperature);
    CLI_SET_DBL(a->top_p, op->sp.top_p);
    CLI_SET_INT(a->top_k, op->sp.top_k);
    op->sp.seed = cli_seed(c);
    op->cp = lk_chat_params_default();
    op->cp.add_generation_prompt = 1;
    if (a->chat_template->count &&
        lk_chat_format_from_name(a->chat_template->sval[0], &op->cp.format) != LK_OK)
        return cli_usage_error(TOOL, "--chat-template: %s", lk_last_error());
    op->gp = lk_generate_params_default();
    CLI_SET_INT(a->nnew, op->gp.max_new_tokens);
    op->gp.stop_at_eos = !a->ignore_eos->count;
    int rc = cli_usage_status(TOOL, lk_sampler_params_check(&op->sp));
    return rc >= 0 ? rc : cli_usage_status(TOOL, lk_generate_params_check(&op->gp));
}

/* The base with its adapters, as -m, -a, --quant and --quant-embed say. -1: loaded. */
static int load_model(const gen_args *a, const cli_common *c, cli_adapters *ad, lk_model **m)
{
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = cli_threads(c);
    int rc = cli_parse_quant(TOOL, a->quant, a->quant_embed, &mp);
    if (rc < 0)
        rc = cli_parse_compute(TOOL, a->compute, &mp);
    if (rc < 0)
        rc = cli_parse_memory_limit(TOOL, a->memory_limit, &mp);
    if (rc < 0)
        rc = cli_adapters_load(TOOL, a->adapter, NULL, ad);
    if (rc < 0)
        rc = cli_base_params(TOOL, ad, a->quant, a->quant_embed, a->compute, &mp);
    if (rc >= 0)
        return rc;
    lk_status s = lk_model_load(a->model->filename[0], &mp, m);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    return cli_adapters_attach(TOOL, ad, *m, a->model->filename[0]);
}

/* --chat (one reply to --prompt) and --interactive (turns from stdin). */
static lk_status chat(const gen_args *a, const cli_common *c, const lk_model *m,
                      const lk_tokenizer *tok, lk_sampler *smp, const gen_options *op)
{
    lk_conversation *conv = NULL;
    lk_status s = lk_conversation_create(m, tok, &op->cp,
                                         a->system->count ? a->system->sval[0] : NULL, &conv);
    if (s == LK_OK)
        s = a->interactive->count ? chat_loop(conv, tok, c, smp, &op->gp)
                                  : chat_turn(conv, tok, c, a->prompt->sval[0], smp, &op->gp);
    lk_conversation_free(conv);
    return s;
}

/* Plain continuation of --prompt (encoded with the tokenizer's BOS) or --ids: the exit code. */
static int continuation(const gen_args *a, const cli_common *c, const lk_model *m,
                        const lk_tokenizer *tok, lk_sampler *smp, gen_options *op)
{
    gen_seq seq = {0};
    gen_out o = {.tok = tok, .json = c->json->count > 0};
    lk_status s = LK_OK;
    if (a->ids->count && cli_parse_ids(a->ids->sval[0], &seq.ids, &seq.n_prompt) != 0)
        s = LK_ERR_ARG; /* checked before the model was loaded */
    else if (!a->ids->count)
        s = lk_tokenizer_encode(tok, a->prompt->sval[0], strlen(a->prompt->sval[0]), 1, &seq.ids,
                                &seq.n_prompt);
    if (s == LK_OK && seq.n_prompt == 0) { /* nothing to continue: no silent empty output */
        fprintf(stderr,
                "%s: error: the prompt encodes to no token (this tokenizer adds no BOS to start "
                "from): give a non-empty -p\n",
                TOOL);
        free(seq.ids);
        return CLI_FAIL;
    }
    if (s == LK_OK && op->gp.stop_at_eos && tok)
        s = lk_generate_add_stop(&op->gp, lk_tokenizer_eos(tok));
    int64_t cap = seq.n_prompt + op->gp.max_new_tokens + 1;
    int64_t ctx = lk_model_get_config(m)->max_position;
    if (s == LK_OK && cap - 1 > ctx)
        cli_warn("the prompt's %lld tokens and -n %lld run past the model's context of %lld "
                 "tokens: tokens after position %lld are generated at positions it was never "
                 "trained on and may degrade (llama.cpp stops there)",
                 (long long)seq.n_prompt, (long long)op->gp.max_new_tokens, (long long)ctx,
                 (long long)ctx);
    int32_t *grown = s == LK_OK ? realloc(seq.ids, (size_t)cap * sizeof *grown) : NULL;
    if (s == LK_OK && !grown) {
        fprintf(stderr, "%s: error: out of memory for %lld tokens\n", TOOL, (long long)(cap - 1));
        free(seq.ids);
        return CLI_FAIL;
    }
    seq.ids = grown ? grown : seq.ids;
    seq.n = seq.n_prompt;
    if (s == LK_OK)
        s = generate(m, &seq, &op->gp, smp, &o);
    if (s == LK_OK && o.json)
        print_json(c, &seq, tok);
    else if (s == LK_OK)
        printf("\n");
    free(seq.ids);
    return s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
}

static int run(const gen_args *a, const cli_common *c, gen_options *op)
{
    lk_tokenizer *tok = NULL;
    lk_sampler *smp = NULL;
    lk_model *m = NULL;
    cli_adapters ad = {0};
    int chatting = a->chat->count || a->interactive->count;
    lk_status s = lk_sampler_create(&op->sp, &smp);
    if (s == LK_OK && !a->ids->count)
        s = lk_tokenizer_load(a->model->filename[0], &tok);
    int rc = s == LK_OK ? load_model(a, c, &ad, &m) : -1;
    if (s == LK_OK && rc < 0 && chatting)
        s = chat(a, c, m, tok, smp, op);
    else if (s == LK_OK && rc < 0)
        rc = continuation(a, c, m, tok, smp, op);
    lk_model_free(m);
    cli_adapters_free(&ad);
    lk_sampler_free(smp);
    lk_tokenizer_free(tok);
    if (rc >= 0)
        return rc;
    return s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
}

/* The combinations of prompt and mode that make sense. -1: fine. */
static int check_args(const gen_args *a)
{
    int32_t *probe = NULL;
    int64_t np;
    int rc = -1;
    if (a->interactive->count && a->prompt->count + a->ids->count)
        rc = cli_usage_error(TOOL, "--interactive reads the user's turns from stdin; --prompt "
                                   "and --ids do not go with it");
    else if (!a->interactive->count && a->prompt->count + a->ids->count != 1)
        rc = cli_usage_error(TOOL, "give exactly one of --prompt and --ids (or --interactive)");
    else if (a->ids->count && cli_parse_ids(a->ids->sval[0], &probe, &np) != 0)
        rc = cli_usage_error(TOOL, "--ids: expected comma-separated non-negative integers");
    else if (a->chat->count && !a->prompt->count)
        rc = cli_usage_error(TOOL, "--chat needs --prompt");
    else if (a->system->count && !a->chat->count && !a->interactive->count)
        rc = cli_usage_error(TOOL, "--system needs --chat or --interactive");
    else if (a->ignore_eos->count && (a->chat->count || a->interactive->count))
        rc = cli_usage_error(TOOL, "--ignore-eos does not go with --chat or --interactive (a "
                                   "reply ends at the template's end-of-turn token)");
    else if (a->chat_template->count && !a->chat->count && !a->interactive->count)
        rc = cli_usage_error(TOOL, "--chat-template needs --chat or --interactive");
    free(probe);
    return rc >= 0 ? rc : cli_check_range(TOOL, a->nnew, 0, INT64_MAX, NULL);
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
    a.compute = cli_compute_arg();
    a.memory_limit = cli_memory_limit_arg();
    a.ids = arg_str0(NULL, "ids", "1,2,3", "prompt as token ids (no tokenizer needed)");
    a.nnew = arg_int0("n", "max-new-tokens", "N",
                      cli_help("tokens to generate at most (default %lld)",
                               (long long)lk_generate_params_default().max_new_tokens));
    const struct lk_sampler_params d = lk_sampler_params_default();
    a.temp = arg_dbl0(NULL, "temp", "T",
                      cli_help("temperature, 0 = greedy (default %g)", (double)d.temperature));
    a.top_p = arg_dbl0(NULL, "top-p", "P",
                       cli_help("nucleus sampling mass (default %g)", (double)d.top_p));
    a.top_k = arg_int0(NULL, "top-k", "K",
                       cli_help("keep the K most likely (default %d, 0 = all)", d.top_k));
    a.chat = arg_lit0(NULL, "chat",
                      "answer --prompt as a user turn of the chat template: prints the "
                      "assistant's reply only, up to its end-of-turn token (-v: the rendered "
                      "prompt first)");
    a.interactive = arg_lit0(NULL, "interactive",
                             "chat on stdin: each line a user turn, answered in the "
                             "conversation so far; EOF ends it");
    a.system = arg_str0(NULL, "system", "TEXT",
                        "with --chat/--interactive: a system turn first (default: the "
                        "template's own, if any)");
    a.chat_template = arg_str0(NULL, "chat-template", "NAME",
                               "chatml, qwen2.5, llama3, llama3.1, "
                               "llama2, mistral, alpaca (default: "
                               "the tokenizer's)");
    a.ignore_eos = arg_lit0(NULL, "ignore-eos", "do not stop at end-of-sequence");
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model,
                  a.adapter,
                  a.quant,
                  a.quant_embed,
                  a.compute,
                  a.memory_limit,
                  a.prompt,
                  a.ids,
                  a.nnew,
                  a.temp,
                  a.top_p,
                  a.top_k,
                  a.chat,
                  a.interactive,
                  a.system,
                  a.chat_template,
                  a.ignore_eos,
                  CLI_COMMON_ENTRIES(c),
                  end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Continue a prompt: greedy with --temp 0, else temperature/top-k/top-p "
                       "sampling seeded by --seed; or answer it as a chat (--chat, "
                       "--interactive).",
                       NULL);
    gen_options op;
    if (rc < 0 && (rc = check_args(&a)) < 0 && (rc = map_options(&a, &c, &op)) < 0)
        rc = run(&a, &c, &op);
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
