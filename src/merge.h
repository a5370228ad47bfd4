/* merge.h — internal pieces of lk_merge shared by the Hugging Face writer (merge.c) and the GGUF
 * model writer (merge_gguf.c). */
#ifndef LK_MERGE_H
#define LK_MERGE_H

#include "adapter.h"
#include "gguf.h"
#include "safetensors.h"

typedef struct {
    const lk_adapter *const *adapters; /* [n] */
    const float *weights;              /* [n] */
    int n;
    struct lk_merge_params p;
    struct lk_model_config cfg;
    int n_threads;
    const gguf_type_traits *base_q; /* --base-quant round trip, or NULL */
    uint32_t base_q_type;
    int64_t n_out; /* tensors in the output (for progress reports) */
    /* lora-quantize (qbase_write.c) through merge_gguf: */
    uint32_t embed_type; /* GGUF type of token_embd/output; 0 (F32) also means "as matrices"
                          * unless embed_set */
    int embed_set;       /* 1: embed_type applies */
    int strict_blocks;   /* 1: rows that are not whole blocks are an error, not kept F16 */
} merge_ctx;

/* Validate the adapters against cfg and resolve the options. */
lk_status merge_prepare(merge_ctx *c, const struct lk_model_config *cfg,
                        const lk_adapter *const *adapters, const float *w, int n,
                        const struct lk_merge_params *p);

/* "model.layers.L.self_attn.q_proj.weight" → (L, LK_MOD_Q); -1 for any other tensor. */
int merge_parse_tensor(const char *name, int64_t *layer, lk_module *kind);

/* Merge every adapter that has (layer, kind) into W [out, in] (fp32, in place). *n_merged: how
 * many did. */
lk_status merge_tensor(const merge_ctx *c, float *W, int64_t layer, lk_module kind,
                       const char *name, int *n_merged);

/* Convert W [rows, cols] to type tt into dst; returns ‖stored − W‖_F / ‖W‖_F. */
double merge_store(const merge_ctx *c, const gguf_type_traits *tt, const float *W, int64_t rows,
                   int64_t cols, void *dst);

/* Drop the resident pages of a mapped range (re-read from the file if touched again). */
void merge_release(const void *p, size_t n);

/* Copy every regular file of base_dir except weights and config.json (tokenizer, generation
 * config, ...) into dir. */
lk_status merge_copy_side_files(const char *base_dir, const char *dir);

/* Write the merged model as one llama.cpp GGUF file (merge_gguf.c). */
lk_status merge_gguf(merge_ctx *c, const char *base_dir, const char *out);

#endif /* LK_MERGE_H */
