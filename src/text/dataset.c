/* dataset.c — JSONL (or JSON array) training data: examples in every supported format become
 * token ids with labels (-100 = no loss), truncated to seq_len, then served as packed rows with
 * per-example positions and segment ids, in a per-epoch shuffled order with a saveable cursor.
 *
 * Sequence construction follows TRL's SFTTrainer: text and prompt/completion get the tokenizer's
 * BOS (when it adds one) and an EOS after the text/completion; chat messages are rendered with the
 * chat template (which writes BOS and the end-of-turn tokens itself) and tokenised with
 * add_special 0, and a token carries loss when its byte range overlaps an assistant span (as
 * transformers' return_assistant_tokens_mask does). */
#include "lorakit/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "core/mapfile.h"
#include "core/rng.h"
#include "core/status.h"
#include "text/tokenizer.h"

enum {
    K_TEXT,
    K_PROMPT,
    K_COMPLETION,
    K_MESSAGES,
    K_CONVERSATIONS,
    K_INSTRUCTION,
    K_INPUT,
    K_OUTPUT,
    K_INPUT_IDS,
    K_LABELS,
    N_KEYS
};
static const char *const g_keys[N_KEYS] = {"text",          "prompt",      "completion", "messages",
                                           "conversations", "instruction", "input",      "output",
                                           "input_ids",     "labels"};

#define MAX_BAD_KEPT 1000

struct bad_rec {
    int64_t line;
    char *msg;
};

struct lk_dataset {
    char *path;
    const lk_tokenizer *t;
    struct lk_dataset_params p;
    char *col[N_KEYS]; /* column name of each canonical key */
    lk_chat_format chat;
    char *chat_system; /* ChatML default system prompt found in the template, or NULL */
    int array_file;    /* "element N" instead of "line N" in messages */
    /* examples: ids/labels pools, per example offset/length/line */
    int32_t *ids, *labels;
    int64_t n_tok, cap_tok;
    int64_t *ex_off, *ex_len, *ex_line;
    int64_t n_ex, cap_ex;
    struct bad_rec *bad;
    int64_t n_bad_kept;
    struct lk_dataset_stats st;
    int64_t *order;     /* [n_ex] this epoch's example order */
    int64_t *row_start; /* [n_ex + 1] rows of this epoch: examples row_items[row_start[r]..] */
    int64_t *row_items; /* [n_ex] */
    int64_t *pack;      /* [2·pack_leaves(n_ex) + 2·n_ex + 1] pack_rows' work memory */
    struct lk_data_cursor cur;
    int64_t rows_in_epoch;
    int64_t last_row; /* row of this epoch last returned by next_row; -1: none since the cursor
                       * was set (or the load) */
};

/* One example under construction. */
struct ex_buf {
    int32_t *ids, *labels;
    int64_t n, cap;
};

static lk_status ex_push(struct ex_buf *e, int32_t id, int32_t label)
{
    if (e->n == e->cap) {
        int64_t cap = e->cap ? e->cap * 2 : 256;
        int32_t *a = realloc(e->ids, (size_t)cap * sizeof *a);
        if (a)
            e->ids = a;
        int32_t *b = a ? realloc(e->labels, (size_t)cap * sizeof *b) : NULL;
        if (!b)
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        e->labels = b;
        e->cap = cap;
    }
    e->ids[e->n] = id;
    e->labels[e->n++] = label;
    return LK_OK;
}

/* ---- formats ------------------------------------------------------------------------------- */

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
        s = ex_push(e, o.ids[i], o.end[i] > train_from ? o.ids[i] : LK_LABEL_IGNORE);
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
        s = ex_push(e, lk_tokenizer_bos(d->t), LK_LABEL_IGNORE);
    if (s == LK_OK)
        s = append_text(d, full, pl + cl, pl, e);
    free(full);
    int32_t eos = lk_tokenizer_eos(d->t);
    if (s == LK_OK && eos >= 0)
        s = ex_push(e, eos, eos);
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
        s = ex_push(e, enc.ids[i], train ? enc.ids[i] : LK_LABEL_IGNORE);
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
        LK_TRY(ex_push(e, (int32_t)v, (int32_t)l));
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

