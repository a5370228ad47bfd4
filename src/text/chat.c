/* chat.c — native chat-template renderers: ChatML (Qwen2.5's default system prompt optional),
 * Llama-3 and Llama-3.1/3.2, Llama-2 [INST] <<SYS>>, Mistral [INST], Alpaca. Each function mirrors
 * the Jinja template quoted above it, for system/user/assistant turns, and for ChatML/Qwen2.5 and
 * Llama-3.1 also tool definitions, calls and results (the texts from chat_tools.c); the tests
 * compare against those templates rendered by jinja2 (tests/gen/gen_chat.py) and by transformers'
 * apply_chat_template (tests/gen/gen_chat_tools.py). */
#include "text/chat.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"

struct chat_buf {
    char *s;
    size_t n, cap;
    struct chat_span *sp;
    int64_t nsp;
    size_t capsp;
};

static lk_status put(struct chat_buf *b, const char *s, size_t n)
{
    LK_TRY(BUF_GROW(&b->s, &b->cap, b->n + n + 1, "chat: rendered text"));
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return LK_OK;
}

static lk_status puts_(struct chat_buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Append what a chat_tools.c writer wrote into a scratch buffer. */
static lk_status put_buf(struct chat_buf *b, struct buf *t, lk_status s)
{
    if (s == LK_OK)
        s = put(b, (const char *)t->p, t->n);
    buf_free(t);
    return s;
}

static lk_status span(struct chat_buf *b, size_t start)
{
    LK_TRY(BUF_GROW(&b->sp, &b->capsp, (size_t)b->nsp + 1, "chat: assistant spans"));
    b->sp[b->nsp++] = (struct chat_span){start, b->n};
    return LK_OK;
}

/* Python's str.isspace for one code point starting at s (length in *k). */
static int py_space(const unsigned char *s, size_t n, size_t *k)
{
    *k = 1;
    if (s[0] == ' ' || (s[0] >= 9 && s[0] <= 13) || (s[0] >= 0x1c && s[0] <= 0x1f))
        return 1;
    if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0))
        return *k = 2, 1;
    if (n >= 3) {
        unsigned cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if ((s[0] & 0xF0) == 0xE0 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
             cp == 0x202F || cp == 0x205F || cp == 0x3000))
            return *k = 3, 1;
    }
    return 0;
}

/* Jinja's |trim and Python's .strip(): whitespace off both ends. */
static void trim(const char *s, const char **out, size_t *n)
{
    const unsigned char *a = (const unsigned char *)s, *z = a + strlen(s);
    size_t k;
    while (a < z && py_space(a, (size_t)(z - a), &k))
        a += k;
    while (z > a) {
        /* find the start of the last code point */
        const unsigned char *c = z - 1;
        while (c > a && (*c & 0xC0) == 0x80 && z - c < 4)
            c--;
        if (!py_space(c, (size_t)(z - c), &k) || c + k != z)
            break;
        z = c;
    }
    *out = (const char *)a;
    *n = (size_t)(z - a);
}

static lk_status put_trimmed(struct chat_buf *b, const char *s)
{
    const char *p;
    size_t n;
    trim(s, &p, &n);
    return put(b, p, n);
}

static int is_role(const struct chat_msg *m, const char *r)
{
    return !strcmp(m->role, r);
}

static int trains(const int *train, int64_t i)
{
    return !train || train[i];
}

static const char qwen_system[] = "You are Qwen, created by Alibaba Cloud. You are a helpful "
                                  "assistant.";

/* Qwen2.5 / ChatML (SmolLM2 and others alike, with their own default system prompt):
 *   {%- if tools %}<|im_start|>system\n{{first system message, or the default}}{{tools block}}
 *   {%- elif messages[0]['role'] == 'system' %}<|im_start|>system\n{{content}}<|im_end|>\n
 *   {%- else %}<|im_start|>system\nYou are Qwen, ...<|im_end|>\n{%- endif %}  (with a default)
 *   {%- for message in messages %} (user, system not first, assistant without tool calls):
 *       <|im_start|>{{role}}\n{{content}}<|im_end|>\n
 *   (assistant with tool calls): <|im_start|>assistant{% if content %}\n{{content}}{% endif %}
 *       {% for call %}\n<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>{% endfor %}
 *       <|im_end|>\n
 *   (tool, a run of them in one user turn): <|im_start|>user (first of the run)
 *       \n<tool_response>\n{{content}}\n</tool_response> ... <|im_end|>\n (last of the run)
 *   {%- if add_generation_prompt %}<|im_start|>assistant\n
 * A ChatML template without a default system prompt gets an empty one before the tools block. */
