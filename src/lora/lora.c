/* lora.c — creation, initialisation (as PEFT's LoraLayer.reset_lora_parameters) and attachment
 * of trainable adapters. */
#include "lora/lora.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

static linear *module_linear(lk_model *m, int64_t l, int i)
{
    layer_weights *w = &m->layers[l];
    linear *all[7] = {&w->q, &w->k, &w->v, &w->o, &w->gate, &w->up, &w->down};
    return all[i];
}

static lk_status alloc_set(lora_set *s, int64_t n)
{
    s->mods = calloc((size_t)(n ? n : 1), sizeof *s->mods);
    s->params = lk_aligned_alloc((size_t)s->n_params * sizeof(float));
    s->grads = lk_aligned_alloc((size_t)s->n_params * sizeof(float));
    if (!s->mods || !s->params || !s->grads)
        return status_fail(LK_ERR_NOMEM, "cannot allocate %lld LoRA parameters",
                           (long long)s->n_params);
    memset(s->grads, 0, (size_t)s->n_params * sizeof(float));
    return LK_OK;
}

/* One rank, one alpha, no DoRA, every module free on the model. */
static lk_status check_source(const lk_model *m, const lk_adapter *src)
{
    LK_TRY(adapter_check_base(src, &m->cfg));
    for (int64_t i = 0; i < src->n_mods; i++) {
        const adapter_module *am = &src->mods[i];
        if (am->r != src->rank || am->alpha != src->alpha || am->mag)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "%s: layer %lld %s: training needs one rank and alpha for every "
                               "module and no DoRA (got r %lld, alpha %g)",
                               src->path, (long long)am->layer, lk_module_name(am->kind),
                               (long long)am->r, am->alpha);
        if (module_linear((lk_model *)m, am->layer, am->kind)->n_lora)
            return status_fail(LK_ERR_ARG, "layer %lld %s already carries an adapter",
                               (long long)am->layer, lk_module_name(am->kind));
    }
    return LK_OK;
}

lk_status lora_set_create(lk_model *m, const lk_adapter *src, float dropout, lora_set *s)
{
    memset(s, 0, sizeof *s);
    if (!(dropout >= 0 && dropout < 1))
        return status_fail(LK_ERR_ARG, "LoRA dropout %g is outside [0, 1)", dropout);
    LK_TRY(check_source(m, src));
    for (int64_t i = 0; i < src->n_mods; i++) {
        s->n_params += src->mods[i].r * (src->mods[i].in + src->mods[i].out);
        s->targets |= 1u << src->mods[i].kind;
    }
    s->r = src->rank;
    s->alpha = src->alpha;
    s->rslora = src->use_rslora;
    s->scale = src->n_mods ? (float)src->mods[0].scale : 1.0f;
    lk_status st = alloc_set(s, src->n_mods);
    if (st != LK_OK) {
        lora_set_free(s);
        return st;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < src->n_mods; i++) {
        const adapter_module *am = &src->mods[i];
        lora_module *mo = &s->mods[s->n++];
        mo->L = module_linear(m, am->layer, am->kind);
        mo->layer = am->layer;
        mo->kind = am->kind;
        snprintf(mo->name, sizeof mo->name, "model.layers.%lld.%s.%s", (long long)am->layer,
                 adapter_parent(am->kind), lk_module_name(am->kind));
        mo->r = am->r;
        mo->in = am->in;
        mo->out = am->out;
        mo->A = s->params + off;
        mo->tr.dA = s->grads + off;
        off += mo->r * mo->in;
        mo->B = s->params + off;
        mo->tr.dB = s->grads + off;
        off += mo->r * mo->out;
        mo->tr.dropout = dropout;
        memcpy(mo->A, am->A, (size_t)(mo->r * mo->in) * sizeof(float));
        memcpy(mo->B, am->B, (size_t)(mo->r * mo->out) * sizeof(float));
        mo->L->lora[0] = (lora_delta){.A = mo->A, .B = mo->B, .r = mo->r, .scale = s->scale};
        mo->L->n_lora = 1;
        mo->L->train = &mo->tr;
    }
    return LK_OK;
}

lk_status lora_set_export(const lora_set *s, lk_adapter *dst)
{
    if (dst->n_mods != s->n)
        return status_fail(LK_ERR_SHAPE, "adapter has %lld modules, the trained set %d",
                           (long long)dst->n_mods, s->n);
    for (int i = 0; i < s->n; i++) {
        adapter_module *am = &dst->mods[i];
        const lora_module *mo = &s->mods[i];
        if (am->r != mo->r || am->in != mo->in || am->out != mo->out)
            return status_fail(LK_ERR_SHAPE, "%s: adapter module shape differs", mo->name);
        memcpy(am->A, mo->A, (size_t)(mo->r * mo->in) * sizeof(float));
        memcpy(am->B, mo->B, (size_t)(mo->r * mo->out) * sizeof(float));
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
    free(s->params);
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
