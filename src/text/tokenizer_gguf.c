/* tokenizer_gguf.c — the tokenizer stored in a GGUF file's metadata (tokenizer.ggml.*), built so
 * that it tokenizes as llama.cpp does: the loading of llama_vocab::impl::load in
 * src/llama-vocab.cpp of llama.cpp 0c1e57098 (vendored by llama-cpp-python 0.3.36), written anew.
 *
 *   "gpt2"  byte-level BPE: tokens (GPT-2 byte map, stored here as raw bytes), merges ranked by
 *           their order, the pre-tokenizer regexes of tokenizer.ggml.pre (gguf_pre.c);
 *   "llama" SentencePiece: tokens with scores, merged by score (bpe.c's tok_spm_word), spaces
 *           as "▁", a "▁" before each piece of text (add_space_prefix), <0xXX> byte tokens.
 *
 * Token types give llama.cpp's token attributes; control, user-defined and unknown tokens are cut
 * out of the text before anything else, longest first (parse_special on, as llama-cli and
 * llama-tokenize do). Like llama.cpp this file also marks control the tokens whose text names an
 * end of generation or a fill-in-the-middle role, and applies its per-model attributes (Phi-3
 * rstrip, <mask> lstrip). BOS/EOS ids, add_bos/add_eos and add_space_prefix take llama.cpp's
 * defaults for the model and pre-tokenizer unless the metadata sets them.
 *
 * Every key is checked before use: a missing required key, a value of the wrong type, an array
 * whose length differs from the token list's, NaN scores, or an unknown model or pre-tokenizer
 * fail with LK_ERR_FORMAT / LK_ERR_UNSUPPORTED naming the file and the key. Where llama.cpp only
 * warns (a special id outside the vocabulary, a merge naming no token) this file warns too.
 * Calls into tokenizer_pipeline.c (regex compiler) and bpe.c. */
#include "text/tokenizer_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"
#include "formats/gguf.h"
#include "text/bpe.h"
#include "text/gguf_pre.h"

#define K_MODEL    "tokenizer.ggml.model"
#define K_PRE      "tokenizer.ggml.pre"
#define K_TOKENS   "tokenizer.ggml.tokens"
#define K_SCORES   "tokenizer.ggml.scores"
#define K_TYPES    "tokenizer.ggml.token_type"
#define K_MERGES   "tokenizer.ggml.merges"
#define K_TEMPLATE "tokenizer.chat_template"
#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's space */
#define MAX_TOKENS ((int64_t)1 << 30)

/* GGUF token types (tokenizer.ggml.token_type) */
enum {
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6
};

/* The loader's state: the file, and the token texts as llama.cpp reads them. */
struct gl {
    lk_tokenizer *t;
    const gguf_file *f;
    int64_t n;         /* tokens */
    char *text;        /* every token's text, NUL-terminated, one after another */
    int64_t *text_off; /* [n] */
    int pre_flags;
    int32_t unk;
};

/* ============================================================================================ */
/* Typed metadata access                                                                       */
/* ============================================================================================ */

static const char *type_name(gguf_vtype t)
{
    static const char *const names[GGUF_NTYPES] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                   "i32", "f32", "bool", "string", "array",
                                                   "u64", "i64", "f64"};
    return (unsigned)t < GGUF_NTYPES ? names[t] : "?";
}

static lk_status bad_type(const struct gl *g, const char *key, const gguf_kv *kv, const char *want)
{
    if (kv->type == GGUF_ARRAY)
        return status_fail(LK_ERR_FORMAT, "%s: %s: got an array of %s, expected %s", g->t->path,
                           key, type_name(kv->arr_type), want);
    return status_fail(LK_ERR_FORMAT, "%s: %s: got a %s, expected %s", g->t->path, key,
                       type_name(kv->type), want);
}

/* A string value (not NUL-terminated), NULL when absent and not required. */
static lk_status get_str(const struct gl *g, const char *key, int required, gguf_str *out)
{
    const gguf_kv *kv = gguf_find_kv(g->f, key);
    *out = (gguf_str){NULL, 0};
    if (!kv)
        return required ? status_fail(LK_ERR_FORMAT,
                                      "%s: %s is missing (hint: this GGUF holds no tokenizer; "
                                      "give a tokenizer folder instead)",
                                      g->t->path, key)
                        : LK_OK;
    if (kv->type != GGUF_STRING)
        return bad_type(g, key, kv, "a string");
    *out = kv->str;
    return LK_OK;
}

