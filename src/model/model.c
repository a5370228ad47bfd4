/* model.c — loading a Hugging Face Llama/Qwen2/Mistral folder: every tensor the config implies is
 * looked up, checked (name, shape, dtype) and bound as an fp32 view, mapped in place when the file
 * holds aligned F32 and converted once otherwise; U8 matrices of pre-quantised bases (lorakit's
 * own or bitsandbytes 4-bit) are bound through qbase.c. */
#include "model/model.h"

#include <math.h>
#include <string.h>

#include "model/config.h"
#include "model/qbase.h"
#include "core/buf.h"
#include "core/option.h"
#include "core/status.h"

int model_n_specs(const struct lk_model_config *c)
{
    return 2 + (int)c->n_layers * 16 + 1; /* 2 norms, 7 weights, up to 7 biases */
}

static tensor_spec *add_spec(tensor_spec *s, int *n, tensor_kind kind, const float **dst,
                             int64_t d0, int64_t d1, const char *fmt, int64_t layer)
{
    tensor_spec *t = &s[(*n)++];
    snprintf(t->name, sizeof t->name, fmt, (long long)layer);
    t->kind = kind;
    t->dst = dst;
    t->qdst = NULL;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    return t;
}

#define BIND(m, field) ((m) ? &(field) : NULL)

static void add_linear(tensor_spec *s, int *n, lk_model *m, linear *L, const char *base,
                       int64_t layer, int64_t out, int64_t in, int bias)
{
    char fmt[96];
    snprintf(fmt, sizeof fmt, "%s.weight", base);
    add_spec(s, n, TK_MATRIX, m ? &L->w : NULL, out, in, fmt, layer)->qdst = m ? &L->qw : NULL;
    if (bias) {
        snprintf(fmt, sizeof fmt, "%s.bias", base);
        add_spec(s, n, TK_BIAS, m ? &L->b : NULL, out, 0, fmt, layer);
    }
    if (m) {
        L->in = in;
        L->out = out;
    }
}

static void add_layer(const struct lk_model_config *c, lk_model *m, int64_t l, tensor_spec *s,
                      int *n)
{
    int64_t C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int64_t qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    layer_weights *w = m ? &m->layers[l] : NULL;
    static layer_weights dummy;
    layer_weights *lw = w ? w : &dummy;
    add_spec(s, n, TK_NORM, BIND(m, lw->attn_norm), C, 0,
             "model.layers.%lld.input_layernorm.weight", l);
    add_linear(s, n, m, &lw->q, "model.layers.%lld.self_attn.q_proj", l, qd, C, c->qkv_bias);
    add_linear(s, n, m, &lw->k, "model.layers.%lld.self_attn.k_proj", l, kvd, C, c->qkv_bias);
    add_linear(s, n, m, &lw->v, "model.layers.%lld.self_attn.v_proj", l, kvd, C, c->qkv_bias);
    add_linear(s, n, m, &lw->o, "model.layers.%lld.self_attn.o_proj", l, C, qd, c->o_bias);
    add_spec(s, n, TK_NORM, BIND(m, lw->ffn_norm), C, 0,
             "model.layers.%lld.post_attention_layernorm.weight", l);
    add_linear(s, n, m, &lw->gate, "model.layers.%lld.mlp.gate_proj", l, F, C, c->mlp_bias);
    add_linear(s, n, m, &lw->up, "model.layers.%lld.mlp.up_proj", l, F, C, c->mlp_bias);
    add_linear(s, n, m, &lw->down, "model.layers.%lld.mlp.down_proj", l, C, F, c->mlp_bias);
}

