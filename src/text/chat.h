/* chat.h — chat rendering internals shared with dataset.c (prefix chat_). */
#ifndef LK_CHAT_H
#define LK_CHAT_H

#include <stddef.h>

#include "lorakit/tokenizer.h"

/* A byte range [start, end) of rendered text that carries the loss: an assistant answer and the
 * end-of-turn token after it. */
struct chat_span {
    size_t start, end;
};

/* Resolve LK_CHAT_AUTO from t's template (other formats are left alone). For a ChatML template
 * that writes a default system prompt (SmolLM2: "You are a helpful AI assistant named SmolLM,
 * ..."), *default_system gets it (heap, caller frees), else NULL. */
lk_status chat_resolve(const lk_tokenizer *t, lk_chat_format *format, char **default_system);

/* lk_chat_render, also giving the spans of assistant turns: *spans (heap, caller frees; may be
 * NULL when *n_spans is 0). train: per message, 0 leaves that assistant turn out of the spans
 * (NULL: all assistant turns train). format must not be LK_CHAT_AUTO. default_system: ChatML's
 * system prompt when the conversation has none (NULL: none; qwen2.5 always uses Qwen's). */
lk_status chat_render_spans(const lk_tokenizer *t, lk_chat_format format,
                            const char *default_system, int add_gen, const char *date_string,
                            const struct lk_chat_message *msgs, int64_t n, const int *train,
                            char **text, size_t *len, struct chat_span **spans, int64_t *n_spans);

#endif /* LK_CHAT_H */
