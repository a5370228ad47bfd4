/* randmodel.c — a model folder with random weights for any config.json, so that speed and memory
 * can be measured at real shapes (Qwen2.5-0.5B, Llama-3.2-3B) whose weights are not at hand.
 * Matrices ~ N(0, initializer_range²) (transformers' _init_weights), norms = 1, biases ~ N(0, σ²).
 */
#include <string.h>

#include "model/config.h"
#include "model/model.h"
#include "core/rng.h"
#include "core/status.h"

typedef struct {
    const tensor_spec *specs;
    tensor_view *views;
    double std;
    uint64_t seed;
} rand_ctx;

/* Tensor i: an independent stream per tensor, so any subset regenerates identically. */
static lk_status fill_random(void *user, int i, void *dst)
{
    const rand_ctx *c = user;
    const tensor_view *v = &c->views[i];
    int64_t n = tensor_numel(v);
    rng_state r;
    rng_seed(&r, c->seed, (uint64_t)RNG_WEIGHTS << 32 | (uint64_t)i);
    for (int64_t k = 0; k < n; k++) {
        float x = c->specs[i].kind == TK_NORM ? 1.0f : (float)(rng_normal(&r) * c->std);
        if (v->dt == DT_F32)
            ((float *)dst)[k] = x;
        else
            ((uint16_t *)dst)[k] = f32_to_bf16(x);
    }
    return LK_OK;
}

static lk_status write_weights(const char *dir, const struct lk_model_config *cfg, dtype dt,
                               double std, uint64_t seed)
{
    int cap = model_n_specs(cfg);
    tensor_spec *specs = calloc((size_t)cap, sizeof *specs);
    tensor_view *views = calloc((size_t)cap, sizeof *views);
    char *path = path_join(dir, "model.safetensors");
    lk_status s = LK_OK;
    if (!specs || !views || !path) {
        s = status_fail(LK_ERR_NOMEM, "out of memory");
        goto done;
    }
    int n = model_specs(cfg, NULL, specs);
    for (int i = 0; i < n; i++) {
        views[i].name = specs[i].name;
        views[i].dt = dt;
        views[i].ndim = specs[i].ndim;
        memcpy(views[i].shape, specs[i].shape, sizeof specs[i].shape);
        views[i].nbytes = (size_t)tensor_numel(&views[i]) * dtype_size(dt);
    }
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "pt");
    rand_ctx ctx = {.specs = specs, .views = views, .std = std, .seed = seed};
    s = st_write(path, views, n, meta, fill_random, &ctx, 1);
    cJSON_Delete(meta);
done:
    free(specs);
    free(views);
    free(path);
    return s;
}

/* initializer_range from the config text (default 0.02). */
static double init_std(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "initializer_range");
    double std = cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble : 0.02;
    cJSON_Delete(j);
    return std;
}

static lk_status write_config(const char *dir, const char *text, size_t len)
{
    char *path = path_join(dir, "config.json");
    if (!path)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    afile a;
    lk_status s = afile_open(&a, path, 1);
    free(path);
    if (s == LK_OK)
        s = afile_write(&a, text, len);
    if (s == LK_OK)
        return afile_commit(&a);
    if (a.f)
        afile_abort(&a);
    return s;
}

lk_status lk_model_write_random(const char *config_path, const char *out_dir, const char *dtype_s,
                                uint64_t seed)
{
    struct lk_model_config cfg;
    char *text = NULL, *tmp = NULL;
    size_t len = 0;
    dtype dt = strcmp(dtype_s, "f32") == 0 ? DT_F32 : DT_BF16;
    if (strcmp(dtype_s, "f32") != 0 && strcmp(dtype_s, "bf16") != 0)
        return status_fail(LK_ERR_ARG, "random model: dtype '%s' not supported (f32, bf16)",
                           dtype_s);
    LK_TRY(read_text_file(config_path, 1u << 20, &text, &len));
    lk_status s = config_parse(config_path, text, len, &cfg);
    if (s == LK_OK)
        s = tmpdir_create(out_dir, 0, &tmp);
    if (s == LK_OK)
        s = write_config(tmp, text, len);
    if (s == LK_OK)
        s = write_weights(tmp, &cfg, dt, init_std(text), seed);
    if (s == LK_OK)
        s = tmpdir_commit(tmp, out_dir, 0);
    if (s != LK_OK && tmp)
        remove_tree(tmp);
    free(tmp);
    free(text);
    return s;
}
