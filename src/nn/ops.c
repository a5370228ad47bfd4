/* ops.c — forward and backward of RMSNorm, RoPE (rotate_half, as Hugging Face), grouped-query
 * causal attention and SwiGLU. Each backward is derived beside its forward; tests/test_ops.c checks
 * every one against finite differences. */
#include "nn/ops.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "core/pool.h"
#include "lorakit/quant.h"
#include "nn/attn.h"
#include "nn/ops_ew.h"

/* ---- RMSNorm and SwiGLU: ops_ew.h's loops, in their AVX2 build where the dispatched kernels
 * are x86 ones with AVX2 (the same bits either way) ---- */

int ops_avx2(void)
{
#ifdef LK_HAVE_AVX2
    static int use = -1; /* a benign race: every thread stores the same value */
    if (use < 0) {
        const char *v = lk_kernel_variant();
        use = !strcmp(v, "avx2") || !strcmp(v, "avx512") || !strcmp(v, "amx");
    }
    return use;
#else
    return 0;
#endif
}

/* The body of op(args): its AVX2 build op_avx2 where ops_avx2() says so, else ops_ew.h's ew_op
 * (the same loop, the same bits). */
#ifdef LK_HAVE_AVX2
#define EW_DISPATCH(op, args) \
    do {                      \
        if (ops_avx2())       \
            op##_avx2 args;   \
        else                  \
            ew_##op args;     \
    } while (0)
#else
#define EW_DISPATCH(op, args) ew_##op args
#endif

/* ---- RMSNorm: y = x·r·w, r = (mean(x²) + eps)^-1/2 ---- */

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t T, int64_t C,
                     float eps)
{
    EW_DISPATCH(rmsnorm_forward, (out, rstd, x, w, T, C, eps));
}

void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t T, int64_t C)
{
    EW_DISPATCH(rmsnorm_backward, (dx, dout, x, w, rstd, T, C));
}

/* ---- RoPE ---- */

void rope_tables(float *cs, float *sn, const float *inv_freq, int64_t half, const int32_t *pos,
                 int64_t pos0, int64_t T)
{
    for (int64_t t = 0; t < T; t++) {
        float p = pos ? (float)pos[t] : (float)(pos0 + t);
        for (int64_t i = 0; i < half; i++) {
            float a = p * inv_freq[i];
            cs[t * half + i] = cosf(a);
            sn[t * half + i] = sinf(a);
        }
    }
}

/* (a, b) -> (a·c − b·s, b·c + a·s) for the pair (i, i + hd/2) */
void rope_forward(float *x, const float *cs, const float *sn, int64_t T, int64_t nh, int64_t hd)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *v = x + (t * nh + h) * hd;
            const float *c = cs + t * half, *s = sn + t * half;
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
}

/* the rotation is orthogonal: its transpose turns by −angle */
void rope_backward(float *d, const float *cs, const float *sn, int64_t T, int64_t nh, int64_t hd)
{
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *v = d + (t * nh + h) * hd;
            const float *c = cs + t * half, *s = sn + t * half;
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] + b * s[i];
                v[i + half] = b * c[i] - a * s[i];
            }
        }
}

/* ---- attention: the drivers of the blocked kernels (attn.h) ---- */

/* Multiply-adds below which the attention loops stay on one thread (waking the team costs more). */
#define PAR_MIN_WORK (1 << 21)
/* Decoding (T < ATTN_PACK_MIN) reads the whole KV cache of the layer per token: from 2^16 scores'
 * products (SmolLM2-135M: 114 keys) its heads run on the team. Splitting heads over threads
 * changes no result. */
#define ATTN_DECODE_PAR_MIN (1 << 16)

/* attention_forward_cached's decoding steps (one item per kv head) take the team from 2^15
 * products of queries and keys (SmolLM2-135M: 57 cached keys); the team's workers poll for the
 * next loop for a while after the last one (core/pool.c), so it costs little to wake them. */
#define ATTN_DEC_CACHE_PAR_MIN (1 << 15)

/* Columns of a transposed copy of n rows: whole blocks, and one more for tiles that start at any
 * key (a query block's first key lo[t0] need not fall on a block edge). */
static int64_t packed_ld(int64_t n)
{
    return (n + ATTN_BK - 1) / ATTN_BK * ATTN_BK + ATTN_BK;
}

