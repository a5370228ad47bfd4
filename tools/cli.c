/* cli.c — argtable2 glue, exit codes and messages shared by every lora-* tool. */
#include "cli.h"

#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

void cli_common_init(cli_common *c)
{
    /* Past `ulimit -f` a write fails with EFBIG, reported like any write error, instead of the
     * signal killing the tool with a half-written temporary left behind. */
    signal(SIGXFSZ, SIG_IGN);
    c->help = arg_lit0("h", "help", "print this help and exit");
    c->version = arg_lit0(NULL, "version", "print the version and exit");
    c->verbose = arg_lit0("v", "verbose", "more messages on stderr");
    c->quiet = arg_lit0("q", "quiet", "only errors on stderr");
    c->json = arg_lit0(NULL, "json", "machine-readable JSON on stdout");
    c->threads = arg_int0("t", "threads", "N", "worker threads (default: all CPUs)");
    c->seed = arg_str0(NULL, "seed", "N", "random seed (default 42)");
}

void cli_common_init_noseed(cli_common *c)
{
    cli_common_init(c);
    free(c->seed); /* argtable2 allocates each option in one block */
    c->seed = NULL;
}

static const char *g_tool = "lorakit";
static int g_quiet; /* -q: only errors on stderr */
static int g_line;  /* a live progress line ends stderr (drawn with '\r', no newline yet) */

void cli_line_clear(void)
{
    if (g_line)
        fputs("\r\033[K", stderr);
    g_line = 0;
}

void cli_line(const char *fmt, ...)
{
    va_list ap;
    fputc('\r', stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\033[K", stderr);
    fflush(stderr);
    g_line = 1;
}

void cli_line_end(void)
{
    if (g_line)
        fputc('\n', stderr);
    g_line = 0;
}

/* "tool: [tag]message" on stderr, on a line of its own. */
static void vmessage(const char *tag, const char *fmt, va_list ap)
{
    cli_line_clear();
    fprintf(stderr, "%s: %s", g_tool, tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_set_voice(const char *tool, int quiet)
{
    g_tool = tool;
    g_quiet = quiet;
}

void cli_note(const char *fmt, ...)
{
    va_list ap;
    if (g_quiet)
        return;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    if (g_quiet)
        return;
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
}

/* The library's messages, under the tool's name and never glued to a progress line. */
static void cli_log(lk_log_level level, const char *msg, void *user)
{
    static const char *const tag[] = {"error: ", "warning: ", "", ""};
    (void)user;
    cli_line_clear();
    fprintf(stderr, "%s: %s%s\n", g_tool, tag[level], msg);
}

/* At exit: results on stdout that did not reach their file (a full disk, `ulimit -f`) are an
 * error, not a silent truncation (gnulib's close_stdout). */
static void close_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: error: writing the results to standard output failed\n", g_tool);
        _exit(CLI_FAIL);
    }
}

/* An option given an empty value ("--text ''", "--system="), which argtable reports as 'option ""
 * requires an argument', naming no option: said with the option's name. 1 if one was found. */
static int empty_value(int argc, char **argv, const char *tool)
{
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        int eq = n > 3 && argv[i][0] == '-' && argv[i][1] == '-' && argv[i][n - 1] == '=';
        if (eq || (i > 1 && n == 0 && !strncmp(argv[i - 1], "--", 2) && argv[i - 1][2] &&
                   !strchr(argv[i - 1], '='))) {
            fprintf(stderr,
                    "%s: %.*s was given an empty value: an option's value cannot be empty\n", tool,
                    eq ? (int)n - 1 : (int)strlen(argv[i - 1]), eq ? argv[i] : argv[i - 1]);
            return 1;
        }
    }
    return 0;
}

int cli_parse(int argc, char **argv, void **argtable, struct arg_end *end, const cli_common *c,
              const char *tool, const char *purpose, const char *glossary)
{
    g_tool = tool;
    atexit(close_stdout);
    lk_set_log(cli_log, NULL);
    if (arg_nullcheck(argtable) != 0) {
        fprintf(stderr, "%s: error: out of memory\n", tool);
        return CLI_FAIL;
    }
    int nerr = arg_parse(argc, argv, argtable);
    if (c->help->count) {
        printf("Usage: %s", tool);
        arg_print_syntax(stdout, argtable, "\n");
        printf("%s\n\n", purpose);
        arg_print_glossary(stdout, argtable, "  %-28s %s\n");
        if (glossary)
            printf("\n%s", glossary);
        return CLI_OK;
    }
    if (c->version->count) {
        printf("%s (lorakit) %s\n", tool, lk_version());
        return CLI_OK;
    }
    if (nerr > 0) {
        if (!empty_value(argc, argv, tool))
            arg_print_errors(stderr, end, tool);
        fprintf(stderr, "Try '%s --help'.\n", tool);
        return CLI_USAGE;
    }
    if (c->seed && c->seed->count) {
        char *e;
        errno = 0;
        (void)strtoull(c->seed->sval[0], &e, 10);
        if (errno || *e || !*c->seed->sval[0] || c->seed->sval[0][0] == '-')
            return cli_usage_error(tool, "--seed: expected a non-negative integer, got '%s'",
                                   c->seed->sval[0]);
    }
    int rc = cli_check_range(tool, c->threads, 0, INT64_MAX, "0: all CPUs");
    if (rc >= 0)
        return rc;
    g_quiet = c->quiet->count > 0;
    if (c->quiet->count)
        lk_set_log_level(LK_LOG_ERROR);
    else if (c->verbose->count)
        lk_set_log_level(LK_LOG_DEBUG);
    return -1;
}

int cli_threads(const cli_common *c)
{
    return c->threads->count ? c->threads->ival[0] : 0;
}

uint64_t cli_seed(const cli_common *c)
{
    if (c->seed && c->seed->count)
        return strtoull(c->seed->sval[0], NULL, 10);
    return 42;
}

int cli_fail(const char *tool, lk_status s)
{
    const char *msg = lk_last_error();
    cli_line_clear();
    fprintf(stderr, "%s: error: %s\n", tool, msg && *msg ? msg : lk_status_str(s));
    return CLI_FAIL;
}

int cli_usage_error(const char *tool, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", tool);
    return CLI_USAGE;
}

const char *cli_help(const char *fmt, ...)
{
    static char pool[48][160];
    static int used;
    if (used == 48)
        return fmt; /* out of buffers: the text without its values */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pool[used], sizeof pool[used], fmt, ap);
    va_end(ap);
    return pool[used++];
}

