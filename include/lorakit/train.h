/* lorakit/train.h — LoRA training (SFT objective) on a frozen base: the trainer owns the adapter
 * parameters, their gradients and optimiser moments, and steps through a dataset's packed rows.
 * The caller drives the loop (lk_trainer_step), so that it can show progress, evaluate, save
 * checkpoints and stop cleanly on a signal. */
#ifndef LORAKIT_TRAIN_H
#define LORAKIT_TRAIN_H

#include "lorakit/adapter.h"
#include "lorakit/core.h"
#include "lorakit/dist.h"
#include "lorakit/model.h"
#include "lorakit/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_trainer lk_trainer;

typedef enum { LK_OPT_ADAMW = 0, LK_OPT_SGD = 1 } lk_optimizer;
typedef enum { LK_SCHED_COSINE = 0, LK_SCHED_LINEAR = 1, LK_SCHED_CONSTANT = 2 } lk_schedule;

/* SFT: cross-entropy on the labels. Distillation (needs a teacher): per trained position
 * (1 − kd_weight)·CE + kd_weight·τ²·D with D at temperature τ = kd_temp: KD forward
 * KL(teacher ‖ model), RKL reverse KL(model ‖ teacher), JSD generalised Jensen-Shannon with
 * jsd_beta (TRL's GKD: 0 is forward KL, 1 reverse KL). */
typedef enum { LK_OBJ_SFT = 0, LK_OBJ_KD = 1, LK_OBJ_RKL = 2, LK_OBJ_JSD = 3 } lk_objective;

/* How a fresh adapter starts (ignored with init_adapter, which may not be combined with LoftQ).
 * LK_INIT_PEFT: A Kaiming-uniform, B = 0, so the model starts as the base (PEFT's default).
 * LK_INIT_LOFTQ: LoftQ (Li et al. 2023) with one iteration: for every targeted layer, s·B·A is
 * the rank-r truncated SVD of the quantisation residual W − deq(Q(W)) (W re-read in full
 * precision from the model's files; singular values split evenly between A and B, as PEFT's
 * loftq_init), so base + adapter starts closer to the unquantised model. Needs a base quantised
 * at load (not f32, not a pre-quantised folder). More LoftQ iterations would re-quantise the base
 * from W − s·B·A, a base that no other tool rebuilds from the model folder, so they are not
 * offered. */
typedef enum { LK_INIT_PEFT = 0, LK_INIT_LOFTQ = 1 } lk_lora_init;

/* Activation checkpointing. The backward needs every layer's activations; a layer that does not
 * keep them is recomputed from its saved input before the backward goes through it (one more
 * forward of that layer: the same numbers, bit for bit, so the choice never changes a result).
 * LK_CKPT_OFF: every layer keeps its activations (fastest, most memory); LK_CKPT_ON: only the
 * last one (the others recomputed: least memory); LK_CKPT_AUTO (default): as many layers as the
 * memory plan lets keep theirs within memory_limit (or the memory available when the trainer is
 * created), the lowest layers recomputed. lk_trainer_kept_layers says how many keep them. */
typedef enum { LK_CKPT_OFF = 0, LK_CKPT_ON = 1, LK_CKPT_AUTO = 2 } lk_checkpointing;

/* Training options; lk_train_params_default() gives the defaults written beside each field (PEFT's
 * and transformers', and lora-train's: the tool maps its flags onto these fields and nothing
 * else). */
