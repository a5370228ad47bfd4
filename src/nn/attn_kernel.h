/* attn_kernel.h — the body of the blocked attention kernels (see attn.h), included once per
 * instruction set by attn_ref.c, attn_avx2.c and attn_avx512.c with ATTN_VARIANT set to the
 * suffix. Plain C written for the compilers' vectorisers: fixed block sizes, a register block
 * of 4 rows × MC columns for every product (mm_block, in gcc/clang generic vectors; a variant may
 * define a wider mm_wide of 4 × ATTN_WIDE_N, and a taller mm_tall of ATTN_TALL_M × ATTN_WIDE_N,
 * in intrinsics before including this file, as the AVX2 and AVX-512 ones do: 6 × 16 and 6 × 32),
 * fm_exp for the exponentials, and lane-parallel reductions in a fixed order (so each variant is
 * deterministic; variants differ in rounding only).
 *
 * Every product is c[m, n] += a[m, K]·b[K, n] with row-major b (a row-major, or read transposed
 * through its strides): the transposed operands (K for the forward, K and V for the backward) were
 * packed once per call by the driver (ops.c: attn_args' kt, vt, [KVH][hd][ldt]), so the inner loop
 * always runs along a contiguous row of b. With S = scale·q·kᵀ, P = softmax(S), O = P·v:
 *   forward, per query block:  S = Q·Kᵀ, online softmax, O += P·V; lse = m + log l
 *   backward, D = rowsum(dO∘O) per query block first; then per key block, FlashAttention-2's five
 *   products: S = Q·Kᵀ (P recomputed from the saved lse), dP = dO·Vᵀ, dS = P∘(dP − D),
 *   dV += Pᵀ·dO, dK += dSᵀ·Q, dQ += dS·K.
 * A backward item is a key block of one kv head: it owns its dk and dv rows and adds its terms to
 * dq in place. The driver runs the key blocks of one kv head in increasing order (an item waits
 * for its predecessor; other kv heads run meanwhile), so each dq element is one fma chain over its
 * keys in increasing order, exactly as a per-query pass computes it: the results do not depend on
 * the thread count (no atomics, no partial sums). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/fastmath.h"
#include "nn/attn.h"

#define ATTN_CAT2(a, b) a##_##b
#define ATTN_CAT(a, b)  ATTN_CAT2(a, b)
#define ATTN_FN(name)   ATTN_CAT(name, ATTN_VARIANT)

#define BQ ATTN_BQ
#define BK ATTN_BK
#define NR 4  /* rows of a register block */
#define NC 16 /* lanes of the row reductions */
#if defined(__x86_64__) && !defined(__AVX__)
#define MC 8 /* columns of a register block: 4×8 floats fill half of SSE's 16 registers */
#else
#define MC 16 /* 4×16: half of NEON's 32 registers, or what AVX2 and AVX-512 do in mm_wide */
#endif

#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define MADD(a, b, c) fmaf(a, b, c) /* one instruction here, and vectorised */
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

#if defined(__GNUC__) /* gcc and clang: their generic vectors, lowered to what the target has */
typedef float v4f __attribute__((vector_size(16)));

/* Σ lane[NC], pairwise in a fixed order (log-depth, unlike a running sum): lane j += lane j+8,
 * then j += j+4, j += j+2, j += j+1, in vector registers (a decoding step calls it per key). */
static float lanes_sum(const float *lane)
{
    _Static_assert(NC == 16, "lanes_sum: 16 lanes");
    v4f a, b, c, d;
    memcpy(&a, lane, sizeof a);
    memcpy(&b, lane + 4, sizeof b);
    memcpy(&c, lane + 8, sizeof c);
    memcpy(&d, lane + 12, sizeof d);
    a += c;
    b += d;
    a += b;
    return (a[0] + a[2]) + (a[1] + a[3]);
}
#else
/* Σ lane[NC], pairwise in a fixed order (log-depth, unlike a running sum). */
static float lanes_sum(float *lane)
{
    for (int w = NC / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++)
            lane[j] += lane[j + w];
    return lane[0];
}
#endif

#if defined(__GNUC__)

/* c[NR, MC] += a[NR, K]·b[K, MC] (a[r, k] at a[r·lda + k·aks]; row strides ldb, ldc), accumulated
 * in registers: the compilers' own vectorisation of the plain loops below shuffles instead
 * (SSE2). */
