/* q8_pack.h — the packed weight panel the SIMD int8 GEMMs (q8_avx2.c, q8_avx512.c) share, and
 * its generic packer (plain C over any type's expander, compiled with each variant's flags). A
 * panel holds nr output rows o0 .. o0+nr-1 of a weight over all its blocks (rows past the
 * weight's end have zero scales), block after block; one block of the panel is
 *   W  [8][nr][4] bytes  value 4g+j of row r at W[g][r][j] (lanes over rows: a vector load gives
 *                        4 consecutive values of nr rows, what vpdpbusd / vpmaddubsw take), as
 *                        the signed code q, or as the unsigned q + K (vpdpbusd's unsigned operand;
 *                        the kernel subtracts K·Σx, the activation block's sum, from each block
 * sum) S0 [nr] fp32         s[0] of each row (simple types: the only scale) and, for the types that
 * are not simple (q8_simple), then S1, M0, M1 [nr] fp32. A variant may give each row cb = 64 code
 * bytes per block instead of 32 (the job's cb: avx2 stores each code in two 4-bit parts, two
 * planes laid out as W). A microkernel multiplies a panel by rows of quantised activations
 * loading every weight byte once per group of activation rows. With a job's chunk_bytes, a
 * thread packs several panels (a chunk, q8p_npc) and runs each group of activation rows over all
 * of them, so the activations are read once per chunk rather than once per panel. A two-term job
 * (quant2: q8_gemm_fwd2) quantises each row of X into two activation rows (x1, r1), run as one
 * set of 2T rows, their microkernel results combined into Y by q8p_store; an accumulating job
 * (add: q8_gemm_fwd_add) adds its results to Y. */
#ifndef LK_Q8_PACK_H
#define LK_Q8_PACK_H

#include <string.h>

#include "q8.h"
#include "q8_ilv.h"
#include "core/pool.h"
#include "core/status.h"

#define Q8P_CHUNK 16 /* blocks expanded at a time on the stack (48 bytes each) */

/* 1 for the core types (Q4_0, IQ4_NL, Q8_0, NF4), which the x86 variants pack straight from
 * their blocks. */
static inline int q8p_core(int qtype)
{
    return qtype == LK_QTYPE_Q4_0 || qtype == LK_QTYPE_IQ4_NL || qtype == LK_QTYPE_Q8_0 ||
           qtype == LK_QTYPE_NF4;
}

/* Bytes of one block of a panel of nr rows with cb bytes of codes per row (32; a variant may
 * store each code in two parts, 64), and with 32. */
static inline size_t q8p_block_bytes_cb(int nr, int simple, int cb)
{
    return (size_t)nr * (size_t)(cb + 4 * (simple ? 1 : 4));
}

static inline size_t q8p_block_bytes(int nr, int simple)
{
    return q8p_block_bytes_cb(nr, simple, 32);
}

/* Pack rows [o0, o0+nrow) (nrow <= nr) of w, all nb blocks, into panel, codes as q (flip 0) or as
 * q + 128 (flip 1: K = 128). */
static inline void q8p_pack(const q4_weight *w, q8_expand_fn expand, int simple, int64_t o0,
                            int nrow, int nr, int64_t nb, int flip, uint8_t *panel)
{
    const size_t pb = q8p_block_bytes(nr, simple);
    q8_wblock e[Q8P_CHUNK];
    uint8_t plain[Q8P_CHUNK * sizeof(q4_block_q8_0)]; /* an interleaved row's blocks */
    for (int r = 0; r < nr; r++) {
        const uint8_t *row =
            (const uint8_t *)w->data + (size_t)(o0 + (r < nrow ? r : 0)) * w->row_bytes;
        for (int64_t b0 = 0; b0 < nb; b0 += Q8P_CHUNK) {
            const int64_t n = nb - b0 < Q8P_CHUNK ? nb - b0 : Q8P_CHUNK;
            if (r < nrow && w->ilv)
                expand(w, q8i_blocks(w, o0 + r, b0, n, plain), 0, n, e);
            else if (r < nrow)
                expand(w, row, b0, n, e);
            else
                memset(e, 0, sizeof e);
            for (int64_t i = 0; i < n; i++) {
                uint8_t *p = panel + (size_t)(b0 + i) * pb;
                for (int g = 0; g < 8; g++) {
                    uint8_t *d = p + (size_t)(g * nr + r) * 4;
                    memcpy(d, e[i].q + 4 * g, 4);
                    for (int k = 0; flip && k < 4; k++)
                        d[k] ^= 0x80;
                }
                float *f = (float *)(void *)(p + (size_t)nr * 32); /* S0 [S1 M0 M1] */
                f[r] = e[i].s[0];
                if (!simple) {
                    f[nr + r] = e[i].s[1];
                    f[2 * nr + r] = e[i].m[0];
                    f[3 * nr + r] = e[i].m[1];
                }
            }
        }
    }
}

