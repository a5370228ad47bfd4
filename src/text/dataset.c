/* dataset.c — JSONL (or JSON array) training data: every record becomes an example through
 * dataset_format.c, truncated to seq_len, kept in one pool; then served as packed rows with
 * per-example positions and segment ids, in a per-epoch shuffled order with a saveable cursor. */
#include "text/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mapfile.h"
#include "core/rng.h"
#include "core/option.h"
#include "core/status.h"

#define MAX_BAD_KEPT 1000

/* ---- loading -------------------------------------------------------------------------------- */

/* An example that trains nothing once cut to n tokens: counted, and when truncation is the
 * cause, the row length that keeps its first trained token (labels[t] is predicted from position
 * t - 1, so t + 1 tokens) noted. */
static void count_untrained(lk_dataset *d, const struct ex_buf *e, int64_t n)
{
    int64_t first = -1, kept = 0;
    for (int64_t i = 0; i < e->n; i++)
        if (e->labels[i] != LK_LABEL_IGNORE && i > 0) {
            if (first < 0)
                first = i;
            kept += i < n;
        }
    if (kept)
        return;
    d->st.untrained++;
    if (first >= n) {
        d->st.truncated_untrained++;
        if (first + 1 > d->st.seq_len_to_train)
            d->st.seq_len_to_train = first + 1;
    }
}

static lk_status keep_example(lk_dataset *d, struct ex_buf *e, int64_t line, lk_data_format f)
{
    int64_t n = e->n;
    if (n > d->p.seq_len) {
        d->st.truncated++;
        d->st.truncated_tokens += n - d->p.seq_len;
        n = d->p.seq_len;
    }
    count_untrained(d, e, n);
    struct buf_arr ex[] = {BUF_ARR(&d->ex_off), BUF_ARR(&d->ex_len), BUF_ARR(&d->ex_line)};
    struct buf_arr tok[] = {BUF_ARR(&d->ids), BUF_ARR(&d->labels)};
    LK_TRY(buf_grow_all(ex, 3, &d->cap_ex, (size_t)d->n_ex + 1, "dataset: examples"));
    LK_TRY(buf_grow_all(tok, 2, &d->cap_tok, (size_t)(d->n_tok + n), "dataset: tokens"));
    memcpy(d->ids + d->n_tok, e->ids, (size_t)n * sizeof *e->ids);
    memcpy(d->labels + d->n_tok, e->labels, (size_t)n * sizeof *e->labels);
    for (int64_t i = 0; i < n; i++)
        d->st.trained_tokens += e->labels[i] != LK_LABEL_IGNORE;
    d->ex_off[d->n_ex] = d->n_tok;
    d->ex_len[d->n_ex] = n;
    d->ex_line[d->n_ex++] = line;
    d->n_tok += n;
    d->st.tokens += n;
    d->st.by_format[f]++;
    return LK_OK;
}

/* A skip shared by many records (d->skip_group): counted, reported once by log_summary. Returns
 * 0 when the group table is full (the record is then reported on its own). */
static int count_group(lk_dataset *d)
{
    int g = 0;
    while (g < d->n_groups && strcmp(d->groups[g].why, d->skip_group))
        g++;
    if (g == (int)(sizeof d->groups / sizeof *d->groups))
        return 0;
    if (g == d->n_groups)
        snprintf(d->groups[d->n_groups++].why, sizeof d->groups[0].why, "%s", d->skip_group);
    d->groups[g].n++;
    return 1;
}

static lk_status record_bad(lk_dataset *d, int64_t line, const char *why)
{
    const char *unit = d->array_file ? "element" : "line";
    d->st.bad++;
    if (d->p.strict)
        return status_fail(LK_ERR_FORMAT, "%s: %s %lld: %s (--strict: bad examples are fatal)",
                           d->path, unit, (long long)line, why);
    if (*d->skip_group && count_group(d))
        d->reported_apart++;
    else if (d->st.bad - d->reported_apart <= d->p.max_reported)
        log_warn("%s: %s %lld: %s (skipped)", d->path, unit, (long long)line, why);
    if (d->n_bad_kept < MAX_BAD_KEPT) {
        if (!d->bad && !(d->bad = calloc(MAX_BAD_KEPT, sizeof *d->bad)))
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        size_t n = strlen(why);
        char *m = malloc(n + 1);
        if (!m)
            return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
        memcpy(m, why, n + 1);
        d->bad[d->n_bad_kept++] = (struct bad_rec){line, m};
    }
    return LK_OK;
}

