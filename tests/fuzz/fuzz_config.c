/* fuzz_config.c — lk_config_load on a folder whose config.json is the input, then the invariants
 * the rest of the library relies on (sizes in range, heads divisible, ids inside the vocabulary).
 */
#include <stdlib.h>

#include "fuzzutil.h"
#include "lorakit/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *path = fz_write("config.json", data, size);
    struct lk_model_config c;
    fz_clear_error();
    if (fz_check(lk_config_load(fz_dir(), &c), path) != LK_OK)
        return 0;
    if (c.vocab_size < 1 || c.hidden_size < 1 || c.intermediate_size < 1 || c.n_layers < 1 ||
        c.n_heads < 1 || c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads || c.head_dim < 2 ||
        c.head_dim % 2 || c.bos_id >= c.vocab_size || c.n_eos < 0 || c.n_eos > LK_MAX_EOS)
        abort();
    for (int i = 0; i < c.n_eos; i++)
        if (c.eos_ids[i] < 0 || c.eos_ids[i] >= c.vocab_size)
            abort();
    return 0;
}
