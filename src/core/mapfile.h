/* mapfile.h — a whole file mapped read-only (or read into memory where mmap is unavailable or
 * not wanted), with its path kept for messages. */
#ifndef LK_MAPFILE_H
#define LK_MAPFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lorakit/core.h"

typedef struct {
    const uint8_t *data; /* [size] bytes, read-only */
    size_t size;
    int mapped; /* 1: data is an mmap; 0: heap copy */
    char *path; /* owned copy of the path */
} mapfile;

/* Open path; use_mmap 0 reads the file into a heap buffer instead. */
lk_status mapfile_open(mapfile *m, const char *path, int use_mmap);

/* Tell the kernel the pages of [p, p+n) inside a mapping are not needed any more (after a tensor
 * was converted or quantised into memory of our own): they leave the resident set and would be
 * read again from the file if touched. No-op for heap copies. */
void mapfile_drop(const mapfile *m, const void *p, size_t n);

/* Make the pages of [p, p+n) writable when they lie inside m's mapping (MAP_PRIVATE: written
 * pages become the process's own copies, the file never changes; a later mapfile_drop of them
 * would bring the file's bytes back). 0 when [p, p+n) is not in a mapping of m (a heap copy, or
 * memory elsewhere: writable as it is), 1 when made writable, -1 when mprotect failed. */
int mapfile_writable(const mapfile *m, const void *p, size_t n);

/* Release (safe on a zeroed or already closed mapfile). */
void mapfile_close(mapfile *m);

/* Read a whole small file (config, JSON) into a NUL-terminated heap buffer; caller frees. */
lk_status read_text_file(const char *path, size_t max_size, char **out, size_t *out_len);

/* path_join(dir, name) into a heap string; caller frees. NULL on allocation failure. */
char *path_join(const char *dir, const char *name);

/* 1 if path names an existing regular file. */
int file_exists(const char *path);

/* Atomic output: write to "<path>.tmp.XXXXXX" in the same folder, then afile_commit flushes,
 * fsyncs, renames over path and fsyncs the folder; afile_abort removes the temporary. A crash at
 * any moment leaves either the old file or the complete new one. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp;
} afile;

/* Create the folders above path that do not exist yet (as mkdir -p does for path's parent); the
 * writers below call it, so an output may name a folder still to be made. */
lk_status dir_make_parents(const char *path);

/* force 0: fail with LK_ERR_IO if path exists. */
lk_status afile_open(afile *a, const char *path, int force);
lk_status afile_write(afile *a, const void *data, size_t n);
lk_status afile_commit(afile *a);
void afile_abort(afile *a);

/* Same protocol for a folder: callers write into a temporary folder made by tmpdir_create next to
 * dir, then tmpdir_commit renames it to dir (replacing an existing dir only when force). */
lk_status tmpdir_create(const char *dir, int force, char **tmp_out);
lk_status tmpdir_commit(const char *tmp, const char *dir, int force);

/* lk_write_file_atomic (lorakit/core.h) is afile_open, afile_write, afile_commit in one call. */

/* fsync a folder, so that renames and new entries in it survive a power cut. A file system that
 * cannot sync folders (EINVAL) is not an error. */
lk_status dir_sync(const char *dir);

/* Rename the file from to to (replacing a file there, atomically) and fsync to's folder. */
lk_status file_rename(const char *from, const char *to);

/* Remove the folder dir: first renamed aside to "<dir>.old.XXXXXX" in one atomic step, so that a
 * crash while its files go never leaves a partial folder at its name (what is left aside is the
 * caller's to sweep). */
lk_status dir_discard(const char *dir);

/* rm -r path (no symlinks followed). */
void remove_tree(const char *path);

#endif /* LK_MAPFILE_H */
