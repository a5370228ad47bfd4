/* tokenizer_decode.c — decoding token ids to text as tokenizers (Rust) does: each id becomes its
 * string (added tokens their normalised pattern, skipped when that is a special token's content
 * and skip_special is on), then the decoder steps (ByteLevel, ByteFallback, Fuse, Strip, Replace,
 * Metaspace) run over the list of strings, which is finally joined. A GGUF tokenizer decodes as
 * llama.cpp's llama_detokenize instead (decode_gguf). Calls into bpe.c only (the GPT-2 byte
 * map). */
#include "text/tokenizer_impl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"
#include "text/bpe.h"

/* ============================================================================================ */
/* Decoding                                                                                     */
/* ============================================================================================ */

/* A list of strings in one buffer. */
struct slist {
    char *buf;
    size_t len, cap;
    size_t *off, *n;
    int64_t count;
    size_t cap_items;
};

static lk_status slist_add(struct slist *l, const char *s, size_t n)
{
    struct buf_arr items[] = {BUF_ARR(&l->off), BUF_ARR(&l->n)};
    LK_TRY(BUF_GROW(&l->buf, &l->cap, l->len + n + 1, "tokenizer decode: text"));
    LK_TRY(buf_grow_all(items, 2, &l->cap_items, (size_t)l->count + 1, "tokenizer decode: pieces"));
    if (n)
        memcpy(l->buf + l->len, s, n);
    l->off[l->count] = l->len;
    l->n[l->count++] = n;
    l->len += n;
    l->buf[l->len] = 0;
    return LK_OK;
}

/* Append to the last string of l (which must be the last thing written). */
static lk_status slist_extend(struct slist *l, const char *s, size_t n)
{
    LK_TRY(slist_add(l, s, n));
    l->count--;
    l->n[l->count - 1] += n;
    return LK_OK;
}

static void slist_free(struct slist *l)
{
    free(l->buf);
    free(l->off);
    free(l->n);
    memset(l, 0, sizeof *l);
}

/* ByteLevel: a string whose every character is in the GPT-2 alphabet becomes those bytes. */
static lk_status dec_bytelevel_one(struct slist *dst, const char *s, size_t n)
{
    char stackbuf[256];
    char *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf)
        return status_fail(LK_ERR_NOMEM, "tokenizer decode: out of memory");
    size_t k = 0;
    int ok = 1;
    for (size_t i = 0; i < n && ok;) {
        uint32_t cp;
        int cl = utf8_next((const uint8_t *)s + i, n - i, &cp);
        int b = cl > 0 ? tok_cp_to_byte(cp) : -1;
        ok = b >= 0;
        buf[k++] = (char)b;
        i += cl > 0 ? (size_t)cl : 1;
    }
    lk_status st = ok ? slist_add(dst, buf, k) : slist_add(dst, s, n);
    if (buf != stackbuf)
        free(buf);
    return st;
}

static int parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static lk_status dec_step_apply(const struct dec_step *d, const struct slist *src,
                                struct slist *dst, const uint8_t *raw)
{
    for (int64_t i = 0; i < src->count; i++) {
        const char *s = src->buf + src->off[i];
        size_t n = src->n[i];
        switch (d->kind) {
        case D_BYTELEVEL:
            LK_TRY(raw[i] ? slist_add(dst, s, n) : dec_bytelevel_one(dst, s, n));
            break;
        case D_BYTEFALLBACK: {
            int b = parse_byte_token(s, n);
            char c = (char)b;
            LK_TRY(b >= 0 ? slist_add(dst, &c, 1) : slist_add(dst, s, n));
            break;
        }
        case D_FUSE: LK_TRY(i == 0 ? slist_add(dst, s, n) : slist_extend(dst, s, n)); break;
        case D_STRIP: {
            size_t a = 0, z = n;
            for (int k = 0;
                 k < d->start && a < z && z - a >= d->alen && memcmp(s + a, d->a, d->alen) == 0;
                 k++)
                a += d->alen;
            for (int k = 0;
                 k < d->stop && z - a >= d->alen && memcmp(s + z - d->alen, d->a, d->alen) == 0;
                 k++)
                z -= d->alen;
            LK_TRY(slist_add(dst, s + a, z - a));
            break;
        }
        default: { /* Replace, Metaspace: replace a by b */
            LK_TRY(slist_add(dst, "", 0));
            size_t j = 0;
            if (d->kind == D_METASPACE && i == 0 && d->prepend_scheme != PS_NEVER && n >= d->alen &&
                memcmp(s, d->a, d->alen) == 0)
                j = d->alen;
            while (j < n) {
                if (d->alen && j + d->alen <= n && memcmp(s + j, d->a, d->alen) == 0) {
                    LK_TRY(slist_extend(dst, d->b, d->blen));
                    j += d->alen;
                } else {
                    LK_TRY(slist_extend(dst, s + j, 1));
                    j++;
                }
            }
        }
        }
    }
    return LK_OK;
}

