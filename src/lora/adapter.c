/* adapter.c — LoRA adapters in memory: module names and shapes, llama.cpp's q/k row order, the
 * adapter object (new, add a module, finish, queries, checks against a base), creation with
 * PEFT's initialisation, and attaching to a model's linears.
 *
 * The file formats sit on top of this file and use only it: adapter_peft.c (the PEFT folder) and
 * adapter_gguf.c (llama.cpp's GGUF LoRA); adapter_load.c picks one by path. This file calls into
 * no other adapter file. */
#include "lora/adapter.h"

#include <math.h>
#include <string.h>

#include "core/buf.h"
#include "core/option.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/tensor.h"
#include "model/model.h"

static const char *const g_mod_names[LK_MOD_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};
static const char *const g_gguf_stems[LK_MOD_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

const char *lk_module_name(lk_module m)
{
    return (unsigned)m < LK_MOD_COUNT ? g_mod_names[m] : "?";
}

const char *adapter_parent(lk_module kind)
{
    return kind <= LK_MOD_O ? "self_attn" : "mlp";
}

const char *adapter_gguf_stem(lk_module kind)
{
    return (unsigned)kind < LK_MOD_COUNT ? g_gguf_stems[kind] : "?";
}

void adapter_module_shape(const struct lk_model_config *cfg, lk_module kind, int64_t *out,
                          int64_t *in)
{
    int64_t C = cfg->hidden_size, F = cfg->intermediate_size;
    int64_t qd = cfg->n_heads * cfg->head_dim, kvd = cfg->n_kv_heads * cfg->head_dim;
    switch (kind) {
    case LK_MOD_Q: *out = qd, *in = C; break;
    case LK_MOD_K:
    case LK_MOD_V: *out = kvd, *in = C; break;
    case LK_MOD_O: *out = C, *in = qd; break;
    case LK_MOD_GATE:
    case LK_MOD_UP: *out = F, *in = C; break;
    default: *out = C, *in = F; break;
    }
}

int adapter_gguf_arch(const struct lk_model_config *cfg, const char **gguf_arch)
{
    if (strcmp(cfg->arch, "llama") == 0 || strcmp(cfg->arch, "mistral") == 0) {
        *gguf_arch = "llama"; /* convert_hf_to_gguf.py registers Mistral as LlamaModel */
        return 1;
    }
    if (strcmp(cfg->arch, "qwen2") == 0) {
        *gguf_arch = "qwen2";
        return 0;
    }
    *gguf_arch = "?";
    return -1;
}

lk_status adapter_permute_rows(float *x, int64_t rows, int64_t cols, int64_t heads, int inverse)
{
    if (heads <= 0 || rows % (2 * heads))
        return status_fail(LK_ERR_SHAPE,
                           "q/k permutation: %lld rows are not a multiple of 2 × "
                           "%lld heads",
                           (long long)rows, (long long)heads);
    int64_t hd = rows / heads, half = hd / 2;
    float *tmp = malloc((size_t)(hd * cols) * sizeof *tmp);
    if (!tmp)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    for (int64_t h = 0; h < heads; h++) {
        float *head = x + h * hd * cols;
        memcpy(tmp, head, (size_t)(hd * cols) * sizeof *tmp);
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < half; i++) {
                int64_t hf = j * half + i, gg = 2 * i + j; /* HF row → GGUF row */
                int64_t dst = inverse ? hf : gg, src = inverse ? gg : hf;
                memcpy(head + dst * cols, tmp + src * cols, (size_t)cols * sizeof *tmp);
            }
    }
    free(tmp);
    return LK_OK;
}

/* ---- the in-memory adapter ---- */

