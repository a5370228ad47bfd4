/* test_gguf_tok.c — the tokenizer of a GGUF file's metadata against llama.cpp itself (fixtures
 * tests/data/tok/gguf-*, made by tests/gen/gen_gguf_tok.py with llama.cpp 0c1e57098): SmolLM2's
 * GGUF ("gpt2", pre smollm), ggml-vocab-llama-spm.gguf ("llama"), and Qwen2.5 / Llama-3.2
 * vocabularies written here by lorakit's GGUF vocabulary writer (checked against llama.cpp's
 * converter by digests of every tokenizer key), on the corpus, the special-token soup and the
 * GGUF edge cases: ids with and without BOS/EOS, decodes, llama.cpp's own test vectors. Also every
 * tokenizer.ggml.pre name llama.cpp knows, transformers' SmolLM2 chat rendering, and hostile
 * metadata (wrong types, lengths, names), which must fail cleanly. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "formats/gguf.h"
#include "text/gguf_pre.h"
#include "text/gguf_vocab.h"
#include "text/tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"

static const char SMOLLM[] = "models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf";
static const char SPM[] = "models/ggml-vocab/ggml-vocab-llama-spm.gguf";

/* ---- fixtures ---- */

/* Strings of a ggml-vocab style .inp file (each followed by SEP; may hold NUL bytes). */
typedef struct {
    char *buf;
    const char *s[4096];
    size_t len[4096];
    int n;
} inp_file;

static void inp_load(const char *path, inp_file *f)
{
    size_t n;
    require_file(path);
    assert_ok(read_text_file(path, 1 << 24, &f->buf, &n));
    f->n = 0;
    const char *p = f->buf, *end = f->buf + n, *q;
    while ((q = memmem(p, (size_t)(end - p), SEP, strlen(SEP))) != NULL && f->n < 4096) {
        f->s[f->n] = p;
        f->len[f->n++] = (size_t)(q - p);
        p = q + strlen(SEP);
    }
}

/* One line of ids per string. */
typedef struct {
    char *buf;
    int32_t *ids;
    int64_t start[4097];
    int n;
} out_file;

static void out_load(const char *path, out_file *o)
{
    size_t n;
    require_file(path);
    assert_ok(read_text_file(path, 1 << 24, &o->buf, &n));
    o->ids = malloc((n + 1) * sizeof *o->ids);
    int64_t k = 0;
    o->n = 0;
    for (const char *p = o->buf; *p && o->n < 4096;) {
        o->start[o->n++] = k;
        while (*p != '\n') {
            char *e;
            o->ids[k++] = (int32_t)strtol(p, &e, 10);
            assert_true(e != p);
            p = e;
        }
        p++;
    }
    o->start[o->n] = k;
}

static cJSON *g_meta;

static cJSON *meta(void)
{
    if (!g_meta) {
        char *txt;
        size_t n;
        require_file(data_path("tok/gguf-meta.json"));
        assert_ok(read_text_file(data_path("tok/gguf-meta.json"), 1 << 24, &txt, &n));
        g_meta = cJSON_Parse(txt);
        free(txt);
        assert_non_null(g_meta);
    }
    return g_meta;
}

static void ints_of(const cJSON *a, int32_t *v, int *n)
{
    const cJSON *it;
    *n = 0;
    cJSON_ArrayForEach(it, a) v[(*n)++] = (int32_t)it->valuedouble;
}

static uint64_t fnv64(const void *p, size_t n, uint64_t h)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull

static uint64_t ids_digest(const int32_t *ids, int64_t n)
{
    uint64_t h = FNV0;
    for (int64_t i = 0; i < n; i++) {
        char b[16];
        int k = snprintf(b, sizeof b, i ? " %d" : "%d", ids[i]);
        h = fnv64(b, (size_t)k, h);
    }
    return h;
}

/* ---- comparing with llama.cpp ---- */

static int report(int *bad, const char *what, int i, const inp_file *f, const int32_t *want,
                  int64_t nw, const int32_t *got, int64_t ng)
{
    if ((*bad)++ >= 5)
        return 0;
    fprintf(stderr, "%s string %d '%.*s':\n  want", what, i,
            (int)(f->len[i] > 200 ? 200 : f->len[i]), f->s[i]);
    for (int64_t j = 0; j < nw && j < 60; j++)
        fprintf(stderr, " %d", want[j]);
    fprintf(stderr, "\n  got ");
    for (int64_t j = 0; j < ng && j < 60; j++)
        fprintf(stderr, " %d", got[j]);
    fprintf(stderr, "\n");
    return 0;
}

/* decode of ids (skip_special) against want (a .dec line, or the input itself). */
static void check_decode(const lk_tokenizer *t, const int32_t *ids, int64_t n, int skip,
                         const char *want, size_t wn, const char *what, int i, int *bad)
{
    char *back;
    size_t bl;
    assert_ok(lk_tokenizer_decode(t, ids, n, skip, &back, &bl));
    if ((bl != wn || memcmp(back, want, wn) != 0) && (*bad)++ < 5)
        fprintf(stderr, "%s string %d: decoded '%.*s', llama.cpp '%.*s'\n", what, i, (int)bl, back,
                (int)wn, want);
    free(back);
}

