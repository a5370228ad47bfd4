/* tcache.c — the teacher cache (format in tcache.h and docs/teacher-cache.md): XXH64, the writer
 * (chunks of whole examples, byte-plane streams, zstd with frame checksums, index and header
 * checksum, temporary file renamed when complete), the reader (header and index validated at
 * open, each chunk verified when first decompressed, the last one kept), and the top-k
 * selection lora-teacher applies to each row of logits. */
#include "formats/tcache.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/mapfile.h"
#include "core/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the teacher cache hashes host-order int32 tokens as the format's little-endian bytes"
#endif

static const char TC_MAGIC[8] = {'L', 'K', 'T', 'C', 'A', 'C', 'H', 'E'};
#define TC_LEVEL         3    /* zstd level: within 1% of 6 and 3% of 19 on these streams */
#define TC_MAX_STRING    4096 /* teacher / data description bytes */
#define TC_DEFAULT_CHUNK 1024 /* entries per chunk */

/* ---- bytes ---------------------------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t x)
{
    put_u32(p, (uint32_t)x);
    put_u32(p + 4, (uint32_t)(x >> 32));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* m u32 values as byte planes: dst[b·m + i] = byte b of src[i]. */
static void planes_put(uint8_t *dst, const uint32_t *src, int64_t m)
{
    for (int b = 0; b < 4; b++)
        for (int64_t i = 0; i < m; i++)
            dst[b * m + i] = (uint8_t)(src[i] >> (8 * b));
}

static void planes_get(uint32_t *dst, const uint8_t *src, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        dst[i] = (uint32_t)src[i] | (uint32_t)src[m + i] << 8 | (uint32_t)src[2 * m + i] << 16 |
                 (uint32_t)src[3 * m + i] << 24;
}

/* ---- XXH64 (xxHash specification, 64-bit variant) -------------------------------------------- */

#define XP1 11400714785074694791ull
#define XP2 14029467366897019727ull
#define XP3 1609587929392839161ull
#define XP4 9650029242287828579ull
#define XP5 2870177450012600261ull

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t xxh_round(uint64_t acc, uint64_t in)
{
    return rotl64(acc + in * XP2, 31) * XP1;
}

static uint64_t xxh_merge(uint64_t h, uint64_t v)
{
    return (h ^ xxh_round(0, v)) * XP1 + XP4;
}

uint64_t tcache_xxh64(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) { /* four lanes over 32-byte stripes */
        uint64_t v[4] = {seed + XP1 + XP2, seed + XP2, seed, seed - XP1};
        for (; end - p >= 32; p += 32)
            for (int i = 0; i < 4; i++)
                v[i] = xxh_round(v[i], get_u64(p + 8 * i));
        h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
        for (int i = 0; i < 4; i++)
            h = xxh_merge(h, v[i]);
    } else {
        h = seed + XP5;
    }
    h += (uint64_t)n;
    for (; end - p >= 8; p += 8)
        h = rotl64(h ^ xxh_round(0, get_u64(p)), 27) * XP1 + XP4;
    if (end - p >= 4) {
        h = rotl64(h ^ (uint64_t)get_u32(p) * XP1, 23) * XP2 + XP3;
        p += 4;
    }
    for (; p < end; p++)
        h = rotl64(h ^ *p * XP5, 11) * XP1;
    h ^= h >> 33; /* avalanche */
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    return h ^ (h >> 32);
}

/* ---- shared checks ------------------------------------------------------------------------ */

/* Set of ids for the distinctness check: open addressing, entries tagged with a generation so
 * that a new position needs no clearing. */
typedef struct {
    uint64_t *slot; /* (generation << 32) | id */
    uint64_t mask;
    uint32_t gen;
} idset;

static lk_status idset_init(idset *s, int64_t k)
{
    uint64_t n = 16;
    while (n < 2 * (uint64_t)k)
        n *= 2;
    s->slot = calloc(n, sizeof *s->slot);
    s->mask = n - 1;
    s->gen = 0;
    return s->slot ? LK_OK : status_fail(LK_ERR_NOMEM, "teacher cache: out of memory");
}

/* What is wrong with one entry (ids [k], logp [k], *tail), or NULL: ids must lie in [0, V) and
 * be distinct, log-probabilities be <= 0 or -inf (never NaN or positive). */
