/* fuzz_model.c — lk_model_load of a folder with a fixed micro Llama config.json
 * (tests/fuzz/micro) whose model.safetensors is the input: every tensor checked against the
 * config, float weights widened or quantised at load, and pre-quantised bases bound by qbase.c
 * (lorakit's own U8 rows with their metadata, bitsandbytes NF4 with quant_state JSON, absmax,
 * nested absmax and quant_map). The input's length picks mmap or read, and the load-time quant.
 * An input that starts with "GGUF" is a GGUF model file instead (model.gguf): its metadata gives
 * the config (llama or qwen2), its tensors of every type lorakit reads are bound in place, float
 * ones widened or quantised (tests/gen/gen_fuzz_gguf_model.sh makes the seeds).
 * A loaded model runs a forward over three tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "lorakit/model.h"

static volatile float g_sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    fz_copy(LK_FUZZ_DIR "/micro/config.json", "config.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const lk_qtype quant[4] = {LK_QTYPE_F32, LK_QTYPE_NF4, LK_QTYPE_Q4_0, LK_QTYPE_Q8_0};
    int gguf = size >= 4 && memcmp(data, "GGUF", 4) == 0;
    const char *path = fz_write(gguf ? "model.gguf" : "model.safetensors", data, size);
    char where[4096];
    snprintf(where, sizeof where, "%s", gguf ? path : fz_dir());
    struct lk_model_params p = lk_model_params_default();
    p.n_threads = 1;
    p.use_mmap = !(size & 1);
    p.quant = quant[(size >> 1) & 3];
    lk_model *m = NULL;
    fz_clear_error();
    if (fz_check(lk_model_load(where, &p, &m), where) != LK_OK)
        return 0;
    static const int32_t tok[3] = {1, 5, 31};
    int64_t V = lk_model_get_config(m)->vocab_size;
    float *logits = malloc((size_t)(3 * V) * sizeof *logits);
    if (!logits)
        abort();
    int32_t ids[3] = {tok[0] % V, tok[1] % V, tok[2] % V};
    if (lk_model_forward(m, ids, 3, logits) != LK_OK)
        abort();
    g_sink = logits[3 * V - 1];
    free(logits);
    lk_model_free(m);
    return 0;
}
