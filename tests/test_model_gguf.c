/* test_model_gguf.c — GGUF model files as bases: a random Llama / Qwen2 folder written as GGUF
 * (lk_quantize_model --format gguf, q/k rows permuted for llama as llama.cpp's converter does)
 * loads with the same config and gives the logits of the folder loaded with the same quantised
 * weights; the layer's q/k un-permutation (linear.perm_heads) is checked against the permuted
 * weight in forward and backward; hostile files fail naming file and key or tensor. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/model.h"
#include "lora/adapter.h"
#include "core/mapfile.h"
#include "testutil.h"

#define LLAMA_CFG                                                                            \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96," \
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"           \
    "\"vocab_size\":512,\"max_position_embeddings\":128,\"rms_norm_eps\":1e-5,"              \
    "\"rope_theta\":10000.0,\"bos_token_id\":1,\"eos_token_id\":2"
#define QWEN2_CFG                                                                            \
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":64," \
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":1,"           \
    "\"vocab_size\":512,\"max_position_embeddings\":128,\"rms_norm_eps\":1e-6,"              \
    "\"rope_theta\":1000000.0,\"tie_word_embeddings\":true"

/* Copy stories260K's tokenizer files into dir (the GGUF writer stores the tokenizer). */

/* The file's own types, f32 compute: the exact path the parity checks hold. */
static const struct lk_model_params *exact(void)
{
    static struct lk_model_params p;
    p = lk_model_params_default();
    p.compute = LK_COMPUTE_F32;
    return &p;
}
static void copy_tokenizer(const char *dir)
{
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 3; i++) {
        char src[128], dst[4400];
        snprintf(src, sizeof src, "models/stories260K-hf/%s", names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        mapfile f;
        require_file(shared_path(src));
        assert_ok(mapfile_open(&f, shared_path(src), 1));
        assert_int_equal(write_file(dst, f.data, f.size), 0);
        mapfile_close(&f);
    }
}

/* A random f32 folder g_dir/<name> from config text (stories260K's tokenizer), and its GGUF
 * g_dir/<name>.gguf. */
static void make_pair(const char *name, const char *cfg, lk_qtype type, lk_qtype embed)
{
    char cpath[4200], dir[4200], gguf[4200];
    snprintf(cpath, sizeof cpath, "%s/%s.json", g_dir, name);
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(gguf, sizeof gguf, "%s/%s.gguf", g_dir, name);
    assert_int_equal(write_file(cpath, cfg, strlen(cfg)), 0);
    assert_ok(lk_model_write_random(cpath, dir, "f32", 11));
    copy_tokenizer(dir);
    struct lk_quantize_params p = lk_quantize_params_default();
    p.type = type;
    p.embed_type = embed;
    p.format = LK_QFORMAT_GGUF;
    assert_ok(lk_quantize_model(dir, gguf, &p));
}

static float *logits_of(const lk_model *m, const int32_t *tok, int64_t T)
{
    int64_t V = lk_model_get_config(m)->vocab_size;
    float *l = malloc((size_t)(T * V) * sizeof *l);
    assert_non_null(l);
    assert_ok(lk_model_forward(m, tok, T, l));
    return l;
}

