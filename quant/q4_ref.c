/* q4_ref.c — the plain-C specification of the quant/ world: NF4, Q4_0, IQ4_NL and Q8_0 row
 * quantisers and dequantisers, NF4 double quantisation, the reference decoder, and the reference
 * fused dequant-GEMM kernels (forward Y = X·Wᵀ, backward dX = dY·W) every SIMD variant is tested
 * against.
 *
 * References: bitsandbytes csrc (kQuantizeBlockwise, dQuantizeNF4, dQuantize, kDequantizeBlockwise)
 * and bitsandbytes/functional.py (create_dynamic_map, quantize_4bit); llama.cpp ggml-quants.c
 * (quantize_row_q4_0_ref, quantize_row_q8_0_ref, quantize_iq4_nl / quantize_row_iq4_nl_impl) and
 * ggml-common.h (block layouts). Reimplemented from the algorithms, bit-exact with them; this file
 * is compiled in ISO C mode, so the compiler does not contract a*b+c into fma (which would change
 * roundings). */
#include <math.h>
#include <string.h>

#include "q4.h"
#include "core/pool.h"
#include "core/status.h"

/* bitsandbytes get_4bit_type("nf4"): quantiles of N(0,1) normalised to [-1, 1], as fp32. */
const float q4_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* llama.cpp kvalues_iq4nl. */
const int8_t q4_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted; the
 * exact fp32 values come from torch.linspace (tests/gen/gen_nf4.py --c-table prints this). */