/* Every string of tok/INP.inp through t against gguf-V-INP.out (ids), the add_special frame of
 * gguf-meta.json, and the decodes (.dec / .decskip, or the input where they are absent). */
static void check_inp(const lk_tokenizer *t, const char *v, const char *inp)
{
    char p[512];
    inp_file f;
    out_file o;
    snprintf(p, sizeof p, "tok/%s.inp", inp);
    inp_load(data_path(p), &f);
    snprintf(p, sizeof p, "tok/gguf-%s-%s.out", v, inp);
    out_load(data_path(p), &o);
    assert_int_equal(o.n, f.n);
    inp_file dec = {0}, skip = {0};
    snprintf(p, sizeof p, "tok/gguf-%s-%s.dec", v, inp);
    if (file_exists(data_path(p)))
        inp_load(data_path(p), &dec);
    snprintf(p, sizeof p, "tok/gguf-%s-%s.decskip", v, inp);
    if (file_exists(data_path(p)))
        inp_load(data_path(p), &skip);
    const cJSON *fr = cJSON_GetObjectItem(cJSON_GetObjectItem(meta(), "add_special"), v);
    int32_t pre[4], post[4];
    int npre, npost;
    ints_of(cJSON_GetObjectItem(fr, "prefix"), pre, &npre);
    ints_of(cJSON_GetObjectItem(fr, "suffix"), post, &npost);
    int bad = 0;
    snprintf(p, sizeof p, "gguf-%s-%s", v, inp);
    for (int i = 0; i < f.n; i++) {
        const int32_t *want = o.ids + o.start[i];
        int64_t nw = o.start[i + 1] - o.start[i], n;
        int32_t *ids;
        assert_ok(lk_tokenizer_encode(t, f.s[i], f.len[i], 0, &ids, &n));
        if (n != nw || memcmp(ids, want, (size_t)n * sizeof *ids) != 0)
            report(&bad, p, i, &f, want, nw, ids, n);
        int32_t *ids_s;
        int64_t ns;
        assert_ok(lk_tokenizer_encode(t, f.s[i], f.len[i], 1, &ids_s, &ns));
        if (ns != n + npre + npost || memcmp(ids_s, pre, (size_t)npre * 4) != 0 ||
            memcmp(ids_s + npre, ids, (size_t)n * 4) != 0 ||
            memcmp(ids_s + npre + n, post, (size_t)npost * 4) != 0)
            report(&bad, "add_special", i, &f, want, nw, ids_s, ns);
        check_decode(t, want, nw, 0, dec.n ? dec.s[i] : f.s[i], dec.n ? dec.len[i] : f.len[i], p, i,
                     &bad);
        check_decode(t, want, nw, 1, skip.n ? skip.s[i] : f.s[i], skip.n ? skip.len[i] : f.len[i],
                     p, i, &bad);
        free(ids);
        free(ids_s);
    }
    fprintf(stderr, "%s: %d strings, %d mismatches\n", p, f.n, bad);
    assert_int_equal(bad, 0);
    assert_int_equal(lk_tokenizer_adds_bos(t), npre > 0);
    assert_int_equal(lk_tokenizer_adds_eos(t), npost > 0);
    free(f.buf);
    free(dec.buf);
    free(skip.buf);
    free(o.buf);
    free(o.ids);
}

/* llama.cpp's own test vectors for a vocabulary (ggml-vocab-V.gguf.inp / .out of ../shared). */
static void check_ggml_vectors(const lk_tokenizer *t, const char *v)
{
    char p[512];
    inp_file f;
    out_file o;
    snprintf(p, sizeof p, "models/ggml-vocab/ggml-vocab-%s.gguf.inp", v);
    inp_load(shared_path(p), &f);
    snprintf(p, sizeof p, "models/ggml-vocab/ggml-vocab-%s.gguf.out", v);
    out_load(shared_path(p), &o);
    assert_int_equal(o.n, f.n);
    int bad = 0;
    for (int i = 0; i < f.n; i++) {
        int32_t *ids;
        int64_t n, nw = o.start[i + 1] - o.start[i];
        assert_ok(lk_tokenizer_encode(t, f.s[i], f.len[i], 0, &ids, &n));
        if (n != nw || memcmp(ids, o.ids + o.start[i], (size_t)n * 4) != 0)
            report(&bad, p, i, &f, o.ids + o.start[i], nw, ids, n);
        free(ids);
    }
    fprintf(stderr, "%s: %d strings, %d mismatches\n", p, f.n, bad);
    assert_int_equal(bad, 0);
    free(f.buf);
    free(o.buf);
    free(o.ids);
}

/* check_inp on the three text files. */
static void check_all(const lk_tokenizer *t, const char *v)
{
    static const char *const inps[] = {"corpus", "specials", "gguf-extra"};
    for (int k = 0; k < 3; k++)
        check_inp(t, v, inps[k]);
}

static lk_tokenizer *load_shared(const char *rel)
{
    require_file(shared_path(rel));
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(shared_path(rel), &t));
    return t;
}

