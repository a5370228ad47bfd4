/* mapfile.c — read-only file mappings (llama2.c habit: map the weights, never copy them), with a
 * read-into-memory fallback, and small-file reading. */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "status.h"

static lk_status read_all(int fd, uint8_t *buf, size_t n, const char *path)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return status_fail(LK_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", path,
                               got, n, r < 0 ? strerror(errno) : "unexpected end of file");
        got += (size_t)r;
    }
    return LK_OK;
}

lk_status mapfile_open(mapfile *m, const char *path, int use_mmap)
{
    struct stat st;
    lk_status s = LK_OK;
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return status_fail(LK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = status_fail(LK_ERR_IO, "%s: not a regular file", path);
        goto close_fd;
    }
    m->size = (size_t)st.st_size;
    m->path = strdup(path);
    if (!m->path) {
        s = status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
        goto close_fd;
    }
    if (m->size == 0) {
        m->data = (const uint8_t *)"";
        goto close_fd;
    }
    if (use_mmap) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            m->data = p;
            m->mapped = 1;
            goto close_fd;
        }
    }
    uint8_t *buf = lk_aligned_alloc(m->size);
    if (!buf) {
        s = status_fail(LK_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, m->size);
        goto free_path;
    }
    s = read_all(fd, buf, m->size, path);
    if (s != LK_OK) {
        free(buf);
        goto free_path;
    }
    m->data = buf;
    goto close_fd;
free_path:
    free(m->path);
    m->path = NULL;
close_fd:
    close(fd);
    return s;
}

void mapfile_close(mapfile *m)
{
    if (m->data && m->size) {
        if (m->mapped)
            munmap((void *)m->data, m->size);
        else
            free((void *)m->data);
    }
    free(m->path);
    memset(m, 0, sizeof *m);
}

lk_status read_text_file(const char *path, size_t max_size, char **out, size_t *out_len)
{
    mapfile m;
    *out = NULL;
    LK_TRY(mapfile_open(&m, path, 0));
    if (m.size > max_size) {
        mapfile_close(&m);
        return status_fail(LK_ERR_FORMAT, "%s: file is %zu bytes, more than the %zu allowed",
                           path, m.size, max_size);
    }
    char *buf = malloc(m.size + 1);
    if (!buf) {
        mapfile_close(&m);
        return status_fail(LK_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(buf, m.data, m.size);
    buf[m.size] = 0;
    if (out_len)
        *out_len = m.size;
    mapfile_close(&m);
    *out = buf;
    return LK_OK;
}

char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
