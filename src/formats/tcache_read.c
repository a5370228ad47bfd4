/* tcache_read.c — reading a teacher cache (format in tcache.h): header and index validated at
 * open, each chunk verified when first decompressed (the last one kept), entries served per
 * example, and the check that a cache matches a dataset. Calls into tcache.c only (of the teacher
 * cache files). */
#include "formats/tcache_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/buf.h"
#include "core/mapfile.h"
#include "core/status.h"

static void planes_get(uint32_t *dst, const uint8_t *src, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        dst[i] = (uint32_t)src[i] | (uint32_t)src[m + i] << 8 | (uint32_t)src[2 * m + i] << 16 |
                 (uint32_t)src[3 * m + i] << 24;
}

/* One decompressed chunk, streams decoded into arrays. */
typedef struct {
    int64_t chunk; /* -1: none */
    int64_t first, E;
    struct buf raw;             /* the decompressed frame (mask bytes are read from it) */
    int64_t *tok_off, *ent_off; /* [E + 1] prefix sums */
    int64_t *mask_off;          /* [E] byte offset of each example's mask in raw */
    int32_t *tokens;            /* [Σ n_tok] */
    int32_t *ids;               /* [N·k] */
    float *logp;                /* [N·k] */
    float *tail;                /* [N] */
    size_t cap_off, cap_tok, cap_ent, cap_tail; /* elements of the arrays above */
} tc_chunk;

struct tcache {
    mapfile f;
    int64_t k, vocab, n_ex, n_chunks, n_tok, n_ent, seq_len, index_offset;
    float temp;
    uint64_t data_hash;
    char *teacher, *data;
    uint64_t *index; /* [n_chunks][6] as in the file */
    ZSTD_DCtx *z;
    tcache_idset set;
    tc_chunk cur;
};

#define IX(c, i, f) ((c)->index[(i)*6 + (f)])
enum { IX_OFF, IX_CSIZE, IX_USIZE, IX_FIRST, IX_NEX, IX_HASH };

static lk_status bad(const tcache *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static lk_status bad(const tcache *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return status_fail(LK_ERR_FORMAT, "%s: %s (not a teacher cache, or a corrupt one)", c->f.path,
                       msg);
}

static lk_status parse_strings(tcache *c, const uint8_t *p, uint32_t hb)
{
    uint32_t tl = get_u32(p + 96), dl = get_u32(p + 100);
    if (tl > TC_MAX_STRING || dl > TC_MAX_STRING || TCACHE_HEADER_FIXED + tl + dl > hb)
        return bad(c, "description lengths %u + %u do not fit the %u-byte header", tl, dl, hb);
    for (int i = 104; i < TCACHE_HEADER_FIXED; i++)
        if (p[i])
            return bad(c, "reserved header byte %d is not zero", i);
    c->teacher = strndup((const char *)p + TCACHE_HEADER_FIXED, tl);
    c->data = strndup((const char *)p + TCACHE_HEADER_FIXED + tl, dl);
    if (!c->teacher || !c->data)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->f.path);
    return LK_OK;
}

