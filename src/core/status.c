/* status.c — status names, the per-thread error message, the log callback, small helpers. */
#include "core/status.h"

#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static _Thread_local char g_err[2048];

const char *lk_status_str(lk_status s)
{
    switch (s) {
    case LK_OK: return "ok";
    case LK_ERR_IO: return "I/O error";
    case LK_ERR_FORMAT: return "format error";
    case LK_ERR_SHAPE: return "shape mismatch";
    case LK_ERR_NOMEM: return "out of memory";
    case LK_ERR_ARG: return "invalid argument";
    case LK_ERR_UNSUPPORTED: return "unsupported";
    case LK_ERR_NUMERIC: return "numeric error";
    case LK_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

const char *lk_last_error(void)
{
    return g_err;
}

const char *lk_version(void)
{
    return LK_VERSION_STRING;
}

lk_status status_fail(lk_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return s;
}

lk_status status_wrap(lk_status s, const char *fmt, ...)
{
    char prefix[1024], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t k = strlen(prefix);
    if (k > sizeof g_err - 3)
        k = sizeof g_err - 3;
    memcpy(g_err, prefix, k);
    memcpy(g_err + k, ": ", 2);
    size_t rest = sizeof g_err - k - 3;
    size_t n = strnlen(old, rest);
    memcpy(g_err + k + 2, old, n);
    g_err[k + 2 + n] = 0;
    return s;
}

/* ---- logging ---- */

static void log_default(lk_log_level level, const char *msg, void *user)
{
    static const char *const tag[] = {"error: ", "warning: ", "", ""};
    (void)user;
    fprintf(stderr, "%s%s\n", tag[level], msg);
}

static lk_log_fn g_log_fn = log_default;
static void *g_log_user;
static lk_log_level g_log_level = LK_LOG_INFO;

void lk_set_log(lk_log_fn fn, void *user)
{
    g_log_fn = fn ? fn : log_default;
    g_log_user = user;
}

void lk_set_log_level(lk_log_level level)
{
    g_log_level = level;
}

void log_msg(lk_log_level level, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    if (level > g_log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(level, buf, g_log_user);
}

/* ---- helpers ---- */

void *lk_aligned_alloc(size_t n)
{
    size_t padded = (n + 63) & ~(size_t)63;
    if (padded < n)
        return NULL;
    return aligned_alloc(64, padded ? padded : 64);
}

int mul_overflow_i64(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return -1;
    if (a != 0 && b > INT64_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int resolve_threads(int n_threads)
{
    if (n_threads > 0)
        return n_threads;
    cpu_set_t set; /* the CPUs this process may run on (taskset, cgroups, mpirun's binding) */
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
