/* tokenizer_encode.c — encoding with a Hugging Face tokenizer, following tokenizers (Rust)
 * Tokenizer::encode_single_sequence:
 *   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest);
 *   2. every remaining piece is normalised on its own, then added tokens with normalized=true
 *      (whose patterns are themselves normalised) are cut out of it;
 *   3. the pre-tokenizer splits each remaining piece into pre-tokens;
 *   4. the BPE model (bpe.c) tokenises each pre-token;
 *   5. the post-processor adds BOS/EOS.
 * A GGUF tokenizer (tokenizer_gguf.c) follows llama.cpp's llama_vocab::impl::tokenize instead:
 * its special tokens are cut out one after another, longest first (tokenizer_st_partition), and
 * each piece of text goes through steps 2-4 built from the GGUF metadata (llama.cpp's reading of
 * UTF-8, its regex splits, or SentencePiece's "▁" and score merges). Every byte of the working
 * strings carries the byte range of the original text it came from, so tokens get original
 * offsets (used for loss masks). Calls into bpe.c only (of the text files). */
#include "text/tokenizer_impl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/buf.h"
#include "core/status.h"
#include "text/bpe.h"

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
    int64_t n;
    size_t cap;
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
    struct piece_list sp;      /* spans of find_spans: .first is is_match */
    struct piece_list fr, fr2; /* GGUF: text fragments, .first is the special token id or -1 */
    tok_bpe_scratch sc;
    pcre2_match_data *md;
    tok_out out;
};