/* An array of one of the element types a, b (b may equal a) with want elements (any count when
 * want < 0); NULL when absent and not required. */
static lk_status get_arr(const struct gl *g, const char *key, gguf_vtype a, gguf_vtype b,
                         int64_t want, int required, const gguf_kv **out)
{
    const gguf_kv *kv = gguf_find_kv(g->f, key);
    *out = NULL;
    if (!kv)
        return required ? status_fail(LK_ERR_FORMAT, "%s: %s is missing", g->t->path, key) : LK_OK;
    if (kv->type != GGUF_ARRAY || (kv->arr_type != a && kv->arr_type != b)) {
        char want_s[64];
        snprintf(want_s, sizeof want_s, "an array of %s%s%s", type_name(a), a != b ? " or " : "",
                 a != b ? type_name(b) : "");
        return bad_type(g, key, kv, want_s);
    }
    if (want >= 0 && kv->arr_n != (uint64_t)want)
        return status_fail(
            LK_ERR_FORMAT, "%s: %s: got %llu entries, expected %lld (one per token of %s)",
            g->t->path, key, (unsigned long long)kv->arr_n, (long long)want, K_TOKENS);
    *out = kv;
    return LK_OK;
}

/* A bool, left as it is when absent. */
static lk_status get_bool(const struct gl *g, const char *key, int *v)
{
    const gguf_kv *kv = gguf_find_kv(g->f, key);
    if (!kv)
        return LK_OK;
    if (kv->type != GGUF_BOOL)
        return bad_type(g, key, kv, "a bool");
    *v = kv->v.u != 0;
    return LK_OK;
}

/* A token id: any integer type; a value outside the vocabulary is ignored with a warning (as
 * llama.cpp does). *present: the key was there. */
static lk_status get_id(const struct gl *g, const char *key, int32_t *id, int *present)
{
    const gguf_kv *kv = gguf_find_kv(g->f, key);
    if (present)
        *present = kv != NULL;
    if (!kv)
        return LK_OK;
    int64_t v;
    if (kv->type == GGUF_ARRAY || kv->type == GGUF_STRING || kv->type == GGUF_BOOL ||
        kv->type == GGUF_F32 || kv->type == GGUF_F64)
        return bad_type(g, key, kv, "an integer token id");
    v = (kv->type == GGUF_I8 || kv->type == GGUF_I16 || kv->type == GGUF_I32 ||
         kv->type == GGUF_I64)
            ? kv->v.i
            : (kv->v.u > INT64_MAX ? -1 : (int64_t)kv->v.u);
    if (v < 0 || v >= g->n) {
        log_warn("%s: %s = %lld is outside the vocabulary of %lld tokens; ignored", g->t->path, key,
                 (long long)v, (long long)g->n);
        return LK_OK;
    }
    *id = (int32_t)v;
    return LK_OK;
}

/* ============================================================================================ */
/* Vocabulary                                                                                   */
/* ============================================================================================ */

static const char *tok_text(const struct gl *g, int64_t id)
{
    return g->text + g->text_off[id];
}

/* The token texts as llama.cpp reads them: up to the first NUL (it takes C strings), and
 * "[EMPTY_i]" for an empty one. */
static lk_status read_texts(struct gl *g, const gguf_kv *tokens)
{
    size_t total = 0;
    for (int64_t i = 0; i < g->n; i++)
        total += strnlen(tokens->arr_str[i].ptr, tokens->arr_str[i].len) + 24;
    g->text = malloc(total);
    g->text_off = malloc((size_t)g->n * sizeof *g->text_off);
    if (!g->text || !g->text_off)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory for %lld token texts", g->t->path,
                           (long long)g->n);
    size_t pos = 0;
    for (int64_t i = 0; i < g->n; i++) {
        const gguf_str *s = &tokens->arr_str[i];
        size_t k = strnlen(s->ptr, s->len);
        g->text_off[i] = (int64_t)pos;
        if (k == 0) {
            pos += (size_t)snprintf(g->text + pos, 24, "[EMPTY_%lld]", (long long)i) + 1;
            continue;
        }
        memcpy(g->text + pos, s->ptr, k);
        g->text[pos + k] = 0;
        pos += k + 1;
    }
    return LK_OK;
}

