/* gguf_pre.h — llama.cpp's byte-level BPE pre-tokenizers by `tokenizer.ggml.pre` name: the regex
 * list each applies in turn and the flags the name sets (the table lives in gguf_pre.c, and
 * follows src/llama-vocab.cpp of llama.cpp 0c1e57098). Internal to the tokenizer (prefix tok_). */
#ifndef LK_GGUF_PRE_H
#define LK_GGUF_PRE_H

/* Flags a pre-tokenizer name sets, as llama_vocab::impl::load does. */
enum {
    TOK_PRE_IGNORE_MERGES = 1, /* a whole pre-token that is a token is not merged (llama3, ...) */
    TOK_PRE_ADD_BOS = 2,       /* add_bos defaults to true (tokenizer.ggml.add_bos_token wins) */
    TOK_PRE_CLEAN_SPACES = 4,  /* decoding removes " ," " 's" ... (clean_up_tokenization_spaces) */
    TOK_PRE_NO_BOS = 8,        /* no default BOS id (chatglm) */
    TOK_PRE_DIGIT_GROUPS = 16  /* the first regex is llama.cpp's digit-group splitter (see the
                                * table), not a regular expression */
};

struct tok_gguf_pre {
    const char *const *regex; /* applied in order, NULL-terminated; NULL: not supported */
    int flags;
    const char *why; /* unsupported: what lorakit lacks */
};

/* The pre-tokenizer of name, or NULL when llama.cpp does not know the name either. An entry with
 * regex NULL is one llama.cpp knows but lorakit does not implement (why says what it needs). */
const struct tok_gguf_pre *tok_gguf_pre_find(const char *name);

/* The names, one by one (i from 0; NULL past the end): for messages and tests. */
const char *tok_gguf_pre_name(int i);

#endif /* LK_GGUF_PRE_H */
