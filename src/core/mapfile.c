/* mapfile.c — read-only file mappings (llama2.c habit: map the weights, never copy them), with a
 * read-into-memory fallback, and small-file reading. */
#include "core/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

static lk_status read_all(int fd, uint8_t *buf, size_t n, const char *path)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return status_fail(LK_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", path, got,
                               n, r < 0 ? strerror(errno) : "unexpected end of file");
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

void mapfile_drop(const mapfile *m, const void *p, size_t n)
{
    if (!m->mapped || n == 0)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

int mapfile_writable(const mapfile *m, const void *p, size_t n)
{
    const uint8_t *q = p;
    if (!m->mapped || n == 0 || q < m->data || q + n > m->data + m->size)
        return 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)q & ~(page - 1), b = ((uintptr_t)q + n + page - 1) & ~(page - 1);
    return mprotect((void *)a, b - a, PROT_READ | PROT_WRITE) == 0 ? 1 : -1;
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
    LK_TRY(mapfile_open(&m, path, 1)); /* mapped: an oversized file is never read */
    if (m.size > max_size) {
        size_t size = m.size;
        mapfile_close(&m);
        return status_fail(LK_ERR_FORMAT, "%s: file is %zu bytes, more than the %zu allowed", path,
                           size, max_size);
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

/* ---- atomic outputs ---- */

static int remove_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void remove_tree(const char *path)
{
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

lk_status dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return status_fail(LK_ERR_IO, "%s: cannot open the folder to sync it: %s", dir,
                           strerror(errno));
    int r = fsync(fd), err = errno;
    close(fd);
    if (r != 0 && err != EINVAL)
        return status_fail(LK_ERR_IO, "%s: cannot sync the folder: %s", dir, strerror(err));
    return LK_OK;
}

static lk_status fsync_parent(const char *path)
{
    char *d = strdup(path);
    if (!d)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    size_t len = strlen(d);
    while (len > 1 && d[len - 1] == '/') /* "a/b/" names b, whose parent is a */
        d[--len] = 0;
    char *slash = strrchr(d, '/');
    if (slash)
        *(slash == d ? slash + 1 : slash) = 0;
    lk_status s = dir_sync(slash ? d : ".");
    free(d);
    return s;
}

lk_status dir_make_parents(const char *path)
{
    char d[4096];
    size_t n = strlen(path);
    if (n >= sizeof d)
        return status_fail(LK_ERR_IO, "%s: path too long", path);
    memcpy(d, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (d[i] != '/' || d[i - 1] == '/')
            continue;
        d[i] = 0;
        struct stat st;
        if (mkdir(d, 0755) != 0 && errno != EEXIST)
            return status_fail(LK_ERR_IO, "%s: cannot create folder: %s", d, strerror(errno));
        if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
            return status_fail(LK_ERR_IO, "%s: not a folder (it would hold %s)", d, path);
        d[i] = '/';
    }
    return LK_OK;
}

lk_status afile_open(afile *a, const char *path, int force)
{
    memset(a, 0, sizeof *a);
    if (!force && access(path, F_OK) == 0)
        return status_fail(LK_ERR_IO, "%s: already exists (use --force to overwrite)", path);
    size_t n = strlen(path) + 16;
    a->path = strdup(path);
    a->tmp = malloc(n);
    if (!a->path || !a->tmp) {
        afile_abort(a);
        return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    snprintf(a->tmp, n, "%s.tmp.XXXXXX", path);
    lk_status made = dir_make_parents(path);
    if (made != LK_OK) {
        afile_abort(a);
        return made;
    }
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        lk_status s =
            status_fail(LK_ERR_IO, "%s: cannot create temporary file: %s", a->tmp, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        afile_abort(a);
        return s;
    }
    fchmod(fd, 0644);
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        close(fd);
        afile_abort(a);
        return status_fail(LK_ERR_IO, "%s: fdopen failed", path);
    }
    return LK_OK;
}

lk_status afile_write(afile *a, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, a->f) != n)
        return status_fail(LK_ERR_IO, "%s: write failed: %s", a->path, strerror(errno));
    return LK_OK;
}