/* s[0..n) with the GPT-2 byte map undone into buf; -1 when a character is not in the map. */
static int64_t gpt2_bytes(const char *s, size_t n, char *buf)
{
    int64_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = utf8_next((const uint8_t *)s + i, n - i, &cp);
        int b = cl > 0 ? tok_cp_to_byte(cp) : -1;
        if (b < 0)
            return -1;
        buf[k++] = (char)b;
        i += (size_t)cl;
    }
    return k;
}

/* The model's vocabulary: byte-level tokens as raw bytes. A byte-level token that is not all GPT-2
 * characters (it can never be formed from text, as in llama.cpp) is stored as it is but left out
 * of the lookup map; a text listed twice maps to its last id, as llama.cpp's token_to_id. */
static lk_status build_vocab(struct gl *g)
{
    tok_bpe *m = &g->t->bpe;
    size_t total = (size_t)g->text_off[g->n - 1] + strlen(tok_text(g, g->n - 1)) + 1;
    m->n_ids = g->n;
    m->dup_last = 1;
    m->unk_id = -1;
    m->strs = malloc(total);
    m->off = malloc((size_t)g->n * sizeof *m->off);
    m->len = malloc((size_t)g->n * sizeof *m->len);
    uint8_t *hidden = calloc((size_t)g->n, 1);
    lk_status s = LK_OK;
    if (!m->strs || !m->off || !m->len || !hidden)
        s = status_fail(LK_ERR_NOMEM, "%s: out of memory for the vocabulary", g->t->path);
    int64_t pos = 0;
    for (int64_t i = 0; s == LK_OK && i < g->n; i++) {
        const char *x = tok_text(g, i);
        size_t n = strlen(x);
        int64_t k = m->byte_level ? gpt2_bytes(x, n, m->strs + pos) : -1;
        if (k < 0) {
            memcpy(m->strs + pos, x, n);
            k = (int64_t)n;
            hidden[i] = (uint8_t)m->byte_level;
        }
        m->off[i] = pos;
        m->len[i] = hidden[i] ? -1 : (int32_t)k; /* (-1 keeps it out of the map) */
        pos += k;
    }
    if (s == LK_OK)
        s = tok_bpe_index(m);
    for (int64_t i = 0; s == LK_OK && i < g->n; i++)
        if (hidden[i])
            m->len[i] = (int32_t)strlen(tok_text(g, i));
    free(hidden);
    return s;
}

/* Merges "a b" (split at the first space after the first byte, as llama.cpp does) ranked by their
 * index. Entries without a space, or whose halves or join are not tokens, cannot apply to any text
 * in llama.cpp either: they are skipped and counted. */
static lk_status read_merges(struct gl *g, const gguf_kv *kv)
{
    tok_bpe *m = &g->t->bpe;
    if (kv->arr_n > INT32_MAX)
        return status_fail(LK_ERR_FORMAT, "%s: %s: %llu merges, more than ranks can number",
                           g->t->path, K_MERGES, (unsigned long long)kv->arr_n);
    LK_TRY(tok_bpe_alloc_merges(m, (int64_t)kv->arr_n));
    struct buf b = {0};
    int64_t skipped = 0;
    lk_status s = LK_OK;
    for (uint64_t i = 0; s == LK_OK && i < kv->arr_n; i++) {
        const gguf_str *e = &kv->arr_str[i];
        size_t n = strnlen(e->ptr, e->len);
        const char *sp = n > 1 ? memchr(e->ptr + 1, ' ', n - 1) : NULL;
        if (!sp) {
            skipped++;
            continue;
        }
        if ((s = buf_reserve(&b, n, "tokenizer: a merge")) != LK_OK)
            break;
        size_t an = (size_t)(sp - e->ptr);
        int64_t ka = gpt2_bytes(e->ptr, an, (char *)b.p);
        int64_t kb = ka < 0 ? -1 : gpt2_bytes(sp + 1, n - an - 1, (char *)b.p + ka);
        int32_t ia = -1, ib = -1, in = -1;
        if (kb >= 0) {
            ia = tok_bpe_find(m, (const char *)b.p, (size_t)ka);
            ib = tok_bpe_find(m, (const char *)b.p + ka, (size_t)kb);
            in = tok_bpe_find(m, (const char *)b.p, (size_t)(ka + kb));
        }
        if (ia < 0 || ib < 0 || in < 0)
            skipped++;
        else
            s = tok_bpe_add_merge(m, ia, ib, in, (int32_t)i);
    }
    buf_free(&b);
    if (skipped)
        log_warn("%s: %s: %lld of %llu merges name no tokens and are skipped", g->t->path, K_MERGES,
                 (long long)skipped, (unsigned long long)kv->arr_n);
    return s;
}

