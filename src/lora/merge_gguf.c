/* merge_gguf.c — the merged model as one llama.cpp GGUF file, as llama.cpp's
 * convert_hf_to_gguf.py lays it out for LlamaForCausalLM/MistralForCausalLM (architecture "llama",
 * q/k rows permuted for its RoPE) and Qwen2ForCausalLM ("qwen2", rows kept): tensor names
 * token_embd, blk.N.{attn_norm, attn_q/k/v(.bias), attn_output, ffn_norm, ffn_gate/up/down},
 * output_norm, output (absent when tied), rope_freqs for llama3 rope scaling; 1-D tensors F32 and
 * matrices in the asked type; hyper-parameters under "<arch>." keys; the tokenizer (gguf_vocab.c).
 * Checked against the real stories260K.gguf in tests. Calls into merge.c only (of the merge
 * files). */
#include <math.h>
#include <string.h>

#include "text/gguf_vocab.h"
#include "lora/merge.h"
#include "model/model.h"
#include "core/status.h"

typedef struct {
    merge_ctx *c;
    const st_set *st;
    const char **src; /* [n] Hugging Face name, NULL for generated tensors (rope_freqs) */
    uint32_t *type;   /* [n] output type */
    int *permute;     /* [n] heads to permute rows by (0: none) */
    float rope_freqs[1024];
    int64_t n_rope;
} gguf_job;

/* llama3 rope scaling as a per-frequency divisor tensor (convert_hf_to_gguf.py LlamaModel). */
static int64_t llama3_rope_factors(const struct lk_model_config *c, float *out)
{
    int64_t dim = c->head_dim;
    double lo = c->rope_original_max_position / c->rope_low_freq_factor;
    double hi = c->rope_original_max_position / c->rope_high_freq_factor;
    for (int64_t i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)dim);
        double wavelen = 2 * M_PI / freq;
        if (wavelen < hi)
            out[i] = 1.0f;
        else if (wavelen > lo)
            out[i] = (float)c->rope_factor;
        else {
            double smooth = (c->rope_original_max_position / wavelen - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
        }
    }
    return dim / 2;
}

static lk_status fill_tensor(void *user, int64_t i, void *dst)
{
    gguf_job *j = user;
    const gguf_type_traits *tt = gguf_type_info(j->type[i]);
    struct lk_merge_tensor rep = {.index = i, .count = j->c->n_out};
    if (!j->src[i]) {
        memcpy(dst, j->rope_freqs, (size_t)j->n_rope * sizeof(float));
        return LK_OK;
    }
    const tensor_view *t = st_set_get(j->st, j->src[i]);
    int64_t layer = 0;
    lk_module kind;
    rep.name = t->name;
    int k = merge_parse_tensor(t->name, &layer, &kind) == 0 ? (int)kind : -1;
    LK_TRY(merge_rows(j->c, t, layer, k, j->permute[i], tt, dst, &rep.n_merged, &rep.store_err));
    merge_release(t->data, t->nbytes);
    if (j->c->p.on_tensor)
        j->c->p.on_tensor(j->c->p.user, &rep);
    return LK_OK;
}

lk_status merge_gguf_type(const char *dt, uint32_t *type, uint32_t *ftype)
{
    static const struct {
        const char *name;
        uint32_t type, ftype; /* ggml_type and llama_ftype (general.file_type; k-quants: _S) */
    } map[] = {{"f32", GGML_F32, 0},        {"f16", GGML_F16, 1},       {"bf16", GGML_BF16, 32},
               {"q8_0", GGML_Q8_0, 7},      {"q4_0", GGML_Q4_0, 2},     {"iq4_nl", GGML_IQ4_NL, 25},
               {"q4_1", GGML_Q4_1, 3},      {"q5_0", GGML_Q5_0, 8},     {"q5_1", GGML_Q5_1, 9},
               {"q2_k", GGML_Q2_K, 10},     {"q3_k", GGML_Q3_K, 11},    {"q4_k", GGML_Q4_K, 14},
               {"q5_k", GGML_Q5_K, 16},     {"q6_k", GGML_Q6_K, 18},    {"iq4_xs", GGML_IQ4_XS, 30}};
    if (!dt)
        dt = "f16"; /* convert_hf_to_gguf.py's default outtype */
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(dt, map[i].name) == 0) {
            *type = map[i].type;
            *ftype = map[i].ftype;
            return LK_OK;
        }
    return status_fail(LK_ERR_ARG,
                       "GGUF merge dtype '%s': expected f32, f16, bf16, q8_0, q4_0, iq4_nl, q4_1, "
                       "q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k or iq4_xs (nf4 is a bitsandbytes "
                       "format: write a folder instead)",
                       dt);
}

