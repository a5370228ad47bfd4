/* test_merge.c — lk_merge: merged weights against PEFT's merge_and_unload (LoRA, rsLoRA with
 * rank/alpha patterns, DoRA) and a numpy float64 reference for a weighted combination of two
 * adapters (tests/gen/gen_adapters.py); the merged f32 folder gives the same loss as base +
 * attached adapter; f16/bf16 outputs equal the rounded f32 result; the GGUF output of
 * stories260K-hf equals llama.cpp's own stories260K.gguf tensor for tensor (names, shapes, q/k
 * row order, vocabulary); refusals (existing output, quantised targets, wrong base); merging into
 * a GGUF base keeps its metadata and types (merged matrices re-quantised, the rest copied). */
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "lora/adapter.h"
#include "formats/gguf.h"
#include "q4.h"
#include "formats/safetensors.h"
#include "core/tensor.h"
#include "testutil.h"

static char g_stories[4096];

static int setup(void **state)
{
    snprintf(g_stories, sizeof g_stories, "%s", shared_path("models/stories260K-hf"));
    return tmp_dir_setup(state);
}

static lk_adapter *load(const char *rel)
{
    lk_adapter *a = NULL;
    char *p = strdup(data_path(rel));
    assert_ok(lk_adapter_load(p, &a));
    free(p);
    return a;
}

/* fp32 copy of tensor name from a safetensors file. */
static float *read_f32(const char *file, const char *name, int64_t *n)
{
    st_file f;
    assert_ok(st_open(&f, file, 1));
    const tensor_view *t = st_get(&f, name);
    if (!t)
        fail_msg("%s: '%s' missing", file, name);
    *n = tensor_numel(t);
    float *x = malloc((size_t)*n * sizeof *x);
    convert_to_f32(t->dt, t->data, x, *n, 1);
    st_close(&f);
    return x;
}

static void check_against_ref(const char *out_dir, const char *ref_key, const char *tensor)
{
    char file[8192];
    int64_t n1, n2;
    snprintf(file, sizeof file, "%s/model.safetensors", out_dir);
    float *got = read_f32(file, tensor, &n1);
    float *want = read_f32(data_path("adapters/reference.safetensors"), ref_key, &n2);
    assert_int_equal(n1, n2);
    assert_true(check_close(ref_key, got, want, n1, 1e-6, 1e-5));
    free(got);
    free(want);
}

static void merge_one(const char *base_path, const char *adapter, const char *out, const char *dt)
{
    char *base = strdup(base_path); /* data_path's buffer is reused by load() */
    lk_adapter *a = load(adapter);
    float w = 1.0f;
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = dt;
    p.force = 1;
    p.n_threads = 2;
    assert_ok(lk_merge(base, (const lk_adapter *const *)&a, &w, 1, out, &p));
    lk_adapter_free(a);
    free(base);
}

static void test_merge_matches_peft(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    merge_one(g_stories, "adapters/stories-lora", tmp_path("m1"), "f32");
    check_against_ref(tmp_path("m1"), "merged.stories-lora.model.layers.0.self_attn.q_proj.weight",
                      "model.layers.0.self_attn.q_proj.weight");
    check_against_ref(tmp_path("m1"), "merged.stories-lora.model.layers.4.self_attn.k_proj.weight",
                      "model.layers.4.self_attn.k_proj.weight");
    /* untouched tensors are copied bit for bit, side files too */
    char file[8192];
    int64_t n1, n2;
    snprintf(file, sizeof file, "%s/model.safetensors", tmp_path("m1"));
    float *got = read_f32(file, "model.layers.0.mlp.up_proj.weight", &n1);
    snprintf(file, sizeof file, "%s/model.safetensors", g_stories);
    float *want = read_f32(file, "model.layers.0.mlp.up_proj.weight", &n2);
    assert_memory_equal(got, want, (size_t)n1 * 4);
    free(got);
    free(want);
    snprintf(file, sizeof file, "%s/tokenizer.json", tmp_path("m1"));
    assert_true(file_exists(file));

    merge_one(data_path("models/llama3-tiny"), "adapters/llama3-rslora", tmp_path("m2"), NULL);
    static const char *const l3[] = {"model.layers.1.self_attn.q_proj.weight",
                                     "model.layers.1.self_attn.v_proj.weight",
                                     "model.layers.0.mlp.down_proj.weight"};
    for (int i = 0; i < 3; i++) {
        char key[256];
        snprintf(key, sizeof key, "merged.llama3-rslora.%s", l3[i]);
        check_against_ref(tmp_path("m2"), key, l3[i]);
    }
    /* qwen2-tiny is BF16: f32 output keeps the exact merge */
    merge_one(data_path("models/qwen2-tiny"), "adapters/qwen2-dora", tmp_path("m3"), "f32");
    check_against_ref(tmp_path("m3"), "merged.qwen2-dora.model.layers.0.self_attn.q_proj.weight",
                      "model.layers.0.self_attn.q_proj.weight");
    merge_one(data_path("models/qwen2-tiny"), "adapters/qwen2-lora", tmp_path("m4"), "f32");
    check_against_ref(tmp_path("m4"), "merged.qwen2-lora.model.layers.1.self_attn.k_proj.weight",
                      "model.layers.1.self_attn.k_proj.weight");
}

