/* config_gguf.c — the hyper-parameters of a llama.cpp GGUF model file (general.architecture
 * "llama" or "qwen2") as a struct lk_model_config, the way llama.cpp's llama_model::load_hparams
 * reads them: {arch}.block_count, embedding_length, feed_forward_length, attention.head_count(_kv),
 * attention.key_length, attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
 * rope.scaling.type/factor, context_length; the vocabulary size from the token list (else
 * {arch}.vocab_size, else token_embd's rows); biases and tied embeddings from the tensors present.
 * Every value is range-checked: a hostile file fails naming the file and the key. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config.h"
#include "core/status.h"

int model_path_is_gguf(const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".gguf") == 0)
        return 1;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Integer {arch}.key (required unless def >= 0) within [lo, hi]. */
static lk_status arch_int(const gguf_file *f, const char *arch, const char *key, int64_t def,
                          int64_t lo, int64_t hi, int64_t *out)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!gguf_find_kv(f, k) && def >= 0) {
        *out = def;
        return LK_OK;
    }
    LK_TRY(gguf_get_i64(f, k, out));
    if (*out < lo || *out > hi)
        return status_fail(LK_ERR_FORMAT, "%s: metadata '%s' = %lld is out of range [%lld, %lld]",
                           f->map.path, k, (long long)*out, (long long)lo, (long long)hi);
    return LK_OK;
}

/* Positive finite float {arch}.key, def when absent. */
static lk_status arch_num(const gguf_file *f, const char *arch, const char *key, double def,
                          double *out)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!gguf_find_kv(f, k)) {
        *out = def;
        return LK_OK;
    }
    LK_TRY(gguf_get_f64(f, k, out));
    if (!isfinite(*out) || *out <= 0)
        return status_fail(LK_ERR_FORMAT, "%s: metadata '%s' = %g must be a positive number",
                           f->map.path, k, *out);
    return LK_OK;
}