static void test_smollm2(void **st)
{
    (void)st;
    lk_tokenizer *t = load_shared(SMOLLM);
    assert_int_equal(lk_tokenizer_vocab_size(t), 49152);
    assert_int_equal(lk_tokenizer_bos(t), 1);
    assert_int_equal(lk_tokenizer_eos(t), 2);
    assert_string_equal(lk_tokenizer_eos_str(t), "<|im_end|>");
    assert_int_equal(lk_tokenizer_token_to_id(t, "<|im_start|>"), 1);
    assert_int_equal(lk_tokenizer_token_to_id(t, "\xc4\xa0the"),
                     lk_tokenizer_token_to_id(t, "Ġthe"));
    assert_true(lk_tokenizer_is_special(t, 2));
    assert_false(lk_tokenizer_is_special(t, 100));
    check_all(t, "smollm2");
    lk_tokenizer_free(t);
}

static void test_llama_spm(void **st)
{
    (void)st;
    lk_tokenizer *t = load_shared(SPM);
    assert_int_equal(lk_tokenizer_vocab_size(t), 32000);
    assert_string_equal(lk_tokenizer_bos_str(t), "<s>");
    check_ggml_vectors(t, "llama-spm");
    check_all(t, "llama-spm");
    lk_tokenizer_free(t);
}

/* ---- vocabularies written by lorakit's writer (llama.cpp's converter made the references) ---- */

/* FNV-1a of a metadata value as GGUF stores it (type, then payload), as gen_gguf_tok.py hashes. */
static uint64_t kv_digest(const gguf_kv *kv)
{
    static const size_t size[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    uint32_t ty = kv->type;
    uint64_t h = fnv64(&ty, 4, FNV0);
    if (kv->type == GGUF_STRING) {
        uint64_t n = kv->str.len;
        h = fnv64(&n, 8, h);
        return fnv64(kv->str.ptr, n, h);
    }
    if (kv->type != GGUF_ARRAY) {
        uint64_t raw = kv->v.u;
        if (kv->type == GGUF_F32) {
            float f = (float)kv->v.f;
            memcpy(&raw, &f, 4);
        }
        return fnv64(&raw, size[kv->type], h);
    }
    uint32_t et = kv->arr_type;
    uint64_t n = kv->arr_n;
    h = fnv64(&et, 4, h);
    h = fnv64(&n, 8, h);
    if (et != GGUF_STRING)
        return fnv64(kv->arr_data, n * size[et], h);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = kv->arr_str[i].len;
        h = fnv64(&l, 8, h);
        h = fnv64(kv->arr_str[i].ptr, l, h);
    }
    return h;
}

/* A vocab-only GGUF of tokenizer folder tok (config.json from cfg_dir) by gguf_vocab_from_hf;
 * every tokenizer key must be llama.cpp's converter's (digests in gguf-meta.json), and the
 * vocabulary the folder's tokenizer.json up to first_diff (-1: none). */
static lk_tokenizer *written_vocab(const char *v, const char *tok, const char *cfg_dir,
                                   int64_t first_diff)
{
    char tokdir[4096], path[4096];
    snprintf(tokdir, sizeof tokdir, "%s", shared_path(tok));
    require_file(tokdir);
    struct lk_model_config cfg;
    assert_ok(lk_config_load(shared_path(cfg_dir), &cfg));
    gguf_writer *w;
    assert_ok(gguf_writer_new(&w));
    assert_ok(gguf_set_str(w, "general.architecture", cfg.arch));
    assert_ok(gguf_vocab_from_hf(w, tokdir, &cfg));
    snprintf(path, sizeof path, "%s/%s.gguf", g_dir, v);
    assert_ok(gguf_writer_write(w, path, 1, NULL, NULL));
    gguf_writer_free(w);

    gguf_file f;
    assert_ok(gguf_open_meta(&f, path));
    const cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(meta(), "digests"), v), *it;
    int bad = 0;
    cJSON_ArrayForEach(it, d)
    {
        const gguf_kv *kv = gguf_find_kv(&f, it->string);
        char got[24] = "absent";
        if (kv)
            snprintf(got, sizeof got, "%016llx", (unsigned long long)kv_digest(kv));
        const char *want = cJSON_IsString(it) ? it->valuestring : "absent";
        if (strcmp(got, want) != 0 && ++bad)
            fprintf(stderr, "%s: %s: ours %s, llama.cpp's converter %s\n", v, it->string, got,
                    want);
    }
    gguf_close(&f);
    assert_int_equal(bad, 0);
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(path, &t));
    /* the same vocabulary as the folder's tokenizer.json */
    lk_tokenizer *hf;
    assert_ok(lk_tokenizer_load(tokdir, &hf));
    assert_int_equal(lk_tokenizer_first_difference(t, hf), first_diff);
    lk_tokenizer_free(hf);
    return t;
}

static void test_qwen2(void **st)
{
    (void)st;
    /* Qwen2.5's vocabulary has a normal token "</s>" (128247), which llama.cpp makes a control
     * token by its name (an end-of-generation text) */
    lk_tokenizer *t =
        written_vocab("qwen2", "models/qwen2.5-tokenizer", "models/qwen2.5-0.5b", 128247);
    assert_int_equal(lk_tokenizer_token_to_id(t, "</s>"), 128247);
    assert_true(lk_tokenizer_is_special(t, 128247));
    check_ggml_vectors(t, "qwen2");
    check_all(t, "qwen2");
    lk_tokenizer_free(t);
}