/* The GGUF of folder name loads with the folder's config and logits (same quantised weights). */
static void check_pair(const char *name, lk_qtype type, lk_qtype embed, int llama)
{
    char dir[4200], gguf[4200];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(gguf, sizeof gguf, "%s/%s.gguf", g_dir, name);
    struct lk_model_config ch, cg;
    assert_ok(lk_config_load(dir, &ch));
    assert_ok(lk_config_load(gguf, &cg));
    assert_string_equal(cg.arch, ch.arch);
    assert_int_equal(cg.vocab_size, ch.vocab_size);
    assert_int_equal(cg.hidden_size, ch.hidden_size);
    assert_int_equal(cg.intermediate_size, ch.intermediate_size);
    assert_int_equal(cg.n_layers, ch.n_layers);
    assert_int_equal(cg.n_heads, ch.n_heads);
    assert_int_equal(cg.n_kv_heads, ch.n_kv_heads);
    assert_int_equal(cg.head_dim, ch.head_dim);
    assert_int_equal(cg.tie_word_embeddings, ch.tie_word_embeddings);
    assert_int_equal(cg.qkv_bias, ch.qkv_bias);
    assert_true(fabs(cg.rope_theta - ch.rope_theta) <= 1e-6 * ch.rope_theta);
    assert_true(fabs(cg.rms_norm_eps - ch.rms_norm_eps) <= 1e-6 * ch.rms_norm_eps);

    struct lk_model_params p = lk_model_params_default();
    p.compute = LK_COMPUTE_F32; /* the exact path the parity checks hold */
    p.quant = type;
    p.quant_embed = embed;
    lk_model *mh, *mg;
    assert_ok(lk_model_load(dir, &p, &mh));
    assert_ok(lk_model_load(gguf, exact(), &mg)); /* the file's own types */
    assert_int_equal(lk_model_quant(mg), type);
    assert_int_equal(lk_model_quant_embed(mg), embed);
    int32_t tok[7] = {1, 5, 9, 40, 3, 77, 12};
    int64_t n = 7 * cg.vocab_size;
    float *lh = logits_of(mh, tok, 7), *lg = logits_of(mg, tok, 7);
    assert_true(check_close(name, lg, lh, n, 1e-6, 1e-5));
    if (llama) { /* the un-permutation is what makes them equal */
        for (int64_t l = 0; l < cg.n_layers; l++) {
            assert_int_equal(mg->layers[l].q.perm_heads, cg.n_heads);
            assert_int_equal(mg->layers[l].k.perm_heads, cg.n_kv_heads);
            mg->layers[l].q.perm_heads = mg->layers[l].k.perm_heads = 0;
        }
        float *lp = logits_of(mg, tok, 7);
        assert_true(max_abs_diff(lp, lh, n) > 1e-4);
        free(lp);
    } else {
        assert_int_equal(mg->layers[0].q.perm_heads, 0);
    }
    free(lh);
    free(lg);
    lk_model_free(mh);
    lk_model_free(mg);
}

static void test_llama_q8_0_tied(void **state)
{
    (void)state;
    make_pair("llama_q8", LLAMA_CFG ",\"tie_word_embeddings\":true}", LK_QTYPE_Q8_0, LK_QTYPE_F32);
    check_pair("llama_q8", LK_QTYPE_Q8_0, LK_QTYPE_F32, 1);
}

static void test_llama_q4_0_untied(void **state)
{
    (void)state;
    make_pair("llama_q4", LLAMA_CFG ",\"tie_word_embeddings\":false}", LK_QTYPE_Q4_0,
              LK_QTYPE_Q8_0);
    check_pair("llama_q4", LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, 1);
}

static void test_qwen2_iq4_nl_biases(void **state)
{
    (void)state;
    make_pair("qwen2", QWEN2_CFG "}", LK_QTYPE_IQ4_NL, LK_QTYPE_F32);
    check_pair("qwen2", LK_QTYPE_IQ4_NL, LK_QTYPE_F32, 0);
}

