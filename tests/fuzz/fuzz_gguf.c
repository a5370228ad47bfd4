/* fuzz_gguf.c — the GGUF container (gguf_open: metadata, tensor infos, layout checks; then the
 * typed getters, every tensor's block scales and its first row converted to fp32) and, on the same
 * input, the llama.cpp LoRA reader lk_adapter_load with what a tool does next: lk_adapter_set_base
 * against two committed Llama configs (undoes the q/k row permutation) and the inspect statistics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora/adapter.h"
#include "fuzzutil.h"
#include "formats/gguf.h"
#include "core/status.h"

static struct lk_model_config g_cfg[2];
static volatile double g_sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    if (lk_config_load(LK_TEST_DATA "/models/llama3-tiny", &g_cfg[0]) != LK_OK ||
        lk_config_load(LK_TEST_DATA "/bnb/stories260K-nf4-dq", &g_cfg[1]) != LK_OK)
        abort();
    return 0;
}

static void container(const char *path)
{
    gguf_file f;
    fz_clear_error();
    if (fz_check(gguf_open(&f, path), path) != LK_OK)
        return;
    char *s = NULL;
    double d;
    int64_t i64;
    if (gguf_get_str(&f, "general.architecture", &s) == LK_OK)
        g_sink = (double)strlen(s);
    free(s);
    if (gguf_get_f64(&f, "adapter.lora.alpha", &d) == LK_OK)
        g_sink = d;
    if (gguf_get_i64(&f, "general.alignment", &i64) == LK_OK)
        g_sink = (double)i64;
    for (int64_t k = 0; k < f.n_kv; k++) { /* every string of every array */
        const gguf_kv *kv = &f.kv[k];
        for (uint64_t j = 0; kv->type == GGUF_ARRAY && kv->arr_str && j < kv->arr_n; j++)
            g_sink += kv->arr_str[j].len ? (uint8_t)kv->arr_str[j].ptr[kv->arr_str[j].len - 1] : 0;
        if (kv->type == GGUF_STRING && kv->str.len)
            g_sink += (uint8_t)kv->str.ptr[kv->str.len - 1];
    }
    for (int64_t k = 0; k < f.n_tensors; k++) {
        const gguf_tensor *t = &f.tensors[k];
        const gguf_type_traits *tt = gguf_type_info(t->type);
        if (!tt || t->data + t->nbytes > f.map.data + f.map.size)
            abort();
        g_sink += gguf_check_scales(&f, t) == LK_OK; /* every block's scales, every type */
        fz_clear_error();
        if (!tt->to_f32 || t->ne[0] > (1 << 20))
            continue;
        float *row = malloc((size_t)t->ne[0] * sizeof *row);
        if (!row)
            continue;
        tt->to_f32(t->data, row, t->ne[0]);
        g_sink += row[t->ne[0] - 1];
        free(row);
    }
    gguf_close(&f);
}

static void lora(const char *path)
{
    lk_adapter *a = NULL;
    fz_clear_error();
    if (fz_check(lk_adapter_load(path, &a), path) != LK_OK)
        return;
    struct lk_adapter_info info;
    lk_adapter_get_info(a, &info);
    for (int c = 0; c < 2; c++) {
        fz_clear_error();
        if (fz_check(lk_adapter_set_base(a, &g_cfg[c]), path) == LK_OK)
            break;
    }
    for (int64_t i = 0; i < info.n_modules; i++) {
        struct lk_module_stats st;
        fz_clear_error();
        fz_check(lk_adapter_module_stats(a, i, 1.0, &st, NULL), path);
    }
    lk_adapter_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_memfile(data, size);
    char p[64];
    snprintf(p, sizeof p, "%s", path);
    container(p);
    lora(p);
    return 0;
}
