/* lora.h — an lk_adapter trained in place on a model's linear layers: its factors in one params
 * arena (A and B of every targeted module), one grads arena, attach/detach. */
#ifndef LK_LORA_H
#define LK_LORA_H

#include "lora/adapter.h"
#include "model/model.h"

typedef struct {
    char name[96];      /* "model.layers.3.self_attn.q_proj" (PEFT key without prefix/suffix) */
    adapter_module *am; /* the adapter's module: layer, kind, shape, scale, A and B */
    linear *L;          /* the model layer it is attached to */
    lora_train tr;      /* dA, dB inside the grads arena; dropout; index */
} lora_module;

/* A view of one lk_adapter for training: its factors, packed into one params arena, are the
 * trained parameters (rank, alpha and scale are the adapter's), with gradients beside them. */
typedef struct {
    lk_adapter *ad;    /* the trained adapter (borrowed) */
    lora_module *mods; /* [n] in the adapter's module order */
    int n;
    float *params; /* [n_params] the adapter's arena: every A then B, module by module */
    float *grads;  /* [n_params], same layout (owned) */
    int64_t n_params;
} lora_set;

/* Train ad's own factors: pack them into one params arena (adapter_pack), give them gradients and
 * attach them to m as lora[0] with training state (module i's dropout stream is i). ad must fit
 * m, have one rank and alpha for all modules (as lk_adapter_create or a PEFT folder without
 * rank/alpha patterns makes them), no DoRA, and no targeted layer may carry adapters already. ad
 * is borrowed and must outlive the set. */
lk_status lora_set_create(lk_model *m, lk_adapter *ad, float dropout, lora_set *out);

/* Detach from the model and free. */
void lora_set_free(lora_set *s);

void lora_set_zero_grad(lora_set *s);

/* Find a module by name ("model.layers.0.self_attn.q_proj"); NULL if absent. */
lora_module *lora_set_find(lora_set *s, const char *name);

#endif /* LK_LORA_H */