/* Magic, version, sizes and the header+index checksum, then the fields. */
static lk_status parse_header(tcache *c)
{
    const uint8_t *p = c->f.data;
    uint64_t size = c->f.size;
    if (size < TCACHE_HEADER_FIXED + 8)
        return bad(c, "%llu bytes, shorter than the %d-byte header and checksum",
                   (unsigned long long)size, TCACHE_HEADER_FIXED + 8);
    if (memcmp(p, TC_MAGIC, 8) != 0)
        return bad(c, "bad magic (expected \"LKTCACHE\")");
    uint32_t ver = get_u32(p + 8), hb = get_u32(p + 12);
    if (ver != TCACHE_VERSION)
        return status_fail(
            LK_ERR_FORMAT, "%s: teacher cache version %u %s (this build reads %d)", c->f.path, ver,
            ver > TCACHE_VERSION ? "is newer than this build" : "is unknown", TCACHE_VERSION);
    if (hb < TCACHE_HEADER_FIXED || hb % 8 || hb > size - 8)
        return bad(c, "header size %u", hb);
    uint64_t nc = get_u64(p + 48), io = get_u64(p + 72);
    if (io < hb || io > size - 8 || nc > (size - 8 - io) / TCACHE_INDEX_ENTRY ||
        io + nc * TCACHE_INDEX_ENTRY + 8 != size)
        return bad(c,
                   "index at byte %llu with %llu chunks does not end the %llu-byte file "
                   "(truncated?)",
                   (unsigned long long)io, (unsigned long long)nc, (unsigned long long)size);
    uint64_t sum = tcache_xxh64(p + io, nc * TCACHE_INDEX_ENTRY, tcache_xxh64(p, hb, 0));
    if (sum != get_u64(p + size - 8))
        return bad(c, "header/index checksum mismatch");
    uint32_t flags = get_u32(p + 28);
    uint64_t k = get_u64(p + 16), V = get_u64(p + 32), lim = (uint64_t)1 << 62;
    uint32_t tb = get_u32(p + 24);
    memcpy(&c->temp, &tb, 4);
    if (flags)
        return bad(c, "unknown flags 0x%x", flags);
    if (V < 2 || V > INT32_MAX || k < 1 || k >= V || !(c->temp > 0) || !isfinite(c->temp))
        return bad(c,
                   "k %llu, vocab %llu, temperature %g (need 1 <= k < vocab < 2^31, "
                   "temperature > 0)",
                   (unsigned long long)k, (unsigned long long)V, (double)c->temp);
    uint64_t f[4] = {get_u64(p + 40), get_u64(p + 56), get_u64(p + 64), get_u64(p + 88)};
    for (int i = 0; i < 4; i++)
        if (f[i] >= lim)
            return bad(c, "count at byte %d is %llu",
                       i == 0   ? 40
                       : i == 3 ? 88
                                : 48 + 8 * i,
                       (unsigned long long)f[i]);
    c->k = (int64_t)k;
    c->vocab = (int64_t)V;
    c->n_ex = (int64_t)f[0];
    c->n_tok = (int64_t)f[1];
    c->n_ent = (int64_t)f[2];
    c->seq_len = (int64_t)f[3];
    c->n_chunks = (int64_t)nc;
    c->index_offset = (int64_t)io;
    c->data_hash = get_u64(p + 80);
    return parse_strings(c, p, hb);
}

/* Chunks back to back from the header to the index, examples contiguous from 0. */
static lk_status parse_index(tcache *c)
{
    const uint8_t *p = c->f.data + c->index_offset;
    c->index = malloc((size_t)(c->n_chunks * 6 + 1) * sizeof *c->index);
    if (!c->index)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->f.path);
    uint64_t off = get_u32(c->f.data + 12), first = 0;
    for (int64_t i = 0; i < c->n_chunks; i++) {
        for (int j = 0; j < 6; j++)
            IX(c, i, j) = get_u64(p + TCACHE_INDEX_ENTRY * i + 8 * j);
        uint64_t cs = IX(c, i, IX_CSIZE), us = IX(c, i, IX_USIZE), ne = IX(c, i, IX_NEX);
        if (IX(c, i, IX_OFF) != off || cs < 1 || cs > (uint64_t)c->index_offset - off)
            return bad(c,
                       "chunk %lld: bytes [%llu, +%llu) do not follow the previous chunk "
                       "inside the data",
                       (long long)i, (unsigned long long)IX(c, i, IX_OFF), (unsigned long long)cs);
        if (us < 8 || us > (uint64_t)TCACHE_MAX_CHUNK || ne < 1 || ne > us / 8 ||
            IX(c, i, IX_FIRST) != first)
            return bad(c, "chunk %lld: %llu bytes, examples %llu..+%llu (expected from %llu)",
                       (long long)i, (unsigned long long)us, (unsigned long long)IX(c, i, IX_FIRST),
                       (unsigned long long)ne, (unsigned long long)first);
        off += cs;
        first += ne;
    }
    if (off != (uint64_t)c->index_offset || first != (uint64_t)c->n_ex)
        return bad(c,
                   "the chunks hold bytes up to %llu and %llu examples, the header says %lld "
                   "and %lld",
                   (unsigned long long)off, (unsigned long long)first, (long long)c->index_offset,
                   (long long)c->n_ex);
    return LK_OK;
}

lk_status tcache_open(const char *path, tcache **out)
{
    *out = NULL;
    tcache *c = calloc(1, sizeof *c);
    if (!c)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    c->cur.chunk = -1;
    lk_status s = mapfile_open(&c->f, path, 1);
    if (s == LK_OK)
        s = parse_header(c);
    if (s == LK_OK)
        s = parse_index(c);
    if (s == LK_OK)
        s = tcache_idset_init(&c->set, c->k);
    if (s == LK_OK && !(c->z = ZSTD_createDCtx()))
        s = status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    if (s != LK_OK) {
        tcache_close(c);
        return s;
    }
    *out = c;
    return LK_OK;
}