static lk_status build_example(lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why,
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

/* ---- loading -------------------------------------------------------------------------------- */

static lk_status keep_example(lk_dataset *d, struct ex_buf *e, int64_t line, lk_data_format f)
{
    int64_t n = e->n;
    if (n > d->p.seq_len) {
        d->st.truncated++;
        d->st.truncated_tokens += n - d->p.seq_len;
        n = d->p.seq_len;
    }
    if (d->n_ex == d->cap_ex) {
        int64_t cap = d->cap_ex ? d->cap_ex * 2 : 1024;
        int64_t *a = realloc(d->ex_off, (size_t)cap * sizeof *a);
        if (a)
            d->ex_off = a;
        int64_t *b = a ? realloc(d->ex_len, (size_t)cap * sizeof *b) : NULL;
        if (b)
            d->ex_len = b;
        int64_t *c = b ? realloc(d->ex_line, (size_t)cap * sizeof *c) : NULL;
        if (!c)
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        d->ex_line = c;
        d->cap_ex = cap;
    }
    if (d->n_tok + n > d->cap_tok) {
        int64_t cap = d->cap_tok ? d->cap_tok : 1 << 16;
        while (cap < d->n_tok + n)
            cap *= 2;
        int32_t *a = realloc(d->ids, (size_t)cap * sizeof *a);
        if (a)
            d->ids = a;
        int32_t *b = a ? realloc(d->labels, (size_t)cap * sizeof *b) : NULL;
        if (!b)
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        d->labels = b;
        d->cap_tok = cap;
    }
    memcpy(d->ids + d->n_tok, e->ids, (size_t)n * sizeof *e->ids);
    memcpy(d->labels + d->n_tok, e->labels, (size_t)n * sizeof *e->labels);
    for (int64_t i = 0; i < n; i++)
        d->st.trained_tokens += e->labels[i] != LK_LABEL_IGNORE;
    d->ex_off[d->n_ex] = d->n_tok;
    d->ex_len[d->n_ex] = n;
    d->ex_line[d->n_ex++] = line;
    d->n_tok += n;
    d->st.tokens += n;
    d->st.by_format[f]++;
    return LK_OK;
}

static lk_status record_bad(lk_dataset *d, int64_t line, const char *why)
{
    const char *unit = d->array_file ? "element" : "line";
    d->st.bad++;
    if (d->p.strict)
        return status_fail(LK_ERR_FORMAT, "%s: %s %lld: %s (--strict: bad examples are fatal)",
                           d->path, unit, (long long)line, why);
    if (d->st.bad <= d->p.max_reported)
        log_warn("%s: %s %lld: %s (skipped)", d->path, unit, (long long)line, why);
    if (d->n_bad_kept < MAX_BAD_KEPT) {
        if (!d->bad && !(d->bad = calloc(MAX_BAD_KEPT, sizeof *d->bad)))
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        size_t n = strlen(why);
        char *m = malloc(n + 1);
        if (!m)
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        memcpy(m, why, n + 1);
        d->bad[d->n_bad_kept++] = (struct bad_rec){line, m};
    }
    return LK_OK;
}

/* One example: parsed object o (NULL: the text did not parse). */
static lk_status add_example(lk_dataset *d, const cJSON *o, int64_t line, struct ex_buf *e)
{
    char why[256] = "invalid JSON";
    lk_data_format f = LK_DATA_AUTO;
    d->st.lines++;
    e->n = 0;
    lk_status s = o ? build_example(d, o, e, why, &f) : LK_ERR_FORMAT;
    if (s == LK_ERR_FORMAT)
        return record_bad(d, line, why);
    if (s != LK_OK)
        return s;
    return keep_example(d, e, line, f);
}

static lk_status load_lines(lk_dataset *d, const char *buf, size_t n)
{
    struct ex_buf e = {0};
    lk_status s = LK_OK;
    int64_t line = 0;
    for (size_t pos = 0; s == LK_OK && pos < n;) {
        const char *nl = memchr(buf + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - buf) : n;
        line++;
        size_t a = pos;
        while (a < end && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
            a++;
        if (a < end) {
            cJSON *o = cJSON_ParseWithLength(buf + pos, end - pos);
            s = add_example(d, o, line, &e);
            cJSON_Delete(o);
        }
        pos = end + 1;
    }
    free(e.ids);
    free(e.labels);
    return s;
}

static lk_status load_array(lk_dataset *d, const char *buf, size_t n)
{
    cJSON *root = cJSON_ParseWithLength(buf, n);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return status_fail(LK_ERR_FORMAT,
                           "%s: starts with '[' but is not a valid JSON array "
                           "(hint: JSON Lines has one object per line)",
                           d->path);
    }
    d->array_file = 1;
    struct ex_buf e = {0};
    lk_status s = LK_OK;
    int64_t k = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, root)
    {
        if (s == LK_OK)
            s = add_example(d, o, ++k, &e);
    }
    free(e.ids);
    free(e.labels);
    cJSON_Delete(root);
    return s;
}

static lk_status parse_fields(lk_dataset *d, const char *spec)
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