static void count_tensor(void *user, const struct lk_merge_tensor *t)
{
    int *n = user;
    n[0]++;
    n[1] += t->n_merged;
    assert_true(t->store_err >= 0 && t->store_err < 1e-2);
}

static void test_weighted_combination(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    lk_adapter *a[2] = {load("adapters/stories-lora"), load("adapters/stories-lora-b")};
    float w[2] = {0.7f, 0.3f};
    int counts[2] = {0, 0};
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "f32";
    p.on_tensor = count_tensor;
    p.user = counts;
    assert_ok(lk_merge(g_stories, (const lk_adapter *const *)a, w, 2, tmp_path("combo"), &p));
    assert_int_equal(counts[0], 47);            /* every tensor of stories260K-hf */
    assert_int_equal(counts[1], 5 * 4 + 5 * 7); /* modules of both adapters */
    check_against_ref(tmp_path("combo"), "combo.model.layers.2.self_attn.v_proj.weight",
                      "model.layers.2.self_attn.v_proj.weight");
    check_against_ref(tmp_path("combo"), "combo.model.layers.1.self_attn.o_proj.weight",
                      "model.layers.1.self_attn.o_proj.weight");
    /* an existing output is not replaced without force */
    assert_status(lk_merge(g_stories, (const lk_adapter *const *)a, w, 2, tmp_path("combo"), &p),
                  LK_ERR_IO, "already exists");
    lk_adapter_free(a[0]);
    lk_adapter_free(a[1]);
}

/* Loss of the merged f32 folder = loss of base + attached adapter. */
static void test_eval_equivalence(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    merge_one(g_stories, "adapters/stories-lora-b", tmp_path("eq"), "f32");
    const int32_t tok[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421};
    lk_model *base, *merged;
    assert_ok(lk_model_load(g_stories, NULL, &base));
    assert_ok(lk_model_load(tmp_path("eq"), NULL, &merged));
    lk_adapter *a = load("adapters/stories-lora-b");
    assert_ok(lk_model_attach_adapter(base, a, 1.0f));
    double n1 = 0, n2 = 0;
    int64_t c1 = 0, c2 = 0;
    assert_ok(lk_model_nll(base, tok, 13, 0, &n1, &c1));
    assert_ok(lk_model_nll(merged, tok, 13, 0, &n2, &c2));
    fprintf(stderr, "loss base+adapter %.7f merged %.7f\n", n1 / (double)c1, n2 / (double)c2);
    assert_true(fabs(n1 / (double)c1 - n2 / (double)c2) < 1e-5);
    lk_model_free(base);
    lk_model_free(merged);
    lk_adapter_free(a);
}

static void test_half_precision(void **state)
{
    (void)state;
    merge_one(data_path("models/llama3-tiny"), "adapters/llama3-rslora", tmp_path("f32"), "f32");
    merge_one(data_path("models/llama3-tiny"), "adapters/llama3-rslora", tmp_path("bf16"), "bf16");
    merge_one(data_path("models/llama3-tiny"), "adapters/llama3-rslora", tmp_path("f16"), "f16");
    char f[3][8192];
    const char *names[3] = {"f32", "bf16", "f16"};
    for (int i = 0; i < 3; i++)
        snprintf(f[i], sizeof f[i], "%s/model.safetensors", tmp_path(names[i]));
    st_file s16;
    assert_ok(st_open(&s16, f[1], 1));
    const char *t = "model.layers.1.self_attn.q_proj.weight";
    assert_int_equal(st_get(&s16, t)->dt, DT_BF16);
    st_close(&s16);
    int64_t n;
    float *x = read_f32(f[0], t, &n), *b = read_f32(f[1], t, &n), *h = read_f32(f[2], t, &n);
    for (int64_t i = 0; i < n; i++) {
        assert_true(b[i] == bf16_to_f32(f32_to_bf16(x[i])));
        assert_true(h[i] == f16_to_f32(f32_to_f16(x[i])));
    }
    free(x);
    free(b);
    free(h);
    char cfg[8192], *text;
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp_path("bf16"));
    assert_ok(read_text_file(cfg, 1 << 20, &text, NULL));
    assert_non_null(strstr(text, "\"bfloat16\""));
    free(text);
}