int cli_check_range(const char *tool, const struct arg_int *a, int64_t lo, int64_t hi,
                    const char *note)
{
    if (!a->count || (a->ival[0] >= lo && a->ival[0] <= hi))
        return -1;
    char opt[64], want[96];
    snprintf(opt, sizeof opt, "%s%s", a->hdr.longopts ? "--" : "-",
             a->hdr.longopts ? a->hdr.longopts : a->hdr.shortopts);
    if (hi == INT64_MAX)
        snprintf(want, sizeof want, "at least %lld", (long long)lo);
    else
        snprintf(want, sizeof want, "between %lld and %lld", (long long)lo, (long long)hi);
    return cli_usage_error(tool, "%s must be %s%s%s%s, got %d", opt, want, note ? " (" : "",
                           note ? note : "", note ? ")" : "", a->ival[0]);
}

int cli_usage_status(const char *tool, lk_status s)
{
    return s == LK_OK ? -1 : cli_usage_error(tool, "%s", lk_last_error());
}

int cli_parse_ids(const char *s, int32_t **ids, int64_t *n)
{
    int64_t cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return -1;
    const char *p = s;
    while (*p) {
        char *e;
        errno = 0;
        long x = strtol(p, &e, 10);
        if (e == p || errno || x < 0 || x > INT32_MAX || (*e && *e != ','))
            goto bad;
        if (k == cap) {
            int32_t *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv)
                goto bad;
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = *e ? e + 1 : e;
        if (*e == ',' && !*p)
            goto bad;
    }
    if (k == 0)
        goto bad;
    *ids = v;
    *n = k;
    return 0;
bad:
    free(v);
    return -1;
}

