/* test_forward.c — the fp32 forward against PyTorch reference logits (tests/gen/gen_forward.py):
 * stories260K-hf (real weights) and tiny random Qwen2 / Llama-3 / Mistral models; incremental
 * decoding equals the full forward; results do not depend on the thread count; greedy
 * continuation of stories260K matches the reference token for token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "testutil.h"

#define LOGIT_ATOL 1e-4

static lk_model *load(const char *dir, int threads)
{
    struct lk_model_params p = lk_model_params_default();
    p.n_threads = threads;
    lk_model *m = NULL;
    assert_ok(lk_model_load(dir, &p, &m));
    return m;
}

/* Compare lk_model_forward with every tokens.K/logits.K pair of the fixture file. */
static void check_fixture(const char *model_dir, const char *fixture, int threads)
{
    lk_model *m = load(model_dir, threads);
    st_file f;
    assert_ok(st_open(&f, data_path(fixture), 1));
    int64_t V = lk_model_get_config(m)->vocab_size;
    for (int k = 0;; k++) {
        char tn[32], ln[32];
        snprintf(tn, sizeof tn, "tokens.%d", k);
        snprintf(ln, sizeof ln, "logits.%d", k);
        const tensor_view *tv = st_get(&f, tn), *lv = st_get(&f, ln);
        if (!tv)
            break;
        assert_non_null(lv);
        int64_t T = tv->shape[0];
        assert_int_equal(lv->shape[1], V);
        float *logits = malloc((size_t)(T * V) * sizeof(float));
        assert_ok(lk_model_forward(m, tv->data, T, logits));
        char what[128];
        snprintf(what, sizeof what, "%s seq %d (T=%lld, %d threads)", fixture, k, (long long)T,
                 threads);
        assert_true(check_close(what, logits, lv->data, T * V, LOGIT_ATOL, 0));
        free(logits);
    }
    st_close(&f);
    lk_model_free(m);
}

static void test_stories260K(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    check_fixture(shared_path("models/stories260K-hf"), "forward/stories260K.safetensors", 2);
}

static void test_qwen2_tiny(void **state)
{
    (void)state;
    check_fixture(data_path("models/qwen2-tiny"), "forward/qwen2-tiny.safetensors", 1);
    check_fixture(data_path("models/qwen2-tiny"), "forward/qwen2-tiny.safetensors", 4);
}

static void test_llama3_tiny(void **state)
{
    (void)state;
    check_fixture(data_path("models/llama3-tiny"), "forward/llama3-tiny.safetensors", 2);
}

static void test_mistral_window(void **state)
{
    (void)state;
    check_fixture(data_path("models/mistral-tiny"), "forward/mistral-tiny.safetensors", 2);
}

/* Prefix in one call then one token at a time gives the same logits as one full forward. */
static void test_incremental_equals_full(void **state)
{
    (void)state;
    lk_model *m = load(data_path("models/llama3-tiny"), 2);
    int64_t V = lk_model_get_config(m)->vocab_size, T = 300; /* > one 256-token chunk */
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    for (int64_t i = 0; i < T; i++)
        tok[i] = (int32_t)((i * 37 + 11) % V);
    float *full = malloc((size_t)(T * V) * sizeof(float));
    float *step = malloc((size_t)(T * V) * sizeof(float));
    assert_ok(lk_model_forward(m, tok, T, full));
    lk_session *s;
    assert_ok(lk_session_create(m, T, &s));
    assert_ok(lk_session_eval(s, tok, 5, step, 1));
    for (int64_t i = 5; i < T; i++)
        assert_ok(lk_session_eval(s, tok + i, 1, step + i * V, 0));
    assert_int_equal(lk_session_n_past(s), T);
    assert_true(check_close("incremental vs full", step, full, T * V, 1e-4, 1e-4));
    /* the cache is full: one more token is an argument error, not a crash */
    assert_status(lk_session_eval(s, tok, 1, step, 0), LK_ERR_ARG, "context");
    lk_session_reset(s);
    assert_status(lk_session_eval(s, (int32_t[]){(int32_t)V}, 1, step, 0), LK_ERR_ARG,
                  "outside the vocabulary");
    lk_session_free(s);
    free(tok);
    free(full);
    free(step);
    lk_model_free(m);
}

