/* lorakit/tokenizer.h — text in, tokens out: Hugging Face and GGUF tokenizers, chat templates,
 * datasets.
 *
 * Tokenizer: reads a folder's tokenizer.json (plus tokenizer_config.json and
 * special_tokens_map.json when present) and encodes/decodes exactly as Hugging Face's tokenizers
 * library does for BPE models: byte-level BPE (GPT-2 byte map, Split regex pre-tokenizers with
 * \p{L}/\p{N} classes, NFC, ignore_merges: Qwen2/2.5, Llama-3, SmolLM) and SentencePiece-style BPE
 * (Prepend/Replace normalizers or Metaspace, byte_fallback, fuse_unk: Llama-2, Mistral). Added and
 * special tokens are matched before BPE (lstrip, rstrip, single_word, normalized honoured).
 * Or reads the tokenizer a GGUF file carries in its metadata and encodes/decodes exactly as
 * llama.cpp does (llama_tokenize with parse_special, llama_detokenize): "gpt2" byte-level BPE with
 * the pre-tokenizer regexes llama.cpp names by tokenizer.ggml.pre, "llama" SentencePiece with
 * scores and byte tokens; no tokenizer.json needed beside the file.
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

/* path a folder: load DIR/tokenizer.json (required), DIR/tokenizer_config.json and
 * DIR/special_tokens_map.json (optional: BOS/EOS, add_bos_token/add_eos_token, chat_template;
 * DIR/chat_template.jinja is also read when present). The folder needs no weights. Supported:
 * model type BPE; normalizers NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace (string pattern),
 * Sequence; pre-tokenizers Split (regex or string), ByteLevel, Metaspace, Digits, Sequence;
 * decoders ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence.
 *
 * path a file (a .gguf model or vocabulary): its tokenizer.* metadata, as llama.cpp (0c1e57098)
 * builds its vocabulary: tokenizer.ggml.model "gpt2" (tokens, merges, and tokenizer.ggml.pre:
 * every regex-based pre-tokenizer llama.cpp lists, e.g. llama-bpe, qwen2, smollm, gpt-2, default;
 * not kimi-k2, gemma4, granite-embed-multi-311m, sarvam-moe, whitespace) or "llama" (tokens,
 * scores); token types; bos/eos/unk ids, add_bos_token, add_eos_token, add_space_prefix with
 * llama.cpp's defaults for the model and pre-tokenizer; tokenizer.chat_template (recognised as the
 * chat templates of tokenizer_config.json are). Control, user-defined and unknown tokens
 * (and the ones llama.cpp makes control by their text, e.g. "<|im_end|>") are recognised in text
 * before anything else, longest first, as llama.cpp does with parse_special on (llama-cli and
 * llama-tokenize's default). The file's tensors are not read (any tensor type is fine).
 *
 * Anything else fails with LK_ERR_UNSUPPORTED naming it; a corrupt file (bad JSON or GGUF, a key
 * of the wrong type, an array whose length is not the token count) fails with LK_ERR_FORMAT naming
 * the file and the field. On success *out owns the tokenizer; free with lk_tokenizer_free. */
lk_status lk_tokenizer_load(const char *path, lk_tokenizer **out);

/* Free a tokenizer (NULL is fine). */
void lk_tokenizer_free(lk_tokenizer *t);

/* Number of ids: highest model or added-token id + 1. */
int64_t lk_tokenizer_vocab_size(const lk_tokenizer *t);

/* BOS / EOS ids from tokenizer_config.json (bos_token / eos_token) or special_tokens_map.json
 * (GGUF: tokenizer.ggml.bos_token_id / eos_token_id, else llama.cpp's defaults); -1 if none. */
int32_t lk_tokenizer_bos(const lk_tokenizer *t);
int32_t lk_tokenizer_eos(const lk_tokenizer *t);

