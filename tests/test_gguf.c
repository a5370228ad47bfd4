/* test_gguf.c — the GGUF reader and writer: a writer/reader round trip of every metadata type, a
 * corrupt-file corpus where each case gets its exact status and a message naming the problem,
 * truncation at every length, the real stories260K.gguf; and GGUF LoRA export checked against the
 * reference files tests/gen/gen_adapters.py wrote with gguf-py from llama.cpp's conventions (names,
 * dimension order, q/k row permutation, alpha, folded rsLoRA scales), with a bit-exact
 * GGUF → PEFT → GGUF round trip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora/adapter.h"
#include "formats/gguf.h"
#include "q4.h"
#include "core/tensor.h"
#include "testutil.h"

/* ---- a byte builder for hand-made files ---- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} buf;

static void put(buf *x, const void *p, size_t n)
{
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void u32(buf *x, uint32_t v)
{
    put(x, &v, 4);
}
static void u64(buf *x, uint64_t v)
{
    put(x, &v, 8);
}
static void str(buf *x, const char *s)
{
    u64(x, strlen(s));
    put(x, s, strlen(s));
}
static void pad32(buf *x)
{
    while (x->n % 32)
        x->b[x->n++] = 0;
}

/* Header with n_tensors and n_kv; the caller appends KVs, infos and data. */
static void header(buf *x, uint32_t version, uint64_t nt, uint64_t nkv)
{
    x->n = 0;
    put(x, "GGUF", 4);
    u32(x, version);
    u64(x, nt);
    u64(x, nkv);
}

static void tensor_info(buf *x, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                        uint64_t off)
{
    str(x, name);
    u32(x, nd);
    for (uint32_t d = 0; d < nd; d++)
        u64(x, ne[d]);
    u32(x, type);
    u64(x, off);
}

/* A valid file: one string KV and one F32 [2 rows of 4] tensor. */
static void valid(buf *x)
{
    header(x, 3, 1, 1);
    str(x, "general.architecture");
    u32(x, GGUF_STRING);
    str(x, "llama");
    tensor_info(x, "t", 2, (uint64_t[]){4, 2}, GGML_F32, 0);
    pad32(x);
    for (int i = 0; i < 8; i++) {
        float f = (float)i;
        put(x, &f, 4);
    }
}

static void expect_bad(const buf *x, lk_status st, const char *needle)
{
    gguf_file f;
    assert_int_equal(write_file(tmp_path("bad.gguf"), x->b, x->n), 0);
    assert_status(gguf_open(&f, tmp_path("bad.gguf")), st, needle);
    assert_non_null(strstr(lk_last_error(), "bad.gguf"));
}

static void test_valid_by_hand(void **state)
{
    (void)state;
    buf x;
    valid(&x);
    gguf_file f;
    assert_int_equal(write_file(tmp_path("ok.gguf"), x.b, x.n), 0);
    assert_ok(gguf_open(&f, tmp_path("ok.gguf")));
    assert_int_equal(f.n_tensors, 1);
    const gguf_tensor *t = gguf_find_tensor(&f, "t");
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 2);
    assert_true(((const float *)t->data)[7] == 7.0f);
    char *s;
    assert_ok(gguf_get_str(&f, "general.architecture", &s));
    assert_string_equal(s, "llama");
    free(s);
    int64_t v;
    assert_status(gguf_get_i64(&f, "general.architecture", &v), LK_ERR_FORMAT, "integer");
    gguf_close(&f);
}