static lk_status chatml_system(struct chat_buf *b, const char *default_system,
                               const struct chat_msg *m, int64_t n, const cJSON *tools,
                               int64_t *first)
{
    *first = 0;
    if (tools) {
        struct buf t = {0};
        LK_TRY(puts_(b, "<|im_start|>system\n"));
        if (n > 0 && is_role(&m[0], "system"))
            LK_TRY(puts_(b, m[(*first)++].content));
        else if (default_system)
            LK_TRY(puts_(b, default_system));
        return put_buf(b, &t, chat_tools_qwen(tools, &t));
    }
    if (default_system && n > 0 && !is_role(&m[0], "system")) {
        LK_TRY(puts_(b, "<|im_start|>system\n"));
        LK_TRY(puts_(b, default_system));
        LK_TRY(puts_(b, "<|im_end|>\n"));
    }
    return LK_OK;
}

/* An assistant turn with tool calls; the loss span starts after "<|im_start|>assistant\n" (the
 * header a generation prompt writes). */
static lk_status chatml_calls(struct chat_buf *b, const struct chat_msg *msg, int train)
{
    cJSON *calls = NULL;
    LK_TRY(chat_tool_calls_parse(msg->tool_calls, &calls));
    struct buf t = {0};
    lk_status s = buf_put(&t, "<|im_start|>assistant", 21, "chat: rendered text");
    size_t start = b->n + t.n + 1;
    if (s == LK_OK && *msg->content)
        s = buf_put(&t, "\n", 1, "chat: rendered text");
    if (s == LK_OK && *msg->content)
        s = buf_put(&t, msg->content, strlen(msg->content), "chat: rendered text");
    for (const cJSON *c = calls->child; c && s == LK_OK; c = c->next)
        s = chat_tool_call_qwen(c, &t);
    if (s == LK_OK)
        s = buf_put(&t, "<|im_end|>", 10, "chat: rendered text");
    cJSON_Delete(calls);
    LK_TRY(put_buf(b, &t, s));
    if (train)
        LK_TRY(span(b, start));
    return puts_(b, "\n");
}

static lk_status chatml_tool(struct chat_buf *b, const struct chat_msg *m, int64_t i, int64_t n)
{
    if (i == 0 || !is_role(&m[i - 1], "tool"))
        LK_TRY(puts_(b, "<|im_start|>user"));
    LK_TRY(puts_(b, "\n<tool_response>\n"));
    LK_TRY(puts_(b, m[i].content));
    LK_TRY(puts_(b, "\n</tool_response>"));
    return i == n - 1 || !is_role(&m[i + 1], "tool") ? puts_(b, "<|im_end|>\n") : LK_OK;
}

static lk_status render_chatml(struct chat_buf *b, const char *default_system,
                               const struct chat_msg *m, int64_t n, const cJSON *tools,
                               const int *train, int gen)
{
    int64_t first;
    LK_TRY(chatml_system(b, default_system, m, n, tools, &first));
    for (int64_t i = first; i < n; i++) {
        if (is_role(&m[i], "tool")) {
            LK_TRY(chatml_tool(b, m, i, n));
            continue;
        }
        if (m[i].tool_calls) {
            LK_TRY(chatml_calls(b, &m[i], trains(train, i)));
            continue;
        }
        LK_TRY(puts_(b, "<|im_start|>"));
        LK_TRY(puts_(b, m[i].role));
        LK_TRY(puts_(b, "\n"));
        size_t start = b->n;
        LK_TRY(puts_(b, m[i].content));
        LK_TRY(puts_(b, "<|im_end|>"));
        if (is_role(&m[i], "assistant") && trains(train, i))
            LK_TRY(span(b, start));
        LK_TRY(puts_(b, "\n"));
    }
    return gen ? puts_(b, "<|im_start|>assistant\n") : LK_OK;
}

