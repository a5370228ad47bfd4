/* forward.c — the fp32 transformer forward of Llama/Qwen2/Mistral as Hugging Face computes it:
 * embeddings, RMSNorm, RoPE in rotate_half order, grouped-query causal attention (optionally
 * windowed), SwiGLU MLP, tied or separate LM head; and incremental decoding with a KV cache.
 * Shapes: T tokens in a chunk, C hidden, H/KVH heads, hd head dim, F FFN width, V vocab. */
#include <math.h>
#include <string.h>

#include "model/model.h"
#include "nn/ops.h"
#include "nn/kd.h"
#include "core/status.h"

#define CHUNK 256 /* tokens per forward block: bounds the activation scratch */

struct lk_session {
    const lk_model *m;
    int64_t n_ctx, n_past;
    float *kc, *vc;    /* per layer, a KV cache of attention_forward_cached (keys after RoPE) */
    int64_t kc_layer;  /* floats of one layer's key (and value) cache */
    float *kb, *vb;    /* [CHUNK, KVH*hd] the chunk's keys and values before they enter it */
    float *x;          /* [CHUNK, C] residual stream */
    float *xb;         /* [CHUNK, C] normed input, then block outputs; final hidden at the end */
    float *q;          /* [CHUNK, H*hd] */
    float *att;        /* [CHUNK, H*hd] attention output */
    float *hg, *hu;    /* [CHUNK, F] gate and up projections */
    float *rope_cos;   /* [CHUNK, hd/2] */
    float *rope_sin;   /* [CHUNK, hd/2] */
    int64_t lo[CHUNK]; /* first key each query of the chunk may see */
    void *work;        /* work_size bytes for every linear call (linear_work_bytes) */
    size_t work_size;
    float *attn_work; /* attention_work_floats(n_ctx, .., n_attn_threads, 0) attention scratch */
    int n_attn_threads;
};