static lk_status gguf_arch(const gguf_file *f, struct lk_model_config *c)
{
    const gguf_kv *kv = gguf_find_kv(f, "general.architecture");
    if (!kv || kv->type != GGUF_STRING)
        return status_fail(LK_ERR_FORMAT,
                           "%s: metadata 'general.architecture' is missing or not a string (not a "
                           "llama.cpp model file?)",
                           f->map.path);
    int n = kv->str.len < 40 ? (int)kv->str.len : 40;
    snprintf(c->arch, sizeof c->arch, "%.*s", n, kv->str.ptr);
    if (strcmp(c->arch, "llama") != 0 && strcmp(c->arch, "qwen2") != 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: architecture '%s%s' is not supported (supported GGUF "
                           "architectures: llama, qwen2)",
                           f->map.path, c->arch, kv->str.len > 40 ? "..." : "");
    int64_t experts = 0;
    LK_TRY(arch_int(f, c->arch, "expert_count", 0, 0, INT32_MAX, &experts));
    if (experts > 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: architecture '%s' with %lld experts (mixture of experts, "
                           "%s.expert_count) is not supported",
                           f->map.path, c->arch, (long long)experts, c->arch);
    return LK_OK;
}

static lk_status gguf_sizes(const gguf_file *f, struct lk_model_config *c)
{
    const char *a = c->arch;
    LK_TRY(arch_int(f, a, "block_count", -1, 1, CFG_MAX_LAYERS, &c->n_layers));
    LK_TRY(arch_int(f, a, "embedding_length", -1, 1, CFG_MAX_DIM, &c->hidden_size));
    LK_TRY(arch_int(f, a, "feed_forward_length", -1, 1, CFG_MAX_DIM, &c->intermediate_size));
    LK_TRY(arch_int(f, a, "attention.head_count", -1, 1, CFG_MAX_DIM, &c->n_heads));
    LK_TRY(arch_int(f, a, "attention.head_count_kv", c->n_heads, 1, CFG_MAX_DIM, &c->n_kv_heads));
    LK_TRY(arch_int(f, a, "context_length", 2048, 1, INT32_MAX, &c->max_position));
    if (c->n_heads % c->n_kv_heads != 0)
        return status_fail(LK_ERR_FORMAT,
                           "%s: metadata '%s.attention.head_count' %lld is not a multiple of "
                           "'%s.attention.head_count_kv' %lld",
                           f->map.path, a, (long long)c->n_heads, a, (long long)c->n_kv_heads);
    int64_t hd = c->hidden_size % c->n_heads == 0 ? c->hidden_size / c->n_heads : 0;
    LK_TRY(arch_int(f, a, "attention.key_length", hd, 2, CFG_MAX_DIM, &c->head_dim));
    int64_t vd = c->head_dim, rd = c->head_dim;
    LK_TRY(arch_int(f, a, "attention.value_length", c->head_dim, 1, CFG_MAX_DIM, &vd));
    LK_TRY(arch_int(f, a, "rope.dimension_count", c->head_dim, 1, CFG_MAX_DIM, &rd));
    if (c->head_dim % 2 != 0 || vd != c->head_dim || rd != c->head_dim)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: head size %lld, value size %lld and rope.dimension_count %lld: "
                           "only even head sizes with values of the same size and RoPE over the "
                           "whole head are supported",
                           f->map.path, (long long)c->head_dim, (long long)vd, (long long)rd);
    return LK_OK;
}

/* Vocabulary size: the token list, else {arch}.vocab_size, else token_embd.weight's rows. */
static lk_status gguf_vocab(const gguf_file *f, struct lk_model_config *c)
{
    const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    int64_t fallback = e && e->n_dims == 2 ? e->ne[1] : -1;
    if (tok && tok->type == GGUF_ARRAY) {
        c->vocab_size = (int64_t)(tok->arr_n < (uint64_t)INT64_MAX ? tok->arr_n : 0);
        if (c->vocab_size < 1 || c->vocab_size > CFG_MAX_VOCAB)
            return status_fail(LK_ERR_FORMAT,
                               "%s: metadata 'tokenizer.ggml.tokens' holds %llu tokens, expected "
                               "1..%d",
                               f->map.path, (unsigned long long)tok->arr_n, CFG_MAX_VOCAB);
        return LK_OK;
    }
    return arch_int(f, c->arch, "vocab_size", fallback, 1, CFG_MAX_VOCAB, &c->vocab_size);
}

/* rope.freq_base and rope.scaling.{type,factor}: none and linear; others refused by name. */
static lk_status gguf_rope(const gguf_file *f, struct lk_model_config *c)
{
    char k[128];
    LK_TRY(arch_num(f, c->arch, "rope.freq_base", 10000.0, &c->rope_theta));
    c->rope_type = LK_ROPE_DEFAULT;
    snprintf(k, sizeof k, "%s.rope.scaling.type", c->arch);
    const gguf_kv *t = gguf_find_kv(f, k);
    if (!t)
        return LK_OK;
    if (t->type != GGUF_STRING)
        return status_fail(LK_ERR_FORMAT, "%s: metadata '%s' is not a string", f->map.path, k);
    int n = t->str.len < 40 ? (int)t->str.len : 40;
    if (t->str.len == 4 && memcmp(t->str.ptr, "none", 4) == 0)
        return LK_OK;
    if (t->str.len == 6 && memcmp(t->str.ptr, "linear", 6) == 0) {
        c->rope_type = LK_ROPE_LINEAR;
        return arch_num(f, c->arch, "rope.scaling.factor", 1.0, &c->rope_factor);
    }
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: metadata '%s' = '%.*s' is not supported (supported: none, linear; "
                       "llama3 factors come as the rope_freqs.weight tensor)",
                       f->map.path, k, n, t->str.ptr);
}

/* An integer-typed key's value in [0, vocab) into *id; 0 when absent, of another type or outside
 * (llama.cpp ignores such an id too; the tokenizer's loader warns about it). */
static int special_id(const gguf_file *f, const char *key, int64_t vocab, int64_t *id)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type == GGUF_STRING || kv->type == GGUF_ARRAY || kv->type == GGUF_F32 ||
        kv->type == GGUF_F64 || kv->type == GGUF_BOOL)
        return 0;
    int sig =
        kv->type == GGUF_I8 || kv->type == GGUF_I16 || kv->type == GGUF_I32 || kv->type == GGUF_I64;
    if (sig ? (kv->v.i < 0 || kv->v.i >= vocab) : kv->v.u >= (uint64_t)vocab)
        return 0;
    *id = sig ? kv->v.i : (int64_t)kv->v.u;
    return 1;
}

/* Special ids from the tokenizer metadata. */
static void gguf_ids(const gguf_file *f, struct lk_model_config *c)
{
    int64_t id;
    c->bos_id = -1;
    c->n_eos = 0;
    if (special_id(f, "tokenizer.ggml.bos_token_id", c->vocab_size, &id))
        c->bos_id = id;
    if (special_id(f, "tokenizer.ggml.eos_token_id", c->vocab_size, &id))
        c->eos_ids[c->n_eos++] = id;
}

/* Flags the tensors imply: an untied head, biases. */
static void gguf_flags(const gguf_file *f, struct lk_model_config *c)
{
    c->tie_word_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    c->qkv_bias = gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    c->o_bias = gguf_find_tensor(f, "blk.0.attn_output.bias") != NULL;
    c->mlp_bias = gguf_find_tensor(f, "blk.0.ffn_up.bias") != NULL;
    c->sliding_window = 0;
}

lk_status config_from_gguf(const gguf_file *f, struct lk_model_config *c)
{
    memset(c, 0, sizeof *c);
    LK_TRY(gguf_arch(f, c));
    LK_TRY(gguf_sizes(f, c));
    LK_TRY(gguf_vocab(f, c));
    LK_TRY(arch_num(f, c->arch, "attention.layer_norm_rms_epsilon", 1e-6, &c->rms_norm_eps));
    LK_TRY(gguf_rope(f, c));
    gguf_flags(f, c);
    if (strcmp(c->arch, "qwen2") == 0 && !c->qkv_bias)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor 'blk.0.attn_q.bias' is missing (qwen2 has q/k/v biases)",
                           f->map.path);
    gguf_ids(f, c);
    return LK_OK;
}
