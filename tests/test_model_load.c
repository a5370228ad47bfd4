/* test_model_load.c — config.json parsing (every supported key, defaults, each malformed case with
 * its exact error) and tensor checks at load (missing, misshapen, wrong dtype), sharded folders,
 * random-weight folders. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config.h"
#include "formats/safetensors.h"
#include "testutil.h"

static lk_status parse(const char *json, struct lk_model_config *c)
{
    return config_parse("x/config.json", json, strlen(json), c);
}

#define LLAMA_NO_VOCAB                                                                       \
    "\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":172," \
    "\"num_hidden_layers\":5,\"num_attention_heads\":8"
#define LLAMA_MIN LLAMA_NO_VOCAB ",\"vocab_size\":512"

static void test_config_real(void **state)
{
    (void)state;
    struct lk_model_config c;
    require_file(shared_path("models/llama-3.2-3b-instruct/config.json"));
    assert_ok(lk_config_load(shared_path("models/llama-3.2-3b-instruct"), &c));
    assert_string_equal(c.arch, "llama");
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.rope_type, LK_ROPE_LLAMA3);
    assert_true(c.rope_factor == 32.0);
    assert_int_equal(c.rope_original_max_position, 8192);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_ids[2], 128009);
    assert_ok(lk_config_load(shared_path("models/qwen2.5-0.5b"), &c));
    assert_string_equal(c.arch, "qwen2");
    assert_int_equal(c.qkv_bias, 1);
    assert_int_equal(c.o_bias, 0);
    assert_int_equal(c.head_dim, 64);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.sliding_window, 0); /* use_sliding_window false */
    assert_ok(lk_config_load(shared_path("models/qwen2.5-7b-instruct"), &c));
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_int_equal(c.vocab_size, 152064);
}