void tcache_close(tcache *c)
{
    if (!c)
        return;
    tc_chunk *k = &c->cur;
    free(k->raw.p);
    free(k->tok_off);
    free(k->ent_off);
    free(k->mask_off);
    free(k->tokens);
    free(k->ids);
    free(k->logp);
    free(k->tail);
    free(c->index);
    free(c->set.slot);
    free(c->teacher);
    free(c->data);
    ZSTD_freeDCtx(c->z);
    mapfile_close(&c->f);
    free(c);
}

int64_t tcache_k(const tcache *c)
{
    return c->k;
}

float tcache_temp(const tcache *c)
{
    return c->temp;
}

int64_t tcache_vocab(const tcache *c)
{
    return c->vocab;
}

int64_t tcache_examples(const tcache *c)
{
    return c->n_ex;
}

int64_t tcache_entries(const tcache *c)
{
    return c->n_ent;
}

int64_t tcache_seq_len(const tcache *c)
{
    return c->seq_len;
}

const char *tcache_teacher(const tcache *c)
{
    return c->teacher;
}

const char *tcache_data(const tcache *c)
{
    return c->data;
}

uint64_t tcache_checksum(const tcache *c)
{
    return get_u64((const uint8_t *)c->f.data + c->f.size - 8);
}

/* ---- chunks ---- */

/* The arrays of a hold at least n (and at least one) elements: never NULL once grown, so an
 * empty chunk's arrays still make valid pointers. */
static lk_status grow(const tcache *c, const struct buf_arr *a, int k, size_t *cap, int64_t n)
{
    return buf_grow_all(a, k, cap, n > 0 ? (size_t)n : 1, c->f.path);
}

/* Sizes from the example table: tokens T, mask bytes MB, entries N; the chunk must be exactly
 * as long as they say. Fills the offset tables. */
static lk_status chunk_layout(tcache *c, int64_t i, int64_t E, int64_t *T, int64_t *N)
{
    tc_chunk *ch = &c->cur;
    const uint8_t *p = ch->raw.p;
    int64_t us = (int64_t)ch->raw.n, t = 0, n = 0, mb = 0;
    struct buf_arr offs[] = {BUF_ARR(&ch->tok_off), BUF_ARR(&ch->ent_off), BUF_ARR(&ch->mask_off)};
    LK_TRY(grow(c, offs, 3, &ch->cap_off, E + 1));
    for (int64_t e = 0; e < E; e++) {
        int64_t nt = get_u32(p + 4 * e), ne = get_u32(p + 4 * (E + e));
        if (ne > (nt > 0 ? nt - 1 : 0))
            return bad(c, "chunk %lld, example %lld: %lld entries for %lld tokens", (long long)i,
                       (long long)(ch->first + e), (long long)ne, (long long)nt);
        ch->tok_off[e] = t;
        ch->ent_off[e] = n;
        ch->mask_off[e] = mb; /* relative to the mask stream for now */
        t += nt;
        n += ne;
        mb += (nt + 7) / 8;
    }
    ch->tok_off[E] = t;
    ch->ent_off[E] = n;
    int64_t per = 8 * c->k + 4; /* bytes per entry */
    if (t > us || n > us || (n > 0 && per > us / n) || 8 * E + 4 * t + mb + n * per != us)
        return bad(c,
                   "chunk %lld: %lld bytes, but its %lld examples have %lld tokens and %lld "
                   "entries",
                   (long long)i, (long long)us, (long long)E, (long long)t, (long long)n);
    int64_t mask0 = 8 * E + 4 * t;
    for (int64_t e = 0; e < E; e++)
        ch->mask_off[e] += mask0;
    *T = t;
    *N = n;
    return LK_OK;
}

/* Each example's mask: popcount = its entries, no bit at or past its last token. */
static lk_status check_masks(tcache *c, int64_t i)
{
    tc_chunk *ch = &c->cur;
    for (int64_t e = 0; e < ch->E; e++) {
        int64_t nt = ch->tok_off[e + 1] - ch->tok_off[e], ones = 0;
        const uint8_t *m = ch->raw.p + ch->mask_off[e];
        for (int64_t t = 0; t < (nt + 7) / 8 * 8; t++) {
            int bit = (m[t / 8] >> (t % 8)) & 1;
            if (bit && t >= nt - 1)
                return bad(c, "chunk %lld, example %lld: entry flagged at position %lld of %lld",
                           (long long)i, (long long)(ch->first + e), (long long)t, (long long)nt);
            ones += bit;
        }
        if (ones != ch->ent_off[e + 1] - ch->ent_off[e])
            return bad(c, "chunk %lld, example %lld: %lld positions flagged, %lld entries",
                       (long long)i, (long long)(ch->first + e), (long long)ones,
                       (long long)(ch->ent_off[e + 1] - ch->ent_off[e]));
    }
    return LK_OK;
}