static void fill(float *x, int64_t n, uint32_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

/* A layer whose rows are stored in llama.cpp's q/k order (perm_heads) computes what the layer of
 * the Hugging Face rows computes: outputs, dx, and the trained adapter's dA and dB. */
static void test_linear_perm_heads(void **state)
{
    (void)state;
    enum { T = 5, IN = 24, H = 3, HD = 8, OUT = H * HD, R = 4 };
    float w[OUT * IN], wp[OUT * IN], b[OUT], bp[OUT], A[R * IN], B[OUT * R], x[T * IN], dy[T * OUT];
    fill(w, OUT * IN, 1);
    fill(b, OUT, 2);
    fill(A, R * IN, 3);
    fill(B, OUT * R, 4);
    fill(x, T * IN, 5);
    fill(dy, T * OUT, 6);
    memcpy(wp, w, sizeof w);
    memcpy(bp, b, sizeof b);
    assert_ok(adapter_permute_rows(wp, OUT, IN, H, 0));
    assert_ok(adapter_permute_rows(bp, OUT, 1, H, 0));
    float y[2][T * OUT], dx[2][T * IN], dA[2][R * IN], dB[2][OUT * R];
    for (int k = 0; k < 2; k++) {
        lora_train tr = {.dA = dA[k], .dB = dB[k]};
        linear L = {.w = k ? wp : w,
                    .b = k ? bp : b,
                    .in = IN,
                    .out = OUT,
                    .n_lora = 1,
                    .perm_heads = k ? H : 0,
                    .train = &tr};
        L.lora[0] = (lora_delta){.A = A, .B = B, .r = R, .scale = 0.5f};
        memset(dx[k], 0, sizeof dx[k]);
        memset(dA[k], 0, sizeof dA[k]);
        memset(dB[k], 0, sizeof dB[k]);
        size_t ws = linear_work_bytes(&L, T, 1, 1);
        void *work = malloc(ws);
        linear_forward(&L, x, T, y[k], work, ws, 1);
        linear_backward(&L, x, dy, T, dx[k], work, ws, 0, 1);
        free(work);
        if (k) { /* the reference loop follows the permutation too */
            float yr[T * OUT];
            L.n_lora = 0;
            linear_forward_ref(&L, x, T, yr);
            linear L0 = {.w = w, .b = b, .in = IN, .out = OUT};
            float y0[T * OUT];
            linear_forward_ref(&L0, x, T, y0);
            assert_true(check_close("ref", yr, y0, T * OUT, 1e-6, 1e-6));
        }
    }
    assert_true(check_close("y", y[1], y[0], T * OUT, 1e-5, 1e-5));
    assert_true(check_close("dx", dx[1], dx[0], T * IN, 1e-5, 1e-5));
    assert_true(check_close("dA", dA[1], dA[0], R * IN, 1e-5, 1e-5));
    assert_true(check_close("dB", dB[1], dB[0], OUT * R, 1e-5, 1e-5));
    assert_true(max_abs_diff(y[0], (float[T * OUT]){0}, T * OUT) > 0.1); /* not trivially 0 */
}

/* ---- hostile files ---- */

/* A copy of src at dst with the 4 bytes after key's type field (a u32 value) set to v, or the
 * string value of key replaced by s (same length). */
static void patched(const char *src, const char *dst, const char *key, uint32_t v, const char *s)
{
    mapfile f;
    assert_ok(mapfile_open(&f, src, 1));
    uint8_t *buf = malloc(f.size);
    memcpy(buf, f.data, f.size);
    size_t kl = strlen(key), at = 0;
    for (size_t i = 0; i + kl < f.size && !at; i++)
        if (memcmp(buf + i, key, kl) == 0 && buf[i + kl] < 16 && buf[i - 8] == kl)
            at = i + kl + 4; /* skip the u32 value type */
    assert_true(at > 0);
    if (s)
        memcpy(buf + at + 8, s, strlen(s)); /* after the u64 string length */
    else
        memcpy(buf + at, &v, 4);
    assert_int_equal(write_file(dst, buf, f.size), 0);
    free(buf);
    mapfile_close(&f);
}

static void test_hostile(void **state)
{
    (void)state;
    make_pair("bad", LLAMA_CFG ",\"tie_word_embeddings\":true}", LK_QTYPE_Q8_0, LK_QTYPE_F32);
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/bad.gguf", g_dir);
    snprintf(dst, sizeof dst, "%s/edited.gguf", g_dir);
    lk_model *m = NULL;
    patched(src, dst, "general.architecture", 0, "gemma");
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_UNSUPPORTED, "architecture 'gemma'");
    assert_true(strstr(lk_last_error(), "edited.gguf") != NULL);
    patched(src, dst, "llama.block_count", 1000000, NULL);
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_FORMAT, "'llama.block_count' = 1000000");
    patched(src, dst, "llama.block_count", 3, NULL);
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_SHAPE,
                  "'blk.2.attn_norm.weight' is missing");
    patched(src, dst, "llama.feed_forward_length", 128, NULL);
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_SHAPE,
                  "tensor 'blk.0.ffn_gate.weight' has ne");
    patched(src, dst, "llama.attention.head_count_kv", 3, NULL);
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_FORMAT, "head_count_kv");
    patched(src, dst, "llama.attention.head_count", 0, NULL);
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_FORMAT, "'llama.attention.head_count' = 0");
    /* truncated: the last tensor's data is cut */
    mapfile f;
    assert_ok(mapfile_open(&f, src, 1));
    assert_int_equal(write_file(dst, f.data, f.size - 100), 0);
    mapfile_close(&f);
    assert_status(lk_model_load(dst, NULL, &m), LK_ERR_FORMAT, "edited.gguf");
    assert_null(m);
}

/* A mixture of experts is refused by name (a header-only file is enough to reach the check). */
static void test_moe_refused(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/moe.gguf", g_dir);
    gguf_writer *w;
    assert_ok(gguf_writer_new(&w));
    assert_ok(gguf_set_str(w, "general.architecture", "llama"));
    assert_ok(gguf_set_u32(w, "llama.expert_count", 8));
    assert_ok(gguf_writer_write(w, path, 1, NULL, NULL));
    gguf_writer_free(w);
    struct lk_model_config c;
    assert_status(lk_config_load(path, &c), LK_ERR_UNSUPPORTED, "8 experts");
    lk_model *m = NULL;
    assert_status(lk_model_load(path, NULL, &m), LK_ERR_UNSUPPORTED, "mixture of experts");
}

