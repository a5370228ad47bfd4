/* test_tokenizer.c — the tokenizer against independent references: llama.cpp's ggml-vocab test
 * vectors, Debian's python3-sentencepiece and Hugging Face tokenizers (fixtures in
 * tests/data/tok, made by tests/gen/gen_tok_*.py), plus round trips, special tokens, invalid
 * UTF-8 and corrupt files. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "text/tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"

/* Strings of a ggml-vocab style .inp file: each is followed by SEP. */
typedef struct {
    char *buf;
    const char **s;
    size_t *len;
    int n;
} inp_file;

static void inp_load(const char *path, inp_file *f)
{
    size_t n;
    assert_ok(read_text_file(path, 1 << 24, &f->buf, &n));
    f->s = calloc(4096, sizeof *f->s);
    f->len = calloc(4096, sizeof *f->len);
    f->n = 0;
    char *p = f->buf;
    char *q;
    while ((q = strstr(p, SEP)) != NULL && f->n < 4096) {
        f->s[f->n] = p;
        f->len[f->n++] = (size_t)(q - p);
        p = q + strlen(SEP);
    }
}

static void inp_free(inp_file *f)
{
    free(f->buf);
    free(f->s);
    free(f->len);
}

/* Compare the tokenizer in dir on every string of inp with the id lines of out. Decoding: with
 * Hugging Face's decodes in out's .dec twin, exactly; else, when round_trip is set, the decode
 * must give the input back (or, where normalisation changed it, re-encode to the same ids). */
static void check_vectors(const char *dir, const char *inp, const char *out, int add_special,
                          int round_trip)
{
    char d[4096], o[4096];
    snprintf(d, sizeof d, "%s", dir);
    snprintf(o, sizeof o, "%s", out);
    require_file(inp);
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(d, &t));
    inp_file f, dec = {0}, skip = {0};
    inp_load(inp, &f);
    /* NAME.dec / NAME.decskip beside NAME.out: Hugging Face's decode of the ids (without / with
     * skip_special_tokens), compared exactly */
    char decp[4096], skipp[4096];
    snprintf(decp, sizeof decp, "%.*s.dec", (int)(strlen(o) - 4), o);
    snprintf(skipp, sizeof skipp, "%.*s.decskip", (int)(strlen(o) - 4), o);
    if (file_exists(decp)) {
        inp_load(decp, &dec);
        assert_int_equal(dec.n, f.n);
    }
    if (file_exists(skipp)) {
        inp_load(skipp, &skip);
        assert_int_equal(skip.n, f.n);
    }
    char *want_txt;
    size_t wn;
    assert_ok(read_text_file(o, 1 << 24, &want_txt, &wn));
    char *line = want_txt;
    int bad = 0;
    for (int i = 0; i < f.n; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        int32_t *ids;
        int64_t n;
        assert_ok(lk_tokenizer_encode(t, f.s[i], f.len[i], add_special, &ids, &n));
        char *p = line;
        int64_t k = 0;
        int ok = 1;
        for (;;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p)
                break;
            ok &= k < n && ids[k] == v;
            k++;
            p = e;
        }
        ok &= k == n;
        if (!ok && bad++ < 5) {
            fprintf(stderr, "%s string %d '%.*s':\n  want %s\n  got ", o, i, (int)f.len[i], f.s[i],
                    line);
            for (int64_t j = 0; j < n; j++)
                fprintf(stderr, " %d", ids[j]);
            fprintf(stderr, "\n");
        }
        if (skip.n) {
            char *back;
            size_t bl;
            assert_ok(lk_tokenizer_decode(t, ids, n, 1, &back, &bl));
            if ((bl != skip.len[i] || memcmp(back, skip.s[i], bl) != 0) && bad++ < 5)
                fprintf(stderr, "%s string %d: decoded '%s', HF '%.*s'\n", skipp, i, back,
                        (int)skip.len[i], skip.s[i]);
            free(back);
        }
        if (dec.n) {
            char *back;
            size_t bl;
            assert_ok(lk_tokenizer_decode(t, ids, n, 0, &back, &bl));
            if ((bl != dec.len[i] || memcmp(back, dec.s[i], bl) != 0) && bad++ < 5)
                fprintf(stderr, "%s string %d: decoded '%s', HF '%.*s'\n", decp, i, back,
                        (int)dec.len[i], dec.s[i]);
            free(back);
        } else if (round_trip) {
            char *back;
            size_t bl;
            assert_ok(lk_tokenizer_decode(t, ids, n, 0, &back, &bl));
            /* exact, unless the text had a literal "▁" (SentencePiece decodes it as a space)
             * or normalisation changed it (NFC): then decoding must at least be stable */
            if ((bl != f.len[i] || memcmp(back, f.s[i], bl) != 0) &&
                !memmem(f.s[i], f.len[i], "\xe2\x96\x81", 3)) {
                int32_t *again;
                int64_t na;
                assert_ok(lk_tokenizer_encode(t, back, bl, add_special, &again, &na));
                if ((na != n || memcmp(again, ids, (size_t)n * sizeof *ids) != 0) && bad++ < 5)
                    fprintf(stderr, "%s string %d: round trip gave '%s'\n", o, i, back);
                free(again);
            }
            free(back);
        }
        free(ids);
        line = nl + 1;
    }
    fprintf(stderr, "%s: %d strings, %d mismatches\n", o, f.n, bad);
    assert_int_equal(*line, 0); /* as many id lines as strings */
    assert_int_equal(bad, 0);
    free(want_txt);
    inp_free(&f);
    if (dec.n)
        inp_free(&dec);
    if (skip.n)
        inp_free(&skip);
    lk_tokenizer_free(t);
}

