/* tcache.c — the teacher cache (format in tcache.h and docs/teacher-cache.md): XXH64, the checks
 * every entry passes on writing and on reading, and the top-k selection lora-teacher applies to
 * each row of logits. The writer (tcache_write.c) and the reader (tcache_read.c) sit on top and
 * call into this file only. */
#include "formats/tcache_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the teacher cache hashes host-order int32 tokens as the format's little-endian bytes"
#endif

/* ---- XXH64 (xxHash specification, 64-bit variant) -------------------------------------------- */

#define XP1 11400714785074694791ull
#define XP2 14029467366897019727ull
#define XP3 1609587929392839161ull
#define XP4 9650029242287828579ull
#define XP5 2870177450012600261ull

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t xxh_round(uint64_t acc, uint64_t in)
{
    return rotl64(acc + in * XP2, 31) * XP1;
}

static uint64_t xxh_merge(uint64_t h, uint64_t v)
{
    return (h ^ xxh_round(0, v)) * XP1 + XP4;
}

uint64_t tcache_xxh64(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) { /* four lanes over 32-byte stripes */
        uint64_t v[4] = {seed + XP1 + XP2, seed + XP2, seed, seed - XP1};
        for (; end - p >= 32; p += 32)
            for (int i = 0; i < 4; i++)
                v[i] = xxh_round(v[i], get_u64(p + 8 * i));
        h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
        for (int i = 0; i < 4; i++)
            h = xxh_merge(h, v[i]);
    } else {
        h = seed + XP5;
    }
    h += (uint64_t)n;
    for (; end - p >= 8; p += 8)
        h = rotl64(h ^ xxh_round(0, get_u64(p)), 27) * XP1 + XP4;
    if (end - p >= 4) {
        h = rotl64(h ^ (uint64_t)get_u32(p) * XP1, 23) * XP2 + XP3;
        p += 4;
    }
    for (; p < end; p++)
        h = rotl64(h ^ *p * XP5, 11) * XP1;
    h ^= h >> 33; /* avalanche */
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    return h ^ (h >> 32);
}

/* ---- shared checks ------------------------------------------------------------------------ */

lk_status tcache_idset_init(tcache_idset *s, int64_t k)
{
    uint64_t n = 16;
    while (n < 2 * (uint64_t)k)
        n *= 2;
    s->slot = calloc(n, sizeof *s->slot);
    s->mask = n - 1;
    s->gen = 0;
    return s->slot ? LK_OK : status_fail(LK_ERR_NOMEM, "teacher cache: out of memory");
}

const char *tcache_entry_problem(tcache_idset *s, const int32_t *ids, const float *logp, float tail,
                                 int64_t k, int64_t V)
{
    if (++s->gen == 0) { /* generations wrapped: clear once */
        memset(s->slot, 0, (s->mask + 1) * sizeof *s->slot);
        s->gen = 1;
    }
    uint64_t tag = (uint64_t)s->gen << 32;
    for (int64_t j = 0; j < k; j++) {
        if (ids[j] < 0 || ids[j] >= V)
            return "an id is outside the vocabulary";
        uint64_t h = ((uint32_t)ids[j] * 0x9E3779B1u) & s->mask;
        for (; (s->slot[h] >> 32) == s->gen; h = (h + 1) & s->mask)
            if ((uint32_t)s->slot[h] == (uint32_t)ids[j])
                return "an id is repeated";
        s->slot[h] = tag | (uint32_t)ids[j];
    }
    for (int64_t j = 0; j < k; j++)
        if (!(logp[j] <= 0.0f))
            return "a log-probability is NaN or positive";
    return tail <= 0.0f ? NULL : "the tail log-probability is NaN or positive";
}

int64_t tcache_trained(const int32_t *labels, int64_t n)
{
    int64_t e = 0;
    for (int64_t t = 0; t + 1 < n; t++)
        e += !labels || labels[t + 1] != LK_LABEL_IGNORE;
    return e;
}

/* ---- top-k ---------------------------------------------------------------------------------- */

/* (va, ia) ranks below (vb, ib): a lower value, or the same value and a higher id. */
static int worse(float va, int32_t ia, float vb, int32_t ib)
{
    return va < vb || (va == vb && ia > ib);
}

/* Restore the heap (worst at the root) below node i of v/id [n]. */
static void sift_down(float *v, int32_t *id, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(v[l], id[l], v[m], id[m]))
            m = l;
        if (r < n && worse(v[r], id[r], v[m], id[m]))
            m = r;
        if (m == i)
            return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[m];
        id[i] = id[m];
        v[m] = tv;
        id[m] = ti;
        i = m;
    }
}

lk_status tcache_topk(const float *z, int64_t V, float temp, int64_t k, int32_t *ids, float *logp,
                      float *log_tail)
{
    if (k < 1 || k > V)
        return status_fail(LK_ERR_ARG, "top-k: k %lld outside [1, %lld]", (long long)k,
                           (long long)V);
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) { /* keep the k best in a heap (in ids/logp) */
        float zi = z[i] / temp;
        if (isnan(zi) || zi == INFINITY)
            return status_fail(LK_ERR_NUMERIC, "teacher logit %lld is %g", (long long)i,
                               (double)z[i]);
        mx = zi > mx ? zi : mx;
        if (i < k) {
            logp[i] = zi;
            ids[i] = (int32_t)i;
            if (i == k - 1)
                for (int64_t j = k / 2 - 1; j >= 0; j--)
                    sift_down(logp, ids, k, j);
        } else if (worse(logp[0], ids[0], zi, (int32_t)i)) {
            logp[0] = zi;
            ids[0] = (int32_t)i;
            sift_down(logp, ids, k, 0);
        }
    }
    if (mx == -INFINITY)
        return status_fail(LK_ERR_NUMERIC, "every teacher logit is -inf");
    for (int64_t n = k - 1; n > 0; n--) { /* heap sort: the worst goes last, the best first */
        float tv = logp[0];
        int32_t ti = ids[0];
        logp[0] = logp[n];
        ids[0] = ids[n];
        logp[n] = tv;
        ids[n] = ti;
        sift_down(logp, ids, n, 0);
    }
    /* softmax sums in double; the tail is every id ranked below the k-th, summed directly
     * (not 1 − Σ top-k, which cancels when the tail is small) */
    double sum = 0, tail = 0;
    for (int64_t i = 0; i < V; i++) {
        float zi = z[i] / temp;
        double e = exp((double)zi - mx);
        sum += e;
        if (worse(zi, (int32_t)i, logp[k - 1], ids[k - 1]))
            tail += e;
    }
    double lse = log(sum);
    for (int64_t j = 0; j < k; j++)
        logp[j] = (float)((double)logp[j] - mx - lse);
    *log_tail = tail > 0 ? (float)(log(tail) - lse) : -INFINITY;
    return LK_OK;
}
