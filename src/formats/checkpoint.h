/* checkpoint.h — training checkpoints: a JSON description (step, schedule, RNG, data cursor,
 * LoRA shape) and the parameter, first- and second-moment arrays, in one zstd frame with its
 * checksum, written to a temporary name and renamed.
 * Layout: "LKCKPT\r\n" magic, u32 version, u32 0, u64 meta bytes, u64 n floats per array, then a
 * zstd frame holding meta JSON, params[n], m[n], v[n] (little-endian f32). */
#ifndef LK_CHECKPOINT_H
#define LK_CHECKPOINT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "lorakit/core.h"

#define CKPT_VERSION 1

lk_status ckpt_save(const char *path, const cJSON *meta, const float *params, const float *m,
                    const float *v, int64_t n);

/* Reads and verifies path. *meta: parsed JSON (caller cJSON_Delete); *blob: [3n] floats (params,
 * m, v; caller frees); *n: floats per array. */
lk_status ckpt_load(const char *path, cJSON **meta, float **blob, int64_t *n);

#endif /* LK_CHECKPOINT_H */
