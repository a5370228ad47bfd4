/* dist_check.c — what the ranks of a data-parallel run compare before the first step, so that a
 * rank started with another model, other data or other flags is an error that names the first
 * difference rather than a run that quietly averages two different things. Each rank lists its
 * items (a name and its value as text; large things by an XXH64 hash), every rank gathers every
 * rank's list, and the first item that differs on some rank fails the start on every rank with
 * both values. The base is hashed as it is held in memory (the quantised weights the steps use),
 * so the same files quantised differently differ too; the data as the tokenised examples, so the
 * same file read with another tokenizer or template differs. Calls into dist.c. */
#include <stdarg.h>
#include <string.h>

#include "core/status.h"
#include "formats/tcache.h"
#include "model/model.h"
#include "text/dataset.h"
#include "train/dist.h"
#include "q8_ilv.h"

#define MAX_ITEMS 48

typedef struct {
    dist_item it[MAX_ITEMS];
    int n;
} item_list;

static void add(item_list *l, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add(item_list *l, const char *name, const char *fmt, ...)
{
    LK_ASSERT(l->n < MAX_ITEMS);
    dist_item *it = &l->it[l->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->value, sizeof it->value, fmt, ap);
    va_end(ap);
}

lk_status dist_check_same(lk_dist *d, const dist_item *items, int n)
{
    if (!dist_active(d))
        return LK_OK;
    size_t bytes = (size_t)n * sizeof *items;
    dist_item *all = malloc(bytes * (size_t)d->size); /* [size, n] */
    lk_status s = all ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    LK_TRY(lk_dist_agree(d, s));
    s = d->ops->allgather(d->comm, items, bytes, all);
    if (s != LK_OK)
        d->broken = 1;
    for (int i = 0; s == LK_OK && i < n; i++)
        for (int q = 1; q < d->size; q++) {
            const dist_item *a = &all[i], *b = &all[(size_t)q * (size_t)n + (size_t)i];
            if (strcmp(a->name, b->name) == 0 && strcmp(a->value, b->value) == 0)
                continue;
            s = status_fail(LK_ERR_ARG,
                            "the ranks disagree on %s: rank 0 has %s, rank %d has %s (every rank "
                            "must run the same lorakit with the same model, data and flags)",
                            a->name, a->value, q, b->value);
            break;
        }
    free(all);
    return s;
}

/* ---- fingerprints ---- */

static uint64_t hash_floats(const float *x, int64_t n, uint64_t h)
{
    return x ? tcache_xxh64(x, (size_t)n * sizeof *x, h) : h;
}

/* The quantised rows of w as the file holds them, in chunks of up to 64 blocks: a matrix the int8
 * path interleaved in place (q8_ilv.h, only where the rank's kernel variant wants it) is hashed
 * in its row layout, so that ranks on different CPUs (one with AVX2, one on the plain-C kernels)
 * still agree. */
static uint64_t hash_qrows(const q4_weight *w, int64_t out, uint64_t h)
{
    h += (uint64_t)w->qtype;
    if (!q8i_supports(w->qtype))
        return tcache_xxh64(w->data, (size_t)out * w->row_bytes, h);
    const size_t bsz = q8i_bsz(w->qtype);
    const int64_t nb = (int64_t)(w->row_bytes / bsz);
    uint8_t buf[64 * 34]; /* 64 blocks of the largest type, Q8_0 */
    for (int64_t o = 0; o < out; o++)
        for (int64_t b = 0; b < nb; b += 64) {
            const int64_t n = nb - b < 64 ? nb - b : 64;
            h = tcache_xxh64(q8i_blocks(w, o, b, n, buf), (size_t)n * bsz, h);
        }
    return h;
}

/* A linear layer's weight (fp32 or its quantised rows), bias, and every adapter attached to it
 * except a trained one (each rank starts it its own way; rank 0's start is broadcast). */
static uint64_t hash_linear(const linear *L, uint64_t h)
{
    int64_t sh[2] = {L->out, L->in};
    h = tcache_xxh64(sh, sizeof sh, h);
    if (L->w)
        h = hash_floats(L->w, L->out * L->in, h);
    else
        h = hash_qrows(&L->qw, L->out, h);
    h = hash_floats(L->b, L->out, h);
    for (int i = L->train ? 1 : 0; i < L->n_lora; i++) {
        const lora_delta *a = &L->lora[i];
        h = hash_floats(a->A, a->r * L->in, h);
        h = hash_floats(a->B, L->out * a->r, h);
        h = tcache_xxh64(&a->scale, sizeof a->scale, h);
    }
    return h;
}

/* The numbers of the config the forward uses, then every weight as held in memory. */
static uint64_t model_hash(const lk_model *m)
{
    const struct lk_model_config *c = &m->cfg;
    double cf[] = {(double)c->vocab_size,
                   (double)c->hidden_size,
                   (double)c->intermediate_size,
                   (double)c->n_layers,
                   (double)c->n_heads,
                   (double)c->n_kv_heads,
                   (double)c->head_dim,
                   (double)c->sliding_window,
                   c->rms_norm_eps,
                   c->rope_theta,
                   (double)c->tie_word_embeddings};
    uint64_t h = tcache_xxh64(cf, sizeof cf, 0);
    h = hash_floats(m->inv_freq, c->head_dim / 2, h);
    h = hash_linear(&m->embed, h);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        h = hash_floats(w->attn_norm, c->hidden_size, h);
        h = hash_floats(w->ffn_norm, c->hidden_size, h);
        for (int k = 0; k < 7; k++)
            h = hash_linear(layer_linear(&m->layers[l], k), h);
    }
    h = hash_floats(m->norm, c->hidden_size, h);
    return m->lm_head.w == m->embed.w && m->lm_head.qw.data == m->embed.qw.data
               ? h
               : hash_linear(&m->lm_head, h);
}