/* SentencePiece scores (f32 or i32, as llama.cpp accepts); 0 for all when absent. */
static lk_status read_scores(struct gl *g)
{
    const gguf_kv *kv;
    LK_TRY(get_arr(g, K_SCORES, GGUF_F32, GGUF_I32, g->n, 0, &kv));
    float *sc = calloc((size_t)g->n, sizeof *sc);
    if (!sc)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory for the scores", g->t->path);
    g->t->bpe.scores = sc;
    for (int64_t i = 0; kv && i < g->n; i++) {
        if (kv->arr_type == GGUF_F32) {
            memcpy(&sc[i], kv->arr_data + 4 * i, 4);
        } else {
            int32_t v;
            memcpy(&v, kv->arr_data + 4 * i, 4);
            sc[i] = (float)v;
        }
        if (isnan(sc[i]))
            return status_fail(LK_ERR_FORMAT, "%s: %s: score %lld is NaN", g->t->path, K_SCORES,
                               (long long)i);
    }
    return LK_OK;
}

/* SentencePiece byte tokens: <0xXX>, else the byte itself as a token (llama.cpp's byte_to_token);
 * the unknown token for a byte with neither (where llama.cpp would stop with an exception). */
static void spm_bytes(struct gl *g)
{
    tok_bpe *m = &g->t->bpe;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (m->byte_ids[b] < 0)
            m->byte_ids[b] = tok_bpe_find(m, &c, 1);
    }
    m->unk_id = g->unk;
}

/* ============================================================================================ */
/* Token attributes                                                                             */
/* ============================================================================================ */

static lk_status read_attrs(struct gl *g)
{
    const gguf_kv *kv;
    LK_TRY(get_arr(g, K_TYPES, GGUF_I32, GGUF_I32, g->n, 0, &kv));
    uint16_t *a = malloc((size_t)g->n * sizeof *a);
    if (!a)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory for the token types", g->t->path);
    g->t->attr = a;
    static const uint16_t of_type[7] = {0,
                                        TOK_ATTR_NORMAL,
                                        TOK_ATTR_UNKNOWN,
                                        TOK_ATTR_CONTROL,
                                        TOK_ATTR_USER_DEFINED,
                                        TOK_ATTR_UNUSED,
                                        TOK_ATTR_BYTE};
    for (int64_t i = 0; i < g->n; i++) {
        int32_t ty = TT_NORMAL;
        if (kv)
            memcpy(&ty, kv->arr_data + 4 * i, 4);
        a[i] = ty >= 0 && ty <= TT_BYTE ? of_type[ty] : 0; /* other types: undefined */
    }
    return LK_OK;
}

/* Texts llama.cpp recognises by name (llama_vocab::impl::load, "auto-detect special tokens"):
 * roles 0-5 are the fill-in-the-middle tokens, marked control when their id key is absent; role 6
 * is the end-of-generation list, always marked control. (llama.cpp marks the first FIM token of a
 * role it meets in hash order; a vocabulary with two texts of one role gets both marked here.) */
