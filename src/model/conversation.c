/* conversation.c — a multi-turn chat with a model: the turns (copied), rendered with the chat
 * template (chat.c) each turn, and one KV session holding the tokens already evaluated; a turn
 * evaluates only the part of the new rendering past the longest prefix the session holds
 * (everything again when the prefix is short, or when the session must grow). Generation goes
 * through generate.c. */
#include <stdlib.h>
#include <string.h>

#include "lorakit/generate.h"
#include "core/buf.h"
#include "core/status.h"

struct lk_conversation {
    const lk_model *m;
    const lk_tokenizer *t;
    struct lk_chat_params p;
    struct lk_generate_params stops; /* the template's stop ids */
    char **role, **content;          /* [n] copies */
    int64_t n, cap;
    lk_session *s;
    int32_t *past; /* [cap_past] tokens the session holds (its first lk_session_n_past) */
    size_t cap_past;
    char *prompt; /* last rendering, with the generation prompt */
    char *reply;  /* last reply */
};

static lk_status push_turn(lk_conversation *c, const char *role, const char *content)
{
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 8;
        char **r = realloc(c->role, (size_t)cap * sizeof *r);
        if (r)
            c->role = r;
        char **t = r ? realloc(c->content, (size_t)cap * sizeof *t) : NULL;
        if (!t)
            return status_fail(LK_ERR_NOMEM, "conversation: out of memory");
        c->content = t;
        c->cap = cap;
    }
    c->role[c->n] = strdup(role);
    c->content[c->n] = strdup(content);
    if (!c->role[c->n] || !c->content[c->n]) {
        free(c->role[c->n]);
        free(c->content[c->n]);
        return status_fail(LK_ERR_NOMEM, "conversation: out of memory");
    }
    c->n++;
    return LK_OK;
}

static void pop_turn(lk_conversation *c)
{
    c->n--;
    free(c->role[c->n]);
    free(c->content[c->n]);
}

/* The conversation rendered with the generation prompt: c->prompt. */
static lk_status render(lk_conversation *c)
{
    struct lk_chat_message *msg = calloc((size_t)c->n + 1, sizeof *msg);
    if (!msg)
        return status_fail(LK_ERR_NOMEM, "conversation: out of memory");
    for (int64_t i = 0; i < c->n; i++)
        msg[i] = (struct lk_chat_message){c->role[i], c->content[i]};
    char *text = NULL;
    size_t len;
    lk_status s = lk_chat_render(c->t, &c->p, msg, c->n, &text, &len);
    free(msg);
    if (s == LK_OK) {
        free(c->prompt);
        c->prompt = text;
    }
    return s;
}

lk_status lk_conversation_create(const lk_model *m, const lk_tokenizer *t,
                                 const struct lk_chat_params *p, const char *system,
                                 lk_conversation **out)
{
    *out = NULL;
    lk_conversation *c = calloc(1, sizeof *c);
    if (!c)
        return status_fail(LK_ERR_NOMEM, "conversation: out of memory");
    c->m = m;
    c->t = t;
    c->p = p ? *p : lk_chat_params_default();
    c->p.add_generation_prompt = 1;
    c->stops = lk_generate_params_default();
    lk_status s = lk_generate_chat_stops(&c->stops, t, c->p.format);
    lk_chat_format f = c->p.format;
    if (s == LK_OK && f == LK_CHAT_AUTO)
        s = lk_chat_detect(t, &f);
    if (s == LK_OK && system && f == LK_CHAT_MISTRAL)
        s = status_fail(LK_ERR_ARG, "conversation: the mistral chat template has no system role "
                                    "(--system)");
    if (s == LK_OK && system)
        s = push_turn(c, "system", system);
    if (s == LK_OK && system) /* a template without a system role says so now */
        s = render(c);
    if (s != LK_OK) {
        lk_conversation_free(c);
        return s;
    }
    *out = c;
    return LK_OK;
}

void lk_conversation_free(lk_conversation *c)
{
    if (!c)
        return;
    while (c->n > 0)
        pop_turn(c);
    free(c->role);
    free(c->content);
    lk_session_free(c->s);
    free(c->past);
    free(c->prompt);
    free(c->reply);
    free(c);
}

const char *lk_conversation_prompt(const lk_conversation *c)
{
    return c->prompt ? c->prompt : "";
}

