/* test_dataset.c — datasets: ids and loss masks token by token against sequences built with
 * Hugging Face tokenizers (tests/data/tok/ds/expected.json from tests/gen/gen_dataset.py), bad
 * lines and strict mode, --fields on GSM8K, the llamafactory demo files end to end, packing
 * (positions, segments, attention mask), truncation, shuffling and the cursor. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/rng.h"

static lk_tokenizer *load_tok(const char *rel)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", shared_path(rel));
    require_file(d);
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(d, &t));
    return t;
}

static lk_dataset *load_ds(const char *path, const lk_tokenizer *t,
                           const struct lk_dataset_params *p)
{
    char f[4096];
    snprintf(f, sizeof f, "%s", path);
    lk_dataset *d;
    assert_ok(lk_dataset_load(f, t, p, &d));
    return d;
}

static void check_array(const char *what, int i, const int32_t *got, int64_t n, const cJSON *want)
{
    int64_t k = 0;
    const cJSON *x;
    int ok = cJSON_GetArraySize(want) == n;
    cJSON_ArrayForEach(x, want)
    {
        if (k < n && got[k] != x->valueint) {
            fprintf(stderr, "%s example %d: token %lld: got %d want %d\n", what, i, (long long)k,
                    got[k], x->valueint);
            ok = 0;
            break;
        }
        k++;
    }
    if (!ok)
        fail_msg("%s example %d differs (got %lld tokens, want %d)", what, i, (long long)n,
                 cJSON_GetArraySize(want));
}

/* Every case of a reference file (tok/ds/expected.json or tools-expected.json) loaded strictly
 * and compared token for token; returns the number of cases. */
static int check_reference(const char *expected)
{
    char *txt;
    size_t n;
    assert_ok(read_text_file(data_path(expected), 1 << 24, &txt, &n));
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    assert_non_null(root);
    const cJSON *c;
    int ncases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases"))
    {
        const char *tdir = cJSON_GetObjectItem(c, "tokenizer")->valuestring;
        const char *file = cJSON_GetObjectItem(c, "file")->valuestring;
        lk_tokenizer *t = load_tok(tdir);
        struct lk_dataset_params p = lk_dataset_params_default();
        p.seq_len = 4096;
        p.shuffle = 0;
        p.fields = cJSON_GetStringValue(cJSON_GetObjectItem(c, "fields"));
        p.strict = 1;
        char path[4096], what[512];
        snprintf(path, sizeof path, "tok/ds/%s", file);
        lk_dataset *d = load_ds(data_path(path), t, &p);
        const cJSON *exs = cJSON_GetObjectItem(c, "examples"), *e;
        assert_int_equal(lk_dataset_get_stats(d)->examples, cJSON_GetArraySize(exs));
        int i = 0;
        cJSON_ArrayForEach(e, exs)
        {
            const int32_t *ids, *labels;
            int64_t len;
            assert_ok(lk_dataset_example(d, i, &ids, &labels, &len, NULL));
            snprintf(what, sizeof what, "%s %s ids", tdir, file);
            check_array(what, i, ids, len, cJSON_GetObjectItem(e, "ids"));
            snprintf(what, sizeof what, "%s %s labels", tdir, file);
            check_array(what, i, labels, len, cJSON_GetObjectItem(e, "labels"));
            i++;
        }
        lk_dataset_free(d);
        lk_tokenizer_free(t);
        ncases++;
    }
    cJSON_Delete(root);
    return ncases;
}

static void test_masks_reference(void **st)
{
    (void)st;
    int ncases = check_reference("tok/ds/expected.json");
    fprintf(stderr, "%d dataset cases identical to the HF-built reference\n", ncases);
    assert_int_equal(ncases, 17);
}

/* Tool-calling conversations (glaive's ShareGPT function_call/observation, OpenAI tool_calls and
 * tool turns, a tools list): ids and masks as transformers' apply_chat_template gives them with
 * Qwen2.5's and Llama-3.1's templates (tests/gen/gen_chat_tools.py). */