/* Encode len bytes of text (need not be NUL-terminated; invalid UTF-8 is tokenised as bytes,
 * never rejected; GGUF byte-level vocabularies read it as llama.cpp does, as U+FFFD).
 * add_special 1: add BOS/EOS as the tokenizer config says — add_bos_token / add_eos_token when
 * tokenizer_config.json sets either, otherwise the TemplateProcessing post-processor of
 * tokenizer.json (as transformers' LlamaTokenizerFast / PreTrainedTokenizerFast do); GGUF: as
 * llama_tokenize's add_special. *ids: heap array of *n ids; caller frees with free() (non-NULL
 * even when *n is 0). */
lk_status lk_tokenizer_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, int64_t *n);

/* Like lk_tokenizer_encode, also giving each token's byte range [start, end) in text: *starts and
 * *ends are heap arrays of *n entries (caller frees both). Tokens added by add_special and tokens
 * made by normalisation (a prepended "▁") get the range of the text they stand next to. Texts
 * must be shorter than 4 GiB. */
lk_status lk_tokenizer_encode_offsets(const lk_tokenizer *t, const char *text, size_t len,
                                      int add_special, int32_t **ids, uint32_t **starts,
                                      uint32_t **ends, int64_t *n);

/* Decode n ids to text. skip_special 1 drops special tokens (added tokens marked "special"),
 * exactly as tokenizers does: an added token with normalized true decodes as its normalised form
 * (Llama-2's "<s>" as "▁<s>", hence " <s>" after other text) and is then not dropped. GGUF
 * tokenizers decode as llama_detokenize(remove_special = skip_special, unparse_special =
 * !skip_special): control and unknown tokens are dropped when skipping (and a BOS / EOS the
 * tokenizer adds), the space a SentencePiece "▁" prefix added is removed, and vocabularies whose
 * pre-tokenizer says so clean up spaces (" ," -> ",", " 's" -> "'s", ...).
 * *text: heap, NUL-terminated, *len bytes without the NUL; caller frees with free(). Byte
 * sequences that are not valid UTF-8 (a partial character at the end, invalid input that was
 * encoded as bytes) are returned as those bytes, where Hugging Face would write U+FFFD. An id
 * outside [0, vocab_size) or one the vocabulary does not define fails with LK_ERR_ARG. */
lk_status lk_tokenizer_decode(const lk_tokenizer *t, const int32_t *ids, int64_t n,
                              int skip_special, char **text, size_t *len);

/* Id of the token spelled str (a vocabulary entry as tokenizer.json writes it, or an added
 * token's content), or -1. */
int32_t lk_tokenizer_token_to_id(const lk_tokenizer *t, const char *str);

/* The first id below both vocabularies' sizes that the two tokenizers spell differently (other
 * bytes, or added/special in one only), or -1 when every shared id is the same token: the check
 * that a teacher and a student speak the same vocabulary. */
int64_t lk_tokenizer_first_difference(const lk_tokenizer *a, const lk_tokenizer *b);

/* 1 if id is an added token marked "special" in tokenizer.json (GGUF: a control or unknown
 * token). */
int lk_tokenizer_is_special(const lk_tokenizer *t, int32_t id);

/* 1 if lk_tokenizer_encode with add_special adds BOS in front / EOS at the end. */
int lk_tokenizer_adds_bos(const lk_tokenizer *t);
int lk_tokenizer_adds_eos(const lk_tokenizer *t);

/* tokenizer_config.json's chat_template (the "default" one of a list; GGUF:
 * tokenizer.chat_template), or NULL. Borrowed, valid until lk_tokenizer_free. */
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
    LK_CHAT_LLAMA3_1 =
        4,              /* "llama3.1": Llama-3.1/3.2: system block with knowledge cutoff and date */
    LK_CHAT_LLAMA2 = 5, /* "llama2": <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s> */
    LK_CHAT_MISTRAL = 6, /* "mistral": <s>[INST] ... [/INST]answer</s> (user/assistant only) */
    LK_CHAT_ALPACA = 7   /* "alpaca": ### Instruction: / ### Response: blocks */
} lk_chat_format;

