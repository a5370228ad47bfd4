/* fuzz_adapter.c — PEFT adapter folders through lk_adapter_load: the input is
 * adapter_config.json, then (after FZ_SEP) adapter_model.safetensors; without a separator the
 * weights are a committed adapter's (stories-lora). A loaded adapter then goes through what the
 * tools do with it: info and modules, lk_adapter_set_base against three committed configs,
 * attached to the llama3-tiny model for a forward, the inspect statistics, and a PEFT save that
 * must load again with the same modules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzzutil.h"
#include "lorakit/adapter.h"
#include "lorakit/model.h"

static const char *const g_bases[] = {LK_TEST_DATA "/models/llama3-tiny",
                                      LK_TEST_DATA "/bnb/stories260K-nf4-dq",
                                      LK_TEST_DATA "/models/qwen2-tiny"};
static struct lk_model_config g_cfg[3];
static lk_model *g_model; /* llama3-tiny, g_cfg[0] */
static char g_in[512], g_out[512];
static int g_fixed_weights;
static volatile double g_sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    for (int i = 0; i < 3; i++)
        if (lk_config_load(g_bases[i], &g_cfg[i]) != LK_OK)
            abort();
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 1;
    if (lk_model_load(g_bases[0], &mp, &g_model) != LK_OK)
        abort();
    snprintf(g_in, sizeof g_in, "%s/in", fz_dir());
    snprintf(g_out, sizeof g_out, "%s/out", fz_dir());
    if (mkdir(g_in, 0700) != 0)
        abort();
    return 0;
}

static void use(lk_adapter *a)
{
    struct lk_adapter_info info;
    lk_adapter_get_info(a, &info);
    int base = -1;
    for (int c = 0; c < 3 && base < 0; c++) {
        fz_clear_error();
        if (fz_check(lk_adapter_set_base(a, &g_cfg[c]), g_in) == LK_OK)
            base = c;
    }
    if (base == 0 && !info.use_dora) {
        static const int32_t tok[3] = {1, 17, 42};
        float logits[3 * 320];
        fz_clear_error();
        if (fz_check(lk_model_attach_adapter(g_model, a, 0.5f), g_in) == LK_OK &&
            lk_model_forward(g_model, tok, 3, logits) == LK_OK)
            g_sink += logits[3 * 320 - 1];
        lk_model_detach_adapters(g_model);
    }
    for (int64_t i = 0; i < info.n_modules; i++) {
        struct lk_adapter_module m;
        struct lk_module_stats st;
        if (lk_adapter_get_module(a, i, &m) != LK_OK || m.r < 1 || m.in < 1 || m.out < 1)
            abort();
        fz_clear_error();
        fz_check(lk_adapter_module_stats(a, i, 2.0, &st, NULL), g_in);
    }
    fz_clear_error();
    if (fz_check(lk_adapter_save_peft(a, g_out, 1), NULL) != LK_OK)
        return;
    lk_adapter *b = NULL;
    if (lk_adapter_load(g_out, &b) != LK_OK)
        abort(); /* what we wrote must read back */
    struct lk_adapter_info bi;
    lk_adapter_get_info(b, &bi);
    if (bi.n_modules != info.n_modules || bi.n_params != info.n_params)
        abort();
    lk_adapter_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[2];
    size_t len[2];
    char cfg[600], st[600];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", g_in);
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", g_in);
    int n = fz_split(data, size, part, len, 2);
    fz_write("in/adapter_config.json", part[0], len[0]);
    if (n == 2) {
        fz_write("in/adapter_model.safetensors", part[1], len[1]);
        g_fixed_weights = 0;
    } else if (!g_fixed_weights) {
        fz_copy(LK_TEST_DATA "/adapters/stories-lora/adapter_model.safetensors",
                "in/adapter_model.safetensors");
        g_fixed_weights = 1;
    }
    lk_adapter *a = NULL;
    fz_clear_error();
    if (fz_check(lk_adapter_load(g_in, &a), g_in) != LK_OK)
        return 0;
    use(a);
    lk_adapter_free(a);
    return 0;
}