static const char *entry_problem(idset *s, const int32_t *ids, const float *logp, float tail,
                                 int64_t k, int64_t V)
{
    if (++s->gen == 0) { /* generations wrapped: clear once */
        memset(s->slot, 0, (s->mask + 1) * sizeof *s->slot);
        s->gen = 1;
    }
    uint64_t tag = (uint64_t)s->gen << 32;
    for (int64_t j = 0; j < k; j++) {
        if (ids[j] < 0 || ids[j] >= V)
            return "an id is outside the vocabulary";
        uint64_t h = ((uint32_t)ids[j] * 0x9E3779B1u) & s->mask;
        for (; (s->slot[h] >> 32) == s->gen; h = (h + 1) & s->mask)
            if ((uint32_t)s->slot[h] == (uint32_t)ids[j])
                return "an id is repeated";
        s->slot[h] = tag | (uint32_t)ids[j];
    }
    for (int64_t j = 0; j < k; j++)
        if (!(logp[j] <= 0.0f))
            return "a log-probability is NaN or positive";
    return tail <= 0.0f ? NULL : "the tail log-probability is NaN or positive";
}

int64_t tcache_trained(const int32_t *labels, int64_t n)
{
    int64_t e = 0;
    for (int64_t t = 0; t + 1 < n; t++)
        e += !labels || labels[t + 1] != LK_LABEL_IGNORE;
    return e;
}

/* ---- writer --------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static lk_status bytes_reserve(bytes *b, size_t more)
{
    if (b->n + more <= b->cap)
        return LK_OK;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return status_fail(LK_ERR_NOMEM, "teacher cache: out of memory");
    b->p = p;
    b->cap = cap;
    return LK_OK;
}

static lk_status bytes_put(bytes *b, const void *src, size_t n)
{
    if (n == 0) /* src may be NULL */
        return LK_OK;
    LK_TRY(bytes_reserve(b, n));
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return LK_OK;
}

enum { S_NTOK, S_NENT, S_TOK, S_MASK, S_IDS, S_LOGP, S_TAIL, N_STREAMS };

struct tcache_writer {
    afile a;
    struct tcache_meta m;
    char *teacher, *data;
    ZSTD_CCtx *z;
    idset set;
    bytes s[N_STREAMS]; /* the open chunk's streams (u32 values in host order, mask bytes) */
    int64_t chunk_first, chunk_ex, chunk_ent, chunk_tok;
    bytes raw, comp, index; /* chunk assembly, compressed frame, index entries */
    int64_t n_chunks, offset, n_ex, n_tok, n_ent;
    uint64_t data_hash;
    int header_bytes;
};

static int header_size(size_t tl, size_t dl)
{
    return (int)((TCACHE_HEADER_FIXED + tl + dl + 7) / 8 * 8);
}

lk_status tcache_writer_open(const char *path, const struct tcache_meta *m, int force,
                             tcache_writer **out)
{
    *out = NULL;
    const char *t = m->teacher ? m->teacher : "", *d = m->data ? m->data : "";
    if (m->vocab < 2 || m->vocab > INT32_MAX || m->k < 1 || m->k >= m->vocab || !(m->temp > 0) ||
        !isfinite(m->temp) || m->seq_len < 0)
        return status_fail(LK_ERR_ARG,
                           "%s: teacher cache needs 1 <= k < vocab <= 2^31-1 and a finite "
                           "temperature > 0 (got k %lld, vocab %lld, temperature %g)",
                           path, (long long)m->k, (long long)m->vocab, (double)m->temp);
    tcache_writer *w = calloc(1, sizeof *w);
    if (!w)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    w->m = *m;
    if (w->m.chunk_positions <= 0)
        w->m.chunk_positions = TC_DEFAULT_CHUNK;
    w->teacher = strndup(t, TC_MAX_STRING);
    w->data = strndup(d, TC_MAX_STRING);
    w->z = ZSTD_createCCtx();
    lk_status s = w->teacher && w->data && w->z ? idset_init(&w->set, m->k) : LK_ERR_NOMEM;
    if (s == LK_OK &&
        (ZSTD_isError(ZSTD_CCtx_setParameter(w->z, ZSTD_c_compressionLevel, TC_LEVEL)) ||
         ZSTD_isError(ZSTD_CCtx_setParameter(w->z, ZSTD_c_checksumFlag, 1))))
        s = status_fail(LK_ERR_IO, "%s: zstd refused the compression parameters", path);
    if (s == LK_OK)
        s = afile_open(&w->a, path, force);
    if (s == LK_OK) { /* room for the header, written last */
        uint8_t zero[TCACHE_HEADER_FIXED] = {0};
        w->header_bytes = header_size(strlen(w->teacher), strlen(w->data));
        for (int left = w->header_bytes; s == LK_OK && left > 0; left -= TCACHE_HEADER_FIXED)
            s = afile_write(&w->a, zero,
                            left < TCACHE_HEADER_FIXED ? (size_t)left : TCACHE_HEADER_FIXED);
        w->offset = w->header_bytes;
    }
    if (s != LK_OK) {
        if (s == LK_ERR_NOMEM)
            status_fail(s, "%s: out of memory", path);
        tcache_writer_abort(w);
        return s;
    }
    *out = w;
    return LK_OK;
}

