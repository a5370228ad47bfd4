/* distill.c — see distill.h. The objective's loss is kd.c's; this file only finds the teacher's
 * side of it for each sequence. Calls into train_graph.c (the online teacher's forward). */
#include "train/distill.h"

#include <string.h>

#include "core/status.h"

/* The teacher cache: made over this very data, at this temperature, over this vocabulary; the
 * buffers of a step's rows. */
static lk_status cache_setup(distill *d, const struct lk_train_params *p, const lk_dataset *data,
                             int64_t V, int64_t rows)
{
    const char *path = p->teacher_cache;
    LK_TRY(tcache_open(path, &d->tc));
    int64_t k = tcache_k(d->tc);
    if (tcache_temp(d->tc) != p->kd_temp)
        return status_fail(LK_ERR_ARG,
                           "%s: the cache holds log-probabilities at temperature %g, this run's is "
                           "%g (--kd-temp must match lora-teacher's)",
                           path, (double)tcache_temp(d->tc), (double)p->kd_temp);
    if (tcache_vocab(d->tc) != V)
        return status_fail(LK_ERR_SHAPE,
                           "%s: the cache's distributions are over %lld ids, the model has %lld "
                           "(make it with lora-teacher --vocab %lld)",
                           path, (long long)tcache_vocab(d->tc), (long long)V, (long long)V);
    LK_TRY(tcache_verify(d->tc, data));
    size_t n = (size_t)d->T;
    d->ex = malloc((size_t)rows * n * sizeof *d->ex);
    d->n_ex = calloc((size_t)rows, sizeof *d->n_ex);
    d->c_ids = malloc(n * (size_t)k * sizeof *d->c_ids);
    d->c_logp = malloc(n * (size_t)k * sizeof *d->c_logp);
    d->c_tail = malloc(n * sizeof *d->c_tail);
    if (!d->ex || !d->n_ex || !d->c_ids || !d->c_logp || !d->c_tail)
        return status_fail(LK_ERR_NOMEM, "out of memory for the teacher cache's buffers");
    return LK_OK;
}

/* The online teacher: its own forward graph; its vocabulary must cover the model's. */
static lk_status model_setup(distill *d, const struct lk_train_params *p, const lk_model *m)
{
    const struct lk_model_config *tc = lk_model_get_config(p->teacher);
    int64_t V = m->cfg.vocab_size;
    if (p->teacher == m)
        return status_fail(LK_ERR_ARG, "the teacher must be another model instance than the "
                                       "trained one (load the base again for --teacher self)");
    if (tc->vocab_size < V)
        return status_fail(LK_ERR_SHAPE,
                           "teacher vocabulary %lld is smaller than the model's %lld: it cannot "
                           "give a distribution over every id",
                           (long long)tc->vocab_size, (long long)V);
    d->model = p->teacher;
    return graph_create(p->teacher, d->T, 1, &d->tg);
}

lk_status distill_create(distill *d, const struct lk_train_params *p, const lk_model *m,
                         const lk_dataset *data, int64_t T, int64_t rows, train_graph *g)
{
    memset(d, 0, sizeof *d);
    d->T = T;
    if (p->objective == LK_OBJ_SFT)
        return LK_OK;
    d->kp = (kd_params){.kind = p->objective == LK_OBJ_KD    ? KD_FKL
                                : p->objective == LK_OBJ_RKL ? KD_RKL
                                                             : KD_JSD,
                        .temp = p->kd_temp,
                        .beta = p->jsd_beta,
                        .weight = p->kd_weight};
    if (!p->teacher)
        LK_TRY(cache_setup(d, p, data, m->cfg.vocab_size, rows));
    else
        LK_TRY(model_setup(d, p, m));
    return graph_reserve_kd(g, d->model ? &d->model->lm_head : NULL);
}

void distill_free(distill *d)
{
    graph_free(d->tg);
    tcache_close(d->tc);
    free(d->ex);
    free(d->n_ex);
    free(d->c_ids);
    free(d->c_logp);
    free(d->c_tail);
    memset(d, 0, sizeof *d);
}

lk_status distill_row(distill *d, const lk_dataset *data, int64_t r)
{
    if (!d->tc)
        return LK_OK;
    return lk_dataset_row_examples(data, d->ex + r * d->T, d->T, &d->n_ex[r]);
}

/* The cache's entries for the n tokens of row r: segment j (its tokens contiguous from the first
 * with seg == j) holds the start of example ex[j]. */
static lk_status cache_row(distill *d, int64_t r, const int32_t *seg, int64_t n, kd_teacher *tch)
{
    int64_t k = tcache_k(d->tc);
    const int64_t *ex = d->ex + r * d->T;
    for (int64_t i = 0, j = 0; i < n && j < d->n_ex[r]; j++) {
        int64_t a = i;
        while (i < n && seg[i] == j)
            i++;
        if (i == a)
            return status_fail(LK_ERR_FORMAT, "row %lld: segment %lld is empty", (long long)r,
                               (long long)j);
        LK_TRY(tcache_get(d->tc, ex[j], i - a, d->c_ids + a * k, d->c_logp + a * k, d->c_tail + a));
    }
    *tch = (kd_teacher){.k = k, .ids = d->c_ids, .logp = d->c_logp, .log_tail = d->c_tail};
    return LK_OK;
}

lk_status distill_loss(distill *d, const kd_params *kp, const train_batch *b, int64_t r,
                       const int32_t *seg, loss_config *out)
{
    memset(out, 0, sizeof *out);
    if (!kp->kind)
        return LK_OK;
    out->kd = *kp;
    if (d->tc && r < 0)
        return status_fail(LK_ERR_ARG, "distillation: a teacher cache has entries only for the "
                                       "training rows");
    if (d->tc)
        return cache_row(d, r, seg, b->T, &out->teacher);
    train_batch tb = *b;
    tb.dropout = 0; /* the teacher trains nothing */
    LK_TRY(graph_hidden(d->tg, &tb, &out->teacher.ht));
    out->teacher.head = &d->model->lm_head;
    return LK_OK;
}