struct lk_train_params {
    /* adapter */
    int64_t rank;             /* r (default 8) */
    double alpha;             /* lora_alpha; 0 (default): the rank, a scale of 1 */
    float dropout;            /* lora_dropout (default 0) */
    unsigned targets;         /* bit (1 << i) for q,k,v,o,gate,up,down (default all seven: 0x7f) */
    int rslora;               /* scale alpha/sqrt(r) instead of alpha/r */
    const char *init_adapter; /* NULL, or a PEFT folder to start from (shapes must match) */
    lk_lora_init init;        /* fresh adapter's start (default LK_INIT_PEFT) */
    /* optimiser */
    lk_optimizer optimizer;  /* default AdamW */
    float lr;                /* peak learning rate (default 2e-4) */
    float lr_ratio_b;        /* LoRA+: B's learning rate = ratio × A's (default 1) */
    float weight_decay;      /* decoupled (AdamW) or L2 (SGD) (default 0) */
    float beta1, beta2, eps; /* AdamW (0.9, 0.999, 1e-8) */
    float max_grad_norm;     /* global-norm clipping, <= 0 off (default 1.0) */
    lk_schedule schedule;    /* default linear (transformers' default) */
    int64_t warmup_steps;    /* default 0 */
    /* steps */
    int64_t steps;      /* optimiser steps; 0: derived from epochs (default 0) */
    double epochs;      /* used when steps is 0 (default 1) */
    int64_t batch;      /* rows per micro-batch (default 1) */
    int64_t grad_accum; /* micro-batches per step (default 1) */
    uint64_t seed;      /* init and dropout streams (default 42) */
    int max_bad_steps;  /* consecutive NaN/Inf steps before giving up (default 5) */
    lk_checkpointing checkpointing; /* default LK_CKPT_AUTO (see the enum) */
    /* bytes the run may plan for (model weights included), LK_CKPT_AUTO's budget; 0 (default):
     * the memory available (lk_memory_available) */
    int64_t memory_limit;
    /* objective */
    lk_objective objective;    /* default SFT */
    float kd_temp;             /* τ (default 1) */
    float kd_weight;           /* α (default 1: distillation only) */
    float jsd_beta;            /* JSD's β (default 0.5, TRL's) */
    lk_model *teacher;         /* online teacher (borrowed, not the trained model; its vocabulary
                                * may be larger, the extra ids are cut off). Under --compute
                                * auto it gives way to the trained model: lk_trainer_choose_compute
                                * may turn it from int8 to f32 */
    const char *teacher_cache; /* or a lora-teacher cache of the training data (top-k) */
    /* data parallelism */
    lk_dist *dist; /* the group of processes training this run together (borrowed; NULL, the
                    * default: this process alone). Each step's batch × grad_accum × ranks rows
                    * (the global batch) are taken in the data's order, and rank R computes the
                    * R-th batch × grad_accum of them: the same rows, the same dropout masks and
                    * the same step as one process with batch × ranks, bit for bit when batch ×
                    * grad_accum is a power of two (the rows and then the ranks are summed in one
                    * tree, sum_tree), else but for the order of the sums. The gradients, token
                    * counts and loss sums are summed over the ranks in a fixed order (dist.c
                    * says why not a plain MPI_Allreduce);
                    * each rank sends 2·(ranks − 1)/ranks × 4 bytes per trained parameter per
                    * step. Every rank needs the same model, data and options (lk_trainer_create
                    * compares them). */
};

struct lk_train_params lk_train_params_default(void);

/* Model options of the base a run trains: lk_model_params_default() with quant LK_QTYPE_NF4
 * (QLoRA: the base lives in 4 bits unless asked otherwise). */
struct lk_model_params lk_train_model_params_default(void);

/* Dataset options of training data: lk_dataset_params_default() with rows of seq_len 512 tokens
 * (packed, shuffled with seed 42). */
struct lk_dataset_params lk_train_data_params_default(void);

/* Check the options. The first one out of range fails with LK_ERR_ARG and a message naming it by
 * its lora-train flag (fields without one by their name) and giving its value: "--rank must be
 * at least 1, got 0", "--optimizer 7: expected adamw or sgd". Also: a LoftQ start
 * excludes init_adapter. mp (may be NULL): the base's options too (lk_model_params_check), and a
 * LoftQ start needs a quantised base. lk_trainer_create runs it (mp NULL), and then checks the
 * teacher setup: a distillation objective needs exactly one teacher (teacher or teacher_cache),
 * SFT none. */
lk_status lk_train_params_check(const struct lk_train_params *p, const struct lk_model_params *mp);

/* Check the options against the base model m (lk_adapter_params_check_model: a fresh adapter's
 * rank at most the smaller side of every targeted module). lk_trainer_create runs it. */
lk_status lk_train_params_check_model(const struct lk_train_params *p, const lk_model *m);

/* The data options of a training run (and of a teacher cache made for one): lk_dataset_params_check
 * and rows of at least 2 tokens ("--seq-len must be at least 2, got 1"). */
