/* loss.h — next-token cross-entropy through the LM head, in blocks of rows: the [T, V] logits
 * are never held at once (Qwen2.5's V = 151936 would need 311 MB at T = 512), only
 * [ce_rows(V), V]. */
#ifndef LK_LOSS_H
#define LK_LOSS_H

#include <stdint.h>

#include "nn/linear.h"

#define CE_ROWS     32      /* token rows per block: at least, and the step of ce_rows */
#define CE_ROWS_MAX 128     /* token rows per block: at most */
#define CE_FLOATS   6291456 /* a block's logits [rows, V] at most, 24 MiB (but CE_ROWS rows) */
#define CE_VCHUNK   4096    /* vocabulary columns per block */

/* Token rows per block for a vocabulary of V: the multiple of CE_ROWS, CE_ROWS to CE_ROWS_MAX,
 * whose logits fit CE_FLOATS (128 for SmolLM2's V = 49152, 32 for Qwen2.5's 151936): more rows
 * per call of the LM head's products, which pack each vocabulary chunk of the weight once per
 * block (at 32 rows, the int8 head ran at 60 % of the layers' speed). A row's logits, loss and
 * gradient do not depend on the rows beside it. */
int64_t ce_rows(int64_t V);

/* Floats of scratch ce_forward_backward needs for the head [V, C] on n_threads threads: one block
 * of ce_rows(V) rows of logits kept between the two passes (19 MB for V = 151936), the block's rows
 * of h and their gradient, and the work of the head's linear calls (linear_work_bytes); it is
 * kd_scratch_floats(head, NULL, n_threads) (kd.h), whose loss with α = 0 this is. */
int64_t ce_scratch_floats(const linear *head, int n_threads);

/* h[T,C]: final hidden states; targets[T]: the id each position must predict, or -100 (ignored).
 * Adds Σ −log p(target) to *loss_sum and the number of predicted positions to *count. When dh is
 * non-NULL, dh[T,C] (overwritten) = grad_scale · ∂(Σ loss)/∂h. head: [V, C] (no bias). scratch:
 * ce_scratch_floats(head, n_threads) floats. Allocates nothing. Each row's sums run in one thread
 * in a fixed order: the result does not depend on n_threads beyond the head's GEMMs. */
void ce_forward_backward(const linear *head, const float *h, const int32_t *targets, int64_t T,
                         float grad_scale, float *dh, double *loss_sum, int64_t *count,
                         float *scratch, int n_threads);

#endif /* LK_LOSS_H */
