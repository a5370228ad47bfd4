/* qbase_gguf.c — lk_quantize_model from a llama.cpp GGUF model file: a GGUF file with the
 * source's metadata (general.file_type set to the new type; general.alignment left to the
 * writer's 32) and its tensors in order. The seven projection matrices (blk.N.attn_q ...
 * ffn_down) are dequantised from their type and quantised to --type, token_embd / output to
 * --quant-embed (f32 or q8_0), each with llama-quantize's fallback type for rows that are not
 * whole blocks (warned, naming the tensor); every other tensor (norms, rope factors) is copied
 * byte for byte. Re-quantising loses precision, as llama-quantize --allow-requantize warns. One
 * tensor is held in fp32 at a time. */
#include <stdlib.h>
#include <string.h>

#include "q4.h"
#include "lora/merge.h"
#include "core/status.h"
#include "core/tensor.h"

typedef struct {
    struct lk_quantize_params p;
    const gguf_file *g;
    uint32_t *type; /* [n_tensors] output type */
    int *convert;   /* [n_tensors] 1: dequantised and quantised again, 0: copied */
    float *work;    /* fp32 of the current tensor */
    int64_t work_n;
    int64_t n_report, i_report;
} rq_job;

/* The type tensor t is asked for: --type for the projection matrices, --quant-embed for the
 * embeddings and LM head, none (-1: copied) for the rest. */
static int64_t wanted_type(const rq_job *j, const gguf_tensor *t)
{
    if (t->n_dims != 2)
        return -1;
    if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight"))
        return gguf_type_of(j->p.embed_type);
    int64_t layer;
    lk_module kind;
    if (merge_parse_gguf_name(t->name, &layer, &kind) != 0)
        return -1;
    return gguf_type_of(j->p.type);
}

static lk_status fill_tensor(void *user, int64_t i, void *dst)
{
    rq_job *j = user;
    const gguf_tensor *t = &j->g->tensors[i];
    if (!j->convert[i]) {
        memcpy(dst, t->data, (size_t)t->nbytes);
        return LK_OK;
    }
    const gguf_type_traits *src = gguf_type_info(t->type), *out = gguf_type_info(j->type[i]);
    const int64_t cols = t->ne[0], rows = t->ne[1], rs = cols / src->blck * src->size;
    LK_TRY(gguf_check_scales(j->g, t));
    if (rows * cols > j->work_n) {
        free(j->work);
        j->work_n = rows * cols;
        if (!(j->work = lk_aligned_alloc((size_t)j->work_n * sizeof(float))))
            return status_fail(LK_ERR_NOMEM, "out of memory for '%s'", t->name);
    }
    for (int64_t r = 0; r < rows; r++)
        src->to_f32(t->data + r * rs, j->work + r * cols, cols);
    merge_release(t->data, (size_t)t->nbytes);
    int64_t k = f32_first_nonfinite(j->work, rows * cols);
    if (k >= 0) /* an F32/F16 source may hold them; quantisers need finite input */
        return status_fail(LK_ERR_NUMERIC, "%s: tensor '%s': element %lld is %g", j->g->map.path,
                           t->name, (long long)k, j->work[k]);
    double rmse = 0, max_abs = 0;
    q4_quantize_matrix(out->qtype, Q4_QK, j->work, rows, cols, dst, j->p.n_threads, &rmse,
                       &max_abs);
    struct lk_quantize_tensor rep = {.name = t->name,
                                     .rows = rows,
                                     .cols = cols,
                                     .type = (lk_qtype)out->qtype,
                                     .rmse = rmse,
                                     .max_abs = max_abs,
                                     .bits_per_weight = 8.0 * (double)out->size / (double)out->blck,
                                     .index = j->i_report++,
                                     .count = j->n_report};
    if (j->p.on_tensor)
        j->p.on_tensor(j->p.user, &rep);
    return LK_OK;
}

static lk_status add_tensors(gguf_writer *w, rq_job *j)
{
    for (int64_t i = 0; i < j->g->n_tensors; i++) {
        const gguf_tensor *t = &j->g->tensors[i];
        int64_t want = wanted_type(j, t);
        j->type[i] = t->type;
        j->convert[i] = want >= 0;
        if (want >= 0) {
            j->type[i] = gguf_type_fallback((uint32_t)want, t->ne[0]);
            j->n_report++;
            if (j->type[i] != (uint32_t)want)
                log_warn("%s: tensor '%s' has rows of %lld values, not whole blocks of %s: "
                         "written %s (as llama-quantize does)",
                         j->g->map.path, t->name, (long long)t->ne[0],
                         gguf_type_info((uint32_t)want)->name, gguf_type_info(j->type[i])->name);
        }
        LK_TRY(gguf_add_tensor(w, t->name, j->type[i], t->n_dims, t->ne, NULL));
    }
    return LK_OK;
}

static lk_status copy_metadata(gguf_writer *w, const rq_job *j)
{
    uint32_t type, ftype;
    LK_TRY(merge_gguf_type(lk_qtype_name(j->p.type), &type, &ftype));
    for (int64_t i = 0; i < j->g->n_kv; i++) {
        const char *key = j->g->kv[i].key;
        if (!strcmp(key, "general.file_type"))
            LK_TRY(gguf_set_u32(w, key, ftype));
        else if (strcmp(key, "general.alignment") != 0) /* the writer aligns to 32 */
            LK_TRY(gguf_copy_kv(w, &j->g->kv[i]));
    }
    if (!gguf_find_kv(j->g, "general.file_type"))
        LK_TRY(gguf_set_u32(w, "general.file_type", ftype));
    return LK_OK;
}

lk_status qbase_requantize_gguf(const char *src, const char *out,
                                const struct lk_quantize_params *p)
{
    if (p->format != LK_QFORMAT_GGUF)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: a GGUF model file is re-quantised into a GGUF file only (hint: "
                           "--format gguf; lorakit trains on the GGUF file in place, and a %s "
                           "folder needs the model's Hugging Face folder)",
                           src, lk_qformat_name(p->format));
    gguf_file g;
    LK_TRY(gguf_open(&g, src));
    rq_job j = {.p = *p, .g = &g};
    size_t n = (size_t)(g.n_tensors ? g.n_tensors : 1);
    j.type = calloc(n, sizeof *j.type);
    j.convert = calloc(n, sizeof *j.convert);
    gguf_writer *w = NULL;
    lk_status s =
        j.type && j.convert ? gguf_writer_new(&w) : status_fail(LK_ERR_NOMEM, "out of memory");
    log_warn("%s: re-quantising a GGUF model file: each matrix is dequantised from its stored "
             "type and quantised again, which loses precision beyond quantising the original "
             "weights once (llama-quantize asks for --allow-requantize)",
             src);
    if (s == LK_OK)
        s = copy_metadata(w, &j);
    if (s == LK_OK)
        s = add_tensors(w, &j);
    if (s == LK_OK)
        s = gguf_writer_write(w, out, p->force, fill_tensor, &j);
    gguf_writer_free(w);
    free(j.type);
    free(j.convert);
    free(j.work);
    gguf_close(&g);
    return s;
}
