/* gguf.c — see gguf.h. The format follows ggml's docs/gguf.md and the checks of ggml's own
 * gguf.cpp reader (counts, string lengths, nested arrays, name lengths, alignment, block-multiple
 * rows, offsets inside the file); tensor type numbers and block sizes are llama.cpp's. */
#include "formats/gguf.h"

#include "q4.h"

#include <math.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"
#include "core/tensor.h"

/* ---- type table ---- */

static void f32_to_f32_row(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * 4);
}

static void f32_from_f32_row(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * 4);
}

static void f16_to_f32_row(const void *src, float *dst, int64_t n)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
    }
}

static void f16_from_f32_row(const float *src, void *dst, int64_t n)
{
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = f32_to_f16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void bf16_to_f32_row(const void *src, float *dst, int64_t n)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
    }
}

static void bf16_from_f32_row(const float *src, void *dst, int64_t n)
{
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = f32_to_bf16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* Rows through quant/: dequantisation (bit-exact with ggml's) and quantisation (bit-exact with
 * llama.cpp's quantisers without an importance matrix) of every quantised type. */
#define GGUF_QROWS(name, qt)                                                \
    static void name##_to_f32_row(const void *src, float *dst, int64_t n)   \
    {                                                                       \
        q4_dequantize_row(qt, Q4_QK, src, n, dst);                          \
    }                                                                       \
    static void name##_from_f32_row(const float *src, void *dst, int64_t n) \
    {                                                                       \
        q4_quantize_row(qt, Q4_QK, src, n, dst);                            \
    }
GGUF_QROWS(q4_0, LK_QTYPE_Q4_0)
GGUF_QROWS(q8_0, LK_QTYPE_Q8_0)
GGUF_QROWS(iq4_nl, LK_QTYPE_IQ4_NL)
GGUF_QROWS(q4_1, LK_QTYPE_Q4_1)
GGUF_QROWS(q5_0, LK_QTYPE_Q5_0)
GGUF_QROWS(q5_1, LK_QTYPE_Q5_1)
GGUF_QROWS(q2_k, LK_QTYPE_Q2_K)
GGUF_QROWS(q3_k, LK_QTYPE_Q3_K)
GGUF_QROWS(q4_k, LK_QTYPE_Q4_K)
GGUF_QROWS(q5_k, LK_QTYPE_Q5_K)
GGUF_QROWS(q6_k, LK_QTYPE_Q6_K)
GGUF_QROWS(iq4_xs, LK_QTYPE_IQ4_XS)

/* Quantised types: their layout (so files can be validated and copied) and their rows; block
 * sizes and bytes are ggml's (ggml_type_traits), the same as quant/'s q4_block_len/bytes. */
static const gguf_type_traits g_types[] = {
    [GGML_F32] = {"F32", 1, 4, f32_to_f32_row, f32_from_f32_row, LK_QTYPE_F32},
    [GGML_F16] = {"F16", 1, 2, f16_to_f32_row, f16_from_f32_row, LK_QTYPE_F16},
    [GGML_Q4_0] = {"Q4_0", 32, 18, q4_0_to_f32_row, q4_0_from_f32_row, LK_QTYPE_Q4_0},
    [GGML_Q4_1] = {"Q4_1", 32, 20, q4_1_to_f32_row, q4_1_from_f32_row, LK_QTYPE_Q4_1},
    [GGML_Q5_0] = {"Q5_0", 32, 22, q5_0_to_f32_row, q5_0_from_f32_row, LK_QTYPE_Q5_0},
    [GGML_Q5_1] = {"Q5_1", 32, 24, q5_1_to_f32_row, q5_1_from_f32_row, LK_QTYPE_Q5_1},
    [GGML_Q8_0] = {"Q8_0", 32, 34, q8_0_to_f32_row, q8_0_from_f32_row, LK_QTYPE_Q8_0},
    [GGML_Q2_K] = {"Q2_K", 256, 84, q2_k_to_f32_row, q2_k_from_f32_row, LK_QTYPE_Q2_K},
    [GGML_Q3_K] = {"Q3_K", 256, 110, q3_k_to_f32_row, q3_k_from_f32_row, LK_QTYPE_Q3_K},
    [GGML_Q4_K] = {"Q4_K", 256, 144, q4_k_to_f32_row, q4_k_from_f32_row, LK_QTYPE_Q4_K},
    [GGML_Q5_K] = {"Q5_K", 256, 176, q5_k_to_f32_row, q5_k_from_f32_row, LK_QTYPE_Q5_K},
    [GGML_Q6_K] = {"Q6_K", 256, 210, q6_k_to_f32_row, q6_k_from_f32_row, LK_QTYPE_Q6_K},
    [GGML_IQ4_NL] = {"IQ4_NL", 32, 18, iq4_nl_to_f32_row, iq4_nl_from_f32_row, LK_QTYPE_IQ4_NL},
    [GGML_IQ4_XS] = {"IQ4_XS", 256, 136, iq4_xs_to_f32_row, iq4_xs_from_f32_row, LK_QTYPE_IQ4_XS},
    [GGML_BF16] = {"BF16", 1, 2, bf16_to_f32_row, bf16_from_f32_row, LK_QTYPE_BF16},
};

const gguf_type_traits *gguf_type_info(uint32_t t)
{
    if (t >= sizeof g_types / sizeof *g_types || !g_types[t].name)
        return NULL;
    return &g_types[t];
}

uint32_t gguf_type_of(int qtype)
{
    for (uint32_t t = 0; t < sizeof g_types / sizeof *g_types; t++)
        if (g_types[t].name && g_types[t].qtype == qtype)
            return t;
    return GGML_F32;
}

uint32_t gguf_type_fallback(uint32_t t, int64_t ncols)
{
    const gguf_type_traits *tt = gguf_type_info(t);
    if (!tt || ncols % tt->blck == 0)
        return t;
    uint32_t f = t == GGML_IQ4_XS                   ? GGML_IQ4_NL
                 : t == GGML_Q2_K || t == GGML_Q3_K ? GGML_Q4_0
                 : t == GGML_Q4_K                   ? GGML_Q5_0
                 : t == GGML_Q5_K                   ? GGML_Q5_1
                 : t == GGML_Q6_K                   ? GGML_Q8_0
                                                    : t;
    return ncols % gguf_type_info(f)->blck == 0 ? f : GGML_F16;
}

int64_t gguf_row_size(uint32_t t, int64_t n)
{
    const gguf_type_traits *tt = gguf_type_info(t);
    if (!tt || n < 0 || n % tt->blck)
        return -1;
    return n / tt->blck * tt->size;
}

/* ---- reading ---- */

static const size_t g_vsize[GGUF_NTYPES] = {
    [GGUF_U8] = 1,  [GGUF_I8] = 1,   [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4, [GGUF_I32] = 4,
    [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

typedef struct {
    const uint8_t *p;
    uint64_t pos, size;
    const char *path;
} cursor;

static lk_status need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return status_fail(LK_ERR_FORMAT,
                           "%s: %s at byte %llu needs %llu bytes but the file has %llu left "
                           "(truncated or not a GGUF file?)",
                           c->path, what, (unsigned long long)c->pos, (unsigned long long)n,
                           (unsigned long long)(c->size - c->pos));
    return LK_OK;
}

static lk_status rd(cursor *c, void *dst, uint64_t n, const char *what)
{
    LK_TRY(need(c, n, what));
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return LK_OK;
}

static lk_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    return rd(c, v, 4, what);
}
static lk_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    return rd(c, v, 8, what);
}

static lk_status rd_str(cursor *c, gguf_str *s, const char *what)
{
    LK_TRY(rd_u64(c, &s->len, what));
    LK_TRY(need(c, s->len, what));
    s->ptr = (const char *)c->p + c->pos;
    c->pos += s->len;
    return LK_OK;
}

static char *str_dup(const gguf_str *s)
{
    char *d = malloc(s->len + 1);
    if (d) {
        memcpy(d, s->ptr, s->len);
        d[s->len] = 0;
    }
    return d;
}

/* A scalar of type t at the cursor into kv->v. */
static lk_status rd_scalar(cursor *c, gguf_vtype t, gguf_kv *kv)
{
    uint8_t b[8] = {0};
    LK_TRY(rd(c, b, g_vsize[t], kv->key));
    uint64_t u = 0;
    memcpy(&u, b, 8);
    switch (t) {
    case GGUF_I8: kv->v.i = (int8_t)b[0]; break;
    case GGUF_I16: kv->v.i = (int16_t)(uint16_t)u; break;
    case GGUF_I32: kv->v.i = (int32_t)(uint32_t)u; break;
    case GGUF_I64: kv->v.i = (int64_t)u; break;
    case GGUF_F32: {
        float f;
        memcpy(&f, b, 4);
        kv->v.f = f;
        break;
    }
    case GGUF_F64: memcpy(&kv->v.f, b, 8); break;
    default: kv->v.u = u; break;
    }
    return LK_OK;
}

/* An array of n elements of at least `each` bytes that the rest of the file cannot hold. */
static lk_status short_array(const cursor *c, const gguf_kv *kv, unsigned each, int strings)
{
    return status_fail(LK_ERR_FORMAT,
                       "%s: %s at byte %llu: an array of %llu elements of %s%u bytes does not fit "
                       "the %llu bytes left in the file (truncated or not a GGUF file?)",
                       c->path, kv->key, (unsigned long long)c->pos, (unsigned long long)kv->arr_n,
                       strings ? "at least " : "", each, (unsigned long long)(c->size - c->pos));
}

static lk_status rd_array(cursor *c, gguf_kv *kv)
{
    uint32_t et;
    LK_TRY(rd_u32(c, &et, kv->key));
    LK_TRY(rd_u64(c, &kv->arr_n, kv->key));
    if (et >= GGUF_NTYPES || et == GGUF_ARRAY)
        return status_fail(LK_ERR_FORMAT, "%s: key '%s': array element type %u is %s", c->path,
                           kv->key, et,
                           et == GGUF_ARRAY ? "a nested array (unsupported)" : "unknown");
    kv->arr_type = (gguf_vtype)et;
    if (et != GGUF_STRING) {
        if (kv->arr_n > (c->size - c->pos) / g_vsize[et])
            return short_array(c, kv, g_vsize[et], 0);
        kv->arr_data = c->p + c->pos;
        c->pos += kv->arr_n * g_vsize[et];
        return LK_OK;
    }
    /* each string takes at least its 8-byte length: bounds the allocation by the file size */
    if (kv->arr_n > (c->size - c->pos) / 8)
        return short_array(c, kv, 8, 1); /* strings: an 8-byte length each */
    kv->arr_str = calloc(kv->arr_n ? kv->arr_n : 1, sizeof *kv->arr_str);
    if (!kv->arr_str)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->path);
    for (uint64_t i = 0; i < kv->arr_n; i++)
        LK_TRY(rd_str(c, &kv->arr_str[i], kv->key));
    return LK_OK;
}

static lk_status rd_kv(gguf_file *f, cursor *c, gguf_kv *kv, int64_t idx)
{
    gguf_str key;
    uint32_t t;
    LK_TRY(rd_str(c, &key, "metadata key"));
    if (key.len == 0 || memchr(key.ptr, 0, key.len))
        return status_fail(LK_ERR_FORMAT, "%s: metadata key %lld is empty or holds a NUL byte",
                           c->path, (long long)idx);
    kv->key = str_dup(&key);
    if (!kv->key)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->path);
    LK_TRY(rd_u32(c, &t, kv->key));
    if (t >= GGUF_NTYPES)
        return status_fail(LK_ERR_FORMAT, "%s: key '%s': unknown value type %u", c->path, kv->key,
                           t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_STRING)
        return rd_str(c, &kv->str, kv->key);
    if (t == GGUF_ARRAY)
        return rd_array(c, kv);
    return rd_scalar(c, kv->type, kv);
}