static const struct {
    const char *key; /* the id key that makes the search unnecessary */
    const char *key2;
    const char *const texts[24];
} g_named[] = {
    {"tokenizer.ggml.fim_pre_token_id",
     "tokenizer.ggml.prefix_token_id",
     {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
      "<\xef\xbd\x9c"
      "fim\xe2\x96\x81"
      "begin\xef\xbd\x9c>",
      "<PRE>", SPACE_MARK "<PRE>", "<|code_prefix|>", "<|prefix|>"}},
    {"tokenizer.ggml.fim_suf_token_id",
     "tokenizer.ggml.suffix_token_id",
     {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
      "<\xef\xbd\x9c"
      "fim\xe2\x96\x81"
      "hole\xef\xbd\x9c>",
      "<SUF>", SPACE_MARK "<SUF>", "<|code_suffix|>", "<|suffix|>"}},
    {"tokenizer.ggml.fim_mid_token_id",
     "tokenizer.ggml.middle_token_id",
     {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
      "<\xef\xbd\x9c"
      "fim\xe2\x96\x81"
      "end\xef\xbd\x9c>",
      "<MID>", SPACE_MARK "<MID>", "<|code_middle|>", "<|middle|>"}},
    {"tokenizer.ggml.fim_pad_token_id",
     NULL,
     {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
    {"tokenizer.ggml.fim_rep_token_id",
     NULL,
     {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
    {"tokenizer.ggml.fim_sep_token_id", NULL, {"<|file_sep|>"}},
    {NULL,
     NULL,
     {"<|eot_id|>",
      "<|im_end|>",
      "<|end|>",
      "<|return|>",
      "<|call|>",
      "<|flush|>",
      "<|calls|>",
      "<end_of_turn>",
      "<|endoftext|>",
      "</s>",
      "<|eom_id|>",
      "<EOT>",
      "_<EOT>",
      "[EOT]",
      "[EOS]",
      "<|end_of_text|>",
      "<end_of_utterance>",
      "<eos>",
      "<turn|>",
      "<|tool_response>",
      "<\xef\xbd\x9c"
      "end\xe2\x96\x81"
      "of\xe2\x96\x81"
      "sentence\xef\xbd\x9c>",
      "[e~["}},
};

/* The id llama.cpp's token_to_id gives text (the last token spelled so), or -1. */
static int32_t id_of_text(const struct gl *g, const char *text)
{
    for (int64_t i = g->n - 1; i >= 0; i--)
        if (strcmp(tok_text(g, i), text) == 0)
            return (int32_t)i;
    return -1;
}

/* Is text among a few names llama.cpp's special-token lookups use? Ids found by one pass over
 * the vocabulary: names start with '<', '[', '_' or "▁" and are short. */
static void find_named(const struct gl *g, const char *const *names, int n, int32_t *ids)
{
    for (int k = 0; k < n; k++)
        ids[k] = -1;
    for (int64_t i = 0; i < g->n; i++) {
        const char *x = tok_text(g, i);
        if (x[0] != '<' && x[0] != '[' && x[0] != '_' && (uint8_t)x[0] != 0xe2)
            continue;
        for (int k = 0; k < n; k++)
            if (strcmp(x, names[k]) == 0)
                ids[k] = (int32_t)i; /* the last one wins */
    }
}

static void mark_named(const struct gl *g)
{
    const char *names[7 * 24];
    int32_t ids[7 * 24];
    int n = 0;
    for (int r = 0; r < 7; r++) {
        int skip = g_named[r].key && (gguf_find_kv(g->f, g_named[r].key) ||
                                      (g_named[r].key2 && gguf_find_kv(g->f, g_named[r].key2)));
        for (int k = 0; !skip && k < 24 && g_named[r].texts[k]; k++)
            names[n++] = g_named[r].texts[k];
    }
    find_named(g, names, n, ids);
    for (int k = 0; k < n; k++)
        if (ids[k] >= 0)
            g->t->attr[ids[k]] |= TOK_ATTR_CONTROL;
}

/* llama.cpp's per-vocabulary attribute fixes, in its order: gpt-oss's always-rendered tokens
 * become user-defined; "<|end|>" is not an end of generation (user-defined) where "<|return|>"
 * and "<|call|>" (o200k_harmony) or "<|calls|>" and "<|flush|>" (solar-open) exist; "</s>" is a
 * normal token where "<|tool_response>" (Gemma 4) exists. */
static void fix_attrs(const struct gl *g)
{
    static const char *const always[] = {"<|channel|>", "<|message|>", "<|start|>",
                                         "<|constrain|>"};
    static const char *const names[] = {"<|return|>", "<|call|>", "<|calls|>",       "<|flush|>",
                                        "<|end|>",    "</s>",     "<|tool_response>"};
    int32_t ids[7];
    uint16_t *a = g->t->attr;
    for (int k = 0; k < 4; k++) {
        int32_t id = id_of_text(g, always[k]);
        if (id >= 0)
            a[id] = TOK_ATTR_USER_DEFINED;
    }
    find_named(g, names, 7, ids);
    if (ids[4] >= 0 && ((ids[0] >= 0 && ids[1] >= 0) || (ids[2] >= 0 && ids[3] >= 0)))
        a[ids[4]] = TOK_ATTR_USER_DEFINED;
    if (ids[5] >= 0 && ids[6] >= 0)
        a[ids[5]] = TOK_ATTR_NORMAL;
}

static int contains(const gguf_str *s, const char *needle, int lower)
{
    size_t k = strlen(needle);
    for (size_t i = 0; s->ptr && i + k <= s->len; i++) {
        size_t j = 0;
        while (j < k &&
               (lower ? tolower((unsigned char)s->ptr[i + j]) : s->ptr[i + j]) == needle[j])
            j++;
        if (j == k)
            return 1;
    }
    return 0;
}

/* Attributes llama.cpp sets by model name after the special-token list is made ("Handle per token
 * attributes"): rstrip on Phi-3's special tokens (not <unk>, <s>, <|endoftext|>), lstrip on the
 * <mask> of jina-v2 / nomic-bert-moe / jina-bert-v3 and the [MASK] of modern-bert. */
static lk_status name_attrs(const struct gl *g)
{
    gguf_str name, pre, arch;
    LK_TRY(get_str(g, "general.name", 0, &name));
    LK_TRY(get_str(g, K_PRE, 0, &pre));
    LK_TRY(get_str(g, "general.architecture", 0, &arch));
    uint16_t *a = g->t->attr;
    int32_t id;
    if (contains(&pre, "jina-v2-de", 0) || contains(&pre, "jina-v2-es", 0) ||
        contains(&pre, "jina-v2-code", 0) || contains(&arch, "nomic-bert-moe", 0) ||
        contains(&arch, "jina-bert-v3", 0)) {
        if ((id = id_of_text(g, "<mask>")) >= 0)
            a[id] |= TOK_ATTR_LSTRIP;
    } else if (contains(&name, "phi-3", 1) || contains(&name, "phi3", 1)) {
        for (int i = 0; i < g->t->n_special; i++)
            a[g->t->special[i]] |= TOK_ATTR_RSTRIP;
        if ((id = id_of_text(g, "</s>")) >= 0)
            a[id] |= TOK_ATTR_RSTRIP;
        static const char *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int k = 0; k < 3; k++)
            if ((id = id_of_text(g, off[k])) >= 0)
                a[id] &= (uint16_t)~TOK_ATTR_RSTRIP;
    } else if (contains(&name, "modern-bert", 1)) {
        if ((id = id_of_text(g, "[MASK]")) >= 0)
            a[id] |= TOK_ATTR_LSTRIP;
    }
    return LK_OK;
}

/* ============================================================================================ */
/* Special tokens                                                                               */
/* ============================================================================================ */

static int cmp_special(const void *x, const void *y, void *ctx)
{
    const struct gl *g = ctx;
    int32_t i = *(const int32_t *)x, j = *(const int32_t *)y;
    size_t a = strlen(tok_text(g, i)), b = strlen(tok_text(g, j));
    if (a != b)
        return a > b ? -1 : 1;
    return (i > j) - (i < j);
}

/* llama.cpp's special-token cache: control, user-defined and unknown tokens, longest first (ties
 * by id: llama.cpp's sort leaves their order unspecified). Each also becomes an added token. */
static lk_status build_specials(struct gl *g)
{
    lk_tokenizer *t = g->t;
    int64_t n = 0;
    for (int64_t i = 0; i < g->n; i++)
        n += (t->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) != 0;
    t->special = malloc((size_t)(n ? n : 1) * sizeof *t->special);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    t->added_of_id = malloc((size_t)g->n * sizeof *t->added_of_id);
    if (!t->special || !t->added || !t->added_of_id)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory for the special tokens", t->path);
    memset(t->added_of_id, 0xFF, (size_t)g->n * sizeof *t->added_of_id);
    for (int64_t i = 0; i < g->n; i++)
        if (t->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            t->special[t->n_special++] = (int32_t)i;
    qsort_r(t->special, (size_t)n, sizeof *t->special, cmp_special, g);
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        struct added *a = &t->added[t->n_added++];
        if (!(a->content = tok_strdup(tok_text(g, id), &a->len)))
            return status_fail(LK_ERR_NOMEM, "%s: out of memory", t->path);
        a->pat = a->content;
        a->pat_len = a->len;
        a->id = id;
        a->special = (t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) != 0;
        a->skip = a->special;
        t->added_of_id[id] = k;
    }
    return LK_OK;
}

/* BOS/EOS and the flags, with llama.cpp's defaults for the model and pre-tokenizer. */
static lk_status read_flags(struct gl *g, int spm)
{
    lk_tokenizer *t = g->t;
    int32_t bos = spm ? 1 : 11, eos = spm ? 2 : 11; /* llama.cpp's defaults, if in range */
    g->unk = spm ? 0 : -1;
    if (g->pre_flags & TOK_PRE_NO_BOS)
        bos = -1;
    bos = bos < g->n ? bos : -1;
    eos = eos < g->n ? eos : -1;
    g->unk = g->unk < g->n ? g->unk : -1;
    LK_TRY(get_id(g, "tokenizer.ggml.bos_token_id", &bos, NULL));
    LK_TRY(get_id(g, "tokenizer.ggml.eos_token_id", &eos, NULL));
    LK_TRY(get_id(g, "tokenizer.ggml.unknown_token_id", &g->unk, NULL));
    t->bos = bos;
    t->eos = eos;
    t->cfg_flags = 1;
    t->add_bos = spm || (g->pre_flags & TOK_PRE_ADD_BOS);
    t->add_eos = 0;
    t->add_space_prefix = spm;
    t->clean_spaces = !spm && (g->pre_flags & TOK_PRE_CLEAN_SPACES);
    LK_TRY(get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos));
    LK_TRY(get_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos));
    LK_TRY(get_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix));
    if ((bos >= 0 && !(t->bos_str = tok_strdup(tok_text(g, bos), NULL))) ||
        (eos >= 0 && !(t->eos_str = tok_strdup(tok_text(g, eos), NULL))))
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", t->path);
    return LK_OK;
}

