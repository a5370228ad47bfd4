/* tcache_impl.h — what the teacher cache's files share (tcache.h has the format): the magic,
 * little-endian reads, and the checks of one entry. By layer: tcache.c (XXH64, these checks, the
 * top-k selection), then tcache_write.c (the writer) and tcache_read.c (the reader), which each
 * call into tcache.c only. */
#ifndef LK_TCACHE_IMPL_H
#define LK_TCACHE_IMPL_H

#include "formats/tcache.h"

static const char TC_MAGIC[8] = {'L', 'K', 'T', 'C', 'A', 'C', 'H', 'E'};
#define TC_MAX_STRING 4096 /* teacher / data description bytes */

static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Set of ids for the distinctness check: open addressing, entries tagged with a generation so
 * that a new position needs no clearing. */
typedef struct {
    uint64_t *slot; /* (generation << 32) | id */
    uint64_t mask;
    uint32_t gen;
} tcache_idset;

/* An empty set sized for k ids per entry. */
lk_status tcache_idset_init(tcache_idset *s, int64_t k);

/* What is wrong with one entry (ids [k], logp [k], *tail), or NULL: ids must lie in [0, V) and
 * be distinct, log-probabilities be <= 0 or -inf (never NaN or positive). */
const char *tcache_entry_problem(tcache_idset *s, const int32_t *ids, const float *logp, float tail,
                                 int64_t k, int64_t V);

#endif /* LK_TCACHE_IMPL_H */
