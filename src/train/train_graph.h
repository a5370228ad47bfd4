/* train_graph.h — forward and backward of the whole model over one training sequence, with
 * gradients for the trained LoRA factors only (the base is frozen). Activation checkpointing per
 * layer: only each layer's input is kept; the backward recomputes the layer before going through
 * it. Packed sequences: pos[t] restarts at 0 for each example and a token attends only to earlier
 * tokens of its own example. */
#ifndef LK_TRAIN_GRAPH_H
#define LK_TRAIN_GRAPH_H

#include "nn/kd.h"
#include "model/model.h"

typedef struct train_graph train_graph;

/* Buffers for sequences of up to T_max tokens on m (with the adapters attached now).
 * checkpoint 1: keep only each layer's input and recompute its activations in the backward;
 * 0: keep every layer's activations (faster, more memory). */
lk_status graph_create(const lk_model *m, int64_t T_max, int checkpoint, train_graph **out);
void graph_free(train_graph *g);

/* Bytes graph_create allocates for T_max tokens (for --dry-run's memory plan). */
int64_t graph_bytes(const lk_model *m, int64_t T_max, int checkpoint);

/* tokens[T], targets[T] (id to predict at each position, -100 = none), pos[T] (positions, 0 at
 * the start of every packed example). Adds the summed loss and the count of predicted positions;
 * with backward, accumulates grad_scale·∂loss/∂(A, B) into every trained adapter's dA/dB. */
lk_status graph_run(train_graph *g, const int32_t *tokens, const int32_t *targets,
                    const int32_t *pos, int64_t T, float grad_scale, int backward, double *loss_sum,
                    int64_t *count);

/* Forward only: *hn (borrowed, [T, C], valid until the next run) = the final normed hidden
 * states of tokens at positions pos (a teacher's input to the distillation loss). */
lk_status graph_hidden(train_graph *g, const int32_t *tokens, const int32_t *pos, int64_t T,
                       const float **hn);

/* Distillation: the following graph_run calls take kd_forward_backward's loss with kp and the
 * teacher tch (copied; its arrays are borrowed and must describe the next run's positions), and
 * add their CE and divergence parts to *ce_sum and *kd_sum (either may be NULL). kp NULL goes
 * back to plain cross-entropy. */
lk_status graph_set_kd(train_graph *g, const kd_params *kp, const kd_teacher *tch, double *ce_sum,
                       double *kd_sum);

#endif /* LK_TRAIN_GRAPH_H */
