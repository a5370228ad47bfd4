/* test_tcache.c — the teacher cache: XXH64 against its published vectors and zstd's frame
 * checksums; exact round trips of random entries (k = 1, k = V-1, examples without tokens or
 * trained positions, many chunks, random access, prefixes); verify() against datasets that match,
 * are truncated, or differ in one token, one loss mask or the example count; every corruption
 * class (truncation at every length, every bit of the header and index flipped, bytes of every
 * chunk flipped, and re-checksummed files with bad contents) failing cleanly with LK_ERR_FORMAT;
 * top-k selection against a brute-force reference. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include <cjson/cJSON.h>

#include "core/mapfile.h"
#include "core/rng.h"
#include "formats/tcache.h"

/* ---- a random corpus ------------------------------------------------------------------------ */

typedef struct {
    int64_t n_ex, k, V;
    int64_t *len, *E;
    int32_t **tok, **lab, **ids;
    float **logp, **tail;
} corpus;

/* A negative float: a realistic sorted log-prob, or any bit pattern with the sign set (denormals,
 * -0, -inf; never NaN). */
static float rand_logp(rng_state *r, int wild)
{
    if (!wild)
        return -10.0f * rng_uniform(r);
    uint32_t u = (uint32_t)rng_next(r) | 0x80000000u;
    if ((u & 0x7f800000u) == 0x7f800000u)
        u &= 0xff800000u; /* -inf, not NaN */
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void make_entries(corpus *c, rng_state *r, int64_t e)
{
    int64_t k = c->k, E = tcache_trained(c->lab[e], c->len[e]);
    c->E[e] = E;
    c->ids[e] = malloc((size_t)(E * k + 1) * 4);
    c->logp[e] = malloc((size_t)(E * k + 1) * 4);
    c->tail[e] = malloc((size_t)(E + 1) * 4);
    for (int64_t p = 0; p < E; p++) {
        int wild = rng_below(r, 4) == 0;
        for (int64_t j = 0; j < k; j++) {
            int32_t id;
            int dup;
            do { /* distinct ids */
                id = (int32_t)rng_below(r, (uint64_t)c->V);
                dup = 0;
                for (int64_t q = 0; q < j; q++)
                    dup |= c->ids[e][p * k + q] == id;
            } while (dup);
            c->ids[e][p * k + j] = id;
            c->logp[e][p * k + j] = rand_logp(r, wild);
        }
        if (!wild)
            qsort(c->logp[e] + p * k, (size_t)k, 4, cmp_desc);
        c->tail[e][p] = rng_below(r, 8) == 0 ? -INFINITY : rand_logp(r, wild);
    }
}

/* n_ex examples of up to maxlen tokens: example 0 has no token and 1 one token (unless tiny is
 * 0: a dataset has no such lines), 2 no trained position; the others mask about a third of their
 * labels. */
static void corpus_make(corpus *c, uint64_t seed, int64_t n_ex, int64_t k, int64_t V,
                        int64_t maxlen, int tiny)
{
    rng_state r;
    rng_seed(&r, seed, 77);
    c->n_ex = n_ex;
    c->k = k;
    c->V = V;
    c->len = calloc((size_t)n_ex, 8);
    c->E = calloc((size_t)n_ex, 8);
    c->tok = calloc((size_t)n_ex, sizeof *c->tok);
    c->lab = calloc((size_t)n_ex, sizeof *c->lab);
    c->ids = calloc((size_t)n_ex, sizeof *c->ids);
    c->logp = calloc((size_t)n_ex, sizeof *c->logp);
    c->tail = calloc((size_t)n_ex, sizeof *c->tail);
    for (int64_t e = 0; e < n_ex; e++) {
        int64_t n = 2 + (int64_t)rng_below(&r, (uint64_t)maxlen - 1);
        if (tiny && e < 2)
            n = e;
        c->len[e] = n;
        c->tok[e] = malloc((size_t)(n + 1) * 4);
        c->lab[e] = malloc((size_t)(n + 1) * 4);
        for (int64_t t = 0; t < n; t++) {
            c->tok[e][t] = (int32_t)rng_below(&r, (uint64_t)V);
            c->lab[e][t] = (e == 2 || rng_below(&r, 3) == 0) ? LK_LABEL_IGNORE : c->tok[e][t];
        }
        make_entries(c, &r, e);
    }
}

static void corpus_free(corpus *c)
{
    for (int64_t e = 0; e < c->n_ex; e++) {
        free(c->tok[e]);
        free(c->lab[e]);
        free(c->ids[e]);
        free(c->logp[e]);
        free(c->tail[e]);
    }
    free(c->len);
    free(c->E);
    free(c->tok);
    free(c->lab);
    free(c->ids);
    free(c->logp);
    free(c->tail);
}

static void corpus_write(const corpus *c, const char *path, int64_t chunk_positions)
{
    struct tcache_meta m = {.k = c->k,
                            .temp = 2.0f,
                            .vocab = c->V,
                            .seq_len = 1000,
                            .teacher = "test-teacher config:0123",
                            .data = "test.jsonl",
                            .chunk_positions = chunk_positions};
    tcache_writer *w;
    assert_ok(tcache_writer_open(path, &m, 1, &w));
    for (int64_t e = 0; e < c->n_ex; e++)
        assert_ok(tcache_writer_add(w, c->tok[e], c->lab[e], c->len[e], c->ids[e], c->logp[e],
                                    c->tail[e]));
    int64_t bytes = 0;
    assert_ok(tcache_writer_finish(w, &bytes));
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    assert_int_equal(ftell(f), bytes);
    fclose(f);
}

/* Example e's first n positions from the cache equal the corpus bit for bit. */
static void check_example(tcache *tc, const corpus *c, int64_t e, int64_t n)
{
    int64_t k = c->k, r = 0;
    int32_t *ids = malloc((size_t)(n * k + 1) * 4);
    float *lp = malloc((size_t)(n * k + 1) * 4), *tail = malloc((size_t)(n + 1) * 4);
    assert_ok(tcache_get(tc, e, n, ids, lp, tail));
    for (int64_t t = 0; t < n; t++) {
        if (t + 1 < c->len[e] && c->lab[e][t + 1] != LK_LABEL_IGNORE) {
            assert_memory_equal(ids + t * k, c->ids[e] + r * k, (size_t)k * 4);
            assert_memory_equal(lp + t * k, c->logp[e] + r * k, (size_t)k * 4);
            assert_memory_equal(tail + t, c->tail[e] + r, 4);
            r++;
            continue;
        }
        for (int64_t j = 0; j < k; j++) { /* untrained: ids 0.., -inf, tail 0 */
            assert_int_equal(ids[t * k + j], j);
            assert_true(isinf(lp[t * k + j]) && lp[t * k + j] < 0);
        }
        assert_true(tail[t] == 0.0f);
    }
    free(ids);
    free(lp);
    free(tail);
}

/* Open path and read every example (full length and a prefix) in a random order. */
static void check_corpus(const char *path, const corpus *c, uint64_t seed)
{
    tcache *tc;
    assert_ok(tcache_open(path, &tc));
    assert_int_equal(tcache_k(tc), c->k);
    assert_int_equal(tcache_vocab(tc), c->V);
    assert_int_equal(tcache_examples(tc), c->n_ex);
    assert_true(tcache_temp(tc) == 2.0f);
    assert_int_equal(tcache_seq_len(tc), 1000);
    assert_string_equal(tcache_teacher(tc), "test-teacher config:0123");
    assert_string_equal(tcache_data(tc), "test.jsonl");
    int64_t ent = 0;
    for (int64_t e = 0; e < c->n_ex; e++)
        ent += c->E[e];
    assert_int_equal(tcache_entries(tc), ent);
    rng_state r;
    rng_seed(&r, seed, 5);
    for (int64_t i = 0; i < 2 * c->n_ex; i++) {
        int64_t e = (int64_t)rng_below(&r, (uint64_t)c->n_ex);
        check_example(tc, c, e, c->len[e]);
        check_example(tc, c, e, (int64_t)rng_below(&r, (uint64_t)c->len[e] + 1));
        const int32_t *tok;
        int64_t n;
        assert_ok(tcache_tokens(tc, e, &tok, &n));
        assert_int_equal(n, c->len[e]);
        assert_memory_equal(tok, c->tok[e], (size_t)n * 4);
    }
    int32_t ids[1];
    float lp[1], tail[1];
    assert_status(tcache_get(tc, c->n_ex, 0, ids, lp, tail), LK_ERR_ARG, "out of range");
    assert_status(tcache_get(tc, 3, c->len[3] + 1, ids, lp, tail), LK_ERR_ARG, "cached tokens");
    tcache_close(tc);
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* XXH64's published values, and zstd's frame checksum (the low 32 bits of XXH64 of the content,
 * seed 0) for lengths around every branch of the algorithm. */
static void test_xxh64(void **st)
{
    (void)st;
    assert_true(tcache_xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    assert_true(tcache_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5Bull);
    assert_true(tcache_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    uint8_t data[300], frame[600];
    for (int i = 0; i < 300; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    for (size_t n = 0; n < 300; n += n < 70 ? 1 : 37) {
        size_t c = ZSTD_compress2(z, frame, sizeof frame, data, n);
        assert_false(ZSTD_isError(c));
        uint32_t want = (uint32_t)frame[c - 4] | (uint32_t)frame[c - 3] << 8 |
                        (uint32_t)frame[c - 2] << 16 | (uint32_t)frame[c - 1] << 24;
        assert_int_equal((uint32_t)tcache_xxh64(data, n, 0), want);
    }
    ZSTD_freeCCtx(z);
    assert_true(tcache_xxh64(data, 100, 1) != tcache_xxh64(data, 100, 0)); /* the seed counts */
}

static void test_round_trip(void **st)
{
    (void)st;
    static const struct {
        int64_t k, V, n_ex, maxlen, chunk;
    } cases[] = {
        {1, 2, 40, 30, 7},        /* k = 1, smallest vocabulary, many chunks */
        {5, 6, 30, 20, 1},        /* k = V - 1, a chunk per example */
        {8, 512, 60, 80, 100},    /* stories260K-sized */
        {32, 151936, 12, 50, 0},  /* Qwen2.5-sized, one default chunk */
        {64, 151936, 20, 40, 64}, /* k = 64 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        corpus c;
        corpus_make(&c, 100 + i, cases[i].n_ex, cases[i].k, cases[i].V, cases[i].maxlen, 1);
        corpus_write(&c, tmp_path("rt.tc"), cases[i].chunk);
        check_corpus(tmp_path("rt.tc"), &c, i);
        corpus_free(&c);
    }
}

/* A file with no example at all is valid too. */
static void test_empty(void **st)
{
    (void)st;
    struct tcache_meta m = {.k = 2, .temp = 1.0f, .vocab = 10};
    tcache_writer *w;
    assert_ok(tcache_writer_open(tmp_path("empty.tc"), &m, 1, &w));
    assert_ok(tcache_writer_finish(w, NULL));
    tcache *tc;
    assert_ok(tcache_open(tmp_path("empty.tc"), &tc));
    assert_int_equal(tcache_examples(tc), 0);
    assert_string_equal(tcache_teacher(tc), "");
    tcache_close(tc);
}

/* Bad entries and parameters are refused; an unfinished or aborted writer leaves no file. */
static void test_writer_errors(void **st)
{
    (void)st;
    struct tcache_meta m = {.k = 2, .temp = 1.0f, .vocab = 10};
    tcache_writer *w;
    const char *path = tmp_path("w.tc");
    unlink(path);
    struct tcache_meta bad_m[4] = {m, m, m, m};
    bad_m[0].k = 0;
    bad_m[1].k = 10;
    bad_m[2].temp = 0.0f;
    bad_m[3].temp = NAN;
    for (int i = 0; i < 4; i++)
        assert_status(tcache_writer_open(path, &bad_m[i], 1, &w), LK_ERR_ARG, "1 <= k < vocab");
    const int32_t tok[3] = {1, 2, 3};
    const int32_t dup[4] = {1, 1, 2, 3}, out[4] = {1, 10, 2, 3}, good[4] = {1, 2, 3, 4};
    const float lp[4] = {-1, -2, -1, -2}, nan_lp[4] = {-1, NAN, -1, -2},
                pos[4] = {-1, -2, 0.5f, -1};
    const float tail[2] = {-3, -3};
    assert_ok(tcache_writer_open(path, &m, 1, &w));
    assert_status(tcache_writer_add(w, tok, NULL, 3, dup, lp, tail), LK_ERR_ARG, "repeated");
    assert_status(tcache_writer_add(w, tok, NULL, 3, out, lp, tail), LK_ERR_ARG, "outside the");
    assert_status(tcache_writer_add(w, tok, NULL, 3, good, nan_lp, tail), LK_ERR_ARG, "NaN");
    assert_status(tcache_writer_add(w, tok, NULL, 3, good, pos, tail), LK_ERR_ARG, "positive");
    assert_ok(tcache_writer_add(w, tok, NULL, 3, good, lp, tail));
    assert_false(file_exists(path)); /* nothing under the final name until finish */
    tcache_writer_abort(w);
    assert_false(file_exists(path));
    char cmd[4200]; /* and no temporary left behind */
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'w.tc.tmp'", g_dir);
    assert_int_not_equal(system(cmd), 0);
    assert_ok(tcache_writer_open(path, &m, 0, &w));
    assert_ok(tcache_writer_finish(w, NULL));
    assert_status(tcache_writer_open(path, &m, 0, &w), LK_ERR_IO, "already exists");
}

/* ---- verify against datasets ---- */

/* A JSONL of pre-tokenised examples (the corpus's tokens and labels, ids < 512). */
static void write_jsonl(const char *path, const corpus *c, int64_t skip, int64_t change_tok,
                        int64_t change_lab)
{
    FILE *f = fopen(path, "w");
    for (int64_t e = 0; e < c->n_ex; e++) {
        if (e == skip)
            continue;
        fprintf(f, "{\"input_ids\": [");
        for (int64_t t = 0; t < c->len[e]; t++)
            fprintf(f, "%s%d", t ? "," : "", c->tok[e][t] ^ (e == change_tok && t == 4));
        fprintf(f, "], \"labels\": [");
        for (int64_t t = 0; t < c->len[e]; t++) {
            int32_t l = c->lab[e][t];
            if (e == change_lab && t == 5)
                l = c->tok[e][t];
            fprintf(f, "%s%d", t ? "," : "", l);
        }
        fprintf(f, "]}\n");
    }
    fclose(f);
}

static lk_status verify_with(const char *cache, const char *jsonl, int64_t seq_len,
                             const lk_tokenizer *tok)
{
    struct lk_dataset_params p = lk_dataset_params_default();
    p.seq_len = seq_len;
    p.format = LK_DATA_TOKENS;
    lk_dataset *d;
    assert_ok(lk_dataset_load(jsonl, tok, &p, &d));
    tcache *tc;
    assert_ok(tcache_open(cache, &tc));
    lk_status s = tcache_verify(tc, d);
    tcache_close(tc);
    lk_dataset_free(d);
    return s;
}

static void test_verify(void **st)
{
    (void)st;
    require_file(shared_path("models/stories260K-hf/tokenizer.json"));
    lk_tokenizer *tok;
    assert_ok(lk_tokenizer_load(shared_path("models/stories260K-hf"), &tok));
    corpus c;
    corpus_make(&c, 9, 40, 4, 512, 60, 0);
    char cache[4096], js[4096], short_tc[4096];
    snprintf(cache, sizeof cache, "%s", tmp_path("v.tc"));
    snprintf(js, sizeof js, "%s", tmp_path("v.jsonl"));
    snprintf(short_tc, sizeof short_tc, "%s", tmp_path("short.tc"));
    corpus_write(&c, cache, 50);
    int64_t e_tok = 7, e_lab = -1;
    for (int64_t e = 3; e < c.n_ex && e_lab < 0; e++) /* an example with a masked label at 5 */
        if (c.len[e] > 6 && c.lab[e][5] == LK_LABEL_IGNORE && e != e_tok)
            e_lab = e;
    assert_true(e_lab > 0 && c.len[e_tok] > 5);
    write_jsonl(js, &c, -1, -1, -1);
    assert_ok(verify_with(cache, js, 1000, tok));
    assert_ok(verify_with(cache, js, 16, tok)); /* truncated: prefixes of the cached examples */
    write_jsonl(js, &c, -1, e_tok, -1);
    char want[128];
    snprintf(want, sizeof want, "example %lld (line %lld), token 4", (long long)e_tok,
             (long long)e_tok + 1);
    assert_status(verify_with(cache, js, 1000, tok), LK_ERR_ARG, want);
    write_jsonl(js, &c, -1, -1, e_lab);
    snprintf(want, sizeof want, "example %lld (line %lld), position 4 is trained", (long long)e_lab,
             (long long)e_lab + 1);
    assert_status(verify_with(cache, js, 1000, tok), LK_ERR_ARG, want);
    write_jsonl(js, &c, 3, -1, -1);
    assert_status(verify_with(cache, js, 1000, tok), LK_ERR_ARG, "39 examples, the cache 40");
    /* a cache made from truncated examples cannot serve longer ones */
    corpus t = c;
    int64_t *len = malloc((size_t)c.n_ex * 8);
    for (int64_t e = 0; e < c.n_ex; e++)
        len[e] = c.len[e] < 10 ? c.len[e] : 10;
    t.len = len;
    corpus_write(&t, short_tc, 50);
    write_jsonl(js, &c, -1, -1, -1);
    assert_status(verify_with(short_tc, js, 1000, tok), LK_ERR_ARG, "the cache only 10");
    assert_ok(verify_with(short_tc, js, 10, tok));
    free(len);
    corpus_free(&c);
    lk_tokenizer_free(tok);
}

/* ---- corruption ---- */

static uint8_t *read_all(const char *path, size_t *n)
{
    mapfile m;
    assert_ok(mapfile_open(&m, path, 0));
    uint8_t *b = malloc(m.size);
    memcpy(b, m.data, m.size);
    *n = m.size;
    mapfile_close(&m);
    return b;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

static void wr64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

/* Open path and read every example: the first failure's status (LK_OK if none). */
static lk_status read_everything(const char *path, int64_t k)
{
    tcache *tc;
    lk_status s = tcache_open(path, &tc);
    int32_t *ids = malloc((size_t)(2000 * k) * 4);
    float *lp = malloc((size_t)(2000 * k) * 4), tail[2000];
    for (int64_t e = 0; s == LK_OK && e < tcache_examples(tc); e++) {
        const int32_t *tok;
        int64_t n;
        s = tcache_tokens(tc, e, &tok, &n);
        if (s == LK_OK)
            s = tcache_get(tc, e, n, ids, lp, tail);
    }
    if (tc)
        tcache_close(tc);
    free(ids);
    free(lp);
    return s;
}

static void test_truncation_bitflips(void **st)
{
    (void)st;
    corpus c;
    corpus_make(&c, 3, 14, 3, 50, 25, 1);
    char path[4096], bad[4096];
    snprintf(path, sizeof path, "%s", tmp_path("c.tc"));
    snprintf(bad, sizeof bad, "%s", tmp_path("bad.tc"));
    corpus_write(&c, path, 20);
    size_t n;
    uint8_t *buf = read_all(path, &n);
    uint64_t hb = buf[12] | (uint64_t)buf[13] << 8, io = rd64(buf + 72), nc = rd64(buf + 48);
    assert_true(nc >= 3);
    assert_int_equal(read_everything(path, 3), LK_OK);
    for (size_t len = 0; len < n; len++) { /* truncated at every length */
        assert_int_equal(write_file(bad, buf, len), 0);
        assert_status(read_everything(bad, 3), LK_ERR_FORMAT, bad);
    }
    uint8_t *m = malloc(n);
    for (size_t bit = 0; bit < 8 * n; bit++) {
        size_t byte = bit / 8;
        int meta = byte < hb || byte >= io; /* header, strings, index, checksum: every bit */
        if (!meta && bit % 8 != byte % 8)   /* chunk data: one bit per byte */
            continue;
        memcpy(m, buf, n);
        m[byte] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(write_file(bad, m, n), 0);
        tcache *tc;
        if (meta) {
            assert_status(tcache_open(bad, &tc), LK_ERR_FORMAT, bad);
            continue;
        }
        assert_status(read_everything(bad, 3), LK_ERR_FORMAT, "checksum mismatch");
    }
    free(m);
    free(buf);
    corpus_free(&c);
}

/* A one-chunk file rebuilt around raw (decompressed chunk bytes) with correct checksums, after
 * setting the header fields hdr[i] (byte offset, 64-bit value; width 4 below byte 32 where the
 * field is 32-bit). */
typedef struct {
    int off, width;
    uint64_t val;
} field;

static void forge(const char *out, const uint8_t *orig, const uint8_t *raw, size_t us,
                  const field *hdr, int n_hdr)
{
    uint64_t hb = orig[12] | (uint64_t)orig[13] << 8, io0 = rd64(orig + 72);
    size_t cap = ZSTD_compressBound(us);
    uint8_t *f = malloc(hb + cap + 56);
    memcpy(f, orig, hb);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    size_t cs = ZSTD_compress2(z, f + hb, cap, raw, us);
    ZSTD_freeCCtx(z);
    uint8_t *ix = f + hb + cs;
    wr64(f + 72, hb + cs);
    uint64_t ent[6] = {hb, cs, us, 0, rd64(orig + io0 + 32), tcache_xxh64(f + hb, cs, 0)};
    for (int i = 0; i < 6; i++)
        wr64(ix + 8 * i, ent[i]);
    for (int i = 0; i < n_hdr; i++)
        for (int b = 0; b < hdr[i].width; b++)
            f[hdr[i].off + b] = (uint8_t)(hdr[i].val >> (8 * b));
    wr64(ix + 48, tcache_xxh64(ix, 48, tcache_xxh64(f, hb, 0)));
    assert_int_equal(write_file(out, f, hb + cs + 56), 0);
    free(f);
}

/* Set u32 value i of a plane stream of m values at raw + off. */
static void plane_set(uint8_t *raw, size_t off, int64_t m, int64_t i, uint32_t v)
{
    for (int b = 0; b < 4; b++)
        raw[off + (size_t)(b * m + i)] = (uint8_t)(v >> (8 * b));
}

/* Files whose checksums are right but whose contents are not. */
static void test_forged(void **st)
{
    (void)st;
    corpus c;
    corpus_make(&c, 4, 6, 3, 50, 12, 0);
    char path[4096], bad[4096];
    snprintf(path, sizeof path, "%s", tmp_path("f.tc"));
    snprintf(bad, sizeof bad, "%s", tmp_path("forged.tc"));
    corpus_write(&c, path, 1000); /* one chunk */
    size_t n;
    uint8_t *orig = read_all(path, &n);
    uint64_t hb = orig[12] | (uint64_t)orig[13] << 8;
    size_t us = rd64(orig + rd64(orig + 72) + 16);
    uint8_t *raw = malloc(us + 8), *r = malloc(us + 8);
    assert_int_equal(ZSTD_decompress(raw, us, orig + hb, rd64(orig + rd64(orig + 72) + 8)), us);
    forge(bad, orig, raw, us, NULL, 0); /* the forger itself makes valid files */
    assert_int_equal(read_everything(bad, 3), LK_OK);
    int64_t E = c.n_ex, T = 0, N = 0, mb = 0, k = c.k;
    for (int64_t e = 0; e < E; e++) {
        T += c.len[e];
        N += c.E[e];
        mb += (c.len[e] + 7) / 8;
    }
    size_t mask0 = (size_t)(8 * E + 4 * T), ids0 = mask0 + (size_t)mb, M = (size_t)(N * k);
    assert_int_equal(ids0 + 8 * M + 4 * (size_t)N, us);
    struct {
        const char *want;
        size_t at;
        int kind; /* 0: byte xor, 1: id, 2: logp value, 3: tail value, 4: grow */
        uint32_t v;
    } cases[] = {
        {"entry flagged at position", mask0 + (size_t)(c.len[0] - 1) / 8, 0,
         1u << ((c.len[0] - 1) % 8)},
        {"positions flagged", mask0, 0, 0},
        {"entries for", 4 * (size_t)E, 0, 0x7f},
        {"outside the vocabulary", 0, 1, 50},
        {"repeated", 1, 1, 0}, /* id 1 of entry 0 = its id 0 */
        {"NaN", 0, 2, 0x7fc00000u},
        {"tail log-probability", 0, 3, 0x3f800000u}, /* +1 */
        {"bytes, but its", 0, 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(r, raw, us);
        size_t u = us;
        if (cases[i].kind == 0 && cases[i].v == 0) /* clear the first trained bit of example 0 */
            for (size_t b = 0; b < 8; b++)
                if (r[mask0] >> b & 1) {
                    r[mask0] ^= (uint8_t)(1u << b);
                    break;
                }
        if (cases[i].kind == 0)
            r[cases[i].at] ^= (uint8_t)cases[i].v;
        if (cases[i].kind == 1) { /* id 0 of entry 0 out of range, or id 1 = id 0 */
            uint32_t v = cases[i].at ? (uint32_t)c.ids[0][0] : cases[i].v;
            if (c.E[0] == 0)
                fail_msg("example 0 has no entry");
            plane_set(r, ids0, (int64_t)M, (int64_t)cases[i].at, v);
        }
        if (cases[i].kind == 2)
            plane_set(r, ids0 + 4 * M, (int64_t)M, 0, cases[i].v);
        if (cases[i].kind == 3)
            plane_set(r, ids0 + 8 * M, N, 0, cases[i].v);
        if (cases[i].kind == 4)
            u += 4;
        forge(bad, orig, r, u, NULL, 0);
        lk_status s = read_everything(bad, 3);
        if (s != LK_ERR_FORMAT || !strstr(lk_last_error(), cases[i].want))
            fail_msg("case %zu: %s: '%s' lacks '%s'", i, lk_status_str(s), lk_last_error(),
                     cases[i].want);
    }
    /* header fields with a right checksum */
    static const struct {
        field f;
        const char *want;
    } hdr[] = {
        {{8, 4, 2}, "newer than this build"},
        {{8, 4, 0}, "is unknown"},
        {{12, 4, 129}, "header size"},
        {{16, 8, 50}, "k 50, vocab 50"},
        {{16, 8, 0}, "k 0"},
        {{24, 4, 0}, "temperature 0"},
        {{24, 4, 0x7f800000u}, "temperature inf"},
        {{28, 4, 1}, "unknown flags"},
        {{32, 8, (uint64_t)1 << 40}, "vocab 1099511627776"},
        {{40, 8, 7}, "and 7"},
        {{40, 8, (uint64_t)1 << 63}, "count at byte 40"},
        {{96, 4, 5000}, "description lengths"},
        {{110, 1, 1}, "reserved header byte 110"},
    };
    for (size_t i = 0; i < sizeof hdr / sizeof *hdr; i++) {
        forge(bad, orig, raw, us, &hdr[i].f, 1);
        tcache *tc;
        lk_status s = tcache_open(bad, &tc);
        if (s != LK_ERR_FORMAT || !strstr(lk_last_error(), hdr[i].want))
            fail_msg("header case %zu: %s: '%s' lacks '%s'", i, lk_status_str(s), lk_last_error(),
                     hdr[i].want);
    }
    free(r);
    free(raw);
    free(orig);
    corpus_free(&c);
}

/* ---- top-k ---- */

static const float *g_z; /* the logits qsort ranks */

static int rank_cmp(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = g_z[i], y = g_z[j];
    if (x != y)
        return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* Sort every id by (z / temp descending, id ascending) and sum in double. */
static void topk_ref(const float *z, int64_t V, float temp, int64_t k, int32_t *ids, double *logp,
                     double *tail)
{
    float *zt = malloc((size_t)V * 4);
    int32_t *ord = malloc((size_t)V * 4);
    double mx = -INFINITY, sum = 0, rest = 0;
    for (int64_t i = 0; i < V; i++) {
        zt[i] = z[i] / temp;
        ord[i] = (int32_t)i;
        mx = zt[i] > mx ? zt[i] : mx;
    }
    g_z = zt;
    qsort(ord, (size_t)V, 4, rank_cmp);
    for (int64_t i = 0; i < V; i++)
        sum += exp(zt[ord[i]] - mx);
    for (int64_t i = k; i < V; i++)
        rest += exp(zt[ord[i]] - mx);
    for (int64_t j = 0; j < k; j++) {
        ids[j] = ord[j];
        logp[j] = zt[ord[j]] - mx - log(sum);
    }
    *tail = rest > 0 ? log(rest) - log(sum) : -INFINITY;
    free(zt);
    free(ord);
}

static void test_topk(void **st)
{
    (void)st;
    rng_state r;
    rng_seed(&r, 11, 3);
    static const int64_t Vs[] = {2, 7, 512, 5000};
    static const float temps[] = {1.0f, 2.0f, 0.5f};
    float *z = malloc(5000 * 4), *lp = malloc(5000 * 4);
    int32_t *ids = malloc(5000 * 4), *rid = malloc(5000 * 4);
    double *rlp = malloc(5000 * 8);
    for (int vi = 0; vi < 4; vi++) {
        int64_t V = Vs[vi], ks[] = {1, 2, V / 2 + 1, V - 1, V};
        for (int mode = 0; mode < 3; mode++) {
            for (int64_t i = 0; i < V; i++) { /* 0: distinct; 1: many ties; 2: some -inf */
                z[i] = (float)(8.0 * rng_normal(&r));
                if (mode == 1)
                    z[i] = roundf(z[i] / 4) * 2;
                if (mode == 2 && i % 3 == 1)
                    z[i] = -INFINITY;
            }
            for (int ki = 0; ki < 5; ki++)
                for (int ti = 0; ti < 3; ti++) {
                    int64_t k = ks[ki] < 1 ? 1 : ks[ki];
                    float tail;
                    double rtail;
                    assert_ok(tcache_topk(z, V, temps[ti], k, ids, lp, &tail));
                    topk_ref(z, V, temps[ti], k, rid, rlp, &rtail);
                    assert_memory_equal(ids, rid, (size_t)k * 4);
                    for (int64_t j = 0; j < k; j++)
                        assert_true(fabs(lp[j] - rlp[j]) <= 1e-6 * (1 + fabs(rlp[j])) ||
                                    (isinf(lp[j]) && isinf(rlp[j])));
                    assert_true(fabs(tail - rtail) <= 1e-5 * (1 + fabs(rtail)) ||
                                (isinf(tail) && isinf(rtail)));
                    assert_true(k < V || isinf(tail));
                }
        }
    }
    z[3] = NAN;
    float tail;
    assert_status(tcache_topk(z, 7, 1.0f, 2, ids, lp, &tail), LK_ERR_NUMERIC, "logit 3");
    z[3] = INFINITY;
    assert_status(tcache_topk(z, 7, 1.0f, 2, ids, lp, &tail), LK_ERR_NUMERIC, "logit 3");
    for (int i = 0; i < 7; i++)
        z[i] = -INFINITY;
    assert_status(tcache_topk(z, 7, 1.0f, 2, ids, lp, &tail), LK_ERR_NUMERIC, "-inf");
    assert_status(tcache_topk(z, 7, 1.0f, 8, ids, lp, &tail), LK_ERR_ARG, "k 8 outside [1, 7]");
    assert_status(tcache_topk(z, 7, 1.0f, 0, ids, lp, &tail), LK_ERR_ARG, "k 0");
    free(z);
    free(lp);
    free(ids);
    free(rid);
    free(rlp);
}

/* ---- the teacher against transformers (tests/gen/gen_teacher_cache.py) ---- */

/* Our entry (ids, lp [k], tail) against the reference's (rid, rlp [k], rtail): each of our ids
 * has the reference's log-prob for it, or (not among the reference's k: a near tie at the
 * boundary) one within tol of the reference's k-th; the sorted values agree. */
static void check_entry(const int32_t *ids, const float *lp, float tail, const cJSON *rid,
                        const cJSON *rlp, double rtail, int64_t k, double tol, const char *where)
{
    for (int64_t j = 0; j < k; j++) {
        double want = cJSON_GetArrayItem(rlp, (int)j)->valuedouble, found = NAN;
        for (int64_t q = 0; q < k; q++)
            if (cJSON_GetArrayItem(rid, (int)q)->valueint == ids[j])
                found = cJSON_GetArrayItem(rlp, (int)q)->valuedouble;
        if (isnan(found))
            found = cJSON_GetArrayItem(rlp, (int)k - 1)->valuedouble;
        if (fabs(lp[j] - want) > tol || fabs(lp[j] - found) > tol)
            fail_msg("%s, rank %lld: id %d log-prob %.7g, reference %.7g (its value for that id "
                     "%.7g)",
                     where, (long long)j, ids[j], (double)lp[j], want, found);
    }
    if (fabs(tail - rtail) > tol)
        fail_msg("%s: log_tail %.7g, reference %.7g", where, (double)tail, rtail);
}

/* Every example of the cache at path against the reference run (k_ref ids; the cache may keep
 * fewer: then the tail absorbs the rest). */
static void check_against(const char *path, const cJSON *run, int64_t k, int64_t k_ref)
{
    tcache *tc;
    assert_ok(tcache_open(path, &tc));
    assert_int_equal(tcache_k(tc), k);
    assert_int_equal(tcache_vocab(tc), 512);
    const cJSON *exs = cJSON_GetObjectItem(run, "examples");
    assert_int_equal(tcache_examples(tc), cJSON_GetArraySize(exs));
    int32_t *ids = malloc(512 * (size_t)k * 4);
    float *lp = malloc(512 * (size_t)k * 4), tail[512];
    for (int e = 0; e < cJSON_GetArraySize(exs); e++) {
        const cJSON *ex = cJSON_GetArrayItem(exs, e), *pos = cJSON_GetObjectItem(ex, "positions");
        const int32_t *tok;
        int64_t n;
        assert_ok(tcache_tokens(tc, e, &tok, &n));
        assert_ok(tcache_get(tc, e, n, ids, lp, tail));
        for (int i = 0; i < cJSON_GetArraySize(pos); i++) {
            int64_t t = cJSON_GetArrayItem(pos, i)->valueint;
            const cJSON *rid = cJSON_GetArrayItem(cJSON_GetObjectItem(ex, "ids"), i);
            const cJSON *rlp = cJSON_GetArrayItem(cJSON_GetObjectItem(ex, "logp"), i);
            double rtail = cJSON_GetArrayItem(cJSON_GetObjectItem(ex, "log_tail"), i)->valuedouble;
            for (int64_t j = k; j < k_ref; j++) /* the ranks dropped join the tail */
                rtail = log(exp(rtail) + exp(cJSON_GetArrayItem(rlp, (int)j)->valuedouble));
            char where[64];
            snprintf(where, sizeof where, "example %d, position %lld", e, (long long)t);
            check_entry(ids + t * k, lp + t * k, tail[t], rid, rlp, rtail, k, 1e-4, where);
        }
    }
    free(ids);
    free(lp);
    tcache_close(tc);
}

static void test_teacher_reference(void **st)
{
    (void)st;
    const char *mdir = shared_path("models/stories260K-hf");
    require_file(mdir);
    char dir[4096], out[4096];
    snprintf(dir, sizeof dir, "%s", mdir);
    snprintf(out, sizeof out, "%s", tmp_path("teacher.tc"));
    size_t len;
    char *js = NULL;
    assert_ok(read_text_file(data_path("teacher/expected.json"), 1 << 24, &js, &len));
    cJSON *ref = cJSON_Parse(js);
    free(js);
    assert_non_null(ref);
    assert_int_equal(cJSON_GetObjectItem(ref, "k")->valueint, 8);
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *d;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 2;
    assert_ok(lk_model_load(dir, &mp, &m));
    assert_ok(lk_tokenizer_load(dir, &tok));
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 512;
    dp.pack = 0;
    dp.shuffle = 0;
    assert_ok(lk_dataset_load(data_path("teacher/data.jsonl"), tok, &dp, &d));
    const cJSON *runs = cJSON_GetObjectItem(ref, "runs");
    struct {
        int run;
        int64_t k, piece;
    } cases[] = {{0, 8, 64}, {1, 8, 64}, {0, 8, 7}, {1, 3, 1000}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const cJSON *run = cJSON_GetArrayItem(runs, cases[i].run);
        struct lk_teacher_params p = lk_teacher_params_default();
        p.top_k = cases[i].k;
        p.temp = (float)cJSON_GetObjectItem(run, "tau")->valuedouble;
        p.piece = cases[i].piece;
        p.force = 1;
        p.teacher_dir = dir;
        p.data_path = data_path("teacher/data.jsonl");
        struct lk_teacher_stats ts;
        assert_ok(lk_teacher_cache_write(m, d, out, &p, &ts));
        assert_int_equal(ts.examples, 7);
        assert_int_equal(ts.positions, 264);
        assert_int_equal(ts.tokens, lk_dataset_get_stats(d)->tokens);
        assert_true(ts.forward_tokens < ts.tokens); /* nothing after the last trained position */
        check_against(out, run, cases[i].k, 8);
        tcache *tc;
        assert_ok(tcache_open(out, &tc));
        assert_ok(tcache_verify(tc, d));
        assert_true(tcache_temp(tc) == p.temp);
        assert_non_null(strstr(tcache_teacher(tc), "stories260K-hf config.json:xxh64="));
        assert_non_null(strstr(tcache_data(tc), "data.jsonl bytes="));
        tcache_close(tc);
    }
    /* bad parameters, an existing output */
    struct lk_teacher_params p = lk_teacher_params_default();
    p.top_k = 512;
    assert_status(lk_teacher_cache_write(m, d, out, &p, NULL), LK_ERR_ARG,
                  "--top-k must be between 1 and 511");
    p.top_k = 4;
    p.temp = 0;
    assert_status(lk_teacher_cache_write(m, d, out, &p, NULL), LK_ERR_ARG,
                  "--kd-temp must be above 0");
    p.temp = 1;
    p.vocab = 513;
    assert_status(lk_teacher_cache_write(m, d, out, &p, NULL), LK_ERR_ARG,
                  "--vocab must be between 2 and 512 (the model's vocab_size), got 513");
    p.vocab = 0;
    assert_status(lk_teacher_cache_write(m, d, out, &p, NULL), LK_ERR_IO, "already exists");
    lk_dataset_free(d);
    lk_tokenizer_free(tok);
    lk_model_free(m);
    cJSON_Delete(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xxh64),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_truncation_bitflips),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_teacher_reference),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
