/* test_qbase.c — quantised bases on disk (lk_quantize_model, qbase.c): the lorakit folder of
 * stories260K-hf and the tiny models in every format loads zero-copy and gives exactly the logits
 * of the same model quantised at load; bitsandbytes folders made by bitsandbytes itself
 * (tests/data/bnb, gen_bnb.py) load as NF4 without re-quantising (rows byte-identical to ours,
 * logits within fp32 rounding of transformers on bnb's dequantisation); our hf-bnb writer equals
 * load-time NF4 where rows are whole blocks; GGUF output holds quant/'s rows under llama.cpp's
 * names; corrupt files (metadata, sizes, NaN/Inf scales, truncation, bnb states) give exact
 * errors naming the tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "q4.h"
#include "model/qbase.h"
#include "formats/safetensors.h"
#include "testutil.h"

static char *tmp(const char *name)
{
    char *p = malloc(strlen(g_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", g_dir, name);
    return p;
}

static lk_model *load(const char *dir, lk_qtype q, lk_qtype qe)
{
    struct lk_model_params p = lk_model_params_default();
    p.compute = LK_COMPUTE_F32; /* the exact path the parity checks hold */
    p.quant = q;
    p.quant_embed = qe;
    p.n_threads = 2;
    lk_model *m = NULL;
    assert_ok(lk_model_load(dir, &p, &m));
    return m;
}

/* logits [T, V] of ids under m (heap). */
static float *logits_of(const lk_model *m, const int32_t *ids, int64_t T)
{
    int64_t V = lk_model_get_config(m)->vocab_size;
    float *y = malloc((size_t)(T * V) * sizeof *y);
    assert_ok(lk_model_forward(m, ids, T, y));
    return y;
}

static const int32_t IDS[] = {1, 17, 42, 99, 5, 63, 2, 150};

/* Quantise dir into a lorakit folder; it must load with the file's formats, its matrices
 * pointing into the mapping, 64-byte aligned, with the same logits as load-time quantisation. */
static void check_lorakit(const char *dir, lk_qtype q, lk_qtype qe, const char *name)
{
    char *out = tmp(name);
    struct lk_quantize_params p = lk_quantize_params_default();
    p.type = q;
    p.embed_type = qe;
    p.n_threads = 2;
    assert_ok(lk_quantize_model(dir, out, &p));
    lk_model *a = load(out, LK_QTYPE_F32, LK_QTYPE_F32), *b = load(dir, q, qe);
    assert_int_equal(lk_model_quant(a), q);
    assert_int_equal(lk_model_quant_embed(a), qe);
    const mapfile *map = &a->st.files[0].map;
    for (int64_t l = 0; l < a->cfg.n_layers; l++) {
        const linear *L[] = {&a->layers[l].q, &a->layers[l].down, &a->layers[l].gate};
        for (int k = 0; k < 3; k++) {
            const uint8_t *d = L[k]->qw.data;
            assert_null(L[k]->w);
            assert_true(d >= map->data && d < map->data + map->size); /* zero-copy */
            assert_int_equal((uintptr_t)d % 64, 0);
        }
    }
    assert_int_equal(lk_model_weight_bytes(a), lk_model_weight_bytes(b));
    int64_t T = 8, V = a->cfg.vocab_size;
    int32_t ids[8];
    for (int i = 0; i < 8; i++)
        ids[i] = IDS[i] % (int32_t)V;
    float *ya = logits_of(a, ids, T), *yb = logits_of(b, ids, T);
    assert_true(check_close(name, ya, yb, T * V, 0, 0)); /* exactly */
    free(ya);
    free(yb);
    lk_model_free(a);
    lk_model_free(b);
    rm_rf(out);
    free(out);
}