lk_status lk_train_data_params_check(const struct lk_dataset_params *dp);

/* The enums by the names lora-train's flags take (--optimizer adamw|sgd, --schedule
 * cosine|linear|constant, --objective sft|kd|rkl|jsd, --init peft|loftq): *_name gives the name
 * ("?" out of range), *_from_name the value (LK_ERR_ARG naming the flag and the known names). The
 * target modules' names are lk_targets_from_name / lk_targets_name (lorakit/adapter.h). */
const char *lk_optimizer_name(lk_optimizer o);
lk_status lk_optimizer_from_name(const char *name, lk_optimizer *out);
const char *lk_schedule_name(lk_schedule s);
lk_status lk_schedule_from_name(const char *name, lk_schedule *out);
const char *lk_objective_name(lk_objective o);
lk_status lk_objective_from_name(const char *name, lk_objective *out);
const char *lk_lora_init_name(lk_lora_init i);
lk_status lk_lora_init_from_name(const char *name, lk_lora_init *out);
/* --checkpointing auto|on|off */
const char *lk_checkpointing_name(lk_checkpointing c);
lk_status lk_checkpointing_from_name(const char *name, lk_checkpointing *out);

/* --memory-limit SIZE: bytes, or a number with a binary suffix K, M, G or T (KiB... also read;
 * 1.5G = 1.5 × 2^30), above 0. LK_ERR_ARG naming the flag and the text otherwise. */
lk_status lk_memory_limit_from_name(const char *text, int64_t *bytes);

/* A trainer for model m (borrowed; the adapter is attached to it for the trainer's lifetime) over
 * data (borrowed; its seq_len is the training sequence length). Caller frees with
 * lk_trainer_free (which detaches the adapter). With a data-parallel group (p->dist) this is
 * collective (lorakit/dist.h): the ranks compare lorakit's version, the options, the base's
 * weights, the data and the teacher (LK_ERR_ARG on every rank naming the first that differs,
 * with both values), and every rank starts from rank 0's adapter. */
lk_status lk_trainer_create(lk_model *m, lk_dataset *data, const struct lk_train_params *p,
                            lk_trainer **out);
void lk_trainer_free(lk_trainer *t);

/* The LoftQ start of one targeted module (Frobenius norms). */
struct lk_loftq_stat {
    int64_t layer;
    lk_module module;
    double weight_norm;    /* ‖W‖, the full-precision weight */
    double residual_norm;  /* ‖R‖, R = W − deq(Q(W)): the quantisation error */
    double remaining_norm; /* ‖R − s·B·A‖: what base + the fresh adapter still miss */
};

/* Per-module statistics of a LoftQ start (init LK_INIT_LOFTQ), in adapter module order (layer,
 * then lk_module); NULL with *n = 0 for other starts. Borrowed, valid until lk_trainer_free. */
const struct lk_loftq_stat *lk_trainer_loftq_stats(const lk_trainer *t, int64_t *n);

/* What one step did. */
struct lk_step_stats {
    int64_t step; /* steps done after this one */
    int64_t total_steps;
    double loss;            /* mean objective over the step's trained tokens */
    double ce, kd;          /* its parts: mean cross-entropy, mean τ²·divergence (NaN for SFT) */
    double grad_norm;       /* before clipping */
    float lr;               /* learning rate used (A's) */
    int64_t tokens;         /* tokens processed (padding excluded) */
    int64_t trained_tokens; /* tokens with a label */
    int skipped;            /* 1: no update was made: the step had no trained token (empty) or
                             * its loss or gradients were not finite */
    int64_t skipped_total;
    int empty;             /* 1: the step had no trained token (loss NaN: nothing to learn) */
    int64_t updates_total; /* optimiser updates made so far in the run (kept by checkpoints) */
    /* data parallelism (0 without): what the gradient sum cost this rank */
    int64_t comm_bytes; /* payload bytes it sent */
    double comm_s;      /* seconds it took, waiting for the slowest rank included */
};

/* One optimiser step over batch × grad_accum rows (× ranks: collective with a group; the stats
 * are the whole step's, tokens and loss over every rank's rows). LK_ERR_NUMERIC after
 * max_bad_steps consecutive non-finite steps (the parameters are those of the last good step). A
 * step whose rows hold no trained token changes nothing (empty, not counted as non-finite). */
