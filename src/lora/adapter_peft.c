/* adapter_peft.c — LoRA adapters as Hugging Face PEFT folders (read and write). Follows PEFT 0.13
 * (peft/tuners/lora): keys base_model.model.<module>.lora_A.weight [r, in] / lora_B.weight
 * [out, r] / lora_magnitude_vector [out] (DoRA); scaling = lora_alpha / r, or / sqrt(r) with
 * use_rslora; rank_pattern/alpha_pattern keys are regexes matched as current PEFT does
 * (utils/other.py get_pattern_key: re.match(rf"(.*\.)?({key})$", module_name), first matching key
 * in order, rank and alpha looked up separately). PEFT 0.13 matched ".*\.{key}$" over the chained
 * keys of both patterns; the two agree unless one module matches keys of both patterns or a key is
 * the whole module name. Calls into adapter.c only (of the adapter files). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lora/adapter.h"

#include <math.h>
#include <pcre2.h>
#include <string.h>

#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"
#include "core/tensor.h"
#include "formats/safetensors.h"

/* ---- PEFT: adapter_config.json ---- */

typedef struct {
    int64_t r;
    double alpha;
    int use_rslora, use_dora;
    const cJSON *rank_pattern, *alpha_pattern; /* objects or NULL, inside the parsed config */
} peft_config;

static lk_status cfg_number(const char *path, const cJSON *j, const char *key, double def,
                            double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LK_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return status_fail(LK_ERR_FORMAT, "%s: '%s' must be a finite number", path, key);
    *out = v->valuedouble;
    return LK_OK;
}

static int cfg_bool(const cJSON *j, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, key));
}

