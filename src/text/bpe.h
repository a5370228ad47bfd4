/* bpe.h — the BPE model of a Hugging Face tokenizer.json: vocabulary and merge-rank hash maps,
 * the GPT-2 byte-to-unicode map, and the merge loop for one pre-token (a linked list of symbols
 * with a binary heap of candidate pairs ordered by (rank, position), as tokenizers' BPE::merge_word
 * does); and the same loop ordered by piece scores, for llama.cpp's SentencePiece ("llama")
 * vocabularies, which have scores instead of merges. Internal to the tokenizer (prefix tok_). */
#ifndef LK_BPE_H
#define LK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"
#include "lorakit/core.h"

/* One merge: pair (a, b) -> new_id with priority rank (lower merges first). */
struct tok_merge {
    uint64_t key; /* (a << 32) | b; UINT64_MAX = empty slot */
    int32_t rank;
    int32_t new_id;
};

typedef struct {
    int64_t n_ids;     /* ids 0..n_ids-1 (holes have len -1) */
    char *strs;        /* token bytes, concatenated: raw bytes when byte_level */
    int64_t *off;      /* [n_ids] offset of each token in strs */
    int32_t *len;      /* [n_ids] byte length, -1 for an id the model does not define */
    int32_t *map;      /* open-addressing table of ids keyed by token bytes, -1 empty */
    uint64_t map_mask; /* table size - 1 */
    struct tok_merge *merges;
    uint64_t merge_mask;
    int64_t n_merges;
    int32_t byte_ids[256]; /* byte_level: id of the one-byte token; else <0xNN> ids (-1: none) */
    int32_t unk_id;        /* -1: no unk token (unknown characters are dropped, as HF does) */
    int fuse_unk;
    int byte_fallback;
    int ignore_merges;
    int byte_level; /* 1: vocabulary stored as raw bytes, units are bytes; 0: units are chars */
    int dup_last;   /* a string listed twice maps to its last id (llama.cpp), else its first */
    float *scores;  /* [n_ids] piece scores: the SentencePiece model of spm.c; NULL for BPE */
} tok_bpe;

/* Growable output of the encoder: ids with [start, end) byte offsets into the original text. */
typedef struct {
    int32_t *ids;
    uint32_t *start, *end;
    int64_t n;
    size_t cap;
} tok_out;

/* Scratch memory for tok_bpe_word, reused across words (one per encode call). */
typedef struct {
    void *syms;
    void *heap;
    size_t cap_syms, cap_heap; /* elements of syms and heap */
} tok_bpe_scratch;

/* GPT-2 byte-to-unicode map: the code point that stands for byte b, and the inverse (-1 when a
 * code point stands for no byte). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* Hash of a byte string (FNV-1a style, 64-bit). */
uint64_t tok_hash(const void *p, size_t n);

/* Id of the token with these bytes, or -1. */
int32_t tok_bpe_find(const tok_bpe *m, const char *s, size_t n);

/* Build the vocabulary hash map and byte tables after strs/off/len are filled. */
lk_status tok_bpe_index(tok_bpe *m);

/* Insert merge (a, b) -> new_id at rank; duplicates keep the first (lowest) rank. */
lk_status tok_bpe_add_merge(tok_bpe *m, int32_t a, int32_t b, int32_t new_id, int32_t rank);

/* Allocate the merge table for up to n merges. */
lk_status tok_bpe_alloc_merges(tok_bpe *m, int64_t n);

void tok_bpe_free(tok_bpe *m);

/* Tokenize one pre-token w[0..n): ids go to out; piece byte i came from original bytes
 * [ostart[i], oend[i]), so a token covering bytes [a, b) gets offsets [ostart[a], oend[b-1]). */
lk_status tok_bpe_word(const tok_bpe *m, const uint8_t *w, size_t n, const uint32_t *ostart,
                       const uint32_t *oend, tok_bpe_scratch *sc, tok_out *out);

void tok_bpe_scratch_free(tok_bpe_scratch *sc);

/* Tokenize w[0..n) as llama.cpp's "llama" (SentencePiece) vocabulary does (llm_tokenizer_spm):
 * start from UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is a token
 * with the highest score (leftmost on ties), then write each piece's id, or its bytes as byte
 * tokens (m->byte_ids; m->unk_id, else nothing, for a byte without one). Offsets as
 * tok_bpe_word. m->scores must be set. */
lk_status tok_spm_word(const tok_bpe *m, const uint8_t *w, size_t n, const uint32_t *ostart,
                       const uint32_t *oend, tok_bpe_scratch *sc, tok_out *out);

/* Append one id with offsets to out. */
lk_status tok_out_push(tok_out *out, int32_t id, uint32_t start, uint32_t end);

void tok_out_free(tok_out *out);

#endif /* LK_BPE_H */
