/* train.c — the LoRA trainer (SFT): rows from the dataset, forward/backward through the training
 * graph, NaN/Inf guard, global-norm clipping, AdamW/SGD with LoRA+ learning-rate ratio, warmup
 * and decay schedule, checkpoints that resume bit-identically, PEFT output.
 * Loss normalisation: the mean over every trained token of the step (all micro-batches), as
 * transformers does when it knows the step's token count (num_items_in_batch). */
#include <math.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "lora/loftq.h"
#include "lora/lora.h"
#include "lorakit/train.h"
#include "train/optim.h"
#include "core/rng.h"
#include "core/status.h"
#include "nn/kd.h"
#include "formats/tcache.h"
#include "train/train_graph.h"

struct lk_trainer {
    lk_model *m;
    lk_dataset *data;
    struct lk_train_params p;
    lora_set lora;
    train_graph *g;
    float *m1, *m2;                       /* [n_params] AdamW moments */
    int64_t T, rows;                      /* seq_len, rows per step (batch × grad_accum) */
    int32_t *tok, *lab, *pos, *seg, *tgt; /* [rows, T] */
    int64_t *n_real;                      /* [rows] */
    int64_t step, total, n_updates, skipped_total, bad_run;
    float *hist; /* [hist_cap] loss of each step */
    int64_t hist_cap;
    /* distillation */
    kd_params kp;                /* the objective (kp.kind 0: SFT) */
    train_graph *tg;             /* the online teacher's forward */
    tcache *tc;                  /* or the teacher cache */
    int64_t *ex;                 /* [rows, T] the examples of each row's segments (with a cache) */
    int64_t *n_ex;               /* [rows] */
    int32_t *c_ids;              /* [T, k] the cache's entries for one row */
    float *c_logp;               /* [T, k] */
    float *c_tail;               /* [T] */
    struct lk_loftq_stat *loftq; /* [lora.n] with a LoftQ start, else NULL */
};

struct lk_train_params lk_train_params_default(void)
{
    struct lk_train_params p = {
        .rank = 8,
        .alpha = 8,
        .dropout = 0,
        .targets = LK_MOD_ALL,
        .rslora = 0,
        .init_adapter = NULL,
        .init = LK_INIT_PEFT,
        .optimizer = LK_OPT_ADAMW,
        .lr = 2e-4f,
        .lr_ratio_b = 1,
        .weight_decay = 0,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .max_grad_norm = 1.0f,
        .schedule = LK_SCHED_LINEAR,
        .warmup_steps = 0,
        .steps = 0,
        .epochs = 1,
        .batch = 1,
        .grad_accum = 1,
        .seed = 42,
        .max_bad_steps = 5,
        .checkpointing = 1,
        .objective = LK_OBJ_SFT,
        .kd_temp = 1,
        .kd_weight = 1,
        .jsd_beta = 0.5f,
    };
    return p;
}

lk_status lk_train_parse_targets(const char *s, unsigned *out)
{
    static const char *const short_names[LK_MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
    unsigned mask = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        if ((n == 3 && !strncmp(p, "all", 3)) || (n == 10 && !strncmp(p, "all-linear", 10))) {
            mask |= LK_MOD_ALL;
            found = 1;
        }
        for (int k = 0; k < LK_MOD_COUNT && !found; k++) {
            const char *full = lk_module_name((lk_module)k);
            if ((strlen(short_names[k]) == n && !strncmp(p, short_names[k], n)) ||
                (strlen(full) == n && !strncmp(p, full, n))) {
                mask |= 1u << k;
                found = 1;
            }
        }
        if (!found)
            return status_fail(LK_ERR_ARG,
                               "targets: unknown module '%.*s' (use q,k,v,o,gate,up,down, their "
                               "*_proj names, or all)",
                               (int)n, p);
        p += n + (p[n] == ',');
    }
    if (!mask)
        return status_fail(LK_ERR_ARG, "targets: empty list");
    *out = mask;
    return LK_OK;
}