static void test_llama_bpe(void **st)
{
    (void)st;
    lk_tokenizer *t = written_vocab("llama-bpe", "models/llama-3.2-3b-instruct",
                                    "models/llama-3.2-3b-instruct", -1);
    check_ggml_vectors(t, "llama-bpe");
    check_all(t, "llama-bpe");
    lk_tokenizer_free(t);
}

/* ---- edited copies of a GGUF's metadata ---- */

/* E_APPEND_STRS: append the '\n'-separated strings of s to a string array; E_APPEND_NUM: append
 * u copies of the number s to an f32 or i32 array. */
enum {
    E_DROP,
    E_STR,
    E_U32,
    E_BOOL,
    E_TRUNC,
    E_AS_I32,
    E_AS_STRS,
    E_NAN,
    E_EMPTY,
    E_APPEND_STRS,
    E_APPEND_NUM
};

struct edit {
    const char *key;
    int op;
    const char *s;
    uint32_t u;
};

static const struct edit *find_edit(const struct edit *e, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].key, key) == 0)
            return &e[i];
    return NULL;
}

/* The first n strings of kv's array, then the '\n'-separated strings of more (may be NULL). */
static void put_strs(gguf_writer *w, const char *key, const gguf_kv *kv, uint64_t n,
                     const char *more)
{
    char *extra = more ? strdup(more) : NULL, *save = NULL;
    char **s = calloc(n + 64, sizeof *s);
    uint64_t k = 0;
    for (; k < n; k++) {
        s[k] = malloc(kv->arr_str[k].len + 1);
        memcpy(s[k], kv->arr_str[k].ptr, kv->arr_str[k].len);
        s[k][kv->arr_str[k].len] = 0;
    }
    for (char *x = extra ? strtok_r(extra, "\n", &save) : NULL; x; x = strtok_r(NULL, "\n", &save))
        s[k++] = strdup(x);
    assert_ok(gguf_set_arr_str(w, key, (const char *const *)s, k));
    for (uint64_t i = 0; i < k; i++)
        free(s[i]);
    free(s);
    free(extra);
}

static void put_edited(gguf_writer *w, const gguf_kv *kv, const struct edit *e)
{
    uint64_t n = kv ? kv->arr_n : 0;
    switch (e->op) {
    case E_STR: assert_ok(gguf_set_str(w, e->key, e->s)); break;
    case E_U32: assert_ok(gguf_set_u32(w, e->key, e->u)); break;
    case E_BOOL: assert_ok(gguf_set_bool(w, e->key, (int)e->u)); break;
    case E_TRUNC:
        if (kv->arr_type == GGUF_STRING)
            put_strs(w, e->key, kv, n - 1, NULL);
        else
            assert_ok(gguf_set_arr(w, e->key, kv->arr_type, kv->arr_data, n - 1));
        break;
    case E_AS_I32: {
        int32_t *z = calloc(n + 1, 4);
        assert_ok(gguf_set_arr(w, e->key, GGUF_I32, z, n));
        free(z);
        break;
    }
    case E_AS_STRS: {
        const char **s = calloc(n + 1, sizeof *s);
        for (uint64_t i = 0; i < n; i++)
            s[i] = "x";
        assert_ok(gguf_set_arr_str(w, e->key, s, n));
        free(s);
        break;
    }
    case E_NAN: {
        float *f = malloc(n * 4);
        memcpy(f, kv->arr_data, n * 4);
        f[5] = 0.0f / 0.0f;
        assert_ok(gguf_set_arr(w, e->key, GGUF_F32, f, n));
        free(f);
        break;
    }
    case E_EMPTY: assert_ok(gguf_set_arr_str(w, e->key, NULL, 0)); break;
    case E_APPEND_STRS: put_strs(w, e->key, kv, n, e->s); break;
    case E_APPEND_NUM: {
        uint8_t *d = malloc((n + e->u) * 4);
        memcpy(d, kv->arr_data, n * 4);
        for (uint64_t i = n; i < n + e->u; i++) {
            float f = (float)atof(e->s);
            int32_t v = atoi(e->s);
            memcpy(d + 4 * i, kv->arr_type == GGUF_F32 ? (void *)&f : (void *)&v, 4);
        }
        assert_ok(gguf_set_arr(w, e->key, kv->arr_type, d, n + e->u));
        free(d);
        break;
    }
    default: break;
    }
}

static void put_copy(gguf_writer *w, const gguf_kv *kv)
{
    switch (kv->type) {
    case GGUF_STRING: {
        char *s = malloc(kv->str.len + 1);
        memcpy(s, kv->str.ptr, kv->str.len);
        s[kv->str.len] = 0;
        assert_ok(gguf_set_str(w, kv->key, s));
        free(s);
        break;
    }
    case GGUF_U32: assert_ok(gguf_set_u32(w, kv->key, (uint32_t)kv->v.u)); break;
    case GGUF_I32: assert_ok(gguf_set_i32(w, kv->key, (int32_t)kv->v.i)); break;
    case GGUF_F32: assert_ok(gguf_set_f32(w, kv->key, (float)kv->v.f)); break;
    case GGUF_BOOL: assert_ok(gguf_set_bool(w, kv->key, (int)kv->v.u)); break;
    case GGUF_ARRAY:
        if (kv->arr_type == GGUF_STRING)
            put_strs(w, kv->key, kv, kv->arr_n, NULL);
        else
            assert_ok(gguf_set_arr(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n));
        break;
    default: break; /* other scalar types: not in these files */
    }
}

