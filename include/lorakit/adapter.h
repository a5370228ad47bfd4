/* lorakit/adapter.h — LoRA adapters: load (PEFT folders, llama.cpp GGUF LoRA files), create,
 * attach to a model, save (PEFT, GGUF), merge into base weights, and inspect what they learned.
 *
 * An adapter holds, per decoder layer and linear module, the factors A [r, in] and B [out, r]
 * (fp32) and the scale s, so that the module computes y = x·(W + s·B·A)ᵀ. s = alpha/r, or
 * alpha/sqrt(r) with rsLoRA, with per-module r and alpha from PEFT's rank_pattern/alpha_pattern.
 * DoRA adapters also hold the magnitude vector m [out] (W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row).
 * Adapters are read-only after load except through lk_adapter_set_base. Several threads may read
 * one adapter at once. */
#ifndef LORAKIT_ADAPTER_H
#define LORAKIT_ADAPTER_H

#include "lorakit/core.h"
#include "lorakit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_adapter lk_adapter;

/* The linear modules of a decoder layer, in Hugging Face naming. */
typedef enum {
    LK_MOD_Q = 0,    /* self_attn.q_proj */
    LK_MOD_K = 1,    /* self_attn.k_proj */
    LK_MOD_V = 2,    /* self_attn.v_proj */
    LK_MOD_O = 3,    /* self_attn.o_proj */
    LK_MOD_GATE = 4, /* mlp.gate_proj */
    LK_MOD_UP = 5,   /* mlp.up_proj */
    LK_MOD_DOWN = 6, /* mlp.down_proj */
    LK_MOD_COUNT = 7
} lk_module;

#define LK_MOD_ALL 0x7fu /* bit (1 << lk_module) for each module */

/* "q_proj", "k_proj", ... ("?" outside the range). */
const char *lk_module_name(lk_module m);

/* Target modules from a --targets list: comma-separated q,k,v,o,gate,up,down (or their *_proj
 * names), "all" or "all-linear" for every module. *mask: bit (1 << lk_module) per module.
 * LK_ERR_ARG naming --targets for an unknown name or an empty list. */
lk_status lk_targets_from_name(const char *s, unsigned *mask);

/* The list of mask in the short names ("q,v"; "all" when every module is set) written to buf[n]
 * and returned; "" for an empty mask or a buf too small for the list. */
const char *lk_targets_name(unsigned mask, char *buf, size_t n);

/* Load an adapter: a PEFT folder (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA
 * file as llama.cpp's convert_lora_to_gguf.py writes it. Every tensor is checked (names, dtypes,
 * shapes, A/B rank agreement with the config's r / rank_pattern); values are not scanned here
 * (lk_adapter_module_stats reports NaN/Inf). Legacy adapter_model.bin, fan_in_fan_out, bias other
 * than "none", modules_to_save, and modules outside q/k/v/o/gate/up/down are refused with a
 * message saying so; unknown config keys are ignored. Free with lk_adapter_free. */
lk_status lk_adapter_load(const char *path, lk_adapter **out);

void lk_adapter_free(lk_adapter *a);

/* Check the adapter against a base model's config: every module's layer, in and out must match
 * (LK_ERR_SHAPE naming the module and both shapes, hint "wrong base model?"). For a GGUF adapter
 * of a Llama-architecture base it also restores Hugging Face row order in B for q/k (llama.cpp
 * permutes those rows for RoPE), which needs the head counts. Required once for GGUF adapters
 * before attach, merge or lk_adapter_save_peft; optional (a check) for PEFT adapters. */
lk_status lk_adapter_set_base(lk_adapter *a, const struct lk_model_config *cfg);

/* Description of an adapter; strings borrowed, valid until lk_adapter_free. */
struct lk_adapter_info {
    const char *path;
    const char *format;     /* "peft" or "gguf" */
    const char *base_model; /* base_model_name_or_path (PEFT), general.name (GGUF), or "" */
    const char *arch;       /* general.architecture of a GGUF adapter, "" for PEFT */
    int64_t rank;           /* default r (modules may differ, see lk_adapter_module) */
    double alpha;           /* default lora_alpha (GGUF: adapter.lora.alpha; 0 = scale 1) */
    int use_rslora;         /* 1: s = alpha/sqrt(r) */
    int use_dora;           /* 1: modules carry a magnitude vector */
    unsigned target_mask;   /* bit (1 << lk_module) for each module kind present */
    int64_t n_modules;      /* (layer, module) pairs */
    int64_t n_params;       /* elements of all A, B (and magnitude) */
};

void lk_adapter_get_info(const lk_adapter *a, struct lk_adapter_info *out);

