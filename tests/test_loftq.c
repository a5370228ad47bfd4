/* test_loftq.c — the LoftQ start (src/loftq.c) against tests/gen/gen_loftq.py's references:
 * PEFT 0.13.2's own factors of a residual with a planted spectrum (same split of the singular
 * values, up to the sign of each singular pair), the Eckart-Young optimum on a flat spectrum,
 * ranks beyond the shape, determinism across thread counts; on stories260K-hf (nf4, q4_0) the
 * per-module residual norms of independent quantisers and their optimal rank-8 remainders, and
 * base + LoftQ adapter closer to the f32 model (loss and KL) than the quantised base alone. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora/loftq.h"
#include "core/mapfile.h"
#include "formats/safetensors.h"
#include "testutil.h"

#define MODEL "models/stories260K-hf"

/* A copy of tensor `name` (F32 or F64) of the planted fixture as doubles. */
static double *fixture_tensor(const char *name, int64_t *rows, int64_t *cols)
{
    st_file f;
    assert_ok(st_open(&f, data_path("loftq/planted.safetensors"), 1));
    const tensor_view *t = st_get(&f, name);
    assert_non_null(t);
    int64_t n = tensor_numel(t);
    double *d = malloc((size_t)n * sizeof *d);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) {
        if (t->dt == DT_F32) {
            float v;
            memcpy(&v, (const char *)t->data + 4 * i, 4);
            d[i] = v;
        } else {
            memcpy(&d[i], (const char *)t->data + 8 * i, 8);
        }
    }
    *rows = t->shape[0];
    *cols = t->ndim > 1 ? t->shape[1] : 1;
    st_close(&f);
    return d;
}

static float *to_f32(const double *d, int64_t n)
{
    float *f = malloc((size_t)n * sizeof *f);
    assert_non_null(f);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)d[i];
    return f;
}

/* ‖R − s·B·A‖_F in double; B [out, r], A [r, in]. */
static double left_over(const float *R, const float *A, const float *B, int64_t out, int64_t in,
                        int64_t r, double s)
{
    double e = 0;
    for (int64_t o = 0; o < out; o++)
        for (int64_t c = 0; c < in; c++) {
            double p = 0;
            for (int64_t j = 0; j < r; j++)
                p += (double)B[o * r + j] * A[j * in + c];
            double d = R[o * in + c] - s * p;
            e += d * d;
        }
    return sqrt(e);
}

/* sqrt(Σ_{j>=r} σ_j²): the best any rank-r approximation can leave (Eckart-Young). */
static double optimum(const double *sv, int64_t n, int64_t r)
{
    double e = 0;
    for (int64_t j = r; j < n; j++)
        e += sv[j] * sv[j];
    return sqrt(e);
}

/* With scale 1 our B and A are PEFT's L and R up to the sign of each singular pair; with another
 * scale s, s·B·A is the same product and √(σ_j/s) sits on each side. */