static void mm_block(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                     int64_t aks, const float *restrict b, int64_t ldb, int64_t K)
{
    v4f acc[NR][MC / 4];
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < MC / 4; j++)
            memcpy(&acc[r][j], c + r * ldc + 4 * j, sizeof(v4f));
    for (int64_t k = 0; k < K; k++) {
        v4f bv[MC / 4];
        for (int j = 0; j < MC / 4; j++)
            memcpy(&bv[j], b + k * ldb + 4 * j, sizeof(v4f));
        for (int r = 0; r < NR; r++) {
            float ar = a[r * lda + k * aks];
            v4f av = {ar, ar, ar, ar};
            for (int j = 0; j < MC / 4; j++)
                acc[r][j] += av * bv[j];
        }
    }
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < MC / 4; j++)
            memcpy(c + r * ldc + 4 * j, &acc[r][j], sizeof(v4f));
}
#else
/* c[NR, MC] += a[NR, K]·b[K, MC] (a[r, k] at a[r·lda + k·aks]; row strides ldb, ldc), accumulated
 * in registers. */
static void mm_block(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                     int64_t aks, const float *restrict b, int64_t ldb, int64_t K)
{
    float acc[NR][MC];
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < MC; j++)
            acc[r][j] = c[r * ldc + j];
    for (int64_t k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        for (int r = 0; r < NR; r++) {
            float ar = a[r * lda + k * aks];
            for (int j = 0; j < MC; j++)
                acc[r][j] = MADD(ar, bk[j], acc[r][j]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < MC; j++)
            c[r * ldc + j] = acc[r][j];
}
#endif

/* The same for the edges: m <= NR rows, n columns (any). */
static void mm_edge(float *restrict c, int64_t ldc, const float *restrict a, int64_t lda,
                    int64_t aks, const float *restrict b, int64_t ldb, int64_t m, int64_t n,
                    int64_t K)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t k = 0; k < K; k++) {
            float ar = a[r * lda + k * aks];
            const float *bk = b + k * ldb;
            for (int64_t j = 0; j < n; j++)
                c[r * ldc + j] = MADD(ar, bk[j], c[r * ldc + j]);
        }
}

#ifdef ATTN_TALL_M
/* Rows of m that go to the variant's taller block mm_tall (ATTN_TALL_M × ATTN_WIDE_N): as many as
 * leave a multiple of NR for mm_wide (32 = 4·6 + 2·4), else as many as fit. */
static int64_t tall_rows(int64_t m)
{
    for (int64_t n = m / ATTN_TALL_M; n > 0; n--)
        if ((m - n * ATTN_TALL_M) % NR == 0)
            return n * ATTN_TALL_M;
    return m / ATTN_TALL_M * ATTN_TALL_M;
}
#endif

/* c[m, n] += a[m, K]·b[K, n], a[r, k] at a[r·lda + k·aks] (aks 1: row-major a; lda 1: a stored
 * transposed, as the backward's P and dS tiles are for dV and dK): every element one fma chain
 * over k in order, whatever block (tall, wide, generic or edge) computes it. */
static void mm(float *c, int64_t ldc, const float *a, int64_t lda, int64_t aks, const float *b,
               int64_t ldb, int64_t m, int64_t n, int64_t K)
{
    int64_t i = 0;
#ifdef ATTN_TALL_M
    /* the variant's block of ATTN_TALL_M rows × ATTN_WIDE_N columns, where the columns are whole
     * blocks (else the rows go below, as mm_block's product, unfused where the compiler does not
     * contract it, rounds differently from mm_edge's fmaf) */
    if (n % ATTN_WIDE_N == 0)
        for (int64_t mt = tall_rows(m); i < mt; i += ATTN_TALL_M)
            for (int64_t j = 0; j < n; j += ATTN_WIDE_N)
                mm_tall(c + i * ldc + j, ldc, a + i * lda, lda, aks, b + j, ldb, K);
#endif
    for (; i + NR <= m; i += NR) {
        int64_t j = 0;
#ifdef ATTN_WIDE_N /* the variant's own block of NR rows × ATTN_WIDE_N columns */
        for (; j + ATTN_WIDE_N <= n; j += ATTN_WIDE_N)
            mm_wide(c + i * ldc + j, ldc, a + i * lda, lda, aks, b + j, ldb, K);
#endif
        for (; j + MC <= n; j += MC)
            mm_block(c + i * ldc + j, ldc, a + i * lda, lda, aks, b + j, ldb, K);
        if (j < n)
            mm_edge(c + i * ldc + j, ldc, a + i * lda, lda, aks, b + j, ldb, NR, n - j, K);
    }
    if (i < m)
        mm_edge(c + i * ldc, ldc, a + i * lda, lda, aks, b, ldb, m - i, n, K);
}

