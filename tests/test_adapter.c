/* test_adapter.c — PEFT adapters: reading every config field that changes the maths (checked
 * against the scales PEFT 0.13 computes), attaching to a model (logits against PEFT's own forward,
 * tests/gen/gen_adapters.py), refusing what is not supported with a clear message, writing PEFT
 * folders back (bit-exact round trip), creating adapters, and GGUF adapters' q/k row order. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "lora/adapter.h"
#include "formats/safetensors.h"
#include "testutil.h"

/* g_dir/sub/file */
static const char *sub_path(const char *sub, const char *file)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s/%s", g_dir, sub, file);
    return p;
}

static char *adapter_path(const char *name)
{
    return strdup(data_path(name));
}

static int mkdir_p(const char *p)
{
    return mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Reference tensor from tests/data/adapters/reference.safetensors (copied out). */
static float *ref_tensor(const char *name, int64_t *n)
{
    st_file f;
    assert_ok(st_open(&f, data_path("adapters/reference.safetensors"), 1));
    const tensor_view *t = st_get(&f, name);
    if (!t)
        fail_msg("reference '%s' missing", name);
    *n = tensor_numel(t);
    float *x = malloc((size_t)*n * sizeof *x);
    memcpy(x, t->data, (size_t)*n * sizeof *x);
    st_close(&f);
    return x;
}

static const int32_t g_tokens[] = {1, 403, 407, 261, 378, 432};

static lk_adapter *load(const char *rel)
{
    lk_adapter *a = NULL;
    char *p = adapter_path(rel);
    assert_ok(lk_adapter_load(p, &a));
    free(p);
    return a;
}

static void test_info_and_scales(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/stories-lora");
    struct lk_adapter_info in;
    lk_adapter_get_info(a, &in);
    assert_string_equal(in.format, "peft");
    assert_string_equal(in.base_model, "stories260K-hf");
    assert_int_equal(in.rank, 4);
    assert_true(in.alpha == 8);
    assert_int_equal(in.n_modules, 5 * 4);
    assert_int_equal(in.target_mask, 0xf);
    struct lk_adapter_module m;
    assert_ok(lk_adapter_get_module(a, 0, &m));
    assert_int_equal(m.layer, 0);
    assert_int_equal(m.module, LK_MOD_Q);
    assert_true(m.scale == 2.0);
    lk_adapter_free(a);

    /* rsLoRA + rank_pattern + alpha_pattern: PEFT's first-matching-key rule */
    a = load("adapters/llama3-rslora");
    lk_adapter_get_info(a, &in);
    assert_true(in.use_rslora);
    int64_t i = lk_adapter_find_module(a, 1, LK_MOD_Q);
    assert_ok(lk_adapter_get_module(a, i, &m));
    assert_int_equal(m.r, 2);
    assert_true(fabs(m.scale - 6 / sqrt(2)) < 1e-12);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 0, LK_MOD_Q), &m));
    assert_int_equal(m.r, 4);
    assert_true(fabs(m.scale - 6 / 2.0) < 1e-12);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 0, LK_MOD_V), &m));
    assert_true(fabs(m.scale - 3 / 2.0) < 1e-12);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 1, LK_MOD_DOWN), &m));
    assert_int_equal(m.r, 3);
    assert_true(fabs(m.scale - 6 / sqrt(3)) < 1e-12);
    assert_int_equal(lk_adapter_find_module(a, 0, LK_MOD_GATE), -1);
    lk_adapter_free(a);

    a = load("adapters/qwen2-dora");
    lk_adapter_get_info(a, &in);
    assert_true(in.use_dora);
    assert_ok(lk_adapter_get_module(a, 0, &m));
    assert_non_null(m.magnitude);
    lk_adapter_free(a);
}

/* Forward logits of base + adapter against PEFT's forward of the same model. */
static void check_attached(const char *model_rel, const char *adapter_rel, const char *ref)
{
    lk_model *m;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 2;
    char *mp_path = strdup(model_rel[0] == '/' ? model_rel : data_path(model_rel));
    assert_ok(lk_model_load(mp_path, &mp, &m));
    free(mp_path);
    lk_adapter *a = load(adapter_rel);
    assert_ok(lk_model_attach_adapter(m, a, 1.0f));
    int64_t V = lk_model_get_config(m)->vocab_size, n;
    int32_t tok[6];
    for (int i = 0; i < 6; i++)
        tok[i] = g_tokens[i] % (int32_t)V;
    float *want = ref_tensor(ref, &n);
    assert_int_equal(n, 6 * V);
    float *got = malloc((size_t)n * sizeof *got);
    assert_ok(lk_model_forward(m, tok, 6, got));
    assert_true(check_close(ref, got, want, n, 1e-4, 1e-4));
    /* detaching gives the base back: the logits move */
    lk_model_detach_adapters(m);
    assert_ok(lk_model_forward(m, tok, 6, got));
    assert_true(max_abs_diff(got, want, n) > 1e-3);
    free(got);
    free(want);
    lk_model_free(m);
    lk_adapter_free(a);
}