static lk_status check_params(const struct lk_train_params *p)
{
    if (p->rank < 1 || !(p->alpha > 0) || !(p->lr > 0) || !(p->lr_ratio_b > 0) || p->batch < 1 ||
        p->grad_accum < 1 || p->steps < 0 || !(p->epochs > 0 || p->steps > 0) ||
        p->warmup_steps < 0 || !(p->weight_decay >= 0) || p->max_bad_steps < 1 ||
        !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0))
        return status_fail(LK_ERR_ARG,
                           "training options out of range (rank >= 1, alpha, lr, lr ratio, eps > "
                           "0, batch and grad-accum >= 1, steps or epochs > 0, betas in [0, 1))");
    if (p->objective < LK_OBJ_SFT || p->objective > LK_OBJ_JSD)
        return status_fail(LK_ERR_ARG, "unknown objective %d", (int)p->objective);
    if (p->objective == LK_OBJ_SFT && (p->teacher || p->teacher_cache))
        return status_fail(LK_ERR_ARG, "a teacher needs a distillation objective (kd, rkl, jsd)");
    if (p->objective != LK_OBJ_SFT && !p->teacher == !p->teacher_cache)
        return status_fail(LK_ERR_ARG, "distillation needs a teacher: a model or a teacher "
                                       "cache (one of the two)");
    if (!(p->kd_temp > 0 && p->kd_temp <= 100) || !(p->kd_weight >= 0 && p->kd_weight <= 1) ||
        !(p->jsd_beta >= 0 && p->jsd_beta <= 1))
        return status_fail(LK_ERR_ARG, "distillation options out of range (temperature in (0, "
                                       "100], weight and JSD beta in [0, 1])");
    if (p->init != LK_INIT_PEFT && p->init != LK_INIT_LOFTQ)
        return status_fail(LK_ERR_ARG, "adapter start %d is not PEFT's (0) or LoftQ (1)", p->init);
    if (p->init == LK_INIT_LOFTQ && p->init_adapter)
        return status_fail(LK_ERR_ARG,
                           "a LoftQ start and an initial adapter (%s) exclude each "
                           "other",
                           p->init_adapter);
    return LK_OK;
}

/* The teacher cache: made over this very data, at this temperature, over this vocabulary. */
static lk_status cache_setup(lk_trainer *t, int64_t V)
{
    const char *path = t->p.teacher_cache;
    LK_TRY(tcache_open(path, &t->tc));
    int64_t k = tcache_k(t->tc);
    if (tcache_temp(t->tc) != t->p.kd_temp)
        return status_fail(LK_ERR_ARG,
                           "%s: the cache holds log-probabilities at temperature %g, this run's is "
                           "%g (--kd-temp must match lora-teacher's)",
                           path, (double)tcache_temp(t->tc), (double)t->p.kd_temp);
    if (tcache_vocab(t->tc) != V)
        return status_fail(LK_ERR_SHAPE,
                           "%s: the cache's distributions are over %lld ids, the model has %lld "
                           "(make it with lora-teacher --vocab %lld)",
                           path, (long long)tcache_vocab(t->tc), (long long)V, (long long)V);
    LK_TRY(tcache_verify(t->tc, t->data));
    size_t n = (size_t)t->T;
    t->ex = malloc((size_t)t->rows * n * sizeof *t->ex);
    t->n_ex = calloc((size_t)t->rows, sizeof *t->n_ex);
    t->c_ids = malloc(n * (size_t)k * sizeof *t->c_ids);
    t->c_logp = malloc(n * (size_t)k * sizeof *t->c_logp);
    t->c_tail = malloc(n * sizeof *t->c_tail);
    if (!t->ex || !t->n_ex || !t->c_ids || !t->c_logp || !t->c_tail)
        return status_fail(LK_ERR_NOMEM, "out of memory for the teacher cache's buffers");
    return LK_OK;
}

