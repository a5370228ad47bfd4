/* kd.c — distillation losses (kd.h) through the student's LM head, in blocks of ce_rows(V) rows and
 * CE_VCHUNK vocabulary columns like loss.c. Per block:
 *   pass 1: for each chunk, the student's logits z (and the teacher's y) by GEMM, kept for pass 2,
 *           folded into running log-sum-exps (max and rescaled sum per row, sums in double);
 *           forward and reverse KL come out of the same sums (D = E_p[w − u] − (L_T − L_S) with
 *           u = z/τ, w = y/τ, L = log-sum-exp), so they cost no extra exponential;
 *   finish: per row the divergence D (JSD needs one more sweep over the row: its mixture needs
 *           normalised p and q; with a top-k teacher, the k + 1 buckets);
 *   pass 2: per chunk, dlogits in closed form (below), then dh += dlogits·W_chunk by GEMM.
 * Rows are spread over the library's threads (core/pool.h); each row's sums run in one thread in a
 * fixed order, so the result does not depend on the thread count. The element-wise loops are
 * written to vectorise (fastmath.h's exp/log, selects only between computed values, sums in double
 * over 8 fixed lanes): with Qwen2.5's V = 151936 they would otherwise cost as much as the GEMMs.
 *
 * Gradients (q = softmax(u), p = teacher, both at τ; ∂/∂z = ∂/∂u / τ, and the loss has τ²·D):
 *   forward KL  ∂D/∂u_i = q_i − p_i
 *   reverse KL  ∂D/∂u_i = q_i·(log q_i − log p_i − D)
 *   JSD         ∂D/∂u_i = (1 − β)·q_i·(log q_i − log m_i − KL(q ‖ m))      (0 < β < 1)
 * the last from D = β·Σ p log p + (1 − β)·Σ q log q − Σ m log m, ∂D/∂q_i = (1 − β)·log(q_i/m_i),
 * through the softmax's ∂q_i/∂u_j = q_i·(δ_ij − q_j). With buckets (top-k teacher) of masses P_b,
 * Q_b and g_b = ∂D/∂Q_b: ∂D/∂u_i = q_i·(g_b − Σ_b Q_b·g_b), written as r_i·c_b where
 * r_i = q_i/Q_b (the id's share of its bucket, from the bucket's own log-sum-exp, so that a tail
 * whose Q underflows still has finite shares) and c_b = Q_b·(g_b − Σ Q·g):
 *   forward KL  c_b = Q_b·Σ_b P_b − P_b
 *   reverse KL  c_b = Q_b·(log Q_b − log P_b − D)
 *   JSD         c_b = (1 − β)·Q_b·(log Q_b − log m_b − KL(Q ‖ m))
 * In log space throughout: log q − log m = −log(β·e^d + 1 − β) with d = log p − log q, formed
 * from e^−|d| so that it is finite when p = 0 and free of cancellation when |d| is large (the
 * buckets, in double, use log1p/expm1). */
#include "nn/kd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/fastmath.h"
#include "core/pool.h"
#include "nn/loss.h"
#include "core/status.h"

/* log of the smallest positive fp32, the floor of the teacher's log-probabilities in reverse KL:
 * a top-k cache may say "no mass" (−inf) where the student has some, which would make the
 * reverse KL infinite. */
#define KD_LOGP_MIN (-103.28)

int64_t ce_rows(int64_t V)
{
    int64_t r = V > 0 ? CE_FLOATS / V / CE_ROWS * CE_ROWS : CE_ROWS_MAX;
    return r < CE_ROWS ? CE_ROWS : r > CE_ROWS_MAX ? CE_ROWS_MAX : r;
}

/* Work of the linear calls of the student's head (forward and backward) and of the teacher's
 * head (forward) on a block: ce_rows(V) rows and vocabulary chunks of the student's V (the first
 * is the largest). nt as kd_forward_backward uses it. */
