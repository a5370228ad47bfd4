/* bpe.c — BPE model: vocabulary and merge hash maps, GPT-2 byte map, UTF-8 decoding and the merge
 * loop for one pre-token. Follows tokenizers (Rust) models/bpe: Word::merge_all pops the candidate
 * pair with the lowest (rank, position) from a min-heap, skips stale entries, merges, and pushes
 * the two new neighbour pairs. Unknown characters: byte_fallback to <0xNN>, else unk (fused when
 * fuse_unk), else dropped. The SentencePiece loop (tok_spm_word) is the same with the rank taken
 * from the score of the merged piece, as llama.cpp's llm_tokenizer_spm_session::tokenize. */
#include "text/bpe.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"

/* ---- GPT-2 byte <-> unicode ------------------------------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the other 68 map to U+0100.. in byte order. */
static int is_printable_byte(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint16_t g_b2cp[256];
static int16_t g_cp2b[324];
static pthread_once_t g_map_once = PTHREAD_ONCE_INIT;

static void init_byte_map(void)
{
    int n = 0;
    for (int i = 0; i < 324; i++)
        g_cp2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        g_b2cp[b] = (uint16_t)(is_printable_byte(b) ? b : 256 + n++);
        g_cp2b[g_b2cp[b]] = (int16_t)b;
    }
}

uint32_t tok_byte_to_cp(uint8_t b)
{
    pthread_once(&g_map_once, init_byte_map);
    return g_b2cp[b];
}

int tok_cp_to_byte(uint32_t cp)
{
    pthread_once(&g_map_once, init_byte_map);
    return cp < 324 ? g_cp2b[cp] : -1;
}

/* ---- hash maps ---------------------------------------------------------------------------- */

uint64_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

int32_t tok_bpe_find(const tok_bpe *m, const char *s, size_t n)
{
    uint64_t i = tok_hash(s, n) & m->map_mask;
    for (;;) {
        int32_t id = m->map[i];
        if (id < 0)
            return -1;
        if ((size_t)m->len[id] == n && memcmp(m->strs + m->off[id], s, n) == 0)
            return id;
        i = (i + 1) & m->map_mask;
    }
}

lk_status tok_bpe_index(tok_bpe *m)
{
    uint64_t cap = pow2_at_least((uint64_t)m->n_ids * 2 + 1);
    m->map = malloc(cap * sizeof *m->map);
    if (!m->map)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory for the vocabulary map");
    memset(m->map, 0xFF, cap * sizeof *m->map);
    m->map_mask = cap - 1;
    for (int64_t id = 0; id < m->n_ids; id++) {
        if (m->len[id] < 0)
            continue;
        const char *s = m->strs + m->off[id];
        uint64_t i = tok_hash(s, (size_t)m->len[id]) & m->map_mask;
        int64_t dup = -1;
        while (m->map[i] >= 0) {
            int32_t o = m->map[i];
            if (m->len[o] == m->len[id] && memcmp(m->strs + m->off[o], s, (size_t)m->len[id]) == 0)
                dup = (int64_t)i;
            i = (i + 1) & m->map_mask;
        }
        /* a string listed twice keeps its first (lowest) id, or its last with dup_last */
        if (dup < 0)
            m->map[i] = (int32_t)id;
        else if (m->dup_last)
            m->map[dup] = (int32_t)id;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        if (m->byte_level) {
            name[0] = (char)b;
            m->byte_ids[b] = tok_bpe_find(m, name, 1);
        } else {
            snprintf(name, sizeof name, "<0x%02X>", b);
            m->byte_ids[b] = tok_bpe_find(m, name, 6);
        }
    }
    return LK_OK;
}

lk_status tok_bpe_alloc_merges(tok_bpe *m, int64_t n)
{
    uint64_t cap = pow2_at_least((uint64_t)n * 2 + 1);
    m->merges = malloc(cap * sizeof *m->merges);
    if (!m->merges)
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory for %lld merges", (long long)n);
    for (uint64_t i = 0; i < cap; i++)
        m->merges[i].key = UINT64_MAX;
    m->merge_mask = cap - 1;
    m->n_merges = 0;
    return LK_OK;
}

lk_status tok_bpe_add_merge(tok_bpe *m, int32_t a, int32_t b, int32_t new_id, int32_t rank)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t i = mix64(key) & m->merge_mask;
    while (m->merges[i].key != UINT64_MAX) {
        if (m->merges[i].key == key)
            return LK_OK;
        i = (i + 1) & m->merge_mask;
    }
    m->merges[i].key = key;
    m->merges[i].rank = rank;
    m->merges[i].new_id = new_id;
    m->n_merges++;
    return LK_OK;
}