/* One chat turn. role: "system", "user", "assistant" or "tool" (a tool's result). Both strings
 * borrowed; an assistant turn that only calls tools has content "" (its calls are
 * lk_chat_params.tool_calls). */
struct lk_chat_message {
    const char *role;
    const char *content;
};

struct lk_chat_params {
    lk_chat_format format;     /* LK_CHAT_AUTO (default) or a named format */
    int add_generation_prompt; /* 1: end with the header that opens an assistant turn (default
                                * 0); llama2 and mistral have none and ignore it, as their
                                * templates do */
    const char *date_string;   /* llama3.1 "Today Date:"; NULL (default): "26 Jul 2024", what the
                                * template writes when no strftime_now is given */
    const char *tools;         /* NULL (default), or the tools the model may call as a JSON array
                                * of their schemas (apply_chat_template's tools=; an empty array:
                                * none): qwen2.5/chatml list them in the system turn, llama3.1 in
                                * the first user turn */
    const char *const *tool_calls; /* NULL (default), or one entry per message: NULL, or the calls
                                    * an assistant turn makes as JSON text, a call object or an
                                    * array of them, each {"name": ..., "arguments": {...}} or
                                    * OpenAI's {"type": "function", "function": {...}}
                                    * (arguments given as a JSON string holding an object are
                                    * parsed, as transformers expects a dict) */
};
/* Tool calls and results need a format that writes them: chatml and qwen2.5 (Qwen2.5's
 * <tool_call> and <tool_response> blocks, the Hermes convention) and llama3.1 (Llama-3.1's JSON
 * call and ipython turns, one call per turn). */

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
 * apply_chat_template does. Roles the format does not accept (tool turns in a format without
 * tools), or an order it forbids (Mistral and Llama-2 need alternating user/assistant), fail with
 * LK_ERR_ARG. *text: heap,
 * NUL-terminated, *len bytes; caller frees with free(). */
lk_status lk_chat_render(const lk_tokenizer *t, const struct lk_chat_params *p,
                         const struct lk_chat_message *msgs, int64_t n, char **text, size_t *len);

/* The token that ends an assistant turn in format f (LK_CHAT_AUTO: the tokenizer's template):
 * <|im_end|> (chatml, qwen2.5), <|eot_id|> (llama3, llama3.1), the EOS token (llama2, mistral,
 * alpaca). Generation of a reply stops there. LK_ERR_UNSUPPORTED when the vocabulary has no such
 * single token (a ChatML template on a vocabulary without <|im_end|>). */
lk_status lk_chat_end_of_turn(const lk_tokenizer *t, lk_chat_format f, int32_t *id);

/* ============================================================================================ */
/* Datasets                                                                                     */
/* ============================================================================================ */

/* Example formats. Each example becomes token ids plus labels aligned with them as in Hugging
 * Face (labels[t] = ids[t] where the token is trained, -100 where it is masked; the loss shifts).
 */
typedef enum {
    LK_DATA_AUTO = 0, /* per line, from the keys present (in this order of preference): */
    LK_DATA_MESSAGES, /* {"messages": [{"role", "content"}]}: chat template, loss on assistant
                       * turns (+ their end-of-turn token). content may be a string or a list
                       * of {"type": "text", "text"|"value"} parts; a message with
                       * "loss_weight": 0 is not trained. {"conversations": [{"from",
                       * "value"}]} (ShareGPT: human/gpt/system) is read the same way. */
    LK_DATA_TOKENS,   /* {"input_ids": [...], "labels": [...]}: pre-tokenised, used as is;
                       * labels optional (default: all trained), -100 = masked */
    LK_DATA_ALPACA,   /* {"instruction", "input", "output"}: Stanford Alpaca prompt (the
                       * "paired with an input" form when input is non-empty), loss on output */
    LK_DATA_PROMPT_COMPLETION, /* {"prompt", "completion"}: loss on the completion only */
    LK_DATA_TEXT               /* {"text"}: loss on every token */
} lk_data_format;

