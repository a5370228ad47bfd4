/* answer.c — a model's answers to held-out examples (lora-eval --generate): the example up to its
 * reply as the prompt, greedy generation through generate.c, and the verdict against the
 * reference reply (exact after whitespace normalisation, or a PCRE2 pattern). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "lorakit/generate.h"
#include "core/status.h"

struct lk_answer_params lk_answer_params_default(void)
{
    return (struct lk_answer_params){.match = NULL, .gen = lk_generate_params_default()};
}

static pcre2_code *compile(const char *pattern)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        status_fail(LK_ERR_ARG, "--match: '%s' is not a valid pattern: %s at offset %zu", pattern,
                    (const char *)msg, (size_t)off);
    }
    return re;
}

lk_status lk_answer_params_check(const struct lk_answer_params *p)
{
    if (p->match) {
        pcre2_code *re = compile(p->match);
        if (!re)
            return LK_ERR_ARG;
        pcre2_code_free(re);
    }
    return lk_generate_params_check(&p->gen);
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* 1 when a and b are equal with their ends stripped and each run of whitespace read as one
 * space. */
static int same_words(const char *a, const char *b)
{
    for (;;) {
        while (is_space(*a))
            a++;
        while (is_space(*b))
            b++;
        while (*a && *b && !is_space(*a) && *a == *b)
            a++, b++;
        int ea = !*a || is_space(*a), eb = !*b || is_space(*b);
        if (!ea || !eb)
            return 0; /* a difference inside a word */
        while (is_space(*a))
            a++;
        while (is_space(*b))
            b++;
        if (!*a || !*b)
            return !*a && !*b;
    }
}

int lk_answer_check(const struct lk_answer_params *p, const char *reply, const char *reference)
{
    if (!p->match)
        return same_words(reply, reference);
    pcre2_code *re = compile(p->match);
    if (!re)
        return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)reply, strlen(reply), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (!md)
        return status_fail(LK_ERR_NOMEM, "--match: out of memory"), -1;
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
        return status_fail(LK_ERR_ARG, "--match: matching failed (PCRE2 error %d)", rc), -1;
    return rc >= 0;
}

void lk_answer_free(struct lk_answer *a)
{
    free(a->prompt);
    free(a->reply);
    free(a->reference);
    memset(a, 0, sizeof *a);
}

/* The example's last run of trained tokens: [*start, *end). 0 when it has none. */
static int last_reply(const int32_t *labels, int64_t n, int64_t *start, int64_t *end)
{
    int64_t z = n;
    while (z > 0 && labels[z - 1] == LK_LABEL_IGNORE)
        z--;
    if (z == 0)
        return 0;
    int64_t a = z;
    while (a > 0 && labels[a - 1] != LK_LABEL_IGNORE)
        a--;
    *start = a;
    *end = z;
    return 1;
}

static int is_stop_id(const struct lk_generate_params *g, int32_t id)
{
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop_ids[i] == id)
            return 1;
    return 0;
}

/* Greedy reply to ids[0..n): a->reply, a->n_reply. */
static lk_status generate_reply(const lk_model *m, const lk_tokenizer *t, const int32_t *ids,
                                int64_t n, const struct lk_generate_params *gp, struct lk_answer *a)
{
    struct lk_generate_params lim = *gp, *g = &lim;
    int64_t room = lk_model_get_config(m)->max_position - n; /* the reply ends with the context */
    if (g->max_new_tokens > room)
        g->max_new_tokens = room > 0 ? room : 0;
    struct lk_sampler_params sp = lk_sampler_params_default();
    sp.temperature = 0;
    lk_sampler *smp = NULL;
    lk_session *s = NULL;
    int32_t *out = malloc((size_t)(g->max_new_tokens + 1) * sizeof *out);
    lk_status st = out ? lk_sampler_create(&sp, &smp) : status_fail(LK_ERR_NOMEM, "out of memory");
    if (st == LK_OK)
        st = lk_session_create(m, n + g->max_new_tokens, &s);
    if (st == LK_OK)
        st = lk_generate(s, smp, ids, n, g, NULL, NULL, out, &a->n_reply);
    if (st == LK_OK)
        st = lk_reply_text(t, out, a->n_reply, &a->reply);
    lk_session_free(s);
    lk_sampler_free(smp);
    free(out);
    return st;
}

lk_status lk_dataset_answer(const lk_model *m, const lk_tokenizer *t, const lk_dataset *d,
                            int64_t i, const struct lk_answer_params *p, struct lk_answer *out)
{
    memset(out, 0, sizeof *out);
    LK_TRY(lk_answer_params_check(p));
    const int32_t *ids, *labels;
    int64_t n, start, end;
    size_t len;
    LK_TRY(lk_dataset_example(d, i, &ids, &labels, &n, &out->line));
    int found = last_reply(labels, n, &start, &end);
    if (!found || start == 0 || (start == 1 && ids[0] == lk_tokenizer_bos(t)))
        return status_fail(LK_ERR_FORMAT,
                           "example at line %lld: no %s to compare (--generate needs messages, "
                           "prompt/completion or Alpaca records: a prompt, then the reply)",
                           (long long)out->line, found ? "prompt before the reply" : "reply");
    struct lk_generate_params g = p->gen;
    lk_status s = lk_generate_add_stop(&g, lk_tokenizer_eos(t));
    int32_t eot;
    if (s == LK_OK && lk_chat_end_of_turn(t, LK_CHAT_AUTO, &eot) == LK_OK)
        s = lk_generate_add_stop(&g, eot);
    while (end > start && is_stop_id(&g, ids[end - 1]))
        end--; /* the end-of-turn token closes the reference, as it ends generation */
    out->n_prompt = start;
    if (s == LK_OK)
        s = lk_tokenizer_decode(t, ids, start, 0, &out->prompt, &len);
    if (s == LK_OK)
        s = lk_reply_text(t, ids + start, end - start, &out->reference);
    if (s == LK_OK)
        s = generate_reply(m, t, ids, start, &g, out);
    int ok = s == LK_OK ? lk_answer_check(p, out->reply, out->reference) : -1;
    if (s == LK_OK && ok < 0)
        s = LK_ERR_ARG;
    out->correct = ok > 0;
    if (s != LK_OK)
        lk_answer_free(out);
    return s;
}