static void add_inplace(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* First key each query of the chunk may see: 0, or the start of Mistral's sliding window. */
static void attention_bounds(int64_t *lo, int64_t win, int64_t pos0, int64_t T)
{
    for (int64_t t = 0; t < T; t++) {
        int64_t p = pos0 + t;
        lo[t] = (win > 0 && p - win + 1 > 0) ? p - win + 1 : 0;
    }
}

/* One decoder layer over the chunk in s->x [T, C] at positions pos0.. (cache rows written). */
static void layer_forward(lk_session *s, int64_t l, int64_t T, int64_t pos0, int nt)
{
    const lk_model *m = s->m;
    const struct lk_model_config *c = &m->cfg;
    const layer_weights *w = &m->layers[l];
    int64_t C = c->hidden_size, hd = c->head_dim;
    float eps = (float)c->rms_norm_eps;
    float *kc = s->kc + l * s->kc_layer, *vc = s->vc + l * s->kc_layer;

    rmsnorm_forward(s->xb, NULL, s->x, w->attn_norm, T, C, eps);
    const linear *qkv[3] = {&w->q, &w->k, &w->v};
    float *qkv_y[3] = {s->q, s->kb, s->vb};
    linear_forward_multi(qkv, 3, s->xb, T, qkv_y, s->work, s->work_size, nt);
    rope_forward(s->q, s->rope_cos, s->rope_sin, T, c->n_heads, hd);
    rope_forward(s->kb, s->rope_cos, s->rope_sin, T, c->n_kv_heads, hd);
    attention_kv_store(kc, vc, s->n_ctx, s->kb, s->vb, pos0, T, c->n_kv_heads, hd);
    attn_shape as = {
        .T = T, .H = c->n_heads, .KVH = c->n_kv_heads, .hd = hd, .kpos0 = pos0, .lo = s->lo};
    attention_forward_cached(s->att, NULL, s->q, kc, vc, s->n_ctx, &as, s->attn_work, nt);
    linear_forward(&w->o, s->att, T, s->xb, s->work, s->work_size, nt);
    add_inplace(s->x, s->xb, T * C);

    rmsnorm_forward(s->xb, NULL, s->x, w->ffn_norm, T, C, eps);
    const linear *gu[2] = {&w->gate, &w->up};
    float *gu_y[2] = {s->hg, s->hu};
    linear_forward_multi(gu, 2, s->xb, T, gu_y, s->work, s->work_size, nt);
    swiglu_forward(s->hg, s->hg, s->hu, T * c->intermediate_size);
    linear_forward(&w->down, s->hg, T, s->xb, s->work, s->work_size, nt);
    add_inplace(s->x, s->xb, T * C);
}

/* Forward of tok[0..T) (T <= CHUNK) at the session position; final normed hidden in s->xb. */
static void chunk_forward(lk_session *s, const int32_t *tok, int64_t T)
{
    const lk_model *m = s->m;
    const struct lk_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, pos0 = s->n_past;
    int nt = m->n_threads;
    model_embed(m, tok, T, s->x);
    rope_tables(s->rope_cos, s->rope_sin, m->inv_freq, c->head_dim / 2, NULL, pos0, T);
    attention_bounds(s->lo, c->sliding_window, pos0, T);
    for (int64_t l = 0; l < c->n_layers; l++)
        layer_forward(s, l, T, pos0, nt);
    rmsnorm_forward(s->xb, NULL, s->x, m->norm, T, C, (float)c->rms_norm_eps);
    s->n_past += T;
}

/* ---- sessions ---- */

/* Bytes of work every linear call of a session needs: chunks of up to CHUNK rows through each
 * layer and the LM head, with the adapters attached now. */
static size_t session_work_bytes(const lk_model *m)
{
    size_t need = linear_work_bytes(&m->lm_head, CHUNK, m->n_threads, 0);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        layer_weights *w = &m->layers[l];
        for (int i = 0; i < 7; i++) {
            size_t n = linear_work_bytes(layer_linear(w, i), CHUNK, m->n_threads, 0);
            need = n > need ? n : need;
        }
        const linear *qkv[3] = {&w->q, &w->k, &w->v}, *gu[2] = {&w->gate, &w->up};
        size_t a = linear_forward_multi_work_bytes(qkv, 3, m->n_threads),
               b = linear_forward_multi_work_bytes(gu, 2, m->n_threads);
        need = a > need ? a : need;
        need = b > need ? b : need;
    }
    return need;
}

/* Scratch that depends on what can change after the session was made (threads, adapters). */
static lk_status session_scratch(lk_session *s)
{
    size_t need = session_work_bytes(s->m);
    if (need > s->work_size) {
        free(s->work);
        s->work = lk_aligned_alloc(need);
        s->work_size = s->work ? need : 0;
        if (!s->work)
            return status_fail(LK_ERR_NOMEM,
                               "session: out of memory for %zu bytes of work memory of the linear "
                               "layers (%d threads; hint: fewer threads)",
                               need, s->m->n_threads);
    }
    int nt = s->m->n_threads;
    if (nt <= s->n_attn_threads)
        return LK_OK;
    free(s->attn_work);
    const struct lk_model_config *c = &s->m->cfg;
    size_t bytes = (size_t)attention_work_floats(0, c->n_heads, c->n_kv_heads, c->head_dim, nt, 0) *
                   sizeof(float); /* attention_forward_cached: the threads' tiles only */
    s->attn_work = lk_aligned_alloc(bytes);
    s->n_attn_threads = s->attn_work ? nt : 0;
    return s->attn_work
               ? LK_OK
               : status_fail(LK_ERR_NOMEM,
                             "session: out of memory for %zu bytes of attention work memory",
                             bytes);
}

