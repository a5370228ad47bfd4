/* test_decode.c — the per-token (decode) path. linear_forward_multi, which runs the q/k/v and
 * gate/up products of one token in one parallel region, gives the same bits as one
 * linear_forward per layer: quantised (f32 and int8 compute), fp32 weights cut as gemv_par cuts
 * them, with bias, llama.cpp's q/k row order and an adapter, for 1..3 threads. Decoding with the
 * KV cache equals the full forward of the same prefix on a quantised base (Q4_0, Q8_0 LM head)
 * under both compute modes (int8: bit for bit, as every row's activations are quantised on their
 * own), and gives the same bits with 1 and 2 threads; so does one step's attention over a long
 * cache, whose heads run on the team. The KV cache's attention (keys transposed in blocks, a
 * decoding step's grouped heads sharing each load) gives attention_forward's bits, and each
 * decoding step the bits of its query in a call over the whole cache. Top-k sampling without a sort
 * of the whole vocabulary draws the token a full sort draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/linear.h"
#include "nn/ops.h"
#include "testutil.h"

enum { IN = 200, NL = 5 };

static void randn(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((double)(rng_hash(seed, (uint64_t)i) >> 11) / 9007199254740992.0 - 0.5);
}

/* A quantised layer [out, IN] of qtype from random weights; its blocks in *buf (freed by the
 * caller). */
static linear quantised(int qtype, int block, int64_t out, uint64_t seed, void **buf)
{
    float *w = malloc((size_t)(out * IN) * sizeof(float));
    randn(w, out * IN, seed);
    size_t rb = q4_row_bytes(qtype, block, IN);
    *buf = malloc((size_t)out * rb);
    q4_quantize_matrix(qtype, block, w, out, IN, *buf, 1, NULL, NULL);
    linear L = {.name = "q", .in = IN, .out = out};
    assert_ok(q4_weight_init(&L.qw, qtype, block, out, IN, *buf));
    free(w);
    return L;
}

/* Layers of every kind sharing the input: Q4_0 with bias and q/k row order (2 heads), Q8_0 with
 * an adapter, NF4, a small fp32 one and an fp32 one large enough for gemv_par to split
 * (out·in >= 2^18). int8: the quantised ones compute on int8. */
static void check_multi(int int8)
{
    void *buf[3];
    linear L[NL];
    L[0] = quantised(LK_QTYPE_Q4_0, 32, 96, 1, &buf[0]);
    L[1] = quantised(LK_QTYPE_Q8_0, 32, 40, 2, &buf[1]);
    L[2] = quantised(LK_QTYPE_NF4, 64, 72, 3, &buf[2]);
    const int64_t big = (1 << 18) / IN + 17;
    float *w3 = malloc(64 * IN * sizeof(float)), *w4 = malloc((size_t)(big * IN) * sizeof(float));
    randn(w3, 64 * IN, 4);
    randn(w4, big * IN, 5);
    L[3] = (linear){.name = "f32", .in = IN, .out = 64, .w = w3};
    L[4] = (linear){.name = "f32 big", .in = IN, .out = big, .w = w4};
    float bias[96], A[4 * IN], B[40 * 4], x[IN];
    randn(bias, 96, 6);
    randn(A, 4 * IN, 7);
    randn(B, 40 * 4, 8);
    randn(x, IN, 9);
    L[0].b = bias;
    L[0].perm_heads = 2;
    L[1].lora[0] = (lora_delta){.A = A, .B = B, .r = 4, .scale = 0.5f};
    L[1].n_lora = 1;
    for (int i = 0; i < 3; i++)
        L[i].int8 = int8;
    const linear *Ls[NL] = {&L[0], &L[1], &L[2], &L[3], &L[4]};
    float *ya[NL], *yb[NL];
    for (int i = 0; i < NL; i++) {
        ya[i] = malloc((size_t)L[i].out * sizeof(float));
        yb[i] = malloc((size_t)L[i].out * sizeof(float));
    }
    for (int nt = 1; nt <= 3; nt++) {
        size_t ws = linear_forward_multi_work_bytes(Ls, NL, nt);
        for (int i = 0; i < NL; i++) {
            size_t n = linear_work_bytes(&L[i], 1, nt, 0);
            ws = n > ws ? n : ws;
        }
        void *work = malloc(ws);
        for (int i = 0; i < NL; i++)
            linear_forward(&L[i], x, 1, ya[i], work, ws, nt);
        /* exactly the multi call's own size (some layers' work may be larger) */
        size_t wm = linear_forward_multi_work_bytes(Ls, NL, nt);
        linear_forward_multi(Ls, NL, x, 1, yb, work, wm, nt);
        for (int i = 0; i < NL; i++)
            assert_memory_equal(ya[i], yb[i], (size_t)L[i].out * sizeof(float));
        free(work);
    }
    for (int i = 0; i < NL; i++) {
        free(ya[i]);
        free(yb[i]);
    }
    for (int i = 0; i < 3; i++)
        free(buf[i]);
    free(w3);
    free(w4);
}

