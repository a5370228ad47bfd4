/* qbase.c — binding pre-quantised weights at load (see qbase.h): lorakit's own quantised folder
 * (rows used in place from the mapping) and bitsandbytes 4-bit folders (bitsandbytes'
 * QuantState.as_dict(packed=True) layout, converted to quant/'s NF4 rows without
 * re-quantising when the row length is a multiple of the blocksize). */
#include "model/qbase.h"

#include <math.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"

#define QBASE_VERSION 1

static const st_file *file_of(const st_set *st, const tensor_view *t)
{
    for (int i = 0; i < st->n_files; i++)
        if (st->files[i].map.path == t->file)
            return &st->files[i];
    return &st->files[0];
}

static const char *meta_str(const st_file *f, const char *key)
{
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The format the file's metadata gives for a matrix (embed 0) or the embeddings (embed 1). */
static lk_status lorakit_format(const st_file *f, int embed, lk_qtype *q, int *block)
{
    const char *path = f->map.path;
    const char *ver = meta_str(f, QBASE_KEY_VERSION), *qs = meta_str(f, QBASE_KEY_QUANT);
    const char *es = meta_str(f, QBASE_KEY_EMBED), *bs = meta_str(f, QBASE_KEY_BLOCK);
    if (!ver || !qs || !es || !bs)
        return status_fail(LK_ERR_FORMAT, "%s: __metadata__ needs string keys %s, %s, %s and %s",
                           path, QBASE_KEY_VERSION, QBASE_KEY_QUANT, QBASE_KEY_EMBED,
                           QBASE_KEY_BLOCK);
    char *ve, *e;
    long v = strtol(ver, &ve, 10), b = strtol(bs, &e, 10);
    if (*ve != '\0' || v < 1 || v > QBASE_VERSION)
        return status_fail(v > QBASE_VERSION ? LK_ERR_UNSUPPORTED : LK_ERR_FORMAT,
                           "%s: %s '%s': this build reads version %d (file %s)", path,
                           QBASE_KEY_VERSION, ver, QBASE_VERSION,
                           v > QBASE_VERSION ? "too new" : "invalid");
    if (*bs == '\0' || *e != '\0' || !q4_valid(LK_QTYPE_NF4, (int)b) || b > Q4_NF4_BLOCK_MAX)
        return status_fail(LK_ERR_FORMAT, "%s: %s '%s' is not a power of two in [%d, %d]", path,
                           QBASE_KEY_BLOCK, bs, Q4_NF4_BLOCK_MIN, Q4_NF4_BLOCK_MAX);
    lk_qtype mq, eq;
    if (lk_qtype_from_name(qs, &mq) != LK_OK || !(mq == LK_QTYPE_NF4 || mq == LK_QTYPE_Q4_0 ||
                                                  mq == LK_QTYPE_IQ4_NL || mq == LK_QTYPE_Q8_0))
        return status_fail(LK_ERR_FORMAT, "%s: %s '%s' is not one of nf4, q4_0, iq4_nl, q8_0", path,
                           QBASE_KEY_QUANT, qs);
    if (lk_qtype_from_name(es, &eq) != LK_OK || !(eq == LK_QTYPE_F32 || eq == LK_QTYPE_Q8_0))
        return status_fail(LK_ERR_FORMAT, "%s: %s '%s' is not one of f32, q8_0", path,
                           QBASE_KEY_EMBED, es);
    if (embed && eq == LK_QTYPE_F32)
        return status_fail(LK_ERR_FORMAT, "%s: embeddings are U8 but %s is f32", path,
                           QBASE_KEY_EMBED);
    *q = embed ? eq : mq;
    *block = *q == LK_QTYPE_NF4 ? (int)b : Q4_QK;
    return LK_OK;
}

/* Every scale of the rows is finite: NF4's fp32 absmax after the codes, the GGUF types' fp16 d
 * at the start of each block. Returns the first bad (row, block) through the message. */
static lk_status check_scales(const q4_weight *w, const char *file, const char *name)
{
    int64_t blen = q4_block_len(w->qtype, w->block), nb = (w->in + blen - 1) / blen;
    size_t bsize = w->qtype == LK_QTYPE_Q8_0 ? sizeof(q4_block_q8_0) : sizeof(q4_block_q4_0);
    for (int64_t r = 0; r < w->out; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            float s;
            if (w->qtype == LK_QTYPE_NF4) {
                memcpy(&s, row + (size_t)(nb * blen / 2) + (size_t)b * 4, 4);
            } else {
                uint16_t h;
                memcpy(&h, row + (size_t)b * bsize, 2);
                s = q4_fp16_to_fp32(h);
            }
            if (!isfinite(s))
                return status_fail(LK_ERR_FORMAT,
                                   "%s: tensor '%s': %s scale of row %lld block %lld is %g "
                                   "(corrupt file?)",
                                   file, name, lk_qtype_name(w->qtype), (long long)r, (long long)b,
                                   s);
        }
    }
    return LK_OK;
}