lk_status adapter_new(const char *path, const char *format, lk_adapter **out)
{
    lk_adapter *a = calloc(1, sizeof *a);
    *out = NULL;
    if (!a)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    a->path = strdup(path);
    a->base_model = strdup("");
    snprintf(a->format, sizeof a->format, "%s", format);
    if (!a->path || !a->base_model) {
        lk_adapter_free(a);
        return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    *out = a;
    return LK_OK;
}

void adapter_module_free(adapter_module *m)
{
    free(m->A);
    free(m->B);
    free(m->mag);
}

void lk_adapter_free(lk_adapter *a)
{
    if (!a)
        return;
    for (int64_t i = 0; i < a->n_mods; i++) {
        if (a->arena) /* the factors live in the arena */
            a->mods[i].A = a->mods[i].B = NULL;
        adapter_module_free(&a->mods[i]);
    }
    free(a->arena);
    free(a->mods);
    free(a->path);
    free(a->base_model);
    free(a);
}

lk_status adapter_add_module(lk_adapter *a, const adapter_module *m)
{
    lk_status s = BUF_GROW(&a->mods, &a->cap_mods, (size_t)a->n_mods + 1, "adapter: modules");
    if (s != LK_OK) {
        adapter_module tmp = *m;
        adapter_module_free(&tmp);
        return s;
    }
    a->mods[a->n_mods++] = *m;
    return LK_OK;
}

static int cmp_module(const void *x, const void *y)
{
    const adapter_module *a = x, *b = y;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return (int)a->kind - (int)b->kind;
}

lk_status adapter_pack(lk_adapter *a)
{
    if (a->arena)
        return LK_OK;
    int64_t n = 0, off = 0;
    for (int64_t i = 0; i < a->n_mods; i++)
        n += a->mods[i].r * (a->mods[i].in + a->mods[i].out);
    float *arena = lk_aligned_alloc((size_t)(n ? n : 1) * sizeof *arena);
    if (!arena)
        return status_fail(LK_ERR_NOMEM, "%s: cannot allocate %lld LoRA parameters", a->path,
                           (long long)n);
    for (int64_t i = 0; i < a->n_mods; i++) {
        adapter_module *m = &a->mods[i];
        float **f[2] = {&m->A, &m->B};
        for (int k = 0; k < 2; k++) {
            int64_t len = m->r * (k ? m->out : m->in);
            memcpy(arena + off, *f[k], (size_t)len * sizeof *arena);
            free(*f[k]);
            *f[k] = arena + off;
            off += len;
        }
    }
    a->arena = arena;
    a->n_arena = n;
    return LK_OK;
}

lk_status adapter_finish(lk_adapter *a)
{
    if (a->n_mods == 0)
        return status_fail(LK_ERR_FORMAT, "%s: no LoRA module found (empty adapter?)", a->path);
    qsort(a->mods, (size_t)a->n_mods, sizeof *a->mods, cmp_module);
    for (int64_t i = 1; i < a->n_mods; i++)
        if (cmp_module(&a->mods[i - 1], &a->mods[i]) == 0)
            return status_fail(LK_ERR_FORMAT, "%s: layer %lld %s appears twice", a->path,
                               (long long)a->mods[i].layer, lk_module_name(a->mods[i].kind));
    return LK_OK;
}

lk_status adapter_check_ready(const lk_adapter *a)
{
    if (a->gguf_rows)
        return status_fail(LK_ERR_ARG,
                           "%s: GGUF adapter of a Llama-architecture base: its q/k rows are in "
                           "llama.cpp order until the base model is known (hint: give the base "
                           "model with -m; API: lk_adapter_set_base)",
                           a->path);
    return LK_OK;
}

void lk_adapter_get_info(const lk_adapter *a, struct lk_adapter_info *o)
{
    memset(o, 0, sizeof *o);
    o->path = a->path;
    o->format = a->format;
    o->base_model = a->base_model;
    o->arch = a->arch;
    o->rank = a->rank;
    o->alpha = a->alpha;
    o->use_rslora = a->use_rslora;
    o->use_dora = a->use_dora;
    o->n_modules = a->n_mods;
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *m = &a->mods[i];
        o->target_mask |= 1u << m->kind;
        o->n_params += m->r * (m->in + m->out) + (m->mag ? m->out : 0);
    }
}