static void test_tool_masks(void **st)
{
    (void)st;
    int ncases = check_reference("tok/ds/tools-expected.json");
    fprintf(stderr, "%d tool-calling cases identical to apply_chat_template\n", ncases);
    assert_int_equal(ncases, 3);
}

static void test_bad_lines(void **st)
{
    (void)st;
    lk_tokenizer *t = load_tok("models/qwen2.5-tokenizer");
    struct lk_dataset_params p = lk_dataset_params_default();
    lk_dataset *d = load_ds(data_path("tok/ds/bad.jsonl"), t, &p);
    const struct lk_dataset_stats *s = lk_dataset_get_stats(d);
    assert_int_equal(s->lines, 12); /* blank lines 3 and 13 are not examples */
    assert_int_equal(s->examples, 2);
    assert_int_equal(s->bad, 10);
    static const int64_t bad_lines[] = {2, 4, 5, 6, 7, 8, 9, 10, 11, 14};
    static const char *const reason[] = {"invalid JSON", "no known fields",   "not a string",
                                         "JSON object",  "no assistant turn", "role 'narrator'",
                                         "as long as",   "input_ids[1]",      "question, answer",
                                         "image"};
    for (int k = 0; k < 10; k++) {
        int64_t line;
        const char *msg = lk_dataset_bad(d, k, &line);
        assert_non_null(msg);
        assert_int_equal(line, bad_lines[k]);
        if (!strstr(msg, reason[k]))
            fail_msg("bad line %lld: '%s' lacks '%s'", (long long)line, msg, reason[k]);
    }
    assert_null(lk_dataset_bad(d, 10, NULL));
    int64_t line;
    assert_ok(lk_dataset_example(d, 1, NULL, NULL, NULL, &line));
    assert_int_equal(line, 12);
    lk_dataset_free(d);
    /* strict: the first bad line is fatal and named */
    p.strict = 1;
    assert_status(lk_dataset_load(data_path("tok/ds/bad.jsonl"), t, &p, &d), LK_ERR_FORMAT,
                  "bad.jsonl: line 2: invalid JSON");
    /* array files count elements */
    p.strict = 0;
    d = load_ds(data_path("tok/ds/array.json"), t, &p);
    assert_int_equal(lk_dataset_get_stats(d)->examples, 2);
    assert_int_equal(lk_dataset_get_stats(d)->by_format[LK_DATA_ALPACA], 2);
    assert_non_null(lk_dataset_bad(d, 0, &line));
    assert_int_equal(line, 2);
    lk_dataset_free(d);
    /* a UTF-8 byte order mark before line 1 is ignored */
    char *dir = make_temp_dir(), bom[4096];
    snprintf(bom, sizeof bom, "%s/bom.jsonl", dir);
    const char bom_txt[] = "\xEF\xBB\xBF{\"text\": \"x\"}\n";
    assert_int_equal(write_file(bom, bom_txt, sizeof bom_txt - 1), 0);
    d = load_ds(bom, t, &p);
    assert_int_equal(lk_dataset_get_stats(d)->examples, 1);
    lk_dataset_free(d);
    rm_rf(dir);
    free(dir);
    /* bad --fields, missing file */
    p.fields = "prompt";
    assert_status(lk_dataset_load(data_path("tok/ds/pc.jsonl"), t, &p, &d), LK_ERR_ARG, "--fields");
    p.fields = NULL;
    assert_status(lk_dataset_load(data_path("tok/ds/nope.jsonl"), t, &p, &d), LK_ERR_IO,
                  "nope.jsonl");
    lk_tokenizer_free(t);
}