static void test_corpus(void **state)
{
    (void)state;
    buf x;
    valid(&x);
    x.b[0] = 'X';
    expect_bad(&x, LK_ERR_FORMAT, "magic");
    header(&x, 1, 0, 0);
    expect_bad(&x, LK_ERR_FORMAT, "too old");
    header(&x, 4, 0, 0);
    expect_bad(&x, LK_ERR_FORMAT, "too new");
    header(&x, 3, 1ull << 40, 0);
    expect_bad(&x, LK_ERR_FORMAT, "cannot fit");
    header(&x, 3, 0, 1);
    u64(&x, 1ull << 50); /* key length beyond the file */
    expect_bad(&x, LK_ERR_FORMAT, "truncated");
    header(&x, 3, 0, 1);
    str(&x, "k");
    u32(&x, 99);
    expect_bad(&x, LK_ERR_FORMAT, "unknown value type");
    header(&x, 3, 0, 1);
    str(&x, "k");
    u32(&x, GGUF_ARRAY);
    u32(&x, GGUF_ARRAY);
    u64(&x, 1);
    expect_bad(&x, LK_ERR_FORMAT, "nested");
    header(&x, 3, 0, 1);
    str(&x, "k");
    u32(&x, GGUF_ARRAY);
    u32(&x, GGUF_U32);
    u64(&x, 1ull << 40); /* array longer than the file */
    expect_bad(&x, LK_ERR_FORMAT, "truncated");
    header(&x, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        str(&x, "dup");
        u32(&x, GGUF_U32);
        u32(&x, 1);
    }
    expect_bad(&x, LK_ERR_FORMAT, "appears twice");
    header(&x, 3, 0, 1);
    str(&x, "general.alignment");
    u32(&x, GGUF_U32);
    u32(&x, 24);
    expect_bad(&x, LK_ERR_FORMAT, "power of two");
    header(&x, 3, 0, 1); /* found by fuzz_gguf: alignment 0 divided by zero */
    str(&x, "general.alignment");
    u32(&x, GGUF_U32);
    u32(&x, 0);
    expect_bad(&x, LK_ERR_FORMAT, "power of two");

    struct {
        uint32_t nd;
        uint64_t ne[5];
        uint32_t type;
        uint64_t off;
        lk_status st;
        const char *needle;
    } cases[] = {
        {0, {4}, GGML_F32, 0, LK_ERR_FORMAT, "dimensions"},
        {5, {1, 1, 1, 1, 1}, GGML_F32, 0, LK_ERR_FORMAT, "dimensions"},
        {2, {4, 0}, GGML_F32, 0, LK_ERR_FORMAT, "dimension 1"},
        {2, {1ull << 40, 1ull << 40}, GGML_F32, 0, LK_ERR_FORMAT, "64 bits"},
        {1, {4}, 99, 0, LK_ERR_UNSUPPORTED, "ggml type 99"},
        {1, {16}, GGML_Q4_0, 0, LK_ERR_FORMAT, "multiple of the Q4_0 block"},
        {1, {4}, GGML_F32, 8, LK_ERR_FORMAT, "alignment"},
        {1, {4}, GGML_F32, 64, LK_ERR_FORMAT, "beyond the file"},
        {1, {64}, GGML_F32, 0, LK_ERR_FORMAT, "beyond the file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        header(&x, 3, 1, 0);
        tensor_info(&x, "t", cases[i].nd, cases[i].ne, cases[i].type, cases[i].off);
        pad32(&x);
        memset(x.b + x.n, 0, 32);
        x.n += 32;
        expect_bad(&x, cases[i].st, cases[i].needle);
    }
    /* two tensors: same name, then overlapping bytes */
    for (int k = 0; k < 2; k++) {
        header(&x, 3, 2, 0);
        tensor_info(&x, "a", 1, (uint64_t[]){8}, GGML_F32, 0);
        tensor_info(&x, k ? "b" : "a", 1, (uint64_t[]){8}, GGML_F32, k ? 0 : 32);
        pad32(&x);
        memset(x.b + x.n, 0, 64);
        x.n += 64;
        expect_bad(&x, LK_ERR_FORMAT, k ? "overlap" : "appears twice");
    }
    header(&x, 3, 1, 0);
    tensor_info(&x, "", 1, (uint64_t[]){8}, GGML_F32, 0);
    expect_bad(&x, LK_ERR_FORMAT, "name");
}

/* Cutting a valid file anywhere gives a FORMAT error, never a crash (run under ASan). */
static void test_truncation(void **state)
{
    (void)state;
    buf x;
    valid(&x);
    for (size_t n = 0; n < x.n; n++) {
        gguf_file f;
        assert_int_equal(write_file(tmp_path("cut.gguf"), x.b, n), 0);
        lk_status s = gguf_open(&f, tmp_path("cut.gguf"));
        if (s != LK_ERR_FORMAT)
            fail_msg("length %zu: status %s, expected a format error", n, lk_status_str(s));
    }
}

static void test_writer_round_trip(void **state)
{
    (void)state;
    gguf_writer *w;
    assert_ok(gguf_writer_new(&w));
    assert_ok(gguf_set_str(w, "s", "héllo"));
    assert_ok(gguf_set_u32(w, "u", 4000000000u));
    assert_ok(gguf_set_i32(w, "i", -7));
    assert_ok(gguf_set_f32(w, "f", 0.25f));
    assert_ok(gguf_set_bool(w, "b", 1));
    int32_t arr[3] = {1, -2, 3};
    assert_ok(gguf_set_arr(w, "ai", GGUF_I32, arr, 3));
    const char *strs[2] = {"x", "yz"};
    assert_ok(gguf_set_arr_str(w, "as", strs, 2));
    assert_status(gguf_set_u32(w, "u", 1), LK_ERR_ARG, "twice");
    float t1[6] = {1, 2, 3, 4, 5, 6};
    uint16_t t2[3] = {f32_to_f16(1), f32_to_f16(-2), f32_to_f16(0.5f)};
    assert_ok(gguf_add_tensor(w, "t1", GGML_F32, 2, (int64_t[]){3, 2}, t1));
    assert_ok(gguf_add_tensor(w, "t2", GGML_F16, 1, (int64_t[]){3}, t2));
    assert_status(gguf_add_tensor(w, "t3", GGML_Q4_0, 1, (int64_t[]){3}, t2), LK_ERR_ARG, "block");
    assert_ok(gguf_writer_write(w, tmp_path("w.gguf"), 0, NULL, NULL));
    assert_status(gguf_writer_write(w, tmp_path("w.gguf"), 0, NULL, NULL), LK_ERR_IO, "exists");
    gguf_writer_free(w);
    gguf_file f;
    assert_ok(gguf_open(&f, tmp_path("w.gguf")));
    char *s;
    int64_t v;
    double d;
    assert_ok(gguf_get_str(&f, "s", &s));
    assert_string_equal(s, "héllo");
    free(s);
    assert_ok(gguf_get_i64(&f, "u", &v));
    assert_int_equal(v, 4000000000ll);
    assert_ok(gguf_get_i64(&f, "i", &v));
    assert_int_equal(v, -7);
    assert_ok(gguf_get_f64(&f, "f", &d));
    assert_true(d == 0.25);
    assert_int_equal(gguf_find_kv(&f, "b")->v.u, 1);
    const gguf_kv *ai = gguf_find_kv(&f, "ai"), *as = gguf_find_kv(&f, "as");
    assert_int_equal(ai->arr_n, 3);
    assert_memory_equal(ai->arr_data, arr, sizeof arr);
    assert_int_equal(as->arr_str[1].len, 2);
    assert_memory_equal(as->arr_str[1].ptr, "yz", 2);
    const gguf_tensor *a = gguf_find_tensor(&f, "t1"), *b = gguf_find_tensor(&f, "t2");
    assert_memory_equal(a->data, t1, sizeof t1);
    assert_memory_equal(b->data, t2, sizeof t2);
    assert_int_equal(b->offset % 32, 0);
    assert_int_equal((f.data_offset) % 32, 0);
    gguf_close(&f);
}

static void test_real_file(void **state)
{
    (void)state;
    require_file(shared_path("models/stories260K/stories260K.gguf"));
    gguf_file f;
    assert_ok(gguf_open(&f, shared_path("models/stories260K/stories260K.gguf")));
    assert_int_equal(f.version, 3);
    assert_int_equal(f.n_tensors, 48);
    assert_int_equal(f.n_kv, 19);
    const gguf_tensor *t = gguf_find_tensor(&f, "blk.0.attn_k.weight");
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 32);
    assert_int_equal(gguf_find_kv(&f, "tokenizer.ggml.tokens")->arr_n, 512);
    gguf_close(&f);
}

