/* train.c — the LoRA trainer: creation (every buffer of a step planned here), rows from the
 * dataset, forward/backward through the training graph, NaN/Inf guard, global-norm clipping,
 * AdamW/SGD with LoRA+ learning-rate ratio, warmup and decay schedule, evaluation. Calls into
 * train_graph.c, distill.c (the teacher of a distillation run), optim.c, and dist.c and
 * dist_check.c (data parallelism); checkpoints and the PEFT output are train_ckpt.c's, on top of
 * this file.
 * Loss normalisation: the mean over every trained token of the step (all micro-batches, and with
 * data parallelism all ranks), as transformers does when it knows the step's token count
 * (num_items_in_batch).
 * Data parallelism: a step is rows_all = ranks × batch × grad_accum rows in the data's order;
 * every rank moves its cursor over all of them and computes rows [row0, row0 + rows). The token
 * counts are summed before the backward (the gradient scale is 1 / the step's trained tokens),
 * the gradients and loss sums after it; every rank then clips and updates the same way. Each sum
 * also carries every rank's status, so a failure on one rank stops all of them at the same
 * point. */
#include <math.h>
#include <string.h>

#include "core/pool.h"
#include "lora/loftq.h"
#include "lorakit/train.h"
#include "train/optim.h"
#include "core/status.h"
#include "train/params.h"
#include "train/trainer.h"

