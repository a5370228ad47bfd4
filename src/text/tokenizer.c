/* tokenizer.c — the tokenizer object: loading a Hugging Face tokenizer folder (tokenizer.json:
 * the BPE model's vocabulary and merges, added tokens; its pipeline through tokenizer_pipeline.c;
 * tokenizer_config.json / special_tokens_map.json / chat_template.jinja: BOS/EOS, add_*_token,
 * the chat template) or a GGUF file's tokenizer (through tokenizer_gguf.c), freeing it, and its
 * queries. Byte-level tokenizers store the vocabulary as raw bytes (the GPT-2 byte map is undone
 * at load), so the model works on bytes directly. Encoding and decoding live in
 * tokenizer_encode.c and tokenizer_decode.c; this file calls into tokenizer_pipeline.c,
 * tok_normalize (tokenizer_encode.c) and tok_load_gguf, and nothing calls back. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"
#include "text/bpe.h"

/* ============================================================================================ */
/* Accessors                                                                                    */
/* ============================================================================================ */

int64_t lk_tokenizer_vocab_size(const lk_tokenizer *t)
{
    return t ? t->vocab_size : 0;
}
int32_t lk_tokenizer_bos(const lk_tokenizer *t)
{
    return t ? t->bos : -1;
}
int32_t lk_tokenizer_eos(const lk_tokenizer *t)
{
    return t ? t->eos : -1;
}
const char *lk_tokenizer_chat_template(const lk_tokenizer *t)
{
    return t ? t->chat_template : 0;
}
const char *lk_tokenizer_bos_str(const lk_tokenizer *t)
{
    return t && t->bos_str ? t->bos_str : "";
}
const char *lk_tokenizer_eos_str(const lk_tokenizer *t)
{
    return t && t->eos_str ? t->eos_str : "";
}

int lk_tokenizer_adds_bos(const lk_tokenizer *t)
{
    if (t->cfg_flags)
        return t->add_bos && t->bos >= 0;
    return t->n_tmpl_pre > 0 && t->tmpl_pre[0] == t->bos;
}

int lk_tokenizer_adds_eos(const lk_tokenizer *t)
{
    if (t->cfg_flags)
        return t->add_eos && t->eos >= 0;
    return t->n_tmpl_post > 0 && t->tmpl_post[t->n_tmpl_post - 1] == t->eos;
}

int lk_tokenizer_is_special(const lk_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->vocab_size || t->added_of_id[id] < 0)
        return 0;
    return t->added[t->added_of_id[id]].special;
}

/* Bytes of id as stored (added tokens: their content; byte-level vocabularies: raw bytes), and
 * its kind: 0 undefined, 1 vocabulary entry, 2 added, 3 added special. */
static int token_bytes(const lk_tokenizer *t, int64_t id, const char **s, size_t *n)
{
    int32_t a = t->added_of_id[id];
    if (a >= 0) {
        *s = t->added[a].content;
        *n = t->added[a].len;
        return 2 + (t->added[a].special != 0);
    }
    if (id >= t->bpe.n_ids || t->bpe.len[id] < 0) {
        *s = "";
        *n = 0;
        return 0;
    }
    *s = t->bpe.strs + t->bpe.off[id];
    *n = (size_t)t->bpe.len[id];
    return 1;
}

int64_t lk_tokenizer_first_difference(const lk_tokenizer *a, const lk_tokenizer *b)
{
    int64_t n = a->vocab_size < b->vocab_size ? a->vocab_size : b->vocab_size;
    if (a->bpe.byte_level != b->bpe.byte_level)
        return 0;
    for (int64_t id = 0; id < n; id++) {
        const char *sa, *sb;
        size_t na, nb;
        if (token_bytes(a, id, &sa, &na) != token_bytes(b, id, &sb, &nb) || na != nb ||
            memcmp(sa, sb, na) != 0)
            return id;
    }
    return -1;
}