static void test_multi_f32_compute(void **state)
{
    (void)state;
    check_multi(0);
}

static void test_multi_int8_compute(void **state)
{
    (void)state;
    check_multi(1);
}

/* One decoding step's attention over a long cache (SmolLM2's 9 query / 3 KV heads of 64, 2000
 * keys, a sliding window on the second call): its heads split over 1, 2 or 3 threads give the
 * same bits. */
static void test_attention_decode_threads(void **state)
{
    (void)state;
    enum { H = 9, KVH = 3, HD = 64, NK = 2000 };
    float *q = malloc(H * HD * sizeof(float)), *k = malloc((size_t)NK * KVH * HD * sizeof(float));
    float *v = malloc((size_t)NK * KVH * HD * sizeof(float)), *o[3];
    randn(q, H * HD, 11);
    randn(k, (int64_t)NK * KVH * HD, 12);
    randn(v, (int64_t)NK * KVH * HD, 13);
    for (int win = 0; win < 2; win++) {
        int64_t lo = win ? NK - 700 : 0;
        attn_shape as = {.T = 1, .H = H, .KVH = KVH, .hd = HD, .kpos0 = NK - 1, .lo = &lo};
        for (int nt = 1; nt <= 3; nt++) {
            float *work =
                malloc((size_t)attention_work_floats(NK, H, KVH, HD, nt, 0) * sizeof(float));
            o[nt - 1] = malloc(H * HD * sizeof(float));
            attention_forward(o[nt - 1], NULL, q, k, v, &as, work, nt);
            free(work);
        }
        for (int i = 1; i < 3; i++)
            assert_memory_equal(o[0], o[i], H * HD * sizeof(float));
        for (int i = 0; i < 3; i++)
            free(o[i]);
    }
    free(q);
    free(k);
    free(v);
}

/* The KV cache's attention (attention_forward_cached, SmolLM2's 9 query / 3 KV heads of 64 and
 * 7 / 1 heads of 128 for a group that fills two register blocks): keys and values stored in chunks
 * of 5, 1 and 40 positions, the last chunk after a rewind over stale keys; then
 * - a call of all N queries equals attention_forward bit for bit (no window), and
 * - each decoding step (one query over the cache, its heads sharing the loads) equals that
 *   query's row of the call of all N bit for bit, with and without a sliding window (a window
 *   of 37 keys: the first visible key is not on a block edge), on 1, 2 and 3 threads. */
