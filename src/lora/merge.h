/* merge.h — internal pieces of lk_merge, by layer: the merge core (merge.c: options, checks,
 * merged rows), the two writers built on it (merge_hf.c: a Hugging Face folder; merge_gguf.c: a
 * llama.cpp GGUF file; merge_gguf_base.c: into a GGUF base), used by lk_merge (merge_api.c) and
 * lora-quantize's writers (qbase_write.c, qbase_gguf.c). */
#ifndef LK_MERGE_H
#define LK_MERGE_H

#include "lora/adapter.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

#define MERGE_MAX_ADAPTERS 64

/* A 4-bit base format for --base-quant: bytes of a stored row of n values, and the row
 * quantiser/dequantiser (n any length; the last block zero-padded). */
typedef struct {
    const char *name;
    size_t (*row_bytes)(int64_t n);
    void (*quantize)(const float *x, int64_t n, void *dst);
    void (*dequantize)(const void *src, int64_t n, float *y);
} merge_base_quant;

typedef struct {
    const lk_adapter *const *adapters; /* [n] */
    const float *weights;              /* [n] */
    int n;
    struct lk_merge_params p;
    struct lk_model_config cfg;
    int n_threads;
    const merge_base_quant *base_q; /* --base-quant round trip, or NULL */
    int64_t n_out;                  /* tensors in the output (for progress reports) */
    /* lora-quantize (qbase_write.c) through merge_gguf: */
    uint32_t embed_type; /* GGUF type of token_embd/output when embed_set */
    int embed_set;       /* 1: embed_type applies (else the matrices' type) */
} merge_ctx;

/* ---- merge.c ---- */

/* Validate the adapters against cfg and resolve the options. */
lk_status merge_prepare(merge_ctx *c, const struct lk_model_config *cfg,
                        const lk_adapter *const *adapters, const float *w, int n,
                        const struct lk_merge_params *p);

/* "model.layers.L.self_attn.q_proj.weight" → (L, LK_MOD_Q); -1 for any other tensor. */
int merge_parse_tensor(const char *name, int64_t *layer, lk_module *kind);

/* Tensor t of the base (F32/F16/BF16, [rows, cols] or a vector) with every adapter that has
 * (layer, kind) merged (kind -1: none), rows permuted into llama.cpp's q/k order when heads > 0,
 * stored as type tt into dst. Row blocks run on the OpenMP threads; no fp32 copy of the whole
 * tensor is made. *n_merged: adapters applied; *store_err: ‖stored − exact‖_F / ‖exact‖_F. */
lk_status merge_rows(const merge_ctx *c, const tensor_view *t, int64_t layer, int kind, int heads,
                     const gguf_type_traits *tt, void *dst, int *n_merged, double *store_err);

/* LK_OK when t is f32, f16 or bf16; else LK_ERR_UNSUPPORTED naming it: a quantised layout (a
 * bitsandbytes NF4 or a lora-quantize folder's U8 rows) read as floats, or copied where the
 * adapters should change it, would be a silently wrong merge. */
lk_status merge_float_source(const tensor_view *t);

/* Adapters of c that touch (layer, kind) (kind -1: none). */
int merge_n_deltas(const merge_ctx *c, int64_t layer, int kind);

/* merge_rows for a GGUF base: the matrix g of file f (any type, rows in the file's order: q/k
 * already in llama.cpp's order) dequantised, every adapter that has (layer, kind) added with its
 * rows permuted by heads (> 0: llama.cpp's q/k order), stored as type tt into dst (rows of whole
 * blocks of tt). LK_ERR_SHAPE if g is not 2-D or not the adapters' shape, LK_ERR_FORMAT for a
 * non-finite stored scale (gguf_check_scales). --base-quant does not apply (c->base_q unused). */
lk_status merge_rows_gguf(const merge_ctx *c, const gguf_file *f, const gguf_tensor *g,
                          int64_t layer, int kind, int heads, const gguf_type_traits *tt, void *dst,
                          int *n_merged, double *store_err);

/* Drop the resident pages of a mapped range (re-read from the file if touched again). */
void merge_release(const void *p, size_t n);

/* ---- merge_hf.c ---- */

/* Write the merged model as a Hugging Face folder out (model.safetensors, config.json, the side
 * files), through a temporary folder renamed into place. */
lk_status merge_hf(merge_ctx *c, const char *base_dir, const char *out);

/* Copy every regular file of base_dir except weights and config.json (tokenizer, generation
 * config, ...) into dir. A symlink is copied only when it resolves inside base_dir or the
 * Hugging Face cache's blobs folder of the snapshot (base_dir/../../blobs); LK_ERR_IO naming the
 * link and its target otherwise. */
lk_status merge_copy_side_files(const char *base_dir, const char *dir);

/* ---- merge_gguf.c ---- */

/* Write the merged model as one llama.cpp GGUF file. */
lk_status merge_gguf(merge_ctx *c, const char *base_dir, const char *out);

/* The ggml type and llama_ftype (general.file_type) of a GGUF output dtype name (f32, f16, bf16
 * and every quantised GGUF type lorakit writes; NULL: f16). LK_ERR_ARG otherwise. */
lk_status merge_gguf_type(const char *dtype, uint32_t *type, uint32_t *ftype);

/* ---- merge_gguf_base.c ---- */

/* Merge into the GGUF model file base: a GGUF out with base's metadata and tensor order; every
 * matrix an adapter touches dequantised, merged and stored in its own type, or c->p.dtype's (with
 * llama-quantize's fallback for rows that are not whole blocks); every other tensor copied byte
 * for byte. */
lk_status merge_gguf_base(merge_ctx *c, const char *base, const char *out);

/* "blk.L.<stem>.weight" of a projection matrix (llama.cpp names) → (L, kind); -1 for any other
 * tensor. */
int merge_parse_gguf_name(const char *name, int64_t *layer, lk_module *kind);

/* ---- qbase_gguf.c ---- */

/* lk_quantize_model from the GGUF model file src (p checked; p->format must be GGUF, else
 * LK_ERR_UNSUPPORTED): metadata copied, projection matrices re-quantised to p->type, token_embd /
 * output to p->embed_type (llama-quantize's fallback for rows that are not whole blocks), the rest
 * copied; warns that re-quantising loses precision. */
lk_status qbase_requantize_gguf(const char *src, const char *out,
                                const struct lk_quantize_params *p);

#endif /* LK_MERGE_H */