lk_status lk_trainer_step(lk_trainer *t, struct lk_step_stats *st);

/* Loss of every step so far (NaN for skipped steps), kept across checkpoints; borrowed, valid
 * until the next step. */
const float *lk_trainer_loss_history(const lk_trainer *t, int64_t *n);

/* Steps done / planned. */
int64_t lk_trainer_steps_done(const lk_trainer *t);
int64_t lk_trainer_total_steps(const lk_trainer *t);

/* Mean cross-entropy over every example of an evaluation dataset (unpacked, no dropout; with a
 * group, collective: each rank evaluates its share of the examples and the sums are added); kl
 * (may be NULL) gets the mean KL(teacher ‖ model) at temperature 1 over the same tokens when the
 * trainer has an online teacher, else NaN. */
lk_status lk_trainer_eval(lk_trainer *t, const lk_dataset *eval, double *loss, double *kl,
                          int64_t *tokens);

/* Options of lk_trainer_evaluate. */
struct lk_eval_params {
    int64_t max_examples; /* 0 (default): every example; n: a fixed sample of n examples spread
                           * evenly over the data (example floor(i·E/n) for i < n of E), the same
                           * at every evaluation so that the numbers compare */
    /* called after each example with the examples done and to do (may be NULL); a non-zero
     * return stops the evaluation with LK_ERR_INTERRUPTED */
    int (*progress)(void *user, int64_t done, int64_t total);
    void *user;
};

struct lk_eval_params lk_eval_params_default(void);

/* What an evaluation measured. */
struct lk_eval_result {
    double loss;      /* mean cross-entropy per scored token (NaN when none) */
    double kl;        /* mean KL(teacher ‖ model) with an online teacher, else NaN */
    int64_t tokens;   /* scored tokens */
    int64_t examples; /* examples evaluated */
};

/* lk_trainer_eval over the examples p chooses (p NULL: the defaults), reporting progress.
 * LK_ERR_ARG for max_examples < 0. */
lk_status lk_trainer_evaluate(lk_trainer *t, const lk_dataset *eval, const struct lk_eval_params *p,
                              struct lk_eval_result *out);

/* Checkpoint: adapter, optimiser moments, step, schedule, data cursor, written atomically to
 * path (a file). lk_trainer_resume restores one made with the same model, data and options:
 * training then continues exactly as if it had not stopped (same thread count). */
lk_status lk_trainer_save_checkpoint(const lk_trainer *t, const char *path);
lk_status lk_trainer_resume(lk_trainer *t, const char *path);

/* The compute mode a checkpoint (path, a file) was made with: LK_COMPUTE_F32 or LK_COMPUTE_INT8
 * (f32 for one from before --compute existed). LK_ERR_FORMAT as lk_trainer_resume's reading
 * gives it, or naming a mode that is neither. */
lk_status lk_trainer_checkpoint_compute(const char *path, lk_compute *out);

/* Collective (data parallelism): every rank's state becomes rank 0's — adapter, optimiser
 * moments, step and schedule counters, data cursor, loss history — so that a run resumed on rank
 * 0 alone (only it reads the run folder, which the other hosts need not see) continues on every
 * rank. A checkpoint stores the global data cursor and the rows of a whole step, so a run saved
 * with N ranks resumes with any M for which M × batch × grad_accum is the same. No-op without a
 * group. */
lk_status lk_trainer_sync(lk_trainer *t);

/* Write the adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors);
 * base_model is recorded as base_model_name_or_path. Replaces dir only with force. */
lk_status lk_trainer_save_adapter(const lk_trainer *t, const char *dir, const char *base_model,
                                  int force);

/* Write the adapter as a llama.cpp GGUF LoRA file (f32 factors, q/k rows in llama.cpp's order for
 * a llama base; lk_adapter_save_gguf with the model's config). Replaces path only with force. */
lk_status lk_trainer_save_gguf_lora(const lk_trainer *t, const char *path, int force);