static void test_attach_matches_peft(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    char base[4096];
    snprintf(base, sizeof base, "%s", shared_path("models/stories260K-hf"));
    check_attached(base, "adapters/stories-lora", "logits.stories-lora");
    check_attached("models/llama3-tiny", "adapters/llama3-rslora", "logits.llama3-rslora");
    check_attached("models/qwen2-tiny", "adapters/qwen2-lora", "logits.qwen2-lora");
}

static void test_attach_errors(void **state)
{
    (void)state;
    lk_model *m;
    assert_ok(lk_model_load(data_path("models/qwen2-tiny"), NULL, &m));
    lk_adapter *a = load("adapters/llama3-rslora");
    /* llama3-tiny q is [96, 64]; qwen2-tiny q is [64, 64] */
    assert_status(lk_model_attach_adapter(m, a, 1.0f), LK_ERR_SHAPE, "wrong base model?");
    assert_non_null(strstr(lk_last_error(), "[96, 64]"));
    assert_non_null(strstr(lk_last_error(), "[64, 64]"));
    assert_non_null(strstr(lk_last_error(), "layers.0.q_proj"));
    lk_adapter_free(a);
    a = load("adapters/qwen2-dora");
    assert_status(lk_model_attach_adapter(m, a, 1.0f), LK_ERR_UNSUPPORTED, "merge");
    lk_adapter_free(a);
    lk_model_free(m);
}

static void write_text(const char *path, const char *text)
{
    assert_int_equal(write_file(path, text, strlen(text)), 0);
}

/* A PEFT folder in the temp dir with the given config and stories-lora's weights. */
static const char *folder_with_config(const char *name, const char *config)
{
    rm_rf(tmp_path(name));
    assert_int_equal(mkdir_p(tmp_path(name)), 0);
    write_text(sub_path(name, "adapter_config.json"), config);
    mapfile mf;
    assert_ok(mapfile_open(&mf, data_path("adapters/stories-lora/adapter_model.safetensors"), 0));
    assert_int_equal(write_file(sub_path(name, "adapter_model.safetensors"), mf.data, mf.size), 0);
    mapfile_close(&mf);
    return tmp_path(name);
}

