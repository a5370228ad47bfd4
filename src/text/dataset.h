/* dataset.h — the dataset object as the dataset files share it, by layer: dataset_format.c turns
 * one JSON record into an example (format detection, field mapping, text / prompt-completion /
 * Alpaca / messages / pre-tokenised records); dataset.c loads a file record by record through it,
 * keeps the examples, and serves packed rows in a shuffled order with a cursor. dataset.c calls
 * into dataset_format.c, never the other way. Internal to those files (prefix dataset_). */
#ifndef LK_DATASET_H
#define LK_DATASET_H

#include <cjson/cJSON.h>

#include "lorakit/tokenizer.h"
#include "text/chat.h"

/* The canonical record keys (--fields maps each to a column name). */
enum {
    K_TEXT,
    K_PROMPT,
    K_COMPLETION,
    K_MESSAGES,
    K_CONVERSATIONS,
    K_INSTRUCTION,
    K_INPUT,
    K_OUTPUT,
    K_INPUT_IDS,
    K_LABELS,
    K_TOOLS,
    N_KEYS
};

struct bad_rec {
    int64_t line;
    char *msg;
};

struct lk_dataset {
    char *path;
    const lk_tokenizer *t; /* during lk_dataset_load only (NULL after) */
    int32_t pad;           /* the rows' padding id: the tokenizer's EOS (0 without), or p.pad_id */
    struct lk_dataset_params p;
    char *col[N_KEYS]; /* column name of each canonical key */
    lk_chat_format chat;
    char *chat_system;    /* ChatML default system prompt found in the template, or NULL */
    int array_file;       /* "element N" instead of "line N" in messages */
    int64_t line;         /* the record being read (for messages) */
    char skip_group[240]; /* why the record being read is skipped, when the reason is the same
                           * for every record that has it (a role the template lacks): counted
                           * in groups[] and reported once; "" otherwise */
    struct skip_count {
        char why[240];
        int64_t n;
    } groups[8];
    int n_groups;
    int64_t reported_apart; /* bad records counted in groups[] */
    /* examples: ids/labels pools, per example offset/length/line */
    int32_t *ids, *labels;
    int64_t n_tok;
    size_t cap_tok;
    int64_t *ex_off, *ex_len, *ex_line;
    int64_t n_ex;
    size_t cap_ex;
    struct bad_rec *bad;
    int64_t n_bad_kept;
    struct lk_dataset_stats st;
    int64_t *order;     /* [n_ex] this epoch's example order */
    int64_t *row_start; /* [n_ex + 1] rows of this epoch: examples row_items[row_start[r]..] */
    int64_t *row_items; /* [n_ex] */
    int64_t *pack;      /* [2·pack_leaves(n_ex) + 2·n_ex + 1] pack_rows' work memory */
    struct lk_data_cursor cur;
    int64_t rows_in_epoch;
    int64_t last_row; /* row of this epoch last returned by next_row; -1: none since the cursor
                       * was set (or the load) */
};

/* One example under construction. */
struct ex_buf {
    int32_t *ids, *labels;
    int64_t n;
    size_t cap;
};

/* ---- dataset_format.c ---- */

/* Append one token with its label (LK_LABEL_IGNORE: no loss). */
lk_status dataset_ex_push(struct ex_buf *e, int32_t id, int32_t label);

/* Each item of a --fields list (NULL: none) is KEY=COLUMN; the column of each item goes to
 * col[key] when col is not NULL (NULL: only check the list). */
lk_status dataset_walk_fields(const char *spec, char **col);

/* d->col[] from a --fields spec "KEY=COLUMN,..." (NULL: every key its own name). */
lk_status dataset_parse_fields(lk_dataset *d, const char *spec);

/* Record o as an example appended to e, in the format d->p.format or the one detected (*fmt).
 * LK_ERR_FORMAT: a bad record, to be skipped, with the reason in why[256]; other errors are
 * fatal. */
lk_status dataset_build_example(lk_dataset *d, const cJSON *o, struct ex_buf *e, char *why,
                                lk_data_format *fmt);

#endif /* LK_DATASET_H */