/* ---- parity with transformers on SmolLM2-135M-Instruct (tests/gen/gen_gguf_model.py) ---- */

static int32_t *json_ids(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int32_t *ids = malloc((size_t)*n * sizeof *ids);
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(a, i)->valuedouble;
    return ids;
}

/* Mean next-token NLL of ids[0..n) from their logits [n, V] (double, max subtracted). */
static double mean_nll(const float *l, const int32_t *ids, int n, int64_t V)
{
    double sum = 0;
    for (int t = 0; t + 1 < n; t++) {
        const float *r = l + (int64_t)t * V;
        double mx = r[0], z = 0;
        for (int64_t v = 1; v < V; v++)
            mx = r[v] > mx ? r[v] : mx;
        for (int64_t v = 0; v < V; v++)
            z += exp((double)r[v] - mx);
        sum += log(z) + mx - r[ids[t + 1]];
    }
    return sum / (n - 1);
}

static int32_t argmax(const float *l, int64_t V)
{
    int32_t best = 0; /* lowest id on ties */
    for (int64_t v = 1; v < V; v++)
        best = l[v] > l[best] ? (int32_t)v : best;
    return best;
}

/* One prompt, one session: the prompt's logits (last position: top 16 and the subset; the mean
 * NLL over all), then the first k_max tokens of the greedy continuation through the KV cache,
 * against transformers' f32 forward and generate on the same dequantised weights. */
static void parity_case(const lk_model *m, const cJSON *c, int step, int k_max)
{
    int n, nt, k;
    int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
    int32_t *top = json_ids(cJSON_GetObjectItem(c, "top_ids"), &nt);
    int32_t *want_gen = json_ids(cJSON_GetObjectItem(c, "greedy"), &k);
    k = k < k_max ? k : k_max;
    const cJSON *tl = cJSON_GetObjectItem(c, "top_logits");
    const cJSON *sub = cJSON_GetObjectItem(c, "subset_logits");
    int64_t V = lk_model_get_config(m)->vocab_size;
    float *l = malloc((size_t)(n * V) * sizeof *l), got[64], want[64];
    lk_session *s;
    assert_ok(lk_session_create(m, n + k, &s));
    assert_ok(lk_session_eval(s, ids, n, l, 1));
    const float *last = l + (int64_t)(n - 1) * V;
    for (int i = 0; i < nt; i++) {
        got[i] = last[top[i]];
        want[i] = (float)cJSON_GetArrayItem(tl, i)->valuedouble;
    }
    assert_true(check_close("top logits", got, want, nt, 1e-4, 1e-4));
    int ns = cJSON_GetArraySize(sub);
    assert_true(ns <= 64);
    for (int i = 0; i < ns; i++) {
        got[i] = last[(int64_t)i * step];
        want[i] = (float)cJSON_GetArrayItem(sub, i)->valuedouble;
    }
    assert_true(check_close("subset logits", got, want, ns, 1e-4, 1e-4));
    double nll = mean_nll(l, ids, n, V), want_nll = cJSON_GetObjectItem(c, "nll")->valuedouble;
    assert_true(fabs(nll - want_nll) <= 1e-4 * want_nll);
    int32_t gen[64];
    assert_true(k <= 64);
    memcpy(l, last, (size_t)V * sizeof *l);
    for (int i = 0; i < k; i++) {
        gen[i] = argmax(l, V);
        assert_ok(lk_session_eval(s, &gen[i], 1, l, 0));
    }
    assert_memory_equal(gen, want_gen, (size_t)k * sizeof *gen);
    lk_session_free(s);
    free(l);
    free(ids);
    free(top);
    free(want_gen);
}

/* LK_GGUF_PARITY_MODEL may name another file holding the same weights (the F32 GGUF that
 * llama.cpp dequantised from the Q4_1 one) to check a build without Q4_1 kernels by hand. */