static void test_lorakit_formats(void **state)
{
    (void)state;
    static const lk_qtype types[] = {LK_QTYPE_NF4, LK_QTYPE_Q4_0, LK_QTYPE_IQ4_NL, LK_QTYPE_Q8_0};
    static const char *const tiny[] = {"models/llama3-tiny", "models/qwen2-tiny",
                                       "models/mistral-tiny"};
    char name[64];
    for (int t = 0; t < 4; t++) {
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "tiny%d-%s", k, lk_qtype_name(types[t]));
            check_lorakit(data_path(tiny[k]), types[t], k == 1 ? LK_QTYPE_Q8_0 : LK_QTYPE_F32,
                          name);
        }
    }
}

static void test_lorakit_stories(void **state)
{
    (void)state;
    const char *m = shared_path("models/stories260K-hf");
    require_file(m);
    char *dir = strdup(m);
    check_lorakit(dir, LK_QTYPE_NF4, LK_QTYPE_F32, "s-nf4");
    check_lorakit(dir, LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, "s-q4_0");
    check_lorakit(dir, LK_QTYPE_IQ4_NL, LK_QTYPE_F32, "s-iq4_nl");
    check_lorakit(dir, LK_QTYPE_Q8_0, LK_QTYPE_F32, "s-q8_0");
    free(dir);
}

/* The per-tensor report: one entry per matrix, bits per weight from the row bytes. */
typedef struct {
    int n;
    double bpw_q, bpw_down;
} rep;

static void on_tensor(void *user, const struct lk_quantize_tensor *t)
{
    rep *r = user;
    r->n++;
    assert_int_equal(t->count, 2 + 7 * 2); /* embed + lm_head + 7 per layer */
    assert_true(t->rmse >= 0 && t->max_abs >= t->rmse);
    if (strstr(t->name, "q_proj"))
        r->bpw_q = t->bits_per_weight;
    if (strstr(t->name, "down_proj"))
        r->bpw_down = t->bits_per_weight;
}

static void test_report(void **state)
{
    (void)state;
    char *out = tmp("rep");
    rep r = {0};
    struct lk_quantize_params p = lk_quantize_params_default();
    p.on_tensor = on_tensor;
    p.user = &r;
    assert_ok(lk_quantize_model(data_path("models/llama3-tiny"), out, &p));
    assert_int_equal(r.n, 16);
    assert_true(fabs(r.bpw_q - 4.5) < 1e-12);              /* 64 values: 32 bytes + 4 */
    assert_true(fabs(r.bpw_down - 8.0 * 72 / 80) < 1e-12); /* 80 padded to 128: 64 + 8 bytes */
    /* no overwrite without force; nothing left behind on refusal */
    assert_status(lk_quantize_model(data_path("models/llama3-tiny"), out, &p), LK_ERR_IO, NULL);
    p.force = 1;
    p.on_tensor = NULL;
    assert_ok(lk_quantize_model(data_path("models/llama3-tiny"), out, &p));
    /* a quantised folder is not an input */
    char *again = tmp("again");
    assert_status(lk_quantize_model(out, again, &p), LK_ERR_UNSUPPORTED, "already quantised");
    p.type = LK_QTYPE_F16;
    assert_status(lk_quantize_model(data_path("models/llama3-tiny"), again, &p), LK_ERR_ARG, "f16");
    p.type = LK_QTYPE_NF4;
    p.format = LK_QFORMAT_GGUF;
    assert_status(lk_quantize_model(data_path("models/llama3-tiny"), again, &p), LK_ERR_ARG, "NF4");
    p.format = LK_QFORMAT_HF_BNB;
    p.type = LK_QTYPE_Q4_0;
    assert_status(lk_quantize_model(data_path("models/llama3-tiny"), again, &p), LK_ERR_ARG,
                  "bitsandbytes");
    rm_rf(out);
    free(out);
    free(again);
}

/* ---- bitsandbytes ---------------------------------------------------------------------------- */

static float *read_bin(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *b = malloc((size_t)sz);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz / 4;
    return b;
}

/* A bnb fixture: logits within fp32 rounding of transformers on bnb's dequantised weights (NF4
 * rows through the fused kernels; tensors whose rows are not whole blocks as exact fp32). */
