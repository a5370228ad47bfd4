/* fuzz_dataset.c — lk_dataset_load through the real line parser and tokenizer (stories260K's
 * tokenizer.json with a ChatML chat_template): the first input byte picks the options (bits 0-2
 * format, 3 packing, 4 strict, 5-6 seq_len, 7 a fixed chat format), the rest is the JSONL (or JSON
 * array) file. Then every kept example and skipped-line report is read, and a little more than one
 * epoch of packed rows is drawn, checking the row invariants (labels, positions, segments,
 * padding). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "lorakit/tokenizer.h"

static lk_tokenizer *g_tok;
static volatile int64_t g_sink;

static const char g_cfg[] =
    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_bos_token\": true, "
    "\"chat_template\": \"{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + "
    "m['content'] + '<|im_end|>\\n'}}{% endfor %}\"}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    fz_copy(LK_TEST_DATA "/bnb/stories260K-nf4-dq/tokenizer.json", "tokenizer.json");
    fz_write("tokenizer_config.json", g_cfg, strlen(g_cfg));
    if (lk_tokenizer_load(fz_dir(), &g_tok) != LK_OK)
        abort();
    return 0;
}

static void check_row(const lk_dataset *d, int32_t *tok, int32_t *lab, int32_t *pos, int32_t *seg)
{
    int64_t T = lk_dataset_seq_len(d), n_real = -1, n_ex = -1;
    if (lk_dataset_next_row((lk_dataset *)d, tok, lab, pos, seg, &n_real, &n_ex) != LK_OK)
        abort();
    if (n_real < 0 || n_real > T || n_ex < 0 || n_ex > T)
        abort();
    for (int64_t i = 0; i < T; i++) {
        int pad = i >= n_real;
        if (pad != (seg[i] < 0) || (pad && (lab[i] != LK_LABEL_IGNORE || pos[i] != 0)))
            abort();
        if (!pad && (seg[i] >= n_ex || tok[i] < 0 || tok[i] >= lk_tokenizer_vocab_size(g_tok)))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    char path[600];
    snprintf(path, sizeof path, "%s", fz_write("data.jsonl", data + 1, size - 1));
    struct lk_dataset_params p = lk_dataset_params_default();
    static const int64_t seq[4] = {1, 7, 64, 512};
    p.format = (lk_data_format)((ctl & 7) % LK_DATA_N_FORMATS);                    /* bits 0-2 */
    p.pack = (ctl >> 3) & 1;                                                       /* bit 3 */
    p.strict = (ctl >> 4) & 1;                                                     /* bit 4 */
    p.seq_len = seq[(ctl >> 5) & 3];                                               /* bits 5-6 */
    p.chat_format = ctl >> 7 ? (lk_chat_format)(1 + (ctl & 7) % 7) : LK_CHAT_AUTO; /* bit 7 */
    p.max_reported = 2;
    lk_dataset *d = NULL;
    fz_clear_error();
    if (fz_check(lk_dataset_load(path, g_tok, &p, &d), path) != LK_OK)
        return 0;
    const struct lk_dataset_stats *st = lk_dataset_get_stats(d);
    if (st->examples < 1 || st->examples + st->bad != st->lines || st->rows < 1)
        abort();
    for (int64_t i = 0; i < st->examples; i++) {
        const int32_t *ids, *labels;
        int64_t n, line;
        if (lk_dataset_example(d, i, &ids, &labels, &n, &line) != LK_OK || n < 0 || n > p.seq_len ||
            line < 1)
            abort();
        for (int64_t k = 0; k < n; k++)
            g_sink += ids[k] + labels[k];
    }
    int64_t line;
    for (int64_t k = 0; lk_dataset_bad(d, k, &line); k++)
        g_sink += (int64_t)strlen(lk_dataset_bad(d, k, &line)) + line;
    int64_t T = p.seq_len, rows = lk_dataset_rows_in_epoch(d) + 1;
    int32_t *buf = malloc((size_t)(4 * T) * sizeof *buf);
    if (!buf)
        abort();
    for (int64_t r = 0; r < rows && r < 64; r++)
        check_row(d, buf, buf + T, buf + 2 * T, buf + 3 * T);
    struct lk_data_cursor c;
    lk_dataset_get_cursor(d, &c);
    if (lk_dataset_set_cursor(d, &c) != LK_OK)
        abort();
    free(buf);
    lk_dataset_free(d);
    return 0;
}