static void test_refusals(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/llama3-rslora");
    float w = 1;
    struct lk_merge_params p = lk_merge_params_default();
    const lk_adapter *const *aa = (const lk_adapter *const *)&a;
    assert_status(lk_merge(data_path("models/qwen2-tiny"), aa, &w, 1, tmp_path("x"), &p),
                  LK_ERR_SHAPE, "wrong base model?");
    p.dtype = "q4_0"; /* a safetensors folder holds no GGUF blocks */
    assert_status(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("x"), &p),
                  LK_ERR_UNSUPPORTED, ".gguf");
    p.dtype = "nf4";
    assert_status(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("x"), &p),
                  LK_ERR_UNSUPPORTED, "nf4");
    p.dtype = "f8";
    assert_status(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("x"), &p),
                  LK_ERR_ARG, "f8");
    p.dtype = NULL;
    p.base_quant = "nf5";
    assert_status(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("x"), &p),
                  LK_ERR_ARG, "--base-quant 'nf5'");
    p.base_quant = NULL;
    p.force = 1;
    w = 1;
    char *base = strdup(data_path("models/llama3-tiny"));
    assert_status(lk_merge(base, aa, &w, 1, base, &p), LK_ERR_ARG, "base model folder itself");
    free(base);
    p.force = 0;
    w = NAN;
    assert_status(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("x"), &p),
                  LK_ERR_ARG, "not finite");
    assert_false(file_exists(tmp_path("x.gguf")));
    lk_adapter_free(a);
}

/* GGUF output of stories260K-hf without adapters = llama.cpp's stories260K.gguf. */
static void test_gguf_matches_llama_cpp(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K/stories260K.gguf"));
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "f32";
    assert_ok(lk_merge(g_stories, NULL, NULL, 0, tmp_path("s.gguf"), &p));
    gguf_file ours, ref;
    assert_ok(gguf_open(&ours, tmp_path("s.gguf")));
    assert_ok(gguf_open(&ref, shared_path("models/stories260K/stories260K.gguf")));
    /* llama2.c's converter also wrote output.weight (a copy of the tied embedding) */
    assert_int_equal(ours.n_tensors, ref.n_tensors - 1);
    for (int64_t i = 0; i < ours.n_tensors; i++) {
        const gguf_tensor *a = &ours.tensors[i], *b = gguf_find_tensor(&ref, a->name);
        if (!b)
            fail_msg("tensor '%s' not in llama.cpp's file", a->name);
        assert_int_equal(a->type, b->type);
        assert_memory_equal(a->ne, b->ne, sizeof a->ne);
        if (memcmp(a->data, b->data, a->nbytes) != 0)
            fail_msg("tensor '%s' differs from llama.cpp's", a->name);
    }
    static const char *const arr[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                      "tokenizer.ggml.token_type"};
    for (int k = 0; k < 3; k++) {
        const gguf_kv *x = gguf_find_kv(&ours, arr[k]), *y = gguf_find_kv(&ref, arr[k]);
        assert_non_null(x);
        assert_int_equal(x->arr_n, y->arr_n);
        for (uint64_t i = 0; i < x->arr_n; i++)
            if (x->arr_str)
                assert_memory_equal(x->arr_str[i].ptr, y->arr_str[i].ptr, y->arr_str[i].len);
        if (x->arr_data)
            assert_memory_equal(x->arr_data, y->arr_data, x->arr_n * 4);
    }
    static const char *const u32[] = {
        "llama.embedding_length",        "llama.feed_forward_length",  "llama.attention.head_count",
        "llama.attention.head_count_kv", "llama.block_count",          "llama.rope.dimension_count",
        "tokenizer.ggml.bos_token_id",   "tokenizer.ggml.eos_token_id"};
    for (int k = 0; k < 8; k++) {
        int64_t x, y;
        assert_ok(gguf_get_i64(&ours, u32[k], &x));
        assert_ok(gguf_get_i64(&ref, u32[k], &y));
        assert_int_equal(x, y);
    }
    char *s;
    assert_ok(gguf_get_str(&ours, "tokenizer.ggml.model", &s));
    assert_string_equal(s, "llama");
    free(s);
    gguf_close(&ours);
    gguf_close(&ref);
}

