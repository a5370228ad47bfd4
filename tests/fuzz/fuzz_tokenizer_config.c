/* fuzz_tokenizer_config.c — the files beside tokenizer.json: the input is tokenizer_config.json,
 * optionally followed (after FZ_SEP) by special_tokens_map.json and chat_template.jinja, loaded
 * with a fixed committed tokenizer.json (stories260K's); then chat template detection (and the
 * ChatML default system prompt it extracts), rendering a conversation with its loss spans, and
 * encoding the result with the BOS/EOS the config chose. */
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "fuzzutil.h"
#include "lorakit/tokenizer.h"

static const char *const g_files[] = {"tokenizer_config.json", "special_tokens_map.json",
                                      "chat_template.jinja"};
static volatile size_t g_sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    fz_copy(LK_TEST_DATA "/bnb/stories260K-nf4-dq/tokenizer.json", "tokenizer.json");
    return 0;
}

static void chat(const lk_tokenizer *t)
{
    static const struct chat_msg msgs[] = {
        {"system", "Be brief.", NULL}, {"user", "Hi there", NULL}, {"assistant", "Hello!", NULL},
        {"user", "Bye", NULL},         {"assistant", " ok ", NULL},
    };
    lk_chat_format f = LK_CHAT_AUTO;
    char *sys = NULL, *text = NULL;
    size_t len = 0;
    struct chat_span *sp = NULL;
    int64_t nsp = 0;
    fz_clear_error();
    if (fz_check(chat_resolve(t, &f, &sys), NULL) != LK_OK)
        return;
    int skip = f == LK_CHAT_MISTRAL; /* Mistral has no system role */
    fz_clear_error();
    if (fz_check(chat_render_spans(t, f, sys, 1, NULL, NULL, msgs + skip, 5 - skip, NULL, &text, &len,
                                   &sp, &nsp),
                 NULL) == LK_OK) {
        for (int64_t i = 0; i < nsp; i++)
            if (sp[i].start > sp[i].end || sp[i].end > len)
                abort();
        int32_t *ids = NULL;
        int64_t n = 0;
        if (lk_tokenizer_encode(t, text, len, 1, &ids, &n) == LK_OK)
            g_sink += (size_t)n;
        free(ids);
    }
    free(text);
    free(sp);
    free(sys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    int n = fz_split(data, size, part, len, 3);
    for (int i = 0; i < 3; i++) {
        if (i < n)
            fz_write(g_files[i], part[i], len[i]);
        else
            fz_remove(g_files[i]);
    }
    lk_tokenizer *t = NULL;
    fz_clear_error();
    if (fz_check(lk_tokenizer_load(fz_dir(), &t), fz_dir()) != LK_OK)
        return 0;
    g_sink += strlen(lk_tokenizer_bos_str(t)) + strlen(lk_tokenizer_eos_str(t));
    chat(t);
    lk_tokenizer_free(t);
    return 0;
}
