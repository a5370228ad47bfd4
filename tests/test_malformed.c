/* test_malformed.c — small valid files of every format cut at every byte and with one bit
 * flipped at every byte (every 3rd to 11th byte for the four files over 8 KB), each through the
 * real loader a tool would call (st_open, lk_adapter_load for PEFT folders and GGUF files,
 * ckpt_load, tcache_open and every example of a teacher cache, lk_config_load,
 * lk_tokenizer_load, lk_model_load for a bitsandbytes and a lorakit NF4 base). A cut file must fail
 * (binary formats: always; JSON: unless only trailing whitespace was cut) and every failure must be
 * a known status whose message names the file; no input may crash (the suite runs again under ASan
 * + UBSan). The hand-made hostile cases with their exact messages are tests/cli_malformed.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/checkpoint.h"
#include "core/mapfile.h"
#include "formats/safetensors.h"
#include "formats/tcache.h"
#include "testutil.h"

/* A loader: loads what dir (a folder) or file names, frees it, returns the status. */
typedef lk_status (*load_fn)(const char *path);

static lk_status load_st(const char *path)
{
    st_file f;
    lk_status s = st_open(&f, path, 1);
    if (s == LK_OK)
        st_close(&f);
    return s;
}

static lk_status load_adapter(const char *path)
{
    lk_adapter *a = NULL;
    lk_status s = lk_adapter_load(path, &a);
    lk_adapter_free(a);
    return s;
}

static lk_status load_ckpt(const char *path)
{
    cJSON *meta;
    float *blob;
    int64_t n;
    lk_status s = ckpt_load(path, &meta, &blob, &n);
    if (s == LK_OK) {
        cJSON_Delete(meta);
        free(blob);
    }
    return s;
}

/* Open a teacher cache and read every example (chunks are checked when first decompressed). */
static lk_status load_tcache(const char *path)
{
    tcache *c;
    lk_status s = tcache_open(path, &c);
    if (s != LK_OK)
        return s;
    for (int64_t e = 0; e < tcache_examples(c) && s == LK_OK; e++) {
        const int32_t *tok;
        int64_t n;
        s = tcache_tokens(c, e, &tok, &n);
    }
    tcache_close(c);
    return s;
}

static lk_status load_config(const char *dir)
{
    struct lk_model_config c;
    return lk_config_load(dir, &c);
}

static lk_status load_tokenizer(const char *dir)
{
    lk_tokenizer *t = NULL;
    lk_status s = lk_tokenizer_load(dir, &t);
    lk_tokenizer_free(t);
    return s;
}

static lk_status load_model(const char *dir)
{
    struct lk_model_params p = lk_model_params_default();
    p.n_threads = 1;
    lk_model *m = NULL;
    lk_status s = lk_model_load(dir, &p, &m);
    lk_model_free(m);
    return s;
}

/* One case: the file src is written (whole, cut, flipped) to <case dir>/name beside the files
 * of `with`, and load runs on the folder (folder 1) or on the file. */
typedef struct {
    const char *label;
    const char *src;  /* fixture, relative to tests/ */
    const char *name; /* file name in the case folder */
    const char *with; /* other files (relative to tests/, space-separated) or NULL */
    load_fn load;
    int folder;
    int json; /* cut JSON may load when only trailing whitespace went */
    int step; /* bytes between cuts and between flips (1: every byte) */
} mcase;

/* Copy each of the space-separated files (relative to tests/) into dir under its own name. */
static void copy_into(const char *files, const char *dir)
{
    char list[512], path[8400];
    snprintf(list, sizeof list, "%s", files ? files : "");
    for (char *n = strtok(list, " "); n; n = strtok(NULL, " ")) {
        mapfile m;
        snprintf(path, sizeof path, "%s/../%s", LK_TEST_DATA, n);
        assert_ok(mapfile_open(&m, path, 0));
        snprintf(path, sizeof path, "%s/%s", dir, strrchr(n, '/') + 1);
        assert_int_equal(write_file(path, m.data, m.size), 0);
        mapfile_close(&m);
    }
}

/* The status of loading data[0..n) as the case's file; a failure must name the file. */
static lk_status try_bytes(const mcase *c, const char *dir, const uint8_t *data, size_t n)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/%s", dir, c->name);
    assert_int_equal(write_file(file, data, n), 0);
    lk_status s = c->load(c->folder ? dir : file);
    if (s != LK_OK &&
        (s < LK_ERR_INTERRUPTED || (s != LK_ERR_NOMEM && !strstr(lk_last_error(), dir))))
        fail_msg("%s (%zu bytes): status %d, message '%s' does not name %s", c->label, n, (int)s,
                 lk_last_error(), dir);
    return s;
}