static size_t heads_work(const linear *head, const linear *teacher_head, int nt)
{
    const int64_t n = head->out < CE_VCHUNK ? head->out : CE_VCHUNK, R = ce_rows(head->out);
    linear s = linear_rows(head, 0, n);
    size_t w = linear_work_bytes(&s, R, nt, 1);
    if (teacher_head) {
        linear t = linear_rows(teacher_head, 0, n);
        size_t wt = linear_work_bytes(&t, R, nt, 0);
        w = wt > w ? wt : w;
    }
    return w;
}

int64_t kd_scratch_floats(const linear *head, const linear *teacher_head, int n_threads)
{
    /* student logits; teacher logits or (top-k) a byte mask of the k ids; hb, dhb [R, C];
     * the teacher's hidden rows [R, C_T]; the heads' work */
    const int64_t V = head->out, C = head->in, C_T = teacher_head ? teacher_head->in : 0;
    const int64_t R = ce_rows(V);
    int64_t second = C_T > 0 ? R * V : (R * V + 3) / 4;
    size_t work = heads_work(head, teacher_head, n_threads < 1 ? 1 : n_threads);
    return R * V + second + R * (2 * C + C_T) + (int64_t)((work + 3) / 4);
}

typedef struct {
    kd_kind kind;   /* after β = 0 / 1 turned JSD into forward / reverse KL (as TRL does) */
    int kd, ce;     /* compute D / the cross-entropy */
    int same;       /* CE's softmax is the student's at τ (τ = 1, or no D at all) */
    float it, beta; /* 1/τ (1 without D); β */
    float ck, cc; /* gradient weights: grad_scale·α·τ (on ∂D/∂u) and grad_scale·(1 − α) */
    double wk, wc; /* loss weights α·τ², 1 − α */
    int64_t V, k;  /* k: top-k teacher (0: full vocabulary) */
    const kd_teacher *tch;
    int nt;
} kd_ctx;

typedef struct {
    int64_t pos;          /* position in the sequence */
    int32_t tg;           /* target id */
    float zt;             /* target logit */
    float ms, mt, m1;     /* running maxima of u (top-k: tail ids only), w, z */
    double ss, st, s1, a; /* Σe^(u−ms), Σe^(w−mt), Σe^(z−m1), forward/reverse KL's Σ */
    double ls, lt, l1, ltail;     /* log-sum-exps: student at τ, teacher, student at 1, tail */
    double qtail, ctail, gbar, d; /* tail bucket mass and c_b; Σ_b Q_b·g_b; D */
} kd_row;

static int64_t chunk_n(int64_t V, int64_t v0)
{
    return V - v0 < CE_VCHUNK ? V - v0 : CE_VCHUNK;
}

/* Element (r, i) of a [R, V] block kept as chunks of [R, CE_VCHUNK]. */
static float *block_at(float *b, int64_t R, int64_t V, int64_t r, int64_t i)
{
    int64_t v0 = i / CE_VCHUNK * CE_VCHUNK;
    return b + R * v0 + r * chunk_n(V, v0) + (i - v0);
}

/* logits[R, n] = x[R, in]·W[v0 .. v0+n, in]ᵀ; work: work_bytes bytes for the call */
static void logits_chunk(const linear *head, const float *x, int64_t R, int64_t v0, int64_t n,
                         float *logits, void *work, size_t work_bytes, int nt)
{
    linear rows = linear_rows(head, v0, n);
    linear_forward(&rows, x, R, logits, work, work_bytes, nt);
}

/* log(e^a + e^b), −inf when both are. */
static double log_add(double a, double b)
{
    double m = a > b ? a : b;
    return m == -INFINITY ? m : m + log1p(exp(-fabs(a - b)));
}

/* For m = β·p + (1 − β)·q and d = log p − log q (may be −inf): log q − log m = −log(β·e^d + 1 − β)
 * and log p − log m = d + that, each formed without cancellation. Returns log q − log m. */
static double jsd_logs(double d, double beta, double *lpm)
{
    double l = d <= 0 ? log1p(beta * expm1(d)) : log1p((1 - beta) * expm1(-d));
    *lpm = d <= 0 ? d - l : -l;
    return d <= 0 ? -l : -d - l;
}

/* The same in fp32 for the element loops: l = log(c0 + c1·e^−|d|) with (c0, c1) = (1 − β, β)
 * for d <= 0 and (β, 1 − β) for d > 0; selects only between values already computed, so that
 * the loops vectorise. */