/* ============================================================================================ */
/* Pipeline                                                                                     */
/* ============================================================================================ */

static lk_status add_norm(lk_tokenizer *t, int kind, const char *a, const char *b)
{
    struct norm_step ns = {.kind = kind};
    if ((a && !(ns.a = tok_strdup(a, &ns.alen))) || (b && !(ns.b = tok_strdup(b, &ns.blen)))) {
        free(ns.a);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    return tok_add_norm(t, &ns);
}

/* A llama.cpp regex as PCRE2 should read it to mean what llama.cpp's matching means: \p{Lu},
 * \p{Ll}, \p{Lt}, \p{Lm}, \p{Lo} become \p{L} (llama.cpp collapses every letter to one class) and
 * \d becomes [0-9] (ECMAScript's \d). "$" is the end of the piece only (PCRE2_DOLLAR_ENDONLY). */
static lk_status compile_llama_re(lk_tokenizer *t, const char *re, pcre2_code **out)
{
    size_t n = strlen(re);
    char *p = malloc(2 * n + 1);
    if (!p)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    size_t k = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '\\' && i + 1 < n) {
            if (re[i + 1] == 'p' && i + 5 < n && re[i + 2] == '{' && re[i + 3] == 'L' &&
                re[i + 5] == '}' && strchr("ultmo", re[i + 4])) {
                memcpy(p + k, "\\p{L}", 5);
                k += 5;
                i += 5;
            } else if (re[i + 1] == 'd') {
                const char *d = in_class ? "0-9" : "[0-9]";
                memcpy(p + k, d, strlen(d));
                k += strlen(d);
                i += 1;
            } else {
                p[k++] = re[i];
                p[k++] = re[++i];
            }
            continue;
        }
        if (re[i] == '[')
            in_class = 1;
        else if (re[i] == ']')
            in_class = 0;
        p[k++] = re[i];
    }
    lk_status s = tok_compile_re(t, p, k, 0, PCRE2_DOLLAR_ENDONLY, out);
    free(p);
    return s;
}