/* A session for need tokens holding the longest prefix of ids it can: *keep tokens of ids are
 * already in it (the caller evaluates the rest). */
static lk_status fit_session(lk_conversation *c, const int32_t *ids, int64_t n, int64_t need,
                             int64_t *keep)
{
    int64_t held = c->s ? lk_session_n_past(c->s) : 0, k = 0;
    while (k < held && k < n - 1 && c->past[k] == ids[k])
        k++;
    if (!c->s || lk_session_n_ctx(c->s) < need) {
        /* room for a few turns first, then doubling, up to the model's context */
        int64_t max = lk_model_get_config(c->m)->max_position;
        int64_t cap = c->s ? 2 * lk_session_n_ctx(c->s) : 1024;
        cap = cap < max ? cap : max;
        lk_session_free(c->s);
        c->s = NULL;
        LK_TRY(lk_session_create(c->m, need > cap ? need : cap, &c->s));
        k = 0;
    } else {
        lk_session_rewind(c->s, k); /* the rest differs from the new rendering */
    }
    log_debug("conversation: %lld of the prompt's %lld tokens already in the cache", (long long)k,
              (long long)n);
    *keep = k;
    return LK_OK;
}

/* Remember the tokens the session now holds: ids[0..n) then out[..]. */
static lk_status note_past(lk_conversation *c, const int32_t *ids, int64_t n, const int32_t *out)
{
    int64_t held = lk_session_n_past(c->s);
    LK_TRY(BUF_GROW(&c->past, &c->cap_past, (size_t)held, "conversation: tokens"));
    memcpy(c->past, ids, (size_t)n * sizeof *ids);
    if (held > n)
        memcpy(c->past + n, out, (size_t)(held - n) * sizeof *out);
    return LK_OK;
}

static lk_status answer(lk_conversation *c, lk_sampler *smp, const struct lk_generate_params *gen,
                        lk_token_fn fn, void *fn_user)
{
    struct lk_generate_params g = *gen;
    for (int i = 0; i < c->stops.n_stop; i++)
        LK_TRY(lk_generate_add_stop(&g, c->stops.stop_ids[i]));
    LK_TRY(render(c));
    int32_t *ids = NULL, *out = NULL;
    int64_t n = 0, keep = 0, n_out = 0;
    lk_status s = lk_tokenizer_encode(c->t, c->prompt, strlen(c->prompt), 0, &ids, &n);
    int64_t max = lk_model_get_config(c->m)->max_position;
    if (s == LK_OK && n < 1)
        s = status_fail(LK_ERR_ARG, "conversation: the rendered prompt has no token");
    else if (s == LK_OK && n >= max)
        s = status_fail(LK_ERR_ARG,
                        "conversation: %lld tokens, the model's context holds %lld (start a new "
                        "conversation)",
                        (long long)n, (long long)max);
    if (s == LK_OK && g.max_new_tokens > max - n)
        g.max_new_tokens = max - n; /* the reply ends where the context does */
    if (s == LK_OK)
        s = fit_session(c, ids, n, n + g.max_new_tokens, &keep);
    out = s == LK_OK ? malloc((size_t)(g.max_new_tokens + 1) * sizeof *out) : NULL;
    if (s == LK_OK && !out)
        s = status_fail(LK_ERR_NOMEM, "conversation: out of memory");
    if (s == LK_OK)
        s = lk_generate(c->s, smp, ids + keep, n - keep, &g, fn, fn_user, out, &n_out);
    if (s == LK_OK)
        s = note_past(c, ids, n, out);
    char *text = NULL;
    if (s == LK_OK)
        s = lk_reply_text(c->t, out, n_out, &text);
    if (s == LK_OK) {
        free(c->reply);
        c->reply = text;
    } else if (c->s) {
        lk_session_reset(c->s);
    }
    free(ids);
    free(out);
    return s;
}

lk_status lk_conversation_reply(lk_conversation *c, const char *user, lk_sampler *smp,
                                const struct lk_generate_params *gen, lk_token_fn fn, void *fn_user,
                                const char **reply)
{
    *reply = NULL;
    LK_TRY(push_turn(c, "user", user));
    lk_status s = answer(c, smp, gen, fn, fn_user);
    if (s == LK_OK)
        s = push_turn(c, "assistant", c->reply);
    if (s != LK_OK) {
        pop_turn(c);
        return s;
    }
    *reply = c->reply;
    return LK_OK;
}