static void test_planted_matches_peft(void **state)
{
    (void)state;
    int64_t out, in, r, one, ns;
    double *Rd = fixture_tensor("R_a", &out, &in), *Bp = fixture_tensor("B_a", &out, &r);
    double *Ap = fixture_tensor("A_a", &r, &in), *sv = fixture_tensor("S_a", &ns, &one);
    float *R = to_f32(Rd, out * in), *A = malloc((size_t)(r * in) * 4),
          *B = malloc((size_t)(r * out) * 4);
    float *Bw = to_f32(Bp, out * r), *Aw = to_f32(Ap, r * in);
    assert_ok(loftq_factor(R, out, in, r, 1.0f, LOFTQ_POWER_ITERS, 42, 0, A, B, 2));
    for (int64_t j = 0; j < r; j++) { /* align each pair's sign with PEFT's */
        double dot = 0;
        for (int64_t o = 0; o < out; o++)
            dot += (double)B[o * r + j] * Bw[o * r + j];
        for (int64_t o = 0; dot < 0 && o < out; o++)
            B[o * r + j] = -B[o * r + j];
        for (int64_t c = 0; dot < 0 && c < in; c++)
            A[j * in + c] = -A[j * in + c];
    }
    assert_true(check_close("B vs PEFT's lora_B", B, Bw, out * r, 2e-5, 1e-4));
    assert_true(check_close("A vs PEFT's lora_A", A, Aw, r * in, 2e-5, 1e-4));
    double opt = optimum(sv, ns, r);
    assert_true(fabs(left_over(R, A, B, out, in, r, 1.0) / opt - 1) < 1e-5);

    const float s = 2.5f; /* e.g. alpha 20, r 8 */
    assert_ok(loftq_factor(R, out, in, r, s, LOFTQ_POWER_ITERS, 42, 0, A, B, 1));
    assert_true(fabs(left_over(R, A, B, out, in, r, s) / opt - 1) < 1e-5);
    for (int64_t j = 0; j < r; j++) {
        double na = 0, nb = 0;
        for (int64_t c = 0; c < in; c++)
            na += (double)A[j * in + c] * A[j * in + c];
        for (int64_t o = 0; o < out; o++)
            nb += (double)B[o * r + j] * B[o * r + j];
        assert_true(fabs(sqrt(na) / sqrt(sv[j] / s) - 1) < 1e-5);
        assert_true(fabs(sqrt(nb) / sqrt(sv[j] / s) - 1) < 1e-5);
    }
    free(Rd), free(Bp), free(Ap), free(sv), free(R), free(A), free(B), free(Bw), free(Aw);
}

/* A noise-like residual (flat spectrum): within 0.5% of the Eckart-Young optimum, never below it;
 * the power passes matter (none is clearly worse). */
static void test_flat_spectrum_near_optimal(void **state)
{
    (void)state;
    int64_t out, in, ns, one;
    double *Rd = fixture_tensor("R_b", &out, &in), *sv = fixture_tensor("S_b", &ns, &one);
    float *R = to_f32(Rd, out * in);
    const int64_t r = 6;
    float *A = malloc((size_t)(r * in) * 4), *B = malloc((size_t)(r * out) * 4);
    double opt = optimum(sv, ns, r);
    assert_ok(loftq_factor(R, out, in, r, 1.0f, LOFTQ_POWER_ITERS, 7, 3, A, B, 2));
    double got = left_over(R, A, B, out, in, r, 1.0);
    assert_ok(loftq_factor(R, out, in, r, 1.0f, 0, 7, 3, A, B, 2));
    double no_power = left_over(R, A, B, out, in, r, 1.0);
    print_message("flat spectrum, rank %lld: optimum %.6f, LoftQ %.6f (%+.3f%%), without power "
                  "passes %.6f\n",
                  (long long)r, opt, got, 100 * (got / opt - 1), no_power);
    assert_true(got >= opt * (1 - 1e-6));
    assert_true(got <= opt * 1.005);
    assert_true(no_power > got);
    free(Rd), free(sv), free(R), free(A), free(B);
}

/* r above min(out, in): the factorisation is exact and the extra directions are zero. */
static void test_rank_beyond_shape(void **state)
{
    (void)state;
    int64_t out, in;
    double *Rd = fixture_tensor("R_b", &out, &in);
    const int64_t o2 = 12, i2 = 7, r = 10;
    float R[12 * 7], A[10 * 7], B[12 * 10];
    for (int64_t o = 0; o < o2; o++)
        for (int64_t c = 0; c < i2; c++)
            R[o * i2 + c] = (float)Rd[o * in + c];
    assert_ok(loftq_factor(R, o2, i2, r, 0.5f, 2, 1, 0, A, B, 1));
    double n = 0;
    for (int64_t i = 0; i < o2 * i2; i++)
        n += (double)R[i] * R[i];
    assert_true(left_over(R, A, B, o2, i2, r, 0.5) < 1e-5 * sqrt(n));
    for (int64_t j = i2; j < r; j++) {
        for (int64_t c = 0; c < i2; c++)
            assert_true(A[j * i2 + c] == 0.0f);
        for (int64_t o = 0; o < o2; o++)
            assert_true(B[o * r + j] == 0.0f);
    }
    assert_status(loftq_factor(R, o2, i2, r, 0.0f, 2, 1, 0, A, B, 1), LK_ERR_ARG, "LoftQ");
    free(Rd);
}

