/* qbase_write.c — lk_quantize_model: a float Hugging Face folder to a quantised base, one tensor
 * at a time. Three layouts (qbase.h): lorakit's folder (rows as quant/ stores them, mapped at
 * load), llama.cpp GGUF (through merge_gguf.c's writer: names, q/k row order, tokenizer) and a
 * bitsandbytes NF4 folder (the flattened tensor in blocks of 64, as bnb.functional.quantize_4bit
 * does, with QuantState.as_dict(packed=True) companions). Sits on top of the merge files: calls
 * merge.c (merge_prepare, merge_release), merge_hf.c (side files) and merge_gguf.c. */
#include <math.h>
#include <string.h>

#include "model/config.h"
#include "core/json.h"
#include "core/option.h"
#include "lora/merge.h"
#include "model/model.h"
#include "model/qbase.h"
#include "core/status.h"

#define BNB_BLOCK 64

typedef struct {
    struct lk_quantize_params p;
    struct lk_model_config cfg;
    st_set st;
    tensor_spec *specs;
    int n_specs;
    float *work; /* fp32 scratch: the source tensor (flattened, padded for bnb) */
    int64_t work_n;
    int64_t n_report, i_report;
    /* the output: views in file order; src[i] = spec index, -1 for padding, or the bnb part */
    tensor_view *views;
    int *src, *part;
    char (*names)[160];
    int n_views;
    /* bitsandbytes: the quantised state of the current matrix */
    uint8_t *codes, *dq_codes;
    float *absmax, *dq_scale, dq_offset;
    char state_json[512];
} qjob;

enum { BNB_W, BNB_ABSMAX, BNB_NABSMAX, BNB_NMAP, BNB_MAP, BNB_STATE, BNB_PARTS };

struct lk_quantize_params lk_quantize_params_default(void)
{
    struct lk_quantize_params p = {.type = LK_QTYPE_NF4,
                                   .embed_type = LK_QTYPE_F32,
                                   .format = LK_QFORMAT_LORAKIT,
                                   .double_quant = 0,
                                   .n_threads = 0,
                                   .force = 0,
                                   .on_tensor = NULL,
                                   .user = NULL};
    return p;
}

static const char *const g_qformats[] = {"lorakit", "gguf", "hf-bnb"};

lk_status lk_qformat_from_name(const char *name, lk_qformat *out)
{
    int k = option_lookup(g_qformats, 3, name);
    if (k < 0)
        return option_choice("--format", name, "lorakit, gguf or hf-bnb");
    *out = (lk_qformat)k;
    return LK_OK;
}

const char *lk_qformat_name(lk_qformat f)
{
    return (unsigned)f < 3 ? g_qformats[f] : "?";
}

lk_status lk_quantize_params_check(const struct lk_quantize_params *p)
{
    int q4 = p->type == LK_QTYPE_NF4 || p->type == LK_QTYPE_Q4_0 || p->type == LK_QTYPE_IQ4_NL ||
             p->type == LK_QTYPE_Q8_0;
    int gguf_only = p->type >= LK_QTYPE_Q4_1 && p->type < LK_QTYPE_COUNT;
    if (!q4 && !gguf_only)
        return option_choice("--type", lk_qtype_name(p->type),
                             "nf4, q4_0, iq4_nl, q8_0, or for --format gguf q4_1, q5_0, q5_1, "
                             "q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs");
    if (gguf_only && p->format != LK_QFORMAT_GGUF)
        return status_fail(LK_ERR_ARG,
                           "--type %s: a llama.cpp type written with --format gguf only (the "
                           "lorakit and bitsandbytes folders hold nf4, q4_0, iq4_nl or q8_0)",
                           lk_qtype_name(p->type));
    if (p->embed_type != LK_QTYPE_F32 && p->embed_type != LK_QTYPE_Q8_0)
        return option_choice("--quant-embed", lk_qtype_name(p->embed_type), "f32 or q8_0");
    if ((unsigned)p->format > LK_QFORMAT_HF_BNB)
        return option_choice_i("--format", p->format, "lorakit, gguf or hf-bnb");
    if (p->format == LK_QFORMAT_GGUF && p->type == LK_QTYPE_NF4)
        return status_fail(LK_ERR_ARG, "--format gguf: GGUF has no NF4 type (use --type q4_0, "
                                       "iq4_nl or q8_0, or --format lorakit / hf-bnb for nf4)");
    if (p->format == LK_QFORMAT_HF_BNB &&
        (p->type != LK_QTYPE_NF4 || p->embed_type != LK_QTYPE_F32))
        return status_fail(LK_ERR_ARG, "--format hf-bnb: the bitsandbytes layout holds nf4 linear "
                                       "weights with float embeddings (--type nf4 --quant-embed "
                                       "f32)");
    if (p->double_quant && p->format != LK_QFORMAT_HF_BNB)
        return status_fail(LK_ERR_ARG, "--double-quant applies to --format hf-bnb only");
    return LK_OK;
}

