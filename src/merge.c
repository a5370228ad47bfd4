/* merge.c — merging LoRA adapters into base weights, streaming one tensor at a time:
 *   LoRA: W ← W + Σ_i w_i·s_i·B_i·A_i                          (PEFT LoraLayer.merge)
 *   DoRA: V = W + w·s·B·A,  W ← (m / ‖V‖_row) ⊙ V               (PEFT DoraLinearLayer, rows =
 *         output features; the norm is taken of the merged weight, as PEFT's merge does)
 * The fp32 sum goes through OpenBLAS sgemm; the result is stored in the target type through a
 * row converter (f32/f16/bf16 here; the 4-bit types plug in through gguf_type_traits once the
 * quantisation kernels register theirs). Output: a Hugging Face folder or a llama.cpp GGUF file
 * (merge_gguf.c). Mapped base pages are released after each tensor so that resident memory
 * stays near the largest tensor. */
#include "merge.h"

#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "status.h"

struct lk_merge_params lk_merge_params_default(void)
{
    struct lk_merge_params p = {.dtype = NULL,
                                .base_quant = NULL,
                                .n_threads = 0,
                                .force = 0,
                                .on_tensor = NULL,
                                .user = NULL};
    return p;
}

int merge_parse_tensor(const char *name, int64_t *layer, lk_module *kind)
{
    const char *pre = "model.layers.";
    size_t pl = strlen(pre);
    if (strncmp(name, pre, pl) != 0)
        return -1;
    char *e;
    long long l = strtoll(name + pl, &e, 10);
    if (e == name + pl || *e != '.' || l < 0)
        return -1;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        char want[64];
        snprintf(want, sizeof want, ".%s.%s.weight", adapter_parent((lk_module)k),
                 lk_module_name((lk_module)k));
        if (strcmp(e, want) == 0) {
            *layer = l;
            *kind = (lk_module)k;
            return 0;
        }
    }
    return -1;
}

void merge_release(const void *p, size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (pg > 0 && b > a)
        madvise((void *)a, b - a, MADV_DONTNEED); /* clean private file pages: re-read if needed */
}

lk_status merge_prepare(merge_ctx *c, const struct lk_model_config *cfg,
                        const lk_adapter *const *adapters, const float *w, int n,
                        const struct lk_merge_params *p)
{
    memset(c, 0, sizeof *c);
    c->adapters = adapters;
    c->weights = w;
    c->n = n;
    c->p = p ? *p : lk_merge_params_default();
    c->n_threads = resolve_threads(c->p.n_threads);
    c->cfg = *cfg;
    for (int i = 0; i < n; i++) {
        LK_TRY(adapter_check_ready(adapters[i]));
        LK_TRY(adapter_check_base(adapters[i], cfg));
        if (!isfinite(w[i]))
            return status_fail(LK_ERR_ARG, "%s: merge weight %g is not finite", adapters[i]->path,
                               w[i]);
    }
    if (c->p.base_quant) {
        /* the dequantised 4-bit base the adapter was trained against: quantise each row with
         * the type's kernel, dequantise, then merge (gguf_type_traits of that type) */
        static const struct {
            const char *name;
            uint32_t type;
        } bq[] = {{"q4_0", GGML_Q4_0}, {"iq4_nl", GGML_IQ4_NL}, {"q8_0", GGML_Q8_0}};
        for (size_t i = 0; i < sizeof bq / sizeof *bq; i++)
            if (strcmp(c->p.base_quant, bq[i].name) == 0) {
                c->base_q = gguf_type_info(bq[i].type);
                c->base_q_type = bq[i].type;
            }
        if (!c->base_q && strcmp(c->p.base_quant, "nf4") != 0)
            return status_fail(LK_ERR_ARG,
                               "--base-quant '%s': expected nf4, q4_0, iq4_nl or "
                               "q8_0",
                               c->p.base_quant);
        if (!c->base_q || !c->base_q->to_f32 || !c->base_q->from_f32)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "--base-quant %s needs the 4-bit "
                               "quantisation kernels, which this build does not have yet",
                               c->p.base_quant);
    }
    return LK_OK;
}

