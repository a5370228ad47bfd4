/* tensor.c — dtype table, shape printing and f16/bf16 <-> f32 conversions (IEEE 754 binary16,
 * bfloat16 = the top half of a binary32). */
#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/pool.h"

static const struct {
    const char *name;
    size_t size;
} g_dtypes[DT_COUNT] = {
    [DT_F64] = {"F64", 8},   [DT_F32] = {"F32", 4},         [DT_F16] = {"F16", 2},
    [DT_BF16] = {"BF16", 2}, [DT_I64] = {"I64", 8},         [DT_I32] = {"I32", 4},
    [DT_I16] = {"I16", 2},   [DT_I8] = {"I8", 1},           [DT_U64] = {"U64", 8},
    [DT_U32] = {"U32", 4},   [DT_U16] = {"U16", 2},         [DT_U8] = {"U8", 1},
    [DT_BOOL] = {"BOOL", 1}, [DT_F8_E4M3] = {"F8_E4M3", 1}, [DT_F8_E5M2] = {"F8_E5M2", 1},
};

size_t dtype_size(dtype dt)
{
    return (unsigned)dt < DT_COUNT ? g_dtypes[dt].size : 0;
}

const char *dtype_name(dtype dt)
{
    return (unsigned)dt < DT_COUNT ? g_dtypes[dt].name : "?";
}

int dtype_from_name(const char *s)
{
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, g_dtypes[i].name) == 0)
            return i;
    return -1;
}

int64_t tensor_numel(const tensor_view *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}

int64_t f32_first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) /* NaN: keep it a (quiet) NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return bits_f32(sign | 0x7f800000 | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) /* NaN */
        return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000) {   /* below the smallest normal 2^-14: subnormal or zero */
        if (a < 0x33000000) /* < 2^-25 rounds to 0 */
            return (uint16_t)sign;
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* places to move the implicit-1 mantissa to 2^-24 units */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfff + ((a >> 13) & 1); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | ((r - 0x38000000) >> 13));
}

typedef struct {
    dtype dt;
    const uint8_t *p;
    float *dst;
} convert_job;

static void convert_range(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const convert_job *j = ctx;
    /* 2-byte elements may sit at odd addresses in a mapped file: memcpy each one */
    for (int64_t i = i0; i < i1; i++) {
        uint16_t h;
        memcpy(&h, j->p + 2 * i, 2);
        j->dst[i] = j->dt == DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
}

void convert_to_f32(dtype dt, const void *src, float *dst, int64_t n, int n_threads)
{
    if (dt == DT_F32) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    convert_job j = {dt, src, dst};
    par_for(n > (1 << 16) ? n_threads : 1, n, convert_range, &j);
}
