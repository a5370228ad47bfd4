/* tokenizer_impl.h — the tokenizer object (struct lk_tokenizer and its pipeline steps) as the
 * tokenizer files share it, by layer (each calls only into the ones listed before it):
 *   tokenizer_pipeline.c  reading tokenizer.json's pipeline: normalizer, pre_tokenizer, decoder,
 *                         post_processor (and the JSON helpers of the tokenizer files);
 *   tokenizer_encode.c    normalising, added-token matching, pre-tokenizing, BPE (bpe.c), encode;
 *   tokenizer_decode.c    decode;
 *   tokenizer.c           loading (model, added tokens, tokenizer_config.json), free, queries:
 *                         calls the pipeline reader and tok_normalize of tokenizer_encode.c.
 * Internal to those files (prefix tok_); chat.c and dataset.c use tokenizer.h. */
#ifndef LK_TOKENIZER_IMPL_H
#define LK_TOKENIZER_IMPL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <cjson/cJSON.h>
#include <pcre2.h>

#include "text/tokenizer.h"

enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_PREPEND, N_REPLACE };
enum { P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum { B_ISOLATED, B_REMOVED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE, D_NONE };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

struct norm_step {
    int kind;
    char *a, *b; /* Prepend: a; Replace: a -> b */
    size_t alen, blen;
};

struct pre_step {
    int kind;
    pcre2_code *re; /* Split, ByteLevel with use_regex */
    int behavior;
    int add_prefix_space; /* ByteLevel */
    char repl[8];         /* Metaspace replacement character (UTF-8) */
    size_t repl_len;
    int prepend_scheme; /* Metaspace */
    int split;          /* Metaspace */
};

struct dec_step {
    int kind;
    char *a, *b; /* Replace a -> b; Strip content a; Metaspace replacement a */
    size_t alen, blen;
    int start, stop;    /* Strip */
    int prepend_scheme; /* Metaspace */
};

struct added {
    char *content; /* as written in tokenizer.json */
    size_t len;
    char *pat; /* pattern matched: content, normalised when normalized */
    size_t pat_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
    int skip; /* decode with skip_special drops it: pat is the content of a special token */
};

/* Added tokens of one pass, bucketed by first byte, longest first within a bucket. */
struct added_set {
    int32_t *idx; /* indices into lk_tokenizer.added */
    int32_t begin[257];
};

struct lk_tokenizer {
    char *path; /* tokenizer.json path, for messages */
    tok_bpe bpe;
    struct norm_step *norm;
    int n_norm;
    size_t cap_norm;
    struct pre_step *pre;
    int n_pre;
    size_t cap_pre;
    struct dec_step *dec;
    int n_dec;
    size_t cap_dec;
    struct added *added;
    int n_added;
    struct added_set raw_set, norm_set;
    int32_t *added_of_id; /* [vocab_size] index into added or -1 */
    int64_t vocab_size;
    int32_t bos, eos;
    char *bos_str, *eos_str;
    int32_t tmpl_pre[4], tmpl_post[4]; /* ids the post-processor puts around a sequence */
    int n_tmpl_pre, n_tmpl_post;
    int spm_split;    /* model_split is exact for this vocabulary (see there) */
    int n_added_json; /* entries of added_tokens (for the id bound while loading) */
    int cfg_flags;    /* tokenizer_config.json sets add_bos_token or add_eos_token */
    int add_bos, add_eos;
    char *chat_template;
};

/* ---- tokenizer_pipeline.c ---- */

/* LK_ERR_FORMAT "PATH: message". */
lk_status tok_bad(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define BAD(t, ...) tok_bad((t)->path, __VA_ARGS__)

/* LK_ERR_UNSUPPORTED "PATH: WHAT type 'TYPE' is not supported ...". */
lk_status tok_unsupported(const lk_tokenizer *t, const char *what, const char *type);

/* o[key] as a string (NULL if absent or not a string) / as a bool (def if absent or not one). */
const char *tok_jstr(const cJSON *o, const char *key);
int tok_jbool(const cJSON *o, const char *key, int def);

/* malloc'd copy of s; its length to *len when len is not NULL. NULL when out of memory. */
char *tok_strdup(const char *s, size_t *len);

/* Append the steps of tokenizer.json's "normalizer", "pre_tokenizer", "decoder" to t's lists
 * (Sequence entries recursively; a pre-tokenizer ByteLevel sets t->bpe.byte_level), and read
 * "post_processor" into t's BOS/EOS templates. j NULL or null: nothing. */
lk_status tok_parse_normalizer(lk_tokenizer *t, const cJSON *j);
lk_status tok_parse_pretokenizer(lk_tokenizer *t, const cJSON *j);
lk_status tok_parse_decoder(lk_tokenizer *t, const cJSON *j);
lk_status tok_parse_post(lk_tokenizer *t, const cJSON *j);

/* ---- tokenizer_encode.c ---- */

/* s[0..n) put through t's normalizer chain: *out malloc'd and NUL-terminated, *out_len bytes. */
lk_status tok_normalize(const lk_tokenizer *t, const char *s, size_t n, char **out,
                        size_t *out_len);

#endif /* LK_TOKENIZER_IMPL_H */