/* Round-trip the rows of W [rows, cols] through the base quantisation type (--base-quant). */
static lk_status apply_base_quant(const merge_ctx *c, float *W, int64_t rows, int64_t cols,
                                  const char *name)
{
    int64_t rs = gguf_row_size(c->base_q_type, cols);
    if (rs < 0)
        return status_fail(LK_ERR_SHAPE, "%s: rows of %lld are not a multiple of the %s block",
                           name, (long long)cols, c->base_q->name);
    uint8_t *q = malloc((size_t)rs);
    if (!q)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; r < rows; r++) {
        c->base_q->from_f32(W + r * cols, q, cols);
        c->base_q->to_f32(q, W + r * cols, cols);
    }
    free(q);
    return LK_OK;
}

/* W [out, in] ← DoRA merge of module d with coefficient coef. */
static lk_status apply_dora(float *W, const adapter_module *d, double coef, int n_threads)
{
    float *V = lk_aligned_alloc((size_t)(d->out * d->in) * sizeof *V);
    if (!V)
        return status_fail(LK_ERR_NOMEM, "out of memory for the DoRA merge");
    memcpy(V, W, (size_t)(d->out * d->in) * sizeof *V);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d->out, (int)d->in, (int)d->r,
                (float)coef, d->B, (int)d->r, d->A, (int)d->in, 1.0f, V, (int)d->in);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t o = 0; o < d->out; o++) {
        double ss = 0;
        for (int64_t i = 0; i < d->in; i++)
            ss += (double)V[o * d->in + i] * V[o * d->in + i];
        float f = (float)(d->mag[o] / sqrt(ss));
        for (int64_t i = 0; i < d->in; i++)
            W[o * d->in + i] = f * V[o * d->in + i];
    }
    free(V);
    return LK_OK;
}

lk_status merge_tensor(const merge_ctx *c, float *W, int64_t layer, lk_module kind,
                       const char *name, int *n_merged)
{
    int64_t out, in;
    adapter_module_shape(&c->cfg, kind, &out, &in);
    *n_merged = 0;
    if (c->base_q)
        LK_TRY(apply_base_quant(c, W, out, in, name));
    openblas_set_num_threads(c->n_threads);
    for (int i = 0; i < c->n; i++) {
        int64_t j = lk_adapter_find_module(c->adapters[i], layer, kind);
        if (j < 0)
            continue;
        const adapter_module *d = &c->adapters[i]->mods[j];
        double coef = (double)c->weights[i] * d->scale;
        if (d->mag)
            LK_TRY(apply_dora(W, d, coef, c->n_threads));
        else /* W[out,in] += coef · B[out,r] · A[r,in] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, (int)d->r,
                        (float)coef, d->B, (int)d->r, d->A, (int)in, 1.0f, W, (int)in);
        (*n_merged)++;
    }
    return LK_OK;
}

double merge_store(const merge_ctx *c, const gguf_type_traits *tt, const float *W, int64_t rows,
                   int64_t cols, void *dst)
{
    int64_t rs = tt->size * (cols / tt->blck);
    double err = 0, ref = 0;
#pragma omp parallel for num_threads(c->n_threads) schedule(static) reduction(+ : err, ref)
    for (int64_t r = 0; r < rows; r++) {
        float back[256];
        uint8_t *row = (uint8_t *)dst + r * rs;
        tt->from_f32(W + r * cols, row, cols);
        /* error of the stored row against the exact fp32 result, in chunks of 256 */
        for (int64_t k = 0; k < cols && tt != gguf_type_info(GGML_F32); k += 256) {
            int64_t m = cols - k < 256 ? cols - k : 256;
            if (m % tt->blck)
                break;
            tt->to_f32(row + k / tt->blck * tt->size, back, m);
            for (int64_t i = 0; i < m; i++) {
                double d = (double)back[i] - W[r * cols + k + i];
                err += d * d;
                ref += (double)W[r * cols + k + i] * W[r * cols + k + i];
            }
        }
    }
    return ref > 0 ? sqrt(err / ref) : 0;
}

/* ---- Hugging Face folder output ---- */

typedef struct {
    merge_ctx *c;
    const tensor_view **src;     /* [n] base tensors in output order */
    tensor_view *views;          /* [n] output views */
    const gguf_type_traits **tt; /* [n] converter of output i, NULL: copy bytes */
    float *work;                 /* fp32 scratch of the largest tensor */
    int64_t work_n;
} hf_job;