/* Assemble the open chunk (tcache.h's layout), compress it and write it with its index entry. */
static lk_status flush_chunk(tcache_writer *w)
{
    if (w->chunk_ex == 0)
        return LK_OK;
    bytes *s = w->s;
    int64_t E = w->chunk_ex, T = w->chunk_tok, M = w->chunk_ent * w->m.k, N = w->chunk_ent;
    size_t usize = (size_t)(8 * E + 4 * T + 8 * M + 4 * N) + s[S_MASK].n;
    w->raw.n = 0;
    LK_TRY(bytes_reserve(&w->raw, usize));
    uint8_t *p = w->raw.p;
    for (int64_t e = 0; e < E; e++) {
        put_u32(p + 4 * e, ((const uint32_t *)s[S_NTOK].p)[e]);
        put_u32(p + 4 * (E + e), ((const uint32_t *)s[S_NENT].p)[e]);
    }
    p += 8 * E;
    planes_put(p, (const uint32_t *)s[S_TOK].p, T);
    p += 4 * T;
    memcpy(p, s[S_MASK].p, s[S_MASK].n);
    p += s[S_MASK].n;
    planes_put(p, (const uint32_t *)s[S_IDS].p, M);
    planes_put(p + 4 * M, (const uint32_t *)s[S_LOGP].p, M);
    planes_put(p + 8 * M, (const uint32_t *)s[S_TAIL].p, N);
    w->raw.n = usize;
    size_t bound = ZSTD_compressBound(usize);
    w->comp.n = 0;
    LK_TRY(bytes_reserve(&w->comp, bound));
    ZSTD_CCtx_setPledgedSrcSize(w->z, usize);
    size_t c = ZSTD_compress2(w->z, w->comp.p, bound, w->raw.p, usize);
    if (ZSTD_isError(c))
        return status_fail(LK_ERR_IO, "%s: compression failed: %s", w->a.path,
                           ZSTD_getErrorName(c));
    LK_TRY(afile_write(&w->a, w->comp.p, c));
    uint8_t ent[TCACHE_INDEX_ENTRY];
    uint64_t f[6] = {(uint64_t)w->offset,      c,           usize,
                     (uint64_t)w->chunk_first, (uint64_t)E, tcache_xxh64(w->comp.p, c, 0)};
    for (int i = 0; i < 6; i++)
        put_u64(ent + 8 * i, f[i]);
    LK_TRY(bytes_put(&w->index, ent, sizeof ent));
    w->offset += (int64_t)c;
    w->n_chunks++;
    for (int i = 0; i < N_STREAMS; i++)
        s[i].n = 0;
    w->chunk_first = w->n_ex;
    w->chunk_ex = w->chunk_ent = w->chunk_tok = 0;
    return LK_OK;
}

/* Check the example's entries (ids in range and distinct, log-probabilities valid). */
static lk_status check_entries(tcache_writer *w, int64_t E, const int32_t *ids, const float *logp,
                               const float *log_tail)
{
    int64_t k = w->m.k;
    for (int64_t r = 0; r < E; r++) {
        const char *why =
            entry_problem(&w->set, ids + r * k, logp + r * k, log_tail[r], k, w->m.vocab);
        if (why)
            return status_fail(LK_ERR_ARG, "%s: example %lld, entry %lld: %s (vocabulary %lld)",
                               w->a.path, (long long)w->n_ex, (long long)r, why,
                               (long long)w->m.vocab);
    }
    return LK_OK;
}