static void test_config_fields(void **state)
{
    (void)state;
    lk_adapter *a = NULL;
    /* unknown keys are ignored */
    assert_ok(lk_adapter_load(folder_with_config("unk", "{\"r\": 4, \"lora_alpha\": 8, "
                                                        "\"some_future_key\": [1, 2]}"),
                              &a));
    lk_adapter_free(a);
    assert_status(
        lk_adapter_load(folder_with_config("fifo", "{\"r\": 4, \"fan_in_fan_out\": true}"), &a),
        LK_ERR_UNSUPPORTED, "fan_in_fan_out");
    assert_status(lk_adapter_load(folder_with_config("bias", "{\"r\": 4, \"bias\": \"all\"}"), &a),
                  LK_ERR_UNSUPPORTED, "bias");
    assert_status(lk_adapter_load(folder_with_config("mts", "{\"r\": 4, \"modules_to_save\": "
                                                            "[\"lm_head\"]}"),
                                  &a),
                  LK_ERR_UNSUPPORTED, "modules_to_save");
    assert_status(lk_adapter_load(folder_with_config("ia3", "{\"peft_type\": \"IA3\"}"), &a),
                  LK_ERR_UNSUPPORTED, "IA3");
    /* r disagreeing with the tensors */
    assert_status(lk_adapter_load(folder_with_config("r8", "{\"r\": 8, \"lora_alpha\": 8}"), &a),
                  LK_ERR_SHAPE, "r = 8");
    /* a DoRA flag without magnitudes */
    assert_status(lk_adapter_load(folder_with_config("dora", "{\"r\": 4, \"use_dora\": true}"), &a),
                  LK_ERR_FORMAT, "magnitude");
    assert_status(lk_adapter_load(folder_with_config("json", "{\"r\": 4,"), &a), LK_ERR_FORMAT,
                  "JSON");
    /* rank and alpha patterns are looked up separately (current PEFT), a key may be the whole
     * module name, keys are regexes */
    assert_ok(lk_adapter_load(
        folder_with_config("pat",
                           "{\"r\": 4, \"lora_alpha\": 8, \"rank_pattern\": {\"q_proj\": "
                           "4}, \"alpha_pattern\": {\"layers.0.self_attn.q_proj\": 2, "
                           "\"model.layers.2.self_attn.k_proj\": 1, \"layers.[34].*v_proj\": "
                           "16}}"),
        &a));
    struct lk_adapter_module m;
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 0, LK_MOD_Q), &m));
    assert_true(m.scale == 0.5);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 1, LK_MOD_Q), &m));
    assert_true(m.scale == 2.0);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 2, LK_MOD_K), &m));
    assert_true(m.scale == 0.25);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 4, LK_MOD_V), &m));
    assert_true(m.scale == 4.0);
    assert_ok(lk_adapter_get_module(a, lk_adapter_find_module(a, 2, LK_MOD_V), &m));
    assert_true(m.scale == 2.0);
    lk_adapter_free(a);
    a = NULL;
    assert_status(lk_adapter_load(folder_with_config("re", "{\"r\": 4, \"alpha_pattern\": "
                                                           "{\"q_proj(\": 2}}"),
                                  &a),
                  LK_ERR_FORMAT, "regex");
    /* pattern values that no integer or finite number can hold (were cast unchecked) */
    assert_status(lk_adapter_load(folder_with_config("rbig", "{\"r\": 4, \"rank_pattern\": "
                                                             "{\"q_proj\": 1e300}}"),
                                  &a),
                  LK_ERR_FORMAT, "rank_pattern gives model.layers.0.self_attn.q_proj r = 1e+300");
    assert_status(lk_adapter_load(folder_with_config("ainf", "{\"r\": 4, \"alpha_pattern\": "
                                                             "{\"q_proj\": -1e999}}"),
                                  &a),
                  LK_ERR_FORMAT, "non-finite alpha");
    assert_null(a);
}

static void test_legacy_and_foreign(void **state)
{
    (void)state;
    lk_adapter *a = NULL;
    assert_int_equal(mkdir_p(tmp_path("legacy")), 0);
    write_text(sub_path("legacy", "adapter_config.json"), "{\"r\": 4}");
    write_text(sub_path("legacy", "adapter_model.bin"), "PK\003\004 pickle");
    assert_status(lk_adapter_load(tmp_path("legacy"), &a), LK_ERR_UNSUPPORTED, "adapter_model.bin");
    assert_status(lk_adapter_load(tmp_path("nothing-here"), &a), LK_ERR_IO, "nothing-here");
    /* an embedding LoRA tensor is refused by name */
    assert_int_equal(mkdir_p(tmp_path("embed")), 0);
    write_text(sub_path("embed", "adapter_config.json"), "{\"r\": 1}");
    float x[4] = {1, 2, 3, 4};
    tensor_view v = {.name = "base_model.model.model.embed_tokens.lora_embedding_A",
                     .dt = DT_F32,
                     .ndim = 2,
                     .shape = {1, 4},
                     .data = x,
                     .nbytes = sizeof x};
    assert_ok(st_write(sub_path("embed", "adapter_model.safetensors"), &v, 1, NULL, NULL, NULL, 0));
    assert_status(lk_adapter_load(tmp_path("embed"), &a), LK_ERR_UNSUPPORTED, "embed_tokens");
}

static void same_adapter(const lk_adapter *x, const lk_adapter *y)
{
    assert_int_equal(x->n_mods, y->n_mods);
    assert_int_equal(x->use_rslora, y->use_rslora);
    assert_int_equal(x->use_dora, y->use_dora);
    for (int64_t i = 0; i < x->n_mods; i++) {
        const adapter_module *p = &x->mods[i], *q = &y->mods[i];
        assert_int_equal(p->layer, q->layer);
        assert_int_equal(p->kind, q->kind);
        assert_int_equal(p->r, q->r);
        assert_true(p->scale == q->scale);
        assert_memory_equal(p->A, q->A, (size_t)(p->r * p->in) * 4);
        assert_memory_equal(p->B, q->B, (size_t)(p->out * p->r) * 4);
        if (p->mag)
            assert_memory_equal(p->mag, q->mag, (size_t)p->out * 4);
    }
}