static lk_status rd_tensor_info(cursor *c, gguf_tensor *t, int64_t idx)
{
    gguf_str name;
    uint32_t nd;
    char sh[128];
    LK_TRY(rd_str(c, &name, "tensor name"));
    if (name.len == 0 || name.len >= GGUF_MAX_NAME || memchr(name.ptr, 0, name.len))
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor %lld: name of %llu bytes (must be 1..%d, no NUL)", c->path,
                           (long long)idx, (unsigned long long)name.len, GGUF_MAX_NAME - 1);
    t->name = str_dup(&name);
    if (!t->name)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->path);
    LK_TRY(rd_u32(c, &nd, t->name));
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return status_fail(LK_ERR_FORMAT, "%s: tensor '%s': %u dimensions (must be 1..%d)", c->path,
                           t->name, nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t numel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < t->n_dims)
            LK_TRY(rd_u64(c, &v, t->name));
        t->ne[d] = (int64_t)v;
        if (v == 0 || v > INT64_MAX || mul_overflow_i64(numel, (int64_t)v, &numel) != 0)
            return status_fail(LK_ERR_FORMAT,
                               "%s: tensor '%s': dimension %d is %llu (must be "
                               "> 0, element count within 64 bits)",
                               c->path, t->name, d, (unsigned long long)v);
    }
    LK_TRY(rd_u32(c, &t->type, t->name));
    const gguf_type_traits *tt = gguf_type_info(t->type);
    if (!tt)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s': ggml type %u is not supported "
                           "(F32, F16, BF16, Q8_0, Q4_0, IQ4_NL)",
                           c->path, t->name, t->type);
    if (t->ne[0] % tt->blck)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': row length %lld is not a multiple of the %s block "
                           "(%lld), shape %s",
                           c->path, t->name, (long long)t->ne[0], tt->name, (long long)tt->blck,
                           shape_str(t->ne, t->n_dims, sh, sizeof sh));
    int64_t nb;
    if (mul_overflow_i64(numel / tt->blck, tt->size, &nb) != 0)
        return status_fail(LK_ERR_FORMAT, "%s: tensor '%s': byte size overflows", c->path, t->name);
    t->nbytes = (uint64_t)nb;
    return rd_u64(c, &t->offset, t->name);
}

