/* config.c — Hugging Face config.json for LlamaForCausalLM (and SmolLM), Qwen2ForCausalLM and
 * MistralForCausalLM, with the defaults transformers' config classes use when a key is absent. */
#include "model/config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"

static const struct {
    const char *arch, *model_type;
} g_archs[] = {
    {"LlamaForCausalLM", "llama"},
    {"Qwen2ForCausalLM", "qwen2"},
    {"MistralForCausalLM", "mistral"},
};

/* Integer key: absent/null -> def (or an error when def < 0 means "required"). */
static lk_status get_int(const char *path, const cJSON *j, const char *key, int64_t def, int64_t lo,
                         int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0)
            return status_fail(LK_ERR_FORMAT, "%s: missing required key '%s'", path, key);
        *out = def;
        return LK_OK;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
        return status_fail(LK_ERR_FORMAT, "%s: '%s' must be an integer", path, key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return status_fail(LK_ERR_FORMAT, "%s: '%s' = %.15g is out of range [%lld, %lld]", path,
                           key, v->valuedouble, (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return LK_OK;
}

static lk_status get_num(const char *path, const cJSON *j, const char *key, double def, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LK_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
        return status_fail(LK_ERR_FORMAT, "%s: '%s' must be a positive number", path, key);
    *out = v->valuedouble;
    return LK_OK;
}

static lk_status get_bool(const char *path, const cJSON *j, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v))
        *out = def;
    else if (cJSON_IsBool(v))
        *out = cJSON_IsTrue(v);
    else
        return status_fail(LK_ERR_FORMAT, "%s: '%s' must be true or false", path, key);
    return LK_OK;
}

static lk_status parse_arch(const char *path, const cJSON *j, struct lk_model_config *c)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const char *name = NULL;
    if (cJSON_IsArray(a) && cJSON_IsString(a->child))
        name = a->child->valuestring;
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++) {
        if ((name && strcmp(name, g_archs[i].arch) == 0) ||
            (!name && cJSON_IsString(mt) && strcmp(mt->valuestring, g_archs[i].model_type) == 0)) {
            snprintf(c->arch, sizeof c->arch, "%s", g_archs[i].model_type);
            return LK_OK;
        }
    }
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: architecture '%s' is not supported (supported: LlamaForCausalLM, "
                       "Qwen2ForCausalLM, MistralForCausalLM)",
                       path,
                       name                 ? name
                       : cJSON_IsString(mt) ? mt->valuestring
                                            : "(none given)");
}

/* rope_scaling (transformers <= 4.x) or rope_parameters (newer): type and its factors. */
static lk_status parse_rope(const char *path, const cJSON *j, struct lk_model_config *c)
{
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    LK_TRY(get_num(path, j, "rope_theta", 10000.0, &c->rope_theta));
    c->rope_type = LK_ROPE_DEFAULT;
    const cJSON *r = cJSON_IsObject(rp) ? rp : rs;
    if (!r || cJSON_IsNull(r))
        return LK_OK;
    if (!cJSON_IsObject(r))
        return status_fail(LK_ERR_FORMAT, "%s: rope_scaling must be an object or null", path);
    if (r == rp)
        LK_TRY(get_num(path, r, "rope_theta", c->rope_theta, &c->rope_theta));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "rope_type");
    if (!cJSON_IsString(t))
        t = cJSON_GetObjectItemCaseSensitive(r, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : "default";
    if (strcmp(type, "default") == 0)
        return LK_OK;
    LK_TRY(get_num(path, r, "factor", 1.0, &c->rope_factor));
    if (strcmp(type, "linear") == 0) {
        c->rope_type = LK_ROPE_LINEAR;
        return LK_OK;
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_type = LK_ROPE_LLAMA3;
        LK_TRY(get_num(path, r, "low_freq_factor", 1.0, &c->rope_low_freq_factor));
        LK_TRY(get_num(path, r, "high_freq_factor", 4.0, &c->rope_high_freq_factor));
        LK_TRY(get_int(path, r, "original_max_position_embeddings", 8192, 1, INT32_MAX,
                       &c->rope_original_max_position));
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return status_fail(LK_ERR_FORMAT,
                               "%s: llama3 rope scaling needs high_freq_factor > low_freq_factor",
                               path);
        return LK_OK;
    }
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: rope scaling type '%s' is not supported (supported: default, linear, "
                       "llama3)",
                       path, type);
}

