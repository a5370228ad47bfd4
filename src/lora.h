/* lora.h — trainable LoRA adapters on a model's linear layers: one params arena (A and B of
 * every targeted module), one grads arena, PEFT's initialisation, attach/detach. */
#ifndef LK_LORA_H
#define LK_LORA_H

#include "model.h"

/* Target bits, in PEFT module-name order. */
enum {
    LORA_Q = 1 << 0, LORA_K = 1 << 1, LORA_V = 1 << 2, LORA_O = 1 << 3,
    LORA_GATE = 1 << 4, LORA_UP = 1 << 5, LORA_DOWN = 1 << 6, LORA_ALL = (1 << 7) - 1
};

/* PEFT module short names ("q_proj", ...) of bit i, and the parent ("self_attn" / "mlp"). */
const char *lora_target_name(int i);
const char *lora_target_parent(int i);

typedef struct {
    char name[96];  /* "model.layers.3.self_attn.q_proj" (PEFT key without prefix/suffix) */
    linear *L;      /* the model layer it is attached to */
    int64_t r, in, out;
    float *A, *B;   /* [r, in], [out, r] inside the params arena */
    lora_train tr;  /* dA, dB inside the grads arena; dropout; mask key */
} lora_module;

typedef struct {
    lora_module *mods;
    int n;
    int64_t r;
    double alpha;
    int rslora;
    float scale;       /* alpha/r, or alpha/sqrt(r) with rsLoRA */
    float *params;     /* [n_params]: every A then B, module by module */
    float *grads;      /* [n_params], same layout */
    int64_t n_params;
} lora_set;

/* Adapters of rank r on every layer's targeted modules, A ~ U(−1/√in, 1/√in) (PEFT's
 * kaiming_uniform with a = √5), B = 0, drawn from (seed, RNG_INIT); attached to m as lora[0]
 * with training state. Fails if a targeted layer already carries adapters. */
lk_status lora_set_create(lk_model *m, unsigned targets, int64_t r, double alpha, int rslora,
                          float dropout, uint64_t seed, lora_set *out);

/* Detach from the model and free. */
void lora_set_free(lora_set *s);

void lora_set_zero_grad(lora_set *s);

/* Find a module by name ("model.layers.0.self_attn.q_proj"); NULL if absent. */
lora_module *lora_set_find(lora_set *s, const char *name);

#endif /* LK_LORA_H */