int model_specs(const struct lk_model_config *c, lk_model *m, tensor_spec *s)
{
    int n = 0;
    int64_t V = c->vocab_size, C = c->hidden_size;
    tensor_spec *e =
        add_spec(s, &n, TK_EMBED, m ? &m->embed.w : NULL, V, C, "model.embed_tokens.weight", 0);
    if (m) {
        e->qdst = &m->embed.qw;
        m->embed.in = C;
        m->embed.out = V;
        m->embed.name = "model.embed_tokens.weight";
    }
    for (int64_t l = 0; l < c->n_layers; l++)
        add_layer(c, m, l, s, &n);
    add_spec(s, &n, TK_NORM, m ? &m->norm : NULL, C, 0, "model.norm.weight", 0);
    if (!c->tie_word_embeddings) {
        add_linear(s, &n, m, m ? &m->lm_head : NULL, "lm_head", 0, V, C, 0);
        s[n - 1].kind = TK_EMBED; /* quantised (or not) with the embeddings */
    }
    return n;
}

void rope_inv_freq(const struct lk_model_config *c, float *inv_freq)
{
    int64_t hd = c->head_dim;
    for (int64_t i = 0; i < hd / 2; i++) {
        /* as transformers: 1 / theta^(arange(0, d, 2).float() / d), all in fp32 */
        float e = (float)(2 * i) / (float)hd;
        float f = 1.0f / powf((float)c->rope_theta, e);
        if (c->rope_type == LK_ROPE_LINEAR) {
            f = f / (float)c->rope_factor;
        } else if (c->rope_type == LK_ROPE_LLAMA3) {
            /* Llama 3.1: long wavelengths divided by factor, short ones kept, a smooth blend in
             * between (transformers' _compute_llama3_parameters) */
            double old_ctx = (double)c->rope_original_max_position;
            float low_wl = (float)(old_ctx / c->rope_low_freq_factor);
            float high_wl = (float)(old_ctx / c->rope_high_freq_factor);
            float factor = (float)c->rope_factor;
            float wavelen = (float)(2 * M_PI) / f;
            float g = wavelen > low_wl ? f / factor : f;
            float smooth = ((float)old_ctx / wavelen - (float)c->rope_low_freq_factor) /
                           (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
            float smoothed = (1 - smooth) * g / factor + smooth * g;
            int medium = !(wavelen < high_wl) && !(wavelen > low_wl);
            f = medium ? smoothed : g;
        }
        inv_freq[i] = f;
    }
}

void model_drop_range(const lk_model *m, const tensor_view *t, const void *p, size_t n)
{
    if (m->gguf.map.path == t->file)
        mapfile_drop(&m->gguf.map, p, n);
    for (int i = 0; i < m->st.n_files; i++)
        if (m->st.files[i].map.path == t->file)
            mapfile_drop(&m->st.files[i].map, p, n);
}

static void drop_source(const lk_model *m, const tensor_view *t)
{
    model_drop_range(m, t, t->data, t->nbytes);
}

lk_status model_own(lk_model *m, void *p)
{
    lk_status s =
        BUF_GROW(&m->owned, &m->cap_owned, (size_t)m->n_owned + 1, "model: weight copies");
    if (s != LK_OK) {
        free(p);
        return s;
    }
    m->owned[m->n_owned++] = p;
    return LK_OK;
}

/* f32[out, in] → an owned quantised copy bound to the spec's q4_weight (the f32 pointer stays
 * NULL: the layer then runs the fused dequant-GEMM kernels). */
static lk_status quantize_tensor(lk_model *m, const tensor_spec *sp, lk_qtype q,
                                 const tensor_view *t)
{
    int64_t out = sp->shape[0], in = sp->shape[1];
    size_t rb = q4_row_bytes(q, Q4_NF4_BLOCK, in), es = dtype_size(t->dt);
    void *buf = lk_aligned_alloc((size_t)out * rb);
    if (!buf)
        return status_fail(LK_ERR_NOMEM, "cannot allocate %zu bytes to quantise '%s'",
                           (size_t)out * rb, sp->name);
    /* rows in chunks of ~16 MB of f32, so the peak stays near the quantised size */
    int64_t R = ((int64_t)1 << 22) / in > 0 ? ((int64_t)1 << 22) / in : 1;
    int direct = t->dt == DT_F32 && ((uintptr_t)t->data & 3) == 0;
    float *tmp = direct ? NULL : lk_aligned_alloc((size_t)(R * in) * sizeof(float));
    if (!direct && !tmp) {
        free(buf);
        return status_fail(LK_ERR_NOMEM, "out of memory quantising '%s'", sp->name);
    }
    for (int64_t r0 = 0; r0 < out; r0 += R) {
        int64_t n = out - r0 < R ? out - r0 : R;
        const uint8_t *src = (const uint8_t *)t->data + (size_t)(r0 * in) * es;
        if (!direct)
            convert_to_f32(t->dt, src, tmp, n * in, m->n_threads);
        const float *x = direct ? (const float *)src : tmp;
        int64_t bad = f32_first_nonfinite(x, n * in);
        if (bad >= 0) { /* the quantisers need finite values (a NaN scale would follow) */
            lk_status s = status_fail(LK_ERR_NUMERIC,
                                      "%s: tensor '%s': element %lld is %g; weights quantised at "
                                      "load must be finite (corrupt file?)",
                                      t->file, sp->name, (long long)(r0 * in + bad), x[bad]);
            free(tmp);
            free(buf);
            return s;
        }
        q4_quantize_matrix(q, Q4_NF4_BLOCK, x, n, in, (uint8_t *)buf + (size_t)r0 * rb,
                           m->n_threads, NULL, NULL);
        model_drop_range(m, t, src, (size_t)(n * in) * es);
    }
    free(tmp);
    LK_TRY(model_own(m, buf));
    *sp->dst = NULL;
    m->weight_bytes += (int64_t)((size_t)out * rb);
    return q4_weight_init(sp->qdst, q, Q4_NF4_BLOCK, out, in, buf);
}

/* A U8 matrix of a pre-quantised base (lorakit or bitsandbytes, qbase.c): used as stored (or as
 * bitsandbytes' exact fp32 values when its blocks straddle rows). */
static lk_status bind_prequantized(lk_model *m, const tensor_spec *sp, const tensor_view *t)
{
    void *buf = NULL;
    const float *w32 = NULL;
    LK_TRY(qbase_bind(&m->st, t, sp->shape[0], sp->shape[1], sp->kind == TK_EMBED, sp->qdst, &w32,
                      &buf));
    if (buf)
        LK_TRY(model_own(m, buf));
    *sp->dst = w32; /* NULL: quantised rows in *sp->qdst */
    m->weight_bytes += w32 ? sp->shape[0] * sp->shape[1] * 4
                           : (int64_t)((size_t)sp->qdst->out * sp->qdst->row_bytes);
    return LK_OK;
}

/* Bind one spec: find the tensor, check shape and dtype, map or convert to fp32, quantise. */
static lk_status bind_tensor(lk_model *m, const tensor_spec *sp)
{
    char want[64], got[64];
    const tensor_view *t = st_set_get(&m->st, sp->name);
    if (!t)
        return status_fail(LK_ERR_SHAPE,
                           "%s: tensor '%s' is missing (expected shape %s from config.json; "
                           "hint: wrong model folder or unsupported naming?)",
                           m->st.files[0].map.path, sp->name,
                           shape_str(sp->shape, sp->ndim, want, sizeof want));
    if (t->dt == DT_U8 && sp->ndim == 2 && sp->qdst)
        return bind_prequantized(m, sp, t);
    int same = t->ndim == sp->ndim;
    for (int d = 0; same && d < sp->ndim; d++)
        same = t->shape[d] == sp->shape[d];
    if (!same)
        return status_fail(LK_ERR_SHAPE,
                           "%s: tensor '%s' has shape %s, expected %s from config.json "
                           "(hint: config.json does not belong to these weights?)",
                           t->file, sp->name, shape_str(t->shape, t->ndim, got, sizeof got),
                           shape_str(sp->shape, sp->ndim, want, sizeof want));
    if (t->dt != DT_F32 && t->dt != DT_F16 && t->dt != DT_BF16)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' has dtype %s; supported: F32, F16, BF16", t->file,
                           sp->name, dtype_name(t->dt));
    return model_bind_float(m, sp, t);
}

