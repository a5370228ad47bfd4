/* lora.h — trainable LoRA adapters on a model's linear layers: one params arena (A and B of
 * every targeted module), one grads arena, PEFT's initialisation, attach/detach. */
#ifndef LK_LORA_H
#define LK_LORA_H

#include "lora/adapter.h"
#include "model/model.h"

typedef struct {
    char name[96]; /* "model.layers.3.self_attn.q_proj" (PEFT key without prefix/suffix) */
    linear *L;     /* the model layer it is attached to */
    int64_t layer;
    lk_module kind;
    int64_t r, in, out;
    float *A, *B;  /* [r, in], [out, r] inside the params arena */
    lora_train tr; /* dA, dB inside the grads arena; dropout; mask key */
} lora_module;

typedef struct {
    lora_module *mods;
    int n;
    int64_t r;
    double alpha;
    int rslora;
    unsigned targets; /* bit (1 << lk_module) */
    float scale;      /* alpha/r, or alpha/sqrt(r) with rsLoRA */
    float *params;    /* [n_params]: every A then B, module by module */
    float *grads;     /* [n_params], same layout */
    int64_t n_params;
} lora_set;

/* Trainable copies of src's factors (one rank and alpha for all modules, as lk_adapter_create or
 * a PEFT folder without rank/alpha patterns makes them), in one params arena, attached to m as
 * lora[0] with training state. Fails if src does not fit m, has per-module ranks or alphas, is a
 * DoRA adapter, or a targeted layer already carries adapters. */
lk_status lora_set_create(lk_model *m, const lk_adapter *src, float dropout, lora_set *out);

/* Copy the current factors back into dst (an adapter of the same modules, e.g. made by
 * lk_adapter_create with the set's rank, alpha and targets). */
lk_status lora_set_export(const lora_set *s, lk_adapter *dst);

/* Detach from the model and free. */
void lora_set_free(lora_set *s);

void lora_set_zero_grad(lora_set *s);

/* Find a module by name ("model.layers.0.self_attn.q_proj"); NULL if absent. */
lora_module *lora_set_find(lora_set *s, const char *name);

#endif /* LK_LORA_H */