static inline float jsd_logsf(float d, float beta, float *lpm)
{
    int pos = d > 0;
    float c0 = pos ? beta : 1 - beta, c1 = pos ? 1 - beta : beta;
    float l = fm_log(c0 + c1 * fm_exp(-fabsf(d)));
    float dn = pos ? 0.0f : d, dp = pos ? d : 0.0f;
    *lpm = dn - l;
    return -dp - l;
}

/* Σ x[n] in double, as 8 interleaved partial sums: a fixed order, and vectorisable. */
static double sum_f64(const float *x, int64_t n)
{
    double acc[8] = {0}, s = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l];
    for (; i < n; i++)
        s += x[i];
    return s + (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
}

/* max of x[n] over the ids the mask (may be NULL) does not mark; −inf if none. Eight lanes as
 * in sum_f64, so that the loop vectorises. */
static float max_f32(const float *x, const uint8_t *mask, int64_t n)
{
    float acc[8], m = -INFINITY;
    for (int l = 0; l < 8; l++)
        acc[l] = -INFINITY;
    int64_t i = 0;
    if (!mask)
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++)
                acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    for (; i < n; i++)
        m = (!mask || !mask[i]) && x[i] > m ? x[i] : m;
    for (int l = 0; l < 8; l++)
        m = acc[l] > m ? acc[l] : m;
    return m;
}

/* 0 on the marked ids, all ones elsewhere: for masking results by their bits */
static inline uint32_t keep_bits(const uint8_t *mask, int64_t i)
{
    return mask && mask[i] ? 0u : 0xffffffffu;
}

static inline float and_bits(float v, uint32_t keep)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    b &= keep;
    memcpy(&v, &b, 4);
    return v;
}

/* ---- pass 1: running log-sum-exps ---------------------------------------------------------- */

/* A chunk raised the running maximum *mx to m: rescale the sums kept relative to it. */
static void raise_max(float m, float *mx, double *s, double *a)
{
    if (!(m > *mx))
        return;
    double f = exp((double)*mx - m); /* 0 the first time (*mx = −inf) */
    *s *= f;
    if (a)
        *a *= f;
    *mx = m;
}

/* Fold one chunk of a row into its statistics: z[n] the student's logits, y[n] the teacher's
 * (NULL: none or top-k), mask[n] (top-k: 1 on the k ids, which stay out of the sums over u). */
static void row_stats(const kd_ctx *x, kd_row *s, const float *z, const float *y,
                      const uint8_t *mask, int64_t n)
{
    const float it = x->it;
    const int fkl = y && x->kind == KD_FKL, rkl = y && x->kind == KD_RKL;
    float e[CE_VCHUNK], f[CE_VCHUNK]; /* e^(u − ms), then e^(w − mt) or e^(z − m1) */
    raise_max(max_f32(z, mask, n) * it, &s->ms, &s->ss, rkl ? &s->a : NULL);
    if (y)
        raise_max(max_f32(y, NULL, n) * it, &s->mt, &s->st, fkl ? &s->a : NULL);
    if (x->ce && !x->same) {
        const float m1 = max_f32(z, NULL, n);
        raise_max(m1, &s->m1, &s->s1, NULL);
        for (int64_t i = 0; i < n; i++)
            f[i] = fm_exp(z[i] - s->m1);
        s->s1 += sum_f64(f, n);
    }
    const float ms = s->ms, mt = s->mt;
    if (ms > -INFINITY) { /* else every id so far is a top-k id */
        for (int64_t i = 0; i < n; i++)
            e[i] = and_bits(fm_exp(z[i] * it - ms), keep_bits(mask, i));
        s->ss += sum_f64(e, n);
    }
    if (!y)
        return;
    for (int64_t i = 0; i < n; i++)
        f[i] = fm_exp(y[i] * it - mt);
    s->st += sum_f64(f, n);
    if (fkl) { /* Σ e^(w − mt)·(w − u) */
        for (int64_t i = 0; i < n; i++)
            f[i] *= (y[i] - z[i]) * it;
        s->a += sum_f64(f, n);
    } else if (rkl) { /* Σ e^(u − ms)·(u − w) */
        for (int64_t i = 0; i < n; i++)
            e[i] *= (z[i] - y[i]) * it;
        s->a += sum_f64(e, n);
    }
}