/* tmp_path(name): src's metadata (no tensors) with the edits applied (keys not in src added). */
static const char *edited(const char *src, const char *name, const struct edit *e, int n)
{
    gguf_file f;
    assert_ok(gguf_open_meta(&f, src));
    gguf_writer *w;
    assert_ok(gguf_writer_new(&w));
    for (int64_t i = 0; i < f.n_kv; i++) {
        const struct edit *x = find_edit(e, n, f.kv[i].key);
        if (!x)
            put_copy(w, &f.kv[i]);
        else if (x->op != E_DROP)
            put_edited(w, &f.kv[i], x);
    }
    for (int i = 0; i < n; i++)
        if (!gguf_find_kv(&f, e[i].key) && e[i].op != E_DROP)
            put_edited(w, NULL, &e[i]);
    const char *path = tmp_path(name);
    assert_ok(gguf_writer_write(w, path, 1, NULL, NULL));
    gguf_writer_free(w);
    gguf_close(&f);
    return path;
}

/* The tokenizer of an edited copy (tmp_path(name)) of ../shared/rel. */
static lk_tokenizer *load_edited(const char *rel, const char *name, const struct edit *e, int n)
{
    char src[4096];
    require_file(shared_path(rel));
    snprintf(src, sizeof src, "%s", shared_path(rel));
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(edited(src, name, e, n), &t));
    return t;
}

/* ---- every pre-tokenizer name ---- */

/* gguf-pre-sweep.txt: each name llama.cpp knows, on SmolLM2's vocabulary (pre swapped in,
 * add_bos_token dropped): per-string digests of the ids (corpus.inp + gguf-extra.inp), the BOS
 * add_special gives, a digest of the decodes. Names lorakit does not implement must say so. */
static void test_pre_sweep(void **st)
{
    (void)st;
    require_file(shared_path(SMOLLM));
    char src[4096];
    snprintf(src, sizeof src, "%s", shared_path(SMOLLM));
    inp_file a, b;
    inp_load(data_path("tok/corpus.inp"), &a);
    inp_load(data_path("tok/gguf-extra.inp"), &b);
    for (int i = 0; i < b.n; i++) { /* one list: corpus then extra */
        a.s[a.n] = b.s[i];
        a.len[a.n++] = b.len[i];
    }
    char *txt;
    size_t len;
    assert_ok(read_text_file(data_path("tok/gguf-pre-sweep.txt"), 1 << 24, &txt, &len));
    char *groups[256] = {0};
    int n_names = 0, n_checked = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        int g;
        if (sscanf(line, "group %d", &g) == 1) {
            groups[g] = strchr(line + 6, ' ') + 1;
            continue;
        }
        char name[64], rest[64] = "";
        int bos;
        unsigned long long dec;
        if (sscanf(line, "name %63s %63s", name, rest) != 2)
            continue;
        n_names++;
        const struct tok_gguf_pre *pre = tok_gguf_pre_find(name);
        assert_non_null(pre); /* every name llama.cpp knows is in the table */
        struct edit e[] = {{"tokenizer.ggml.pre", E_STR, name, 0},
                           {"tokenizer.ggml.add_bos_token", E_DROP, NULL, 0}};
        const char *path = edited(src, "sweep.gguf", e, 2);
        lk_tokenizer *t;
        if (!pre->regex) {
            assert_status(lk_tokenizer_load(path, &t), LK_ERR_UNSUPPORTED, name);
            continue;
        }
        assert_ok(lk_tokenizer_load(path, &t));
        if (strcmp(rest, "refused") == 0) { /* llama.cpp itself cannot load it */
            lk_tokenizer_free(t);
            continue;
        }
        assert_int_equal(sscanf(line, "name %*s %d %d %llx", &g, &bos, &dec), 3);
        const char *dg = groups[g];
        uint64_t dh = FNV0;
        int bad = 0;
        for (int i = 0; i < a.n; i++) {
            int32_t *ids;
            int64_t n;
            assert_ok(lk_tokenizer_encode(t, a.s[i], a.len[i], 0, &ids, &n));
            char want[17], got[17];
            snprintf(want, sizeof want, "%.16s", dg + 17 * i);
            snprintf(got, sizeof got, "%016llx", (unsigned long long)ids_digest(ids, n));
            if (strcmp(want, got) != 0 && bad++ < 3)
                fprintf(stderr, "pre '%s': string %d '%.*s' differs from llama.cpp\n", name, i,
                        (int)(a.len[i] > 80 ? 80 : a.len[i]), a.s[i]);
            char *back;
            size_t bl;
            assert_ok(lk_tokenizer_decode(t, ids, n, 0, &back, &bl));
            dh = fnv64(back, bl, dh);
            dh = fnv64(SEP, strlen(SEP), dh);
            free(back);
            free(ids);
        }
        if (dh != dec && ++bad)
            fprintf(stderr, "pre '%s': decoded texts differ from llama.cpp's\n", name);
        if ((lk_tokenizer_adds_bos(t) ? lk_tokenizer_bos(t) : -1) != bos && ++bad)
            fprintf(stderr, "pre '%s': BOS %d, llama.cpp %d\n", name,
                    lk_tokenizer_adds_bos(t) ? lk_tokenizer_bos(t) : -1, bos);
        assert_int_equal(bad, 0);
        n_checked++;
        lk_tokenizer_free(t);
    }
    fprintf(stderr, "pre-tokenizer names: %d, compared with llama.cpp: %d\n", n_names, n_checked);
    assert_true(n_names > 80);
    free(txt); /* (cut up by strtok) */
    /* and the table has no name llama.cpp lacks */
    assert_ok(read_text_file(data_path("tok/gguf-pre-sweep.txt"), 1 << 24, &txt, &len));
    for (int i = 0; tok_gguf_pre_name(i); i++) {
        char key[80];
        snprintf(key, sizeof key, "name %s ", tok_gguf_pre_name(i));
        if (!strstr(txt, key))
            fail_msg("pre-tokenizer '%s' is not one llama.cpp knows", tok_gguf_pre_name(i));
    }
    free(txt);
    free(a.buf);
    free(b.buf);
}