/* ---- GGUF LoRA export ---- */

static lk_adapter *load(const char *rel)
{
    lk_adapter *a = NULL;
    char *p = strdup(data_path(rel));
    assert_ok(lk_adapter_load(p, &a));
    free(p);
    return a;
}

static void same_gguf(const char *got_path, const char *want_path)
{
    gguf_file g, w;
    assert_ok(gguf_open(&g, got_path));
    assert_ok(gguf_open(&w, want_path));
    assert_int_equal(g.n_tensors, w.n_tensors);
    for (int64_t i = 0; i < w.n_tensors; i++) {
        const gguf_tensor *b = &w.tensors[i], *a = gguf_find_tensor(&g, b->name);
        if (!a)
            fail_msg("'%s' missing from our export", b->name);
        assert_int_equal(a->type, b->type);
        assert_memory_equal(a->ne, b->ne, sizeof a->ne);
        if (memcmp(a->data, b->data, b->nbytes) != 0)
            fail_msg("tensor '%s' differs from the reference", b->name);
    }
    static const char *const keys[] = {"general.architecture", "general.type", "adapter.type"};
    for (int k = 0; k < 3; k++) {
        char *x, *y;
        assert_ok(gguf_get_str(&g, keys[k], &x));
        assert_ok(gguf_get_str(&w, keys[k], &y));
        assert_string_equal(x, y);
        free(x);
        free(y);
    }
    double x, y;
    assert_ok(gguf_get_f64(&g, "adapter.lora.alpha", &x));
    assert_ok(gguf_get_f64(&w, "adapter.lora.alpha", &y));
    assert_true(x == y);
    gguf_close(&g);
    gguf_close(&w);
}

