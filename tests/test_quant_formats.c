/* test_quant_formats.c — quant/ formats: bit-exact quantisation against the committed peer
 * vectors (tests/data/quant, see its README), fp16/bf16 conversions, round trips and error bounds,
 * odd row lengths, NF4 blocksizes 32..4096, double quantisation, the public lk_ row API. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q4.h"
#include "testutil.h"

/* Read a whole fixture into a heap buffer; *n gets its size. Skips the test if missing. */
static void *read_fixture(const char *name, size_t *n)
{
    const char *path = data_path(name);
    require_file(path);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static int64_t nb_of(int64_t in, int block) /* absmax index of row 1, block 0 */
{
    return in / block;
}

/* Report the first differing byte of a quantised buffer. */
static void assert_same_bytes(const char *what, const uint8_t *got, const uint8_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i])
            fail_msg("%s: byte %zu differs: got 0x%02x want 0x%02x", what, i, got[i], want[i]);
    }
}

static uint32_t rng_state = 12345;
static float frand(void) /* xorshift32, uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (float)((double)rng_state / 2147483648.0 - 1.0);
}

static void test_fp16_conversion(void **state)
{
    (void)state;
    /* every fp16 bit pattern survives fp16 -> fp32 -> fp16 (NaNs stay NaNs) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = q4_fp16_to_fp32((uint16_t)h);
        uint16_t back = q4_fp32_to_fp16(f);
        if (isnan(f))
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        else
            assert_int_equal(back, h);
    }
    /* round to nearest even on ties, overflow to inf, underflow to zero */
    assert_int_equal(q4_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);     /* tie -> even */
    assert_int_equal(q4_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie -> even (up) */
    assert_int_equal(q4_fp32_to_fp16(65519.0f), 0x7bff);
    assert_int_equal(q4_fp32_to_fp16(65520.0f), 0x7c00);
    assert_int_equal(q4_fp32_to_fp16(0x1p-25f), 0x0000); /* tie -> even 0 */
    assert_int_equal(q4_fp32_to_fp16(0x1.0002p-25f), 0x0001);
    assert_int_equal(q4_fp32_to_fp16(-0x1p-24f), 0x8001);
    assert_int_equal(q4_fp32_to_fp16(0x1.ffcp-15f), 0x0400); /* rounds up to normal */
    /* against a brute-force nearest search on random values */
    for (int i = 0; i < 200000; i++) {
        float f = ldexpf(frand(), (int)(frand() * 20.0f) - 8);
        uint16_t h = q4_fp32_to_fp16(f);
        float back = q4_fp16_to_fp32(h);
        float up = q4_fp16_to_fp32((uint16_t)(h + 1)), dn = q4_fp16_to_fp32((uint16_t)(h - 1));
        if ((h & 0x7fff) != 0 && (h & 0x7fff) < 0x7bff) {
            assert_true(fabsf(back - f) <= fabsf(up - f));
            assert_true(fabsf(back - f) <= fabsf(dn - f));
        }
    }
    assert_int_equal(q4_fp32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(q4_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie -> even */
    assert_int_equal(q4_fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
}

/* Quantise every row of x[rows][n] with (qtype, block) and compare with the fixture bytes. */
static void check_rows_vs_fixture(const char *what, int qtype, int block, const float *x,
                                  int64_t rows, int64_t n, const uint8_t *want, size_t want_len)
{
    size_t rb = q4_row_bytes(qtype, block, n);
    assert_int_equal(rb * (size_t)rows, want_len);
    uint8_t *got = malloc(rb * (size_t)rows);
    assert_non_null(got);
    for (int64_t r = 0; r < rows; r++)
        q4_quantize_row(qtype, block, x + r * n, n, got + r * rb);
    assert_same_bytes(what, got, want, want_len);
    free(got);
}

static void test_nf4_vs_fixture(void **state)
{
    (void)state;
    size_t nx;
    float *x = read_fixture("quant/nf4_in.f32", &nx);
    const int64_t rows = 3, n = 1000;
    assert_int_equal(nx, (size_t)(rows * n) * 4);
    static const int blocks[] = {32, 64, 128, 256, 4096};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "quant/nf4_b%d.bin", blocks[i]);
        size_t nw;
        uint8_t *want = read_fixture(name, &nw);
        check_rows_vs_fixture(name, LK_QTYPE_NF4, blocks[i], x, rows, n, want, nw);
        free(want);
    }
    free(x);
}

static void test_nf4_double_quant(void **state)
{
    (void)state;
    size_t na, nd;
    float *absmax = read_fixture("quant/nf4_dq_absmax.f32", &na);
    uint8_t *fix = read_fixture("quant/nf4_dq.bin", &nd);
    int64_t n = (int64_t)(na / 4), nblk = (n + Q4_DQ_BLOCK - 1) / Q4_DQ_BLOCK;
    assert_int_equal(nd, 4 + (size_t)n + 4 * (size_t)nblk + 4 * (size_t)n);
    uint8_t *codes = malloc((size_t)n);
    float *scale = malloc((size_t)nblk * 4), *back = malloc((size_t)n * 4);
    q4_nf4_dq dq = {0, codes, scale, 0};
    q4_nf4_dq_quantize(absmax, n, &dq);
    assert_same_bytes("dq offset", (const uint8_t *)&dq.offset, fix, 4);
    assert_same_bytes("dq codes", codes, fix + 4, (size_t)n);
    assert_same_bytes("dq scales", (const uint8_t *)scale, fix + 4 + n, (size_t)nblk * 4);
    q4_nf4_dq_dequantize(&dq, back);
    assert_same_bytes("dq dequantised absmax", (const uint8_t *)back, fix + 4 + n + 4 * nblk,
                      (size_t)n * 4);
    /* the dynamic map reproduces its own values exactly and is symmetric around 0 */
    for (int i = 0; i < 256; i++)
        assert_int_equal(q4_dynamic_index(q4_dynamic_map[i]),
                         i == 0 || q4_dynamic_map[i] != 0 ? (unsigned)i : q4_dynamic_index(0.0f));
    /* double-quantised absmax stays close: 8-bit dynamic code, relative to the block max */
    for (int64_t i = 0; i < n; i++)
        assert_true(fabsf(back[i] - absmax[i]) <= 0.01f * scale[i / Q4_DQ_BLOCK] + 1e-7f);
    free(codes);
    free(scale);
    free(back);
    free(absmax);
    free(fix);
}

static void test_gguf_vs_fixture(void **state)
{
    (void)state;
    size_t nx;
    float *x = read_fixture("quant/gguf_in.f32", &nx);
    const int64_t rows = 8, n = 256;
    assert_int_equal(nx, (size_t)(rows * n) * 4);
    static const struct {
        int qtype;
        const char *file;
    } cases[] = {{LK_QTYPE_Q4_0, "quant/gguf_q4_0.bin"},
                 {LK_QTYPE_Q8_0, "quant/gguf_q8_0.bin"},
                 {LK_QTYPE_IQ4_NL, "quant/gguf_iq4_nl.bin"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t nw;
        uint8_t *want = read_fixture(cases[i].file, &nw);
        check_rows_vs_fixture(cases[i].file, cases[i].qtype, Q4_QK, x, rows, n, want, nw);
        free(want);
    }
    free(x);
}

/* Every GGUF type quantised bit for bit as ggml's ggml_quantize_chunk without an importance matrix
 * (tests/gen/gen_gguf_quant.py: 24 rows of 512 with zero, tiny, subnormal, huge, constant, one-sign,
 * sparse and tied values), by q4_quantize_row and the public lk_quantize_row; and each row as the
 * first 500 values, zero-padded, equals the padded row's bytes. */
static void test_gguf_quant_vs_ggml(void **state)
{
    (void)state;
    static const struct {
        int qtype;
        const char *file;
    } cases[] = {{LK_QTYPE_Q4_0, "quant/gguf_quant_q4_0.bin"},
                 {LK_QTYPE_Q8_0, "quant/gguf_quant_q8_0.bin"},
                 {LK_QTYPE_IQ4_NL, "quant/gguf_quant_iq4_nl.bin"},
                 {LK_QTYPE_Q4_1, "quant/gguf_quant_q4_1.bin"},
                 {LK_QTYPE_Q5_0, "quant/gguf_quant_q5_0.bin"},
                 {LK_QTYPE_Q5_1, "quant/gguf_quant_q5_1.bin"},
                 {LK_QTYPE_Q2_K, "quant/gguf_quant_q2_k.bin"},
                 {LK_QTYPE_Q3_K, "quant/gguf_quant_q3_k.bin"},
                 {LK_QTYPE_Q4_K, "quant/gguf_quant_q4_k.bin"},
                 {LK_QTYPE_Q5_K, "quant/gguf_quant_q5_k.bin"},
                 {LK_QTYPE_Q6_K, "quant/gguf_quant_q6_k.bin"},
                 {LK_QTYPE_IQ4_XS, "quant/gguf_quant_iq4_xs.bin"}};
    size_t nx;
    float *x = read_fixture("quant/gguf_quant_in.f32", &nx);
    const int64_t rows = 24, n = 512;
    assert_int_equal(nx, (size_t)(rows * n) * 4);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int qt = cases[c].qtype;
        size_t nw;
        uint8_t *want = read_fixture(cases[c].file, &nw);
        const size_t rb = q4_row_bytes(qt, 32, n), bb = q4_block_bytes(qt);
        assert_true(q4_can_quantize(qt));
        assert_int_equal(rb * (size_t)rows, nw);
        uint8_t *got = malloc(rb), *pad = malloc(rb);
        float *xp = calloc((size_t)n, 4);
        for (int64_t r = 0; r < rows; r++) {
            assert_ok(lk_quantize_row((lk_qtype)qt, x + r * n, n, got));
            for (size_t i = 0; i < rb; i++)
                if (got[i] != want[r * rb + i])
                    fail_msg("%s: row %lld block %zu byte %zu: got 0x%02x, ggml 0x%02x",
                             lk_qtype_name((lk_qtype)qt), (long long)r, i / bb, i % bb, got[i],
                             want[r * rb + i]);
            memcpy(xp, x + r * n, 500 * 4);
            q4_quantize_row(qt, 32, xp, n, got);
            q4_quantize_row(qt, 32, x + r * n, 500, pad);
            assert_same_bytes("zero-padded row", pad, got, rb);
        }
        free(xp);
        free(pad);
        free(got);
        free(want);
    }
    free(x);
}

/* The other GGUF types, their dequantisation fixtures (tests/gen/gen_gguf_types.py). */
static const struct {
    int qtype;
    const char *file;
} k_read_only[] = {
    {LK_QTYPE_Q4_1, "quant/gguf_dq_q4_1.bin"},    {LK_QTYPE_Q5_0, "quant/gguf_dq_q5_0.bin"},
    {LK_QTYPE_Q5_1, "quant/gguf_dq_q5_1.bin"},    {LK_QTYPE_Q2_K, "quant/gguf_dq_q2_k.bin"},
    {LK_QTYPE_Q3_K, "quant/gguf_dq_q3_k.bin"},    {LK_QTYPE_Q4_K, "quant/gguf_dq_q4_k.bin"},
    {LK_QTYPE_Q5_K, "quant/gguf_dq_q5_k.bin"},    {LK_QTYPE_Q6_K, "quant/gguf_dq_q6_k.bin"},
    {LK_QTYPE_IQ4_XS, "quant/gguf_dq_iq4_xs.bin"}};

/* Dequantisation of Q4_1 .. IQ4_XS equals gguf-py's bit for bit (random, edge-case and real
 * SmolLM2 blocks), as one row and as a row cut short inside its last block; the layout sizes
 * agree with the fixture's. */
static void test_gguf_dequant_vs_fixture(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof k_read_only / sizeof k_read_only[0]; c++) {
        const int qt = k_read_only[c].qtype;
        size_t nf;
        uint8_t *fix = read_fixture(k_read_only[c].file, &nf);
        uint32_t hdr[3];
        memcpy(hdr, fix, sizeof hdr);
        const int64_t bl = hdr[0], bb = hdr[1], nb = hdr[2], n = nb * bl;
        assert_int_equal(bl, q4_block_len(qt, 32));
        assert_int_equal(bb, q4_block_bytes(qt));
        assert_int_equal(nf, 12 + (size_t)(nb * bb) + (size_t)n * 4);
        assert_int_equal(q4_row_bytes(qt, 32, n), (size_t)(nb * bb));
        const uint8_t *blocks = fix + 12;
        const uint8_t *want = blocks + nb * bb; /* [n] f32 bits */
        float *y = malloc((size_t)(n + 1) * 4);
        y[n] = 777.0f;
        assert_ok(lk_dequantize_row((lk_qtype)qt, blocks, n, y));
        assert_true(y[n] == 777.0f);
        for (int64_t i = 0; i < n; i++) {
            uint32_t g, w;
            memcpy(&g, y + i, 4);
            memcpy(&w, want + 4 * i, 4);
            if (g != w)
                fail_msg("%s: value %lld (block %lld): got 0x%08x (%g), gguf-py 0x%08x",
                         lk_qtype_name((lk_qtype)qt), (long long)i, (long long)(i / bl), g,
                         (double)y[i], w);
        }
        /* a row of n - 5 values: the same prefix, nothing written past it */
        y[n - 5] = 777.0f;
        q4_dequantize_row(qt, 32, blocks, n - 5, y);
        assert_true(y[n - 5] == 777.0f);
        assert_memory_equal(y, want, (size_t)(n - 5) * 4);
        free(y);
        free(fix);
    }
    assert_int_equal(lk_quant_row_bytes(LK_QTYPE_Q6_K, 512), 2 * 210);
    assert_int_equal(lk_quant_row_bytes(LK_QTYPE_Q5_0, 64), 2 * 22);
    assert_true(fabs(lk_qtype_bits_per_weight(LK_QTYPE_Q4_K, 256) - 4.5) < 1e-12);
    assert_true(fabs(lk_qtype_bits_per_weight(LK_QTYPE_IQ4_XS, 256) - 4.25) < 1e-12);
}