/* A key that would change the maths in a way lorakit does not implement: refuse it. */
static lk_status cfg_refuse(const char *path, const cJSON *j)
{
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (pt && (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") != 0))
        return status_fail(LK_ERR_UNSUPPORTED, "%s: peft_type '%s' is not supported (LORA only)",
                           path, cJSON_IsString(pt) ? pt->valuestring : "?");
    if (cfg_bool(j, "fan_in_fan_out"))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: fan_in_fan_out true (GPT-2 Conv1D layout) is "
                           "not supported",
                           path);
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (bias && !cJSON_IsNull(bias) &&
        (!cJSON_IsString(bias) || strcmp(bias->valuestring, "none") != 0))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: bias '%s' is not supported (only \"none\": "
                           "trained biases are not part of a LoRA adapter here)",
                           path, cJSON_IsString(bias) ? bias->valuestring : "?");
    if (cfg_bool(j, "lora_bias"))
        return status_fail(LK_ERR_UNSUPPORTED, "%s: lora_bias true is not supported", path);
    const cJSON *mts = cJSON_GetObjectItemCaseSensitive(j, "modules_to_save");
    if (cJSON_IsArray(mts) && cJSON_GetArraySize(mts) > 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: modules_to_save (fully trained copies of "
                           "modules such as lm_head) is not supported",
                           path);
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(j, "layer_replication");
    if (lr && !cJSON_IsNull(lr))
        return status_fail(LK_ERR_UNSUPPORTED, "%s: layer_replication is not supported", path);
    return LK_OK;
}

static lk_status parse_peft_config(const char *path, const cJSON *j, peft_config *c, lk_adapter *a)
{
    double r = 0, alpha = 0;
    if (!cJSON_IsObject(j))
        return status_fail(LK_ERR_FORMAT, "%s: not a JSON object", path);
    LK_TRY(cfg_refuse(path, j));
    LK_TRY(cfg_number(path, j, "r", 8, &r));
    LK_TRY(cfg_number(path, j, "lora_alpha", 8, &alpha));
    if (r < 1 || r > (1 << 20) || floor(r) != r)
        return status_fail(LK_ERR_FORMAT, "%s: r = %g must be a positive integer", path, r);
    c->r = (int64_t)r;
    c->alpha = alpha;
    c->use_rslora = cfg_bool(j, "use_rslora");
    c->use_dora = cfg_bool(j, "use_dora");
    c->rank_pattern = cJSON_GetObjectItemCaseSensitive(j, "rank_pattern");
    c->alpha_pattern = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    for (const cJSON *p = c->rank_pattern; p; p = p == c->rank_pattern ? c->alpha_pattern : NULL)
        if (!cJSON_IsNull(p) && !cJSON_IsObject(p))
            return status_fail(LK_ERR_FORMAT, "%s: rank_pattern/alpha_pattern must be objects",
                               path);
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (cJSON_IsString(bm)) {
        free(a->base_model);
        if (!(a->base_model = strdup(bm->valuestring)))
            return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    a->rank = c->r;
    a->alpha = alpha;
    a->use_rslora = c->use_rslora;
    a->use_dora = c->use_dora;
    return LK_OK;
}

/* Python's re.match(rf"(.*\.)?({key})$", name) with PCRE2 (anchored at the start). 1 match, 0
 * not, -1 for a key that is not a valid regex. */
static int pattern_match(const char *key, const char *name)
{
    size_t n = strlen(key) + 16;
    char *re = malloc(n);
    if (!re)
        return -1;
    snprintf(re, n, "(.*\\.)?(%s)$", key);
    int err;
    PCRE2_SIZE off;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &off, NULL);
    free(re);
    if (!code)
        return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    int rc = md ? pcre2_match(code, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    return rc >= 0 ? 1 : (rc == PCRE2_ERROR_NOMATCH ? 0 : -1);
}

/* The value of the first key of pattern (an object or NULL) matching name, or NULL. */
static lk_status pattern_lookup(const char *path, const cJSON *pattern, const char *name,
                                const cJSON **hit)
{
    *hit = NULL;
    for (const cJSON *e = cJSON_IsObject(pattern) ? pattern->child : NULL; e; e = e->next) {
        int m = pattern_match(e->string, name);
        if (m < 0)
            return status_fail(LK_ERR_FORMAT, "%s: pattern key '%s' is not a valid regex", path,
                               e->string);
        if (m) {
            if (!cJSON_IsNumber(e))
                return status_fail(LK_ERR_FORMAT, "%s: pattern '%s' must map to a number", path,
                                   e->string);
            *hit = e;
            return LK_OK;
        }
    }
    return LK_OK;
}

/* r and alpha of module name ("model.layers.3.self_attn.q_proj") as PEFT decides them. */
static lk_status module_hparams(const char *path, const peft_config *c, const char *name,
                                int64_t *r, double *alpha)
{
    const cJSON *rv, *av;
    LK_TRY(pattern_lookup(path, c->rank_pattern, name, &rv));
    LK_TRY(pattern_lookup(path, c->alpha_pattern, name, &av));
    double rd = rv ? rv->valuedouble : (double)c->r;
    if (rd < 1 || rd > (1 << 20) || floor(rd) != rd)
        return status_fail(LK_ERR_FORMAT,
                           "%s: rank_pattern gives %s r = %g (must be a positive "
                           "integer)",
                           path, name, rd);
    if (av && !isfinite(av->valuedouble))
        return status_fail(LK_ERR_FORMAT, "%s: alpha_pattern gives %s a non-finite alpha", path,
                           name);
    *r = (int64_t)rd;
    *alpha = av ? av->valuedouble : c->alpha;
    return LK_OK;
}

/* ---- PEFT: adapter_model.safetensors ---- */

typedef enum { PART_A, PART_B, PART_MAG } peft_part;

/* Parse "base_model.model.model.layers.{L}.{self_attn|mlp}.{mod}.{lora_A.weight|lora_B.weight|
 * lora_magnitude_vector[.weight]}". Returns 0 and fills the fields, or -1. */
static int parse_key(const char *key, int64_t *layer, lk_module *kind, peft_part *part)
{
    const char *pre = "base_model.model.model.layers.";
    size_t pl = strlen(pre);
    if (strncmp(key, pre, pl) != 0)
        return -1;
    char *e;
    long long l = strtoll(key + pl, &e, 10);
    if (e == key + pl || *e != '.' || l < 0 || l > 100000)
        return -1;
    *layer = l;
    const char *p = e + 1;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        char stem[64];
        snprintf(stem, sizeof stem, "%s.%s.", adapter_parent((lk_module)k),
                 lk_module_name((lk_module)k));
        if (strncmp(p, stem, strlen(stem)) != 0)
            continue;
        const char *s = p + strlen(stem);
        *kind = (lk_module)k;
        if (strcmp(s, "lora_A.weight") == 0)
            *part = PART_A;
        else if (strcmp(s, "lora_B.weight") == 0)
            *part = PART_B;
        else if (strcmp(s, "lora_magnitude_vector") == 0 ||
                 strcmp(s, "lora_magnitude_vector.weight") == 0)
            *part = PART_MAG;
        else
            return -1;
        return 0;
    }
    return -1;
}

/* fp32 copy of a F32/F16/BF16 tensor with the expected element count. */
static lk_status tensor_to_f32(const char *path, const tensor_view *t, float **out)
{
    *out = NULL;
    if (t->dt != DT_F32 && t->dt != DT_F16 && t->dt != DT_BF16)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' has dtype %s (F32, F16, BF16 "
                           "supported)",
                           path, t->name, dtype_name(t->dt));
    int64_t n = tensor_numel(t);
    float *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
    if (!buf)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory for '%s'", path, t->name);
    convert_to_f32(t->dt, t->data, buf, n, 1);
    *out = buf;
    return LK_OK;
}

/* Find and check the A/B (and magnitude) of one module, given its A tensor. */
static lk_status peft_module(const char *path, const st_file *f, const peft_config *c,
                             const tensor_view *ta, int64_t layer, lk_module kind,
                             adapter_module *m)
{
    char name[256], key[320], sa[64], sb[64];
    snprintf(name, sizeof name, "model.layers.%lld.%s.%s", (long long)layer, adapter_parent(kind),
             lk_module_name(kind));
    snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", name);
    const tensor_view *tb = st_get(f, key);
    if (!tb)
        return status_fail(LK_ERR_FORMAT, "%s: '%s' has lora_A but no lora_B", path, name);
    if (ta->ndim != 2 || tb->ndim != 2 || ta->shape[0] != tb->shape[1] || ta->shape[0] < 1)
        return status_fail(LK_ERR_SHAPE,
                           "%s: %s: lora_A %s and lora_B %s do not form "
                           "[r, in] and [out, r] with one rank r",
                           path, name, shape_str(ta->shape, ta->ndim, sa, sizeof sa),
                           shape_str(tb->shape, tb->ndim, sb, sizeof sb));
    int64_t r = 0;
    LK_TRY(module_hparams(path, c, name, &r, &m->alpha));
    if (r != ta->shape[0])
        return status_fail(LK_ERR_SHAPE,
                           "%s: %s: lora_A has rank %lld but the config says r = "
                           "%lld (rank_pattern?)",
                           path, name, (long long)ta->shape[0], (long long)r);
    m->layer = layer;
    m->kind = kind;
    m->r = r;
    m->in = ta->shape[1];
    m->out = tb->shape[0];
    m->scale = c->use_rslora ? m->alpha / sqrt((double)r) : m->alpha / (double)r;
    LK_TRY(tensor_to_f32(path, ta, &m->A));
    LK_TRY(tensor_to_f32(path, tb, &m->B));
    snprintf(key, sizeof key, "base_model.model.%s.lora_magnitude_vector", name);
    const tensor_view *tm = st_get(f, key);
    if (!tm) {
        snprintf(key, sizeof key, "base_model.model.%s.lora_magnitude_vector.weight", name);
        tm = st_get(f, key);
    }
    if (c->use_dora != (tm != NULL))
        return status_fail(LK_ERR_FORMAT,
                           "%s: %s: use_dora is %s but the magnitude vector is "
                           "%s",
                           path, name, c->use_dora ? "true" : "false", tm ? "present" : "missing");
    if (tm && (tm->ndim != 1 || tm->shape[0] != m->out))
        return status_fail(LK_ERR_SHAPE, "%s: %s: DoRA magnitude %s, expected [%lld]", path, name,
                           shape_str(tm->shape, tm->ndim, sa, sizeof sa), (long long)m->out);
    return tm ? tensor_to_f32(path, tm, &m->mag) : LK_OK;
}

static lk_status peft_tensors(lk_adapter *a, const char *path, const st_file *f,
                              const peft_config *c)
{
    for (int i = 0; i < f->n; i++) {
        const tensor_view *t = &f->tensors[i];
        int64_t layer;
        lk_module kind;
        peft_part part;
        if (parse_key(t->name, &layer, &kind, &part) != 0)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "%s: tensor '%s' is not a LoRA factor of a decoder linear "
                               "(q/k/v/o/gate/up/down_proj); embedding or lm_head adapters are "
                               "not supported",
                               path, t->name);
        if (part != PART_A)
            continue; /* B and magnitude are read with their A; orphans are caught below */
        adapter_module m = {0};
        lk_status s = peft_module(path, f, c, t, layer, kind, &m);
        if (s == LK_OK)
            s = adapter_add_module(a, &m);
        else
            adapter_module_free(&m);
        if (s != LK_OK)
            return s;
    }
    int64_t want = a->n_mods * (c->use_dora ? 3 : 2);
    if (want != f->n)
        return status_fail(LK_ERR_FORMAT,
                           "%s: %d tensors but %lld modules with lora_A: a "
                           "lora_B or magnitude without its lora_A",
                           path, f->n, (long long)a->n_mods);
    return LK_OK;
}

