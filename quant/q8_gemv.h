/* q8_gemv.h — the driver the int8 matrix-vector kernels (q8_gemv_avx2.c, q8_gemv_avx512.c,
 * q8_gemv_neon.c) share: Y[T,out] = X[T,in]·Wᵀ (+ bias) for a few activation rows (decode: the
 * dispatched forward takes them for T <= gemv_t), bit for bit q8_gemm_fwd_ref. Unlike the GEMM
 * (q8_pack.h) nothing is packed: a variant's group function reads the weight straight from its
 * stored blocks (Q4_0, IQ4_NL, Q8_0, NF4, Q4_1), or expands Q8V_CH blocks of each row at a time
 * into a buffer on its stack (the other types, through the variant's expander), so every stored
 * weight byte is read once per pass of up to Q8V_MT activation rows. Output rows go in groups of
 * nr (8 or 16): per block, the int32 sums of the group's rows are reduced into the lanes of one
 * vector (lane r: row r), then the fp32 update of q8.h runs on the group at once, in increasing
 * block order from 0; groups are split across the threads in chunks taken by whichever thread is
 * free (par_for_dynamic; the result never depends on the thread count or the split). The work
 * memory holds only the quantised activations. */
#ifndef LK_Q8_GEMV_H
#define LK_Q8_GEMV_H

#include "q8.h"
#include "core/pool.h"
#include "core/status.h"

#define Q8V_MT       4         /* activation rows per pass over the weight */
#define Q8V_CH       8         /* blocks expanded per row at a time (a k-quant super-block) */
#define Q8V_MIN_MACS (1 << 19) /* multiply-adds a call needs per thread it wakes */
#define Q8V_CHUNKS   4         /* work chunks per thread (par_for_dynamic) */

typedef struct q8v_job q8v_job;
/* Y rows [t0, t0+mt) for weight rows [o0, o0+nrow) (nrow <= nr), mt = index + 1 in group[]. */
typedef void (*q8v_group_fn)(const q8v_job *j, int64_t o0, int nrow, int64_t t0);

struct q8v_job {
    /* set by the variant */
    const q4_weight *w;
    const float *bias, *X;
    float *Y;
    int64_t T;
    int nr;  /* output rows per group */
    int ilv; /* the group functions read a weight's interleaved groups (q8_ilv.h) */
    void (*quant)(const float *x, int64_t n, q8_ablock *dst);
    q8v_group_fn group[Q8V_MT];
    q8_expand_fn expand; /* the types read through an expander */
    /* set by q8v_run */
    int64_t nb;
    const q8_ablock *A; /* [T][nb] */
};

/* Work of a GEMV over T rows: their quantised activations (one line-rounded piece). */
static inline size_t q8v_work(const q4_weight *w, int64_t T, int n_threads)
{
    (void)n_threads;
    const size_t nb = (size_t)((w->in + Q8_QK - 1) / Q8_QK);
    return T > 0 ? q4_work_size(q4_line((size_t)T * nb * sizeof(q8_ablock))) : 0;
}

/* The rows of a group: rows[r] for r < nr, rows past nrow repeating the last one (not stored). */
static inline void q8v_rows(const q8v_job *j, int64_t o0, int nrow, const uint8_t **rows)
{
    const q4_weight *w = j->w;
    for (int r = 0; r < j->nr; r++)
        rows[r] =
            (const uint8_t *)w->data + (size_t)(o0 + (r < nrow ? r : nrow - 1)) * w->row_bytes;
}

/* Streaming weights (larger than the caches, as in decode): the rows of the group Q8V_PF_AHEAD
 * groups on (contiguous after this group's) are prefetched a slice per block into L2
 * (prefetcht1), so that the DRAM stream runs ahead of the 8 or 16 short row streams a group reads.
 * Into L2, not L1: prefetcht0 holds an L1 miss buffer per line until it arrives, and a group
 * already has 16 rows of demand misses there; measured on SmolLM2's shapes from DRAM (Zen 4, 1
 * thread, Q8_0) prefetcht0 one group ahead reached 15-20 GFLOP/s, prefetcht1 two ahead 30-45, no
 * prefetch 7-16. The slice is `step` bytes (whole lines, fixed per call: no division in the block
 * loop); next is NULL when that group is not a whole one. */
#define Q8V_PF_AHEAD 2