static lk_status bind_lorakit(const st_file *f, const tensor_view *t, int64_t out, int64_t in,
                              int embed, q4_weight *qw, void **owned)
{
    lk_qtype q = LK_QTYPE_F32;
    int block = 0;
    char got[64];
    LK_TRY(lorakit_format(f, embed, &q, &block));
    size_t rb = q4_row_bytes(q, block, in);
    if (t->ndim != 2 || t->shape[0] != out || (size_t)t->shape[1] != rb)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s' is U8 %s, expected [%lld, %zu] (%s rows of %lld "
                           "values, block %d; hint: config.json does not match the weights?)",
                           t->file, t->name, shape_str(t->shape, t->ndim, got, sizeof got),
                           (long long)out, rb, lk_qtype_name(q), (long long)in, block);
    const void *data = t->data;
    if ((uintptr_t)data & 63) { /* not written by us: keep the kernels' loads aligned */
        void *copy = lk_aligned_alloc(t->nbytes);
        if (!copy)
            return status_fail(LK_ERR_NOMEM, "%s: cannot copy '%s'", t->file, t->name);
        memcpy(copy, data, t->nbytes);
        *owned = copy;
        data = copy;
    }
    lk_status s = q4_weight_init(qw, q, block, out, in, data);
    if (s == LK_OK)
        s = check_scales(qw, t->file, t->name);
    if (s != LK_OK) { /* *owned is set only on success, as bind_bnb does */
        free(*owned);
        *owned = NULL;
    }
    return s;
}

/* ---- bitsandbytes ---------------------------------------------------------------------------- */

typedef struct {
    const st_set *st;
    const char *wname; /* the packed weight's name */
    const char *file;
    int block, nested, nested_block;
    float offset;
} bnb_state;

/* The companion tensor "<weight>.<suffix>": must exist with dtype dt and n elements. */
static lk_status bnb_part(const bnb_state *b, const char *suffix, dtype dt, int64_t n,
                          const tensor_view **out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", b->wname, suffix);
    const tensor_view *t = st_set_get(b->st, name);
    if (!t)
        return status_fail(LK_ERR_FORMAT, "%s: bitsandbytes tensor '%s' is missing", b->file, name);
    if (t->dt != dt || (n >= 0 && tensor_numel(t) != n))
        return status_fail(LK_ERR_FORMAT,
                           "%s: bitsandbytes tensor '%s' is %s with %lld elements, expected %s "
                           "with %lld",
                           t->file, name, dtype_name(t->dt), (long long)tensor_numel(t),
                           dtype_name(dt), (long long)n);
    *out = t;
    return LK_OK;
}

static lk_status bnb_json_int(const bnb_state *b, const cJSON *j, const char *key, int64_t *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 1 ||
        x->valuedouble > (double)(1LL << 40))
        return status_fail(LK_ERR_FORMAT,
                           "%s: '%s.quant_state.bitsandbytes__nf4': '%s' must be a positive "
                           "integer",
                           b->file, b->wname, key);
    *v = (int64_t)x->valuedouble;
    return LK_OK;
}

