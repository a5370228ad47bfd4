/* lorakit/model.h — Hugging Face model folders and llama.cpp GGUF model files: load, describe, run
 * forward, decode, sample.
 *
 * A model is a folder with config.json and model.safetensors (or a sharded
 * model.safetensors.index.json). Architectures: LlamaForCausalLM (also SmolLM),
 * Qwen2ForCausalLM, MistralForCausalLM. Weights are F32, F16 or BF16, or pre-quantised (a folder
 * written by lk_quantize_model, or a bitsandbytes 4-bit NF4 folder); the forward runs in fp32. */
#ifndef LORAKIT_MODEL_H
#define LORAKIT_MODEL_H

#include "lorakit/core.h"
#include "lorakit/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded, frozen base model. Read-only after load: several threads may run forwards on one
 * model at once, each with its own lk_session. */
typedef struct lk_model lk_model;

/* RoPE frequency scaling, from config.json's rope_scaling / rope_parameters. */
typedef enum {
    LK_ROPE_DEFAULT = 0, /* inv_freq = theta^(-2i/d) */
    LK_ROPE_LINEAR = 1,  /* inv_freq / factor */
    LK_ROPE_LLAMA3 = 2   /* Llama 3.1 piecewise low/high frequency scaling */
} lk_rope_type;

#define LK_MAX_EOS 8

/* Shape and hyper-parameters of a model, as read from config.json. */
struct lk_model_config {
    char arch[48];             /* "llama", "qwen2" or "mistral" */
    int64_t vocab_size;        /* rows of the embedding and the LM head */
    int64_t hidden_size;       /* C */
    int64_t intermediate_size; /* FFN width */
    int64_t n_layers;
    int64_t n_heads;        /* query heads */
    int64_t n_kv_heads;     /* key/value heads (GQA: divides n_heads) */
    int64_t head_dim;       /* hd; hidden_size / n_heads unless config.json gives head_dim */
    int64_t max_position;   /* max_position_embeddings */
    int64_t sliding_window; /* attention window in tokens, 0 = full causal attention */
    double rms_norm_eps;
    double rope_theta;
    lk_rope_type rope_type;
    double rope_factor;          /* linear, llama3 */
    double rope_low_freq_factor; /* llama3 */
    double rope_high_freq_factor;
    int64_t rope_original_max_position;
    int tie_word_embeddings;     /* 1: the LM head is the embedding matrix */
    int qkv_bias;                /* 1: q/k/v projections have a bias (Qwen2, attention_bias) */
    int o_bias;                  /* 1: o_proj has a bias (Llama attention_bias) */
    int mlp_bias;                /* 1: gate/up/down have biases (Llama mlp_bias) */
    int64_t bos_id;              /* -1 if absent */
    int64_t eos_ids[LK_MAX_EOS]; /* all end-of-sequence ids from config.json */
    int n_eos;
};

/* The name an adapter records for the base model at path (adapter_config.json's
 * base_model_name_or_path): the Hugging Face id "org/name" when path lies in a Hugging Face hub
 * cache (.../models--org--name/snapshots/REVISION), else path made absolute with its symbolic
 * links resolved, so that the adapter still names its base when read from another folder.
 * *out: heap, caller frees. LK_ERR_IO when path cannot be resolved (it does not exist). */
lk_status lk_model_name_or_path(const char *path, char **out);

/* Read and validate DIR/config.json (no weights), or the metadata of a GGUF model file (with its
 * tensor table: tied embeddings and biases come from the tensors present). */
lk_status lk_config_load(const char *dir, struct lk_model_config *out);

/* How the products with the frozen base's quantised matrices run (--compute).
 * LK_COMPUTE_F32: each weight block is dequantised to fp32 and multiplied in fp32 (the exact path
 * the PyTorch-parity tests check, which set it). LK_COMPUTE_INT8: activations (and, training, the incoming
 * gradients) are quantised on the fly per row in blocks of 32 with an fp32 scale, the weights
 * expanded to int8, the products summed in int32 per block and in fp32 across blocks (quant/q8.h);
 * the input gradient dX = dY·W runs on a transposed Q8_0 copy of each matrix, built when a trainer
 * is created (lk_model_backward_bytes). Matrices of a type the int8 path cannot take (F32, F16,
 * BF16, or a type without an int8 expander) stay fp32, with one note naming them. LoRA factors,
 * their gradients, norms, attention and the loss are fp32 in both.
 * LK_COMPUTE_AUTO (the default) chooses at load: int8 when the weights with int8's own extra (an
 * NF4 matrix's codebook correction, 0.56 B per weight) fit lk_model_params.memory_limit (or the
 * memory available, less lk_model_params.memory_held), else f32, with one note; a trainer then
 * checks its whole int8 plan (lk_trainer_choose_compute) and falls back to f32 the same way. A run
 * resumed under LK_COMPUTE_AUTO takes its checkpoint's mode (lk_model_params.resume_compute) and
 * fails where int8 does not fit. A loaded model's compute is never LK_COMPUTE_AUTO:
 * lk_model_compute gives the choice, lk_model_compute_reason why. */
