/* test_q8_gguf.c — the int8 expanders of the GGUF read-only types (quant/q8_expand_gguf.c and its
 * AVX2 twin): s[k/16]*q[k] + m[k/16] in fp32 equals q4_decode32_gguf's value bit for bit over
 * random blocks with finite scales, blocks of all-zero and all-one code bits, every 6-bit (and
 * 4-bit, int8) scale/min packing of the k-quants, and gguf-py's dequantisation vectors
 * (tests/data/quant/gguf_dq_*.bin); the AVX2 expanders give the same bytes as the reference for
 * every start block and count. q8_gemm_fwd on these types: within the activation-quantisation
 * bound of the f32 kernel, and every int8 variant bit-exact with the reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8_gguf.h"
#include "core/status.h"
#include "testutil.h"

static const int k_types[] = {LK_QTYPE_Q4_1, LK_QTYPE_Q5_0, LK_QTYPE_Q5_1,
                              LK_QTYPE_Q2_K, LK_QTYPE_Q3_K, LK_QTYPE_Q4_K,
                              LK_QTYPE_Q5_K, LK_QTYPE_Q6_K, LK_QTYPE_IQ4_XS};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

static uint32_t rng = 2026;
static uint32_t rnd(void) /* xorshift32 */
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* A random finite fp16 (every sign, exponent 0..30, mantissa): zeros and subnormals included. */
static uint16_t rnd_fp16(void)
{
    uint16_t h = (uint16_t)rnd();
    if (((h >> 10) & 31) == 31)
        h ^= 1u << 14; /* exponent 31 -> 15 */
    return h;
}

/* Plant random finite fp16 scales into every block of rows[nblk]. */
static void plant_scales(int qt, uint8_t *rows, int64_t nblk)
{
    const size_t bb = q4_block_bytes(qt);
    int off[2];
    test_gguf_scale_offsets(qt, off);
    const int o0 = off[0], o1 = off[1];
    for (int64_t b = 0; b < nblk; b++) {
        uint16_t h = rnd_fp16();
        memcpy(rows + b * bb + o0, &h, 2);
        if (o1 >= 0) {
            h = rnd_fp16();
            memcpy(rows + b * bb + o1, &h, 2);
        }
    }
}

/* 1 for the types with a min term (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K); the others expand with m = -0. */
static int has_min(int qt)
{
    return qt == LK_QTYPE_Q4_1 || qt == LK_QTYPE_Q5_1 || qt == LK_QTYPE_Q2_K ||
           qt == LK_QTYPE_Q4_K || qt == LK_QTYPE_Q5_K;
}

/* Expand all 32-value blocks of a row of n values with f and compare s*q + m with the decoder,
 * bit for bit; also the shape of the expansion (s[0] == s[1] and m[0] == m[1] for the types with
 * one scale per 32, m == -0 for the types without a min, codes in the type's range). */