typedef struct {
    const uint8_t *next;
    size_t bytes, step;
} q8v_pf;

static inline q8v_pf q8v_next(const q8v_job *j, int64_t o0)
{
    const q4_weight *w = j->w;
    const size_t bytes = (size_t)j->nr * w->row_bytes, lines = (bytes + 63) / 64;
    q8v_pf pf = {NULL, bytes, (lines + (size_t)j->nb - 1) / (size_t)j->nb * 64};
    if (o0 + (Q8V_PF_AHEAD + 1) * j->nr <= w->out)
        pf.next = (const uint8_t *)w->data + (size_t)(o0 + Q8V_PF_AHEAD * j->nr) * w->row_bytes;
    return pf;
}

/* Prefetch block b's slice of the group Q8V_PF_AHEAD on, into L2. */
static inline void q8v_prefetch(const q8v_pf *pf, int64_t b)
{
    if (!pf->next)
        return;
    const size_t p0 = (size_t)b * pf->step, p1 = p0 + pf->step;
    for (size_t p = p0; p < p1 && p < pf->bytes; p += 64)
        __builtin_prefetch(pf->next + p, 0, 2);
}

/* The call's first Q8V_PF_AHEAD groups, which no group before them prefetches, into L2 before the
 * threads start (a 192x576 Q8_0 matrix from DRAM on the avx2 variant: 13-14 GFLOP/s without,
 * 27-49 with). */
static inline void q8v_warm(const q8v_job *j)
{
    const q4_weight *w = j->w;
    const int64_t rows = w->out < Q8V_PF_AHEAD * j->nr ? w->out : Q8V_PF_AHEAD * j->nr;
    const size_t bytes = (size_t)rows * w->row_bytes;
    for (size_t p = 0; p < bytes; p += 64)
        __builtin_prefetch((const uint8_t *)w->data + p, 0, 2);
}

static inline void q8v_groups(void *ctx, int64_t g0, int64_t g1, int thread)
{
    (void)thread;
    const q8v_job *j = ctx;
    for (int64_t g = g0; g < g1; g++) {
        const int64_t o0 = g * j->nr;
        const int nrow = (int)(j->w->out - o0 < j->nr ? j->w->out - o0 : j->nr);
        for (int64_t t0 = 0; t0 < j->T; t0 += Q8V_MT) {
            const int64_t mt = j->T - t0 < Q8V_MT ? j->T - t0 : Q8V_MT;
            j->group[mt - 1](j, o0, nrow, t0);
        }
    }
}

/* The threads a call runs on: n_threads (resolved), fewer for a small call (k/v at T = 1):
 * one thread per Q8V_MIN_MACS multiply-adds begun, since waking another (a par_for round trip:
 * 5-9 us here) costs more than its share below that. */
static inline int q8v_threads(const q8v_job *j, int n_threads)
{
    const double macs = (double)j->T * (double)j->w->out * (double)j->w->in;
    const int nt = resolve_threads(n_threads);
    return macs < (double)nt * Q8V_MIN_MACS ? (int)(macs / Q8V_MIN_MACS) + 1 : nt;
}

/* Y = X·Wᵀ (+ bias) for a job whose variant fields are set (work: q8v_work's size). */
static inline void q8v_run(q8v_job *j, int n_threads, void *work, size_t work_size)
{
    if (j->T <= 0)
        return;
    const q4_weight *w = j->w;
    LK_ASSERT(q8_supports(w->qtype) && (!w->ilv || j->ilv));
    q8_ablock *A = q4_work_start(work, work_size, q8v_work(w, j->T, n_threads));
    j->nb = (w->in + Q8_QK - 1) / Q8_QK;
    j->A = A;
    q8v_warm(j);
    for (int64_t t = 0; t < j->T; t++) /* a few rows: not worth waking a thread */
        j->quant(j->X + t * w->in, w->in, A + t * j->nb);
    const int nt = q8v_threads(j, n_threads);
    /* Chunks of about Q8V_CHUNKS per thread go to whichever thread is free, so that a helper that
     * wakes late leaves its share to the caller instead of the caller waiting for it (each group
     * writes only its own rows: the result is the same for any split). */
    const int64_t ng = (w->out + j->nr - 1) / j->nr;
    par_for_dynamic(nt, ng, ng / ((int64_t)nt * Q8V_CHUNKS) + 1, q8v_groups, j);
}