lk_status model_bind_float(lk_model *m, const tensor_spec *sp, const tensor_view *t)
{
    lk_qtype q = sp->kind == TK_MATRIX  ? m->quant
                 : sp->kind == TK_EMBED ? m->quant_embed
                                        : LK_QTYPE_F32;
    int64_t n = tensor_numel(t);
    if (q != LK_QTYPE_F32) {
        *(sp->kind == TK_EMBED ? &m->gguf_own_embed : &m->gguf_own) = 0;
        return quantize_tensor(m, sp, q, t);
    }
    if (t->dt == DT_F32 && ((uintptr_t)t->data & 3) == 0) {
        *sp->dst = t->data; /* mapped in place */
        m->weight_bytes += n * 4;
        return LK_OK;
    }
    float *f32 = lk_aligned_alloc((size_t)n * sizeof(float));
    if (!f32)
        return status_fail(LK_ERR_NOMEM, "%s: cannot allocate %lld floats for '%s'", t->file,
                           (long long)n, sp->name);
    convert_to_f32(t->dt, t->data, f32, n, m->n_threads);
    *sp->dst = f32;
    m->weight_bytes += n * 4;
    drop_source(m, t);
    return model_own(m, f32);
}

struct lk_model_params lk_model_params_default(void)
{
    struct lk_model_params p = {.n_threads = 0,
                                .use_mmap = 1,
                                .quant = LK_QTYPE_F32,
                                .quant_embed = LK_QTYPE_F32,
                                .compute = LK_COMPUTE_AUTO,
                                .memory_limit = 0,
                                .memory_held = 0,
                                .resume_compute = LK_COMPUTE_AUTO};
    return p;
}