static void test_export_matches_reference(void **state)
{
    (void)state;
    struct lk_model_config cfg;
    require_file(shared_path("models/stories260K-hf/config.json"));
    assert_ok(lk_config_load(shared_path("models/stories260K-hf"), &cfg));
    lk_adapter *a = load("adapters/stories-lora");
    assert_ok(lk_adapter_save_gguf(a, &cfg, tmp_path("s.gguf"), "f32", 0));
    same_gguf(tmp_path("s.gguf"), data_path("adapters/stories-lora.gguf"));
    lk_adapter_free(a);
    /* rsLoRA + patterns: scales folded into B, alpha 0 */
    assert_ok(lk_config_load(data_path("models/llama3-tiny"), &cfg));
    a = load("adapters/llama3-rslora");
    assert_ok(lk_adapter_save_gguf(a, &cfg, tmp_path("l.gguf"), "f32", 0));
    same_gguf(tmp_path("l.gguf"), data_path("adapters/llama3-rslora.gguf"));
    /* loading it back gives the same ΔW: scale 1 and B·s */
    lk_adapter *b = load("adapters/llama3-rslora.gguf");
    assert_ok(lk_adapter_set_base(b, &cfg));
    for (int64_t i = 0; i < a->n_mods; i++) {
        const adapter_module *p = &a->mods[i], *q = &b->mods[i];
        assert_true(q->scale == 1.0);
        for (int64_t k = 0; k < p->out * p->r; k++)
            assert_true(q->B[k] == (float)(p->B[k] * p->scale));
    }
    lk_adapter_free(a);
    lk_adapter_free(b);
}

static int same_file(const char *x, const char *y)
{
    mapfile a, b;
    assert_ok(mapfile_open(&a, x, 0));
    assert_ok(mapfile_open(&b, y, 0));
    int same = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
    mapfile_close(&a);
    mapfile_close(&b);
    return same;
}

/* GGUF → PEFT → GGUF is bit-exact for f32 (also with alpha 0 and for Qwen2). */
static void test_round_trip(void **state)
{
    (void)state;
    const char *models[2] = {"models/llama3-tiny", "models/qwen2-tiny"};
    const char *adapters[2] = {"adapters/llama3-rslora", "adapters/qwen2-lora"};
    for (int k = 0; k < 2; k++) {
        struct lk_model_config cfg;
        assert_ok(lk_config_load(data_path(models[k]), &cfg));
        lk_adapter *a = load(adapters[k]), *g, *p;
        assert_ok(lk_adapter_save_gguf(a, &cfg, tmp_path("e1.gguf"), "f32", 1));
        assert_ok(lk_adapter_load(tmp_path("e1.gguf"), &g));
        assert_ok(lk_adapter_set_base(g, &cfg));
        assert_ok(lk_adapter_save_peft(g, tmp_path("peft"), 1));
        assert_ok(lk_adapter_load(tmp_path("peft"), &p));
        assert_ok(lk_adapter_save_gguf(p, &cfg, tmp_path("e2.gguf"), "f32", 1));
        assert_true(same_file(tmp_path("e1.gguf"), tmp_path("e2.gguf")));
        if (k == 1) /* Qwen2: B rows not permuted, scale kept as alpha */
            assert_memory_equal(a->mods[0].B, g->mods[0].B, (size_t)(a->mods[0].out * 3) * 4);
        lk_adapter_free(a);
        lk_adapter_free(g);
        lk_adapter_free(p);
    }
}

