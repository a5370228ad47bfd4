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
                                           "input_ids",     "labels",      "tools"};

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

/* The chat role of a message's "role" (OpenAI) or "from" (ShareGPT) name: system, user,
 * assistant, tool (a tool's result) or "call" (an assistant turn whose content is the tool call,
 * LLaMA-Factory's function_call); NULL for a name no convention here uses. */
static const char *chat_role(const char *r)
{
    static const char *const map[][2] = {
        {"system", "system"},       {"user", "user"},      {"human", "user"},
        {"assistant", "assistant"}, {"gpt", "assistant"},  {"tool", "tool"},
        {"observation", "tool"},    {"ipython", "tool"},   {"function", "tool"},
        {"function_call", "call"},  {"tool_call", "call"}, {"tool_calls", "call"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(r, map[i][0]))
            return map[i][1];
    return NULL;
}

struct msg_set {
    struct chat_msg *m;
    int *train;
    char **owned;
    int64_t n;
    char *tools; /* the conversation's tools as JSON text, or NULL */
};

static void msg_set_free(struct msg_set *ms)
{
    for (int64_t i = 0; ms->owned && i < 2 * ms->n; i++)
        free(ms->owned[i]);
    free(ms->m);
    free(ms->train);
    free(ms->owned);
    free(ms->tools);
}

/* A skip that is the same for every example using the role name r (tools 1: a tools list, 2: an
 * assistant's tool_calls): counted under one message instead of a warning per line (dataset.c's
 * record_bad reads d->skip_group). */
static lk_status skip_group(lk_dataset *d, char *why, const char *r, int tools)
{
    const char *fmt = lk_chat_format_name(d->chat);
    if (tools == 2)
        snprintf(d->skip_group, sizeof d->skip_group,
                 "they have assistant turns with tool_calls, which the %s template cannot write "
                 "(chatml, qwen2.5 and llama3.1 can: --chat-template NAME)",
                 fmt);
    else if (tools)
        snprintf(d->skip_group, sizeof d->skip_group,
                 "they list tools, which the %s template cannot write (chatml, qwen2.5 and "
                 "llama3.1 can: --chat-template NAME)",
                 fmt);
    else if (chat_role(r))
        snprintf(d->skip_group, sizeof d->skip_group,
                 "they use the role '%s' (tool %s), which the %s template does not define "
                 "(chatml, qwen2.5 and llama3.1 do: --chat-template NAME)",
                 r, strcmp(chat_role(r), "tool") ? "calls" : "results", fmt);
    else
        snprintf(d->skip_group, sizeof d->skip_group,
                 "they use the role '%s', which no chat convention here defines (system, "
                 "user/human, assistant/gpt, tool/observation/ipython, function_call)",
                 r);
    return SKIP(why, "%s", d->skip_group);
}

/* The tool calls of an assistant message: OpenAI's "tool_calls" list or legacy "function_call"
 * object, as JSON text in *owned (NULL when none). */
static lk_status message_calls(const cJSON *m, char **owned)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (!cJSON_IsArray(c) || !c->child)
        c = cJSON_GetObjectItemCaseSensitive(m, "function_call");
    if (!cJSON_IsArray(c) && !cJSON_IsObject(c))
        return LK_OK;
    if (!(*owned = cJSON_PrintUnformatted(c)))
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    return LK_OK;
}

/* Message i of a conversation into ms: role, content, tool calls, whether it trains. */
static lk_status read_message(lk_dataset *d, const cJSON *m, int sharegpt, int64_t i,
                              struct msg_set *ms, char *why)
{
    const char *name =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, sharegpt ? "from" : "role"));
    if (!name)
        return SKIP(why, "message %lld has no \"%s\"", (long long)i, sharegpt ? "from" : "role");
    const char *role = chat_role(name);
    if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
                  !chat_format_has_tools(d->chat)))
        return skip_group(d, why, name, 0);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, sharegpt ? "value" : "content");
    int call = !strcmp(role, "call");
    if (!strcmp(role, "assistant"))
        LK_TRY(message_calls(m, &ms->owned[2 * i + 1]));
    if (ms->owned[2 * i + 1] && !chat_format_has_tools(d->chat))
        return skip_group(d, why, NULL, 2);
    if (call && !cJSON_IsString(c))
        return SKIP(why, "message %lld (%s): the tool call is not JSON text", (long long)i, name);
    if (call || (ms->owned[2 * i + 1] && (!c || cJSON_IsNull(c))))
        ms->m[i].content = "";
    else if (!c)
        return SKIP(why, "message %lld has no content", (long long)i);
    else
        LK_TRY(message_content(c, i, &ms->m[i].content, &ms->owned[2 * i], why));
    ms->m[i].role = call ? "assistant" : role;
    ms->m[i].tool_calls = call ? c->valuestring : ms->owned[2 * i + 1];
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(m, "loss_weight");
    ms->train[i] =
        !strcmp(ms->m[i].role, "assistant") && (!cJSON_IsNumber(w) || w->valuedouble > 0);
    return LK_OK;
}