/* quant_state JSON: quant_type nf4, blocksize, shape [out, in], nested_* when double-quantised. */
static lk_status bnb_parse_state(bnb_state *b, const tensor_view *qs, int64_t out, int64_t in)
{
    char what[512];
    snprintf(what, sizeof what, "%s: '%s'", qs->file, qs->name);
    cJSON *j = NULL;
    LK_TRY(json_parse(what, (const char *)qs->data, qs->nbytes, &j));
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(j, "quant_type");
    int64_t bs = 0, nbs = 0;
    lk_status s = LK_OK;
    if (!cJSON_IsObject(j) || !cJSON_IsString(qt) || !cJSON_IsArray(sh) ||
        cJSON_GetArraySize(sh) != 2)
        s = status_fail(LK_ERR_FORMAT,
                        "%s: '%s': not a JSON object with quant_type and a 2-d shape", qs->file,
                        qs->name);
    else if (strcmp(qt->valuestring, "nf4") != 0)
        s = status_fail(LK_ERR_UNSUPPORTED,
                        "%s: '%s': bitsandbytes quant_type '%s' is not supported (only nf4)",
                        qs->file, qs->name, qt->valuestring);
    if (s == LK_OK)
        s = bnb_json_int(b, j, "blocksize", &bs);
    if (s == LK_OK && (!cJSON_IsNumber(sh->child) || !cJSON_IsNumber(sh->child->next)))
        s = status_fail(LK_ERR_FORMAT, "%s: '%s': shape must hold numbers", qs->file, qs->name);
    if (s == LK_OK) {
        /* compared as doubles: a wild value is never converted to an integer */
        double d0 = sh->child->valuedouble, d1 = sh->child->next->valuedouble;
        if (d0 != (double)out || d1 != (double)in)
            s = status_fail(LK_ERR_SHAPE,
                            "%s: '%s': shape [%.15g, %.15g], expected [%lld, %lld] from "
                            "config.json",
                            qs->file, qs->name, d0, d1, (long long)out, (long long)in);
        else if (bs > Q4_NF4_BLOCK_MAX || !q4_valid(LK_QTYPE_NF4, (int)bs))
            s = status_fail(LK_ERR_UNSUPPORTED,
                            "%s: '%s': blocksize %lld (supported: powers of two in [%d, %d])",
                            qs->file, qs->name, (long long)bs, Q4_NF4_BLOCK_MIN, Q4_NF4_BLOCK_MAX);
    }
    b->block = (int)bs;
    if (s == LK_OK && b->nested) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "nested_offset");
        s = bnb_json_int(b, j, "nested_blocksize", &nbs);
        if (s == LK_OK && (!cJSON_IsNumber(off) || !isfinite(off->valuedouble) || nbs > 65536))
            s = status_fail(LK_ERR_FORMAT,
                            "%s: '%s': double quantisation needs a finite nested_offset and "
                            "nested_blocksize <= 65536",
                            qs->file, qs->name);
        b->nested_block = (int)nbs;
        b->offset = s == LK_OK ? (float)off->valuedouble : 0;
    }
    cJSON_Delete(j);
    return s;
}

/* absmax[nb] as fp32: stored, or dequantised from the nested 8-bit form as bitsandbytes does
 * (dynamic_map[code] * nested_absmax[i / nested_block] + offset, in fp32). */
static lk_status bnb_absmax(const bnb_state *b, int64_t nb, float *absmax)
{
    const tensor_view *a, *na, *nm;
    if (!b->nested) {
        LK_TRY(bnb_part(b, "absmax", DT_F32, nb, &a));
        memcpy(absmax, a->data, (size_t)nb * 4);
    } else {
        int64_t nn = (nb + b->nested_block - 1) / b->nested_block;
        LK_TRY(bnb_part(b, "absmax", DT_U8, nb, &a));
        LK_TRY(bnb_part(b, "nested_absmax", DT_F32, nn, &na));
        LK_TRY(bnb_part(b, "nested_quant_map", DT_F32, 256, &nm));
        const uint8_t *codes = a->data;
        for (int64_t i = 0; i < nb; i++) {
            float map, scale;
            memcpy(&map, (const uint8_t *)nm->data + 4 * (size_t)codes[i], 4);
            memcpy(&scale, (const uint8_t *)na->data + 4 * (size_t)(i / b->nested_block), 4);
            absmax[i] = map * scale + b->offset;
        }
    }
    for (int64_t i = 0; i < nb; i++)
        if (!isfinite(absmax[i]))
            return status_fail(LK_ERR_FORMAT,
                               "%s: tensor '%s': absmax of block %lld is %g (corrupt file?)",
                               b->file, b->wname, (long long)i, absmax[i]);
    return LK_OK;
}

