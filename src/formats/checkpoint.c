/* checkpoint.c — see checkpoint.h. Streaming zstd (level 3, frame checksum on) both ways, so a
 * checkpoint never needs a second copy of the arrays in memory. */
#include "formats/checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include "core/json.h"
#include "core/mapfile.h"
#include "core/status.h"

static const char CKPT_MAGIC[8] = {'L', 'K', 'C', 'K', 'P', 'T', '\r', '\n'};
#define CKPT_HEADER     32
#define CKPT_MAX_FLOATS ((int64_t)1 << 36)

static void put_u64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

/* Compress one input span into the file. */
static lk_status zwrite(ZSTD_CCtx *z, afile *a, const void *src, size_t n, int last, void *buf,
                        size_t cap)
{
    ZSTD_inBuffer in = {src, n, 0};
    ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
        ZSTD_outBuffer out = {buf, cap, 0};
        size_t left = ZSTD_compressStream2(z, &out, &in, mode);
        if (ZSTD_isError(left))
            return status_fail(LK_ERR_IO, "%s: compression failed: %s", a->path,
                               ZSTD_getErrorName(left));
        LK_TRY(afile_write(a, buf, out.pos));
        if (last ? left == 0 : in.pos == in.size)
            return LK_OK;
    }
}

lk_status ckpt_save(const char *path, const cJSON *meta, const float *params, const float *m,
                    const float *v, int64_t n)
{
    char *js = cJSON_PrintUnformatted(meta);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    size_t cap = ZSTD_CStreamOutSize();
    void *buf = malloc(cap);
    afile a = {0};
    lk_status s = (js && z && buf) ? afile_open(&a, path, 1) : LK_ERR_NOMEM;
    if (s == LK_ERR_NOMEM)
        status_fail(s, "%s: out of memory", path);
    if (s == LK_OK) {
        uint8_t h[CKPT_HEADER] = {0};
        memcpy(h, CKPT_MAGIC, 8);
        h[8] = CKPT_VERSION;
        put_u64(h + 16, strlen(js));
        put_u64(h + 24, (uint64_t)n);
        ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, 3);
        ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
        s = afile_write(&a, h, sizeof h);
    }
    const void *parts[4] = {js, params, m, v};
    size_t sizes[4] = {js ? strlen(js) : 0, (size_t)n * 4, (size_t)n * 4, (size_t)n * 4};
    for (int i = 0; i < 4 && s == LK_OK; i++)
        s = zwrite(z, &a, parts[i], sizes[i], i == 3, buf, cap);
    if (s == LK_OK)
        s = afile_commit(&a);
    else if (a.f)
        afile_abort(&a);
    free(buf);
    ZSTD_freeCCtx(z);
    free(js);
    return s;
}

/* Decompress exactly n bytes of the frame into dst; *ended: the frame is complete. */
static lk_status zread(ZSTD_DCtx *z, const mapfile *f, ZSTD_inBuffer *in, void *dst, size_t n,
                       int *ended)
{
    ZSTD_outBuffer out = {dst, n, 0};
    while (out.pos < out.size) {
        size_t in0 = in->pos, out0 = out.pos;
        size_t r = ZSTD_decompressStream(z, &out, in);
        *ended = r == 0;
        if (ZSTD_isError(r))
            return status_fail(LK_ERR_FORMAT, "%s: corrupt checkpoint: %s", f->path,
                               ZSTD_getErrorName(r));
        if ((r == 0 && out.pos < out.size) || (in->pos == in0 && out.pos == out0))
            return status_fail(LK_ERR_FORMAT, "%s: checkpoint is truncated", f->path);
    }
    return LK_OK;
}

/* After the declared data the frame must end (its checksum verified) with nothing left over. */
static lk_status zfinish(ZSTD_DCtx *z, const mapfile *f, ZSTD_inBuffer *in, int ended)
{
    while (!ended) {
        uint8_t extra;
        ZSTD_outBuffer probe = {&extra, 1, 0};
        size_t in0 = in->pos;
        size_t r = ZSTD_decompressStream(z, &probe, in);
        if (ZSTD_isError(r))
            return status_fail(LK_ERR_FORMAT, "%s: corrupt checkpoint: %s", f->path,
                               ZSTD_getErrorName(r));
        if (probe.pos)
            return status_fail(LK_ERR_FORMAT, "%s: checkpoint holds more data than declared",
                               f->path);
        ended = r == 0;
        if (!ended && in->pos == in0)
            return status_fail(LK_ERR_FORMAT, "%s: checkpoint is truncated", f->path);
    }
    if (in->pos != in->size)
        return status_fail(LK_ERR_FORMAT, "%s: trailing bytes after the checkpoint frame", f->path);
    return LK_OK;
}

