/* tokenizer.h — internals of the tokenizer shared with chat.c and dataset.c (prefix tok_). */
#ifndef LK_TOKENIZER_INTERNAL_H
#define LK_TOKENIZER_INTERNAL_H

#include "lorakit/tokenizer.h"

#include "bpe.h"

/* Encode into a tok_out (ids with original byte offsets); caller frees with tok_out_free. */
lk_status tok_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                     tok_out *out);

/* tok_encode with the word cache forced on (cache 1), off (0) or chosen by length (-1). */
lk_status tok_encode_ex(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                        int cache, tok_out *out);

#endif /* LK_TOKENIZER_INTERNAL_H */