static char g_a[4096], g_b[4096], g_c[4096];

static void vec3(const char *model, const char *inp, const char *out, int from_shared_out)
{
    snprintf(g_a, sizeof g_a, "%s", shared_path(model));
    if (from_shared_out) {
        snprintf(g_b, sizeof g_b, "%s", shared_path(inp));
        snprintf(g_c, sizeof g_c, "%s", shared_path(out));
    } else {
        snprintf(g_b, sizeof g_b, "%s", data_path(inp));
        snprintf(g_c, sizeof g_c, "%s", data_path(out));
    }
    require_file(g_a);
}

/* ---- llama.cpp test vectors ---- */

static void test_ggml_llama_spm(void **st)
{
    (void)st;
    vec3("models/llama2-tokenizer", "models/ggml-vocab/ggml-vocab-llama-spm.gguf.inp",
         "models/ggml-vocab/ggml-vocab-llama-spm.gguf.out", 1);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

static void test_ggml_llama3(void **st)
{
    (void)st;
    vec3("models/llama-3.2-3b-instruct", "models/ggml-vocab/ggml-vocab-llama-bpe.gguf.inp",
         "models/ggml-vocab/ggml-vocab-llama-bpe.gguf.out", 1);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

static void test_ggml_qwen2(void **st)
{
    (void)st;
    vec3("models/qwen2.5-tokenizer", "models/ggml-vocab/ggml-vocab-qwen2.gguf.inp",
         "models/ggml-vocab/ggml-vocab-qwen2.gguf.out", 1);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

/* ---- generated corpus: sentencepiece and HF tokenizers ---- */

static void test_sp_llama2(void **st)
{
    (void)st;
    vec3("models/llama2-tokenizer", "tok/corpus.inp", "tok/sp-llama2.out", 0);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

static void test_sp_mistral(void **st)
{
    (void)st;
    vec3("models/mistral-7b-instruct-v0.2", "tok/corpus.inp", "tok/sp-mistral.out", 0);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

static void test_hf_stories260k(void **st)
{
    (void)st;
    vec3("models/stories260K-hf", "tok/corpus.inp", "tok/hf-stories260K.out", 0);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

static void test_hf_qwen25(void **st)
{
    (void)st;
    vec3("models/qwen2.5-tokenizer", "tok/corpus.inp", "tok/hf-qwen2.5.out", 0);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

static void test_hf_llama3(void **st)
{
    (void)st;
    vec3("models/llama-3.2-3b-instruct", "tok/corpus.inp", "tok/hf-llama3.out", 0);
    check_vectors(g_a, g_b, g_c, 0, 1);
}

/* Special-token texts of every family mixed into the corpus, through all five tokenizers: ids,
 * decode and decode with skip_special exactly as HF tokenizers gives them. */
static void test_hf_specials(void **st)
{
    (void)st;
    static const char *const m[][2] = {{"models/qwen2.5-tokenizer", "qwen2.5"},
                                       {"models/llama-3.2-3b-instruct", "llama3"},
                                       {"models/llama2-tokenizer", "llama2"},
                                       {"models/mistral-7b-instruct-v0.2", "mistral"},
                                       {"models/stories260K-hf", "stories260K"}};
    for (int k = 0; k < 5; k++) {
        char out[256];
        snprintf(out, sizeof out, "tok/hf-specials-%s.out", m[k][1]);
        vec3(m[k][0], "tok/specials.inp", out, 0);
        check_vectors(g_a, g_b, g_c, 0, 0);
    }
}

/* lstrip / rstrip / single_word / normalized added tokens and ["a","b"] merges, with BOS. */
static void test_added_tokens(void **st)
{
    (void)st;
    snprintf(g_a, sizeof g_a, "%s", data_path("tok/added"));
    snprintf(g_b, sizeof g_b, "%s", data_path("tok/added.inp"));
    snprintf(g_c, sizeof g_c, "%s", data_path("tok/added.out"));
    check_vectors(g_a, g_b, g_c, 1, 0);
}

/* A copy of a shared tokenizer.json with some top-level keys replaced (JSON text, "null" ok),
 * written to a temp folder: pipeline variants the shipped tokenizers do not exercise. The same
 * variants are made by tests/gen/gen_tok_hf.py for the reference ids. */
static char *make_variant(const char *model, const char *const *keys, const char *const *vals,
                          int n)
{
    char src[4096];
    snprintf(src, sizeof src, "%s/tokenizer.json", shared_path(model));
    require_file(src);
    char *txt;
    size_t len;
    assert_ok(read_text_file(src, 1 << 26, &txt, &len));
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    for (int i = 0; i < n; i++) {
        cJSON *v = cJSON_Parse(vals[i]);
        assert_non_null(v);
        cJSON_ReplaceItemInObjectCaseSensitive(j, keys[i], v);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *dir = make_temp_dir(), p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(write_file(p, out, strlen(out)), 0);
    free(out);
    return dir;
}

static void run_variant(const char *model, const char *const *keys, const char *const *vals, int n,
                        const char *out, int round_trip)
{
    char *dir = make_variant(model, keys, vals, n);
    char inp[4096], o[4096];
    snprintf(inp, sizeof inp, "%s", data_path("tok/corpus.inp"));
    snprintf(o, sizeof o, "%s", data_path(out));
    check_vectors(dir, inp, o, 0, round_trip);
    rm_rf(dir);
    free(dir);
}

/* NFKC + Lowercase normalizers, Metaspace pre-tokenizer prepending only to the first piece. */
static void test_variant_metaspace_first(void **st)
{
    (void)st;
    const char *k[] = {"normalizer", "pre_tokenizer"};
    const char *v[] = {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, "
                       "{\"type\": \"Lowercase\"}]}",
                       "{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", "
                       "\"prepend_scheme\": \"first\", \"split\": false}"};
    /* lossy by design (lowercase; the Strip decoder eats a leading space): ids only */
    run_variant("models/stories260K-hf", k, v, 2, "tok/hf-metaspace-first.out", 0);
}

/* NFD, Metaspace splitting on every ▁ (MergedWithNext) and the Metaspace decoder. */
static void test_variant_metaspace_always(void **st)
{
    (void)st;
    const char *k[] = {"normalizer", "pre_tokenizer", "decoder"};
    const char *v[] = {"{\"type\": \"NFD\"}",
                       "{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", "
                       "\"prepend_scheme\": \"always\", \"split\": true}",
                       "{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", "
                       "\"prepend_scheme\": \"always\", \"split\": true}"};
    /* no ByteFallback decoder here: bytes come back as "<0x0A>", as in HF: ids only */
    run_variant("models/stories260K-hf", k, v, 3, "tok/hf-metaspace-always.out", 0);
}

/* GPT-2 style: ByteLevel pre-tokenizer with its own regex and add_prefix_space. */
static void test_variant_gpt2(void **st)
{
    (void)st;
    const char *k[] = {"normalizer", "pre_tokenizer"};
    const char *v[] = {"null", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                               "\"trim_offsets\": false, \"use_regex\": true}"};
    run_variant("models/qwen2.5-tokenizer", k, v, 2, "tok/hf-qwen-gpt2.out", 1);
}

/* SmolLM's pre-tokenizer: Digits(individual_digits) before the GPT-2 ByteLevel split. */
static void test_variant_smollm(void **st)
{
    (void)st;
    const char *k[] = {"normalizer", "pre_tokenizer"};
    const char *v[] = {"null", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                               "\"Digits\", \"individual_digits\": true}, {\"type\": "
                               "\"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": "
                               "true, \"use_regex\": true}]}"};
    run_variant("models/qwen2.5-tokenizer", k, v, 2, "tok/hf-qwen-smollm.out", 1);
}

/* Split behaviours other than Isolated (Regex \s+, or String " " for Contiguous). */
static void test_variant_split_behaviors(void **st)
{
    (void)st;
    static const char *const beh[] = {"Removed", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
    for (int b = 0; b < 4; b++) {
        char pre[512], out[256];
        snprintf(pre, sizeof pre,
                 "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                 "\"pattern\": %s, \"behavior\": \"%s\", \"invert\": false}, {\"type\": "
                 "\"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
                 "\"use_regex\": false}]}",
                 b == 3 ? "{\"String\": \" \"}" : "{\"Regex\": \"\\\\s+\"}", beh[b]);
        const char *k[] = {"normalizer", "pre_tokenizer"};
        const char *v[] = {"null", pre};
        char *dir = make_variant("models/qwen2.5-tokenizer", k, v, 2);
        char inp[4096], o[4096];
        snprintf(inp, sizeof inp, "%s", data_path("tok/specials.inp"));
        snprintf(out, sizeof out, "tok/hf-split-%s.out", beh[b]);
        snprintf(o, sizeof o, "%s", data_path(out));
        check_vectors(dir, inp, o, 0, 0);
        rm_rf(dir);
        free(dir);
    }
}

/* ---- special tokens ---- */

static lk_tokenizer *load_shared(const char *rel)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", shared_path(rel));
    require_file(d);
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(d, &t));
    return t;
}

static void expect_ids(const lk_tokenizer *t, const char *text, int add_special,
                       const int32_t *want, int64_t nwant)
{
    int32_t *ids;
    int64_t n;
    assert_ok(lk_tokenizer_encode(t, text, strlen(text), add_special, &ids, &n));
    if (n != nwant || memcmp(ids, want, (size_t)n * sizeof *ids) != 0) {
        fprintf(stderr, "'%s': got", text);
        for (int64_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
        fail_msg("ids differ for '%s'", text);
    }
    free(ids);
}

static void test_special_tokens(void **st)
{
    (void)st;
    lk_tokenizer *q = load_shared("models/qwen2.5-tokenizer");
    assert_int_equal(lk_tokenizer_vocab_size(q), 151665);
    assert_int_equal(lk_tokenizer_bos(q), -1);
    assert_int_equal(lk_tokenizer_eos(q), 151645); /* <|im_end|> */
    assert_false(lk_tokenizer_adds_bos(q));
    assert_int_equal(lk_tokenizer_token_to_id(q, "<|im_start|>"), 151644);
    assert_int_equal(lk_tokenizer_token_to_id(q, "Ġworld"), 1879);
    assert_true(lk_tokenizer_is_special(q, 151645));
    assert_false(lk_tokenizer_is_special(q, 1879));
    assert_non_null(lk_tokenizer_chat_template(q));
    /* "<|im_start|>user\nHi<|im_end|>" as transformers tokenizes it */
    const int32_t chat[] = {151644, 872, 198, 13048, 151645};
    expect_ids(q, "<|im_start|>user\nHi<|im_end|>", 1, chat, 5);
    char *txt;
    size_t tl;
    assert_ok(lk_tokenizer_decode(q, chat, 5, 1, &txt, &tl));
    assert_string_equal(txt, "user\nHi");
    free(txt);
    assert_status(lk_tokenizer_decode(q, (const int32_t[]){999999}, 1, 0, &txt, &tl), LK_ERR_ARG,
                  "outside the vocabulary");
    lk_tokenizer_free(q);

    lk_tokenizer *l3 = load_shared("models/llama-3.2-3b-instruct");
    assert_int_equal(lk_tokenizer_vocab_size(l3), 128256);
    assert_int_equal(lk_tokenizer_bos(l3), 128000);
    assert_int_equal(lk_tokenizer_eos(l3), 128009);
    assert_true(lk_tokenizer_adds_bos(l3)); /* from the TemplateProcessing post-processor */
    const int32_t hello3[] = {128000, 9906, 1917};
    expect_ids(l3, "Hello world", 1, hello3, 3);
    lk_tokenizer_free(l3);

    lk_tokenizer *l2 = load_shared("models/llama2-tokenizer");
    assert_int_equal(lk_tokenizer_bos(l2), 1);
    assert_int_equal(lk_tokenizer_eos(l2), 2);
    assert_true(lk_tokenizer_adds_bos(l2));
    assert_false(lk_tokenizer_adds_eos(l2));
    const int32_t hello2[] = {1, 15043, 3186};
    expect_ids(l2, "Hello world", 1, hello2, 3);
    /* normalized special token: "<s>" inside text is matched after the ▁ prepend */
    assert_ok(lk_tokenizer_decode(l2, hello2, 3, 0, &txt, &tl));
    assert_string_equal(txt, "<s> Hello world");
    free(txt);
    /* tokenizers decodes Llama-2's normalized "<s>" as "▁<s>" and does not skip it */
    assert_ok(lk_tokenizer_decode(l2, hello2, 3, 1, &txt, &tl));
    assert_string_equal(txt, "<s> Hello world");
    free(txt);
    lk_tokenizer_free(l2);
}

/* Mistral's [INST] prompt: "<s>" is not normalized, so the text after it gets its own ▁. */
static void test_mistral_inst(void **st)
{
    (void)st;
    lk_tokenizer *m = load_shared("models/mistral-7b-instruct-v0.2");
    /* ids from HF tokenizers 0.23.3: Tokenizer.encode(s, add_special_tokens=False) */
    const int32_t want[] = {1, 733, 16289, 28793, 22557, 733, 28748, 16289, 28793, 23809, 2};
    expect_ids(m, "<s>[INST] Hello [/INST]Hi</s>", 0, want, 11);
    /* Mistral's specials are not normalized: skip_special drops them */
    char *txt;
    size_t tl;
    assert_ok(lk_tokenizer_decode(m, want, 11, 1, &txt, &tl));
    assert_string_equal(txt, "[INST] Hello [/INST]Hi");
    free(txt);
    lk_tokenizer_free(m);
}

/* ---- robustness ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random bytes (mostly invalid UTF-8) never crash, and both families give the bytes back. */
static void test_invalid_utf8(void **st)
{
    (void)st;
    const char *dirs[] = {"models/qwen2.5-tokenizer", "models/llama2-tokenizer",
                          "models/stories260K-hf", "models/llama-3.2-3b-instruct"};
    uint64_t seed = 7;
    for (int d = 0; d < 4; d++) {
        lk_tokenizer *t = load_shared(dirs[d]);
        for (int r = 0; r < 200; r++) {
            char buf[64];
            size_t n = rng_next(&seed) % sizeof buf;
            for (size_t i = 0; i < n; i++) {
                uint64_t x = rng_next(&seed);
                buf[i] = (char)(x % 3 == 0 ? 'a' + x % 26 : x >> 8);
            }
            int32_t *ids;
            int64_t k;
            assert_ok(lk_tokenizer_encode(t, buf, n, 0, &ids, &k));
            char *back;
            size_t bl;
            assert_ok(lk_tokenizer_decode(t, ids, k, 0, &back, &bl));
            /* <s>, <unk> etc. can appear by chance in the text; then exactness is not asked */
            if (!memmem(buf, n, "<", 1)) {
                assert_int_equal(bl, n);
                assert_memory_equal(back, buf, n);
            }
            free(back);
            free(ids);
        }
        lk_tokenizer_free(t);
    }
}

/* Offsets: every token's byte range covers the text it came from. */
static void test_offsets(void **st)
{
    (void)st;
    lk_tokenizer *q = load_shared("models/qwen2.5-tokenizer");
    const char *s = "Hi <|im_end|> e\xcc\x81t\xc3\xa9 world";
    int32_t *ids;
    uint32_t *a, *b;
    int64_t n;
    assert_ok(lk_tokenizer_encode_offsets(q, s, strlen(s), 0, &ids, &a, &b, &n));
    assert_true(n >= 5);
    assert_int_equal(a[0], 0);
    assert_int_equal(b[0], 2);
    for (int64_t i = 0; i < n; i++) {
        assert_true(a[i] <= b[i] && b[i] <= strlen(s));
        if (ids[i] == 151645) {
            assert_int_equal(a[i], 3);
            assert_int_equal(b[i], 13);
        }
    }
    assert_int_equal(b[n - 1], strlen(s));
    free(ids);
    free(a);
    free(b);
    lk_tokenizer_free(q);
}

/* The fast paths (word cache; SentencePiece texts cut before "▁") give the same ids and offsets
 * as the plain path that models every pre-token whole. */
static void compare_paths(const lk_tokenizer *t, const char *txt, size_t n)
{
    tok_out a, b;
    assert_ok(tok_encode_ex(t, txt, n, 1, 0, &a));
    assert_ok(tok_encode_ex(t, txt, n, 1, 1, &b));
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.ids, b.ids, (size_t)a.n * sizeof *a.ids);
    assert_memory_equal(a.start, b.start, (size_t)a.n * sizeof *a.start);
    assert_memory_equal(a.end, b.end, (size_t)a.n * sizeof *a.end);
    tok_out_free(&a);
    tok_out_free(&b);
}

static void test_fast_paths(void **st)
{
    (void)st;
    char *story, *corpus;
    size_t ns, nc;
    require_file(shared_path("data/tinystories/tinystories_sample.txt"));
    assert_ok(read_text_file(shared_path("data/tinystories/tinystories_sample.txt"), 1 << 24,
                             &story, &ns));
    assert_ok(read_text_file(data_path("tok/corpus.inp"), 1 << 24, &corpus, &nc));
    const char *dirs[] = {"models/qwen2.5-tokenizer", "models/llama-3.2-3b-instruct",
                          "models/llama2-tokenizer", "models/mistral-7b-instruct-v0.2",
                          "models/stories260K-hf"};
    for (int d = 0; d < 5; d++) {
        lk_tokenizer *t = load_shared(dirs[d]);
        compare_paths(t, story, ns);
        compare_paths(t, corpus, nc);
        lk_tokenizer_free(t);
    }
    free(story);
    free(corpus);
}

static void write_tok(const char *dir, const char *json);

/* One tokenizer, four threads encoding at once: the same ids as one thread (no shared state). */
static void test_threads(void **st)
{
    (void)st;
    lk_tokenizer *t = load_shared("models/qwen2.5-tokenizer");
    char *txt;
    size_t n;
    assert_ok(read_text_file(data_path("tok/corpus.inp"), 1 << 24, &txt, &n));
    int32_t *ref;
    int64_t nref;
    assert_ok(lk_tokenizer_encode(t, txt, n, 1, &ref, &nref));
    int bad = 0;
#pragma omp parallel for num_threads(4) reduction(+ : bad)
    for (int r = 0; r < 16; r++) {
        int32_t *ids;
        int64_t k;
        size_t len = r % 2 ? n : 3000; /* with and without the word cache */
        if (lk_tokenizer_encode(t, txt, len, 1, &ids, &k) != LK_OK) {
            bad++;
            continue;
        }
        if (len == n)
            bad += k != nref || memcmp(ids, ref, (size_t)k * sizeof *ids) != 0;
        free(ids);
    }
    assert_int_equal(bad, 0);
    free(ref);
    free(txt);
    lk_tokenizer_free(t);
}

/* tokenizer_config.json problems are errors naming that file. */
static void test_bad_config(void **st)
{
    (void)st;
    char *dir = make_temp_dir(), p[4096];
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"<s>\": 1}, "
                   "\"merges\": []}}");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    assert_int_equal(write_file(p, "{\"bos_token\": ", 14), 0);
    lk_tokenizer *t = NULL;
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "tokenizer_config.json");
    const char *cfg = "{\"bos_token\": \"<|nope|>\"}";
    assert_int_equal(write_file(p, cfg, strlen(cfg)), 0);
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "<|nope|>");
    cfg = "{\"bos_token\": {\"content\": \"<s>\"}, \"add_bos_token\": true}";
    assert_int_equal(write_file(p, cfg, strlen(cfg)), 0);
    assert_ok(lk_tokenizer_load(dir, &t));
    assert_int_equal(lk_tokenizer_bos(t), 1);
    assert_true(lk_tokenizer_adds_bos(t));
    assert_int_equal(lk_tokenizer_eos(t), -1);
    const int32_t want[] = {1, 0};
    expect_ids(t, "a", 1, want, 2);
    lk_tokenizer_free(t);
    rm_rf(dir);
    free(dir);
}

static void write_tok(const char *dir, const char *json)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(write_file(p, json, strlen(json)), 0);
}

static void test_corrupt(void **st)
{
    (void)st;
    char *dir = make_temp_dir();
    lk_tokenizer *t = NULL;
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_IO, "tokenizer.json");
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "not valid JSON: unexpected end");
    write_tok(dir, "[1, 2]");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "top level");
    write_tok(dir, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_UNSUPPORTED, "Unigram");
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                   "\"merges\": [\"a b\"]}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "merged token");
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "model.vocab");
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "merges[0]");
    write_tok(dir, "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                   "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
                   "{\"a\": 0}, \"merges\": []}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "regex");
    write_tok(dir, "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": "
                   "\"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_UNSUPPORTED, "BertNormalizer");
    /* a minimal valid one loads and encodes; an unknown character is dropped (no unk) */
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                   "\"merges\": [[\"a\", \"b\"]]}}");
    assert_ok(lk_tokenizer_load(dir, &t));
    const int32_t want[] = {2, 0};
    expect_ids(t, "abxa", 1, want, 2);
    lk_tokenizer_free(t);
    /* BertProcessing puts cls before and sep after; a String Replace normalizer and a
     * Lowercase run first */
    write_tok(dir, "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": "
                   "\"Lowercase\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \"c\"}, "
                   "\"content\": \"ab\"}]}, \"post_processor\": {\"type\": \"BertProcessing\", "
                   "\"sep\": [\"b\", 1], \"cls\": [\"a\", 0]}, \"model\": {\"type\": \"BPE\", "
                   "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}");
    assert_ok(lk_tokenizer_load(dir, &t));
    const int32_t bert[] = {0, 2, 2, 1};
    expect_ids(t, "Cab", 1, bert, 4);
    lk_tokenizer_free(t);
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 900000000}, "
                   "\"merges\": []}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "far beyond");
    write_tok(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}");
    assert_status(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT, "empty");
    /* found by fuzz_tokenizer: ids 2..4 are holes (no vocabulary entry) in a SentencePiece-style
     * vocabulary with "\u2581"; their unset offsets were used as pointers (UBSan) */
    write_tok(dir, "{\"added_tokens\": [{\"id\": 5, \"content\": \"<x>\"}], \"model\": "
                   "{\"type\": \"BPE\", \"vocab\": {\"\u2581\": 0, \"a\": 1}, \"merges\": []}}");
    assert_ok(lk_tokenizer_load(dir, &t));
    const int32_t holes[] = {1, 5};
    expect_ids(t, "a<x>", 0, holes, 2);
    lk_tokenizer_free(t);
    /* truncating a real file at many lengths never crashes */
    char *src;
    size_t n;
    assert_ok(read_text_file(data_path("tok/added/tokenizer.json"), 1 << 24, &src, &n));
    for (size_t cut = 0; cut < n; cut += 97) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        assert_int_equal(write_file(p, src, cut), 0);
        t = NULL;
        assert_int_equal(lk_tokenizer_load(dir, &t), LK_ERR_FORMAT);
        assert_null(t);
    }
    /* random byte flips load or fail cleanly, and what loads encodes and decodes */
    uint64_t seed = 11;
    for (int r = 0; r < 300; r++) {
        char *mut = malloc(n);
        memcpy(mut, src, n);
        for (int k = 0; k < 1 + r % 4; k++) {
            uint64_t x = rng_next(&seed);
            mut[x % n] = "\"{}[],:0x\\ "[(x >> 32) % 11];
        }
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        assert_int_equal(write_file(p, mut, n), 0);
        free(mut);
        t = NULL;
        if (lk_tokenizer_load(dir, &t) == LK_OK) {
            int32_t *ids;
            int64_t k;
            char *back;
            size_t bl;
            assert_ok(lk_tokenizer_encode(t, "a [L] word <tool>", 17, 1, &ids, &k));
            lk_status s = lk_tokenizer_decode(t, ids, k, 0, &back, &bl);
            assert_true(s == LK_OK || s == LK_ERR_ARG);
            if (s == LK_OK)
                free(back);
            free(ids);
            lk_tokenizer_free(t);
        } else {
            assert_null(t);
        }
    }
    free(src);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ggml_llama_spm),
        cmocka_unit_test(test_ggml_llama3),
        cmocka_unit_test(test_ggml_qwen2),
        cmocka_unit_test(test_sp_llama2),
        cmocka_unit_test(test_sp_mistral),
        cmocka_unit_test(test_hf_stories260k),
        cmocka_unit_test(test_hf_qwen25),
        cmocka_unit_test(test_hf_llama3),
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_hf_specials),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_mistral_inst),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_fast_paths),
        cmocka_unit_test(test_variant_metaspace_first),
        cmocka_unit_test(test_variant_metaspace_always),
        cmocka_unit_test(test_variant_gpt2),
        cmocka_unit_test(test_variant_smollm),
        cmocka_unit_test(test_variant_split_behaviors),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