/* GSM8K {question, answer}: unusable without --fields (a clear error), all of it with them. */
static void test_gsm8k_fields(void **st)
{
    (void)st;
    require_file(shared_path("data/gsm8k/test.jsonl"));
    lk_tokenizer *t = load_tok("models/qwen2.5-tokenizer");
    struct lk_dataset_params p = lk_dataset_params_default();
    p.seq_len = 1024;
    p.max_reported = 2;
    lk_dataset *d;
    char path[4096];
    snprintf(path, sizeof path, "%s", shared_path("data/gsm8k/test.jsonl"));
    assert_status(lk_dataset_load(path, t, &p, &d), LK_ERR_FORMAT, "--fields");
    p.fields = "prompt=question,completion=answer";
    d = load_ds(path, t, &p);
    const struct lk_dataset_stats *s = lk_dataset_get_stats(d);
    assert_int_equal(s->examples, 1319);
    assert_int_equal(s->bad, 0);
    assert_int_equal(s->by_format[LK_DATA_PROMPT_COMPLETION], 1319);
    assert_true(s->trained_tokens > s->tokens / 3 && s->trained_tokens < s->tokens);
    assert_int_equal(s->truncated, 0);
    assert_true(s->packing_efficiency > 0.97 && s->packing_efficiency <= 1.0);
    /* every example ends with a trained EOS; no prompt token is trained */
    for (int64_t i = 0; i < s->examples; i++) {
        const int32_t *ids, *lab;
        int64_t n;
        assert_ok(lk_dataset_example(d, i, &ids, &lab, &n, NULL));
        assert_int_equal(ids[n - 1], lk_tokenizer_eos(t));
        assert_int_equal(lab[n - 1], ids[n - 1]);
        assert_int_equal(lab[0], LK_LABEL_IGNORE);
    }
    lk_dataset_free(d);
    lk_tokenizer_free(t);
}

/* The llamafactory demo files: typed-content messages with loss_weight, an alpaca array. */
static void test_llamafactory(void **st)
{
    (void)st;
    require_file(shared_path("data/llamafactory-demo/v1_sft_demo.jsonl"));
    lk_tokenizer *t = load_tok("models/qwen2.5-tokenizer");
    struct lk_dataset_params p = lk_dataset_params_default();
    p.seq_len = 1024;
    char path[4096];
    snprintf(path, sizeof path, "%s", shared_path("data/llamafactory-demo/v1_sft_demo.jsonl"));
    lk_dataset *d = load_ds(path, t, &p);
    const struct lk_dataset_stats *s = lk_dataset_get_stats(d);
    assert_int_equal(s->examples, 500);
    assert_int_equal(s->bad, 0);
    assert_int_equal(s->by_format[LK_DATA_MESSAGES], 500);
    /* example 0: user "hi" (loss_weight 0), the answer and <|im_end|> trained, nothing else */
    const int32_t *ids, *lab;
    int64_t n, k = 0;
    assert_ok(lk_dataset_example(d, 0, &ids, &lab, &n, NULL));
    int32_t *tr = malloc((size_t)n * sizeof *tr);
    for (int64_t i = 0; i < n; i++)
        if (lab[i] != LK_LABEL_IGNORE)
            tr[k++] = lab[i];
    char *txt;
    size_t len;
    assert_ok(lk_tokenizer_decode(t, tr, k, 0, &txt, &len));
    assert_string_equal(txt, "Hello! I am {{name}}, an AI assistant developed by {{author}}. How "
                             "can I assist you today?<|im_end|>");
    free(txt);
    free(tr);
    lk_dataset_free(d);
    lk_tokenizer_free(t);

    t = load_tok("models/llama2-tokenizer");
    snprintf(path, sizeof path, "%s", shared_path("data/llamafactory-demo/alpaca_en_demo.json"));
    p.seq_len = 256;
    d = load_ds(path, t, &p);
    s = lk_dataset_get_stats(d);
    assert_int_equal(s->examples, 999);
    assert_int_equal(s->by_format[LK_DATA_ALPACA], 999);
    assert_true(s->truncated > 0);
    for (int64_t i = 0; i < s->examples; i++) {
        assert_ok(lk_dataset_example(d, i, &ids, &lab, &n, NULL));
        assert_true(n <= 256);
        assert_int_equal(ids[0], 1); /* BOS: add_bos_token */
    }
    lk_dataset_free(d);
    lk_tokenizer_free(t);
}