typedef struct {
    uint64_t begin, end;
    int64_t idx;
} gguf_span;

static int cmp_gspan(const void *a, const void *b)
{
    const gguf_span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Offsets aligned, inside the data section, not overlapping. */
static lk_status check_tensors(gguf_file *f, const char *path)
{
    uint64_t data_size = f->map.size - f->data_offset;
    gguf_span *sp = calloc((size_t)(f->n_tensors ? f->n_tensors : 1), sizeof *sp);
    if (!sp)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    lk_status s = LK_OK;
    for (int64_t i = 0; i < f->n_tensors && s == LK_OK; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment)
            s = status_fail(LK_ERR_FORMAT,
                            "%s: tensor '%s': offset %llu is not a multiple of "
                            "the alignment %llu",
                            path, t->name, (unsigned long long)t->offset,
                            (unsigned long long)f->alignment);
        else if (t->offset > data_size || t->nbytes > data_size - t->offset)
            s = status_fail(LK_ERR_FORMAT,
                            "%s: tensor '%s': bytes [%llu, +%llu) of the data "
                            "section end beyond the file (data section has %llu; truncated?)",
                            path, t->name, (unsigned long long)t->offset,
                            (unsigned long long)t->nbytes, (unsigned long long)data_size);
        if (s == LK_OK)
            t->data = f->map.data + f->data_offset + t->offset;
        sp[i] = (gguf_span){t->offset, t->offset + t->nbytes, i};
    }
    qsort(sp, (size_t)f->n_tensors, sizeof *sp, cmp_gspan);
    for (int64_t i = 1; i < f->n_tensors && s == LK_OK; i++)
        if (sp[i].begin < sp[i - 1].end)
            s = status_fail(LK_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path,
                            f->tensors[sp[i - 1].idx].name, f->tensors[sp[i].idx].name);
    free(sp);
    return s;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const gguf_name *)a)->name, ((const gguf_name *)b)->name);
}

