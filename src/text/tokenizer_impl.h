/* tokenizer_impl.h — the tokenizer object (struct lk_tokenizer and its pipeline steps) as the
 * tokenizer files share it, by layer (each calls only into the ones listed before it):
 *   tokenizer_pipeline.c  reading tokenizer.json's pipeline: normalizer, pre_tokenizer, decoder,
 *                         post_processor (and the JSON helpers of the tokenizer files);
 *   tokenizer_encode.c    normalising, added-token matching, pre-tokenizing, BPE (bpe.c), encode;
 *   tokenizer_decode.c    decode;
 *   tokenizer_gguf.c      loading a GGUF file's tokenizer.* metadata (llama.cpp's vocabularies,
 *                         pre-tokenizers from gguf_pre.c): calls the pipeline's regex compiler;
 *   tokenizer.c           loading (model, added tokens, tokenizer_config.json), free, queries:
 *                         calls the pipeline reader, tok_normalize of tokenizer_encode.c and the
 *                         GGUF loader.
 * Internal to those files (prefix tok_); chat.c and dataset.c use tokenizer.h. */
#ifndef LK_TOKENIZER_IMPL_H
#define LK_TOKENIZER_IMPL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <cjson/cJSON.h>
#include <pcre2.h>

#include "text/tokenizer.h"

/* N_UTF8: text read as llama.cpp reads it for byte-level BPE (invalid UTF-8 becomes U+FFFD) */
enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_PREPEND, N_REPLACE, N_UTF8 };
/* P_DIGITS: llama.cpp's digit-group splitter (AFMoE, Tiny Aya; see tokenizer_encode.c) */
enum { P_SPLIT, P_BYTELEVEL, P_METASPACE, P_DIGITS };
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
    int empty_splits;   /* Split: an empty match cuts the text there (llama.cpp's std::regex) */
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
    /* GGUF (tokenizer_gguf.c): kind TOK_GGUF_*, llama.cpp's token attributes, and the tokens
     * matched in raw text before anything else (llama.cpp's cache_special_tokens: control,
     * user-defined and unknown tokens, longest first; each is also in added, which raw_set
     * indexes by first byte) */
    int kind;
    uint16_t *attr;   /* [vocab_size] TOK_ATTR_* */
    int32_t *special; /* [n_special] ids, in the order llama.cpp cuts them out */
    int n_special;
    int add_space_prefix; /* SentencePiece: a "▁" before each piece of text */
    int clean_spaces;     /* decode: clean_up_tokenization_spaces */
};

/* lk_tokenizer.kind */
enum { TOK_HF = 0, TOK_GGUF_BPE = 1, TOK_GGUF_SPM = 2 };

/* llama.cpp's llama_token_attr bits */
enum {
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8
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

/* Compile a pre-tokenizer regex (PCRE2 UTF + UCP, JIT when available; literal: a plain string;
 * opts: more PCRE2 compile options). Append a step to t's normalizers / pre-tokenizers, which
 * then own its strings / regex (freed on failure too). */
lk_status tok_compile_re(lk_tokenizer *t, const char *pat, size_t len, int literal, uint32_t opts,
                         pcre2_code **out);
lk_status tok_add_norm(lk_tokenizer *t, const struct norm_step *ns);
lk_status tok_add_pre(lk_tokenizer *t, const struct pre_step *ps);

/* ---- tokenizer_encode.c ---- */

/* s[0..n) put through t's normalizer chain: *out malloc'd and NUL-terminated, *out_len bytes. */
lk_status tok_normalize(const lk_tokenizer *t, const char *s, size_t n, char **out,
                        size_t *out_len);

/* ---- tokenizer_gguf.c ---- */

/* Fill t (zeroed, path set, bos/eos -1) from the tokenizer.* metadata of the GGUF file at path:
 * vocabulary, model, pre-tokenizer, token attributes, special tokens and flags, chat template,
 * added (the special tokens) and added_of_id. The caller builds raw_set and frees t on error. */
lk_status tok_load_gguf(lk_tokenizer *t, const char *path);

#endif /* LK_TOKENIZER_IMPL_H */