/* The float source tensor of spec i as fp32 in j->work (capacity for `extra` more floats). */
static lk_status load_f32(qjob *j, const tensor_spec *sp, int64_t extra, const tensor_view **out)
{
    char want[64], got[64];
    const tensor_view *t = st_set_get(&j->st, sp->name);
    if (!t)
        return status_fail(LK_ERR_SHAPE, "%s: tensor '%s' is missing (expected %s)", j->st.dir,
                           sp->name, shape_str(sp->shape, sp->ndim, want, sizeof want));
    if (t->dt != DT_F32 && t->dt != DT_F16 && t->dt != DT_BF16)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is %s: lora-quantize needs a float model (F32, F16, "
                           "BF16), not an already quantised one",
                           t->file, t->name, dtype_name(t->dt));
    int64_t n = tensor_numel(t);
    if (n != sp->shape[0] * (sp->ndim == 2 ? sp->shape[1] : 1))
        return status_fail(LK_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", t->file,
                           t->name, shape_str(t->shape, t->ndim, got, sizeof got),
                           shape_str(sp->shape, sp->ndim, want, sizeof want));
    if (n + extra > j->work_n) {
        free(j->work);
        j->work_n = n + extra;
        if (!(j->work = lk_aligned_alloc((size_t)j->work_n * sizeof(float))))
            return status_fail(LK_ERR_NOMEM, "out of memory for '%s'", t->name);
    }
    convert_to_f32(t->dt, t->data, j->work, n, j->p.n_threads);
    merge_release(t->data, t->nbytes);
    int64_t k = f32_first_nonfinite(j->work, n);
    if (k >= 0)
        return status_fail(LK_ERR_NUMERIC, "%s: tensor '%s': element %lld is %g", t->file, t->name,
                           (long long)k, j->work[k]);
    *out = t;
    return LK_OK;
}

static lk_qtype spec_type(const qjob *j, const tensor_spec *sp)
{
    return sp->kind == TK_MATRIX  ? j->p.type
           : sp->kind == TK_EMBED ? j->p.embed_type
                                  : LK_QTYPE_F32;
}

static void report(qjob *j, const tensor_spec *sp, lk_qtype q, double rmse, double max_abs,
                   double bytes)
{
    if (sp->ndim != 2)
        return;
    struct lk_quantize_tensor r = {.name = sp->name,
                                   .rows = sp->shape[0],
                                   .cols = sp->shape[1],
                                   .type = q,
                                   .rmse = rmse,
                                   .max_abs = max_abs,
                                   .bits_per_weight =
                                       8.0 * bytes / (double)(sp->shape[0] * sp->shape[1]),
                                   .index = j->i_report++,
                                   .count = j->n_report};
    if (j->p.on_tensor)
        j->p.on_tensor(j->p.user, &r);
}

/* Quantise spec sp (already in j->work) into dst, rows in quant/'s layout, and report. */
static void quantize_rows(qjob *j, const tensor_spec *sp, lk_qtype q, void *dst)
{
    int64_t out = sp->shape[0], in = sp->shape[1];
    double rmse = 0, max_abs = 0;
    q4_quantize_matrix(q, Q4_NF4_BLOCK, j->work, out, in, dst, j->p.n_threads, &rmse, &max_abs);
    report(j, sp, q, rmse, max_abs, (double)((size_t)out * q4_row_bytes(q, Q4_NF4_BLOCK, in)));
}

/* ---- views (lorakit and bnb layouts) -------------------------------------------------------- */

static lk_status add_view(qjob *j, int src, int part, dtype dt, int ndim, int64_t d0, int64_t d1,
                          const char *name)
{
    int i = j->n_views++;
    tensor_view *v = &j->views[i];
    snprintf(j->names[i], sizeof j->names[i], "%s", name);
    v->name = j->names[i];
    v->dt = dt;
    v->ndim = ndim;
    v->shape[0] = d0;
    v->shape[1] = d1;
    v->nbytes = (size_t)(d0 * (ndim == 2 ? d1 : 1)) * dtype_size(dt);
    j->src[i] = src;
    j->part[i] = part;
    return LK_OK;
}

