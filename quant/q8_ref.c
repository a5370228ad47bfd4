/* q8_ref.c — the plain-C specification of the int8 compute path (q8.h): the activation quantisers
 * (one term, and a training forward's two), the reference int8 GEMM whose order of operations
 * every variant reproduces bit for bit (with its two-term and accumulating forms), and the
 * transposed Q8_0 copy of a weight for the backward's dX = dY·W. Compiled in ISO C mode (no
 * contraction of a*b+c), so every fmaf below is the one rounding the spec names and every other
 * product and sum rounds on its own. */
#include <math.h>
#include <string.h>

#include "q8.h"
#include "q8_ilv.h"
#include "core/pool.h"
#include "core/status.h"

/* ---- activations --------------------------------------------------------------------------- */

/* One block of 32 values (already zero-padded). */
static void quantize_block(const float *x, q8_ablock *o)
{
    float amax = 0.0f;
    for (int k = 0; k < Q8_QK; k++)
        amax = fmaxf(amax, fabsf(x[k]));
    const float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (!isfinite(id)) /* d subnormal: its inverse overflows */
        id = 0.0f;
    int s0 = 0, s1 = 0;
    for (int k = 0; k < Q8_QK; k++) {
        o->q[k] = (int8_t)nearbyintf(x[k] * id);
        if (k < 16)
            s0 += o->q[k];
        else
            s1 += o->q[k];
    }
    o->d = d;
    o->s16[0] = (int16_t)s0;
    o->s16[1] = (int16_t)s1;
}

void q8_quantize_act(const float *x, int64_t n, q8_ablock *dst)
{
    const int64_t nfull = n / Q8_QK;
    for (int64_t b = 0; b < nfull; b++)
        quantize_block(x + b * Q8_QK, dst + b);
    if (n % Q8_QK) {
        float pad[Q8_QK] = {0};
        memcpy(pad, x + nfull * Q8_QK, (size_t)(n % Q8_QK) * sizeof(float));
        quantize_block(pad, dst + nfull);
    }
}

/* One block of x (zero-padded) and of what its int8 form leaves: r = x − d·q, each value's
 * product and difference rounded on their own (ISO C: not contracted). */
static void quantize2_block(const float *x, q8_ablock *x1, q8_ablock *r1)
{
    quantize_block(x, x1);
    float r[Q8_QK];
    for (int k = 0; k < Q8_QK; k++)
        r[k] = x[k] - x1->d * (float)x1->q[k];
    quantize_block(r, r1);
}

void q8_quantize_act2(const float *x, int64_t n, q8_ablock *x1, q8_ablock *r1)
{
    const int64_t nfull = n / Q8_QK;
    for (int64_t b = 0; b < nfull; b++)
        quantize2_block(x + b * Q8_QK, x1 + b, r1 + b);
    if (n % Q8_QK) {
        float pad[Q8_QK] = {0};
        memcpy(pad, x + nfull * Q8_QK, (size_t)(n % Q8_QK) * sizeof(float));
        quantize2_block(pad, x1 + nfull, r1 + nfull);
    }
}

/* ---- the reference GEMM -------------------------------------------------------------------- */

/* The fp32 sum of one activation row and one expanded weight row over nb blocks (q8.h). */
static float dot_row(const q8_ablock *x, const q8_wblock *w, int64_t nb, int simple)
{
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t i0 = 0, i1 = 0;
        for (int k = 0; k < 16; k++) {
            i0 += (int32_t)x[b].q[k] * w[b].q[k];
            i1 += (int32_t)x[b].q[k + 16] * w[b].q[k + 16];
        }
        if (simple) {
            acc = fmaf(x[b].d, w[b].s[0] * (float)(i0 + i1), acc);
        } else {
            float v = w[b].s[0] * (float)i0;
            v = fmaf(w[b].s[1], (float)i1, v);
            v = fmaf(w[b].m[0], (float)x[b].s16[0], v);
            v = fmaf(w[b].m[1], (float)x[b].s16[1], v);
            acc = fmaf(x[b].d, v, acc);
        }
    }
    return acc;
}