/* GGUF output with an adapter: q rows are the permuted PEFT merge; f16 tensors. */
static void test_gguf_merged(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    lk_adapter *a = load("adapters/stories-lora");
    float w = 1;
    struct lk_merge_params p = lk_merge_params_default();
    assert_ok(lk_merge(g_stories, (const lk_adapter *const *)&a, &w, 1, tmp_path("m.gguf"), &p));
    gguf_file g;
    assert_ok(gguf_open(&g, tmp_path("m.gguf")));
    const gguf_tensor *t = gguf_find_tensor(&g, "blk.0.attn_q.weight");
    assert_int_equal(t->type, GGML_F16);
    assert_int_equal(gguf_find_tensor(&g, "blk.0.attn_norm.weight")->type, GGML_F32);
    int64_t n;
    float *want = read_f32(data_path("adapters/reference.safetensors"),
                           "merged.stories-lora.model.layers.0.self_attn.q_proj.weight", &n);
    assert_ok(adapter_permute_rows(want, 64, 64, 8, 0));
    float *got = malloc((size_t)n * sizeof *got);
    gguf_type_info(GGML_F16)->to_f32(t->data, got, n);
    assert_true(check_close("gguf q (f16)", got, want, n, 1e-3, 1e-3));
    free(got);
    free(want);
    gguf_close(&g);
    lk_adapter_free(a);
}

/* Qwen2: no permutation, biases kept, gpt2 vocabulary not needed for tiny models without one. */
static void test_gguf_qwen2_needs_tokenizer(void **state)
{
    (void)state;
    struct lk_merge_params p = lk_merge_params_default();
    assert_status(lk_merge(data_path("models/qwen2-tiny"), NULL, NULL, 0, tmp_path("q.gguf"), &p),
                  LK_ERR_IO, "tokenizer.json");
}

static void copy_to(const char *src_dir, const char *name, const char *dst_dir)
{
    char a[8192], b[8192];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    mapfile m;
    assert_ok(mapfile_open(&m, a, 0));
    assert_int_equal(write_file(b, m.data, m.size), 0);
    mapfile_close(&m);
}

/* Qwen2 with the real Qwen2.5 tokenizer: a byte-level BPE vocabulary ("gpt2", pre "qwen2",
 * merges), no q/k permutation, q/k/v biases kept as F32. */
static void test_gguf_qwen2(void **state)
{
    (void)state;
    require_file(shared_path("models/qwen2.5-tokenizer/tokenizer.json"));
    char dir[8192], tok[8192], model[8192];
    snprintf(dir, sizeof dir, "%s", tmp_path("qwen-with-tok"));
    snprintf(tok, sizeof tok, "%s", shared_path("models/qwen2.5-tokenizer"));
    snprintf(model, sizeof model, "%s", data_path("models/qwen2-tiny"));
    assert_int_equal(mkdir(dir, 0755), 0);
    copy_to(model, "config.json", dir);
    copy_to(model, "model.safetensors", dir);
    copy_to(tok, "tokenizer.json", dir);
    copy_to(tok, "tokenizer_config.json", dir);
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "f32";
    assert_ok(lk_merge(dir, NULL, NULL, 0, tmp_path("q.gguf"), &p));
    gguf_file g;
    assert_ok(gguf_open(&g, tmp_path("q.gguf")));
    char *s;
    assert_ok(gguf_get_str(&g, "tokenizer.ggml.model", &s));
    assert_string_equal(s, "gpt2");
    free(s);
    assert_ok(gguf_get_str(&g, "tokenizer.ggml.pre", &s));
    assert_string_equal(s, "qwen2");
    free(s);
    assert_ok(gguf_get_str(&g, "general.architecture", &s));
    assert_string_equal(s, "qwen2");
    free(s);
    assert_int_equal(gguf_find_kv(&g, "tokenizer.ggml.tokens")->arr_n, 300);
    assert_true(gguf_find_kv(&g, "tokenizer.ggml.merges")->arr_n > 100000);
    assert_non_null(gguf_find_tensor(&g, "blk.1.attn_k.bias"));
    assert_null(gguf_find_tensor(&g, "output.weight")); /* tied */
    char file[8300];
    int64_t n;
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    float *q = read_f32(file, "model.layers.0.self_attn.q_proj.weight", &n);
    assert_memory_equal(gguf_find_tensor(&g, "blk.0.attn_q.weight")->data, q, (size_t)n * 4);
    free(q);
    gguf_close(&g);
}

/* Llama 3 shapes in GGUF: head_dim 24 ≠ hidden/heads (key_length), untied output, rope_freqs
 * for llama3 rope scaling (1 for short wavelengths, the factor 32 for long ones), q rows
 * permuted with 4 heads of 24. The tokenizer is borrowed from stories260K-hf. */