const float q4_dynamic_map[256] = {
    -0x1.fc6666p-1f,  -0x1.f53332p-1f,  -0x1.eep-1f,      -0x1.e6ccccp-1f,  -0x1.df9998p-1f,
    -0x1.d86666p-1f,  -0x1.d13334p-1f,  -0x1.cap-1f,      -0x1.c2ccccp-1f,  -0x1.bb9998p-1f,
    -0x1.b46666p-1f,  -0x1.ad3332p-1f,  -0x1.a6p-1f,      -0x1.9eccccp-1f,  -0x1.979998p-1f,
    -0x1.906666p-1f,  -0x1.893334p-1f,  -0x1.82p-1f,      -0x1.7acccep-1f,  -0x1.73999ap-1f,
    -0x1.6c6668p-1f,  -0x1.653334p-1f,  -0x1.5ep-1f,      -0x1.56cccep-1f,  -0x1.4f999ap-1f,
    -0x1.486666p-1f,  -0x1.413334p-1f,  -0x1.3ap-1f,      -0x1.32ccccp-1f,  -0x1.2b999ap-1f,
    -0x1.246668p-1f,  -0x1.1d3334p-1f,  -0x1.16p-1f,      -0x1.0eccccp-1f,  -0x1.07999ap-1f,
    -0x1.006666p-1f,  -0x1.f26668p-2f,  -0x1.e4p-2f,      -0x1.d59998p-2f,  -0x1.c73334p-2f,
    -0x1.b8ccccp-2f,  -0x1.aa6664p-2f,  -0x1.9cp-2f,      -0x1.8d9998p-2f,  -0x1.7f3334p-2f,
    -0x1.70ccccp-2f,  -0x1.626664p-2f,  -0x1.54p-2f,      -0x1.459998p-2f,  -0x1.373334p-2f,
    -0x1.28ccccp-2f,  -0x1.1a6668p-2f,  -0x1.0cp-2f,      -0x1.fb3334p-3f,  -0x1.de6668p-3f,
    -0x1.c1999ap-3f,  -0x1.a4ccccp-3f,  -0x1.88p-3f,      -0x1.6b3332p-3f,  -0x1.4e6666p-3f,
    -0x1.31999ap-3f,  -0x1.14ccccp-3f,  -0x1.fp-4f,       -0x1.b66668p-4f,  -0x1.93d70ap-4f,
    -0x1.8851eap-4f,  -0x1.7ccccep-4f,  -0x1.7147aep-4f,  -0x1.65c29p-4f,   -0x1.5a3d7p-4f,
    -0x1.4eb85p-4f,   -0x1.433334p-4f,  -0x1.37ae14p-4f,  -0x1.2c28f6p-4f,  -0x1.20a3d6p-4f,
    -0x1.151ebap-4f,  -0x1.09999ap-4f,  -0x1.fc28f4p-5f,  -0x1.e51ebap-5f,  -0x1.ce147ap-5f,
    -0x1.b70a3ep-5f,  -0x1.ap-5f,       -0x1.88f5c2p-5f,  -0x1.71eb86p-5f,  -0x1.5ae146p-5f,
    -0x1.43d70ap-5f,  -0x1.2ccccep-5f,  -0x1.15c28ep-5f,  -0x1.fd70a4p-6f,  -0x1.cf5c26p-6f,
    -0x1.a147aep-6f,  -0x1.733334p-6f,  -0x1.451eb8p-6f,  -0x1.170a3ep-6f,  -0x1.d1eb86p-7f,
    -0x1.75c29p-7f,   -0x1.3e76c8p-7f,  -0x1.2c083p-7f,   -0x1.19999ap-7f,  -0x1.072b02p-7f,
    -0x1.e978d4p-8f,  -0x1.c49ba6p-8f,  -0x1.9fbe76p-8f,  -0x1.7ae148p-8f,  -0x1.56041ap-8f,
    -0x1.3126e8p-8f,  -0x1.0c49bap-8f,  -0x1.ced914p-9f,  -0x1.851eb8p-9f,  -0x1.3b645ap-9f,
    -0x1.e353f8p-10f, -0x1.4fdf3ap-10f, -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f,
    -0x1.3dd982p-11f, -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, -0x1.040bfep-17f,
    -0x1.b43528p-19f, -0x1.27476ep-21f, 0x0p+0f,          0x1.27476ep-21f,  0x1.b43528p-19f,
    0x1.040bfep-17f,  0x1.64840cp-16f,  0x1.6f0068p-15f,  0x1.15df66p-14f,  0x1.743e96p-14f,
    0x1.47ae16p-13f,  0x1.19ce0ap-12f,  0x1.8fc506p-12f,  0x1.02de02p-11f,  0x1.3dd982p-11f,
    0x1.78d5p-11f,    0x1.b3d07cp-11f,  0x1.eecbfep-11f,  0x1.4fdf3ap-10f,  0x1.e353f8p-10f,
    0x1.3b645ap-9f,   0x1.851eb8p-9f,   0x1.ced914p-9f,   0x1.0c49bap-8f,   0x1.3126e8p-8f,
    0x1.56041ap-8f,   0x1.7ae148p-8f,   0x1.9fbe76p-8f,   0x1.c49ba6p-8f,   0x1.e978d4p-8f,
    0x1.072b02p-7f,   0x1.19999ap-7f,   0x1.2c083p-7f,    0x1.3e76c8p-7f,   0x1.75c29p-7f,
    0x1.d1eb86p-7f,   0x1.170a3ep-6f,   0x1.451eb8p-6f,   0x1.733334p-6f,   0x1.a147aep-6f,
    0x1.cf5c26p-6f,   0x1.fd70a4p-6f,   0x1.15c28ep-5f,   0x1.2ccccep-5f,   0x1.43d70ap-5f,
    0x1.5ae146p-5f,   0x1.71eb86p-5f,   0x1.88f5c2p-5f,   0x1.ap-5f,        0x1.b70a3ep-5f,
    0x1.ce147ap-5f,   0x1.e51ebap-5f,   0x1.fc28f4p-5f,   0x1.09999ap-4f,   0x1.151ebap-4f,
    0x1.20a3d6p-4f,   0x1.2c28f6p-4f,   0x1.37ae14p-4f,   0x1.433334p-4f,   0x1.4eb85p-4f,
    0x1.5a3d7p-4f,    0x1.65c29p-4f,    0x1.7147aep-4f,   0x1.7ccccep-4f,   0x1.8851eap-4f,
    0x1.93d70ap-4f,   0x1.b66668p-4f,   0x1.fp-4f,        0x1.14ccccp-3f,   0x1.31999ap-3f,
    0x1.4e6666p-3f,   0x1.6b3332p-3f,   0x1.88p-3f,       0x1.a4ccccp-3f,   0x1.c1999ap-3f,
    0x1.de6668p-3f,   0x1.fb3334p-3f,   0x1.0cp-2f,       0x1.1a6668p-2f,   0x1.28ccccp-2f,
    0x1.373334p-2f,   0x1.459998p-2f,   0x1.54p-2f,       0x1.626664p-2f,   0x1.70ccccp-2f,
    0x1.7f3334p-2f,   0x1.8d9998p-2f,   0x1.9cp-2f,       0x1.aa6664p-2f,   0x1.b8ccccp-2f,
    0x1.c73334p-2f,   0x1.d59998p-2f,   0x1.e4p-2f,       0x1.f26668p-2f,   0x1.006666p-1f,
    0x1.07999ap-1f,   0x1.0eccccp-1f,   0x1.16p-1f,       0x1.1d3334p-1f,   0x1.246668p-1f,
    0x1.2b999ap-1f,   0x1.32ccccp-1f,   0x1.3ap-1f,       0x1.413334p-1f,   0x1.486666p-1f,
    0x1.4f999ap-1f,   0x1.56cccep-1f,   0x1.5ep-1f,       0x1.653334p-1f,   0x1.6c6668p-1f,
    0x1.73999ap-1f,   0x1.7acccep-1f,   0x1.82p-1f,       0x1.893334p-1f,   0x1.906666p-1f,
    0x1.979998p-1f,   0x1.9eccccp-1f,   0x1.a6p-1f,       0x1.ad3332p-1f,   0x1.b46666p-1f,
    0x1.bb9998p-1f,   0x1.c2ccccp-1f,   0x1.cap-1f,       0x1.d13334p-1f,   0x1.d86666p-1f,
    0x1.df9998p-1f,   0x1.e6ccccp-1f,   0x1.eep-1f,       0x1.f53332p-1f,   0x1.fc6666p-1f,
    0x1p+0f,
};