/* How many of m's layers keep their activations for the backward under p's checkpointing with
 * sequences of seq_len tokens (1 .. n_layers; the rest are recomputed): n_layers with
 * LK_CKPT_OFF, 1 with LK_CKPT_ON; with LK_CKPT_AUTO the most whose plan (the weights of m and
 * of an online teacher + lk_trainer_memory_plan) fits lk_memory_budget(p->memory_limit) (at
 * least 1), after the LM head's int8 copy (lk_trainer_int8_copies). The
 * trainer lk_trainer_create makes uses this count. */
int64_t lk_trainer_kept_layers(const lk_model *m, const struct lk_train_params *p, int64_t seq_len);

/* --compute int8's transposed copies for the backward's dx under the same plan: how many of m's
 * layers keep theirs (the top ones; the others' are built just before their backward into one
 * reused buffer, the same bits), whether the LM head keeps its copy (*head: 1 it does, 0 it runs
 * on int8 without one, its dx on the f32 kernel, -1 it does not run on int8) and the bytes of all
 * that (*bytes; either may be NULL). Within the budget of
 * lk_trainer_kept_layers, in this order: the head's copy, the kept activations
 * (LK_CKPT_AUTO), the layers' copies; every copy is kept when the budget allows. *bytes 0 and
 * *head -1 without int8 matrices. The trainer lk_trainer_create makes uses this plan. */
int64_t lk_trainer_int8_copies(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                               int *head, int64_t *bytes);

/* --compute auto for training: when m was loaded with LK_COMPUTE_AUTO and chose int8, check the
 * least int8 plan (the weights of m with its NF4 corrections and of an online teacher, the
 * lk_trainer_memory_plan with one layer's activations, or all with LK_CKPT_OFF, and no copy kept
 * but the one layer's build buffer) against lk_memory_budget(p->memory_limit). The model trained
 * comes first: when the plan does not fit but does with the online teacher p->teacher on f32 (a
 * teacher LK_COMPUTE_AUTO set on int8: its NF4 corrections freed, its buffers sized for f32), the
 * teacher turns to f32 and m keeps int8 (both reasons say so). When it does not fit either way, m
 * turns to f32 (its corrections freed) with one note and lk_model_compute_reason saying why; the
 * teacher then still turns to f32 if that is what makes m's f32 plan fit (as it does for a model
 * that chose f32 at load). A model that took a resumed run's int8 (lk_model_params.resume_compute)
 * is never turned: LK_ERR_NOMEM naming the mode and the plan, the teacher's share of it and the
 * budget when it does not fit even with the teacher on f32. Decided once: nothing for a model
 * whose compute was given, once decided (the memory available may have changed since: a tool
 * checks before lk_trainer_create does, and data-parallel ranks must keep what they agreed; run
 * lk_trainer_agree_compute on the teacher again after it), or once a trainer has built its
 * copies. lk_trainer_create runs it; a tool's --dry-run runs it before showing the plan. */
lk_status lk_trainer_choose_compute(lk_model *m, const struct lk_train_params *p, int64_t seq_len);

/* Collective over the data-parallel group d (nothing without one): --compute auto on every rank
 * alike. When any rank's m runs f32 (its host had no room for int8), a rank whose m
 * LK_COMPUTE_AUTO set on int8 turns to f32 too (lk_model_compute_reason names the rank), so that
 * the ranks compute alike. For each model a run computes with (a trainer's base after
 * lk_trainer_choose_compute, an online teacher, lora-teacher's model), before lk_trainer_create
 * or lk_teacher_cache_write compare the ranks. */
lk_status lk_trainer_agree_compute(lk_dist *d, lk_model *m);

/* Bytes the trainer will allocate beyond the model (adapter, gradients, moments, activations,
 * and with --compute int8 the transposed copies and build buffer of lk_trainer_int8_copies,
 * counted in the total only), with the layers lk_trainer_kept_layers keeping their activations;
 * the total also holds 16 MiB for the runtime (libraries, thread stacks, OpenBLAS's buffers:
 * what a run's peak RSS was measured to hold beyond the planned buffers). */
int64_t lk_trainer_memory_plan(const lk_model *m, const struct lk_train_params *p, int64_t seq_len,
                               int64_t *adapter_bytes, int64_t *optimizer_bytes,
                               int64_t *activation_bytes);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_TRAIN_H */