/* The base an adapter was trained on: the form of the frozen weights whose errors it learned to
 * correct, so that evaluation, generation and merging can use the same base. lora-train records
 * it in adapter_model.safetensors' "__metadata__" (string values under the keys
 * "lorakit.base_quant", "lorakit.base_quant_embed", "lorakit.base_compute"; PEFT reads only
 * "format" there and loads such adapters unchanged) and in a GGUF LoRA file's key-value pairs
 * (lora-export). Strings, so that later base forms (a GGUF file's own tensor types, integer
 * compute) need no new field: each is a name lk_adapter_base_model_params understands, or a newer
 * one it refuses. */
#define LK_ADAPTER_BASE_NAME 32
struct lk_adapter_base {
    int recorded;                           /* 1: the adapter says; 0: it does not (an adapter from
                                             * PEFT or llama.cpp, or an older lorakit): the strings
                                             * are then "" */
    char quant[LK_ADAPTER_BASE_NAME];       /* decoder linear weights, as lk_qtype_name names
                                             * them: "f32" (unquantised, --quant none), "nf4",
                                             * "q4_0", "iq4_nl", "q8_0"; "gguf": a GGUF model
                                             * file's own tensor types, used as they lie */
    char quant_embed[LK_ADAPTER_BASE_NAME]; /* embeddings and LM head: "f32", "q8_0" or "gguf" */
    char compute[LK_ADAPTER_BASE_NAME];     /* the products with the base: "f32" or "int8"
                                             * (lk_compute_name) */
};

/* The record of a (borrowed until lk_adapter_free); recorded 0 when it has none. */
void lk_adapter_get_base(const lk_adapter *a, struct lk_adapter_base *out);

/* Replace the record (b NULL or b->recorded 0: none). Saved by lk_adapter_save_peft and
 * lk_adapter_save_gguf. LK_ERR_ARG for a name longer than LK_ADAPTER_BASE_NAME - 1 bytes. */
lk_status lk_adapter_set_base_record(lk_adapter *a, const struct lk_adapter_base *b);

/* The record that describes the base m as loaded (its lk_model_quant, lk_model_quant_embed and
 * lk_model_compute): what a trainer records for the adapter it trains on m. */
void lk_model_base_record(const lk_model *m, struct lk_adapter_base *out);

/* Model options that rebuild the recorded base: mp->quant, mp->quant_embed and mp->compute from b
 * (nothing changes when b records nothing; a "gguf" record sets both formats to LK_QTYPE_F32,
 * which loads a GGUF file in its own types). LK_ERR_UNSUPPORTED, naming the value, for a record
 * this build cannot rebuild (written by a newer lorakit). */
lk_status lk_adapter_base_model_params(const struct lk_adapter_base *b, struct lk_model_params *mp);

/* 1 when two records describe the same base (two records without anything recorded are equal). */
int lk_adapter_base_equal(const struct lk_adapter_base *x, const struct lk_adapter_base *y);

/* "nf4 (embeddings f32, f32 compute)" or "unknown" into buf[n]; returns buf. */
const char *lk_adapter_base_describe(const struct lk_adapter_base *b, char *buf, size_t n);

/* One (layer, module) of an adapter; pointers borrowed, valid until lk_adapter_free. */
struct lk_adapter_module {
    int64_t layer;
    lk_module module;
    int64_t r, in, out;
    double alpha;           /* this module's alpha (alpha_pattern applied) */
    double scale;           /* s: alpha/r or alpha/sqrt(r) */
    const float *A;         /* [r, in] */
    const float *B;         /* [out, r] */
    const float *magnitude; /* [out] DoRA magnitude, or NULL */
};

/* Module i in [0, n_modules), ordered by layer then lk_module. */
lk_status lk_adapter_get_module(const lk_adapter *a, int64_t i, struct lk_adapter_module *out);

/* Options of lk_adapter_create. */
struct lk_adapter_params {
    int64_t rank;         /* r (default 8) */
    double alpha;         /* lora_alpha (default 16) */
    int use_rslora;       /* default 0 */
    unsigned target_mask; /* modules to adapt (default LK_MOD_ALL) */
    double init_std_b;    /* 0 (default): B = 0 as PEFT initialises; > 0: B ~ N(0, std²) */
    uint64_t seed; /* A ~ kaiming-uniform(a=√5) as PEFT: U(±1/√in); stream (seed, init) */
};

/* The defaults written beside each field above (the start of a trainer's fresh adapter). */
struct lk_adapter_params lk_adapter_params_default(void);

/* A random adapter for tests and benchmarks (lora-random-adapter): rank r, alpha 2r, B ~ N(0,
 * 0.01²), every module, seed 42. LK_RANDOM_ADAPTER_RANK is its rank when none is asked for. */