/* The training-base record in the weights' __metadata__ (string values; others are ignored). */
static void peft_read_record(lk_adapter *a, const st_file *f, const char *path)
{
    const char *v[ADAPTER_BASE_KEYS];
    for (int k = 0; k < ADAPTER_BASE_KEYS; k++)
        v[k] = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(f->metadata, adapter_base_keys[k]));
    adapter_base_from_values(a, v, path);
}

lk_status adapter_load_peft(const char *dir, lk_adapter **out)
{
    char *cpath = path_join(dir, "adapter_config.json");
    char *wpath = path_join(dir, "adapter_model.safetensors");
    char *bin = path_join(dir, "adapter_model.bin");
    cJSON *j = NULL;
    st_file f = {0};
    lk_adapter *a = NULL;
    peft_config c = {0};
    lk_status s = cpath && wpath && bin ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK && !file_exists(wpath) && file_exists(bin))
        s = status_fail(LK_ERR_UNSUPPORTED,
                        "%s: only the legacy pickle adapter_model.bin is present (hint: re-save "
                        "with PEFT's save_pretrained(safe_serialization=True) to get "
                        "adapter_model.safetensors)",
                        dir);
    if (s == LK_OK)
        s = json_read_file(cpath, 16u << 20, &j);
    if (s == LK_OK)
        s = adapter_new(dir, "peft", &a);
    if (s == LK_OK)
        s = parse_peft_config(cpath, j, &c, a);
    if (s == LK_OK)
        s = st_open(&f, wpath, 1);
    if (s == LK_OK)
        s = peft_tensors(a, wpath, &f, &c);
    if (s == LK_OK)
        s = adapter_finish(a);
    if (s == LK_OK)
        peft_read_record(a, &f, wpath);
    st_close(&f);
    cJSON_Delete(j);
    free(cpath);
    free(wpath);
    free(bin);
    if (s != LK_OK) {
        lk_adapter_free(a);
        return s;
    }
    *out = a;
    return LK_OK;
}