static void check_row(const char *what, int qt, q8_expand_fn f, const uint8_t *row, int64_t n)
{
    const int64_t nb = n / 32;
    q8_wblock *wb = malloc((size_t)nb * sizeof *wb);
    assert_non_null(wb);
    f(NULL, row, 0, nb, wb);
    const int per32 = qt == LK_QTYPE_Q4_1 || qt == LK_QTYPE_Q5_0 || qt == LK_QTYPE_Q5_1 ||
                      qt == LK_QTYPE_Q4_K || qt == LK_QTYPE_Q5_K || qt == LK_QTYPE_IQ4_XS;
    int qlo = 0, qhi = 0;
    switch (qt) {
    case LK_QTYPE_Q4_1:
    case LK_QTYPE_Q4_K: qhi = 15; break;
    case LK_QTYPE_Q5_1:
    case LK_QTYPE_Q5_K: qhi = 31; break;
    case LK_QTYPE_Q5_0: qlo = -16, qhi = 15; break;
    case LK_QTYPE_Q2_K: qhi = 3; break;
    case LK_QTYPE_Q3_K: qlo = -4, qhi = 3; break;
    case LK_QTYPE_Q6_K: qlo = -32, qhi = 31; break;
    default: qlo = -127, qhi = 113; break; /* IQ4_XS: kvalues_iq4nl */
    }
    for (int64_t b = 0; b < nb; b++) {
        float want[32];
        q4_decode32_gguf(qt, row, 32 * b, want);
        const q8_wblock *o = &wb[b];
        if (per32 && (memcmp(&o->s[0], &o->s[1], 4) || memcmp(&o->m[0], &o->m[1], 4)))
            fail_msg("%s %s block %lld: halves differ", what, lk_qtype_name((lk_qtype)qt),
                     (long long)b);
        if (!has_min(qt) && !(o->m[0] == 0 && signbit(o->m[0]) && o->m[1] == 0 && signbit(o->m[1])))
            fail_msg("%s %s block %lld: m is not -0", what, lk_qtype_name((lk_qtype)qt),
                     (long long)b);
        for (int k = 0; k < 32; k++) {
            if (o->q[k] < qlo || o->q[k] > qhi)
                fail_msg("%s %s block %lld value %d: code %d outside %d..%d", what,
                         lk_qtype_name((lk_qtype)qt), (long long)b, k, o->q[k], qlo, qhi);
            const float p = o->s[k / 16] * (float)o->q[k];
            const float v = p + o->m[k / 16];
            uint32_t g, e;
            memcpy(&g, &v, 4);
            memcpy(&e, &want[k], 4);
            if (g != e)
                fail_msg("%s %s block %lld value %d: s*q+m = %g (0x%08x), decoder %g (0x%08x); "
                         "q %d s %g m %g",
                         what, lk_qtype_name((lk_qtype)qt), (long long)b, k, (double)v, g,
                         (double)want[k], e, o->q[k], (double)o->s[k / 16], (double)o->m[k / 16]);
        }
    }
    free(wb);
}

/* The AVX2 expander of qt, NULL where this build or CPU has none. */
static q8_expand_fn avx2_of(int qt)
{
    return q4_kernels_named("avx2") ? q8_expander_gguf_avx2(qt) : NULL;
}

/* Both expanders of qt on a row; the AVX2 one (where present) gives the reference's bytes for
 * every start block b0 and count nb (tails and super-block boundaries). */
static void check_both(int qt, const uint8_t *row, int64_t n)
{
    check_row("ref", qt, q8_expander_gguf(qt), row, n);
    q8_expand_fn fa = avx2_of(qt);
    if (!fa)
        return;
    check_row("avx2", qt, fa, row, n);
    const int64_t nb = n / 32, span = nb < 40 ? nb : 40; /* sub-ranges within the first 40 */
    q8_wblock *a = calloc((size_t)nb + 1, sizeof *a), *r = calloc((size_t)nb + 1, sizeof *r);
    assert_true(a && r);
    q8_expander_gguf(qt)(NULL, row, 0, nb, r);
    fa(NULL, row, 0, nb, a);
    if (memcmp(a, r, (size_t)nb * sizeof *a))
        fail_msg("%s: avx2 differs from ref on the whole row", lk_qtype_name((lk_qtype)qt));
    for (int64_t b0 = 0; b0 < span; b0++) {
        for (int64_t c = 1; b0 + c <= span; c += 1 + c / 2) {
            memset(a, 0x5a, ((size_t)c + 1) * sizeof *a);
            memset(r, 0x5a, ((size_t)c + 1) * sizeof *r);
            q8_expander_gguf(qt)(NULL, row, b0, c, r);
            fa(NULL, row, b0, c, a);
            if (memcmp(a, r, ((size_t)c + 1) * sizeof *a))
                fail_msg("%s: avx2 differs from ref for blocks [%lld, %lld)",
                         lk_qtype_name((lk_qtype)qt), (long long)b0, (long long)(b0 + c));
        }
    }
    free(a);
    free(r);
}

/* Random rows (all code bits random) with random finite scales, then rows whose code bytes are
 * all 0x00 or all 0xff (extreme nibbles, high bits, hmask; the packed sub-scales too). */
static void test_random_and_extreme(void **state)
{
    (void)state;
    const int64_t n = 1024; /* 32 blocks of 32, 4 super-blocks */
    for (int t = 0; t < N_TYPES; t++) {
        const int qt = k_types[t];
        const size_t rb = q4_row_bytes(qt, 32, n);
        const int64_t nblk = n / q4_block_len(qt, 32);
        uint8_t *row = malloc(rb);
        assert_non_null(row);
        for (int rep = 0; rep < 40; rep++) {
            for (size_t i = 0; i < rb; i++)
                row[i] = (uint8_t)rnd();
            plant_scales(qt, row, nblk);
            check_both(qt, row, n);
        }
        for (int fill = 0; fill < 2; fill++) {
            memset(row, fill ? 0xff : 0x00, rb);
            plant_scales(qt, row, nblk);
            check_both(qt, row, n);
        }
        free(row);
    }
}

