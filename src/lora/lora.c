/* lora.c — an adapter's factors made trainable in place (packed into one arena, gradients beside
 * them) and attached to the model's linears. Initialisation (PEFT's reset_lora_parameters) is
 * lk_adapter_create's. */
#include "lora/lora.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

/* One rank, one alpha, no DoRA, every module free on the model. */
static lk_status check_source(const lk_model *m, const lk_adapter *src)
{
    LK_TRY(adapter_check_base(src, &m->cfg));
    for (int64_t i = 0; i < src->n_mods; i++) {
        const adapter_module *am = &src->mods[i];
        if (am->r != src->rank || am->alpha != src->alpha || am->mag)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "%s: layer %lld %s: training needs one rank and alpha for every "
                               "module and no DoRA (got r %lld, alpha %g%s against the adapter's "
                               "r %lld, alpha %g)%s",
                               src->path, (long long)am->layer, lk_module_name(am->kind),
                               (long long)am->r, am->alpha, am->mag ? ", DoRA" : "",
                               (long long)src->rank, src->alpha,
                               strcmp(src->format, "gguf") == 0
                                   ? " (hint: a GGUF LoRA keeps its scales in B: lora-export "
                                     "--from FILE --to peft gives a PEFT folder to start from)"
                                   : "");
        if (layer_linear(&m->layers[am->layer], am->kind)->n_lora)
            return status_fail(LK_ERR_ARG, "layer %lld %s already carries an adapter",
                               (long long)am->layer, lk_module_name(am->kind));
    }
    return LK_OK;
}

/* Attach module i of the set (the adapter's module am) to its layer of m. */
static void attach(lk_model *m, lora_set *s, int i, adapter_module *am, float dropout, int64_t off)
{
    lora_module *mo = &s->mods[i];
    mo->am = am;
    mo->L = layer_linear(&m->layers[am->layer], am->kind);
    snprintf(mo->name, sizeof mo->name, "model.layers.%lld.%s.%s", (long long)am->layer,
             adapter_parent(am->kind), lk_module_name(am->kind));
    mo->tr = (lora_train){.dA = s->grads + off,
                          .dB = s->grads + off + am->r * am->in,
                          .dropout = dropout,
                          .index = i};
    mo->L->lora[0] = (lora_delta){.A = am->A, .B = am->B, .r = am->r, .scale = (float)am->scale};
    mo->L->n_lora = 1;
    mo->L->train = &mo->tr;
}

lk_status lora_set_create(lk_model *m, lk_adapter *ad, float dropout, lora_set *s)
{
    memset(s, 0, sizeof *s);
    if (!(dropout >= 0 && dropout < 1))
        return status_fail(LK_ERR_ARG, "LoRA dropout %g is outside [0, 1)", dropout);
    LK_TRY(check_source(m, ad));
    LK_TRY(adapter_pack(ad));
    s->ad = ad;
    s->params = ad->arena;
    s->n_params = ad->n_arena;
    s->mods = calloc((size_t)(ad->n_mods ? ad->n_mods : 1), sizeof *s->mods);
    s->grads = lk_aligned_alloc((size_t)(s->n_params ? s->n_params : 1) * sizeof(float));
    if (!s->mods || !s->grads) {
        lora_set_free(s);
        return status_fail(LK_ERR_NOMEM, "cannot allocate %lld LoRA gradients",
                           (long long)ad->n_arena);
    }
    memset(s->grads, 0, (size_t)s->n_params * sizeof(float));
    for (int64_t i = 0, off = 0; i < ad->n_mods; i++) {
        adapter_module *am = &ad->mods[i];
        attach(m, s, s->n++, am, dropout, off);
        off += am->r * (am->in + am->out);
    }
    return LK_OK;
}

void lora_set_free(lora_set *s)
{
    for (int i = 0; i < s->n; i++) {
        s->mods[i].L->n_lora = 0;
        s->mods[i].L->train = NULL;
    }
    free(s->mods);
    free(s->grads);
    memset(s, 0, sizeof *s);
}

void lora_set_zero_grad(lora_set *s)
{
    memset(s->grads, 0, (size_t)s->n_params * sizeof(float));
}

lora_module *lora_set_find(lora_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->mods[i].name, name) == 0)
            return &s->mods[i];
    return NULL;
}