/* The record's tools: a JSON string (LLaMA-Factory) or a list, as JSON text in ms->tools. */
static lk_status read_tools(lk_dataset *d, const cJSON *o, struct msg_set *ms, char *why)
{
    const cJSON *t = field(d, o, K_TOOLS);
    if (!t || cJSON_IsNull(t) || (cJSON_IsString(t) && !*t->valuestring))
        return LK_OK;
    if (!cJSON_IsString(t) && !cJSON_IsArray(t))
        return SKIP(why, "\"%s\" is neither JSON text nor a list", d->col[K_TOOLS]);
    ms->tools = cJSON_IsString(t) ? strdup(t->valuestring) : cJSON_PrintUnformatted(t);
    if (!ms->tools)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    cJSON *parsed = NULL; /* an empty list is no tools; anything else needs a template for them */
    if (chat_tools_parse(ms->tools, &parsed) != LK_OK)
        return SKIP(why, "\"%s\": %s", d->col[K_TOOLS], lk_last_error());
    int any = parsed != NULL;
    cJSON_Delete(parsed);
    return any && !chat_format_has_tools(d->chat) ? skip_group(d, why, NULL, 1) : LK_OK;
}

static lk_status read_messages(lk_dataset *d, const cJSON *o, const cJSON *list, int sharegpt,
                               struct msg_set *ms, char *why)
{
    int64_t n = cJSON_GetArraySize(list);
    if (n == 0)
        return SKIP(why, "no messages");
    ms->m = calloc((size_t)n, sizeof *ms->m);
    ms->train = calloc((size_t)n, sizeof *ms->train);
    ms->owned = calloc(2 * (size_t)n, sizeof *ms->owned); /* content, tool calls */
    if (!ms->m || !ms->train || !ms->owned)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, list)
    {
        int64_t i = ms->n++;
        LK_TRY(read_message(d, m, sharegpt, i, ms, why));
    }
    return read_tools(d, o, ms, why);
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
    lk_status s = read_messages(d, o, list, sharegpt, &ms, why);
    if (s == LK_OK) {
        s = chat_render_spans(d->t, d->chat, d->chat_system, 0, d->p.chat_date, ms.tools, ms.m,
                              ms.n, ms.train, &text, &len, &sp, &nsp);
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
    int64_t V = d->t ? lk_tokenizer_vocab_size(d->t) : d->p.vocab_size;
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

/* The first key of o among names[] (common column names of one role), or NULL. */
static const char *column_like(const cJSON *o, const char *const *names)
{
    for (; *names; names++)
        if (cJSON_GetObjectItemCaseSensitive(o, *names))
            return *names;
    return NULL;
}

/* A --fields mapping for the columns of a record no format recognised (GSM8K's question and
 * answer: "try --fields prompt=question,completion=answer"), into hint[n]. */
static void suggest_fields(const cJSON *o, char *hint, size_t n)
{
    static const char *const prompt[] = {"prompt",      "question", "query",   "problem",
                                         "instruction", "input",    "context", "source",
                                         "request",     "human",    "user",    NULL};
    static const char *const completion[] = {"completion", "answer", "response", "output",
                                             "solution",   "target", "reply",    "assistant",
                                             "gpt",        "chosen", NULL};
    static const char *const messages[] = {"conversation", "dialog", "dialogue",
                                           "chat",         "turns",  NULL};
    static const char *const text[] = {"content", "document", "body",    "sentence",
                                       "article", "story",    "passage", NULL};
    const char *p = column_like(o, prompt), *c = column_like(o, completion);
    const char *m = column_like(o, messages), *t = column_like(o, text);
    if (p && c && strcmp(p, c) != 0)
        snprintf(hint, n, "try --fields %s%s%s%s%s", strcmp(p, "prompt") ? "prompt=" : "",
                 strcmp(p, "prompt") ? p : "",
                 strcmp(p, "prompt") && strcmp(c, "completion") ? "," : "",
                 strcmp(c, "completion") ? "completion=" : "", strcmp(c, "completion") ? c : "");
    else if (m)
        snprintf(hint, n, "try --fields messages=%s", m);
    else if (t)
        snprintf(hint, n, "try --fields text=%s", t);
    else
        snprintf(hint, n, "map other names with --fields KEY=COLUMN");
}

/* A preference record (LLaMA-Factory's and TRL's DPO/reward data: "chosen" and "rejected"
 * replies) whose columns no --fields names: SFT would read its prompt alone and silently drop
 * the chosen reply. */
static int is_preference(const lk_dataset *d, const cJSON *o)
{
    if (!cJSON_GetObjectItemCaseSensitive(o, "chosen") ||
        !cJSON_GetObjectItemCaseSensitive(o, "rejected"))
        return 0;
    for (int k = 0; k < N_KEYS; k++)
        if (!strcmp(d->col[k], "chosen") || !strcmp(d->col[k], "rejected"))
            return 0;
    return 1;
}

lk_status dataset_build_example(lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why,
                                lk_data_format *fmt)
{
    if (!cJSON_IsObject(o))
        return SKIP(why, "expected a JSON object");
    lk_status s = LK_OK;
    *fmt = detect(d, o);
    if (is_preference(d, o))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: %s %lld: a preference record (\"chosen\" and \"rejected\" "
                           "replies, as DPO or reward-model data): lorakit trains on "
                           "demonstrations (SFT), not on preferences (hint: to train on the chosen "
                           "replies, write them as the conversation's last assistant turn, or as "
                           "the completion: --fields completion=chosen when they are strings)",
                           d->path, d->array_file ? "element" : "line", (long long)d->line);
    if (!d->t && *fmt != LK_DATA_TOKENS && *fmt != LK_DATA_AUTO)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: %s %lld: a %s record needs the model's tokenizer, and there is "
                           "none (without one only pre-tokenised input_ids records can be read)",
                           d->path, d->array_file ? "element" : "line", (long long)d->line,
                           lk_data_format_name(*fmt));
    switch (*fmt) {
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
        char keys[96] = "", hint[112];
        const cJSON *c;
        cJSON_ArrayForEach(c, o) if (strlen(keys) + strlen(c->string) + 3 < sizeof keys)
        {
            strcat(keys, *keys ? ", " : "");
            strcat(keys, c->string);
        }
        suggest_fields(o, hint, sizeof hint);
        return SKIP(why,
                    "no known fields (has: %s; expected text, prompt+completion, messages, "
                    "instruction+output or input_ids; %s)",
                    *keys ? keys : "nothing", hint);
    }
    }
}