/* Tiles are W = 32 wide in both directions (BQ and BK). */
#define W 32
_Static_assert(ATTN_BQ == W && ATTN_BK == W, "attn_kernel.h: the tiles are 32 x 32");

/* In place over one tile row s[W]: entries c0 <= c < c1 become e^(s·scale − shift), the others 0;
 * returns their sum (NC lanes, summed in a fixed order). The mask is a bit mask on the result (as
 * in fm_exp), which compilers vectorise, not a select between floats; a whole row (most rows off
 * the diagonal) skips it. */
static float exp_row(float *restrict s, float shift, int c0, int c1, float scale)
{
    float lane[NC] = {0};
    if (c0 == 0 && c1 == W) {
        for (int cb = 0; cb < W; cb += NC)
            for (int j = 0; j < NC; j++) {
                float p = fm_exp(s[cb + j] * scale - shift);
                s[cb + j] = p;
                lane[j] += p;
            }
        return lanes_sum(lane);
    }
    for (int cb = 0; cb < W; cb += NC)
        for (int j = 0; j < NC; j++) {
            int c = cb + j;
            uint32_t keep = c >= c0 && c < c1 ? 0xffffffffu : 0u, pb;
            float p = fm_exp(s[c] * scale - shift);
            memcpy(&pb, &p, 4);
            pb &= keep;
            memcpy(&p, &pb, 4);
            s[c] = p;
            lane[j] += p;
        }
    return lanes_sum(lane);
}

/* Largest s[c]·scale over c0 <= c < c1 (−inf when empty). The maximum is taken over integer keys
 * that order as the floats do (x's bits, the magnitude bits flipped when negative), since
 * compilers vectorise an integer max reduction but not a float one without -ffast-math. */
static float max_row(const float *restrict s, int c0, int c1, float scale)
{
    int32_t key[W], lane[NC];
    for (int c = 0; c < W; c++) {
        float x = s[c] * scale;
        uint32_t u, keep = c >= c0 && c < c1 ? 0xffffffffu : 0u;
        memcpy(&u, &x, 4);
        u ^= (uint32_t)((int32_t)u >> 31) & 0x7fffffffu;
        key[c] = (int32_t)((u & keep) | (0x80000000u & ~keep));
    }
    for (int j = 0; j < NC; j++)
        lane[j] = key[j];
    for (int cb = NC; cb < W; cb += NC)
        for (int j = 0; j < NC; j++)
            lane[j] = key[cb + j] > lane[j] ? key[cb + j] : lane[j];
    int32_t mx = INT32_MIN;
    for (int j = 0; j < NC; j++)
        mx = lane[j] > mx ? lane[j] : mx;
    if (mx == INT32_MIN)
        return -INFINITY;
    mx ^= (mx >> 31) & 0x7fffffff;
    float x;
    memcpy(&x, &mx, 4);
    return x;
}

/* Columns [*c0, *c1) of a tile starting at jb, width nk, that query t may see: keys lo..hi. */
static void visible(int64_t jb, int64_t nk, int64_t lo, int64_t hi, int *c0, int *c1)
{
    int64_t a = lo - jb, b = hi - jb + 1;
    *c0 = (int)(a < 0 ? 0 : a > nk ? nk : a);
    *c1 = (int)(b > nk ? nk : b < 0 ? 0 : b);
}

/* Keys [*j0, *j1) that some row of the query block t0..t0+nq-1 sees (lo non-decreasing). */
static void key_range(const attn_shape *a, int64_t t0, int64_t nq, int64_t *j0, int64_t *j1)
{
    *j0 = a->lo[t0];
    *j1 = a->kpos0 + t0 + nq;
}

static float dot_hd(const float *restrict x, const float *restrict y, int64_t n)
{
    float lane[NC] = {0}, tail = 0;
    int64_t nb = n / NC * NC;
    for (int64_t i = 0; i < nb; i += NC)
        for (int j = 0; j < NC; j++)
            lane[j] = MADD(x[i + j], y[i + j], lane[j]);
    for (int64_t i = nb; i < n; i++)
        tail = MADD(x[i], y[i], tail);
    return lanes_sum(lane) + tail;
}