/* q4_find_bad_scale: every fp16 scale / min of every type, NaN and Inf, found at its row and
 * block; finite scales (zero, subnormal, 65504) pass. */
static void test_find_bad_scale(void **state)
{
    (void)state;
    static const struct {
        int qtype;
        int off[2]; /* byte offsets of d and m / dmin, -1 if none */
    } types[] = {{LK_QTYPE_Q4_0, {0, -1}},  {LK_QTYPE_Q8_0, {0, -1}},   {LK_QTYPE_IQ4_NL, {0, -1}},
                 {LK_QTYPE_Q4_1, {0, 2}},   {LK_QTYPE_Q5_0, {0, -1}},   {LK_QTYPE_Q5_1, {0, 2}},
                 {LK_QTYPE_Q2_K, {80, 82}}, {LK_QTYPE_Q3_K, {108, -1}}, {LK_QTYPE_Q4_K, {0, 2}},
                 {LK_QTYPE_Q5_K, {0, 2}},   {LK_QTYPE_Q6_K, {208, -1}}, {LK_QTYPE_IQ4_XS, {0, -1}}};
    for (size_t c = 0; c < sizeof types / sizeof types[0]; c++) {
        const int qt = types[c].qtype;
        const int64_t in = 512, rows = 3;
        const size_t rb = q4_row_bytes(qt, 32, in), bb = q4_block_bytes(qt);
        const int64_t nb = in / q4_block_len(qt, 32);
        uint8_t *m = malloc(rb * rows);
        memset(m, 0x11, rb * rows); /* fp16 0x1111: a small normal number everywhere */
        int64_t r, b;
        float v;
        assert_int_equal(q4_find_bad_scale(qt, 32, m, rows, in, &r, &b, &v), 0);
        const uint16_t ok[] = {0x0000, 0x0001, 0x7bff, 0xfbff}, bad[] = {0x7c00, 0xfc00, 0x7e00};
        for (int k = 0; k < 2 && types[c].off[k] >= 0; k++) {
            uint8_t *p = m + 2 * rb + (size_t)(nb - 1) * bb + (size_t)types[c].off[k];
            for (size_t i = 0; i < 4; i++) {
                memcpy(p, &ok[i], 2);
                assert_int_equal(q4_find_bad_scale(qt, 32, m, rows, in, &r, &b, &v), 0);
            }
            for (size_t i = 0; i < 3; i++) {
                memcpy(p, &bad[i], 2);
                if (!q4_find_bad_scale(qt, 32, m, rows, in, &r, &b, &v))
                    fail_msg("%s: scale at +%d = 0x%04x not found", lk_qtype_name((lk_qtype)qt),
                             types[c].off[k], bad[i]);
                assert_int_equal(r, 2);
                assert_int_equal(b, nb - 1);
                assert_false(isfinite(v));
            }
            memset(p, 0x11, 2);
        }
        free(m);
    }
    /* NF4: the fp32 absmax of row 1, block 2 */
    const int64_t in = 256;
    const size_t rb = q4_row_bytes(LK_QTYPE_NF4, 64, in);
    uint8_t m[2 * 144];
    memset(m, 0, sizeof m);
    assert_int_equal(rb, 144);
    int64_t r, b;
    float v, inf = INFINITY;
    memcpy(m + rb + 128 + 2 * 4, &inf, 4);
    assert_int_equal(q4_find_bad_scale(LK_QTYPE_NF4, 64, m, 2, in, &r, &b, &v), 1);
    assert_true(r == 1 && b == 2 && isinf(v));
    assert_int_equal(q4_find_bad_scale(LK_QTYPE_F16, 32, m, 2, 8, &r, &b, &v), 0);
}