static int only_space_after(const uint8_t *d, size_t cut, size_t n)
{
    for (size_t i = cut; i < n; i++)
        if (!strchr(" \t\r\n", d[i]))
            return 0;
    return 1;
}

static void run_case(const mcase *c)
{
    char src[4200], dir[4200];
    snprintf(src, sizeof src, "%s/../%s", LK_TEST_DATA, c->src);
    snprintf(dir, sizeof dir, "%s/%s", g_dir, c->label);
    assert_int_equal(mkdir(dir, 0700), 0);
    copy_into(c->with, dir);
    mapfile m;
    assert_ok(mapfile_open(&m, src, 0));
    uint8_t *d = malloc(m.size);
    memcpy(d, m.data, m.size);
    assert_ok(try_bytes(c, dir, d, m.size)); /* the fixture itself loads */
    int cut_ok = 0, flips = 0, flip_ok = 0;
    for (size_t n = 0; n < m.size; n += (size_t)c->step) {
        lk_status s = try_bytes(c, dir, d, n);
        if (s == LK_OK && !(c->json && only_space_after(d, n, m.size)))
            fail_msg("%s cut to %zu of %zu bytes loads", c->label, n, m.size);
        cut_ok += s == LK_OK;
    }
    for (size_t i = 0; i < m.size; i += (size_t)c->step, flips++) {
        d[i] ^= (uint8_t)(1u << (i % 8));
        flip_ok += try_bytes(c, dir, d, m.size) == LK_OK;
        d[i] ^= (uint8_t)(1u << (i % 8));
    }
    fprintf(stderr, "%-14s %5zu bytes, step %d: cuts refused%s; %d of %d bit flips load\n",
            c->label, m.size, c->step, cut_ok ? " (but trailing whitespace)" : "", flip_ok, flips);
    free(d);
    mapfile_close(&m);
}

#define STORIES_TOK "data/bnb/stories260K-nf4-dq/tokenizer.json"
static const mcase g_cases[] = {
    {"safetensors", "fuzz/corpus/safetensors/peft.safetensors", "x.safetensors", NULL, load_st, 0,
     0, 1},
    {"peft-weights", "data/adapters/qwen2-dora/adapter_model.safetensors",
     "adapter_model.safetensors", "data/adapters/qwen2-dora/adapter_config.json", load_adapter, 1,
     0, 3},
    {"peft-config", "data/adapters/stories-lora/adapter_config.json", "adapter_config.json",
     "data/adapters/stories-lora/adapter_model.safetensors", load_adapter, 1, 1, 1},
    {"gguf-lora", "data/adapters/llama3-rslora.gguf", "a.gguf", NULL, load_adapter, 0, 0, 7},
    {"gguf-types", "fuzz/corpus/gguf/types.gguf", "t.gguf", NULL, load_adapter, 0, 0, 1},
    {"checkpoint", "fuzz/corpus/checkpoint/step1.ckpt", "state.ckpt", NULL, load_ckpt, 0, 0, 1},
    {"tcache", "fuzz/corpus/tcache/b.lktc", "t.lktc", NULL, load_tcache, 0, 0, 1},
    {"config", "data/models/llama3-tiny/config.json", "config.json", NULL, load_config, 1, 1, 1},
    {"tokenizer", "fuzz/corpus/tokenizer/qwen2.5.json", "tokenizer.json", NULL, load_tokenizer, 1,
     1, 1},
    {"tokenizer-cfg", "fuzz/corpus/tokenizer_config/qwen2.5.json", "tokenizer_config.json",
     STORIES_TOK, load_tokenizer, 1, 1, 1},
    {"bnb-base", "fuzz/corpus/model/bnbdq.safetensors", "model.safetensors",
     "fuzz/micro/config.json", load_model, 1, 0, 11},
    {"nf4-base", "fuzz/corpus/model/nf4.safetensors", "model.safetensors", "fuzz/micro/config.json",
     load_model, 1, 0, 7},
};

static void test_sweep(void **state)
{
    const mcase *c = *state;
    run_case(c);
}

int main(void)
{
    lk_set_log_level(LK_LOG_ERROR);
    struct CMUnitTest tests[sizeof g_cases / sizeof *g_cases];
    for (size_t i = 0; i < sizeof g_cases / sizeof *g_cases; i++)
        tests[i] =
            (struct CMUnitTest){g_cases[i].label, test_sweep, NULL, NULL, (void *)&g_cases[i]};
    return _cmocka_run_group_tests("test_malformed", tests, sizeof tests / sizeof *tests,
                                   tmp_dir_setup, tmp_dir_teardown);
}