/* Floats of one thread's tiles: the largest need of the items (attn_kernel.h: the backward's two
 * tiles and dk, dv; the forward's scores, output, max and sum; a decoding step's also its padded
 * queries). */
static int64_t tile_floats(int64_t hd)
{
    int64_t n = 2 * ATTN_BQ * ATTN_BK + 2 * ATTN_BQ * hd + 2 * ATTN_BQ;
    return (n + 15) / 16 * 16; /* 64-byte multiples */
}

int64_t attention_work_floats(int64_t n_keys, int64_t H, int64_t KVH, int64_t hd, int n_threads,
                              int backward)
{
    (void)H;
    int64_t packed = (backward ? 2 : 1) * KVH * hd * packed_ld(n_keys); /* Kᵀ (and Vᵀ) */
    return packed + (int64_t)(n_threads < 1 ? 1 : n_threads) * tile_floats(hd);
}

/* ---- transposed copies: dst[h][d][c] = src[(j0 + c)·ld + h·hd + d], zero past n ---- */
typedef struct {
    float *dst;
    const float *src;
    int64_t ld, hd, n, ldt;
} attn_pack;

static void pack_blocks(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const attn_pack *p = ctx;
    int64_t nb = p->ldt / ATTN_BK;
    for (int64_t i = i0; i < i1; i++) {
        int64_t h = i / nb, c0 = i % nb * ATTN_BK;
        for (int64_t d = 0; d < p->hd; d++) {
            float *dst = p->dst + (h * p->hd + d) * p->ldt;
            const float *src = p->src + h * p->hd + d;
            for (int64_t c = c0; c < c0 + ATTN_BK; c++)
                dst[c] = c < p->n ? src[c * p->ld] : 0.0f;
        }
    }
}

/* Floats copied below which a transposed copy stays on the caller's thread (a copy is cheap
 * beside the products; waking the team for a small one costs more than it saves). */
#define PACK_PAR_MIN (1 << 17)

/* Pack n rows of src ([n, heads·hd]) as [heads][hd][ldt] into dst. */
static void pack_heads(int nt, float *dst, const float *src, int64_t heads, int64_t hd, int64_t n,
                       int64_t ldt)
{
    attn_pack p = {dst, src, heads * hd, hd, n, ldt};
    int64_t nb = heads * (ldt / ATTN_BK);
    if (heads * hd * ldt < PACK_PAR_MIN)
        pack_blocks(&p, 0, nb, 0);
    else
        par_for(nt, nb, pack_blocks, &p);
}

/* Two packs of the same shape (the backward's K and V) in one loop: items [0, nb) the first's
 * blocks, [nb, 2·nb) the second's. */
static void pack_blocks2(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const attn_pack *p = ctx;
    int64_t nb = p[0].ld / p[0].hd * (p[0].ldt / ATTN_BK); /* heads × blocks of one pack */
    if (i0 < nb)
        pack_blocks((void *)&p[0], i0, i1 < nb ? i1 : nb, thread);
    if (i1 > nb)
        pack_blocks((void *)&p[1], (i0 > nb ? i0 : nb) - nb, i1 - nb, thread);
}

/* pack_heads of src1 into dst1 and of src2 into dst2 (the same shape), on the team once their
 * sum is worth it. */
static void pack_heads2(int nt, float *dst1, const float *src1, float *dst2, const float *src2,
                        int64_t heads, int64_t hd, int64_t n, int64_t ldt)
{
    attn_pack p[2] = {{dst1, src1, heads * hd, hd, n, ldt}, {dst2, src2, heads * hd, hd, n, ldt}};
    int64_t nb = heads * (ldt / ATTN_BK);
    if (2 * heads * hd * ldt < PACK_PAR_MIN)
        pack_blocks2(p, 0, 2 * nb, 0);
    else
        par_for(nt, 2 * nb, pack_blocks2, p);
}

/* The variant after quant's dispatch (and LK_KERNELS): AVX-512 where the matrix kernels use
 * AVX-512 or AMX, AVX2 where they use AVX2, else the portable one. */
static const attn_kernels *attn_pick(void)
{
    const char *v = lk_kernel_variant();
    (void)v;
#ifdef LK_HAVE_AVX512
    if (!strcmp(v, "avx512") || !strcmp(v, "amx"))
        return &attn_avx512;
#endif
#ifdef LK_HAVE_AVX2
    if (!strcmp(v, "avx2") || !strcmp(v, "avx512") || !strcmp(v, "amx"))
        return &attn_avx2;
#endif
    return &attn_ref;
}