/* Add one tensor mapped from Hugging Face name hf (NULL: generated) to the writer. */
static lk_status add(gguf_writer *w, gguf_job *j, int64_t *n, const char *name, const char *hf,
                     int permute, uint32_t mat_type)
{
    const tensor_view *t = hf ? st_set_get(j->st, hf) : NULL;
    if (hf && !t)
        return status_fail(LK_ERR_FORMAT, "%s: tensor '%s' is missing", j->st->dir, hf);
    if (t)
        LK_TRY(merge_float_source(t));
    int64_t ne[2];
    int nd = t ? t->ndim : 1;
    if (t) {
        ne[0] = t->shape[nd - 1];
        ne[1] = nd == 2 ? t->shape[0] : 1;
    } else
        ne[0] = j->n_rope;
    /* rows that do not fill whole blocks: llama-quantize's fallback type, F16 at worst */
    uint32_t type = nd == 2 ? gguf_type_fallback(mat_type, ne[0]) : GGML_F32;
    j->src[*n] = hf ? t->name : NULL;
    j->type[*n] = type;
    j->permute[*n] = permute;
    (*n)++;
    return gguf_add_tensor(w, name, type, nd, ne, NULL);
}

static lk_status add_layer(gguf_writer *w, gguf_job *j, int64_t *n, int64_t l, int perm,
                           uint32_t mt)
{
    const struct lk_model_config *c = &j->c->cfg;
    static const char *const hf_stem[] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    char g[96], h[128];
#define NAME(...) (snprintf(g, sizeof g, __VA_ARGS__), g)
#define HF(...)   (snprintf(h, sizeof h, __VA_ARGS__), h)
    LK_TRY(add(w, j, n, NAME("blk.%lld.attn_norm.weight", (long long)l),
               HF("model.layers.%lld.input_layernorm.weight", (long long)l), 0, mt));
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        int heads = !perm           ? 0
                    : k == LK_MOD_Q ? (int)c->n_heads
                    : k == LK_MOD_K ? (int)c->n_kv_heads
                                    : 0;
        int bias = k <= LK_MOD_V ? c->qkv_bias : k == LK_MOD_O ? c->o_bias : c->mlp_bias;
        const char *stem = adapter_gguf_stem((lk_module)k);
        LK_TRY(add(w, j, n, NAME("blk.%lld.%s.weight", (long long)l, stem),
                   HF("model.layers.%lld.%s.weight", (long long)l, hf_stem[k]), heads, mt));
        if (bias)
            LK_TRY(add(w, j, n, NAME("blk.%lld.%s.bias", (long long)l, stem),
                       HF("model.layers.%lld.%s.bias", (long long)l, hf_stem[k]), heads, mt));
        if (k == LK_MOD_O)
            LK_TRY(add(w, j, n, NAME("blk.%lld.ffn_norm.weight", (long long)l),
                       HF("model.layers.%lld.post_attention_layernorm.weight", (long long)l), 0,
                       mt));
    }
#undef NAME
#undef HF
    return LK_OK;
}

static lk_status add_tensors(gguf_writer *w, gguf_job *j, int perm, uint32_t mt)
{
    const struct lk_model_config *c = &j->c->cfg;
    int64_t n = 0;
    uint32_t et = j->c->embed_set ? j->c->embed_type : mt;
    LK_TRY(add(w, j, &n, "token_embd.weight", "model.embed_tokens.weight", 0, et));
    for (int64_t l = 0; l < c->n_layers; l++)
        LK_TRY(add_layer(w, j, &n, l, perm, mt));
    LK_TRY(add(w, j, &n, "output_norm.weight", "model.norm.weight", 0, mt));
    if (!c->tie_word_embeddings)
        LK_TRY(add(w, j, &n, "output.weight", "lm_head.weight", 0, et));
    if (j->n_rope)
        LK_TRY(add(w, j, &n, "rope_freqs.weight", NULL, 0, mt));
    j->c->n_out = n;
    return LK_OK;
}