/* ---- chat template ---- */

/* SmolLM2's template from the GGUF: recognised as ChatML with SmolLM's default system prompt;
 * rendering and ids equal transformers' apply_chat_template on the same GGUF. */
static void test_smollm2_chat(void **st)
{
    (void)st;
    lk_tokenizer *t = load_shared(SMOLLM);
    assert_non_null(lk_tokenizer_chat_template(t));
    lk_chat_format fmt;
    assert_ok(lk_chat_detect(t, &fmt));
    assert_int_equal(fmt, LK_CHAT_CHATML);
    const cJSON *c;
    int k = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(meta(), "chat"))
    {
        struct lk_chat_message m[8];
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(c, "messages"))
        {
            m[n].role = cJSON_GetObjectItem(it, "role")->valuestring;
            m[n++].content = cJSON_GetObjectItem(it, "content")->valuestring;
        }
        struct lk_chat_params p = lk_chat_params_default();
        p.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        char *text;
        size_t len;
        assert_ok(lk_chat_render(t, &p, m, n, &text, &len));
        assert_string_equal(text, cJSON_GetObjectItem(c, "text")->valuestring);
        if (k++ == 0)
            assert_non_null(strstr(text, "You are a helpful AI assistant named SmolLM, trained "
                                         "by Hugging Face"));
        int32_t want[4096], *ids;
        int nw;
        int64_t ni;
        ints_of(cJSON_GetObjectItem(c, "ids"), want, &nw);
        assert_ok(lk_tokenizer_encode(t, text, len, 0, &ids, &ni));
        assert_int_equal(ni, nw);
        assert_memory_equal(ids, want, (size_t)nw * 4);
        free(ids);
        free(text);
    }
    assert_int_equal(k, 5);
    lk_tokenizer_free(t);
}

/* transformers 4.46.3's tokenizer from the same GGUF (gguf_file=) gives llama.cpp's ids except
 * where SmolLM's digit split matters: it builds the plain GPT-2 pre-tokenizer. Those strings
 * (kept with transformers' ids) must come out as transformers has them from the same vocabulary
 * under tokenizer.ggml.pre "gpt-2" (the generator checked the rest against llama.cpp). */
static void test_smollm2_transformers(void **st)
{
    (void)st;
    struct edit e = {"tokenizer.ggml.pre", E_STR, "gpt-2", 0};
    lk_tokenizer *gpt2 = load_edited(SMOLLM, "gpt2-pre.gguf", &e, 1), *smol = load_shared(SMOLLM);
    const cJSON *by_file, *it;
    int checked = 0;
    cJSON_ArrayForEach(by_file, cJSON_GetObjectItem(meta(), "transformers_differs"))
    {
        char p[256];
        inp_file f;
        snprintf(p, sizeof p, "tok/%s.inp", by_file->string);
        inp_load(data_path(p), &f);
        cJSON_ArrayForEach(it, by_file)
        {
            int i = atoi(it->string), nw;
            int32_t want[4096], *a, *b;
            int64_t na, nb;
            ints_of(it, want, &nw);
            assert_ok(lk_tokenizer_encode(gpt2, f.s[i], f.len[i], 0, &a, &na));
            assert_ok(lk_tokenizer_encode(smol, f.s[i], f.len[i], 0, &b, &nb));
            assert_int_equal(na, nw);
            assert_memory_equal(a, want, (size_t)nw * 4);
            assert_true(nb != na || memcmp(a, b, (size_t)na * 4) != 0);
            free(a);
            free(b);
            checked++;
        }
        free(f.buf);
    }
    fprintf(stderr, "%d strings where transformers drops the digit split\n", checked);
    assert_true(checked > 0);
    lk_tokenizer_free(gpt2);
    lk_tokenizer_free(smol);
}

/* ---- llama.cpp's per-model attributes ---- */

/* Under a Phi-3 general.name llama.cpp's special tokens strip the whitespace after them (not
 * <unk>, <s>, <|endoftext|>): Llama-2's vocabulary with Phi-3's added control tokens, so named,
 * against llama.cpp on the texts with special tokens (as gen_gguf_tok.py's phi3() builds it). */