/* ---- order, packing, cursor ------------------------------------------------------------------ */

/* Leaves of pack_rows' segment tree over n examples: a power of two >= n. */
static int64_t pack_leaves(int64_t n)
{
    int64_t size = 1;
    while (size < n)
        size *= 2;
    return size;
}

/* Pack this epoch's order into rows by first-fit: each example goes to the earliest row with
 * room for it (a segment tree over rows holds the largest free space below each node, so a
 * placement is O(log rows)); rows keep their examples in order of placement. With pack 0 every
 * example is its own row. Fills row_start/row_items (CSR) and rows_in_epoch; the work memory is
 * d->pack, allocated with the dataset (a new epoch inside a training step allocates nothing). */
static void pack_rows(lk_dataset *d)
{
    int64_t n = d->n_ex, T = d->p.seq_len, size = pack_leaves(n);
    int64_t *tree = d->pack;           /* [2·size] max free space per node */
    int64_t *row_of = tree + 2 * size; /* [n] */
    int64_t *count = row_of + n;       /* [n + 1] */
    memset(count, 0, (size_t)(n + 1) * sizeof *count);
    for (int64_t i = 0; i < 2 * size; i++)
        tree[i] = T; /* every (not yet opened) row is empty */
    int64_t rows = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t len = d->ex_len[d->order[k]], node = 1;
        if (!d->p.pack) {
            row_of[k] = rows++;
            continue;
        }
        while (node < size) /* leftmost leaf with free >= len (the root always has T >= len) */
            node = tree[2 * node] >= len ? 2 * node : 2 * node + 1;
        int64_t r = node - size;
        row_of[k] = r;
        if (r + 1 > rows)
            rows = r + 1;
        for (tree[node] -= len, node /= 2; node >= 1; node /= 2)
            tree[node] = tree[2 * node] > tree[2 * node + 1] ? tree[2 * node] : tree[2 * node + 1];
    }
    for (int64_t k = 0; k < n; k++)
        count[row_of[k] + 1]++;
    for (int64_t r = 0; r < rows; r++)
        count[r + 1] += count[r];
    for (int64_t r = 0; r <= rows; r++)
        d->row_start[r] = count[r];
    for (int64_t k = 0; k < n; k++) /* stable: examples keep their order within a row */
        d->row_items[count[row_of[k]]++] = d->order[k];
    d->rows_in_epoch = rows;
}

static void make_order(lk_dataset *d, uint64_t epoch)
{
    for (int64_t i = 0; i < d->n_ex; i++)
        d->order[i] = i;
    if (d->p.shuffle) { /* Fisher-Yates from the (seed, "shuffle", epoch) stream */
        rng_state r;
        rng_seed(&r, d->p.seed, rng_purpose("dataset-shuffle", epoch));
        for (int64_t i = d->n_ex - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
            int64_t tmp = d->order[i];
            d->order[i] = d->order[j];
            d->order[j] = tmp;
        }
    }
    pack_rows(d);
}

lk_status lk_dataset_next_row(lk_dataset *d, int32_t *tokens, int32_t *labels, int32_t *pos,
                              int32_t *seg, int64_t *n_real, int64_t *n_examples)
{
    if (!d || !tokens || !labels || !pos || !seg)
        return status_fail(LK_ERR_ARG, "lk_dataset_next_row: NULL argument");
    if (d->cur.next >= d->rows_in_epoch) {
        d->last_row = -1;
        make_order(d, d->cur.epoch + 1);
        d->cur.epoch++;
        d->cur.next = 0;
    }
    int64_t T = d->p.seq_len, used = 0, r = d->cur.next++;
    d->last_row = r;
    int64_t a = d->row_start[r], b = d->row_start[r + 1];
    for (int64_t k = a; k < b; k++) {
        int64_t i = d->row_items[k], len = d->ex_len[i];
        memcpy(tokens + used, d->ids + d->ex_off[i], (size_t)len * sizeof *tokens);
        memcpy(labels + used, d->labels + d->ex_off[i], (size_t)len * sizeof *labels);
        for (int64_t j = 0; j < len; j++) {
            pos[used + j] = (int32_t)j;
            seg[used + j] = (int32_t)(k - a);
        }
        used += len;
    }
    int32_t pad = lk_tokenizer_eos(d->t) >= 0 ? lk_tokenizer_eos(d->t) : 0;
    for (int64_t k = used; k < T; k++) {
        tokens[k] = pad;
        labels[k] = LK_LABEL_IGNORE;
        pos[k] = 0;
        seg[k] = -1;
    }
    if (n_real)
        *n_real = used;
    if (n_examples)
        *n_examples = b - a;
    return LK_OK;
}

