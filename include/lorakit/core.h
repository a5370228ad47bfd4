/* lorakit/core.h — status codes, error messages, logging, version.
 *
 * Every fallible function returns an lk_status (0 = OK, negative = failure) and leaves a detailed
 * message for the calling thread in lk_last_error(). The library never exits and never prints
 * directly: messages go through the log callback (default: stderr). */
#ifndef LORAKIT_CORE_H
#define LORAKIT_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LK_VERSION_MAJOR  0
#define LK_VERSION_MINOR  1
#define LK_VERSION_PATCH  0
#define LK_VERSION_STRING "0.1.0"

/* Result of every fallible call. */
typedef enum {
    LK_OK = 0,
    LK_ERR_IO = -1,          /* a file could not be opened, read, written or renamed */
    LK_ERR_FORMAT = -2,      /* a file is corrupt, truncated or of an unsupported version */
    LK_ERR_SHAPE = -3,       /* shapes disagree (tensor vs config, adapter vs base, ...) */
    LK_ERR_NOMEM = -4,       /* an allocation failed */
    LK_ERR_ARG = -5,         /* an argument is out of range or inconsistent */
    LK_ERR_UNSUPPORTED = -6, /* a valid input this build does not handle (architecture, dtype) */
    LK_ERR_NUMERIC = -7,     /* NaN or Inf where a finite number was required */
    LK_ERR_INTERRUPTED = -8  /* the caller asked the operation to stop */
} lk_status;

/* Short constant name of a status ("format error", ...). Never NULL. */
const char *lk_status_str(lk_status s);

/* Detailed message of the calling thread's last failure ("" if none). Valid until the next
 * failing lorakit call on this thread. */
const char *lk_last_error(void);

/* Library version as "MAJOR.MINOR.PATCH". */
const char *lk_version(void);

/* Log levels, most severe first. */
typedef enum { LK_LOG_ERROR = 0, LK_LOG_WARN = 1, LK_LOG_INFO = 2, LK_LOG_DEBUG = 3 } lk_log_level;

/* Receives one complete message (no trailing newline). Called from any thread. */
typedef void (*lk_log_fn)(lk_log_level level, const char *msg, void *user);

/* Route library messages to fn (NULL restores the default stderr logger). Not thread-safe with
 * concurrent logging: call it at start-up. */
void lk_set_log(lk_log_fn fn, void *user);

/* Messages less severe than level are dropped (default LK_LOG_INFO). */
void lk_set_log_level(lk_log_level level);

/* Write data[n] to path durably and atomically, as every lorakit output is written: a temporary
 * "<path>.tmp.XXXXXX" in the same folder, fsync, rename over path, fsync of the folder; a crash
 * at any moment leaves the old file or the complete new one, and a failure removes the
 * temporary. force 0: LK_ERR_IO when path exists ("... already exists (use --force to
 * overwrite)"). LK_ERR_IO naming the path and the cause on any write failure. */
lk_status lk_write_file_atomic(const char *path, const void *data, size_t n, int force);

/* Bytes of memory a process like this one can count on now: the smallest of MemAvailable, the
 * room under the cgroup's memory.max and the room under RLIMIT_AS, plus what this process already
 * holds (its resident set). *what (may be NULL) names the limit that decided. */
int64_t lk_memory_available(const char **what);

/* The bytes a plan may count on: limit when it is above 0 (*what: "--memory-limit"), else
 * lk_memory_available(what). Every --memory-limit budget (--compute auto's choice, the training
 * plan, --checkpointing auto) is this one. what may be NULL. */
int64_t lk_memory_budget(int64_t limit, const char **what);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_CORE_H */
