/* sample.c — next-token sampling as transformers' generate does it: temperature, then top-k, then
 * top-p (nucleus: the smallest set of most likely tokens whose mass reaches top_p). */
#include <math.h>
#include <string.h>

#include "lorakit/model.h"
#include "core/option.h"
#include "core/rng.h"
#include "core/status.h"

struct lk_sampler {
    struct lk_sampler_params p;
    rng_state rng;
    int64_t cap;
    double *prob; /* [cap] */
    int32_t *idx; /* [cap] */
};

struct lk_sampler_params lk_sampler_params_default(void)
{
    struct lk_sampler_params p = {.temperature = 0.8f, .top_p = 0.95f, .top_k = 40, .seed = 42};
    return p;
}

lk_status lk_sampler_params_check(const struct lk_sampler_params *p)
{
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return option_range_f("--temp", p->temperature, "a finite value >= 0 (0: greedy)");
    if (!(p->top_p > 0 && p->top_p <= 1))
        return option_range_f("--top-p", p->top_p, "in (0, 1]");
    if (p->top_k < 0)
        return option_range_i("--top-k", p->top_k, "at least 0 (0: all)");
    return LK_OK;
}

lk_status lk_sampler_create(const struct lk_sampler_params *p, lk_sampler **out)
{
    *out = NULL;
    LK_TRY(lk_sampler_params_check(p));
    lk_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    s->p = *p;
    rng_seed(&s->rng, p->seed, RNG_SAMPLE);
    *out = s;
    return LK_OK;
}

void lk_sampler_free(lk_sampler *s)
{
    if (!s)
        return;
    free(s->prob);
    free(s->idx);
    free(s);
}

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

static const double *g_sort_prob; /* qsort has no context argument */

static int cmp_prob_desc(const void *a, const void *b)
{
    double x = g_sort_prob[*(const int32_t *)a], y = g_sort_prob[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* One draw among idx[0..keep), whose probabilities prob[idx[i]] add up to sum. */
static int32_t pick(lk_sampler *s, int64_t keep, double sum)
{
    double r = rng_uniform_f64(&s->rng) * sum, acc = 0;
    for (int64_t i = 0; i < keep; i++) {
        acc += s->prob[s->idx[i]];
        if (r < acc)
            return s->idx[i];
    }
    return s->idx[keep - 1];
}

/* Among the `keep` best tokens idx[0..keep) (probabilities prob[idx[i]], sorted as
 * cmp_prob_desc sorts): the top-p cut, then one draw. */
static int32_t draw(lk_sampler *s, int64_t keep)
{
    double kept = 0;
    for (int64_t i = 0; i < keep; i++)
        kept += s->prob[s->idx[i]];
    double cum = 0;
    for (int64_t i = 0; i < keep; i++) {
        cum += s->prob[s->idx[i]];
        if (cum >= s->p.top_p * kept) {
            keep = i + 1;
            break;
        }
    }
    double sum = 0;
    for (int64_t i = 0; i < keep; i++)
        sum += s->prob[s->idx[i]];
    return pick(s, keep, sum);
}

/* x ranks before y: the larger logit, then the smaller index (the order of cmp_prob_desc). */
static int ranks_before(const float *logits, int32_t x, int32_t y)
{
    return logits[x] > logits[y] || (logits[x] == logits[y] && x < y);
}

/* idx[0..k) = the k best tokens in cmp_prob_desc's order, found by logit (exp is increasing), by
 * insertion into a sorted list of k: one comparison for most of the n logits. */
static void top_k_by_logit(const float *logits, int64_t n, int64_t k, int32_t *idx)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t c = (int32_t)i;
        if (m == k && !ranks_before(logits, c, idx[k - 1]))
            continue;
        int64_t j = m < k ? m++ : k - 1;
        for (; j > 0 && ranks_before(logits, c, idx[j - 1]); j--)
            idx[j] = idx[j - 1];
        idx[j] = c;
    }
}

/* Top-k (then top-p) sampling from the k best tokens alone, without the softmax and sort of all
 * n: the same token as the full path for the same random number. The kept tokens, their order and
 * their probabilities are the full path's: probabilities rank as logits do, exp(x) being
 * increasing; only tokens whose probability underflows to 0 may tie in probability and not in
 * logit, and such a token is never drawn (r < sum of the positive ones). */
static int32_t sample_top_k(lk_sampler *s, const float *logits, int64_t n)
{
    const int64_t k = s->p.top_k;
    top_k_by_logit(logits, n, k, s->idx);
    const float mx = logits[s->idx[0]];
    const double inv_t = 1.0 / s->p.temperature;
    for (int64_t i = 0; i < k; i++)
        s->prob[s->idx[i]] = exp(((double)logits[s->idx[i]] - mx) * inv_t);
    return draw(s, k);
}

int32_t lk_sampler_sample(lk_sampler *s, const float *logits, int64_t n)
{
    if (s->p.temperature == 0 || n == 1)
        return argmax(logits, n);
    if (n > s->cap) {
        double *np = realloc(s->prob, (size_t)n * sizeof *np);
        int32_t *ni = np ? realloc(s->idx, (size_t)n * sizeof *ni) : NULL;
        if (np)
            s->prob = np;
        if (!np || !ni)
            return argmax(logits, n); /* no memory for the sort: fall back to greedy */
        s->idx = ni;
        s->cap = n;
    }
    if (s->p.top_k > 0 && s->p.top_k < n)
        return sample_top_k(s, logits, n);
    /* softmax(logits / T) in double */
    float mx = logits[argmax(logits, n)];
    double sum = 0, inv_t = 1.0 / s->p.temperature;
    for (int64_t i = 0; i < n; i++) {
        s->prob[i] = exp(((double)logits[i] - mx) * inv_t);
        sum += s->prob[i];
        s->idx[i] = (int32_t)i;
    }
    int64_t keep = n;
    if (s->p.top_k > 0 || s->p.top_p < 1) {
        g_sort_prob = s->prob;
        qsort(s->idx, (size_t)n, sizeof *s->idx, cmp_prob_desc);
        if (s->p.top_k > 0 && s->p.top_k < keep)
            keep = s->p.top_k;
        return draw(s, keep);
    }
    return pick(s, keep, sum);
}
