/* fuzz_checkpoint.c — ckpt_load on the input (LKCKPT header, one zstd frame with its checksum,
 * the JSON description), then every float of the three arrays read. */
#include <stdlib.h>

#include "formats/checkpoint.h"
#include "fuzzutil.h"

static volatile float g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *path = fz_memfile(data, size);
    cJSON *meta = NULL;
    float *blob = NULL;
    int64_t n = -1;
    fz_clear_error();
    if (fz_check(ckpt_load(path, &meta, &blob, &n), path) != LK_OK) {
        if (meta || blob)
            abort(); /* nothing is handed out on failure */
        return 0;
    }
    if (!cJSON_IsObject(meta) || n < 0)
        abort();
    float acc = 0;
    for (int64_t i = 0; i < 3 * n; i++)
        acc += blob[i];
    g_sink = acc;
    free(blob);
    cJSON_Delete(meta);
    return 0;
}