static void test_save_peft_round_trip(void **state)
{
    (void)state;
    const char *names[] = {"adapters/stories-lora", "adapters/llama3-rslora",
                           "adapters/qwen2-dora"};
    for (int k = 0; k < 3; k++) {
        lk_adapter *a = load(names[k]), *b = NULL;
        assert_ok(lk_adapter_save_peft(a, tmp_path("saved"), 1));
        assert_status(lk_adapter_save_peft(a, tmp_path("saved"), 0), LK_ERR_IO, "exists");
        assert_ok(lk_adapter_load(tmp_path("saved"), &b));
        same_adapter(a, b);
        lk_adapter_free(a);
        lk_adapter_free(b);
    }
}

static void test_create(void **state)
{
    (void)state;
    lk_model *m;
    assert_ok(lk_model_load(data_path("models/qwen2-tiny"), NULL, &m));
    const struct lk_model_config *cfg = lk_model_get_config(m);
    struct lk_adapter_params p = lk_adapter_params_default();
    p.rank = 3;
    p.target_mask = (1u << LK_MOD_Q) | (1u << LK_MOD_DOWN);
    lk_adapter *a;
    assert_ok(lk_adapter_create(cfg, &p, &a));
    struct lk_adapter_info in;
    lk_adapter_get_info(a, &in);
    assert_int_equal(in.n_modules, 2 * cfg->n_layers);
    struct lk_adapter_module mod;
    assert_ok(lk_adapter_get_module(a, 1, &mod));
    assert_int_equal(mod.module, LK_MOD_DOWN);
    assert_int_equal(mod.in, cfg->intermediate_size);
    double bound = 1 / sqrt((double)mod.in), mx = 0;
    for (int64_t i = 0; i < mod.r * mod.in; i++)
        mx = fmax(mx, fabs(mod.A[i]));
    assert_true(mx <= bound && mx > 0.5 * bound); /* kaiming-uniform(a=√5) */
    /* B = 0: attaching changes nothing */
    int32_t tok[4] = {1, 2, 3, 4};
    float *l0 = malloc(4 * 300 * sizeof(float)), *l1 = malloc(4 * 300 * sizeof(float));
    assert_ok(lk_model_forward(m, tok, 4, l0));
    assert_ok(lk_model_attach_adapter(m, a, 1.0f));
    assert_ok(lk_model_forward(m, tok, 4, l1));
    assert_memory_equal(l0, l1, 4 * 300 * sizeof(float));
    lk_adapter_free(a);
    lk_model_detach_adapters(m);
    p.init_std_b = 0.05;
    assert_ok(lk_adapter_create(cfg, &p, &a));
    assert_ok(lk_model_attach_adapter(m, a, 1.0f));
    assert_ok(lk_model_forward(m, tok, 4, l1));
    assert_true(max_abs_diff(l0, l1, 4 * 300) > 1e-4);
    p.rank = 0;
    lk_adapter *bad = NULL;
    assert_status(lk_adapter_create(cfg, &p, &bad), LK_ERR_ARG, "rank");
    free(l0);
    free(l1);
    lk_adapter_free(a);
    lk_model_free(m);
}

/* The training-base record: none in PEFT's own adapters; set, it survives a PEFT and a GGUF save;
 * model options follow it; names it cannot rebuild are refused by name; a rank beyond a module's
 * smaller side is refused with the limit. */