/* The online teacher: its own forward graph; its vocabulary must cover the model's. */
static lk_status teacher_setup(lk_trainer *t)
{
    const struct lk_train_params *p = &t->p;
    if (p->objective == LK_OBJ_SFT)
        return LK_OK;
    t->kp = (kd_params){.kind = p->objective == LK_OBJ_KD    ? KD_FKL
                                : p->objective == LK_OBJ_RKL ? KD_RKL
                                                             : KD_JSD,
                        .temp = p->kd_temp,
                        .beta = p->jsd_beta,
                        .weight = p->kd_weight};
    int64_t V = t->m->cfg.vocab_size;
    if (!p->teacher)
        return cache_setup(t, V);
    const struct lk_model_config *tc = lk_model_get_config(p->teacher);
    if (p->teacher == t->m)
        return status_fail(LK_ERR_ARG, "the teacher must be another model instance than the "
                                       "trained one (load the base again for --teacher self)");
    if (tc->vocab_size < V)
        return status_fail(LK_ERR_SHAPE,
                           "teacher vocabulary %lld is smaller than the model's %lld: it cannot "
                           "give a distribution over every id",
                           (long long)tc->vocab_size, (long long)V);
    return graph_create(p->teacher, t->T, 1, &t->tg);
}

/* The starting adapter: --init-adapter's, or a fresh one initialised as PEFT does. */
static lk_status initial_adapter(const lk_model *m, const struct lk_train_params *p,
                                 lk_adapter **out)
{
    if (!p->init_adapter) {
        struct lk_adapter_params ap = lk_adapter_params_default();
        ap.rank = p->rank;
        ap.alpha = p->alpha;
        ap.use_rslora = p->rslora;
        ap.target_mask = p->targets;
        ap.seed = p->seed;
        return lk_adapter_create(lk_model_get_config(m), &ap, out);
    }
    LK_TRY(lk_adapter_load(p->init_adapter, out));
    lk_status s = lk_adapter_set_base(*out, lk_model_get_config(m));
    if (s != LK_OK) {
        lk_adapter_free(*out);
        *out = NULL;
    }
    return s;
}

static lk_status alloc_rows(lk_trainer *t)
{
    size_t n = (size_t)(t->rows * t->T);
    t->tok = malloc(n * sizeof(int32_t));
    t->lab = malloc(n * sizeof(int32_t));
    t->pos = malloc(n * sizeof(int32_t));
    t->seg = malloc(n * sizeof(int32_t));
    t->tgt = malloc(n * sizeof(int32_t));
    t->n_real = malloc((size_t)t->rows * sizeof(int64_t));
    t->m1 = lk_aligned_alloc((size_t)t->lora.n_params * sizeof(float));
    t->m2 = lk_aligned_alloc((size_t)t->lora.n_params * sizeof(float));
    if (!t->tok || !t->lab || !t->pos || !t->seg || !t->tgt || !t->n_real || !t->m1 || !t->m2)
        return status_fail(LK_ERR_NOMEM, "out of memory for the trainer's buffers");
    memset(t->m1, 0, (size_t)t->lora.n_params * sizeof(float));
    memset(t->m2, 0, (size_t)t->lora.n_params * sizeof(float));
    return LK_OK;
}