static lk_status decode_tokens(const lk_tokenizer *t, const int32_t *ids, int64_t n,
                               int skip_special, struct slist *cur, uint8_t **rawp)
{
    uint8_t *raw = malloc((size_t)n + 1);
    *rawp = raw;
    if (!raw)
        return status_fail(LK_ERR_NOMEM, "tokenizer decode: out of memory");
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size)
            return status_fail(LK_ERR_ARG,
                               "tokenizer decode: id %d at position %lld is outside "
                               "the vocabulary [0, %lld)",
                               id, (long long)i, (long long)t->vocab_size);
        int32_t a = t->added_of_id[id];
        if (a >= 0) {
            /* as tokenizers does: the token's string is its (normalised) pattern, and it is
             * skipped when that string is the content of a special token */
            if (skip_special && t->added[a].skip)
                continue;
            raw[cur->count] = 0;
            LK_TRY(slist_add(cur, t->added[a].pat, t->added[a].pat_len));
        } else if (id < t->bpe.n_ids && t->bpe.len[id] >= 0) {
            raw[cur->count] = (uint8_t)t->bpe.byte_level;
            LK_TRY(slist_add(cur, t->bpe.strs + t->bpe.off[id], (size_t)t->bpe.len[id]));
        } else {
            return status_fail(LK_ERR_ARG,
                               "tokenizer decode: id %d at position %lld is not "
                               "defined by the vocabulary",
                               id, (long long)i);
        }
    }
    return LK_OK;
}

/* ============================================================================================ */
/* GGUF: llama.cpp's detokenizer                                                                */
/* ============================================================================================ */

/* The bytes of token id as llama.cpp's token_to_piece writes them (special: render control and
 * unknown tokens): control, unknown and user-defined tokens as their text, normal tokens as their
 * bytes (SentencePiece: "▁" as a space), byte tokens <0xXX> as the byte, anything else as "". */
static lk_status gguf_piece(const lk_tokenizer *t, int32_t id, int special, struct buf *out)
{
    uint16_t a = t->attr[id];
    const char *s = t->bpe.strs + t->bpe.off[id];
    size_t n = (size_t)t->bpe.len[id];
    if (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_USER_DEFINED)) {
        const struct added *ad = &t->added[t->added_of_id[id]];
        if (!special && (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
            return LK_OK;
        return buf_put(out, ad->content, ad->len, "tokenizer decode: text");
    }
    if (a & TOK_ATTR_NORMAL) {
        if (t->kind == TOK_GGUF_BPE)
            return buf_put(out, s, n, "tokenizer decode: text");
        for (size_t i = 0; i < n;) { /* SentencePiece: "▁" is a space */
            int mark = i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0;
            LK_TRY(buf_put(out, mark ? " " : s + i, 1, "tokenizer decode: text"));
            i += mark ? 3 : 1;
        }
        return LK_OK;
    }
    if (a & TOK_ATTR_BYTE) { /* strtol of the two characters after "<0x" */
        int v = 0;
        for (size_t i = 3; i < 5 && i < n && isxdigit((unsigned char)s[i]); i++)
            v = v * 16 + (isdigit((unsigned char)s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
        uint8_t b = (uint8_t)v;
        return buf_put(out, &b, 1, "tokenizer decode: text");
    }
    return LK_OK;
}

/* llama_detokenize's clean_up_tokenization_spaces, its three passes as it writes them: no space
 * before ? ! . or , ; none around a lone ' ; none before 's 'm 're 've. */
static size_t clean_spaces(char *x, size_t total)
{
    size_t t1 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < t1; i++) {
        char c = x[i];
        if (x[i - 1] == ' ' && (c == '?' || c == '!' || c == '.' || c == ','))
            total--;
        x[total++] = c;
    }
    size_t t2 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < t2; i++) {
        char c = x[i];
        if (c == '\'' && i + 1 < t2 && x[i - 1] == ' ' && x[i + 1] == ' ') {
            total--;
            x[++i] = 0;
        }
        x[total++] = c;
    }
    size_t t3 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < t3; i++) {
        char c = x[i];
        if (x[i - 1] == ' ' && c == '\'' && i + 1 < t3) {
            char c1 = x[i + 1];
            if (c1 == 's' || c1 == 'm')
                total--;
            else if (c1 != 't' && c1 != 'd' && i + 2 < t3 &&
                     ((c1 == 'r' && x[i + 2] == 'e') || (c1 == 'v' && x[i + 2] == 'e')))
                total--;
        }
        x[total++] = c;
    }
    return total;
}