static lk_status alloc_views(qjob *j, int cap)
{
    j->views = calloc((size_t)cap, sizeof *j->views);
    j->src = calloc((size_t)cap, sizeof *j->src);
    j->part = calloc((size_t)cap, sizeof *j->part);
    j->names = calloc((size_t)cap, sizeof *j->names);
    if (!j->views || !j->src || !j->part || !j->names)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    return LK_OK;
}

/* lorakit: one view per spec, U8 padding before any that would not start 64-byte aligned. */
static lk_status lorakit_views(qjob *j)
{
    LK_TRY(alloc_views(j, 2 * j->n_specs));
    size_t off = 0;
    for (int i = 0; i < j->n_specs; i++) {
        const tensor_spec *sp = &j->specs[i];
        lk_qtype q = spec_type(j, sp);
        if (off % 64) {
            char pad[32];
            snprintf(pad, sizeof pad, QBASE_PAD_PREFIX "%d", i);
            LK_TRY(add_view(j, -1, 0, DT_U8, 1, (int64_t)(64 - off % 64), 0, pad));
            off += 64 - off % 64;
        }
        if (q == LK_QTYPE_F32)
            LK_TRY(add_view(j, i, 0, DT_F32, sp->ndim, sp->shape[0], sp->shape[1], sp->name));
        else
            LK_TRY(add_view(j, i, 0, DT_U8, 2, sp->shape[0],
                            (int64_t)q4_row_bytes(q, Q4_NF4_BLOCK, sp->shape[1]), sp->name));
        off += j->views[j->n_views - 1].nbytes;
    }
    return LK_OK;
}

static lk_status lorakit_fill(void *user, int i, void *dst)
{
    qjob *j = user;
    if (j->src[i] < 0) {
        memset(dst, 0, j->views[i].nbytes);
        return LK_OK;
    }
    const tensor_spec *sp = &j->specs[j->src[i]];
    const tensor_view *t;
    lk_qtype q = spec_type(j, sp);
    LK_TRY(load_f32(j, sp, 0, &t));
    if (q == LK_QTYPE_F32) {
        memcpy(dst, j->work, j->views[i].nbytes);
        report(j, sp, q, 0, 0, (double)j->views[i].nbytes);
        return LK_OK;
    }
    quantize_rows(j, sp, q, dst);
    return LK_OK;
}

static cJSON *lorakit_meta(const qjob *j)
{
    char b[16];
    cJSON *m = cJSON_CreateObject();
    snprintf(b, sizeof b, "%d", Q4_NF4_BLOCK);
    cJSON_AddStringToObject(m, "format", "pt");
    cJSON_AddStringToObject(m, QBASE_KEY_VERSION, "1");
    cJSON_AddStringToObject(m, QBASE_KEY_QUANT, lk_qtype_name(j->p.type));
    cJSON_AddStringToObject(m, QBASE_KEY_BLOCK, b);
    cJSON_AddStringToObject(m, QBASE_KEY_EMBED, lk_qtype_name(j->p.embed_type));
    return m;
}

/* ---- bitsandbytes layout ----------------------------------------------------------------------
 */

/* Flattened NF4 of the matrix in j->work (n values, zero-padded to whole blocks): codes, absmax,
 * optional double quantisation, the quant_state JSON; reports the round-trip error. */