/* p [out, in] = B·A in double. */
static double *product(const float *A, const float *B, int64_t out, int64_t in, int64_t r)
{
    double *p = calloc((size_t)(out * in), sizeof *p);
    assert_non_null(p);
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < r; j++)
            for (int64_t c = 0; c < in; c++)
                p[o * in + c] += (double)B[o * r + j] * A[j * in + c];
    return p;
}

/* ‖p − q‖ / ‖p‖. */
static double rel_diff(const double *p, const double *q, int64_t n)
{
    double d = 0, z = 0;
    for (int64_t i = 0; i < n; i++)
        d += (p[i] - q[i]) * (p[i] - q[i]), z += p[i] * p[i];
    return sqrt(d / z);
}

/* Same seed, stream and thread count: the same bits; another thread count (GEMMs split
 * differently) or another stream (other probes): (nearly) the same product. */
static void test_deterministic(void **state)
{
    (void)state;
    const int64_t out = 700, in = 500, r = 8;
    float *R = malloc((size_t)(out * in) * 4), *A1 = malloc((size_t)(r * in) * 4);
    float *B1 = malloc((size_t)(r * out) * 4), *A2 = malloc((size_t)(r * in) * 4);
    float *B2 = malloc((size_t)(r * out) * 4);
    uint64_t x = 12345;
    for (int64_t i = 0; i < out * in; i++) { /* small uniform noise */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        R[i] = (float)(0.02 * ((double)(x >> 40) / (double)(1ull << 24) - 0.5));
    }
    for (int64_t j = 1; j <= r; j++) /* plus Σ_j (10/j)·u_j·v_jᵀ, sine bases */
        for (int64_t o = 0; o < out; o++)
            for (int64_t c = 0; c < in; c++)
                R[o * in + c] += (float)(10.0 / (double)j * sin(M_PI * (double)(j * o) / out) *
                                         sin(M_PI * (double)(j * c) / in));
    assert_ok(loftq_factor(R, out, in, r, 1.0f, LOFTQ_POWER_ITERS, 9, 1, A1, B1, 2));
    assert_ok(loftq_factor(R, out, in, r, 1.0f, LOFTQ_POWER_ITERS, 9, 1, A2, B2, 2));
    assert_memory_equal(A1, A2, (size_t)(r * in) * 4);
    assert_memory_equal(B1, B2, (size_t)(r * out) * 4);
    double *p1 = product(A1, B1, out, in, r);
    assert_ok(loftq_factor(R, out, in, r, 1.0f, LOFTQ_POWER_ITERS, 9, 1, A2, B2, 1));
    double *p2 = product(A2, B2, out, in, r);
    assert_true(rel_diff(p1, p2, out * in) < 1e-5);
    free(p2);
    assert_ok(loftq_factor(R, out, in, r, 1.0f, LOFTQ_POWER_ITERS, 9, 2, A2, B2, 2));
    assert_true(memcmp(A1, A2, (size_t)(r * in) * 4) != 0);
    p2 = product(A2, B2, out, in, r);
    assert_true(rel_diff(p1, p2, out * in) < 1e-4);
    free(R), free(A1), free(B1), free(A2), free(B2), free(p1), free(p2);
}

/* ---- stories260K-hf ---- */

static const char *sample(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/../../samples/data/%s", LK_TEST_DATA, name);
    return p;
}

typedef struct {
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *test; /* held-out examples, also the trainer's (never stepped) data */
    lk_trainer *t;
} run;