static lk_status store_reserve(struct store *st, size_t extra)
{
    struct buf_arr a[] = {BUF_ARR(&st->s), BUF_ARR(&st->os), BUF_ARR(&st->oe)};
    return buf_grow_all(a, 3, &st->cap, st->n + extra, "tokenizer: text being encoded");
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
    LK_TRY(BUF_GROW(&l->p, &l->cap, (size_t)l->n + 1, "tokenizer: pre-tokens"));
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

/* One character of s[0..n) as llama.cpp's unicode_cpt_from_utf8 reads it (lead byte and
 * continuation bytes checked, overlong forms accepted): its code point and length, or 0 for an
 * invalid byte. */
static int llama_utf8(const uint8_t *s, size_t n, uint32_t *cp)
{
    static const uint8_t mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    int k = s[0] < 0x80          ? 1
            : (s[0] & 0x40) == 0 ? 0
            : (s[0] & 0x20) == 0 ? 2
            : (s[0] & 0x10) == 0 ? 3
            : (s[0] & 0x08) == 0 ? 4
                                 : 0;
    if (k == 0 || (size_t)k > n)
        return 0;
    uint32_t c = s[0] & mask[k];
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return k;
}

/* Text as llama.cpp reads it for byte-level BPE: code points, an invalid byte as U+FFFD, written
 * back as UTF-8 (so an overlong form becomes the short one). Surrogates and code points above
 * U+10FFFF, which llama.cpp cannot write back, become U+FFFD too. */
static lk_status norm_llama_utf8(struct store *st, size_t off, size_t n)
{
    for (size_t i = 0; i < n;) {
        const uint8_t *s = (const uint8_t *)st->s + off + i;
        uint32_t cp = 0xFFFD;
        int k = llama_utf8(s, n - i, &cp);
        if (k == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            cp = 0xFFFD;
        utf8proc_uint8_t buf[4];
        utf8proc_ssize_t m = utf8proc_encode_char((utf8proc_int32_t)cp, buf);
        size_t used = k ? (size_t)k : 1;
        LK_TRY(store_put(st, (const char *)buf, (size_t)m, st->os[off + i],
                         st->oe[off + i + used - 1]));
        i += used;
    }
    return LK_OK;
}

/* 1 when s[0..n) is valid UTF-8 (then llama.cpp's reading leaves it as it is). */
static int valid_utf8(const uint8_t *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if ((k = (size_t)utf8_next(s + i, n - i, &cp)) == 0)
            return 0;
    return 1;
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
        } else if (ns->kind == N_UTF8) {
            if (valid_utf8((const uint8_t *)st->s + o, len))
                continue;
            LK_TRY(norm_llama_utf8(st, o, len));
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

/* The normalizer chain over one string (the pattern of a normalized added token). */
lk_status tok_normalize(const lk_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len)
{
    struct store st = {0};
    size_t off = 0;
    char *p = NULL;
    lk_status r = store_put(&st, s, n, 0, 1);
    if (r == LK_OK)
        r = normalize(t, &st, &off, &n);
    if (r == LK_OK && !(p = malloc(n + 1)))
        r = status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    if (r == LK_OK) {
        memcpy(p, st.s + off, n);
        p[n] = 0;
        *out = p;
        *out_len = n;
    }
    free(st.s);
    free(st.os);
    free(st.oe);
    return r;
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
 * own), as (offset, length, is_match) spans in e->sp. Empty matches are skipped; with
 * empty_splits they cut the text where they match, and a non-empty match starting there is
 * looked for before moving on (std::regex_iterator's rule, which llama.cpp uses). */
static lk_status find_spans(struct enc *e, const pcre2_code *re, int empty_splits,
                            const struct piece *p)
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
            if (me == ms && empty_splits) {
                if (ms > pos)
                    LK_TRY(plist_push(&e->sp, p->off + pos, ms - pos, 0));
                pos = ms;
                rc = pcre2_match(re, s, j, ms,
                                 PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED | PCRE2_NOTEMPTY_ATSTART,
                                 e->md, NULL);
                if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
                    return status_fail(LK_ERR_ARG, "tokenizer: pre-tokenizer regex failed (%d)",
                                       rc);
                me = rc > 0 ? ov[1] : ms;
            }
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
    LK_TRY(find_spans(e, ps->re, ps->empty_splits, p));
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

static int is_number_cp(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

/* llama.cpp's digit-group splitter (unicode_regex_split_custom_afmoe, run for AFMoE's and Tiny
 * Aya's first regex): each run of \p{N} is cut into its first len % 3 characters, if any, and
 * groups of three; a cut ends a piece that starts where the previous one ended, so text before a
 * run stays with its first group. */
static lk_status split_digit_groups(struct enc *e, const struct piece *p, struct piece_list *dst)
{
    const uint8_t *s = (const uint8_t *)e->st.s + p->off;
    size_t prev = 0, i = 0;
    uint32_t cp;
    int cl;
    while (i < p->len) {
        size_t j = i;
        int64_t k = 0;
        while (j < p->len && (cl = utf8_next(s + j, p->len - j, &cp)) > 0 && is_number_cp(cp))
            j += (size_t)cl, k++;
        if (k == 0) {
            cl = utf8_next(s + i, p->len - i, &cp);
            i += cl > 0 ? (size_t)cl : 1;
            continue;
        }
        int64_t step = k % 3 ? k % 3 : 3, c = 0;
        for (size_t q = i; q < j;) {
            q += (size_t)utf8_next(s + q, j - q, &cp);
            if (++c == step) {
                LK_TRY(plist_push(dst, p->off + prev, q - prev, p->first && prev == 0));
                prev = q;
                c = 0;
                step = 3;
            }
        }
        i = j;
    }
    if (prev < p->len)
        LK_TRY(plist_push(dst, p->off + prev, p->len - prev, p->first && prev == 0));
    return LK_OK;
}

/* The model on one pre-token: BPE, or SentencePiece when the vocabulary has scores. */
static lk_status model_run(struct enc *e, const uint8_t *w, size_t n, const uint32_t *os,
                           const uint32_t *oe)
{
    const tok_bpe *m = &e->t->bpe;
    return m->scores ? tok_spm_word(m, w, n, os, oe, &e->sc, &e->out)
                     : tok_bpe_word(m, w, n, os, oe, &e->sc, &e->out);
}

/* Run the model on one pre-token, through the word cache when it is short. */
static lk_status model_word(struct enc *e, const struct piece *p)
{
    const uint8_t *w = (const uint8_t *)e->st.s + p->off;
    const uint32_t *os = e->st.os + p->off, *oe = e->st.oe + p->off;
    if (!e->wc || p->len > WC_MAXW)
        return model_run(e, w, p->len, os, oe);
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
    LK_TRY(model_run(e, w, p->len, rel_s, rel_e));
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
            else if (ps->kind == P_DIGITS)
                LK_TRY(split_digit_groups(e, &p, &e->b));
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

/* ============================================================================================ */
/* GGUF: llama.cpp's special-token partition                                                    */
/* ============================================================================================ */

/* Cut every occurrence of special token k (added[k], id special[k]) out of the text fragments in
 * e->fr, left to right within each, as tokenizer_st_partition does: lstrip drops ASCII whitespace
 * before it from the fragment on its left, rstrip after it from the one on its right. */
static lk_status cut_special(struct enc *e, const char *text, int k)
{
    const struct added *a = &e->t->added[k];
    e->fr2.n = 0;
    for (int64_t i = 0; i < e->fr.n; i++) {
        struct piece f = e->fr.p[i];
        if (f.first >= 0) {
            LK_TRY(plist_push(&e->fr2, f.off, f.len, f.first));
            continue;
        }
        size_t base = f.off, n = f.len;
        while (n > 0) {
            const char *m = memmem(text + base, n, a->pat, a->pat_len);
            if (!m) {
                LK_TRY(plist_push(&e->fr2, base, n, -1));
                break;
            }
            size_t ms = (size_t)(m - text), left = ms - base, me = ms + a->pat_len;
            while (a->lstrip && left > 0 && isspace((unsigned char)text[base + left - 1]))
                left--;
            if (left > 0)
                LK_TRY(plist_push(&e->fr2, base, left, -1));
            LK_TRY(plist_push(&e->fr2, ms, a->pat_len, a->id));
            n = base + n - me;
            base = me;
            while (a->rstrip && n > 0 && isspace((unsigned char)text[base]))
                base++, n--;
        }
    }
    struct piece_list tmp = e->fr;
    e->fr = e->fr2;
    e->fr2 = tmp;
    return LK_OK;
}

/* Which special tokens occur in the text at all (one pass, candidates by first byte), so that
 * only those are cut, in llama.cpp's order. */
static lk_status gguf_partition(struct enc *e, const char *text, size_t len)
{
    const lk_tokenizer *t = e->t;
    e->fr.n = 0;
    if (len > 0)
        LK_TRY(plist_push(&e->fr, 0, len, -1));
    if (t->n_special == 0 || len == 0)
        return LK_OK;
    uint8_t *seen = calloc((size_t)t->n_special, 1);
    if (!seen)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    const uint8_t *s = (const uint8_t *)text;
    for (size_t p = 0; p < len; p++)
        for (int32_t k = t->raw_set.begin[s[p]]; k < t->raw_set.begin[s[p] + 1]; k++) {
            const struct added *a = &t->added[t->raw_set.idx[k]];
            if (a->pat_len <= len - p && memcmp(s + p, a->pat, a->pat_len) == 0)
                seen[t->raw_set.idx[k]] = 1;
        }
    lk_status st = LK_OK;
    for (int k = 0; st == LK_OK && k < t->n_special; k++)
        if (seen[k])
            st = cut_special(e, text, k);
    free(seen);
    return st;
}

static lk_status encode_gguf(struct enc *e, const char *text, size_t len, int add_special)
{
    const lk_tokenizer *t = e->t;
    if (add_special && t->add_bos && t->bos >= 0)
        LK_TRY(tok_out_push(&e->out, t->bos, 0, 0));
    LK_TRY(gguf_partition(e, text, len));
    for (int64_t i = 0; i < e->fr.n; i++) {
        const struct piece f = e->fr.p[i];
        if (f.first >= 0)
            LK_TRY(tok_out_push(&e->out, f.first, (uint32_t)f.off, (uint32_t)(f.off + f.len)));
        else
            LK_TRY(encode_segment(e, text, f.off, f.len));
    }
    if (add_special && t->add_eos && t->eos >= 0)
        LK_TRY(tok_out_push(&e->out, t->eos, (uint32_t)len, (uint32_t)len));
    return LK_OK;
}

static lk_status encode_all(struct enc *e, const char *text, size_t len, int add_special)
{
    const lk_tokenizer *t = e->t;
    if (t->kind != TOK_HF)
        return encode_gguf(e, text, len, add_special);
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
    free(e->fr.p);
    free(e->fr2.p);
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