static void test_gguf_llama3(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/tokenizer.json"));
    char dir[8192], model[8192];
    snprintf(dir, sizeof dir, "%s", tmp_path("l3-with-tok"));
    snprintf(model, sizeof model, "%s", data_path("models/llama3-tiny"));
    assert_int_equal(mkdir(dir, 0755), 0);
    copy_to(model, "config.json", dir);
    copy_to(model, "model.safetensors", dir);
    copy_to(g_stories, "tokenizer.json", dir);
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "f32";
    assert_ok(lk_merge(dir, NULL, NULL, 0, tmp_path("l3.gguf"), &p));
    gguf_file g;
    assert_ok(gguf_open(&g, tmp_path("l3.gguf")));
    int64_t v;
    assert_ok(gguf_get_i64(&g, "llama.attention.key_length", &v));
    assert_int_equal(v, 24);
    assert_ok(gguf_get_i64(&g, "llama.rope.dimension_count", &v));
    assert_int_equal(v, 24);
    assert_non_null(gguf_find_tensor(&g, "output.weight"));
    const gguf_tensor *rf = gguf_find_tensor(&g, "rope_freqs.weight");
    assert_non_null(rf);
    assert_int_equal(rf->ne[0], 12);
    const float *f = (const float *)rf->data;
    assert_true(f[0] == 1.0f && f[11] == 32.0f);
    for (int i = 1; i < 12; i++)
        assert_true(f[i] >= f[i - 1]);
    char file[8300];
    int64_t n;
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    float *q = read_f32(file, "model.layers.1.self_attn.q_proj.weight", &n);
    assert_int_equal(n, 96 * 64);
    assert_ok(adapter_permute_rows(q, 96, 64, 4, 0));
    assert_memory_equal(gguf_find_tensor(&g, "blk.1.attn_q.weight")->data, q, (size_t)n * 4);
    free(q);
    gguf_close(&g);
}

/* The merged bytes do not depend on the thread count. */
static void test_threads_bit_identical(void **state)
{
    (void)state;
    lk_adapter *a[2] = {load("adapters/llama3-rslora"), NULL};
    float w = 0.8f;
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "bf16";
    p.force = 1;
    const int threads[2] = {1, 4};
    for (int k = 0; k < 2; k++) {
        p.n_threads = threads[k];
        assert_ok(lk_merge(data_path("models/llama3-tiny"), (const lk_adapter *const *)a, &w, 1,
                           tmp_path(k ? "t4" : "t1"), &p));
    }
    char f1[8192], f4[8192];
    snprintf(f1, sizeof f1, "%s/model.safetensors", tmp_path("t1"));
    snprintf(f4, sizeof f4, "%s/model.safetensors", tmp_path("t4"));
    mapfile x, y;
    assert_ok(mapfile_open(&x, f1, 0));
    assert_ok(mapfile_open(&y, f4, 0));
    assert_int_equal(x.size, y.size);
    assert_memory_equal(x.data, y.data, x.size);
    mapfile_close(&x);
    mapfile_close(&y);
    lk_adapter_free(a[0]);
}

/* --base-quant: the merged weight is dequant(quant(W)) + ΔW (the base the adapter was trained
 * against); a quantised GGUF output holds each merged row requantised. */
