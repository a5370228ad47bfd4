/* tcache_write.c — writing a teacher cache (format in tcache.h): chunks of whole examples,
 * byte-plane streams, zstd with frame checksums, index and header checksum, temporary file
 * renamed when complete. Calls into tcache.c only (of the teacher cache files). */
#include "formats/tcache_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/buf.h"
#include "core/mapfile.h"
#include "core/status.h"

#define TC_LEVEL         3    /* zstd level: within 1% of 6 and 3% of 19 on these streams */
#define TC_DEFAULT_CHUNK 1024 /* entries per chunk */

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

/* m u32 values as byte planes: dst[b·m + i] = byte b of src[i]. */
static void planes_put(uint8_t *dst, const uint32_t *src, int64_t m)
{
    for (int b = 0; b < 4; b++)
        for (int64_t i = 0; i < m; i++)
            dst[b * m + i] = (uint8_t)(src[i] >> (8 * b));
}

#define TCW "teacher cache writer" /* names the buffers that fail to grow */

enum { S_NTOK, S_NENT, S_TOK, S_MASK, S_IDS, S_LOGP, S_TAIL, N_STREAMS };

struct tcache_writer {
    afile a;
    struct tcache_meta m;
    char *teacher, *data;
    ZSTD_CCtx *z;
    tcache_idset set;
    struct buf s[N_STREAMS]; /* the open chunk's streams (u32 values in host order, mask bytes) */
    int64_t chunk_first, chunk_ex, chunk_ent, chunk_tok;
    struct buf raw, comp, index; /* chunk assembly, compressed frame, index entries */
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
    lk_status s = w->teacher && w->data && w->z ? tcache_idset_init(&w->set, m->k) : LK_ERR_NOMEM;
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
    struct buf *s = w->s;
    int64_t E = w->chunk_ex, T = w->chunk_tok, M = w->chunk_ent * w->m.k, N = w->chunk_ent;
    size_t usize = (size_t)(8 * E + 4 * T + 8 * M + 4 * N) + s[S_MASK].n;
    w->raw.n = 0;
    LK_TRY(buf_reserve(&w->raw, usize, TCW));
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
    LK_TRY(buf_reserve(&w->comp, bound, TCW));
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
    LK_TRY(buf_put(&w->index, ent, sizeof ent, TCW));
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
            tcache_entry_problem(&w->set, ids + r * k, logp + r * k, log_tail[r], k, w->m.vocab);
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
    struct buf *s = w->s;
    int64_t k = w->m.k, mb = (n + 7) / 8;
    uint32_t nt = (uint32_t)n, ne = (uint32_t)E;
    LK_TRY(buf_put(&s[S_NTOK], &nt, 4, TCW));
    LK_TRY(buf_put(&s[S_NENT], &ne, 4, TCW));
    LK_TRY(buf_put(&s[S_TOK], tokens, (size_t)n * 4, TCW));
    if (mb > 0) {
        LK_TRY(buf_reserve(&s[S_MASK], (size_t)mb, TCW));
        uint8_t *mask = s[S_MASK].p + s[S_MASK].n;
        memset(mask, 0, (size_t)mb);
        for (int64_t t = 0; t + 1 < n; t++)
            if (!labels || labels[t + 1] != LK_LABEL_IGNORE)
                mask[t / 8] |= (uint8_t)(1u << (t % 8));
        s[S_MASK].n += (size_t)mb;
    }
    LK_TRY(buf_put(&s[S_IDS], ids, (size_t)(E * k) * 4, TCW));
    LK_TRY(buf_reserve(&s[S_LOGP], (size_t)(E * k) * 4, TCW));
    uint32_t *lp = (uint32_t *)(s[S_LOGP].p + s[S_LOGP].n);
    if (E > 0)
        memcpy(lp, logp, (size_t)(E * k) * 4);
    for (int64_t r = 0; r < E; r++) /* first as is, then differences of the bit patterns */
        for (int64_t j = k - 1; j > 0; j--)
            lp[r * k + j] -= lp[r * k + j - 1];
    s[S_LOGP].n += (size_t)(E * k) * 4;
    LK_TRY(buf_put(&s[S_TAIL], log_tail, (size_t)E * 4, TCW));
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
