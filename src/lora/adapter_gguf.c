/* adapter_gguf.c — LoRA adapters as llama.cpp stores them (GGUF, general.type "adapter").
 * Follows llama.cpp's convert_lora_to_gguf.py (writer) and llama-adapter.cpp (loader): tensors
 * blk.N.<stem>.weight.lora_a with ne {in, r} and .lora_b with ne {r, out} (the PyTorch [r, in] and
 * [out, r] row-major layouts), q/k rows of B permuted like the base weights of Llama-architecture
 * models, and scale = alpha/r when adapter.lora.alpha != 0, else 1 (times --lora-scaled).
 * Calls into adapter.c only (of the adapter files). */
#include <math.h>
#include <string.h>

#include "lora/adapter.h"
#include "formats/gguf.h"
#include "core/status.h"
#include "core/tensor.h"

/* "blk.N.<stem>.weight.lora_a|lora_b" → layer, kind, is_b; -1 if not such a name. */
static int parse_name(const char *name, int64_t *layer, lk_module *kind, int *is_b)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    char *e;
    long long l = strtoll(name + 4, &e, 10);
    if (e == name + 4 || *e != '.' || l < 0 || l > 100000)
        return -1;
    *layer = l;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        const char *stem = adapter_gguf_stem((lk_module)k);
        size_t n = strlen(stem);
        if (strncmp(e + 1, stem, n) != 0)
            continue;
        const char *s = e + 1 + n;
        if (strcmp(s, ".weight.lora_a") != 0 && strcmp(s, ".weight.lora_b") != 0)
            continue;
        *kind = (lk_module)k;
        *is_b = s[13] == 'b';
        return 0;
    }
    return -1;
}

/* fp32 copy of a 2-D GGUF tensor (quantised ones must have finite scales). */
static lk_status gguf_to_f32(const gguf_file *f, const gguf_tensor *t, float **out)
{
    const char *path = f->map.path;
    const gguf_type_traits *tt = gguf_type_info(t->type);
    *out = NULL;
    LK_TRY(gguf_check_scales(f, t));
    if (!tt->to_f32)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is %s, which needs the "
                           "quantisation kernels (not in this build; F32, F16, BF16 read)",
                           path, t->name, tt->name);
    int64_t n = t->ne[0] * t->ne[1];
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    int64_t row = gguf_row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < t->ne[1]; r++)
        tt->to_f32(t->data + r * row, buf + r * t->ne[0], t->ne[0]);
    *out = buf;
    return LK_OK;
}

static lk_status load_module(const gguf_file *f, const gguf_tensor *ta, int64_t layer,
                             lk_module kind, double alpha, adapter_module *m)
{
    const char *path = f->map.path;
    char bname[GGUF_MAX_NAME + 8], sa[64], sb[64];
    snprintf(bname, sizeof bname, "blk.%lld.%s.weight.lora_b", (long long)layer,
             adapter_gguf_stem(kind));
    const gguf_tensor *tb = gguf_find_tensor(f, bname);
    if (!tb)
        return status_fail(LK_ERR_FORMAT, "%s: '%s' has no matching '%s'", path, ta->name, bname);
    /* llama-adapter.cpp: a.ne[1] == b.ne[0] is the rank; else "lora_a tensor is not transposed" */
    if (ta->n_dims != 2 || tb->n_dims != 2 || ta->ne[1] != tb->ne[0])
        return status_fail(LK_ERR_SHAPE,
                           "%s: '%s' ne %s and '%s' ne %s: expected {in, r} and "
                           "{r, out} with one rank r",
                           path, ta->name, shape_str(ta->ne, ta->n_dims, sa, sizeof sa), tb->name,
                           shape_str(tb->ne, tb->n_dims, sb, sizeof sb));
    m->layer = layer;
    m->kind = kind;
    m->r = ta->ne[1];
    m->in = ta->ne[0];
    m->out = tb->ne[1];
    m->alpha = alpha != 0 ? alpha : (double)m->r; /* alpha 0: scale 1 */
    m->scale = m->alpha / (double)m->r;
    LK_TRY(gguf_to_f32(f, ta, &m->A));
    return gguf_to_f32(f, tb, &m->B);
}

/* The training-base record: string key-value pairs under adapter_base_keys (lora-export writes
 * them; llama.cpp ignores keys it does not know). A key of another type is ignored: a record
 * never makes a load fail. */
static lk_status read_record(const gguf_file *f, lk_adapter *a)
{
    char *v[ADAPTER_BASE_KEYS] = {0};
    for (int k = 0; k < ADAPTER_BASE_KEYS; k++)
        if (gguf_find_kv(f, adapter_base_keys[k]) &&
            gguf_get_str(f, adapter_base_keys[k], &v[k]) != LK_OK)
            log_warn("%s: '%s' is not a string: ignored", f->map.path, adapter_base_keys[k]);
    adapter_base_from_values(a, (const char *const *)v, f->map.path);
    for (int k = 0; k < ADAPTER_BASE_KEYS; k++)
        free(v[k]);
    return LK_OK;
}