/* Max |x - deq(q(x))| relative to the block's max |x|, per format (the grid's half step). */
static double rel_bound(int qtype)
{
    switch (qtype) {
    case LK_QTYPE_Q8_0: return 0.5 / 127 + 1e-3; /* + fp16 rounding of d */
    case LK_QTYPE_Q4_0: return 1.0 / 8 + 2e-3;   /* -max maps to -8d, +max only to +7d */
    case LK_QTYPE_IQ4_NL: return 0.25;           /* widest gap 24/127 and a searched scale */
    case LK_QTYPE_NF4: return (1.0 - 0.6961928009986877) / 2 + 1e-6; /* widest gap */
    /* the others: half a step of the grid plus the rounding of the (sub-)block scales, relative to
     * the max of the block (of 32, or the super-block of 256) */
    case LK_QTYPE_Q4_1: return 1.0 / 15 + 2e-3;
    case LK_QTYPE_Q5_0: return 1.0 / 16 + 1e-3; /* as Q4_0 */
    case LK_QTYPE_Q5_1: return 1.0 / 31 + 1e-3;
    case LK_QTYPE_Q2_K: return 0.5;
    case LK_QTYPE_Q3_K: return 0.3;
    case LK_QTYPE_Q4_K: return 0.15;
    case LK_QTYPE_Q5_K: return 0.08;
    case LK_QTYPE_Q6_K: return 0.04;
    case LK_QTYPE_IQ4_XS: return 0.25;
    case LK_QTYPE_F16: return 1.0 / 2048;
    case LK_QTYPE_BF16: return 1.0 / 256;
    default: return 0.0;
    }
}

