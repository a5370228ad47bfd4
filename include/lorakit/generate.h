/* lorakit/generate.h — text generation on a loaded model: continuing tokens with a sampler
 * (stop tokens, streaming), chat replies (the chat template's assistant turn, the KV cache kept
 * from turn to turn), and answers to held-out examples scored against their reference replies
 * (lora-eval --generate). */
#ifndef LORAKIT_GENERATE_H
#define LORAKIT_GENERATE_H

#include "lorakit/model.h"
#include "lorakit/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_MAX_STOP 8

struct lk_generate_params {
    int64_t max_new_tokens;        /* most tokens generated (default 128; 0: none) */
    int stop_at_eos;               /* 1 (default): end at the model's eos ids (config.json) */
    int32_t stop_ids[LK_MAX_STOP]; /* further ids that end generation (not written out) */
    int n_stop;
};

struct lk_generate_params lk_generate_params_default(void);

/* Check: max_new_tokens >= 0 ("--max-new-tokens must be at least 0, got -1"), 0 <= n_stop <=
 * LK_MAX_STOP. */
lk_status lk_generate_params_check(const struct lk_generate_params *p);

/* Add id to p's stop ids (ids below 0 and repeats are ignored; LK_ERR_ARG when full). */
lk_status lk_generate_add_stop(struct lk_generate_params *p, int32_t id);

/* Stop ids for a chat reply: the tokenizer's EOS and the end-of-turn token of format f
 * (lk_chat_end_of_turn; LK_CHAT_AUTO: the tokenizer's template, which must then be known). */
lk_status lk_generate_chat_stops(struct lk_generate_params *p, const lk_tokenizer *t,
                                 lk_chat_format f);

/* Called after each generated token with the tokens generated so far (out[0..n)); a non-zero
 * return ends generation there. */
typedef int (*lk_token_fn)(void *user, const int32_t *out, int64_t n);

/* Append tokens[0..n) (n >= 1) to session s, then generate: each next token from smp over the
 * last logits, until a stop id (not written), max_new_tokens, or fn asks to stop. out: caller's
 * [max_new_tokens]; *n_out the tokens generated. Every token written is fed to the session except
 * the last one when generation ends at max_new_tokens or by fn (lk_session_n_past tells). s must
 * hold n + max_new_tokens more tokens (else LK_ERR_ARG from lk_session_eval). fn may be NULL. */
lk_status lk_generate(lk_session *s, lk_sampler *smp, const int32_t *tokens, int64_t n,
                      const struct lk_generate_params *p, lk_token_fn fn, void *user, int32_t *out,
                      int64_t *n_out);

/* ---- chat: a conversation with a model ---- */

/* A conversation: its turns, rendered with the chat template, and a KV session that keeps the
 * tokens already evaluated (a new turn evaluates only what the previous rendering did not hold). */
typedef struct lk_conversation lk_conversation;

/* m and t borrowed (they must outlive it). p: the template (NULL: the tokenizer's);
 * add_generation_prompt is set by the conversation. system: a first system turn, or NULL (the
 * template's default, if any); a template without a system role fails with LK_ERR_ARG. The
 * end-of-turn token must be known (lk_chat_end_of_turn). */
lk_status lk_conversation_create(const lk_model *m, const lk_tokenizer *t,
                                 const struct lk_chat_params *p, const char *system,
                                 lk_conversation **out);

void lk_conversation_free(lk_conversation *c);

/* Add user's turn and generate the assistant's reply with smp and gen (the stop ids of the
 * template are added), streaming through fn (the reply's tokens; may be NULL). The reply (special
 * tokens skipped) becomes the assistant's turn; *reply is borrowed, valid until the next call or
 * lk_conversation_free. On failure the user's turn is taken back. */
lk_status lk_conversation_reply(lk_conversation *c, const char *user, lk_sampler *smp,
                                const struct lk_generate_params *gen, lk_token_fn fn, void *fn_user,
                                const char **reply);

/* The text the last reply was generated after (the rendered conversation with the generation
 * prompt), or "" before the first. Borrowed, valid until the next call. */
const char *lk_conversation_prompt(const lk_conversation *c);

/* Decode reply tokens (special tokens skipped) as the reply reads: heap, NUL-terminated. */
lk_status lk_reply_text(const lk_tokenizer *t, const int32_t *ids, int64_t n, char **text);

/* ---- answers to held-out examples ---- */

struct lk_answer_params {
    const char *match; /* NULL (default): the reply must equal the reference after whitespace
                        * normalisation (ends stripped, runs collapsed to one space); else a PCRE2
                        * pattern the reply must match (anywhere, UTF-8) */
    struct lk_generate_params gen; /* greedy decoding; the template's stops are added */
};

struct lk_answer_params lk_answer_params_default(void);

/* Check: the pattern compiles ("--match: ... at offset N"), gen as lk_generate_params_check. */
lk_status lk_answer_params_check(const struct lk_answer_params *p);

struct lk_answer {
    char *prompt;    /* the example up to its reply, as text (special tokens written) */
    char *reply;     /* what the model generated (special tokens skipped) */
    char *reference; /* the example's reply: its last run of trained tokens, decoded */
    int64_t line;    /* the example's line (array files: element number) */
    int64_t n_prompt, n_reply;
    int correct; /* 1: the reply passes (match or exact) */
};

/* Answer example i of d (loaded with t): greedy generation after the tokens before the example's
 * last run of trained tokens (its last assistant turn, completion or output, rendered as training
 * renders it: a chat example ends with the generation prompt), stopping at the EOS and the
 * template's end-of-turn, then the verdict. An example without trained tokens fails with
 * LK_ERR_FORMAT naming its line. Free with lk_answer_free. */
lk_status lk_dataset_answer(const lk_model *m, const lk_tokenizer *t, const lk_dataset *d,
                            int64_t i, const struct lk_answer_params *p, struct lk_answer *out);

void lk_answer_free(struct lk_answer *a);

/* The verdict alone: 1 when reply passes against reference under p (as lk_dataset_answer
 * decides), 0 when not; -1 with the error set when p->match does not compile. */
int lk_answer_check(const struct lk_answer_params *p, const char *reply, const char *reference);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_GENERATE_H */
