/* qk_quant.c — row quantisers of the GGUF types Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 * and IQ4_XS, bit-exact with what llama.cpp writes without an importance matrix.
 *
 * Reference: llama.cpp ggml-quants.c (quantize_row_{q4_1,q5_0,q5_1,q2_K,q3_K,q4_K,q5_K,q6_K}_ref,
 * and quantize_iq4_xs with NULL weights, i.e. quantize_row_iq4_nl_impl over super-blocks of 256
 * with ntry 7), which ggml_quantize_chunk runs when no imatrix is given; gguf-py 0.19.0's numpy
 * Q4_1 / Q5_0 / Q5_1 agree. Reimplemented from the algorithms with the same fp32 operations in the
 * same order; tests/gen/gen_gguf_quant.py makes the vectors from ggml itself. ggml compiles these
 * without contraction of a*b+c into fma (its base library has no -mfma); this file is compiled in
 * ISO C mode with -ffp-contract=off (CMakeLists.txt), so the roundings are the same. Float-to-int
 * conversions of Inf/NaN (undefined in C, ggml does them for subnormal scales) give the code x86
 * gives (trunc_code). Layouts: q4.h. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "q4.h"

#define QK_MIN(a, b)  ((a) < (b) ? (a) : (b))
#define QK_MAX(a, b)  ((a) > (b) ? (a) : (b))
#define GROUP_MAX_EPS 1e-15f /* ggml-quants.c */

/* ggml's nearest_int: round to nearest even through the fp32 bits of fval + 1.5*2^23 (exact for
 * |fval| < 2^22; outside, the same bits ggml gets). */
