/* option.h — the messages of option checks (lk_*_params_check): each names the option as the
 * command line spells it (the CLI names are the project's contract) and the value it got. */
#ifndef LK_OPTION_H
#define LK_OPTION_H

#include <stdint.h>

#include "lorakit/core.h"

/* LK_ERR_ARG with "OPT must be WANT, got V" (V an integer or a real number; WANT reads after
 * "must be": "at least 1", "in [0, 1)"). */
lk_status option_range_i(const char *opt, int64_t v, const char *want);
lk_status option_range_f(const char *opt, double v, const char *want);

/* LK_ERR_ARG with "OPT 'NAME': expected WANT" (a name outside the allowed ones) or, for an enum
 * value that has no name, "OPT V: expected WANT". */
lk_status option_choice(const char *opt, const char *name, const char *want);
lk_status option_choice_i(const char *opt, int64_t v, const char *want);

/* Index of name in names[n] (exact match), or -1. */
int option_lookup(const char *const *names, int n, const char *name);

#endif /* LK_OPTION_H */