/* general.* and <arch>.* hyper-parameters (convert_hf_to_gguf.py set_gguf_parameters). */
static lk_status add_hparams(gguf_writer *w, const struct lk_model_config *c, const char *arch,
                             const char *name, uint32_t ftype)
{
    char k[96];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    LK_TRY(gguf_set_str(w, "general.architecture", arch));
    LK_TRY(gguf_set_str(w, "general.type", "model"));
    LK_TRY(gguf_set_str(w, "general.name", name));
    LK_TRY(gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers));
    LK_TRY(gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_position));
    LK_TRY(gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size));
    LK_TRY(gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size));
    LK_TRY(gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads));
    LK_TRY(gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads));
    LK_TRY(gguf_set_f32(w, KEY("rope.freq_base"), (float)c->rope_theta));
    LK_TRY(gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps));
    if (c->head_dim * c->n_heads != c->hidden_size) {
        LK_TRY(gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim));
        LK_TRY(gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim));
    }
    if (strcmp(arch, "llama") == 0) {
        LK_TRY(gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size));
        LK_TRY(gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim));
    }
    if (c->rope_type == LK_ROPE_LINEAR) {
        LK_TRY(gguf_set_str(w, KEY("rope.scaling.type"), "linear"));
        LK_TRY(gguf_set_f32(w, KEY("rope.scaling.factor"), (float)c->rope_factor));
    }
    LK_TRY(gguf_set_u32(w, "general.file_type", ftype));
#undef KEY
    return LK_OK;
}

/* general.name: the base folder's last path component. */
static void folder_name(const char *dir, char *out, size_t n)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    const char *s = dir + len;
    while (s > dir && s[-1] != '/')
        s--;
    snprintf(out, n, "%.*s", (int)(dir + len - s), s);
}

lk_status merge_gguf(merge_ctx *c, const char *base_dir, const char *out)
{
    const char *arch;
    char name[256];
    uint32_t type = GGML_F16, ftype = 1;
    int perm = adapter_gguf_arch(&c->cfg, &arch);
    if (perm < 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "GGUF output: architecture '%s' has no llama.cpp "
                           "mapping here",
                           c->cfg.arch);
    LK_TRY(merge_gguf_type(c->p.dtype, &type, &ftype));
    st_set st;
    LK_TRY(st_set_open(&st, base_dir, 1));
    gguf_job j = {.c = c, .st = &st};
    size_t cap = (size_t)model_n_specs(&c->cfg) + 2;
    j.src = calloc(cap, sizeof *j.src);
    j.type = calloc(cap, sizeof *j.type);
    j.permute = calloc(cap, sizeof *j.permute);
    gguf_writer *w = NULL;
    lk_status s = j.src && j.type && j.permute ? gguf_writer_new(&w)
                                               : status_fail(LK_ERR_NOMEM, "out of memory");
    if (c->cfg.rope_type == LK_ROPE_LLAMA3 && c->cfg.head_dim / 2 <= 1024)
        j.n_rope = llama3_rope_factors(&c->cfg, j.rope_freqs);
    folder_name(base_dir, name, sizeof name);
    if (s == LK_OK)
        s = add_hparams(w, &c->cfg, arch, name, ftype);
    if (s == LK_OK)
        s = gguf_vocab_from_hf(w, base_dir, &c->cfg);
    if (s == LK_OK)
        s = add_tensors(w, &j, perm, type);
    if (s == LK_OK)
        s = gguf_writer_write(w, out, c->p.force, fill_tensor, &j);
    gguf_writer_free(w);
    free(j.src);
    free(j.type);
    free(j.permute);
    st_set_close(&st);
    return s;
}
