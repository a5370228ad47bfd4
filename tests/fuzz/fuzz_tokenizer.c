/* fuzz_tokenizer.c — lk_tokenizer_load on a folder whose tokenizer.json is the input (normalizer,
 * pre-tokenizer regexes, BPE vocabulary and merges, added tokens, decoder, post-processor), then
 * encoding fixed texts (ASCII, multi-byte, invalid UTF-8, special-token spellings) with and
 * without offsets, decoding the ids back, and a few ids at the edges of the vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "lorakit/tokenizer.h"

static const char *const g_texts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "  leading spaces\tand\ttabs\nnew lines\r\n  1234567 3.14",
    "caf\xc3\xa9 na\xc3\xafve \xe2\x96\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
    "bad \xff\xfe utf-8 \xc3 \xe2\x82 end",
    "<s>[INST] hi [/INST]</s><|im_start|>user\nx<|im_end|><|begin_of_text|>",
    "",
};

static volatile size_t g_sink;

static void roundtrip(const lk_tokenizer *t, const char *dir, const char *text)
{
    int32_t *ids = NULL;
    uint32_t *st = NULL, *en = NULL;
    int64_t n = 0;
    size_t len = strlen(text);
    fz_clear_error();
    if (fz_check(lk_tokenizer_encode_offsets(t, text, len, 1, &ids, &st, &en, &n), dir) == LK_OK) {
        for (int64_t i = 0; i < n; i++)
            if (st[i] > en[i] || en[i] > len)
                abort();
        char *out = NULL;
        size_t ol = 0;
        fz_clear_error();
        if (fz_check(lk_tokenizer_decode(t, ids, n, 0, &out, &ol), NULL) == LK_OK)
            g_sink += ol + strlen(out);
        free(out);
    }
    free(ids);
    free(st);
    free(en);
    ids = NULL;
    fz_clear_error();
    if (fz_check(lk_tokenizer_encode(t, text, len, 0, &ids, &n), dir) == LK_OK)
        g_sink += (size_t)n;
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    fz_write("tokenizer.json", data, size);
    lk_tokenizer *t = NULL;
    fz_clear_error();
    if (fz_check(lk_tokenizer_load(fz_dir(), &t), fz_dir()) != LK_OK)
        return 0;
    for (size_t i = 0; i < sizeof g_texts / sizeof *g_texts; i++)
        roundtrip(t, fz_dir(), g_texts[i]);
    g_sink += fz_tokenizer_edges(t);
    lk_tokenizer_free(t);
    return 0;
}
