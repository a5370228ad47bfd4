/* chat.h — chat rendering internals shared with dataset.c (prefix chat_). */
#ifndef LK_CHAT_H
#define LK_CHAT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "core/buf.h"
#include "lorakit/tokenizer.h"

/* A byte range [start, end) of rendered text that carries the loss: an assistant answer and the
 * end-of-turn token after it. */
struct chat_span {
    size_t start, end;
};

/* A turn as the renderers take it: lk_chat_message with its tool calls (JSON text or NULL). */
struct chat_msg {
    const char *role;
    const char *content;
    const char *tool_calls;
};

/* Resolve LK_CHAT_AUTO from t's template (other formats are left alone). For a ChatML template
 * that writes a default system prompt (SmolLM2: "You are a helpful AI assistant named SmolLM,
 * ..."), *default_system gets it (heap, caller frees), else NULL. */
lk_status chat_resolve(const lk_tokenizer *t, lk_chat_format *format, char **default_system);

/* lk_chat_render, also giving the spans of assistant turns (tool calls included): *spans (heap,
 * caller frees; may be NULL when *n_spans is 0). tools: lk_chat_params.tools. train: per message, 0
 * leaves that assistant turn out of the spans (NULL: all assistant turns train). format must not be
 * LK_CHAT_AUTO. default_system: ChatML's system prompt when the conversation has none (NULL: none;
 * qwen2.5 always uses Qwen's). */
lk_status chat_render_spans(const lk_tokenizer *t, lk_chat_format format,
                            const char *default_system, int add_gen, const char *date_string,
                            const char *tools, const struct chat_msg *msgs, int64_t n,
                            const int *train, char **text, size_t *len, struct chat_span **spans,
                            int64_t *n_spans);

/* ---- chat_tools.c: tool calling as the templates write it ---- */

/* 1 when format writes tool definitions, calls and results (chatml, qwen2.5, llama3.1). */
int chat_format_has_tools(lk_chat_format format);

/* A conversation's tools (lk_chat_params.tools): NULL or "" or an empty array: *out NULL (no
 * tools); else a JSON array of objects. LK_ERR_ARG otherwise. Caller cJSON_Deletes *out. */
lk_status chat_tools_parse(const char *tools, cJSON **out);

/* An assistant turn's calls (lk_chat_message.tool_calls): a call object or a non-empty array of
 * them, each normalised to {"name": STR, "arguments": VALUE} (OpenAI's {"type": "function",
 * "function": {...}} unwrapped; arguments given as a JSON string that holds an object are
 * parsed, as transformers expects a dict; none: {}). LK_ERR_ARG for anything else. Caller
 * cJSON_Deletes *out. */
lk_status chat_tool_calls_parse(const char *json, cJSON **out);

/* The texts the templates write (appended to b): Qwen2.5's tools block of the system turn (after
 * the system text, through its <|im_end|>\n) and one call (from "\n<tool_call>"); Llama-3.1's
 * tools preamble of the first user turn, one call (the whole turn body), and a tool's result. */
lk_status chat_tools_qwen(const cJSON *tools, struct buf *b);
lk_status chat_tool_call_qwen(const cJSON *call, struct buf *b);
lk_status chat_tools_llama31(const cJSON *tools, struct buf *b);
lk_status chat_tool_call_llama31(const cJSON *call, struct buf *b);
lk_status chat_tool_result_llama31(const char *content, struct buf *b);

#endif /* LK_CHAT_H */