static void test_export_types_and_refusals(void **state)
{
    (void)state;
    struct lk_model_config cfg;
    assert_ok(lk_config_load(data_path("models/qwen2-tiny"), &cfg));
    lk_adapter *a = load("adapters/qwen2-lora");
    const char *types[2] = {"f16", "bf16"};
    for (int k = 0; k < 2; k++) {
        assert_ok(lk_adapter_save_gguf(a, &cfg, tmp_path("h.gguf"), types[k], 1));
        gguf_file f;
        assert_ok(gguf_open(&f, tmp_path("h.gguf")));
        const gguf_tensor *t = gguf_find_tensor(&f, "blk.0.attn_q.weight.lora_a");
        assert_int_equal(t->type, k ? GGML_BF16 : GGML_F16);
        const uint16_t *h = (const uint16_t *)t->data;
        for (int64_t i = 0; i < 3 * 64; i++)
            assert_int_equal(h[i], k ? f32_to_bf16(a->mods[0].A[i]) : f32_to_f16(a->mods[0].A[i]));
        gguf_close(&f);
    }
    /* q8_0: each row of A through llama.cpp's quantiser (quant/ is bit-exact with it) */
    assert_ok(lk_adapter_save_gguf(a, &cfg, tmp_path("q.gguf"), "q8_0", 1));
    {
        gguf_file f;
        assert_ok(gguf_open(&f, tmp_path("q.gguf")));
        const gguf_tensor *t = gguf_find_tensor(&f, "blk.0.attn_q.weight.lora_a");
        assert_int_equal(t->type, GGML_Q8_0);
        size_t rb = q4_row_bytes(LK_QTYPE_Q8_0, Q4_QK, 64);
        uint8_t *want = malloc(rb);
        q4_quantize_row(LK_QTYPE_Q8_0, Q4_QK, a->mods[0].A, 64, want);
        assert_memory_equal(t->data, want, rb);
        free(want);
        gguf_close(&f);
    }
    assert_status(lk_adapter_save_gguf(a, &cfg, tmp_path("q.gguf"), "f8", 1), LK_ERR_ARG, "f8");
    lk_adapter_free(a);
    a = load("adapters/qwen2-dora");
    assert_status(lk_adapter_save_gguf(a, &cfg, tmp_path("d.gguf"), "f32", 1), LK_ERR_UNSUPPORTED,
                  "merge");
    lk_adapter_free(a);
    /* the wrong base */
    a = load("adapters/llama3-rslora");
    assert_status(lk_adapter_save_gguf(a, &cfg, tmp_path("w.gguf"), "f32", 1), LK_ERR_SHAPE,
                  "wrong base model?");
    lk_adapter_free(a);
    /* a model file is not an adapter */
    if (file_exists(shared_path("models/stories260K/stories260K.gguf"))) {
        lk_adapter *m = NULL;
        assert_status(lk_adapter_load(shared_path("models/stories260K/stories260K.gguf"), &m),
                      LK_ERR_FORMAT, "general.type");
    }
}

/* A hand-made GGUF adapter with the given tensors (ne {in, r} / {r, out}, F32 zeros). */
static const char *lora_file(int64_t ra, int64_t rb, int with_b, const char *extra)
{
    gguf_writer *w;
    static float zeros[64 * 64];
    assert_ok(gguf_writer_new(&w));
    assert_ok(gguf_set_str(w, "general.architecture", "qwen2"));
    assert_ok(gguf_set_str(w, "general.type", "adapter"));
    assert_ok(gguf_set_str(w, "adapter.type", "lora"));
    assert_ok(
        gguf_add_tensor(w, "blk.0.attn_q.weight.lora_a", GGML_F32, 2, (int64_t[]){64, ra}, zeros));
    if (with_b)
        assert_ok(gguf_add_tensor(w, "blk.0.attn_q.weight.lora_b", GGML_F32, 2, (int64_t[]){rb, 64},
                                  zeros));
    if (extra)
        assert_ok(gguf_add_tensor(w, extra, GGML_F32, 1, (int64_t[]){8}, zeros));
    assert_ok(gguf_writer_write(w, tmp_path("l.gguf"), 1, NULL, NULL));
    gguf_writer_free(w);
    return tmp_path("l.gguf");
}

