/* optim.h — optimisers and learning-rate schedules for the LoRA parameters (PyTorch semantics):
 * AdamW with decoupled weight decay, plain SGD, global-norm gradient clipping, and warmup followed
 * by cosine / linear / constant decay as transformers' get_*_schedule_with_warmup. */
#ifndef LK_OPTIM_H
#define LK_OPTIM_H

#include <stdint.h>

typedef enum { OPT_ADAMW = 0, OPT_SGD = 1 } optim_kind;
typedef enum { SCHED_COSINE = 0, SCHED_LINEAR = 1, SCHED_CONSTANT = 2 } sched_kind;

typedef struct {
    optim_kind kind;
    float beta1, beta2, eps, weight_decay;
} optim_params;

/* One update of n parameters: p[n] from g[n]; m[n], v[n] are AdamW's moments (unused by SGD);
 * step is the 1-based number of this update (bias correction). */
void optim_update(const optim_params *o, float *p, const float *g, float *m, float *v, int64_t n,
                  float lr, int64_t step);

/* √Σg² over n values (accumulated in double). */
double grad_norm(const float *g, int64_t n);

/* Scale g so that its global norm is at most max_norm (torch.nn.utils.clip_grad_norm_: factor
 * max_norm / (norm + 1e-6) when below 1). Returns the norm before clipping. max_norm <= 0: off. */
double clip_grad_norm(float *g, int64_t n, double max_norm);

/* Learning rate of 0-based update `step` out of `total`: linear warmup from 0 over warmup steps,
 * then the decay. */
float schedule_lr(sched_kind k, float base_lr, int64_t step, int64_t warmup, int64_t total);

#endif /* LK_OPTIM_H */