int32_t lk_tokenizer_token_to_id(const lk_tokenizer *t, const char *str)
{
    if (!t || !str)
        return -1;
    size_t n = strlen(str);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, str, n) == 0)
            return t->added[i].id;
    if (!t->bpe.byte_level)
        return tok_bpe_find(&t->bpe, str, n);
    /* byte-level vocabularies are stored as raw bytes: undo the GPT-2 map first */
    char *raw = malloc(n + 1);
    if (!raw)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = utf8_next((const uint8_t *)str + i, n - i, &cp);
        int b = cl > 0 ? tok_cp_to_byte(cp) : -1;
        if (b < 0) {
            free(raw);
            return -1;
        }
        raw[k++] = (char)b;
        i += (size_t)cl;
    }
    int32_t id = tok_bpe_find(&t->bpe, raw, k);
    free(raw);
    return id;
}

/* ============================================================================================ */
/* Loading                                                                                      */
/* ============================================================================================ */

/* Convert a vocabulary string to the bytes the model works on (byte-level: undo the GPT-2 map;
 * strings with characters outside the map are kept as they are). Writes into buf (n bytes). */
static size_t vocab_bytes(const tok_bpe *m, const char *s, size_t n, char *buf)
{
    if (!m->byte_level) {
        memcpy(buf, s, n);
        return n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = utf8_next((const uint8_t *)s + i, n - i, &cp);
        int b = cl > 0 ? tok_cp_to_byte(cp) : -1;
        if (b < 0) {
            memcpy(buf, s, n);
            return n;
        }
        buf[k++] = (char)b;
        i += (size_t)cl;
    }
    return k;
}

static lk_status parse_vocab(lk_tokenizer *t, const cJSON *vocab, int64_t max_added)
{
    tok_bpe *m = &t->bpe;
    if (!cJSON_IsObject(vocab))
        return BAD(t, "model.vocab: expected an object of token -> id");
    int64_t max_id = -1, total = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab)
    {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || d < 0 || d >= (1 << 30) || d != (double)(int64_t)d)
            return BAD(t,
                       "model.vocab: token '%.40s' has id %s, expected an integer in "
                       "[0, 2^30)",
                       it->string, cJSON_IsNumber(it) ? "out of range" : "that is not a number");
        if ((int64_t)d > max_id)
            max_id = (int64_t)d;
        total += (int64_t)strlen(it->string);
    }
    int64_t entries = cJSON_GetArraySize(vocab) + t->n_added_json;
    m->n_ids = (max_id > max_added ? max_id : max_added) + 1;
    if (m->n_ids == 0)
        return BAD(t, "model.vocab is empty and there are no added tokens");
    if (m->n_ids > 2 * entries + 1024) /* ids are dense in real files; a huge one is corrupt */
        return BAD(t, "token id %lld is far beyond the %lld tokens listed", (long long)m->n_ids - 1,
                   (long long)entries);
    m->strs = malloc((size_t)total + 1);
    m->off = malloc((size_t)m->n_ids * sizeof *m->off);
    m->len = malloc((size_t)m->n_ids * sizeof *m->len);
    if (!m->strs || !m->off || !m->len)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory for the vocabulary");
    for (int64_t i = 0; i < m->n_ids; i++) { /* holes: no bytes */
        m->off[i] = 0;
        m->len[i] = -1;
    }
    int64_t pos = 0;
    cJSON_ArrayForEach(it, vocab)
    {
        int64_t id = (int64_t)it->valuedouble;
        if (m->len[id] >= 0)
            return BAD(t, "model.vocab: id %lld is given to two tokens", (long long)id);
        size_t k = vocab_bytes(m, it->string, strlen(it->string), m->strs + pos);
        m->off[id] = pos;
        m->len[id] = (int32_t)k;
        pos += (int64_t)k;
    }
    return tok_bpe_index(m);
}