/* The tokenised examples (item name), and how rows are made of them. */
static void add_data(item_list *l, const lk_dataset *d, const char *name)
{
    uint64_t h = 0;
    for (int64_t i = 0; i < d->n_ex; i++) {
        int64_t n = d->ex_len[i];
        h = tcache_xxh64(&n, sizeof n, h);
        h = tcache_xxh64(d->ids + d->ex_off[i], (size_t)n * sizeof *d->ids, h);
        h = tcache_xxh64(d->labels + d->ex_off[i], (size_t)n * sizeof *d->labels, h);
    }
    add(l, "--seq-len", "%lld", (long long)d->p.seq_len);
    add(l, name, "%lld examples, %lld tokens, xxh64 %016llx, pack %d, shuffle %d seed %llu",
        (long long)d->n_ex, (long long)d->n_tok, (unsigned long long)h, d->p.pack, d->p.shuffle,
        (unsigned long long)d->p.seed);
}

static void add_model(item_list *l, const lk_model *m, const char *name)
{
    add(l, name, "%s, %lld layers, xxh64 %016llx", m->cfg.arch, (long long)m->cfg.n_layers,
        (unsigned long long)model_hash(m));
}

/* The base of a run (its formats, then its weights: named "model" or model_name) and its data. */
static void add_base_and_data(item_list *l, const lk_model *m, const char *model_name,
                              const lk_dataset *data)
{
    add(l, "--quant", "%s, embeddings %s", lk_qtype_name(m->quant), lk_qtype_name(m->quant_embed));
    add(l, "--compute", "%s", lk_compute_name(m->compute));
    add_model(l, m, model_name);
    add_data(l, data, "data");
}

/* ---- a training run ---- */

static void add_adapter_options(item_list *l, const struct lk_train_params *p)
{
    char tg[64];
    add(l, "--rank", "%lld", (long long)p->rank);
    add(l, "--alpha", "%.17g", p->alpha);
    add(l, "--dropout", "%.9g", (double)p->dropout);
    add(l, "--targets", "%s", lk_targets_name(p->targets, tg, sizeof tg));
    add(l, "--rslora", "%d", p->rslora);
    add(l, "--init", "%s", p->init_adapter ? "an adapter" : lk_lora_init_name(p->init));
}