/* ---- PEFT writing ---- */

/* Most frequent value among the modules (r when want_r, else alpha). */
static double most_common(const lk_adapter *a, int want_r)
{
    double best = want_r ? (double)a->mods[0].r : a->mods[0].alpha;
    int64_t best_n = 0;
    for (int64_t i = 0; i < a->n_mods; i++) {
        double v = want_r ? (double)a->mods[i].r : a->mods[i].alpha;
        int64_t n = 0;
        for (int64_t j = 0; j < a->n_mods; j++)
            n += (want_r ? (double)a->mods[j].r : a->mods[j].alpha) == v;
        if (n > best_n)
            best = v, best_n = n;
    }
    return best;
}

static cJSON *peft_config_json(const lk_adapter *a, const char *base_model)
{
    cJSON *j = cJSON_CreateObject();
    double r = most_common(a, 1), alpha = most_common(a, 0);
    cJSON *rp = cJSON_CreateObject(), *ap = cJSON_CreateObject(), *tm = cJSON_CreateArray();
    unsigned mask = 0;
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *m = &a->mods[i];
        char key[128];
        /* PEFT matches "(.*\.)?(KEY)$" (0.13: ".*\.KEY$") against
         * "model.layers.L.self_attn.q_proj": this key works with both */
        snprintf(key, sizeof key, "layers.%lld.%s.%s", (long long)m->layer, adapter_parent(m->kind),
                 lk_module_name(m->kind));
        if ((double)m->r != r)
            cJSON_AddNumberToObject(rp, key, (double)m->r);
        /* an alpha entry also where only r differs: PEFT 0.13 took both from the first key
         * matching in rank_pattern then alpha_pattern */
        if (m->alpha != alpha || (double)m->r != r)
            cJSON_AddNumberToObject(ap, key, m->alpha);
        mask |= 1u << m->kind;
    }
    for (int k = 0; k < LK_MOD_COUNT; k++)
        if (mask & (1u << k))
            cJSON_AddItemToArray(tm, cJSON_CreateString(lk_module_name((lk_module)k)));
    cJSON_AddItemToObject(j, "alpha_pattern", ap);
    cJSON_AddStringToObject(j, "base_model_name_or_path", base_model);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNumberToObject(j, "lora_alpha", alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", 0.0);
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", r);
    cJSON_AddItemToObject(j, "rank_pattern", rp);
    cJSON_AddItemToObject(j, "target_modules", tm);
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(j, "use_dora", a->use_dora);
    cJSON_AddBoolToObject(j, "use_rslora", a->use_rslora);
    return j;
}