static lk_status bnb_quantize(qjob *j, const tensor_spec *sp)
{
    int64_t n = sp->shape[0] * sp->shape[1], nb = (n + BNB_BLOCK - 1) / BNB_BLOCK;
    memset(j->work + n, 0, (size_t)(nb * BNB_BLOCK - n) * sizeof(float));
    q4_quantize_nf4(j->work, nb * BNB_BLOCK, BNB_BLOCK, j->codes, j->absmax);
    int len = snprintf(j->state_json, sizeof j->state_json,
                       "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"float32\", "
                       "\"shape\": [%lld, %lld]",
                       BNB_BLOCK, (long long)sp->shape[0], (long long)sp->shape[1]);
    float *am = j->absmax;
    if (j->p.double_quant) {
        q4_nf4_dq dq = {.n = nb, .codes = j->dq_codes, .scale = j->dq_scale};
        q4_nf4_dq_quantize(j->absmax, nb, &dq);
        j->dq_offset = dq.offset;
        q4_nf4_dq_dequantize(&dq, j->absmax + nb); /* the absmax a reader will see */
        am = j->absmax + nb;
        /* %.8e: fixed width for a non-negative mean, 9 digits round-trip fp32 */
        snprintf(j->state_json + len, sizeof j->state_json - (size_t)len,
                 ", \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", "
                 "\"nested_offset\": %.8e}",
                 Q4_DQ_BLOCK, (double)dq.offset);
    } else {
        snprintf(j->state_json + len, sizeof j->state_json - (size_t)len, "}");
    }
    double se = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = j->codes[i / 2];
        double d = (double)(am[i / BNB_BLOCK] * q4_nf4_code[(i & 1) ? c & 15 : c >> 4]) -
                   (double)j->work[i];
        se += d * d;
        mx = fabs(d) > mx ? fabs(d) : mx;
    }
    double bytes = (double)((n + 1) / 2) + (j->p.double_quant ? (double)nb : 4.0 * (double)nb);
    report(j, sp, LK_QTYPE_NF4, sqrt(se / (double)n), mx, bytes);
    return LK_OK;
}

/* Length of the quant_state JSON of spec sp (written later with the same length: the offset
 * is printed with a fixed width). */
static int64_t bnb_state_len(const qjob *j, const tensor_spec *sp)
{
    char buf[512];
    int len = snprintf(buf, sizeof buf,
                       "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"float32\", "
                       "\"shape\": [%lld, %lld]",
                       BNB_BLOCK, (long long)sp->shape[0], (long long)sp->shape[1]);
    if (!j->p.double_quant)
        return len + 1;
    return len + snprintf(buf, sizeof buf,
                          ", \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", "
                          "\"nested_offset\": %.8e}",
                          Q4_DQ_BLOCK, 1.0);
}

static lk_status bnb_views(qjob *j)
{
    int64_t maxn = 0;
    LK_TRY(alloc_views(j, BNB_PARTS * j->n_specs));
    for (int i = 0; i < j->n_specs; i++) {
        const tensor_spec *sp = &j->specs[i];
        char nm[160];
        if (sp->kind != TK_MATRIX) {
            LK_TRY(add_view(j, i, 0, DT_F32, sp->ndim, sp->shape[0], sp->shape[1], sp->name));
            continue;
        }
        int64_t n = sp->shape[0] * sp->shape[1], nb = (n + BNB_BLOCK - 1) / BNB_BLOCK;
        maxn = n > maxn ? n : maxn;
#define PART(p, dt, d0, d1, sfx)                     \
    (snprintf(nm, sizeof nm, "%s%s", sp->name, sfx), \
     add_view(j, i, p, dt, (d1) ? 2 : 1, d0, d1, nm))
        LK_TRY(PART(BNB_W, DT_U8, (n + 1) / 2, 1, ""));
        LK_TRY(PART(BNB_ABSMAX, j->p.double_quant ? DT_U8 : DT_F32, nb, 0, ".absmax"));
        if (j->p.double_quant) {
            LK_TRY(PART(BNB_NABSMAX, DT_F32, (nb + Q4_DQ_BLOCK - 1) / Q4_DQ_BLOCK, 0,
                        ".nested_absmax"));
            LK_TRY(PART(BNB_NMAP, DT_F32, 256, 0, ".nested_quant_map"));
        }
        LK_TRY(PART(BNB_MAP, DT_F32, 16, 0, ".quant_map"));
        LK_TRY(PART(BNB_STATE, DT_U8, bnb_state_len(j, sp), 0, ".quant_state.bitsandbytes__nf4"));
#undef PART
    }
    int64_t nb = (maxn + BNB_BLOCK - 1) / BNB_BLOCK;
    j->codes = malloc((size_t)(nb * BNB_BLOCK / 2 + 1));
    j->absmax = malloc((size_t)(2 * nb + 1) * sizeof(float));
    j->dq_codes = malloc((size_t)nb + 1);
    j->dq_scale = malloc((size_t)(nb / Q4_DQ_BLOCK + 1) * sizeof(float));
    if (!j->codes || !j->absmax || !j->dq_codes || !j->dq_scale)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    return LK_OK;
}

