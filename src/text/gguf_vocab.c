/* gguf_vocab.c — see gguf_vocab.h. Follows convert_hf_to_gguf.py (_set_vocab_llama_hf,
 * _set_vocab_gpt2 / get_vocab_base) and gguf-py's SpecialVocab of llama.cpp 0c1e57098: token
 * types NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6. Scores of
 * SentencePiece-style vocabularies are the piece order (-(id - first normal id)), which is what
 * SentencePiece BPE models store and what the real stories260K.gguf holds. For Qwen2.5 and
 * Llama-3.2 every tokenizer key equals the converter's (tests/test_gguf_tok.c checks digests);
 * not reproduced: tokenizer.ggml.add_sep_token, and the converter's re-encoding of added tokens
 * that are not normalized (ASCII special tokens come out unchanged). */
#include "text/gguf_vocab.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct {
    int64_t n;         /* cfg->vocab_size */
    const char **text; /* [n] borrowed from the JSON or pad[] */
    char (*pad)[32];   /* [n] "[PADi]" storage */
    int32_t *type;     /* [n] */
    float *score;      /* [n] */
    int byte_fallback;
} vocab;

static lk_status load_json(const char *dir, const char *name, int required, cJSON **out)
{
    char *p = path_join(dir, name);
    *out = NULL;
    if (!p)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    lk_status s = LK_OK;
    if (!file_exists(p)) {
        if (required)
            s = status_fail(LK_ERR_IO,
                            "%s: missing (hint: GGUF output needs the tokenizer; "
                            "copy tokenizer.json into the model folder)",
                            p);
    } else {
        s = json_read_file(p, 256u << 20, out);
    }
    free(p);
    return s;
}

/* convert_hf_to_gguf's does_token_look_special: added tokens marked control even when
 * tokenizer.json does not call them special. */
static int looks_special(const char *t)
{
    size_t n = strlen(t);
    static const char *const named[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (int k = 0; k < 4; k++)
        if (strcmp(t, named[k]) == 0)
            return 1;
    return (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) ||
           (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>")) ||
           (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>');
}

/* Fill text/type from model.vocab and added_tokens. */
static lk_status vocab_fill(vocab *v, const cJSON *tok, const char *dir)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tok, "model");
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(voc) || !cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s/tokenizer.json: only BPE tokenizers are "
                           "converted to GGUF",
                           dir);
    v->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    for (const cJSON *e = voc->child; e; e = e->next)
        if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < (double)v->n) {
            int64_t id = (int64_t)e->valuedouble;
            v->text[id] = e->string;
            v->type[id] = TT_NORMAL;
            if (v->byte_fallback && strlen(e->string) == 6 && !strncmp(e->string, "<0x", 3))
                v->type[id] = TT_BYTE;
        }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    for (const cJSON *e = cJSON_IsArray(added) ? added->child : NULL; e; e = e->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || id->valuedouble < 0 ||
            id->valuedouble >= (double)v->n)
            continue;
        int64_t i = (int64_t)id->valuedouble;
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        v->text[i] = c->valuestring;
        v->type[i] = special ? TT_CONTROL : TT_USER;
        if (!v->byte_fallback && looks_special(c->valuestring)) /* get_vocab_base */
            v->type[i] = TT_CONTROL;
        if (v->byte_fallback && cJSON_IsString(unk) &&
            strcmp(unk->valuestring, c->valuestring) == 0)
            v->type[i] = TT_UNKNOWN;
    }
    int64_t first_normal = -1;
    for (int64_t i = 0; i < v->n; i++) {
        if (!v->text[i]) {
            snprintf(v->pad[i], sizeof v->pad[i], "[PAD%lld]", (long long)i);
            v->text[i] = v->pad[i];
            v->type[i] = TT_UNUSED;
        }
        if (v->type[i] == TT_NORMAL && first_normal < 0)
            first_normal = i;
        v->score[i] = v->type[i] == TT_NORMAL ? -(float)(i - first_normal) : 0.0f;
    }
    return LK_OK;
}