static void test_smollm2_parity(void **state)
{
    (void)state;
    const char *env = getenv("LK_GGUF_PARITY_MODEL");
    const char *path = env ? env
                           : shared_path("models/smollm2-135m-instruct-gguf/"
                                         "SmolLM2-135M-Instruct.Q4_1.gguf");
    char model[4200];
    snprintf(model, sizeof model, "%s", path);
    require_file(model);
    char *txt;
    size_t len;
    assert_ok(read_text_file(data_path("gguf_model/smollm2_q4_1.json"), 1 << 20, &txt, &len));
    cJSON *j = cJSON_Parse(txt);
    assert_non_null(j);
    lk_model *m;
    assert_ok(lk_model_load(model, exact(), &m));
    int step = (int)cJSON_GetObjectItem(j, "subset_step")->valuedouble;
    const cJSON *c;
    int i = 0; /* greedy tokens: 16 on the first two prompts (the reference kernels are slow) */
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases"))
        parity_case(m, c, step, i++ < 2 ? 16 : 0);
    lk_model_free(m);
    cJSON_Delete(j);
    free(txt);
}

/* llama.cpp on the same file: along llama.cpp's own greedy path (its tokens fed back, so one
 * disagreement does not derail the rest), lorakit's argmax must be llama.cpp's token at every step
 * where llama.cpp's top-2 gap is at least the fixture's "tau". llama.cpp multiplies with 8-bit
 * activations and keeps an f16 KV cache: its logits sit up to a few tenths from the f32 forward
 * (tests/data/README.md), so only its clear choices are checked. */
static void llama_cpp_case(const lk_model *m, const cJSON *c, const cJSON *lc, double tau,
                           int *checked)
{
    int n, k, ng;
    int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
    int32_t *want = json_ids(cJSON_GetObjectItem(lc, "greedy"), &k);
    const cJSON *gap = cJSON_GetObjectItem(lc, "gap");
    ng = cJSON_GetArraySize(gap);
    assert_int_equal(ng, k);
    int64_t V = lk_model_get_config(m)->vocab_size;
    float *l = malloc((size_t)V * sizeof *l);
    lk_session *s;
    assert_ok(lk_session_create(m, n + k, &s));
    assert_ok(lk_session_eval(s, ids, n, l, 0));
    for (int i = 0; i < k; i++) {
        double g = cJSON_GetArrayItem(gap, i)->valuedouble;
        int32_t got = argmax(l, V);
        if (g >= tau) {
            if (got != want[i])
                print_error("%s: step %d: lorakit %d, llama.cpp %d (its gap %.4f)\n",
                            cJSON_GetObjectItem(lc, "prompt")->valuestring, i, got, want[i], g);
            assert_int_equal(got, want[i]);
            (*checked)++;
        }
        assert_ok(lk_session_eval(s, &want[i], 1, l, 0));
    }
    lk_session_free(s);
    free(l);
    free(ids);
    free(want);
}

static void test_smollm2_llama_cpp(void **state)
{
    (void)state;
    char model[4200];
    snprintf(model, sizeof model, "%s",
             shared_path("models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf"));
    require_file(model);
    char *txt, *txt2;
    size_t len;
    assert_ok(read_text_file(data_path("gguf_model/smollm2_q4_1.json"), 1 << 20, &txt, &len));
    assert_ok(read_text_file(data_path("gguf_model/smollm2_q4_1_llama_cpp.json"), 1 << 20, &txt2,
                             &len));
    cJSON *j = cJSON_Parse(txt), *jl = cJSON_Parse(txt2);
    assert_non_null(j);
    assert_non_null(jl);
    double tau = cJSON_GetObjectItem(jl, "tau")->valuedouble;
    lk_model *m;
    assert_ok(lk_model_load(model, exact(), &m));
    const cJSON *cases = cJSON_GetObjectItem(j, "cases"), *lcs = cJSON_GetObjectItem(jl, "cases");
    assert_int_equal(cJSON_GetArraySize(cases), cJSON_GetArraySize(lcs));
    int checked = 0;
    for (int i = 0; i < cJSON_GetArraySize(cases); i++)
        llama_cpp_case(m, cJSON_GetArrayItem(cases, i), cJSON_GetArrayItem(lcs, i), tau, &checked);
    assert_true(checked >= 60); /* 70 of the 96 steps are clear choices at tau 0.5 */
    lk_model_free(m);
    cJSON_Delete(j);
    cJSON_Delete(jl);
    free(txt);
    free(txt2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_q8_0_tied),
        cmocka_unit_test(test_llama_q4_0_untied),
        cmocka_unit_test(test_qwen2_iq4_nl_biases),
        cmocka_unit_test(test_linear_perm_heads),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_moe_refused),
        cmocka_unit_test(test_smollm2_parity),
        cmocka_unit_test(test_smollm2_llama_cpp),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