/* Rows: examples whole and in order, positions restart, segments separate, padding masked. */
static void test_packing(void **st)
{
    (void)st;
    require_file(shared_path("data/gsm8k/test.jsonl"));
    lk_tokenizer *t = load_tok("models/llama2-tokenizer");
    struct lk_dataset_params p = lk_dataset_params_default();
    p.seq_len = 512;
    p.fields = "prompt=question,completion=answer";
    p.seed = 7;
    char path[4096];
    snprintf(path, sizeof path, "%s", shared_path("data/gsm8k/test.jsonl"));
    lk_dataset *d = load_ds(path, t, &p);
    const struct lk_dataset_stats *s = lk_dataset_get_stats(d);
    int64_t T = p.seq_len, nex = s->examples;
    assert_true(s->truncated > 0); /* one GSM8K test problem exceeds 512 Llama-2 tokens */
    int32_t *tok = malloc((size_t)T * 4), *lab = malloc((size_t)T * 4);
    int32_t *pos = malloc((size_t)T * 4), *seg = malloc((size_t)T * 4);
    uint8_t *mask = malloc((size_t)(T * T));
    int64_t seen = 0, rows = 0, tokens = 0, multi = 0;
    while (seen < nex) {
        int64_t nr, ne;
        assert_ok(lk_dataset_next_row(d, tok, lab, pos, seg, &nr, &ne));
        rows++;
        tokens += nr;
        multi += ne > 1;
        lk_dataset_attention_mask(seg, T, mask);
        int32_t cur = -1;
        for (int64_t i = 0; i < T; i++) {
            if (i >= nr) { /* padding */
                assert_int_equal(seg[i], -1);
                assert_int_equal(lab[i], LK_LABEL_IGNORE);
                continue;
            }
            if (seg[i] != cur) { /* a new example starts: position 0, next segment */
                assert_int_equal(seg[i], cur + 1);
                assert_int_equal(pos[i], 0);
                cur = seg[i];
            } else {
                assert_int_equal(pos[i], pos[i - 1] + 1);
            }
            for (int64_t j = 0; j < T; j++) {
                int want = j <= i && j < nr && seg[j] == seg[i];
                assert_int_equal(mask[i * T + j], want);
            }
        }
        assert_int_equal(cur + 1, ne);
        seen += ne;
    }
    assert_int_equal(seen, nex); /* every example exactly once in the epoch */
    assert_int_equal(rows, lk_dataset_rows_in_epoch(d));
    assert_int_equal(tokens, s->tokens);
    assert_true(multi > rows / 2);
    assert_true(s->packing_efficiency > 0.9); /* first-fit */
    struct lk_data_cursor c;
    lk_dataset_get_cursor(d, &c);
    assert_int_equal(c.epoch, 0);
    assert_int_equal(c.next, rows);
    lk_dataset_free(d);
    /* pack 0: one example per row */
    p.pack = 0;
    d = load_ds(path, t, &p);
    assert_int_equal(lk_dataset_get_stats(d)->rows, nex);
    int64_t ne;
    assert_ok(lk_dataset_next_row(d, tok, lab, pos, seg, NULL, &ne));
    assert_int_equal(ne, 1);
    lk_dataset_free(d);
    free(tok);
    free(lab);
    free(pos);
    free(seg);
    free(mask);
    lk_tokenizer_free(t);
}

