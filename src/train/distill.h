/* distill.h — the teacher of a distillation run for the trainer: an online teacher model (its own
 * forward graph) or a top-k teacher cache, and the teacher's outputs for each sequence the student
 * runs. Every buffer is planned at setup: a step allocates nothing. */
#ifndef LK_DISTILL_H
#define LK_DISTILL_H

#include "formats/tcache.h"
#include "lorakit/train.h"
#include "train/train_graph.h"

typedef struct {
    kd_params kp;          /* the run's objective (kp.kind 0: SFT, no teacher) */
    const lk_model *model; /* the online teacher (borrowed), or NULL */
    train_graph *tg;       /* its forward */
    tcache *tc;            /* or the teacher cache */
    int64_t T;             /* sequence length */
    int64_t *ex;           /* [rows, T] the examples of each row's segments (with a cache) */
    int64_t *n_ex;         /* [rows] */
    int32_t *c_ids;        /* [T, k] the cache's entries for one row */
    float *c_logp;         /* [T, k] */
    float *c_tail;         /* [T] */
} distill;

/* The teacher of p's objective (nothing for SFT) for a student m, whose graph g runs sequences of
 * up to T tokens, rows per step, over data: the online teacher's graph, or the cache (made over
 * this data, at this temperature, over m's vocabulary), and room in g for the loss. Free with
 * distill_free, also after a failure. */
lk_status distill_create(distill *d, const struct lk_train_params *p, const lk_model *m,
                         const lk_dataset *data, int64_t T, int64_t rows, train_graph *g);
void distill_free(distill *d);

/* With a cache: note the examples of the row data returned last, the step's row r. */
lk_status distill_row(distill *d, const lk_dataset *data, int64_t r);

/* The loss of the student's run over b: kp (kind 0: cross-entropy) with the teacher over b's
 * positions, the online teacher's forward run now, or the cache's entries for the step's row r
 * (its segments seg[b->T]; r < 0, an evaluation, has no cache entries). The teacher's arrays stay
 * valid until the next call. */
lk_status distill_loss(distill *d, const kd_params *kp, const train_batch *b, int64_t r,
                       const int32_t *seg, loss_config *out);

#endif /* LK_DISTILL_H */