/* Append one example's tokens, mask and entries to the open chunk's streams. */
static lk_status put_example(tcache_writer *w, const int32_t *tokens, const int32_t *labels,
                             int64_t n, int64_t E, const int32_t *ids, const float *logp,
                             const float *log_tail)
{
    bytes *s = w->s;
    int64_t k = w->m.k, mb = (n + 7) / 8;
    uint32_t nt = (uint32_t)n, ne = (uint32_t)E;
    LK_TRY(bytes_put(&s[S_NTOK], &nt, 4));
    LK_TRY(bytes_put(&s[S_NENT], &ne, 4));
    LK_TRY(bytes_put(&s[S_TOK], tokens, (size_t)n * 4));
    if (mb > 0) {
        LK_TRY(bytes_reserve(&s[S_MASK], (size_t)mb));
        uint8_t *mask = s[S_MASK].p + s[S_MASK].n;
        memset(mask, 0, (size_t)mb);
        for (int64_t t = 0; t + 1 < n; t++)
            if (!labels || labels[t + 1] != LK_LABEL_IGNORE)
                mask[t / 8] |= (uint8_t)(1u << (t % 8));
        s[S_MASK].n += (size_t)mb;
    }
    LK_TRY(bytes_put(&s[S_IDS], ids, (size_t)(E * k) * 4));
    LK_TRY(bytes_reserve(&s[S_LOGP], (size_t)(E * k) * 4));
    uint32_t *lp = (uint32_t *)(s[S_LOGP].p + s[S_LOGP].n);
    if (E > 0)
        memcpy(lp, logp, (size_t)(E * k) * 4);
    for (int64_t r = 0; r < E; r++) /* first as is, then differences of the bit patterns */
        for (int64_t j = k - 1; j > 0; j--)
            lp[r * k + j] -= lp[r * k + j - 1];
    s[S_LOGP].n += (size_t)(E * k) * 4;
    LK_TRY(bytes_put(&s[S_TAIL], log_tail, (size_t)E * 4));
    w->chunk_ex++;
    w->chunk_tok += n;
    w->chunk_ent += E;
    return LK_OK;
}

lk_status tcache_writer_add(tcache_writer *w, const int32_t *tokens, const int32_t *labels,
                            int64_t n, const int32_t *ids, const float *logp, const float *log_tail)
{
    int64_t E = tcache_trained(labels, n), k = w->m.k;
    if (n < 0 || n > INT32_MAX)
        return status_fail(LK_ERR_ARG, "%s: example %lld: %lld tokens", w->a.path,
                           (long long)w->n_ex, (long long)n);
    /* the decompressed size of a chunk holding only this example */
    int64_t alone = 8 + 4 * n + (n + 7) / 8 + E * (8 * k + 4);
    if (alone > TCACHE_MAX_CHUNK)
        return status_fail(LK_ERR_ARG,
                           "%s: example %lld: %lld tokens with %lld entries of k = %lld do not "
                           "fit one chunk (%lld bytes at most)",
                           w->a.path, (long long)w->n_ex, (long long)n, (long long)E, (long long)k,
                           (long long)TCACHE_MAX_CHUNK);
    LK_TRY(check_entries(w, E, ids, logp, log_tail));
    int64_t open =
        8 * w->chunk_ex + 4 * w->chunk_tok + (int64_t)w->s[S_MASK].n + w->chunk_ent * (8 * k + 4);
    if (open + alone > TCACHE_MAX_CHUNK)
        LK_TRY(flush_chunk(w));
    LK_TRY(put_example(w, tokens, labels, n, E, ids, logp, log_tail));
    w->data_hash = tcache_xxh64(tokens, (size_t)n * 4, w->data_hash); /* int32 LE (host order) */
    w->n_ex++;
    w->n_tok += n;
    w->n_ent += E;
    if (w->chunk_ent >= w->m.chunk_positions || w->chunk_tok >= 4 * w->m.chunk_positions)
        LK_TRY(flush_chunk(w));
    return LK_OK;
}

static void fill_header(const tcache_writer *w, uint8_t *h)
{
    size_t tl = strlen(w->teacher), dl = strlen(w->data);
    memset(h, 0, (size_t)w->header_bytes);
    memcpy(h, TC_MAGIC, 8);
    put_u32(h + 8, TCACHE_VERSION);
    put_u32(h + 12, (uint32_t)w->header_bytes);
    put_u64(h + 16, (uint64_t)w->m.k);
    uint32_t tb;
    memcpy(&tb, &w->m.temp, 4);
    put_u32(h + 24, tb);
    put_u64(h + 32, (uint64_t)w->m.vocab);
    put_u64(h + 40, (uint64_t)w->n_ex);
    put_u64(h + 48, (uint64_t)w->n_chunks);
    put_u64(h + 56, (uint64_t)w->n_tok);
    put_u64(h + 64, (uint64_t)w->n_ent);
    put_u64(h + 72, (uint64_t)w->offset);
    put_u64(h + 80, w->data_hash);
    put_u64(h + 88, (uint64_t)w->m.seq_len);
    put_u32(h + 96, (uint32_t)tl);
    put_u32(h + 100, (uint32_t)dl);
    memcpy(h + TCACHE_HEADER_FIXED, w->teacher, tl);
    memcpy(h + TCACHE_HEADER_FIXED + tl, w->data, dl);
}

