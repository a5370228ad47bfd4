/* train_graph.h — forward and backward of the whole model over one training sequence, with
 * gradients for the trained LoRA factors only (the base is frozen). Activation checkpointing per
 * layer: only each layer's input is kept; the backward recomputes the layer before going through
 * it. Packed sequences: pos[t] restarts at 0 for each example and a token attends only to earlier
 * tokens of its own example. */
#ifndef LK_TRAIN_GRAPH_H
#define LK_TRAIN_GRAPH_H

#include "model.h"

typedef struct train_graph train_graph;

/* Buffers for sequences of up to T_max tokens on m (with the adapters attached now). */
lk_status graph_create(const lk_model *m, int64_t T_max, train_graph **out);
void graph_free(train_graph *g);

/* Bytes graph_create allocates for T_max tokens (for --dry-run's memory plan). */
int64_t graph_bytes(const lk_model *m, int64_t T_max);

/* tokens[T], targets[T] (id to predict at each position, -100 = none), pos[T] (positions, 0 at
 * the start of every packed example). Adds the summed loss and the count of predicted positions;
 * with backward, accumulates grad_scale·∂loss/∂(A, B) into every trained adapter's dA/dB. */
lk_status graph_run(train_graph *g, const int32_t *tokens, const int32_t *targets,
                    const int32_t *pos, int64_t T, float grad_scale, int backward, double *loss_sum,
                    int64_t *count);

#endif /* LK_TRAIN_GRAPH_H */
