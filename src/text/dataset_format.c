/* dataset_format.c — one JSON record of a training file to one example: token ids with labels
 * (-100 = no loss). The format is given or detected from the fields present (messages or
 * conversations, input_ids, instruction+output, prompt+completion, text), under column names that
 * --fields can remap.
 *
 * Sequence construction follows TRL's SFTTrainer: text and prompt/completion get the tokenizer's
 * BOS (when it adds one) and an EOS after the text/completion; chat messages are rendered with the
 * chat template (which writes BOS and the end-of-turn tokens itself) and tokenised with
 * add_special 0, and a token carries loss when its byte range overlaps an assistant span (as
 * transformers' return_assistant_tokens_mask does). Calls into the tokenizer and chat.c, not into
 * dataset.c. */
#include "text/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"
#include "text/tokenizer.h"

static const char *const g_keys[N_KEYS] = {"text",          "prompt",      "completion", "messages",
                                           "conversations", "instruction", "input",      "output",
                                           "input_ids",     "labels"};

lk_status dataset_ex_push(struct ex_buf *e, int32_t id, int32_t label)
{
    struct buf_arr a[] = {BUF_ARR(&e->ids), BUF_ARR(&e->labels)};
    LK_TRY(buf_grow_all(a, 2, &e->cap, (size_t)e->n + 1, "dataset: example tokens"));
    e->ids[e->n] = id;
    e->labels[e->n++] = label;
    return LK_OK;
}

/* Why an example is bad; LK_ERR_FORMAT marks "skip this one", anything else is fatal. */
#define SKIP(why, ...) (snprintf(why, 256, __VA_ARGS__), LK_ERR_FORMAT)

static const cJSON *field(const lk_dataset *d, const cJSON *o, int k)
{
    return cJSON_GetObjectItemCaseSensitive(o, d->col[k]);
}

/* Encode text[0..len) and append it; a token is trained when train_from <= its end offset is
 * past train_from (overlap with [train_from, len)). */
static lk_status append_text(const lk_dataset *d, const char *text, size_t len, size_t train_from,
                             struct ex_buf *e)
{
    tok_out o = {0};
    LK_TRY(tok_encode(d->t, text, len, 0, &o));
    lk_status s = LK_OK;
    for (int64_t i = 0; s == LK_OK && i < o.n; i++)
        s = dataset_ex_push(e, o.ids[i], o.end[i] > train_from ? o.ids[i] : LK_LABEL_IGNORE);
    tok_out_free(&o);
    return s;
}

/* [BOS] prompt completion EOS with loss on completion (and EOS); prompt NULL: loss on all. */
static lk_status build_pc(const lk_dataset *d, const char *prompt, const char *completion,
                          struct ex_buf *e)
{
    size_t pl = prompt ? strlen(prompt) : 0, cl = strlen(completion);
    char *full = malloc(pl + cl + 1);
    if (!full)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    memcpy(full, prompt ? prompt : "", pl);
    memcpy(full + pl, completion, cl + 1);
    lk_status s = LK_OK;
    if (lk_tokenizer_adds_bos(d->t))
        s = dataset_ex_push(e, lk_tokenizer_bos(d->t), LK_LABEL_IGNORE);
    if (s == LK_OK)
        s = append_text(d, full, pl + cl, pl, e);
    free(full);
    int32_t eos = lk_tokenizer_eos(d->t);
    if (s == LK_OK && eos >= 0)
        s = dataset_ex_push(e, eos, eos);
    return s;
}

static const char *str_field(const lk_dataset *d, const cJSON *o, int k, char *why, int required,
                             lk_status *s)
{
    const cJSON *v = field(d, o, k);
    if (cJSON_IsString(v))
        return v->valuestring;
    if (!required && cJSON_IsNull(v)) /* an optional field written as null: absent */
        return NULL;
    if (v || required)
        *s = v ? SKIP(why, "\"%s\" is not a string", d->col[k])
               : SKIP(why, "missing \"%s\"", d->col[k]);
    return NULL;
}

static lk_status build_alpaca(const lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why)
{
    lk_status s = LK_OK;
    const char *ins = str_field(d, o, K_INSTRUCTION, why, 1, &s);
    const char *inp = str_field(d, o, K_INPUT, why, 0, &s);
    const char *out = str_field(d, o, K_OUTPUT, why, 1, &s);
    if (s != LK_OK)
        return s;
    static const char with_input[] =
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
    static const char no_input[] =
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n%s\n\n### Response:\n";
    int has_input = inp && *inp;
    size_t n = strlen(ins) + (inp ? strlen(inp) : 0) + sizeof with_input;
    char *prompt = malloc(n);
    if (!prompt)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    if (has_input)
        snprintf(prompt, n, with_input, ins, inp);
    else
        snprintf(prompt, n, no_input, ins);
    s = build_pc(d, prompt, out, e);
    free(prompt);
    return s;
}

/* Content of a message: a string, or the text parts of a list joined. *owned is set when the
 * result was allocated. */