static void test_quantised_merges(void **state)
{
    (void)state;
    lk_adapter *a = load("adapters/llama3-rslora");
    float w = 1;
    const lk_adapter *const *aa = (const lk_adapter *const *)&a;
    struct lk_merge_params p = lk_merge_params_default();
    assert_ok(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("plain"), &p));
    p.base_quant = "nf4";
    assert_ok(lk_merge(data_path("models/llama3-tiny"), aa, &w, 1, tmp_path("bq"), &p));
    char f1[4200], f2[4200], f0[4200];
    snprintf(f0, sizeof f0, "%s/model.safetensors", data_path("models/llama3-tiny"));
    snprintf(f1, sizeof f1, "%s/model.safetensors", tmp_path("plain"));
    snprintf(f2, sizeof f2, "%s/model.safetensors", tmp_path("bq"));
    st_file s0, s1, s2;
    assert_ok(st_open(&s0, f0, 1));
    assert_ok(st_open(&s1, f1, 1));
    assert_ok(st_open(&s2, f2, 1));
    const char *name = "model.layers.1.mlp.down_proj.weight";
    const tensor_view *t0 = st_get(&s0, name), *t1 = st_get(&s1, name), *t2 = st_get(&s2, name);
    int64_t rows = t0->shape[0], cols = t0->shape[1];
    float *want = malloc((size_t)(rows * cols) * sizeof(float));
    uint8_t *q = malloc(q4_row_bytes(LK_QTYPE_NF4, Q4_NF4_BLOCK, cols));
    for (int64_t r = 0; r < rows; r++) { /* bq − plain = dequant(quant(W)) − W, row by row */
        const float *W = (const float *)t0->data + r * cols;
        q4_quantize_row(LK_QTYPE_NF4, Q4_NF4_BLOCK, W, cols, q);
        q4_dequantize_row(LK_QTYPE_NF4, Q4_NF4_BLOCK, q, cols, want + r * cols);
        for (int64_t k = 0; k < cols; k++)
            want[r * cols + k] += ((const float *)t1->data)[r * cols + k] - W[k];
    }
    assert_true(check_close("base-quant merge", t2->data, want, rows * cols, 1e-6, 1e-5));
    free(want);
    free(q);
    st_close(&s0);
    st_close(&s1);
    st_close(&s2);
    lk_adapter_free(a);
    /* a q4_0 GGUF: each merged row requantised exactly as llama.cpp's quantiser does */
    a = load("adapters/stories-lora");
    p = lk_merge_params_default();
    assert_ok(lk_merge(g_stories, aa, &w, 1, tmp_path("sq-plain"), &p));
    p.dtype = "q4_0";
    assert_ok(lk_merge(g_stories, aa, &w, 1, tmp_path("sq.gguf"), &p));
    gguf_file g;
    assert_ok(gguf_open(&g, tmp_path("sq.gguf")));
    const gguf_tensor *gt = gguf_find_tensor(&g, "blk.0.attn_v.weight");
    assert_int_equal(gt->type, GGML_Q4_0);
    snprintf(f1, sizeof f1, "%s/model.safetensors", tmp_path("sq-plain"));
    assert_ok(st_open(&s1, f1, 1));
    const tensor_view *mv = st_get(&s1, "model.layers.0.self_attn.v_proj.weight");
    size_t rb = q4_row_bytes(LK_QTYPE_Q4_0, Q4_QK, mv->shape[1]);
    uint8_t *row = malloc(rb);
    for (int64_t r = 0; r < mv->shape[0]; r++) {
        q4_quantize_row(LK_QTYPE_Q4_0, Q4_QK, (const float *)mv->data + r * mv->shape[1],
                        mv->shape[1], row);
        assert_memory_equal((const uint8_t *)gt->data + r * rb, row, rb);
    }
    free(row);
    st_close(&s1);
    gguf_close(&g);
    lk_adapter_free(a);
}

/* Merge stories-lora into the GGUF file base with dtype dt (NULL: types kept) into out. */
static lk_status merge_into_gguf(const char *base, const char *out, const char *dt)
{
    lk_adapter *a = load("adapters/stories-lora");
    struct lk_model_config cfg;
    assert_ok(lk_config_load(base, &cfg));
    float w = 1;
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = dt;
    p.force = 1;
    p.n_threads = 2;
    lk_status s = lk_merge(base, (const lk_adapter *const *)&a, &w, 1, out, &p);
    lk_adapter_free(a);
    return s;
}

/* A GGUF base (stories260K-hf written by lorakit as Q4_1, down_proj F16 for its rows of 172):
 * merged into a GGUF with types kept, the metadata and every unmerged tensor are the base's byte
 * for byte; with --dtype f32 each merged matrix is dequant(base) + ΔW with ΔW = PEFT's merge − W
 * (q/k rows in llama.cpp's order), and with the types kept its bytes are exactly those f32 rows
 * quantised to Q4_1. */