/* One example: parsed object o (NULL: the text did not parse). */
static lk_status add_example(lk_dataset *d, const cJSON *o, int64_t line, struct ex_buf *e)
{
    char why[256] = "invalid JSON";
    lk_data_format f = LK_DATA_AUTO;
    d->st.lines++;
    d->line = line;
    d->skip_group[0] = 0;
    e->n = 0;
    lk_status s = o ? dataset_build_example(d, o, e, why, &f) : LK_ERR_FORMAT;
    if (s == LK_ERR_FORMAT)
        return record_bad(d, line, why);
    if (s != LK_OK)
        return s;
    return keep_example(d, e, line, f);
}

static lk_status load_lines(lk_dataset *d, const char *buf, size_t n)
{
    struct ex_buf e = {0};
    lk_status s = LK_OK;
    int64_t line = 0;
    for (size_t pos = 0; s == LK_OK && pos < n;) {
        const char *nl = memchr(buf + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - buf) : n;
        line++;
        size_t a = pos;
        while (a < end && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
            a++;
        if (a < end) {
            cJSON *o = cJSON_ParseWithLength(buf + pos, end - pos);
            s = add_example(d, o, line, &e);
            cJSON_Delete(o);
        }
        pos = end + 1;
    }
    free(e.ids);
    free(e.labels);
    return s;
}

static lk_status load_array(lk_dataset *d, const char *buf, size_t n)
{
    cJSON *root = cJSON_ParseWithLength(buf, n);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return status_fail(LK_ERR_FORMAT,
                           "%s: starts with '[' but is not a valid JSON array "
                           "(hint: JSON Lines has one object per line)",
                           d->path);
    }
    d->array_file = 1;
    struct ex_buf e = {0};
    lk_status s = LK_OK;
    int64_t k = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, root)
    {
        if (s == LK_OK)
            s = add_example(d, o, ++k, &e);
    }
    free(e.ids);
    free(e.labels);
    cJSON_Delete(root);
    return s;
}

/* ---- order, packing, cursor ------------------------------------------------------------------ */

/* Leaves of pack_rows' segment tree over n examples: a power of two >= n. */
static int64_t pack_leaves(int64_t n)
{
    int64_t size = 1;
    while (size < n)
        size *= 2;
    return size;
}

/* Pack this epoch's order into rows by first-fit: each example goes to the earliest row with
 * room for it (a segment tree over rows holds the largest free space below each node, so a
 * placement is O(log rows)); rows keep their examples in order of placement. With pack 0 every
 * example is its own row. Fills row_start/row_items (CSR) and rows_in_epoch; the work memory is
 * d->pack, allocated with the dataset (a new epoch inside a training step allocates nothing). */
static void pack_rows(lk_dataset *d)
{
    int64_t n = d->n_ex, T = d->p.seq_len, size = pack_leaves(n);
    int64_t *tree = d->pack;           /* [2·size] max free space per node */
    int64_t *row_of = tree + 2 * size; /* [n] */
    int64_t *count = row_of + n;       /* [n + 1] */
    memset(count, 0, (size_t)(n + 1) * sizeof *count);
    for (int64_t i = 0; i < 2 * size; i++)
        tree[i] = T; /* every (not yet opened) row is empty */
    int64_t rows = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t len = d->ex_len[d->order[k]], node = 1;
        if (!d->p.pack) {
            row_of[k] = rows++;
            continue;
        }
        while (node < size) /* leftmost leaf with free >= len (the root always has T >= len) */
            node = tree[2 * node] >= len ? 2 * node : 2 * node + 1;
        int64_t r = node - size;
        row_of[k] = r;
        if (r + 1 > rows)
            rows = r + 1;
        for (tree[node] -= len, node /= 2; node >= 1; node /= 2)
            tree[node] = tree[2 * node] > tree[2 * node + 1] ? tree[2 * node] : tree[2 * node + 1];
    }
    for (int64_t k = 0; k < n; k++)
        count[row_of[k] + 1]++;
    for (int64_t r = 0; r < rows; r++)
        count[r + 1] += count[r];
    for (int64_t r = 0; r <= rows; r++)
        d->row_start[r] = count[r];
    for (int64_t k = 0; k < n; k++) /* stable: examples keep their order within a row */
        d->row_items[count[row_of[k]]++] = d->order[k];
    d->rows_in_epoch = rows;
}