static void test_lora_file_errors(void **state)
{
    (void)state;
    lk_adapter *a = NULL;
    assert_ok(lk_adapter_load(lora_file(2, 2, 1, NULL), &a));
    struct lk_adapter_info in;
    lk_adapter_get_info(a, &in);
    assert_true(in.alpha == 0); /* no adapter.lora.alpha: scale 1 */
    struct lk_adapter_module m;
    assert_ok(lk_adapter_get_module(a, 0, &m));
    assert_true(m.scale == 1.0);
    lk_adapter_free(a);
    a = NULL;
    assert_status(lk_adapter_load(lora_file(2, 3, 1, NULL), &a), LK_ERR_SHAPE, "one rank");
    assert_status(lk_adapter_load(lora_file(2, 2, 0, NULL), &a), LK_ERR_FORMAT, "lora_b");
    assert_status(lk_adapter_load(lora_file(2, 2, 1, "token_embd.weight.lora_a"), &a),
                  LK_ERR_UNSUPPORTED, "token_embd");
    assert_null(a);
    /* quantised factors with a NaN or Inf block scale are refused at load, by tensor and block */
    for (int k = 0; k < 2; k++) {
        gguf_writer *w;
        q4_block_q8_0 qa[2 * 2] = {0}; /* ne {64, 2}: 2 rows of 2 blocks */
        float zeros[2 * 64] = {0};
        qa[3].d = k ? 0x7c00 : 0x7e00; /* +Inf, NaN */
        assert_ok(gguf_writer_new(&w));
        assert_ok(gguf_set_str(w, "general.architecture", "qwen2"));
        assert_ok(gguf_set_str(w, "general.type", "adapter"));
        assert_ok(gguf_set_str(w, "adapter.type", "lora"));
        assert_ok(
            gguf_add_tensor(w, "blk.0.attn_q.weight.lora_a", GGML_Q8_0, 2, (int64_t[]){64, 2}, qa));
        assert_ok(gguf_add_tensor(w, "blk.0.attn_q.weight.lora_b", GGML_F32, 2, (int64_t[]){2, 64},
                                  zeros));
        assert_ok(gguf_writer_write(w, tmp_path("nan.gguf"), 1, NULL, NULL));
        gguf_writer_free(w);
        assert_status(lk_adapter_load(tmp_path("nan.gguf"), &a), LK_ERR_FORMAT,
                      k ? "'blk.0.attn_q.weight.lora_a': Q8_0 block 3 has scale inf"
                        : "'blk.0.attn_q.weight.lora_a': Q8_0 block 3 has scale nan");
    }
}

/* The other GGUF types: their layout in the type table (ggml's block sizes), NaN / Inf scales
 * and mins of k-quant super-blocks found by gguf_check_scales with file, tensor, row and block,
 * and the real SmolLM2 Q4_1 file: every scale finite, a row dequantised. */