lk_status lk_model_params_check(const struct lk_model_params *p)
{
    int ok = p->quant == LK_QTYPE_F32 || p->quant == LK_QTYPE_NF4 || p->quant == LK_QTYPE_Q4_0 ||
             p->quant == LK_QTYPE_IQ4_NL || p->quant == LK_QTYPE_Q8_0;
    if (!ok)
        return option_choice("--quant", lk_qtype_name(p->quant),
                             "none (f32), nf4, q4_0, iq4_nl or q8_0");
    if (p->quant_embed != LK_QTYPE_F32 && p->quant_embed != LK_QTYPE_Q8_0)
        return option_choice("--quant-embed", lk_qtype_name(p->quant_embed), "f32 or q8_0");
    if ((unsigned)p->compute > LK_COMPUTE_AUTO)
        return option_choice_i("--compute", p->compute, "f32, int8 or auto");
    if ((unsigned)p->resume_compute > LK_COMPUTE_AUTO)
        return option_choice_i("resume_compute", p->resume_compute, "f32, int8 or auto");
    if (p->memory_limit < 0)
        return option_range_i("--memory-limit", p->memory_limit, "at least 0 (0: the memory "
                                                                  "available)");
    if (p->memory_held < 0)
        return option_range_i("memory_held", p->memory_held, "at least 0");
    return LK_OK;
}

void model_embed(const lk_model *m, const int32_t *tok, int64_t T, float *x)
{
    int64_t C = m->cfg.hidden_size;
    const linear *e = &m->embed;
    for (int64_t t = 0; t < T; t++) {
        if (e->w)
            memcpy(x + t * C, e->w + (int64_t)tok[t] * C, (size_t)C * sizeof(float));
        else
            q4_dequantize_row(e->qw.qtype, e->qw.block,
                              (const uint8_t *)e->qw.data + (size_t)tok[t] * e->qw.row_bytes, C,
                              x + t * C);
    }
}

int64_t lk_model_weight_bytes(const lk_model *m)
{
    return m->weight_bytes;
}

lk_qtype lk_model_quant(const lk_model *m)
{
    return m->quant;
}

lk_qtype lk_model_quant_embed(const lk_model *m)
{
    return m->quant_embed;
}

/* What the GGUF binder sets after the tensors: q/k rows in llama.cpp's order (llama). */
static void gguf_finish(lk_model *m)
{
    if (strcmp(m->cfg.arch, "llama") != 0)
        return;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        m->layers[l].q.perm_heads = m->cfg.n_heads;
        m->layers[l].k.perm_heads = m->cfg.n_kv_heads;
    }
}