static void make_order(lk_dataset *d, uint64_t epoch)
{
    for (int64_t i = 0; i < d->n_ex; i++)
        d->order[i] = i;
    if (d->p.shuffle) { /* Fisher-Yates from the (seed, "shuffle", epoch) stream */
        rng_state r;
        rng_seed(&r, d->p.seed, rng_purpose("dataset-shuffle", epoch));
        for (int64_t i = d->n_ex - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
            int64_t tmp = d->order[i];
            d->order[i] = d->order[j];
            d->order[j] = tmp;
        }
    }
    pack_rows(d);
}

lk_status lk_dataset_next_row(lk_dataset *d, int32_t *tokens, int32_t *labels, int32_t *pos,
                              int32_t *seg, int64_t *n_real, int64_t *n_examples)
{
    if (!d || !tokens || !labels || !pos || !seg)
        return status_fail(LK_ERR_ARG, "lk_dataset_next_row: NULL argument");
    if (d->cur.next >= d->rows_in_epoch) {
        d->last_row = -1;
        make_order(d, d->cur.epoch + 1);
        d->cur.epoch++;
        d->cur.next = 0;
    }
    int64_t T = d->p.seq_len, used = 0, r = d->cur.next++;
    d->last_row = r;
    int64_t a = d->row_start[r], b = d->row_start[r + 1];
    for (int64_t k = a; k < b; k++) {
        int64_t i = d->row_items[k], len = d->ex_len[i];
        memcpy(tokens + used, d->ids + d->ex_off[i], (size_t)len * sizeof *tokens);
        memcpy(labels + used, d->labels + d->ex_off[i], (size_t)len * sizeof *labels);
        for (int64_t j = 0; j < len; j++) {
            pos[used + j] = (int32_t)j;
            seg[used + j] = (int32_t)(k - a);
        }
        used += len;
    }
    const int32_t pad = d->pad;
    for (int64_t k = used; k < T; k++) {
        tokens[k] = pad;
        labels[k] = LK_LABEL_IGNORE;
        pos[k] = 0;
        seg[k] = -1;
    }
    if (n_real)
        *n_real = used;
    if (n_examples)
        *n_examples = b - a;
    return LK_OK;
}

void lk_dataset_attention_mask(const int32_t *seg, int64_t T, uint8_t *mask)
{
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++)
            mask[i * T + j] = (uint8_t)(j <= i && seg[i] >= 0 && seg[i] == seg[j]);
}

void lk_dataset_get_cursor(const lk_dataset *d, struct lk_data_cursor *c)
{
    *c = d->cur;
}

lk_status lk_dataset_set_cursor(lk_dataset *d, const struct lk_data_cursor *c)
{
    if (!d || !c || c->next < 0)
        return status_fail(LK_ERR_ARG, "data cursor: NULL or negative row");
    d->last_row = -1; /* the packing may change: no row was returned from this cursor yet */
    if (c->epoch != d->cur.epoch)
        make_order(d, c->epoch);
    d->cur.epoch = c->epoch;
    if (c->next > d->rows_in_epoch)
        return status_fail(LK_ERR_ARG,
                           "data cursor: row %lld is past the %lld rows of epoch "
                           "%llu (hint: resuming with a different dataset or "
                           "--seq-len?)",
                           (long long)c->next, (long long)d->rows_in_epoch,
                           (unsigned long long)c->epoch);
    d->cur = *c;
    return LK_OK;
}

