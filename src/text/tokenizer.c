/* tokenizer.c — Hugging Face tokenizer.json: loading, the encode pipeline and decoding.
 *
 * The pipeline follows tokenizers (Rust) Tokenizer::encode_single_sequence:
 *   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest);
 *   2. every remaining piece is normalised on its own, then added tokens with normalized=true
 *      (whose patterns are themselves normalised) are cut out of it;
 *   3. the pre-tokenizer splits each remaining piece into pre-tokens;
 *   4. the BPE model (bpe.c) tokenises each pre-token;
 *   5. the post-processor adds BOS/EOS.
 * Every byte of the working strings carries the byte range of the original text it came from, so
 * tokens get original offsets (used for loss masks). Byte-level tokenizers store the vocabulary
 * as raw bytes (the GPT-2 byte map is undone at load), so the model works on bytes directly. */
#include "text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/bpe.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"

enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_PREPEND, N_REPLACE };
enum { P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum { B_ISOLATED, B_REMOVED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE, D_NONE };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

struct norm_step {
    int kind;
    char *a, *b; /* Prepend: a; Replace: a -> b */
    size_t alen, blen;
};

struct pre_step {
    int kind;
    pcre2_code *re; /* Split, ByteLevel with use_regex */
    int behavior;
    int add_prefix_space; /* ByteLevel */
    char repl[8];         /* Metaspace replacement character (UTF-8) */
    size_t repl_len;
    int prepend_scheme; /* Metaspace */
    int split;          /* Metaspace */
};

struct dec_step {
    int kind;
    char *a, *b; /* Replace a -> b; Strip content a; Metaspace replacement a */
    size_t alen, blen;
    int start, stop;    /* Strip */
    int prepend_scheme; /* Metaspace */
};

struct added {
    char *content; /* as written in tokenizer.json */
    size_t len;
    char *pat; /* pattern matched: content, normalised when normalized */
    size_t pat_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
    int skip; /* decode with skip_special drops it: pat is the content of a special token */
};

/* Added tokens of one pass, bucketed by first byte, longest first within a bucket. */
struct added_set {
    int32_t *idx; /* indices into lk_tokenizer.added */
    int32_t begin[257];
};

struct lk_tokenizer {
    char *path; /* tokenizer.json path, for messages */
    tok_bpe bpe;
    struct norm_step *norm;
    int n_norm;
    struct pre_step *pre;
    int n_pre;
    struct dec_step *dec;
    int n_dec;
    struct added *added;
    int n_added;
    struct added_set raw_set, norm_set;
    int32_t *added_of_id; /* [vocab_size] index into added or -1 */
    int64_t vocab_size;
    int32_t bos, eos;
    char *bos_str, *eos_str;
    int32_t tmpl_pre[4], tmpl_post[4]; /* ids the post-processor puts around a sequence */
    int n_tmpl_pre, n_tmpl_post;
    int spm_split;    /* model_split is exact for this vocabulary (see there) */
    int n_added_json; /* entries of added_tokens (for the id bound while loading) */
    int cfg_flags;    /* tokenizer_config.json sets add_bos_token or add_eos_token */
    int add_bos, add_eos;
    char *chat_template;
};

/* ============================================================================================ */
/* Working strings with original offsets                                                        */
/* ============================================================================================ */

/* A growable byte store; byte i came from original bytes [os[i], oe[i]). */
struct store {
    char *s;
    uint32_t *os, *oe;
    size_t n, cap;
};

struct piece {
    size_t off, len; /* in the store */
    int first;       /* starts at original offset 0 */
};

struct piece_list {
    struct piece *p;
    int64_t n, cap;
};

/* Cache of short words already modelled: direct-mapped by hash, per encoder (no locking). */
#define WC_MAXW 24 /* longest cached pre-token, bytes */
#define WC_MAXT 6  /* most tokens of a cached pre-token */
struct wc_slot {
    uint64_t h;
    uint8_t wlen, nt;
    uint8_t ends[WC_MAXT]; /* token k covers word bytes [ends[k-1], ends[k]) */
    char w[WC_MAXW];
    int32_t ids[WC_MAXT];
};

struct enc {
    const lk_tokenizer *t;
    int fast;           /* 0: the plain path (no word cache, no SentencePiece split) */
    struct wc_slot *wc; /* NULL: no cache */
    uint64_t wc_mask;
    struct store st;
    struct piece_list a, b;
    struct piece_list sp; /* spans of find_spans: .first is is_match */
    tok_bpe_scratch sc;
    pcre2_match_data *md;
    tok_out out;
};

static lk_status store_reserve(struct store *st, size_t extra)
{
    if (st->n + extra <= st->cap)
        return LK_OK;
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < st->n + extra)
        cap *= 2;
    char *s = realloc(st->s, cap);
    if (s)
        st->s = s;
    uint32_t *os = s ? realloc(st->os, cap * sizeof *os) : NULL;
    if (os)
        st->os = os;
    uint32_t *oe = os ? realloc(st->oe, cap * sizeof *oe) : NULL;
    if (!oe)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory (%zu bytes of text)", cap);
    st->oe = oe;
    st->cap = cap;
    return LK_OK;
}

/* Append n bytes, all standing for original range [os, oe). */
static lk_status store_put(struct store *st, const char *s, size_t n, uint32_t os, uint32_t oe)
{
    LK_TRY(store_reserve(st, n));
    memcpy(st->s + st->n, s, n);
    for (size_t i = 0; i < n; i++) {
        st->os[st->n + i] = os;
        st->oe[st->n + i] = oe;
    }
    st->n += n;
    return LK_OK;
}

