/* train_graph.c — see train_graph.h. Each layer's forward and backward sit side by side below;
 * the op-level maths lives in ops.c (checked by finite differences in tests/test_ops.c), the
 * linear layers with their LoRA gradients in linear.c. Shapes: T tokens, C hidden, qd = H·hd,
 * kvd = KVH·hd, F FFN width. */
#include "train/train_graph.h"

#include <string.h>

#include "nn/kd.h"
#include "nn/loss.h"
#include "nn/ops.h"
#include "core/pool.h"
#include "core/rng.h"
#include "core/status.h"

struct train_graph {
    const lk_model *m;
    int64_t T_max;
    float *xs;                       /* [L+1, T, C] input of every layer, then the final residual */
    float *xn1, *xn2;                /* [T, C] normed inputs of attention and MLP */
    float *rstd1, *rstd2, *rstd_f;   /* [T] */
    float *q, *att, *dq, *datt;      /* [T, qd] */
    float *k, *v, *dk, *dv;          /* [T, kvd] */
    float *lse, *D;                  /* [T, H] */
    float *xmid;                     /* [T, C] residual after attention */
    float *g, *u, *h, *dg, *du, *dh; /* [T, F] */
    float *us;  /* [T, ur] the trained adapters' u = x·Aᵀ of a layer's linears
                 * (kept by the forward for the backward: lora_us) */
    int64_t ur; /* floats per token of us (lora_rank_sum at graph_create) */
    float *dx, *dxmid, *dxn, *tmpc;  /* [T, C] */
    float *rope_cos, *rope_sin;      /* [T, hd/2] */
    float *attn_work;                /* attention_work_floats(T_max, .., n_threads, 1) */
    float *lin_tmp;                  /* linear scratch: every linear call's work, lin_tmp_bytes */
    size_t lin_tmp_bytes;
    float *ce;                       /* cross-entropy scratch */
    int64_t *lo;                     /* [T] first key of each query */
    float *hn;                       /* [T, C] final normed hidden */
    float *store;                    /* [keep-1] kept layers' activations (layers above first) */
    float *shared[14];               /* the shared activation buffers (bind_acts' fields) */
    int64_t first;                   /* the lowest layer that keeps its activations */
    int64_t kept;                    /* kept_per_token at graph_create */
    float *owned[40];                /* the buffers graph_create allocated */
    int n_owned;
    int n_threads;
    float *kd_scratch; /* the distillation loss's scratch (graph_reserve_kd) */
    int64_t kd_scratch_n;
    void *q8buf;      /* --compute int8: a layer's transposed copies, built before its backward
                       * (model_int8_build_bytes; NULL when every layer keeps its own) */
    layer_weights lw; /* that layer's weights with those copies */
};

/* The rank of L's trained adapter (0: none). */
static int64_t trained_rank(const linear *L)
{
    return L->train && L->n_lora > 0 ? L->lora[0].r : 0;
}

/* Floats per token of the trained adapters' u of one layer's seven linears: the largest sum over
 * the layers (0 without trained adapters). */
static int64_t lora_rank_sum(const lk_model *m)
{
    int64_t most = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        int64_t n = 0;
        for (int i = 0; i < 7; i++)
            n += trained_rank(layer_linear(&m->layers[l], i));
        most = n > most ? n : most;
    }
    return most;
}

/* Floats per token of what a kept layer stores for its backward (the fields layer_forward fills
 * and layer_backward reads, but xn1, xn2 and h: layer_backward recomputes those, cheaply and to
 * the same bits, from the layer's input, xmid, g and u): xmid [C]; rstd1, rstd2; q, att [qd];
 * k, v [kvd]; lse [H]; g, u [F]; the adapters' u (lora_rank_sum). */
static int64_t kept_per_token(const lk_model *m)
{
    const struct lk_model_config *c = &m->cfg;
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    return c->hidden_size + 2 + 2 * qd + 2 * kvd + c->n_heads + 2 * c->intermediate_size +
           lora_rank_sum(m);
}

/* Point the activation fields at layer l's: the shared buffers for the layers up to g->first
 * (recomputed ones and the lowest kept one, which no layer overwrites after it), else the layer's
 * slice of the store (xn1, xn2 and h always in the shared buffers). */