lk_status lk_dataset_row_examples(const lk_dataset *d, int64_t *idx, int64_t max, int64_t *n)
{
    if (!d || !n || (max > 0 && !idx))
        return status_fail(LK_ERR_ARG, "lk_dataset_row_examples: NULL argument");
    *n = 0;
    if (d->last_row < 0)
        return status_fail(LK_ERR_ARG,
                           "lk_dataset_row_examples: no row returned since the load or the last "
                           "lk_dataset_set_cursor");
    int64_t a = d->row_start[d->last_row], b = d->row_start[d->last_row + 1];
    if (b - a > max)
        return status_fail(LK_ERR_ARG,
                           "lk_dataset_row_examples: the row holds %lld examples, idx "
                           "only %lld",
                           (long long)(b - a), (long long)max);
    memcpy(idx, d->row_items + a, (size_t)(b - a) * sizeof *idx);
    *n = b - a;
    return LK_OK;
}

int64_t lk_dataset_rows_in_epoch(const lk_dataset *d)
{
    return d->rows_in_epoch;
}

/* ---- public --------------------------------------------------------------------------------- */

struct lk_dataset_params lk_dataset_params_default(void)
{
    return (struct lk_dataset_params){.seq_len = 2048,
                                      .pack = 1,
                                      .format = LK_DATA_AUTO,
                                      .chat_format = LK_CHAT_AUTO,
                                      .chat_date = NULL,
                                      .fields = NULL,
                                      .strict = 0,
                                      .shuffle = 1,
                                      .seed = 42,
                                      .max_reported = 10,
                                      .vocab_size = 0,
                                      .pad_id = 0};
}

lk_status lk_dataset_params_check(const struct lk_dataset_params *p)
{
    if (p->seq_len < 1)
        return option_range_i("--seq-len", p->seq_len, "at least 1");
    if ((unsigned)p->format >= LK_DATA_N_FORMATS)
        return option_choice_i("format", p->format,
                               "auto, messages, tokens, alpaca, prompt_completion or text");
    if ((unsigned)p->chat_format > LK_CHAT_ALPACA)
        return option_choice_i("--chat-template", p->chat_format,
                               "chatml, qwen2.5, llama3, llama3.1, llama2, mistral or alpaca");
    if (p->max_reported < 0)
        return option_range_i("max_reported", p->max_reported, "at least 0");
    if (p->vocab_size < 0 || p->pad_id < 0)
        return status_fail(LK_ERR_ARG, "dataset: vocab_size %lld and pad_id %d must be >= 0",
                           (long long)p->vocab_size, (int)p->pad_id);
    return dataset_walk_fields(p->fields, NULL);
}

const char *lk_data_format_name(lk_data_format f)
{
    static const char *const names[] = {"auto",   "messages",          "tokens",
                                        "alpaca", "prompt_completion", "text"};
    return f >= 0 && f < LK_DATA_N_FORMATS ? names[f] : "unknown";
}

/* The rows the examples fill: packing for training data, one row each otherwise. */
static void log_rows(const lk_dataset *d)
{
    const struct lk_dataset_stats *s = &d->st;
    if (d->p.pack)
        log_info("%s: %lld examples (%lld skipped), %lld tokens, %lld trained (%.1f%%), packed "
                 "into %lld rows of %lld tokens (%.1f%% filled), %lld truncated (%lld tokens cut)",
                 d->path, (long long)s->examples, (long long)s->bad, (long long)s->tokens,
                 (long long)s->trained_tokens,
                 s->tokens ? 100.0 * (double)s->trained_tokens / (double)s->tokens : 0.0,
                 (long long)s->rows, (long long)d->p.seq_len, 100.0 * s->packing_efficiency,
                 (long long)s->truncated, (long long)s->truncated_tokens);
    else
        log_info("%s: %lld examples (%lld skipped), %lld tokens, %lld with a label (%.1f%%), "
                 "each example on its own (up to %lld tokens), %lld truncated (%lld tokens cut)",
                 d->path, (long long)s->examples, (long long)s->bad, (long long)s->tokens,
                 (long long)s->trained_tokens,
                 s->tokens ? 100.0 * (double)s->trained_tokens / (double)s->tokens : 0.0,
                 (long long)d->p.seq_len, (long long)s->truncated, (long long)s->truncated_tokens);
}