static lk_status bnb_fill(void *user, int i, void *dst)
{
    qjob *j = user;
    const tensor_spec *sp = &j->specs[j->src[i]];
    const tensor_view *t;
    size_t nbytes = j->views[i].nbytes;
    switch (j->part[i]) {
    case BNB_W:
        LK_TRY(load_f32(j, sp, sp->kind == TK_MATRIX ? BNB_BLOCK : 0, &t));
        if (sp->kind != TK_MATRIX) {
            memcpy(dst, j->work, nbytes);
            report(j, sp, LK_QTYPE_F32, 0, 0, (double)nbytes);
            return LK_OK;
        }
        LK_TRY(bnb_quantize(j, sp));
        memcpy(dst, j->codes, nbytes);
        return LK_OK;
    case BNB_ABSMAX:
        memcpy(dst, j->p.double_quant ? (void *)j->dq_codes : (void *)j->absmax, nbytes);
        return LK_OK;
    case BNB_NABSMAX: memcpy(dst, j->dq_scale, nbytes); return LK_OK;
    case BNB_NMAP: memcpy(dst, q4_dynamic_map, nbytes); return LK_OK;
    case BNB_MAP: memcpy(dst, q4_nf4_code, nbytes); return LK_OK;
    default:
        LK_ASSERT(strlen(j->state_json) == nbytes); /* fixed-width JSON, finite offset */
        memcpy(dst, j->state_json, nbytes);
        return LK_OK;
    }
}

/* config.json of the source, with quantization_config as transformers writes it for
 * BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", ...). */
static lk_status write_config(const qjob *j, const char *src_dir, const char *dir)
{
    char *src = path_join(src_dir, "config.json"), *dst = path_join(dir, "config.json");
    char *out = NULL;
    cJSON *c = NULL;
    afile a = {0};
    lk_status s = src && dst ? json_read_file(src, 16u << 20, &c)
                             : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK && j->p.format == LK_QFORMAT_HF_BNB) {
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "quant_method", "bitsandbytes");
        cJSON_AddBoolToObject(q, "load_in_4bit", 1);
        cJSON_AddBoolToObject(q, "load_in_8bit", 0);
        cJSON_AddStringToObject(q, "bnb_4bit_quant_type", "nf4");
        cJSON_AddBoolToObject(q, "bnb_4bit_use_double_quant", j->p.double_quant);
        cJSON_AddStringToObject(q, "bnb_4bit_compute_dtype", "float32");
        cJSON_AddStringToObject(q, "bnb_4bit_quant_storage", "uint8");
        cJSON_AddNumberToObject(q, "llm_int8_threshold", 6.0);
        cJSON_AddNullToObject(q, "llm_int8_skip_modules");
        cJSON_AddBoolToObject(q, "llm_int8_enable_fp32_cpu_offload", 0);
        cJSON_AddBoolToObject(q, "llm_int8_has_fp16_weight", 0);
        cJSON_DeleteItemFromObjectCaseSensitive(c, "quantization_config");
        cJSON_AddItemToObject(c, "quantization_config", q);
        cJSON_DeleteItemFromObjectCaseSensitive(c, "torch_dtype");
        cJSON_AddStringToObject(c, "torch_dtype", "float32");
    }
    if (s == LK_OK && !(out = cJSON_Print(c)))
        s = status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK)
        s = afile_open(&a, dst, 0);
    if (s == LK_OK && (s = afile_write(&a, out, strlen(out))) == LK_OK)
        s = afile_commit(&a);
    else if (a.f)
        afile_abort(&a);
    cJSON_Delete(c);
    free(out);
    free(src);
    free(dst);
    return s;
}

static lk_status write_folder(qjob *j, const char *dir, const char *out)
{
    char *tmp = NULL, *path = NULL;
    int bnb = j->p.format == LK_QFORMAT_HF_BNB;
    lk_status s = bnb ? bnb_views(j) : lorakit_views(j);
    if (s == LK_OK)
        s = tmpdir_create(out, j->p.force, &tmp);
    if (s == LK_OK && !(path = path_join(tmp, "model.safetensors")))
        s = status_fail(LK_ERR_NOMEM, "out of memory");
    cJSON *meta = bnb ? cJSON_CreateObject() : lorakit_meta(j);
    if (bnb)
        cJSON_AddStringToObject(meta, "format", "pt");
    if (s == LK_OK)
        s = st_write(path, j->views, j->n_views, meta, bnb ? bnb_fill : lorakit_fill, j, 0);
    cJSON_Delete(meta);
    if (s == LK_OK)
        s = write_config(j, dir, tmp);
    if (s == LK_OK)
        s = merge_copy_side_files(dir, tmp);
    if (s == LK_OK)
        s = tmpdir_commit(tmp, out, j->p.force);
    if (s != LK_OK && tmp)
        remove_tree(tmp);
    free(tmp);
    free(path);
    return s;
}