/* Append a copy of store bytes [off, off+n) with their offsets. */
static lk_status store_copy(struct store *st, size_t off, size_t n)
{
    LK_TRY(store_reserve(st, n));
    memmove(st->s + st->n, st->s + off, n);
    memmove(st->os + st->n, st->os + off, n * sizeof *st->os);
    memmove(st->oe + st->n, st->oe + off, n * sizeof *st->oe);
    st->n += n;
    return LK_OK;
}

static lk_status plist_push(struct piece_list *l, size_t off, size_t len, int first)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        struct piece *p = realloc(l->p, (size_t)cap * sizeof *p);
        if (!p)
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory for pre-tokens");
        l->p = p;
        l->cap = cap;
    }
    l->p[l->n++] = (struct piece){off, len, first};
    return LK_OK;
}

/* ============================================================================================ */
/* Normalizers                                                                                  */
/* ============================================================================================ */

static int utf8proc_options(int kind)
{
    switch (kind) {
    case N_NFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case N_NFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case N_NFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    default: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    }
}

/* Unicode normal form of [off, off+n). ASCII characters are never the second half of a
 * composition and block reordering, so the text can be cut before each one: an ASCII byte
 * followed by ASCII passes through; an ASCII byte followed by non-ASCII, or a run of valid
 * non-ASCII characters, is normalised as one chunk whose output stands for the chunk's original
 * range. Invalid bytes pass through unchanged. */
static lk_status norm_unicode(struct store *st, int kind, size_t off, size_t n)
{
    for (size_t i = 0; i < n;) {
        const uint8_t *s = (const uint8_t *)st->s + off + i;
        if (s[0] < 0x80 && (i + 1 == n || (uint8_t)s[1] < 0x80)) {
            size_t k = 1; /* the whole run of ASCII not followed by a mark */
            while (i + k < n && (uint8_t)s[k] < 0x80 &&
                   (i + k + 1 == n || (uint8_t)s[k + 1] < 0x80))
                k++;
            LK_TRY(store_copy(st, off + i, k));
            i += k;
            continue;
        }
        size_t j = i + (s[0] < 0x80); /* an ASCII base joins the marks after it */
        uint32_t cp;
        int cl;
        while (j < n && (uint8_t)st->s[off + j] >= 0x80 &&
               (cl = utf8_next((const uint8_t *)st->s + off + j, n - j, &cp)) > 0)
            j += (size_t)cl;
        if (j == i) { /* invalid byte */
            LK_TRY(store_copy(st, off + i, 1));
            i++;
            continue;
        }
        utf8proc_uint8_t *res = NULL;
        utf8proc_ssize_t r =
            utf8proc_map((const utf8proc_uint8_t *)st->s + off + i, (utf8proc_ssize_t)(j - i), &res,
                         (utf8proc_option_t)utf8proc_options(kind));
        if (r < 0)
            return status_fail(LK_ERR_ARG, "tokenizer: Unicode normalisation failed: %s",
                               utf8proc_errmsg(r));
        uint32_t os = st->os[off + i], oe = st->oe[off + j - 1];
        lk_status s2 = store_put(st, (const char *)res, (size_t)r, os, oe);
        free(res);
        LK_TRY(s2);
        i = j;
    }
    return LK_OK;
}

static lk_status norm_lower(struct store *st, size_t off, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = utf8_next((const uint8_t *)st->s + off + i, n - i, &cp);
        if (cl == 0) {
            LK_TRY(store_copy(st, off + i, 1));
            i++;
            continue;
        }
        utf8proc_uint8_t buf[4];
        utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower((utf8proc_int32_t)cp), buf);
        LK_TRY(store_put(st, (const char *)buf, (size_t)k, st->os[off + i],
                         st->oe[off + i + (size_t)cl - 1]));
        i += (size_t)cl;
    }
    return LK_OK;
}

static lk_status norm_replace(struct store *st, const struct norm_step *ns, size_t off, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (ns->alen > 0 && i + ns->alen <= n && memcmp(st->s + off + i, ns->a, ns->alen) == 0) {
            LK_TRY(store_put(st, ns->b, ns->blen, st->os[off + i], st->oe[off + i + ns->alen - 1]));
            i += ns->alen;
        } else {
            LK_TRY(store_copy(st, off + i, 1));
            i++;
        }
    }
    return LK_OK;
}

/* Run the normalizer chain over store bytes [*off, *off + *n); the result is appended to the
 * store and *off, *n are updated. */
static lk_status normalize(const lk_tokenizer *t, struct store *st, size_t *off, size_t *n)
{
    for (int k = 0; k < t->n_norm; k++) {
        const struct norm_step *ns = &t->norm[k];
        size_t o = *off, len = *n, start = st->n;
        if (ns->kind <= N_NFKD) {
            int ascii = 1;
            for (size_t i = 0; i < len && ascii; i++)
                ascii = (uint8_t)st->s[o + i] < 0x80;
            if (ascii)
                continue;
            LK_TRY(norm_unicode(st, ns->kind, o, len));
        } else if (ns->kind == N_LOWER) {
            LK_TRY(norm_lower(st, o, len));
        } else if (ns->kind == N_PREPEND) {
            if (len == 0)
                continue;
            LK_TRY(store_put(st, ns->a, ns->alen, st->os[o], st->os[o]));
            LK_TRY(store_copy(st, o, len));
        } else {
            LK_TRY(norm_replace(st, ns, o, len));
        }
        *off = start;
        *n = st->n - start;
    }
    return LK_OK;
}

/* ============================================================================================ */
/* Added tokens                                                                                 */
/* ============================================================================================ */