/* *out [n]: the names sorted (name(i) of entry i); LK_ERR_FORMAT naming one that appears twice
 * (what: "metadata key" or "tensor name"). */
static lk_status sort_names(const char *path, const char *what, int64_t n,
                            const char *(*name)(const gguf_file *, int64_t), const gguf_file *f,
                            gguf_name **out)
{
    gguf_name *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    *out = s;
    for (int64_t i = 0; i < n; i++)
        s[i] = (gguf_name){name(f, i), i};
    qsort(s, (size_t)n, sizeof *s, cmp_name);
    for (int64_t i = 1; i < n; i++)
        if (strcmp(s[i].name, s[i - 1].name) == 0)
            return status_fail(LK_ERR_FORMAT, "%s: %s '%s' appears twice", path, what, s[i].name);
    return LK_OK;
}

static const char *kv_name(const gguf_file *f, int64_t i)
{
    return f->kv[i].key;
}

static const char *tensor_name(const gguf_file *f, int64_t i)
{
    return f->tensors[i].name;
}

/* 1 for a file of a Hugging Face folder (config.json, model.safetensors, ...), given where a
 * model or adapter goes: a GGUF file is the only file taken there. */
static int in_model_folder(const char *path)
{
    static const char *const ends[] = {".json", ".safetensors", ".bin", ".model"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof ends / sizeof *ends; i++)
        if (n >= strlen(ends[i]) && strcmp(path + n - strlen(ends[i]), ends[i]) == 0)
            return 1;
    return 0;
}

