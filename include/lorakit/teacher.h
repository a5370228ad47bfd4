/* lorakit/teacher.h — offline teacher caches for distillation: a teacher model runs once over
 * every example of a dataset, and its top-k next-token log-probabilities at each trained position
 * are kept in a compressed file (lora-teacher writes it; lora-train --teacher-cache reads it and
 * checks it against its data). Format and design: docs/teacher-cache.md. */
#ifndef LORAKIT_TEACHER_H
#define LORAKIT_TEACHER_H

#include "lorakit/core.h"
#include "lorakit/dist.h"
#include "lorakit/model.h"
#include "lorakit/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lk_teacher_params {
    int64_t top_k; /* k ids kept per position, 1 <= k < vocab (default 32) */
    float temp;    /* τ > 0: log-probabilities of softmax(logits / τ) (default 1) */
    int64_t vocab; /* 0 (default): the model's vocab_size; else the softmax runs over ids
                    * [0, vocab) only, e.g. a student's smaller vocabulary (<= vocab_size) */
    int64_t piece; /* tokens per forward call: logits are held for [piece, vocab_size] at a time
                    * (default 64) */
    int force;     /* 1: replace an existing output file (default 0) */
    const char *teacher_dir;  /* recorded in the file: its folder name and the XXH64 of its
                               * config.json (NULL: not recorded) */
    const char *teacher_note; /* recorded after it as is, e.g. the adapters applied (may be NULL) */
    const char *data_path;    /* recorded: the data file's name, size and XXH64 (may be NULL) */
    /* Called after each example (with a group: after each round of examples, on every rank)
     * with the examples done and their total; a nonzero return stops the run with
     * LK_ERR_INTERRUPTED (nothing is left on disk; with a group, every rank stops when one asks).
     * May be NULL. */
    int (*progress)(void *user, int64_t done, int64_t total);
    void *user;
    lk_dist *dist; /* data parallelism (borrowed; NULL, the default: this process alone): the
                    * examples are split across the ranks in rounds, and rank 0 writes the one
                    * cache file, the same bytes as a single process writes */
};

struct lk_teacher_params lk_teacher_params_default(void);

/* Check the options, named by lora-teacher's flags: --top-k >= 1, --kd-temp > 0, piece >= 1,
 * --vocab >= 0; with the model's config cfg (may be NULL) also 2 <= vocab <= vocab_size and
 * top_k below the vocabulary ("--top-k must be between 1 and 511 (below the
 * vocabulary of 512 ids), got 512"). LK_ERR_ARG. lk_teacher_cache_write runs it with the model's config. */
lk_status lk_teacher_params_check(const struct lk_teacher_params *p,
                                  const struct lk_model_config *cfg);

/* What lk_teacher_cache_write did. */
struct lk_teacher_stats {
    int64_t examples;       /* examples written (all of the dataset's, in file order) */
    int64_t tokens;         /* their tokens */
    int64_t positions;      /* positions with an entry (trained: the next token has a label) */
    int64_t forward_tokens; /* tokens run through the teacher (up to each last trained one) */
    int64_t bytes;          /* size of the file written */
};

/* Run m (borrowed; adapters attached to it apply) over every example of d (borrowed; examples as
 * lk_dataset_example gives them, each from position 0 on its own, as the trainer sees them in a
 * packed row) and write the cache to path: a temporary file renamed when complete, so an
 * interrupted run leaves nothing that looks like a cache. With p->dist this is collective: the
 * ranks compare their options, teacher weights (adapters included) and data first (LK_ERR_ARG
 * naming the first difference), each runs its share of every round of examples, and rank 0
 * gathers the entries and writes path (the other ranks write nothing); st is the whole run's
 * (bytes: rank 0's file) on every rank. LK_ERR_ARG for bad params (k outside
 * [1, vocab), τ <= 0, vocab above the model's), LK_ERR_IO when path exists (without force) or
 * cannot be written, LK_ERR_NUMERIC when the teacher's logits are not finite (naming the example
 * and position). st may be NULL. */
lk_status lk_teacher_cache_write(const lk_model *m, const lk_dataset *d, const char *path,
                                 const struct lk_teacher_params *p, struct lk_teacher_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_TEACHER_H */