/* Split a merge entry ("a b" or ["a", "b"]) and look both halves and their join up. */
static lk_status parse_merge(lk_tokenizer *t, const cJSON *it, int64_t rank, char *buf)
{
    const char *a, *b;
    size_t an, bn;
    if (cJSON_IsString(it)) {
        const char *s = it->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return BAD(t, "model.merges[%lld]: '%.60s' is not two tokens separated by one space",
                       (long long)rank, s);
        a = s, an = (size_t)(sp - s), b = sp + 1, bn = strlen(b);
    } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
        a = cJSON_GetArrayItem(it, 0)->valuestring, an = strlen(a);
        b = cJSON_GetArrayItem(it, 1)->valuestring, bn = strlen(b);
    } else {
        return BAD(t, "model.merges[%lld]: expected \"a b\" or [\"a\", \"b\"]", (long long)rank);
    }
    size_t ka = vocab_bytes(&t->bpe, a, an, buf);
    size_t kb = vocab_bytes(&t->bpe, b, bn, buf + ka);
    int32_t ia = tok_bpe_find(&t->bpe, buf, ka), ib = tok_bpe_find(&t->bpe, buf + ka, kb);
    int32_t in = tok_bpe_find(&t->bpe, buf, ka + kb);
    if (ia < 0 || ib < 0 || in < 0)
        return BAD(t, "model.merges[%lld]: '%.*s %.*s': %s is not in the vocabulary",
                   (long long)rank, (int)an, a, (int)bn, b,
                   ia < 0   ? "the first token"
                   : ib < 0 ? "the second token"
                            : "the merged token");
    return tok_bpe_add_merge(&t->bpe, ia, ib, in, (int32_t)rank);
}

static lk_status parse_model(lk_tokenizer *t, const cJSON *model, int64_t max_added)
{
    if (!cJSON_IsObject(model))
        return BAD(t, "missing \"model\" object");
    const char *type = tok_jstr(model, "type");
    if (!type && cJSON_GetObjectItemCaseSensitive(model, "merges"))
        type = "BPE";
    if (!type || strcmp(type, "BPE") != 0)
        return tok_unsupported(t, "model", type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return tok_unsupported(t, "BPE with dropout", "> 0");
    const char *csp = tok_jstr(model, "continuing_subword_prefix");
    const char *eow = tok_jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return tok_unsupported(t, "BPE continuing_subword_prefix/end_of_word_suffix", "non-empty");
    t->bpe.fuse_unk = tok_jbool(model, "fuse_unk", 0);
    t->bpe.byte_fallback = tok_jbool(model, "byte_fallback", 0);
    t->bpe.ignore_merges = tok_jbool(model, "ignore_merges", 0);
    LK_TRY(parse_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), max_added));
    const char *unk = tok_jstr(model, "unk_token");
    t->bpe.unk_id = -1;
    if (unk && (t->bpe.unk_id = tok_bpe_find(&t->bpe, unk, strlen(unk))) < 0)
        return BAD(t, "model.unk_token '%s' is not in the vocabulary", unk);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges))
        return BAD(t, "model.merges: expected an array");
    int64_t nm = cJSON_GetArraySize(merges);
    LK_TRY(tok_bpe_alloc_merges(&t->bpe, nm));
    int64_t rank = 0;
    char buf[2048];
    const cJSON *it;
    cJSON_ArrayForEach(it, merges)
    {
        const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
        if (s && strlen(s) >= sizeof buf)
            return BAD(t, "model.merges[%lld]: entry too long", (long long)rank);
        if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2) {
            const cJSON *x = cJSON_GetArrayItem(it, 0), *y = cJSON_GetArrayItem(it, 1);
            if (cJSON_IsString(x) && cJSON_IsString(y) &&
                strlen(x->valuestring) + strlen(y->valuestring) >= sizeof buf)
                return BAD(t, "model.merges[%lld]: entry too long", (long long)rank);
        }
        LK_TRY(parse_merge(t, it, rank++, buf));
    }
    return LK_OK;
}

/* Bucket the added tokens of one pass (normalized or not) by first pattern byte. */
/* Bucket order: first byte, then longest first, then file order (qsort_r: t is the context). */
static int cmp_added(const void *x, const void *y, void *t)
{
    int i = *(const int32_t *)x, j = *(const int32_t *)y;
    const struct added *a = &((lk_tokenizer *)t)->added[i], *b = &((lk_tokenizer *)t)->added[j];
    if ((uint8_t)a->pat[0] != (uint8_t)b->pat[0])
        return (uint8_t)a->pat[0] < (uint8_t)b->pat[0] ? -1 : 1;
    if (a->pat_len != b->pat_len)
        return a->pat_len > b->pat_len ? -1 : 1;
    return (i > j) - (i < j);
}

