/* tokenizer.h — internals of the tokenizer shared with chat.c and dataset.c (prefix tok_). */
#ifndef LK_TOKENIZER_INTERNAL_H
#define LK_TOKENIZER_INTERNAL_H

#include "lorakit/tokenizer.h"

#include "text/bpe.h"

/* Encode into a tok_out (ids with original byte offsets); caller frees with tok_out_free. */
lk_status tok_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                     tok_out *out);

/* tok_encode choosing the path: fast 0 is the plain one (every pre-token modelled whole, no
 * cache) that the fast paths are tested against; 1 forces the word cache on; -1 (tok_encode)
 * uses the cache for texts of 4 KiB or more. The SentencePiece split runs whenever fast != 0. */
lk_status tok_encode_ex(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                        int fast, tok_out *out);

#endif /* LK_TOKENIZER_INTERNAL_H */