static void test_config_defaults_and_forms(void **state)
{
    (void)state;
    struct lk_model_config c;
    assert_ok(parse("{" LLAMA_MIN "}", &c));
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 8);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.n_eos, 0);
    /* model_type alone identifies the family; Mistral keeps its window */
    assert_ok(parse("{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":8,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                    "\"sliding_window\":4096}",
                    &c));
    assert_string_equal(c.arch, "mistral");
    assert_int_equal(c.sliding_window, 4096);
    /* newer transformers: rope_parameters carries theta and scaling */
    assert_ok(parse("{" LLAMA_MIN ",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":"
                    "500000.0,\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                    "\"original_max_position_embeddings\":8192}}",
                    &c));
    assert_int_equal(c.rope_type, LK_ROPE_LLAMA3);
    assert_true(c.rope_theta == 500000.0);
    assert_true(c.rope_factor == 8.0);
    assert_ok(parse("{" LLAMA_MIN ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", &c));
    assert_int_equal(c.rope_type, LK_ROPE_LINEAR);
    /* Llama attention_bias: q/k/v and o biases */
    assert_ok(parse("{" LLAMA_MIN ",\"attention_bias\":true,\"mlp_bias\":true}", &c));
    assert_int_equal(c.qkv_bias, 1);
    assert_int_equal(c.o_bias, 1);
    assert_int_equal(c.mlp_bias, 1);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct lk_model_config c;
    assert_status(parse("{\"architectures\":[\"GPT2LMHeadModel\"]}", &c), LK_ERR_UNSUPPORTED,
                  "architecture 'GPT2LMHeadModel' is not supported");
    assert_status(parse("{}", &c), LK_ERR_UNSUPPORTED, "(none given)");
    assert_status(parse("not json", &c), LK_ERR_FORMAT, "not valid JSON: syntax error at byte 0");
    assert_status(parse("[1]", &c), LK_ERR_FORMAT, "not a JSON object");
    assert_status(parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64}", &c),
                  LK_ERR_FORMAT, "missing required key 'vocab_size'");
    assert_status(parse("{" LLAMA_MIN ",\"num_key_value_heads\":3}", &c), LK_ERR_FORMAT,
                  "not a multiple of num_key_value_heads 3");
    assert_status(parse("{" LLAMA_MIN ",\"num_key_value_heads\":0}", &c), LK_ERR_FORMAT,
                  "out of range");
    assert_status(parse("{" LLAMA_MIN ",\"hidden_act\":\"gelu\"}", &c), LK_ERR_UNSUPPORTED,
                  "hidden_act 'gelu'");
    assert_status(
        parse("{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", &c),
        LK_ERR_UNSUPPORTED, "rope scaling type 'yarn'");
    assert_status(parse("{" LLAMA_MIN ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
                        "\"low_freq_factor\":4,\"high_freq_factor\":1}}",
                        &c),
                  LK_ERR_FORMAT, "high_freq_factor > low_freq_factor");
    assert_status(parse("{" LLAMA_MIN ",\"rope_theta\":-1}", &c), LK_ERR_FORMAT, "rope_theta");
    assert_status(parse("{" LLAMA_MIN ",\"head_dim\":7}", &c), LK_ERR_FORMAT, "must be even");
    assert_status(parse("{" LLAMA_NO_VOCAB ",\"vocab_size\":1e12}", &c), LK_ERR_FORMAT,
                  "out of range");
    assert_status(parse("{" LLAMA_MIN ",\"vocab_size\":16}", &c), LK_ERR_FORMAT,
                  "key 'vocab_size' appears twice");
    assert_status(parse("{" LLAMA_MIN ",\"eos_token_id\":512}", &c), LK_ERR_FORMAT, "eos_token_id");
    assert_status(parse("{" LLAMA_MIN ",\"eos_token_id\":[2.5]}", &c), LK_ERR_FORMAT,
                  "eos_token_id");
    /* bos_token_id: an id of the vocabulary or null (1e300 was cast to an integer unchecked) */
    assert_status(parse("{" LLAMA_MIN ",\"bos_token_id\":1e300}", &c), LK_ERR_FORMAT,
                  "'bos_token_id' = 1e+300 is out of range");
    assert_status(parse("{" LLAMA_MIN ",\"bos_token_id\":-5}", &c), LK_ERR_FORMAT,
                  "'bos_token_id' = -5 is out of range [0, 511]");
    assert_ok(parse("{" LLAMA_MIN ",\"bos_token_id\":null}", &c));
    assert_int_equal(c.bos_id, -1);
    assert_status(parse("{" LLAMA_MIN ",\"tie_word_embeddings\":\"yes\"}", &c), LK_ERR_FORMAT,
                  "true or false");
    assert_status(parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":60,"
                        "\"intermediate_size\":8,\"num_hidden_layers\":1,"
                        "\"num_attention_heads\":8,\"vocab_size\":10}",
                        &c),
                  LK_ERR_FORMAT, "hidden_size 60 is not a multiple");
    assert_status(parse("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":8,"
                        "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                        "\"use_sliding_window\":true}",
                        &c),
                  LK_ERR_UNSUPPORTED, "use_sliding_window");
    assert_status(parse("{" LLAMA_MIN ",\"quantization_config\":{\"load_in_4bit\":true}}", &c),
                  LK_ERR_UNSUPPORTED, "quantization_config");
    assert_status(lk_config_load("/nonexistent-lorakit", &c), LK_ERR_IO, "config.json");
}

/* A folder with the given config text and a copy of stories260K-hf's weights. */
static const char *folder_with(const char *name, const char *config)
{
    static char d[4096];
    snprintf(d, sizeof d, "%s/%s", g_dir, name);
    mkdir(d, 0755);
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", d);
    assert_int_equal(write_file(p, config, strlen(config)), 0);
    mapfile m;
    assert_ok(mapfile_open(&m, shared_path("models/stories260K-hf/model.safetensors"), 1));
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    assert_int_equal(write_file(p, m.data, m.size), 0);
    mapfile_close(&m);
    return d;
}

#define STORIES_CFG(extra)                                                                  \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"num_hidden_layers\":5," \
    "\"num_attention_heads\":8,\"vocab_size\":512" extra "}"