static void check_cached(int64_t H, int64_t KVH, int64_t HD)
{
    enum { N = 70, WIN = 37, CTX = 90 };
    int64_t kvd = KVH * HD, qd = H * HD, kf = attention_kv_floats(CTX, KVH, HD);
    float *q = malloc((size_t)(N * qd) * sizeof(float));
    float *k = malloc((size_t)(N * kvd) * sizeof(float)),
          *v = malloc((size_t)(N * kvd) * sizeof(float));
    float *kc = malloc((size_t)kf * sizeof(float)), *vc = malloc((size_t)kf * sizeof(float));
    float *full = malloc((size_t)(N * qd) * sizeof(float)),
          *ref = malloc((size_t)(N * qd) * sizeof(float));
    float *o = malloc((size_t)qd * sizeof(float));
    float *work = malloc((size_t)attention_work_floats(N, H, KVH, HD, 3, 0) * sizeof(float));
    randn(q, N * qd, 21);
    randn(k, N * kvd, 22);
    randn(v, N * kvd, 23);
    for (int64_t i = 0; i < kf; i++) /* stale memory: anything finite, or worse */
        kc[i] = vc[i] = (i % 3) ? NAN : 1e30f;
    attention_kv_store(kc, vc, CTX, k, v, 0, 5, KVH, HD);
    attention_kv_store(kc, vc, CTX, k + 5 * kvd, v + 5 * kvd, 5, 1, KVH, HD);
    float *k2 = malloc((size_t)(N * kvd) * sizeof(float));
    for (int64_t i = 0; i < N * kvd; i++)
        k2[i] = 3.0f * k[i]; /* stale keys, overwritten after the rewind to 6 */
    attention_kv_store(kc, vc, CTX, k2 + 6 * kvd, v, 6, 50, KVH, HD);
    attention_kv_store(kc, vc, CTX, k + 6 * kvd, v + 6 * kvd, 6, 40, KVH, HD);
    attention_kv_store(kc, vc, CTX, k + 46 * kvd, v + 46 * kvd, 46, N - 46, KVH, HD);
    for (int win = 0; win < 2; win++) {
        int64_t lo[N];
        for (int64_t t = 0; t < N; t++)
            lo[t] = win && t >= WIN ? t - WIN + 1 : 0;
        attn_shape as = {.T = N, .H = H, .KVH = KVH, .hd = HD, .kpos0 = 0, .lo = lo};
        attention_forward_cached(full, NULL, q, kc, vc, CTX, &as, work, 2);
        if (!win) {
            attention_forward(ref, NULL, q, k, v, &as, work, 2);
            assert_memory_equal(full, ref, (size_t)(N * qd) * sizeof(float));
        }
        for (int64_t t = 0; t < N; t++)
            for (int nt = 1; nt <= 3; nt++) {
                attn_shape a1 = {.T = 1, .H = H, .KVH = KVH, .hd = HD, .kpos0 = t, .lo = &lo[t]};
                attention_forward_cached(o, NULL, q + t * qd, kc, vc, CTX, &a1, work, nt);
                assert_memory_equal(o, full + t * qd, (size_t)qd * sizeof(float));
            }
    }
    free(q);
    free(k);
    free(k2);
    free(v);
    free(kc);
    free(vc);
    free(full);
    free(ref);
    free(o);
    free(work);
}

static void test_attention_cached(void **state)
{
    (void)state;
    check_cached(9, 3, 64);
    check_cached(7, 1, 128);
}

static lk_model *load(lk_compute compute, int threads)
{
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    const char *dir = shared_path("models/stories260K-hf"); /* a static buffer: after the check */
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = threads;
    mp.quant = LK_QTYPE_Q4_0;
    mp.quant_embed = LK_QTYPE_Q8_0; /* the LM head quantised too */
    mp.compute = compute;
    lk_model *m;
    assert_ok(lk_model_load(dir, &mp, &m));
    return m;
}

/* Logits of tok[0..T): a 4-token prefix in one call, then one token at a time. */
static void decode(const lk_model *m, const int32_t *tok, int64_t T, float *logits)
{
    int64_t V = lk_model_get_config(m)->vocab_size;
    lk_session *s;
    assert_ok(lk_session_create(m, T, &s));
    assert_ok(lk_session_eval(s, tok, 4, logits, 1));
    for (int64_t i = 4; i < T; i++)
        assert_ok(lk_session_eval(s, tok + i, 1, logits + i * V, 0));
    lk_session_free(s);
}

static void check_decode(lk_compute compute)
{
    lk_model *m1 = load(compute, 1), *m2 = load(compute, 2);
    int64_t V = lk_model_get_config(m1)->vocab_size, T = 40;
    int32_t tok[40];
    for (int64_t i = 0; i < T; i++)
        tok[i] = (int32_t)((i * 37 + 11) % V);
    float *full = malloc((size_t)(T * V) * sizeof(float));
    float *a = malloc((size_t)(T * V) * sizeof(float)),
          *b = malloc((size_t)(T * V) * sizeof(float));
    assert_ok(lk_model_forward(m2, tok, T, full));
    decode(m1, tok, T, a);
    decode(m2, tok, T, b);
    assert_true(check_close("decode vs full forward", b, full, T * V, 1e-4, 1e-4));
    if (compute == LK_COMPUTE_INT8) /* activations quantised per row: the chunk does not matter */
        assert_memory_equal(b, full, (size_t)(T * V) * sizeof(float));
    assert_memory_equal(a, b, (size_t)(T * V) * sizeof(float)); /* 1 vs 2 threads */
    free(full);
    free(a);
    free(b);
    lk_model_free(m1);
    lk_model_free(m2);
}

