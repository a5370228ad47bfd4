/* fuzz_model.c — lk_model_load of a folder with a fixed micro Llama config.json
 * (tests/fuzz/micro) whose model.safetensors is the input: every tensor checked against the
 * config, float weights widened or quantised at load, and pre-quantised bases bound by qbase.c
 * (lorakit's own U8 rows with their metadata, bitsandbytes NF4 with quant_state JSON, absmax,
 * nested absmax and quant_map). The input's length picks mmap or read, and the load-time quant.
 * A loaded model runs a forward over three tokens. */
#include <stdlib.h>

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
    fz_write("model.safetensors", data, size);
    struct lk_model_params p = lk_model_params_default();
    p.n_threads = 1;
    p.use_mmap = !(size & 1);
    p.quant = quant[(size >> 1) & 3];
    lk_model *m = NULL;
    fz_clear_error();
    if (fz_check(lk_model_load(fz_dir(), &p, &m), fz_dir()) != LK_OK)
        return 0;
    static const int32_t tok[3] = {1, 5, 31};
    float logits[3 * 32];
    if (lk_model_forward(m, tok, 3, logits) != LK_OK)
        abort();
    g_sink = logits[3 * 32 - 1];
    lk_model_free(m);
    return 0;
}