/* The starting adapter: --init-adapter's, or a fresh one initialised as PEFT does. */
static lk_status initial_adapter(const lk_model *m, const struct lk_train_params *p,
                                 lk_adapter **out)
{
    if (!p->init_adapter) {
        struct lk_adapter_params ap = lk_adapter_params_default();
        ap.rank = p->rank;
        ap.alpha = train_alpha(p);
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

/* The trained adapter attached to the model; an initial adapter's own shape rules the options. */
static lk_status adapter_setup(lk_trainer *t, const struct lk_train_params *p)
{
    LK_TRY(initial_adapter(t->m, p, &t->ad));
    struct lk_adapter_base trained_on; /* saved with the adapter: the base it learns on */
    lk_model_base_record(t->m, &trained_on);
    LK_TRY(lk_adapter_set_base_record(t->ad, &trained_on));
    LK_TRY(lora_set_create(t->m, t->ad, p->dropout, &t->lora));
    if (p->init_adapter) {
        struct lk_adapter_info info;
        lk_adapter_get_info(t->ad, &info);
        t->p.rank = info.rank;
        t->p.alpha = info.alpha;
        t->p.rslora = info.use_rslora;
        t->p.targets = info.target_mask;
    }
    if (p->init != LK_INIT_LOFTQ)
        return LK_OK;
    t->loftq = calloc((size_t)(t->lora.n ? t->lora.n : 1), sizeof *t->loftq);
    return t->loftq ? loftq_init_set(t->m, &t->lora, p->seed, t->loftq)
                    : status_fail(LK_ERR_NOMEM, "out of memory");
}

lk_status trainer_plan_history(lk_trainer *t, int64_t n)
{
    if (n <= t->hist_cap)
        return LK_OK;
    float *h = realloc(t->hist, (size_t)n * sizeof *h);
    if (!h)
        return status_fail(LK_ERR_NOMEM, "out of memory (loss history of %lld steps)",
                           (long long)n);
    t->hist = h;
    t->hist_cap = n;
    return LK_OK;
}

/* The step's rows, the optimiser's moments and the loss history of the whole run. */
static lk_status alloc_rows(lk_trainer *t)
{
    size_t n = (size_t)(t->rows * t->T);
    int64_t red = dist_sum_work(t->dist, t->lora.n_params);
    t->red = red ? lk_aligned_alloc((size_t)red * sizeof(float)) : NULL;
    t->tok = malloc(n * sizeof(int32_t));
    t->lab = malloc(n * sizeof(int32_t));
    t->pos = malloc(n * sizeof(int32_t));
    t->seg = malloc(n * sizeof(int32_t));
    t->tgt = malloc(n * sizeof(int32_t));
    t->n_real = malloc((size_t)t->rows * sizeof(int64_t));
    t->m1 = lk_aligned_alloc((size_t)t->lora.n_params * sizeof(float));
    t->m2 = lk_aligned_alloc((size_t)t->lora.n_params * sizeof(float));
    const int levels = sum_tree_levels(t->rows);
    t->rows_sum = (sum_tree){.n = t->lora.n_params};
    if (levels)
        t->rows_sum.own =
            lk_aligned_alloc((size_t)levels * (size_t)t->lora.n_params * sizeof(float));
    if (!t->tok || !t->lab || !t->pos || !t->seg || !t->tgt || !t->n_real || !t->m1 || !t->m2 ||
        (red && !t->red) || (levels && !t->rows_sum.own))
        return status_fail(LK_ERR_NOMEM, "out of memory for the trainer's buffers");
    memset(t->m1, 0, (size_t)t->lora.n_params * sizeof(float));
    memset(t->m2, 0, (size_t)t->lora.n_params * sizeof(float));
    return trainer_plan_history(t, t->total > 0 ? t->total : 1);
}

/* Data in which no example keeps a token to train on cannot train anything. */
static lk_status check_trainable(const lk_dataset *data)
{
    const struct lk_dataset_stats *s = lk_dataset_get_stats(data);
    if (s->untrained < s->examples)
        return LK_OK;
    if (s->truncated_untrained)
        return status_fail(LK_ERR_ARG,
                           "training data: no example keeps a token to train on: %lld of %lld "
                           "lost every trained token to truncation at --seq-len %lld (hint: "
                           "--seq-len %lld keeps one in each)",
                           (long long)s->truncated_untrained, (long long)s->examples,
                           (long long)lk_dataset_seq_len(data), (long long)s->seq_len_to_train);
    return status_fail(LK_ERR_ARG, "training data: no example has a token to train on (every "
                                   "label is -100)");
}

/* Rows longer than the model's context put tokens at positions it was never trained on. */
static void warn_context(const lk_model *m, int64_t seq_len)
{
    int64_t ctx = lk_model_get_config(m)->max_position;
    if (seq_len > ctx)
        log_warn("--seq-len %lld is longer than the model's context of %lld tokens "
                 "(max_position_embeddings, a GGUF's context_length): the rows put tokens at "
                 "positions it was never trained on (hint: --seq-len %lld)",
                 (long long)seq_len, (long long)ctx, (long long)ctx);
}

/* Everything a trainer needs on this rank alone. */
/* What a trainer keeps for the backward: the top `keep` layers their activations (the others
 * recomputed), with --compute int8 the top `copies` layers their transposed copies (the others'
 * built before their backward into one buffer) and, with head, the LM head its copy (else its dx
 * runs on the f32 kernel). */
typedef struct {
    int64_t keep, copies;
    int head;
} train_keep;

/* The plan of what to keep within the memory budget (below). */
static train_keep plan_keep(const lk_model *m, const struct lk_train_params *p, int64_t seq_len);

static lk_status trainer_setup(lk_model *m, lk_dataset *data, const struct lk_train_params *p,
                               lk_trainer **out)
{
    LK_TRY(lk_train_params_check(p, NULL));
    LK_TRY(lk_train_params_check_model(p, m));
    LK_TRY(train_check_teacher(p));
    LK_TRY(check_trainable(data));
    warn_context(m, lk_dataset_seq_len(data));
    LK_TRY(lk_trainer_choose_compute(m, p, lk_dataset_seq_len(data)));
    lk_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    *out = t;
    t->m = m;
    t->data = data;
    t->p = *p;
    t->dist = p->dist;
    t->T = lk_dataset_seq_len(data);
    t->rows = p->batch * p->grad_accum;
    t->rows_all = t->rows * lk_dist_size(p->dist);
    t->row0 = t->rows * lk_dist_rank(p->dist);
    double rows_total = p->epochs * (double)lk_dataset_rows_in_epoch(data);
    t->total = p->steps ? p->steps : (int64_t)ceil(rows_total / (double)t->rows_all);
    LK_TRY(adapter_setup(t, p));
    const train_keep k = plan_keep(m, p, t->T);
    if (lk_model_int8_matrices(m) > 0 && !m->q8_ready) { /* --compute int8: dx on Wᵀ's copies */
        LK_TRY(model_int8_backward(m, k.copies, k.head));
        t->q8t = 1;
    }
    LK_TRY(graph_create(m, t->T, k.keep, &t->g));
    LK_TRY(alloc_rows(t));
    return distill_create(&t->kd, p, m, data, t->T, t->rows, t->g);
}

lk_status lk_trainer_create(lk_model *m, lk_dataset *data, const struct lk_train_params *p,
                            lk_trainer **out)
{
    lk_trainer *t = NULL;
    *out = NULL;
    lk_status s = trainer_setup(m, data, p, &t);
    if (p && dist_active(p->dist)) { /* collective from here on, whatever happened above */
        s = lk_dist_agree(p->dist, s);
        if (s == LK_OK)
            s = dist_check_train(p->dist, m, data, p);
        if (s == LK_OK) /* rank 0's start (init, LoftQ or --init-adapter) on every rank */
            s = dist_bcast(p->dist, t->lora.params, (size_t)t->lora.n_params * sizeof(float));
    }
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
    if (t->q8t)
        model_int8_backward_free(t->m);
    lora_set_free(&t->lora);
    lk_adapter_free(t->ad);
    graph_free(t->g);
    distill_free(&t->kd);
    free(t->m1);
    free(t->m2);
    free(t->red);
    free(t->rows_sum.own);
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

/* Move the data cursor n rows on, as n lk_dataset_next_row calls would (a new epoch is drawn only
 * when a row past the last is needed): the rows of the step that other ranks compute. */
static lk_status skip_rows(lk_dataset *d, int64_t n)
{
    while (n > 0) {
        struct lk_data_cursor c;
        lk_dataset_get_cursor(d, &c);
        int64_t left = lk_dataset_rows_in_epoch(d) - c.next;
        if (left <= 0) {
            c = (struct lk_data_cursor){c.epoch + 1, 0};
        } else {
            c.next += n < left ? n : left;
            n -= n < left ? n : left;
        }
        LK_TRY(lk_dataset_set_cursor(d, &c));
    }
    return LK_OK;
}

/* Fetch this rank's rows of the step (the cursor passes over every rank's); counts the trained
 * tokens and the tokens. */
static lk_status fetch_rows(lk_trainer *t, int64_t *n_trained, int64_t *n_tokens)
{
    *n_trained = *n_tokens = 0;
    LK_TRY(skip_rows(t->data, t->row0));
    for (int64_t r = 0; r < t->rows; r++) {
        int64_t o = r * t->T;
        LK_TRY(lk_dataset_next_row(t->data, t->tok + o, t->lab + o, t->pos + o, t->seg + o,
                                   &t->n_real[r], NULL));
        *n_tokens += t->n_real[r];
        *n_trained += make_targets(t->lab + o, t->seg + o, t->n_real[r], t->tgt + o);
        LK_TRY(distill_row(&t->kd, t->data, r));
    }
    return skip_rows(t->data, t->rows_all - t->row0 - t->rows);
}

static int all_finite(const float *g, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(g[i]))
            return 0;
    return 1;
}

typedef struct {
    lk_trainer *t;
    optim_params o;
    float lr;
} update_job;

/* Modules [i0, i1) of an update_job (each module's update touches only its own parameters). */
static void update_modules(void *ctx, int64_t i0, int64_t i1, int thread)
{
    (void)thread;
    const update_job *j = ctx;
    lk_trainer *t = j->t;
    for (int64_t i = i0; i < i1; i++) {
        lora_module *mo = &t->lora.mods[i];
        const adapter_module *a = mo->am;
        int64_t oa = a->A - t->lora.params, ob = a->B - t->lora.params;
        optim_update(&j->o, a->A, mo->tr.dA, t->m1 + oa, t->m2 + oa, a->r * a->in, j->lr,
                     t->n_updates);
        optim_update(&j->o, a->B, mo->tr.dB, t->m1 + ob, t->m2 + ob, a->r * a->out,
                     j->lr * t->p.lr_ratio_b, t->n_updates);
    }
}

/* Optimiser update of every module, B at lr·ratio (LoRA+), the modules over the threads. */
static void update(lk_trainer *t, float lr)
{
    update_job j = {.t = t,
                    .o = {.kind = t->p.optimizer == LK_OPT_SGD ? OPT_SGD : OPT_ADAMW,
                          .beta1 = t->p.beta1,
                          .beta2 = t->p.beta2,
                          .eps = t->p.eps,
                          .weight_decay = t->p.weight_decay},
                    .lr = lr};
    t->n_updates++;
    par_for(t->m->n_threads, t->lora.n, update_modules, &j);
}

/* Row r of the step as the graph's input: its tokens, targets, positions and dropout stream. */
static train_batch row_batch(const lk_trainer *t, int64_t r)
{
    int64_t o = r * t->T;
    return (train_batch){.tokens = t->tok + o,
                         .targets = t->tgt + o,
                         .pos = t->pos + o,
                         .T = t->n_real[r],
                         .dropout = 1,
                         .seed = t->p.seed,
                         .row =
                             (uint64_t)t->step * (uint64_t)t->rows_all + (uint64_t)(t->row0 + r)};
}

/* Forward and backward of this rank's rows of the step, the gradients scaled by 1/the step's
 * trained tokens (over every rank). Each row's gradient is computed on its own (from zero; an
 * empty row's is zero) and the rows' are summed in the sum_tree order, so that the rank count
 * does not change the bits (dist_sum_f32 sums the ranks' in the same tree). */
static lk_status run_rows(lk_trainer *t, int64_t n_trained, loss_sums *sums)
{
    float scale = n_trained ? 1.0f / (float)n_trained : 0.0f;
    t->rows_sum.occ = 0; /* a step that failed half-way left nothing pending */
    for (int64_t r = 0; r < t->rows; r++) {
        lora_set_zero_grad(&t->lora);
        if (t->n_real[r] > 0) {
            train_batch b = row_batch(t, r);
            loss_config loss;
            LK_TRY(distill_loss(&t->kd, &t->kd.kp, &b, r, t->seg + r * t->T, &loss));
            LK_TRY(graph_run(t->g, &b, &loss, scale, 1, sums));
        }
        if (t->rows > 1)
            sum_tree_push(&t->rows_sum, t->lora.grads, r == t->rows - 1, 0);
    }
    return LK_OK;
}

/* The step's means: loss, and with distillation its CE and divergence parts. */
static void step_means(const lk_trainer *t, const loss_sums *s, struct lk_step_stats *st)
{
    int64_t cnt = s->count;
    int distil = t->kd.kp.kind != 0;
    st->loss = cnt ? s->loss / (double)cnt : 0;
    st->ce = distil && cnt ? s->ce / (double)cnt : distil ? 0 : NAN;
    st->kd = distil && cnt ? s->kd / (double)cnt : distil ? 0 : NAN;
}

/* This rank's rows forward and backward, then the sums over the ranks: token counts before the
 * backward, loss sums and gradients after it. */
static lk_status step_rows(lk_trainer *t, loss_sums *sums, struct lk_step_stats *st)
{
    int64_t n[2]; /* trained tokens, tokens */
    lk_status s = fetch_rows(t, &n[0], &n[1]);
    LK_TRY(dist_sum_agree(t->dist, s, n, 2, NULL, 0));
    s = run_rows(t, n[0], sums);
    double v[3] = {sums->loss, sums->ce, sums->kd};
    LK_TRY(dist_sum_agree(t->dist, s, &sums->count, 1, v, 3));
    *sums = (loss_sums){v[0], v[1], v[2], sums->count};
    st->trained_tokens = n[0];
    st->tokens = n[1];
    if (!dist_active(t->dist))
        return LK_OK;
    LK_TRY(dist_sum_f32(t->dist, t->lora.grads, t->lora.n_params, t->red));
    st->comm_bytes = t->dist->bytes_sent;
    st->comm_s = t->dist->seconds;
    return LK_OK;
}

lk_status lk_trainer_step(lk_trainer *t, struct lk_step_stats *st)
{
    memset(st, 0, sizeof *st);
    loss_sums sums = {0};
    LK_TRY(step_rows(t, &sums, st));
    step_means(t, &sums, st);
    st->lr = schedule_lr((sched_kind)t->p.schedule, t->p.lr, t->step, t->p.warmup_steps, t->total);
    st->empty = sums.count == 0;
    int finite = st->empty || (isfinite(st->loss) && all_finite(t->lora.grads, t->lora.n_params));
    if (st->empty)
        st->loss = st->ce = st->kd = NAN; /* no token: no loss */
    if (!finite || st->empty) {
        st->skipped = 1;
        t->skipped_total++;
        t->bad_run += !finite;
    } else {
        st->grad_norm = clip_grad_norm(t->lora.grads, t->lora.n_params, t->p.max_grad_norm);
        update(t, st->lr);
        t->bad_run = 0;
    }
    /* planned for the whole run; only a caller stepping past the total steps grows it */
    if (trainer_plan_history(t, t->step + 1) == LK_OK)
        t->hist[t->step] = st->skipped ? NAN : (float)st->loss;
    t->step++;
    st->step = t->step;
    st->total_steps = t->total;
    st->skipped_total = t->skipped_total;
    st->updates_total = t->n_updates;
    if (t->bad_run >= t->p.max_bad_steps)
        return status_fail(LK_ERR_NUMERIC,
                           "%lld steps in a row had a non-finite loss or gradient (step %lld); "
                           "stopping with the parameters of the last good step (hint: lower "
                           "--lr, or check the data)",
                           (long long)t->bad_run, (long long)t->step);
    return LK_OK;
}

/* Example i of eval, unpacked and cut to the sequence length, as the graph's input (no dropout;
 * inference forwards, so that the loss is lora-eval's): positions and targets into the trainer's
 * first row. n 0: nothing to evaluate. */
static lk_status eval_batch(lk_trainer *t, const lk_dataset *eval, int64_t i, train_batch *b)
{
    const int32_t *ids, *labels;
    int64_t n, line;
    LK_TRY(lk_dataset_example(eval, i, &ids, &labels, &n, &line));
    n = n < t->T ? n : t->T;
    for (int64_t j = 0; j < n; j++) {
        t->pos[j] = (int32_t)j;
        t->tgt[j] = j + 1 < n && labels[j + 1] >= 0 ? labels[j + 1] : -100;
    }
    *b = (train_batch){.tokens = ids, .targets = t->tgt, .pos = t->pos, .T = n, .infer = 1};
    return LK_OK;
}

struct lk_eval_params lk_eval_params_default(void)
{
    return (struct lk_eval_params){.max_examples = 0, .progress = NULL, .user = NULL};
}

lk_status lk_trainer_evaluate(lk_trainer *t, const lk_dataset *eval, const struct lk_eval_params *p,
                              struct lk_eval_result *out)
{
    struct lk_eval_params d = p ? *p : lk_eval_params_default();
    if (d.max_examples < 0)
        return status_fail(LK_ERR_ARG, "--eval-max must be at least 1, got %lld",
                           (long long)d.max_examples);
    loss_sums sums = {0};
    int64_t n_ex = lk_dataset_get_stats(eval)->examples;
    int64_t n = d.max_examples && d.max_examples < n_ex ? d.max_examples : n_ex;
    int64_t N = lk_dist_size(t->dist), r = lk_dist_rank(t->dist);
    int64_t a = n * r / N, z = n * (r + 1) / N; /* this rank's share of the sample */
    /* with an online teacher: forward KL at τ = 1 as the loss, cross-entropy beside it */
    kd_params kp = {.kind = t->kd.tg ? KD_FKL : 0, .temp = 1, .weight = 1};
    LK_TRY(dist_check_data(t->dist, eval, "--eval-data"));
    lk_status s = LK_OK;
    for (int64_t k = a; k < z && s == LK_OK; k++) {
        train_batch b;
        loss_config lc;
        s = eval_batch(t, eval, (int64_t)((double)k * (double)n_ex / (double)n), &b);
        if (s == LK_OK && b.T > 0)
            s = distill_loss(&t->kd, &kp, &b, -1, NULL, &lc);
        if (s == LK_OK && b.T > 0)
            s = graph_run(t->g, &b, &lc, 0.0f, 0, &sums);
        int64_t done = (k + 1 - a) * N < n ? (k + 1 - a) * N : n; /* about, over every rank */
        if (s == LK_OK && d.progress && d.progress(d.user, done, n))
            s = status_fail(LK_ERR_INTERRUPTED, "evaluation stopped after %lld of %lld examples",
                            (long long)done, (long long)n);
    }
    double v[3] = {sums.loss, sums.ce, sums.kd};
    LK_TRY(dist_sum_agree(t->dist, s, &sums.count, 1, v, 3));
    sums = (loss_sums){v[0], v[1], v[2], sums.count};
    int64_t cnt = sums.count;
    out->loss = cnt ? (kp.kind ? sums.ce : sums.loss) / (double)cnt : NAN;
    out->kl = cnt && kp.kind ? sums.kd / (double)cnt : NAN;
    out->tokens = cnt;
    out->examples = n;
    return LK_OK;
}

lk_status lk_trainer_eval(lk_trainer *t, const lk_dataset *eval, double *loss, double *kl,
                          int64_t *tokens)
{
    struct lk_eval_result r;
    LK_TRY(lk_trainer_evaluate(t, eval, NULL, &r));
    *loss = r.loss;
    if (kl)
        *kl = r.kl;
    *tokens = r.tokens;
    return LK_OK;
}

/* Bytes of the int8 copies k keeps, and of the buffer the other layers' are built into. */
static int64_t copies_bytes(const lk_model *m, const train_keep *k)
{
    const int64_t L = lk_model_get_config(m)->n_layers;
    int64_t total = k->head ? model_int8_copy_bytes(m, L) : 0, build = 0;
    for (int64_t l = 0; l < L; l++) {
        int64_t b = model_int8_copy_bytes(m, l);
        if (l >= L - k->copies)
            total += b;
        else
            build = b > build ? b : build;
    }
    return total + build;
}

/* What a training process holds beyond the buffers it plans: the libraries' code and data,
 * thread stacks, OpenBLAS's packing buffers, the heap's slack. Peak RSS ran 10-14 MiB above the
 * plan at 2 threads for the Qwen2.5-0.5B and Llama-3.2-3B shapes (x86-64, glibc). */
#define PLAN_RUNTIME ((int64_t)16 << 20)

/* lk_trainer_memory_plan for k. */
static int64_t plan_keeping(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                            const train_keep *k, int64_t *adapter_bytes, int64_t *optimizer_bytes,
                            int64_t *activation_bytes, int64_t *copy_bytes)
{
    const struct lk_model_config *c = lk_model_get_config(m);
    int64_t params = 0;
    for (int i = 0; i < LK_MOD_COUNT; i++)
        if (p->targets & (1u << i)) {
            int64_t out, in;
            adapter_module_shape(c, (lk_module)i, &out, &in);
            params += c->n_layers * p->rank * (in + out);
        }
    /* factors and gradients (and with data parallelism the gradient sum's chunks, with more
     * than one row a step the rows' pending sums) */
    *adapter_bytes = params * 4 * 2 + dist_sum_work(p->dist, params) * 4 +
                     sum_tree_levels(p->batch * p->grad_accum) * params * 4;
    *optimizer_bytes = p->optimizer == LK_OPT_SGD ? 0 : params * 4 * 2;
    *activation_bytes =
        graph_bytes(m, seq_len, k->keep) + 5 * seq_len * p->batch * p->grad_accum * 4;
    *copy_bytes = copies_bytes(m, k); /* --compute int8's transposed copies */
    if (p->objective != LK_OBJ_SFT) { /* the loss's scratch, the online teacher's forward */
        const linear *th = p->teacher ? &p->teacher->lm_head : NULL;
        *activation_bytes += kd_scratch_floats(&m->lm_head, th, m->n_threads) * 4;
        if (p->teacher)
            *activation_bytes += graph_bytes(p->teacher, seq_len, 1);
    }
    return *adapter_bytes + *optimizer_bytes + *activation_bytes + *copy_bytes + PLAN_RUNTIME;
}

/* The least plan with which m trains on int8 (lk_trainer_choose_compute): the weights of m and of
 * an online teacher, one layer's activations (all with LK_CKPT_OFF), no copy kept but the buffer
 * one layer's are built into. need: all of it; act, cb: its activations and int8 copies; teacher:
 * the online teacher's share (its weights and its forward's buffers). */
typedef struct {
    int64_t need, act, cb, teacher;
} least_plan;

static least_plan least(const lk_model *m, const struct lk_train_params *p, int64_t seq_len)
{
    const int64_t L = lk_model_get_config(m)->n_layers;
    const train_keep k = {.keep = p->checkpointing == LK_CKPT_OFF ? L : 1, .copies = 0, .head = 0};
    int64_t ad, opt;
    least_plan r = {0};
    r.need = lk_model_weight_bytes(m) + plan_keeping(m, p, seq_len, &k, &ad, &opt, &r.act, &r.cb);
    if (p->teacher) {
        r.teacher = lk_model_weight_bytes(p->teacher) +
                    (p->objective != LK_OBJ_SFT ? graph_bytes(p->teacher, seq_len, 1) : 0);
        r.need += lk_model_weight_bytes(p->teacher);
    }
    return r;
}

/* The plan within p->memory_limit (or the memory available), in the order that buys the most
 * speed per byte: the LM head's copy (its dx on the f32 kernel is several layers' worth of time),
 * then with LK_CKPT_AUTO the layers' activations (a layer recomputed costs its forward), then
 * the layers' copies (one built before the backward costs a transposition). Every layer keeps
 * its copies when they all fit; whatever does not fit is left out. */
static train_keep plan_keep(const lk_model *m, const struct lk_train_params *p, int64_t seq_len)
{
    const int64_t L = lk_model_get_config(m)->n_layers;
    train_keep k = {.keep = p->checkpointing == LK_CKPT_OFF ? L : 1, .copies = 0, .head = 0};
    const least_plan lp = least(m, p, seq_len);
    const int64_t budget = lk_memory_budget(p->memory_limit, NULL);
    int64_t rem = budget - lp.need;
    const int64_t head = model_int8_copy_bytes(m, L);
    k.head = head > 0 && rem >= head;
    rem -= k.head ? head : 0;
    const int64_t per_layer = graph_layer_bytes(m, seq_len);
    if (p->checkpointing == LK_CKPT_AUTO && per_layer > 0 && rem > 0) {
        const int64_t more = rem / per_layer;
        k.keep = more >= L - 1 ? L : 1 + more;
        rem -= (k.keep - 1) * per_layer;
    }
    int64_t all = 0;
    for (int64_t l = 0; l < L; l++)
        all += model_int8_copy_bytes(m, l);
    if (rem + lp.cb >= all) /* the buffer goes when every layer keeps its copies */
        k.copies = L;
    while (k.copies < L && rem >= model_int8_copy_bytes(m, L - 1 - k.copies))
        rem -= model_int8_copy_bytes(m, L - 1 - k.copies++);
    return k;
}

/* The online teacher of p when it may give way to m (it took int8 by LK_COMPUTE_AUTO and no
 * resumed run holds it there), else NULL. */
static lk_model *yielding_teacher(const lk_model *m, const struct lk_train_params *p)
{
    lk_model *t = p->teacher;
    if (!t || t == m || !t->compute_auto || t->compute != LK_COMPUTE_INT8 || t->compute_resumed)
        return NULL;
    return t;
}

/* least() with the teacher t as f32 compute would run it: without its NF4 corrections, its
 * buffers sized for f32 (marked so for the count, then marked back). */
static least_plan least_teacher_f32(const lk_model *m, lk_model *t, const struct lk_train_params *p,
                                    int64_t seq_len)
{
    const int64_t fixes = model_int8_fix_bytes(t);
    model_int8_mark(t, LK_COMPUTE_F32);
    least_plan r = least(m, p, seq_len);
    model_int8_mark(t, t->compute);
    r.need -= fixes;
    r.teacher -= fixes;
    return r;
}

/* The words for a least plan of m in a reason or an error; t: the teacher when it gives way. */
static void plan_words(char *buf, size_t cap, const least_plan *lp, const lk_model *m,
                       const struct lk_train_params *p, const lk_model *t)
{
    int n = snprintf(buf, cap,
                     "least training plan (%.1f MiB: the weights%s, %.1f MiB of activations, "
                     "%.1f MiB of int8 copies",
                     lp->need / 1048576.0,
                     model_int8_fix_bytes(m) > 0 ? " with the NF4 corrections" : "",
                     lp->act / 1048576.0, lp->cb / 1048576.0);
    if (p->teacher && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "; the teacher's share %.1f MiB, on %s",
                      lp->teacher / 1048576.0, t ? "f32" : lk_compute_name(p->teacher->compute));
    if (n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, ")");
}

/* Turn the teacher t to f32 for m, whose least plan (words: plan) fits the budget only so (on
 * int8 it would need with_int8). */
static void give_way(lk_model *t, const lk_model *m, const char *plan, const char *budget,
                     int64_t with_int8)
{
    char why[sizeof t->compute_why];
    snprintf(why, sizeof why,
             "auto: f32, giving way to the model trained: its %s %s fits %s only with the teacher "
             "on f32 (on int8: %.1f MiB)",
             lk_compute_name(m->compute), plan, budget, with_int8 / 1048576.0);
    model_int8_to_f32(t, why);
}

/* After m turned to f32: the teacher still gives way when that is what makes m's plan fit. */
static void teacher_after_f32(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                              int64_t have, const char *budget)
{
    const least_plan as_is = least(m, p, seq_len);
    lk_model *t = as_is.need > have ? yielding_teacher(m, p) : NULL;
    if (!t)
        return;
    const least_plan lp = least_teacher_f32(m, t, p, seq_len);
    char plan[256];
    plan_words(plan, sizeof plan, &lp, m, p, t);
    if (lp.need <= have)
        give_way(t, m, plan, budget, as_is.need);
}

lk_status lk_trainer_choose_compute(lk_model *m, const struct lk_train_params *p, int64_t seq_len)
{
    if (!m->compute_auto || m->q8t || m->compute_planned)
        return LK_OK;
    m->compute_planned = 1; /* lk_trainer_create after a tool's check: the same choice */
    const char *what;
    const int64_t have = lk_memory_budget(p->memory_limit, &what);
    char plan[256], budget[128], also[96] = "";
    snprintf(budget, sizeof budget, "the %.1f MiB available (%s)", have / 1048576.0, what);
    if (m->compute != LK_COMPUTE_INT8) { /* f32 at load: the teacher may still make room */
        teacher_after_f32(m, p, seq_len, have, budget);
        return LK_OK;
    }
    const least_plan as_is = least(m, p, seq_len);
    /* the model trained comes first: a teacher on int8 turns to f32 when that makes room */
    lk_model *t = as_is.need > have ? yielding_teacher(m, p) : NULL;
    const least_plan lp = t ? least_teacher_f32(m, t, p, seq_len) : as_is;
    const int fits = lp.need <= have;
    plan_words(plan, sizeof plan, &lp, m, p, t);
    if (t)
        snprintf(also, sizeof also, " %s the teacher on f32 (on int8: %.1f MiB)",
                 fits ? "with" : "even with", as_is.need / 1048576.0);
    if (m->compute_resumed && !fits) {
        m->compute_planned = 0; /* nothing decided: the run stops here */
        char needs[sizeof plan + 8];
        snprintf(needs, sizeof needs, "its %s", plan);
        return model_int8_resumed_nofit(needs, budget);
    }
    char why[sizeof m->compute_why];
    if (m->compute_resumed)
        snprintf(why, sizeof why, "checkpoint: int8, the mode of the run resumed; its %s fits %s%s",
                 plan, budget, also);
    else
        snprintf(why, sizeof why, "auto: %s, int8's %s %s %s%s", fits ? "int8" : "f32", plan,
                 fits ? "fits" : "does not fit", budget, also);
    if (!fits) {
        model_int8_to_f32(m, why);
        teacher_after_f32(m, p, seq_len, have, budget);
        return LK_OK;
    }
    if (t)
        give_way(t, m, plan, budget, as_is.need);
    snprintf(m->compute_why, sizeof m->compute_why, "%s", why);
    return LK_OK;
}

lk_status lk_trainer_agree_compute(lk_dist *d, lk_model *m)
{
    if (!dist_active(d))
        return LK_OK;
    /* 1 + the highest rank that runs f32, or 0 */
    int64_t f32 = m->compute == LK_COMPUTE_F32 ? 1 + lk_dist_rank(d) : 0;
    LK_TRY(lk_dist_max(d, &f32));
    if (f32 && m->compute == LK_COMPUTE_INT8 && m->compute_auto && !m->compute_resumed && !m->q8t) {
        char why[sizeof m->compute_why];
        snprintf(why, sizeof why, "auto: f32, as rank %lld runs it (the ranks compute alike)",
                 (long long)(f32 - 1));
        model_int8_to_f32(m, why);
    }
    return LK_OK;
}

int64_t lk_trainer_kept_layers(const lk_model *m, const struct lk_train_params *p, int64_t seq_len)
{
    return plan_keep(m, p, seq_len).keep;
}

int64_t lk_trainer_int8_copies(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                               int *head, int64_t *bytes)
{
    train_keep k = plan_keep(m, p, seq_len);
    const int64_t L = lk_model_get_config(m)->n_layers;
    if (head)
        *head = model_int8_copy_bytes(m, L) == 0 ? -1 : k.head;
    if (bytes)
        *bytes = copies_bytes(m, &k);
    return k.copies;
}

int64_t lk_trainer_memory_plan(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                               int64_t *adapter_bytes, int64_t *optimizer_bytes,
                               int64_t *activation_bytes)
{
    train_keep k = plan_keep(m, p, seq_len);
    int64_t cb;
    return plan_keeping(m, p, seq_len, &k, adapter_bytes, optimizer_bytes, activation_bytes, &cb);
}