/* ---- finish: D per row --------------------------------------------------------------------- */

/* One bucket's term of D (log-probabilities lp of the teacher, lq > −inf of the student); adds
 * its part of the gradient's mean term to *gs (forward KL: P; JSD: Q·log(Q/m)). */
static double bucket_term(const kd_ctx *x, double lp, double lq, double *gs)
{
    double p = exp(lp), q = exp(lq), b = x->beta;
    if (x->kind == KD_FKL) {
        *gs += p;
        return p > 0 ? p * (lp - lq) : 0;
    }
    if (x->kind == KD_RKL)
        return q > 0 ? q * (lq - fmax(lp, KD_LOGP_MIN)) : 0;
    double lpm, lqm = jsd_logs(lp - lq, b, &lpm);
    *gs += q * lqm;
    return b * (p > 0 ? p * lpm : 0) + (1 - b) * q * lqm;
}

/* The bucket's c_b (gbar: Σ P for forward KL, D for reverse KL, KL(Q ‖ m) for JSD). */
static double bucket_coef(const kd_ctx *x, double lp, double lq, double gbar)
{
    double q = exp(lq);
    if (x->kind == KD_FKL)
        return q * gbar - exp(lp);
    if (x->kind == KD_RKL)
        return q * (lq - fmax(lp, KD_LOGP_MIN) - gbar);
    double lpm;
    return (1 - x->beta) * q * (jsd_logs(lp - lq, x->beta, &lpm) - gbar);
}

/* Top-k teacher: the student's log-sum-exp from the tail's and the k ids', then D over the
 * k + 1 buckets. An empty tail (k = V) is no bucket. */
static void finish_topk(const kd_ctx *x, kd_row *s, float *S, int64_t R, int64_t r)
{
    const int64_t k = x->k;
    const int32_t *id = x->tch->ids + s->pos * k;
    const float *lp = x->tch->logp + s->pos * k;
    double mx = -INFINITY, sum = 0, gs = 0, d = 0;
    for (int64_t j = 0; j < k; j++) {
        double u = *block_at(S, R, x->V, r, id[j]) * x->it;
        mx = u > mx ? u : mx;
    }
    for (int64_t j = 0; j < k; j++)
        sum += exp(*block_at(S, R, x->V, r, id[j]) * x->it - mx);
    s->ltail = s->ss > 0 ? s->ms + log(s->ss) : -INFINITY;
    s->ls = log_add(k > 0 ? mx + log(sum) : -INFINITY, s->ltail);
    for (int64_t j = 0; j < k; j++)
        d += bucket_term(x, lp[j], *block_at(S, R, x->V, r, id[j]) * x->it - s->ls, &gs);
    const double lpt = x->tch->log_tail[s->pos], lqt = s->ltail - s->ls;
    if (s->ltail > -INFINITY)
        d += bucket_term(x, lpt, lqt, &gs);
    s->d = d;
    s->gbar = x->kind == KD_RKL ? d : gs;
    s->qtail = exp(lqt);
    s->ctail = s->ltail > -INFINITY ? bucket_coef(x, lpt, lqt, s->gbar) : 0;
}

/* Full teacher, JSD: D and KL(q ‖ m) by one more sweep over the row's kept logits. */
static void finish_jsd(const kd_ctx *x, kd_row *s, const float *S, const float *Tl, int64_t R,
                       int64_t r)
{
    const float it = x->it, b = x->beta, ls = (float)s->ls, lt = (float)s->lt;
    const float dl = (float)(s->ls - s->lt); /* d = log p − log q = (y − z)/τ + dl */
    float e[CE_VCHUNK], f[CE_VCHUNK];
    double d = 0, kq = 0;
    for (int64_t v0 = 0; v0 < x->V; v0 += CE_VCHUNK) {
        int64_t n = chunk_n(x->V, v0);
        const float *z = S + R * v0 + r * n, *y = Tl + R * v0 + r * n;
        for (int64_t i = 0; i < n; i++) {
            float p = fm_exp(y[i] * it - lt), q = fm_exp(z[i] * it - ls);
            float lpm, lqm = jsd_logsf((y[i] - z[i]) * it + dl, b, &lpm);
            e[i] = b * p * lpm + (1 - b) * q * lqm;
            f[i] = q * lqm;
        }
        d += sum_f64(e, n);
        kq += sum_f64(f, n);
    }
    s->d = d;
    s->gbar = kq;
}

