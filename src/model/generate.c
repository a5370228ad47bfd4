/* generate.c — the generation loop (a session, a sampler, stop ids) and its options; the chat
 * replies of conversation.c and the answers of answer.c run through it. */
#include <stdlib.h>
#include <string.h>

#include "lorakit/generate.h"
#include "core/option.h"
#include "core/status.h"

struct lk_generate_params lk_generate_params_default(void)
{
    return (struct lk_generate_params){.max_new_tokens = 128, .stop_at_eos = 1, .n_stop = 0};
}

lk_status lk_generate_params_check(const struct lk_generate_params *p)
{
    if (p->max_new_tokens < 0)
        return option_range_i("--max-new-tokens", p->max_new_tokens, "at least 0");
    if (p->n_stop < 0 || p->n_stop > LK_MAX_STOP)
        return status_fail(LK_ERR_ARG, "generate: %d stop ids, expected 0 to %d", p->n_stop,
                           LK_MAX_STOP);
    return LK_OK;
}

lk_status lk_generate_add_stop(struct lk_generate_params *p, int32_t id)
{
    if (id < 0)
        return LK_OK;
    for (int i = 0; i < p->n_stop; i++)
        if (p->stop_ids[i] == id)
            return LK_OK;
    if (p->n_stop >= LK_MAX_STOP)
        return status_fail(LK_ERR_ARG, "generate: more than %d stop ids", LK_MAX_STOP);
    p->stop_ids[p->n_stop++] = id;
    return LK_OK;
}

lk_status lk_generate_chat_stops(struct lk_generate_params *p, const lk_tokenizer *t,
                                 lk_chat_format f)
{
    int32_t eot;
    LK_TRY(lk_chat_end_of_turn(t, f, &eot));
    LK_TRY(lk_generate_add_stop(p, eot));
    return lk_generate_add_stop(p, lk_tokenizer_eos(t));
}

static int is_stop(const struct lk_model_config *cfg, const struct lk_generate_params *p,
                   int32_t id)
{
    for (int i = 0; p->stop_at_eos && i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == id)
            return 1;
    for (int i = 0; i < p->n_stop; i++)
        if (p->stop_ids[i] == id)
            return 1;
    return 0;
}

lk_status lk_generate(lk_session *s, lk_sampler *smp, const int32_t *tokens, int64_t n,
                      const struct lk_generate_params *p, lk_token_fn fn, void *user, int32_t *out,
                      int64_t *n_out)
{
    *n_out = 0;
    LK_TRY(lk_generate_params_check(p));
    if (n < 1)
        return status_fail(LK_ERR_ARG, "generate: no token to continue");
    const struct lk_model_config *cfg = lk_model_get_config(lk_session_model(s));
    float *logits = malloc((size_t)cfg->vocab_size * sizeof *logits); /* [vocab] */
    if (!logits)
        return status_fail(LK_ERR_NOMEM, "generate: out of memory for the logits");
    lk_status st = lk_session_eval(s, tokens, n, logits, 0);
    for (int64_t i = 0; i < p->max_new_tokens && st == LK_OK; i++) {
        int32_t next = lk_sampler_sample(smp, logits, cfg->vocab_size);
        if (is_stop(cfg, p, next))
            break;
        out[(*n_out)++] = next;
        if ((fn && fn(user, out, *n_out)) || i + 1 == p->max_new_tokens)
            break;
        st = lk_session_eval(s, &next, 1, logits, 0);
    }
    free(logits);
    return st;
}

lk_status lk_reply_text(const lk_tokenizer *t, const int32_t *ids, int64_t n, char **text)
{
    /* BOS is not text even where tokenizer.json does not mark it special (stories260K) */
    int32_t bos = lk_tokenizer_bos(t), *keep = malloc((size_t)(n > 0 ? n : 1) * sizeof *keep);
    if (!keep)
        return status_fail(LK_ERR_NOMEM, "generate: out of memory for the reply");
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] != bos)
            keep[k++] = ids[i];
    size_t len;
    lk_status s = lk_tokenizer_decode(t, keep, k, 1, text, &len);
    free(keep);
    return s;
}