/* Examples that train nothing: a warning when truncation made a tenth of them so (or more). */
static void log_untrained(const lk_dataset *d)
{
    const struct lk_dataset_stats *s = &d->st;
    if (s->truncated_untrained) {
        int big = 10 * s->truncated_untrained >= s->examples;
        log_msg(big ? LK_LOG_WARN : LK_LOG_INFO,
                "%s: %lld of %lld examples (%.1f%%) lost every trained token to truncation at "
                "--seq-len %lld (their prompts fill the row) and train nothing (hint: --seq-len "
                "%lld keeps a trained token in each)",
                d->path, (long long)s->truncated_untrained, (long long)s->examples,
                100.0 * (double)s->truncated_untrained / (double)s->examples,
                (long long)d->p.seq_len, (long long)s->seq_len_to_train);
    }
    if (s->untrained > s->truncated_untrained)
        log_info("%s: %lld examples have no token to train on (every label -100)", d->path,
                 (long long)(s->untrained - s->truncated_untrained));
}

static void log_summary(const lk_dataset *d)
{
    const struct lk_dataset_stats *s = &d->st;
    log_rows(d);
    if (s->truncated)
        log_warn("%s: %lld examples longer than --seq-len %lld were truncated", d->path,
                 (long long)s->truncated, (long long)d->p.seq_len);
    log_untrained(d);
    for (int g = 0; g < d->n_groups; g++)
        log_warn("%s: %lld examples skipped: %s", d->path, (long long)d->groups[g].n,
                 d->groups[g].why);
    if (s->bad > d->reported_apart) {
        char lines[200] = "";
        for (int64_t k = 0; k < d->n_bad_kept && k < 10; k++)
            snprintf(lines + strlen(lines), sizeof lines - strlen(lines), "%s%lld", k ? ", " : "",
                     (long long)d->bad[k].line);
        log_warn("%s: %lld bad examples skipped (%s %s%s)", d->path,
                 (long long)(s->bad - d->reported_apart), d->array_file ? "elements" : "lines",
                 lines, s->bad > 10 ? ", ..." : "");
    }
}

static lk_status finish_load(lk_dataset *d)
{
    d->st.examples = d->n_ex;
    /* every line unreadable as JSON: most likely plain text given where JSON Lines go */
    int text = d->st.lines > 0 && d->st.bad == d->st.lines && d->n_bad_kept &&
               strncmp(d->bad[0].msg, "invalid JSON", 12) == 0;
    if (d->n_ex == 0)
        return status_fail(LK_ERR_FORMAT, "%s: no usable examples (%lld read, %lld bad%s%s)%s",
                           d->path, (long long)d->st.lines, (long long)d->st.bad,
                           d->n_bad_kept ? "; first: " : "", d->n_bad_kept ? d->bad[0].msg : "",
                           text ? " (hint: training data is JSON Lines or a JSON array of "
                                  "examples; plain text goes one {\"text\": ...} object per "
                                  "document)"
                                : "");
    d->order = malloc((size_t)d->n_ex * sizeof *d->order);
    d->row_start = malloc((size_t)(d->n_ex + 1) * sizeof *d->row_start);
    d->row_items = malloc((size_t)d->n_ex * sizeof *d->row_items);
    d->pack = malloc((size_t)(2 * pack_leaves(d->n_ex) + 2 * d->n_ex + 1) * sizeof *d->pack);
    if (!d->order || !d->row_start || !d->row_items || !d->pack)
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    make_order(d, 0);
    d->st.rows = d->rows_in_epoch;
    d->st.packing_efficiency = (double)d->st.tokens / ((double)d->st.rows * (double)d->p.seq_len);
    log_summary(d);
    return LK_OK;
}