static int is_space_cp(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int is_word_cp(uint32_t c)
{
    if (c == '_')
        return 1;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

/* Last code point before s[n] (0 if none or invalid). */
static uint32_t cp_before(const uint8_t *s, size_t n)
{
    size_t i = n;
    while (i > 0 && n - i < 4) {
        i--;
        if ((s[i] & 0xC0) != 0x80) {
            uint32_t cp;
            return utf8_next(s + i, n - i, &cp) == (int)(n - i) ? cp : 0;
        }
    }
    return 0;
}

/* Find the leftmost-longest added token of set in s[from..n); single_word tokens must stand
 * alone. Returns the index into t->added (or -1) and the match in *ms, *me (before l/rstrip). */
static int find_added(const lk_tokenizer *t, const struct added_set *set, const uint8_t *s,
                      size_t from, size_t n, size_t *ms, size_t *me)
{
    for (size_t p = from; p < n; p++) {
        int32_t b = set->begin[s[p]], e = set->begin[s[p] + 1];
        for (int32_t k = b; k < e; k++) {
            const struct added *a = &t->added[set->idx[k]];
            if (a->pat_len > n - p || memcmp(s + p, a->pat, a->pat_len) != 0)
                continue;
            if (a->single_word) {
                uint32_t cp;
                int before = p > 0 && is_word_cp(cp_before(s, p));
                int after = p + a->pat_len < n &&
                            utf8_next(s + p + a->pat_len, n - p - a->pat_len, &cp) > 0 &&
                            is_word_cp(cp);
                if (before || after)
                    continue;
            }
            *ms = p;
            *me = p + a->pat_len;
            return set->idx[k];
        }
    }
    return -1;
}

/* Widen a match over whitespace to the left (lstrip, not before lo) and right (rstrip). */
static void strip_match(const struct added *a, const uint8_t *s, size_t lo, size_t n, size_t *ms,
                        size_t *me)
{
    if (a->lstrip) {
        while (*ms > lo) {
            uint32_t cp = cp_before(s, *ms);
            if (!is_space_cp(cp))
                break;
            *ms -= cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        }
    }
    if (a->rstrip) {
        uint32_t cp;
        int cl;
        while (*me < n && (cl = utf8_next(s + *me, n - *me, &cp)) > 0 && is_space_cp(cp))
            *me += (size_t)cl;
    }
}

/* ============================================================================================ */
/* Pre-tokenizers                                                                               */
/* ============================================================================================ */

/* Matches of re in piece p and the gaps between them (invalid UTF-8 bytes are gaps of their
 * own), as (offset, length, is_match) spans in e->sp. Empty matches are skipped. */
static lk_status find_spans(struct enc *e, const pcre2_code *re, const struct piece *p)
{
    const uint8_t *s = (const uint8_t *)e->st.s + p->off;
    size_t n = p->len, i = 0;
    e->sp.n = 0;
    while (i < n) {
        size_t j = i; /* [i, j): the longest valid UTF-8 run from i */
        uint32_t cp;
        int cl;
        while (j < n && (cl = utf8_next(s + j, n - j, &cp)) > 0)
            j += (size_t)cl;
        if (j == i) {
            LK_TRY(plist_push(&e->sp, p->off + i, 1, 0));
            i++;
            continue;
        }
        size_t pos = i, search = i;
        while (search < j) {
            int rc = pcre2_match(re, s, j, search, PCRE2_NO_UTF_CHECK, e->md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc < 0)
                return status_fail(LK_ERR_ARG, "tokenizer: pre-tokenizer regex failed (%d)", rc);
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) {
                search = ms + (size_t)utf8_next(s + ms, j - ms, &cp);
                continue;
            }
            if (ms > pos)
                LK_TRY(plist_push(&e->sp, p->off + pos, ms - pos, 0));
            LK_TRY(plist_push(&e->sp, p->off + ms, me - ms, 1));
            pos = search = me;
        }
        if (j > pos)
            LK_TRY(plist_push(&e->sp, p->off + pos, j - pos, 0));
        i = j;
    }
    return LK_OK;
}

/* Split piece p by re and append the pieces to dst, combining matches and gaps as tokenizers'
 * SplitDelimiterBehavior does. The "first" flag goes to a piece starting where p starts. */
static lk_status split_regex(struct enc *e, const struct pre_step *ps, const struct piece *p,
                             struct piece_list *dst)
{
    LK_TRY(find_spans(e, ps->re, p));
    struct piece *sp = e->sp.p;
    int64_t n = e->sp.n, base = dst->n;
    int prev_match = 0;
    if (ps->behavior == B_MERGED_NEXT) { /* fold from the right, then reverse */
        for (int64_t i = n - 1; i >= 0; i--) {
            int m = sp[i].first;
            if (m && !prev_match && dst->n > base) {
                struct piece *last = &dst->p[dst->n - 1];
                last->len += last->off - sp[i].off;
                last->off = sp[i].off;
            } else {
                LK_TRY(plist_push(dst, sp[i].off, sp[i].len, 0));
            }
            prev_match = m;
        }
        for (int64_t a = base, b = dst->n - 1; a < b; a++, b--) {
            struct piece tmp = dst->p[a];
            dst->p[a] = dst->p[b];
            dst->p[b] = tmp;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            int m = sp[i].first;
            int merge = (ps->behavior == B_MERGED_PREV && m && !prev_match) ||
                        (ps->behavior == B_CONTIGUOUS && m == prev_match);
            if (ps->behavior == B_REMOVED && m) {
                prev_match = m;
                continue;
            }
            if (merge && dst->n > base)
                dst->p[dst->n - 1].len += sp[i].len;
            else
                LK_TRY(plist_push(dst, sp[i].off, sp[i].len, 0));
            prev_match = m;
        }
    }
    for (int64_t i = base; i < dst->n; i++)
        dst->p[i].first = p->first && dst->p[i].off == p->off;
    return LK_OK;
}

static lk_status pre_bytelevel(struct enc *e, const struct pre_step *ps, const struct piece *p,
                               struct piece_list *dst)
{
    struct piece q = *p;
    if (ps->add_prefix_space && (q.len == 0 || e->st.s[q.off] != ' ')) {
        size_t start = e->st.n;
        uint32_t o = q.len ? e->st.os[q.off] : 0;
        LK_TRY(store_put(&e->st, " ", 1, o, o));
        LK_TRY(store_copy(&e->st, q.off, q.len));
        q.off = start;
        q.len = e->st.n - start;
    }
    if (!ps->re)
        return plist_push(dst, q.off, q.len, q.first);
    return split_regex(e, ps, &q, dst);
}

/* Metaspace: spaces become the replacement, which is prepended as the scheme says; with split,
 * each replacement starts a new pre-token (MergedWithNext). */
static lk_status pre_metaspace(struct enc *e, const struct pre_step *ps, const struct piece *p,
                               struct piece_list *dst)
{
    size_t start = e->st.n;
    /* spaces become the replacement first; then prepend unless it already starts with one */
    int starts_with =
        (p->len > 0 && e->st.s[p->off] == ' ') ||
        (p->len >= ps->repl_len && memcmp(e->st.s + p->off, ps->repl, ps->repl_len) == 0);
    int prepend = !starts_with && p->len > 0 &&
                  (ps->prepend_scheme == PS_ALWAYS || (ps->prepend_scheme == PS_FIRST && p->first));
    if (prepend)
        LK_TRY(store_put(&e->st, ps->repl, ps->repl_len, e->st.os[p->off], e->st.os[p->off]));
    for (size_t i = 0; i < p->len; i++) {
        if (e->st.s[p->off + i] == ' ')
            LK_TRY(store_put(&e->st, ps->repl, ps->repl_len, e->st.os[p->off + i],
                             e->st.oe[p->off + i]));
        else
            LK_TRY(store_copy(&e->st, p->off + i, 1));
    }
    size_t n = e->st.n - start;
    if (!ps->split)
        return plist_push(dst, start, n, p->first);
    size_t b = 0;
    for (size_t i = 1; i + ps->repl_len <= n; i++) {
        if (memcmp(e->st.s + start + i, ps->repl, ps->repl_len) == 0) {
            LK_TRY(plist_push(dst, start + b, i - b, p->first && b == 0));
            b = i;
        }
    }
    if (n > b)
        LK_TRY(plist_push(dst, start + b, n - b, p->first && b == 0));
    return LK_OK;
}

/* Run the BPE model on one pre-token, through the word cache when it is short. */
static lk_status model_word(struct enc *e, const struct piece *p)
{
    const uint8_t *w = (const uint8_t *)e->st.s + p->off;
    const uint32_t *os = e->st.os + p->off, *oe = e->st.oe + p->off;
    if (!e->wc || p->len > WC_MAXW)
        return tok_bpe_word(&e->t->bpe, w, p->len, os, oe, &e->sc, &e->out);
    uint64_t h = tok_hash(w, p->len);
    struct wc_slot *c = &e->wc[h & e->wc_mask];
    if (c->h == h && c->wlen == p->len && memcmp(c->w, w, p->len) == 0) {
        for (int k = 0; k < c->nt; k++)
            LK_TRY(
                tok_out_push(&e->out, c->ids[k], os[k ? c->ends[k - 1] : 0], oe[c->ends[k] - 1]));
        return LK_OK;
    }
    /* model with word-relative offsets, then store and translate them */
    static const uint32_t rel_s[WC_MAXW] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                            12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
    static const uint32_t rel_e[WC_MAXW] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                            13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
    int64_t n0 = e->out.n;
    LK_TRY(tok_bpe_word(&e->t->bpe, w, p->len, rel_s, rel_e, &e->sc, &e->out));
    int64_t nt = e->out.n - n0;
    if (nt <= WC_MAXT) {
        c->h = h;
        c->wlen = (uint8_t)p->len;
        c->nt = (uint8_t)nt;
        memcpy(c->w, w, p->len);
    }
    for (int64_t k = 0; k < nt; k++) {
        uint32_t a = e->out.start[n0 + k], b = e->out.end[n0 + k];
        if (nt <= WC_MAXT) {
            c->ids[k] = e->out.ids[n0 + k];
            c->ends[k] = (uint8_t)b;
        }
        e->out.start[n0 + k] = os[a];
        e->out.end[n0 + k] = oe[b - 1];
    }
    return LK_OK;
}

/* SentencePiece-style tokenizers have no pre-tokenizer, so a whole text is one BPE word. When no
 * vocabulary entry has a "▁" right after another character (checked at load: spm_split), no
 * merge can join across such a place, and the merges inside each part happen in the same
 * relative (rank, position) order as in the whole word: modelling the parts cut before every
 * "▁" that follows another character gives the same tokens, with smaller heaps and the cache. */
static lk_status model_split(struct enc *e, const struct piece *p)
{
    static const char mark[] = "\xe2\x96\x81"; /* U+2581 */
    const char *s = e->st.s + p->off;
    size_t start = 0;
    for (size_t i = 3; i + 3 <= p->len; i++) {
        if (memcmp(s + i, mark, 3) != 0 || memcmp(s + i - 3, mark, 3) == 0)
            continue;
        struct piece q = {p->off + start, i - start, 0};
        LK_TRY(model_word(e, &q)); /* (modelling never moves the store) */
        start = i;
    }
    struct piece q = {p->off + start, p->len - start, 0};
    return model_word(e, &q);
}

/* Pre-tokenize store bytes [off, off+n) and run the model on every pre-token. */
static lk_status pretokenize_and_model(struct enc *e, size_t off, size_t n, int first)
{
    const lk_tokenizer *t = e->t;
    e->a.n = 0;
    LK_TRY(plist_push(&e->a, off, n, first));
    for (int k = 0; k < t->n_pre; k++) {
        const struct pre_step *ps = &t->pre[k];
        e->b.n = 0;
        for (int64_t i = 0; i < e->a.n; i++) {
            struct piece p = e->a.p[i];
            if (ps->kind == P_SPLIT)
                LK_TRY(split_regex(e, ps, &p, &e->b));
            else if (ps->kind == P_BYTELEVEL)
                LK_TRY(pre_bytelevel(e, ps, &p, &e->b));
            else
                LK_TRY(pre_metaspace(e, ps, &p, &e->b));
        }
        struct piece_list tmp = e->a;
        e->a = e->b;
        e->b = tmp;
    }
    for (int64_t i = 0; i < e->a.n; i++) {
        const struct piece *p = &e->a.p[i];
        if (p->len > 0)
            LK_TRY(t->spm_split && e->fast ? model_split(e, p) : model_word(e, p));
    }
    return LK_OK;
}

/* Normalise original text [o, o+n), cut out normalized added tokens, model the rest. */
static lk_status encode_segment(struct enc *e, const char *text, size_t o, size_t n)
{
    const lk_tokenizer *t = e->t;
    e->st.n = 0;
    LK_TRY(store_reserve(&e->st, n));
    memcpy(e->st.s, text + o, n);
    for (size_t i = 0; i < n; i++) {
        e->st.os[i] = (uint32_t)(o + i);
        e->st.oe[i] = (uint32_t)(o + i + 1);
    }
    e->st.n = n;
    size_t off = 0, len = n;
    LK_TRY(normalize(t, &e->st, &off, &len));
    const uint8_t *s = (const uint8_t *)e->st.s + off;
    size_t pos = 0;
    int first = o == 0;
    while (pos <= len) {
        size_t ms = len, me = len;
        int k = t->norm_set.idx ? find_added(t, &t->norm_set, s, pos, len, &ms, &me) : -1;
        if (k >= 0)
            strip_match(&t->added[k], s, pos, len, &ms, &me);
        if (ms > pos) {
            /* the store may move while modelling: work from offsets */
            LK_TRY(pretokenize_and_model(e, off + pos, ms - pos, first && pos == 0));
            s = (const uint8_t *)e->st.s + off;
        }
        if (k < 0)
            break;
        LK_TRY(tok_out_push(&e->out, t->added[k].id, e->st.os[off + ms], e->st.oe[off + me - 1]));
        pos = me;
    }
    return LK_OK;
}

static lk_status encode_all(struct enc *e, const char *text, size_t len, int add_special)
{
    const lk_tokenizer *t = e->t;
    int pre = add_special ? (t->cfg_flags ? (t->add_bos && t->bos >= 0) : t->n_tmpl_pre) : 0;
    for (int i = 0; i < pre; i++)
        LK_TRY(tok_out_push(&e->out, t->cfg_flags ? t->bos : t->tmpl_pre[i], 0, 0));
    const uint8_t *s = (const uint8_t *)text;
    size_t pos = 0;
    while (pos <= len) {
        size_t ms = len, me = len;
        int k = t->raw_set.idx ? find_added(t, &t->raw_set, s, pos, len, &ms, &me) : -1;
        if (k >= 0)
            strip_match(&t->added[k], s, pos, len, &ms, &me);
        if (ms > pos)
            LK_TRY(encode_segment(e, text, pos, ms - pos));
        if (k < 0)
            break;
        LK_TRY(tok_out_push(&e->out, t->added[k].id, (uint32_t)ms, (uint32_t)me));
        pos = me;
    }
    int post = add_special ? (t->cfg_flags ? (t->add_eos && t->eos >= 0) : t->n_tmpl_post) : 0;
    for (int i = 0; i < post; i++)
        LK_TRY(tok_out_push(&e->out, t->cfg_flags ? t->eos : t->tmpl_post[i], (uint32_t)len,
                            (uint32_t)len));
    return LK_OK;
}

static void enc_free(struct enc *e)
{
    free(e->st.s);
    free(e->st.os);
    free(e->st.oe);
    free(e->a.p);
    free(e->b.p);
    free(e->sp.p);
    free(e->wc);
    tok_bpe_scratch_free(&e->sc);
    pcre2_match_data_free(e->md);
    tok_out_free(&e->out);
}

lk_status tok_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                     tok_out *out)
{
    return tok_encode_ex(t, text, len, add_special, -1, out);
}