static void check_bnb_fixture(const char *rel, double atol)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", data_path(rel));
    lk_model *m = load(path, LK_QTYPE_F32, LK_QTYPE_F32);
    assert_int_equal(lk_model_quant(m), LK_QTYPE_NF4);
    assert_int_equal(lk_model_quant_embed(m), LK_QTYPE_F32);
    size_t n_ids, n_logits;
    char f[4200];
    snprintf(f, sizeof f, "%s/ids.i32", path);
    int32_t *ids = (int32_t *)read_bin(f, &n_ids);
    snprintf(f, sizeof f, "%s/logits.f32", path);
    float *want = read_bin(f, &n_logits);
    float *got = logits_of(m, ids, (int64_t)n_ids);
    assert_int_equal(n_logits, n_ids * (size_t)m->cfg.vocab_size);
    assert_true(check_close(rel, got, want, (int64_t)n_logits, atol, 0));
    free(ids);
    free(want);
    free(got);
    lk_model_free(m);
}

static void test_bnb_fixtures(void **state)
{
    (void)state;
    check_bnb_fixture("bnb/llama3-tiny-nf4", 1e-5);
    check_bnb_fixture("bnb/stories260K-nf4-dq", 1e-4);
    /* rows that are whole blocks are bitsandbytes' values untouched: byte-identical to our own
     * NF4 rows of the source (bnb's flat blocks of 64 = our per-row blocks when in % 64 == 0) */
    lk_model *a = load(data_path("bnb/llama3-tiny-nf4"), LK_QTYPE_F32, LK_QTYPE_F32);
    lk_model *b = load(data_path("models/llama3-tiny"), LK_QTYPE_NF4, LK_QTYPE_F32);
    for (int64_t l = 0; l < a->cfg.n_layers; l++) {
        const linear *la[] = {&a->layers[l].q, &a->layers[l].k, &a->layers[l].v, &a->layers[l].gate,
                              &a->layers[l].up};
        const linear *lb[] = {&b->layers[l].q, &b->layers[l].k, &b->layers[l].v, &b->layers[l].gate,
                              &b->layers[l].up};
        for (int k = 0; k < 5; k++) {
            assert_int_equal(la[k]->qw.row_bytes, lb[k]->qw.row_bytes);
            assert_memory_equal(la[k]->qw.data, lb[k]->qw.data,
                                (size_t)la[k]->qw.out * la[k]->qw.row_bytes);
        }
    }
    lk_model_free(a);
    lk_model_free(b);
}

/* A random model whose rows are whole blocks of 64: our hf-bnb folder loads to exactly the
 * logits of load-time NF4; with double quantisation, close to them. */
static char *random_model(const char *name, int64_t C, int64_t F, int64_t V)
{
    char *cfg = tmp("cfg.json"), *dir = tmp(name), text[1024];
    snprintf(text, sizeof text,
             "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":%lld,"
             "\"intermediate_size\":%lld,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
             "\"num_key_value_heads\":2,\"vocab_size\":%lld,\"rms_norm_eps\":1e-5,"
             "\"tie_word_embeddings\":false,\"bos_token_id\":1,\"eos_token_id\":2}",
             (long long)C, (long long)F, (long long)V);
    assert_int_equal(write_file(cfg, text, strlen(text)), 0);
    assert_ok(lk_model_write_random(cfg, dir, "f32", 7));
    free(cfg);
    return dir;
}