typedef struct {
    const q4_weight *w;
    const float *bias, *X;
    float *Y;
    int64_t T, nb;
    int two;        /* the two-term forward: A holds x1 and r1 of each row (rows 2t, 2t+1) */
    int add;        /* Y += the result */
    q8_ablock *A;   /* [T][nb] quantised X ([2T][nb] with two) */
    uint8_t *slots; /* per thread: one expanded row [nb] */
    size_t slot;
} ref_job;

static void quant_rows(void *ctx, int64_t t0, int64_t t1, int thread)
{
    (void)thread;
    const ref_job *j = ctx;
    for (int64_t t = t0; t < t1; t++)
        if (j->two)
            q8_quantize_act2(j->X + t * j->w->in, j->w->in, j->A + 2 * t * j->nb,
                             j->A + (2 * t + 1) * j->nb);
        else
            q8_quantize_act(j->X + t * j->w->in, j->w->in, j->A + t * j->nb);
}

static void fwd_rows(void *ctx, int64_t o0, int64_t o1, int thread)
{
    const ref_job *j = ctx;
    const q4_weight *w = j->w;
    const q8_expand_fn expand = q8_expander(w->qtype);
    const int simple = q8_simple(w->qtype);
    q8_wblock *wr = (q8_wblock *)(void *)(j->slots + (size_t)thread * j->slot); /* [nb] */
    uint8_t *plain = (uint8_t *)(wr + j->nb); /* [row_bytes]: an interleaved row's blocks */
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *row = w->ilv ? q8i_blocks(w, o, 0, j->nb, plain)
                                    : (const uint8_t *)w->data + (size_t)o * w->row_bytes;
        expand(w, row, 0, j->nb, wr);
        for (int64_t t = 0; t < j->T; t++) {
            const q8_ablock *a = j->A + (j->two ? 2 * t : t) * j->nb;
            float acc = dot_row(a, wr, j->nb, simple);
            float y = j->bias ? acc + j->bias[o] : acc;
            if (j->two) /* (x1·Wᵀ + bias) + r1·Wᵀ */
                y = y + dot_row(a + j->nb, wr, j->nb, simple);
            j->Y[t * w->out + o] = j->add ? j->Y[t * w->out + o] + y : y;
        }
    }
}

/* Bytes of the quantised activations of T rows of in values. */
static size_t act_bytes(const q4_weight *w, int64_t T)
{
    return q4_line((size_t)T * (size_t)((w->in + Q8_QK - 1) / Q8_QK) * sizeof(q8_ablock));
}

size_t q8_gemm_fwd_work_ref(const q4_weight *w, int64_t T, int n_threads)
{
    const size_t row =
        q4_slot((size_t)((w->in + Q8_QK - 1) / Q8_QK) * sizeof(q8_wblock) + w->row_bytes);
    return T > 0 ? q4_work_size(act_bytes(w, T) + (size_t)resolve_threads(n_threads) * row) : 0;
}

/* The one-term (two 0) or two-term forward; with add, Y += the result. */
static void fwd_run(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                    int n_threads, void *work, size_t work_size, int two, int add)
{
    if (T <= 0)
        return;
    LK_ASSERT(q8_supports(w->qtype));
    const int64_t nb = (w->in + Q8_QK - 1) / Q8_QK;
    uint8_t *base =
        q4_work_start(work, work_size, q8_gemm_fwd_work_ref(w, (1 + two) * T, n_threads));
    ref_job j = {.w = w,
                 .bias = bias,
                 .X = X,
                 .Y = Y,
                 .T = T,
                 .nb = nb,
                 .two = two,
                 .add = add,
                 .A = (q8_ablock *)(void *)base,
                 .slots = base + act_bytes(w, (1 + two) * T),
                 .slot = q4_slot((size_t)nb * sizeof(q8_wblock) + w->row_bytes)};
    par_for(n_threads, T, quant_rows, &j);
    par_for(n_threads, w->out, fwd_rows, &j);
}

void q8_gemm_fwd_ref(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 0, 0);
}

size_t q8_gemm_fwd2_work_ref(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_ref(w, 2 * T, n_threads);
}

void q8_gemm_fwd2_ref(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    fwd_run(w, bias, X, T, Y, n_threads, work, work_size, 1, 0);
}