#define Q8P_MR       4         /* activation rows per microkernel call, in every variant */
#define Q8P_MIN_MACS (1 << 19) /* multiply-adds a call needs per thread it wakes */

typedef struct q8p_job q8p_job;
/* Y rows [t0, t0+mr) for the panel's rows [o0, o0+nrow), mr = index + 1 of the job's rows[]. */
typedef void (*q8p_rows_fn)(const q8p_job *j, const uint8_t *panel, int64_t t0, int64_t o0,
                            int nrow);
/* Pack weight rows [o0, o0+nrow) into the panel (NULL: q8p_pack through the expander). */
typedef void (*q8p_pack_fn)(const q8p_job *j, int64_t o0, int nrow, uint8_t *panel);

struct q8p_job {
    /* set by the variant */
    const q4_weight *w;
    const float *bias, *X;
    float *Y;
    int64_t T;  /* rows of X and Y */
    int nr;     /* output rows per panel */
    int kshift; /* codes stored as q + (1 << kshift) (vpdpbusd); 0: signed q */
    void (*quant)(const float *x, int64_t n, q8_ablock *dst);
    /* a two-term job (q8_fwd2_fn) when set: X's row t as its two int8 terms (q8_quantize_act2's
     * result) in activation rows 2t and 2t+1, Y's row t from both (q8p_store) */
    void (*quant2)(const float *x, int64_t n, q8_ablock *x1, q8_ablock *r1);
    int add; /* Y += the result (q8_fwd_add_fn; no bias) */
    q8p_pack_fn pack;
    int ilv; /* pack reads a weight's interleaved groups (q8_ilv.h; q8p_pack does) */
    q8p_rows_fn rows[Q8P_MR];
    q8_expand_fn expand; /* NULL: q8_expander(w->qtype) (a variant may name a faster one) */
    size_t chunk_bytes;  /* 0: one panel per tile; else panels packed together (q8p_npc) */
    int cb;              /* code bytes per row and block in the panel (0: 32) */
    /* optional: ext_bytes more bytes per activation block (E[T][nb], ext_bytes apart), filled by
     * ext(j, t) right after row t is quantised (avx2: its int16 accumulators' starting values) */
    size_t ext_bytes;
    void (*ext)(const q8p_job *j, int64_t t);
    /* set by q8p_run */
    int64_t na;     /* activation rows: T, or 2T in a two-term job */
    int64_t ta, tz; /* the activation rows of this pass over the weight: [ta, tz) */
    int64_t nb;
    int simple;
    int npc;        /* panels per chunk */
    q8_ablock *A;   /* [na][nb] */
    uint8_t *E;     /* [na][nb][ext_bytes] (ext_bytes 0: NULL) */
    uint8_t *slots; /* per thread: one chunk of npc panels, pslot bytes apart */
    size_t slot, pslot;
};

static inline size_t q8p_act_bytes(const q4_weight *w, int64_t T)
{
    return q4_line((size_t)T * (size_t)((w->in + Q8_QK - 1) / Q8_QK) * sizeof(q8_ablock));
}

/* The activation blocks' extra bytes (the job's E). */
static inline size_t q8p_ext_bytes(const q4_weight *w, int64_t T, size_t ext_bytes)
{
    return q4_line((size_t)T * (size_t)((w->in + Q8_QK - 1) / Q8_QK) * ext_bytes);
}