#define LK_DATA_N_FORMATS 6
#define LK_LABEL_IGNORE   (-100)

struct lk_dataset_params {
    int64_t seq_len; /* tokens per row (default 2048); longer examples are truncated (counted) */
    int pack;        /* 1 (default): several examples per row; 0: one example per row */
    lk_data_format format;      /* LK_DATA_AUTO (default): detect per line */
    lk_chat_format chat_format; /* messages: LK_CHAT_AUTO (default): the tokenizer's template */
    const char *chat_date;      /* llama3.1 template date (NULL: its default) */
    const char *fields; /* NULL or "prompt=question,completion=answer": canonical key = column
                         * (canonical keys: text prompt completion messages conversations
                         * instruction input output input_ids labels) */
    int strict;         /* 1: the first bad line fails the load (LK_ERR_FORMAT) */
    int shuffle;        /* 1 (default): a new order every epoch from seed */
    uint64_t seed;      /* shuffle seed (default 42) */
    int max_reported;   /* bad lines logged one by one (default 10; all are counted) */
    int64_t vocab_size; /* without a tokenizer (lk_dataset_load's t NULL): ids must be below it */
    int32_t pad_id;     /* without a tokenizer: the id that pads rows (default 0) */
};

struct lk_dataset_params lk_dataset_params_default(void);

/* Check the options: seq_len >= 1, format and chat_format known, max_reported >= 0, fields a list
 * of KEY=COLUMN with canonical keys ("--fields: 'x' is not KEY=COLUMN ..."). LK_ERR_ARG
 * naming the option by its command-line flag where it has one ("--seq-len must be at least 1,
 * got 0"). lk_dataset_load runs it; training data has a stricter check
 * (lk_train_data_params_check, lorakit/train.h). */
lk_status lk_dataset_params_check(const struct lk_dataset_params *p);

/* What the load found. Tokens are counted after truncation. */
struct lk_dataset_stats {
    int64_t lines;             /* examples read (non-blank lines or array elements) */
    int64_t examples;          /* examples kept */
    int64_t bad;               /* examples skipped (bad JSON, missing/mistyped fields, ...) */
    int64_t tokens;            /* tokens over kept examples */
    int64_t trained_tokens;    /* tokens whose label is not -100 */
    int64_t truncated;         /* examples longer than seq_len */
    int64_t truncated_tokens;  /* tokens cut off by truncation */
    int64_t rows;              /* rows of seq_len in one epoch (first epoch's order) */
    double packing_efficiency; /* tokens / (rows * seq_len) */
    int64_t by_format[LK_DATA_N_FORMATS]; /* kept examples per lk_data_format */
    int64_t untrained;           /* kept examples without a trained token (they teach nothing) */
    int64_t truncated_untrained; /* of those, the ones whose trained tokens truncation cut off */
    int64_t seq_len_to_train;    /* the --seq-len that would keep a trained token in each of
                                  * those (0 when there are none) */
};

typedef struct lk_dataset lk_dataset;

/* Read path: JSON Lines (one example a line; blank lines ignored), or a JSON array of examples
 * (a file starting with '['). Every example is tokenised now with t (used by the load only: it
 * may be freed once lk_dataset_load returns; rows are padded with its EOS, or id 0 without one).
 * t may be NULL for pre-tokenised data (input_ids records, ids below
 * p->vocab_size, rows padded with p->pad_id): a record with text then fails the load with
 * LK_ERR_UNSUPPORTED naming its line. Bad examples are skipped, counted, and logged with their line
 * number (the first max_reported); with strict the first one fails the load. A summary is logged at
 * info level. Fails with LK_ERR_FORMAT when no example is usable. Caller frees with
 * lk_dataset_free. */
