/* train_graph.h — forward and backward of the whole model over one training sequence, with
 * gradients for the trained LoRA factors only (the base is frozen). Activation checkpointing per
 * layer: the top `keep` layers keep their activations (the lowest of them in the shared buffers
 * the others overwrite no more, the rest in a store; the normed inputs and the SwiGLU product,
 * cheap to form again from what is kept, are recomputed before each kept layer's backward); every
 * layer below keeps only its input and is recomputed before the backward goes through it, the
 * very same numbers. Packed sequences:
 * pos[t] restarts at 0 for each example and a token attends only to earlier tokens of its own
 * example. */
#ifndef LK_TRAIN_GRAPH_H
#define LK_TRAIN_GRAPH_H

#include "nn/kd.h"
#include "model/model.h"

typedef struct train_graph train_graph;

/* Buffers for sequences of up to T_max tokens on m (with the adapters attached now), the top
 * `keep` layers keeping their activations (clamped to 1 .. n_layers: 1 recomputes every layer but
 * the last, n_layers none). */
lk_status graph_create(const lk_model *m, int64_t T_max, int64_t keep, train_graph **out);
void graph_free(train_graph *g);

/* Bytes graph_create allocates for T_max tokens and `keep` (for the memory plan). */
int64_t graph_bytes(const lk_model *m, int64_t T_max, int64_t keep);

/* Bytes each kept layer beyond the first adds to graph_bytes. */
int64_t graph_layer_bytes(const lk_model *m, int64_t T_max);

/* The inputs of one run: a sequence of T tokens and the stream of its dropout masks. */
typedef struct {
    const int32_t *tokens;  /* [T] */
    const int32_t *targets; /* [T] id to predict at each position, -100 = none (graph_run only) */
    const int32_t *pos;     /* [T] positions, 0 at the start of every packed example */
    int64_t T;
    int dropout;   /* 1: the trained adapters' dropout, masks from (seed, row); 0: none */
    int infer;     /* 1: inference forwards (linear_forward: one int8 term, as lora-eval's), for
                    * a held-out evaluation; 0: training's (two int8 terms where linear.act2) */
    uint64_t seed; /* the run's seed */
    uint64_t row;  /* the sequence's index in the run (step · rows per step + row) */
} train_batch;

/* The objective of a run: kd.kind 0, cross-entropy on the targets; else distillation with the
 * teacher over the batch's positions (its arrays borrowed for the run). */
typedef struct {
    kd_params kd;
    kd_teacher teacher;
} loss_config;

/* What runs add up (graph_run adds to it: zero it first). */
typedef struct {
    double loss;   /* Σ objective over the predicted positions */
    double ce, kd; /* its distillation parts: Σ cross-entropy, Σ τ²·divergence (0 without) */
    int64_t count; /* predicted positions */
} loss_sums;

/* Room for distillation runs with a teacher whose LM head is teacher_head (NULL: a top-k teacher):
 * the loss's scratch, allocated here once so that no run allocates. */
lk_status graph_reserve_kd(train_graph *g, const linear *teacher_head);

/* Forward and loss of batch b (loss NULL: cross-entropy), added to *sums; with backward, also
 * accumulates grad_scale·∂loss/∂(A, B) into every trained adapter's dA/dB. Allocates nothing (a
 * distillation loss needs graph_reserve_kd first). */
lk_status graph_run(train_graph *g, const train_batch *b, const loss_config *loss, float grad_scale,
                    int backward, loss_sums *sums);

/* Forward only: *hn (borrowed, [T, C], valid until the next run) = the final normed hidden
 * states of b's tokens (a teacher's input to the distillation loss; b's targets are not read). */
lk_status graph_hidden(train_graph *g, const train_batch *b, const float **hn);

#endif /* LK_TRAIN_GRAPH_H */