void lk_dataset_attention_mask(const int32_t *seg, int64_t T, uint8_t *mask)
{
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++)
            mask[i * T + j] = (uint8_t)(j <= i && seg[i] >= 0 && seg[i] == seg[j]);
}

void lk_dataset_get_cursor(const lk_dataset *d, struct lk_data_cursor *c)
{
    *c = d->cur;
}

lk_status lk_dataset_set_cursor(lk_dataset *d, const struct lk_data_cursor *c)
{
    if (!d || !c || c->next < 0)
        return status_fail(LK_ERR_ARG, "data cursor: NULL or negative row");
    d->last_row = -1; /* the packing may change: no row was returned from this cursor yet */
    if (c->epoch != d->cur.epoch)
        make_order(d, c->epoch);
    d->cur.epoch = c->epoch;
    if (c->next > d->rows_in_epoch)
        return status_fail(LK_ERR_ARG,
                           "data cursor: row %lld is past the %lld rows of epoch "
                           "%llu (hint: resuming with a different dataset or "
                           "--seq-len?)",
                           (long long)c->next, (long long)d->rows_in_epoch,
                           (unsigned long long)c->epoch);
    d->cur = *c;
    return LK_OK;
}

lk_status lk_dataset_row_examples(const lk_dataset *d, int64_t *idx, int64_t max, int64_t *n)
{
    if (!d || !n || (max > 0 && !idx))
        return status_fail(LK_ERR_ARG, "lk_dataset_row_examples: NULL argument");
    *n = 0;
    if (d->last_row < 0)
        return status_fail(LK_ERR_ARG,
                           "lk_dataset_row_examples: no row returned since the load or the last "
                           "lk_dataset_set_cursor");
    int64_t a = d->row_start[d->last_row], b = d->row_start[d->last_row + 1];
    if (b - a > max)
        return status_fail(LK_ERR_ARG,
                           "lk_dataset_row_examples: the row holds %lld examples, idx "
                           "only %lld",
                           (long long)(b - a), (long long)max);
    memcpy(idx, d->row_items + a, (size_t)(b - a) * sizeof *idx);
    *n = b - a;
    return LK_OK;
}

int64_t lk_dataset_rows_in_epoch(const lk_dataset *d)
{
    return d->rows_in_epoch;
}

/* ---- public --------------------------------------------------------------------------------- */

struct lk_dataset_params lk_dataset_params_default(void)
{
    return (struct lk_dataset_params){.seq_len = 2048,
                                      .pack = 1,
                                      .format = LK_DATA_AUTO,
                                      .chat_format = LK_CHAT_AUTO,
                                      .chat_date = NULL,
                                      .fields = NULL,
                                      .strict = 0,
                                      .shuffle = 1,
                                      .seed = 42,
                                      .max_reported = 10};
}

const char *lk_data_format_name(lk_data_format f)
{
    static const char *const names[] = {"auto",   "messages",          "tokens",
                                        "alpaca", "prompt_completion", "text"};
    return f >= 0 && f < LK_DATA_N_FORMATS ? names[f] : "unknown";
}

static void log_summary(const lk_dataset *d)
{
    const struct lk_dataset_stats *s = &d->st;
    log_info("%s: %lld examples (%lld skipped), %lld tokens, %lld trained (%.1f%%), %lld rows of "
             "%lld tokens, packing efficiency %.1f%%, %lld truncated (%lld tokens cut)",
             d->path, (long long)s->examples, (long long)s->bad, (long long)s->tokens,
             (long long)s->trained_tokens,
             s->tokens ? 100.0 * (double)s->trained_tokens / (double)s->tokens : 0.0,
             (long long)s->rows, (long long)d->p.seq_len, 100.0 * s->packing_efficiency,
             (long long)s->truncated, (long long)s->truncated_tokens);
    if (s->truncated)
        log_warn("%s: %lld examples longer than --seq-len %lld were truncated", d->path,
                 (long long)s->truncated, (long long)d->p.seq_len);
    if (s->bad) {
        char lines[200] = "";
        for (int64_t k = 0; k < d->n_bad_kept && k < 10; k++)
            snprintf(lines + strlen(lines), sizeof lines - strlen(lines), "%s%lld", k ? ", " : "",
                     (long long)d->bad[k].line);
        log_warn("%s: %lld bad examples skipped (%s %s%s)", d->path, (long long)s->bad,
                 d->array_file ? "elements" : "lines", lines, s->bad > 10 ? ", ..." : "");
    }
}