lk_status tcache_writer_finish(tcache_writer *w, int64_t *bytes_out)
{
    uint8_t *h = malloc((size_t)w->header_bytes), sum[8];
    lk_status s = h ? flush_chunk(w) : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK) {
        fill_header(w, h);
        put_u64(sum,
                tcache_xxh64(w->index.p, w->index.n, tcache_xxh64(h, (size_t)w->header_bytes, 0)));
        s = afile_write(&w->a, w->index.p, w->index.n);
    }
    if (s == LK_OK)
        s = afile_write(&w->a, sum, 8);
    if (s == LK_OK && fseek(w->a.f, 0, SEEK_SET) != 0)
        s = status_fail(LK_ERR_IO, "%s: seek failed", w->a.tmp);
    if (s == LK_OK)
        s = afile_write(&w->a, h, (size_t)w->header_bytes);
    if (s == LK_OK)
        s = afile_commit(&w->a);
    if (s == LK_OK && bytes_out)
        *bytes_out = w->offset + (int64_t)w->index.n + 8;
    free(h);
    tcache_writer_abort(w); /* frees (the committed file stays) */
    return s;
}

void tcache_writer_abort(tcache_writer *w)
{
    if (!w)
        return;
    if (w->a.path)
        afile_abort(&w->a);
    for (int i = 0; i < N_STREAMS; i++)
        free(w->s[i].p);
    free(w->raw.p);
    free(w->comp.p);
    free(w->index.p);
    free(w->set.slot);
    ZSTD_freeCCtx(w->z);
    free(w->teacher);
    free(w->data);
    free(w);
}

/* ---- reader --------------------------------------------------------------------------------- */

/* One decompressed chunk, streams decoded into arrays. */
typedef struct {
    int64_t chunk; /* -1: none */
    int64_t first, E;
    bytes raw;                  /* the decompressed frame (mask bytes are read from it) */
    int64_t *tok_off, *ent_off; /* [E + 1] prefix sums */
    int64_t *mask_off;          /* [E] byte offset of each example's mask in raw */
    int32_t *tokens;            /* [Σ n_tok] */
    int32_t *ids;               /* [N·k] */
    float *logp;                /* [N·k] */
    float *tail;                /* [N] */
    size_t cap_tok_off, cap_ent_off, cap_mask_off, cap_tok, cap_ids, cap_logp, cap_tail;
} tc_chunk;