static void test_phi3_rstrip(void **st)
{
    (void)st;
    struct edit e[] = {{"general.name", E_STR, "Phi-3-mini-4k-instruct", 0},
                       {"tokenizer.ggml.tokens", E_APPEND_STRS,
                        "<|endoftext|>\n<|assistant|>\n<|user|>\n<|end|>", 0},
                       {"tokenizer.ggml.scores", E_APPEND_NUM, "0", 4},
                       {"tokenizer.ggml.token_type", E_APPEND_NUM, "3", 4}};
    lk_tokenizer *t = load_edited(SPM, "phi3.gguf", e, 4);
    assert_int_equal(lk_tokenizer_vocab_size(t), 32004);
    check_inp(t, "phi3", "specials");
    check_inp(t, "phi3", "gguf-extra");
    int32_t *ids;
    int64_t n;
    assert_ok(lk_tokenizer_encode(t, "<|end|> \n x", 11, 0, &ids, &n));
    assert_int_equal(n, 2); /* <|end|>, "▁x": the whitespace after it went */
    free(ids);
    assert_ok(lk_tokenizer_encode(t, "<|endoftext|>\nx", 15, 0, &ids, &n));
    assert_true(n > 2); /* not for <|endoftext|> */
    free(ids);
    lk_tokenizer_free(t);
}

/* ---- offsets, fast paths ---- */

static void test_offsets_and_paths(void **st)
{
    (void)st;
    static const char *const files[] = {SMOLLM, SPM};
    inp_file f;
    inp_load(data_path("tok/gguf-extra.inp"), &f);
    for (int k = 0; k < 2; k++) {
        lk_tokenizer *t = load_shared(files[k]);
        for (int i = 0; i < f.n; i++) {
            tok_out a = {0}, b = {0};
            assert_ok(tok_encode_ex(t, f.s[i], f.len[i], 1, 0, &a));
            assert_ok(tok_encode_ex(t, f.s[i], f.len[i], 1, 1, &b));
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.ids, b.ids, (size_t)a.n * 4);
            assert_memory_equal(a.start, b.start, (size_t)a.n * 4);
            assert_memory_equal(a.end, b.end, (size_t)a.n * 4);
            for (int64_t j = 0; j < a.n; j++) { /* ranges inside the text, in order */
                assert_true(a.start[j] <= a.end[j] && a.end[j] <= f.len[i]);
                assert_true(j == 0 || a.start[j] >= a.start[j - 1]);
                int32_t id = a.ids[j];
                if (lk_tokenizer_is_special(t, id) && a.end[j] > a.start[j]) {
                    char *d;
                    size_t dn;
                    assert_ok(lk_tokenizer_decode(t, &id, 1, 0, &d, &dn));
                    assert_int_equal(dn, a.end[j] - a.start[j]);
                    assert_memory_equal(d, f.s[i] + a.start[j], dn);
                    free(d);
                }
            }
            tok_out_free(&a);
            tok_out_free(&b);
        }
        lk_tokenizer_free(t);
    }
    free(f.buf);
}

/* ---- hostile metadata ---- */

static void expect(const char *src, const char *name, struct edit e, lk_status st,
                   const char *needle)
{
    const char *path = edited(src, name, &e, 1);
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    lk_tokenizer *t = NULL;
    assert_status(lk_tokenizer_load(p, &t), st, needle);
    assert_null(t);
    if (!strstr(lk_last_error(), p))
        fail_msg("message '%s' does not name the file", lk_last_error());
}