static void test_threads_agree(void **state)
{
    (void)state;
    lk_model *m = load(data_path("models/qwen2-tiny"), 1);
    int64_t V = lk_model_get_config(m)->vocab_size, T = 64;
    int32_t tok[64];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 7 + 3) % (int)V;
    float *a = malloc((size_t)(T * V) * sizeof(float)),
          *b = malloc((size_t)(T * V) * sizeof(float));
    assert_ok(lk_model_forward(m, tok, T, a));
    lk_model_set_threads(m, 4);
    assert_ok(lk_model_forward(m, tok, T, b));
    assert_true(check_close("1 vs 4 threads", b, a, T * V, 1e-5, 1e-5));
    free(a);
    free(b);
    lk_model_free(m);
}

/* Greedy decoding with the KV cache reproduces the reference's 120 tokens. */
static void test_stories260K_greedy(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    lk_model *m = load(shared_path("models/stories260K-hf"), 2);
    st_file f;
    assert_ok(st_open(&f, data_path("forward/stories260K-greedy.safetensors"), 1));
    struct lk_sampler_params sp = lk_sampler_params_default();
    sp.temperature = 0;
    lk_sampler *smp;
    assert_ok(lk_sampler_create(&sp, &smp));
    float logits[512];
    for (int k = 0; k < 2; k++) {
        char pn[16], gn[16];
        snprintf(pn, sizeof pn, "prompt.%d", k);
        snprintf(gn, sizeof gn, "greedy.%d", k);
        const tensor_view *p = st_get(&f, pn), *g = st_get(&f, gn);
        const int32_t *want = g->data;
        int64_t n = g->shape[0];
        assert_true(n >= 100);
        lk_session *s;
        assert_ok(lk_session_create(m, p->shape[0] + n, &s));
        assert_ok(lk_session_eval(s, p->data, p->shape[0], logits, 0));
        for (int64_t i = 0; i < n; i++) {
            int32_t next = lk_sampler_sample(smp, logits, 512);
            if (next != want[i])
                fail_msg("prompt %d: token %lld is %d, reference %d", k, (long long)i, next,
                         want[i]);
            assert_ok(lk_session_eval(s, &next, 1, logits, 0));
        }
        lk_session_free(s);
    }
    lk_sampler_free(smp);
    st_close(&f);
    lk_model_free(m);
}

/* Perplexity through windows: lk_model_nll over T tokens equals the sum of -log softmax from the
 * full logits (one window), and a windowed run predicts every token once. */
static void test_nll(void **state)
{
    (void)state;
    lk_model *m = load(data_path("models/mistral-tiny"), 2);
    int64_t V = lk_model_get_config(m)->vocab_size, T = 40;
    int32_t tok[40];
    for (int i = 0; i < T; i++)
        tok[i] = (i * 13 + 5) % (int)V;
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    assert_ok(lk_model_forward(m, tok, T, logits));
    double want = 0;
    for (int64_t t = 0; t + 1 < T; t++) {
        double mx = -1e30, se = 0;
        for (int64_t v = 0; v < V; v++)
            mx = logits[t * V + v] > mx ? logits[t * V + v] : mx;
        for (int64_t v = 0; v < V; v++)
            se += exp(logits[t * V + v] - mx);
        want += log(se) + mx - logits[t * V + tok[t + 1]];
    }
    double got = 0;
    int64_t cnt = 0;
    assert_ok(lk_model_nll(m, tok, T, 0, &got, &cnt));
    assert_int_equal(cnt, T - 1);
    assert_true(fabs(got - want) < 1e-3);
    got = 0;
    cnt = 0;
    assert_ok(lk_model_nll(m, tok, T, 16, &got, &cnt));
    assert_int_equal(cnt, T - 1);
    free(logits);
    lk_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260K),
        cmocka_unit_test(test_qwen2_tiny),
        cmocka_unit_test(test_llama3_tiny),
        cmocka_unit_test(test_mistral_window),
        cmocka_unit_test(test_incremental_equals_full),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_stories260K_greedy),
        cmocka_unit_test(test_nll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