static void test_base_record(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/stories-lora"), *b = NULL;
    struct lk_adapter_base r, got;
    lk_adapter_get_base(a, &r);
    assert_int_equal(r.recorded, 0);
    assert_string_equal(r.quant, "");
    r = (struct lk_adapter_base){
        .recorded = 1, .quant = "nf4", .quant_embed = "q8_0", .compute = "f32"};
    assert_ok(lk_adapter_set_base_record(a, &r));
    assert_ok(lk_adapter_save_peft(a, tmp_path("rec"), 1));
    assert_ok(lk_adapter_load(tmp_path("rec"), &b));
    lk_adapter_get_base(b, &got);
    assert_true(got.recorded && lk_adapter_base_equal(&r, &got));
    assert_string_equal(got.quant_embed, "q8_0");
    lk_adapter_free(b);
    struct lk_model_config cfg;
    require_file(shared_path("models/stories260K-hf/config.json"));
    assert_ok(lk_config_load(shared_path("models/stories260K-hf"), &cfg));
    assert_ok(lk_adapter_save_gguf(a, &cfg, tmp_path("rec.gguf"), "f32", 1));
    assert_ok(lk_adapter_load(tmp_path("rec.gguf"), &b));
    lk_adapter_get_base(b, &got);
    assert_true(got.recorded && lk_adapter_base_equal(&r, &got));
    lk_adapter_free(b);
    struct lk_model_params mp = lk_model_params_default();
    assert_ok(lk_adapter_base_model_params(&r, &mp));
    assert_int_equal(mp.quant, LK_QTYPE_NF4);
    assert_int_equal(mp.quant_embed, LK_QTYPE_Q8_0);
    struct lk_adapter_base f32 = {.recorded = 1, .quant = "f32"}, g = r;
    struct lk_adapter_base none = f32;
    snprintf(none.quant, sizeof none.quant, "none");
    assert_true(lk_adapter_base_equal(&f32, &none)); /* two names of one format */
    assert_false(lk_adapter_base_equal(&f32, &r));
    snprintf(g.quant, sizeof g.quant, "q4_k");
    assert_status(lk_adapter_base_model_params(&g, &mp), LK_ERR_UNSUPPORTED, "'q4_k'");
    memset(g.compute, 'x', sizeof g.compute); /* no terminator within the field */
    assert_status(lk_adapter_set_base_record(a, &g), LK_ERR_ARG, "too long");
    assert_ok(lk_adapter_set_base_record(a, NULL));
    lk_adapter_get_base(a, &got);
    assert_int_equal(got.recorded, 0);
    lk_adapter_free(a);
    assert_ok(lk_config_load(data_path("models/qwen2-tiny"), &cfg));
    struct lk_adapter_params p = lk_adapter_params_default();
    p.rank = 33; /* k_proj is [32, 64] */
    assert_status(lk_adapter_create(&cfg, &p, &a), LK_ERR_ARG,
                  "--rank must be at most 32 for this model (k_proj is [32, 64]), got 33");
    p.target_mask = 1u << LK_MOD_Q; /* q_proj alone is [64, 64] */
    assert_ok(lk_adapter_params_check_model(&p, &cfg));
}

/* The GGUF reference (gguf-py, llama.cpp conventions) holds B's q/k rows permuted; after
 * lk_adapter_set_base the factors equal PEFT's bit for bit. */
static void test_gguf_rows(void **state)
{
    (void)state;
    struct lk_model_config cfg;
    require_file(shared_path("models/stories260K-hf/config.json"));
    assert_ok(lk_config_load(shared_path("models/stories260K-hf"), &cfg));
    lk_adapter *g = load("adapters/stories-lora.gguf"), *p = load("adapters/stories-lora");
    struct lk_adapter_info in;
    lk_adapter_get_info(g, &in);
    assert_string_equal(in.format, "gguf");
    assert_string_equal(in.arch, "llama");
    assert_true(in.alpha == 8);
    lk_model *m;
    assert_ok(lk_model_load(shared_path("models/stories260K-hf"), NULL, &m));
    assert_status(lk_model_attach_adapter(m, g, 1.0f), LK_ERR_ARG, "-m");
    lk_model_free(m);
    /* q rows differ before, match after */
    assert_true(memcmp(g->mods[0].B, p->mods[0].B, 64 * 4 * 4) != 0);
    assert_ok(lk_adapter_set_base(g, &cfg));
    same_adapter(g, p);
    lk_adapter_free(g);
    lk_adapter_free(p);
    /* a GGUF adapter for llama against a qwen2 base */
    struct lk_model_config q;
    assert_ok(lk_config_load(data_path("models/qwen2-tiny"), &q));
    g = load("adapters/stories-lora.gguf");
    assert_status(lk_adapter_set_base(g, &q), LK_ERR_SHAPE, "wrong base model?");
    lk_adapter_free(g);
}

static void test_permutation(void **state)
{
    (void)state;
    /* 2 heads of hd 4: HF rows (h, j·2 + i) → GGUF rows (h, 2·i + j) */
    float x[8], y[8];
    for (int i = 0; i < 8; i++)
        x[i] = y[i] = (float)i;
    assert_ok(adapter_permute_rows(y, 8, 1, 2, 0));
    const float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    assert_memory_equal(y, want, sizeof want);
    assert_ok(adapter_permute_rows(y, 8, 1, 2, 1));
    assert_memory_equal(x, y, sizeof x);
    assert_status(adapter_permute_rows(y, 6, 1, 2, 0), LK_ERR_SHAPE, "heads");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_and_scales),
        cmocka_unit_test(test_attach_matches_peft),
        cmocka_unit_test(test_attach_errors),
        cmocka_unit_test(test_config_fields),
        cmocka_unit_test(test_legacy_and_foreign),
        cmocka_unit_test(test_save_peft_round_trip),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_base_record),
        cmocka_unit_test(test_gguf_rows),
        cmocka_unit_test(test_permutation),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