/* Pack the 6-bit scales sc[8] and mins mn[8] of a Q4_K / Q5_K super-block (inverse of
 * get_scale_min_k4). */
static void pack_k4(const int *sc, const int *mn, uint8_t *s12)
{
    for (int j = 0; j < 4; j++) {
        s12[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        s12[j + 4] = (uint8_t)((mn[j] & 63) | (mn[j + 4] >> 4) << 6);
        s12[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

/* Pack 16 6-bit Q3_K scales (0..63, stored with the +32 bias). */
static void pack_q3(const int *sc, uint8_t *s12)
{
    memset(s12, 0, 12);
    for (int g = 0; g < 16; g++) {
        s12[g % 8] |= (uint8_t)((sc[g] & 15) << (g < 8 ? 0 : 4));
        s12[8 + g % 4] |= (uint8_t)((sc[g] >> 4) << (2 * (g / 4)));
    }
}

/* Every scale/min value at every sub-block position: super-block v gives sub-block j the scale
 * (v + 5j) mod 64 and min (v/64 + 3j) mod 64 (Q4_K, Q5_K: all 4096 pairs per position), the
 * 16 groups of Q3_K / IQ4_XS the 64 scales, Q2_K's bytes and Q6_K's int8 scales all 256 values;
 * the packing is checked against the decoder, so a wrong unpacking of any bit shows. */
static void test_kquant_scale_packings(void **state)
{
    (void)state;
    static const int kt[] = {LK_QTYPE_Q2_K, LK_QTYPE_Q3_K, LK_QTYPE_Q4_K,
                             LK_QTYPE_Q5_K, LK_QTYPE_Q6_K, LK_QTYPE_IQ4_XS};
    for (size_t t = 0; t < sizeof kt / sizeof kt[0]; t++) {
        const int qt = kt[t];
        const int nv = qt == LK_QTYPE_Q4_K || qt == LK_QTYPE_Q5_K   ? 4096
                       : qt == LK_QTYPE_Q2_K || qt == LK_QTYPE_Q6_K ? 256
                                                                    : 64;
        const size_t bb = q4_block_bytes(qt);
        uint8_t *row = malloc(bb * (size_t)nv);
        assert_non_null(row);
        for (size_t i = 0; i < bb * (size_t)nv; i++)
            row[i] = (uint8_t)rnd();
        plant_scales(qt, row, nv);
        for (int v = 0; v < nv; v++) {
            uint8_t *b = row + (size_t)v * bb;
            int sc[16], mn[16];
            for (int g = 0; g < 16; g++) {
                sc[g] = (v + 5 * g) & 63;
                mn[g] = ((v >> 6) + 3 * g) & 63;
            }
            switch (qt) {
            case LK_QTYPE_Q2_K:
                for (int g = 0; g < 16; g++)
                    ((q4_block_q2_k *)(void *)b)->scales[g] = (uint8_t)(v + 17 * g);
                break;
            case LK_QTYPE_Q3_K: pack_q3(sc, ((q4_block_q3_k *)(void *)b)->scales); break;
            case LK_QTYPE_Q4_K:
            case LK_QTYPE_Q5_K: pack_k4(sc, mn, b + 4); break;
            case LK_QTYPE_Q6_K:
                for (int g = 0; g < 16; g++)
                    ((q4_block_q6_k *)(void *)b)->scales[g] = (int8_t)(uint8_t)(v + 11 * g);
                break;
            default: { /* IQ4_XS */
                q4_block_iq4_xs *x = (q4_block_iq4_xs *)(void *)b;
                x->scales_h = 0;
                for (int j = 0; j < 8; j++) {
                    if (j % 2 == 0)
                        x->scales_l[j / 2] = 0;
                    x->scales_l[j / 2] |= (uint8_t)((sc[j] & 15) << (4 * (j % 2)));
                    x->scales_h |= (uint16_t)((sc[j] >> 4) << (2 * j));
                }
            }
            }
        }
        check_both(qt, row, (int64_t)nv * Q4_QK_K);
        /* the packing itself: Q4_K's sub-block 5 of super-block 1234 has scale (1234+25)%64 */
        if (qt == LK_QTYPE_Q4_K || qt == LK_QTYPE_Q5_K) {
            q8_wblock o;
            const uint16_t one = 0x3c00; /* d = dmin = 1 */
            memcpy(row + 1234 * bb, &one, 2);
            memcpy(row + 1234 * bb + 2, &one, 2);
            q8_expander_gguf(qt)(NULL, row, 1234 * 8 + 5, 1, &o);
            assert_true(o.s[0] == (float)((1234 + 25) % 64));
            assert_true(o.m[0] == -(float)((1234 / 64 + 15) % 64));
        }
        free(row);
    }
}

/* gguf-py's dequantisation of random, edge-case and real SmolLM2 blocks through the expanders
 * (and their AVX2 twins): bit for bit. */
static void test_expand_vs_fixture(void **state)
{
    (void)state;
    static const char *files[] = {
        "quant/gguf_dq_q4_1.bin", "quant/gguf_dq_q5_0.bin", "quant/gguf_dq_q5_1.bin",
        "quant/gguf_dq_q2_k.bin", "quant/gguf_dq_q3_k.bin", "quant/gguf_dq_q4_k.bin",
        "quant/gguf_dq_q5_k.bin", "quant/gguf_dq_q6_k.bin", "quant/gguf_dq_iq4_xs.bin"};
    for (int t = 0; t < N_TYPES; t++) {
        const int qt = k_types[t];
        const char *path = data_path(files[t]);
        require_file(path);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint32_t hdr[3];
        assert_int_equal(fread(hdr, 4, 3, f), 3);
        const int64_t bl = hdr[0], bb = hdr[1], nblk = hdr[2], n = nblk * bl;
        assert_int_equal(bb, q4_block_bytes(qt));
        uint8_t *blocks = malloc((size_t)(nblk * bb));
        float *want = malloc((size_t)n * 4);
        q8_wblock *wb = malloc((size_t)(n / 32) * sizeof *wb);
        assert_true(blocks && want && wb);
        assert_int_equal(fread(blocks, 1, (size_t)(nblk * bb), f), (size_t)(nblk * bb));
        assert_int_equal(fread(want, 4, (size_t)n, f), (size_t)n);
        fclose(f);
        q8_expand_fn fns[2] = {q8_expander_gguf(qt), avx2_of(qt)};
        for (int v = 0; v < 2 && fns[v]; v++) {
            fns[v](NULL, blocks, 0, n / 32, wb);
            for (int64_t i = 0; i < n; i++) {
                const q8_wblock *o = &wb[i / 32];
                const int k = (int)(i % 32);
                const float p = o->s[k / 16] * (float)o->q[k];
                const float x = p + o->m[k / 16];
                if (memcmp(&x, &want[i], 4))
                    fail_msg("%s (%s): value %lld: s*q+m = %g, gguf-py %g",
                             lk_qtype_name((lk_qtype)qt), v ? "avx2" : "ref", (long long)i,
                             (double)x, (double)want[i]);
            }
        }
        free(blocks);
        free(want);
        free(wb);
    }
}

/* Types outside this file's set have no GGUF expander; q8_expander_avx2 picks the AVX2 one. */
static void test_expander_table(void **state)
{
    (void)state;
    for (int qt = 0; qt < LK_QTYPE_COUNT; qt++) {
        int mine = 0;
        for (int t = 0; t < N_TYPES; t++)
            mine |= k_types[t] == qt;
        assert_int_equal(q8_expander_gguf(qt) != NULL, mine);
        if (avx2_of(LK_QTYPE_Q4_1)) {
            assert_int_equal(q8_expander_gguf_avx2(qt) != NULL, mine);
            /* the variants' hook: the AVX2 expander where there is one, else the reference */
            assert_true(q8_expander_avx2(qt) ==
                        (mine ? q8_expander_gguf_avx2(qt) : q8_expander(qt)));
        } else {
            assert_true(q8_expander_avx2(qt) == q8_expander(qt));
        }
    }
}

/* ---- q8_gemm_fwd on these types --------------------------------------------------------- */

/* A weight [out, in] of type qt from random bytes with planted fp16 scales: |d| in 2^-10..2^-6
 * (and dmin / m likewise) as real files have, or any finite fp16 when `wild`. */
static uint8_t *gguf_weight(int qt, int64_t out, int64_t in, int wild, q4_weight *w)
{
    const size_t rb = q4_row_bytes(qt, 32, in);
    const int64_t nblk = (int64_t)(rb / q4_block_bytes(qt)) * out;
    uint8_t *m = lk_aligned_alloc(rb * (size_t)out);
    assert_non_null(m);
    for (size_t i = 0; i < rb * (size_t)out; i++)
        m[i] = (uint8_t)rnd();
    if (wild) {
        plant_scales(qt, m, nblk);
    } else {
        const size_t bb = q4_block_bytes(qt);
        int o[2];
        test_gguf_scale_offsets(qt, o);
        for (int64_t b = 0; b < nblk; b++)
            for (int k = 0; k < 2 && o[k] >= 0; k++) {
                const float v =
                    ldexpf(1.0f + (float)(rnd() % 1024) / 1024.0f, -10 + (int)(rnd() % 5)) *
                    (rnd() % 8 ? 1.0f : -1.0f);
                const uint16_t h = q4_fp32_to_fp16(v);
                memcpy(m + (size_t)b * bb + o[k], &h, 2);
            }
    }
    assert_ok(q4_weight_init(w, qt, 32, out, in, m));
    return m;
}

/* Work of the size k asks for, fenced: the kernel must not write outside it. */
static void q8_fwd(const q8_kernels *k, const q4_weight *w, const float *bias, const float *X,
                   int64_t T, float *Y, int nt)
{
    enum { FENCE = 64 };
    const size_t size = k->fwd_work(w, T, nt);
    uint8_t *buf = malloc(size + FENCE);
    assert_non_null(buf);
    memset(buf + size, 0xa5, FENCE);
    k->fwd(w, bias, X, T, Y, nt, buf, size);
    for (int i = 0; i < FENCE; i++)
        assert_int_equal(buf[size + i], 0xa5);
    free(buf);
}

/* The reference int8 product (a) against fp64 of the dequantised activations times the decoded W
 * within the fp32 roundings of its block sums, (b) against the f32 kernel's (unquantised X times
 * the decoded W) within the bound of the activation quantisation (|x - d*q| <= d/2 per value);
 * and every int8 variant of this build equal to the reference bit for bit, on 1 and 3 threads. */
static void check_gemm(int qt, int64_t out, int64_t in, int64_t T, int wild)
{
    q4_weight w;
    uint8_t *m = gguf_weight(qt, out, in, wild, &w);
    const int64_t nb = (in + 31) / 32, inp = nb * 32;
    float *X = malloc((size_t)(T * in) * 4), *Y = malloc((size_t)(T * out) * 4);
    float *Yf = malloc((size_t)(T * out) * 4), *Yv = malloc((size_t)(T * out) * 4);
    float *bias = malloc((size_t)out * 4), *wd = malloc((size_t)inp * 4);
    assert_true(X && Y && Yf && Yv && bias && wd);
    for (int64_t i = 0; i < T * in; i++)
        X[i] = ((float)(rnd() % 20001) - 10000.0f) / 10000.0f * (i % 7 == 3 ? 8.0f : 1.0f);
    for (int64_t o = 0; o < out; o++)
        bias[o] = (float)(rnd() % 100) / 50.0f - 1.0f;
    const q8_kernels *ref = q8_kernels_named("ref");
    assert_true(q8_supports(qt));
    q8_fwd(ref, &w, bias, X, T, Y, 2);
    const q4_kernels *f32 = q4_kernels_named("ref");
    const size_t fws = f32->fwd_work(&w, T, 2);
    void *fw = malloc(fws + 1);
    f32->fwd(&w, bias, X, T, Yf, 2, fw, fws);
    free(fw);
    q8_ablock *a = malloc((size_t)nb * sizeof *a);
    q8_wblock *e = malloc((size_t)nb * sizeof *e);
    for (int64_t t = 0; t < T; t++) {
        q8_quantize_act(X + t * in, in, a);
        for (int64_t o = 0; o < out; o++) {
            q4_decode_ref(&w, o, 0, inp, wd);
            q8_expander(qt)(&w, (const uint8_t *)w.data + (size_t)o * w.row_bytes, 0, nb, e);
            double exact = 0, mag = 0, qb = 0, sxw = 0;
            for (int64_t k = 0; k < in; k++) {
                const q8_wblock *b = &e[k / 32];
                const double xh = (double)a[k / 32].d * a[k / 32].q[k % 32];
                exact += xh * wd[k];
                mag += fabs(xh) * (fabs((double)b->s[k % 32 / 16] * b->q[k % 32]) +
                                   fabs((double)b->m[k % 32 / 16]));
                qb += a[k / 32].d * 0.5000001 * fabs((double)wd[k]);
                sxw += fabs((double)X[t * in + k]) * fabs((double)wd[k]);
            }
            const double got = Y[t * out + o], want = Yf[t * out + o];
            /* (a) the int8 arithmetic: fp64 of the dequantised activations times the decoded W,
             * within the fp32 roundings of the block sums (the expansion is exact) */
            const double tight = (double)(nb + 6) * 0x1p-24 * mag + 0x1p-24 * fabs(got) + 1e-30;
            if (!(fabs(got - bias[o] - exact) <= tight))
                fail_msg("%s [%lld x %lld] T=%lld [%lld][%lld]: int8 %.9g, fp64 %.9g (tol %.3g)",
                         lk_qtype_name((lk_qtype)qt), (long long)out, (long long)in, (long long)T,
                         (long long)t, (long long)o, got - bias[o], exact, tight);
            /* (b) against f32: the activation quantisation bound */
            const double bound = qb + tight + 1e-5 * sxw + 1e-6 * fabs(bias[o]);
            if (!(fabs(got - want) <= bound))
                fail_msg("%s [%lld x %lld] T=%lld [%lld][%lld]: int8 %.9g, f32 %.9g (bound %.3g, "
                         "sum|x||w| %.3g)",
                         lk_qtype_name((lk_qtype)qt), (long long)out, (long long)in, (long long)T,
                         (long long)t, (long long)o, got, want, bound, sxw);
        }
    }
    free(e);
    static const char *variants[] = {"avx2", "avx512vnni", "neon"};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const q8_kernels *k = q8_kernels_named(variants[v]);
        const q8_kernels gemv = {k ? k->name : "",
                                 k ? k->gemv : NULL,
                                 k ? k->gemv_work : NULL,
                                 NULL,
                                 NULL,
                                 0,
                                 NULL,
                                 NULL,
                                 NULL,
                                 NULL,
                                 0,
                                 0};
        for (int nt = 1; k && nt <= 5; nt += 2) { /* nt 5: the GEMV alone */
            q8_fwd(nt == 5 ? &gemv : k, &w, bias, X, T, Yv, nt == 5 ? 2 : nt);
            for (int64_t i = 0; i < T * out; i++)
                if (memcmp(&Yv[i], &Y[i], 4))
                    fail_msg("%s [%lld x %lld] T=%lld nt %d: %s gives %.9g at %lld, ref %.9g",
                             lk_qtype_name((lk_qtype)qt), (long long)out, (long long)in,
                             (long long)T, nt, k->name, Yv[i], (long long)i, Y[i]);
        }
    }
    free(a);
    free(X);
    free(Y);
    free(Yf);
    free(Yv);
    free(bias);
    free(wd);
    free(m);
}

/* Odd output counts, rows with a tail block (32-value types), several super-blocks, T = 1..17
 * and 64; realistic and wild scales. */
static void test_gemm(void **state)
{
    (void)state;
    for (int t = 0; t < N_TYPES; t++) {
        const int qt = k_types[t];
        const int kq = q4_is_kquant(qt);
        check_gemm(qt, 7, kq ? 256 : 100, 1, 0);
        check_gemm(qt, 33, kq ? 768 : 96, 5, 0);
        check_gemm(qt, 17, kq ? 512 : 300, 17, 0);
        check_gemm(qt, 40, kq ? 1024 : 520, 64, 0);
        check_gemm(qt, 9, kq ? 512 : 64, 3, 1);
        check_gemm(qt, 19, kq ? 256 : 160, 2, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expander_table),
        cmocka_unit_test(test_random_and_extreme),
        cmocka_unit_test(test_kquant_scale_packings),
        cmocka_unit_test(test_expand_vs_fixture),
        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
