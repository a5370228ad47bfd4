/* fuzz_gguf_tok.c — lk_tokenizer_load on a GGUF file that is the input (the tokenizer.* metadata:
 * model and pre-tokenizer names, tokens, scores, token types, merges, special ids and flags, chat
 * template), then encoding fixed texts (special-token spellings, multi-byte, invalid UTF-8,
 * digits, long runs) with and without BOS/EOS and offsets, decoding the ids back with and without
 * the special tokens, and ids at the edges of the vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "lorakit/tokenizer.h"

static const char *const g_texts[] = {
    "Once upon a time, there was a little girl named Lily. It's 1234567 o'clock",
    "<|im_start|>user\nhi<|im_end|>\n<s>[INST] x [/INST]</s><|begin_of_text|><unk>",
    "caf\xc3\xa9 \xe2\x96\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 \xd9\xa1\xd9\xa2\xd9\xa3",
    "bad \xff\xfe utf-8 \xc3 \xe2\x82 \xc0\x80 end",
    "   \t\t\n\n\r\n  x  ",
    "",
};

static volatile size_t g_sink;

static void roundtrip(const lk_tokenizer *t, const char *path, const char *text, int special)
{
    int32_t *ids = NULL;
    uint32_t *st = NULL, *en = NULL;
    int64_t n = 0;
    size_t len = strlen(text);
    fz_clear_error();
    if (fz_check(lk_tokenizer_encode_offsets(t, text, len, special, &ids, &st, &en, &n), path) ==
        LK_OK) {
        for (int64_t i = 0; i < n; i++)
            if (st[i] > en[i] || en[i] > len || ids[i] < 0 || ids[i] >= lk_tokenizer_vocab_size(t))
                abort();
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL;
            size_t ol = 0;
            fz_clear_error();
            if (fz_check(lk_tokenizer_decode(t, ids, n, skip, &out, &ol), NULL) == LK_OK)
                g_sink += ol + strlen(out);
            free(out);
        }
    }
    free(ids);
    free(st);
    free(en);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *path = fz_write("tokenizer.gguf", data, size);
    lk_tokenizer *t = NULL;
    fz_clear_error();
    if (fz_check(lk_tokenizer_load(path, &t), path) != LK_OK)
        return 0;
    for (size_t i = 0; i < sizeof g_texts / sizeof *g_texts; i++)
        roundtrip(t, path, g_texts[i], (int)(i & 1));
    g_sink += fz_tokenizer_edges(t);
    if (lk_tokenizer_chat_template(t))
        g_sink += strlen(lk_tokenizer_chat_template(t));
    lk_tokenizer_free(t);
    return 0;
}
