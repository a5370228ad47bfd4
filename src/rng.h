/* rng.h — the one random number generator: xoshiro256** (Blackman & Vigna 2018), seeded by
 * splitmix64 from (seed, purpose) so that independent streams (init, shuffle, dropout, ...) never
 * share state. Explicit state, no globals; copy the struct to save/restore it. */
#ifndef LK_RNG_H
#define LK_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_state;

/* Purpose of a stream: a hash of a name and an index (e.g. ("shuffle", epoch)). */
uint64_t rng_purpose(const char *name, uint64_t index);

/* Seed the stream (seed, purpose). */
void rng_init(rng_state *r, uint64_t seed, uint64_t purpose);

/* Next 64 random bits. */
uint64_t rng_next(rng_state *r);

/* Uniform integer in [0, n) without modulo bias (n > 0). */
uint64_t rng_below(rng_state *r, uint64_t n);

/* Uniform float in [0, 1) with 24 random bits. */
float rng_uniform(rng_state *r);

#endif /* LK_RNG_H */