static inline size_t q8p_panel_bytes(const q4_weight *w, int nr, int cb)
{
    return (size_t)((w->in + Q8_QK - 1) / Q8_QK) * q8p_block_bytes_cb(nr, q8_simple(w->qtype), cb);
}

#define Q8P_MAX_NPC 16 /* panels per chunk at most */

/* Panels per chunk: as many as chunk_bytes holds (0: one), at most Q8P_MAX_NPC, then evened out
 * so that the chunks split into whole rounds of the threads (a chunk is a unit of par_for). With
 * more than one, a thread packs the chunk's panels first and then runs every group of Q8P_MR
 * activation rows over all of them: the activations are read from memory once per chunk instead
 * of once per panel, the panels stay in the L2 cache. Never more for fewer rows or threads. */
static inline int q8p_npc(const q4_weight *w, int nr, int cb, int n_threads, size_t chunk_bytes)
{
    const int64_t tiles = (w->out + nr - 1) / nr;
    int64_t nt = resolve_threads(n_threads);
    nt = nt < tiles ? nt : tiles;
    int64_t n = (int64_t)(chunk_bytes / q4_line(q8p_panel_bytes(w, nr, cb)));
    n = n < 1 ? 1 : n > Q8P_MAX_NPC ? Q8P_MAX_NPC : n;
    int64_t chunks = (tiles + n - 1) / n;
    chunks = (chunks + nt - 1) / nt * nt;
    n = (tiles + chunks - 1) / chunks;
    return (int)(n < 1 ? 1 : n);
}

/* Bytes between the panels of a chunk, and of one thread's chunk. */
static inline size_t q8p_pslot(const q4_weight *w, int nr, int cb)
{
    return q4_line(q8p_panel_bytes(w, nr, cb));
}

static inline size_t q8p_chunk_slot(const q4_weight *w, int nr, int cb, int npc)
{
    return q4_slot((size_t)npc * q8p_pslot(w, nr, cb));
}

/* Chunk slots of one call on n_threads (as q8p_run splits it). */
static inline size_t q8p_chunk_work(const q4_weight *w, int n_threads, int nr, int cb,
                                    size_t chunk_bytes)
{
    const int64_t tiles = (w->out + nr - 1) / nr;
    const int npc = q8p_npc(w, nr, cb, n_threads, chunk_bytes);
    int64_t nt = resolve_threads(n_threads), chunks = (tiles + npc - 1) / npc;
    nt = nt < chunks ? nt : chunks;
    return (size_t)nt * q8p_chunk_slot(w, nr, cb, npc);
}

/* Work of a variant with panels of nr rows of cb code bytes per row and block: the quantised
 * activations (with ext_bytes more per block: the job's), one chunk per thread (chunk_bytes: the
 * job's). The largest of the chunk slots for 1 .. n_threads threads: fewer threads may take larger
 * chunks, and a work size covers them. */
static inline size_t q8p_work_ext(const q4_weight *w, int64_t T, int n_threads, int nr, int cb,
                                  size_t chunk_bytes, size_t ext_bytes)
{
    if (T <= 0)
        return 0;
    size_t slots = 0;
    for (int k = 1; k <= resolve_threads(n_threads); k++) {
        const size_t s = q8p_chunk_work(w, k, nr, cb, chunk_bytes);
        slots = s > slots ? s : slots;
    }
    return q4_work_size(q8p_act_bytes(w, T) + q8p_ext_bytes(w, T, ext_bytes) + slots);
}

static inline size_t q8p_work_chunked(const q4_weight *w, int64_t T, int n_threads, int nr, int cb,
                                      size_t chunk_bytes)
{
    return q8p_work_ext(w, T, n_threads, nr, cb, chunk_bytes, 0);
}

/* Work of a variant with one panel of nr rows per tile. */
static inline size_t q8p_work(const q4_weight *w, int64_t T, int n_threads, int nr)
{
    return q8p_work_chunked(w, T, n_threads, nr, 32, 0);
}