/* gpt2: the pre-tokenizer's regexes (split pieces, matches and the text between them kept), text
 * read as llama.cpp reads it, merges. */
static lk_status setup_bpe(struct gl *g, const struct tok_gguf_pre *pre)
{
    lk_tokenizer *t = g->t;
    LK_TRY(add_norm(t, N_UTF8, NULL, NULL));
    for (int k = 0; pre->regex[k]; k++) {
        struct pre_step ps = {.kind = P_SPLIT, .behavior = B_ISOLATED, .empty_splits = 1};
        if (k == 0 && (pre->flags & TOK_PRE_DIGIT_GROUPS))
            ps.kind = P_DIGITS;
        else
            LK_TRY(compile_llama_re(t, pre->regex[k], &ps.re));
        LK_TRY(tok_add_pre(t, &ps));
    }
    t->bpe.ignore_merges = (pre->flags & TOK_PRE_IGNORE_MERGES) != 0;
    const gguf_kv *merges;
    LK_TRY(get_arr(g, K_MERGES, GGUF_STRING, GGUF_STRING, -1, 1, &merges));
    return read_merges(g, merges);
}

/* llama: a "▁" before each piece of text (add_space_prefix) and spaces as "▁". */
static lk_status setup_spm(struct gl *g)
{
    lk_tokenizer *t = g->t;
    if (t->add_space_prefix)
        LK_TRY(add_norm(t, N_PREPEND, SPACE_MARK, NULL));
    LK_TRY(add_norm(t, N_REPLACE, " ", SPACE_MARK));
    spm_bytes(g);
    return read_scores(g);
}