/* Same seed, same rows; a restored cursor continues exactly, across the epoch boundary too. */
static void test_shuffle_cursor(void **st)
{
    (void)st;
    lk_tokenizer *t = load_tok("models/stories260K-hf");
    struct lk_dataset_params p = lk_dataset_params_default();
    p.seq_len = 64;
    p.seed = 123;
    char path[4096];
    snprintf(path, sizeof path, "%s", data_path("tok/ds/alpaca.jsonl"));
    /* a bigger file: the corpus strings as text examples */
    char *dir = make_temp_dir();
    snprintf(path, sizeof path, "%s/d.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 200; i++)
        fprintf(f, "{\"text\": \"example %d %.*s\"}\n", i, 1 + (i * 37) % 90,
                "the quick brown fox jumps over the lazy dog and keeps running through the "
                "forest until night falls");
    fclose(f);
    lk_dataset *a = load_ds(path, t, &p), *b = load_ds(path, t, &p);
    int64_t T = p.seq_len, rows = lk_dataset_rows_in_epoch(a);
    int32_t *r1 = malloc((size_t)T * 16), *r2 = malloc((size_t)T * 16);
    /* run a for rows + 5 rows, saving the cursor after 3 */
    struct lk_data_cursor saved;
    int32_t *ref = malloc((size_t)(rows + 5) * (size_t)T * 4);
    for (int64_t r = 0; r < rows + 5; r++) {
        if (r == 3)
            lk_dataset_get_cursor(a, &saved);
        assert_ok(lk_dataset_next_row(a, r1, r1 + T, r1 + 2 * T, r1 + 3 * T, NULL, NULL));
        memcpy(ref + r * T, r1, (size_t)T * 4);
        assert_ok(lk_dataset_next_row(b, r2, r2 + T, r2 + 2 * T, r2 + 3 * T, NULL, NULL));
        assert_memory_equal(r1, r2, (size_t)T * 16); /* same seed, same rows */
    }
    struct lk_data_cursor c;
    lk_dataset_get_cursor(a, &c);
    assert_int_equal(c.epoch, 1); /* crossed into the second epoch */
    /* a fresh dataset restored to the saved cursor continues identically */
    lk_dataset *r = load_ds(path, t, &p);
    assert_ok(lk_dataset_set_cursor(r, &saved));
    for (int64_t k = 3; k < rows + 5; k++) {
        assert_ok(lk_dataset_next_row(r, r1, r1 + T, r1 + 2 * T, r1 + 3 * T, NULL, NULL));
        assert_memory_equal(r1, ref + k * T, (size_t)T * 4);
    }
    /* epoch 1 is in another order than epoch 0; another seed gives another order */
    assert_true(memcmp(ref, ref + rows * T, (size_t)T * 4) != 0);
    p.seed = 124;
    lk_dataset *o = load_ds(path, t, &p);
    assert_ok(lk_dataset_next_row(o, r1, r1 + T, r1 + 2 * T, r1 + 3 * T, NULL, NULL));
    assert_true(memcmp(r1, ref, (size_t)T * 4) != 0);
    struct lk_data_cursor bad = {0, 100000};
    lk_dataset_get_cursor(o, &saved);
    assert_status(lk_dataset_set_cursor(o, &bad), LK_ERR_ARG, "cursor");
    struct lk_data_cursor after;
    lk_dataset_get_cursor(o, &after); /* a refused cursor leaves the position alone */
    assert_int_equal(after.next, saved.next);
    lk_dataset_free(a);
    lk_dataset_free(b);
    lk_dataset_free(r);
    lk_dataset_free(o);
    free(r1);
    free(r2);
    free(ref);
    rm_rf(dir);
    free(dir);
    lk_tokenizer_free(t);
}

/* The examples behind a row: each segment's tokens and labels are those of the example
 * lk_dataset_row_examples names, at the segment's offset; every example once per epoch. */
static void check_row(const lk_dataset *d, const int32_t *tok, const int32_t *lab,
                      const int32_t *seg, int64_t T, int64_t ne, int64_t *seen)
{
    int64_t idx[64], n = -1, off = 0;
    assert_ok(lk_dataset_row_examples(d, idx, 64, &n));
    assert_int_equal(n, ne);
    for (int64_t j = 0; j < n; j++) {
        const int32_t *ids, *labels;
        int64_t len;
        assert_ok(lk_dataset_example(d, idx[j], &ids, &labels, &len, NULL));
        assert_true(off + len <= T);
        assert_memory_equal(tok + off, ids, (size_t)len * 4);
        assert_memory_equal(lab + off, labels, (size_t)len * 4);
        for (int64_t i = 0; i < len; i++)
            assert_int_equal(seg[off + i], j);
        seen[idx[j]]++;
        off += len;
    }
    assert_true(off == T || seg[off] == -1);
}

static void test_row_examples(void **st)
{
    (void)st;
    lk_tokenizer *t = load_tok("models/stories260K-hf");
    char *dir = make_temp_dir(), path[4096];
    snprintf(path, sizeof path, "%s/d.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 150; i++) /* lengths vary; some examples are truncated to seq_len */
        fprintf(f, "{\"prompt\": \"q%d \", \"completion\": \"%.*s\"}\n", i, 1 + (i * 53) % 190,
                "the quick brown fox jumps over the lazy dog and keeps running through the "
                "forest until night falls and the stars come out one by one over the hills "
                "while the dog sleeps and dreams of chasing the fox again in the morning light "
                "when the birds sing");
    fclose(f);
    for (int pack = 1; pack >= 0; pack--) {
        struct lk_dataset_params p = lk_dataset_params_default();
        p.seq_len = 96;
        p.seed = 9;
        p.pack = pack;
        lk_dataset *d = load_ds(path, t, &p);
        int64_t T = p.seq_len, nex = lk_dataset_get_stats(d)->examples, idx[4], n;
        assert_true(lk_dataset_get_stats(d)->truncated > 0);
        int32_t *tok = malloc((size_t)T * 4), *lab = malloc((size_t)T * 4);
        int32_t *pos = malloc((size_t)T * 4), *seg = malloc((size_t)T * 4);
        int64_t *seen = calloc((size_t)nex, sizeof *seen), multi = 0;
        assert_status(lk_dataset_row_examples(d, idx, 4, &n), LK_ERR_ARG, "no row");
        struct lk_data_cursor saved = {0, 0};
        /* three epochs, each reshuffled: every example exactly once per epoch */
        for (int epoch = 0; epoch < 3; epoch++) {
            struct lk_data_cursor c;
            do { /* the first row rolls into the epoch; its row count is known from then on */
                int64_t ne;
                lk_dataset_get_cursor(d, &c);
                if (epoch == 1 && c.next == 2)
                    saved = c;
                assert_ok(lk_dataset_next_row(d, tok, lab, pos, seg, NULL, &ne));
                multi += ne > 1;
                check_row(d, tok, lab, seg, T, ne, seen);
                lk_dataset_get_cursor(d, &c);
            } while (c.next < lk_dataset_rows_in_epoch(d));
            assert_int_equal(c.epoch, epoch);
            for (int64_t i = 0; i < nex; i++)
                assert_int_equal(seen[i], epoch + 1);
        }
        assert_true(pack ? multi > 0 : multi == 0);
        /* back to a cursor of an earlier epoch: no row yet, then the rows of that epoch */
        assert_ok(lk_dataset_set_cursor(d, &saved));
        assert_status(lk_dataset_row_examples(d, idx, 4, &n), LK_ERR_ARG, "no row");
        for (int64_t r = 0; r < 3; r++) {
            int64_t ne;
            assert_ok(lk_dataset_next_row(d, tok, lab, pos, seg, NULL, &ne));
            check_row(d, tok, lab, seg, T, ne, seen);
            if (ne > 1) /* idx too short for the row */
                assert_status(lk_dataset_row_examples(d, idx, ne - 1, &n), LK_ERR_ARG, "holds");
        }
        lk_dataset_free(d);
        free(tok);
        free(lab);
        free(pos);
        free(seg);
        free(seen);
    }
    rm_rf(dir);
    free(dir);
    lk_tokenizer_free(t);
}

/* Garbage never crashes the loader: mutated copies of valid lines (bytes flipped, cut short,
 * duplicated) are either kept or counted as bad. */
static void test_fuzz_lines(void **st)
{
    (void)st;
    lk_tokenizer *t = load_tok("models/stories260K-hf");
    char *src;
    size_t n;
    assert_ok(read_text_file(data_path("tok/ds/messages.jsonl"), 1 << 20, &src, &n));
    char *dir = make_temp_dir(), path[4096];
    snprintf(path, sizeof path, "%s/f.jsonl", dir);
    FILE *f = fopen(path, "wb");
    uint64_t x = 99;
    for (int r = 0; r < 400; r++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t a = (x >> 33) % n, len = 1 + (x >> 13) % 300;
        if (a + len > n)
            len = n - a;
        char buf[301];
        memcpy(buf, src + a, len);
        for (int k = 0; k < 3; k++) { /* flip a few bytes, keep lines intact */
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            char c = (char)(x >> 56);
            buf[(x >> 20) % len] = c == '\n' ? ' ' : c;
        }
        for (size_t k = 0; k < len; k++)
            if (buf[k] == '\n')
                buf[k] = ' ';
        fwrite(buf, 1, len, f);
        fputc('\n', f);
    }
    fwrite(src, 1, n, f); /* some valid lines so the load succeeds */
    fclose(f);
    struct lk_dataset_params p = lk_dataset_params_default();
    p.max_reported = 0;
    p.seq_len = 128;
    p.chat_format = LK_CHAT_CHATML;
    lk_dataset *d;
    assert_ok(lk_dataset_load(path, t, &p, &d));
    const struct lk_dataset_stats *s = lk_dataset_get_stats(d);
    assert_int_equal(s->examples + s->bad, s->lines);
    assert_true(s->examples >= 4);
    lk_dataset_free(d);
    free(src);
    rm_rf(dir);
    free(dir);
    lk_tokenizer_free(t);
}

/* The shuffle's generator: xoshiro256** reference outputs from state {1, 2, 3, 4} (Vigna's C code),
 * independent streams per purpose, rng_below in range and unbiased enough. */
static void test_rng(void **st)
{
    (void)st;
    rng_state r = {{1, 2, 3, 4}};
    assert_true(rng_next(&r) == 11520u);
    assert_true(rng_next(&r) == 0u);
    assert_true(rng_next(&r) == 1509978240u);
    assert_true(rng_next(&r) == 1215971899390074240u);
    rng_state a, b, c;
    rng_seed(&a, 42, rng_purpose("dataset-shuffle", 0));
    rng_seed(&b, 42, rng_purpose("dataset-shuffle", 0));
    rng_seed(&c, 42, rng_purpose("dataset-shuffle", 1));
    uint64_t xa = rng_next(&a), xb = rng_next(&b), xc = rng_next(&c);
    assert_true(xa == xb && xa != xc);
    int64_t hist[6] = {0};
    for (int i = 0; i < 60000; i++) {
        uint64_t v = rng_below(&a, 6);
        assert_true(v < 6);
        hist[v]++;
    }
    for (int k = 0; k < 6; k++)
        assert_true(hist[k] > 9500 && hist[k] < 10500);
    float u = rng_uniform(&a);
    assert_true(u >= 0.0f && u < 1.0f);
}

static void test_attention_mask(void **st)
{
    (void)st;
    const int32_t seg[6] = {0, 0, 1, 1, 1, -1};
    uint8_t m[36];
    lk_dataset_attention_mask(seg, 6, m);
    static const uint8_t want[36] = {1, 0, 0, 0, 0, 0, /* */ 1, 1, 0, 0, 0, 0,
                                     0, 0, 1, 0, 0, 0, /* */ 0, 0, 1, 1, 0, 0,
                                     0, 0, 1, 1, 1, 0, /* */ 0, 0, 0, 0, 0, 0};
    assert_memory_equal(m, want, 36);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks_reference),
        cmocka_unit_test(test_tool_masks),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_gsm8k_fields),
        cmocka_unit_test(test_llamafactory),
        cmocka_unit_test(test_packing),
        cmocka_unit_test(test_shuffle_cursor),
        cmocka_unit_test(test_row_examples),
        cmocka_unit_test(test_attention_mask),
        cmocka_unit_test(test_fuzz_lines),
        cmocka_unit_test(test_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