static lk_status parse_ids(const char *path, const cJSON *j, struct lk_model_config *c)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bos_token_id");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    c->bos_id = -1;
    if (b && !cJSON_IsNull(b))
        LK_TRY(get_int(path, j, "bos_token_id", -1, 0, c->vocab_size - 1, &c->bos_id));
    c->n_eos = 0;
    const cJSON *one = cJSON_IsArray(e) ? e->child : e;
    for (; one && c->n_eos < LK_MAX_EOS; one = cJSON_IsArray(e) ? one->next : NULL) {
        if (!cJSON_IsNumber(one) || one->valuedouble < 0 || one->valuedouble >= c->vocab_size ||
            floor(one->valuedouble) != one->valuedouble)
            return status_fail(LK_ERR_FORMAT, "%s: eos_token_id must be ids below vocab_size %lld",
                               path, (long long)c->vocab_size);
        c->eos_ids[c->n_eos++] = (int64_t)one->valuedouble;
    }
    return LK_OK;
}

static lk_status parse_sizes(const char *path, const cJSON *j, struct lk_model_config *c)
{
    LK_TRY(get_int(path, j, "vocab_size", -1, 1, CFG_MAX_VOCAB, &c->vocab_size));
    LK_TRY(get_int(path, j, "hidden_size", -1, 1, CFG_MAX_DIM, &c->hidden_size));
    LK_TRY(get_int(path, j, "intermediate_size", -1, 1, CFG_MAX_DIM, &c->intermediate_size));
    LK_TRY(get_int(path, j, "num_hidden_layers", -1, 1, CFG_MAX_LAYERS, &c->n_layers));
    LK_TRY(get_int(path, j, "num_attention_heads", -1, 1, CFG_MAX_DIM, &c->n_heads));
    LK_TRY(get_int(path, j, "num_key_value_heads", c->n_heads, 1, CFG_MAX_DIM, &c->n_kv_heads));
    LK_TRY(get_int(path, j, "head_dim", 0, 1, CFG_MAX_DIM, &c->head_dim));
    LK_TRY(get_int(path, j, "max_position_embeddings", 2048, 1, INT32_MAX, &c->max_position));
    if (c->n_heads % c->n_kv_heads != 0)
        return status_fail(LK_ERR_FORMAT,
                           "%s: num_attention_heads %lld is not a multiple of "
                           "num_key_value_heads %lld",
                           path, (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->head_dim == 0) {
        if (c->hidden_size % c->n_heads != 0)
            return status_fail(LK_ERR_FORMAT,
                               "%s: hidden_size %lld is not a multiple of num_attention_heads "
                               "%lld (and no head_dim given)",
                               path, (long long)c->hidden_size, (long long)c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
    }
    if (c->head_dim % 2 != 0)
        return status_fail(LK_ERR_FORMAT, "%s: head_dim %lld must be even for RoPE", path,
                           (long long)c->head_dim);
    return LK_OK;
}

/* Attention window: Mistral's sliding_window; Qwen2 only when use_sliding_window. */
static lk_status parse_window(const char *path, const cJSON *j, struct lk_model_config *c)
{
    int use = 0;
    c->sliding_window = 0;
    if (strcmp(c->arch, "mistral") == 0)
        return get_int(path, j, "sliding_window", 0, 0, INT32_MAX, &c->sliding_window);
    if (strcmp(c->arch, "qwen2") == 0) {
        LK_TRY(get_bool(path, j, "use_sliding_window", 0, &use));
        if (use)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "%s: use_sliding_window true (per-layer windows) is not supported",
                               path);
    }
    return LK_OK;
}

/* quantization_config: only bitsandbytes 4-bit NF4 (with or without double quantisation) is
 * read (the weights are then bound by qbase.c); every other method is refused by name. */
static lk_status parse_quant(const char *path, const cJSON *q)
{
    if (!q || cJSON_IsNull(q))
        return LK_OK;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(q, "bnb_4bit_quant_type");
    int in4 = 0, in8 = 0, dq = 0;
    if (!cJSON_IsObject(q))
        return status_fail(LK_ERR_FORMAT, "%s: quantization_config must be an object", path);
    if (!cJSON_IsString(m) || strcmp(m->valuestring, "bitsandbytes") != 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: quantization_config method '%s' is not supported (only "
                           "bitsandbytes 4-bit nf4; hint: use the unquantised model)",
                           path, cJSON_IsString(m) ? m->valuestring : "(none given)");
    LK_TRY(get_bool(path, q, "load_in_4bit", 0, &in4));
    LK_TRY(get_bool(path, q, "load_in_8bit", 0, &in8));
    LK_TRY(get_bool(path, q, "bnb_4bit_use_double_quant", 0, &dq));
    if (!in4 || in8)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: bitsandbytes %s is not supported (only load_in_4bit with nf4)",
                           path, in8 ? "8-bit (load_in_8bit)" : "without load_in_4bit");
    /* transformers' BitsAndBytesConfig defaults bnb_4bit_quant_type to fp4 */
    const char *type = cJSON_IsString(t) ? t->valuestring : "fp4";
    if (strcmp(type, "nf4") != 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: bitsandbytes bnb_4bit_quant_type '%s' is not supported (only nf4)",
                           path, type);
    return LK_OK;
}

static lk_status parse_flags(const char *path, const cJSON *j, struct lk_model_config *c)
{
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return status_fail(LK_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (only silu)",
                           path, cJSON_IsString(act) ? act->valuestring : "?");
    LK_TRY(parse_quant(path, cJSON_GetObjectItemCaseSensitive(j, "quantization_config")));
    int attn_bias = 0;
    LK_TRY(get_bool(path, j, "tie_word_embeddings", 0, &c->tie_word_embeddings));
    LK_TRY(get_bool(path, j, "attention_bias", 0, &attn_bias));
    LK_TRY(get_bool(path, j, "mlp_bias", 0, &c->mlp_bias));
    int qwen = strcmp(c->arch, "qwen2") == 0;
    c->qkv_bias = qwen || attn_bias;
    c->o_bias = !qwen && attn_bias;
    if (qwen)
        c->mlp_bias = 0;
    return LK_OK;
}

lk_status config_parse(const char *path, const char *text, size_t len, struct lk_model_config *c)
{
    memset(c, 0, sizeof *c);
    cJSON *j;
    LK_TRY(json_parse(path, text, len, &j));
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return status_fail(LK_ERR_FORMAT, "%s: not a JSON object", path);
    }
    lk_status s = parse_arch(path, j, c);
    if (s == LK_OK)
        s = parse_sizes(path, j, c);
    if (s == LK_OK)
        s = get_num(path, j, "rms_norm_eps", 1e-6, &c->rms_norm_eps);
    if (s == LK_OK)
        s = parse_rope(path, j, c);
    if (s == LK_OK)
        s = parse_window(path, j, c);
    if (s == LK_OK)
        s = parse_flags(path, j, c);
    if (s == LK_OK)
        s = parse_ids(path, j, c);
    cJSON_Delete(j);
    return s;
}