/* ---- the training-base record ---- */

const char *const adapter_base_keys[ADAPTER_BASE_KEYS] = {
    "lorakit.base_quant", "lorakit.base_quant_embed", "lorakit.base_compute"};

char *adapter_base_field(const struct lk_adapter_base *b, int k)
{
    /* strchr's convention: the caller's constness decides whether it may write */
    return (char *)(k == 0 ? b->quant : k == 1 ? b->quant_embed : b->compute);
}

void adapter_base_from_values(lk_adapter *a, const char *const v[ADAPTER_BASE_KEYS],
                              const char *file)
{
    memset(&a->trained_on, 0, sizeof a->trained_on);
    if (!v[0])
        return; /* the record stands on base_quant; the other keys refine it */
    for (int k = 0; k < ADAPTER_BASE_KEYS; k++)
        if (v[k] && strlen(v[k]) >= LK_ADAPTER_BASE_NAME) {
            log_warn("%s: '%s' is %zu bytes long (at most %d): the training-base record is "
                     "ignored",
                     file, adapter_base_keys[k], strlen(v[k]), LK_ADAPTER_BASE_NAME - 1);
            return;
        }
    for (int k = 0; k < ADAPTER_BASE_KEYS; k++)
        snprintf(adapter_base_field(&a->trained_on, k), LK_ADAPTER_BASE_NAME, "%s",
                 v[k] ? v[k] : "");
    a->trained_on.recorded = 1;
}

void lk_adapter_get_base(const lk_adapter *a, struct lk_adapter_base *out)
{
    *out = a->trained_on;
    if (!out->recorded)
        memset(out, 0, sizeof *out);
}

lk_status lk_adapter_set_base_record(lk_adapter *a, const struct lk_adapter_base *b)
{
    struct lk_adapter_base r = {0};
    for (int k = 0; b && b->recorded && k < ADAPTER_BASE_KEYS; k++) {
        const char *v = adapter_base_field(b, k);
        if (strnlen(v, LK_ADAPTER_BASE_NAME) >= LK_ADAPTER_BASE_NAME)
            return status_fail(LK_ERR_ARG,
                               "%s: training-base record '%s' is too long (at most %d "
                               "bytes)",
                               a->path, adapter_base_keys[k], LK_ADAPTER_BASE_NAME - 1);
        snprintf(adapter_base_field(&r, k), LK_ADAPTER_BASE_NAME, "%s", v);
    }
    r.recorded = b && b->recorded && *r.quant;
    a->trained_on = r;
    return LK_OK;
}

void lk_model_base_record(const lk_model *m, struct lk_adapter_base *out)
{
    memset(out, 0, sizeof *out);
    out->recorded = 1;
    snprintf(out->quant, sizeof out->quant, "%s",
             m->gguf_own ? ADAPTER_BASE_GGUF : lk_qtype_name(lk_model_quant(m)));
    snprintf(out->quant_embed, sizeof out->quant_embed, "%s",
             m->gguf_own_embed ? ADAPTER_BASE_GGUF : lk_qtype_name(lk_model_quant_embed(m)));
    snprintf(out->compute, sizeof out->compute, "%s", lk_compute_name(lk_model_compute(m)));
}

/* A recorded format name as a qtype of the allowed ones (want: bit per lk_qtype). */
static lk_status base_qtype(const char *key, const char *name, unsigned want, lk_qtype *q)
{
    if (lk_qtype_from_name(name, q) != LK_OK || !(want & (1u << *q)))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "the adapter was trained on a base with %s '%s', which this build "
                           "of lorakit cannot rebuild (written by a newer version?)",
                           key, name);
    return LK_OK;
}