#define LK_RANDOM_ADAPTER_RANK 16
struct lk_adapter_params lk_adapter_params_random(int64_t rank);

/* Check the options; the first one out of range fails with LK_ERR_ARG, named by its command-line
 * flag: "--rank must be at least 1, got 0" (--rank, --alpha finite, --targets not
 * empty, --std-b for init_std_b >= 0). lk_adapter_create runs it. */
lk_status lk_adapter_params_check(const struct lk_adapter_params *p);

/* Check the options against a base: the rank at most the smaller side of every targeted module
 * (a larger one adds parameters that cannot raise ΔW's rank): LK_ERR_ARG "--rank must be at most
 * 64 for this model (k_proj is [64, 288]), got 100". lk_adapter_create runs it. */
lk_status lk_adapter_params_check_model(const struct lk_adapter_params *p,
                                        const struct lk_model_config *cfg);

/* A new adapter for every layer of a model with config cfg. A non-zero B (init_std_b > 0) makes
 * a random adapter for tests and benchmarks. Free with lk_adapter_free. */
lk_status lk_adapter_create(const struct lk_model_config *cfg, const struct lk_adapter_params *p,
                            lk_adapter **out);

/* Write a PEFT folder: adapter_config.json (r, lora_alpha, use_rslora, rank_pattern and
 * alpha_pattern where modules differ, target_modules) and adapter_model.safetensors with keys
 * base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight ([r, in], F32) etc. The folder
 * is written under a temporary name and renamed; an existing dir is replaced only with force. */
lk_status lk_adapter_save_peft(const lk_adapter *a, const char *dir, int force);

/* Write a llama.cpp GGUF LoRA file for a base with config cfg: general.type "adapter",
 * adapter.type "lora", general.architecture ("llama" for Llama/Mistral, "qwen2"), tensors
 * blk.N.attn_q.weight.lora_a [ne: in, r] / .lora_b [ne: r, out], q/k rows of B permuted for
 * Llama-architecture bases. When every module's scale equals alpha/r of one alpha, that alpha is
 * written and B kept; otherwise (rsLoRA, rank/alpha patterns) each B is multiplied by its scale
 * and adapter.lora.alpha is 0 (llama.cpp then uses scale 1). dtype: "f32", "f16", "bf16" ("q8_0"
 * needs the quantisation kernels: LK_ERR_UNSUPPORTED in this build; tensors whose rows do not
 * fill whole Q8_0 blocks, such as B with r < 32, are then written F16 as llama.cpp does). DoRA:
 * LK_ERR_UNSUPPORTED (llama.cpp cannot apply it; merge instead). */
lk_status lk_adapter_save_gguf(const lk_adapter *a, const struct lk_model_config *cfg,
                               const char *path, const char *dtype, int force);

/* Attach a to model m with a user weight: every module of a is added to the matching linear as
 * weight·s·B·A (the forward computes it as a low-rank side path; W is not modified). Shapes are
 * validated first (LK_ERR_SHAPE naming the module and both shapes); nothing is attached on
 * failure. Up to 8 adapters may be attached to one model. DoRA adapters cannot be attached
 * (LK_ERR_UNSUPPORTED: merge them instead). The adapter is borrowed: it must outlive the model's
 * use of it (until lk_model_detach_adapters or lk_model_free). Not thread-safe with forwards. */
lk_status lk_model_attach_adapter(lk_model *m, const lk_adapter *a, float weight);

/* Remove every attached adapter. */
void lk_model_detach_adapters(lk_model *m);

/* ---- merge ---- */

/* What lk_merge reports per written tensor (through lk_merge_params.on_tensor). */
struct lk_merge_tensor {
    const char *name; /* output tensor name (Hugging Face or GGUF naming) */
    int64_t index, count;
    int n_merged;     /* adapters added to this tensor (0: copied / converted) */
    double store_err; /* ‖stored − exact fp32 result‖_F / ‖exact‖_F (dtype rounding) */
};

struct lk_merge_params {
    const char *dtype;      /* NULL: the base's dtype of each tensor (a folder), f16 (a GGUF
                             * from a folder), each merged matrix's own type (a GGUF base).
                             * "f32", "f16", "bf16" for any output; the GGUF types "q8_0",
                             * "q4_0", "iq4_nl", "q4_1", "q5_0", "q5_1", "q2_k" .. "q6_k",
                             * "iq4_xs" for a .gguf output only ("nf4": none) */
    const char *base_quant; /* NULL, or the 4-bit type the adapter was trained against: merge onto
                             * the dequantised quantised base (LK_ERR_UNSUPPORTED in this build) */
    int n_threads;          /* <= 0: all CPUs */
    int force;              /* replace an existing output */
    void (*on_tensor)(void *user, const struct lk_merge_tensor *t); /* may be NULL */
    void *user;
};