/* Round trip of every type over odd lengths and NF4 blocksizes: output length exact, padding never
 * leaks, the error within the format's bound relative to the block max. */
static void test_round_trip_odd_lengths(void **state)
{
    (void)state;
    static const int64_t lens[] = {1, 5, 31, 32, 33, 63, 64, 65, 172, 1000, 4097};
    static const int nf4_blocks[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    for (int qt = 0; qt < LK_QTYPE_COUNT; qt++) { /* every type lorakit quantises to */
        size_t nbs = qt == LK_QTYPE_NF4 ? sizeof nf4_blocks / sizeof nf4_blocks[0] : 1;
        for (size_t bi = 0; bi < nbs; bi++) {
            int block = qt == LK_QTYPE_NF4 ? nf4_blocks[bi] : Q4_QK;
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                int64_t n = lens[li];
                int64_t bl = q4_block_len(qt, block);
                float *x = malloc((size_t)n * 4), *y = malloc((size_t)(n + 1) * 4);
                size_t rb = q4_row_bytes(qt, block, n);
                uint8_t *q = malloc(rb);
                for (int64_t i = 0; i < n; i++)
                    x[i] = frand() * (i % 7 == 0 ? 3.0f : 1.0f);
                y[n] = 12345.0f; /* sentinel: dequantisation writes exactly n values */
                q4_quantize_row(qt, block, x, n, q);
                q4_dequantize_row(qt, block, q, n, y);
                assert_true(y[n] == 12345.0f);
                for (int64_t b0 = 0; b0 < n; b0 += bl) {
                    double bmax = 0;
                    int64_t e = b0 + bl < n ? b0 + bl : n;
                    for (int64_t i = b0; i < e; i++)
                        bmax = fmax(bmax, fabs(x[i]));
                    for (int64_t i = b0; i < e; i++) {
                        double lim = qt == LK_QTYPE_F32 ? 0 : rel_bound(qt) * bmax;
                        if (qt == LK_QTYPE_F16 || qt == LK_QTYPE_BF16)
                            lim = rel_bound(qt) * fabs(x[i]) + 1e-7;
                        if (fabs(x[i] - y[i]) > lim)
                            fail_msg("%s block %d n %lld: [%lld] %g -> %g (bound %g)",
                                     lk_qtype_name((lk_qtype)qt), block, (long long)n, (long long)i,
                                     x[i], y[i], lim);
                    }
                }
                /* the padded row equals the row of the zero-padded input */
                int64_t np = (n + bl - 1) / bl * bl;
                float *xp = calloc((size_t)np, 4);
                memcpy(xp, x, (size_t)n * 4);
                uint8_t *qp = malloc(q4_row_bytes(qt, block, np));
                assert_int_equal(q4_row_bytes(qt, block, np), rb);
                q4_quantize_row(qt, block, xp, np, qp);
                assert_same_bytes("padded row", q, qp, rb);
                free(xp);
                free(qp);
                free(x);
                free(y);
                free(q);
            }
        }
    }
}