/* Merges as "a b" strings (tokenizer.json holds "a b" or ["a", "b"]). */
static lk_status add_merges(gguf_writer *w, const cJSON *tok)
{
    const cJSON *m =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "merges");
    int n = cJSON_GetArraySize(m);
    char **s = calloc((size_t)(n ? n : 1), sizeof *s);
    if (!s)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    lk_status st = LK_OK;
    int k = 0;
    for (const cJSON *e = cJSON_IsArray(m) ? m->child : NULL; e && st == LK_OK; e = e->next) {
        if (cJSON_IsString(e))
            s[k] = strdup(e->valuestring);
        else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                 cJSON_IsString(e->child->next)) {
            size_t len = strlen(e->child->valuestring) + strlen(e->child->next->valuestring) + 2;
            if ((s[k] = malloc(len)))
                snprintf(s[k], len, "%s %s", e->child->valuestring, e->child->next->valuestring);
        } else
            continue;
        st = s[k++] ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    }
    if (st == LK_OK)
        st = gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)s, (uint64_t)k);
    for (int i = 0; i < k; i++)
        free(s[i]);
    free(s);
    return st;
}

/* Name of llama.cpp's pre-tokenizer for a byte-level BPE vocabulary. */
static const char *pre_name(const struct lk_model_config *cfg, const cJSON *tok)
{
    if (strcmp(cfg->arch, "qwen2") == 0)
        return "qwen2";
    char *pre = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(tok, "pre_tokenizer"));
    int llama3 = pre && strstr(pre, "\\\\p{N}{1,3}") != NULL;
    free(pre);
    if (!llama3)
        log_warn("GGUF vocabulary: pre-tokenizer not recognised; writing 'default'");
    return llama3 ? "llama-bpe" : "default";
}

/* A token named in tokenizer_config.json (key: "str" or {"content": "str"}), or NULL. */
static const char *special_token_name(const cJSON *tc, const char *key)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(tc, key);
    if (cJSON_IsObject(e))
        e = cJSON_GetObjectItemCaseSensitive(e, "content");
    return cJSON_IsString(e) ? e->valuestring : NULL;
}

/* tokenizer.chat_template: tokenizer_config.json's chat_template (a string), else the folder's
 * chat_template.jinja. */
static lk_status add_template(gguf_writer *w, const cJSON *tc, const char *dir)
{
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
    if (cJSON_IsString(ct))
        return gguf_set_str(w, "tokenizer.chat_template", ct->valuestring);
    char *p = path_join(dir, "chat_template.jinja"), *txt = NULL;
    if (!p)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    lk_status s = file_exists(p) ? read_text_file(p, 1 << 24, &txt, NULL) : LK_OK;
    if (s == LK_OK && txt)
        s = gguf_set_str(w, "tokenizer.chat_template", txt);
    free(txt);
    free(p);
    return s;
}

/* Id of a special token named in tokenizer_config.json (string or {"content": ...}). */
static int64_t special_id(const vocab *v, const cJSON *tc, const char *key)
{
    const char *name = special_token_name(tc, key);
    for (int64_t i = 0; name && i < v->n; i++)
        if (strcmp(v->text[i], name) == 0)
            return i;
    return -1;
}

/* SpecialVocab's reading of tokenizer.json's post_processor (processors of a Sequence in turn):
 * ByteLevel makes add_bos / add_eos false unless set; TemplateProcessing's single sequence sets
 * add_bos when it starts with the BOS (or CLS) token and add_eos when it ends with a special
 * token; RobertaProcessing sets both. -1: not set. */
static void post_processor_adds(const cJSON *pp, const cJSON *tc, int *bos, int *eos)
{
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *p;
    const cJSON *one[1] = {pp};
    int n = cJSON_IsArray(procs) ? cJSON_GetArraySize(procs) : 1;
    const char *bos_tok = special_token_name(tc, "bos_token");
    const char *cls_tok = special_token_name(tc, "cls_token");
    for (int i = 0; pp && i < n; i++) {
        p = cJSON_IsArray(procs) ? cJSON_GetArrayItem(procs, i) : one[0];
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
        if (!strcmp(t, "ByteLevel")) {
            *bos = *bos < 0 ? 0 : *bos;
            *eos = *eos < 0 ? 0 : *eos;
        } else if (!strcmp(t, "RobertaProcessing")) {
            *bos = *eos = 1;
        } else if (!strcmp(t, "TemplateProcessing")) {
            const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
            int k = cJSON_GetArraySize(single);
            const char *first =
                k > 1 ? special_token_name(cJSON_GetObjectItemCaseSensitive(
                                               cJSON_GetArrayItem(single, 0), "SpecialToken"),
                                           "id")
                      : NULL;
            const char *last =
                k > 1 ? special_token_name(cJSON_GetObjectItemCaseSensitive(
                                               cJSON_GetArrayItem(single, k - 1), "SpecialToken"),
                                           "id")
                      : NULL;
            if (first)
                *bos = !bos_tok || !strcmp(first, bos_tok) || (cls_tok && !strcmp(first, cls_tok));
            if (last)
                *eos = 1;
        }
    }
}