lk_status tok_encode_ex(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                        int fast, tok_out *out)
{
    if (!t || (!text && len > 0))
        return status_fail(LK_ERR_ARG, "tokenizer encode: NULL %s", t ? "text" : "tokenizer");
    if (len >= UINT32_MAX)
        return status_fail(LK_ERR_ARG,
                           "tokenizer encode: text of %zu bytes is too long (limit "
                           "4 GiB)",
                           len);
    struct enc e = {.t = t, .fast = fast != 0};
    e.md = pcre2_match_data_create(4, NULL);
    /* long texts repeat words: cache them (failure to allocate is fine) */
    if (fast > 0 || (fast < 0 && len >= 4096)) {
        e.wc_mask = (len >= (1 << 18) ? 16384 : 2048) - 1;
        e.wc = calloc(e.wc_mask + 1, sizeof *e.wc);
    }
    lk_status s = e.md ? encode_all(&e, text ? text : "", len, add_special)
                       : status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    if (s == LK_OK && !e.out.ids) { /* no tokens: still hand back an allocated array */
        s = tok_out_push(&e.out, 0, 0, 0);
        e.out.n = 0;
    }
    if (s == LK_OK) {
        *out = e.out;
        memset(&e.out, 0, sizeof e.out);
    }
    enc_free(&e);
    return s;
}