const char *attention_variant(void)
{
    return attn_pick()->name;
}

/* The backward's order: key block kb of kv head g adds to dq after block kb − 1 of g (items are
 * handed out block-major, so a wait is for an item already running on another thread). */
#define ATTN_MAX_KVH 256
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t done[ATTN_MAX_KVH]; /* key blocks of kv head g finished */
} attn_deps;

typedef struct {
    const attn_args *x;
    attn_item_fn fn;
    int64_t n_heads, n_blocks; /* items: n_blocks × n_heads */
    int reverse;               /* hand out the last block first (the forward's longest rows) */
    float *tiles;              /* [nt][tile_floats(hd)] */
    attn_deps *deps;           /* the backward's order, or NULL */
} attn_loop;

static void deps_wait(attn_deps *d, int64_t h, int64_t b)
{
    pthread_mutex_lock(&d->mu);
    while (d->done[h] < b)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

static void deps_done(attn_deps *d, int64_t h, int64_t b)
{
    pthread_mutex_lock(&d->mu);
    d->done[h] = b + 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void attn_items(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const attn_loop *L = ctx;
    float *w = L->tiles + (int64_t)thread * tile_floats(L->x->a->hd);
    for (int64_t i = i0; i < i1; i++) {
        int64_t b = i / L->n_heads, h = i % L->n_heads;
        if (L->deps)
            deps_wait(L->deps, h, b);
        L->fn(L->x, L->reverse ? L->n_blocks - 1 - b : b, h, w);
        if (L->deps)
            deps_done(L->deps, h, b);
    }
}

static void attn_run(int nt, const attn_args *x, attn_item_fn fn, int64_t n_blocks, int64_t n_heads,
                     int reverse, float *tiles, attn_deps *deps)
{
    attn_loop L = {x, fn, n_heads, n_blocks, reverse, tiles, deps};
    par_for_dynamic(nt, n_blocks * n_heads, 1, attn_items, &L);
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const attn_shape *a, float *work, int nt)
{
    if ((a->kpos0 + a->T / 2) * a->T * a->H * a->hd <=
        (a->T < ATTN_PACK_MIN ? ATTN_DECODE_PAR_MIN : PAR_MIN_WORK))
        nt = 1; /* faster for little work */
    attn_args x = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .a = a};
    float *tiles = work;
    if (a->T >= ATTN_PACK_MIN) { /* keys lo[0] .. kpos0+T-1, the only ones any query sees */
        int64_t j0 = a->lo[0], n = a->kpos0 + a->T - j0;
        x.j0t = j0;
        x.ldt = packed_ld(n);
        pack_heads(nt, work, k + j0 * a->KVH * a->hd, a->KVH, a->hd, n, x.ldt);
        x.kt = work;
        tiles = work + a->KVH * a->hd * x.ldt;
    }
    int64_t nqb = (a->T + ATTN_BQ - 1) / ATTN_BQ;
    attn_run(nt, &x, attn_pick()->fwd, nqb, a->H, 1, tiles, NULL);
}

int64_t attention_kv_blocks(int64_t n_ctx)
{
    return (n_ctx + ATTN_BK - 1) / ATTN_BK;
}

int64_t attention_kv_floats(int64_t n_ctx, int64_t KVH, int64_t hd)
{
    return attention_kv_blocks(n_ctx) * ATTN_BK * KVH * hd;
}

void attention_kv_store(float *kc, float *vc, int64_t n_ctx, const float *k, const float *v,
                        int64_t pos0, int64_t T, int64_t KVH, int64_t hd)
{
    const int64_t B = ATTN_BK, nblk = attention_kv_blocks(n_ctx), kvd = KVH * hd;
    for (int64_t g = 0; g < KVH; g++) {
        float *kg = kc + g * nblk * hd * B, *vg = vc + g * n_ctx * hd;
        /* a block first reached here (keys are stored in order): its columns after the
         * chunk are read before they are written, so they start at zero */
        int64_t end = pos0 + T, b = (end - 1) / B;
        if (b * B >= pos0 && end % B)
            for (int64_t d = 0; d < hd; d++)
                memset(kg + (b * hd + d) * B + end % B, 0, (size_t)(B - end % B) * sizeof *kg);
        for (int64_t t = 0; t < T; t++) {
            int64_t j = pos0 + t;
            float *col = kg + j / B * hd * B + j % B;
            const float *kr = k + t * kvd + g * hd;
            for (int64_t d = 0; d < hd; d++)
                col[d * B] = kr[d];
            memcpy(vg + j * hd, v + t * kvd + g * hd, (size_t)hd * sizeof *vg);
        }
    }
}

void attention_forward_cached(float *out, float *lse, const float *q, const float *kc,
                              const float *vc, int64_t n_ctx, const attn_shape *a, float *work,
                              int nt)
{
    int64_t keys = a->kpos0 + (a->T + 1) / 2 - a->lo[0]; /* per query, on average */
    if (keys * a->T * a->H * a->hd <=
        (a->T < ATTN_PACK_MIN ? ATTN_DEC_CACHE_PAR_MIN : PAR_MIN_WORK))
        nt = 1; /* faster for little work */
    attn_args x = {.out = out,
                   .lse = lse,
                   .q = q,
                   .kc = kc,
                   .vc = vc,
                   .nblk = attention_kv_blocks(n_ctx),
                   .n_ctx = n_ctx,
                   .a = a};
    const attn_kernels *K = attn_pick();
    if (a->T < ATTN_PACK_MIN)
        attn_run(nt, &x, K->fwd_dec, a->T, a->KVH, 0, work, NULL);
    else
        attn_run(nt, &x, K->fwd, (a->T + ATTN_BQ - 1) / ATTN_BQ, a->H, 1, work, NULL);
}

/* With P = softmax(S), S = scale·q·kᵀ and O = P·v:
 *   dv_j = Σ_t P_tj·dO_t,  dP_tj = dO_t·v_j,  dS_tj = P_tj·(dP_tj − D_t), D_t = dO_t·O_t,
 *   dq_t = scale·Σ_j dS_tj·k_j,  dk_j = scale·Σ_t dS_tj·q_t.
 * D first (query blocks × heads), then the five products per key block × kv head, P recomputed
 * from the saved lse: dk and dv owned by the item, dq's terms added in place in key order (the
 * kv head's key blocks one after another, attn_deps). */
void attention_backward(float *dq, float *dk, float *dv, float *D, const float *dout,
                        const float *q, const float *k, const float *v, const float *out,
                        const float *lse, const attn_shape *a, float *work, int nt)
{
    if (a->T * a->T * a->H * a->hd <= PAR_MIN_WORK || a->KVH > ATTN_MAX_KVH)
        nt = 1; /* one thread (as the forward; one thread keeps the order by itself) */
    const attn_kernels *K = attn_pick();
    int64_t T = a->T, H = a->H, KVH = a->KVH, hd = a->hd, ldt = packed_ld(T);
    int64_t nqb = (T + ATTN_BQ - 1) / ATTN_BQ, nkb = (T + ATTN_BK - 1) / ATTN_BK;
    float *tiles = work + 2 * KVH * hd * ldt;
    attn_args x = {.dq = dq,
                   .dk = dk,
                   .dv = dv,
                   .D = D,
                   .q = q,
                   .k = k,
                   .v = v,
                   .dout = dout,
                   .o = out,
                   .lse_in = lse,
                   .a = a,
                   .ldt = ldt};
    attn_run(nt, &x, K->bwd_d, nqb, H, 0, tiles, NULL);
    pack_heads2(nt, work, k, work + KVH * hd * ldt, v, KVH, hd, T, ldt); /* K and V transposed */
    x.kt = work;
    x.vt = work + KVH * hd * ldt;
    attn_deps deps = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    memset(deps.done, 0, sizeof deps.done);
    attn_run(nt, &x, K->bwd_k, nkb, KVH, 0, tiles, KVH <= ATTN_MAX_KVH ? &deps : NULL);
    pthread_cond_destroy(&deps.cv);
    pthread_mutex_destroy(&deps.mu);
}

/* ---- SwiGLU: h = silu(g)·u, silu(g) = g·σ(g) ---- */

void swiglu_forward(float *h, const float *g, const float *u, int64_t n)
{
    EW_DISPATCH(swiglu_forward, (h, g, u, n));
}

void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                     int64_t n)
{
    EW_DISPATCH(swiglu_backward, (dg, du, dh, g, u, n));
}