static lk_status check_kvs(const gguf_file *f, lk_adapter *a)
{
    const char *path = f->map.path;
    char *type = NULL, *atype = NULL, *arch = NULL, *name = NULL;
    lk_status s = gguf_get_str(f, "general.type", &type);
    if (s != LK_OK || strcmp(type, "adapter") != 0)
        s = status_fail(LK_ERR_FORMAT,
                        "%s: general.type is '%s', expected 'adapter' (hint: a "
                        "model file, not a LoRA adapter?)",
                        path, type ? type : "(missing)");
    if (s == LK_OK &&
        (gguf_get_str(f, "adapter.type", &atype) != LK_OK || strcmp(atype, "lora") != 0))
        s = status_fail(LK_ERR_UNSUPPORTED, "%s: adapter.type is '%s', only 'lora' is supported",
                        path, atype ? atype : "(missing)");
    if (s == LK_OK)
        s = gguf_get_str(f, "general.architecture", &arch);
    if (s == LK_OK)
        snprintf(a->arch, sizeof a->arch, "%s", arch);
    if (s == LK_OK && gguf_find_kv(f, "general.name") &&
        gguf_get_str(f, "general.name", &name) == LK_OK) {
        free(a->base_model);
        a->base_model = name;
        name = NULL;
    }
    a->alpha = 0;
    if (s == LK_OK && gguf_find_kv(f, "adapter.lora.alpha"))
        s = gguf_get_f64(f, "adapter.lora.alpha", &a->alpha);
    if (s == LK_OK && !isfinite(a->alpha))
        s = status_fail(LK_ERR_NUMERIC, "%s: adapter.lora.alpha is not finite", path);
    free(type);
    free(atype);
    free(arch);
    free(name);
    return s == LK_OK ? read_record(f, a) : s;
}

static lk_status load_tensors(const gguf_file *f, lk_adapter *a)
{
    int64_t n_b = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        int64_t layer;
        lk_module kind;
        int is_b;
        if (parse_name(t->name, &layer, &kind, &is_b) != 0)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "%s: tensor '%s' is not the LoRA factor of a "
                               "decoder linear (blk.N.attn_q/k/v/output, ffn_gate/up/down"
                               ".weight.lora_a/b)",
                               f->map.path, t->name);
        if (is_b) {
            n_b++;
            continue;
        }
        adapter_module m = {0};
        lk_status s = load_module(f, t, layer, kind, a->alpha, &m);
        if (s == LK_OK)
            s = adapter_add_module(a, &m);
        else {
            free(m.A);
            free(m.B);
        }
        if (s != LK_OK)
            return s;
    }
    if (n_b != a->n_mods)
        return status_fail(LK_ERR_FORMAT, "%s: %lld lora_b tensors but %lld lora_a", f->map.path,
                           (long long)n_b, (long long)a->n_mods);
    return LK_OK;
}

lk_status adapter_load_gguf(const char *path, lk_adapter **out)
{
    gguf_file f;
    lk_adapter *a = NULL;
    *out = NULL;
    LK_TRY(gguf_open(&f, path));
    lk_status s = adapter_new(path, "gguf", &a);
    if (s == LK_OK)
        s = check_kvs(&f, a);
    if (s == LK_OK)
        s = load_tensors(&f, a);
    if (s == LK_OK)
        s = adapter_finish(a);
    gguf_close(&f);
    if (s != LK_OK) {
        lk_adapter_free(a);
        return s;
    }
    a->rank = a->mods[0].r;
    /* llama.cpp permutes q/k of LLM_ARCH_LLAMA weights, and so the B rows of their adapters */
    a->gguf_rows = strcmp(a->arch, "llama") == 0;
    *out = a;
    return LK_OK;
}

/* ---- writing ---- */

typedef struct {
    const lk_adapter *a;
    const struct lk_model_config *cfg;
    int permute; /* Llama architecture: permute q/k rows of B */
    int fold;    /* multiply B by each module's scale */
    uint32_t type;
} gguf_export;

/* Type of a tensor with rows of cols values: the asked type, or F16 when the rows do not fill
 * whole blocks (B's rows hold r values: convert_hf_to_gguf.py falls back to F16 the same way). */
static uint32_t tensor_type(uint32_t type, int64_t cols)
{
    return cols % gguf_type_info(type)->blck ? (uint32_t)GGML_F16 : type;
}