/* Model at quant with a fresh trainer (rank 8, alpha 16) of the given start. */
static void open_run(run *x, lk_qtype quant, lk_lora_init init)
{
    require_file(shared_path(MODEL "/model.safetensors"));
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 1; /* a tiny model: a team of threads would mostly wait */
    mp.quant = quant;
    assert_ok(lk_model_load(shared_path(MODEL), &mp, &x->m));
    assert_ok(lk_tokenizer_load(shared_path(MODEL), &x->tok));
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 128;
    dp.shuffle = 0;
    dp.pack = 0;
    assert_ok(lk_dataset_load(sample("whale-test.jsonl"), x->tok, &dp, &x->test));
    struct lk_train_params p = lk_train_params_default();
    p.rank = 8;
    p.alpha = 16;
    p.steps = 1;
    p.init = init;
    assert_ok(lk_trainer_create(x->m, x->test, &p, &x->t));
}

static void close_run(run *x)
{
    lk_trainer_free(x->t);
    lk_dataset_free(x->test);
    lk_tokenizer_free(x->tok);
    lk_model_free(x->m);
}

static double json_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* Per module: ‖W‖ and ‖R‖ as the independent quantisers give them, and a remainder within 1% of
 * the rank-8 optimum (and not below it). */
static void check_model_stats(lk_qtype quant, const char *key)
{
    char *text;
    size_t len;
    assert_ok(read_text_file(data_path("loftq/stories260K-r8.json"), 1 << 20, &text, &len));
    cJSON *ref = cJSON_Parse(text);
    free(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(ref, key);
    assert_non_null(fmt);
    run x;
    open_run(&x, quant, LK_INIT_LOFTQ);
    int64_t n;
    const struct lk_loftq_stat *st = lk_trainer_loftq_stats(x.t, &n);
    assert_int_equal(n, 5 * 7);
    assert_int_equal(cJSON_GetArraySize(fmt), n);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%lld.%s.%s", (long long)st[i].layer,
                 st[i].module <= LK_MOD_O ? "self_attn" : "mlp", lk_module_name(st[i].module));
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(fmt, name);
        assert_non_null(e);
        double opt = json_num(e, "optimal_remaining");
        assert_true(fabs(st[i].weight_norm / json_num(e, "weight_norm") - 1) < 1e-6);
        assert_true(fabs(st[i].residual_norm / json_num(e, "residual_norm") - 1) < 1e-5);
        assert_true(st[i].remaining_norm >= opt * (1 - 1e-5));
        assert_true(st[i].remaining_norm <= opt * 1.01);
        worst = fmax(worst, st[i].remaining_norm / opt - 1);
    }
    print_message("%s: %lld modules, worst remainder %.4f%% above the rank-8 optimum\n", key,
                  (long long)n, 100 * worst);
    close_run(&x);
    cJSON_Delete(ref);
}

static void test_stories_nf4(void **state)
{
    (void)state;
    check_model_stats(LK_QTYPE_NF4, "nf4");
}

static void test_stories_q4_0(void **state)
{
    (void)state;
    check_model_stats(LK_QTYPE_Q4_0, "q4_0");
}

/* Mean KL(p_ref ‖ p) per position of one sequence, from logits [T, V]. */
static double mean_kl(const float *ref, const float *got, int64_t T, int64_t V)
{
    double kl = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *a = ref + t * V, *b = got + t * V;
        double ma = a[0], mb = b[0], za = 0, zb = 0;
        for (int64_t v = 1; v < V; v++)
            ma = fmax(ma, a[v]), mb = fmax(mb, b[v]);
        for (int64_t v = 0; v < V; v++)
            za += exp(a[v] - ma), zb += exp(b[v] - mb);
        for (int64_t v = 0; v < V; v++) {
            double la = a[v] - ma - log(za), lb = b[v] - mb - log(zb);
            kl += exp(la) * (la - lb);
        }
    }
    return kl / (double)T;
}

/* Held-out loss and KL to the f32 model: the LoftQ start is closer to f32 than the quantised
 * base alone (a PEFT start, B = 0), at step 0. */