lk_status lk_trainer_create(lk_model *m, lk_dataset *data, const struct lk_train_params *p,
                            lk_trainer **out)
{
    *out = NULL;
    LK_TRY(check_params(p));
    lk_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    t->m = m;
    t->data = data;
    t->p = *p;
    t->T = lk_dataset_seq_len(data);
    t->rows = p->batch * p->grad_accum;
    double rows_total = p->epochs * (double)lk_dataset_rows_in_epoch(data);
    t->total = p->steps ? p->steps : (int64_t)ceil(rows_total / (double)t->rows);
    lk_adapter *init = NULL;
    lk_status s = initial_adapter(m, p, &init);
    if (s == LK_OK)
        s = lora_set_create(m, init, p->dropout, &t->lora);
    if (s == LK_OK && t->p.init_adapter) { /* the adapter's own shape rules */
        t->p.rank = t->lora.r;
        t->p.alpha = t->lora.alpha;
        t->p.rslora = t->lora.rslora;
        t->p.targets = t->lora.targets;
    }
    lk_adapter_free(init);
    if (s == LK_OK && p->init == LK_INIT_LOFTQ) {
        t->loftq = calloc((size_t)(t->lora.n ? t->lora.n : 1), sizeof *t->loftq);
        s = t->loftq ? loftq_init_set(m, &t->lora, p->seed, t->loftq)
                     : status_fail(LK_ERR_NOMEM, "out of memory");
    }
    if (s == LK_OK)
        s = graph_create(m, t->T, p->checkpointing, &t->g);
    if (s == LK_OK)
        s = alloc_rows(t);
    if (s == LK_OK)
        s = teacher_setup(t);
    if (s != LK_OK) {
        lk_trainer_free(t);
        return s;
    }
    *out = t;
    return LK_OK;
}

void lk_trainer_free(lk_trainer *t)
{
    if (!t)
        return;
    lora_set_free(&t->lora);
    graph_free(t->g);
    graph_free(t->tg);
    tcache_close(t->tc);
    free(t->ex);
    free(t->n_ex);
    free(t->c_ids);
    free(t->c_logp);
    free(t->c_tail);
    free(t->m1);
    free(t->m2);
    free(t->tok);
    free(t->lab);
    free(t->pos);
    free(t->seg);
    free(t->tgt);
    free(t->n_real);
    free(t->hist);
    free(t->loftq);
    free(t);
}

const struct lk_loftq_stat *lk_trainer_loftq_stats(const lk_trainer *t, int64_t *n)
{
    *n = t->loftq ? t->lora.n : 0;
    return t->loftq;
}

const float *lk_trainer_loss_history(const lk_trainer *t, int64_t *n)
{
    *n = t->step;
    return t->hist;
}

/* Room for the loss of step `step` (0-based). */
static lk_status hist_reserve(lk_trainer *t, int64_t n)
{
    if (n <= t->hist_cap)
        return LK_OK;
    int64_t cap = t->hist_cap ? t->hist_cap : 256;
    while (cap < n)
        cap *= 2;
    float *h = realloc(t->hist, (size_t)cap * sizeof *h);
    if (!h)
        return status_fail(LK_ERR_NOMEM, "out of memory (loss history)");
    t->hist = h;
    t->hist_cap = cap;
    return LK_OK;
}

int64_t lk_trainer_steps_done(const lk_trainer *t)
{
    return t->step;
}

int64_t lk_trainer_total_steps(const lk_trainer *t)
{
    return t->total;
}

/* HF labels are aligned with tokens; position i predicts labels[i+1] of the same example. */
static int64_t make_targets(const int32_t *lab, const int32_t *seg, int64_t n, int32_t *tgt)
{
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        int ok = i + 1 < n && seg[i + 1] == seg[i] && seg[i] >= 0 && lab[i + 1] >= 0;
        tgt[i] = ok ? lab[i + 1] : -100;
        cnt += ok;
    }
    return cnt;
}

/* Fetch the step's rows; returns the trained-token count. */
static lk_status fetch_rows(lk_trainer *t, int64_t *n_trained, int64_t *n_tokens)
{
    *n_trained = *n_tokens = 0;
    for (int64_t r = 0; r < t->rows; r++) {
        int64_t o = r * t->T;
        LK_TRY(lk_dataset_next_row(t->data, t->tok + o, t->lab + o, t->pos + o, t->seg + o,
                                   &t->n_real[r], NULL));
        *n_tokens += t->n_real[r];
        *n_trained += make_targets(t->lab + o, t->seg + o, t->n_real[r], t->tgt + o);
        if (t->tc)
            LK_TRY(lk_dataset_row_examples(t->data, t->ex + o, t->T, &t->n_ex[r]));
    }
    return LK_OK;
}

