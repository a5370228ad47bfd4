/* safetensors.c — see safetensors.h. Validation follows the checks of the reference
 * implementation (huggingface/safetensors) and our STYLE: nothing in a file is trusted before it
 * has been checked against the file's size. */
#include "formats/safetensors.h"

#include <math.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/status.h"

static int cmp_view_name(const void *a, const void *b)
{
    return strcmp(((const tensor_view *)a)->name, ((const tensor_view *)b)->name);
}

static int cmp_view_ptr(const void *a, const void *b)
{
    const tensor_view *x = *(const tensor_view *const *)a, *y = *(const tensor_view *const *)b;
    return strcmp(x->name, y->name);
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int json_u53(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || floor(v) != v)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Parse one header entry into t (begin/end offsets relative to the data section). */
static lk_status parse_entry(const char *path, const cJSON *e, size_t data_size, tensor_view *t,
                             int64_t *begin, int64_t *end)
{
    const char *name = e->string;
    char buf[256];
    if (!cJSON_IsObject(e))
        return status_fail(LK_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", path,
                           name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': needs string 'dtype', array 'shape' and array "
                           "'data_offsets'",
                           path, name);
    int d = dtype_from_name(dt->valuestring);
    if (d < 0)
        return status_fail(LK_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                           dt->valuestring);
    t->dt = (dtype)d;
    int nd = cJSON_GetArraySize(sh);
    if (nd > TENSOR_MAX_DIMS)
        return status_fail(LK_ERR_FORMAT, "%s: tensor '%s': %d dimensions, at most %d supported",
                           path, name, nd, TENSOR_MAX_DIMS);
    t->ndim = nd;
    int64_t numel = 1;
    int i = 0;
    for (const cJSON *x = sh->child; x; x = x->next, i++) {
        if (json_u53(x, &t->shape[i]) != 0)
            return status_fail(LK_ERR_FORMAT,
                               "%s: tensor '%s': shape entry %d is not a non-negative integer",
                               path, name, i);
        if (mul_overflow_i64(numel, t->shape[i], &numel) != 0)
            return status_fail(LK_ERR_FORMAT, "%s: tensor '%s': shape %s overflows 64 bits", path,
                               name, shape_str(t->shape, i + 1, buf, sizeof buf));
    }
    if (cJSON_GetArraySize(off) != 2 || json_u53(off->child, begin) != 0 ||
        json_u53(off->child->next, end) != 0 || *begin > *end)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets must be two integers [begin, end] "
                           "with begin <= end",
                           path, name);
    if ((uint64_t)*end > data_size)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%lld, %lld] end beyond the data "
                           "section of %zu bytes (truncated file?)",
                           path, name, (long long)*begin, (long long)*end, data_size);
    int64_t want;
    if (mul_overflow_i64(numel, (int64_t)dtype_size(t->dt), &want) != 0)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': shape %s of %s: byte size overflows 64 "
                           "bits",
                           path, name, shape_str(t->shape, nd, buf, sizeof buf), dtype_name(t->dt));
    if (want != *end - *begin)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': shape %s of %s needs %lld bytes but data_offsets "
                           "give %lld",
                           path, name, shape_str(t->shape, nd, buf, sizeof buf), dtype_name(t->dt),
                           (long long)want, (long long)(*end - *begin));
    t->name = name;
    t->nbytes = (size_t)(*end - *begin);
    return LK_OK;
}

typedef struct {
    int64_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Names unique and byte ranges disjoint (zero-sized tensors may share an offset). */
static lk_status check_layout(const char *path, tensor_view *t, span *sp, int n)
{
    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    for (int i = 1; i < n; i++)
        if (sp[i].begin < sp[i - 1].end && sp[i].begin != sp[i].end)
            return status_fail(
                LK_ERR_FORMAT, "%s: tensors '%s' [%lld, %lld) and '%s' [%lld, %lld) overlap", path,
                t[sp[i - 1].idx].name, (long long)sp[i - 1].begin, (long long)sp[i - 1].end,
                t[sp[i].idx].name, (long long)sp[i].begin, (long long)sp[i].end);
    qsort(t, (size_t)n, sizeof *t, cmp_view_name);
    for (int i = 1; i < n; i++)
        if (strcmp(t[i].name, t[i - 1].name) == 0)
            return status_fail(LK_ERR_FORMAT, "%s: tensor name '%s' appears twice", path,
                               t[i].name);
    return LK_OK;
}

static lk_status parse_header(st_file *f, const char *path, size_t hlen)
{
    char what[4200];
    snprintf(what, sizeof what, "%s: header (from byte 8)", path);
    LK_TRY(json_parse(what, (const char *)f->map.data + 8, hlen, &f->header));
    if (!cJSON_IsObject(f->header))
        return status_fail(LK_ERR_FORMAT, "%s: header is not a JSON object", path);
    int cap = cJSON_GetArraySize(f->header);
    f->tensors = calloc((size_t)(cap ? cap : 1), sizeof *f->tensors);
    span *sp = calloc((size_t)(cap ? cap : 1), sizeof *sp);
    if (!f->tensors || !sp) {
        free(sp);
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t data_size = f->map.size - 8 - hlen;
    const uint8_t *data = f->map.data + 8 + hlen;
    lk_status s = LK_OK;
    for (const cJSON *e = f->header->child; e && s == LK_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->metadata || !cJSON_IsObject(e))
                s = status_fail(LK_ERR_FORMAT, "%s: __metadata__ is not a single object", path);
            f->metadata = e;
            continue;
        }
        tensor_view *t = &f->tensors[f->n];
        s = parse_entry(path, e, data_size, t, &sp[f->n].begin, &sp[f->n].end);
        if (s != LK_OK)
            break;
        t->data = data + sp[f->n].begin;
        t->file = f->map.path;
        sp[f->n].idx = f->n;
        f->n++;
    }
    if (s == LK_OK)
        s = check_layout(path, f->tensors, sp, f->n);
    free(sp);
    return s;
}