/* Special values: all-zero blocks decode to zeros, a block max survives exactly (Q4_0: max maps
 * to -8*d; NF4: to ±absmax). */
static void test_special_blocks(void **state)
{
    (void)state;
    float x[64] = {0}, y[64];
    uint8_t q[128]; /* Q8_0: 2 blocks of 34 bytes */
    for (int qt = LK_QTYPE_Q4_0; qt <= LK_QTYPE_NF4; qt++) {
        q4_quantize_row(qt, 64, x, 64, q);
        q4_dequantize_row(qt, 64, q, 64, y);
        for (int i = 0; i < 64; i++)
            assert_true(y[i] == 0.0f);
    }
    x[3] = -2.5f;
    x[9] = 1.0f;
    q4_quantize_row(LK_QTYPE_NF4, 64, x, 64, q);
    q4_dequantize_row(LK_QTYPE_NF4, 64, q, 64, y);
    assert_true(y[3] == -2.5f && y[0] == 0.0f);
    assert_int_equal(q[1] >> 4, 7); /* value 2 (zero) in the high nibble of byte 1 */
    assert_int_equal(q[1] & 15, 0); /* value 3 = -absmax -> code 0, low nibble */
    assert_int_equal(q[0], 0x77);   /* zeros -> code 7 (0.0) */
    q4_quantize_row(LK_QTYPE_Q4_0, 32, x, 32, q);
    q4_dequantize_row(LK_QTYPE_Q4_0, 32, q, 32, y);
    assert_true(y[3] == -2.5f);
    /* subnormal blocks (found by fuzz_model): the scale has no finite inverse and rounds to fp16
     * 0; every value decodes to 0, with no NaN converted to an integer on the way */
    for (int i = 0; i < 64; i++)
        x[i] = (i % 3 - 1) * 1e-39f;
    for (int qt = LK_QTYPE_Q4_0; qt <= LK_QTYPE_NF4; qt++) {
        q4_quantize_row(qt, 64, x, 64, q);
        q4_dequantize_row(qt, 64, q, 64, y);
        for (int i = 0; i < 64; i++)
            if (!(fabsf(y[i]) <= 1e-38f))
                fail_msg("%s: subnormal input %d decodes to %g", lk_qtype_name((lk_qtype)qt), i,
                         y[i]);
    }
}

