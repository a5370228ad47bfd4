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

/* Options every tool accepts (the command-line contract), and --seed where something is random
 * (echoed in --json; seed NULL in the others). */
typedef struct {
    struct arg_lit *help, *version, *verbose, *quiet, *json;
    struct arg_int *threads;
    struct arg_str *seed;
} cli_common;

/* Allocate the common option structs. Put them in the tool's table with CLI_COMMON_ENTRIES(c).
 * A tool where nothing is random takes no --seed: cli_common_init_noseed and
 * CLI_COMMON_ENTRIES_NOSEED (its JSON still says "seed": 42, the contract's key). */
void cli_common_init(cli_common *c);
void cli_common_init_noseed(cli_common *c);
#define CLI_COMMON_ENTRIES(c) \
    (c).help, (c).version, (c).verbose, (c).quiet, (c).json, (c).threads, (c).seed
#define CLI_COMMON_ENTRIES_NOSEED(c) \
    (c).help, (c).version, (c).verbose, (c).quiet, (c).json, (c).threads

/* Parse argv against argtable (terminated by end). Returns -1 when the tool should go on, or an
 * exit code: 0 after --help/--version, 1 when the table could not be allocated, 2 on a usage
 * error (errors and "Try 'tool --help'." printed to stderr). usage_line and glossary are printed
 * with --help. */
int cli_parse(int argc, char **argv, void **argtable, struct arg_end *end, const cli_common *c,
              const char *tool, const char *purpose, const char *glossary);

/* --threads value (0 = all CPUs) and --seed value (default 42). */
int cli_threads(const cli_common *c);
uint64_t cli_seed(const cli_common *c);

/* A help line with the library's default in it: printf-formatted into a buffer that lives until
 * the process ends (argtable keeps the pointer). At most 48 per process. */