static void test_bnb_writer(void **state)
{
    (void)state;
    char *src = random_model("r64", 128, 192, 256), *out = tmp("r64-bnb"), *dq = tmp("r64-dq");
    struct lk_quantize_params p = lk_quantize_params_default();
    p.format = LK_QFORMAT_HF_BNB;
    assert_ok(lk_quantize_model(src, out, &p));
    p.double_quant = 1;
    assert_ok(lk_quantize_model(src, dq, &p));
    lk_model *a = load(out, LK_QTYPE_F32, LK_QTYPE_F32), *b = load(src, LK_QTYPE_NF4, LK_QTYPE_F32);
    lk_model *c = load(dq, LK_QTYPE_F32, LK_QTYPE_F32);
    float *ya = logits_of(a, IDS, 8), *yb = logits_of(b, IDS, 8), *yc = logits_of(c, IDS, 8);
    assert_true(check_close("hf-bnb vs nf4", ya, yb, 8 * 256, 0, 0));
    assert_true(check_close("hf-bnb dq vs nf4", yc, yb, 8 * 256, 1e-2, 0));
    free(ya);
    free(yb);
    free(yc);
    lk_model_free(a);
    lk_model_free(b);
    lk_model_free(c);
    rm_rf(out);
    rm_rf(dq);
    rm_rf(src);
    free(src);
    free(out);
    free(dq);
}

/* ---- GGUF ------------------------------------------------------------------------------------ */

static void copy_into(const char *src, const char *dir, const char *name)
{
    char *text = NULL, p[4200];
    size_t len = 0;
    snprintf(p, sizeof p, "%s/%s", src, name);
    assert_ok(read_text_file(p, 1u << 24, &text, &len));
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(write_file(p, text, len), 0);
    free(text);
}