static const gguf_type_traits *traits_of(dtype dt)
{
    return dt == DT_F32    ? gguf_type_info(GGML_F32)
           : dt == DT_F16  ? gguf_type_info(GGML_F16)
           : dt == DT_BF16 ? gguf_type_info(GGML_BF16)
                           : NULL;
}

static lk_status hf_fill(void *user, int i, void *dst)
{
    hf_job *j = user;
    const tensor_view *t = j->src[i];
    int64_t n = tensor_numel(t), layer;
    lk_module kind;
    struct lk_merge_tensor rep = {.name = t->name, .index = i, .count = 0};
    if (!j->tt[i]) {
        memcpy(dst, t->data, t->nbytes);
    } else {
        if (n > j->work_n) {
            free(j->work);
            if (!(j->work = lk_aligned_alloc((size_t)n * sizeof(float))))
                return status_fail(LK_ERR_NOMEM, "out of memory for '%s'", t->name);
            j->work_n = n;
        }
        convert_to_f32(t->dt, t->data, j->work, n, j->c->n_threads);
        if (merge_parse_tensor(t->name, &layer, &kind) == 0)
            LK_TRY(merge_tensor(j->c, j->work, layer, kind, t->name, &rep.n_merged));
        int64_t cols = t->ndim >= 1 ? t->shape[t->ndim - 1] : 1;
        rep.store_err = merge_store(j->c, j->tt[i], j->work, n / (cols ? cols : 1), cols, dst);
    }
    merge_release(t->data, t->nbytes);
    if (j->c->p.on_tensor) {
        rep.count = j->c->n_out;
        j->c->p.on_tensor(j->c->p.user, &rep);
    }
    return LK_OK;
}

static lk_status parse_dtype(const char *s, dtype *dt)
{
    if (!s)
        return LK_OK;
    if (strcmp(s, "f32") == 0)
        *dt = DT_F32;
    else if (strcmp(s, "f16") == 0)
        *dt = DT_F16;
    else if (strcmp(s, "bf16") == 0)
        *dt = DT_BF16;
    else if (!strcmp(s, "q8_0") || !strcmp(s, "q4_0") || !strcmp(s, "iq4_nl") || !strcmp(s, "nf4"))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "merge into %s: requantising the merged weights needs the 4-bit "
                           "kernels, which this build does not have yet (use f32, f16 or bf16)",
                           s);
    else
        return status_fail(LK_ERR_ARG,
                           "merge dtype '%s': expected f32, f16, bf16, q8_0, q4_0, "
                           "iq4_nl or nf4",
                           s);
    return LK_OK;
}

static lk_status hf_write_weights(merge_ctx *c, const st_set *st, const char *dir)
{
    hf_job j = {.c = c};
    dtype want = DT_COUNT;
    LK_TRY(parse_dtype(c->p.dtype, &want));
    j.src = calloc((size_t)st->n + 1, sizeof *j.src);
    j.views = calloc((size_t)st->n + 1, sizeof *j.views);
    j.tt = calloc((size_t)st->n + 1, sizeof *j.tt);
    char *path = path_join(dir, "model.safetensors");
    lk_status s =
        j.src && j.views && j.tt && path ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < st->n && s == LK_OK; i++) {
        const tensor_view *t = st->index[i];
        j.src[i] = t;
        j.views[i] = *t;
        j.views[i].data = NULL;
        j.tt[i] = traits_of(t->dt);
        if (j.tt[i] && want != DT_COUNT) {
            j.views[i].dt = want;
            j.tt[i] = traits_of(want);
        }
        j.views[i].nbytes = (size_t)tensor_numel(t) * dtype_size(j.views[i].dt);
    }
    c->n_out = st->n;
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "pt");
    if (s == LK_OK)
        s = st_write(path, j.views, st->n, meta, hf_fill, &j, 0);
    cJSON_Delete(meta);
    free(j.work);
    free(j.src);
    free(j.views);
    free(j.tt);
    free(path);
    return s;
}