static void test_gguf_base_merge(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "q4_1";
    p.force = 1;
    char base[4200], kept[4200], f32[4200];
    snprintf(base, sizeof base, "%s", tmp_path("base-q4_1.gguf"));
    snprintf(kept, sizeof kept, "%s", tmp_path("kept.gguf"));
    snprintf(f32, sizeof f32, "%s", tmp_path("f32.gguf"));
    assert_ok(lk_merge(g_stories, NULL, NULL, 0, base, &p));
    assert_ok(merge_into_gguf(base, kept, NULL));
    assert_ok(merge_into_gguf(base, f32, "f32"));
    gguf_file gb, gk, gf;
    assert_ok(gguf_open(&gb, base));
    assert_ok(gguf_open(&gk, kept));
    assert_ok(gguf_open(&gf, f32));
    assert_int_equal(gk.n_kv, gb.n_kv);
    for (int64_t i = 0; i < gb.n_kv; i++) { /* same keys and types, in order */
        assert_string_equal(gk.kv[i].key, gb.kv[i].key);
        assert_int_equal(gk.kv[i].type, gb.kv[i].type);
        assert_int_equal(gk.kv[i].arr_n, gb.kv[i].arr_n);
    }
    const gguf_kv *tk = gguf_find_kv(&gk, "tokenizer.ggml.tokens");
    assert_true(tk && tk->arr_n == 512 && tk->arr_str[300].len == gguf_find_kv(&gb,
                "tokenizer.ggml.tokens")->arr_str[300].len);
    assert_int_equal(gk.n_tensors, gb.n_tensors);
    int n_merged = 0;
    for (int64_t i = 0; i < gb.n_tensors; i++) {
        const gguf_tensor *b = &gb.tensors[i], *k = &gk.tensors[i], *f = &gf.tensors[i];
        assert_string_equal(k->name, b->name);
        assert_int_equal(k->type, b->type);
        assert_int_equal(k->nbytes, b->nbytes);
        const int merged = strstr(b->name, ".attn_") && !strstr(b->name, "norm");
        if (!merged) {
            assert_memory_equal(k->data, b->data, (size_t)b->nbytes);
            assert_memory_equal(f->data, b->data, (size_t)b->nbytes);
            continue;
        }
        n_merged++;
        assert_int_equal(b->type, GGML_Q4_1);
        assert_int_equal(f->type, GGML_F32);
        /* kept = Q4_1 of the f32 merge, row by row */
        const int64_t rows = b->ne[1], cols = b->ne[0];
        const size_t rb = q4_row_bytes(LK_QTYPE_Q4_1, Q4_QK, cols);
        uint8_t *row = malloc(rb);
        for (int64_t r = 0; r < rows; r++) {
            q4_quantize_row(LK_QTYPE_Q4_1, Q4_QK, (const float *)f->data + r * cols, cols, row);
            assert_memory_equal(k->data + r * rb, row, rb);
        }
        free(row);
        /* f32 − dequant(base) = PEFT's ΔW in llama.cpp's row order */
        char layer[8], mod[16], key[160], hf[128];
        assert_int_equal(sscanf(b->name, "blk.%7[0-9].attn_%15[a-z].weight", layer, mod), 2);
        const char *proj = !strcmp(mod, "q")   ? "q_proj"
                           : !strcmp(mod, "k") ? "k_proj"
                           : !strcmp(mod, "v") ? "v_proj"
                                               : "o_proj";
        snprintf(hf, sizeof hf, "model.layers.%s.self_attn.%s.weight", layer, proj);
        snprintf(key, sizeof key, "merged.stories-lora.%s", hf);
        const int64_t n = rows * cols;
        float *want = malloc((size_t)n * sizeof *want);
        if (!strcmp(b->name, "blk.0.attn_q.weight") || !strcmp(b->name, "blk.4.attn_k.weight")) {
            int64_t n1, n0; /* PEFT's merge_and_unload − W */
            float *m = read_f32(data_path("adapters/reference.safetensors"), key, &n1);
            char w0[4200];
            snprintf(w0, sizeof w0, "%s/model.safetensors", g_stories);
            float *W = read_f32(w0, hf, &n0);
            assert_int_equal(n1, n);
            for (int64_t x = 0; x < n; x++)
                want[x] = m[x] - W[x];
            free(m);
            free(W);
        } else { /* s·B·A in double from the adapter's factors */
            lk_adapter *a = load("adapters/stories-lora");
            lk_module kind = mod[0] == 'q' ? LK_MOD_Q : mod[0] == 'k' ? LK_MOD_K
                             : mod[0] == 'v' ? LK_MOD_V : LK_MOD_O;
            int64_t mi = lk_adapter_find_module(a, atoi(layer), kind);
            assert_true(mi >= 0);
            const adapter_module *d = &a->mods[mi];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < d->r; j++)
                        acc += (double)d->B[r * d->r + j] * d->A[j * cols + c];
                    want[r * cols + c] = (float)(d->scale * acc);
                }
            lk_adapter_free(a);
        }
        int heads = proj[0] == 'q' ? 8 : proj[0] == 'k' ? 4 : 0;
        if (heads)
            assert_ok(adapter_permute_rows(want, rows, cols, heads, 0));
        float *deq = gguf_tensor_f32(b);
        for (int64_t x = 0; x < n; x++)
            deq[x] = ((const float *)f->data)[x] - deq[x];
        assert_true(check_close(b->name, deq, want, n, 1e-5, 1e-4));
        free(deq);
        free(want);
    }
    assert_int_equal(n_merged, 4 * 5); /* q, k, v, o of 5 layers */
    gguf_close(&gb);
    gguf_close(&gk);
    gguf_close(&gf);
}