/* Llama-3: {{bos}} then per message <|start_header_id|>{{role}}<|end_header_id|>\n\n
 * {{content|trim}}<|eot_id|>; generation prompt: the assistant header. Llama-3.1/3.2 first write a
 * system block: "Cutting Knowledge Date: December 2023\nToday Date: {{date}}\n\n" + the system
 * message (trimmed, "" if none), with "Environment: ipython\n" before it when tools are given;
 * the tools then go into the first message after the system one, written as a user turn
 * (tools_in_user_message, the default): the tools preamble + its content (trimmed). A turn with
 * tool calls (exactly one) is written as the assistant's {"name": ..., "parameters": ...}, a
 * tool's result as an ipython turn with the content as a JSON string. Llama-3.0 writes bos only
 * before the first message. */
static lk_status llama31_system(struct chat_buf *b, const char *date, const struct chat_msg *m,
                                int64_t n, const cJSON *tools, int64_t *i)
{
    LK_TRY(puts_(b, "<|start_header_id|>system<|end_header_id|>\n\n"));
    if (tools)
        LK_TRY(puts_(b, "Environment: ipython\n"));
    LK_TRY(puts_(b, "Cutting Knowledge Date: December 2023\nToday Date: "));
    LK_TRY(puts_(b, date ? date : "26 Jul 2024"));
    LK_TRY(puts_(b, "\n\n"));
    if (n > 0 && is_role(&m[0], "system"))
        LK_TRY(put_trimmed(b, m[(*i)++].content));
    LK_TRY(puts_(b, "<|eot_id|>"));
    if (!tools)
        return LK_OK;
    if (*i >= n)
        return status_fail(LK_ERR_ARG, "chat llama3.1: tools go into the first user message, "
                                       "and the conversation has none");
    struct buf t = {0};
    LK_TRY(puts_(b, "<|start_header_id|>user<|end_header_id|>\n\n"));
    LK_TRY(put_buf(b, &t, chat_tools_llama31(tools, &t)));
    LK_TRY(put_trimmed(b, m[(*i)++].content));
    return puts_(b, "<|eot_id|>");
}