lk_status lk_session_create(const lk_model *m, int64_t n_ctx, lk_session **out)
{
    const struct lk_model_config *c = &m->cfg;
    *out = NULL;
    if (n_ctx <= 0)
        n_ctx = c->max_position < 4096 ? c->max_position : 4096;
    lk_session *s = calloc(1, sizeof *s);
    if (!s)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    int64_t C = c->hidden_size, F = c->intermediate_size, qd = c->n_heads * c->head_dim;
    size_t kvd = (size_t)(c->n_kv_heads * c->head_dim);
    s->kc_layer = attention_kv_floats(n_ctx, c->n_kv_heads, c->head_dim);
    size_t kv = (size_t)c->n_layers * (size_t)s->kc_layer;
    s->kc = lk_aligned_alloc(kv * sizeof(float));
    s->vc = lk_aligned_alloc(kv * sizeof(float));
    s->kb = lk_aligned_alloc((size_t)CHUNK * kvd * sizeof(float));
    s->vb = lk_aligned_alloc((size_t)CHUNK * kvd * sizeof(float));
    s->x = lk_aligned_alloc((size_t)(CHUNK * C) * sizeof(float));
    s->xb = lk_aligned_alloc((size_t)(CHUNK * C) * sizeof(float));
    s->q = lk_aligned_alloc((size_t)(CHUNK * qd) * sizeof(float));
    s->att = lk_aligned_alloc((size_t)(CHUNK * qd) * sizeof(float));
    s->hg = lk_aligned_alloc((size_t)(CHUNK * F) * sizeof(float));
    s->hu = lk_aligned_alloc((size_t)(CHUNK * F) * sizeof(float));
    s->rope_cos = lk_aligned_alloc((size_t)(CHUNK * c->head_dim / 2) * sizeof(float));
    s->rope_sin = lk_aligned_alloc((size_t)(CHUNK * c->head_dim / 2) * sizeof(float));
    if (!s->kc || !s->vc || !s->kb || !s->vb || !s->x || !s->xb || !s->q || !s->att || !s->hg ||
        !s->hu || !s->rope_cos || !s->rope_sin) {
        lk_session_free(s);
        return status_fail(LK_ERR_NOMEM,
                           "cannot allocate a session of %lld tokens (KV cache %.1f MiB)",
                           (long long)n_ctx, 2.0 * (double)kv * 4 / 1048576.0);
    }
    lk_status st = session_scratch(s);
    if (st != LK_OK) {
        lk_session_free(s);
        return st;
    }
    *out = s;
    return LK_OK;
}

void lk_session_free(lk_session *s)
{
    if (!s)
        return;
    free(s->kc);
    free(s->vc);
    free(s->kb);
    free(s->vb);
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->att);
    free(s->hg);
    free(s->hu);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->attn_work);
    free(s->work);
    free(s);
}

void lk_session_reset(lk_session *s)
{
    s->n_past = 0;
}

int64_t lk_session_n_past(const lk_session *s)
{
    return s->n_past;
}

void lk_session_rewind(lk_session *s, int64_t n_past)
{
    if (n_past >= 0 && n_past < s->n_past)
        s->n_past = n_past;
}

int64_t lk_session_n_ctx(const lk_session *s)
{
    return s->n_ctx;
}

const lk_model *lk_session_model(const lk_session *s)
{
    return s->m;
}

static lk_status check_tokens(const lk_session *s, const int32_t *tokens, int64_t n)
{
    int64_t V = s->m->cfg.vocab_size;
    if (n < 0 || s->n_past + n > s->n_ctx)
        return status_fail(LK_ERR_ARG,
                           "%lld tokens after %lld do not fit the context of %lld tokens",
                           (long long)n, (long long)s->n_past, (long long)s->n_ctx);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return status_fail(LK_ERR_ARG, "token %lld is id %d, outside the vocabulary [0, %lld)",
                               (long long)i, tokens[i], (long long)V);
    return LK_OK;
}

/* Run tokens through the model in chunks. For each chunk, hidden (if non-NULL) receives the final
 * hidden rows [n, C] and logits (if non-NULL) all rows [n, V] or only the last row [V]. */