/* X's rows [t0, t1) quantised (one term, or two: activation rows 2t and 2t+1). */
static inline void q8p_quant_rows(void *ctx, int64_t t0, int64_t t1, int thread)
{
    (void)thread;
    const q8p_job *j = ctx;
    for (int64_t t = t0; t < t1; t++) {
        const float *x = j->X + t * j->w->in;
        if (j->quant2)
            j->quant2(x, j->w->in, j->A + 2 * t * j->nb, j->A + (2 * t + 1) * j->nb);
        else
            j->quant(x, j->w->in, j->A + t * j->nb);
        for (int64_t a = j->quant2 ? 2 * t : t; j->ext && a < (j->quant2 ? 2 * t + 2 : t + 1); a++)
            j->ext(j, a);
    }
}

/* The Y row that activation row t goes to. */
static inline float *q8p_yrow(const q8p_job *j, int64_t t)
{
    return j->Y + (j->quant2 ? t >> 1 : t) * j->w->out;
}

/* 1 when activation row t adds to its Y row (an accumulating job, or the second term of a
 * two-term job), 0 when it sets it (to its result + bias). */
static inline int q8p_adds(const q8p_job *j, int64_t t)
{
    return j->add || (j->quant2 && (t & 1));
}

/* A microkernel's result v[nrow] of activation row t for Y's columns [o0, o0+nrow): Y = v + bias,
 * Y + v in an accumulating job, or in a two-term job (x1·Wᵀ + bias) + r1·Wᵀ: row 2t stores v +
 * bias, row 2t+1 adds its v. A microkernel stores its rows in increasing t, and its rows never
 * split a pair (they start at multiples of Q8P_MR, and 2T is even), so the first term is always
 * stored before the second. */
static inline void q8p_store(const q8p_job *j, int64_t t, int64_t o0, int nrow, const float *v)
{
    float *y = q8p_yrow(j, t) + o0;
    if (q8p_adds(j, t))
        for (int r = 0; r < nrow; r++)
            y[r] = y[r] + v[r];
    else if (j->bias)
        for (int r = 0; r < nrow; r++)
            y[r] = v[r] + j->bias[o0 + r];
    else
        for (int r = 0; r < nrow; r++)
            y[r] = v[r];
}

/* Chunks [i0, i1): each packs its npc panels (tiles npc·i ..), then runs the activation rows,
 * Q8P_MR at a time, over all of them. */
static inline void q8p_tiles(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const q8p_job *j = ctx;
    uint8_t *slot = j->slots + (size_t)thread * j->slot;
    const int64_t tiles = (j->w->out + j->nr - 1) / j->nr;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t p0 = i * j->npc;
        const int np = (int)(tiles - p0 < j->npc ? tiles - p0 : j->npc);
        for (int k = 0; k < np; k++) {
            const int64_t o0 = (p0 + k) * j->nr;
            const int nrow = (int)(j->w->out - o0 < j->nr ? j->w->out - o0 : j->nr);
            uint8_t *panel = slot + (size_t)k * j->pslot;
            if (j->pack)
                j->pack(j, o0, nrow, panel);
            else
                q8p_pack(j->w, j->expand, j->simple, o0, nrow, j->nr, j->nb, j->kshift != 0, panel);
        }
        for (int64_t t = j->ta; t < j->tz; t += Q8P_MR) {
            const int mr = (int)(j->tz - t < Q8P_MR ? j->tz - t : Q8P_MR);
            for (int k = 0; k < np; k++) {
                const int64_t o0 = (p0 + k) * j->nr;
                const int nrow = (int)(j->w->out - o0 < j->nr ? j->w->out - o0 : j->nr);
                j->rows[mr - 1](j, slot + (size_t)k * j->pslot, t, o0, nrow);
            }
        }
    }
}

#define Q8P_ACT_PASS (512 * 1024) /* bytes of quantised activation rows that stay in L2 */

/* Activation rows per pass over the weight: all of them, except in a two-term job whose 2T rows
 * (with the job's extra bytes) do not fit in Q8P_ACT_PASS: then two passes of T rows (the panels
 * packed once per pass), so that the rows of a pass stay in the L2 cache beside the chunk's panels
 * as a one-term job's T rows do (measured on SmolLM2's shapes at T = 512: one pass of 2T rows
 * was 1-5 % slower than two calls on gate/up and down; more passes than two, or passes in
 * one-term jobs, gained nothing and cost repacking the panels). */