static void test_tensor_checks(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    lk_model *m = NULL;
    assert_ok(lk_model_load(
        folder_with("ok", STORIES_CFG(",\"intermediate_size\":172,\"num_key_value_heads\":4,"
                                      "\"tie_word_embeddings\":true")),
        NULL, &m));
    assert_int_equal(lk_model_n_params(m), 260032);
    lk_model_free(m);
    assert_status(
        lk_model_load(
            folder_with("ffn", STORIES_CFG(",\"intermediate_size\":176,\"num_key_value_heads\":4,"
                                           "\"tie_word_embeddings\":true")),
            NULL, &m),
        LK_ERR_SHAPE,
        "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [172, 64], expected "
        "[176, 64]");
    assert_non_null(strstr(lk_last_error(), "ffn/model.safetensors"));
    assert_null(m);
    assert_status(lk_model_load(folder_with("layers", "{\"architectures\":[\"LlamaForCausalLM\"],"
                                                      "\"hidden_size\":64,\"num_hidden_layers\":6,"
                                                      "\"num_attention_heads\":8,"
                                                      "\"num_key_value_heads\":4,"
                                                      "\"vocab_size\":512,"
                                                      "\"intermediate_size\":172,"
                                                      "\"tie_word_embeddings\":true}"),
                                NULL, &m),
                  LK_ERR_SHAPE, "'model.layers.5.input_layernorm.weight' is missing");
    assert_status(lk_model_load(folder_with("untied", STORIES_CFG(",\"intermediate_size\":172,"
                                                                  "\"num_key_value_heads\":4")),
                                NULL, &m),
                  LK_ERR_SHAPE, "'lm_head.weight' is missing (expected shape [512, 64]");
    assert_status(lk_model_load(folder_with("kv", STORIES_CFG(",\"intermediate_size\":172,"
                                                              "\"tie_word_embeddings\":true")),
                                NULL, &m),
                  LK_ERR_SHAPE, "k_proj.weight' has shape [32, 64], expected [64, 64]");
    assert_status(lk_model_load(g_dir, NULL, &m), LK_ERR_IO, "config.json");
}

static void test_wrong_dtype(void **state)
{
    (void)state;
    const char *d = folder_with("i32", "{\"architectures\":[\"LlamaForCausalLM\"],"
                                       "\"hidden_size\":2,\"intermediate_size\":2,"
                                       "\"num_hidden_layers\":1,\"num_attention_heads\":1,"
                                       "\"vocab_size\":2,\"tie_word_embeddings\":true}");
    int32_t data[4] = {0};
    tensor_view v = {.name = "model.embed_tokens.weight",
                     .dt = DT_I32,
                     .ndim = 2,
                     .shape = {2, 2},
                     .data = data,
                     .nbytes = 16};
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    assert_ok(st_write(p, &v, 1, NULL, NULL, NULL, 1));
    lk_model *m;
    assert_status(lk_model_load(d, NULL, &m), LK_ERR_UNSUPPORTED,
                  "'model.embed_tokens.weight' has dtype I32");
}

/* Random-weight folder: loads, has the config's shapes, is deterministic in the seed; the same
 * weights split into two shards with an index load and give identical logits. */
static void test_random_and_sharded(void **state)
{
    (void)state;
    char out[4200], out2[4200];
    snprintf(out, sizeof out, "%s/rand", g_dir);
    snprintf(out2, sizeof out2, "%s/rand2", g_dir);
    assert_ok(lk_model_write_random(data_path("models/qwen2-tiny/config.json"), out, "bf16", 7));
    assert_status(lk_model_write_random(data_path("models/qwen2-tiny/config.json"), out, "bf16", 7),
                  LK_ERR_IO, "already exists");
    assert_ok(lk_model_write_random(data_path("models/qwen2-tiny/config.json"), out2, "bf16", 7));
    char a[4300], b[4300];
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", out2);
    mapfile ma, mb;
    assert_ok(mapfile_open(&ma, a, 1));
    assert_ok(mapfile_open(&mb, b, 1));
    assert_int_equal(ma.size, mb.size);
    assert_memory_equal(ma.data, mb.data, ma.size);
    mapfile_close(&mb);

    lk_model *m;
    assert_ok(lk_model_load(out, NULL, &m));
    int32_t tok[5] = {1, 5, 9, 200, 3};
    int64_t V = lk_model_get_config(m)->vocab_size;
    float *l1 = malloc((size_t)(5 * V) * sizeof(float)),
          *l2 = malloc((size_t)(5 * V) * sizeof(float));
    assert_ok(lk_model_forward(m, tok, 5, l1));
    lk_model_free(m);

    /* split: first half of the tensors to shard 1, the rest to shard 2 */
    st_file f;
    assert_ok(st_open(&f, a, 1));
    int h = f.n / 2;
    char s1[4300], s2[4300], idx[4300];
    snprintf(s1, sizeof s1, "%s/model-00001-of-00002.safetensors", out2);
    snprintf(s2, sizeof s2, "%s/model-00002-of-00002.safetensors", out2);
    assert_ok(st_write(s1, f.tensors, h, NULL, NULL, NULL, 1));
    assert_ok(st_write(s2, f.tensors + h, f.n - h, NULL, NULL, NULL, 1));
    cJSON *j = cJSON_CreateObject(), *wm = cJSON_CreateObject();
    for (int i = 0; i < f.n; i++)
        cJSON_AddStringToObject(wm, f.tensors[i].name,
                                i < h ? "model-00001-of-00002.safetensors"
                                      : "model-00002-of-00002.safetensors");
    cJSON_AddItemToObject(j, "weight_map", wm);
    char *txt = cJSON_Print(j);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", out2);
    assert_int_equal(write_file(idx, txt, strlen(txt)), 0);
    free(txt);
    cJSON_Delete(j);
    st_close(&f);
    mapfile_close(&ma);
    remove(b);
    assert_ok(lk_model_load(out2, NULL, &m));
    assert_ok(lk_model_forward(m, tok, 5, l2));
    assert_memory_equal(l1, l2, (size_t)(5 * V) * sizeof(float));
    lk_model_free(m);
    free(l1);
    free(l2);
}