lk_status lk_dataset_load(const char *path, const lk_tokenizer *t,
                          const struct lk_dataset_params *p, lk_dataset **out)
{
    struct lk_dataset_params def = lk_dataset_params_default();
    if (!path || !out)
        return status_fail(LK_ERR_ARG, "lk_dataset_load: NULL argument");
    *out = NULL;
    if (!p)
        p = &def;
    LK_TRY(lk_dataset_params_check(p));
    if (!t && p->vocab_size < 1)
        return status_fail(LK_ERR_ARG, "lk_dataset_load: without a tokenizer, vocab_size must be "
                                       "given (the model's)");
    lk_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return status_fail(LK_ERR_NOMEM, "dataset: out of memory");
    }
    d->t = t;
    d->p = *p;
    d->last_row = -1;
    d->p.fields = NULL; /* borrowed; the mapping is copied into col[] */
    d->chat = p->chat_format;
    char *buf = NULL;
    size_t n = 0;
    lk_status s = dataset_parse_fields(d, p->fields);
    if (s == LK_OK)
        s = read_text_file(path, (size_t)1 << 34, &buf, &n);
    if (s == LK_OK) {
        size_t a = n >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0; /* UTF-8 BOM */
        if (a) /* blank it so line 1 still parses */
            memset(buf, ' ', 3);
        while (a < n && (buf[a] == ' ' || buf[a] == '\n' || buf[a] == '\r' || buf[a] == '\t'))
            a++;
        s = a < n && buf[a] == '[' ? load_array(d, buf, n) : load_lines(d, buf, n);
    }
    d->p.chat_date = NULL; /* borrowed for the load only */
    free(buf);
    if (s == LK_OK)
        s = finish_load(d);
    if (s != LK_OK) {
        lk_dataset_free(d);
        return s;
    }
    d->pad = !t ? p->pad_id : lk_tokenizer_eos(t) >= 0 ? lk_tokenizer_eos(t) : 0;
    d->t = NULL; /* used by the load only: the caller may free it now */
    *out = d;
    return LK_OK;
}

void lk_dataset_free(lk_dataset *d)
{
    if (!d)
        return;
    for (int64_t k = 0; k < d->n_bad_kept; k++)
        free(d->bad[k].msg);
    for (int k = 0; k < N_KEYS; k++)
        free(d->col[k]);
    free(d->bad);
    free(d->chat_system);
    free(d->ids);
    free(d->labels);
    free(d->ex_off);
    free(d->ex_len);
    free(d->ex_line);
    free(d->order);
    free(d->row_start);
    free(d->row_items);
    free(d->pack);
    free(d->path);
    free(d);
}

const struct lk_dataset_stats *lk_dataset_get_stats(const lk_dataset *d)
{
    return &d->st;
}

lk_status lk_dataset_example(const lk_dataset *d, int64_t i, const int32_t **ids,
                             const int32_t **labels, int64_t *n, int64_t *line)
{
    if (!d || i < 0 || i >= d->n_ex)
        return status_fail(LK_ERR_ARG, "dataset: example %lld out of range [0, %lld)", (long long)i,
                           d ? (long long)d->n_ex : 0LL);
    if (ids)
        *ids = d->ids + d->ex_off[i];
    if (labels)
        *labels = d->labels + d->ex_off[i];
    if (n)
        *n = d->ex_len[i];
    if (line)
        *line = d->ex_line[i];
    return LK_OK;
}

const char *lk_dataset_bad(const lk_dataset *d, int64_t k, int64_t *line)
{
    if (!d || k < 0 || k >= d->n_bad_kept)
        return NULL;
    if (line)
        *line = d->bad[k].line;
    return d->bad[k].msg;
}

int64_t lk_dataset_seq_len(const lk_dataset *d)
{
    return d->p.seq_len;
}
