/* test_inspect.c — adapter statistics from the small factors against numpy's SVD of the dense ΔW
 * (tests/data/adapters/inspect_ref.json from tests/gen/gen_adapters.py): norms, singular values,
 * cosine and relative Frobenius difference of two adapters, principal angles and subspace
 * similarity; an adapter against itself (cosine 1, difference 0, subspace 1); a zero ΔW; the
 * NaN/Inf scan; ‖ΔW‖/‖W‖ with a base model. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora/adapter.h"
#include "core/mapfile.h"
#include "formats/safetensors.h"
#include "testutil.h"

static cJSON *g_ref;

static int setup(void **state)
{
    (void)state;
    char *text = NULL;
    if (read_text_file(data_path("adapters/inspect_ref.json"), 1 << 20, &text, NULL) != LK_OK)
        return -1;
    g_ref = cJSON_Parse(text);
    free(text);
    return g_ref ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cJSON_Delete(g_ref);
    return 0;
}

static lk_adapter *load(const char *rel)
{
    lk_adapter *a = NULL;
    char *p = strdup(data_path(rel));
    assert_ok(lk_adapter_load(p, &a));
    free(p);
    return a;
}

static void close_to(const char *what, double got, double want, double rtol)
{
    if (!(fabs(got - want) <= rtol * fabs(want) + 1e-9))
        fail_msg("%s: got %.9g, want %.9g", what, got, want);
}

static const char *stem(const lk_adapter *a, int64_t i, char *buf, size_t n)
{
    struct lk_adapter_module m;
    assert_ok(lk_adapter_get_module(a, i, &m));
    snprintf(buf, n, "model.layers.%lld.%s.%s", (long long)m.layer,
             m.module <= LK_MOD_O ? "self_attn" : "mlp", lk_module_name(m.module));
    return buf;
}

static void test_stats_vs_numpy(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/stories-lora");
    const cJSON *stats = cJSON_GetObjectItem(g_ref, "stats");
    struct lk_adapter_info in;
    lk_adapter_get_info(a, &in);
    assert_int_equal(cJSON_GetArraySize(stats), in.n_modules);
    for (int64_t i = 0; i < in.n_modules; i++) {
        char key[128];
        const cJSON *r = cJSON_GetObjectItem(stats, stem(a, i, key, sizeof key));
        assert_non_null(r);
        struct lk_module_stats s;
        float sv[4];
        assert_ok(lk_adapter_module_stats(a, i, NAN, &s, sv));
        close_to("norm_a", s.norm_a, cJSON_GetObjectItem(r, "norm_a")->valuedouble, 1e-6);
        close_to("norm_b", s.norm_b, cJSON_GetObjectItem(r, "norm_b")->valuedouble, 1e-6);
        close_to("norm_delta", s.norm_delta, cJSON_GetObjectItem(r, "norm_delta")->valuedouble,
                 1e-6);
        const cJSON *want = cJSON_GetObjectItem(r, "sv");
        assert_int_equal(s.n_sv, 4);
        double sum = 0, h = 0;
        for (int k = 0; k < 4; k++) {
            double w = cJSON_GetArrayItem(want, k)->valuedouble;
            close_to("singular value", sv[k], w, 1e-5);
            sum += w;
        }
        for (int k = 0; k < 4; k++) {
            double p = cJSON_GetArrayItem(want, k)->valuedouble / sum;
            h -= p * log(p);
        }
        close_to("effective rank", s.effective_rank, exp(h), 1e-5);
        assert_true(s.rank90 >= 1 && s.rank90 <= 4);
        assert_true(isnan(s.rel_norm));
        assert_int_equal(s.n_nonfinite, 0);
    }
    lk_adapter_free(a);
}

static void test_diff_vs_numpy(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/stories-lora"), *b = load("adapters/stories-lora-b");
    const cJSON *diff = cJSON_GetObjectItem(g_ref, "diff");
    for (int64_t i = 0; i < a->n_mods; i++) {
        char key[128];
        const cJSON *r = cJSON_GetObjectItem(diff, stem(a, i, key, sizeof key));
        int64_t j = lk_adapter_find_module(b, a->mods[i].layer, a->mods[i].kind);
        assert_true(j >= 0);
        struct lk_module_diff d;
        float cs[4];
        assert_ok(lk_adapter_module_diff(a, i, b, j, &d, cs));
        close_to("cosine", d.cosine, cJSON_GetObjectItem(r, "cosine")->valuedouble, 1e-5);
        close_to("rel_diff", d.rel_diff, cJSON_GetObjectItem(r, "rel_diff")->valuedouble, 1e-6);
        close_to("subspace", d.subspace, cJSON_GetObjectItem(r, "subspace")->valuedouble, 1e-5);
        const cJSON *ca = cJSON_GetObjectItem(r, "cos_angles");
        assert_int_equal(d.n_angles, cJSON_GetArraySize(ca));
        for (int k = 0; k < d.n_angles; k++)
            close_to("principal cosine", cs[k], cJSON_GetArrayItem(ca, k)->valuedouble, 1e-5);
    }
    lk_adapter_free(a);
    lk_adapter_free(b);
}

static void test_self_diff(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/llama3-rslora");
    for (int64_t i = 0; i < a->n_mods; i++) {
        struct lk_module_diff d;
        float cs[4];
        assert_ok(lk_adapter_module_diff(a, i, a, i, &d, cs));
        close_to("self cosine", d.cosine, 1.0, 1e-12);
        assert_true(d.rel_diff < 1e-6);
        close_to("self subspace", d.subspace, 1.0, 1e-9);
        for (int k = 0; k < d.n_angles; k++)
            close_to("self principal cosine", cs[k], 1.0, 1e-6);
    }
    /* different shapes */
    struct lk_module_diff d;
    int64_t q = lk_adapter_find_module(a, 0, LK_MOD_Q), k = lk_adapter_find_module(a, 0, LK_MOD_K);
    assert_status(lk_adapter_module_diff(a, q, a, k, &d, NULL), LK_ERR_SHAPE, "different base");
    lk_adapter_free(a);
}