const char *cli_help(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Messages on stderr as "tool: message" / "tool: warning: message" on a line of their own (a live
 * progress line is cleared first); nothing with -q. The library's log messages go the same way
 * (cli_parse routes them). */
/* The name messages start with and whether notes and warnings are shown (-q: not); set by the
 * common options, changed by a process that speaks for another (a data-parallel rank > 0). */
void cli_set_voice(const char *tool, int quiet);
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The live progress line of a terminal: cli_line draws it ("\r" + text, the rest of the line
 * erased, no newline), cli_line_clear erases it (messages call it), cli_line_end keeps it and
 * ends the line. */
void cli_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_line_clear(void);
void cli_line_end(void);

/* Print "tool: error: <lk_last_error or status name>" to stderr; return CLI_FAIL. */
int cli_fail(const char *tool, lk_status s);

/* Print a usage-level error ("tool: msg" and the --help hint); return CLI_USAGE. */
int cli_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An integer option's range, for the checks a tool makes itself: -1 when the option is absent or
 * lo <= value <= hi (hi INT64_MAX: no upper bound), else CLI_USAGE after "OPT must be at least
 * LO (NOTE), got V" or "OPT must be between LO and HI, got V". note may be NULL. */
int cli_check_range(const char *tool, const struct arg_int *a, int64_t lo, int64_t hi,
                    const char *note);

/* The outcome of a library check or name lookup on the options (lk_*_params_check,
 * lk_*_from_name): -1 to go on, or CLI_USAGE after printing lk_last_error() as a usage error. */
int cli_usage_status(const char *tool, lk_status s);

/* Flags onto the library's option fields: set dst when the flag was given (else the library's
 * default stays). */
#define CLI_SET_INT(arg, dst)       \
    do {                            \
        if ((arg)->count)           \
            (dst) = (arg)->ival[0]; \
    } while (0)
#define CLI_SET_DBL(arg, dst)       \
    do {                            \
        if ((arg)->count)           \
            (dst) = (arg)->dval[0]; \
    } while (0)

/* Parse "1,2,3" into a heap array of ids; returns -1 on a malformed list. Caller frees. */
int cli_parse_ids(const char *s, int32_t **ids, int64_t *n);

/* Read a whole file into a NUL-terminated heap string; NULL on failure (error printed). */
char *cli_read_file(const char *tool, const char *path, size_t *len);

/* Adapters given as repeatable "-a DIR[:weight]" (a PEFT folder or a GGUF LoRA file; weight
 * default 1; a suffix that is not a number is a usage error unless the whole argument names an
 * existing path, so paths with colons still work). Every argument is checked before any file is
 * read; each adapter is then loaded and, with cfg, checked against it (lk_adapter_set_base, which
 * also restores the q/k row order of GGUF adapters; cfg NULL: later, by cli_adapters_attach). On
 * success *out[n] and *w[n] are heap arrays (free with cli_adapters_free). Returns -1 to go on, or
 * an exit code after printing the error. */
typedef struct {
    lk_adapter **a;
    float *w;
    char **path;
    int n;
    int base_flag;    /* cli_base_params: the base format came from --quant/--quant-embed (or
                       * the compute mode from --compute) */
    char flag[32];    /* the flag that sets the base format ("--quant", "--teacher-quant") */
    const char *role; /* how messages name the base ("base" when NULL, "teacher base") */
} cli_adapters;

int cli_adapters_load(const char *tool, const struct arg_str *arg,
                      const struct lk_model_config *cfg, cli_adapters *out);
void cli_adapters_free(cli_adapters *x);

/* The model options of a tool that runs adapters on a base (lora-eval, lora-generate,
 * lora-teacher, a teacher's --teacher-adapter): the base the first adapter records it was
 * trained on (lk_adapter_base_model_params: formats and compute mode), else mp's own, with
 * --quant/--quant-embed/--compute over it where given (any may be NULL).
 * Checked by lk_model_params_check. Returns -1 to go on, or an exit code after the message. */
int cli_base_params(const char *tool, cli_adapters *ad, const struct arg_str *quant,
                    const struct arg_str *qembed, const struct arg_str *compute,
                    struct lk_model_params *mp);

/* The --compute f32|int8 option of every tool that runs the model (help text with the library's
 * default), and its value into mp->compute (arg NULL or absent: unchanged). cli_parse_compute
 * returns -1 to go on, or 2 after a usage message. */
struct arg_str *cli_compute_arg(void);
int cli_parse_compute(const char *tool, const struct arg_str *compute, struct lk_model_params *mp);

/* --memory-limit SIZE of the tools that run a model without training it: the budget --compute
 * auto's weights must fit (lk_model_params.memory_limit; lk_memory_limit_from_name's sizes).
 * cli_parse_memory_limit returns -1 to go on, or 2 after a usage message. */
struct arg_str *cli_memory_limit_arg(void);
int cli_parse_memory_limit(const char *tool, const struct arg_str *limit,
                           struct lk_model_params *mp);

/* Check each adapter against the loaded model m (folder model_dir) and attach it with its
 * weight. stderr says which base runs them and why (cli_note), and warns about every adapter
 * whose record names another base. Returns -1 to go on, or an exit code after the error. */
int cli_adapters_attach(const char *tool, cli_adapters *ad, lk_model *m, const char *model_dir);

/* --quant TYPE and --quant-embed TYPE (either may be NULL or absent) into model params, checked
 * by lk_model_params_check (none|f32, nf4, q4_0, iq4_nl, q8_0; embeddings f32|q8_0). Returns -1
 * to go on, or 2 after a usage message. */
int cli_parse_quant(const char *tool, const struct arg_str *quant, const struct arg_str *qembed,
                    struct lk_model_params *mp);

/* The distillation teacher of --teacher SPEC: a model folder, or "self" (the student's own folder
 * student_dir). Loaded with quant (--teacher-quant; default none: full precision), the run's
 * --compute (compute: NULL or absent: the default) and the --teacher-adapter adapters attached;
 * --compute auto decides within memory_limit (--memory-limit; 0: the memory available) less
 * memory_held, the bytes the student, loaded first, holds (its weights). A
 * folder other than the student's must have a tokenizer that spells every id the student's has the
 * same way. Returns -1 to go on, or an exit code after printing the error; free with
 * cli_teacher_free. */
typedef struct {
    lk_model *m;
    cli_adapters ad;
} cli_teacher;

int cli_teacher_load(const char *tool, const char *spec, const char *student_dir,
                     const struct arg_str *adapters, const struct arg_str *quant,
                     const struct arg_str *compute, int n_threads, int64_t memory_limit,
                     int64_t memory_held, cli_teacher *out);
void cli_teacher_free(cli_teacher *t);

/* Dataset options of the tools that read training data: --fields, --chat-template, --strict.
 * Put them in the table with CLI_DATA_ENTRIES(o). */
typedef struct {
    struct arg_str *fields, *chat_template;
    struct arg_lit *strict;
} cli_data_opts;

void cli_data_opts_init(cli_data_opts *o);
#define CLI_DATA_ENTRIES(o) (o).fields, (o).chat_template, (o).strict

/* Copy the options into dp (fields borrowed from argv) and check dp (lk_dataset_params_check).
 * Returns -1 to go on, or 2 after a usage message (an unknown --chat-template name). */
int cli_data_params(const char *tool, const cli_data_opts *o, struct lk_dataset_params *dp);

/* Summed next-token loss of a model over a text or a file (lora-eval, lora-merge --eval-data). */
typedef struct {
    double nll;    /* Σ −log p, natural log */
    int64_t count; /* scored tokens */
    int64_t examples;
    const lk_model *teacher; /* set by the caller: also sum KL(teacher ‖ model) into kl */
    double kl;
    int progress; /* set by the caller: a progress line (examples done / total) on stderr */
    int dataset;  /* cli_score_file read examples (JSONL/JSON), not one text */
} cli_score;

/* Score text (BOS as the tokenizer adds it), in windows of ctx tokens (<= 0: the model's). */
lk_status cli_score_text(const lk_model *m, const lk_tokenizer *tok, const char *text, size_t len,
                         int64_t ctx, cli_score *sc);

/* Score a file: plain text as one document, or JSONL/JSON examples in any lora-train format
 * (only trained tokens count). fields: NULL or "prompt=question,...". */
lk_status cli_score_file(const char *tool, const lk_model *m, const lk_tokenizer *tok,
                         const char *path, const char *fields, int64_t ctx, cli_score *sc);

/* Seconds on the monotonic clock (wall time), and CPU seconds of the calling thread. */
double cli_now(void);
double cli_thread_cpu_now(void);
/* CPU seconds of the whole process, all threads (on a shared machine the time other processes
 * take is not in it; the library's idle threads sleep, so it counts work, not waiting). */
double cli_process_cpu_now(void);

/* Catch SIGINT and SIGTERM: the first one is recorded for cli_stop_signal() (long runs stop
 * cleanly at their next check), a second one stops the process at once. */
void cli_catch_stop(void);

/* The signal caught since cli_catch_stop, or 0. */
int cli_stop_signal(void);

/* Peak resident memory of this process in MiB (getrusage), and its resident memory now. */
double cli_peak_rss_mib(void);
double cli_rss_mib(void);

/* Give the heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere): after a
 * large tokenizer.json was parsed and freed, its small blocks would otherwise stay resident
 * through a whole run (about 40 MiB for Qwen2.5's), memory the plan does not count. */
void cli_trim_heap(void);

/* A JSON result object holding "version" and "seed"; cli_json_emit prints it as one line on
 * stdout and frees it. */
cJSON *cli_json_new(const cli_common *c);
void cli_json_emit(cJSON *obj);

/* An SVG drawing built in memory (lora-train's loss.svg, lora-inspect's heatmap), saved
 * atomically. Coordinates in pixels; text is escaped. */
typedef struct {
    FILE *f;
    char *text;
    size_t len;
} cli_svg;

/* Start a width × height drawing in sans-serif at font_size px on a background colour (NULL:
 * none). Returns 0, or -1 when out of memory (nothing to free then). */
int cli_svg_begin(cli_svg *s, double width, double height, int font_size, const char *background);
void cli_svg_line(cli_svg *s, double x1, double y1, double x2, double y2, const char *stroke);
/* attrs: more attributes of the element (e.g. "text-anchor=\"end\""), or NULL. */
void cli_svg_text(cli_svg *s, double x, double y, const char *attrs, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* A filled rectangle; title (NULL: none) shows when the pointer rests on it. */
void cli_svg_rect(cli_svg *s, double x, double y, double w, double h, const char *fill,
                  const char *title);
void cli_svg_circle(cli_svg *s, double cx, double cy, double r, const char *fill);
/* A line through the n points (x[i], y[i]). */
void cli_svg_polyline(cli_svg *s, const double *x, const double *y, int64_t n, const char *stroke,
                      double width);
/* Axis ticks at "nice" values (1, 2 or 5 times a power of ten) inside [lo, hi], at most about
 * max_n of them: tick i is *first + i * *step; returns their count. */
int cli_nice_ticks(double lo, double hi, int max_n, double *first, double *step);

/* Close the drawing and write it to path (lk_write_file_atomic; force 0 refuses an existing
 * file); the drawing is freed either way. */
lk_status cli_svg_save(cli_svg *s, const char *path, int force);

#endif /* LK_CLI_H */