struct tcache {
    mapfile f;
    int64_t k, vocab, n_ex, n_chunks, n_tok, n_ent, seq_len, index_offset;
    float temp;
    uint64_t data_hash;
    char *teacher, *data;
    uint64_t *index; /* [n_chunks][6] as in the file */
    ZSTD_DCtx *z;
    idset set;
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
        s = idset_init(&c->set, c->k);
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

/* ---- chunks ---- */

/* *p holds at least n (and at least one) elements of elem bytes: never NULL once grown, so an
 * empty chunk's arrays still make valid pointers. */
static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (*p && n <= *cap)
        return 0;
    void *q = realloc(*p, (n ? n : 1) * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Sizes from the example table: tokens T, mask bytes MB, entries N; the chunk must be exactly
 * as long as they say. Fills the offset tables. */
static lk_status chunk_layout(tcache *c, int64_t i, int64_t E, int64_t *T, int64_t *N)
{
    tc_chunk *ch = &c->cur;
    const uint8_t *p = ch->raw.p;
    int64_t us = (int64_t)ch->raw.n, t = 0, n = 0, mb = 0;
    if (grow((void **)&ch->tok_off, &ch->cap_tok_off, (size_t)E + 1, sizeof(int64_t)) ||
        grow((void **)&ch->ent_off, &ch->cap_ent_off, (size_t)E + 1, sizeof(int64_t)) ||
        grow((void **)&ch->mask_off, &ch->cap_mask_off, (size_t)E + 1, sizeof(int64_t)))
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->f.path);
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
    if (grow((void **)&ch->ids, &ch->cap_ids, (size_t)M, 4) ||
        grow((void **)&ch->logp, &ch->cap_logp, (size_t)M, 4) ||
        grow((void **)&ch->tail, &ch->cap_tail, (size_t)N, 4))
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->f.path);
    planes_get((uint32_t *)ch->ids, p, M);
    planes_get((uint32_t *)ch->logp, p + 4 * M, M);
    planes_get((uint32_t *)ch->tail, p + 8 * M, N);
    uint32_t *lb = (uint32_t *)ch->logp;
    for (int64_t r = 0; r < N; r++) {
        for (int64_t j = 1; j < k; j++) /* undo the differences */
            lb[r * k + j] += lb[r * k + j - 1];
        const char *why =
            entry_problem(&c->set, ch->ids + r * k, ch->logp + r * k, ch->tail[r], k, c->vocab);
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
    if (bytes_reserve(&ch->raw, us) != LK_OK)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->f.path);
    size_t r = ZSTD_decompressDCtx(c->z, ch->raw.p, us, src, cs);
    if (ZSTD_isError(r) || r != us)
        return bad(c, "chunk %lld: %s", (long long)i,
                   ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
    ch->raw.n = us;
    ch->first = (int64_t)IX(c, i, IX_FIRST);
    ch->E = (int64_t)IX(c, i, IX_NEX);
    int64_t T = 0, N = 0;
    LK_TRY(chunk_layout(c, i, ch->E, &T, &N));
    if (grow((void **)&ch->tokens, &ch->cap_tok, (size_t)T, 4))
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", c->f.path);
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

/* ---- top-k ---------------------------------------------------------------------------------- */

/* (va, ia) ranks below (vb, ib): a lower value, or the same value and a higher id. */
static int worse(float va, int32_t ia, float vb, int32_t ib)
{
    return va < vb || (va == vb && ia > ib);
}

/* Restore the heap (worst at the root) below node i of v/id [n]. */
static void sift_down(float *v, int32_t *id, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(v[l], id[l], v[m], id[m]))
            m = l;
        if (r < n && worse(v[r], id[r], v[m], id[m]))
            m = r;
        if (m == i)
            return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[m];
        id[i] = id[m];
        v[m] = tv;
        id[m] = ti;
        i = m;
    }
}

lk_status tcache_topk(const float *z, int64_t V, float temp, int64_t k, int32_t *ids, float *logp,
                      float *log_tail)
{
    if (k < 1 || k > V)
        return status_fail(LK_ERR_ARG, "top-k: k %lld outside [1, %lld]", (long long)k,
                           (long long)V);
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) { /* keep the k best in a heap (in ids/logp) */
        float zi = z[i] / temp;
        if (isnan(zi) || zi == INFINITY)
            return status_fail(LK_ERR_NUMERIC, "teacher logit %lld is %g", (long long)i,
                               (double)z[i]);
        mx = zi > mx ? zi : mx;
        if (i < k) {
            logp[i] = zi;
            ids[i] = (int32_t)i;
            if (i == k - 1)
                for (int64_t j = k / 2 - 1; j >= 0; j--)
                    sift_down(logp, ids, k, j);
        } else if (worse(logp[0], ids[0], zi, (int32_t)i)) {
            logp[0] = zi;
            ids[0] = (int32_t)i;
            sift_down(logp, ids, k, 0);
        }
    }
    if (mx == -INFINITY)
        return status_fail(LK_ERR_NUMERIC, "every teacher logit is -inf");
    for (int64_t n = k - 1; n > 0; n--) { /* heap sort: the worst goes last, the best first */
        float tv = logp[0];
        int32_t ti = ids[0];
        logp[0] = logp[n];
        ids[0] = ids[n];
        logp[n] = tv;
        ids[n] = ti;
        sift_down(logp, ids, n, 0);
    }
    /* softmax sums in double; the tail is every id ranked below the k-th, summed directly
     * (not 1 − Σ top-k, which cancels when the tail is small) */
    double sum = 0, tail = 0;
    for (int64_t i = 0; i < V; i++) {
        float zi = z[i] / temp;
        double e = exp((double)zi - mx);
        sum += e;
        if (worse(zi, (int32_t)i, logp[k - 1], ids[k - 1]))
            tail += e;
    }
    double lse = log(sum);
    for (int64_t j = 0; j < k; j++)
        logp[j] = (float)((double)logp[j] - mx - lse);
    *log_tail = tail > 0 ? (float)(log(tail) - lse) : -INFINITY;
    return LK_OK;
}