static void test_zero_nan_and_base(void **state)
{
    (void)state;
    lk_model *m;
    assert_ok(lk_model_load(data_path("models/qwen2-tiny"), NULL, &m));
    struct lk_adapter_params p = lk_adapter_params_default();
    p.rank = 2;
    lk_adapter *z;
    assert_ok(lk_adapter_create(lk_model_get_config(m), &p, &z));
    struct lk_module_stats s;
    double zn[64];
    assert_ok(lk_adapter_base_norms(z, data_path("models/qwen2-tiny"), zn));
    assert_ok(lk_adapter_module_stats(z, 0, zn[0], &s, NULL));
    assert_true(s.norm_delta == 0 && s.effective_rank == 0 && s.rank90 == 0);
    assert_true(s.rel_norm == 0);
    struct lk_module_diff d;
    assert_ok(lk_adapter_module_diff(z, 0, z, 0, &d, NULL));
    assert_true(isnan(d.cosine) && isnan(d.subspace) && d.n_angles == 0);
    /* relative norm against the base: ‖ΔW‖ / ‖W‖ */
    lk_adapter *a = load("adapters/qwen2-lora");
    double norms[64];
    assert_ok(lk_adapter_base_norms(a, data_path("models/qwen2-tiny"), norms));
    assert_ok(lk_adapter_module_stats(a, 0, norms[0], &s, NULL));
    assert_true(s.rel_norm > 0 && isfinite(s.rel_norm));
    st_file f;
    char file[8192];
    snprintf(file, sizeof file, "%s/model.safetensors", data_path("models/qwen2-tiny"));
    assert_ok(st_open(&f, file, 1));
    const tensor_view *t = st_get(&f, "model.layers.0.self_attn.q_proj.weight");
    int64_t n = tensor_numel(t);
    float *w = malloc((size_t)n * sizeof *w);
    convert_to_f32(t->dt, t->data, w, n, 1);
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)w[i] * w[i];
    close_to("rel_norm", s.rel_norm, s.norm_delta / sqrt(ss), 1e-9);
    free(w);
    st_close(&f);
    /* a NaN in a factor is found and reported */
    a->mods[1].B[3] = NAN;
    a->mods[1].A[0] = INFINITY;
    assert_status(lk_adapter_module_stats(a, 1, NAN, &s, NULL), LK_ERR_NUMERIC, "NaN/Inf");
    /* norms against the wrong base */
    lk_adapter *l3 = load("adapters/llama3-rslora");
    assert_status(lk_adapter_base_norms(l3, data_path("models/qwen2-tiny"), norms), LK_ERR_SHAPE,
                  "wrong base model?");
    lk_adapter_free(l3);
    assert_int_equal(s.n_nonfinite, 2);
    lk_adapter_free(a);
    lk_adapter_free(z);
    lk_model_free(m);
}

/* Ranks above the matrix size (r = 7 on a 3 x 2 ΔW, as a hostile file may declare): the norm and
 * the cosine come from the formed products (memory within the factors' size) and match the
 * dense double-precision values. */
static void test_rank_beyond_size(void **state)
{
    (void)state;
    enum { R = 7, OUT = 3, IN = 2 };
    lk_adapter *a;
    assert_ok(adapter_new("big-r", "peft", &a));
    double dense[OUT * IN] = {0}, ss = 0;
    adapter_module m = {
        .layer = 0, .kind = LK_MOD_Q, .r = R, .in = IN, .out = OUT, .alpha = 3.5, .scale = 0.5};
    m.A = malloc(R * IN * sizeof(float));
    m.B = malloc(OUT * R * sizeof(float));
    for (int k = 0; k < R * IN; k++)
        m.A[k] = (float)((k * 7 % 11) - 5) / 4;
    for (int k = 0; k < OUT * R; k++)
        m.B[k] = (float)((k * 5 % 13) - 6) / 8;
    for (int o = 0; o < OUT; o++)
        for (int c = 0; c < IN; c++) {
            for (int k = 0; k < R; k++)
                dense[o * IN + c] += 0.5 * m.B[o * R + k] * m.A[k * IN + c];
            ss += dense[o * IN + c] * dense[o * IN + c];
        }
    assert_ok(adapter_add_module(a, &m));
    struct lk_module_stats st;
    assert_ok(lk_adapter_module_stats(a, 0, NAN, &st, NULL));
    close_to("norm_delta", st.norm_delta, sqrt(ss), 1e-12);
    struct lk_module_diff d;
    assert_ok(lk_adapter_module_diff(a, 0, a, 0, &d, NULL));
    close_to("cosine", d.cosine, 1.0, 1e-12);
    lk_adapter_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_vs_numpy),   cmocka_unit_test(test_diff_vs_numpy),
        cmocka_unit_test(test_self_diff),        cmocka_unit_test(test_zero_nan_and_base),
        cmocka_unit_test(test_rank_beyond_size),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