/* llama_detokenize(remove_special = skip_special, unparse_special = !skip_special): a BOS in
 * front and an EOS at the end that the tokenizer adds are dropped when skipping; the first
 * piece loses one leading space where a "▁" was put before the text (add_space_prefix), unless a
 * dropped BOS came before it. */
static lk_status decode_gguf(const lk_tokenizer *t, const int32_t *ids, int64_t n, int skip_special,
                             struct buf *out)
{
    int remove_space = t->add_space_prefix;
    int64_t a = 0, z = n;
    if (skip_special && t->add_bos && n > 0 && ids[0] == t->bos) {
        remove_space = 0;
        a = 1;
    }
    if (skip_special && t->add_eos && z > a && ids[z - 1] == t->eos)
        z--;
    for (int64_t i = a; i < z; i++) {
        size_t start = out->n;
        LK_TRY(gguf_piece(t, ids[i], !skip_special, out));
        if (remove_space && out->n > start && out->p[start] == ' ') {
            memmove(out->p + start, out->p + start + 1, out->n - start - 1);
            out->n--;
        }
        remove_space = 0;
    }
    if (t->clean_spaces)
        out->n = clean_spaces((char *)out->p, out->n);
    return buf_put(out, "", 1, "tokenizer decode: text"); /* the NUL */
}

lk_status lk_tokenizer_decode(const lk_tokenizer *t, const int32_t *ids, int64_t n,
                              int skip_special, char **text, size_t *len)
{
    if (!t || (!ids && n > 0) || n < 0 || !text)
        return status_fail(LK_ERR_ARG, "tokenizer decode: bad arguments");
    if (t->kind != TOK_HF) {
        for (int64_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= t->vocab_size)
                return status_fail(LK_ERR_ARG,
                                   "tokenizer decode: id %d at position %lld is outside "
                                   "the vocabulary [0, %lld)",
                                   ids[i], (long long)i, (long long)t->vocab_size);
        struct buf out = {0};
        lk_status s = decode_gguf(t, ids, n, skip_special, &out);
        if (s != LK_OK) {
            buf_free(&out);
            return s;
        }
        *text = (char *)out.p;
        if (len)
            *len = out.n - 1;
        return LK_OK;
    }
    struct slist cur = {0}, nxt = {0};
    uint8_t *raw = NULL;
    lk_status s = decode_tokens(t, ids, n, skip_special, &cur, &raw);
    for (int k = 0; s == LK_OK && k < t->n_dec; k++) {
        s = dec_step_apply(&t->dec[k], &cur, &nxt, raw);
        struct slist tmp = cur;
        cur = nxt;
        nxt = tmp;
        slist_free(&nxt);
        memset(raw, 1, (size_t)n + 1); /* after the first step everything is text */
        if (t->dec[k].kind != D_BYTELEVEL)
            memset(raw, 0, (size_t)n + 1);
    }
    char *outp = NULL;
    size_t outn = 0;
    if (s == LK_OK) {
        /* join the remaining strings (no decoder: HF joins with spaces) */
        size_t total = cur.len + (size_t)(cur.count > 0 ? cur.count : 0) + 1;
        outp = malloc(total);
        if (!outp)
            s = status_fail(LK_ERR_NOMEM, "tokenizer decode: out of memory");
        for (int64_t i = 0; s == LK_OK && i < cur.count; i++) {
            if (i > 0 && t->n_dec == 0)
                outp[outn++] = ' ';
            memcpy(outp + outn, cur.buf + cur.off[i], cur.n[i]);
            outn += cur.n[i];
        }
        if (outp)
            outp[outn] = 0;
    }
    slist_free(&cur);
    slist_free(&nxt);
    free(raw);
    if (s != LK_OK) {
        free(outp);
        return s;
    }
    *text = outp;
    if (len)
        *len = outn;
    return LK_OK;
}
