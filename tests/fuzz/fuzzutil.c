/* fuzzutil.c — see fuzzutil.h. */
#include "fuzzutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "core/status.h"

static char g_dir[256];
static char g_path[512];
static int g_memfd = -1;

static void drop_log(lk_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    if (strlen(msg) > 4096) /* touch the whole message, as a real logger would */
        abort();
}

static void cleanup(void)
{
    if (g_dir[0])
        remove_tree(g_dir);
}

void fz_init(void)
{
    if (g_dir[0])
        return;
    lk_set_log(drop_log, NULL);
    lk_set_log_level(LK_LOG_DEBUG);
    struct stat st;
    const char *base = getenv("TMPDIR");
    if (!base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/lkfuzz.XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(cleanup);
}

const char *fz_dir(void)
{
    return g_dir;
}

const char *fz_path(const char *name)
{
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    return g_path;
}

const char *fz_write(const char *name, const void *data, size_t n)
{
    const char *p = fz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

void fz_remove(const char *name)
{
    unlink(fz_path(name));
}

void fz_copy(const char *src, const char *name)
{
    mapfile m;
    if (mapfile_open(&m, src, 0) != LK_OK) {
        fprintf(stderr, "fuzz: %s\n", lk_last_error());
        abort();
    }
    fz_write(name, m.data, m.size);
    mapfile_close(&m);
}

const char *fz_memfile(const uint8_t *data, size_t n)
{
    if (g_memfd < 0 && (g_memfd = memfd_create("lkfuzz", MFD_CLOEXEC)) < 0) {
        perror("fuzz: memfd_create");
        abort();
    }
    if (ftruncate(g_memfd, 0) != 0 || pwrite(g_memfd, data, n, 0) != (ssize_t)n) {
        perror("fuzz: memfd write");
        abort();
    }
    snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_memfd);
    return g_path;
}

int fz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len, int max)
{
    const size_t sl = strlen(FZ_SEP);
    int k = 0;
    while (k < max - 1) {
        const uint8_t *s = memmem(data, n, FZ_SEP, sl);
        if (!s)
            break;
        part[k] = data;
        len[k++] = (size_t)(s - data);
        n -= (size_t)(s - data) + sl;
        data = s + sl;
    }
    part[k] = data;
    len[k++] = n;
    return k;
}

void fz_clear_error(void)
{
    status_fail(LK_OK, "%s", "");
}

lk_status fz_check(lk_status s, const char *file)
{
    if (s == LK_OK)
        return s;
    const char *msg = lk_last_error();
    if (getenv("LK_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz: %s: %s\n", lk_status_str(s), msg);
    const char *why = NULL;
    if (s < LK_ERR_INTERRUPTED || s > LK_ERR_IO)
        why = "unknown status";
    else if (!msg || !*msg)
        why = "failure without a message";
    else if (file && s != LK_ERR_NOMEM && !strstr(msg, file))
        why = "message does not name the file";
    if (why) {
        fprintf(stderr, "fuzz: %s: status %d (%s), file %s, message '%s'\n", why, (int)s,
                lk_status_str(s), file ? file : "-", msg ? msg : "(null)");
        abort();
    }
    return s;
}

size_t fz_tokenizer_edges(const lk_tokenizer *t)
{
    size_t got = 0;
    int64_t v = lk_tokenizer_vocab_size(t);
    int32_t edge[4] = {0, (int32_t)(v - 1), lk_tokenizer_bos(t), lk_tokenizer_eos(t)};
    for (int i = 0; i < 4; i++) {
        char *out = NULL;
        size_t ol = 0;
        if (edge[i] >= 0 && lk_tokenizer_decode(t, &edge[i], 1, i & 1, &out, &ol) == LK_OK)
            got += ol;
        free(out);
    }
    int32_t bad = (int32_t)v;
    char *out = NULL;
    size_t ol = 0;
    if (lk_tokenizer_decode(t, &bad, 1, 0, &out, &ol) != LK_ERR_ARG) /* outside the vocabulary */
        abort();
    free(out);
    return got;
}