/* Dropout streams: a fresh mask per (step, row, module), reproducible after a resume. */
static void set_masks(lk_trainer *t, int64_t row)
{
    for (int i = 0; i < t->lora.n; i++) {
        uint64_t k = ((uint64_t)t->step * (uint64_t)t->rows + (uint64_t)row) * 131 + (uint64_t)i;
        t->lora.mods[i].tr.mask_key =
            t->p.dropout > 0 ? rng_hash(t->p.seed ^ RNG_DROPOUT, k) | 1 : 0;
    }
}

static void clear_masks(lk_trainer *t)
{
    for (int i = 0; i < t->lora.n; i++)
        t->lora.mods[i].tr.mask_key = 0;
}

static int all_finite(const float *g, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(g[i]))
            return 0;
    return 1;
}

/* Optimiser update of every module, B at lr·ratio (LoRA+). */
static void update(lk_trainer *t, float lr)
{
    optim_params o = {.kind = t->p.optimizer == LK_OPT_SGD ? OPT_SGD : OPT_ADAMW,
                      .beta1 = t->p.beta1,
                      .beta2 = t->p.beta2,
                      .eps = t->p.eps,
                      .weight_decay = t->p.weight_decay};
    t->n_updates++;
    for (int i = 0; i < t->lora.n; i++) {
        lora_module *mo = &t->lora.mods[i];
        int64_t oa = mo->A - t->lora.params, ob = mo->B - t->lora.params;
        optim_update(&o, mo->A, mo->tr.dA, t->m1 + oa, t->m2 + oa, mo->r * mo->in, lr,
                     t->n_updates);
        optim_update(&o, mo->B, mo->tr.dB, t->m1 + ob, t->m2 + ob, mo->r * mo->out,
                     lr * t->p.lr_ratio_b, t->n_updates);
    }
}

/* The cache's entries for row r: segment j (its tokens contiguous from the first with seg == j)
 * holds the start of example ex[j]. */
static lk_status cache_row(lk_trainer *t, int64_t r, kd_teacher *tch)
{
    int64_t o = r * t->T, k = tcache_k(t->tc), n = t->n_real[r];
    for (int64_t i = 0, j = 0; i < n && j < t->n_ex[r]; j++) {
        int64_t a = i;
        while (i < n && t->seg[o + i] == j)
            i++;
        if (i == a)
            return status_fail(LK_ERR_FORMAT, "row %lld: segment %lld is empty", (long long)r,
                               (long long)j);
        LK_TRY(tcache_get(t->tc, t->ex[o + j], i - a, t->c_ids + a * k, t->c_logp + a * k,
                          t->c_tail + a));
    }
    *tch = (kd_teacher){.k = k, .ids = t->c_ids, .logp = t->c_logp, .log_tail = t->c_tail};
    return LK_OK;
}

/* Point the loss at the teacher for a sequence of n tokens before graph_run: the online teacher
 * runs its forward now; a cache gives row r's entries (r < 0: an evaluation, no cache). */
static lk_status teacher_for(lk_trainer *t, const int32_t *tok, const int32_t *pos, int64_t n,
                             int64_t r, const kd_params *kp, double *ce, double *kd)
{
    if (!kp->kind)
        return graph_set_kd(t->g, NULL, NULL, NULL, NULL);
    kd_teacher tch = {0};
    if (t->tc) {
        LK_TRY(cache_row(t, r, &tch));
    } else {
        LK_TRY(graph_hidden(t->tg, tok, pos, n, &tch.ht));
        tch.head = &t->p.teacher->lm_head;
    }
    return graph_set_kd(t->g, kp, &tch, ce, kd);
}