lk_status st_open(st_file *f, const char *path, int use_mmap)
{
    memset(f, 0, sizeof *f);
    LK_TRY(mapfile_open(&f->map, path, use_mmap));
    lk_status s;
    if (f->map.size < 8) {
        s = status_fail(LK_ERR_FORMAT,
                        "%s: file is %zu bytes, too short for the 8-byte header length "
                        "(not a safetensors file?)",
                        path, f->map.size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->map.data[i];
    if (hlen > ST_MAX_HEADER || hlen > f->map.size - 8) {
        s = status_fail(LK_ERR_FORMAT,
                        "%s: header length %llu exceeds the file (%zu bytes) or the %u-byte "
                        "limit (truncated or not a safetensors file?)",
                        path, (unsigned long long)hlen, f->map.size, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen < 2 || f->map.data[8] != '{') {
        s = status_fail(LK_ERR_FORMAT, "%s: header does not start with '{' (not safetensors?)",
                        path);
        goto fail;
    }
    s = parse_header(f, path, (size_t)hlen);
    if (s == LK_OK)
        return LK_OK;
fail:
    st_close(f);
    return s;
}

void st_close(st_file *f)
{
    free(f->tensors);
    cJSON_Delete(f->header);
    mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

const tensor_view *st_get(const st_file *f, const char *name)
{
    tensor_view key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof key, cmp_view_name);
}

/* ---- sets of files (sharded checkpoints) ---- */

/* A shard name must be a plain file name: no folder part, not "." or "..". */
static int plain_name(const char *s)
{
    return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") && strcmp(s, "..");
}

static lk_status set_add_file(st_set *s, const char *name, int use_mmap)
{
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(strrchr(s->files[i].map.path, '/') + 1, name) == 0)
            return LK_OK;
    LK_TRY(BUF_GROW(&s->files, &s->cap_files, (size_t)s->n_files + 1, "safetensors: shards"));
    char *p = path_join(s->dir, name);
    if (!p)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    lk_status st = st_open(&s->files[s->n_files], p, use_mmap);
    free(p);
    if (st == LK_OK)
        s->n_files++;
    return st;
}

static lk_status set_build_index(st_set *s)
{
    int n = 0;
    for (int i = 0; i < s->n_files; i++)
        n += s->files[i].n;
    s->index = malloc((size_t)(n ? n : 1) * sizeof *s->index);
    if (!s->index)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->n_files; i++)
        for (int j = 0; j < s->files[i].n; j++)
            s->index[s->n++] = &s->files[i].tensors[j];
    qsort(s->index, (size_t)s->n, sizeof *s->index, cmp_view_ptr);
    for (int i = 1; i < s->n; i++)
        if (strcmp(s->index[i]->name, s->index[i - 1]->name) == 0)
            return status_fail(LK_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", s->dir,
                               s->index[i]->name, s->index[i - 1]->file, s->index[i]->file);
    return LK_OK;
}

static lk_status set_open_index(st_set *s, const char *index_path, int use_mmap)
{
    cJSON *j;
    LK_TRY(json_read_file(index_path, 64u << 20, &j));
    lk_status st = LK_OK;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = status_fail(LK_ERR_FORMAT, "%s: not JSON with a 'weight_map' object", index_path);
        goto done;
    }
    for (const cJSON *e = wm->child; e && st == LK_OK; e = e->next) {
        if (!cJSON_IsString(e) || !plain_name(e->valuestring))
            st = status_fail(LK_ERR_FORMAT,
                             "%s: weight_map['%s'] must be a file name inside the model folder",
                             index_path, e->string);
        else
            st = set_add_file(s, e->valuestring, use_mmap);
    }
    if (st != LK_OK)
        goto done;
    for (const cJSON *e = wm->child; e; e = e->next) {
        const st_file *f = NULL;
        for (int i = 0; i < s->n_files; i++)
            if (strcmp(strrchr(s->files[i].map.path, '/') + 1, e->valuestring) == 0)
                f = &s->files[i];
        if (!st_get(f, e->string)) {
            st = status_fail(LK_ERR_FORMAT, "%s: lists tensor '%s' in %s, which does not hold it",
                             index_path, e->string, e->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(j);
    return st;
}

lk_status st_set_open(st_set *s, const char *dir, int use_mmap)
{
    memset(s, 0, sizeof *s);
    s->dir = strdup(dir);
    char *idx = path_join(dir, "model.safetensors.index.json");
    if (!s->dir || !idx) {
        free(idx);
        st_set_close(s);
        return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    lk_status st;
    if (file_exists(idx)) {
        st = set_open_index(s, idx, use_mmap);
    } else {
        char *single = path_join(dir, "model.safetensors");
        if (single && file_exists(single))
            st = set_add_file(s, "model.safetensors", use_mmap);
        else
            st = status_fail(LK_ERR_IO,
                             "%s: no model.safetensors or model.safetensors.index.json "
                             "(hint: PyTorch .bin checkpoints are not supported; save the model "
                             "with safe_serialization=True)",
                             dir);
        free(single);
    }
    free(idx);
    if (st == LK_OK)
        st = set_build_index(s);
    if (st != LK_OK)
        st_set_close(s);
    return st;
}

void st_set_close(st_set *s)
{
    for (int i = 0; i < s->n_files; i++)
        st_close(&s->files[i]);
    free(s->files);
    free(s->index);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

const tensor_view *st_set_get(const st_set *s, const char *name)
{
    tensor_view key = {.name = name};
    const tensor_view *kp = &key;
    const tensor_view **r = bsearch(&kp, s->index, (size_t)s->n, sizeof kp, cmp_view_ptr);
    return r ? *r : NULL;
}

/* ---- writing ---- */

static cJSON *build_header(const tensor_view *v, int n, const cJSON *metadata)
{
    cJSON *h = cJSON_CreateObject();
    if (metadata)
        cJSON_AddItemToObject(h, "__metadata__", cJSON_Duplicate(metadata, 1));
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON *sh = cJSON_CreateArray();
        cJSON_AddStringToObject(e, "dtype", dtype_name(v[i].dt));
        for (int d = 0; d < v[i].ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)v[i].shape[d]));
        cJSON_AddItemToObject(e, "shape", sh);
        cJSON *o = cJSON_CreateArray();
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + v[i].nbytes)));
        cJSON_AddItemToObject(e, "data_offsets", o);
        cJSON_AddItemToObject(h, v[i].name, e);
        off += v[i].nbytes;
    }
    return h;
}

