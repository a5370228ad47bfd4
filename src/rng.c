/* rng.c — xoshiro256** seeded through splitmix64 (reference: prng.di.unimi.it). */
#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_purpose(const char *name, uint64_t index)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name, then the index mixed in */
    for (const char *p = name; p && *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t x = h ^ (index * 0x9E3779B97F4A7C15ull);
    return splitmix64(&x);
}

void rng_init(rng_state *r, uint64_t seed, uint64_t purpose)
{
    uint64_t x = seed ^ splitmix64(&purpose);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
        r->s[0] = 1; /* the all-zero state is a fixed point */
}

uint64_t rng_next(rng_state *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint64_t rng_below(rng_state *r, uint64_t n)
{
    /* reject the top partial block: 2^64 mod n values */
    uint64_t lim = -n % n;
    for (;;) {
        uint64_t x = rng_next(r);
        if (x >= lim)
            return x % n;
    }
}

float rng_uniform(rng_state *r)
{
    return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f);
}
