/* lorakit/tokenizer.h — text in, tokens out: Hugging Face tokenizers, chat templates, datasets.
 *
 * Tokenizer: reads a folder's tokenizer.json (plus tokenizer_config.json and
 * special_tokens_map.json when present) and encodes/decodes exactly as Hugging Face's tokenizers
 * library does for BPE models: byte-level BPE (GPT-2 byte map, Split regex pre-tokenizers with
 * \p{L}/\p{N} classes, NFC, ignore_merges: Qwen2/2.5, Llama-3, SmolLM) and SentencePiece-style BPE
 * (Prepend/Replace normalizers or Metaspace, byte_fallback, fuse_unk: Llama-2, Mistral). Added and
 * special tokens are matched before BPE (lstrip, rstrip, single_word, normalized honoured).
 *
 * Chat: native renderers for ChatML, Llama-3, Llama-2/Mistral [INST] and Alpaca whose output is
 * identical to the models' Jinja templates, chosen from tokenizer_config.json's chat_template.
 *
 * Datasets: JSONL examples (text, prompt/completion, messages, alpaca, pre-tokenised) turned into
 * token sequences with loss masks, packed into fixed-length rows with per-example position and
 * segment ids, shuffled deterministically, with a saveable cursor.
 *
 * Thread-safety: a loaded lk_tokenizer is read-only; any number of threads may encode and decode
 * with it at once. An lk_dataset is not thread-safe. */
#ifndef LORAKIT_TOKENIZER_H
#define LORAKIT_TOKENIZER_H

#include "lorakit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================ */
/* Tokenizer                                                                                    */
/* ============================================================================================ */

typedef struct lk_tokenizer lk_tokenizer;

/* Load DIR/tokenizer.json (required), DIR/tokenizer_config.json and DIR/special_tokens_map.json
 * (optional: BOS/EOS, add_bos_token/add_eos_token, chat_template; DIR/chat_template.jinja is also
 * read when present). The folder needs no weights. Supported: model type BPE; normalizers NFC,
 * NFD, NFKC, NFKD, Lowercase, Prepend, Replace (string pattern), Sequence; pre-tokenizers Split
 * (regex or string), ByteLevel, Metaspace, Sequence; decoders ByteLevel, Replace, ByteFallback,
 * Fuse, Strip, Metaspace, Sequence. Anything else fails with LK_ERR_UNSUPPORTED naming it; a
 * corrupt file fails with LK_ERR_FORMAT naming the file and the field. On success *out owns the
 * tokenizer; free with lk_tokenizer_free. */
lk_status lk_tokenizer_load(const char *dir, lk_tokenizer **out);

/* Free a tokenizer (NULL is fine). */
void lk_tokenizer_free(lk_tokenizer *t);

/* Number of ids: highest model or added-token id + 1. */
int64_t lk_tokenizer_vocab_size(const lk_tokenizer *t);

/* BOS / EOS ids from tokenizer_config.json (bos_token / eos_token) or special_tokens_map.json;
 * -1 if none. */
int32_t lk_tokenizer_bos(const lk_tokenizer *t);
int32_t lk_tokenizer_eos(const lk_tokenizer *t);

/* Encode len bytes of text (need not be NUL-terminated; invalid UTF-8 is tokenised as bytes,
 * never rejected). add_special 1: add BOS/EOS as the tokenizer config says — add_bos_token /
 * add_eos_token when tokenizer_config.json sets either, otherwise the TemplateProcessing
 * post-processor of tokenizer.json (as transformers' LlamaTokenizerFast / PreTrainedTokenizerFast
 * do). *ids: heap array of *n ids; caller frees with free() (non-NULL even when *n is 0). */
lk_status lk_tokenizer_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, int64_t *n);

/* Like lk_tokenizer_encode, also giving each token's byte range [start, end) in text: *starts and
 * *ends are heap arrays of *n entries (caller frees both). Tokens added by add_special and tokens
 * made by normalisation (a prepended "▁") get the range of the text they stand next to. Texts
 * must be shorter than 4 GiB. */
lk_status lk_tokenizer_encode_offsets(const lk_tokenizer *t, const char *text, size_t len,
                                      int add_special, int32_t **ids, uint32_t **starts,
                                      uint32_t **ends, int64_t *n);

/* Decode n ids to text. skip_special 1 drops special tokens (added tokens marked "special").
 * *text: heap, NUL-terminated, *len bytes without the NUL; caller frees with free(). Byte
 * sequences that are not valid UTF-8 (a partial character at the end, invalid input that was
 * encoded as bytes) are returned as those bytes, where Hugging Face would write U+FFFD. An id
 * outside [0, vocab_size) or one the vocabulary does not define fails with LK_ERR_ARG. */