static void test_public_api(void **state)
{
    (void)state;
    lk_qtype t;
    for (int i = 0; i < LK_QTYPE_COUNT; i++) {
        assert_ok(lk_qtype_from_name(lk_qtype_name((lk_qtype)i), &t));
        assert_int_equal(t, i);
    }
    assert_ok(lk_qtype_from_name("NF4", &t));
    assert_int_equal(t, LK_QTYPE_NF4);
    assert_ok(lk_qtype_from_name("Q5_K", &t));
    assert_int_equal(t, LK_QTYPE_Q5_K);
    assert_int_equal(LK_QTYPE_IQ4_XS, 15); /* the numbers are stable */
    assert_string_equal(lk_qtype_name(LK_QTYPE_IQ4_XS), "iq4_xs");
    assert_status(lk_qtype_from_name("q7_k", &t), LK_ERR_ARG, "q7_k");
    assert_string_equal(lk_qtype_name((lk_qtype)99), "?");
    assert_true(fabs(lk_qtype_bits_per_weight(LK_QTYPE_NF4, 4096) - 4.5) < 1e-12);
    assert_true(fabs(lk_qtype_bits_per_weight(LK_QTYPE_Q4_0, 4096) - 4.5) < 1e-12);
    assert_true(fabs(lk_qtype_bits_per_weight(LK_QTYPE_Q8_0, 4096) - 8.5) < 1e-12);
    assert_true(fabs(lk_qtype_bits_per_weight(LK_QTYPE_F16, 7) - 16) < 1e-12);
    assert_int_equal(lk_quant_row_bytes(LK_QTYPE_Q4_0, 172), 6 * 18); /* 172 -> 6 blocks */
    assert_int_equal(lk_quant_row_bytes(LK_QTYPE_NF4, 172), 3 * 36);
    assert_int_equal(lk_quant_row_bytes(LK_QTYPE_NF4, 0), 0);
    float x[172], y[172];
    uint8_t q[6 * 18];
    for (int i = 0; i < 172; i++)
        x[i] = frand();
    assert_ok(lk_quantize_row(LK_QTYPE_Q4_0, x, 172, q));
    assert_ok(lk_dequantize_row(LK_QTYPE_Q4_0, q, 172, y));
    assert_true(max_abs_diff(x, y, 172) < 0.2);
    assert_status(lk_quantize_row((lk_qtype)42, x, 172, q), LK_ERR_ARG, "type");
    assert_status(lk_quantize_row(LK_QTYPE_Q4_0, x, 0, q), LK_ERR_ARG, NULL);
    x[100] = NAN;
    assert_status(lk_quantize_row(LK_QTYPE_Q4_0, x, 172, q), LK_ERR_NUMERIC, "element 100 is nan");
    q4_weight w;
    assert_status(q4_weight_init(&w, LK_QTYPE_F16, 32, 4, 4, q), LK_ERR_UNSUPPORTED, "f16");
    assert_status(q4_weight_init(&w, LK_QTYPE_NF4, 48, 4, 4, q), LK_ERR_ARG, "blocksize");
    assert_non_null(lk_kernel_variant());
    printf("kernel variant: %s; cpu features: %s\n", lk_kernel_variant(), lk_cpu_features());
}