static void bind_acts(train_graph *g, int64_t l)
{
    float **f[] = {&g->xn1, &g->xn2, &g->xmid, &g->rstd1, &g->rstd2, &g->q, &g->att,
                   &g->k,   &g->v,   &g->lse,  &g->g,     &g->u,     &g->h, &g->us};
    const int nf = (int)(sizeof f / sizeof *f);
    LK_ASSERT(nf == (int)(sizeof g->shared / sizeof *g->shared));
    for (int i = 0; i < nf; i++)
        *f[i] = g->shared[i];
    if (l <= g->first)
        return;
    const struct lk_model_config *c = &g->m->cfg;
    int64_t T = g->T_max, C = c->hidden_size, F = c->intermediate_size;
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    float *p = g->store + (l - g->first - 1) * T * g->kept;
    int64_t n[] = {0, 0, C, 1, 1, qd, qd, kvd, kvd, c->n_heads, F, F, 0, g->ur}; /* 0: shared */
    for (int i = 0; i < nf; i++)
        if (n[i] > 0) {
            *f[i] = p;
            p += T * n[i];
        }
}

/* keep clamped to 1 .. n_layers */
static int64_t kept(const lk_model *m, int64_t keep)
{
    int64_t L = m->cfg.n_layers;
    return keep < 1 ? 1 : keep > L ? L : keep;
}

/* Floats of work for the layers' linear calls (forward and backward) on up to T rows. */
static int64_t lin_tmp_floats(const lk_model *m, int64_t T)
{
    size_t n = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            size_t k = linear_work_bytes(layer_linear(&m->layers[l], i), T, m->n_threads, 1);
            n = k > n ? k : n;
        }
    return (int64_t)((n + 3) / 4);
}

/* Sizes of every buffer, in floats, in the order graph_create assigns them. */
static int buffer_sizes(const lk_model *m, int64_t T, int64_t *sz)
{
    const struct lk_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, F = c->intermediate_size, H = c->n_heads;
    int64_t qd = H * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int nt = m->n_threads, n = 0;
    sz[n++] = (c->n_layers + 1) * T * C; /* xs */
    for (int i = 0; i < 2; i++)
        sz[n++] = T * C; /* xn1, xn2 */
    for (int i = 0; i < 3; i++)
        sz[n++] = T; /* rstd1, rstd2, rstd_f */
    for (int i = 0; i < 4; i++)
        sz[n++] = T * qd; /* q, att, dq, datt */
    for (int i = 0; i < 4; i++)
        sz[n++] = T * kvd; /* k, v, dk, dv */
    for (int i = 0; i < 2; i++)
        sz[n++] = T * H; /* lse, D */
    sz[n++] = T * C;     /* xmid */
    for (int i = 0; i < 6; i++)
        sz[n++] = T * F; /* g, u, h, dg, du, dh */
    for (int i = 0; i < 4; i++)
        sz[n++] = T * C; /* dx, dxmid, dxn, tmpc */
    for (int i = 0; i < 2; i++)
        sz[n++] = T * c->head_dim / 2;             /* rope tables */
    sz[n++] = attention_work_floats(T, H, c->n_kv_heads, c->head_dim, nt, 1); /* attn_work */
    sz[n++] = lin_tmp_floats(m, T);                /* lin_tmp */
    sz[n++] = ce_scratch_floats(&m->lm_head, nt);  /* ce */
    sz[n++] = T * C;                               /* hn */
    sz[n++] = T * lora_rank_sum(m);                /* us */
    return n;
}

int64_t graph_layer_bytes(const lk_model *m, int64_t T_max)
{
    return T_max * kept_per_token(m) * 4;
}

int64_t graph_bytes(const lk_model *m, int64_t T_max, int64_t keep)
{
    int64_t sz[40], total = T_max * (int64_t)sizeof(int64_t);
    int n = buffer_sizes(m, T_max, sz);
    for (int i = 0; i < n; i++)
        total += ((sz[i] * 4 + 63) / 64) * 64;
    return total + (kept(m, keep) - 1) * graph_layer_bytes(m, T_max);
}