static void test_gguf(void **state)
{
    (void)state;
    const char *sm = shared_path("models/stories260K-hf");
    require_file(sm);
    char *stories = strdup(sm);
    char *src = random_model("r32", 64, 96, 512), *out = tmp("r32.gguf");
    copy_into(stories, src, "tokenizer.json");
    copy_into(stories, src, "tokenizer_config.json");
    struct lk_quantize_params p = lk_quantize_params_default();
    p.format = LK_QFORMAT_GGUF;
    p.type = LK_QTYPE_Q4_0;
    p.embed_type = LK_QTYPE_Q8_0;
    assert_ok(lk_quantize_model(src, out, &p));
    gguf_file g;
    assert_ok(gguf_open(&g, out));
    char *arch = NULL;
    assert_ok(gguf_get_str(&g, "general.architecture", &arch));
    assert_string_equal(arch, "llama");
    free(arch);
    const gguf_tensor *t = gguf_find_tensor(&g, "blk.1.ffn_down.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGML_Q4_0);
    assert_int_equal(t->ne[0], 96);
    assert_int_equal(gguf_find_tensor(&g, "token_embd.weight")->type, GGML_Q8_0);
    assert_int_equal(gguf_find_tensor(&g, "output.weight")->type, GGML_Q8_0);
    assert_int_equal(gguf_find_tensor(&g, "blk.0.attn_norm.weight")->type, GGML_F32);
    /* the rows are quant/'s rows of the source tensor */
    st_set st;
    assert_ok(st_set_open(&st, src, 1));
    const tensor_view *w = st_set_get(&st, "model.layers.1.mlp.down_proj.weight");
    size_t rb = q4_row_bytes(LK_QTYPE_Q4_0, 32, 96);
    void *rows = malloc(64 * rb);
    q4_quantize_matrix(LK_QTYPE_Q4_0, 32, w->data, 64, 96, rows, 1, NULL, NULL);
    assert_int_equal(t->nbytes, 64 * rb);
    assert_memory_equal(t->data, rows, 64 * rb);
    free(rows);
    st_set_close(&st);
    gguf_close(&g);
    /* stories260K's down_proj rows of 172 are not whole Q4_0 blocks: written F16 (the f16
     * rounding of the source), as llama-quantize does; the other matrices stay Q4_0 */
    char *bad = tmp("s.gguf");
    assert_ok(lk_quantize_model(stories, bad, &p));
    assert_ok(gguf_open(&g, bad));
    const gguf_tensor *d = gguf_find_tensor(&g, "blk.2.ffn_down.weight");
    assert_non_null(d);
    assert_int_equal(d->type, GGML_F16);
    assert_int_equal(d->ne[0], 172);
    assert_int_equal(gguf_find_tensor(&g, "blk.2.ffn_up.weight")->type, GGML_Q4_0);
    assert_ok(st_set_open(&st, stories, 1));
    w = st_set_get(&st, "model.layers.2.mlp.down_proj.weight");
    assert_int_equal(w->dt, DT_F32);
    const uint16_t *h = (const uint16_t *)d->data;
    const float *x = (const float *)w->data;
    for (int64_t i = 0; i < 64 * 172; i++)
        assert_int_equal(h[i], f32_to_f16(x[i]));
    st_set_close(&st);
    gguf_close(&g);
    rm_rf(src);
    free(src);
    free(out);
    free(bad);
    free(stories);
}

/* Re-quantising a GGUF (a random Llama with rows of 256 and 512, written Q6_K with Q8_0
 * embeddings, then to Q4_K with f32 embeddings): metadata kept but general.file_type, each
 * projection matrix exactly Q4_K of the dequantised source, the embeddings its dequantised
 * values, the norms copied byte for byte; the result loads. Refusals: a folder output, a GGUF
 * type for a folder. */
static void test_gguf_requantize(void **state)
{
    (void)state;
    const char *sm = shared_path("models/stories260K-hf");
    require_file(sm);
    char *stories = strdup(sm);
    char *src = random_model("r256", 256, 512, 512), *g6 = tmp("r256-q6.gguf"),
         *g4 = tmp("r256-q4k.gguf"), *bad = tmp("r256-folder");
    copy_into(stories, src, "tokenizer.json");
    copy_into(stories, src, "tokenizer_config.json");
    struct lk_quantize_params p = lk_quantize_params_default();
    p.format = LK_QFORMAT_GGUF;
    p.type = LK_QTYPE_Q6_K;
    p.embed_type = LK_QTYPE_Q8_0;
    assert_ok(lk_quantize_model(src, g6, &p));
    p.type = LK_QTYPE_Q4_K;
    p.embed_type = LK_QTYPE_F32;
    assert_ok(lk_quantize_model(g6, g4, &p));
    gguf_file a, b;
    assert_ok(gguf_open(&a, g6));
    assert_ok(gguf_open(&b, g4));
    assert_int_equal(b.n_kv, a.n_kv);
    for (int64_t i = 0; i < a.n_kv; i++)
        assert_string_equal(b.kv[i].key, a.kv[i].key);
    int64_t ft;
    assert_ok(gguf_get_i64(&b, "general.file_type", &ft));
    assert_int_equal(ft, 14); /* LLAMA_FTYPE_MOSTLY_Q4_K_S */
    assert_int_equal(b.n_tensors, a.n_tensors);
    int n_proj = 0;
    for (int64_t i = 0; i < a.n_tensors; i++) {
        const gguf_tensor *x = &a.tensors[i], *y = &b.tensors[i];
        assert_string_equal(y->name, x->name);
        if (x->n_dims == 1) {
            assert_int_equal(y->type, x->type);
            assert_memory_equal(y->data, x->data, (size_t)x->nbytes);
            continue;
        }
        float *deq = gguf_tensor_f32(x);
        const int64_t rows = x->ne[1], cols = x->ne[0];
        if (strstr(x->name, "blk.")) {
            n_proj++;
            assert_int_equal(x->type, GGML_Q6_K);
            assert_int_equal(y->type, GGML_Q4_K);
            size_t rb = q4_row_bytes(LK_QTYPE_Q4_K, 32, cols);
            void *rows_q = malloc((size_t)rows * rb);
            q4_quantize_matrix(LK_QTYPE_Q4_K, 32, deq, rows, cols, rows_q, 1, NULL, NULL);
            assert_int_equal(y->nbytes, (uint64_t)rows * rb);
            assert_memory_equal(y->data, rows_q, (size_t)y->nbytes);
            free(rows_q);
        } else { /* token_embd, output: Q8_0 -> f32, the dequantised values */
            assert_int_equal(x->type, GGML_Q8_0);
            assert_int_equal(y->type, GGML_F32);
            assert_memory_equal(y->data, deq, (size_t)(rows * cols) * sizeof(float));
        }
        free(deq);
    }
    assert_int_equal(n_proj, 2 * 7);
    gguf_close(&a);
    gguf_close(&b);
    lk_model *m = load(g4, LK_QTYPE_F32, LK_QTYPE_F32);
    assert_int_equal(m->cfg.hidden_size, 256);
    lk_model_free(m);
    /* a NaN d in a Q6_K super-block of blk.1.ffn_up: an error naming the tensor, no output */
    assert_ok(gguf_open(&a, g6));
    const gguf_tensor *t = gguf_find_tensor(&a, "blk.1.ffn_up.weight");
    const size_t off = (size_t)(a.data_offset + t->offset) + 3 * 210 + 208;
    gguf_close(&a);
    char *bytes;
    size_t len;
    assert_ok(read_text_file(g6, 64u << 20, &bytes, &len));
    const uint16_t nan = 0x7e00;
    memcpy(bytes + off, &nan, 2);
    char *g6bad = tmp("r256-bad.gguf");
    assert_int_equal(write_file(g6bad, bytes, len), 0);
    free(bytes);
    assert_status(lk_quantize_model(g6bad, bad, &p), LK_ERR_FORMAT, "blk.1.ffn_up.weight");
    assert_false(file_exists(bad));
    free(g6bad);
    p.format = LK_QFORMAT_LORAKIT;
    assert_status(lk_quantize_model(g6, bad, &p), LK_ERR_ARG, "--format gguf only");
    p.type = LK_QTYPE_Q4_0;
    assert_status(lk_quantize_model(g6, bad, &p), LK_ERR_UNSUPPORTED, "into a GGUF file only");
    assert_false(file_exists(bad));
    rm_rf(src);
    free(src);
    free(g6);
    free(g4);
    free(bad);
    free(stories);
}

/* ---- corrupt files ----------------------------------------------------------------------------
 */

typedef void (*edit_fn)(tensor_view *v, int n, cJSON *meta, void *scratch);

static int cmp_data(const void *a, const void *b)
{
    const tensor_view *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Copy folder src to dst with model.safetensors rewritten after edit (file order kept). */
static void rewrite(const char *src, const char *dst, edit_fn edit)
{
    char p[4200];
    st_file f;
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    assert_ok(st_open(&f, p, 1));
    tensor_view *v = malloc((size_t)f.n * sizeof *v);
    memcpy(v, f.tensors, (size_t)f.n * sizeof *v);
    qsort(v, (size_t)f.n, sizeof *v, cmp_data);
    cJSON *meta = cJSON_Duplicate(f.metadata, 1);
    void *scratch = malloc(1 << 20);
    int n = f.n;
    edit(v, n, meta, scratch);
    mkdir(dst, 0755);
    copy_into(src, dst, "config.json");
    snprintf(p, sizeof p, "%s/model.safetensors", dst);
    assert_ok(st_write(p, v, n, meta, NULL, NULL, 1));
    free(scratch);
    cJSON_Delete(meta);
    free(v);
    st_close(&f);
}

static tensor_view *find(tensor_view *v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    fail_msg("no tensor '%s'", name);
    return NULL;
}

static void set_meta(cJSON *meta, const char *k, const char *val)
{
    cJSON_DeleteItemFromObjectCaseSensitive(meta, k);
    cJSON_AddStringToObject(meta, k, val);
}

#define Q0 "model.layers.0.self_attn.q_proj.weight"

static void ed_quant(tensor_view *v, int n, cJSON *m, void *s)
{
    set_meta(m, QBASE_KEY_QUANT, "nf5");
}
static void ed_block(tensor_view *v, int n, cJSON *m, void *s)
{
    set_meta(m, QBASE_KEY_BLOCK, "48");
}
static void ed_ver(tensor_view *v, int n, cJSON *m, void *s)
{
    set_meta(m, QBASE_KEY_VERSION, "2");
}
static void ed_embed(tensor_view *v, int n, cJSON *m, void *s)
{
    set_meta(m, QBASE_KEY_EMBED, "nf4");
}

/* q_proj [96, 36] stored as [48, 72]: same bytes, wrong shape */
static void ed_shape(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, Q0);
    t->shape[0] /= 2;
    t->shape[1] *= 2;
}

/* row 3 block 0 absmax (after the 32 code bytes of a 64-value NF4 row) = NaN */
static void ed_nan(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, Q0);
    memcpy(s, t->data, t->nbytes);
    float nan = NAN;
    memcpy((uint8_t *)s + 3 * t->shape[1] + 32, &nan, 4);
    t->data = s;
}