static void row_finish(const kd_ctx *x, kd_row *s, float *S, const float *Tl, int64_t R, int64_t r)
{
    if (x->k > 0 && x->kd) {
        finish_topk(x, s, S, R, r);
    } else {
        s->ls = s->ms + log(s->ss);
        s->lt = s->mt + log(s->st);
        s->d = 0;
        if (x->kd && x->kind == KD_FKL) /* E_p[w − u] − (L_T − L_S) */
            s->d = s->a / s->st - (s->lt - s->ls);
        else if (x->kd && x->kind == KD_RKL) /* E_q[u − w] − (L_S − L_T) */
            s->gbar = s->d = s->a / s->ss - (s->ls - s->lt);
        else if (x->kd)
            finish_jsd(x, s, S, Tl, R, r);
    }
    /* without CE, l1 only has to be finite (its terms are weighted by 0) */
    s->l1 = x->same || !x->ce ? s->ls : s->m1 + log(s->s1);
}

/* ---- pass 2: dlogits ----------------------------------------------------------------------- */

/* One chunk of a row's dlogits = grad_scale·∂loss/∂z over z[n] (overwritten), full teacher (or
 * none): ck·∂D/∂u + cc·(softmax(z) − onehot), the one-hot part added by the caller. `same` is
 * passed as a constant so that each case becomes its own vectorised loop. */
static inline void grad_full(const kd_ctx *x, const kd_row *s, float *z, const float *y, int64_t n,
                             int same)
{
    const float it = x->it, ck = x->ck, cc = x->cc, b = x->beta, ls = (float)s->ls;
    const float lt = (float)s->lt, l1 = (float)s->l1, gbar = (float)s->gbar;
    const float dl = (float)(s->ls - s->lt); /* log p − log q = (y − z)/τ + dl */
    if (!x->kd || ck == 0) {                 /* cross-entropy only */
        for (int64_t i = 0; i < n; i++)
            z[i] = cc * (same ? fm_exp(z[i] * it - ls) : fm_exp(z[i] - l1));
    } else if (x->kind == KD_FKL) { /* q − p */
        for (int64_t i = 0; i < n; i++) {
            float q = fm_exp(z[i] * it - ls), p = fm_exp(y[i] * it - lt);
            z[i] = ck * (q - p) + cc * (same ? q : fm_exp(z[i] - l1));
        }
    } else if (x->kind == KD_RKL) { /* q·(log q − log p − D) */
        for (int64_t i = 0; i < n; i++) {
            float q = fm_exp(z[i] * it - ls);
            float g = q * ((z[i] - y[i]) * it - dl - gbar);
            z[i] = ck * g + cc * (same ? q : fm_exp(z[i] - l1));
        }
    } else { /* (1 − β)·q·(log q − log m − KL(q ‖ m)) */
        for (int64_t i = 0; i < n; i++) {
            float q = fm_exp(z[i] * it - ls), lpm;
            float g = (1 - b) * q * (jsd_logsf((y[i] - z[i]) * it + dl, b, &lpm) - gbar);
            z[i] = ck * g + cc * (same ? q : fm_exp(z[i] - l1));
        }
    }
}

/* The same for a top-k teacher's tail ids: r_i·c_tail (r_i = e^(u_i − L_tail)) and
 * q_i = r_i·Q_tail; the k ids are left as they are (their bits kept by the mask). */