/* Decode the entry streams (ids, delta-coded log-probs, tails) and check every value. */
static lk_status decode_entries(tcache *c, int64_t i, const uint8_t *p, int64_t N)
{
    tc_chunk *ch = &c->cur;
    int64_t k = c->k, M = N * k;
    struct buf_arr ent[] = {BUF_ARR(&ch->ids), BUF_ARR(&ch->logp)}, tail = BUF_ARR(&ch->tail);
    LK_TRY(grow(c, ent, 2, &ch->cap_ent, M));
    LK_TRY(grow(c, &tail, 1, &ch->cap_tail, N));
    planes_get((uint32_t *)ch->ids, p, M);
    planes_get((uint32_t *)ch->logp, p + 4 * M, M);
    planes_get((uint32_t *)ch->tail, p + 8 * M, N);
    uint32_t *lb = (uint32_t *)ch->logp;
    for (int64_t r = 0; r < N; r++) {
        for (int64_t j = 1; j < k; j++) /* undo the differences */
            lb[r * k + j] += lb[r * k + j - 1];
        const char *why = tcache_entry_problem(&c->set, ch->ids + r * k, ch->logp + r * k,
                                               ch->tail[r], k, c->vocab);
        if (why)
            return bad(c, "chunk %lld, entry %lld: %s (vocabulary %lld)", (long long)i,
                       (long long)r, why, (long long)c->vocab);
    }
    return LK_OK;
}

/* Decompress chunk i (checksums first) and decode it into c->cur. */
static lk_status load_chunk(tcache *c, int64_t i)
{
    tc_chunk *ch = &c->cur;
    if (ch->chunk == i)
        return LK_OK;
    ch->chunk = -1;
    const uint8_t *src = c->f.data + IX(c, i, IX_OFF);
    size_t cs = IX(c, i, IX_CSIZE), us = IX(c, i, IX_USIZE);
    if (tcache_xxh64(src, cs, 0) != IX(c, i, IX_HASH))
        return bad(c, "chunk %lld (bytes %llu..%llu): checksum mismatch", (long long)i,
                   (unsigned long long)IX(c, i, IX_OFF),
                   (unsigned long long)(IX(c, i, IX_OFF) + cs));
    if (ZSTD_findFrameCompressedSize(src, cs) != cs || ZSTD_getFrameContentSize(src, cs) != us)
        return bad(c, "chunk %lld: not one zstd frame of %zu bytes", (long long)i, us);
    ch->raw.n = 0;
    LK_TRY(buf_reserve(&ch->raw, us, c->f.path));
    size_t r = ZSTD_decompressDCtx(c->z, ch->raw.p, us, src, cs);
    if (ZSTD_isError(r) || r != us)
        return bad(c, "chunk %lld: %s", (long long)i,
                   ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
    ch->raw.n = us;
    ch->first = (int64_t)IX(c, i, IX_FIRST);
    ch->E = (int64_t)IX(c, i, IX_NEX);
    int64_t T = 0, N = 0;
    LK_TRY(chunk_layout(c, i, ch->E, &T, &N));
    struct buf_arr tok = BUF_ARR(&ch->tokens);
    LK_TRY(grow(c, &tok, 1, &ch->cap_tok, T));
    planes_get((uint32_t *)ch->tokens, ch->raw.p + 8 * ch->E, T);
    LK_TRY(check_masks(c, i));
    int64_t mb = ch->E ? ch->mask_off[ch->E - 1] + (T - ch->tok_off[ch->E - 1] + 7) / 8 : 0;
    LK_TRY(decode_entries(c, i, ch->raw.p + mb, N));
    ch->chunk = i;
    return LK_OK;
}

/* ---- access ---- */

/* Decode the chunk holding example e; *j: e's index within it. */
static lk_status locate(tcache *c, int64_t e, int64_t *j)
{
    if (e < 0 || e >= c->n_ex)
        return status_fail(LK_ERR_ARG, "%s: example %lld out of range [0, %lld)", c->f.path,
                           (long long)e, (long long)c->n_ex);
    int64_t lo = 0, hi = c->n_chunks - 1; /* the last chunk whose first example is <= e */
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if ((int64_t)IX(c, mid, IX_FIRST) <= e)
            lo = mid;
        else
            hi = mid - 1;
    }
    LK_TRY(load_chunk(c, lo));
    *j = e - c->cur.first;
    return LK_OK;
}

