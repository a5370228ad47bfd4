/* cli.h — glue shared by the lora-* tools: argtable2 parsing with the common options, exit codes,
 * error printing. Tools include only the public headers and this file. */
#ifndef LK_CLI_H
#define LK_CLI_H

#include <argtable2.h>
#include <cjson/cJSON.h>
#include <stdint.h>

#include "lorakit/lorakit.h"

/* Return a failing lk_status from the enclosing function. */
#define CLI_TRY(expr)                \
    do {                             \
        lk_status cli_try_ = (expr); \
        if (cli_try_ != LK_OK)       \
            return cli_try_;         \
    } while (0)

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

/* Options every tool accepts. seed is NULL for tools without randomness. */
typedef struct {
    struct arg_lit *help, *version, *verbose, *quiet, *json;
    struct arg_int *threads;
    struct arg_str *seed;
} cli_common;

/* Allocate the common option structs (with_seed: add --seed). Put them in the tool's table
 * with CLI_COMMON_ENTRIES(c). */
void cli_common_init(cli_common *c, int with_seed);
#define CLI_COMMON_ENTRIES(c) \
    (c).help, (c).version, (c).verbose, (c).quiet, (c).json, (c).threads, (c).seed

/* Parse argv against argtable (terminated by end). Returns -1 when the tool should go on, or an
 * exit code: 0 after --help/--version, 1 when the table could not be allocated, 2 on a usage
 * error (errors and "Try 'tool --help'." printed to stderr). usage_line and glossary are printed
 * with --help. */
int cli_parse(int argc, char **argv, void **argtable, struct arg_end *end, const cli_common *c,
              const char *tool, const char *purpose, const char *glossary);

/* --threads value (0 = all CPUs) and --seed value (default 42). */
int cli_threads(const cli_common *c);
uint64_t cli_seed(const cli_common *c);

/* Print "tool: error: <lk_last_error or status name>" to stderr; return CLI_FAIL. */
int cli_fail(const char *tool, lk_status s);

/* Print a usage-level error ("tool: msg" and the --help hint); return CLI_USAGE. */
int cli_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse "1,2,3" into a heap array of ids; returns -1 on a malformed list. Caller frees. */
int cli_parse_ids(const char *s, int32_t **ids, int64_t *n);

/* Read a whole file into a NUL-terminated heap string; NULL on failure (error printed). */
char *cli_read_file(const char *tool, const char *path, size_t *len);

/* A JSON result object holding "version" and "seed"; cli_json_emit prints it as one line on
 * stdout and frees it. */
cJSON *cli_json_new(const cli_common *c);
void cli_json_emit(cJSON *obj);

#endif /* LK_CLI_H */
