/* model_gguf.c — binding the tensors of a llama.cpp GGUF model file (llama, qwen2) to the model:
 * each Hugging Face tensor the config implies is looked up under its llama.cpp name
 * (token_embd, blk.N.attn_q, ..., output_norm, output), its shape checked (GGUF ne = {in, out}),
 * and used where it lies in the mapped file: quantised matrices (every type gguf.c knows: Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS) through the fused kernels, zero-copy, after
 * a check that every block's scales are finite; F32 mapped in place;
 * F16/BF16 widened (or quantised with --quant) one tensor at a time. q/k rows of a llama file stay
 * in llama.cpp's order: the layer un-permutes its outputs (linear.perm_heads, set in model.c). */
#include "model/model.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

/* llama.cpp's name of a Hugging Face tensor name (convert_hf_to_gguf.py's tensor map for llama
 * and qwen2) into g[n]; 0 when there is none. */
static int llama_cpp_name(const char *hf, char *g, size_t n)
{
    static const char *const map[][2] = {
        {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},
        {"self_attn.k_proj", "attn_k"},      {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
        {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},
    };
    long long l;
    int at = 0;
    if (strcmp(hf, "model.embed_tokens.weight") == 0)
        return snprintf(g, n, "token_embd.weight") > 0;
    if (strcmp(hf, "model.norm.weight") == 0)
        return snprintf(g, n, "output_norm.weight") > 0;
    if (strcmp(hf, "lm_head.weight") == 0)
        return snprintf(g, n, "output.weight") > 0;
    if (sscanf(hf, "model.layers.%lld.%n", &l, &at) != 1 || at == 0)
        return 0;
    const char *rest = hf + at, *dot = strrchr(rest, '.');
    for (size_t i = 0; dot && i < sizeof map / sizeof *map; i++)
        if (strlen(map[i][0]) == (size_t)(dot - rest) && strncmp(rest, map[i][0], dot - rest) == 0)
            return snprintf(g, n, "blk.%lld.%s%s", l, map[i][1], dot) > 0;
    return 0;
}

/* The lorakit format of a quantised GGUF type (the fused kernels run every one gguf.c knows);
 * -1 for the float types. */
static int kernel_type(uint32_t t)
{
    const gguf_type_traits *tt = gguf_type_info(t);
    return tt && tt->qtype >= LK_QTYPE_Q4_0 && tt->qtype != LK_QTYPE_NF4 ? tt->qtype : -1;
}

static int float_dtype(uint32_t t)
{
    return t == GGML_F32 ? DT_F32 : t == GGML_F16 ? DT_F16 : t == GGML_BF16 ? DT_BF16 : -1;
}

/* ne (GGUF, fastest first) against the Hugging Face shape of sp. */
static lk_status check_shape(const lk_model *m, const tensor_spec *sp, const gguf_tensor *t)
{
    char want[64], got[64], hf[64];
    int64_t ne[2] = {sp->ndim == 2 ? sp->shape[1] : sp->shape[0], sp->shape[0]};
    int same = t->n_dims == sp->ndim && t->ne[0] == ne[0] && (sp->ndim == 1 || t->ne[1] == ne[1]);
    if (same)
        return LK_OK;
    return status_fail(LK_ERR_SHAPE,
                       "%s: tensor '%s' has ne %s, expected %s from the metadata (%s "
                       "[out, in] = %s)",
                       m->gguf.map.path, t->name, shape_str(t->ne, t->n_dims, got, sizeof got),
                       shape_str(ne, sp->ndim, want, sizeof want), sp->name,
                       shape_str(sp->shape, sp->ndim, hf, sizeof hf));
}

/* A quantised matrix used in place (the kernels read blocks at any alignment). */
static lk_status bind_quantised(lk_model *m, const tensor_spec *sp, const gguf_tensor *t, int q)
{
    if (sp->ndim != 2 || !sp->qdst)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is %s; a norm or bias must be F32, F16 or BF16",
                           m->gguf.map.path, t->name, gguf_type_info(t->type)->name);
    LK_TRY(gguf_check_scales(&m->gguf, t));
    mapfile_drop(&m->gguf.map, t->data, (size_t)t->nbytes); /* the check read every block */
    LK_TRY(q4_weight_init(sp->qdst, q, 32, sp->shape[0], sp->shape[1], t->data));
    *sp->dst = NULL;
    m->weight_bytes += (int64_t)t->nbytes;
    return LK_OK;
}

lk_status model_bind_gguf(lk_model *m, const tensor_spec *sp)
{
    char g[96];
    const gguf_tensor *t =
        llama_cpp_name(sp->name, g, sizeof g) ? gguf_find_tensor(&m->gguf, g) : NULL;
    if (!t)
        return status_fail(LK_ERR_SHAPE, "%s: tensor '%s' is missing (%s of the %s architecture)",
                           m->gguf.map.path, llama_cpp_name(sp->name, g, sizeof g) ? g : sp->name,
                           sp->name, m->cfg.arch);
    LK_TRY(check_shape(m, sp, t));
    int q = kernel_type(t->type), dt = float_dtype(t->type);
    if (q >= 0)
        return bind_quantised(m, sp, t, q);
    if (dt < 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' has type %s, which lorakit cannot compute with "
                           "(hint: llama-quantize --allow-requantize to Q8_0, Q4_K or another "
                           "type lorakit reads)",
                           m->gguf.map.path, t->name, gguf_type_info(t->type)->name);
    tensor_view v = {.name = t->name,
                     .dt = (dtype)dt,
                     .ndim = sp->ndim,
                     .shape = {sp->shape[0], sp->shape[1]},
                     .data = t->data,
                     .nbytes = (size_t)t->nbytes,
                     .file = m->gguf.map.path};
    return model_bind_float(m, sp, &v);
}

lk_status model_gguf_rope_factors(lk_model *m)
{
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, "rope_freqs.weight");
    int64_t half = m->cfg.head_dim / 2;
    if (!t)
        return LK_OK;
    if (t->type != GGML_F32 || t->n_dims != 1 || t->ne[0] != half)
        return status_fail(LK_ERR_SHAPE,
                           "%s: tensor 'rope_freqs.weight' must be F32 [%lld] (head size / 2), "
                           "got %s with %lld values",
                           m->gguf.map.path, (long long)half, gguf_type_info(t->type)->name,
                           (long long)t->ne[0]);
    for (int64_t i = 0; i < half; i++) {
        float f;
        memcpy(&f, t->data + 4 * i, 4);
        if (!isfinite(f) || f <= 0)
            return status_fail(LK_ERR_FORMAT,
                               "%s: tensor 'rope_freqs.weight': factor %lld is %g, expected a "
                               "positive number",
                               m->gguf.map.path, (long long)i, f);
        m->inv_freq[i] /= f; /* llama.cpp: theta / freq_factor */
    }
    return LK_OK;
}

lk_status model_gguf_row(const gguf_file *f, const gguf_tensor *t, int64_t r, float *out)
{
    int q = kernel_type(t->type), dt = float_dtype(t->type);
    int64_t in = t->ne[0], rb = gguf_row_size(t->type, in);
    const uint8_t *row = t->data + (size_t)(r * rb);
    if (q >= 0)
        q4_dequantize_row(q, 32, row, in, out);
    else if (dt >= 0)
        convert_to_f32((dtype)dt, row, out, in, 1);
    else
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' has type %s, which lorakit cannot "
                           "read",
                           f->map.path, t->name, gguf_type_info(t->type)->name);
    return LK_OK;
}