static void add_optimizer_options(item_list *l, const struct lk_train_params *p)
{
    add(l, "--optimizer", "%s", lk_optimizer_name(p->optimizer));
    add(l, "--lr", "%.9g", (double)p->lr);
    add(l, "--lr-ratio-b", "%.9g", (double)p->lr_ratio_b);
    add(l, "--weight-decay", "%.9g", (double)p->weight_decay);
    add(l, "beta1, beta2, eps", "%.9g %.9g %.9g", (double)p->beta1, (double)p->beta2,
        (double)p->eps);
    add(l, "--max-grad-norm", "%.9g", (double)p->max_grad_norm);
    add(l, "--schedule", "%s", lk_schedule_name(p->schedule));
    add(l, "--warmup", "%lld", (long long)p->warmup_steps);
}

static void add_step_options(item_list *l, const struct lk_train_params *p)
{
    add(l, "--steps", "%lld", (long long)p->steps);
    add(l, "--epochs", "%.17g", p->epochs);
    add(l, "--batch", "%lld", (long long)p->batch);
    add(l, "--grad-accum", "%lld", (long long)p->grad_accum);
    add(l, "--seed", "%llu", (unsigned long long)p->seed);
    add(l, "max_bad_steps", "%d", p->max_bad_steps);
    add(l, "--objective", "%s", lk_objective_name(p->objective));
    add(l, "--kd-temp", "%.9g", (double)p->kd_temp);
    add(l, "--kd-weight", "%.9g", (double)p->kd_weight);
    add(l, "--jsd-beta", "%.9g", (double)p->jsd_beta);
}

/* The teacher: none, a model (its weights), or a cache (its checksum, which covers its header,
 * index and every chunk's checksum). */
static lk_status add_teacher(item_list *l, const struct lk_train_params *p)
{
    if (p->teacher) {
        add_model(l, p->teacher, "--teacher");
        return LK_OK;
    }
    if (!p->teacher_cache) {
        add(l, "teacher", "none");
        return LK_OK;
    }
    tcache *c;
    LK_TRY(tcache_open(p->teacher_cache, &c));
    add(l, "--teacher-cache", "%lld examples, checksum %016llx", (long long)tcache_examples(c),
        (unsigned long long)tcache_checksum(c));
    tcache_close(c);
    return LK_OK;
}

lk_status dist_check_train(lk_dist *d, const lk_model *m, const lk_dataset *data,
                           const struct lk_train_params *p)
{
    if (!dist_active(d))
        return LK_OK;
    item_list l = {.n = 0};
    add(&l, "lorakit version", "%s", lk_version());
    add_adapter_options(&l, p);
    add_optimizer_options(&l, p);
    add_step_options(&l, p);
    add_base_and_data(&l, m, "model", data);
    lk_status s = add_teacher(&l, p);
    LK_TRY(lk_dist_agree(d, s));
    return dist_check_same(d, l.it, l.n);
}

lk_status dist_check_teacher(lk_dist *d, const lk_model *m, const lk_dataset *data,
                             const struct lk_teacher_params *p)
{
    if (!dist_active(d))
        return LK_OK;
    item_list l = {.n = 0};
    add(&l, "lorakit version", "%s", lk_version());
    add(&l, "--top-k", "%lld", (long long)p->top_k);
    add(&l, "--kd-temp", "%.9g", (double)p->temp);
    add(&l, "--vocab", "%lld", (long long)p->vocab);
    add(&l, "piece", "%lld", (long long)p->piece);
    add_base_and_data(&l, m, "model and adapters", data);
    return dist_check_same(d, l.it, l.n);
}

lk_status dist_check_data(lk_dist *d, const lk_dataset *data, const char *name)
{
    if (!dist_active(d))
        return LK_OK;
    item_list l = {.n = 0};
    add_data(&l, data, name);
    return dist_check_same(d, l.it, l.n);
}