/* ---- GGUF ------------------------------------------------------------------------------------ */

/* The errors (RMSE, max) of each quantised tensor: the GGUF rows are quant/'s rows (q/k rows
 * permuted, which changes neither), so they are measured here before merge_gguf writes them. */
/* A tensor whose rows are not whole blocks of its type is written in llama-quantize's fallback
 * type (F16 when no quantised type fits), with a warning naming it; its errors are reported as
 * such. */
static lk_qtype fallback_type(qjob *j, const tensor_spec *sp, lk_qtype want)
{
    uint32_t gt = gguf_type_fallback(gguf_type_of(want), sp->shape[1]);
    lk_qtype q = (lk_qtype)gguf_type_info(gt)->qtype;
    if (q != want)
        log_warn("%s: tensor '%s' has rows of %lld values, not whole blocks of %s as llama.cpp "
                 "needs: written %s (as llama-quantize does)",
                 j->st.dir, sp->name, (long long)sp->shape[1],
                 gguf_type_info(gguf_type_of(want))->name, gguf_type_info(gt)->name);
    return q;
}

static lk_status gguf_report(qjob *j)
{
    void *buf = NULL;
    size_t cap = 0;
    lk_status s = LK_OK;
    for (int i = 0; i < j->n_specs && s == LK_OK; i++) {
        const tensor_spec *sp = &j->specs[i];
        lk_qtype q = spec_type(j, sp);
        const tensor_view *t;
        if (sp->ndim != 2 || (s = load_f32(j, sp, 0, &t)) != LK_OK)
            continue;
        if (q == LK_QTYPE_F32) {
            report(j, sp, q, 0, 0, 4.0 * (double)(sp->shape[0] * sp->shape[1]));
            continue;
        }
        q = fallback_type(j, sp, q);
        size_t need = (size_t)sp->shape[0] * q4_row_bytes(q, Q4_NF4_BLOCK, sp->shape[1]);
        if (need > cap) {
            free(buf);
            buf = malloc(cap = need);
        }
        if (!buf)
            s = status_fail(LK_ERR_NOMEM, "out of memory for '%s'", sp->name);
        else
            quantize_rows(j, sp, q, buf);
    }
    free(buf);
    return s;
}

static lk_status write_gguf(qjob *j, const char *dir, const char *out)
{
    merge_ctx c;
    struct lk_merge_params mp = lk_merge_params_default();
    mp.dtype = lk_qtype_name(j->p.type);
    mp.n_threads = j->p.n_threads;
    mp.force = j->p.force;
    LK_TRY(gguf_report(j));
    LK_TRY(merge_prepare(&c, &j->cfg, NULL, NULL, 0, &mp));
    c.embed_type = gguf_type_of(j->p.embed_type);
    c.embed_set = 1; /* rows that are not whole blocks: the fallback type (warned in gguf_report) */
    return merge_gguf(&c, dir, out);
}

lk_status lk_quantize_model(const char *dir, const char *out, const struct lk_quantize_params *p)
{
    qjob j = {.p = p ? *p : lk_quantize_params_default()};
    LK_TRY(lk_quantize_params_check(&j.p));
    j.p.n_threads = resolve_threads(j.p.n_threads);
    if (model_path_is_gguf(dir))
        return qbase_requantize_gguf(dir, out, &j.p);
    LK_TRY(lk_config_load(dir, &j.cfg));
    LK_TRY(st_set_open(&j.st, dir, 1));
    j.specs = calloc((size_t)model_n_specs(&j.cfg), sizeof *j.specs);
    lk_status s = j.specs ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK)
        j.n_specs = model_specs(&j.cfg, NULL, j.specs);
    for (int i = 0; i < j.n_specs; i++)
        j.n_report += j.specs[i].ndim == 2;
    if (s == LK_OK)
        s = j.p.format == LK_QFORMAT_GGUF ? write_gguf(&j, dir, out) : write_folder(&j, dir, out);
    free(j.specs);
    free(j.work);
    free(j.views);
    free(j.src);
    free(j.part);
    free(j.names);
    free(j.codes);
    free(j.absmax);
    free(j.dq_codes);
    free(j.dq_scale);
    st_set_close(&j.st);
    return s;
}
