/* fastmath.h — e^x and log x in fp32 for element-wise loops over the vocabulary (kd.c): plain C
 * without calls or branches, so that compilers vectorise the loops that use them (libm's expf
 * and logf are calls, and stay one element at a time). Cephes' expf/logf: range reduction, then
 * the same minimax polynomials; error within 2 ulp of libm (tests/test_kd.c sweeps both).
 * fm_exp: x <= 88; below −87.3 (−inf included) it gives 0 (no subnormals); NaN gives NaN.
 * fm_log: x positive and normal (no zero, subnormal, infinity or NaN). */
#ifndef LK_FASTMATH_H
#define LK_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float fm_exp(float x)
{
    /* below −87.3 the bits computed are garbage and masked to 0 (a bit mask, not a select
     * between FP results: compilers will not if-convert those, so the loop would not vectorise) */
    uint32_t keep = x < -87.3f ? 0u : 0xffffffffu;
    /* n = round(x·log2 e) by the 1.5·2^23 trick: n sits in the low mantissa bits of t */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    /* r = x − n·ln 2 in two steps (Cody–Waite), |r| <= ln 2 / 2 */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;              /* e^r */
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23; /* 2^n: n + 127 in the exponent field */
    float s;
    memcpy(&s, &sb, 4);
    y *= s;
    uint32_t yb;
    memcpy(&yb, &y, 4);
    yb &= keep;
    memcpy(&y, &yb, 4);
    return y;
}

static inline float fm_log(float x)
{
    uint32_t xb;
    memcpy(&xb, &x, 4);
    /* x = 2^e·(1 + m), m in [√½ − 1, √2 − 1), chosen with integer selects on the bits (as for
     * fm_exp: a select between FP results would keep the loop from vectorising) */
    uint32_t f = xb & 0x007fffffu, low = f < 0x3504f3u; /* mantissa below √½ (in [½, 1)) */
    float e = (float)((int32_t)((xb >> 23) & 0xffu) - 126 - (int32_t)low);
    uint32_t mb = f | (low ? 0x3f800000u : 0x3f000000u); /* the mantissa in [1, √2) or [√½, 1) */
    float m;
    memcpy(&m, &mb, 4);
    m -= 1.0f;
    float z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    float y = p * m * z + e * -2.12194440e-4f - 0.5f * z;
    return m + y + e * 0.693359375f;
}

#endif /* LK_FASTMATH_H */