lk_status lk_trainer_step(lk_trainer *t, struct lk_step_stats *st)
{
    memset(st, 0, sizeof *st);
    int64_t n_trained, n_tokens;
    LK_TRY(fetch_rows(t, &n_trained, &n_tokens));
    lora_set_zero_grad(&t->lora);
    double sum = 0, ce = 0, kd = 0;
    int64_t cnt = 0;
    float scale = n_trained ? 1.0f / (float)n_trained : 0.0f;
    for (int64_t r = 0; r < t->rows; r++) {
        if (t->n_real[r] == 0)
            continue;
        int64_t o = r * t->T;
        set_masks(t, r);
        LK_TRY(teacher_for(t, t->tok + o, t->pos + o, t->n_real[r], r, &t->kp, &ce, &kd));
        LK_TRY(graph_run(t->g, t->tok + o, t->tgt + o, t->pos + o, t->n_real[r], scale, 1, &sum,
                         &cnt));
    }
    clear_masks(t);
    st->loss = cnt ? sum / (double)cnt : 0;
    st->ce = t->kp.kind && cnt ? ce / (double)cnt : t->kp.kind ? 0 : NAN;
    st->kd = t->kp.kind && cnt ? kd / (double)cnt : t->kp.kind ? 0 : NAN;
    st->lr = schedule_lr((sched_kind)t->p.schedule, t->p.lr, t->step, t->p.warmup_steps, t->total);
    st->tokens = n_tokens;
    st->trained_tokens = n_trained;
    int finite = isfinite(st->loss) && all_finite(t->lora.grads, t->lora.n_params);
    if (!finite || cnt == 0) {
        st->skipped = 1;
        t->skipped_total++;
        t->bad_run += !finite;
    } else {
        st->grad_norm = clip_grad_norm(t->lora.grads, t->lora.n_params, t->p.max_grad_norm);
        update(t, st->lr);
        t->bad_run = 0;
    }
    if (hist_reserve(t, t->step + 1) == LK_OK)
        t->hist[t->step] = st->skipped ? NAN : (float)st->loss;
    t->step++;
    st->step = t->step;
    st->total_steps = t->total;
    st->skipped_total = t->skipped_total;
    if (t->bad_run >= t->p.max_bad_steps)
        return status_fail(LK_ERR_NUMERIC,
                           "%lld steps in a row had a non-finite loss or gradient (step %lld); "
                           "stopping with the parameters of the last good step (hint: lower "
                           "--lr, or check the data)",
                           (long long)t->bad_run, (long long)t->step);
    return LK_OK;
}

lk_status lk_trainer_eval(lk_trainer *t, const lk_dataset *eval, double *loss, double *kl,
                          int64_t *tokens)
{
    double sum = 0, ce = 0, div = 0;
    int64_t cnt = 0, n_ex = lk_dataset_get_stats(eval)->examples;
    /* with an online teacher: forward KL at τ = 1 as the loss, cross-entropy beside it */
    kd_params kp = {.kind = t->tg ? KD_FKL : 0, .temp = 1, .weight = 1};
    clear_masks(t);
    for (int64_t i = 0; i < n_ex; i++) {
        const int32_t *ids, *labels;
        int64_t n, line;
        LK_TRY(lk_dataset_example(eval, i, &ids, &labels, &n, &line));
        n = n < t->T ? n : t->T;
        for (int64_t j = 0; j < n; j++) {
            t->pos[j] = (int32_t)j;
            t->tgt[j] = j + 1 < n && labels[j + 1] >= 0 ? labels[j + 1] : -100;
        }
        if (n == 0)
            continue;
        lk_status s = teacher_for(t, ids, t->pos, n, -1, &kp, &ce, &div);
        if (s == LK_OK)
            s = graph_run(t->g, ids, t->tgt, t->pos, n, 0.0f, 0, &sum, &cnt);
        if (s != LK_OK) {
            graph_set_kd(t->g, NULL, NULL, NULL, NULL);
            return s;
        }
    }
    graph_set_kd(t->g, NULL, NULL, NULL, NULL);
    *loss = cnt ? (kp.kind ? ce : sum) / (double)cnt : NAN;
    if (kl)
        *kl = cnt && kp.kind ? div / (double)cnt : NAN;
    *tokens = cnt;
    return LK_OK;
}

/* ---- checkpoints ---- */