static void test_gguf_read_only_types(void **state)
{
    (void)state;
    static const struct {
        uint32_t t;
        int64_t blck, size;
        int qtype;
    } want[] = {{GGML_Q4_1, 32, 20, LK_QTYPE_Q4_1},      {GGML_Q5_0, 32, 22, LK_QTYPE_Q5_0},
                {GGML_Q5_1, 32, 24, LK_QTYPE_Q5_1},      {GGML_Q2_K, 256, 84, LK_QTYPE_Q2_K},
                {GGML_Q3_K, 256, 110, LK_QTYPE_Q3_K},    {GGML_Q4_K, 256, 144, LK_QTYPE_Q4_K},
                {GGML_Q5_K, 256, 176, LK_QTYPE_Q5_K},    {GGML_Q6_K, 256, 210, LK_QTYPE_Q6_K},
                {GGML_IQ4_XS, 256, 136, LK_QTYPE_IQ4_XS}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gguf_type_traits *tt = gguf_type_info(want[i].t);
        assert_non_null(tt);
        assert_int_equal(tt->blck, want[i].blck);
        assert_int_equal(tt->size, want[i].size);
        assert_int_equal(tt->qtype, want[i].qtype);
        assert_int_equal(q4_block_bytes(tt->qtype), (size_t)tt->size);
        assert_non_null(tt->to_f32);
        assert_non_null(tt->from_f32); /* quantisers bit-exact with ggml's: test_quant_formats */
    }
    /* llama-quantize's fallback for rows that are not whole blocks */
    assert_int_equal(gguf_type_fallback(GGML_Q4_K, 512), GGML_Q4_K);
    assert_int_equal(gguf_type_fallback(GGML_Q4_K, 576), GGML_Q5_0);
    assert_int_equal(gguf_type_fallback(GGML_Q5_K, 576), GGML_Q5_1);
    assert_int_equal(gguf_type_fallback(GGML_Q6_K, 576), GGML_Q8_0);
    assert_int_equal(gguf_type_fallback(GGML_Q2_K, 576), GGML_Q4_0);
    assert_int_equal(gguf_type_fallback(GGML_Q3_K, 576), GGML_Q4_0);
    assert_int_equal(gguf_type_fallback(GGML_IQ4_XS, 576), GGML_IQ4_NL);
    assert_int_equal(gguf_type_fallback(GGML_Q6_K, 172), GGML_F16);
    assert_int_equal(gguf_type_fallback(GGML_Q4_0, 172), GGML_F16);
    assert_int_equal(gguf_type_fallback(GGML_F32, 172), GGML_F32);
    assert_null(gguf_type_info(16)); /* IQ2_XXS: not a type lorakit knows */
    /* Q4_K [3 rows of 512]: dmin NaN in row 2, block 1; Q6_K [2 rows of 256]: d +Inf in row 1 */
    static uint8_t k4[3 * 2 * 144], k6[2 * 210];
    memset(k4, 0x11, sizeof k4);
    memset(k6, 0x11, sizeof k6);
    const uint16_t nan = 0x7e00, inf = 0x7c00;
    memcpy(k4 + (2 * 2 + 1) * 144 + 2, &nan, 2);
    memcpy(k6 + 210 + 208, &inf, 2);
    gguf_writer *w;
    assert_ok(gguf_writer_new(&w));
    assert_ok(gguf_set_str(w, "general.architecture", "llama"));
    assert_ok(gguf_add_tensor(w, "blk.0.ffn_down.weight", GGML_Q4_K, 2, (int64_t[]){512, 3}, k4));
    assert_ok(gguf_add_tensor(w, "blk.1.ffn_down.weight", GGML_Q6_K, 2, (int64_t[]){256, 2}, k6));
    assert_ok(gguf_writer_write(w, tmp_path("k.gguf"), 1, NULL, NULL));
    gguf_writer_free(w);
    gguf_file f;
    assert_ok(gguf_open(&f, tmp_path("k.gguf")));
    assert_status(gguf_check_scales(&f, gguf_find_tensor(&f, "blk.0.ffn_down.weight")),
                  LK_ERR_FORMAT,
                  "tensor 'blk.0.ffn_down.weight': Q4_K block 5 has scale nan (row 2, block 1 of "
                  "the row");
    assert_status(gguf_check_scales(&f, gguf_find_tensor(&f, "blk.1.ffn_down.weight")),
                  LK_ERR_FORMAT,
                  "tensor 'blk.1.ffn_down.weight': Q6_K block 1 has scale inf (row 1, block 0");
    gguf_close(&f);
    const char *path = shared_path("models/smollm2-135m-instruct-gguf/"
                                   "SmolLM2-135M-Instruct.Q4_1.gguf");
    require_file(path);
    assert_ok(gguf_open(&f, path));
    int n41 = 0;
    for (int64_t i = 0; i < f.n_tensors; i++) {
        assert_ok(gguf_check_scales(&f, &f.tensors[i]));
        n41 += f.tensors[i].type == GGML_Q4_1;
    }
    assert_int_equal(n41, 210); /* 30 layers x 7 projections */
    const gguf_tensor *t = gguf_find_tensor(&f, "blk.0.ffn_down.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGML_Q4_1);
    float row[1536];
    assert_int_equal(t->ne[0], 1536);
    gguf_type_info(t->type)->to_f32(t->data, row, 1536);
    double ss = 0;
    for (int i = 0; i < 1536; i++)
        ss += (double)row[i] * row[i];
    assert_true(ss > 0 && isfinite(ss));
    gguf_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_by_hand),    cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_truncation),       cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_real_file),        cmocka_unit_test(test_export_matches_reference),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_export_types_and_refusals),
        cmocka_unit_test(test_lora_file_errors), cmocka_unit_test(test_gguf_read_only_types),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