/* The hyper-parameters of a GGUF model file (its tensor table decides tied embeddings and
 * biases). */
static lk_status config_load_gguf(const char *path, struct lk_model_config *out)
{
    gguf_file f;
    LK_TRY(gguf_open(&f, path));
    lk_status s = config_from_gguf(&f, out);
    gguf_close(&f);
    return s;
}

lk_status lk_config_load(const char *dir, struct lk_model_config *out)
{
    if (model_path_is_gguf(dir))
        return config_load_gguf(dir, out);
    char *path = path_join(dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    if (!path)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    lk_status s = read_text_file(path, 1u << 20, &text, &len);
    if (s == LK_OK)
        s = config_parse(path, text, len, out);
    free(text);
    free(path);
    return s;
}

/* "org/name" of a Hugging Face hub cache path ".../models--org--name/snapshots/REV[/...]" (the
 * cache spells '/' in the id as "--"); NULL when abs is not such a path. Heap, caller frees. */
static char *hub_id(const char *abs)
{
    const char *m = strstr(abs, "/models--"), *snap = m ? strstr(m, "/snapshots/") : NULL;
    if (!snap || !snap[11] || strchr(m + 9, '/') != snap)
        return NULL;
    const char *name = m + 9, *sep = strstr(name, "--");
    if (sep && sep >= snap) /* an id without an org ("gpt2") */
        sep = NULL;
    if (name == snap || sep == name || (sep && sep + 2 == snap))
        return NULL;
    char *id = strndup(name, (size_t)(snap - name));
    if (id && sep) { /* the first "--" is the org/name separator */
        id[sep - name] = '/';
        memmove(id + (sep - name) + 1, id + (sep - name) + 2, strlen(id + (sep - name) + 2) + 1);
    }
    return id;
}

lk_status lk_model_name_or_path(const char *path, char **out)
{
    *out = NULL;
    char *abs = path ? realpath(path, NULL) : NULL;
    if (!abs)
        return status_fail(LK_ERR_IO, "%s: cannot resolve the model's path: %s",
                           path ? path : "(null)", strerror(errno));
    char *id = hub_id(abs);
    if (id) {
        free(abs);
        abs = id;
    }
    *out = abs;
    return LK_OK;
}
