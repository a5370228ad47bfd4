/* trainer.h — the trainer's state, shared by train.c (creation, the step loop, evaluation),
 * train_ckpt.c (checkpoints, the state broadcast of data parallelism, the PEFT output) and
 * nothing else. Every buffer a step uses is
 * allocated by lk_trainer_create (or lk_trainer_resume): a step allocates nothing. */
#ifndef LK_TRAINER_H
#define LK_TRAINER_H

#include "lora/lora.h"
#include "lorakit/train.h"
#include "train/dist.h"
#include "train/distill.h"
#include "train/train_graph.h"

struct lk_trainer {
    lk_model *m;
    int q8t; /* 1: this trainer built the model's transposed int8 copies (frees them) */
    lk_dataset *data;
    struct lk_train_params p;
    lk_adapter *ad; /* the trained adapter: rank, alpha, factors */
    lora_set lora;  /* ad's factors as one params arena, with gradients */
    train_graph *g;
    distill kd;                           /* the teacher (distillation objectives) */
    float *m1, *m2;                       /* [n_params] AdamW moments */
    int64_t T, rows;                      /* seq_len, this rank's rows per step (batch ×
                                           * grad_accum) */
    lk_dist *dist;                        /* data-parallel group (NULL: this process alone) */
    int64_t rows_all, row0;               /* the step's rows (all ranks'); this rank's first */
    float *red;                           /* [dist_sum_work(n_params)] the sum's work memory */
    int32_t *tok, *lab, *pos, *seg, *tgt; /* [rows, T] */
    int64_t *n_real;                      /* [rows] */
    int64_t step, total, n_updates, skipped_total, bad_run;
    float *hist; /* [hist_cap] loss of each step, planned for every step of the run */
    int64_t hist_cap;
    sum_tree rows_sum; /* the step's gradient over its rows (own: [sum_tree_levels(rows), n]) */
    struct lk_loftq_stat *loftq; /* [lora.n] with a LoftQ start, else NULL */
};

/* Room in the loss history for n steps (the whole run: done at creation and resume). */
lk_status trainer_plan_history(lk_trainer *t, int64_t n);

#endif /* LK_TRAINER_H */