/* meta_only: the tensor infos are not read (n_tensors stays 0). */
static lk_status rd_header(gguf_file *f, cursor *c, int meta_only)
{
    char magic[4];
    uint64_t nt, nkv;
    LK_TRY(rd(c, magic, 4, "magic"));
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return status_fail(LK_ERR_FORMAT,
                           "%s: bad magic %02x %02x %02x %02x, expected 'GGUF' "
                           "(not a GGUF file?%s)",
                           c->path, (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2],
                           (uint8_t)magic[3],
                           in_model_folder(c->path)
                               ? " a Hugging Face model or adapter is given by its folder, not "
                                 "by a file in it"
                               : "");
    LK_TRY(rd_u32(c, &f->version, "version"));
    if (f->version < 2 || f->version > GGUF_VERSION)
        return status_fail(LK_ERR_FORMAT, "%s: GGUF version %u is too %s (supported: 2, 3)",
                           c->path, f->version, f->version < 2 ? "old" : "new");
    LK_TRY(rd_u64(c, &nt, "tensor count"));
    LK_TRY(rd_u64(c, &nkv, "metadata count"));
    /* every KV takes at least 12 bytes and every tensor info at least 24 */
    if (nkv > c->size / 12 || nt > c->size / 24)
        return status_fail(LK_ERR_FORMAT,
                           "%s: %llu tensors / %llu metadata entries cannot fit "
                           "in a file of %llu bytes",
                           c->path, (unsigned long long)nt, (unsigned long long)nkv,
                           (unsigned long long)c->size);
    if (meta_only)
        nt = 0;
    f->kv = calloc((size_t)(nkv ? nkv : 1), sizeof *f->kv);
    f->tensors = calloc((size_t)(nt ? nt : 1), sizeof *f->tensors);
    if (!f->kv || !f->tensors)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->path);
    /* counts grow before each entry is read so that gguf_close frees a half-read one */
    for (uint64_t i = 0; i < nkv; i++) {
        f->n_kv++;
        LK_TRY(rd_kv(f, c, &f->kv[i], (int64_t)i));
    }
    for (uint64_t i = 0; i < nt; i++) {
        f->n_tensors++;
        LK_TRY(rd_tensor_info(c, &f->tensors[i], (int64_t)i));
    }
    LK_TRY(sort_names(c->path, "metadata key", f->n_kv, kv_name, f, &f->kv_sorted));
    return sort_names(c->path, "tensor name", f->n_tensors, tensor_name, f, &f->t_sorted);
}

/* Map path and read its key/value pairs, and its tensor infos unless meta_only; *c is left after
 * them. On failure f is closed. */
static lk_status open_header(gguf_file *f, const char *path, int meta_only, cursor *c)
{
    memset(f, 0, sizeof *f);
    LK_TRY(mapfile_open(&f->map, path, 1));
    *c = (cursor){f->map.data, 0, f->map.size, path};
    lk_status s = rd_header(f, c, meta_only);
    if (s != LK_OK)
        gguf_close(f);
    return s;
}

lk_status gguf_open(gguf_file *f, const char *path)
{
    cursor c;
    LK_TRY(open_header(f, path, 0, &c));
    lk_status s = LK_OK;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find_kv(f, "general.alignment");
    if (al && (al->type != GGUF_U32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)))) {
        s = status_fail(LK_ERR_FORMAT, "%s: general.alignment must be a u32 power of two", path);
        goto fail;
    }
    if (al)
        f->alignment = al->v.u;
    uint64_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
    if (s == LK_OK && c.pos + pad > c.size && f->n_tensors > 0)
        s = need(&c, pad, "padding before the data section");
    f->data_offset = c.pos + pad > c.size ? c.size : c.pos + pad;
    if (s == LK_OK)
        s = check_tensors(f, path);
    if (s == LK_OK)
        return LK_OK;
