/* fuzz_safetensors.c — st_open on the input (mapped, and read into memory when the input's
 * length is odd), then every tensor's bytes read in full: each one widened to fp32 when it is
 * F32/F16/BF16, every byte summed otherwise, so a view that escaped the file is caught by ASan. */
#include <string.h>

#include "fuzzutil.h"
#include "formats/safetensors.h"
#include "core/status.h"

static volatile float g_sink;

static void read_tensor(const tensor_view *t)
{
    float acc = 0;
    if (t->dt == DT_F32 || t->dt == DT_F16 || t->dt == DT_BF16) {
        int64_t n = tensor_numel(t);
        float *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
        if (!buf)
            return;
        convert_to_f32(t->dt, t->data, buf, n, 1);
        for (int64_t i = 0; i < n; i++)
            acc += buf[i];
        free(buf);
    } else {
        const uint8_t *p = t->data;
        for (size_t i = 0; i < t->nbytes; i++)
            acc += p[i];
    }
    g_sink = acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *path = fz_memfile(data, size);
    st_file f;
    fz_clear_error();
    if (fz_check(st_open(&f, path, !(size & 1)), path) != LK_OK)
        return 0;
    for (int i = 0; i < f.n; i++) {
        const tensor_view *t = &f.tensors[i];
        if (st_get(&f, t->name) != t) /* names are unique and the table is sorted */
            abort();
        if ((const uint8_t *)t->data < f.map.data ||
            (const uint8_t *)t->data + t->nbytes > f.map.data + f.map.size)
            abort();
        read_tensor(t);
    }
    st_close(&f);
    return 0;
}