static cJSON *ckpt_meta(const lk_trainer *t)
{
    cJSON *j = cJSON_CreateObject();
    struct lk_data_cursor c;
    lk_dataset_get_cursor(t->data, &c);
    cJSON_AddStringToObject(j, "kind", "lorakit-train");
    cJSON_AddNumberToObject(j, "step", (double)t->step);
    cJSON_AddNumberToObject(j, "total_steps", (double)t->total);
    cJSON_AddNumberToObject(j, "n_updates", (double)t->n_updates);
    cJSON_AddNumberToObject(j, "skipped_total", (double)t->skipped_total);
    cJSON_AddNumberToObject(j, "bad_run", (double)t->bad_run);
    cJSON_AddNumberToObject(j, "cursor_epoch", (double)c.epoch);
    cJSON_AddNumberToObject(j, "cursor_next", (double)c.next);
    cJSON_AddNumberToObject(j, "rank", (double)t->lora.r);
    cJSON_AddNumberToObject(j, "alpha", t->lora.alpha);
    cJSON_AddBoolToObject(j, "use_rslora", t->lora.rslora);
    cJSON_AddNumberToObject(j, "targets", t->lora.targets);
    cJSON_AddNumberToObject(j, "n_params", (double)t->lora.n_params);
    cJSON_AddNumberToObject(j, "seq_len", (double)t->T);
    cJSON_AddNumberToObject(j, "rows_per_step", (double)t->rows);
    cJSON_AddNumberToObject(j, "objective", (double)t->p.objective);
    cJSON_AddNumberToObject(j, "kd_temp", t->p.kd_temp);
    cJSON_AddNumberToObject(j, "kd_weight", t->p.kd_weight);
    cJSON_AddNumberToObject(j, "jsd_beta", t->p.jsd_beta);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->p.seed);
    cJSON_AddStringToObject(j, "seed", seed); /* as a string: 64 bits do not fit a double */
    cJSON *h = cJSON_CreateArray();
    for (int64_t i = 0; i < t->step; i++) /* NaN (skipped steps) is written as null */
        cJSON_AddItemToArray(h, isfinite(t->hist[i]) ? cJSON_CreateNumber(t->hist[i])
                                                     : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "loss_history", h);
    return j;
}

lk_status lk_trainer_save_checkpoint(const lk_trainer *t, const char *path)
{
    cJSON *meta = ckpt_meta(t);
    lk_status s = ckpt_save(path, meta, t->lora.params, t->m1, t->m2, t->lora.n_params);
    cJSON_Delete(meta);
    return s;
}

static double num(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The checkpoint must describe this very run: same adapter shape, rows and sequence length. */
static lk_status check_meta(const lk_trainer *t, const cJSON *j, const char *path)
{
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)t->p.seed);
    struct {
        const char *key;
        double want;
    } k[] = {{"rank", (double)t->lora.r},
             {"alpha", t->lora.alpha},
             {"targets", t->lora.targets},
             {"n_params", (double)t->lora.n_params},
             {"seq_len", (double)t->T},
             {"rows_per_step", (double)t->rows},
             {"objective", (double)t->p.objective},
             {"kd_temp", t->p.kd_temp},
             {"kd_weight", t->p.kd_weight},
             {"jsd_beta", t->p.jsd_beta}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (num(j, k[i].key) != k[i].want)
            return status_fail(LK_ERR_ARG,
                               "%s: checkpoint has %s %g, this run %g (resume with the options "
                               "of the interrupted run)",
                               path, k[i].key, num(j, k[i].key), k[i].want);
    if (!cJSON_IsString(seed) || strcmp(seed->valuestring, want) != 0)
        return status_fail(LK_ERR_ARG, "%s: checkpoint was made with another --seed", path);
    if (!(num(j, "step") >= 0) || !(num(j, "n_updates") >= 0) || !(num(j, "cursor_next") >= 0) ||
        !(num(j, "cursor_epoch") >= 0))
        return status_fail(LK_ERR_FORMAT, "%s: checkpoint description lacks its counters", path);
    return LK_OK;
}