lk_status graph_create(const lk_model *m, int64_t T_max, int64_t keep, train_graph **out)
{
    *out = NULL;
    train_graph *g = calloc(1, sizeof *g);
    if (!g)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    g->m = m;
    g->T_max = T_max;
    g->n_threads = m->n_threads;
    float **bufs[] = {&g->xs,      &g->xn1, &g->xn2,  &g->rstd1,    &g->rstd2,    &g->rstd_f,
                      &g->q,       &g->att, &g->dq,   &g->datt,     &g->k,        &g->v,
                      &g->dk,      &g->dv,  &g->lse,  &g->D,        &g->xmid,     &g->g,
                      &g->u,       &g->h,   &g->dg,   &g->du,       &g->dh,       &g->dx,
                      &g->dxmid,   &g->dxn, &g->tmpc, &g->rope_cos, &g->rope_sin, &g->attn_work,
                      &g->lin_tmp, &g->ce,  &g->hn,   &g->us};
    int64_t sz[40];
    int n = buffer_sizes(m, T_max, sz);
    LK_ASSERT(n == (int)(sizeof bufs / sizeof *bufs));
    int ok = 1;
    for (int i = 0; i < n; i++) {
        *bufs[i] = lk_aligned_alloc((size_t)(sz[i] > 0 ? sz[i] : 1) * sizeof(float));
        g->owned[g->n_owned++] = *bufs[i];
        ok = ok && *bufs[i];
    }

    float **acts[] = {&g->xn1, &g->xn2, &g->xmid, &g->rstd1, &g->rstd2, &g->q, &g->att,
                      &g->k,   &g->v,   &g->lse,  &g->g,     &g->u,     &g->h, &g->us};
    for (int i = 0; i < (int)(sizeof acts / sizeof *acts); i++)
        g->shared[i] = *acts[i];
    g->lin_tmp_bytes = (size_t)lin_tmp_floats(m, T_max) * sizeof(float);
    g->ur = lora_rank_sum(m);
    g->kept = kept_per_token(m);
    g->lo = malloc((size_t)T_max * sizeof *g->lo);
    keep = kept(m, keep);
    g->first = m->cfg.n_layers - keep;
    if (keep > 1) /* the layers above the first kept one: their own slices */
        g->store = lk_aligned_alloc((size_t)((keep - 1) * graph_layer_bytes(m, T_max)));
    const int64_t q8b = model_int8_build_bytes(m);
    if (q8b > 0)
        g->q8buf = lk_aligned_alloc((size_t)q8b);
    if (!ok || !g->lo || (keep > 1 && !g->store) || (q8b > 0 && !g->q8buf)) {
        graph_free(g);
        return status_fail(LK_ERR_NOMEM,
                           "cannot allocate training buffers for %lld tokens "
                           "(%.0f MiB)",
                           (long long)T_max, (double)graph_bytes(m, T_max, keep) / 1048576.0);
    }
    *out = g;
    return LK_OK;
}

void graph_free(train_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_owned; i++)
        free(g->owned[i]);
    free(g->store);
    free(g->lo);
    free(g->kd_scratch);
    free(g->q8buf);
    free(g);
}