/* The four q8v_group_fn of a kernel from its always-inline fn(j, o0, nrow, t0, mt). */
#define Q8V_GROUP_FNS(fn)                                                  \
    static void fn##_1(const q8v_job *j, int64_t o0, int nrow, int64_t t0) \
    {                                                                      \
        fn(j, o0, nrow, t0, 1);                                            \
    }                                                                      \
    static void fn##_2(const q8v_job *j, int64_t o0, int nrow, int64_t t0) \
    {                                                                      \
        fn(j, o0, nrow, t0, 2);                                            \
    }                                                                      \
    static void fn##_3(const q8v_job *j, int64_t o0, int nrow, int64_t t0) \
    {                                                                      \
        fn(j, o0, nrow, t0, 3);                                            \
    }                                                                      \
    static void fn##_4(const q8v_job *j, int64_t o0, int nrow, int64_t t0) \
    {                                                                      \
        fn(j, o0, nrow, t0, 4);                                            \
    }

/* Every group function of a variant's file, from its always-inline group_core(j, qt, o0, nrow,
 * t0, mt) (the simple core types Q4_0, IQ4_NL, Q8_0, NF4), group_q4_1(j, o0, nrow, t0, mt) and
 * group_expanded(j, simple, o0, nrow, t0, mt) (the types read through an expander). */
#define Q8V_CORE(name, qt)                                                                         \
    static inline __attribute__((always_inline)) void name(const q8v_job *j, int64_t o0, int nrow, \
                                                           int64_t t0, int mt)                     \
    {                                                                                              \
        group_core(j, qt, o0, nrow, t0, mt);                                                       \
    }                                                                                              \
    Q8V_GROUP_FNS(name)
#define Q8V_EXPANDED(name, simple)                                                                 \
    static inline __attribute__((always_inline)) void name(const q8v_job *j, int64_t o0, int nrow, \
                                                           int64_t t0, int mt)                     \
    {                                                                                              \
        group_expanded(j, simple, o0, nrow, t0, mt);                                               \
    }                                                                                              \
    Q8V_GROUP_FNS(name)
#define Q8V_ALL_GROUPS                  \
    Q8V_CORE(g_q4_0, LK_QTYPE_Q4_0)     \
    Q8V_CORE(g_iq4_nl, LK_QTYPE_IQ4_NL) \
    Q8V_CORE(g_q8_0, LK_QTYPE_Q8_0)     \
    Q8V_CORE(g_nf4, LK_QTYPE_NF4)       \
    Q8V_GROUP_FNS(group_q4_1)           \
    Q8V_EXPANDED(g_exp_simple, 1)       \
    Q8V_EXPANDED(g_exp_general, 0)

/* Point j's group[] at a variant's group functions of qtype: g_q4_0, g_iq4_nl, g_q8_0, g_nf4 (the
 * core types) and group_q4_1 (Q4_1), read straight from their blocks, else g_exp_simple /
 * g_exp_general (q8_simple or not) through `expander`; each defined by Q8V_ALL_GROUPS in the
 * variant's file. */
#define Q8V_SET(j, fn)         \
    do {                       \
        (j).group[0] = fn##_1; \
        (j).group[1] = fn##_2; \
        (j).group[2] = fn##_3; \
        (j).group[3] = fn##_4; \
    } while (0)
#define Q8V_SET_GROUPS(j, qtype, expander)                 \
    do {                                                   \
        switch (qtype) {                                   \
        case LK_QTYPE_Q4_0: Q8V_SET(j, g_q4_0); break;     \
        case LK_QTYPE_IQ4_NL: Q8V_SET(j, g_iq4_nl); break; \
        case LK_QTYPE_Q8_0: Q8V_SET(j, g_q8_0); break;     \
        case LK_QTYPE_NF4: Q8V_SET(j, g_nf4); break;       \
        case LK_QTYPE_Q4_1: Q8V_SET(j, group_q4_1); break; \
        default:                                           \
            (j).expand = (expander);                       \
            if (q8_simple(qtype))                          \
                Q8V_SET(j, g_exp_simple);                  \
            else                                           \
                Q8V_SET(j, g_exp_general);                 \
        }                                                  \
    } while (0)

#endif /* LK_Q8_GEMV_H */