static lk_status build_added_set(lk_tokenizer *t, struct added_set *set, int normalized)
{
    int n = 0;
    for (int i = 0; i < t->n_added; i++)
        n += t->added[i].normalized == normalized && t->added[i].pat_len > 0;
    if (n == 0)
        return LK_OK;
    set->idx = malloc((size_t)n * sizeof *set->idx);
    if (!set->idx)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    int k = 0;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].pat_len > 0)
            set->idx[k++] = i;
    /* sorted, not insertion-sorted: any number of tokens may share a first byte */
    qsort_r(set->idx, (size_t)n, sizeof *set->idx, cmp_added, t);
    for (int b = 0, i = 0; b <= 256; b++) {
        while (i < n && (uint8_t)t->added[set->idx[i]].pat[0] < b)
            i++;
        set->begin[b] = b == 256 ? n : i;
    }
    return LK_OK;
}

/* The pattern of a normalized added token is its content put through the normalizer. */
static lk_status normalize_pattern(lk_tokenizer *t, struct added *a)
{
    if (!a->normalized || t->n_norm == 0) {
        a->pat = a->content;
        a->pat_len = a->len;
        return LK_OK;
    }
    return tok_normalize(t, a->content, a->len, &a->pat, &a->pat_len);
}

static lk_status parse_added(lk_tokenizer *t, const cJSON *list)
{
    if (!list || cJSON_IsNull(list))
        return LK_OK;
    if (!cJSON_IsArray(list))
        return BAD(t, "added_tokens: expected an array");
    int n = cJSON_GetArraySize(list);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = tok_jstr(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 30) ||
            !content || !*content)
            return BAD(t,
                       "added_tokens[%d]: needs an integer \"id\" in [0, 2^30) and a "
                       "non-empty \"content\"",
                       t->n_added);
        struct added *a = &t->added[t->n_added++];
        a->id = (int32_t)id->valuedouble;
        if (!(a->content = tok_strdup(content, &a->len)))
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
        a->special = tok_jbool(it, "special", 0);
        a->lstrip = tok_jbool(it, "lstrip", 0);
        a->rstrip = tok_jbool(it, "rstrip", 0);
        a->single_word = tok_jbool(it, "single_word", 0);
        a->normalized = tok_jbool(it, "normalized", !a->special);
    }
    return LK_OK;
}

static int64_t max_added_id(const cJSON *list)
{
    int64_t m = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < (1 << 30) &&
            (int64_t)id->valuedouble > m)
            m = (int64_t)id->valuedouble;
    }
    return m;
}

