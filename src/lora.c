/* lora.c — creation, initialisation (as PEFT's LoraLayer.reset_lora_parameters) and attachment
 * of trainable adapters. */
#include "lora.h"

#include <math.h>
#include <string.h>

#include "rng.h"
#include "status.h"

static const char *const g_names[7] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                       "gate_proj", "up_proj", "down_proj"};

const char *lora_target_name(int i) { return g_names[i]; }

const char *lora_target_parent(int i) { return i < 4 ? "self_attn" : "mlp"; }

static linear *module_linear(lk_model *m, int64_t l, int i)
{
    layer_weights *w = &m->layers[l];
    linear *all[7] = {&w->q, &w->k, &w->v, &w->o, &w->gate, &w->up, &w->down};
    return all[i];
}

static void init_module(lora_module *mo, rng_state *rg)
{
    /* kaiming_uniform_(a=√5): bound = gain·√(3/fan_in) with gain = √(2/(1+a²)) → 1/√fan_in */
    float bound = 1.0f / sqrtf((float)mo->in);
    for (int64_t i = 0; i < mo->r * mo->in; i++)
        mo->A[i] = (2.0f * rng_uniform(rg) - 1.0f) * bound;
    memset(mo->B, 0, (size_t)(mo->out * mo->r) * sizeof(float));
}

static lk_status alloc_set(lora_set *s, int n)
{
    s->mods = calloc((size_t)n, sizeof *s->mods);
    s->params = lk_aligned_alloc((size_t)s->n_params * sizeof(float));
    s->grads = lk_aligned_alloc((size_t)s->n_params * sizeof(float));
    if (!s->mods || !s->params || !s->grads)
        return status_fail(LK_ERR_NOMEM, "cannot allocate %lld LoRA parameters",
                           (long long)s->n_params);
    memset(s->grads, 0, (size_t)s->n_params * sizeof(float));
    return LK_OK;
}

lk_status lora_set_create(lk_model *m, unsigned targets, int64_t r, double alpha, int rslora,
                          float dropout, uint64_t seed, lora_set *s)
{
    memset(s, 0, sizeof *s);
    if (r < 1 || !(alpha > 0) || !(dropout >= 0 && dropout < 1) || !(targets & LORA_ALL))
        return status_fail(LK_ERR_ARG,
                           "LoRA: need rank >= 1, alpha > 0, 0 <= dropout < 1 and a target "
                           "(got r %lld, alpha %g, dropout %g)",
                           (long long)r, alpha, dropout);
    int n = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++)
            if (targets & (1u << i)) {
                const linear *L = module_linear(m, l, i);
                if (L->n_lora)
                    return status_fail(LK_ERR_ARG, "LoRA: %s already carries an adapter",
                                       L->name ? L->name : g_names[i]);
                s->n_params += r * (L->in + L->out);
                n++;
            }
    s->r = r;
    s->alpha = alpha;
    s->rslora = rslora;
    s->scale = (float)(rslora ? alpha / sqrt((double)r) : alpha / (double)r);
    lk_status st = alloc_set(s, n);
    if (st != LK_OK) {
        lora_set_free(s);
        return st;
    }
    rng_state rg;
    rng_seed(&rg, seed, RNG_INIT);
    int64_t off = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            if (!(targets & (1u << i)))
                continue;
            lora_module *mo = &s->mods[s->n++];
            mo->L = module_linear(m, l, i);
            snprintf(mo->name, sizeof mo->name, "model.layers.%lld.%s.%s", (long long)l,
                     lora_target_parent(i), g_names[i]);
            mo->r = r;
            mo->in = mo->L->in;
            mo->out = mo->L->out;
            mo->A = s->params + off;
            mo->tr.dA = s->grads + off;
            off += r * mo->in;
            mo->B = s->params + off;
            mo->tr.dB = s->grads + off;
            off += r * mo->out;
            mo->tr.dropout = dropout;
            init_module(mo, &rg);
            mo->L->lora[0] = (lora_delta){.A = mo->A, .B = mo->B, .r = r, .scale = s->scale};
            mo->L->n_lora = 1;
            mo->L->train = &mo->tr;
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

void lora_set_zero_grad(lora_set *s) { memset(s->grads, 0, (size_t)s->n_params * sizeof(float)); }

lora_module *lora_set_find(lora_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->mods[i].name, name) == 0)
            return &s->mods[i];
    return NULL;
}