/* s[nq][BK] = q[nq, hd]·k[nk, hd]ᵀ (columns nk.. unspecified, finite): the register-blocked
 * product with the packed keys kt ([hd][ldt], this tile's first key at column 0), or without them
 * (a call of fewer than ATTN_PACK_MIN queries: decoding) one dot product per key. */
static void scores_tile(float *s, const float *kt, int64_t ldt, const float *q, int64_t ldq,
                        const float *k, int64_t ldk, int64_t nq, int64_t nk, int64_t hd)
{
    memset(s, 0, (size_t)(nq * BK) * sizeof *s);
    if (kt) {
        mm(s, BK, q, ldq, 1, kt, ldt, nq, BK, hd);
        return;
    }
    for (int64_t i = 0; i < nq; i++)
        for (int64_t c = 0; c < nk; c++)
            s[i * BK + c] = dot_hd(q + i * ldq, k + c * ldk, hd);
}

/* The online-softmax pass of nq <= BQ rows over the keys [j0, j1) of kv head g: row i has the
 * query q[i·ldq] ([hd]) and sees the keys rlo[i]..rhi[i]; out[i·ldo] ([hd]) and lse[i·lds] (if
 * lse) receive rows i < nout. A row's bits depend only on its query, its keys and j0 (where the
 * key blocks start), not on the other rows: the forward's query blocks and the decoding step's
 * heads (fwd_dec) get the same bits for the same query. */