static lk_status bind_all(lk_model *m)
{
    int cap = model_n_specs(&m->cfg);
    tensor_spec *specs = calloc((size_t)cap, sizeof *specs);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    m->inv_freq = malloc((size_t)(m->cfg.head_dim / 2) * sizeof(float));
    if (!specs || !m->layers || !m->inv_freq) {
        free(specs);
        return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    int n = model_specs(&m->cfg, m, specs);
    LK_ASSERT(n <= cap);
    lk_status s = LK_OK;
    for (int i = 0; i < n && s == LK_OK; i++)
        s = m->gguf.map.path ? model_bind_gguf(m, &specs[i]) : bind_tensor(m, &specs[i]);
    free(specs);
    if (s != LK_OK)
        return s;
    if (m->gguf.map.path)
        gguf_finish(m);
    /* a pre-quantised base: report the file's formats; a GGUF file some of whose float matrices
     * were quantised at load keeps the type they took, which is what rebuilds it (the record) */
    int gguf = m->gguf.map.path != NULL;
    if (!m->layers[0].q.w && (!gguf || m->gguf_own))
        m->quant = (lk_qtype)m->layers[0].q.qw.qtype;
    if (!m->embed.w && (!gguf || m->gguf_own_embed))
        m->quant_embed = (lk_qtype)m->embed.qw.qtype;
    if (m->cfg.tie_word_embeddings) {
        m->lm_head = m->embed;
        m->lm_head.name = "lm_head (tied to model.embed_tokens.weight)";
    }
    rope_inv_freq(&m->cfg, m->inv_freq);
    return m->gguf.map.path ? model_gguf_rope_factors(m) : LK_OK;
}

lk_status lk_model_load(const char *dir, const struct lk_model_params *params, lk_model **out)
{
    struct lk_model_params p = params ? *params : lk_model_params_default();
    *out = NULL;
    LK_TRY(lk_model_params_check(&p));
    lk_model *m = calloc(1, sizeof *m);
    if (!m)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    int gguf = model_path_is_gguf(dir);
    lk_status s = gguf ? gguf_open(&m->gguf, dir) : lk_config_load(dir, &m->cfg);
    if (s == LK_OK)
        s = gguf ? config_from_gguf(&m->gguf, &m->cfg) : st_set_open(&m->st, dir, p.use_mmap);
    m->n_threads = resolve_threads(p.n_threads);
    m->quant = p.quant;
    m->quant_embed = p.quant_embed;
    m->compute = p.compute;
    m->memory_limit = p.memory_limit;
    m->memory_held = p.memory_held;
    m->resume_compute = p.resume_compute;
    m->gguf_own = m->gguf_own_embed = gguf; /* until a tensor is quantised at load */
    if (s == LK_OK)
        s = bind_all(m);
    if (s == LK_OK)
        s = model_int8_setup(m);
    if (s != LK_OK) {
        lk_model_free(m);
        return s;
    }
    *out = m;
    return LK_OK;
}

void lk_model_free(lk_model *m)
{
    if (!m)
        return;
    model_int8_backward_free(m);
    free(m->q8c);
    free(m->ilv_scratch);
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->inv_freq);
    st_set_close(&m->st);
    gguf_close(&m->gguf);
    free(m);
}

const struct lk_model_config *lk_model_get_config(const lk_model *m)
{
    return &m->cfg;
}

void lk_model_set_threads(lk_model *m, int n_threads)
{
    m->n_threads = resolve_threads(n_threads);
}

int64_t lk_model_n_params(const lk_model *m)
{
    const struct lk_model_config *c = &m->cfg;
    int cap = model_n_specs(c);
    tensor_spec *specs = calloc((size_t)cap, sizeof *specs);
    if (!specs)
        return -1;
    int n = model_specs(c, NULL, specs);
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += specs[i].shape[0] * (specs[i].ndim == 2 ? specs[i].shape[1] : 1);
    free(specs);
    return total;
}