/* Q4_0: the fp16 scale of row 1 block 1 = +inf */
static void ed_inf(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, Q0);
    memcpy(s, t->data, t->nbytes);
    uint16_t inf = 0x7c00;
    memcpy((uint8_t *)s + t->shape[1] + 18, &inf, 2);
    t->data = s;
}

#define BQ "model.layers.1.mlp.up_proj.weight"

static void ed_bnb_fp4(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, BQ ".quant_state.bitsandbytes__nf4");
    memcpy(s, t->data, t->nbytes);
    char *q = strstr(s, "\"nf4\"");
    memcpy(q, "\"fp4\"", 5);
    t->data = s;
}

static void ed_bnb_shape(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, BQ ".quant_state.bitsandbytes__nf4");
    memcpy(s, t->data, t->nbytes);
    char *q = strstr(s, "[80, 64]");
    memcpy(q, "[64, 80]", 8);
    t->data = s;
}

static void ed_bnb_absmax(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, BQ ".absmax");
    memcpy(s, t->data, t->nbytes);
    float inf = -INFINITY;
    memcpy((uint8_t *)s + 4 * 5, &inf, 4);
    t->data = s;
}

static void ed_bnb_nomap(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, BQ ".quant_map");
    memmove(t, t + 1, (size_t)(v + n - t - 1) * sizeof *t); /* n stays: last entry duplicated */
    v[n - 1].name = "zz.dup";
    v[n - 1].nbytes = 0;
    v[n - 1].ndim = 1;
    v[n - 1].shape[0] = 0;
}