static void fwd_rows(const attn_args *x, int64_t g, const float *q, int64_t ldq, int64_t nq,
                     const int64_t *rlo, const int64_t *rhi, int64_t j0, int64_t j1, float *out,
                     int64_t ldo, float *lse, int64_t lds, int64_t nout, float *w)
{
    const attn_shape *a = x->a;
    int64_t hd = a->hd, kvd = a->KVH * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *s = w;           /* [BQ][BK] scores, then P */
    float *o = s + BQ * BK; /* [BQ][hd] unnormalised output */
    float *m = o + BQ * hd; /* [BQ] running max */
    float *l = m + BQ;      /* [BQ] running sum */
    const float *k = x->k ? x->k + g * hd : NULL;
    const float *v = x->vc ? x->vc + g * x->n_ctx * hd : x->v + g * hd;
    int64_t ldv = x->vc ? hd : kvd, ldt = x->kc ? BK : x->ldt;
    for (int64_t i = 0; i < BQ; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(o, 0, (size_t)(nq * hd) * sizeof *o);
    for (int64_t jb = j0; jb < j1; jb += BK) {
        int64_t nk = j1 - jb < BK ? j1 - jb : BK;
        const float *kt = x->kc   ? x->kc + (g * x->nblk + jb / BK) * hd * BK
                          : x->kt ? x->kt + g * hd * x->ldt + (jb - x->j0t)
                                  : NULL;
        scores_tile(s, kt, ldt, q, ldq, k ? k + jb * kvd : NULL, kvd, nq, nk, hd);
        float mn[BQ], alpha[BQ];
        int c0[BQ], c1[BQ];
        for (int64_t i = 0; i < BQ; i++) {
            float mx = -INFINITY;
            if (i < nq) {
                visible(jb, nk, rlo[i], rhi[i], &c0[i], &c1[i]);
                mx = max_row(s + i * BK, c0[i], c1[i], scale);
                if (mx == -INFINITY) /* nothing visible to this row here */
                    memset(s + i * BK, 0, BK * sizeof *s);
            }
            mn[i] = mx > m[i] ? mx : m[i];
            c1[i] = mx == -INFINITY ? -1 : c1[i];
        }
        /* the rows' rescale factors at once: a loop the compilers vectorise (one row at a time,
         * each fm_exp was a scalar chain of dependent operations; the bits are the same) */
        for (int i = 0; i < BQ; i++)
            alpha[i] = fm_exp(m[i] - mn[i]);
        for (int64_t i = 0; i < nq; i++) {
            if (c1[i] < 0)
                continue;
            l[i] = l[i] * alpha[i] + exp_row(s + i * BK, mn[i], c0[i], c1[i], scale);
            m[i] = mn[i];
            if (alpha[i] != 1.0f) /* the max moved (x·1 = x: skipping it changes no bit) */
                for (int64_t d = 0; d < hd; d++)
                    o[i * hd + d] *= alpha[i];
        }
        mm(o, hd, s, BK, 1, v + jb * ldv, ldv, nq, hd, nk);
    }
    for (int64_t i = 0; i < nout; i++) {
        float inv = 1.0f / l[i], *orow = out + i * ldo;
        for (int64_t d = 0; d < hd; d++)
            orow[d] = o[i * hd + d] * inv;
        if (lse)
            lse[i * lds] = m[i] + logf(l[i]);
    }
}

/* ---- forward: query block qb of head h ---- */
static void ATTN_FN(fwd)(const attn_args *x, int64_t qb, int64_t h, float *w)
{
    const attn_shape *a = x->a;
    int64_t H = a->H, hd = a->hd, ld = H * hd, g = h / (H / a->KVH);
    int64_t t0 = qb * BQ, nq = a->T - t0 < BQ ? a->T - t0 : BQ;
    int64_t rlo[BQ], rhi[BQ], j0, j1;
    for (int64_t i = 0; i < nq; i++) {
        rlo[i] = a->lo[t0 + i];
        rhi[i] = a->kpos0 + t0 + i;
    }
    key_range(a, t0, nq, &j0, &j1);
    if (x->kc) /* a cache's key blocks */
        j0 = j0 / BK * BK;
    fwd_rows(x, g, x->q + t0 * ld + h * hd, ld, nq, rlo, rhi, j0, j1, x->out + t0 * ld + h * hd, ld,
             x->lse ? x->lse + t0 * H + h : NULL, H, nq, w);
}

/* ---- forward of a decoding step (needs x->kc): query t, the query heads of kv head g ----
 * The heads of the group are the rows of each product, so every key and value loaded serves all
 * of them (grouped-query attention); they run in sets of up to BQ rows, each padded to whole
 * register blocks of NR rows with zero queries that see no key. The keys come in the cache's
 * blocks, as the forward's query blocks take them from the same cache: a row gets the bits the
 * forward gives the same query. */
static void ATTN_FN(fwd_dec)(const attn_args *x, int64_t t, int64_t g, float *w)
{
    const attn_shape *a = x->a;
    int64_t H = a->H, hd = a->hd, ld = H * hd, grp = H / a->KVH;
    float *qp = w + BQ * BK + BQ * hd + 2 * BQ; /* [BQ][hd] the set's queries, padded */
    int64_t rlo[BQ], rhi[BQ];
    for (int64_t h0 = g * grp; h0 < (g + 1) * grp; h0 += BQ) {
        int64_t n = (g + 1) * grp - h0 < BQ ? (g + 1) * grp - h0 : BQ;
        int64_t nr = (n + NR - 1) / NR * NR;
        memcpy(qp, x->q + t * ld + h0 * hd, (size_t)(n * hd) * sizeof *qp);
        memset(qp + n * hd, 0, (size_t)((nr - n) * hd) * sizeof *qp);
        for (int64_t i = 0; i < nr; i++) {
            rlo[i] = i < n ? a->lo[t] : 0; /* padding: keys 0..-1, none */
            rhi[i] = i < n ? a->kpos0 + t : -1;
        }
        fwd_rows(x, g, qp, hd, nr, rlo, rhi, a->lo[t] / BK * BK, a->kpos0 + t + 1,
                 x->out + t * ld + h0 * hd, hd, x->lse ? x->lse + t * H + h0 : NULL, 1, n, w);
    }
}

/* ---- backward, first: D for query block qb of head h ---- */
static void ATTN_FN(bwd_d)(const attn_args *x, int64_t qb, int64_t h, float *w)
{
    (void)w;
    const attn_shape *a = x->a;
    int64_t H = a->H, hd = a->hd, ld = H * hd;
    int64_t t0 = qb * BQ, nq = a->T - t0 < BQ ? a->T - t0 : BQ;
    for (int64_t i = 0; i < nq; i++) {
        int64_t t = t0 + i;
        x->D[t * H + h] = dot_hd(x->dout + t * ld + h * hd, x->o + t * ld + h * hd, hd);
    }
}

/* First query t >= from whose lo exceeds j (lo non-decreasing), or T. */
static int64_t first_past(const attn_shape *a, int64_t from, int64_t j)
{
    int64_t lo = from, hi = a->T;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a->lo[mid] > j)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- backward: key block kb of kv head g: dk, dv, and its terms of dq (after kb − 1's) ----
 * Per query block and head of the group: S = Q·Kᵀ and dP = dO·Vᵀ as [queries][keys] tiles on the
 * packed Kᵀ and Vᵀ (x->kt, x->vt: the kv head's, shared by its query heads and every query block),
 * P and dS in place, then dV += Pᵀ·dO and dK += dSᵀ·Q reading the tiles transposed (mm's aks) and
 * dQ += dS·K reading them as they are: no transposed copy of Q or dO, no tile transpose. */
static void ATTN_FN(bwd_k)(const attn_args *x, int64_t kb, int64_t g, float *w)
{
    const attn_shape *a = x->a;
    int64_t T = a->T, H = a->H, hd = a->hd, kvd = a->KVH * hd, ld = H * hd, grp = H / a->KVH;
    int64_t j0 = kb * BK, nk = T - j0 < BK ? T - j0 : BK;
    float scale = 1.0f / sqrtf((float)hd);
    float *p = w;             /* [BQ][BK] scores, then P */
    float *dp = p + BQ * BK;  /* [BQ][BK] dP, then dS */
    float *dk = dp + BQ * BK; /* [BK][hd] */
    float *dv = dk + BK * hd; /* [BK][hd] */
    const float *k = x->k + j0 * kvd + g * hd;
    const float *kt = x->kt + g * hd * x->ldt + j0, *vt = x->vt + g * hd * x->ldt + j0;
    memset(dk, 0, (size_t)(2 * BK * hd) * sizeof *dk); /* dk and dv */
    if (kb == 0) /* the first item of the kv head starts dq's sums */
        for (int64_t t = 0; t < T; t++)
            memset(x->dq + t * ld + g * grp * hd, 0, (size_t)(grp * hd) * sizeof *x->dq);
    /* queries that see a key of the block: t >= j0, and lo[t] <= j0 + nk − 1 */
    int64_t t1 = first_past(a, j0, j0 + nk - 1);
    for (int64_t tb = j0; tb < t1; tb += BQ) {
        int64_t nq = t1 - tb < BQ ? t1 - tb : BQ;
        for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
            const float *q = x->q + tb * ld + h * hd, *dout = x->dout + tb * ld + h * hd;
            memset(p, 0, (size_t)(2 * BQ * BK) * sizeof *p); /* p and dp */
            mm(p, BK, q, ld, 1, kt, x->ldt, nq, BK, hd);
            mm(dp, BK, dout, ld, 1, vt, x->ldt, nq, BK, hd);
            for (int64_t i = 0; i < nq; i++) {
                int64_t t = tb + i;
                int c0, c1; /* keys j0 + c that query t sees: lo[t] <= j <= t */
                visible(j0, nk, a->lo[t], t, &c0, &c1);
                float *pr = p + i * BK, *dr = dp + i * BK, Dt = x->D[t * H + h];
                exp_row(pr, x->lse_in[t * H + h], c0, c1, scale);
                for (int c = 0; c < BK; c++)
                    dr[c] = pr[c] * (dr[c] - Dt);
            }
            mm(dv, hd, p, 1, BK, dout, ld, nk, hd, nq);
            mm(dk, hd, dp, 1, BK, q, ld, nk, hd, nq);
            mm(x->dq + tb * ld + h * hd, ld, dp, BK, 1, k, kvd, nq, hd, nk);
        }
    }
    for (int64_t r = 0; r < nk; r++) {
        float *dkr = x->dk + (j0 + r) * kvd + g * hd, *dvr = x->dv + (j0 + r) * kvd + g * hd;
        for (int64_t d = 0; d < hd; d++) {
            dkr[d] = dk[r * hd + d] * scale;
            dvr[d] = dv[r * hd + d];
        }
    }
    /* queries j0 .. j0+nk−1 see no later key block: their dq is complete */
    for (int64_t t = j0; t < j0 + nk; t++) {
        float *dqr = x->dq + t * ld + g * grp * hd;
        for (int64_t d = 0; d < grp * hd; d++)
            dqr[d] *= scale;
    }
}

#define ATTN_STR2(x) #x
#define ATTN_STR(x)  ATTN_STR2(x)
const attn_kernels ATTN_FN(attn) = {ATTN_STR(ATTN_VARIANT), ATTN_FN(fwd), ATTN_FN(fwd_dec),
                                    ATTN_FN(bwd_d), ATTN_FN(bwd_k)};