/* Defaults: dtype and base_quant NULL, all CPUs, no force, no callback. */
struct lk_merge_params lk_merge_params_default(void);

/* Check the names: dtype NULL or one of f32, f16, bf16, nf4 and the GGUF types (which of them an
 * output can hold is lk_merge's to say: LK_ERR_UNSUPPORTED), base_quant NULL or one of nf4, q4_0,
 * iq4_nl, q8_0. LK_ERR_ARG naming --dtype or --base-quant. lk_merge runs it. */
lk_status lk_merge_params_check(const struct lk_merge_params *p);

/* Merge n (at most 64) adapters with weights w[i] into the base folder base_dir: W' = W + Σ
 * w_i·s_i·B_i·A_i (DoRA adapters in order: W ← m ⊙ V/‖V‖_row with V = W + w·s·B·A). Output: out
 * ending in ".gguf" → one GGUF model file with llama.cpp's names, hyper-parameters, tokenizer and
 * q/k row order; otherwise a Hugging Face folder (model.safetensors, config.json with torch_dtype
 * updated, the tokenizer and other small files copied). Tensors are processed one at a time (peak
 * memory near the largest tensor, not the model). Adapters must fit the base (LK_ERR_SHAPE) and
 * GGUF adapters must have had lk_adapter_set_base. A GGUF model file as base_dir merges into a
 * .gguf out only: its metadata and tensor order kept, each matrix an adapter touches dequantised,
 * merged (q/k rows in llama.cpp's order) and quantised back to its type or dtype (llama-quantize's
 * fallback type where rows are not whole blocks), the others copied byte for byte; base_quant
 * does not apply (LK_ERR_ARG). Written under a temporary name, then renamed. */
lk_status lk_merge(const char *base_dir, const lk_adapter *const *adapters, const float *w, int n,
                   const char *out, const struct lk_merge_params *p);

/* ---- inspect (all from the small factors; ΔW = s·B·A is never formed) ---- */

struct lk_module_stats {
    double norm_a, norm_b; /* ‖A‖_F, ‖B‖_F */
    double norm_delta;     /* ‖ΔW‖_F = s·sqrt(tr((BᵀB)(AAᵀ))) */
    double rel_norm;       /* ‖ΔW‖_F / ‖W‖_F with a base model, else NaN */
    double effective_rank; /* exp(entropy of σ/Σσ) (Roy & Vetterli 2007); 0 for ΔW = 0 */
    int64_t rank90;        /* singular values needed for 90% of ‖ΔW‖_F² */
    int64_t n_sv;          /* = r: singular values written to sv */
    int64_t n_nonfinite;   /* NaN/Inf entries in A, B and magnitude */
};

/* Statistics of module i; sv: NULL or [r] singular values of ΔW, descending. base_norm: ‖W‖_F
 * of the base weight (from lk_adapter_base_norms) for rel_norm, or NaN. LK_ERR_NUMERIC if the
 * factors hold NaN/Inf (stats then partial: norms and n_nonfinite filled). */
lk_status lk_adapter_module_stats(const lk_adapter *a, int64_t i, double base_norm,
                                  struct lk_module_stats *out, float *sv);

/* ‖W‖_F of the base weight of every module of a (norms: [n_modules]), read from the model
 * folder model_dir one tensor at a time (mapped, so memory stays small even for large bases).
 * LK_ERR_SHAPE if a module does not fit the base. */
lk_status lk_adapter_base_norms(const lk_adapter *a, const char *model_dir, double *norms);

struct lk_module_diff {
    double cosine;    /* <ΔW1, ΔW2>_F / (‖ΔW1‖‖ΔW2‖); NaN when either is 0 */
    double rel_diff;  /* ‖ΔW1 − ΔW2‖_F / ‖ΔW1‖_F; NaN when ΔW1 = 0 */
    double subspace;  /* mean cos² of the principal angles between the column spaces of ΔW1
                       * and ΔW2 (Hu et al. 2021 §7 φ with i = j = min rank); NaN if one is 0 */
    int64_t n_angles; /* principal angles written to cos_angles */
};

/* Compare module i of a with module j of b (same layer/module shape expected, LK_ERR_SHAPE
 * otherwise). cos_angles: NULL or [min(r_a, r_b)] cosines of the principal angles, descending. */
lk_status lk_adapter_module_diff(const lk_adapter *a, int64_t i, const lk_adapter *b, int64_t j,
                                 struct lk_module_diff *out, float *cos_angles);

/* Index of (layer, module) in a, or -1. */
int64_t lk_adapter_find_module(const lk_adapter *a, int64_t layer, lk_module module);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_ADAPTER_H */