/* The item p[0..end) of a --fields list: the index of its canonical key in g_keys and where its
 * column's name starts. */
static lk_status field_item(const char *p, const char *end, int *key, const char **col)
{
    const char *eq = memchr(p, '=', (size_t)(end - p));
    int k = -1;
    for (int i = 0; eq && i < N_KEYS; i++)
        if ((size_t)(eq - p) == strlen(g_keys[i]) && !memcmp(p, g_keys[i], (size_t)(eq - p)))
            k = i;
    if (!eq || k < 0 || eq + 1 == end)
        return status_fail(LK_ERR_ARG,
                           "--fields: '%.*s' is not KEY=COLUMN with KEY one of "
                           "text, prompt, completion, messages, conversations, "
                           "instruction, input, output, input_ids, labels, tools",
                           (int)(end - p), p);
    *key = k;
    *col = eq + 1;
    return LK_OK;
}

lk_status dataset_walk_fields(const char *spec, char **col)
{
    for (const char *p = spec; p && *p;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p), *c = NULL;
        int k = 0;
        LK_TRY(field_item(p, end, &k, &c));
        if (col) {
            free(col[k]);
            if (!(col[k] = strndup(c, (size_t)(end - c))))
                return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        }
        p = comma ? comma + 1 : end;
    }
    return LK_OK;
}

lk_status dataset_parse_fields(lk_dataset *d, const char *spec)
{
    for (int k = 0; k < N_KEYS; k++)
        if (!(d->col[k] = strdup(g_keys[k])))
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    return dataset_walk_fields(spec, d->col);
}