static lk_status session_run(lk_session *s, const int32_t *tokens, int64_t n, float *hidden,
                             float *logits, int all_logits)
{
    const lk_model *m = s->m;
    int64_t C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    LK_TRY(check_tokens(s, tokens, n));
    LK_TRY(session_scratch(s));
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t T = n - off < CHUNK ? n - off : CHUNK;
        chunk_forward(s, tokens + off, T);
        if (hidden)
            memcpy(hidden + off * C, s->xb, (size_t)(T * C) * sizeof(float));
        if (logits && all_logits)
            linear_forward(&m->lm_head, s->xb, T, logits + off * V, s->work, s->work_size,
                           m->n_threads);
        else if (logits && off + T == n)
            linear_forward(&m->lm_head, s->xb + (T - 1) * C, 1, logits, s->work, s->work_size,
                           m->n_threads);
    }
    return LK_OK;
}

lk_status lk_session_eval(lk_session *s, const int32_t *tokens, int64_t n, float *logits,
                          int all_logits)
{
    if (n == 0)
        return LK_OK;
    return session_run(s, tokens, n, NULL, logits, all_logits);
}

lk_status lk_model_forward(const lk_model *m, const int32_t *tokens, int64_t T, float *logits)
{
    lk_session *s;
    LK_TRY(lk_session_create(m, T > 0 ? T : 1, &s));
    lk_status st = lk_session_eval(s, tokens, T, logits, 1);
    lk_session_free(s);
    return st;
}

/* ---- loss ---- */

/* -log softmax(row)[target], in double with the max subtracted. */
static double nll_row(const float *row, int64_t V, int32_t target)
{
    float mx = row[0];
    for (int64_t i = 1; i < V; i++)
        mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        sum += exp((double)row[i] - mx);
    return log(sum) + mx - row[target];
}

#define NLL_ROWS 64 /* logits rows materialised at once: [64, V] */

/* Predictions of window tokens[a..b): rows t in [a, b) predict labels[t+1] (tokens[t+1] without
 * labels) when t+1 < T and it is not -100. */
static lk_status nll_window(lk_session *s, const int32_t *tokens, const int32_t *labels, int64_t T,
                            int64_t a, int64_t b, float *hidden, float *logits, double *sum,
                            int64_t *count)
{
    const lk_model *m = s->m;
    int64_t C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    lk_session_reset(s);
    LK_TRY(session_run(s, tokens + a, b - a, hidden, NULL, 0));
    for (int64_t r = a; r < b && r + 1 < T; r += NLL_ROWS) {
        int64_t rows = b - r < NLL_ROWS ? b - r : NLL_ROWS;
        if (r + rows > T - 1)
            rows = T - 1 - r;
        linear_forward(&m->lm_head, hidden + (r - a) * C, rows, logits, s->work, s->work_size,
                       m->n_threads);
        for (int64_t i = 0; i < rows; i++) {
            int32_t tg = labels ? labels[r + i + 1] : tokens[r + i + 1];
            if (tg < 0)
                continue;
            *sum += nll_row(logits + i * V, V, tg);
            *count += 1;
        }
    }
    return LK_OK;
}

lk_status lk_model_nll(const lk_model *m, const int32_t *tokens, int64_t T, int64_t n_ctx,
                       double *nll_sum, int64_t *count)
{
    return lk_model_nll_labels(m, tokens, NULL, T, n_ctx, nll_sum, count);
}