/* A token in tokenizer_config.json: "str" or {"content": "str", ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v))
        return v->valuestring;
    return tok_jstr(v, "content");
}

static lk_status set_special(lk_tokenizer *t, const char *s, int32_t *id, char **str,
                             const char *what, const char *file)
{
    if (!s)
        return LK_OK;
    *id = lk_tokenizer_token_to_id(t, s);
    if (*id < 0)
        return status_fail(LK_ERR_FORMAT, "%s: %s '%s' is not a token of the vocabulary", file,
                           what, s);
    free(*str);
    if (!(*str = tok_strdup(s, NULL)))
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    return LK_OK;
}

/* tokenizer_config.json / special_tokens_map.json: BOS/EOS, add_*_token, chat template. */
static lk_status load_config(lk_tokenizer *t, const char *dir)
{
    char *p = path_join(dir, "tokenizer_config.json");
    char *q = path_join(dir, "special_tokens_map.json");
    char *r = path_join(dir, "chat_template.jinja");
    cJSON *cfg = NULL, *map = NULL;
    lk_status s = p && q && r ? LK_OK : status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    if (s == LK_OK && file_exists(q))
        s = json_read_file(q, 1 << 24, &map);
    if (s == LK_OK && file_exists(p))
        s = json_read_file(p, 1 << 26, &cfg);
    if (s == LK_OK && map) {
        s = set_special(t, config_token(map, "bos_token"), &t->bos, &t->bos_str, "bos_token", q);
        if (s == LK_OK)
            s = set_special(t, config_token(map, "eos_token"), &t->eos, &t->eos_str, "eos_token",
                            q);
    }
    if (s == LK_OK && cfg) {
        s = set_special(t, config_token(cfg, "bos_token"), &t->bos, &t->bos_str, "bos_token", p);
        if (s == LK_OK)
            s = set_special(t, config_token(cfg, "eos_token"), &t->eos, &t->eos_str, "eos_token",
                            p);
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
        const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
        t->cfg_flags = cJSON_IsBool(ab) || cJSON_IsBool(ae);
        t->add_bos = cJSON_IsTrue(ab);
        t->add_eos = cJSON_IsTrue(ae);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
        const cJSON *it;
        if (cJSON_IsArray(ct)) {
            cJSON_ArrayForEach(it, ct)
            {
                if (tok_jstr(it, "name") && !strcmp(tok_jstr(it, "name"), "default"))
                    tmpl = tok_jstr(it, "template");
            }
        }
        if (s == LK_OK && tmpl && !(t->chat_template = tok_strdup(tmpl, NULL)))
            s = status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (s == LK_OK && !t->chat_template && file_exists(r))
        s = read_text_file(r, 1 << 24, &t->chat_template, NULL);
    if (s == LK_OK && t->bos < 0 && !t->cfg_flags && t->n_tmpl_pre > 0) {
        /* no config: the post-processor's first special token is the BOS */
        t->bos = t->tmpl_pre[0];
    }
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    free(p);
    free(q);
    free(r);
    return s;
}

/* 1 if cutting a character-level BPE word before each "▁" that follows another character cannot
 * change its tokens: "▁" is a token, no token has "▁" right after another character (so no
 * merge joins across the cut), and whole-word lookups (ignore_merges) are off. */
static int spm_split_exact(const tok_bpe *m)
{
    if (m->byte_level || m->ignore_merges || tok_bpe_find(m, "\xe2\x96\x81", 3) < 0)
        return 0;
    for (int64_t id = 0; id < m->n_ids; id++) {
        const char *s = m->strs + m->off[id];
        for (int32_t i = 1; i + 3 <= m->len[id]; i++)
            if (!memcmp(s + i, "\xe2\x96\x81", 3) &&
                (i < 3 || memcmp(s + i - 3, "\xe2\x96\x81", 3) != 0))
                return 0;
    }
    return 1;
}

static int cmp_bytes(const void *x, const void *y)
{
    const struct added *a = *(const struct added *const *)x, *b = *(const struct added *const *)y;
    int c = memcmp(a->content, b->content, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* skip: an added token whose pattern is the content of a special token. The special contents
 * are sorted and searched (O(n log n): a file may list any number of added tokens). */
static lk_status mark_skipped(lk_tokenizer *t)
{
    struct added **sp = malloc((size_t)(t->n_added + 1) * sizeof *sp);
    int ns = 0;
    if (!sp)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].special)
            sp[ns++] = &t->added[i];
    qsort(sp, (size_t)ns, sizeof *sp, cmp_bytes);
    for (int i = 0; i < t->n_added; i++) {
        struct added key = {.content = t->added[i].pat, .len = t->added[i].pat_len}, *kp = &key;
        t->added[i].skip = bsearch(&kp, sp, (size_t)ns, sizeof *sp, cmp_bytes) != NULL;
    }
    free(sp);
    return LK_OK;
}

static lk_status load_tokenizer_json(lk_tokenizer *t, const cJSON *j)
{
    if (!cJSON_IsObject(j))
        return BAD(t, "expected a JSON object at the top level");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    LK_TRY(tok_parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(j, "normalizer")));
    LK_TRY(tok_parse_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer")));
    LK_TRY(tok_parse_decoder(t, cJSON_GetObjectItemCaseSensitive(j, "decoder")));
    LK_TRY(tok_parse_post(t, cJSON_GetObjectItemCaseSensitive(j, "post_processor")));
    t->n_added_json = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    LK_TRY(parse_model(t, cJSON_GetObjectItemCaseSensitive(j, "model"), max_added_id(added)));
    LK_TRY(parse_added(t, added));
    t->vocab_size = t->bpe.n_ids;
    t->added_of_id = malloc((size_t)t->vocab_size * sizeof *t->added_of_id);
    if (!t->added_of_id)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->added_of_id, 0xFF, (size_t)t->vocab_size * sizeof *t->added_of_id);
    for (int i = 0; i < t->n_added; i++) {
        t->added_of_id[t->added[i].id] = i;
        LK_TRY(normalize_pattern(t, &t->added[i]));
    }
    LK_TRY(mark_skipped(t));
    for (int i = 0; i < t->n_tmpl_pre; i++)
        if (t->tmpl_pre[i] < 0 || t->tmpl_pre[i] >= t->vocab_size)
            return BAD(t, "post_processor: id %d outside the vocabulary", t->tmpl_pre[i]);
    for (int i = 0; i < t->n_tmpl_post; i++)
        if (t->tmpl_post[i] < 0 || t->tmpl_post[i] >= t->vocab_size)
            return BAD(t, "post_processor: id %d outside the vocabulary", t->tmpl_post[i]);
    LK_TRY(build_added_set(t, &t->raw_set, 0));
    LK_TRY(build_added_set(t, &t->norm_set, 1));
    t->spm_split = spm_split_exact(&t->bpe);
    return LK_OK;
}