static inline int64_t q8p_pass_rows(const q8p_job *j)
{
    const size_t row = (size_t)j->nb * (sizeof(q8_ablock) + j->ext_bytes);
    if (!j->quant2 || (size_t)j->na * row <= Q8P_ACT_PASS)
        return j->na;
    return (j->T + 1) / 2 * 2; /* T rounded up to even: a pass never splits a pair */
}

/* Y = X·Wᵀ (+ bias), or the two-term forward (quant2), for a job whose variant fields are set
 * (work: q8p_work's size for its activation rows, 2T in a two-term job). */
static inline void q8p_run(q8p_job *j, int n_threads, void *work, size_t work_size)
{
    if (j->T <= 0)
        return;
    LK_ASSERT(q8_supports(j->w->qtype) && (!j->w->ilv || j->ilv || !j->pack));
    if (!j->cb)
        j->cb = 32;
    j->na = j->quant2 ? 2 * j->T : j->T;
    uint8_t *base = q4_work_start(
        work, work_size,
        q8p_work_ext(j->w, j->na, n_threads, j->nr, j->cb, j->chunk_bytes, j->ext_bytes));
    j->nb = (j->w->in + Q8_QK - 1) / Q8_QK;
    j->simple = q8_simple(j->w->qtype);
    if (!j->expand)
        j->expand = q8_expander(j->w->qtype);
    j->npc = q8p_npc(j->w, j->nr, j->cb, n_threads, j->chunk_bytes);
    j->A = (q8_ablock *)(void *)base;
    j->E = j->ext_bytes ? base + q8p_act_bytes(j->w, j->na) : NULL;
    j->slots = base + q8p_act_bytes(j->w, j->na) + q8p_ext_bytes(j->w, j->na, j->ext_bytes);
    j->slot = q8p_chunk_slot(j->w, j->nr, j->cb, j->npc);
    j->pslot = q8p_pslot(j->w, j->nr, j->cb);
    /* a small call (decoding k/v, q/o) on one thread: waking another costs more than its half of
     * the work, ~10 us of it per Q8P_MIN_MACS (the result does not depend on the thread count) */
    const double macs = (double)j->na * (double)j->w->out * (double)j->w->in;
    int nt = resolve_threads(n_threads);
    nt = macs < (double)nt * Q8P_MIN_MACS ? (int)(macs / Q8P_MIN_MACS) + 1 : nt;
    par_for(nt, j->T, q8p_quant_rows, j);
    const int64_t pass = q8p_pass_rows(j);
    for (j->ta = 0; j->ta < j->na; j->ta += pass) {
        j->tz = j->na - j->ta < pass ? j->na : j->ta + pass;
        par_for(nt, ((j->w->out + j->nr - 1) / j->nr + j->npc - 1) / j->npc, q8p_tiles, j);
    }
}

/* The four q8p_rows_fn of a variant from its always-inline rows(j, panel, t0, mr, o0, nrow). */
#define Q8P_ROWS_FNS(rows)                                                                  \
    static void rows##_1(const q8p_job *j, const uint8_t *p, int64_t t0, int64_t o0, int n) \
    {                                                                                       \
        rows(j, p, t0, 1, o0, n);                                                           \
    }                                                                                       \
    static void rows##_2(const q8p_job *j, const uint8_t *p, int64_t t0, int64_t o0, int n) \
    {                                                                                       \
        rows(j, p, t0, 2, o0, n);                                                           \
    }                                                                                       \
    static void rows##_3(const q8p_job *j, const uint8_t *p, int64_t t0, int64_t o0, int n) \
    {                                                                                       \
        rows(j, p, t0, 3, o0, n);                                                           \
    }                                                                                       \
    static void rows##_4(const q8p_job *j, const uint8_t *p, int64_t t0, int64_t o0, int n) \
    {                                                                                       \
        rows(j, p, t0, 4, o0, n);                                                           \
    }

#endif /* LK_Q8_PACK_H */