static const struct tok_merge *find_merge(const tok_bpe *m, int32_t a, int32_t b)
{
    if (!m->merges)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t i = mix64(key) & m->merge_mask;
    while (m->merges[i].key != UINT64_MAX) {
        if (m->merges[i].key == key)
            return &m->merges[i];
        i = (i + 1) & m->merge_mask;
    }
    return NULL;
}

void tok_bpe_free(tok_bpe *m)
{
    if (!m)
        return;
    free(m->strs);
    free(m->off);
    free(m->len);
    free(m->map);
    free(m->merges);
    free(m->scores);
    memset(m, 0, sizeof *m);
}

/* ---- output ------------------------------------------------------------------------------ */

lk_status tok_out_push(tok_out *out, int32_t id, uint32_t start, uint32_t end)
{
    struct buf_arr a[] = {BUF_ARR(&out->ids), BUF_ARR(&out->start), BUF_ARR(&out->end)};
    LK_TRY(buf_grow_all(a, 3, &out->cap, (size_t)out->n + 1, "tokenizer: token ids"));
    out->ids[out->n] = id;
    out->start[out->n] = start;
    out->end[out->n] = end;
    out->n++;
    return LK_OK;
}

void tok_out_free(tok_out *out)
{
    free(out->ids);
    free(out->start);
    free(out->end);
    memset(out, 0, sizeof *out);
}

/* ---- merge loop --------------------------------------------------------------------------- */

struct sym {
    int32_t id, prev, next;
    uint32_t start, len; /* bytes of the pre-token covered */
};

struct cand {
    int32_t rank, pos, new_id;
};

