/* adapter.h — internal view of an lk_adapter: the struct and the helpers of adapter.c (used by
 * the format files adapter_peft.c and adapter_gguf.c, by merge and inspect), and the two format
 * readers that adapter_load.c dispatches to. */
#ifndef LK_ADAPTER_H
#define LK_ADAPTER_H

#include <stdint.h>

#include "lorakit/adapter.h"

typedef struct {
    int64_t layer;
    lk_module kind;
    int64_t r, in, out;
    double alpha, scale;
    float *A;   /* [r, in], owned (inside the adapter's arena once packed) */
    float *B;   /* [out, r], owned (inside the adapter's arena once packed) */
    float *mag; /* [out] DoRA magnitude or NULL, owned */
} adapter_module;

struct lk_adapter {
    char *path;
    char format[8];   /* "peft" | "gguf" */
    char *base_model; /* never NULL */
    char arch[48];    /* GGUF general.architecture */
    int64_t rank;
    double alpha;
    int use_rslora, use_dora;
    adapter_module *mods; /* [n_mods] sorted by (layer, kind) */
    int64_t n_mods;
    size_t cap_mods;
    int gguf_rows; /* 1: q/k rows of B still in llama.cpp order (lk_adapter_set_base undoes) */
    struct lk_adapter_base trained_on; /* the record of the training base (recorded 0: none) */
    float *arena; /* [n_arena] or NULL: every module's A then B, module by module (adapter_pack) */
    int64_t n_arena;
};

/* Hugging Face [out, in] of module kind for cfg. */
void adapter_module_shape(const struct lk_model_config *cfg, lk_module kind, int64_t *out,
                          int64_t *in);

/* "self_attn" or "mlp": the parent of module kind in Hugging Face names. */
const char *adapter_parent(lk_module kind);

/* llama.cpp tensor stem of kind: "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
 * "ffn_up", "ffn_down". */
const char *adapter_gguf_stem(lk_module kind);

/* 1 if llama.cpp converts cfg's architecture as LLM_ARCH_LLAMA (Llama, Mistral): q/k rows are
 * permuted; the GGUF architecture name goes to *gguf_arch ("llama" or "qwen2"). 0 for Qwen2.
 * -1 for an architecture without a llama.cpp mapping here. */
int adapter_gguf_arch(const struct lk_model_config *cfg, const char **gguf_arch);

/* Permute the rows of x [rows, cols] as llama.cpp's convert_hf_to_gguf.py permute() does for q/k
 * of Llama bases (heads: n_head for q, n_kv_head for k): within each head, HF row j·hd/2 + i
 * goes to 2·i + j. inverse 1 undoes it. LK_ERR_SHAPE if rows is not a multiple of 2·heads. */
lk_status adapter_permute_rows(float *x, int64_t rows, int64_t cols, int64_t heads, int inverse);

/* Every module fits the base config (layer, in, out) and a GGUF adapter's architecture matches:
 * LK_ERR_SHAPE naming the module and both shapes otherwise. */
lk_status adapter_check_base(const lk_adapter *a, const struct lk_model_config *cfg);

/* Move every module's A and B into one 64-byte aligned arena (a->arena: module by module, A then
 * B), so that training walks all factors as one array. Nothing changes for readers of the
 * modules. Already packed: nothing to do. LK_ERR_NOMEM leaves the adapter as it was. */
lk_status adapter_pack(lk_adapter *a);

/* The keys of the training-base record (safetensors __metadata__, GGUF key-value pairs), in the
 * order of lk_adapter_base's strings, and the record's field of each. */
#define ADAPTER_BASE_KEYS 3
/* base_quant (and base_quant_embed) of a base used as a GGUF model file stores it: its own tensor
 * types, nothing re-quantised at load. */
#define ADAPTER_BASE_GGUF "gguf"
extern const char *const adapter_base_keys[ADAPTER_BASE_KEYS];
char *adapter_base_field(const struct lk_adapter_base *b, int k);

/* a's record from the values a file stores under adapter_base_keys (NULL: absent): recorded when
 * base_quant is there; a value too long for the record drops the whole record with a warning
 * naming file (a record never makes a load fail). */
void adapter_base_from_values(lk_adapter *a, const char *const v[ADAPTER_BASE_KEYS],
                              const char *file);

/* Read a llama.cpp GGUF LoRA file (adapter_gguf.c). */
lk_status adapter_load_gguf(const char *path, lk_adapter **out);

/* Read a PEFT adapter folder: adapter_config.json and adapter_model.safetensors
 * (adapter_peft.c). */
lk_status adapter_load_peft(const char *dir, lk_adapter **out);

/* lk_adapter_save_peft with base_model_name_or_path given here instead of the adapter's
 * (adapter_peft.c). */
lk_status adapter_save_peft_as(const lk_adapter *a, const char *dir, const char *base_model,
                               int force);

/* Any module whose B rows still wait for lk_adapter_set_base: LK_ERR_ARG naming the adapter. */
lk_status adapter_check_ready(const lk_adapter *a);

/* Allocate an empty adapter (path copied); free with lk_adapter_free. */
lk_status adapter_new(const char *path, const char *format, lk_adapter **out);

/* Free a module's A, B and mag (the struct itself is the caller's). */
void adapter_module_free(adapter_module *m);

/* Append a module (takes ownership of A, B, mag even on failure). */
lk_status adapter_add_module(lk_adapter *a, const adapter_module *m);

/* Sort modules by (layer, kind) and check each pair appears once. */
lk_status adapter_finish(lk_adapter *a);

#endif /* LK_ADAPTER_H */