size_t q8_gemm_fwd_add_work_ref(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_gemm_fwd_work_ref(w, T, n_threads);
}

void q8_gemm_fwd_add_ref(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                         void *work, size_t work_size)
{
    fwd_run(w, NULL, X, T, Y, n_threads, work, work_size, 0, 1);
}

/* ---- the transposed copy ------------------------------------------------------------------- */

/* q8_transpose builds it with the dispatched decoder (q4_decoder: AVX2 on x86) and tile quantiser
 * (q8_tiler), TR_CHUNK column blocks per tile; q8_transpose_ref is the specification (the scalar
 * decoder, one 32×32 tile at a time). Both write the same bytes. */

size_t q8_transpose_bytes(const q4_weight *w)
{
    return (size_t)w->in * q4_row_bytes(LK_QTYPE_Q8_0, Q4_QK, w->out);
}

void q8_tile_ref(const float *tile, int64_t ld, int64_t ncol, uint8_t *dst, size_t rb)
{
    for (int64_t k = 0; k < ncol; k++) {
        float col[Q8_QK];
        for (int r = 0; r < Q8_QK; r++)
            col[r] = tile[r * ld + k];
        q8_ablock a;
        quantize_block(col, &a);
        q4_block_q8_0 *blk = (q4_block_q8_0 *)(void *)(dst + (size_t)k * rb);
        blk->d = q4_fp32_to_fp16(a.d);
        memcpy(blk->qs, a.q, 32);
    }
}

q8_tile_fn q8_tiler(const q8_kernels *k)
{
#ifdef LK_HAVE_AVX2
    if ((!strcmp(k->name, "avx2") || !strcmp(k->name, "avx512vnni")) && q4_cpu_has("avx2"))
        return q8_tile_avx2;
#endif
    (void)k;
    return q8_tile_ref;
}

typedef struct {
    const q4_weight *w;
    uint8_t *dst;
    size_t rb; /* bytes of one row of Wᵀ */
    q4_decode_fn dec;
    q8_tile_fn tile;
} tr_job;

/* A view of rows [o0, o0+nr) and column blocks [kb0, kb0+nkb) of an interleaved w in the row
 * layout, copied into buf (nr·nkb·bsz bytes): *v's row r is w's row o0+r from value 32·kb0 on. */
static void plain_view(const q4_weight *w, int64_t o0, int nr, int64_t kb0, int64_t nkb,
                       uint8_t *buf, q4_weight *v)
{
    const size_t rb = (size_t)nkb * q8i_bsz(w->qtype);
    for (int r = 0; r < nr; r++)
        memcpy(buf + r * rb, q8i_blocks(w, o0 + r, kb0, nkb, buf + (size_t)nr * rb), rb);
    const int64_t in = w->in - kb0 * Q4_QK < nkb * Q4_QK ? w->in - kb0 * Q4_QK : nkb * Q4_QK;
    lk_status s = q4_weight_init(v, w->qtype, w->block, nr, in, buf);
    LK_ASSERT(s == LK_OK && v->row_bytes == rb);
}

/* The specification: column blocks [c0, c1) of W (rows 32c.. of Wᵀ), one 32×32 tile at a time,
 * decoded by q4_decode_ref. */
static void transpose_cols_ref(void *ctx, int64_t c0, int64_t c1, int thread)
{
    (void)thread;
    const tr_job *j = ctx;
    const q4_weight *w = j->w;
    const int64_t nob = (w->out + Q4_QK - 1) / Q4_QK;
    for (int64_t c = c0; c < c1; c++) {
        const int64_t ncol = w->in - c * Q4_QK < Q4_QK ? w->in - c * Q4_QK : Q4_QK;
        for (int64_t ob = 0; ob < nob; ob++) {
            float tile[Q4_QK][Q4_QK] = {{0}}; /* [o][k] */
            for (int64_t r = 0; r < Q4_QK && ob * Q4_QK + r < w->out; r++) {
                if (w->ilv) {
                    uint8_t buf[2 * sizeof(q4_block_q8_0)];
                    q4_weight v;
                    plain_view(w, ob * Q4_QK + r, 1, c, 1, buf, &v);
                    q4_decode_ref(&v, 0, 0, Q4_QK, tile[r]);
                } else {
                    q4_decode_ref(w, ob * Q4_QK + r, c * Q4_QK, Q4_QK, tile[r]);
                }
            }
            q8_tile_ref(tile[0], Q4_QK, ncol,
                        j->dst + (size_t)(c * Q4_QK) * j->rb + (size_t)ob * sizeof(q4_block_q8_0),
                        j->rb);
        }
    }
}

