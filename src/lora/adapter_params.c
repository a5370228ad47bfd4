/* adapter_params.c — the options of a new adapter: their defaults (a trainer's fresh adapter, a
 * random one for tests and benchmarks), their check, and the name table of target modules
 * ("q,k,v,o,gate,up,down" lists, also the *_proj names, "all" and "all-linear"). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/option.h"
#include "core/status.h"
#include "lorakit/adapter.h"

struct lk_adapter_params lk_adapter_params_default(void)
{
    struct lk_adapter_params p = {.rank = 8,
                                  .alpha = 16,
                                  .use_rslora = 0,
                                  .target_mask = LK_MOD_ALL,
                                  .init_std_b = 0,
                                  .seed = 42};
    return p;
}

struct lk_adapter_params lk_adapter_params_random(int64_t rank)
{
    struct lk_adapter_params p = lk_adapter_params_default();
    p.rank = rank;
    p.alpha = 2.0 * (double)rank;
    p.init_std_b = 0.01;
    return p;
}

lk_status lk_adapter_params_check(const struct lk_adapter_params *p)
{
    if (p->rank < 1)
        return option_range_i("--rank", p->rank, "at least 1");
    if (!isfinite(p->alpha))
        return option_range_f("--alpha", p->alpha, "a finite value");
    if (!(p->target_mask & LK_MOD_ALL) || (p->target_mask & ~LK_MOD_ALL))
        return status_fail(LK_ERR_ARG,
                           "--targets: expected some of q,k,v,o,gate,up,down, got the bits 0x%x",
                           p->target_mask);
    if (!(p->init_std_b >= 0) || isinf(p->init_std_b))
        return option_range_f("--std-b", p->init_std_b, "a finite value >= 0");
    return LK_OK;
}

static const char *const g_short[LK_MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

/* Bits of the list item p[0..n). 0 when it names no module. */
static unsigned item_mask(const char *p, size_t n)
{
    if ((n == 3 && !strncmp(p, "all", 3)) || (n == 10 && !strncmp(p, "all-linear", 10)))
        return LK_MOD_ALL;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        const char *full = lk_module_name((lk_module)k);
        if ((strlen(g_short[k]) == n && !strncmp(p, g_short[k], n)) ||
            (strlen(full) == n && !strncmp(p, full, n)))
            return 1u << k;
    }
    return 0;
}

lk_status lk_targets_from_name(const char *s, unsigned *out)
{
    unsigned mask = 0;
    const char *p = s ? s : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        unsigned m = item_mask(p, n);
        if (!m)
            return status_fail(LK_ERR_ARG,
                               "--targets: unknown module '%.*s' (use q,k,v,o,gate,up,down, their "
                               "*_proj names, or all)",
                               (int)n, p);
        mask |= m;
        p += n + (p[n] == ',');
    }
    if (!mask)
        return status_fail(LK_ERR_ARG, "--targets: empty list (use q,k,v,o,gate,up,down or all)");
    *out = mask;
    return LK_OK;
}

const char *lk_targets_name(unsigned mask, char *buf, size_t n)
{
    size_t k = 0;
    if ((mask & LK_MOD_ALL) == LK_MOD_ALL)
        k = (size_t)snprintf(buf, n, "all");
    for (int i = 0; i < LK_MOD_COUNT && k < n && (mask & LK_MOD_ALL) != LK_MOD_ALL; i++)
        if (mask & (1u << i))
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? "," : "", g_short[i]);
    if (n && (k >= n || !(mask & LK_MOD_ALL)))
        buf[0] = 0; /* too small (nothing rather than a cut list), or no module */
    return buf;
}