/* quant_map must be the NF4 codebook the kernels use (bit for bit). */
static lk_status bnb_check_map(const bnb_state *b)
{
    const tensor_view *m;
    LK_TRY(bnb_part(b, "quant_map", DT_F32, 16, &m));
    if (memcmp(m->data, q4_nf4_code, sizeof(float) * 16) != 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: '%s.quant_map' is not the NF4 codebook (custom 4-bit maps are "
                           "not supported)",
                           b->file, b->wname);
    return LK_OK;
}

/* W[out, in] in fp32 from the flattened codes/absmax when blocks straddle rows: exactly the
 * values bitsandbytes' dequantize_4bit gives (absmax[i / block] * nf4[code i]). */
static void bnb_dequantize(const uint8_t *codes, const float *absmax, int64_t n, int block,
                           float *w)
{
    for (int64_t i = 0; i < n; i++) {
        uint8_t byte = codes[i / 2];
        w[i] = absmax[i / block] * q4_nf4_code[(i & 1) ? byte & 15 : byte >> 4];
    }
}

static lk_status bind_bnb(const st_set *st, const tensor_view *t, int64_t out, int64_t in,
                          q4_weight *qw, const float **w32, void **owned)
{
    bnb_state b = {.st = st, .wname = t->name, .file = t->file};
    const tensor_view *qs;
    char nested[256];
    snprintf(nested, sizeof nested, "%s.nested_absmax", t->name);
    b.nested = st_set_get(st, nested) != NULL;
    LK_TRY(bnb_part(&b, "quant_state.bitsandbytes__nf4", DT_U8, -1, &qs));
    LK_TRY(bnb_parse_state(&b, qs, out, in));
    LK_TRY(bnb_check_map(&b));
    int64_t n = out * in, nb = (n + b.block - 1) / b.block;
    if (tensor_numel(t) != (n + 1) / 2)
        return status_fail(LK_ERR_FORMAT,
                           "%s: tensor '%s' holds %lld packed bytes, expected %lld for shape "
                           "[%lld, %lld]",
                           t->file, t->name, (long long)tensor_numel(t), (long long)((n + 1) / 2),
                           (long long)out, (long long)in);
    int rows = in % b.block == 0; /* else blocks straddle rows: kept as exact fp32 */
    size_t nbytes =
        rows ? (size_t)out * q4_row_bytes(LK_QTYPE_NF4, b.block, in) : (size_t)n * sizeof(float);
    float *absmax = malloc((size_t)nb * sizeof(float));
    void *buf = lk_aligned_alloc(nbytes);
    lk_status s = absmax && buf ? bnb_absmax(&b, nb, absmax)
                                : status_fail(LK_ERR_NOMEM, "out of memory for '%s'", t->name);
    if (s == LK_OK && rows) {
        s = q4_nf4_from_bnb(t->data, absmax, out, in, b.block, buf);
        if (s == LK_OK)
            s = q4_weight_init(qw, LK_QTYPE_NF4, b.block, out, in, buf);
    } else if (s == LK_OK) {
        log_info("%s: rows of %lld values are not whole bitsandbytes blocks of %d: kept as fp32 "
                 "(bitsandbytes' dequantised values)",
                 t->name, (long long)in, b.block);
        bnb_dequantize(t->data, absmax, n, b.block, buf);
        *w32 = buf;
    }
    free(absmax);
    if (s != LK_OK) {
        free(buf);
        return s;
    }
    *owned = buf;
    return LK_OK;
}

lk_status qbase_bind(const st_set *st, const tensor_view *t, int64_t out, int64_t in, int embed,
                     q4_weight *qw, const float **w32, void **owned)
{
    char name[256];
    const tensor_view *dummy;
    *w32 = NULL;
    *owned = NULL;
    const st_file *f = file_of(st, t);
    if (meta_str(f, QBASE_KEY_QUANT))
        return bind_lorakit(f, t, out, in, embed, qw, owned);
    snprintf(name, sizeof name, "%s.quant_state.bitsandbytes__nf4", t->name);
    if ((dummy = st_set_get(st, name)) != NULL)
        return bind_bnb(st, t, out, in, qw, w32, owned);
    snprintf(name, sizeof name, "%s.quant_state.bitsandbytes__fp4", t->name);
    if ((dummy = st_set_get(st, name)) != NULL)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is bitsandbytes fp4, which is not supported (only "
                           "nf4; re-quantise the original model with bnb_4bit_quant_type=nf4)",
                           t->file, t->name);
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: tensor '%s' is U8 but the file has no %s metadata (lorakit "
                       "quantised base) and no bitsandbytes quant_state for it",
                       t->file, t->name, QBASE_KEY_QUANT);
}
