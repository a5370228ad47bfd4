/* loss.c — chunked cross-entropy (SFT objective) with its gradient: kd.c's loss with weight
 * α = 0 and no teacher. Per block of ce_rows(V) rows, pass 1 computes vocabulary chunks of
 * logits = h·W_chunkᵀ folded into running log-sum-exps (online max and rescaled sum, sums in
 * double), pass 2 revisits each kept chunk, forms dlogits = (softmax − onehot)·grad_scale and
 * accumulates dh += dlogits·W_chunk. The element-wise loops over the vocabulary use fastmath.h's
 * vectorised fm_exp and run over the block's rows on the library's threads (libm's exp in double,
 * one element at a time, cost as much as the head's GEMMs at Qwen2.5's V = 151936). */
#include "nn/loss.h"

#include <stddef.h>

#include "nn/kd.h"

int64_t ce_scratch_floats(const linear *head, int n_threads)
{
    return kd_scratch_floats(head, NULL, n_threads);
}

void ce_forward_backward(const linear *head, const float *h, const int32_t *targets, int64_t T,
                         float grad_scale, float *dh, double *loss_sum, int64_t *count,
                         float *scratch, int n_threads)
{
    /* α = 0: cross-entropy only; the kind and τ are then not used (the teacher is not read) */
    const kd_params ce = {.kind = KD_FKL, .temp = 1.0f, .beta = 0.0f, .weight = 0.0f};
    kd_forward_backward(head, h, targets, T, &ce, NULL, grad_scale, dh, loss_sum, NULL, NULL,
                        count, scratch, n_threads);
}
