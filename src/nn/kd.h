/* kd.h — distillation losses through the student's LM head, chunked over the vocabulary like
 * loss.c (never [T, V] at once). Per position with a target, in fp32/fp64 with log-sum-exp:
 *
 *   loss = (1 − α)·CE(target) + α·τ²·D(p_T ‖ p_S)
 *
 * p_S = softmax(z/τ) of the student's logits z, p_T the teacher's distribution at τ, and D:
 *   KD_FKL  forward KL(p_T ‖ p_S)                      (Hinton; the τ² keeps gradient scale)
 *   KD_RKL  reverse KL(p_S ‖ p_T)
 *   KD_JSD  generalised JSD as TRL's GKD defines it: m = β·p_T + (1 − β)·p_S,
 *           D = β·KL(p_T ‖ m) + (1 − β)·KL(p_S ‖ m); β = 0 is forward KL, β = 1 reverse KL.
 * CE is always at temperature 1.
 *
 * The teacher comes either as its full vocabulary (final hidden states and LM head, logits formed
 * chunk by chunk; a larger, padded teacher vocabulary is cut to the student's V) or as a top-k
 * cache: k ids with their log-probabilities at τ plus the log of the remaining mass. With top-k
 * the distributions are compared over k + 1 buckets: the k ids, and one "tail" bucket holding
 * everything else (the teacher's tail mass against the student's summed probability of every
 * other id, kept in log space so that it may underflow). With k = V the tail is empty and is no
 * bucket. A teacher log-probability of −inf (no mass) is exact for forward KL and JSD; reverse KL
 * would be infinite wherever the student has mass there, so it floors the teacher's
 * log-probabilities at log(2^−149), the smallest positive fp32.
 *
 * Per position the loss is exact to fp32 rounding of the logits (sums in double, log-sum-exp);
 * the element-wise work uses fastmath.h's vectorised exp/log. The result does not depend on the
 * thread count beyond what the head's GEMMs do (bit for bit with quantised heads). */
#ifndef LK_KD_H
#define LK_KD_H

#include <stdint.h>

#include "nn/linear.h"

typedef enum { KD_FKL = 1, KD_RKL = 2, KD_JSD = 3 } kd_kind;

typedef struct {
    kd_kind kind;
    float temp;   /* τ > 0 */
    float beta;   /* KD_JSD's β in [0, 1] */
    float weight; /* α in [0, 1] */
} kd_params;

/* The teacher over the positions of one sequence (the same positions as h and targets). */
typedef struct {
    /* full vocabulary: logits at position t = head[0 .. V) · ht[t]; head: [V_T >= V, C_T] */
    const linear *head;
    const float *ht; /* [T, C_T] the teacher's final normed hidden states */
    /* top-k (used when head is NULL): position t's ids[t·k + j] (distinct, in [0, V)) with
     * log-probabilities logp[t·k + j] at τ, and log_tail[t] = log(1 − Σ_j p_j) (−inf when the
     * k ids hold all the mass). Only positions with a target are read. */
    int64_t k;
    const int32_t *ids;
    const float *logp;
    const float *log_tail;
} kd_teacher;

/* Floats of scratch kd_forward_backward needs for the student's head [V, C], the teacher's head
 * [V_T, C_T] (NULL for a top-k teacher) and n_threads threads: two [32, V] blocks of logits (one
 * is a byte mask with a top-k teacher, a quarter of the size), a few [32, C] and [32, C_T] rows,
 * and the work of the heads' linear calls (linear_work_bytes). */
int64_t kd_scratch_floats(const linear *head, const linear *teacher_head, int n_threads);

/* Like ce_forward_backward (loss.h): h[T, C] the student's final hidden states, head [V, C], the
 * positions with targets[t] >= 0 take the loss above. Adds Σ loss to *loss_sum, Σ CE to *ce_sum
 * and Σ τ²·D to *kd_sum (either may be NULL), the number of positions to *count. When dh is
 * non-NULL, dh[T, C] (overwritten) = grad_scale · ∂(Σ loss)/∂h. The cost of a term is skipped
 * when its weight is 0 and its sum is not asked for: with α = 0 and kd_sum NULL the teacher is
 * not read (tch may be NULL). Preconditions (checked, abort on violation: the caller validates
 * user input): τ > 0, α and β in [0, 1], a full teacher head with >= V rows, top-k ids distinct
 * and in [0, V); scratch of kd_scratch_floats(head, tch->head, n_threads) floats (tch->head NULL
 * or not read: NULL). Allocates nothing. */
void kd_forward_backward(const linear *head, const float *h, const int32_t *targets, int64_t T,
                         const kd_params *kp, const kd_teacher *tch, float grad_scale, float *dh,
                         double *loss_sum, double *ce_sum, double *kd_sum, int64_t *count,
                         float *scratch, int n_threads);

#endif /* LK_KD_H */