/* A GGUF file's tokenizer: the special tokens indexed for matching, the SentencePiece split. */
static lk_status load_gguf(lk_tokenizer *t, const char *path)
{
    LK_TRY(tok_load_gguf(t, path));
    LK_TRY(build_added_set(t, &t->raw_set, 0));
    t->spm_split = spm_split_exact(&t->bpe);
    return LK_OK;
}

/* A path that is not a folder: a .gguf name, or any file (gguf_open_meta checks its magic). */
static int is_gguf_path(const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    if (stat(path, &st) == 0)
        return !S_ISDIR(st.st_mode);
    return n >= 5 && strcmp(path + n - 5, ".gguf") == 0;
}

/* A Hugging Face tokenizer folder (t->path is DIR/tokenizer.json). */
static lk_status load_folder(lk_tokenizer *t, const char *dir)
{
    cJSON *j = NULL;
    lk_status s;
    if (!file_exists(t->path))
        s = status_fail(LK_ERR_IO,
                        "%s: no such file (hint: the folder needs the Hugging Face "
                        "tokenizer.json)",
                        t->path);
    else
        s = json_read_file(t->path, (size_t)1 << 31, &j);
    if (s == LK_OK)
        s = load_tokenizer_json(t, j);
    cJSON_Delete(j);
    if (s == LK_OK)
        s = load_config(t, dir);
    return s;
}

lk_status lk_tokenizer_load(const char *path, lk_tokenizer **out)
{
    if (!path || !out)
        return status_fail(LK_ERR_ARG, "lk_tokenizer_load: NULL argument");
    *out = NULL;
    int gguf = is_gguf_path(path);
    lk_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = gguf ? tok_strdup(path, NULL) : path_join(path, "tokenizer.json"))) {
        free(t);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->bos = t->eos = -1;
    lk_status s = gguf ? load_gguf(t, path) : load_folder(t, path);
    if (s != LK_OK) {
        lk_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LK_OK;
}

void lk_tokenizer_free(lk_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (int i = 0; i < t->n_pre; i++)
        pcre2_code_free(t->pre[i].re);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    for (int i = 0; i < t->n_added; i++) {
        if (t->added[i].pat != t->added[i].content)
            free(t->added[i].pat);
        free(t->added[i].content);
    }
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    free(t->added_of_id);
    free(t->bos_str);
    free(t->eos_str);
    free(t->chat_template);
    free(t->attr);
    free(t->special);
    tok_bpe_free(&t->bpe);
    free(t->path);
    free(t);
}
