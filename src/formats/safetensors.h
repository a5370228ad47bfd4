/* safetensors.h — reading (mmap + full validation) and writing safetensors files, and the set of
 * files that make up one model (single file or a sharded model.safetensors.index.json).
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}
 * , "__metadata__": {str: str}}, then the data section; offsets are relative to its start. */
#ifndef LK_SAFETENSORS_H
#define LK_SAFETENSORS_H

#include <cjson/cJSON.h>

#include "core/mapfile.h"
#include "core/tensor.h"

/* Largest header we accept (the reference implementation's limit). */
#define ST_MAX_HEADER (100u << 20)

typedef struct {
    mapfile map;
    tensor_view *tensors; /* [n], sorted by name */
    int n;
    cJSON *header;         /* owned parsed header; tensor names point into it */
    const cJSON *metadata; /* "__metadata__" object or NULL (inside header) */
} st_file;

/* Open and validate path; every tensor view is checked to lie inside the data section, not to
 * overlap another, to have a known dtype and shape × dtype size equal to its byte range, and to
 * have a unique name. */
lk_status st_open(st_file *f, const char *path, int use_mmap);
void st_close(st_file *f);
const tensor_view *st_get(const st_file *f, const char *name);

/* A model's weights across one or more files. */
typedef struct {
    st_file *files;
    int n_files;
    size_t cap_files;
    const tensor_view **index; /* [n], all tensors of all files, sorted by name */
    int n;
    char *dir;
} st_set;

/* Open DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json (shard
 * names must be plain file names inside DIR; every tensor the index lists must be in its shard). */
lk_status st_set_open(st_set *s, const char *dir, int use_mmap);
void st_set_close(st_set *s);
const tensor_view *st_set_get(const st_set *s, const char *name);

/* Writing. fill (optional) produces tensor i's bytes into dst (nbytes of view i); without it the
 * view's data pointer is written. metadata: NULL or a JSON object of string values. The file is
 * written to a temporary name and renamed when complete; data starts 64-byte aligned. */
typedef lk_status (*st_fill_fn)(void *user, int i, void *dst);
lk_status st_write(const char *path, const tensor_view *views, int n, const cJSON *metadata,
                   st_fill_fn fill, void *user, int force);

#endif /* LK_SAFETENSORS_H */