lk_status lk_dataset_load(const char *path, const lk_tokenizer *t,
                          const struct lk_dataset_params *p, lk_dataset **out);

void lk_dataset_free(lk_dataset *d);

/* Load statistics; borrowed, valid until lk_dataset_free. */
const struct lk_dataset_stats *lk_dataset_get_stats(const lk_dataset *d);

/* Kept example i (file order, 0 <= i < examples): ids and labels [*n] (borrowed, valid until
 * lk_dataset_free), *line its line number in the file (array files: element number, from 1). */
lk_status lk_dataset_example(const lk_dataset *d, int64_t i, const int32_t **ids,
                             const int32_t **labels, int64_t *n, int64_t *line);

/* Skipped example k (0 <= k < bad, the first 1000 kept): its line number and reason; NULL past
 * the end. Borrowed, valid until lk_dataset_free. */
const char *lk_dataset_bad(const lk_dataset *d, int64_t k, int64_t *line);

/* Where the next row starts: the epoch and the row within it. Plain data: save it with a
 * checkpoint and restore it to continue exactly (same file, tokenizer and params). */
struct lk_data_cursor {
    uint64_t epoch;
    int64_t next; /* row index in the epoch */
};

void lk_dataset_get_cursor(const lk_dataset *d, struct lk_data_cursor *c);

/* Continue from c (LK_ERR_ARG if its row is past the epoch's rows). */
lk_status lk_dataset_set_cursor(lk_dataset *d, const struct lk_data_cursor *c);

/* Fill the next row of seq_len tokens and advance the cursor (after an epoch's last row the next
 * epoch starts, reshuffled). Each epoch shuffles the examples, then packs them whole by first-fit
 * (an example goes to the earliest row with room; pack 0: one example per row); rows come in
 * order of creation. Arrays are caller-owned, [seq_len] each:
 *   tokens: ids, padding = EOS (0 if none);  labels: as the example's, -100 on padding;
 *   pos:    position within its example (restarts at 0 for each example), 0 on padding;
 *   seg:    example index within the row (0, 1, ...), -1 on padding.
 * A token may attend to another only in the same segment and not after it (see
 * lk_dataset_attention_mask). *n_real: tokens before the padding; *n_examples: examples in the
 * row. Either out pointer may be NULL. */
lk_status lk_dataset_next_row(lk_dataset *d, int32_t *tokens, int32_t *labels, int32_t *pos,
                              int32_t *seg, int64_t *n_real, int64_t *n_examples);

/* File-order indices (as lk_dataset_example numbers them) of the examples in the row last returned
 * by lk_dataset_next_row: idx[j] is the example of segment j (seg == j), j < *n (= that call's
 * *n_examples). idx: caller-owned [max]; LK_ERR_ARG when max is smaller than the row's example
 * count, or when no row was returned since the load or the last lk_dataset_set_cursor. */
lk_status lk_dataset_row_examples(const lk_dataset *d, int64_t *idx, int64_t max, int64_t *n);

/* Rows of seq_len tokens the current epoch yields in total. */
int64_t lk_dataset_rows_in_epoch(const lk_dataset *d);

/* The dataset's seq_len (tokens per row). */
int64_t lk_dataset_seq_len(const lk_dataset *d);

/* The attention mask of a packed row: mask[i*T + j] = 1 if token i may attend to token j
 * (j <= i, seg[i] == seg[j] >= 0), else 0. mask: caller-owned [T*T]. Padding rows attend to
 * nothing. */
void lk_dataset_attention_mask(const int32_t *seg, int64_t T, uint8_t *mask);

/* Name of a format ("auto", "messages", "tokens", "alpaca", "prompt_completion", "text"). */
const char *lk_data_format_name(lk_data_format f);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_TOKENIZER_H */