lk_status lk_tokenizer_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, int64_t *n)
{
    tok_out out = {0};
    LK_TRY(tok_encode(t, text, len, add_special, &out));
    free(out.start);
    free(out.end);
    *ids = out.ids;
    *n = out.n;
    return LK_OK;
}

lk_status lk_tokenizer_encode_offsets(const lk_tokenizer *t, const char *text, size_t len,
                                      int add_special, int32_t **ids, uint32_t **starts,
                                      uint32_t **ends, int64_t *n)
{
    tok_out out = {0};
    LK_TRY(tok_encode(t, text, len, add_special, &out));
    *ids = out.ids;
    *starts = out.start;
    *ends = out.end;
    *n = out.n;
    return LK_OK;
}

/* ============================================================================================ */
/* Decoding                                                                                     */
/* ============================================================================================ */

/* A list of strings in one buffer. */
struct slist {
    char *buf;
    size_t len, cap;
    size_t *off, *n;
    int64_t count, cap_items;
};

static lk_status slist_add(struct slist *l, const char *s, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n + 1)
            cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b)
            return status_fail(LK_ERR_NOMEM, "tokenizer decode: out of memory");
        l->buf = b;
        l->cap = cap;
    }
    if (l->count == l->cap_items) {
        int64_t cap = l->cap_items ? l->cap_items * 2 : 64;
        size_t *o = realloc(l->off, (size_t)cap * sizeof *o);
        if (o)
            l->off = o;
        size_t *nn = o ? realloc(l->n, (size_t)cap * sizeof *nn) : NULL;
        if (!nn)
            return status_fail(LK_ERR_NOMEM, "tokenizer decode: out of memory");
        l->n = nn;
        l->cap_items = cap;
    }
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