lk_status lk_trainer_resume(lk_trainer *t, const char *path)
{
    cJSON *meta;
    float *blob;
    int64_t n;
    LK_TRY(ckpt_load(path, &meta, &blob, &n));
    lk_status s = n == t->lora.n_params
                      ? check_meta(t, meta, path)
                      : status_fail(LK_ERR_ARG,
                                    "%s: checkpoint holds %lld parameters, this "
                                    "run %lld",
                                    path, (long long)n, (long long)t->lora.n_params);
    struct lk_data_cursor c = {(uint64_t)num(meta, "cursor_epoch"),
                               (int64_t)num(meta, "cursor_next")};
    if (s == LK_OK)
        s = lk_dataset_set_cursor(t->data, &c);
    if (s == LK_OK) {
        size_t bytes = (size_t)n * sizeof(float);
        memcpy(t->lora.params, blob, bytes);
        memcpy(t->m1, blob + n, bytes);
        memcpy(t->m2, blob + 2 * n, bytes);
        t->step = (int64_t)num(meta, "step");
        t->n_updates = (int64_t)num(meta, "n_updates");
        t->skipped_total = (int64_t)num(meta, "skipped_total");
        t->bad_run = (int64_t)num(meta, "bad_run");
        if (t->total < t->step)
            t->total = t->step;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(meta, "loss_history");
        s = hist_reserve(t, t->step + 1);
        int64_t i = 0;
        for (const cJSON *e = cJSON_IsArray(h) ? h->child : NULL; e && s == LK_OK && i < t->step;
             e = e->next)
            t->hist[i++] = cJSON_IsNumber(e) ? (float)e->valuedouble : NAN;
        for (; s == LK_OK && i < t->step; i++)
            t->hist[i] = NAN;
    }
    free(blob);
    cJSON_Delete(meta);
    return s;
}

lk_status lk_trainer_save_adapter(const lk_trainer *t, const char *dir, const char *base_model,
                                  int force)
{
    struct lk_adapter_params ap = lk_adapter_params_default();
    ap.rank = t->lora.r;
    ap.alpha = t->lora.alpha;
    ap.use_rslora = t->lora.rslora;
    ap.target_mask = t->lora.targets;
    lk_adapter *a;
    LK_TRY(lk_adapter_create(lk_model_get_config(t->m), &ap, &a));
    lk_status s = lora_set_export(&t->lora, a);
    if (s == LK_OK && base_model)
        s = adapter_set_base_name(a, base_model);
    if (s == LK_OK)
        s = lk_adapter_save_peft(a, dir, force);
    lk_adapter_free(a);
    return s;
}

int64_t lk_trainer_memory_plan(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                               int64_t *adapter_bytes, int64_t *optimizer_bytes,
                               int64_t *activation_bytes)
{
    const struct lk_model_config *c = lk_model_get_config(m);
    int64_t params = 0;
    for (int k = 0; k < LK_MOD_COUNT; k++)
        if (p->targets & (1u << k)) {
            int64_t out, in;
            adapter_module_shape(c, (lk_module)k, &out, &in);
            params += c->n_layers * p->rank * (in + out);
        }
    *adapter_bytes = params * 4 * 2; /* factors and gradients */
    *optimizer_bytes = p->optimizer == LK_OPT_SGD ? 0 : params * 4 * 2;
    *activation_bytes =
        graph_bytes(m, seq_len, p->checkpointing) + 5 * seq_len * p->batch * p->grad_accum * 4;
    if (p->objective != LK_OBJ_SFT) { /* the loss's scratch, the online teacher's forward */
        const linear *th = p->teacher ? &p->teacher->lm_head : NULL;
        *activation_bytes += kd_scratch_floats(&m->lm_head, th, m->n_threads) * 4;
        if (p->teacher)
            *activation_bytes += graph_bytes(p->teacher, seq_len, 1);
    }
    return *adapter_bytes + *optimizer_bytes + *activation_bytes;
}