/* --dtype on a GGUF base: merged matrices in that type or llama-quantize's fallback (rows of 64:
 * Q4_K -> Q5_0), the others kept; refusals: a folder output, --base-quant, a NaN scale in a
 * merged matrix, the output being the base. */
static void test_gguf_base_dtype_and_refusals(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    struct lk_merge_params p = lk_merge_params_default();
    p.dtype = "q6_k"; /* rows of 64 -> Q8_0, down_proj's rows of 172 -> F16 */
    p.force = 1;
    char base[4200], out[4200];
    snprintf(base, sizeof base, "%s", tmp_path("base-q6.gguf"));
    snprintf(out, sizeof out, "%s", tmp_path("q4k.gguf"));
    assert_ok(lk_merge(g_stories, NULL, NULL, 0, base, &p));
    assert_ok(merge_into_gguf(base, out, "q4_k"));
    gguf_file g;
    assert_ok(gguf_open(&g, out));
    assert_int_equal(gguf_find_tensor(&g, "blk.0.attn_q.weight")->type, GGML_Q5_0);
    assert_int_equal(gguf_find_tensor(&g, "blk.0.ffn_up.weight")->type, GGML_Q8_0);
    assert_int_equal(gguf_find_tensor(&g, "blk.0.ffn_down.weight")->type, GGML_F16);
    gguf_close(&g);
    assert_status(merge_into_gguf(base, tmp_path("folder"), NULL), LK_ERR_UNSUPPORTED,
                  "GGUF file only");
    assert_status(merge_into_gguf(base, out, "nf4"), LK_ERR_ARG, "nf4");
    assert_status(merge_into_gguf(base, base, NULL), LK_ERR_ARG, "base model file itself");
    lk_adapter *a = load("adapters/stories-lora");
    float w = 1;
    p = lk_merge_params_default();
    p.base_quant = "q4_0";
    assert_status(lk_merge(base, (const lk_adapter *const *)&a, &w, 1, out, &p), LK_ERR_ARG,
                  "does not apply to a GGUF base");
    lk_adapter_free(a);
    /* a NaN scale in blk.1.attn_v.weight (Q8_0: d first in each block) */
    assert_ok(gguf_open(&g, base));
    const gguf_tensor *t = gguf_find_tensor(&g, "blk.1.attn_v.weight");
    const size_t off = (size_t)(g.data_offset + t->offset) + 3 * 34;
    gguf_close(&g);
    char bad[4200];
    snprintf(bad, sizeof bad, "%s", tmp_path("bad.gguf"));
    char *bytes;
    size_t len;
    assert_ok(read_text_file(base, 64u << 20, &bytes, &len));
    const uint16_t nan = 0x7e00;
    memcpy(bytes + off, &nan, 2);
    FILE *f = fopen(bad, "wb");
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    assert_status(merge_into_gguf(bad, tmp_path("x.gguf"), NULL), LK_ERR_FORMAT,
                  "blk.1.attn_v.weight");
    assert_false(file_exists(tmp_path("x.gguf")));
    /* an F32 base with a NaN: merged into a quantised type, an error naming the tensor */
    p = lk_merge_params_default();
    p.dtype = "f32";
    p.force = 1;
    assert_ok(lk_merge(g_stories, NULL, NULL, 0, base, &p));
    assert_ok(gguf_open(&g, base));
    t = gguf_find_tensor(&g, "blk.2.attn_k.weight");
    const size_t off2 = (size_t)(g.data_offset + t->offset) + 4 * 70;
    gguf_close(&g);
    assert_ok(read_text_file(base, 64u << 20, &bytes, &len));
    const float fnan = NAN;
    memcpy(bytes + off2, &fnan, 4);
    f = fopen(bad, "wb");
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    assert_status(merge_into_gguf(bad, tmp_path("x.gguf"), "q8_0"), LK_ERR_NUMERIC,
                  "blk.2.attn_k.weight: a merged value is NaN or Inf");
    assert_false(file_exists(tmp_path("x.gguf")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_matches_peft),
        cmocka_unit_test(test_weighted_combination),
        cmocka_unit_test(test_eval_equivalence),
        cmocka_unit_test(test_half_precision),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_quantised_merges),
        cmocka_unit_test(test_gguf_matches_llama_cpp),
        cmocka_unit_test(test_gguf_merged),
        cmocka_unit_test(test_gguf_qwen2_needs_tokenizer),
        cmocka_unit_test(test_gguf_qwen2),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_gguf_llama3),
        cmocka_unit_test(test_gguf_base_merge),
        cmocka_unit_test(test_gguf_base_dtype_and_refusals),
    };
    return cmocka_run_group_tests(tests, setup, tmp_dir_teardown);
}