typedef enum { LK_COMPUTE_F32 = 0, LK_COMPUTE_INT8 = 1, LK_COMPUTE_AUTO = 2 } lk_compute;

/* --compute f32|int8|auto: the name ("?" out of range), and the value of a name (LK_ERR_ARG naming
 * --compute and the known names). */
const char *lk_compute_name(lk_compute c);
lk_status lk_compute_from_name(const char *name, lk_compute *out);

/* Options for lk_model_load; get defaults from lk_model_params_default() and edit (a base to
 * train on starts from lk_train_model_params_default(), lorakit/train.h). */
struct lk_model_params {
    int n_threads;        /* threads for the forward; <= 0 (default 0): every CPU it may run on */
    int use_mmap;         /* 1 (default): map the weight files; 0: read them into memory */
    lk_qtype quant;       /* format of the decoder's linear weights: LK_QTYPE_F32 (default; F16
                           * and BF16 files are widened), or NF4, Q4_0, IQ4_NL, Q8_0 (quantised
                           * once at load, one tensor at a time) */
    lk_qtype quant_embed; /* embeddings and LM head: LK_QTYPE_F32 (default) or LK_QTYPE_Q8_0 */
    lk_compute compute;   /* products with the quantised matrices (default LK_COMPUTE_AUTO; int8:
                           * int8 where the matrix's type has a path, fp32 elsewhere) */
    int64_t memory_limit; /* bytes LK_COMPUTE_AUTO's weights must fit (--memory-limit); 0
                           * (default): the memory available (lk_memory_budget) */
    int64_t memory_held;  /* bytes of that budget another model of this process already holds (a
                           * distillation teacher loaded beside its student: the student's
                           * weights); LK_COMPUTE_AUTO's weights must fit what is left (default 0) */
    lk_compute resume_compute; /* the mode of the checkpoint a run resumes (lk_run_resume_compute),
                                * which LK_COMPUTE_AUTO then takes instead of choosing: f32, or
                                * int8 when its weights fit the budget, else lk_model_load fails
                                * (LK_ERR_NOMEM naming the mode and the budget); LK_COMPUTE_AUTO
                                * (default): none. Ignored under an explicit compute. */
};

struct lk_model_params lk_model_params_default(void);

/* Check the options: quant one of f32 (--quant none), nf4, q4_0, iq4_nl, q8_0; quant_embed f32 or
 * q8_0; compute and resume_compute f32, int8 or auto; memory_limit and memory_held at least 0. LK_ERR_ARG naming the option by its
 * command-line flag ("--quant 'f16': expected none (f32), nf4, q4_0, iq4_nl or q8_0"; a teacher's
 * --teacher-quant is checked as --quant). lk_model_load runs it. */
lk_status lk_model_params_check(const struct lk_model_params *p);

/* Load the model folder DIR, or a llama.cpp GGUF model file (a path ending in .gguf, or any
 * regular file; architectures llama and qwen2): its metadata gives the config, its tensors are
 * used where they lie in the mapped file (quantised types through the fused kernels, F32 mapped,
 * F16/BF16 widened; quant and quant_embed apply to its float matrices only; use_mmap is ignored:
 * the file is always mapped). Every tensor is checked against the config (names, shapes, dtypes)
 * before use. On success *out owns the model; free with lk_model_free. */
lk_status lk_model_load(const char *dir, const struct lk_model_params *params, lk_model **out);

/* Free a model (NULL is fine). */
void lk_model_free(lk_model *m);

/* The model's configuration; borrowed, valid until lk_model_free. */
const struct lk_model_config *lk_model_get_config(const lk_model *m);

/* Number of parameters of the base model (embedding counted once when tied). */
int64_t lk_model_n_params(const lk_model *m);

/* Bytes the loaded weights occupy in memory (mapped or owned, quantised or not). */
int64_t lk_model_weight_bytes(const lk_model *m);

/* Format of the decoder's linear weights and of the embeddings as loaded. */
lk_qtype lk_model_quant(const lk_model *m);
lk_qtype lk_model_quant_embed(const lk_model *m);

/* The compute mode the model was loaded with (lk_model_params.compute), and how many of its
 * matrices (the decoder's linear layers and the LM head) run on int8 under it (0 with f32). */
lk_compute lk_model_compute(const lk_model *m);
int64_t lk_model_int8_matrices(const lk_model *m);