/* tokenizer.ggml.model and .pre: which model, which pre-tokenizer (NULL for SentencePiece). */
static lk_status read_kind(struct gl *g, const struct tok_gguf_pre **pre, char *pre_name,
                           size_t cap)
{
    gguf_str model, p;
    LK_TRY(get_str(g, K_MODEL, 1, &model));
    LK_TRY(get_str(g, K_PRE, 0, &p));
    *pre = NULL;
    if (model.len == 5 && !memcmp(model.ptr, "llama", 5)) {
        g->t->kind = TOK_GGUF_SPM;
        return LK_OK;
    }
    if (model.len != 4 || memcmp(model.ptr, "gpt2", 4) != 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: %s '%.*s' is not supported (supported: gpt2, llama)", g->t->path,
                           K_MODEL, (int)(model.len > 64 ? 64 : model.len), model.ptr);
    g->t->kind = TOK_GGUF_BPE;
    g->t->bpe.byte_level = 1;
    if (!p.ptr) {
        log_warn("%s: %s is missing; using 'default' (as llama.cpp does: the model may tokenize "
                 "badly)",
                 g->t->path, K_PRE);
        p = (gguf_str){"default", 7};
    }
    snprintf(pre_name, cap, "%.*s", (int)(p.len >= cap ? cap - 1 : p.len), p.ptr);
    *pre = p.len < cap && !memchr(p.ptr, 0, p.len) ? tok_gguf_pre_find(pre_name) : NULL;
    if (!*pre)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: %s '%s' is not a pre-tokenizer llama.cpp knows (lorakit "
                           "follows the names of llama.cpp 0c1e57098)",
                           g->t->path, K_PRE, pre_name);
    if (!(*pre)->regex)
        return status_fail(LK_ERR_UNSUPPORTED, "%s: %s '%s' is not supported: lorakit lacks %s",
                           g->t->path, K_PRE, pre_name, (*pre)->why);
    g->pre_flags = (*pre)->flags;
    return LK_OK;
}

static lk_status read_template(struct gl *g)
{
    gguf_str s;
    LK_TRY(get_str(g, K_TEMPLATE, 0, &s));
    if (!s.ptr)
        return LK_OK;
    size_t n = strnlen(s.ptr, s.len);
    if (!(g->t->chat_template = malloc(n + 1)))
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", g->t->path);
    memcpy(g->t->chat_template, s.ptr, n);
    g->t->chat_template[n] = 0;
    return LK_OK;
}

static lk_status load(struct gl *g)
{
    const struct tok_gguf_pre *pre;
    char pre_name[64];
    LK_TRY(read_kind(g, &pre, pre_name, sizeof pre_name));
    const gguf_kv *tokens;
    LK_TRY(get_arr(g, K_TOKENS, GGUF_STRING, GGUF_STRING, -1, 1, &tokens));
    if (tokens->arr_n == 0 || tokens->arr_n > (uint64_t)MAX_TOKENS)
        return status_fail(LK_ERR_FORMAT, "%s: %s: %llu tokens, expected 1 to 2^30", g->t->path,
                           K_TOKENS, (unsigned long long)tokens->arr_n);
    g->n = (int64_t)tokens->arr_n;
    g->t->vocab_size = g->n;
    LK_TRY(read_texts(g, tokens));
    LK_TRY(read_attrs(g));
    LK_TRY(build_vocab(g));
    LK_TRY(read_flags(g, g->t->kind == TOK_GGUF_SPM));
    LK_TRY(pre ? setup_bpe(g, pre) : setup_spm(g));
    mark_named(g);
    fix_attrs(g);
    LK_TRY(build_specials(g));
    LK_TRY(name_attrs(g));
    for (int k = 0; k < g->t->n_added; k++) {
        uint16_t a = g->t->attr[g->t->added[k].id];
        g->t->added[k].lstrip = (a & TOK_ATTR_LSTRIP) != 0;
        g->t->added[k].rstrip = (a & TOK_ATTR_RSTRIP) != 0;
    }
    return read_template(g);
}

lk_status tok_load_gguf(lk_tokenizer *t, const char *path)
{
    gguf_file f;
    LK_TRY(gguf_open_meta(&f, path));
    struct gl g = {.t = t, .f = &f};
    lk_status s = load(&g);
    free(g.text);
    free(g.text_off);
    gguf_close(&f);
    return s;
}