lk_status lk_adapter_base_model_params(const struct lk_adapter_base *b, struct lk_model_params *mp)
{
    if (!b || !b->recorded)
        return LK_OK;
    unsigned lin = 1u << LK_QTYPE_F32 | 1u << LK_QTYPE_NF4 | 1u << LK_QTYPE_Q4_0 |
                   1u << LK_QTYPE_IQ4_NL | 1u << LK_QTYPE_Q8_0;
    lk_qtype q = mp->quant, e = mp->quant_embed;
    if (strcmp(b->quant, ADAPTER_BASE_GGUF) == 0) /* a GGUF file's own types: no re-quantising */
        q = LK_QTYPE_F32;
    else
        LK_TRY(base_qtype(adapter_base_keys[0], b->quant, lin, &q));
    if (strcmp(b->quant_embed, ADAPTER_BASE_GGUF) == 0)
        e = LK_QTYPE_F32;
    else if (*b->quant_embed)
        LK_TRY(base_qtype(adapter_base_keys[1], b->quant_embed,
                          1u << LK_QTYPE_F32 | 1u << LK_QTYPE_Q8_0, &e));
    lk_compute c = mp->compute;
    if (*b->compute && lk_compute_from_name(b->compute, &c) != LK_OK)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "the adapter was trained with %s '%s', which this build of lorakit "
                           "cannot run (written by a newer version?)",
                           adapter_base_keys[2], b->compute);
    mp->quant = q;
    mp->quant_embed = e;
    mp->compute = c;
    return LK_OK;
}

/* Two names of one format ("none" and "f32" both mean unquantised). */
static int same_name(const char *x, const char *y)
{
    lk_qtype a, b;
    if (lk_qtype_from_name(x, &a) == LK_OK && lk_qtype_from_name(y, &b) == LK_OK)
        return a == b;
    return strcmp(x, y) == 0;
}

int lk_adapter_base_equal(const struct lk_adapter_base *x, const struct lk_adapter_base *y)
{
    if (!x->recorded || !y->recorded)
        return !x->recorded && !y->recorded;
    for (int k = 0; k < ADAPTER_BASE_KEYS; k++) {
        const char *u = adapter_base_field(x, k);
        const char *v = adapter_base_field(y, k);
        if (*u && *v && !same_name(u, v)) /* an unrecorded refinement matches any */
            return 0;
    }
    return 1;
}

const char *lk_adapter_base_describe(const struct lk_adapter_base *b, char *buf, size_t n)
{
    if (!b->recorded)
        snprintf(buf, n, "unknown");
    else if (strcmp(b->quant, ADAPTER_BASE_GGUF) == 0 &&
             strcmp(b->quant_embed, ADAPTER_BASE_GGUF) == 0)
        snprintf(buf, n, "gguf (the GGUF file's own tensor types, %s compute)",
                 *b->compute ? b->compute : "?");
    else
        snprintf(buf, n, "%s (embeddings %s, %s compute)", b->quant,
                 *b->quant_embed ? b->quant_embed : "?", *b->compute ? b->compute : "?");
    return buf;
}

lk_status lk_adapter_get_module(const lk_adapter *a, int64_t i, struct lk_adapter_module *o)
{
    if (i < 0 || i >= a->n_mods)
        return status_fail(LK_ERR_ARG, "%s: module index %lld outside [0, %lld)", a->path,
                           (long long)i, (long long)a->n_mods);
    const adapter_module *m = &a->mods[i];
    *o = (struct lk_adapter_module){.layer = m->layer,
                                    .module = m->kind,
                                    .r = m->r,
                                    .in = m->in,
                                    .out = m->out,
                                    .alpha = m->alpha,
                                    .scale = m->scale,
                                    .A = m->A,
                                    .B = m->B,
                                    .magnitude = m->mag};
    return LK_OK;
}

int64_t lk_adapter_find_module(const lk_adapter *a, int64_t layer, lk_module module)
{
    for (int64_t i = 0; i < a->n_mods; i++)
        if (a->mods[i].layer == layer && a->mods[i].kind == module)
            return i;
    return -1;
}