static void test_decode_f32_compute(void **state)
{
    (void)state;
    check_decode(LK_COMPUTE_F32);
}

static void test_decode_int8_compute(void **state)
{
    (void)state;
    check_decode(LK_COMPUTE_INT8);
}

/* ---- sampling: transformers' temperature, top-k, top-p, by a full sort (the reference) ---- */

static const double *g_prob;

static int by_prob(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_prob[x] != g_prob[y])
        return g_prob[x] > g_prob[y] ? -1 : 1;
    return x - y;
}

static int32_t sample_ref(rng_state *rng, const struct lk_sampler_params *p, const float *l,
                          int64_t n, double *prob, int32_t *idx)
{
    float mx = l[0];
    for (int64_t i = 1; i < n; i++)
        mx = l[i] > mx ? l[i] : mx;
    for (int64_t i = 0; i < n; i++) {
        prob[i] = exp(((double)l[i] - mx) * (1.0 / p->temperature));
        idx[i] = (int32_t)i;
    }
    g_prob = prob;
    qsort(idx, (size_t)n, sizeof *idx, by_prob);
    int64_t keep = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    double kept = 0, cum = 0, sum = 0, acc = 0;
    for (int64_t i = 0; i < keep; i++)
        kept += prob[idx[i]];
    for (int64_t i = 0; i < keep; i++)
        if ((cum += prob[idx[i]]) >= p->top_p * kept) {
            keep = i + 1;
            break;
        }
    for (int64_t i = 0; i < keep; i++)
        sum += prob[idx[i]];
    double r = rng_uniform_f64(rng) * sum;
    for (int64_t i = 0; i < keep; i++)
        if (r < (acc += prob[idx[i]]))
            return idx[i];
    return idx[keep - 1];
}

/* lk_sampler_sample (which finds the top k by logit without sorting all n) draws the reference's
 * token every time: logits with ties, temperatures from 0.05 (probabilities underflowing to 0)
 * to 2, k from 1 to n, top-p 1, 0.9 and 0.3. */
static void test_sampler_top_k(void **state)
{
    (void)state;
    enum { N = 3000, DRAWS = 60 };
    float *l = malloc(N * sizeof(float));
    double *prob = malloc(N * sizeof(double));
    int32_t *idx = malloc(N * sizeof(int32_t));
    const float temps[] = {0.05f, 0.8f, 2.0f};
    const int ks[] = {1, 5, 40, N - 1, N};
    const float tps[] = {1.0f, 0.9f, 0.3f};
    for (int ti = 0; ti < 3; ti++)
        for (int ki = 0; ki < 5; ki++)
            for (int pi = 0; pi < 3; pi++) {
                struct lk_sampler_params p = {
                    .temperature = temps[ti], .top_k = ks[ki], .top_p = tps[pi], .seed = 7};
                lk_sampler *smp;
                assert_ok(lk_sampler_create(&p, &smp));
                rng_state rng;
                rng_seed(&rng, p.seed, RNG_SAMPLE);
                for (int d = 0; d < DRAWS; d++) {
                    randn(l, N, 100 + (uint64_t)d);
                    for (int i = 0; i < N; i++) /* a spread of 40, every 7th value repeated */
                        l[i] = i % 7 == 3 ? l[i - 1] : 80.0f * l[i];
                    int32_t want = sample_ref(&rng, &p, l, N, prob, idx);
                    assert_int_equal(lk_sampler_sample(smp, l, N), want);
                }
                lk_sampler_free(smp);
            }
    free(l);
    free(prob);
    free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_f32_compute),
        cmocka_unit_test(test_multi_int8_compute),
        cmocka_unit_test(test_attention_decode_threads),
        cmocka_unit_test(test_attention_cached),
        cmocka_unit_test(test_decode_f32_compute),
        cmocka_unit_test(test_decode_int8_compute),
        cmocka_unit_test(test_sampler_top_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