/* Why the model runs its compute, one line for --dry-run and --json: "given" when
 * lk_model_params.compute named it, "checkpoint: ..." when LK_COMPUTE_AUTO took a resumed run's
 * mode (lk_model_params.resume_compute), else "auto: ...", what LK_COMPUTE_AUTO (or
 * lk_trainer_choose_compute) compared. Borrowed, valid until the model changes or is freed. */
const char *lk_model_compute_reason(const lk_model *m);

/* Bytes of the transposed Q8_0 copies the int8 backward needs (one per matrix that runs on int8;
 * 0 with LK_COMPUTE_F32): a trainer (lk_trainer_create) builds them and frees them with itself;
 * lk_trainer_memory_plan counts them. */
int64_t lk_model_backward_bytes(const lk_model *m);

/* Change the thread count used by forwards on this model (<= 0: every CPU the process may run
 * on). */
void lk_model_set_threads(lk_model *m, int n_threads);

/* Decoding state of one sequence: the KV cache and the position. Not shareable between threads. */
typedef struct lk_session lk_session;

/* A session for sequences up to n_ctx tokens (<= 0: the model's max_position). Caller frees with
 * lk_session_free. */
lk_status lk_session_create(const lk_model *m, int64_t n_ctx, lk_session **out);

void lk_session_free(lk_session *s);

/* Forget all tokens: the next lk_session_eval starts at position 0. */
void lk_session_reset(lk_session *s);

/* Tokens held in the cache (= position of the next token). */
int64_t lk_session_n_past(const lk_session *s);

/* Keep the first n_past tokens only (the next lk_session_eval continues at position n_past); a
 * value not below the tokens held, or negative, changes nothing. */
void lk_session_rewind(lk_session *s, int64_t n_past);

/* Tokens the cache holds at most, and the model the session runs. */
int64_t lk_session_n_ctx(const lk_session *s);
const lk_model *lk_session_model(const lk_session *s);

/* Append tokens[0..n) at the current position and run the forward over them, attending to every
 * earlier token of the session. logits: NULL, or [n, vocab] when all_logits is 1, or [vocab] (the
 * last token's row) when all_logits is 0. Fails with LK_ERR_ARG if the cache would overflow or an
 * id is outside the vocabulary. */
lk_status lk_session_eval(lk_session *s, const int32_t *tokens, int64_t n, float *logits,
                          int all_logits);

/* Forward of one whole sequence from position 0: logits [T, vocab]. Convenience over a
 * temporary session. */
lk_status lk_model_forward(const lk_model *m, const int32_t *tokens, int64_t T, float *logits);

/* Next-token cross-entropy of tokens[0..T): adds -log p(tokens[t+1] | tokens[..t]) for t < T-1 to
 * *nll_sum (natural log) and the number of predicted tokens to *count. Sequences longer than the
 * context are evaluated in windows of n_ctx tokens (<= 0: max_position, capped at 4096). */
lk_status lk_model_nll(const lk_model *m, const int32_t *tokens, int64_t T, int64_t n_ctx,
                       double *nll_sum, int64_t *count);

/* Like lk_model_nll with Hugging Face labels aligned with tokens (labels[t] = the id token t must
 * be, or -100 where it is not scored; NULL scores every token): position t is scored against
 * labels[t+1]. */
lk_status lk_model_nll_labels(const lk_model *m, const int32_t *tokens, const int32_t *labels,
                              int64_t T, int64_t n_ctx, double *nll_sum, int64_t *count);

/* Like lk_model_nll_labels, and over the same positions the mean distance to a teacher: adds
 * Σ KL(p_teacher ‖ p_model) (temperature 1, natural log) to *kl_sum. The teacher's vocabulary may
 * be larger (a padded one): its distribution is taken over the model's ids. */
lk_status lk_model_kl_labels(const lk_model *m, const lk_model *teacher, const int32_t *tokens,
                             const int32_t *labels, int64_t T, int64_t n_ctx, double *nll_sum,
                             double *kl_sum, int64_t *count);

/* Token sampling for generation (lora-generate's --temp, --top-p, --top-k, --seed). */
struct lk_sampler_params {
    float temperature; /* default 0.8; 0: greedy (argmax, lowest id on ties) */
    float top_p;       /* nucleus: keep the most likely tokens whose mass reaches top_p (default
                        * 0.95; 1: all) */
    int top_k;         /* keep the k most likely tokens first (default 40; 0: all) */
    uint64_t seed;     /* sampling stream seed (default 42) */
};

struct lk_sampler_params lk_sampler_params_default(void);

/* Check the options: temperature finite and >= 0, 0 < top_p <= 1, top_k >= 0. LK_ERR_ARG naming
 * the first bad one by its lora-generate flag ("--top-p must be in (0, 1], got 0").
 * lk_sampler_create runs it. */