lk_status adapter_check_base(const lk_adapter *a, const struct lk_model_config *cfg)
{
    char got[64], want[64];
    const char *ga;
    if (strcmp(a->format, "gguf") == 0 && *a->arch &&
        (adapter_gguf_arch(cfg, &ga) < 0 || strcmp(ga, a->arch) != 0))
        return status_fail(LK_ERR_SHAPE,
                           "%s: GGUF adapter for architecture '%s' but the base is '%s' (hint: "
                           "wrong base model?)",
                           a->path, a->arch, cfg->arch);
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *m = &a->mods[i];
        int64_t out, in;
        adapter_module_shape(cfg, m->kind, &out, &in);
        if (m->layer >= cfg->n_layers)
            return status_fail(LK_ERR_SHAPE,
                               "%s: module layers.%lld.%s: the base has only %lld layers (hint: "
                               "wrong base model?)",
                               a->path, (long long)m->layer, lk_module_name(m->kind),
                               (long long)cfg->n_layers);
        if (out != m->out || in != m->in)
            return status_fail(LK_ERR_SHAPE,
                               "%s: module layers.%lld.%s: adapter ΔW is %s but the base weight "
                               "is %s (hint: wrong base model?)",
                               a->path, (long long)m->layer, lk_module_name(m->kind),
                               shape_str((int64_t[]){m->out, m->in}, 2, got, sizeof got),
                               shape_str((int64_t[]){out, in}, 2, want, sizeof want));
    }
    return LK_OK;
}

lk_status lk_adapter_set_base(lk_adapter *a, const struct lk_model_config *cfg)
{
    LK_TRY(adapter_check_base(a, cfg));
    if (!a->gguf_rows)
        return LK_OK;
    for (int64_t i = 0; i < a->n_mods; i++) {
        adapter_module *m = &a->mods[i];
        if (m->kind == LK_MOD_Q || m->kind == LK_MOD_K)
            LK_TRY(adapter_permute_rows(m->B, m->out, m->r,
                                        m->kind == LK_MOD_Q ? cfg->n_heads : cfg->n_kv_heads, 1));
    }
    a->gguf_rows = 0;
    return LK_OK;
}

/* ---- creation ---- */

static lk_status create_module(const struct lk_model_config *cfg, const struct lk_adapter_params *p,
                               int64_t layer, lk_module kind, rng_state *rng, adapter_module *m)
{
    m->layer = layer;
    m->kind = kind;
    m->r = p->rank;
    adapter_module_shape(cfg, kind, &m->out, &m->in);
    m->alpha = p->alpha;
    m->scale = p->use_rslora ? p->alpha / sqrt((double)p->rank) : p->alpha / (double)p->rank;
    m->A = malloc((size_t)(m->r * m->in) * sizeof(float));
    m->B = calloc((size_t)(m->out * m->r), sizeof(float));
    if (!m->A || !m->B)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    /* kaiming_uniform_(a=√5): bound = gain·√(3/fan_in) with gain = √(2/(1+5)) → 1/√in */
    double bound = 1.0 / sqrt((double)m->in);
    for (int64_t i = 0; i < m->r * m->in; i++)
        m->A[i] = (float)((2.0 * rng_uniform_f64(rng) - 1.0) * bound);
    for (int64_t i = 0; p->init_std_b > 0 && i < m->out * m->r; i++)
        m->B[i] = (float)(rng_normal(rng) * p->init_std_b);
    return LK_OK;
}

lk_status lk_adapter_params_check_model(const struct lk_adapter_params *p,
                                        const struct lk_model_config *cfg)
{
    int64_t limit = INT64_MAX, out = 0, in = 0;
    lk_module which = LK_MOD_Q;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        int64_t o, i;
        adapter_module_shape(cfg, (lk_module)k, &o, &i);
        if ((p->target_mask & (1u << k)) && (o < i ? o : i) < limit)
            limit = o < i ? o : i, which = (lk_module)k, out = o, in = i;
    }
    if (p->rank > limit) {
        char want[160];
        snprintf(want, sizeof want, "at most %lld for this model (%s is [%lld, %lld])",
                 (long long)limit, lk_module_name(which), (long long)out, (long long)in);
        return option_range_i("--rank", p->rank, want);
    }
    return LK_OK;
}