static lk_status message_content(const cJSON *c, int64_t i, const char **out, char **owned,
                                 char *why)
{
    *owned = NULL;
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return LK_OK;
    }
    if (!cJSON_IsArray(c))
        return SKIP(why, "message %lld: content is neither a string nor a list of parts",
                    (long long)i);
    size_t total = 1;
    const cJSON *part;
    cJSON_ArrayForEach(part, c)
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "type"));
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!txt)
            txt = cJSON_GetObjectItemCaseSensitive(part, "value");
        if (!type || strcmp(type, "text") != 0 || !cJSON_IsString(txt))
            return SKIP(why,
                        "message %lld: content part of type '%s' (only text parts with "
                        "\"text\" or \"value\" are supported)",
                        (long long)i, type ? type : "(none)");
        total += strlen(txt->valuestring);
    }
    char *buf = malloc(total);
    if (!buf)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    buf[0] = 0;
    cJSON_ArrayForEach(part, c)
    {
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(part, "text");
        strcat(buf,
               cJSON_GetStringValue(txt ? txt : cJSON_GetObjectItemCaseSensitive(part, "value")));
    }
    *out = *owned = buf;
    return LK_OK;
}

/* Role of a message: "role" (OpenAI) or "from" (ShareGPT: human, gpt). */
static const char *message_role(const cJSON *m, int sharegpt)
{
    const char *r =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, sharegpt ? "from" : "role"));
    if (!r || !sharegpt)
        return r;
    if (!strcmp(r, "human") || !strcmp(r, "user"))
        return "user";
    if (!strcmp(r, "gpt") || !strcmp(r, "assistant"))
        return "assistant";
    return r;
}

struct msg_set {
    struct lk_chat_message *m;
    int *train;
    char **owned;
    int64_t n;
};

static void msg_set_free(struct msg_set *ms)
{
    for (int64_t i = 0; ms->owned && i < ms->n; i++)
        free(ms->owned[i]);
    free(ms->m);
    free(ms->train);
    free(ms->owned);
}

static lk_status read_messages(const cJSON *list, int sharegpt, struct msg_set *ms, char *why)
{
    int64_t n = cJSON_GetArraySize(list);
    if (n == 0)
        return SKIP(why, "no messages");
    ms->m = calloc((size_t)n, sizeof *ms->m);
    ms->train = calloc((size_t)n, sizeof *ms->train);
    ms->owned = calloc((size_t)n, sizeof *ms->owned);
    if (!ms->m || !ms->train || !ms->owned)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, list)
    {
        int64_t i = ms->n++;
        const char *role = message_role(m, sharegpt);
        if (!role)
            return SKIP(why, "message %lld has no \"%s\"", (long long)i,
                        sharegpt ? "from" : "role");
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
            return SKIP(why, "message %lld has role '%s' (supported: system, user, assistant)",
                        (long long)i, role);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, sharegpt ? "value" : "content");
        if (!c)
            return SKIP(why, "message %lld has no content", (long long)i);
        LK_TRY(message_content(c, i, &ms->m[i].content, &ms->owned[i], why));
        ms->m[i].role = role;
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(m, "loss_weight");
        ms->train[i] = !strcmp(role, "assistant") && (!cJSON_IsNumber(w) || w->valuedouble > 0);
    }
    return LK_OK;
}

static lk_status build_messages(lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why)
{
    int sharegpt = !field(d, o, K_MESSAGES);
    const cJSON *list = field(d, o, sharegpt ? K_CONVERSATIONS : K_MESSAGES);
    if (!cJSON_IsArray(list))
        return SKIP(why, "\"%s\" is not a list", d->col[sharegpt ? K_CONVERSATIONS : K_MESSAGES]);
    if (d->chat == LK_CHAT_AUTO) /* resolved once; failure is a setup error, not a bad line */
        LK_TRY(status_wrap(chat_resolve(d->t, &d->chat, &d->chat_system), "%s", d->path));
    struct msg_set ms = {0};
    char *text = NULL;
    size_t len = 0;
    struct chat_span *sp = NULL;
    int64_t nsp = 0;
    tok_out enc = {0};
    lk_status s = read_messages(list, sharegpt, &ms, why);
    if (s == LK_OK) {
        s = chat_render_spans(d->t, d->chat, d->chat_system, 0, d->p.chat_date, ms.m, ms.n,
                              ms.train, &text, &len, &sp, &nsp);
        if (s == LK_ERR_ARG) /* the template refuses this conversation */
            s = SKIP(why, "%s", lk_last_error());
    }
    if (s == LK_OK && nsp == 0)
        s = SKIP(why, "no assistant turn to train on");
    if (s == LK_OK)
        s = tok_encode(d->t, text, len, 0, &enc);
    int64_t k = 0;
    for (int64_t i = 0; s == LK_OK && i < enc.n; i++) {
        while (k < nsp && sp[k].end <= enc.start[i])
            k++;
        int train = k < nsp && enc.end[i] > sp[k].start && enc.start[i] < sp[k].end;
        s = dataset_ex_push(e, enc.ids[i], train ? enc.ids[i] : LK_LABEL_IGNORE);
    }
    tok_out_free(&enc);
    free(sp);
    free(text);
    msg_set_free(&ms);
    return s;
}