static inline void grad_tail(const kd_ctx *x, const kd_row *s, float *z, const uint8_t *mask,
                             int64_t n, int same)
{
    const float it = x->it, ck = x->ck, cc = x->cc, l1 = (float)s->l1;
    const float lt = (float)s->ltail, ct = (float)s->ctail, qt = (float)s->qtail;
    for (int64_t i = 0; i < n; i++) {
        float ri = fm_exp(z[i] * it - lt);
        float g = ck * ct * ri + cc * (same ? ri * qt : fm_exp(z[i] - l1));
        uint32_t keep = keep_bits(mask, i);
        z[i] = and_bits(g, keep) + and_bits(z[i], ~keep);
    }
}

/* Overwrite one chunk of a row's logits z[n] (ids v0 ..) with dlogits = ∂loss/∂z·grad_scale. */
static void row_grad(const kd_ctx *x, const kd_row *s, float *z, const float *y,
                     const uint8_t *mask, int64_t v0, int64_t n)
{
    if (mask && x->same)
        grad_tail(x, s, z, mask, n, 1);
    else if (mask)
        grad_tail(x, s, z, mask, n, 0);
    else if (x->same)
        grad_full(x, s, z, y, n, 1);
    else
        grad_full(x, s, z, y, n, 0);
    for (int64_t j = 0; mask && j < x->k; j++) { /* the k ids: Q_j·(g_j − Σ Q·g) */
        int64_t i = x->tch->ids[s->pos * x->k + j] - v0;
        if (i < 0 || i >= n)
            continue;
        double lq = z[i] * x->it - s->ls;
        double g = x->ck * bucket_coef(x, x->tch->logp[s->pos * x->k + j], lq, s->gbar);
        z[i] = (float)(g + x->cc * (x->same ? exp(lq) : exp(z[i] - s->l1)));
    }
    if (x->cc != 0 && s->tg >= v0 && s->tg < v0 + n)
        z[s->tg - v0] -= x->cc;
}

/* ---- blocks -------------------------------------------------------------------------------- */

typedef struct {
    float *S, *Tl;  /* [R, V] student and teacher logits as chunks */
    uint8_t *mask;  /* [ce_rows(V), V] top-k: 1 on each row's k ids */
    float *hb, *ht; /* [R, C], [R, C_T] gathered hidden rows */
    float *dhb;     /* [R, C] their gradient */
    void *work;     /* work_bytes of work for the heads' linear calls */
    size_t work_bytes;
} kd_bufs;

/* Pass 1 of row r over the chunk [v0, v0 + n) of the vocabulary (S, Tl: the chunk's logits). */
static void chunk_stats(const kd_ctx *x, const kd_bufs *b, kd_row *rs, int64_t R, int64_t r,
                        int64_t v0, int64_t n)
{
    const int64_t V = x->V;
    const float *S = b->S + R * v0 + r * n, *Tl = b->Tl ? b->Tl + R * v0 + r * n : NULL;
    row_stats(x, rs, S, Tl, b->mask ? b->mask + r * V + v0 : NULL, n);
    if (rs->tg >= v0 && rs->tg < v0 + n)
        rs->zt = S[rs->tg - v0];
}

/* One parallel loop over rows: chunk_stats, row_finish or chunk_grad of rows [r0, r1). */
typedef struct {
    const kd_ctx *x;
    const kd_bufs *b;
    kd_row *rs;
    int64_t R, v0, n;
    int what; /* 0: chunk_stats, 1: row_finish, 2: chunk_grad */
} rows_job;

static void chunk_grad(const kd_ctx *x, const kd_bufs *b, const kd_row *rs, int64_t R, int64_t r,
                       int64_t v0, int64_t n);

static void rows_run(void *ctx, int64_t r0, int64_t r1, int thread)
{
    const rows_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        if (j->what == 0)
            chunk_stats(j->x, j->b, &j->rs[r], j->R, r, j->v0, j->n);
        else if (j->what == 1)
            row_finish(j->x, &j->rs[r], j->b->S, j->b->Tl, j->R, r);
        else
            chunk_grad(j->x, j->b, &j->rs[r], j->R, r, j->v0, j->n);
    }
}