fail:
    gguf_close(f);
    return s;
}

lk_status gguf_open_meta(gguf_file *f, const char *path)
{
    cursor c;
    return open_header(f, path, 1, &c);
}

void gguf_close(gguf_file *f)
{
    for (int64_t i = 0; i < f->n_kv; i++) {
        free(f->kv[i].key);
        free(f->kv[i].arr_str);
    }
    free(f->kv);
    for (int64_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->kv_sorted);
    free(f->t_sorted);
    mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    gguf_name k = {key, -1}, *hit = NULL;
    if (f->kv_sorted)
        hit = bsearch(&k, f->kv_sorted, (size_t)f->n_kv, sizeof k, cmp_name);
    return hit ? &f->kv[hit->i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    gguf_name k = {name, -1}, *hit = NULL;
    if (f->t_sorted)
        hit = bsearch(&k, f->t_sorted, (size_t)f->n_tensors, sizeof k, cmp_name);
    return hit ? &f->tensors[hit->i] : NULL;
}

lk_status gguf_check_scales(const gguf_file *f, const gguf_tensor *t)
{
    const gguf_type_traits *tt = gguf_type_info(t->type);
    if (!tt || tt->blck == 1 || t->ne[0] <= 0)
        return LK_OK;
    const int64_t rb = gguf_row_size(t->type, t->ne[0]);
    int64_t row, blk;
    float v;
    if (rb > 0 && q4_find_bad_scale(tt->qtype, Q4_QK, t->data, (int64_t)(t->nbytes / (uint64_t)rb),
                                    t->ne[0], &row, &blk, &v))
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s': %s block %lld has scale %g (row %lld, block %lld of "
                           "the row; corrupt file?)",
                           f->map.path, t->name, tt->name,
                           (long long)(row * (t->ne[0] / tt->blck) + blk), (double)v,
                           (long long)row, (long long)blk);
    return LK_OK;
}

static lk_status kv_missing(const gguf_file *f, const char *key, const char *want)
{
    return status_fail(LK_ERR_FORMAT, "%s: metadata '%s' is missing or not %s", f->map.path, key,
                       want);
}

lk_status gguf_get_str(const gguf_file *f, const char *key, char **out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    *out = NULL;
    if (!kv || kv->type != GGUF_STRING)
        return kv_missing(f, key, "a string");
    *out = str_dup(&kv->str);
    return *out ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
}

lk_status gguf_get_f64(const gguf_file *f, const char *key, double *out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || (kv->type != GGUF_F32 && kv->type != GGUF_F64))
        return kv_missing(f, key, "a float");
    *out = kv->v.f;
    return LK_OK;
}

lk_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return kv_missing(f, key, "an integer");
    switch (kv->type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_U64:
        if (kv->v.u > INT64_MAX)
            return kv_missing(f, key, "an integer within 63 bits");
        *out = (int64_t)kv->v.u;
        return LK_OK;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64: *out = kv->v.i; return LK_OK;
    default: return kv_missing(f, key, "an integer");
    }
}

/* ---- writing ---- */

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    struct buf kv; /* serialised metadata entries */
    char **keys;
    int64_t n_kv;
    size_t cap_kv;
    wtensor *t;
    int64_t n_t;
    size_t cap_t;
};

lk_status gguf_writer_new(gguf_writer **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (int64_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->t);
    buf_free(&w->kv);
    free(w);
}

static lk_status put(gguf_writer *w, const void *p, size_t n)
{
    return buf_put(&w->kv, p, n, "gguf writer: metadata");
}

static lk_status put_str(gguf_writer *w, const char *s)
{
    uint64_t n = strlen(s);
    LK_TRY(put(w, &n, 8));
    return put(w, s, n);
}

/* Start a KV: unique key, then the key string and the u32 type. */
static lk_status put_key(gguf_writer *w, const char *key, gguf_vtype t)
{
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return status_fail(LK_ERR_ARG, "gguf writer: key '%s' set twice", key);
    LK_TRY(BUF_GROW(&w->keys, &w->cap_kv, (size_t)w->n_kv + 1, "gguf writer: metadata keys"));
    if (!(w->keys[w->n_kv] = strdup(key)))
        return status_fail(LK_ERR_NOMEM, "out of memory");
    w->n_kv++;
    uint32_t t32 = (uint32_t)t;
    LK_TRY(put_str(w, key));
    return put(w, &t32, 4);
}