static lk_status write_tensors(afile *a, const tensor_view *v, int n, st_fill_fn fill, void *user)
{
    size_t cap = 0;
    void *buf = NULL;
    lk_status s = LK_OK;
    for (int i = 0; i < n && s == LK_OK; i++) {
        const void *src = v[i].data;
        if (fill) {
            if (v[i].nbytes > cap) {
                free(buf);
                cap = v[i].nbytes;
                buf = lk_aligned_alloc(cap);
                if (!buf)
                    return status_fail(LK_ERR_NOMEM, "out of memory (%zu bytes)", cap);
            }
            s = fill(user, i, buf);
            src = buf;
        }
        if (s == LK_OK)
            s = afile_write(a, src, v[i].nbytes);
    }
    free(buf);
    return s;
}

lk_status st_write(const char *path, const tensor_view *views, int n, const cJSON *metadata,
                   st_fill_fn fill, void *user, int force)
{
    cJSON *h = build_header(views, n, metadata);
    char *json = h ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    if (!json)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory building the header", path);
    size_t jl = strlen(json);
    size_t hlen = ((8 + jl + 63) & ~(size_t)63) - 8; /* data section 64-byte aligned */
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    afile a;
    lk_status s = afile_open(&a, path, force);
    if (s == LK_OK)
        s = afile_write(&a, len8, 8);
    if (s == LK_OK)
        s = afile_write(&a, json, jl);
    for (size_t i = jl; i < hlen && s == LK_OK; i++)
        s = afile_write(&a, " ", 1);
    free(json);
    if (s == LK_OK)
        s = write_tensors(&a, views, n, fill, user);
    if (s == LK_OK)
        return afile_commit(&a);
    if (a.f)
        afile_abort(&a);
    return s;
}