/* Whole-matrix quantisation with error report: thread count does not change the bytes. */
static void test_quantize_matrix(void **state)
{
    (void)state;
    const int64_t out = 37, in = 172;
    float *w = malloc((size_t)(out * in) * 4);
    for (int64_t i = 0; i < out * in; i++)
        w[i] = frand() * 0.05f;
    for (int qt = LK_QTYPE_Q4_0; qt <= LK_QTYPE_NF4; qt++) {
        size_t rb = q4_row_bytes(qt, 64, in);
        uint8_t *a = malloc(rb * out), *b = malloc(rb * out);
        double rmse1, max1, rmse4, max4;
        q4_quantize_matrix(qt, 64, w, out, in, a, 1, &rmse1, &max1);
        q4_quantize_matrix(qt, 64, w, out, in, b, 4, &rmse4, &max4);
        assert_same_bytes("matrix 1 vs 4 threads", a, b, rb * out);
        assert_true(rmse1 == rmse4 || fabs(rmse1 - rmse4) < 1e-12);
        assert_true(max1 == max4);
        assert_true(rmse1 > 0 && rmse1 < 0.05 * (qt == LK_QTYPE_Q8_0 ? 0.02 : 0.2));
        free(a);
        free(b);
    }
    free(w);
}

/* bitsandbytes' flattened layout (one NF4 quantisation of the whole matrix, plus double-quantised
 * absmax) converts to our rows without re-quantising: identical to quantising row by row. */
