/* loss.c — chunked cross-entropy (SFT objective) with its gradient. For a block of rows:
 * pass 1 computes vocabulary chunks of logits = h·W_chunkᵀ keeping a running max and sum
 * (online log-sum-exp) and the target's logit; pass 2 revisits each kept chunk, forms
 * dlogits = (softmax − onehot)·grad_scale and accumulates dh += dlogits·W_chunk. */
#include "nn/loss.h"

#include <math.h>
#include <string.h>

/* Work of the head's linear calls on a block: its vocabulary chunks (the first is the largest),
 * CE_ROWS rows, forward and backward. */
static size_t head_work(const linear *head, int n_threads)
{
    linear rows = linear_rows(head, 0, head->out < CE_VCHUNK ? head->out : CE_VCHUNK);
    return linear_work_bytes(&rows, CE_ROWS, n_threads, 1);
}

int64_t ce_scratch_floats(const linear *head, int n_threads)
{
    int64_t work = (int64_t)((head_work(head, n_threads) + 3) / 4);
    return CE_ROWS * head->out + 2 * CE_ROWS * head->in + work;
}

/* The head's work for its linear calls: (p, bytes). */
typedef struct {
    void *p;
    size_t bytes;
} ce_work;

/* logits[R, n] = hb[R,C]·W[v0 .. v0+n, C]ᵀ */
static void logits_chunk(const linear *head, const float *hb, int64_t R, int64_t v0, int64_t n,
                         float *logits, ce_work w, int nt)
{
    linear rows = linear_rows(head, v0, n);
    linear_forward(&rows, hb, R, logits, w.p, w.bytes, nt);
}

/* dhb[R,C] += dlogits[R,n]·W[v0.., C] */
static void dh_chunk(const linear *head, const float *dl, int64_t R, int64_t v0, int64_t n,
                     float *dhb, ce_work w, int nt)
{
    linear rows = linear_rows(head, v0, n);
    linear_backward(&rows, NULL, dl, R, dhb, w.p, w.bytes, 0, nt);
}

/* One block of R rows (all with valid targets), gathered in hb[R, C]. */
static void ce_block(const linear *head, const float *hb, const int32_t *tg, int64_t R,
                     float grad_scale, float *dhb, double *loss_sum, float *logits, ce_work w,
                     int nt)
{
    int64_t V = head->out, C = head->in;
    double mx[CE_ROWS], sum[CE_ROWS], tl[CE_ROWS];
    for (int64_t r = 0; r < R; r++) {
        mx[r] = -INFINITY;
        sum[r] = 0;
        tl[r] = 0;
    }
    for (int64_t v0 = 0; v0 < V; v0 += CE_VCHUNK) {
        int64_t n = V - v0 < CE_VCHUNK ? V - v0 : CE_VCHUNK;
        float *lc = logits + R * v0; /* chunk k's [R, n] logits, kept for pass 2 */
        logits_chunk(head, hb, R, v0, n, lc, w, nt);
        for (int64_t r = 0; r < R; r++) {
            const float *l = lc + r * n;
            double m = mx[r];
            for (int64_t i = 0; i < n; i++)
                m = l[i] > m ? l[i] : m;
            double s = sum[r] * exp(mx[r] - m); /* rescale the running sum to the new max */
            for (int64_t i = 0; i < n; i++)
                s += exp((double)l[i] - m);
            mx[r] = m;
            sum[r] = s;
            if (tg[r] >= v0 && tg[r] < v0 + n)
                tl[r] = l[tg[r] - v0];
        }
    }
    for (int64_t r = 0; r < R; r++) {
        mx[r] += log(sum[r]); /* now the log-sum-exp */
        *loss_sum += mx[r] - tl[r];
    }
    if (!dhb)
        return;
    memset(dhb, 0, (size_t)(R * C) * sizeof *dhb);
    for (int64_t v0 = 0; v0 < V; v0 += CE_VCHUNK) {
        int64_t n = V - v0 < CE_VCHUNK ? V - v0 : CE_VCHUNK;
        float *lc = logits + R * v0;
        for (int64_t r = 0; r < R; r++) {
            float *l = lc + r * n;
            for (int64_t i = 0; i < n; i++)
                l[i] = (float)exp((double)l[i] - mx[r]) * grad_scale;
            if (tg[r] >= v0 && tg[r] < v0 + n)
                l[tg[r] - v0] -= grad_scale;
        }
        /* dhb[R,C] += dlogits[R,n]·W[v0.., C] */
        dh_chunk(head, lc, R, v0, n, dhb, w, nt);
    }
}

void ce_forward_backward(const linear *head, const float *h, const int32_t *targets, int64_t T,
                         float grad_scale, float *dh, double *loss_sum, int64_t *count,
                         float *scratch, int n_threads)
{
    int64_t C = head->in;
    float *logits = scratch;                   /* [CE_ROWS, V] as chunks of [R, CE_VCHUNK] */
    float *hb = scratch + CE_ROWS * head->out; /* [CE_ROWS, C] gathered rows of h */
    float *dhb = hb + CE_ROWS * C;             /* [CE_ROWS, C] their gradient */
    const ce_work w = {dhb + CE_ROWS * C, head_work(head, n_threads)}; /* the head's calls */
    int64_t rows[CE_ROWS];
    int32_t tg[CE_ROWS];
    if (dh)
        memset(dh, 0, (size_t)(T * C) * sizeof *dh);
    for (int64_t t = 0; t < T;) {
        int64_t R = 0; /* gather up to CE_ROWS positions that have a target */
        for (; t < T && R < CE_ROWS; t++)
            if (targets[t] >= 0) {
                rows[R] = t;
                tg[R] = targets[t];
                memcpy(hb + R * C, h + t * C, (size_t)C * sizeof *hb);
                R++;
            }
        if (R == 0)
            break;
        *count += R;
        ce_block(head, hb, tg, R, grad_scale, dh ? dhb : NULL, loss_sum, logits, w, n_threads);
        for (int64_t r = 0; dh && r < R; r++)
            memcpy(dh + rows[r] * C, dhb + r * C, (size_t)C * sizeof *dh);
    }
}