/* A Llama-3.1 turn with a tool call or a tool's result. */
static lk_status llama31_tool_turn(struct chat_buf *b, const struct chat_msg *msg, int train)
{
    struct buf t = {0};
    if (is_role(msg, "tool")) {
        LK_TRY(puts_(b, "<|start_header_id|>ipython<|end_header_id|>\n\n"));
        LK_TRY(put_buf(b, &t, chat_tool_result_llama31(msg->content, &t)));
        return puts_(b, "<|eot_id|>");
    }
    cJSON *calls = NULL;
    LK_TRY(chat_tool_calls_parse(msg->tool_calls, &calls));
    lk_status s = cJSON_GetArraySize(calls) == 1
                      ? chat_tool_call_llama31(calls->child, &t)
                      : status_fail(LK_ERR_ARG,
                                    "chat llama3.1: this model only supports single "
                                    "tool-calls at once (a turn has %d)",
                                    cJSON_GetArraySize(calls));
    cJSON_Delete(calls);
    if (s != LK_OK) {
        buf_free(&t);
        return s;
    }
    LK_TRY(puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n"));
    size_t start = b->n;
    LK_TRY(put_buf(b, &t, LK_OK));
    LK_TRY(puts_(b, "<|eot_id|>"));
    return train ? span(b, start) : LK_OK;
}

static lk_status render_llama3(struct chat_buf *b, const lk_tokenizer *t, int v31, const char *date,
                               const struct chat_msg *m, int64_t n, const cJSON *tools,
                               const int *train, int gen)
{
    int64_t i = 0;
    if (v31 || n > 0)
        LK_TRY(puts_(b, lk_tokenizer_bos_str(t)));
    if (v31)
        LK_TRY(llama31_system(b, date, m, n, tools, &i));
    for (; i < n; i++) {
        if (is_role(&m[i], "tool") || m[i].tool_calls) {
            LK_TRY(llama31_tool_turn(b, &m[i], trains(train, i)));
            continue;
        }
        LK_TRY(puts_(b, "<|start_header_id|>"));
        LK_TRY(puts_(b, m[i].role));
        LK_TRY(puts_(b, "<|end_header_id|>\n\n"));
        size_t start = b->n;
        LK_TRY(put_trimmed(b, m[i].content));
        LK_TRY(puts_(b, "<|eot_id|>"));
        if (is_role(&m[i], "assistant") && trains(train, i))
            LK_TRY(span(b, start));
    }
    return gen ? puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n") : LK_OK;
}

/* Llama-2 chat (meta-llama/Llama-2-7b-chat-hf):
 *   system first: system_message = messages[0].content, loop over the rest;
 *   roles must alternate user/assistant/...;
 *   first turn content = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content;
 *   user: bos + '[INST] ' + content.strip() + ' [/INST]'; assistant: ' ' + content.strip() + ' ' +
 *   eos. No generation prompt. Mistral v0.1/v0.2: no system; user: '[INST] ' + content +
 *   ' [/INST]' (bos once at the start, no strip); assistant: content + eos. */
static lk_status render_inst(struct chat_buf *b, const lk_tokenizer *t, int llama2,
                             const struct chat_msg *m, int64_t n, const int *train)
{
    int64_t first = 0;
    const char *sys = NULL;
    if (llama2 && n > 0 && is_role(&m[0], "system"))
        sys = m[first++].content;
    if (!llama2)
        LK_TRY(puts_(b, lk_tokenizer_bos_str(t)));
    for (int64_t i = first; i < n; i++) {
        int user = is_role(&m[i], "user");
        if (user != ((i - first) % 2 == 0))
            return status_fail(LK_ERR_ARG,
                               "chat %s: conversation roles must alternate "
                               "user/assistant/user/assistant/... (message %lld)",
                               llama2 ? "llama2" : "mistral", (long long)i);
        if (!user && !is_role(&m[i], "assistant"))
            return status_fail(LK_ERR_ARG,
                               "chat %s: only user and assistant roles are supported "
                               "here, got '%s' at message %lld",
                               llama2 ? "llama2" : "mistral", m[i].role, (long long)i);
        if (user) {
            if (llama2)
                LK_TRY(puts_(b, lk_tokenizer_bos_str(t)));
            LK_TRY(puts_(b, "[INST] "));
            if (llama2 && i == first && sys) {
                /* strip() applies to the whole '<<SYS>>...' + content string */
                struct chat_buf tmp = {0};
                lk_status s = puts_(&tmp, "<<SYS>>\n");
                if (s == LK_OK)
                    s = puts_(&tmp, sys);
                if (s == LK_OK)
                    s = puts_(&tmp, "\n<</SYS>>\n\n");
                if (s == LK_OK)
                    s = puts_(&tmp, m[i].content);
                if (s == LK_OK)
                    s = put_trimmed(b, tmp.s);
                free(tmp.s);
                LK_TRY(s);
            } else {
                LK_TRY(llama2 ? put_trimmed(b, m[i].content) : puts_(b, m[i].content));
            }
            LK_TRY(puts_(b, " [/INST]"));
        } else {
            if (llama2)
                LK_TRY(puts_(b, " "));
            size_t start = b->n;
            LK_TRY(llama2 ? put_trimmed(b, m[i].content) : puts_(b, m[i].content));
            if (llama2)
                LK_TRY(puts_(b, " "));
            LK_TRY(puts_(b, lk_tokenizer_eos_str(t)));
            if (trains(train, i))
                LK_TRY(span(b, start));
        }
    }
    return LK_OK;
}

/* Alpaca (this project's chat form of the Stanford Alpaca prompt, as LLaMA-Factory writes it):
 *   system message + '\n\n', or 'Below is an instruction that describes a task. Write a
 *   response that appropriately completes the request.\n\n';
 *   user: '### Instruction:\n' + content + '\n\n';
 *   assistant: '### Response:\n' + content + eos + '\n\n';
 *   generation prompt: '### Response:\n'. */
static lk_status render_alpaca(struct chat_buf *b, const lk_tokenizer *t, const struct chat_msg *m,
                               int64_t n, const int *train, int gen)
{
    int64_t i = 0;
    if (n > 0 && is_role(&m[0], "system")) {
        LK_TRY(puts_(b, m[i++].content));
        LK_TRY(puts_(b, "\n\n"));
    } else {
        LK_TRY(puts_(b, "Below is an instruction that describes a task. Write a response that "
                        "appropriately completes the request.\n\n"));
    }
    for (; i < n; i++) {
        if (is_role(&m[i], "user")) {
            LK_TRY(puts_(b, "### Instruction:\n"));
            LK_TRY(puts_(b, m[i].content));
            LK_TRY(puts_(b, "\n\n"));
        } else if (is_role(&m[i], "assistant")) {
            LK_TRY(puts_(b, "### Response:\n"));
            size_t start = b->n;
            LK_TRY(puts_(b, m[i].content));
            LK_TRY(puts_(b, lk_tokenizer_eos_str(t)));
            if (trains(train, i))
                LK_TRY(span(b, start));
            LK_TRY(puts_(b, "\n\n"));
        } else {
            return status_fail(LK_ERR_ARG,
                               "chat alpaca: role '%s' at message %lld: only a first "
                               "system message, user and assistant are supported",
                               m[i].role, (long long)i);
        }
    }
    return gen ? puts_(b, "### Response:\n") : LK_OK;
}

int chat_format_has_tools(lk_chat_format format)
{
    return format == LK_CHAT_CHATML || format == LK_CHAT_QWEN2_5 || format == LK_CHAT_LLAMA3_1;
}

static const char *const g_names[] = {"auto",     "chatml", "qwen2.5", "llama3",
                                      "llama3.1", "llama2", "mistral", "alpaca"};

/* Roles and tool calls the format can write. */
static lk_status check_messages(lk_chat_format format, const struct chat_msg *m, int64_t n,
                                int tools)
{
    int has_tools = chat_format_has_tools(format);
    if (n < 0 || (n > 0 && !m))
        return status_fail(LK_ERR_ARG, "chat: bad message array");
    if (tools && !has_tools)
        return status_fail(LK_ERR_ARG,
                           "chat %s: the template has no tool definitions (chatml, "
                           "qwen2.5 and llama3.1 do)",
                           g_names[format]);
    for (int64_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return status_fail(LK_ERR_ARG, "chat: message %lld has no %s", (long long)i,
                               m[i].role ? "content" : "role");
        int tool = is_role(&m[i], "tool");
        if (!is_role(&m[i], "system") && !is_role(&m[i], "user") && !is_role(&m[i], "assistant") &&
            !tool)
            return status_fail(LK_ERR_ARG,
                               "chat: message %lld has role '%s' (expected system, user, "
                               "assistant or tool)",
                               (long long)i, m[i].role);
        if (m[i].tool_calls && !is_role(&m[i], "assistant"))
            return status_fail(LK_ERR_ARG,
                               "chat: message %lld: only an assistant turn makes tool "
                               "calls (role '%s')",
                               (long long)i, m[i].role);
        if ((tool || m[i].tool_calls) && !has_tools)
            return status_fail(LK_ERR_ARG,
                               "chat %s: message %lld: the template has no tool %s (chatml, "
                               "qwen2.5 and llama3.1 do)",
                               g_names[format], (long long)i, tool ? "results" : "calls");
    }
    return LK_OK;
}

lk_status chat_render_spans(const lk_tokenizer *t, lk_chat_format format,
                            const char *default_system, int add_gen, const char *date_string,
                            const char *tools, const struct chat_msg *msgs, int64_t n,
                            const int *train, char **text, size_t *len, struct chat_span **spans,
                            int64_t *n_spans)
{
    cJSON *tl = NULL;
    LK_TRY(chat_tools_parse(tools, &tl));
    lk_status s = check_messages(format, msgs, n, tl != NULL);
    struct chat_buf b = {0};
    if (s == LK_OK)
        s = put(&b, "", 0);
    if (s == LK_OK) {
        switch (format) {
        case LK_CHAT_CHATML:
        case LK_CHAT_QWEN2_5:
            s = render_chatml(&b, format == LK_CHAT_QWEN2_5 ? qwen_system : default_system, msgs, n,
                              tl, train, add_gen);
            break;
        case LK_CHAT_LLAMA3:
        case LK_CHAT_LLAMA3_1:
            s = render_llama3(&b, t, format == LK_CHAT_LLAMA3_1, date_string, msgs, n, tl, train,
                              add_gen);
            break;
        case LK_CHAT_LLAMA2:
        case LK_CHAT_MISTRAL:
            s = render_inst(&b, t, format == LK_CHAT_LLAMA2, msgs, n, train);
            break;
        case LK_CHAT_ALPACA: s = render_alpaca(&b, t, msgs, n, train, add_gen); break;
        default: s = status_fail(LK_ERR_ARG, "chat: no format chosen (%d)", (int)format);
        }
    }
    cJSON_Delete(tl);
    if (s != LK_OK) {
        free(b.s);
        free(b.sp);
        return s;
    }
    *text = b.s;
    if (len)
        *len = b.n;
    if (spans)
        *spans = b.sp;
    else
        free(b.sp);
    if (n_spans)
        *n_spans = b.nsp;
    return LK_OK;
}

struct lk_chat_params lk_chat_params_default(void)
{
    return (struct lk_chat_params){.format = LK_CHAT_AUTO,
                                   .add_generation_prompt = 0,
                                   .date_string = NULL,
                                   .tools = NULL,
                                   .tool_calls = NULL};
}

const char *lk_chat_format_name(lk_chat_format f)
{
    return f >= 0 && f <= LK_CHAT_ALPACA ? g_names[f] : "unknown";
}

lk_status lk_chat_format_from_name(const char *name, lk_chat_format *out)
{
    static const struct {
        const char *name;
        lk_chat_format f;
    } alias[] = {
        {"qwen", LK_CHAT_QWEN2_5}, {"qwen2", LK_CHAT_QWEN2_5}, {"llama3.2", LK_CHAT_LLAMA3_1}};
    for (int i = 0; name && i <= LK_CHAT_ALPACA; i++)
        if (!strcmp(name, g_names[i]))
            return *out = (lk_chat_format)i, LK_OK;
    for (size_t i = 0; name && i < sizeof alias / sizeof alias[0]; i++)
        if (!strcmp(name, alias[i].name))
            return *out = alias[i].f, LK_OK;
    return status_fail(LK_ERR_ARG,
                       "chat template '%s' is unknown (known: chatml, qwen2.5, llama3, "
                       "llama3.1, llama2, mistral, alpaca)",
                       name ? name : "(null)");
}

lk_status lk_chat_detect(const lk_tokenizer *t, lk_chat_format *out)
{
    const char *tm = t ? lk_tokenizer_chat_template(t) : NULL;
    const char *hint = "pass --chat-template NAME (chatml, qwen2.5, llama3, llama3.1, llama2, "
                       "mistral, alpaca)";
    if (!tm)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "chat: the tokenizer has no chat_template in "
                           "tokenizer_config.json; %s",
                           hint);
    if (strstr(tm, "<|im_start|>") && !strstr(tm, "<think>"))
        *out =
            strstr(tm, "You are Qwen, created by Alibaba Cloud") ? LK_CHAT_QWEN2_5 : LK_CHAT_CHATML;
    else if (strstr(tm, "<|start_header_id|>"))
        *out = strstr(tm, "Cutting Knowledge Date") ? LK_CHAT_LLAMA3_1 : LK_CHAT_LLAMA3;
    else if (strstr(tm, "[INST]") && !strstr(tm, "[AVAILABLE_TOOLS]"))
        *out = strstr(tm, "<<SYS>>") ? LK_CHAT_LLAMA2 : LK_CHAT_MISTRAL;
    else if (strstr(tm, "### Instruction:"))
        *out = LK_CHAT_ALPACA;
    else
        return status_fail(LK_ERR_UNSUPPORTED,
                           "chat: the tokenizer's chat_template is not one "
                           "lorakit renders natively; %s",
                           hint);
    return LK_OK;
}