lk_status tcache_tokens(tcache *c, int64_t e, const int32_t **tokens, int64_t *n)
{
    int64_t j;
    LK_TRY(locate(c, e, &j));
    *tokens = c->cur.tokens + c->cur.tok_off[j];
    *n = c->cur.tok_off[j + 1] - c->cur.tok_off[j];
    return LK_OK;
}

lk_status tcache_get(tcache *c, int64_t e, int64_t n, int32_t *ids, float *logp, float *log_tail)
{
    int64_t j, k = c->k;
    LK_TRY(locate(c, e, &j));
    const tc_chunk *ch = &c->cur;
    int64_t nt = ch->tok_off[j + 1] - ch->tok_off[j], r = ch->ent_off[j];
    if (n < 0 || n > nt)
        return status_fail(LK_ERR_ARG, "%s: example %lld has %lld cached tokens, %lld asked for",
                           c->f.path, (long long)e, (long long)nt, (long long)n);
    const uint8_t *m = ch->raw.p + ch->mask_off[j];
    for (int64_t t = 0; t < n; t++) {
        if ((m[t / 8] >> (t % 8)) & 1) {
            memcpy(ids + t * k, ch->ids + r * k, (size_t)k * sizeof *ids);
            memcpy(logp + t * k, ch->logp + r * k, (size_t)k * sizeof *logp);
            log_tail[t] = ch->tail[r++];
            continue;
        }
        for (int64_t q = 0; q < k; q++) { /* no entry: an untrained position */
            ids[t * k + q] = (int32_t)q;
            logp[t * k + q] = -INFINITY;
        }
        log_tail[t] = 0.0f;
    }
    return LK_OK;
}

/* Example e of d against the cache: a prefix of the cached tokens, entries wherever d trains. */
static lk_status verify_example(tcache *c, const lk_dataset *d, int64_t e)
{
    const int32_t *ids, *labels, *ct;
    int64_t n, line, cn, j;
    LK_TRY(lk_dataset_example(d, e, &ids, &labels, &n, &line));
    LK_TRY(tcache_tokens(c, e, &ct, &cn));
    if (n > cn)
        return status_fail(LK_ERR_ARG,
                           "%s: example %lld (line %lld) has %lld tokens, the cache only %lld "
                           "(hint: the cache was made with --seq-len %lld; use at most that)",
                           c->f.path, (long long)e, (long long)line, (long long)n, (long long)cn,
                           (long long)c->seq_len);
    for (int64_t t = 0; t < n; t++)
        if (ids[t] != ct[t])
            return status_fail(LK_ERR_ARG,
                               "%s: example %lld (line %lld), token %lld: %d in the data, %d in "
                               "the cache (hint: another data file, tokenizer or chat template?)",
                               c->f.path, (long long)e, (long long)line, (long long)t, ids[t],
                               ct[t]);
    LK_TRY(locate(c, e, &j));
    const uint8_t *m = c->cur.raw.p + c->cur.mask_off[j];
    for (int64_t t = 0; t + 1 < n; t++)
        if (labels[t + 1] != LK_LABEL_IGNORE && !((m[t / 8] >> (t % 8)) & 1))
            return status_fail(LK_ERR_ARG,
                               "%s: example %lld (line %lld), position %lld is trained but has "
                               "no teacher entry (hint: the cache was made with other loss "
                               "masks: --fields, --chat-template?)",
                               c->f.path, (long long)e, (long long)line, (long long)t);
    return LK_OK;
}

lk_status tcache_verify(tcache *c, const lk_dataset *d)
{
    int64_t nd = lk_dataset_get_stats(d)->examples, tok = 0, ent = 0;
    if (nd != c->n_ex)
        return status_fail(LK_ERR_ARG,
                           "%s: the data has %lld examples, the cache %lld (hint: another data "
                           "file or --fields?)",
                           c->f.path, (long long)nd, (long long)c->n_ex);
    for (int64_t e = 0; e < nd; e++) {
        LK_TRY(verify_example(c, d, e));
        if (e == c->cur.first + c->cur.E - 1) { /* the chunk's last example: count its totals */
            tok += c->cur.tok_off[c->cur.E];
            ent += c->cur.ent_off[c->cur.E];
        }
    }
    if (tok != c->n_tok || ent != c->n_ent)
        return bad(c, "the chunks hold %lld tokens and %lld entries, the header says %lld and %lld",
                   (long long)tok, (long long)ent, (long long)c->n_tok, (long long)c->n_ent);
    return LK_OK;
}