static void test_closer_to_f32(void **state)
{
    (void)state;
    run f32, base, lq;
    open_run(&f32, LK_QTYPE_F32, LK_INIT_PEFT);
    open_run(&base, LK_QTYPE_NF4, LK_INIT_PEFT);
    open_run(&lq, LK_QTYPE_NF4, LK_INIT_LOFTQ);
    double l32, lb, ll;
    int64_t n;
    assert_ok(lk_trainer_eval(f32.t, f32.test, &l32, NULL, &n));
    assert_ok(lk_trainer_eval(base.t, base.test, &lb, NULL, &n));
    assert_ok(lk_trainer_eval(lq.t, lq.test, &ll, NULL, &n));
    const int64_t V = lk_model_get_config(f32.m)->vocab_size;
    double kb = 0, kl = 0;
    int64_t n_ex = lk_dataset_get_stats(f32.test)->examples;
    for (int64_t i = 0; i < n_ex; i++) {
        const int32_t *ids, *labels;
        int64_t T, line;
        assert_ok(lk_dataset_example(f32.test, i, &ids, &labels, &T, &line));
        T = T < 128 ? T : 128;
        float *a = malloc((size_t)(T * V) * 4), *b = malloc((size_t)(T * V) * 4);
        assert_ok(lk_model_forward(f32.m, ids, T, a));
        assert_ok(lk_model_forward(base.m, ids, T, b));
        kb += mean_kl(a, b, T, V) / (double)n_ex;
        assert_ok(lk_model_forward(lq.m, ids, T, b));
        kl += mean_kl(a, b, T, V) / (double)n_ex;
        free(a), free(b);
    }
    print_message("held-out loss: f32 %.5f, nf4 %.5f, nf4 + LoftQ %.5f; KL to f32: nf4 %.6f, "
                  "nf4 + LoftQ %.6f\n",
                  l32, lb, ll, kb, kl);
    assert_true(fabs(ll - l32) < fabs(lb - l32));
    assert_true(kl < 0.8 * kb);
    close_run(&f32);
    close_run(&base);
    close_run(&lq);
}

/* Clear errors: an f32 base (nothing to recover), LoftQ with an initial adapter, a base that was
 * stored pre-quantised (no full-precision W). */
static void test_errors(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *d;
    assert_ok(lk_model_load(shared_path(MODEL), NULL, &m));
    assert_ok(lk_tokenizer_load(shared_path(MODEL), &tok));
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 64;
    assert_ok(lk_dataset_load(sample("whale-test.jsonl"), tok, &dp, &d));
    struct lk_train_params p = lk_train_params_default();
    p.steps = 1;
    p.init = LK_INIT_LOFTQ;
    lk_trainer *t = NULL;
    assert_status(lk_trainer_create(m, d, &p, &t), LK_ERR_ARG, "base is f32");
    assert_null(t);
    p.init_adapter = data_path("lora/init");
    assert_status(lk_trainer_create(m, d, &p, &t), LK_ERR_ARG, "exclude each other");
    p.init_adapter = NULL;
    p.init = (lk_lora_init)7;
    assert_status(lk_trainer_create(m, d, &p, &t), LK_ERR_ARG, "adapter start");
    lk_model_free(m);
    p.init = LK_INIT_LOFTQ;
    assert_ok(lk_model_load(data_path("bnb/stories260K-nf4-dq"), NULL, &m));
    assert_status(lk_trainer_create(m, d, &p, &t), LK_ERR_UNSUPPORTED, "as U8");
    assert_null(t);
    lk_dataset_free(d);
    lk_tokenizer_free(tok);
    lk_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_matches_peft),
        cmocka_unit_test(test_flat_spectrum_near_optimal),
        cmocka_unit_test(test_rank_beyond_shape),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_stories_nf4),
        cmocka_unit_test(test_stories_q4_0),
        cmocka_unit_test(test_closer_to_f32),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