lk_status lk_tokenizer_decode(const lk_tokenizer *t, const int32_t *ids, int64_t n,
                              int skip_special, char **text, size_t *len)
{
    if (!t || (!ids && n > 0) || n < 0 || !text)
        return status_fail(LK_ERR_ARG, "tokenizer decode: bad arguments");
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

#define BAD(t, ...) tok_bad((t)->path, __VA_ARGS__)

static lk_status tok_bad(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static lk_status tok_bad(const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return status_fail(LK_ERR_FORMAT, "%s: %s", path, msg);
}

static lk_status unsupported(const lk_tokenizer *t, const char *what, const char *type)
{
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: %s type '%s' is not supported (supported: see lorakit/tokenizer.h)",
                       t->path, what, type ? type : "(missing)");
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static char *xstrdup(const char *s, size_t *len)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    if (len)
        *len = n;
    return d;
}

/* Parse a normalizer (recursing into Sequence). */
static lk_status parse_normalizer(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = jstr(j, "type");
    if (!type)
        return BAD(t, "normalizer: missing \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(l))
            return BAD(t, "normalizer Sequence: \"normalizers\" is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, l) LK_TRY(parse_normalizer(t, it));
        return LK_OK;
    }
    struct norm_step ns = {0};
    if (strcmp(type, "NFC") == 0)
        ns.kind = N_NFC;
    else if (strcmp(type, "NFD") == 0)
        ns.kind = N_NFD;
    else if (strcmp(type, "NFKC") == 0)
        ns.kind = N_NFKC;
    else if (strcmp(type, "NFKD") == 0)
        ns.kind = N_NFKD;
    else if (strcmp(type, "Lowercase") == 0)
        ns.kind = N_LOWER;
    else if (strcmp(type, "Prepend") == 0) {
        ns.kind = N_PREPEND;
        const char *p = jstr(j, "prepend");
        if (!p)
            return BAD(t, "normalizer Prepend: missing \"prepend\"");
        if (!(ns.a = xstrdup(p, &ns.alen)))
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    } else if (strcmp(type, "Replace") == 0) {
        ns.kind = N_REPLACE;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *c = jstr(j, "content");
        const char *ps = jstr(pat, "String");
        if (!ps && jstr(pat, "Regex"))
            return unsupported(t, "normalizer Replace pattern", "Regex");
        if (!ps || !c)
            return BAD(t, "normalizer Replace: needs pattern.String and content");
        ns.a = xstrdup(ps, &ns.alen);
        ns.b = xstrdup(c, &ns.blen);
        if (!ns.a || !ns.b) {
            free(ns.a);
            free(ns.b);
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
        }
    } else {
        return unsupported(t, "normalizer", type);
    }
    struct norm_step *v = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *v);
    if (!v) {
        free(ns.a);
        free(ns.b);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->norm = v;
    t->norm[t->n_norm++] = ns;
    return LK_OK;
}

static lk_status compile_re(lk_tokenizer *t, const char *pat, size_t len, int literal,
                            pcre2_code **out)
{
    int err;
    PCRE2_SIZE eoff;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return BAD(t, "pre-tokenizer regex does not compile at offset %zu: %s", (size_t)eoff,
                   (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if no JIT */
    *out = re;
    return LK_OK;
}

static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static lk_status add_pre(lk_tokenizer *t, const struct pre_step *ps)
{
    struct pre_step *v = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *v);
    if (!v) {
        pcre2_code_free(ps->re);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->pre = v;
    t->pre[t->n_pre++] = *ps;
    return LK_OK;
}

static int parse_prepend_scheme(const cJSON *j, int *out)
{
    const char *s = jstr(j, "prepend_scheme");
    if (!s) {
        *out = jbool(j, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
        return 0;
    }
    if (strcmp(s, "always") == 0)
        *out = PS_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *out = PS_FIRST;
    else if (strcmp(s, "never") == 0)
        *out = PS_NEVER;
    else
        return -1;
    return 0;
}

static lk_status parse_metaspace_repl(lk_tokenizer *t, const cJSON *j, char *buf, size_t *len)
{
    const char *r = jstr(j, "replacement");
    if (!r)
        r = "\xe2\x96\x81";
    size_t n = strlen(r);
    if (n == 0 || n >= 8)
        return BAD(t, "Metaspace: replacement must be one character");
    memcpy(buf, r, n + 1);
    *len = n;
    return LK_OK;
}

static lk_status parse_pretokenizer(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = jstr(j, "type");
    if (!type)
        return BAD(t, "pre_tokenizer: missing \"type\"");
    struct pre_step ps = {0};
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(l))
            return BAD(t, "pre_tokenizer Sequence: \"pretokenizers\" is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, l) LK_TRY(parse_pretokenizer(t, it));
        return LK_OK;
    } else if (strcmp(type, "Split") == 0) {
        ps.kind = P_SPLIT;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *re = jstr(pat, "Regex"), *str = jstr(pat, "String");
        const char *beh = jstr(j, "behavior");
        if (!re && !str)
            return BAD(t, "pre_tokenizer Split: pattern needs \"Regex\" or \"String\"");
        if (jbool(j, "invert", 0))
            return unsupported(t, "pre_tokenizer Split with invert", "true");
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        ps.behavior = -1;
        for (int i = 0; beh && i < 5; i++)
            if (strcmp(beh, names[i]) == 0)
                ps.behavior = i;
        if (ps.behavior < 0)
            return BAD(t, "pre_tokenizer Split: unknown behavior '%s'", beh ? beh : "(missing)");
        LK_TRY(compile_re(t, re ? re : str, strlen(re ? re : str), !re, &ps.re));
    } else if (strcmp(type, "ByteLevel") == 0) {
        ps.kind = P_BYTELEVEL;
        ps.add_prefix_space = jbool(j, "add_prefix_space", 1);
        ps.behavior = B_ISOLATED;
        if (jbool(j, "use_regex", 1))
            LK_TRY(compile_re(t, gpt2_regex, sizeof gpt2_regex - 1, 0, &ps.re));
        t->bpe.byte_level = 1;
    } else if (strcmp(type, "Digits") == 0) {
        /* Rust's char::is_numeric is \p{N}; runs of them stay together unless individual */
        static const char one[] = "\\p{N}", run[] = "\\p{N}+";
        int indiv = jbool(j, "individual_digits", 0);
        ps.kind = P_SPLIT;
        ps.behavior = B_ISOLATED;
        LK_TRY(
            compile_re(t, indiv ? one : run, indiv ? sizeof one - 1 : sizeof run - 1, 0, &ps.re));
    } else if (strcmp(type, "Metaspace") == 0) {
        ps.kind = P_METASPACE;
        LK_TRY(parse_metaspace_repl(t, j, ps.repl, &ps.repl_len));
        if (parse_prepend_scheme(j, &ps.prepend_scheme))
            return BAD(t, "Metaspace: unknown prepend_scheme");
        ps.split = jbool(j, "split", 1);
    } else {
        return unsupported(t, "pre_tokenizer", type);
    }
    return add_pre(t, &ps);
}

static lk_status add_dec(lk_tokenizer *t, struct dec_step *d)
{
    struct dec_step *v = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *v);
    if (!v) {
        free(d->a);
        free(d->b);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->dec = v;
    t->dec[t->n_dec++] = *d;
    return LK_OK;
}

static lk_status parse_decoder(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = jstr(j, "type");
    if (!type)
        return BAD(t, "decoder: missing \"type\"");
    struct dec_step d = {0};
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(l))
            return BAD(t, "decoder Sequence: \"decoders\" is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, l) LK_TRY(parse_decoder(t, it));
        return LK_OK;
    } else if (strcmp(type, "ByteLevel") == 0) {
        d.kind = D_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d.kind = D_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d.kind = D_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d.kind = D_REPLACE;
        const char *ps = jstr(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String");
        const char *c = jstr(j, "content");
        if (!ps || !c)
            return BAD(t, "decoder Replace: needs pattern.String and content");
        d.a = xstrdup(ps, &d.alen);
        d.b = xstrdup(c, &d.blen);
    } else if (strcmp(type, "Strip") == 0) {
        d.kind = D_STRIP;
        const char *c = jstr(j, "content");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (!c || !cJSON_IsNumber(st) || !cJSON_IsNumber(sp))
            return BAD(t, "decoder Strip: needs content, start and stop");
        d.a = xstrdup(c, &d.alen);
        d.start = st->valueint;
        d.stop = sp->valueint;
    } else if (strcmp(type, "Metaspace") == 0) {
        d.kind = D_METASPACE;
        char r[8];
        size_t rl;
        LK_TRY(parse_metaspace_repl(t, j, r, &rl));
        if (parse_prepend_scheme(j, &d.prepend_scheme))
            return BAD(t, "decoder Metaspace: unknown prepend_scheme");
        d.a = xstrdup(r, &d.alen);
        d.b = xstrdup(" ", &d.blen);
    } else {
        return unsupported(t, "decoder", type);
    }
    if ((d.kind == D_REPLACE || d.kind == D_STRIP || d.kind == D_METASPACE) && !d.a) {
        free(d.b);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    return add_dec(t, &d);
}

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
    const char *type = jstr(model, "type");
    if (!type && cJSON_GetObjectItemCaseSensitive(model, "merges"))
        type = "BPE";
    if (!type || strcmp(type, "BPE") != 0)
        return unsupported(t, "model", type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return unsupported(t, "BPE with dropout", "> 0");
    const char *csp = jstr(model, "continuing_subword_prefix");
    const char *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return unsupported(t, "BPE continuing_subword_prefix/end_of_word_suffix", "non-empty");
    t->bpe.fuse_unk = jbool(model, "fuse_unk", 0);
    t->bpe.byte_fallback = jbool(model, "byte_fallback", 0);
    t->bpe.ignore_merges = jbool(model, "ignore_merges", 0);
    LK_TRY(parse_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), max_added));
    const char *unk = jstr(model, "unk_token");
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
    struct store st = {0};
    lk_status s = store_put(&st, a->content, a->len, 0, 1);
    size_t off = 0, n = a->len;
    if (s == LK_OK)
        s = normalize(t, &st, &off, &n);
    if (s == LK_OK && !(a->pat = malloc(n + 1)))
        s = status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    if (s == LK_OK) {
        memcpy(a->pat, st.s + off, n);
        a->pat[n] = 0;
        a->pat_len = n;
    }
    free(st.s);
    free(st.os);
    free(st.oe);
    return s;
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
        const char *content = jstr(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 30) ||
            !content || !*content)
            return BAD(t,
                       "added_tokens[%d]: needs an integer \"id\" in [0, 2^30) and a "
                       "non-empty \"content\"",
                       t->n_added);
        struct added *a = &t->added[t->n_added++];
        a->id = (int32_t)id->valuedouble;
        if (!(a->content = xstrdup(content, &a->len)))
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
        a->special = jbool(it, "special", 0);
        a->lstrip = jbool(it, "lstrip", 0);
        a->rstrip = jbool(it, "rstrip", 0);
        a->single_word = jbool(it, "single_word", 0);
        a->normalized = jbool(it, "normalized", !a->special);
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

/* TemplateProcessing (single), Roberta/BertProcessing, ByteLevel (offsets only), Sequence. */
static lk_status parse_post(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = jstr(j, "type");
    if (!type)
        return BAD(t, "post_processor: missing \"type\"");
    if (strcmp(type, "ByteLevel") == 0)
        return LK_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "processors"))
            LK_TRY(parse_post(t, it));
        return LK_OK;
    }
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
        const cJSON *ci = cJSON_GetArrayItem(cls, 1), *si = cJSON_GetArrayItem(sep, 1);
        if (!cJSON_IsNumber(ci) || !cJSON_IsNumber(si))
            return BAD(t, "post_processor %s: cls/sep must be [token, id]", type);
        t->tmpl_pre[0] = ci->valueint, t->n_tmpl_pre = 1;
        t->tmpl_post[0] = si->valueint, t->n_tmpl_post = 1;
        return LK_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return unsupported(t, "post_processor", type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!cJSON_IsArray(single))
        return BAD(t, "post_processor TemplateProcessing: \"single\" is not an array");
    int seen_a = 0;
    t->n_tmpl_pre = t->n_tmpl_post = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, single)
    {
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            seen_a = 1;
            continue;
        }
        const char *name = jstr(cJSON_GetObjectItemCaseSensitive(it, "SpecialToken"), "id");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(specials, name ? name : ""), "ids");
        if (!name || !cJSON_IsArray(ids))
            return BAD(t, "post_processor TemplateProcessing: special token '%s' undefined",
                       name ? name : "(missing)");
        const cJSON *x;
        cJSON_ArrayForEach(x, ids)
        {
            int *cnt = seen_a ? &t->n_tmpl_post : &t->n_tmpl_pre;
            int32_t *dst = seen_a ? t->tmpl_post : t->tmpl_pre;
            if (!cJSON_IsNumber(x) || *cnt >= 4)
                return BAD(t, "post_processor TemplateProcessing: bad ids for '%s'", name);
            dst[(*cnt)++] = x->valueint;
        }
    }
    return LK_OK;
}

/* A token in tokenizer_config.json: "str" or {"content": "str", ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v))
        return v->valuestring;
    return jstr(v, "content");
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
    if (!(*str = xstrdup(s, NULL)))
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
            cJSON_ArrayForEach(it, ct) if (jstr(it, "name") && !strcmp(jstr(it, "name"), "default"))
                tmpl = jstr(it, "template");
        }
        if (s == LK_OK && tmpl && !(t->chat_template = xstrdup(tmpl, NULL)))
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
    LK_TRY(parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(j, "normalizer")));
    LK_TRY(parse_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer")));
    LK_TRY(parse_decoder(t, cJSON_GetObjectItemCaseSensitive(j, "decoder")));
    LK_TRY(parse_post(t, cJSON_GetObjectItemCaseSensitive(j, "post_processor")));
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

lk_status lk_tokenizer_load(const char *dir, lk_tokenizer **out)
{
    if (!dir || !out)
        return status_fail(LK_ERR_ARG, "lk_tokenizer_load: NULL argument");
    *out = NULL;
    lk_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = path_join(dir, "tokenizer.json"))) {
        free(t);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->bos = t->eos = -1;
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
    tok_bpe_free(&t->bpe);
    free(t->path);
    free(t);
}