static lk_status copy_file(const char *src, const char *dst)
{
    mapfile m;
    afile a;
    LK_TRY(mapfile_open(&m, src, 0));
    lk_status s = afile_open(&a, dst, 0);
    if (s == LK_OK)
        s = afile_write(&a, m.data, m.size);
    if (s == LK_OK)
        s = afile_commit(&a);
    else if (a.f)
        afile_abort(&a);
    mapfile_close(&m);
    return s;
}

/* config.json with torch_dtype set to the output dtype (when one was asked for). */
static lk_status write_config(const char *base_dir, const char *dir, const char *dt)
{
    char *src = path_join(base_dir, "config.json"), *dst = path_join(dir, "config.json");
    char *text = NULL, *out = NULL;
    cJSON *j = NULL;
    lk_status s = src && dst ? read_text_file(src, 16u << 20, &text, NULL)
                             : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK && !(j = cJSON_Parse(text)))
        s = status_fail(LK_ERR_FORMAT, "%s: not valid JSON", src);
    if (s == LK_OK && dt) {
        const char *td = !strcmp(dt, "f32")   ? "float32"
                         : !strcmp(dt, "f16") ? "float16"
                                              : "bfloat16";
        cJSON_DeleteItemFromObjectCaseSensitive(j, "torch_dtype");
        cJSON_AddStringToObject(j, "torch_dtype", td);
    }
    if (s == LK_OK && !(out = cJSON_Print(j)))
        s = status_fail(LK_ERR_NOMEM, "out of memory");
    afile a;
    if (s == LK_OK)
        s = afile_open(&a, dst, 0);
    if (s == LK_OK && (s = afile_write(&a, out, strlen(out))) == LK_OK)
        s = afile_commit(&a);
    else if (s != LK_OK && a.f)
        afile_abort(&a);
    cJSON_Delete(j);
    free(text);
    free(out);
    free(src);
    free(dst);
    return s;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

lk_status merge_copy_side_files(const char *base_dir, const char *dir)
{
    DIR *d = opendir(base_dir);
    if (!d)
        return status_fail(LK_ERR_IO, "%s: cannot list the folder", base_dir);
    lk_status s = LK_OK;
    struct dirent *e;
    while (s == LK_OK && (e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.' || !strcmp(n, "config.json") || ends_with(n, ".safetensors") ||
            ends_with(n, ".index.json") || ends_with(n, ".bin") || ends_with(n, ".pt") ||
            ends_with(n, ".pth") || ends_with(n, ".gguf") || ends_with(n, ".tmp"))
            continue;
        char *src = path_join(base_dir, n), *dst = path_join(dir, n);
        if (!src || !dst)
            s = status_fail(LK_ERR_NOMEM, "out of memory");
        else if (file_exists(src))
            s = copy_file(src, dst);
        free(src);
        free(dst);
    }
    closedir(d);
    return s;
}

static lk_status merge_hf(merge_ctx *c, const char *base_dir, const char *out)
{
    st_set st;
    char *tmp = NULL;
    LK_TRY(st_set_open(&st, base_dir, 1));
    lk_status s = tmpdir_create(out, c->p.force, &tmp);
    if (s == LK_OK)
        s = hf_write_weights(c, &st, tmp);
    if (s == LK_OK)
        s = write_config(base_dir, tmp, c->p.dtype);
    if (s == LK_OK)
        s = merge_copy_side_files(base_dir, tmp);
    if (s == LK_OK)
        s = tmpdir_commit(tmp, out, c->p.force);
    if (s != LK_OK && tmp)
        remove_tree(tmp);
    free(tmp);
    st_set_close(&st);
    return s;
}

lk_status lk_merge(const char *base_dir, const lk_adapter *const *adapters, const float *w, int n,
                   const char *out, const struct lk_merge_params *p)
{
    struct lk_model_config cfg;
    merge_ctx c;
    if (n < 0 || (n > 0 && (!adapters || !w)))
        return status_fail(LK_ERR_ARG, "merge: %d adapters without arrays", n);
    LK_TRY(lk_config_load(base_dir, &cfg));
    LK_TRY(merge_prepare(&c, &cfg, adapters, w, n, p));
    if (ends_with(out, ".gguf"))
        return merge_gguf(&c, base_dir, out);
    return merge_hf(&c, base_dir, out);
}