/* ---- NF4 ------------------------------------------------------------------------------------ */

/* dQuantizeNF4: a comparison tree over the midpoints between neighbouring codes. `v > t` sends
 * a value equal to a midpoint to the lower code; NaN (0 * inf of an all-zero block) fails every
 * comparison and lands on code 0. */
uint8_t q4_nf4_index(float v)
{
    if (v > 0.03979014977812767f) {
        if (v > 0.3893125355243683f) {
            if (v > 0.6427869200706482f)
                return v > 0.8614784181118011f ? 15 : 14;
            return v > 0.5016634166240692f ? 13 : 12;
        }
        if (v > 0.2035212516784668f)
            return v > 0.2920137718319893f ? 11 : 10;
        return v > 0.1202552504837513f ? 9 : 8;
    }
    if (v > -0.33967943489551544f) {
        if (v > -0.13791173323988914f)
            return v > -0.045525018125772476f ? 7 : 6;
        return v > -0.23460740596055984f ? 5 : 4;
    }
    if (v > -0.6106329262256622f)
        return v > -0.4599952697753906f ? 3 : 2;
    return v > -0.8480964004993439f ? 1 : 0;
}

void q4_quantize_nf4(const float *x, int64_t n, int block, uint8_t *codes, float *absmax)
{
    for (int64_t b = 0; b < n / block; b++) {
        const float *xb = x + b * block; /* [block] */
        float amax = 0.0f;
        for (int j = 0; j < block; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        absmax[b] = amax;
        /* bitsandbytes multiplies by the fp32 reciprocal (not a division per value) */
        float inv = amax > 0.0f ? 1.0f / amax : 0.0f;
        uint8_t *cb = codes + b * (block / 2);
        for (int j = 0; j < block; j += 2) {
            /* amax == 0: bitsandbytes computes 0 * inf = NaN, which the tree maps to code 0 */
            uint8_t hi = amax > 0.0f ? q4_nf4_index(xb[j] * inv) : 0;
            uint8_t lo = amax > 0.0f ? q4_nf4_index(xb[j + 1] * inv) : 0;
            cb[j / 2] = (uint8_t)(hi << 4 | lo); /* first value in the HIGH nibble */
        }
    }
}

/* ---- 8-bit dynamic map (NF4 double quantisation) ------------------------------------------- */

uint8_t q4_dynamic_index(float x)
{
    /* bitsandbytes dQuantize<0>: a 7-step binary search from the middle of the sorted map, then
     * the nearer of the last pivot and its bracketing neighbour (ties go to the pivot). */
    const float *code = q4_dynamic_map;
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f, val = code[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255)
        upper = code[upper_pivot];
    if (lower_pivot == 0)
        lower = code[lower_pivot];
    if (x > val) {
        float mid = (upper + val) * 0.5f;
        return (uint8_t)(x > mid ? upper_pivot : pivot);
    }
    float mid = (lower + val) * 0.5f;
    return (uint8_t)(x < mid ? lower_pivot : pivot);
}

void q4_quantize_dynamic(const float *x, int64_t n, int bs, uint8_t *codes, float *absmax)
{
    for (int64_t b = 0; b * bs < n; b++) {
        int64_t len = n - b * bs < bs ? n - b * bs : bs;
        const float *xb = x + b * bs;
        float amax = 0.0f;
        for (int64_t j = 0; j < len; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        absmax[b] = amax;
        float inv = 1.0f / amax; /* amax == 0: inf, and 0*inf = NaN, as on the GPU */
        for (int64_t j = 0; j < len; j++)
            codes[b * bs + j] = amax > 0.0f ? q4_dynamic_index(xb[j] * inv) : 0;
    }
}

void q4_nf4_dq_quantize(const float *absmax, int64_t n, q4_nf4_dq *dq)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += absmax[i];
    /* torch's fp32 mean may differ from this in the last ulp; the offset is stored, so a reader
     * reproduces our absmax exactly either way */
    dq->n = n;
    dq->offset = n > 0 ? (float)(sum / (double)n) : 0.0f;
    /* the nested blocks are independent: centre one at a time */
    for (int64_t b0 = 0; b0 < n; b0 += Q4_DQ_BLOCK) {
        const int64_t len = n - b0 < Q4_DQ_BLOCK ? n - b0 : Q4_DQ_BLOCK;
        float centred[Q4_DQ_BLOCK];
        for (int64_t i = 0; i < len; i++)
            centred[i] = absmax[b0 + i] - dq->offset;
        q4_quantize_dynamic(centred, len, Q4_DQ_BLOCK, dq->codes + b0,
                            dq->scale + b0 / Q4_DQ_BLOCK);
    }
}

void q4_nf4_dq_dequantize(const q4_nf4_dq *dq, float *absmax)
{
    /* kDequantizeBlockwise: code[q] * absmax2[i/256], then `absmax += offset` in fp32 */
    for (int64_t i = 0; i < dq->n; i++) {
        float v = q4_dynamic_map[dq->codes[i]] * dq->scale[i / Q4_DQ_BLOCK];
        absmax[i] = v + dq->offset;
    }
}

lk_status q4_nf4_from_bnb(const uint8_t *codes, const float *absmax, int64_t out, int64_t in,
                          int block, void *dst)
{
    if (!q4_valid(LK_QTYPE_NF4, block) || out <= 0 || in <= 0)
        return status_fail(LK_ERR_ARG, "bnb NF4: shape [%lld, %lld] or blocksize %d invalid",
                           (long long)out, (long long)in, block);
    if (in % block)
        return status_fail(LK_ERR_SHAPE,
                           "bnb NF4: row length %lld is not a multiple of blocksize %d, so "
                           "blocks straddle rows (hint: dequantise and re-quantise this tensor)",
                           (long long)in, block);
    const int64_t nb = in / block;
    const size_t rb = q4_row_bytes(LK_QTYPE_NF4, block, in);
    for (int64_t r = 0; r < out; r++) {
        uint8_t *row = (uint8_t *)dst + (size_t)r * rb;
        memcpy(row, codes + r * (in / 2), (size_t)(in / 2));
        memcpy(row + in / 2, absmax + r * nb, (size_t)nb * sizeof(float));
    }
    return LK_OK;
}

/* ---- GGUF formats ---------------------------------------------------------------------------- */

void q4_quantize_q4_0(const float *x, int64_t n, q4_block_q4_0 *y)
{
    for (int64_t b = 0; b < n / Q4_QK; b++) {
        const float *xb = x + b * Q4_QK;
        float amax = 0.0f, max = 0.0f; /* max keeps the sign of the largest magnitude */
        for (int j = 0; j < Q4_QK; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8; /* the extreme value maps to -8 exactly */
        /* a subnormal d has an infinite inverse: llama.cpp then converts Inf/NaN to int
         * (undefined in C; x86 leaves 0 in the low byte, which is taken here); its fp16 is 0
         * anyway, so every value decodes to 0 whatever its code */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = q4_fp32_to_fp16(d);
        for (int j = 0; j < Q4_QK / 2; j++) {
            const float x0 = xb[j] * id + 8.5f, x1 = xb[j + 16] * id + 8.5f;
            /* x*id is in [-8, 8]; +8.5 then truncation rounds half up to 0..16, clamped to 15 */
            int q0 = isfinite(x0) ? (int8_t)x0 : 0, q1 = isfinite(x1) ? (int8_t)x1 : 0;
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[b].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void q4_quantize_q8_0(const float *x, int64_t n, q4_block_q8_0 *y)
{
    for (int64_t b = 0; b < n / Q4_QK; b++) {
        const float *xb = x + b * Q4_QK;
        float amax = 0.0f;
        for (int j = 0; j < Q4_QK; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127;
        const float id = d != 0.0f && isfinite(1.0f / d) ? 1.0f / d : 0.0f; /* as in Q4_0 */
        y[b].d = q4_fp32_to_fp16(d);
        for (int j = 0; j < Q4_QK; j++)
            y[b].qs[j] = (int8_t)roundf(xb[j] * id); /* half away from zero, as roundf */
    }
}

/* llama.cpp best_index_int8: index of the grid value nearest to x (ties to the upper one). */
int q4_iq4nl_index(float x)
{
    const int8_t *val = q4_iq4nl_values;
    if (x <= val[0])
        return 0;
    if (x >= val[15])
        return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (x < val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* One IQ4_NL block: llama.cpp quantize_row_iq4_nl_impl with super block = block = 32, no
 * importance weights (weight = x²) and ntry = 7. Returns the fp32 scale. */
float q4_iq4nl_block_scale(const float *xb)
{
    const int8_t *values = q4_iq4nl_values;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < Q4_QK; j++) {
        if (fabsf(xb[j]) > amax) {
            amax = fabsf(xb[j]);
            max = xb[j];
        }
    }
    if (amax < 1e-15f) /* GROUP_MAX_EPS */
        return 0.0f;
    /* first guess: the extreme value on the grid's -127 end */
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < Q4_QK; j++) {
        float q = values[q4_iq4nl_index(id * xb[j])];
        float w = xb[j] * xb[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    /* 15 more candidate scales around it; keep the weighted least-squares best */
    for (int itry = -7; itry <= 7; itry++) {
        id = (itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < Q4_QK; j++) {
            float q = values[q4_iq4nl_index(id * xb[j])];
            float w = xb[j] * xb[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

void q4_quantize_iq4_nl(const float *x, int64_t n, q4_block_iq4_nl *y)
{
    for (int64_t b = 0; b < n / Q4_QK; b++) {
        const float *xb = x + b * Q4_QK;
        float d = q4_iq4nl_block_scale(xb);
        y[b].d = q4_fp32_to_fp16(d);
        /* codes from the fp32 scale (not the fp16-rounded one), as llama.cpp does */
        float id = d != 0.0f ? 1 / d : 0.0f;
        uint8_t L[Q4_QK];
        for (int j = 0; j < Q4_QK; j++)
            L[j] = (uint8_t)q4_iq4nl_index(id * xb[j]);
        for (int j = 0; j < 16; j++)
            y[b].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

/* ---- rows ------------------------------------------------------------------------------------ */

int q4_valid(int qtype, int block)
{
    switch (qtype) {
    case LK_QTYPE_F32:
    case LK_QTYPE_F16:
    case LK_QTYPE_BF16:
    case LK_QTYPE_Q4_0:
    case LK_QTYPE_Q8_0:
    case LK_QTYPE_IQ4_NL: return 1;
    case LK_QTYPE_NF4:
        return block >= Q4_NF4_BLOCK_MIN && block <= Q4_NF4_BLOCK_MAX && !(block & (block - 1));
    default: return qtype > LK_QTYPE_NF4 && qtype < LK_QTYPE_COUNT; /* the GGUF-only types */
    }
}

int q4_can_quantize(int qtype)
{
    return qtype >= LK_QTYPE_F32 && qtype < LK_QTYPE_COUNT;
}

int64_t q4_block_len(int qtype, int block)
{
    switch (qtype) {
    case LK_QTYPE_F32:
    case LK_QTYPE_F16:
    case LK_QTYPE_BF16: return 1;
    case LK_QTYPE_NF4: return block;
    default: return q4_is_kquant(qtype) ? Q4_QK_K : Q4_QK;
    }
}

size_t q4_row_bytes(int qtype, int block, int64_t n)
{
    if (!q4_valid(qtype, block) || n <= 0)
        return 0;
    int64_t bl = q4_block_len(qtype, block), nb = (n + bl - 1) / bl;
    switch (qtype) {
    case LK_QTYPE_F32: return (size_t)n * 4;
    case LK_QTYPE_F16:
    case LK_QTYPE_BF16: return (size_t)n * 2;
    case LK_QTYPE_NF4: return (size_t)nb * (size_t)(block / 2 + 4); /* codes, then absmax */
    default: return (size_t)nb * q4_block_bytes(qtype);
    }
}

/* Quantise whole blocks x[nfull] (nfull a multiple of the block) into the row at dst. For NF4
 * the codes of block b go to dst + b*block/2 and its absmax to the row's absmax array. */
static void quantize_blocks(int qtype, int block, const float *x, int64_t nfull, int64_t b0,
                            int64_t nb_row, uint8_t *dst)
{
    switch (qtype) {
    case LK_QTYPE_Q4_0: q4_quantize_q4_0(x, nfull, (q4_block_q4_0 *)dst + b0); break;
    case LK_QTYPE_Q8_0: q4_quantize_q8_0(x, nfull, (q4_block_q8_0 *)dst + b0); break;
    case LK_QTYPE_IQ4_NL: q4_quantize_iq4_nl(x, nfull, (q4_block_iq4_nl *)dst + b0); break;
    case LK_QTYPE_Q4_1: q4_quantize_q4_1(x, nfull, (q4_block_q4_1 *)(void *)dst + b0); break;
    case LK_QTYPE_Q5_0: q4_quantize_q5_0(x, nfull, (q4_block_q5_0 *)(void *)dst + b0); break;
    case LK_QTYPE_Q5_1: q4_quantize_q5_1(x, nfull, (q4_block_q5_1 *)(void *)dst + b0); break;
    case LK_QTYPE_Q2_K: q4_quantize_q2_k(x, nfull, (q4_block_q2_k *)(void *)dst + b0); break;
    case LK_QTYPE_Q3_K: q4_quantize_q3_k(x, nfull, (q4_block_q3_k *)(void *)dst + b0); break;
    case LK_QTYPE_Q4_K: q4_quantize_q4_k(x, nfull, (q4_block_q4_k *)(void *)dst + b0); break;
    case LK_QTYPE_Q5_K: q4_quantize_q5_k(x, nfull, (q4_block_q5_k *)(void *)dst + b0); break;
    case LK_QTYPE_Q6_K: q4_quantize_q6_k(x, nfull, (q4_block_q6_k *)(void *)dst + b0); break;
    case LK_QTYPE_IQ4_XS: q4_quantize_iq4_xs(x, nfull, (q4_block_iq4_xs *)(void *)dst + b0); break;
    case LK_QTYPE_NF4: {
        float *absmax = (float *)(void *)(dst + nb_row * (block / 2));
        uint8_t *codes = dst + b0 * (block / 2);
        float amax[Q4_NF4_BLOCK_MAX / Q4_NF4_BLOCK_MIN];
        /* absmax may be unaligned for the compiler's taste: go through memcpy */
        for (int64_t done = 0; done < nfull; done += (int64_t)block * 128) {
            int64_t len = nfull - done < (int64_t)block * 128 ? nfull - done : (int64_t)block * 128;
            q4_quantize_nf4(x + done, len, block, codes + done / 2, amax);
            memcpy(absmax + b0 + done / block, amax, (size_t)(len / block) * sizeof(float));
        }
        break;
    }
    default: LK_ASSERT(0);
    }
}

void q4_quantize_row(int qtype, int block, const float *x, int64_t n, void *dst)
{
    uint8_t *d = dst;
    LK_ASSERT(q4_can_quantize(qtype));
    switch (qtype) {
    case LK_QTYPE_F32: memcpy(dst, x, (size_t)n * 4); return;
    case LK_QTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = q4_fp32_to_fp16(x[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return;
    case LK_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = q4_fp32_to_bf16(x[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return;
    default: break;
    }
    int64_t bl = q4_block_len(qtype, block), nb = (n + bl - 1) / bl, nfull = n / bl * bl;
    if (nfull > 0)
        quantize_blocks(qtype, block, x, nfull, 0, nb, d);
    if (nfull < n) { /* the last block, zero-padded */
        float pad[Q4_NF4_BLOCK_MAX > Q4_QK ? Q4_NF4_BLOCK_MAX : Q4_QK] = {0};
        LK_ASSERT(bl <= (int64_t)(sizeof pad / sizeof pad[0]));
        memcpy(pad, x + nfull, (size_t)(n - nfull) * sizeof(float));
        quantize_blocks(qtype, block, pad, bl, nfull / bl, nb, d);
    }
}

/* The GGUF-only types, a 32-value span at a time (the last one partial). */
static void decode_gguf(const q4_weight *w, const uint8_t *row, int64_t k0, int64_t n, float *dst)
{
    for (int64_t i = 0; i < n; i += Q4_QK) {
        if (n - i >= Q4_QK) {
            q4_decode32_gguf(w->qtype, row, k0 + i, dst + i);
        } else {
            float span[Q4_QK];
            q4_decode32_gguf(w->qtype, row, k0 + i, span);
            memcpy(dst + i, span, (size_t)(n - i) * sizeof(float));
        }
    }
}

void q4_decode_ref(const q4_weight *w, int64_t r, int64_t k0, int64_t n, float *dst)
{
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
    if (w->qtype > LK_QTYPE_NF4) {
        decode_gguf(w, row, k0, n, dst);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t k = k0 + i, b = k / Q4_QK, j = k % Q4_QK;
        switch (w->qtype) {
        case LK_QTYPE_Q4_0: {
            const q4_block_q4_0 *blk = (const q4_block_q4_0 *)row + b;
            int q = j < 16 ? blk->qs[j] & 15 : blk->qs[j - 16] >> 4;
            dst[i] = (float)(q - 8) * q4_fp16_to_fp32(blk->d);
            break;
        }
        case LK_QTYPE_IQ4_NL: {
            const q4_block_iq4_nl *blk = (const q4_block_iq4_nl *)row + b;
            int q = j < 16 ? blk->qs[j] & 15 : blk->qs[j - 16] >> 4;
            dst[i] = q4_fp16_to_fp32(blk->d) * (float)q4_iq4nl_values[q];
            break;
        }
        case LK_QTYPE_Q8_0: {
            const q4_block_q8_0 *blk = (const q4_block_q8_0 *)row + b;
            dst[i] = q4_fp16_to_fp32(blk->d) * (float)blk->qs[j];
            break;
        }
        case LK_QTYPE_NF4: {
            int64_t nb = (w->in + w->block - 1) / w->block;
            float amax;
            memcpy(&amax, row + nb * (w->block / 2) + (k / w->block) * 4, 4);
            uint8_t byte = row[k / 2];
            int q = (k & 1) ? byte & 15 : byte >> 4; /* even k: HIGH nibble */
            dst[i] = q4_nf4_code[q] * amax;
            break;
        }
        default: LK_ASSERT(0);
        }
    }
}

void q4_decode_rows_ref(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n,
                        float *dst, int64_t ld)
{
    for (int64_t r = 0; r < nr; r++)
        q4_decode_ref(w, r0 + r, k0, n, dst + r * ld);
}

void q4_dequantize_row(int qtype, int block, const void *src, int64_t n, float *y)
{
    const uint8_t *s = src;
    switch (qtype) {
    case LK_QTYPE_F32: memcpy(y, src, (size_t)n * 4); return;
    case LK_QTYPE_F16:
    case LK_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            y[i] = qtype == LK_QTYPE_F16 ? q4_fp16_to_fp32(h) : q4_bf16_to_fp32(h);
        }
        return;
    default: break;
    }
    q4_weight w = {qtype, (int)q4_block_len(qtype, block), 1, n, q4_row_bytes(qtype, block, n), src,
                   0};
    int64_t nfull = n / Q4_QK * Q4_QK;
    q4_decode_ref(&w, 0, 0, nfull, y);
    if (nfull < n) {
        float tail[Q4_QK];
        q4_decode_ref(&w, 0, nfull, Q4_QK, tail);
        memcpy(y + nfull, tail, (size_t)(n - nfull) * sizeof(float));
    }
}

lk_status q4_weight_init(q4_weight *w, int qtype, int block, int64_t out, int64_t in,
                         const void *data)
{
    if (qtype < LK_QTYPE_Q4_0 || qtype >= LK_QTYPE_COUNT)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "quantised weight: type %s has no fused kernel (hint: plain f32/f16/"
                           "bf16 weights go through cblas_sgemm)",
                           lk_qtype_name((lk_qtype)qtype));
    if (!q4_valid(qtype, block))
        return status_fail(LK_ERR_ARG,
                           "quantised weight: NF4 blocksize %d invalid, expected a power of two "
                           "in 32..4096",
                           block);
    if (out <= 0 || in <= 0 || !data)
        return status_fail(LK_ERR_ARG, "quantised weight: shape [%lld, %lld] or data invalid",
                           (long long)out, (long long)in);
    if (q4_is_kquant(qtype) && in % Q4_QK_K)
        return status_fail(LK_ERR_SHAPE,
                           "quantised weight: %s rows of %lld values, expected a multiple of %d "
                           "(a k-quant super-block)",
                           lk_qtype_name((lk_qtype)qtype), (long long)in, Q4_QK_K);
    w->qtype = qtype;
    w->block = (int)q4_block_len(qtype, block);
    w->out = out;
    w->in = in;
    w->row_bytes = q4_row_bytes(qtype, block, in);
    w->data = data;
    w->ilv = 0;
    return LK_OK;
}

#define ERR_SPAN 256 /* values of a row decoded at a time for the round-trip error */

/* Squared-error sum and max |error| of row x[in] against its quantised form q (decoded
 * ERR_SPAN values at a time, the values q4_dequantize_row gives). */
static void row_error(int qtype, int block, const float *x, const uint8_t *q, int64_t in,
                      double *sq, double *mx)
{
    const q4_weight w = {
        qtype, (int)q4_block_len(qtype, block), 1, in, q4_row_bytes(qtype, block, in), q, 0};
    const size_t es = qtype == LK_QTYPE_F32 ? 4 : 2; /* plain types: bytes per value */
    const int plain = qtype == LK_QTYPE_F32 || qtype == LK_QTYPE_F16 || qtype == LK_QTYPE_BF16;
    float back[ERR_SPAN];
    for (int64_t k0 = 0; k0 < in; k0 += ERR_SPAN) {
        const int64_t n = in - k0 < ERR_SPAN ? in - k0 : ERR_SPAN;
        if (plain)
            q4_dequantize_row(qtype, block, q + (size_t)k0 * es, n, back);
        else
            q4_decode_ref(&w, 0, k0, n, back);
        for (int64_t k = 0; k < n; k++) {
            double e = fabs((double)x[k0 + k] - (double)back[k]);
            *sq += e * e;
            *mx = e > *mx ? e : *mx;
        }
    }
}

typedef struct {
    int qtype, block, stats;
    const float *src;
    int64_t in;
    void *dst;
    size_t rb;
    double sq[POOL_MAX_THREADS], mx[POOL_MAX_THREADS]; /* each thread's error sums */
} quantize_job;

static void quantize_rows(void *ctx, int64_t r0, int64_t r1, int thread)
{
    quantize_job *j = ctx;
    double sq = 0.0, mx = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *row = (uint8_t *)j->dst + (size_t)r * j->rb;
        q4_quantize_row(j->qtype, j->block, j->src + r * j->in, j->in, row);
        if (j->stats)
            row_error(j->qtype, j->block, j->src + r * j->in, row, j->in, &sq, &mx);
    }
    j->sq[thread] = sq;
    j->mx[thread] = mx;
}

void q4_quantize_matrix(int qtype, int block, const float *src, int64_t out, int64_t in, void *dst,
                        int n_threads, double *rmse, double *max_abs)
{
    quantize_job j = {.qtype = qtype,
                      .block = block,
                      .stats = rmse || max_abs,
                      .src = src,
                      .in = in,
                      .dst = dst,
                      .rb = q4_row_bytes(qtype, block, in)};
    par_for(n_threads, out, quantize_rows, &j);
    double sq = 0.0, mx = 0.0; /* in thread order: the same sums run to run */
    for (int t = 0; t < POOL_MAX_THREADS; t++) {
        sq += j.sq[t];
        mx = j.mx[t] > mx ? j.mx[t] : mx;
    }
    if (rmse)
        *rmse = sqrt(sq / ((double)out * (double)in));
    if (max_abs)
        *max_abs = mx;
}

/* ---- reference kernels ------------------------------------------------------------------------
 */

/* Work of the reference forward: one decoded row [in_pad] per thread. */
size_t q4_gemm_fwd_work_ref(const q4_weight *w, int64_t T, int n_threads)
{
    const int64_t in_pad = (w->in + Q4_QK - 1) / Q4_QK * Q4_QK;
    const size_t row = q4_slot((size_t)in_pad * sizeof(float));
    return T > 0 ? q4_work_size((size_t)resolve_threads(n_threads) * row) : 0;
}

/* Work of the reference backward: one block of sums [T][32] (double) per thread. */
size_t q4_gemm_bwd_work_ref(const q4_weight *w, int64_t T, int n_threads)
{
    (void)w;
    const size_t acc = q4_slot((size_t)T * Q4_QK * sizeof(double));
    return T > 0 ? q4_work_size((size_t)resolve_threads(n_threads) * acc) : 0;
}

/* Y[T,out] = X[T,in]·Wᵀ + bias: one decoded row at a time, dot products accumulated in double
 * (the reference is the accurate answer, not a model of any summation order). */
typedef struct {
    const q4_weight *w;
    const float *bias, *X, *dY;
    float *Y, *dX;
    int64_t T;
    uint8_t *slots; /* one per thread */
    size_t slot;
} ref_job;

static void fwd_rows_ref(void *ctx, int64_t o0, int64_t o1, int thread)
{
    const ref_job *j = ctx;
    const q4_weight *w = j->w;
    const int64_t in = w->in, out = w->out, in_pad = (in + Q4_QK - 1) / Q4_QK * Q4_QK;
    float *wrow = (float *)(void *)(j->slots + (size_t)thread * j->slot); /* [in_pad] */
    for (int64_t o = o0; o < o1; o++) {
        q4_decode_ref(w, o, 0, in_pad, wrow);
        for (int64_t t = 0; t < j->T; t++) {
            const float *x = j->X + t * in; /* [in] */
            double acc = 0.0;
            for (int64_t k = 0; k < in; k++)
                acc += (double)x[k] * (double)wrow[k];
            j->Y[t * out + o] = (float)(acc + (j->bias ? (double)j->bias[o] : 0.0));
        }
    }
}

void q4_gemm_fwd_ref(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int n_threads, void *work, size_t work_size)
{
    if (T <= 0)
        return;
    const int64_t in_pad = (w->in + Q4_QK - 1) / Q4_QK * Q4_QK;
    ref_job j = {.w = w,
                 .bias = bias,
                 .X = X,
                 .Y = Y,
                 .T = T,
                 .slots = q4_work_start(work, work_size, q4_gemm_fwd_work_ref(w, T, n_threads)),
                 .slot = q4_slot((size_t)in_pad * sizeof(float))};
    par_for(n_threads, w->out, fwd_rows_ref, &j);
}

static void bwd_chunks_ref(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const ref_job *j = ctx;
    const q4_weight *w = j->w;
    const int64_t in = w->in, out = w->out, T = j->T;
    double *acc = (double *)(void *)(j->slots + (size_t)thread * j->slot); /* [T][32] */
    for (int64_t c = c0; c < c1; c++) {
        float wv[Q4_QK];
        memset(acc, 0, (size_t)T * Q4_QK * sizeof(double));
        for (int64_t o = 0; o < out; o++) {
            q4_decode_ref(w, o, c * Q4_QK, Q4_QK, wv);
            for (int64_t t = 0; t < T; t++) {
                double g = j->dY[t * out + o];
                for (int k = 0; k < Q4_QK; k++)
                    acc[t * Q4_QK + k] += g * (double)wv[k];
            }
        }
        int64_t ncol = in - c * Q4_QK < Q4_QK ? in - c * Q4_QK : Q4_QK;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < ncol; k++)
                j->dX[t * in + c * Q4_QK + k] = (float)acc[t * Q4_QK + k];
    }
}

/* dX[T,in] = dY[T,out]·W: columns in chunks of 32, each chunk's sums in double over all rows. */
void q4_gemm_bwd_ref(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                     void *work, size_t work_size)
{
    if (T <= 0)
        return;
    ref_job j = {.w = w,
                 .dY = dY,
                 .dX = dX,
                 .T = T,
                 .slots = q4_work_start(work, work_size, q4_gemm_bwd_work_ref(w, T, n_threads)),
                 .slot = q4_slot((size_t)T * Q4_QK * sizeof(double))};
    par_for(n_threads, (w->in + Q4_QK - 1) / Q4_QK, bwd_chunks_ref, &j);
}
