/* option.c — the messages of option checks and a name lookup shared by the name tables
 * (lk_*_from_name). */
#include "core/option.h"

#include <string.h>

#include "core/status.h"

lk_status option_range_i(const char *opt, int64_t v, const char *want)
{
    return status_fail(LK_ERR_ARG, "%s must be %s, got %lld", opt, want, (long long)v);
}

lk_status option_range_f(const char *opt, double v, const char *want)
{
    return status_fail(LK_ERR_ARG, "%s must be %s, got %g", opt, want, v);
}

lk_status option_choice(const char *opt, const char *name, const char *want)
{
    return status_fail(LK_ERR_ARG, "%s '%s': expected %s", opt, name ? name : "(null)", want);
}

lk_status option_choice_i(const char *opt, int64_t v, const char *want)
{
    return status_fail(LK_ERR_ARG, "%s %lld: expected %s", opt, (long long)v, want);
}

int option_lookup(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}