lk_status lk_sampler_params_check(const struct lk_sampler_params *p);

typedef struct lk_sampler lk_sampler;

lk_status lk_sampler_create(const struct lk_sampler_params *p, lk_sampler **out);

void lk_sampler_free(lk_sampler *s);

/* Pick a token from logits [n_vocab]. Deterministic for a given seed and call sequence. */
int32_t lk_sampler_sample(lk_sampler *s, const float *logits, int64_t n_vocab);

/* Write a folder with DIR_IN's config.json (or the given config file) and random weights: normal
 * with std initializer_range (0.02) for matrices, ones for norms. dtype "f32" or "bf16". For speed
 * and memory work at real shapes when real weights are not available. Deterministic in seed. */
lk_status lk_model_write_random(const char *config_path, const char *out_dir, const char *dtype,
                                uint64_t seed);

/* ---- quantised bases on disk (lora-quantize) ---- */

/* Output layouts of lk_quantize_model (lora-quantize --format lorakit|gguf|hf-bnb). */
typedef enum {
    LK_QFORMAT_LORAKIT = 0, /* folder lk_model_load maps zero-copy: model.safetensors with U8
                             * [out, row_bytes] matrices in quant/'s row layout, 64-byte aligned */
    LK_QFORMAT_GGUF = 1,    /* one llama.cpp GGUF file in any GGUF type (rows that are not whole
                             * blocks: llama-quantize's fallback type, F16 at worst) */
    LK_QFORMAT_HF_BNB = 2   /* Hugging Face folder in bitsandbytes' 4-bit NF4 layout (flattened
                             * blocks of 64, config.json quantization_config) */
} lk_qformat;

/* What lk_quantize_model reports per 2-D tensor written. */
struct lk_quantize_tensor {
    const char *name;       /* source tensor name (Hugging Face; GGUF for a GGUF source) */
    int64_t rows, cols;     /* [out, in] */
    lk_qtype type;          /* stored format (LK_QTYPE_F32 when kept float) */
    double rmse, max_abs;   /* round-trip error against the fp32 source values */
    double bits_per_weight; /* stored bits per value, scales and block padding included */
    int64_t index, count;   /* position among the reported tensors */
};

/* The --format name of a layout ("lorakit", "gguf", "hf-bnb"; "?" out of range), and back
 * (LK_ERR_ARG naming --format for an unknown name). */
const char *lk_qformat_name(lk_qformat f);
lk_status lk_qformat_from_name(const char *name, lk_qformat *out);

struct lk_quantize_params {
    lk_qtype type;       /* decoder linear weights: NF4 (default), Q4_0, IQ4_NL or Q8_0; for
                          * LK_QFORMAT_GGUF also Q4_1, Q5_0, Q5_1, Q2_K .. Q6_K, IQ4_XS */
    lk_qtype embed_type; /* embeddings and untied LM head: F32 (default) or Q8_0 */
    lk_qformat format;   /* LK_QFORMAT_LORAKIT (default) */
    int double_quant;    /* HF_BNB only: bnb_4bit_use_double_quant, absmax stored 8-bit (default
                          * 0) */
    int n_threads;       /* <= 0 (default 0): all CPUs */
    int force;           /* replace an existing output (default 0) */
    void (*on_tensor)(void *user, const struct lk_quantize_tensor *t); /* may be NULL */
    void *user;
};

struct lk_quantize_params lk_quantize_params_default(void);

/* Check the options: a type and embedding type each layout can hold (GGUF has no NF4, the
 * bitsandbytes layout holds NF4 with f32 embeddings), double_quant only with HF_BNB. LK_ERR_ARG
 * naming the option by its lora-quantize flag (--type, --quant-embed, --format, --double-quant).
 * lk_quantize_model runs it. */
lk_status lk_quantize_params_check(const struct lk_quantize_params *p);

/* Quantise the float model folder dir into out (a folder, or a .gguf file for LK_QFORMAT_GGUF),
 * one tensor at a time; written under a temporary name and renamed when complete (an existing
 * out is replaced only with force). LK_ERR_ARG for a type the format cannot hold (GGUF has no
 * NF4, bitsandbytes only NF4, the folders no GGUF-only type). dir may be a GGUF model file: it is
 * re-quantised into a GGUF file (LK_QFORMAT_GGUF only, else LK_ERR_UNSUPPORTED), metadata and
 * norms kept, the projection matrices to type and the embeddings to embed_type, with a warning
 * that re-quantising loses precision. */
lk_status lk_quantize_model(const char *dir, const char *out, const struct lk_quantize_params *p);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_MODEL_H */