static lk_status finish_load(lk_dataset *d)
{
    d->st.examples = d->n_ex;
    if (d->n_ex == 0)
        return status_fail(LK_ERR_FORMAT, "%s: no usable examples (%lld read, %lld bad%s%s)",
                           d->path, (long long)d->st.lines, (long long)d->st.bad,
                           d->n_bad_kept ? "; first: " : "", d->n_bad_kept ? d->bad[0].msg : "");
    d->order = malloc((size_t)d->n_ex * sizeof *d->order);
    d->row_start = malloc((size_t)(d->n_ex + 1) * sizeof *d->row_start);
    d->row_items = malloc((size_t)d->n_ex * sizeof *d->row_items);
    d->pack = malloc((size_t)(2 * pack_leaves(d->n_ex) + 2 * d->n_ex + 1) * sizeof *d->pack);
    if (!d->order || !d->row_start || !d->row_items || !d->pack)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    make_order(d, 0);
    d->st.rows = d->rows_in_epoch;
    d->st.packing_efficiency = (double)d->st.tokens / ((double)d->st.rows * (double)d->p.seq_len);
    log_summary(d);
    return LK_OK;
}

lk_status lk_dataset_load(const char *path, const lk_tokenizer *t,
                          const struct lk_dataset_params *p, lk_dataset **out)
{
    struct lk_dataset_params def = lk_dataset_params_default();
    if (!path || !t || !out)
        return status_fail(LK_ERR_ARG, "lk_dataset_load: NULL argument");
    *out = NULL;
    if (!p)
        p = &def;
    if (p->seq_len < 1 || p->format < 0 || p->format >= LK_DATA_N_FORMATS)
        return status_fail(LK_ERR_ARG,
                           "dataset: seq_len must be >= 1 (got %lld) and format "
                           "valid (got %d)",
                           (long long)p->seq_len, (int)p->format);
    lk_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    }
    d->t = t;
    d->p = *p;
    d->last_row = -1;
    d->p.fields = NULL; /* borrowed; the mapping is copied into col[] */
    d->chat = p->chat_format;
    char *buf = NULL;
    size_t n = 0;
    lk_status s = parse_fields(d, p->fields);
    if (s == LK_OK)
        s = read_text_file(path, (size_t)1 << 34, &buf, &n);
    if (s == LK_OK) {
        size_t a = n >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0; /* UTF-8 BOM */
        if (a) /* blank it so line 1 still parses */
            memset(buf, ' ', 3);
        while (a < n && (buf[a] == ' ' || buf[a] == '\n' || buf[a] == '\r' || buf[a] == '\t'))
            a++;
        s = a < n && buf[a] == '[' ? load_array(d, buf, n) : load_lines(d, buf, n);
    }
    d->p.chat_date = NULL; /* borrowed for the load only */
    free(buf);
    if (s == LK_OK)
        s = finish_load(d);
    if (s != LK_OK) {
        lk_dataset_free(d);
        return s;
    }
    *out = d;
    return LK_OK;
}

void lk_dataset_free(lk_dataset *d)
{
    if (!d)
        return;
    for (int64_t k = 0; k < d->n_bad_kept; k++)
        free(d->bad[k].msg);
    for (int k = 0; k < N_KEYS; k++)
        free(d->col[k]);
    free(d->bad);
    free(d->chat_system);
    free(d->ids);
    free(d->labels);
    free(d->ex_off);
    free(d->ex_len);
    free(d->ex_line);
    free(d->order);
    free(d->row_start);
    free(d->row_items);
    free(d->pack);
    free(d->path);
    free(d);
}

const struct lk_dataset_stats *lk_dataset_get_stats(const lk_dataset *d)
{
    return &d->st;
}

lk_status lk_dataset_example(const lk_dataset *d, int64_t i, const int32_t **ids,
                             const int32_t **labels, int64_t *n, int64_t *line)
{
    if (!d || i < 0 || i >= d->n_ex)
        return status_fail(LK_ERR_ARG, "dataset: example %lld out of range [0, %lld)", (long long)i,
                           d ? (long long)d->n_ex : 0LL);
    if (ids)
        *ids = d->ids + d->ex_off[i];
    if (labels)
        *labels = d->labels + d->ex_off[i];
    if (n)
        *n = d->ex_len[i];
    if (line)
        *line = d->ex_line[i];
    return LK_OK;
}

const char *lk_dataset_bad(const lk_dataset *d, int64_t k, int64_t *line)
{
    if (!d || k < 0 || k >= d->n_bad_kept)
        return NULL;
    if (line)
        *line = d->bad[k].line;
    return d->bad[k].msg;
}

int64_t lk_dataset_seq_len(const lk_dataset *d)
{
    return d->p.seq_len;
}