lk_status lk_adapter_create(const struct lk_model_config *cfg, const struct lk_adapter_params *p,
                            lk_adapter **out)
{
    struct lk_adapter_params d = p ? *p : lk_adapter_params_default();
    *out = NULL;
    LK_TRY(lk_adapter_params_check(&d));
    LK_TRY(lk_adapter_params_check_model(&d, cfg));
    lk_adapter *a;
    LK_TRY(adapter_new("(new adapter)", "peft", &a));
    a->rank = d.rank;
    a->alpha = d.alpha;
    a->use_rslora = d.use_rslora;
    rng_state rng;
    rng_seed(&rng, d.seed, RNG_INIT);
    lk_status s = LK_OK;
    for (int64_t l = 0; l < cfg->n_layers && s == LK_OK; l++)
        for (int k = 0; k < LK_MOD_COUNT && s == LK_OK; k++) {
            if (!(d.target_mask & (1u << k)))
                continue;
            adapter_module m = {0};
            s = create_module(cfg, &d, l, (lk_module)k, &rng, &m);
            if (s == LK_OK)
                s = adapter_add_module(a, &m);
            else
                adapter_module_free(&m);
        }
    if (s != LK_OK) {
        lk_adapter_free(a);
        return s;
    }
    *out = a;
    return LK_OK;
}

/* ---- attaching to a model ---- */

lk_status lk_model_attach_adapter(lk_model *m, const lk_adapter *a, float weight)
{
    char got[64], want[64];
    LK_TRY(adapter_check_ready(a));
    if (a->use_dora)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: DoRA adapters change the weight's row norms and cannot run as a "
                           "low-rank side path here (hint: merge it with lora-merge and use the "
                           "merged model)",
                           a->path);
    if (!isfinite(weight))
        return status_fail(LK_ERR_ARG, "%s: adapter weight %g is not finite", a->path, weight);
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *d = &a->mods[i];
        if (d->layer >= m->cfg.n_layers)
            return status_fail(LK_ERR_SHAPE,
                               "%s: module layers.%lld.%s: the model has only %lld "
                               "layers (hint: wrong base model?)",
                               a->path, (long long)d->layer, lk_module_name(d->kind),
                               (long long)m->cfg.n_layers);
        const linear *L = layer_linear(&m->layers[d->layer], d->kind);
        if (L->in != d->in || L->out != d->out)
            return status_fail(LK_ERR_SHAPE,
                               "%s: module layers.%lld.%s: adapter ΔW is %s but "
                               "the base weight model.layers.%lld.%s.%s.weight is %s (hint: "
                               "wrong base model?)",
                               a->path, (long long)d->layer, lk_module_name(d->kind),
                               shape_str((int64_t[]){d->out, d->in}, 2, got, sizeof got),
                               (long long)d->layer, adapter_parent(d->kind),
                               lk_module_name(d->kind),
                               shape_str((int64_t[]){L->out, L->in}, 2, want, sizeof want));
        if (L->n_lora >= LINEAR_MAX_LORA)
            return status_fail(LK_ERR_ARG, "%s: at most %d adapters can be attached", a->path,
                               LINEAR_MAX_LORA);
    }
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *d = &a->mods[i];
        linear *L = layer_linear(&m->layers[d->layer], d->kind);
        L->lora[L->n_lora++] =
            (lora_delta){.A = d->A, .B = d->B, .r = d->r, .scale = (float)(weight * d->scale)};
    }
    return LK_OK;
}

void lk_model_detach_adapters(lk_model *m)
{
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LK_MOD_COUNT; k++)
            layer_linear(&m->layers[l], k)->n_lora = 0;
}