/* Tensor i: module i/2, A (even) or B (odd), converted to the output type. */
static lk_status fill_export(void *user, int64_t i, void *dst)
{
    const gguf_export *e = user;
    const adapter_module *m = &e->a->mods[i / 2];
    int64_t rows = i % 2 ? m->out : m->r, cols = i % 2 ? m->r : m->in;
    const float *src = i % 2 ? m->B : m->A;
    float *tmp = NULL;
    if (i % 2 && (e->fold || (e->permute && (m->kind == LK_MOD_Q || m->kind == LK_MOD_K)))) {
        if (!(tmp = malloc((size_t)(rows * cols) * sizeof *tmp)))
            return status_fail(LK_ERR_NOMEM, "out of memory");
        for (int64_t k = 0; k < rows * cols; k++)
            tmp[k] = e->fold ? (float)(src[k] * m->scale) : src[k];
        if (e->permute && (m->kind == LK_MOD_Q || m->kind == LK_MOD_K)) {
            int64_t heads = m->kind == LK_MOD_Q ? e->cfg->n_heads : e->cfg->n_kv_heads;
            lk_status s = adapter_permute_rows(tmp, rows, cols, heads, 0);
            if (s != LK_OK) {
                free(tmp);
                return s;
            }
        }
        src = tmp;
    }
    uint32_t type = tensor_type(e->type, cols);
    const gguf_type_traits *tt = gguf_type_info(type);
    int64_t row = gguf_row_size(type, cols);
    for (int64_t r = 0; r < rows; r++)
        tt->from_f32(src + r * cols, (uint8_t *)dst + r * row, cols);
    free(tmp);
    return LK_OK;
}

/* alpha to write: the common alpha when every module has scale alpha/r (no rsLoRA), 0 when all
 * scales are exactly 1; otherwise -1 (fold the scales into B and write 0). */
static double export_alpha(const lk_adapter *a)
{
    int all_one = 1, common = !a->use_rslora;
    for (int64_t i = 0; i < a->n_mods; i++) {
        all_one &= a->mods[i].scale == 1.0;
        common &= a->mods[i].alpha == a->mods[0].alpha;
    }
    return all_one ? 0 : common ? a->mods[0].alpha : -1;
}

static lk_status export_type(const char *dt, uint32_t *type)
{
    static const struct {
        const char *name;
        uint32_t type;
    } map[] = {{"f32", GGML_F32}, {"f16", GGML_F16}, {"bf16", GGML_BF16}, {"q8_0", GGML_Q8_0}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(dt, map[i].name) == 0) {
            *type = map[i].type;
            if (!gguf_type_info(*type)->from_f32)
                return status_fail(LK_ERR_UNSUPPORTED,
                                   "GGUF export as %s needs the "
                                   "quantisation kernels (not in this build; use f32, f16 or "
                                   "bf16)",
                                   dt);
            return LK_OK;
        }
    return status_fail(LK_ERR_ARG, "GGUF export: dtype '%s' (f32, f16, bf16, q8_0)", dt);
}

static lk_status add_export_tensors(gguf_writer *w, const lk_adapter *a, uint32_t type)
{
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *m = &a->mods[i];
        char name[GGUF_MAX_NAME + 16];
        int64_t ne_a[2] = {m->in, m->r}, ne_b[2] = {m->r, m->out};
        snprintf(name, sizeof name, "blk.%lld.%s.weight.lora_a", (long long)m->layer,
                 adapter_gguf_stem(m->kind));
        LK_TRY(gguf_add_tensor(w, name, tensor_type(type, m->in), 2, ne_a, NULL));
        name[strlen(name) - 1] = 'b';
        LK_TRY(gguf_add_tensor(w, name, tensor_type(type, m->r), 2, ne_b, NULL));
    }
    return LK_OK;
}

lk_status lk_adapter_save_gguf(const lk_adapter *a, const struct lk_model_config *cfg,
                               const char *path, const char *dt, int force)
{
    const char *arch;
    gguf_export e = {.a = a, .cfg = cfg};
    LK_TRY(adapter_check_ready(a));
    if (a->use_dora)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: DoRA adapter: llama.cpp cannot apply DoRA's magnitude vectors "
                           "(hint: merge it into the base with lora-merge instead)",
                           a->path);
    int perm = adapter_gguf_arch(cfg, &arch);
    if (perm < 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "GGUF export: architecture '%s' has no llama.cpp "
                           "mapping here",
                           cfg->arch);
    LK_TRY(export_type(dt, &e.type));
    LK_TRY(adapter_check_base(a, cfg));
    e.permute = perm;
    double alpha = export_alpha(a);
    e.fold = alpha < 0;
    gguf_writer *w;
    LK_TRY(gguf_writer_new(&w));
    lk_status s = gguf_set_str(w, "general.architecture", arch);
    if (s == LK_OK)
        s = gguf_set_str(w, "general.type", "adapter");
    if (s == LK_OK && *a->base_model)
        s = gguf_set_str(w, "general.name", a->base_model);
    if (s == LK_OK)
        s = gguf_set_str(w, "adapter.type", "lora");
    if (s == LK_OK)
        s = gguf_set_f32(w, "adapter.lora.alpha", (float)(e.fold ? 0 : alpha));
    for (int k = 0; s == LK_OK && a->trained_on.recorded && k < ADAPTER_BASE_KEYS; k++)
        if (*adapter_base_field(&a->trained_on, k))
            s = gguf_set_str(w, adapter_base_keys[k], adapter_base_field(&a->trained_on, k));
    if (s == LK_OK)
        s = add_export_tensors(w, a, e.type);
    if (s == LK_OK)
        s = gguf_writer_write(w, path, force, fill_export, &e);
    gguf_writer_free(w);
    return s;
}
