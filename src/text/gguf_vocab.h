/* gguf_vocab.h — a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) as GGUF
 * tokenizer.ggml.* metadata, the way llama.cpp's convert_hf_to_gguf.py stores it. */
#ifndef LK_GGUF_VOCAB_H
#define LK_GGUF_VOCAB_H

#include "formats/gguf.h"
#include "lorakit/model.h"

/* Add the tokenizer of model folder dir to w. BPE with byte_fallback (Llama/Mistral
 * SentencePiece-style): tokenizer.ggml.model "llama" with tokens, scores, token types. Byte-level
 * BPE (Qwen2, Llama 3): "gpt2" with tokens, token types, merges and a pre-tokenizer name. Plus
 * bos/eos/unk/pad ids, add_bos/add_eos and the chat template when tokenizer_config.json has them.
 * The token list is padded to cfg->vocab_size with [PADn] (unused) entries. */
lk_status gguf_vocab_from_hf(gguf_writer *w, const char *dir, const struct lk_model_config *cfg);

#endif /* LK_GGUF_VOCAB_H */
