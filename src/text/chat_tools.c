/* chat_tools.c — tool calling as the chat templates write it: a conversation's tool definitions
 * and an assistant turn's calls, given as JSON text (lk_chat_params.tools,
 * lk_chat_message.tool_calls), parsed and normalised here, and the pieces of text that
 * Qwen2.5's template (also used for ChatML, the Hermes convention it follows) and Llama-3.1's
 * template write for them. Values go through json_dump_py, which writes what transformers'
 * tojson filter writes (Python's json.dumps). Calls into no other chat file; chat.c uses it. */
#include "text/chat.h"

#include <string.h>

#include "core/json.h"
#include "core/status.h"

lk_status chat_tools_parse(const char *tools, cJSON **out)
{
    *out = NULL;
    if (!tools || !*tools)
        return LK_OK;
    cJSON *j = NULL;
    if (json_parse("chat: tools", tools, strlen(tools), &j) != LK_OK)
        return status_fail(LK_ERR_ARG, "%s", lk_last_error());
    int ok = cJSON_IsArray(j);
    for (const cJSON *t = ok ? j->child : NULL; t; t = t->next)
        ok &= cJSON_IsObject(t);
    if (!ok) {
        cJSON_Delete(j);
        return status_fail(LK_ERR_ARG, "chat: tools must be a JSON array of objects (the tools' "
                                       "schemas)");
    }
    if (!j->child) /* no tool: as if none were given */
        cJSON_Delete(j);
    else
        *out = j;
    return LK_OK;
}

/* Call c as {"name": STR, "arguments": VALUE}: OpenAI's {"type": "function", "function": {...}}
 * unwrapped, arguments given as a JSON string holding an object parsed (transformers expects a
 * dict), no arguments: {}. */
static lk_status normalise_call(const cJSON *c, int64_t i, cJSON *calls)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
    if (cJSON_IsObject(f))
        c = f;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
    if (!cJSON_IsObject(c) || !name)
        return status_fail(LK_ERR_ARG, "chat: tool call %lld has no \"name\"", (long long)i);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "arguments");
    cJSON *args = NULL, *o = cJSON_CreateObject();
    if (cJSON_IsString(a) &&
        json_parse("arguments", a->valuestring, strlen(a->valuestring), &args) == LK_OK &&
        !cJSON_IsObject(args)) {
        cJSON_Delete(args);
        args = NULL;
    }
    if (!args)
        args = a ? cJSON_Duplicate(a, 1) : cJSON_CreateObject();
    if (!o || !args || !cJSON_AddStringToObject(o, "name", name)) {
        cJSON_Delete(o);
        cJSON_Delete(args);
        return status_fail(LK_ERR_NOMEM, "chat: out of memory");
    }
    cJSON_AddItemToObject(o, "arguments", args);
    cJSON_AddItemToArray(calls, o);
    return LK_OK;
}

lk_status chat_tool_calls_parse(const char *json, cJSON **out)
{
    *out = NULL;
    cJSON *j = NULL;
    if (json_parse("chat: tool_calls", json, strlen(json), &j) != LK_OK)
        return status_fail(LK_ERR_ARG, "%s", lk_last_error());
    cJSON *calls = cJSON_CreateArray();
    lk_status s = calls ? LK_OK : status_fail(LK_ERR_NOMEM, "chat: out of memory");
    int64_t i = 0;
    if (s == LK_OK && cJSON_IsObject(j))
        s = normalise_call(j, 0, calls);
    for (const cJSON *c = cJSON_IsArray(j) ? j->child : NULL; c && s == LK_OK; c = c->next)
        s = normalise_call(c, i++, calls);
    if (s == LK_OK && !calls->child)
        s = status_fail(LK_ERR_ARG, "chat: tool_calls is not a call object or a non-empty list "
                                    "of them");
    cJSON_Delete(j);
    if (s != LK_OK) {
        cJSON_Delete(calls);
        return s;
    }
    *out = calls;
    return LK_OK;
}

static lk_status put(struct buf *b, const char *s)
{
    return buf_put(b, s, strlen(s), "chat: rendered text");
}

/* Qwen2.5:
 *   "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are
 *   provided with function signatures within <tools></tools> XML tags:\n<tools>"
 *   {%- for tool in tools %}"\n" tool|tojson{% endfor %}
 *   "\n</tools>\n\nFor each function call, return a json object with function name and arguments
 *   within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>,
 *   \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" */
lk_status chat_tools_qwen(const cJSON *tools, struct buf *b)
{
    LK_TRY(put(b, "\n\n# Tools\n\nYou may call one or more functions to assist with the user "
                  "query.\n\nYou are provided with function signatures within <tools></tools> "
                  "XML tags:\n<tools>"));
    for (const cJSON *t = tools->child; t; t = t->next) {
        LK_TRY(put(b, "\n"));
        LK_TRY(json_dump_py(t, 0, b));
    }
    return put(b, "\n</tools>\n\nFor each function call, return a json object with function name "
                  "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                  "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
                  "<|im_end|>\n");
}

/* One call as both templates write it: head name mid arguments|tojson tail. */
static lk_status tool_call(const cJSON *call, const char *head, const char *mid, const char *tail,
                           struct buf *b)
{
    LK_TRY(put(b, head));
    LK_TRY(put(b, cJSON_GetObjectItemCaseSensitive(call, "name")->valuestring));
    LK_TRY(put(b, mid));
    LK_TRY(json_dump_py(cJSON_GetObjectItemCaseSensitive(call, "arguments"), 0, b));
    return put(b, tail);
}

/* Qwen2.5: '\n<tool_call>\n{"name": "' name '", "arguments": ' arguments|tojson '}\n</tool_call>'
 */
lk_status chat_tool_call_qwen(const cJSON *call, struct buf *b)
{
    return tool_call(call, "\n<tool_call>\n{\"name\": \"", "\", \"arguments\": ", "}\n</tool_call>",
                     b);
}

/* Llama-3.1 (tools_in_user_message, the default): the first user turn's text after
 *   "Given the following functions, please respond with a JSON for a function call with its
 *   proper arguments that best answers the given prompt.\n\nRespond in the format {"name":
 *   function name, "parameters": dictionary of argument name and its value}.Do not use
 *   variables.\n\n" {%- for t in tools %} t|tojson(indent=4) "\n\n" {%- endfor %} */
lk_status chat_tools_llama31(const cJSON *tools, struct buf *b)
{
    LK_TRY(put(b, "Given the following functions, please respond with a JSON for a function call "
                  "with its proper arguments that best answers the given prompt.\n\nRespond in "
                  "the format {\"name\": function name, \"parameters\": dictionary of argument "
                  "name and its value}.Do not use variables.\n\n"));
    for (const cJSON *t = tools->child; t; t = t->next) {
        LK_TRY(json_dump_py(t, 4, b));
        LK_TRY(put(b, "\n\n"));
    }
    return LK_OK;
}

/* Llama-3.1: '{"name": "' name '", "parameters": ' arguments|tojson "}" */
lk_status chat_tool_call_llama31(const cJSON *call, struct buf *b)
{
    return tool_call(call, "{\"name\": \"", "\", \"parameters\": ", "}", b);
}

/* Llama-3.1 writes a tool's result as content|tojson when content "is mapping or iterable", which
 * a string is in Jinja: the text as a JSON string. */
lk_status chat_tool_result_llama31(const char *content, struct buf *b)
{
    cJSON *s = cJSON_CreateString(content);
    if (!s)
        return status_fail(LK_ERR_NOMEM, "chat: out of memory");
    lk_status st = json_dump_py(s, 0, b);
    cJSON_Delete(s);
    return st;
}
