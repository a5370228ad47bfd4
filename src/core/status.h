/* status.h — setting the calling thread's error message, logging, small shared helpers. */
#ifndef LK_STATUS_H
#define LK_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#include "lorakit/core.h"

/* Record a formatted message for lk_last_error() and return s (so: return status_fail(...)). */
lk_status status_fail(lk_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with "prefix: " (adds context on the way up). Returns s. */
lk_status status_wrap(lk_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void log_msg(lk_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_warn(...)  log_msg(LK_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LK_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LK_LOG_DEBUG, __VA_ARGS__)

/* Broken internal invariant (never bad input): print file:line and abort. */
#define LK_ASSERT(c)                                                                           \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            fprintf(stderr, "lorakit: internal error at %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* Propagate a failing status. */
#define LK_TRY(expr)                  \
    do {                              \
        lk_status lk_try_s_ = (expr); \
        if (lk_try_s_ != LK_OK)       \
            return lk_try_s_;         \
    } while (0)

/* 64-byte aligned allocation (NULL on failure or n == 0 gives a valid pointer); free with free().
 */
void *lk_aligned_alloc(size_t n);

/* Overflow-checked a*b for non-negative a, b; returns 0 and sets *out, or -1 on overflow. */
int mul_overflow_i64(int64_t a, int64_t b, int64_t *out);

/* Resolve n_threads <= 0 to the number of CPUs this process may run on (its affinity mask: a
 * rank that mpirun binds to one core gets one thread), else the online CPUs. */
int resolve_threads(int n_threads);

#endif /* LK_STATUS_H */