static void rows_par(const kd_ctx *x, const kd_bufs *b, kd_row *rs, int64_t R, int64_t v0,
                     int64_t n, int what)
{
    rows_job j = {x, b, rs, R, v0, n, what};
    par_for(x->nt, R, rows_run, &j);
}

/* Pass 1 over every chunk, then D per row. */
static void block_forward(const kd_ctx *x, const linear *head, const kd_bufs *b, kd_row *rs,
                          int64_t R)
{
    const int64_t V = x->V;
    for (int64_t v0 = 0; v0 < V; v0 += CE_VCHUNK) {
        int64_t n = chunk_n(V, v0);
        float *S = b->S + R * v0, *Tl = b->Tl ? b->Tl + R * v0 : NULL;
        logits_chunk(head, b->hb, R, v0, n, S, b->work, b->work_bytes, x->nt);
        if (Tl)
            logits_chunk(x->tch->head, b->ht, R, v0, n, Tl, b->work, b->work_bytes, x->nt);
        rows_par(x, b, rs, R, v0, n, 0);
    }
    rows_par(x, b, rs, R, 0, 0, 1);
}

/* Pass 2 of row r over the chunk [v0, v0 + n): its logits become their gradient. */
static void chunk_grad(const kd_ctx *x, const kd_bufs *b, const kd_row *rs, int64_t R, int64_t r,
                       int64_t v0, int64_t n)
{
    float *S = b->S + R * v0 + r * n, *Tl = b->Tl ? b->Tl + R * v0 + r * n : NULL;
    row_grad(x, rs, S, Tl, b->mask ? b->mask + r * x->V + v0 : NULL, v0, n);
}

/* Pass 2: dhb[R, C] = Σ_chunks dlogits·W_chunk. */
static void block_backward(const kd_ctx *x, const linear *head, const kd_bufs *b, const kd_row *rs,
                           int64_t R)
{
    const int64_t V = x->V, C = head->in;
    memset(b->dhb, 0, (size_t)(R * C) * sizeof *b->dhb);
    for (int64_t v0 = 0; v0 < V; v0 += CE_VCHUNK) {
        int64_t n = chunk_n(V, v0);
        float *S = b->S + R * v0;
        rows_par(x, b, (kd_row *)rs, R, v0, n, 2);
        linear rows = linear_rows(head, v0, n);
        linear_backward(&rows, NULL, S, R, b->dhb, b->work, b->work_bytes, 0, x->nt);
    }
}

/* Mark (on = 1) or clear (on = 0) row r's k ids in the mask. */
static void mark_ids(const kd_ctx *x, uint8_t *mask, int64_t r, int64_t pos, int on)
{
    const int32_t *id = x->tch->ids + pos * x->k;
    for (int64_t j = 0; j < x->k; j++) {
        LK_ASSERT(id[j] >= 0 && id[j] < x->V);
        LK_ASSERT(mask[r * x->V + id[j]] == !on); /* distinct ids */
        mask[r * x->V + id[j]] = (uint8_t)on;
    }
}

static kd_ctx make_ctx(const linear *head, const kd_params *kp, const kd_teacher *tch,
                       float grad_scale, int want_ce, int want_kd, int nt)
{
    kd_ctx x = {.kind = kp->kind, .beta = kp->beta, .V = head->out, .tch = tch};
    LK_ASSERT(kp->temp > 0 && kp->weight >= 0 && kp->weight <= 1);
    LK_ASSERT(kp->beta >= 0 && kp->beta <= 1);
    LK_ASSERT(kp->kind == KD_FKL || kp->kind == KD_RKL || kp->kind == KD_JSD);
    if (x.kind == KD_JSD && kp->beta == 0)
        x.kind = KD_FKL;
    else if (x.kind == KD_JSD && kp->beta == 1)
        x.kind = KD_RKL;
    x.kd = kp->weight > 0 || want_kd;
    x.ce = kp->weight < 1 || want_ce;
    x.it = x.kd ? 1.0f / kp->temp : 1.0f;
    x.same = !x.kd || kp->temp == 1.0f;
    x.ck = grad_scale * kp->weight * kp->temp;
    x.cc = grad_scale * (1 - kp->weight);
    x.wk = (double)kp->weight * kp->temp * kp->temp;
    x.wc = 1.0 - kp->weight;
    x.nt = nt < 1 ? 1 : nt;
    LK_ASSERT(!x.kd || tch);
    if (x.kd && !tch->head) {
        x.k = tch->k;
        LK_ASSERT(x.k > 0 && tch->ids && tch->logp && tch->log_tail);
    }
    LK_ASSERT(!x.kd || !tch->head || (tch->head->out >= x.V && tch->ht));
    return x;
}

