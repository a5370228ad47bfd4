/* merge_hf.c — the merged model as a Hugging Face folder: model.safetensors (tensors in the
 * base's order, floating-point ones merged and stored as f32/f16/bf16, others copied), config.json
 * with torch_dtype updated, and the side files (tokenizer, generation config, ...) copied, never
 * a symlink that leads out of the model folder. Calls into merge.c only (of the merge files). */
#include "lora/merge.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"

typedef struct {
    merge_ctx *c;
    const tensor_view **src;     /* [n] base tensors in output order */
    tensor_view *views;          /* [n] output views */
    const gguf_type_traits **tt; /* [n] converter of output i, NULL: copy bytes */
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
    int64_t layer = 0;
    lk_module kind;
    struct lk_merge_tensor rep = {.name = t->name, .index = i, .count = j->c->n_out};
    if (!j->tt[i]) {
        memcpy(dst, t->data, t->nbytes);
    } else {
        int k = merge_parse_tensor(t->name, &layer, &kind) == 0 ? (int)kind : -1;
        LK_TRY(merge_rows(j->c, t, layer, k, 0, j->tt[i], dst, &rep.n_merged, &rep.store_err));
    }
    merge_release(t->data, t->nbytes);
    if (j->c->p.on_tensor)
        j->c->p.on_tensor(j->c->p.user, &rep);
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
    else /* lk_merge_params_check has accepted the name: a quantised type */
        return status_fail(LK_ERR_UNSUPPORTED,
                           "merge into a Hugging Face folder as %s: safetensors folders hold "
                           "f32, f16 or bf16 here (hint: -o FILE.gguf writes the GGUF types; a "
                           "bitsandbytes nf4 folder is not written)",
                           s);
    return LK_OK;
}

/* A tensor the adapters change must be floating point (others are copied as they are). */
static lk_status check_mergeable(const merge_ctx *c, const tensor_view *t)
{
    int64_t layer = 0;
    lk_module kind;
    if (traits_of(t->dt) || merge_parse_tensor(t->name, &layer, &kind) != 0 ||
        merge_n_deltas(c, layer, (int)kind) == 0)
        return LK_OK;
    return merge_float_source(t);
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
        s = check_mergeable(c, t);
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
    char *out = NULL;
    cJSON *j = NULL;
    lk_status s = src && dst ? json_read_file(src, 16u << 20, &j)
                             : status_fail(LK_ERR_NOMEM, "out of memory");
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

/* 1 if real (a resolved path) lies inside the folder root (resolved too). */
static int inside(const char *real, const char *root)
{
    size_t n = root ? strlen(root) : 0;
    return n && strncmp(real, root, n) == 0 && (real[n] == '/' || (n == 1 && root[0] == '/'));
}

/* A side file copied into an output must not bring in a file from elsewhere on the machine (a
 * model repository may hold a symlink "notes.txt -> ~/.ssh/id_rsa", and merged models get
 * uploaded): a symlink must resolve inside base_dir, or inside the blobs folder of the Hugging
 * Face cache it is a snapshot of (base_dir/../../blobs). */
static lk_status check_link(const char *base_dir, const char *src)
{
    struct stat st;
    if (lstat(src, &st) != 0 || !S_ISLNK(st.st_mode))
        return LK_OK;
    char *blobs = path_join(base_dir, "../../blobs");
    char *real = realpath(src, NULL), *rb = realpath(base_dir, NULL);
    char *rblobs = blobs ? realpath(blobs, NULL) : NULL;
    lk_status s = LK_OK;
    if (!real || !(inside(real, rb) || inside(real, rblobs)))
        s = status_fail(LK_ERR_IO,
                        "%s: a symlink to %s, outside the model folder: not copied into the "
                        "output (hint: put the file itself in the folder, or remove the link)",
                        src, real ? real : "a missing file");
    free(blobs);
    free(real);
    free(rb);
    free(rblobs);
    return s;
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
        else if ((s = check_link(base_dir, src)) == LK_OK && file_exists(src))
            s = copy_file(src, dst);
        free(src);
        free(dst);
    }
    closedir(d);
    return s;
}

lk_status merge_hf(merge_ctx *c, const char *base_dir, const char *out)
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