static void ed_bnb_packed(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, BQ);
    t->shape[0] -= 2;
    t->nbytes -= 2;
}

static void ed_bnb_map(tensor_view *v, int n, cJSON *m, void *s)
{
    tensor_view *t = find(v, n, BQ ".quant_map");
    memcpy(s, t->data, t->nbytes);
    ((float *)s)[3] += 1e-3f;
    t->data = s;
}

static void expect_load(const char *src, edit_fn e, lk_status st, const char *needle)
{
    char *dst = tmp("corrupt");
    rewrite(src, dst, e);
    lk_model *m = NULL;
    assert_status(lk_model_load(dst, NULL, &m), st, needle);
    assert_null(m);
    rm_rf(dst);
    free(dst);
}

static void test_corrupt_lorakit(void **state)
{
    (void)state;
    char *nf4 = tmp("c-nf4"), *q40 = tmp("c-q4_0");
    struct lk_quantize_params p = lk_quantize_params_default();
    assert_ok(lk_quantize_model(data_path("models/llama3-tiny"), nf4, &p));
    p.type = LK_QTYPE_Q4_0;
    assert_ok(lk_quantize_model(data_path("models/llama3-tiny"), q40, &p));
    expect_load(nf4, ed_quant, LK_ERR_FORMAT, "lorakit.quant 'nf5' is not one of");
    expect_load(nf4, ed_block, LK_ERR_FORMAT, "lorakit.quant_block '48' is not a power of two");
    expect_load(nf4, ed_ver, LK_ERR_UNSUPPORTED, "too new");
    expect_load(nf4, ed_embed, LK_ERR_FORMAT, "lorakit.quant_embed 'nf4'");
    expect_load(nf4, ed_shape, LK_ERR_FORMAT,
                "tensor '" Q0 "' is U8 [48, 72], expected [96, 36] (nf4 rows of 64 values");
    expect_load(nf4, ed_nan, LK_ERR_FORMAT, "tensor '" Q0 "': nf4 scale of row 3 block 0 is nan");
    expect_load(q40, ed_inf, LK_ERR_FORMAT, "tensor '" Q0 "': q4_0 scale of row 1 block 1 is inf");
    /* truncation anywhere: a format error, never a crash */
    char path[4200], *cut = tmp("cut");
    snprintf(path, sizeof path, "%s/model.safetensors", nf4);
    size_t len;
    char *bytes = NULL;
    assert_ok(read_text_file(path, 1u << 24, &bytes, &len));
    mkdir(cut, 0755);
    copy_into(nf4, cut, "config.json");
    snprintf(path, sizeof path, "%s/model.safetensors", cut);
    for (size_t n = 0; n < len; n += n < 4096 ? 7 : 997) {
        assert_int_equal(write_file(path, bytes, n), 0);
        lk_model *m = NULL;
        assert_status(lk_model_load(cut, NULL, &m), LK_ERR_FORMAT, "model.safetensors");
    }
    free(bytes);
    rm_rf(cut);
    rm_rf(nf4);
    rm_rf(q40);
    free(cut);
    free(nf4);
    free(q40);
}

