/* rng.h — the one random number generator: xoshiro256** with explicit state, seeded through
 * splitmix64 from (seed, purpose) so independent streams (init, shuffle, dropout, sampling) never
 * share numbers. No global state, no time-based seeds. */
#ifndef LK_RNG_H
#define LK_RNG_H

#include <stdint.h>

enum {
    RNG_INIT = 1,    /* LoRA initialisation */
    RNG_SHUFFLE = 2, /* data order */
    RNG_DROPOUT = 3, /* dropout masks */
    RNG_SAMPLE = 4,  /* token sampling */
    RNG_WEIGHTS = 5  /* random model weights */
};

typedef struct {
    uint64_t s[4];
} rng_state;

void rng_seed(rng_state *r, uint64_t seed, uint64_t purpose);
/* A purpose from a name and an index, for streams that need one per item (e.g. ("shuffle",
 * epoch)). */
uint64_t rng_purpose(const char *name, uint64_t index);
uint64_t rng_next(rng_state *r);
/* Uniform in [0, 1) with 24 (float) or 53 (double) random bits. */
float rng_uniform(rng_state *r);
double rng_uniform_f64(rng_state *r);
/* Stateless 64-bit hash of (key, i): counter-based streams such as dropout masks, which must be
 * regenerated identically when a forward is recomputed. */
uint64_t rng_hash(uint64_t key, uint64_t i);
/* Uniform integer in [0, n) without modulo bias (n > 0). */
uint64_t rng_below(rng_state *r, uint64_t n);
/* Standard normal (Box-Muller, double precision internally). */
double rng_normal(rng_state *r);

#endif /* LK_RNG_H */
