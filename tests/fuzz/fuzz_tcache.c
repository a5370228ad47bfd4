/* fuzz_tcache.c — the teacher cache reader: tcache_open on the input (header, strings, index,
 * checksum), then every example's tokens and entries (each chunk decompressed, its layout, masks
 * and entries checked), with the invariants the trainer relies on: ids in [0, vocab), no NaN or
 * positive log-probability, untrained positions filled as documented.
 * An input that does not start with the magic is the decompressed content of one chunk after
 * four bytes of parameters (k, vocab, examples): the harness wraps it in a valid file (zstd
 * frame, index, checksums), so mutations reach the chunk decoder past the checksums. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "fuzzutil.h"
#include "formats/tcache.h"

static void put64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

/* A one-chunk cache around payload d[4..n): k = 1 + d[0] % 8, vocab = k + 1 + (d[1] | d[2] << 8)
 * % 1024, examples = 1 + d[3] % 16. Returns its size in out (caller frees), 0 if n < 4. */
static size_t wrap_chunk(const uint8_t *d, size_t n, uint8_t **out)
{
    if (n < 4)
        return 0;
    uint64_t k = 1 + d[0] % 8, V = k + 1 + (uint64_t)(d[1] | d[2] << 8) % 1024, E = 1 + d[3] % 16;
    size_t us = n - 4, bound = ZSTD_compressBound(us), hb = TCACHE_HEADER_FIXED;
    uint8_t *f = calloc(hb + bound + TCACHE_INDEX_ENTRY + 8, 1);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    if (!f || !z)
        abort();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    size_t cs = ZSTD_compress2(z, f + hb, bound, d + 4, us);
    ZSTD_freeCCtx(z);
    if (ZSTD_isError(cs))
        abort();
    memcpy(f, "LKTCACHE", 8);
    f[8] = 1;            /* version */
    f[12] = (uint8_t)hb; /* header bytes */
    put64(f + 16, k);    /* temperature 1.0f: */
    memcpy(f + 24, "\x00\x00\x80\x3f", 4);
    put64(f + 32, V);
    put64(f + 40, E);
    put64(f + 48, 1);       /* chunks */
    put64(f + 72, hb + cs); /* index offset */
    uint8_t *ix = f + hb + cs;
    uint64_t ent[6] = {hb, cs, us, 0, E, tcache_xxh64(f + hb, cs, 0)};
    for (int i = 0; i < 6; i++)
        put64(ix + 8 * i, ent[i]);
    put64(ix + TCACHE_INDEX_ENTRY, tcache_xxh64(ix, TCACHE_INDEX_ENTRY, tcache_xxh64(f, hb, 0)));
    *out = f;
    return hb + cs + TCACHE_INDEX_ENTRY + 8;
}

static volatile int64_t g_sink;

static void example(tcache *c, const char *path, int64_t e)
{
    const int32_t *tok;
    int64_t n, k = tcache_k(c), V = tcache_vocab(c);
    fz_clear_error();
    if (fz_check(tcache_tokens(c, e, &tok, &n), path) != LK_OK)
        return;
    if (n < 0 || k < 1 || k >= V || n * k > (1 << 20))
        return;
    for (int64_t t = 0; t < n; t++)
        g_sink += tok[t];
    int32_t *ids = malloc((size_t)(n * k + 1) * sizeof *ids);
    float *logp = malloc((size_t)(n * k + 1) * sizeof *logp), *tail = malloc((size_t)(n + 1) * 4);
    fz_clear_error();
    if (ids && logp && tail && fz_check(tcache_get(c, e, n, ids, logp, tail), path) == LK_OK) {
        for (int64_t i = 0; i < n * k; i++)
            if (ids[i] < 0 || ids[i] >= V || !(logp[i] <= 0.0f))
                abort();
        for (int64_t t = 0; t < n; t++)
            if (!(tail[t] <= 0.0f))
                abort();
    }
    if (n > 0 && tcache_get(c, e, n + 1, ids, logp, tail) != LK_ERR_ARG) /* past the end */
        abort();
    free(ids);
    free(logp);
    free(tail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    char path[64];
    uint8_t *wrapped = NULL;
    if (size < 8 || memcmp(data, "LKTCACHE", 8) != 0) {
        size = wrap_chunk(data, size, &wrapped);
        data = wrapped;
    }
    snprintf(path, sizeof path, "%s", fz_memfile(data, size));
    free(wrapped);
    tcache *c = NULL;
    fz_clear_error();
    if (fz_check(tcache_open(path, &c), path) != LK_OK)
        return 0;
    g_sink += (int64_t)strlen(tcache_teacher(c)) + (int64_t)strlen(tcache_data(c)) +
              tcache_entries(c) + tcache_seq_len(c);
    if (!(tcache_temp(c) > 0) || !isfinite(tcache_temp(c)))
        abort();
    for (int64_t e = 0; e < tcache_examples(c) && e < 256; e++)
        example(c, path, e);
    for (int64_t e = tcache_examples(c) - 1; e >= 0 && e >= tcache_examples(c) - 4; e--)
        example(c, path, e); /* backwards: chunks reloaded */
    tcache_close(c);
    return 0;
}
