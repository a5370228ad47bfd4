/* mapfile.h — a whole file mapped read-only (or read into memory where mmap is unavailable or
 * not wanted), with its path kept for messages. */
#ifndef LK_MAPFILE_H
#define LK_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "lorakit/core.h"

typedef struct {
    const uint8_t *data; /* [size] bytes, read-only */
    size_t size;
    int mapped; /* 1: data is an mmap; 0: heap copy */
    char *path; /* owned copy of the path */
} mapfile;

/* Open path; use_mmap 0 reads the file into a heap buffer instead. */
lk_status mapfile_open(mapfile *m, const char *path, int use_mmap);

/* Release (safe on a zeroed or already closed mapfile). */
void mapfile_close(mapfile *m);

/* Read a whole small file (config, JSON) into a NUL-terminated heap buffer; caller frees. */
lk_status read_text_file(const char *path, size_t max_size, char **out, size_t *out_len);

/* path_join(dir, name) into a heap string; caller frees. NULL on allocation failure. */
char *path_join(const char *dir, const char *name);

/* 1 if path names an existing regular file. */
int file_exists(const char *path);

#endif /* LK_MAPFILE_H */