static int nearest_int(float fval)
{
    const float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* 1/d, or 0 when d is 0 (ggml's id). A subnormal d has an infinite inverse: its fp16 is 0, so the
 * block decodes to its offset whatever the codes, and the codes are those of trunc_code. */
static float inverse(float d)
{
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* ggml's (int8_t) / (uint8_t) cast of a code value v: in range (0 .. 32.5 for the callers) the
 * truncation; an Inf or NaN (x times the infinite inverse above) gives 0, what x86's cvttss2si
 * ("integer indefinite", 0x80000000) leaves in the low byte, and what gguf-py's numpy gives. */
static int trunc_code(float v)
{
    return isfinite(v) ? (int)v : 0;
}

/* ---- blocks of 32 ------------------------------------------------------------------------- */

/* Min and max of 32 values (FLT_MAX start, as ggml). */
static void min_max32(const float *x, float *min, float *max)
{
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < Q4_QK; j++) {
        if (x[j] < *min)
            *min = x[j];
        if (x[j] > *max)
            *max = x[j];
    }
}

void q4_quantize_q4_1(const float *x, int64_t n, q4_block_q4_1 *y)
{
    for (int64_t b = 0; b < n / Q4_QK; b++) {
        const float *xb = x + b * Q4_QK; /* [32] */
        float min, max;
        min_max32(xb, &min, &max);
        const float d = (max - min) / 15, id = inverse(d);
        y[b].d = q4_fp32_to_fp16(d);
        y[b].m = q4_fp32_to_fp16(min);
        for (int j = 0; j < 16; j++) {
            const int q0 = QK_MIN(15, trunc_code((xb[j] - min) * id + 0.5f));
            const int q1 = QK_MIN(15, trunc_code((xb[j + 16] - min) * id + 0.5f));
            y[b].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Nibbles and fifth bits of 32 5-bit codes into qs[16] and the little-endian qh[4]. */
static void pack_q5(const int *q, uint8_t *qh4, uint8_t *qs)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        qh |= (uint32_t)(q[j] >> 4 & 1) << j;
        qh |= (uint32_t)(q[j + 16] >> 4 & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++)
        qh4[k] = (uint8_t)(qh >> 8 * k);
}

void q4_quantize_q5_0(const float *x, int64_t n, q4_block_q5_0 *y)
{
    for (int64_t b = 0; b < n / Q4_QK; b++) {
        const float *xb = x + b * Q4_QK; /* [32] */
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < Q4_QK; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -16, id = inverse(d);
        y[b].d = q4_fp32_to_fp16(d);
        int q[Q4_QK];
        for (int j = 0; j < Q4_QK; j++)
            q[j] = QK_MIN(31, trunc_code(xb[j] * id + 16.5f));
        pack_q5(q, y[b].qh, y[b].qs);
    }
}

void q4_quantize_q5_1(const float *x, int64_t n, q4_block_q5_1 *y)
{
    for (int64_t b = 0; b < n / Q4_QK; b++) {
        const float *xb = x + b * Q4_QK; /* [32] */
        float min, max;
        min_max32(xb, &min, &max);
        const float d = (max - min) / 31, id = inverse(d);
        y[b].d = q4_fp32_to_fp16(d);
        y[b].m = q4_fp32_to_fp16(min);
        int q[Q4_QK];
        for (int j = 0; j < Q4_QK; j++) /* ggml does not clamp: (x-min)*id <= 31 + rounding */
            q[j] = trunc_code((xb[j] - min) * id + 0.5f) & 31;
        pack_q5(q, y[b].qh, y[b].qs);
    }
}

/* ---- k-quant helpers (ggml-quants.c) ------------------------------------------------------ */

/* The value of largest magnitude among x[n], with its sign (the first of equal ones). */
static float signed_absmax(const float *x, int n)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* Codes l = nearest_int(iscale*x) on -nmax..nmax-1 (stored as l + off in L unless L is NULL) and
 * the weighted sums of x*l and l*l with weights x² (ggml's rmse_type 1). */
static void qx_sums(const float *x, int n, int nmax, float iscale, int8_t *L, int off, float *sumlx,
                    float *suml2)
{
    *sumlx = *suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = QK_MAX(-nmax, QK_MIN(nmax - 1, nearest_int(iscale * x[i])));
        if (L)
            L[i] = (int8_t)(l + off);
        const float w = x[i] * x[i];
        *sumlx += w * x[i] * l;
        *suml2 += w * l * l;
    }
}

/* make_qx_quants with rmse_type 1 and no importance weights (Q6_K): the signed scale of n values
 * on the grid -nmax..nmax-1, codes L[i] + nmax in L. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    qx_sums(x, n, nmax, -nmax / max, L, nmax, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        const float iscale = -(nmax + 0.1f * is) / max;
        qx_sums(x, n, nmax, iscale, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            float unused_x, unused_2;
            qx_sums(x, n, nmax, iscale, L, nmax, &unused_x, &unused_2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* make_q3_quants with do_rmse (Q3_K): signed scale on -nmax..nmax-1, iteratively refined. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    qx_sums(x, n, nmax, -nmax / max, L, 0, &sumlx, &suml2);
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = QK_MAX(-nmax, QK_MIN(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* make_qkx2_quants: scale and min (returned negated in *the_min) of n values on 0..nmax, searched
 * over nstep+1 candidate scales under weighted squared (or absolute, use_mad) error. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              int use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)QK_MAX(0, QK_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = QK_MAX(0, QK_MIN(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Two bits per value: qs[32h + l] holds values 128h + l + 32s at bits 2s (Q2_K, Q3_K). */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < Q4_QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* ---- Q2_K ---------------------------------------------------------------------------------- */

static void q2_k_block(const float *x, q4_block_q2_k *y)
{
    uint8_t L[Q4_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l)
            weights[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                     0.1f, 15, 1);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = q4scale / max_scale;
        for (int j = 0; j < 16; ++j)
            y->scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
        y->d = q4_fp32_to_fp16(max_scale / q4scale);
    } else {
        memset(y->scales, 0, 16);
        y->d = q4_fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
        const float iscale = q4scale / max_min;
        for (int j = 0; j < 16; ++j)
            y->scales[j] = (uint8_t)(y->scales[j] | (unsigned)nearest_int(iscale * mins[j]) << 4);
        y->dmin = q4_fp32_to_fp16(max_min / q4scale);
    } else {
        y->dmin = q4_fp32_to_fp16(0.f);
    }
    for (int j = 0; j < 16; ++j) {
        const float d = q4_fp16_to_fp32(y->d) * (y->scales[j] & 0xF);
        if (!d)
            continue;
        const float dm = q4_fp16_to_fp32(y->dmin) * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (uint8_t)QK_MAX(0, QK_MIN(3, nearest_int((x[16 * j + ii] + dm) / d)));
    }
    pack_2bit(L, y->qs);
}

void q4_quantize_q2_k(const float *x, int64_t n, q4_block_q2_k *y)
{
    for (int64_t b = 0; b < n / Q4_QK_K; b++)
        q2_k_block(x + b * Q4_QK_K, y + b);
}

/* ---- Q3_K ---------------------------------------------------------------------------------- */

static void q3_k_block(const float *x, q4_block_q3_k *y)
{
    int8_t L[Q4_QK_K];
    float scales[16];
    for (int j = 0; j < 16; ++j)
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    const float max_scale = signed_absmax(scales, 16);
    memset(y->scales, 0, 12);
    if (max_scale) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
            int8_t l = (int8_t)nearest_int(iscale * scales[j]);
            l = (int8_t)(QK_MAX(-32, QK_MIN(31, l)) + 32);
            if (j < 8)
                y->scales[j] = (uint8_t)(l & 0xF);
            else
                y->scales[j - 8] = (uint8_t)(y->scales[j - 8] | (l & 0xF) << 4);
            l = (int8_t)(l >> 4);
            y->scales[j % 4 + 8] = (uint8_t)(y->scales[j % 4 + 8] | l << (2 * (j / 4)));
        }
        y->d = q4_fp32_to_fp16(1 / iscale);
    } else {
        y->d = q4_fp32_to_fp16(0.f);
    }
    for (int j = 0; j < 16; ++j) {
        int sc = j < 8 ? y->scales[j] & 0xF : y->scales[j - 8] >> 4;
        sc = (sc | ((y->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        const float d = q4_fp16_to_fp32(y->d) * sc;
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = QK_MAX(-4, QK_MIN(3, nearest_int(x[16 * j + ii] / d)));
            L[16 * j + ii] = (int8_t)(l + 4);
        }
    }
    /* high bit of value j in bit j/32 of hmask[j%32]; the low two bits packed as Q2_K */
    memset(y->hmask, 0, 32);
    uint8_t low[Q4_QK_K];
    for (int j = 0; j < Q4_QK_K; ++j) {
        int l = L[j];
        if (l > 3) {
            y->hmask[j % 32] = (uint8_t)(y->hmask[j % 32] | 1 << (j / 32));
            l -= 4;
        }
        low[j] = (uint8_t)l;
    }
    pack_2bit(low, y->qs);
}

void q4_quantize_q3_k(const float *x, int64_t n, q4_block_q3_k *y)
{
    for (int64_t b = 0; b < n / Q4_QK_K; b++)
        q3_k_block(x + b * Q4_QK_K, y + b);
}

/* ---- Q4_K and Q5_K ------------------------------------------------------------------------ */

/* Codes L[256] on 0..nmax and the packed 6-bit scales / mins (K_SCALE_SIZE bytes), d and dmin of
 * one Q4_K (nmax 15) or Q5_K (nmax 31) super-block. */
static void q45_k_codes(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                        uint8_t *packed, uint16_t *dh, uint16_t *dminh)
{
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        const float *xs = x + 32 * j; /* [32] */
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l)
            sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf(xs[l]);
        scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                     nstep, 0);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
        const uint8_t ls = (uint8_t)QK_MIN(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        const uint8_t lm = (uint8_t)QK_MIN(63, (uint8_t)nearest_int(inv_min * mins[j]));
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            packed[j - 4] = (uint8_t)(packed[j - 4] | (ls >> 4) << 6);
            packed[j] = (uint8_t)(packed[j] | (lm >> 4) << 6);
        }
    }
    *dh = q4_fp32_to_fp16(max_scale / 63.f);
    *dminh = q4_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        if (j < 4) { /* get_scale_min_k4 */
            sc = packed[j] & 63;
            m = packed[j + 4] & 63;
        } else {
            sc = (packed[j + 4] & 0xF) | (packed[j - 4] >> 6) << 4;
            m = (packed[j + 4] >> 4) | (packed[j] >> 6) << 4;
        }
        const float d = q4_fp16_to_fp32(*dh) * sc;
        if (!d)
            continue;
        const float dm = q4_fp16_to_fp32(*dminh) * m;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] =
                (uint8_t)QK_MAX(0, QK_MIN(nmax, nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

void q4_quantize_q4_k(const float *x, int64_t n, q4_block_q4_k *y)
{
    for (int64_t b = 0; b < n / Q4_QK_K; b++) {
        uint8_t L[Q4_QK_K];
        q45_k_codes(x + b * Q4_QK_K, 15, -1.f, 20, L, y[b].scales, &y[b].d, &y[b].dmin);
        for (int j = 0; j < Q4_QK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                y[b].qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

void q4_quantize_q5_k(const float *x, int64_t n, q4_block_q5_k *y)
{
    for (int64_t b = 0; b < n / Q4_QK_K; b++) {
        uint8_t L[Q4_QK_K];
        q45_k_codes(x + b * Q4_QK_K, 31, -0.5f, 15, L, y[b].scales, &y[b].d, &y[b].dmin);
        memset(y[b].qh, 0, 32);
        for (int j = 0; j < Q4_QK_K; j += 64) { /* fifth bits of sub-blocks j/32, j/32+1 */
            for (int l = 0; l < 32; ++l) {
                const int l1 = L[j + l], l2 = L[j + l + 32];
                y[b].qh[l] =
                    (uint8_t)(y[b].qh[l] | (l1 >> 4) << (j / 32) | (l2 >> 4) << (j / 32 + 1));
                y[b].qs[j / 2 + l] = (uint8_t)((l1 & 15) | (l2 & 15) << 4);
            }
        }
    }
}

/* ---- Q6_K ---------------------------------------------------------------------------------- */

static void q6_k_block(const float *x, q4_block_q6_k *y)
{
    int8_t L[Q4_QK_K];
    float scales[16];
    for (int ib = 0; ib < 16; ++ib)
        scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    const float max_scale = signed_absmax(scales, 16);
    if (fabsf(max_scale) < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -128.f / max_scale;
    y->d = q4_fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib)
        y->scales[ib] = (int8_t)QK_MIN(127, nearest_int(iscale * scales[ib]));
    for (int j = 0; j < 16; ++j) {
        const float d = q4_fp16_to_fp32(y->d) * y->scales[j];
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = QK_MAX(-32, QK_MIN(31, nearest_int(x[16 * j + ii] / d)));
            L[16 * j + ii] = (int8_t)(l + 32);
        }
    }
    for (int j = 0; j < Q4_QK_K; j += 128) {
        uint8_t *ql = y->ql + j / 2, *qh = y->qh + j / 4;
        for (int l = 0; l < 32; ++l) {
            const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | (q3 & 0xF) << 4);
            ql[l + 32] = (uint8_t)((q2 & 0xF) | (q4 & 0xF) << 4);
            qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}

void q4_quantize_q6_k(const float *x, int64_t n, q4_block_q6_k *y)
{
    for (int64_t b = 0; b < n / Q4_QK_K; b++)
        q6_k_block(x + b * Q4_QK_K, y + b);
}

/* ---- IQ4_XS -------------------------------------------------------------------------------- */

/* quantize_row_iq4_nl_impl(256, 32, ..., NULL weights, ntry 7): each block of 32 gets IQ4_NL's
 * searched scale, the super-block a fp16 d = -max_scale/32, each block a 6-bit ls with
 * scale d*(ls-32) from which its codes are taken. */
static void iq4_xs_block(const float *x, q4_block_iq4_xs *y)
{
    float scales[8];
    memset(y, 0, sizeof *y);
    for (int ib = 0; ib < 8; ++ib)
        scales[ib] = q4_iq4nl_block_scale(x + 32 * ib);
    const float d = -signed_absmax(scales, 8) / 32, id = d ? 1 / d : 0.f;
    y->d = q4_fp32_to_fp16(d);
    for (int ib = 0; ib < 8; ++ib) {
        const int l = QK_MAX(-32, QK_MIN(31, nearest_int(id * scales[ib])));
        const float dl = d * l, idl = dl ? 1 / dl : 0.f;
        const float *xb = x + 32 * ib;
        uint8_t *q = y->qs + 16 * ib;
        for (int j = 0; j < 16; ++j)
            q[j] = (uint8_t)(q4_iq4nl_index(idl * xb[j]) | q4_iq4nl_index(idl * xb[j + 16]) << 4);
        const int ls = l + 32;
        y->scales_l[ib / 2] = (uint8_t)(y->scales_l[ib / 2] | (ls & 0xF) << 4 * (ib % 2));
        y->scales_h = (uint16_t)(y->scales_h | (ls >> 4) << 2 * ib);
    }
}

void q4_quantize_iq4_xs(const float *x, int64_t n, q4_block_iq4_xs *y)
{
    for (int64_t b = 0; b < n / Q4_QK_K; b++)
        iq4_xs_block(x + b * Q4_QK_K, y + b);
}