static lk_status build_tokens(const lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why)
{
    const cJSON *ids = field(d, o, K_INPUT_IDS), *lab = field(d, o, K_LABELS);
    int64_t V = lk_tokenizer_vocab_size(d->t);
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) == 0)
        return SKIP(why, "\"%s\" is not a non-empty list", d->col[K_INPUT_IDS]);
    if (lab && (!cJSON_IsArray(lab) || cJSON_GetArraySize(lab) != cJSON_GetArraySize(ids)))
        return SKIP(why, "\"%s\" is not a list as long as \"%s\" (%d ids)", d->col[K_LABELS],
                    d->col[K_INPUT_IDS], cJSON_GetArraySize(ids));
    const cJSON *x, *y = lab ? lab->child : NULL;
    int64_t i = 0;
    cJSON_ArrayForEach(x, ids)
    {
        double v = cJSON_IsNumber(x) ? x->valuedouble : -1;
        if (v < 0 || v >= (double)V || v != (double)(int64_t)v)
            return SKIP(why, "input_ids[%lld] is not an id in [0, %lld)", (long long)i,
                        (long long)V);
        double l = v;
        if (y) {
            l = cJSON_IsNumber(y) ? y->valuedouble : -1e9;
            if ((l != LK_LABEL_IGNORE && (l < 0 || l >= (double)V)) || l != (double)(int64_t)l)
                return SKIP(why, "labels[%lld] is neither -100 nor an id in [0, %lld)",
                            (long long)i, (long long)V);
            y = y->next;
        }
        LK_TRY(dataset_ex_push(e, (int32_t)v, (int32_t)l));
        i++;
    }
    return LK_OK;
}

static lk_data_format detect(const lk_dataset *d, const cJSON *o)
{
    if (d->p.format != LK_DATA_AUTO)
        return d->p.format;
    if (field(d, o, K_MESSAGES) || field(d, o, K_CONVERSATIONS))
        return LK_DATA_MESSAGES;
    if (field(d, o, K_INPUT_IDS))
        return LK_DATA_TOKENS;
    if (field(d, o, K_INSTRUCTION) && field(d, o, K_OUTPUT))
        return LK_DATA_ALPACA;
    if (field(d, o, K_PROMPT) && field(d, o, K_COMPLETION))
        return LK_DATA_PROMPT_COMPLETION;
    if (field(d, o, K_TEXT))
        return LK_DATA_TEXT;
    return LK_DATA_AUTO;
}

lk_status dataset_build_example(lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why,
                                lk_data_format *fmt)
{
    if (!cJSON_IsObject(o))
        return SKIP(why, "expected a JSON object");
    lk_status s = LK_OK;
    switch (*fmt = detect(d, o)) {
    case LK_DATA_MESSAGES: return build_messages(d, o, e, why);
    case LK_DATA_TOKENS: return build_tokens(d, o, e, why);
    case LK_DATA_ALPACA: return build_alpaca(d, o, e, why);
    case LK_DATA_PROMPT_COMPLETION: {
        const char *p = str_field(d, o, K_PROMPT, why, 1, &s);
        const char *c = str_field(d, o, K_COMPLETION, why, 1, &s);
        return s != LK_OK ? s : build_pc(d, p, c, e);
    }
    case LK_DATA_TEXT: {
        const char *t = str_field(d, o, K_TEXT, why, 1, &s);
        if (s == LK_OK && !*t)
            return SKIP(why, "\"%s\" is empty", d->col[K_TEXT]);
        return s != LK_OK ? s : build_pc(d, NULL, t, e);
    }
    default: {
        char keys[160] = "";
        const cJSON *c;
        cJSON_ArrayForEach(c, o) if (strlen(keys) + strlen(c->string) + 3 < sizeof keys)
        {
            strcat(keys, *keys ? ", " : "");
            strcat(keys, c->string);
        }
        return SKIP(why,
                    "no known fields (has: %s; expected text, prompt+completion, messages, "
                    "instruction+output or input_ids; map other names with --fields)",
                    *keys ? keys : "nothing");
    }
    }
}

lk_status dataset_parse_fields(lk_dataset *d, const char *spec)
{
    for (int k = 0; k < N_KEYS; k++)
        if (!(d->col[k] = strdup(g_keys[k])))
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    for (const char *p = spec; p && *p;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        int k = -1;
        for (int i = 0; eq && i < N_KEYS; i++)
            if ((size_t)(eq - p) == strlen(g_keys[i]) && !memcmp(p, g_keys[i], (size_t)(eq - p)))
                k = i;
        if (!eq || k < 0 || eq + 1 == end)
            return status_fail(LK_ERR_ARG,
                               "--fields: '%.*s' is not KEY=COLUMN with KEY one of "
                               "text, prompt, completion, messages, conversations, "
                               "instruction, input, output, input_ids, labels",
                               (int)(end - p), p);
        free(d->col[k]);
        if (!(d->col[k] = strndup(eq + 1, (size_t)(end - eq - 1))))
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        p = comma ? comma + 1 : end;
    }
    return LK_OK;
}