lk_status lk_tokenizer_decode(const lk_tokenizer *t, const int32_t *ids, int64_t n,
                              int skip_special, char **text, size_t *len);

/* Id of the token spelled str (a vocabulary entry as tokenizer.json writes it, or an added
 * token's content), or -1. */
int32_t lk_tokenizer_token_to_id(const lk_tokenizer *t, const char *str);

/* 1 if id is a special added token (one that decode with skip_special drops). */
int lk_tokenizer_is_special(const lk_tokenizer *t, int32_t id);

/* 1 if lk_tokenizer_encode with add_special adds BOS in front / EOS at the end. */
int lk_tokenizer_adds_bos(const lk_tokenizer *t);
int lk_tokenizer_adds_eos(const lk_tokenizer *t);

/* tokenizer_config.json's chat_template (the "default" one of a list), or NULL. Borrowed, valid
 * until lk_tokenizer_free. */
const char *lk_tokenizer_chat_template(const lk_tokenizer *t);

/* Content of the BOS / EOS token ("" if none). Borrowed, valid until lk_tokenizer_free. */
const char *lk_tokenizer_bos_str(const lk_tokenizer *t);
const char *lk_tokenizer_eos_str(const lk_tokenizer *t);

/* ============================================================================================ */
/* Chat templates                                                                               */
/* ============================================================================================ */

/* Chat formats rendered natively (no Jinja engine); each gives the same text as the model's
 * Jinja chat_template for system/user/assistant turns. */
typedef enum {
    LK_CHAT_AUTO = 0,    /* recognise the tokenizer's chat_template */
    LK_CHAT_CHATML = 1,  /* "chatml": <|im_start|>role\n...<|im_end|>\n, no default system */
    LK_CHAT_QWEN2_5 = 2, /* "qwen2.5": ChatML with Qwen2.5's default system prompt */
    LK_CHAT_LLAMA3 = 3,  /* "llama3": Llama-3(.0) headers, <|eot_id|>, contents trimmed */
    LK_CHAT_LLAMA3_1 = 4, /* "llama3.1": Llama-3.1/3.2: system block with knowledge cutoff and date */
    LK_CHAT_LLAMA2 = 5,  /* "llama2": <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s> */
    LK_CHAT_MISTRAL = 6, /* "mistral": <s>[INST] ... [/INST]answer</s> (user/assistant only) */
    LK_CHAT_ALPACA = 7   /* "alpaca": ### Instruction: / ### Response: blocks */
} lk_chat_format;

/* One chat turn. role: "system", "user" or "assistant". Both strings borrowed. */
struct lk_chat_message {
    const char *role;
    const char *content;
};

struct lk_chat_params {
    lk_chat_format format;     /* LK_CHAT_AUTO (default) or a named format */
    int add_generation_prompt; /* 1: end with the header that opens an assistant turn (default 0) */
    const char *date_string;   /* llama3.1 "Today Date:"; NULL (default): "26 Jul 2024", what the
                                * template writes when no strftime_now is given */
};

struct lk_chat_params lk_chat_params_default(void);

/* Format by name: chatml, qwen2.5 (also qwen), llama3, llama3.1 (also llama3.2), llama2,
 * mistral, alpaca. LK_ERR_ARG for any other name (the message lists the names). */
lk_status lk_chat_format_from_name(const char *name, lk_chat_format *out);

/* Name of a format ("auto" for LK_CHAT_AUTO). Never NULL. */
const char *lk_chat_format_name(lk_chat_format f);

/* Recognise t's chat_template by its markers. LK_ERR_UNSUPPORTED when there is no template or it
 * is not one of the known formats (the message tells the user to pass --chat-template NAME). */
lk_status lk_chat_detect(const lk_tokenizer *t, lk_chat_format *out);

/* Render n messages as the chat template does. The template's special tokens (BOS, <|im_end|>,
 * ...) are written as text; encode the result with add_special 0, as transformers'
 * apply_chat_template does. Roles the format does not accept, or an order it forbids (Mistral
 * and Llama-2 need alternating user/assistant), fail with LK_ERR_ARG. *text: heap,
 * NUL-terminated, *len bytes; caller frees with free(). */
lk_status lk_chat_render(const lk_tokenizer *t, const struct lk_chat_params *p,
                         const struct lk_chat_message *msgs, int64_t n, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_TOKENIZER_H */