static void add_to(float *y, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

/* ---- the per-element and per-row ops on the team: ops.c's functions over ranges of elements or
 * rows, each range computed exactly as the whole call computes it, so the results do not depend on
 * the thread count ---- */

#define PAR_GRAIN 8192      /* elements of one range of an element-wise op */
#define PAR_MIN   (1 << 16) /* elements below which an op stays on the caller's thread */

typedef enum { OP_SWIGLU_FWD, OP_SWIGLU_BWD, OP_RMS_FWD, OP_RMS_BWD, OP_ADD } par_op;

typedef struct {
    par_op op;
    float *o1, *o2;            /* outputs */
    const float *i1, *i2, *i3; /* inputs (RMSNorm backward: i3 the rows o1 starts from, or NULL) */
    const float *w;            /* RMSNorm weight [C] */
    float *rstd;               /* RMSNorm: [T] (forward: may be NULL) */
    int64_t n, C;              /* elements (element-wise) or row length (rows) */
    float eps;
} par_job;

static void par_ranges(void *ctx, int64_t r0, int64_t r1, int thread)
{
    (void)thread;
    const par_job *j = ctx;
    int64_t e0 = r0 * PAR_GRAIN, e1 = r1 * PAR_GRAIN < j->n ? r1 * PAR_GRAIN : j->n, C = j->C;
    switch (j->op) {
    case OP_SWIGLU_FWD: swiglu_forward(j->o1 + e0, j->i1 + e0, j->i2 + e0, e1 - e0); break;
    case OP_SWIGLU_BWD:
        swiglu_backward(j->o1 + e0, j->o2 + e0, j->i1 + e0, j->i2 + e0, j->i3 + e0, e1 - e0);
        break;
    case OP_ADD: add_to(j->o1 + e0, j->i1 + e0, j->i2 + e0, e1 - e0); break;
    case OP_RMS_FWD: /* ranges of rows */
        rmsnorm_forward(j->o1 + r0 * C, j->rstd ? j->rstd + r0 : NULL, j->i1 + r0 * C, j->w,
                        r1 - r0, C, j->eps);
        break;
    case OP_RMS_BWD:
        if (j->i3) /* o1 = i3, then += (the copy and the sum of the serial code, by rows) */
            memcpy(j->o1 + r0 * C, j->i3 + r0 * C, (size_t)((r1 - r0) * C) * sizeof(float));
        rmsnorm_backward(j->o1 + r0 * C, j->i1 + r0 * C, j->i2 + r0 * C, j->w, j->rstd + r0,
                         r1 - r0, C);
        break;
    }
}

/* j over its n elements (element-wise ops) or T rows of C (RMSNorm) on nt threads. */
static void par_run(int nt, par_job *j, int64_t T)
{
    int rows = j->op == OP_RMS_FWD || j->op == OP_RMS_BWD;
    int64_t n_ranges = rows ? T : (j->n + PAR_GRAIN - 1) / PAR_GRAIN;
    if ((rows ? T * j->C : j->n) < PAR_MIN)
        nt = 1;
    par_for(nt, n_ranges, par_ranges, j);
}

static void swiglu_fwd_par(int nt, float *h, const float *g, const float *u, int64_t n)
{
    par_job j = {.op = OP_SWIGLU_FWD, .o1 = h, .i1 = g, .i2 = u, .n = n};
    par_run(nt, &j, 0);
}

static void swiglu_bwd_par(int nt, float *dg, float *du, const float *dh, const float *g,
                           const float *u, int64_t n)
{
    par_job j = {.op = OP_SWIGLU_BWD, .o1 = dg, .o2 = du, .i1 = dh, .i2 = g, .i3 = u, .n = n};
    par_run(nt, &j, 0);
}

static void sum_par(int nt, float *y, const float *a, const float *b, int64_t n)
{
    par_job j = {.op = OP_ADD, .o1 = y, .i1 = a, .i2 = b, .n = n};
    par_run(nt, &j, 0);
}

static void rms_fwd_par(int nt, float *out, float *rstd, const float *x, const float *w, int64_t T,
                        int64_t C, float eps)
{
    par_job j = {.op = OP_RMS_FWD, .o1 = out, .rstd = rstd, .i1 = x, .w = w, .C = C, .eps = eps};
    par_run(nt, &j, T);
}

/* dx[T, C] = from + ∂/∂x of Σ dout·rmsnorm(x) (from NULL: dx += that). */
static void rms_bwd_par(int nt, float *dx, const float *from, const float *dout, const float *x,
                        const float *w, float *rstd, int64_t T, int64_t C)
{
    par_job j = {
        .op = OP_RMS_BWD, .o1 = dx, .i1 = dout, .i2 = x, .i3 = from, .w = w, .rstd = rstd, .C = C};
    par_run(nt, &j, T);
}

/* RoPE of the queries q [T, nq·hd] and keys k [T, nk·hd] in one parallel loop over ranges of
 * rows (rope_forward / rope_backward on each range: a row's bits do not depend on the split). */
typedef struct {
    float *q, *k;
    const float *cs, *sn; /* [T, hd/2] */
    int64_t nq, nk, hd;
    int backward;
} rope_job;

static void rope_rows(void *ctx, int64_t t0, int64_t t1, int thread)
{
    (void)thread;
    const rope_job *j = ctx;
    const int64_t half = j->hd / 2, n = t1 - t0;
    const float *cs = j->cs + t0 * half, *sn = j->sn + t0 * half;
    float *q = j->q + t0 * j->nq * j->hd, *k = j->k + t0 * j->nk * j->hd;
    if (j->backward) {
        rope_backward(q, cs, sn, n, j->nq, j->hd);
        rope_backward(k, cs, sn, n, j->nk, j->hd);
    } else {
        rope_forward(q, cs, sn, n, j->nq, j->hd);
        rope_forward(k, cs, sn, n, j->nk, j->hd);
    }
}

static void rope_par(const train_graph *g, float *q, float *k, int64_t T, int backward)
{
    const struct lk_model_config *c = &g->m->cfg;
    rope_job j = {.q = q,
                  .k = k,
                  .cs = g->rope_cos,
                  .sn = g->rope_sin,
                  .nq = c->n_heads,
                  .nk = c->n_kv_heads,
                  .hd = c->head_dim,
                  .backward = backward};
    int64_t rows = (PAR_MIN + (j.nq + j.nk) * j.hd - 1) / ((j.nq + j.nk) * j.hd);
    par_for(T < rows ? 1 : g->n_threads, T, rope_rows, &j);
}

/* The dropout mask key of L's trained adapter for batch b: a stateless hash of (seed, row,
 * adapter), never 0, so a forward recomputed under activation checkpointing and a resumed run draw
 * the same masks. 0 (no dropout) when b asks for none or L trains no adapter with dropout. */
static uint64_t mask_key(const train_batch *b, const linear *L)
{
    if (!b->dropout || !L->train || !(L->train->dropout > 0))
        return 0;
    return rng_hash(b->seed ^ RNG_DROPOUT, b->row * 131 + (uint64_t)L->train->index) | 1;
}

/* Where the training forward of L, linear i of layer weights w, keeps its trained adapter's u
 * [T, r] for the backward: its place in g->us (bound to the layer), after those of linears 0..i-1;
 * NULL when it keeps none (an inference forward, no trained adapter, or adapters attached after
 * graph_create that need more than g->ur). The forward and the backward of a batch ask the same. */
static float *lora_us(const train_graph *g, const train_batch *b, const layer_weights *w, int i)
{
    int64_t off = 0, all = 0;
    for (int j = 0; j < 7; j++) {
        int64_t r = trained_rank(layer_linear((layer_weights *)w, j));
        off += j < i ? r : 0;
        all += r;
    }
    if (b->infer || all > g->ur || trained_rank(layer_linear((layer_weights *)w, i)) == 0)
        return NULL;
    return g->us + b->T * off;
}

/* y[T, out] = L(x) for batch b (its dropout masks); L is linear i of w. */
static void lin_forward(const train_graph *g, const train_batch *b, const layer_weights *w, int i,
                        const float *x, float *y)
{
    const linear *L = layer_linear((layer_weights *)w, i);
    float *u = lora_us(g, b, w, i);
    if (b->infer)
        linear_forward(L, x, b->T, y, g->lin_tmp, g->lin_tmp_bytes, g->n_threads);
    else if (u)
        linear_forward_train_keep(L, x, b->T, y, u, g->lin_tmp, g->lin_tmp_bytes, mask_key(b, L),
                                  g->n_threads);
    else
        linear_forward_train(L, x, b->T, y, g->lin_tmp, g->lin_tmp_bytes, mask_key(b, L),
                             g->n_threads);
}

/* dx[T, in] += dy·∂L/∂x (dx may be NULL; set: dx = that, the first gradient into dx, no zeroing,
 * no sum) and the trained adapter's gradients, for batch b; L is linear i of w. */
static void lin_backward_to(const train_graph *g, const train_batch *b, const layer_weights *w,
                            int i, const float *x, const float *dy, float *dx, int set)
{
    const linear *L = layer_linear((layer_weights *)w, i);
    const float *u = lora_us(g, b, w, i);
    if (u)
        linear_backward_kept(L, x, dy, b->T, dx, u, set, g->lin_tmp, g->lin_tmp_bytes,
                             mask_key(b, L), g->n_threads);
    else if (set)
        linear_backward_set(L, x, dy, b->T, dx, g->lin_tmp, g->lin_tmp_bytes, mask_key(b, L),
                            g->n_threads);
    else
        linear_backward(L, x, dy, b->T, dx, g->lin_tmp, g->lin_tmp_bytes, mask_key(b, L),
                        g->n_threads);
}

static void lin_backward(const train_graph *g, const train_batch *b, const layer_weights *w, int i,
                         const float *x, const float *dy, float *dx)
{
    lin_backward_to(g, b, w, i, x, dy, dx, 0);
}

static void lin_backward_set(const train_graph *g, const train_batch *b, const layer_weights *w,
                             int i, const float *x, const float *dy, float *dx)
{
    lin_backward_to(g, b, w, i, x, dy, dx, 1);
}

/* Layer l forward: x_out[T,C] from x_in[T,C], keeping what the backward needs. */
static void layer_forward(train_graph *g, const train_batch *b, int64_t l, const float *x_in,
                          float *x_out)
{
    bind_acts(g, l);
    const struct lk_model_config *c = &g->m->cfg;
    const layer_weights *w = &g->m->layers[l];
    int64_t T = b->T, C = c->hidden_size, hd = c->head_dim, F = c->intermediate_size;
    float eps = (float)c->rms_norm_eps;
    rms_fwd_par(g->n_threads, g->xn1, g->rstd1, x_in, w->attn_norm, T, C, eps);
    lin_forward(g, b, w, 0, g->xn1, g->q);
    lin_forward(g, b, w, 1, g->xn1, g->k);
    lin_forward(g, b, w, 2, g->xn1, g->v);
    rope_par(g, g->q, g->k, T, 0);
    attn_shape as = {.T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hd = hd, .lo = g->lo};
    attention_forward(g->att, g->lse, g->q, g->k, g->v, &as, g->attn_work, g->n_threads);
    lin_forward(g, b, w, 3, g->att, g->tmpc);
    sum_par(g->n_threads, g->xmid, x_in, g->tmpc, T * C);
    rms_fwd_par(g->n_threads, g->xn2, g->rstd2, g->xmid, w->ffn_norm, T, C, eps);
    lin_forward(g, b, w, 4, g->xn2, g->g);
    lin_forward(g, b, w, 5, g->xn2, g->u);
    swiglu_fwd_par(g->n_threads, g->h, g->g, g->u, T * F);
    lin_forward(g, b, w, 6, g->h, g->tmpc);
    sum_par(g->n_threads, x_out, g->xmid, g->tmpc, T * C);
}

/* Layer l's weights for its backward: the model's, or with --compute int8 and a layer that keeps
 * no transposed copies, a copy of them with those built now into g->q8buf. */
static const layer_weights *backward_weights(train_graph *g, int64_t l)
{
    if (!g->q8buf)
        return &g->m->layers[l];
    g->lw = g->m->layers[l];
    /* cannot fail: every int8 matrix's type has a transposed copy */
    lk_status s = model_int8_layer_copies(g->m, &g->lw, g->q8buf);
    LK_ASSERT(s == LK_OK);
    return &g->lw;
}

/* Layer l backward: g->dx holds ∂L/∂x_out on entry and ∂L/∂x_in on return (unless need_dx is 0:
 * the embeddings are frozen, so layer 0's input gradient is not needed). */
static void layer_backward(train_graph *g, const train_batch *b, int64_t l, const float *x_in,
                           int need_dx)
{
    const layer_weights *w = backward_weights(g, l);
    bind_acts(g, l);
    const struct lk_model_config *c = &g->m->cfg;
    int64_t T = b->T, C = c->hidden_size, hd = c->head_dim, F = c->intermediate_size;
    if (l >= g->first) { /* a kept layer: xn1, xn2 and h again (the shared buffers were reused) */
        float eps = (float)c->rms_norm_eps;
        rms_fwd_par(g->n_threads, g->xn1, g->rstd1, x_in, w->attn_norm, T, C, eps);
        rms_fwd_par(g->n_threads, g->xn2, g->rstd2, g->xmid, w->ffn_norm, T, C, eps);
        swiglu_fwd_par(g->n_threads, g->h, g->g, g->u, T * F);
    }
    /* MLP: x_out = xmid + down(silu(gate(xn2))·up(xn2)), xn2 = rmsnorm(xmid) */
    lin_backward_set(g, b, w, 6, g->h, g->dx, g->dh);
    swiglu_bwd_par(g->n_threads, g->dg, g->du, g->dh, g->g, g->u, T * F);
    lin_backward_set(g, b, w, 4, g->xn2, g->dg, g->dxn);
    lin_backward(g, b, w, 5, g->xn2, g->du, g->dxn);
    rms_bwd_par(g->n_threads, g->dxmid, g->dx, g->dxn, g->xmid, w->ffn_norm, g->rstd2, T, C);
    /* attention: xmid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))), xn1 = rmsnorm(x_in) */
    lin_backward_set(g, b, w, 3, g->att, g->dxmid, g->datt);
    attn_shape as = {.T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hd = hd, .lo = g->lo};
    attention_backward(g->dq, g->dk, g->dv, g->D, g->datt, g->q, g->k, g->v, g->att, g->lse, &as,
                       g->attn_work, g->n_threads);
    rope_par(g, g->dq, g->dk, T, 1);
    float *dxn = need_dx ? g->dxn : NULL;
    if (dxn)
        lin_backward_set(g, b, w, 0, g->xn1, g->dq, dxn);
    else
        lin_backward(g, b, w, 0, g->xn1, g->dq, NULL);
    lin_backward(g, b, w, 1, g->xn1, g->dk, dxn);
    lin_backward(g, b, w, 2, g->xn1, g->dv, dxn);
    if (!need_dx)
        return;
    rms_bwd_par(g->n_threads, g->dx, g->dxmid, g->dxn, x_in, w->attn_norm, g->rstd1, T, C);
}

/* lo[t]: the first token of t's example (t − pos[t]), or the sliding window's start. */
static lk_status set_bounds(train_graph *g, const int32_t *pos, int64_t T)
{
    int64_t win = g->m->cfg.sliding_window;
    for (int64_t t = 0; t < T; t++) {
        if (pos[t] < 0 || pos[t] > t || (t > 0 && pos[t] != 0 && pos[t] != pos[t - 1] + 1))
            return status_fail(LK_ERR_ARG,
                               "position %d at token %lld: positions must count 0, 1, 2, ... "
                               "within each packed example",
                               pos[t], (long long)t);
        int64_t lo = t - pos[t];
        if (win > 0 && t - win + 1 > lo)
            lo = t - win + 1;
        g->lo[t] = lo;
    }
    return LK_OK;
}

/* Floats of the distillation loss's scratch with a teacher whose LM head is teacher_head (NULL: a
 * top-k teacher). */
static int64_t kd_floats(const train_graph *g, const linear *teacher_head)
{
    return kd_scratch_floats(&g->m->lm_head, teacher_head, g->n_threads);
}

lk_status graph_reserve_kd(train_graph *g, const linear *teacher_head)
{
    int64_t need = kd_floats(g, teacher_head);
    if (need <= g->kd_scratch_n)
        return LK_OK;
    free(g->kd_scratch);
    g->kd_scratch_n = 0;
    g->kd_scratch = lk_aligned_alloc((size_t)need * sizeof(float));
    if (!g->kd_scratch)
        return status_fail(LK_ERR_NOMEM, "cannot allocate the distillation scratch (%.0f MiB)",
                           (double)need * 4 / 1048576.0);
    g->kd_scratch_n = need;
    return LK_OK;
}

/* Embeddings, layers and the final norm over b's tokens: g->hn, with the inputs of every layer in
 * g->xs for the backward. */
static lk_status forward_layers(train_graph *g, const train_batch *b)
{
    const lk_model *m = g->m;
    const struct lk_model_config *c = &m->cfg;
    int64_t T = b->T, C = c->hidden_size, L = c->n_layers;
    LK_TRY(set_bounds(g, b->pos, T));
    rope_tables(g->rope_cos, g->rope_sin, m->inv_freq, c->head_dim / 2, b->pos, 0, T);
    model_embed(m, b->tokens, T, g->xs);
    for (int64_t l = 0; l < L; l++)
        layer_forward(g, b, l, g->xs + l * T * C, g->xs + (l + 1) * T * C);
    rms_fwd_par(g->n_threads, g->hn, g->rstd_f, g->xs + L * T * C, m->norm, T, C,
                (float)c->rms_norm_eps);
    return LK_OK;
}

static lk_status check_ids(const train_graph *g, const int32_t *tokens, const int32_t *targets,
                           int64_t T)
{
    int64_t V = g->m->cfg.vocab_size;
    if (T < 1 || T > g->T_max)
        return status_fail(LK_ERR_ARG, "sequence of %lld tokens, buffers hold 1..%lld",
                           (long long)T, (long long)g->T_max);
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V ||
            (targets && (targets[t] >= V || (targets[t] < 0 && targets[t] != -100))))
            return status_fail(LK_ERR_ARG, "token %lld: id %d / target %d outside [0, %lld)",
                               (long long)t, tokens[t], targets ? targets[t] : 0, (long long)V);
    return LK_OK;
}