static lk_status write_text(const char *dir, const char *name, const char *text, int force)
{
    char *p = path_join(dir, name);
    if (!p)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    afile f;
    lk_status s = afile_open(&f, p, force);
    free(p);
    if (s == LK_OK)
        s = afile_write(&f, text, strlen(text));
    if (s == LK_OK)
        return afile_commit(&f);
    if (f.f)
        afile_abort(&f);
    return s;
}

static lk_status peft_write_tensors(const lk_adapter *a, const char *dir)
{
    int per = a->use_dora ? 3 : 2;
    int64_t n = a->n_mods * per;
    tensor_view *v = calloc((size_t)n, sizeof *v);
    char(*names)[160] = calloc((size_t)n, sizeof *names);
    char *path = path_join(dir, "adapter_model.safetensors");
    lk_status s = v && names && path ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < a->n_mods && s == LK_OK; i++) {
        const adapter_module *m = &a->mods[i];
        static const char *const part[3] = {"lora_A.weight", "lora_B.weight",
                                            "lora_magnitude_vector"};
        for (int p = 0; p < per; p++) {
            tensor_view *t = &v[i * per + p];
            snprintf(names[i * per + p], sizeof names[0],
                     "base_model.model.model.layers.%lld.%s.%s.%s", (long long)m->layer,
                     adapter_parent(m->kind), lk_module_name(m->kind), part[p]);
            t->name = names[i * per + p];
            t->dt = DT_F32;
            t->ndim = p == 2 ? 1 : 2;
            t->shape[0] = p == 0 ? m->r : m->out;
            t->shape[1] = p == 0 ? m->in : m->r;
            t->data = p == 0 ? m->A : p == 1 ? m->B : m->mag;
            t->nbytes = (size_t)tensor_numel(t) * 4;
        }
    }
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "pt");
    for (int k = 0; a->trained_on.recorded && k < ADAPTER_BASE_KEYS; k++)
        if (*adapter_base_field(&a->trained_on, k))
            cJSON_AddStringToObject(meta, adapter_base_keys[k],
                                    adapter_base_field(&a->trained_on, k));
    if (s == LK_OK)
        s = st_write(path, v, (int)n, meta, NULL, NULL, 0);
    cJSON_Delete(meta);
    free(v);
    free(names);
    free(path);
    return s;
}

lk_status lk_adapter_save_peft(const lk_adapter *a, const char *dir, int force)
{
    return adapter_save_peft_as(a, dir, a->base_model, force);
}

lk_status adapter_save_peft_as(const lk_adapter *a, const char *dir, const char *base_model,
                               int force)
{
    LK_TRY(adapter_check_ready(a));
    char *tmp = NULL;
    LK_TRY(tmpdir_create(dir, force, &tmp));
    cJSON *j = peft_config_json(a, base_model);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    lk_status s = text ? write_text(tmp, "adapter_config.json", text, 0)
                       : status_fail(LK_ERR_NOMEM, "out of memory");
    free(text);
    if (s == LK_OK)
        s = peft_write_tensors(a, tmp);
    if (s == LK_OK)
        s = tmpdir_commit(tmp, dir, force);
    if (s != LK_OK)
        remove_tree(tmp);
    free(tmp);
    return s;
}