#define TR_CHUNK 8 /* column blocks decoded per tile by q8_transpose_with: tile [32][256] */

/* The same tiles, TR_CHUNK column blocks of 32 rows at a time (fewer passes over W's rows),
 * decoded by j->dec and quantised by j->tile. */
static void transpose_cols(void *ctx, int64_t c0, int64_t c1, int thread)
{
    (void)thread;
    const tr_job *j = ctx;
    const q4_weight *w = j->w;
    const int64_t nob = (w->out + Q4_QK - 1) / Q4_QK, ld = TR_CHUNK * Q4_QK;
    float tile[Q4_QK * TR_CHUNK * Q4_QK]; /* [32][ld] */
    for (int64_t cs = c0; cs < c1; cs += TR_CHUNK) {
        const int64_t ce = cs + TR_CHUNK < c1 ? cs + TR_CHUNK : c1;
        const int64_t k1 = ce * Q4_QK < w->in ? ce * Q4_QK : w->in;
        for (int64_t ob = 0; ob < nob; ob++) {
            const int64_t nr = w->out - ob * Q4_QK < Q4_QK ? w->out - ob * Q4_QK : Q4_QK;
            if (w->ilv) {
                uint8_t buf[(Q4_QK + 1) * TR_CHUNK * sizeof(q4_block_q8_0)];
                q4_weight v;
                plain_view(w, ob * Q4_QK, (int)nr, cs, ce - cs, buf, &v);
                j->dec(&v, 0, nr, 0, (ce - cs) * Q4_QK, tile, ld);
            } else {
                j->dec(w, ob * Q4_QK, nr, cs * Q4_QK, (ce - cs) * Q4_QK, tile, ld);
            }
            if (nr < Q4_QK) /* rows past out are zero */
                memset(tile + nr * ld, 0, (size_t)((Q4_QK - nr) * ld) * sizeof(float));
            j->tile(tile, ld, k1 - cs * Q4_QK,
                    j->dst + (size_t)(cs * Q4_QK) * j->rb + (size_t)ob * sizeof(q4_block_q8_0),
                    j->rb);
        }
    }
}

static lk_status transpose_run(const q4_weight *w, void *dst, q4_weight *wt, int n_threads,
                               par_fn fn, q4_decode_fn dec, q8_tile_fn tile)
{
    if (w->qtype < LK_QTYPE_Q4_0 || w->qtype >= LK_QTYPE_COUNT)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "int8 transposed copy: weight type %s is not quantised (hint: plain "
                           "weights take the f32 path)",
                           lk_qtype_name((lk_qtype)w->qtype));
    tr_job j = {.w = w,
                .dst = dst,
                .rb = q4_row_bytes(LK_QTYPE_Q8_0, Q4_QK, w->out),
                .dec = dec,
                .tile = tile};
    par_for(n_threads, (w->in + Q4_QK - 1) / Q4_QK, fn, &j);
    return q4_weight_init(wt, LK_QTYPE_Q8_0, Q4_QK, w->in, w->out, dst);
}

lk_status q8_transpose_ref(const q4_weight *w, void *dst, q4_weight *wt, int n_threads)
{
    return transpose_run(w, dst, wt, n_threads, transpose_cols_ref, q4_decode_rows_ref,
                         q8_tile_ref);
}

lk_status q8_transpose_with(const q4_weight *w, void *dst, q4_weight *wt, int n_threads,
                            q4_decode_fn dec, q8_tile_fn tile)
{
    return transpose_run(w, dst, wt, n_threads, transpose_cols, dec, tile);
}

lk_status q8_transpose(const q4_weight *w, void *dst, q4_weight *wt, int n_threads)
{
    return q8_transpose_with(w, dst, wt, n_threads, q4_decoder(q4_kernels_get()),
                             q8_tiler(q8_kernels_get()));
}