static int cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct cand *h, int64_t *n, struct cand c)
{
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static struct cand heap_pop(struct cand *h, int64_t *n)
{
    struct cand top = h[0], last = h[--*n];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1;
        if (l >= *n)
            break;
        if (l + 1 < *n && cand_less(&h[l + 1], &h[l]))
            l++;
        if (!cand_less(&h[l], &last))
            break;
        h[i] = h[l];
        i = l;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static lk_status scratch_reserve(tok_bpe_scratch *sc, int64_t n)
{
    LK_TRY(buf_grow(&sc->syms, &sc->cap_syms, (size_t)n, sizeof(struct sym),
                    "tokenizer: BPE symbols of a word"));
    /* each merge adds at most 2 candidates to the n-1 initial ones */
    return buf_grow(&sc->heap, &sc->cap_heap, 3 * (size_t)n, sizeof(struct cand),
                    "tokenizer: BPE candidates of a word");
}

void tok_bpe_scratch_free(tok_bpe_scratch *sc)
{
    free(sc->syms);
    free(sc->heap);
    memset(sc, 0, sizeof *sc);
}

/* Split w into initial symbols: bytes (byte-level) or characters with byte fallback / unk. */
static int64_t initial_symbols(const tok_bpe *m, const uint8_t *w, size_t n, struct sym *s)
{
    int64_t k = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = m->byte_level ? 1 : utf8_next(w + i, n - i, &cp);
        if (cl == 0)
            cl = 1; /* invalid UTF-8: the byte on its own */
        int32_t id = m->byte_level ? m->byte_ids[w[i]] : tok_bpe_find(m, (const char *)w + i, cl);
        if (id >= 0) {
            s[k++] = (struct sym){id, 0, 0, (uint32_t)i, (uint32_t)cl};
            last_unk = 0;
        } else {
            int all = m->byte_fallback;
            for (int j = 0; all && j < cl; j++)
                all = m->byte_ids[w[i + j]] >= 0;
            if (all) {
                for (int j = 0; j < cl; j++)
                    s[k++] = (struct sym){m->byte_ids[w[i + j]], 0, 0, (uint32_t)(i + j), 1};
                last_unk = 0;
            } else if (m->unk_id >= 0) {
                if (m->fuse_unk && last_unk)
                    s[k - 1].len += (uint32_t)cl;
                else
                    s[k++] = (struct sym){m->unk_id, 0, 0, (uint32_t)i, (uint32_t)cl};
                last_unk = 1;
            }
        }
        i += (size_t)cl;
    }
    for (int64_t i = 0; i < k; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    return k;
}

/* The heap pops the lowest rank first: for SentencePiece a rank that orders scores from the
 * highest down (the IEEE bits made monotonic, then reversed). */
static int32_t score_rank(float f)
{
    uint32_t u;
    f = f == 0 ? 0.0f : f; /* -0 ranks with 0, as the comparison does */
    memcpy(&u, &f, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* unsigned order = float order */
    return (int32_t)~(u ^ 0x80000000u);             /* signed, then reversed */
}

/* Merging symbol pos with the next one: the new id, and its rank in *rank; -1 if there is no
 * such merge. BPE: a listed merge of the two ids. SentencePiece: the text the two cover together
 * is a token, ranked by its score. */
static int32_t pair_of(const tok_bpe *m, const uint8_t *w, const struct sym *s, int32_t pos,
                       int32_t *rank)
{
    const struct sym *a = &s[pos], *b = &s[a->next];
    if (!m->scores) {
        const struct tok_merge *mg = find_merge(m, a->id, b->id);
        *rank = mg ? mg->rank : 0;
        return mg ? mg->new_id : -1;
    }
    int32_t id = tok_bpe_find(m, (const char *)w + a->start, a->len + b->len);
    *rank = id >= 0 ? score_rank(m->scores[id]) : 0;
    return id;
}

static void push_pair(const tok_bpe *m, const uint8_t *w, const struct sym *s, int32_t pos,
                      struct cand *h, int64_t *nh)
{
    int32_t rank, id;
    if (pos >= 0 && s[pos].next >= 0 && (id = pair_of(m, w, s, pos, &rank)) >= 0)
        heap_push(h, nh, (struct cand){rank, pos, id});
}

/* Merge the ns symbols of w: the candidate with the lowest (rank, position) first; a candidate
 * whose symbols have changed since it was queued is stale and skipped. */
static void merge_all(const tok_bpe *m, const uint8_t *w, struct sym *s, int64_t ns,
                      struct cand *h)
{
    int64_t nh = 0;
    int32_t rank;
    for (int64_t i = 0; i + 1 < ns; i++)
        push_pair(m, w, s, (int32_t)i, h, &nh);
    while (nh > 0) {
        struct cand c = heap_pop(h, &nh);
        struct sym *a = &s[c.pos];
        if (a->len == 0 || a->next < 0 || pair_of(m, w, s, c.pos, &rank) != c.new_id)
            continue; /* stale candidate */
        struct sym *b = &s[a->next];
        a->id = c.new_id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0)
            s[a->next].prev = c.pos;
        push_pair(m, w, s, a->prev, h, &nh);
        push_pair(m, w, s, c.pos, h, &nh);
    }
}

lk_status tok_bpe_word(const tok_bpe *m, const uint8_t *w, size_t n, const uint32_t *ostart,
                       const uint32_t *oend, tok_bpe_scratch *sc, tok_out *out)
{
    if (n == 0)
        return LK_OK;
    if (m->ignore_merges) {
        int32_t id = tok_bpe_find(m, (const char *)w, n);
        if (id >= 0)
            return tok_out_push(out, id, ostart[0], oend[n - 1]);
    }
    LK_TRY(scratch_reserve(sc, (int64_t)n));
    struct sym *s = sc->syms;
    int64_t ns = initial_symbols(m, w, n, s);
    merge_all(m, w, s, ns, sc->heap);
    for (int32_t i = ns > 0 ? 0 : -1; i >= 0; i = s[i].next)
        LK_TRY(tok_out_push(out, s[i].id, ostart[s[i].start], oend[s[i].start + s[i].len - 1]));
    return LK_OK;
}

/* ---- SentencePiece (llama.cpp's "llama" vocabularies) ------------------------------------ */

/* Characters as llama.cpp cuts them: the length its lead byte announces (1 for a stray
 * continuation byte), cut short at the end; id -1 when the character is not a token. */
static int64_t spm_symbols(const tok_bpe *m, const uint8_t *w, size_t n, struct sym *s)
{
    static const uint8_t len_of_high[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int64_t k = 0;
    for (size_t i = 0; i < n; k++) {
        size_t cl = len_of_high[w[i] >> 4];
        if (cl > n - i)
            cl = n - i;
        s[k] = (struct sym){tok_bpe_find(m, (const char *)w + i, cl), (int32_t)k - 1, -1,
                            (uint32_t)i, (uint32_t)cl};
        if (k > 0)
            s[k - 1].next = (int32_t)k;
        i += cl;
    }
    return k;
}

lk_status tok_spm_word(const tok_bpe *m, const uint8_t *w, size_t n, const uint32_t *ostart,
                       const uint32_t *oend, tok_bpe_scratch *sc, tok_out *out)
{
    if (n == 0)
        return LK_OK;
    LK_TRY(scratch_reserve(sc, (int64_t)n));
    struct sym *s = sc->syms;
    merge_all(m, w, s, spm_symbols(m, w, n, s), sc->heap);
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        const struct sym *y = &s[i];
        if (y->id >= 0) {
            LK_TRY(tok_out_push(out, y->id, ostart[y->start], oend[y->start + y->len - 1]));
            continue;
        }
        for (uint32_t j = y->start; j < y->start + y->len; j++) { /* bytes */
            int32_t id = m->byte_ids[w[j]] >= 0 ? m->byte_ids[w[j]] : m->unk_id;
            if (id >= 0)
                LK_TRY(tok_out_push(out, id, ostart[j], oend[j]));
        }
    }
    return LK_OK;
}