lk_status lk_model_nll_labels(const lk_model *m, const int32_t *tokens, const int32_t *labels,
                              int64_t T, int64_t n_ctx, double *nll_sum, int64_t *count)
{
    for (int64_t t = 0; labels && t < T; t++)
        if (labels[t] != -100 && (labels[t] < 0 || labels[t] >= m->cfg.vocab_size))
            return status_fail(LK_ERR_ARG, "label %d at token %lld is outside [0, %lld)", labels[t],
                               (long long)t, (long long)m->cfg.vocab_size);
    const struct lk_model_config *c = &m->cfg;
    if (n_ctx <= 0)
        n_ctx = c->max_position < 4096 ? c->max_position : 4096;
    if (n_ctx > T)
        n_ctx = T > 0 ? T : 1;
    lk_session *s;
    LK_TRY(lk_session_create(m, n_ctx, &s));
    float *hidden = lk_aligned_alloc((size_t)(n_ctx * c->hidden_size) * sizeof(float));
    float *logits = lk_aligned_alloc((size_t)(NLL_ROWS * c->vocab_size) * sizeof(float));
    lk_status st = (hidden && logits) ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    for (int64_t a = 0; a < T && st == LK_OK; a += n_ctx) {
        int64_t b = a + n_ctx < T ? a + n_ctx : T;
        st = nll_window(s, tokens, labels, T, a, b, hidden, logits, nll_sum, count);
    }
    free(hidden);
    free(logits);
    lk_session_free(s);
    return st;
}

/* ---- distance to a teacher ---- */

lk_status lk_model_kl_labels(const lk_model *m, const lk_model *teacher, const int32_t *tokens,
                             const int32_t *labels, int64_t T, int64_t n_ctx, double *nll_sum,
                             double *kl_sum, int64_t *count)
{
    const struct lk_model_config *c = &m->cfg;
    int64_t V = c->vocab_size, C = c->hidden_size, CT = teacher->cfg.hidden_size;
    for (int64_t t = 0; labels && t < T; t++)
        if (labels[t] != -100 && (labels[t] < 0 || labels[t] >= V))
            return status_fail(LK_ERR_ARG, "label %d at token %lld is outside [0, %lld)", labels[t],
                               (long long)t, (long long)V);
    if (teacher->cfg.vocab_size < V)
        return status_fail(LK_ERR_SHAPE, "teacher vocabulary %lld is smaller than the model's %lld",
                           (long long)teacher->cfg.vocab_size, (long long)V);
    if (n_ctx <= 0)
        n_ctx = c->max_position < 4096 ? c->max_position : 4096;
    if (n_ctx > T)
        n_ctx = T > 0 ? T : 1;
    lk_session *s = NULL, *ts = NULL;
    LK_TRY(lk_session_create(m, n_ctx, &s));
    lk_status st = lk_session_create(teacher, n_ctx, &ts);
    float *h = lk_aligned_alloc((size_t)(n_ctx * C) * sizeof(float));
    float *ht = lk_aligned_alloc((size_t)(n_ctx * CT) * sizeof(float));
    float *scratch = lk_aligned_alloc(
        (size_t)kd_scratch_floats(&m->lm_head, &teacher->lm_head, m->n_threads) * sizeof(float));
    int32_t *tgt = malloc((size_t)n_ctx * sizeof *tgt);
    if (st == LK_OK && !(h && ht && scratch && tgt))
        st = status_fail(LK_ERR_NOMEM, "out of memory");
    kd_params kp = {.kind = KD_FKL, .temp = 1, .weight = 1};
    kd_teacher tch = {.head = &teacher->lm_head, .ht = ht};
    for (int64_t a = 0; a < T && st == LK_OK; a += n_ctx) {
        int64_t b = a + n_ctx < T ? a + n_ctx : T;
        lk_session_reset(s);
        lk_session_reset(ts);
        st = session_run(s, tokens + a, b - a, h, NULL, 0);
        if (st == LK_OK)
            st = session_run(ts, tokens + a, b - a, ht, NULL, 0);
        for (int64_t i = a; i < b && st == LK_OK; i++) {
            int32_t next = i + 1 < T ? (labels ? labels[i + 1] : tokens[i + 1]) : -100;
            tgt[i - a] = next >= 0 ? next : -100;
        }
        if (st == LK_OK)
            kd_forward_backward(&m->lm_head, h, tgt, b - a, &kp, &tch, 0.0f, NULL, kl_sum, nll_sum,
                                NULL, count, scratch, m->n_threads);
    }
    free(h);
    free(ht);
    free(scratch);
    free(tgt);
    lk_session_free(s);
    lk_session_free(ts);
    return st;
}