typedef struct {
    const st_file *src;
} f16_ctx;

static lk_status fill_f16(void *user, int i, void *dst)
{
    const f16_ctx *c = user;
    const tensor_view *t = &c->src->tensors[i];
    int64_t n = tensor_numel(t);
    for (int64_t k = 0; k < n; k++)
        ((uint16_t *)dst)[k] = f32_to_f16(((const float *)t->data)[k]);
    return LK_OK;
}

/* The same weights stored as F16, and read without mmap, give the same logits (F16 within its
 * rounding, the read fallback exactly). */
static void test_f16_and_read_fallback(void **state)
{
    (void)state;
    const char *src = data_path("models/llama3-tiny");
    char d[4200], p[4300];
    snprintf(d, sizeof d, "%s/f16", g_dir);
    mkdir(d, 0755);
    st_file f;
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    assert_ok(st_open(&f, p, 1));
    tensor_view *v = calloc((size_t)f.n, sizeof *v);
    for (int i = 0; i < f.n; i++) {
        v[i] = f.tensors[i];
        v[i].dt = DT_F16;
        v[i].nbytes = f.tensors[i].nbytes / 2;
    }
    f16_ctx ctx = {&f};
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    assert_ok(st_write(p, v, f.n, NULL, fill_f16, &ctx, 0));
    free(v);
    st_close(&f);
    char *cfg;
    size_t len;
    snprintf(p, sizeof p, "%s/config.json", src);
    assert_ok(read_text_file(p, 1 << 20, &cfg, &len));
    snprintf(p, sizeof p, "%s/config.json", d);
    assert_int_equal(write_file(p, cfg, len), 0);
    free(cfg);

    int32_t tok[6] = {1, 17, 300, 4, 99, 250};
    lk_model *a, *b, *c;
    struct lk_model_params mp = lk_model_params_default();
    assert_ok(lk_model_load(src, &mp, &a));
    mp.use_mmap = 0;
    assert_ok(lk_model_load(src, &mp, &b));
    assert_ok(lk_model_load(d, &mp, &c));
    int64_t V = lk_model_get_config(a)->vocab_size;
    float *la = malloc((size_t)(6 * V) * 4), *lb = malloc((size_t)(6 * V) * 4),
          *lc = malloc((size_t)(6 * V) * 4);
    assert_ok(lk_model_forward(a, tok, 6, la));
    assert_ok(lk_model_forward(b, tok, 6, lb));
    assert_ok(lk_model_forward(c, tok, 6, lc));
    assert_memory_equal(la, lb, (size_t)(6 * V) * 4);
    assert_true(check_close("f16 weights vs f32", lc, la, 6 * V, 2e-2, 2e-2));
    assert_true(max_abs_diff(la, lc, 6 * V) > 0); /* really the f16 copy */
    free(la);
    free(lb);
    free(lc);
    lk_model_free(a);
    lk_model_free(b);
    lk_model_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_real),
        cmocka_unit_test(test_config_defaults_and_forms),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_tensor_checks),
        cmocka_unit_test(test_wrong_dtype),
        cmocka_unit_test(test_random_and_sharded),
        cmocka_unit_test(test_f16_and_read_fallback),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