static void test_corrupt_bnb(void **state)
{
    (void)state;
    char src[4096];
    snprintf(src, sizeof src, "%s", data_path("bnb/llama3-tiny-nf4"));
    expect_load(src, ed_bnb_fp4, LK_ERR_UNSUPPORTED, "quant_type 'fp4' is not supported");
    expect_load(src, ed_bnb_shape, LK_ERR_SHAPE, "shape [64, 80], expected [80, 64]");
    expect_load(src, ed_bnb_absmax, LK_ERR_FORMAT, "tensor '" BQ "': absmax of block 5 is -inf");
    expect_load(src, ed_bnb_nomap, LK_ERR_FORMAT, "'" BQ ".quant_map' is missing");
    expect_load(src, ed_bnb_packed, LK_ERR_FORMAT,
                "tensor '" BQ "' holds 2558 packed bytes, expected 2560");
    expect_load(src, ed_bnb_map, LK_ERR_UNSUPPORTED, "not the NF4 codebook");
}

static lk_status parse_cfg(const char *json, struct lk_model_config *c)
{
    return config_parse("c", json, strlen(json), c);
}

static void test_config(void **state)
{
    (void)state;
    struct lk_model_config c;
#define BASE                                                                               \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":8," \
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":10,"
#define QC(x) BASE "\"quantization_config\":{" x "}}"
    assert_ok(parse_cfg(QC("\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true,"
                           "\"bnb_4bit_quant_type\":\"nf4\","
                           "\"bnb_4bit_use_double_quant\":true"),
                        &c));
    assert_status(parse_cfg(QC("\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true,"
                               "\"bnb_4bit_quant_type\":\"fp4\""),
                            &c),
                  LK_ERR_UNSUPPORTED, "bnb_4bit_quant_type 'fp4'");
    assert_status(parse_cfg(QC("\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true"), &c),
                  LK_ERR_UNSUPPORTED, "'fp4'"); /* transformers' default */
    assert_status(parse_cfg(QC("\"quant_method\":\"bitsandbytes\",\"load_in_8bit\":true"), &c),
                  LK_ERR_UNSUPPORTED, "load_in_8bit");
    assert_status(parse_cfg(QC("\"quant_method\":\"gptq\",\"bits\":4"), &c), LK_ERR_UNSUPPORTED,
                  "method 'gptq'");
    assert_status(parse_cfg(BASE "\"quantization_config\":4}", &c), LK_ERR_FORMAT,
                  "must be an object");
#undef QC
#undef BASE
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lorakit_formats), cmocka_unit_test(test_lorakit_stories),
        cmocka_unit_test(test_report),          cmocka_unit_test(test_bnb_fixtures),
        cmocka_unit_test(test_bnb_writer),      cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_gguf_requantize),
        cmocka_unit_test(test_corrupt_lorakit), cmocka_unit_test(test_corrupt_bnb),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