static lk_status add_specials(gguf_writer *w, const vocab *v, const cJSON *tok, const cJSON *tc,
                              const char *dir, const struct lk_model_config *cfg)
{
    static const char *const keys[][2] = {{"bos_token", "tokenizer.ggml.bos_token_id"},
                                          {"eos_token", "tokenizer.ggml.eos_token_id"},
                                          {"unk_token", "tokenizer.ggml.unknown_token_id"},
                                          {"pad_token", "tokenizer.ggml.padding_token_id"}};
    for (int k = 0; k < 4; k++) {
        int64_t id = special_id(v, tc, keys[k][0]);
        if (id < 0 && k == 0)
            id = cfg->bos_id;
        if (id < 0 && k == 1 && cfg->n_eos > 0)
            id = cfg->eos_ids[0];
        if (id >= 0)
            LK_TRY(gguf_set_u32(w, keys[k][1], (uint32_t)id));
    }
    int add_bos = -1, add_eos = -1; /* the post-processor first, then tokenizer_config.json */
    post_processor_adds(cJSON_GetObjectItemCaseSensitive(tok, "post_processor"), tc, &add_bos,
                        &add_eos);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(tc, "add_eos_token");
    if (add_bos < 0 && cJSON_IsBool(ab))
        add_bos = cJSON_IsTrue(ab);
    if (add_eos < 0 && cJSON_IsBool(ae))
        add_eos = cJSON_IsTrue(ae);
    if (add_bos >= 0)
        LK_TRY(gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos));
    if (add_eos >= 0)
        LK_TRY(gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos));
    return add_template(w, tc, dir);
}

static lk_status write_vocab(gguf_writer *w, const vocab *v, const cJSON *tok, const cJSON *tc,
                             const char *dir, const struct lk_model_config *cfg)
{
    LK_TRY(gguf_set_str(w, "tokenizer.ggml.model", v->byte_fallback ? "llama" : "gpt2"));
    LK_TRY(
        gguf_set_str(w, "tokenizer.ggml.pre", v->byte_fallback ? "default" : pre_name(cfg, tok)));
    LK_TRY(gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->text, (uint64_t)v->n));
    if (v->byte_fallback)
        LK_TRY(gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, v->score, (uint64_t)v->n));
    LK_TRY(gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, v->type, (uint64_t)v->n));
    if (!v->byte_fallback)
        LK_TRY(add_merges(w, tok));
    return add_specials(w, v, tok, tc, dir, cfg);
}

lk_status gguf_vocab_from_hf(gguf_writer *w, const char *dir, const struct lk_model_config *cfg)
{
    cJSON *tok = NULL, *tc = NULL;
    vocab v = {.n = cfg->vocab_size};
    lk_status s = load_json(dir, "tokenizer.json", 1, &tok);
    if (s == LK_OK)
        s = load_json(dir, "tokenizer_config.json", 0, &tc);
    v.text = calloc((size_t)v.n, sizeof *v.text);
    v.pad = calloc((size_t)v.n, sizeof *v.pad);
    v.type = calloc((size_t)v.n, sizeof *v.type);
    v.score = calloc((size_t)v.n, sizeof *v.score);
    if (s == LK_OK && (!v.text || !v.pad || !v.type || !v.score))
        s = status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK)
        s = vocab_fill(&v, tok, dir);
    if (s == LK_OK)
        s = write_vocab(w, &v, tok, tc, dir, cfg);
    free(v.text);
    free(v.pad);
    free(v.type);
    free(v.score);
    cJSON_Delete(tok);
    cJSON_Delete(tc);
    return s;
}
