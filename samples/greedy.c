/* samples/greedy.c — the smallest use of the public API: load a model folder, run a prompt given
 * as token ids through a session and continue it greedily.
 *   sample_greedy MODEL_DIR [N_TOKENS] */
#include <stdio.h>
#include <stdlib.h>

#include "lorakit/lorakit.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [N_TOKENS]\n", argv[0]);
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 32;
    lk_model *m = NULL;
    lk_session *s = NULL;
    lk_sampler *smp = NULL;
    float *logits = NULL;
    struct lk_sampler_params sp = lk_sampler_params_default();
    sp.temperature = 0; /* greedy */
    lk_status st = lk_model_load(argv[1], NULL, &m);
    if (st == LK_OK)
        st = lk_session_create(m, n + 1, &s);
    if (st == LK_OK)
        st = lk_sampler_create(&sp, &smp);
    const struct lk_model_config *c = st == LK_OK ? lk_model_get_config(m) : NULL;
    if (c)
        logits = malloc((size_t)c->vocab_size * sizeof *logits);
    int32_t tok = c && c->bos_id >= 0 ? (int32_t)c->bos_id : 0;
    for (int i = 0; st == LK_OK && logits && i < n; i++) {
        st = lk_session_eval(s, &tok, 1, logits, 0);
        tok = lk_sampler_sample(smp, logits, c->vocab_size);
        printf("%d%c", tok, i + 1 < n ? ' ' : '\n');
    }
    if (st != LK_OK)
        fprintf(stderr, "error: %s\n", lk_last_error());
    free(logits);
    lk_sampler_free(smp);
    lk_session_free(s);
    lk_model_free(m);
    return st == LK_OK ? 0 : 1;
}