lk_status gguf_set_str(gguf_writer *w, const char *key, const char *val)
{
    LK_TRY(put_key(w, key, GGUF_STRING));
    return put_str(w, val);
}

lk_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t val)
{
    LK_TRY(put_key(w, key, GGUF_U32));
    return put(w, &val, 4);
}

lk_status gguf_set_i32(gguf_writer *w, const char *key, int32_t val)
{
    LK_TRY(put_key(w, key, GGUF_I32));
    return put(w, &val, 4);
}

lk_status gguf_set_f32(gguf_writer *w, const char *key, float val)
{
    LK_TRY(put_key(w, key, GGUF_F32));
    return put(w, &val, 4);
}

lk_status gguf_set_bool(gguf_writer *w, const char *key, int val)
{
    uint8_t b = val ? 1 : 0;
    LK_TRY(put_key(w, key, GGUF_BOOL));
    return put(w, &b, 1);
}

lk_status gguf_set_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data, uint64_t n)
{
    if (t >= GGUF_NTYPES || t == GGUF_STRING || t == GGUF_ARRAY)
        return status_fail(LK_ERR_ARG, "gguf writer: key '%s': bad array type %d", key, t);
    uint32_t t32 = (uint32_t)t;
    LK_TRY(put_key(w, key, GGUF_ARRAY));
    LK_TRY(put(w, &t32, 4));
    LK_TRY(put(w, &n, 8));
    return put(w, data, (size_t)n * g_vsize[t]);
}

lk_status gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *vals, uint64_t n)
{
    uint32_t t32 = GGUF_STRING;
    LK_TRY(put_key(w, key, GGUF_ARRAY));
    LK_TRY(put(w, &t32, 4));
    LK_TRY(put(w, &n, 8));
    for (uint64_t i = 0; i < n; i++)
        LK_TRY(put_str(w, vals[i]));
    return LK_OK;
}

static lk_status put_gstr(gguf_writer *w, const gguf_str *s)
{
    LK_TRY(put(w, &s->len, 8));
    return put(w, s->ptr, (size_t)s->len);
}

lk_status gguf_copy_kv(gguf_writer *w, const gguf_kv *kv)
{
    LK_TRY(put_key(w, kv->key, kv->type));
    switch (kv->type) {
    case GGUF_STRING: return put_gstr(w, &kv->str);
    case GGUF_ARRAY: {
        uint32_t t32 = (uint32_t)kv->arr_type;
        LK_TRY(put(w, &t32, 4));
        LK_TRY(put(w, &kv->arr_n, 8));
        if (kv->arr_type != GGUF_STRING)
            return put(w, kv->arr_data, (size_t)kv->arr_n * g_vsize[kv->arr_type]);
        for (uint64_t i = 0; i < kv->arr_n; i++)
            LK_TRY(put_gstr(w, &kv->arr_str[i]));
        return LK_OK;
    }
    case GGUF_F32: {
        float f = (float)kv->v.f;
        return put(w, &f, 4);
    }
    case GGUF_F64: return put(w, &kv->v.f, 8);
    default: { /* integers and bool: the low bytes, little-endian (two's complement for I*) */
        uint64_t u = kv->v.u;
        return put(w, &u, g_vsize[kv->type]);
    }
    }
}

lk_status gguf_add_tensor(gguf_writer *w, const char *name, uint32_t t, int n_dims,
                          const int64_t *ne, const void *data)
{
    const gguf_type_traits *tt = gguf_type_info(t);
    if (!tt || n_dims < 1 || n_dims > GGUF_MAX_DIMS || strlen(name) >= GGUF_MAX_NAME)
        return status_fail(LK_ERR_ARG,
                           "gguf writer: tensor '%s': bad type %u, %d dims or name "
                           "length",
                           name, t, n_dims);
    int64_t numel = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] <= 0 || mul_overflow_i64(numel, ne[d], &numel) != 0)
            return status_fail(LK_ERR_ARG, "gguf writer: tensor '%s': bad dimension %d", name, d);
    if (ne[0] % tt->blck)
        return status_fail(LK_ERR_ARG,
                           "gguf writer: tensor '%s': row of %lld is not a multiple "
                           "of the %s block %lld",
                           name, (long long)ne[0], tt->name, (long long)tt->blck);
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return status_fail(LK_ERR_ARG, "gguf writer: tensor '%s' added twice", name);
    LK_TRY(BUF_GROW(&w->t, &w->cap_t, (size_t)w->n_t + 1, "gguf writer: tensors"));
    wtensor *x = &w->t[w->n_t];
    memset(x, 0, sizeof *x);
    if (!(x->name = strdup(name)))
        return status_fail(LK_ERR_NOMEM, "out of memory");
    x->type = t;
    x->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        x->ne[d] = d < n_dims ? ne[d] : 1;
    x->data = data;
    x->nbytes = (uint64_t)(numel / tt->blck * tt->size);
    w->n_t++;
    return LK_OK;
}