char *cli_read_file(const char *tool, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: error: %s: cannot open: %s\n", tool, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf || err) {
        free(buf);
        fprintf(stderr, "%s: error: %s: read failed: %s\n", tool, path,
                strerror(err ? err : ENOMEM));
        return NULL;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

cJSON *cli_json_new(const cli_common *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", lk_version());
    cJSON_AddNumberToObject(o, "seed", (double)cli_seed(c));
    return o;
}

void cli_json_emit(cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(s);
    cJSON_Delete(obj);
}

/* "DIR[:weight]" → path (heap) and weight. A suffix that is not a number is part of the path
 * only when that whole path exists (paths with colons); otherwise it is a usage error: returns
 * CLI_USAGE after the message, CLI_FAIL when out of memory, -1 to go on. */
static int split_weight(const char *tool, const char *opt, const char *arg, char **path, float *w)
{
    const char *colon = strrchr(arg, ':');
    *w = 1.0f;
    *path = NULL;
    if (colon && colon[1]) {
        char *e;
        errno = 0;
        double v = strtod(colon + 1, &e);
        if (!*e && !errno && isfinite(v)) {
            *w = (float)v;
            *path = strndup(arg, (size_t)(colon - arg));
        } else if (access(arg, F_OK) != 0 && colon > arg) {
            return cli_usage_error(tool,
                                   "%s '%s': the weight after ':' must be a number, got '%s' "
                                   "(and there is no file or folder '%s')",
                                   opt, arg, colon + 1, arg);
        }
    }
    if (!*path)
        *path = strdup(arg);
    if (*path)
        return -1;
    fprintf(stderr, "%s: error: out of memory\n", tool);
    return CLI_FAIL;
}

int cli_adapters_load(const char *tool, const struct arg_str *arg,
                      const struct lk_model_config *cfg, cli_adapters *out)
{
    memset(out, 0, sizeof *out);
    int n = arg->count;
    out->a = calloc((size_t)n + 1, sizeof *out->a);
    out->w = calloc((size_t)n + 1, sizeof *out->w);
    out->path = calloc((size_t)n + 1, sizeof *out->path);
    if (!out->a || !out->w || !out->path) {
        fprintf(stderr, "%s: error: out of memory\n", tool);
        return CLI_FAIL;
    }
    char opt[64];
    snprintf(opt, sizeof opt, "%s%s", arg->hdr.shortopts ? "-" : "--",
             arg->hdr.shortopts ? arg->hdr.shortopts : arg->hdr.longopts);
    for (int i = 0; i < n; i++) { /* every argument's form before any file is read */
        int rc = split_weight(tool, opt, arg->sval[i], &out->path[i], &out->w[i]);
        out->n = i + 1;
        if (rc >= 0)
            return rc;
    }
    for (int i = 0; i < n; i++) {
        lk_status s = lk_adapter_load(out->path[i], &out->a[i]);
        if (s == LK_OK && cfg)
            s = lk_adapter_set_base(out->a[i], cfg);
        if (s != LK_OK)
            return cli_fail(tool, s);
    }
    return -1;
}

int cli_base_params(const char *tool, cli_adapters *ad, const struct arg_str *quant,
                    const struct arg_str *qembed, const struct arg_str *compute,
                    struct lk_model_params *mp)
{
    int formats = (quant && quant->count) || (qembed && qembed->count);
    ad->base_flag = formats || (compute && compute->count);
    snprintf(ad->flag, sizeof ad->flag, "--%s",
             !formats && ad->base_flag      ? "compute"
             : quant && quant->hdr.longopts ? quant->hdr.longopts
                                            : "quant");
    if (ad->n > 0) { /* the record, then the flags given over it */
        struct lk_adapter_base b;
        lk_adapter_get_base(ad->a[0], &b);
        if (lk_adapter_base_model_params(&b, mp) != LK_OK) {
            fprintf(stderr, "%s: error: %s: %s (hint: give the base with --quant)\n", tool,
                    ad->path[0], lk_last_error());
            return CLI_FAIL;
        }
    }
    int rc = cli_parse_quant(tool, quant, qembed, mp);
    if (rc < 0)
        rc = cli_parse_compute(tool, compute, mp);
    return rc >= 0 ? rc : cli_usage_status(tool, lk_model_params_check(mp));
}

struct arg_str *cli_compute_arg(void)
{
    return arg_str0(NULL, "compute", "f32|int8|auto",
                    cli_help("products with the quantised base: int8 (activations and gradients "
                             "quantised per block of 32 on the fly, integer dot products), f32 "
                             "(exact), or auto: int8 when its plan (NF4's codebook corrections; "
                             "training: its copies) fits the memory, else f32; default %s",
                             lk_compute_name(lk_model_params_default().compute)));
}

int cli_parse_compute(const char *tool, const struct arg_str *compute, struct lk_model_params *mp)
{
    if (compute && compute->count && lk_compute_from_name(compute->sval[0], &mp->compute) != LK_OK)
        return cli_usage_error(tool, "%s", lk_last_error());
    return -1;
}

struct arg_str *cli_memory_limit_arg(void)
{
    return arg_str0(NULL, "memory-limit", "SIZE",
                    "bytes the model may use (K, M, G, T: binary), which --compute auto's choice "
                    "takes: int8 when its weights fit; default: the memory available");
}

int cli_parse_memory_limit(const char *tool, const struct arg_str *limit,
                           struct lk_model_params *mp)
{
    if (limit && limit->count &&
        lk_memory_limit_from_name(limit->sval[0], &mp->memory_limit) != LK_OK)
        return cli_usage_error(tool, "%s", lk_last_error());
    return -1;
}

/* The GGUF file adapter a names as its base (adapter_config.json's absolute path) when that is
 * not model_dir, else NULL: a record "gguf" says the file's own types, not which file. */
static const char *other_gguf(const lk_adapter *a, const char *model_dir)
{
    struct lk_adapter_info info;
    lk_adapter_get_info(a, &info);
    if (!info.base_model || info.base_model[0] != '/')
        return NULL; /* no path recorded (a hub id, a name): nothing to compare */
    char *x = realpath(info.base_model, NULL), *y = realpath(model_dir, NULL);
    int same = strcmp(x ? x : info.base_model, y ? y : model_dir) == 0;
    free(x);
    free(y);
    return same ? NULL : info.base_model;
}

/* Say which base runs the adapters and why, and warn about each adapter trained on another. */
static void report_base(const cli_adapters *ad, const char *model_dir, const lk_model *m)
{
    struct lk_adapter_base used, b0;
    char u[96], t[96], why[4200];
    const char *role = ad->role ? ad->role : "base", *flag = *ad->flag ? ad->flag : "--quant";
    lk_model_base_record(m, &used);
    lk_adapter_get_base(ad->a[0], &b0);
    lk_adapter_base_describe(&used, u, sizeof u);
    if (ad->base_flag)
        cli_note("%s %s, as %s asks", role, u, flag);
    else if (b0.recorded && strcmp(b0.quant, "gguf") == 0 && other_gguf(ad->a[0], model_dir))
        cli_warn("%s %s: %s was trained on the GGUF file %s, not %s: unless they hold the same "
                 "tensors, results will differ from training",
                 role, u, ad->path[0], other_gguf(ad->a[0], model_dir), model_dir);
    else if (b0.recorded && strcmp(b0.quant, "gguf") == 0)
        cli_note("%s %s: %s was trained on it", role, u, ad->path[0]);
    else if (b0.recorded)
        cli_note("%s %s: %s was trained on it (%s none runs it unquantised)", role, u, ad->path[0],
                 flag);
    else
        cli_note("%s %s: %s does not record the base it was trained on (give %s if it was a "
                 "quantised one)",
                 role, u, ad->path[0], flag);
    for (int i = 0; i < ad->n; i++) {
        struct lk_adapter_base b;
        lk_adapter_get_base(ad->a[i], &b);
        if (!b.recorded || lk_adapter_base_equal(&b, &used))
            continue;
        if (ad->base_flag)
            snprintf(why, sizeof why, "leave %s out to use the adapter's base", flag);
        else if (i > 0 && !lk_adapter_base_equal(&b, &b0))
            snprintf(why, sizeof why,
                     "the adapters were trained on different bases; the first "
                     "one's is used");
        else if (strcmp(b.quant, "gguf") == 0)
            snprintf(why, sizeof why,
                     "it was trained on a GGUF model file: give that file with -m");
        else
            snprintf(why, sizeof why, "%s holds a pre-quantised base, whose format is used",
                     model_dir);
        cli_warn("%s was trained on the base %s, but runs here on %s: results will differ "
                 "from training (%s)",
                 ad->path[i], lk_adapter_base_describe(&b, t, sizeof t), u, why);
    }
}

int cli_adapters_attach(const char *tool, cli_adapters *ad, lk_model *m, const char *model_dir)
{
    lk_status s = LK_OK;
    for (int i = 0; i < ad->n && s == LK_OK; i++) {
        s = lk_adapter_set_base(ad->a[i], lk_model_get_config(m));
        if (s == LK_OK)
            s = lk_model_attach_adapter(m, ad->a[i], ad->w[i]);
    }
    if (s != LK_OK)
        return cli_fail(tool, s);
    if (ad->n > 0)
        report_base(ad, model_dir, m);
    return -1;
}

void cli_adapters_free(cli_adapters *x)
{
    for (int i = 0; i < x->n; i++) {
        lk_adapter_free(x->a[i]);
        free(x->path[i]);
    }
    free(x->a);
    free(x->w);
    free(x->path);
    memset(x, 0, sizeof *x);
}

/* The teacher's tokenizer must spell every student id the same way. Returns -1 when it does,
 * else prints why and returns CLI_FAIL. */
static int same_vocabulary(const char *tool, const char *teacher_dir, const char *student_dir)
{
    lk_tokenizer *ts = NULL, *tt = NULL;
    int rc = -1;
    if (lk_tokenizer_load(student_dir, &ts) != LK_OK ||
        lk_tokenizer_load(teacher_dir, &tt) != LK_OK) {
        fprintf(stderr,
                "%s: error: teacher %s: %s (both folders need a tokenizer, to check that the "
                "vocabularies agree)\n",
                tool, teacher_dir, lk_last_error());
        rc = CLI_FAIL;
    } else if (lk_tokenizer_vocab_size(tt) < lk_tokenizer_vocab_size(ts)) {
        fprintf(stderr,
                "%s: error: teacher %s: its tokenizer has %lld tokens, the student's (%s) %lld: "
                "the vocabularies do not match\n",
                tool, teacher_dir, (long long)lk_tokenizer_vocab_size(tt), student_dir,
                (long long)lk_tokenizer_vocab_size(ts));
        rc = CLI_FAIL;
    } else {
        int64_t d = lk_tokenizer_first_difference(ts, tt);
        if (d >= 0) {
            fprintf(stderr,
                    "%s: error: teacher %s: token id %lld is not the student's (%s) token %lld: "
                    "the tokenizers do not match (distillation needs the same vocabulary)\n",
                    tool, teacher_dir, (long long)d, student_dir, (long long)d);
            rc = CLI_FAIL;
        }
    }
    lk_tokenizer_free(ts);
    lk_tokenizer_free(tt);
    return rc;
}

int cli_teacher_load(const char *tool, const char *spec, const char *student_dir,
                     const struct arg_str *adapters, const struct arg_str *quant,
                     const struct arg_str *compute, int n_threads, int64_t memory_limit,
                     int64_t memory_held, cli_teacher *out)
{
    memset(out, 0, sizeof *out);
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = n_threads;
    mp.memory_limit = memory_limit;
    mp.memory_held = memory_held;
    mp.quant = LK_QTYPE_F32;
    int rc = cli_parse_quant(tool, quant, NULL, &mp);
    if (rc < 0)
        rc = cli_parse_compute(tool, compute, &mp);
    if (rc >= 0)
        return rc;
    int self = !strcmp(spec, "self");
    const char *dir = self ? student_dir : spec;
    if (!self && (rc = same_vocabulary(tool, dir, student_dir)) >= 0)
        return rc;
    if ((rc = cli_adapters_load(tool, adapters, NULL, &out->ad)) >= 0 ||
        (rc = cli_base_params(tool, &out->ad, quant, NULL, compute, &mp)) >= 0)
        return rc;
    if (lk_model_load(dir, &mp, &out->m) != LK_OK) {
        fprintf(stderr, "%s: error: teacher: %s\n", tool, lk_last_error());
        return CLI_FAIL;
    }
    if (self && mp.quant == LK_QTYPE_F32 && lk_model_quant(out->m) != LK_QTYPE_F32) {
        fprintf(stderr,
                "%s: error: --teacher self: %s holds a quantised base (%s), so the teacher would "
                "be the student's own 4-bit weights; give the full-precision folder with "
                "--teacher DIR\n",
                tool, dir, lk_qtype_name(lk_model_quant(out->m)));
        return CLI_FAIL;
    }
    out->ad.role = "teacher base";
    return cli_adapters_attach(tool, &out->ad, out->m, dir);
}

void cli_teacher_free(cli_teacher *t)
{
    lk_model_free(t->m);
    cli_adapters_free(&t->ad);
    memset(t, 0, sizeof *t);
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_now(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

double cli_thread_cpu_now(void)
{
    return clock_seconds(CLOCK_THREAD_CPUTIME_ID);
}

double cli_process_cpu_now(void)
{
    return clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

static volatile sig_atomic_t g_stop_signal;

static void on_stop_signal(int sig)
{
    g_stop_signal = sig;
}

void cli_catch_stop(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND; /* a second signal takes the default action */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_stop_signal(void)
{
    return g_stop_signal;
}

double cli_peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

double cli_rss_mib(void)
{
    long long size, pages = 0; /* /proc/self/statm: the virtual size, then the resident set */
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lld %lld", &size, &pages) != 2)
        pages = 0;
    if (f)
        fclose(f);
    return (double)pages * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

int cli_parse_quant(const char *tool, const struct arg_str *quant, const struct arg_str *qembed,
                    struct lk_model_params *mp)
{
    const struct arg_str *a[2] = {quant, qembed};
    lk_qtype *dst[2] = {&mp->quant, &mp->quant_embed};
    for (int i = 0; i < 2; i++)
        if (a[i] && a[i]->count && lk_qtype_from_name(a[i]->sval[0], dst[i]) != LK_OK)
            return cli_usage_error(tool, "--%s: %s", a[i]->hdr.longopts, lk_last_error());
    return cli_usage_status(tool, lk_model_params_check(mp));
}

void cli_data_opts_init(cli_data_opts *o)
{
    o->fields = arg_str0(NULL, "fields", "K=COL,...",
                         "column names (e.g. prompt=question,completion=answer)");
    o->chat_template = arg_str0(NULL, "chat-template", "NAME",
                                "chat format for messages data (chatml, qwen2.5, llama3, "
                                "llama3.1, llama2, mistral, alpaca)");
    o->strict = arg_lit0(NULL, "strict", "a bad data line is fatal");
}

int cli_data_params(const char *tool, const cli_data_opts *o, struct lk_dataset_params *dp)
{
    if (o->fields->count)
        dp->fields = o->fields->sval[0];
    dp->strict = o->strict->count > 0;
    if (o->chat_template->count &&
        lk_chat_format_from_name(o->chat_template->sval[0], &dp->chat_format) != LK_OK)
        return cli_usage_error(tool, "--chat-template: %s", lk_last_error());
    return cli_usage_status(tool, lk_dataset_params_check(dp));
}

/* A file of examples (JSON Lines or a JSON array) rather than plain text. */
static int is_json_data(const char *path, const char *text)
{
    size_t n = strlen(path);
    if ((n > 6 && strcmp(path + n - 6, ".jsonl") == 0) ||
        (n > 5 && strcmp(path + n - 5, ".json") == 0))
        return 1;
    while (*text == ' ' || *text == '\n' || *text == '\r' || *text == '\t')
        text++;
    return *text == '{' || *text == '[';
}

/* Loss (and the distance to sc->teacher) of one sequence. */
static lk_status score_ids(const lk_model *m, const int32_t *ids, const int32_t *labels, int64_t n,
                           int64_t ctx, cli_score *sc)
{
    if (sc->teacher)
        return lk_model_kl_labels(m, sc->teacher, ids, labels, n, ctx, &sc->nll, &sc->kl,
                                  &sc->count);
    return lk_model_nll_labels(m, ids, labels, n, ctx, &sc->nll, &sc->count);
}

lk_status cli_score_text(const lk_model *m, const lk_tokenizer *tok, const char *text, size_t len,
                         int64_t ctx, cli_score *sc)
{
    int32_t *ids = NULL;
    int64_t n = 0;
    lk_status s = lk_tokenizer_encode(tok, text, len, 1, &ids, &n);
    if (s == LK_OK && n >= 2)
        s = score_ids(m, ids, NULL, n, ctx, sc);
    sc->examples++;
    free(ids);
    return s;
}

static lk_status score_dataset(const lk_model *m, const lk_tokenizer *tok, const char *path,
                               const char *fields, int64_t ctx, cli_score *sc)
{
    struct lk_dataset_params dp = lk_dataset_params_default();
    /* examples up to the model's context; longer ones are truncated (and counted) */
    dp.seq_len = lk_model_get_config(m)->max_position;
    dp.pack = 0;
    dp.shuffle = 0;
    dp.fields = fields;
    lk_dataset *d = NULL;
    lk_status s = lk_dataset_load(path, tok, &dp, &d);
    int64_t n_ex = s == LK_OK ? lk_dataset_get_stats(d)->examples : 0;
    sc->dataset = 1;
    for (int64_t i = 0; i < n_ex && s == LK_OK; i++) {
        const int32_t *ids, *labels;
        int64_t n, line;
        s = lk_dataset_example(d, i, &ids, &labels, &n, &line);
        if (s == LK_OK && n >= 2)
            s = score_ids(m, ids, labels, n, ctx, sc);
        sc->examples++;
        if (sc->progress && (i % 8 == 7 || i + 1 == n_ex))
            cli_line("scoring %s: %lld/%lld examples", path, (long long)(i + 1), (long long)n_ex);
    }
    cli_line_clear();
    lk_dataset_free(d);
    return s;
}

lk_status cli_score_file(const char *tool, const lk_model *m, const lk_tokenizer *tok,
                         const char *path, const char *fields, int64_t ctx, cli_score *sc)
{
    size_t len;
    char *text = cli_read_file(tool, path, &len);
    if (!text)
        return LK_ERR_IO;
    lk_status s = is_json_data(path, text) ? score_dataset(m, tok, path, fields, ctx, sc)
                                           : cli_score_text(m, tok, text, len, ctx, sc);
    free(text);
    return s;
}

/* ---- memory ---- */

void cli_trim_heap(void)
{
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

/* ---- SVG ---- */

int cli_svg_begin(cli_svg *s, double width, double height, int font_size, const char *background)
{
    s->text = NULL;
    s->len = 0;
    s->f = open_memstream(&s->text, &s->len);
    if (!s->f)
        return -1;
    fprintf(s->f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
            "font-family=\"sans-serif\" font-size=\"%d\">\n",
            width, height, font_size);
    if (background)
        fprintf(s->f, "<rect width=\"100%%\" height=\"100%%\" fill=\"%s\"/>\n", background);
    return 0;
}

/* text with &, < and > escaped */
static void svg_escaped(FILE *f, const char *t)
{
    for (; *t; t++)
        if (*t == '&')
            fputs("&amp;", f);
        else if (*t == '<')
            fputs("&lt;", f);
        else if (*t == '>')
            fputs("&gt;", f);
        else
            fputc(*t, f);
}

void cli_svg_line(cli_svg *s, double x1, double y1, double x2, double y2, const char *stroke)
{
    fprintf(s->f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\"/>\n", x1, y1, x2, y2,
            stroke);
}

void cli_svg_text(cli_svg *s, double x, double y, const char *attrs, const char *fmt, ...)
{
    char buf[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(s->f, "<text x=\"%g\" y=\"%g\"%s%s>", x, y, attrs ? " " : "", attrs ? attrs : "");
    svg_escaped(s->f, buf);
    fputs("</text>\n", s->f);
}

void cli_svg_rect(cli_svg *s, double x, double y, double w, double h, const char *fill,
                  const char *title)
{
    fprintf(s->f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"%s\"", x, y, w, h,
            fill);
    if (!title) {
        fputs("/>\n", s->f);
        return;
    }
    fputs("><title>", s->f);
    svg_escaped(s->f, title);
    fputs("</title></rect>\n", s->f);
}

void cli_svg_circle(cli_svg *s, double cx, double cy, double r, const char *fill)
{
    fprintf(s->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%g\" fill=\"%s\"/>\n", cx, cy, r, fill);
}

void cli_svg_polyline(cli_svg *s, const double *x, const double *y, int64_t n, const char *stroke,
                      double width)
{
    fprintf(s->f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%g\" points=\"", stroke,
            width);
    for (int64_t i = 0; i < n; i++)
        fprintf(s->f, "%.1f,%.1f ", x[i], y[i]);
    fputs("\"/>\n", s->f);
}

int cli_nice_ticks(double lo, double hi, int max_n, double *first, double *step)
{
    if (!(hi > lo) || max_n < 2) {
        *first = lo;
        *step = 1;
        return 1;
    }
    double raw = (hi - lo) / (max_n - 1), mag = pow(10, floor(log10(raw))), f = raw / mag;
    *step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    *first = ceil(lo / *step - 1e-9) * *step;
    int n = 0;
    while (*first + n * *step <= hi + 1e-9 * *step)
        n++;
    return n;
}

lk_status cli_svg_save(cli_svg *s, const char *path, int force)
{
    fputs("</svg>\n", s->f);
    lk_status st = fclose(s->f) == 0 ? lk_write_file_atomic(path, s->text, s->len, force)
                                     : LK_ERR_NOMEM; /* the drawing did not fit in memory */
    free(s->text);
    memset(s, 0, sizeof *s);
    return st;
}