/* The default system prompt a ChatML template writes when the conversation has none: the text
 * of a string literal '<|im_start|>system\n...<|im_end|>' in the template (newline written as
 * \n or literally). NULL if the template has none. */
static char *chatml_default_system(const char *tm)
{
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(tm, head); p; p = strstr(p + 1, head)) {
        const char *q = p + sizeof head - 1;
        if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else if (q[0] == '\n')
            q += 1;
        else
            continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q || memchr(q, '\'', (size_t)(end - q)) ||
            memchr(q, '"', (size_t)(end - q)) || memchr(q, '{', (size_t)(end - q)))
            continue; /* not one literal: the system message itself goes there */
        char *out = malloc((size_t)(end - q) + 1), *o = out;
        if (!out)
            return NULL;
        for (; q < end; q++) {
            if (q[0] == '\\' && q + 1 < end) {
                q++;
                *o++ = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                *o++ = *q;
            }
        }
        *o = 0;
        return out;
    }
    return NULL;
}

lk_status chat_resolve(const lk_tokenizer *t, lk_chat_format *format, char **default_system)
{
    *default_system = NULL;
    if (*format != LK_CHAT_AUTO)
        return LK_OK;
    LK_TRY(lk_chat_detect(t, format));
    if (*format == LK_CHAT_CHATML) {
        *default_system = chatml_default_system(lk_tokenizer_chat_template(t));
        if (!*default_system && strstr(lk_tokenizer_chat_template(t), "<|im_start|>system"))
            log_debug("chat: ChatML template without a literal default system prompt");
    }
    return LK_OK;
}