lk_status graph_hidden(train_graph *g, const train_batch *b, const float **hn)
{
    LK_TRY(check_ids(g, b->tokens, NULL, b->T));
    LK_TRY(forward_layers(g, b));
    *hn = g->hn;
    return LK_OK;
}

/* A distillation loss needs graph_reserve_kd's scratch for its teacher. */
static lk_status check_loss(const train_graph *g, const loss_config *loss)
{
    if (!loss || !loss->kd.kind)
        return LK_OK;
    int64_t need = kd_floats(g, loss->teacher.head);
    if (need > g->kd_scratch_n)
        return status_fail(LK_ERR_ARG,
                           "distillation loss: needs %lld floats of scratch, the graph holds %lld "
                           "(graph_reserve_kd for this teacher first)",
                           (long long)need, (long long)g->kd_scratch_n);
    return LK_OK;
}

/* The loss over g->hn and its gradient into dh (NULL: none), added to sums. */
static void run_loss(train_graph *g, const train_batch *b, const loss_config *loss,
                     float grad_scale, float *dh, loss_sums *sums)
{
    const linear *head = &g->m->lm_head;
    if (loss && loss->kd.kind)
        kd_forward_backward(head, g->hn, b->targets, b->T, &loss->kd, &loss->teacher, grad_scale,
                            dh, &sums->loss, &sums->ce, &sums->kd, &sums->count, g->kd_scratch,
                            g->n_threads);
    else
        ce_forward_backward(head, g->hn, b->targets, b->T, grad_scale, dh, &sums->loss,
                            &sums->count, g->ce, g->n_threads);
}

lk_status graph_run(train_graph *g, const train_batch *b, const loss_config *loss, float grad_scale,
                    int backward, loss_sums *sums)
{
    const lk_model *m = g->m;
    int64_t T = b->T, C = m->cfg.hidden_size, L = m->cfg.n_layers;
    LK_TRY(check_ids(g, b->tokens, b->targets, T));
    LK_TRY(check_loss(g, loss));
    LK_TRY(forward_layers(g, b));
    run_loss(g, b, loss, grad_scale, backward ? g->tmpc : NULL, sums);
    if (!backward)
        return LK_OK;
    float *xf = g->xs + L * T * C; /* final residual */
    memset(g->dx, 0, (size_t)(T * C) * sizeof(float));
    rms_bwd_par(g->n_threads, g->dx, NULL, g->tmpc, xf, m->norm, g->rstd_f, T, C);
    for (int64_t l = L - 1; l >= 0; l--) {
        /* below the lowest kept layer, recompute the layer's activations from its saved input
         * (the kept layers' are still in place); then go back through it */
        if (l < g->first)
            layer_forward(g, b, l, g->xs + l * T * C, g->tmpc);
        layer_backward(g, b, l, g->xs + l * T * C, l > 0);
    }
    return LK_OK;
}