/* Gather up to ce_rows(V) positions with a target from t on into the block: their rows of h (and
 * of the teacher's hidden states), marks of their top-k ids. Returns the rows; *t moves on. */
static int64_t gather_block(const kd_ctx *x, const float *h, const int32_t *targets, int64_t T,
                            int64_t C, int64_t CT, int64_t *t, const kd_bufs *b, kd_row *rs)
{
    int64_t R = 0, rows = ce_rows(x->V);
    for (; *t < T && R < rows; ++*t) {
        if (targets[*t] < 0)
            continue;
        rs[R] = (kd_row){
            .pos = *t, .tg = targets[*t], .ms = -INFINITY, .mt = -INFINITY, .m1 = -INFINITY};
        memcpy(b->hb + R * C, h + *t * C, (size_t)C * sizeof *b->hb);
        if (b->Tl)
            memcpy(b->ht + R * CT, x->tch->ht + *t * CT, (size_t)CT * sizeof *b->ht);
        if (b->mask)
            mark_ids(x, b->mask, R, *t, 1);
        R++;
    }
    return R;
}

void kd_forward_backward(const linear *head, const float *h, const int32_t *targets, int64_t T,
                         const kd_params *kp, const kd_teacher *tch, float grad_scale, float *dh,
                         double *loss_sum, double *ce_sum, double *kd_sum, int64_t *count,
                         float *scratch, int n_threads)
{
    const kd_ctx x = make_ctx(head, kp, tch, grad_scale, ce_sum != NULL, kd_sum != NULL, n_threads);
    const int64_t C = head->in, V = x.V, CT = x.kd && tch->head ? tch->head->in : 0;
    /* scratch: S [Rb, V]; teacher logits [Rb, V] or the mask; hb, dhb, ht; work */
    const linear *th = CT > 0 ? tch->head : NULL;
    const int64_t Rb = ce_rows(head->out);
    float *second = scratch + Rb * V;
    float *rest = second + (CT > 0 ? Rb * V : (Rb * V + 3) / 4);
    const kd_bufs b = {.S = scratch,
                       .Tl = CT > 0 ? second : NULL,
                       .mask = x.k > 0 ? (uint8_t *)second : NULL,
                       .hb = rest,
                       .dhb = rest + Rb * C,
                       .ht = rest + 2 * Rb * C,
                       .work = rest + Rb * (2 * C + CT),
                       .work_bytes = heads_work(head, th, x.nt)};
    if (b.mask)
        memset(b.mask, 0, (size_t)(Rb * V));
    if (dh)
        memset(dh, 0, (size_t)(T * C) * sizeof *dh);
    kd_row rs[CE_ROWS_MAX];
    for (int64_t t = 0, R; (R = gather_block(&x, h, targets, T, C, CT, &t, &b, rs)) > 0;) {
        *count += R;
        block_forward(&x, head, &b, rs, R);
        for (int64_t r = 0; r < R; r++) {
            double ce = x.ce ? rs[r].l1 - rs[r].zt : 0, d = x.kd ? rs[r].d : 0;
            *loss_sum += x.wc * ce + x.wk * d;
            if (ce_sum)
                *ce_sum += ce;
            if (kd_sum)
                *kd_sum += (double)kp->temp * kp->temp * d;
        }
        if (dh)
            block_backward(&x, head, &b, rs, R);
        for (int64_t r = 0; r < R; r++) {
            if (dh)
                memcpy(dh + rs[r].pos * C, b.dhb + r * C, (size_t)C * sizeof *dh);
            if (b.mask)
                mark_ids(&x, b.mask, r, rs[r].pos, 0);
        }
    }
}