static lk_status parse_header(const mapfile *f, uint64_t *meta_len, int64_t *n)
{
    if (f->size < CKPT_HEADER || memcmp(f->data, CKPT_MAGIC, 8) != 0)
        return status_fail(LK_ERR_FORMAT, "%s: not a lorakit checkpoint (bad magic)", f->path);
    uint32_t ver = f->data[8] | (uint32_t)f->data[9] << 8;
    if (ver != CKPT_VERSION)
        return status_fail(LK_ERR_FORMAT, "%s: checkpoint version %u is %s than this build's %d",
                           f->path, ver, ver > CKPT_VERSION ? "newer" : "older", CKPT_VERSION);
    *meta_len = get_u64(f->data + 16);
    uint64_t nn = get_u64(f->data + 24);
    if (*meta_len > (16u << 20) || nn > (uint64_t)CKPT_MAX_FLOATS)
        return status_fail(LK_ERR_FORMAT, "%s: implausible sizes (meta %llu bytes, %llu floats)",
                           f->path, (unsigned long long)*meta_len, (unsigned long long)nn);
    /* zstd (RFC 8878) expands at most 32768:1: every block of up to 128 KiB costs at least its
     * 3-byte header and one byte (RLE). Sizes the file cannot hold are refused before the
     * allocation they would ask for. */
    uint64_t want = *meta_len + 12 * nn, packed = f->size - CKPT_HEADER;
    uint64_t most = (packed / 4 + 1) * ZSTD_BLOCKSIZE_MAX;
    if (want > most)
        return status_fail(LK_ERR_FORMAT,
                           "%s: header declares %llu bytes of data but %llu compressed bytes "
                           "hold at most %llu (truncated or corrupt checkpoint)",
                           f->path, (unsigned long long)want, (unsigned long long)packed,
                           (unsigned long long)most);
    *n = (int64_t)nn;
    return LK_OK;
}

lk_status ckpt_load(const char *path, cJSON **meta, float **blob, int64_t *n)
{
    mapfile f;
    *meta = NULL;
    *blob = NULL;
    LK_TRY(mapfile_open(&f, path, 1));
    uint64_t ml = 0;
    lk_status s = parse_header(&f, &ml, n);
    char *js = s == LK_OK ? malloc(ml + 1) : NULL;
    float *b = s == LK_OK ? lk_aligned_alloc((size_t)(3 * *n) * sizeof(float)) : NULL;
    ZSTD_DCtx *z = ZSTD_createDCtx();
    if (s == LK_OK && (!js || !b || !z))
        s = status_fail(LK_ERR_NOMEM, "%s: out of memory for %lld parameters", path, (long long)*n);
    ZSTD_inBuffer in = {f.data + CKPT_HEADER, f.size - CKPT_HEADER, 0};
    int ended = 0;
    if (s == LK_OK)
        s = zread(z, &f, &in, js, ml, &ended);
    if (s == LK_OK && !ended)
        s = zread(z, &f, &in, b, (size_t)(3 * *n) * sizeof(float), &ended);
    else if (s == LK_OK)
        s = status_fail(LK_ERR_FORMAT, "%s: checkpoint ends after its description", path);
    if (s == LK_OK)
        s = zfinish(z, &f, &in, ended);
    if (s == LK_OK)
        s = json_parse(path, js, ml, meta);
    if (s == LK_OK && !cJSON_IsObject(*meta))
        s = status_fail(LK_ERR_FORMAT, "%s: checkpoint description is not a JSON object", path);
    if (s == LK_OK)
        *blob = b;
    else {
        cJSON_Delete(*meta);
        *meta = NULL;
        free(b);
    }
    free(js);
    ZSTD_freeDCtx(z);
    mapfile_close(&f);
    return s;
}