static lk_status write_zeros(afile *a, uint64_t n)
{
    static const uint8_t z[64];
    while (n) {
        uint64_t k = n < sizeof z ? n : sizeof z;
        LK_TRY(afile_write(a, z, (size_t)k));
        n -= k;
    }
    return LK_OK;
}

/* Header: magic, version, counts, the KVs, the tensor infos (offsets assigned here). */
static lk_status write_header(gguf_writer *w, afile *a, uint64_t *pos)
{
    uint32_t ver = GGUF_VERSION;
    uint64_t nt = (uint64_t)w->n_t, nkv = (uint64_t)w->n_kv, off = 0;
    LK_TRY(afile_write(a, GGUF_MAGIC, 4));
    LK_TRY(afile_write(a, &ver, 4));
    LK_TRY(afile_write(a, &nt, 8));
    LK_TRY(afile_write(a, &nkv, 8));
    LK_TRY(afile_write(a, w->kv.p, w->kv.n));
    *pos = 24 + w->kv.n;
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims;
        t->offset = off;
        LK_TRY(afile_write(a, &len, 8));
        LK_TRY(afile_write(a, t->name, len));
        LK_TRY(afile_write(a, &nd, 4));
        for (int d = 0; d < t->n_dims; d++)
            LK_TRY(afile_write(a, &t->ne[d], 8));
        LK_TRY(afile_write(a, &t->type, 4));
        LK_TRY(afile_write(a, &off, 8));
        *pos += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += (t->nbytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT *
               GGUF_DEFAULT_ALIGNMENT;
    }
    uint64_t pad =
        (GGUF_DEFAULT_ALIGNMENT - *pos % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT;
    *pos += pad;
    return write_zeros(a, pad);
}

static lk_status write_data(gguf_writer *w, afile *a, gguf_fill_fn fill, void *user)
{
    void *buf = NULL;
    uint64_t cap = 0;
    lk_status s = LK_OK;
    for (int64_t i = 0; i < w->n_t && s == LK_OK; i++) {
        const wtensor *t = &w->t[i];
        const void *src = t->data;
        if (!src) {
            if (!fill) {
                s = status_fail(LK_ERR_ARG, "gguf writer: tensor '%s' has no data", t->name);
                break;
            }
            if (t->nbytes > cap) {
                free(buf);
                cap = t->nbytes;
                if (!(buf = lk_aligned_alloc((size_t)cap))) {
                    s = status_fail(LK_ERR_NOMEM, "out of memory (%llu bytes for '%s')",
                                    (unsigned long long)cap, t->name);
                    break;
                }
            }
            s = fill(user, i, buf);
            src = buf;
        }
        if (s == LK_OK)
            s = afile_write(a, src, (size_t)t->nbytes);
        uint64_t pad =
            (GGUF_DEFAULT_ALIGNMENT - t->nbytes % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT;
        if (s == LK_OK && i + 1 < w->n_t)
            s = write_zeros(a, pad);
    }
    free(buf);
    return s;
}

lk_status gguf_writer_write(gguf_writer *w, const char *path, int force, gguf_fill_fn fill,
                            void *user)
{
    afile a;
    uint64_t pos = 0;
    LK_TRY(afile_open(&a, path, force));
    lk_status s = write_header(w, &a, &pos);
    if (s == LK_OK)
        s = write_data(w, &a, fill, user);
    if (s == LK_OK)
        return afile_commit(&a);
    afile_abort(&a);
    return s;
}