static void test_hostile(void **st)
{
    (void)st;
    require_file(shared_path(SMOLLM));
    require_file(shared_path(SPM));
    char sm[4096], sp[4096];
    snprintf(sm, sizeof sm, "%s", shared_path(SMOLLM));
    snprintf(sp, sizeof sp, "%s", shared_path(SPM));
    const lk_status F = LK_ERR_FORMAT, U = LK_ERR_UNSUPPORTED;
    expect(sm, "h1", (struct edit){"tokenizer.ggml.model", E_DROP, NULL, 0}, F,
           "tokenizer.ggml.model");
    expect(sm, "h2", (struct edit){"tokenizer.ggml.model", E_STR, "bert", 0}, U, "'bert'");
    expect(sm, "h3", (struct edit){"tokenizer.ggml.model", E_STR, "nonsense", 0}, U, "nonsense");
    expect(sm, "h4", (struct edit){"tokenizer.ggml.model", E_U32, NULL, 3}, F, "got a u32");
    expect(sm, "h5", (struct edit){"tokenizer.ggml.pre", E_STR, "made-up", 0}, U, "made-up");
    expect(sm, "h6", (struct edit){"tokenizer.ggml.pre", E_STR, "kimi-k2", 0}, U, "kimi-k2");
    expect(sm, "h7", (struct edit){"tokenizer.ggml.pre", E_U32, NULL, 1}, F, "tokenizer.ggml.pre");
    expect(sm, "h8", (struct edit){"tokenizer.ggml.tokens", E_DROP, NULL, 0}, F,
           "tokenizer.ggml.tokens");
    expect(sm, "h9", (struct edit){"tokenizer.ggml.tokens", E_AS_I32, NULL, 0}, F,
           "tokenizer.ggml.tokens");
    expect(sm, "h10", (struct edit){"tokenizer.ggml.tokens", E_EMPTY, NULL, 0}, F,
           "tokenizer.ggml.tokens");
    expect(sm, "h11", (struct edit){"tokenizer.ggml.token_type", E_TRUNC, NULL, 0}, F,
           "tokenizer.ggml.token_type: got 49151 entries, expected 49152");
    expect(sm, "h12", (struct edit){"tokenizer.ggml.token_type", E_AS_STRS, NULL, 0}, F,
           "tokenizer.ggml.token_type");
    expect(sm, "h13", (struct edit){"tokenizer.ggml.merges", E_DROP, NULL, 0}, F,
           "tokenizer.ggml.merges");
    expect(sm, "h14", (struct edit){"tokenizer.ggml.merges", E_AS_I32, NULL, 0}, F,
           "tokenizer.ggml.merges");
    expect(sm, "h15", (struct edit){"tokenizer.ggml.add_bos_token", E_U32, NULL, 1}, F,
           "tokenizer.ggml.add_bos_token");
    expect(sm, "h16", (struct edit){"tokenizer.ggml.bos_token_id", E_STR, "1", 0}, F,
           "tokenizer.ggml.bos_token_id");
    expect(sm, "h17", (struct edit){"tokenizer.chat_template", E_U32, NULL, 1}, F,
           "tokenizer.chat_template");
    expect(sp, "h18", (struct edit){"tokenizer.ggml.scores", E_TRUNC, NULL, 0}, F,
           "tokenizer.ggml.scores");
    expect(sp, "h19", (struct edit){"tokenizer.ggml.scores", E_AS_STRS, NULL, 0}, F,
           "tokenizer.ggml.scores");
    expect(sp, "h20", (struct edit){"tokenizer.ggml.scores", E_NAN, NULL, 0}, F, "NaN");
    expect(sp, "h21", (struct edit){"tokenizer.ggml.tokens", E_TRUNC, NULL, 0}, F,
           "got 32000 entries, expected 31999");

    /* tolerated as llama.cpp tolerates them: a special id outside the vocabulary (ignored), no
     * token types (all normal), merges naming no tokens (skipped), no pre (default) */
    lk_tokenizer *t;
    struct edit ok1 = {"tokenizer.ggml.eos_token_id", E_U32, NULL, 1u << 30};
    assert_ok(lk_tokenizer_load(edited(sm, "ok1", &ok1, 1), &t));
    assert_int_equal(lk_tokenizer_eos(t), 11); /* llama.cpp's default for gpt2 vocabularies */
    lk_tokenizer_free(t);
    struct edit ok2[] = {{"tokenizer.ggml.token_type", E_DROP, NULL, 0},
                         {"tokenizer.ggml.merges", E_AS_STRS, NULL, 0},
                         {"tokenizer.ggml.pre", E_DROP, NULL, 0}};
    assert_ok(lk_tokenizer_load(edited(sm, "ok2", ok2, 3), &t));
    int32_t *ids;
    int64_t n;
    assert_ok(lk_tokenizer_encode(t, "<|im_start|>hi", 14, 0, &ids, &n));
    assert_int_equal(n, 14); /* no merges, no special tokens: one token per byte */
    free(ids);
    lk_tokenizer_free(t);

    /* not GGUF at all, a missing file, and a token count beyond the file */
    assert_int_equal(write_file(tmp_path("junk.gguf"), "not a gguf file at all", 22), 0);
    assert_status(lk_tokenizer_load(tmp_path("junk.gguf"), &t), F, "magic");
    assert_status(lk_tokenizer_load(tmp_path("missing.gguf"), &t), LK_ERR_IO, "missing.gguf");
    uint8_t big[128] = "GGUF\x03\0\0\0";
    size_t o = 8;
    uint64_t nt = 0, nkv = 1, klen = 21, alen = (uint64_t)1 << 40;
    uint32_t ta = GGUF_ARRAY, ts = GGUF_STRING;
    memcpy(big + o, &nt, 8), o += 8;
    memcpy(big + o, &nkv, 8), o += 8;
    memcpy(big + o, &klen, 8), o += 8;
    memcpy(big + o, "tokenizer.ggml.tokens", 21), o += 21;
    memcpy(big + o, &ta, 4), o += 4;
    memcpy(big + o, &ts, 4), o += 4;
    memcpy(big + o, &alen, 8), o += 8;
    assert_int_equal(write_file(tmp_path("big.gguf"), big, o + 16), 0);
    assert_status(lk_tokenizer_load(tmp_path("big.gguf"), &t), F, "tokenizer.ggml.tokens");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2),      cmocka_unit_test(test_llama_spm),
        cmocka_unit_test(test_qwen2),        cmocka_unit_test(test_llama_bpe),
        cmocka_unit_test(test_smollm2_chat), cmocka_unit_test(test_smollm2_transformers),
        cmocka_unit_test(test_phi3_rstrip),  cmocka_unit_test(test_offsets_and_paths),
        cmocka_unit_test(test_pre_sweep),    cmocka_unit_test(test_hostile),
    };
    int rc = cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
    cJSON_Delete(g_meta);
    return rc;
}