lk_status afile_commit(afile *a)
{
    lk_status s = LK_OK;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)
        s = status_fail(LK_ERR_IO, "%s: write failed: %s", a->path, strerror(errno));
    if (fclose(a->f) != 0 && s == LK_OK)
        s = status_fail(LK_ERR_IO, "%s: write failed at close: %s", a->path, strerror(errno));
    a->f = NULL;
    if (s == LK_OK && rename(a->tmp, a->path) != 0)
        s = status_fail(LK_ERR_IO, "%s: rename to %s failed: %s", a->tmp, a->path, strerror(errno));
    if (s != LK_OK) {
        afile_abort(a);
        return s;
    }
    s = fsync_parent(a->path);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
    return s;
}

void afile_abort(afile *a)
{
    if (a->f)
        fclose(a->f);
    if (a->tmp)
        unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

lk_status lk_write_file_atomic(const char *path, const void *data, size_t n, int force)
{
    afile a;
    LK_TRY(afile_open(&a, path, force));
    lk_status s = afile_write(&a, data, n);
    if (s != LK_OK) {
        afile_abort(&a);
        return s;
    }
    return afile_commit(&a);
}

lk_status file_rename(const char *from, const char *to)
{
    if (rename(from, to) != 0)
        return status_fail(LK_ERR_IO, "%s: rename to %s failed: %s", from, to, strerror(errno));
    return fsync_parent(to);
}

lk_status dir_discard(const char *dir)
{
    size_t n = strlen(dir) + 16;
    char *old = malloc(n);
    if (!old)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    snprintf(old, n, "%s.old.XXXXXX", dir);
    lk_status s = LK_OK;
    if (!mkdtemp(old) || rename(dir, old) != 0) {
        s = status_fail(LK_ERR_IO, "%s: cannot move it aside to remove it: %s", dir,
                        strerror(errno));
        rmdir(old); /* the empty folder made for it, if any */
    } else {
        remove_tree(old);
    }
    free(old);
    return s;
}

lk_status tmpdir_create(const char *dir, int force, char **tmp_out)
{
    *tmp_out = NULL;
    if (!force && access(dir, F_OK) == 0)
        return status_fail(LK_ERR_IO, "%s: already exists (use --force to overwrite)", dir);
    size_t n = strlen(dir) + 16;
    char *t = malloc(n);
    if (!t)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    snprintf(t, n, "%.*s.tmp.XXXXXX", (int)len, dir);
    lk_status made = dir_make_parents(t);
    if (made != LK_OK) {
        free(t);
        return made;
    }
    if (!mkdtemp(t)) {
        lk_status s =
            status_fail(LK_ERR_IO, "%s: cannot create temporary folder: %s", t, strerror(errno));
        free(t);
        return s;
    }
    chmod(t, 0755);
    *tmp_out = t;
    return LK_OK;
}

/* Replace the folder dir by tmp. Where the kernel can swap two names atomically (Linux
 * renameat2), dir always names a complete folder, old or new; elsewhere the old one is moved aside
 * first, which leaves a moment with neither. The old folder is removed afterwards. */
static lk_status replace_dir(const char *tmp, const char *dir)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        lk_status s = fsync_parent(dir);
        remove_tree(tmp); /* now the old folder */
        return s;
    }
    size_t n = strlen(dir) + 16;
    char *old = malloc(n);
    if (!old)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    snprintf(old, n, "%s.old.XXXXXX", dir);
    int made = mkdtemp(old) != NULL, moved = made && rename(dir, old) == 0;
    if (!moved || rename(tmp, dir) != 0) {
        lk_status s = status_fail(LK_ERR_IO, "%s: cannot replace: %s", dir, strerror(errno));
        if (moved)
            rename(old, dir); /* put the old folder back */
        else if (made)
            rmdir(old);
        free(old);
        return s;
    }
    lk_status s = fsync_parent(dir);
    remove_tree(old);
    free(old);
    return s;
}

lk_status tmpdir_commit(const char *tmp, const char *dir, int force)
{
    LK_TRY(dir_sync(tmp)); /* the entries made in it (afile_commit syncs each file's folder too) */
    if (rename(tmp, dir) == 0)
        return fsync_parent(dir);
    if (force && (errno == ENOTEMPTY || errno == EEXIST))
        return replace_dir(tmp, dir);
    return status_fail(LK_ERR_IO, "%s: rename to %s failed: %s", tmp, dir, strerror(errno));
}