static void test_nf4_from_bnb(void **state)
{
    (void)state;
    const int64_t out = 12, in = 256;
    const int block = 64, nabs = (int)(out * in / block);
    float *w = malloc((size_t)(out * in) * 4), *absmax = malloc((size_t)nabs * 4);
    uint8_t *codes = malloc((size_t)(out * in / 2));
    for (int64_t i = 0; i < out * in; i++)
        w[i] = frand();
    q4_quantize_nf4(w, out * in, block, codes, absmax); /* bitsandbytes: the flattened tensor */
    size_t rb = q4_row_bytes(LK_QTYPE_NF4, block, in);
    uint8_t *a = malloc(rb * out), *b = malloc(rb * out);
    assert_ok(q4_nf4_from_bnb(codes, absmax, out, in, block, a));
    for (int64_t r = 0; r < out; r++)
        q4_quantize_row(LK_QTYPE_NF4, block, w + r * in, in, b + r * rb);
    assert_same_bytes("bnb -> rows", a, b, rb * out);
    /* double-quantised statistics: dequantised absmax feed the same rows */
    uint8_t dqc[48];
    float dqs[1], back[48];
    q4_nf4_dq dq = {0, dqc, dqs, 0};
    q4_nf4_dq_quantize(absmax, nabs, &dq);
    q4_nf4_dq_dequantize(&dq, back);
    assert_ok(q4_nf4_from_bnb(codes, back, out, in, block, a));
    float *y = malloc((size_t)in * 4);
    q4_dequantize_row(LK_QTYPE_NF4, block, a + rb, in, y);
    assert_true(y[0] == q4_nf4_code[codes[in / 2] >> 4] * back[nb_of(in, block)]);
    assert_status(q4_nf4_from_bnb(codes, absmax, 4, 100, 64, a), LK_ERR_SHAPE, "straddle");
    free(y);
    free(w);
    free(absmax);
    free(codes);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_conversion),
        cmocka_unit_test(test_nf4_vs_fixture),
        cmocka_unit_test(test_nf4_double_quant),
        cmocka_unit_test(test_gguf_vs_fixture),
        cmocka_unit_test(test_gguf_dequant_vs_fixture),
        cmocka_unit_test(test_gguf_quant_vs_ggml),
        cmocka_unit_test(test_find_bad_scale),
        cmocka_unit_test(test_round_trip_odd_lengths),
        cmocka_unit_test(test_special_blocks),
        cmocka_unit_test(test_public_api),
        cmocka_unit_test(test_nf4_from_bnb),
        cmocka_unit_test(test_quantize_matrix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