lk_status lk_chat_render(const lk_tokenizer *t, const struct lk_chat_params *p,
                         const struct lk_chat_message *msgs, int64_t n, char **text, size_t *len)
{
    struct lk_chat_params d = lk_chat_params_default();
    if (!p)
        p = &d;
    if (!t || !text)
        return status_fail(LK_ERR_ARG, "lk_chat_render: NULL argument");
    lk_chat_format f = p->format;
    char *sys = NULL;
    LK_TRY(chat_resolve(t, &f, &sys));
    struct chat_msg *m = calloc((size_t)(n > 0 ? n : 1), sizeof *m);
    lk_status s = m ? LK_OK : status_fail(LK_ERR_NOMEM, "chat: out of memory");
    for (int64_t i = 0; s == LK_OK && i < n && msgs; i++)
        m[i] = (struct chat_msg){msgs[i].role, msgs[i].content,
                                 p->tool_calls ? p->tool_calls[i] : NULL};
    if (s == LK_OK)
        s = chat_render_spans(t, f, sys, p->add_generation_prompt, p->date_string, p->tools,
                              msgs ? m : NULL, n, NULL, text, len, NULL, NULL);
    free(m);
    free(sys);
    return s;
}

lk_status lk_chat_end_of_turn(const lk_tokenizer *t, lk_chat_format f, int32_t *id)
{
    char *sys = NULL;
    LK_TRY(chat_resolve(t, &f, &sys));
    free(sys);
    const char *tok = f == LK_CHAT_CHATML || f == LK_CHAT_QWEN2_5  ? "<|im_end|>"
                      : f == LK_CHAT_LLAMA3 || f == LK_CHAT_LLAMA3_1 ? "<|eot_id|>"
                                                                     : NULL;
    *id = tok ? lk_tokenizer_token_to_id(t, tok) : lk_tokenizer_eos(t);
    if (*id < 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "chat %s: the vocabulary has no end-of-turn token %s",
                           lk_chat_format_name(f), tok ? tok : "(EOS)");
    return LK_OK;
}
