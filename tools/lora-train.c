/* lora-train — LoRA fine-tuning (SFT or distillation) of a frozen base on a JSONL dataset; writes a
 * Hugging Face PEFT adapter to -o DIR, checkpoints to DIR/checkpoint-N (resumable, Ctrl-C saves
 * one), a loss curve to DIR/loss.svg. Progress on stderr; --json: one JSON object per step and eval
 * on stdout.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-train";
static volatile sig_atomic_t g_stop; /* the signal that asked us to stop, or 0 */

static void on_signal(int sig)
{
    g_stop = sig;
}

typedef struct {
    struct arg_file *model, *data, *out, *eval_data, *init_adapter, *resume;
    struct arg_str *quant, *quant_embed, *targets, *optimizer, *schedule, *objective, *fields,
        *chat_template;
    struct arg_str *teacher, *teacher_cache, *teacher_adapter, *teacher_quant;
    struct arg_str *init;
    struct arg_int *rank, *steps, *seq_len, *batch, *grad_accum, *save_every, *eval_every;
    struct arg_int *warmup, *save_limit, *log_every;
    struct arg_dbl *alpha, *dropout, *lr, *lr_ratio_b, *epochs, *weight_decay, *max_grad_norm;
    struct arg_dbl *kd_temp, *kd_weight, *jsd_beta;
    struct arg_lit *rslora, *dry_run, *force, *strict, *no_ckpt;
} train_args;

typedef struct {
    const train_args *a;
    const cli_common *c;
    const char *out;
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *data, *eval;
    lk_trainer *t;
    cli_teacher teacher;
    struct lk_train_params tp;
    struct lk_model_params mp;
    double t0, eval_loss_last, eval_kl_last;
    int64_t tokens_done, start_step;
    int64_t saved_step; /* the step whose checkpoint is in OUT (saved or resumed from), or -1 */
    int err_printed;    /* an error was printed here, not left in lk_last_error */
    float *eval_pts;    /* [steps] eval loss at that step or NaN */
    int tty;
} train_ctx;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rss_mib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return (double)rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

/* ---- options ---- */

static int parse_enums(const train_args *a, struct lk_train_params *p)
{
    if (a->optimizer->count) {
        const char *o = a->optimizer->sval[0];
        if (strcmp(o, "adamw") && strcmp(o, "sgd"))
            return cli_usage_error(TOOL, "--optimizer: adamw or sgd, got '%s'", o);
        p->optimizer = strcmp(o, "sgd") ? LK_OPT_ADAMW : LK_OPT_SGD;
    }
    if (a->schedule->count) {
        const char *names[3] = {"cosine", "linear", "constant"};
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(a->schedule->sval[0], names[i]))
                k = i;
        if (k < 0)
            return cli_usage_error(TOOL, "--schedule: cosine, linear or constant, got '%s'",
                                   a->schedule->sval[0]);
        p->schedule = (lk_schedule)k;
    }
    if (a->targets->count && lk_train_parse_targets(a->targets->sval[0], &p->targets) != LK_OK)
        return cli_usage_error(TOOL, "--targets: %s", lk_last_error());
    return -1;
}

static int parse_params(const train_args *a, const cli_common *c, struct lk_train_params *p)
{
    *p = lk_train_params_default();
    if (a->rank->count)
        p->rank = a->rank->ival[0];
    p->alpha = a->alpha->count ? a->alpha->dval[0] : (double)p->rank;
    if (a->dropout->count)
        p->dropout = (float)a->dropout->dval[0];
    p->rslora = a->rslora->count > 0;
    p->checkpointing = !a->no_ckpt->count;
    p->init_adapter = a->init_adapter->count ? a->init_adapter->filename[0] : NULL;
    if (a->lr->count)
        p->lr = (float)a->lr->dval[0];
    if (a->lr_ratio_b->count)
        p->lr_ratio_b = (float)a->lr_ratio_b->dval[0];
    if (a->weight_decay->count)
        p->weight_decay = (float)a->weight_decay->dval[0];
    if (a->max_grad_norm->count)
        p->max_grad_norm = (float)a->max_grad_norm->dval[0];
    if (a->warmup->count)
        p->warmup_steps = a->warmup->ival[0];
    if (a->steps->count)
        p->steps = a->steps->ival[0];
    if (a->epochs->count)
        p->epochs = a->epochs->dval[0];
    if (a->batch->count)
        p->batch = a->batch->ival[0];
    if (a->grad_accum->count)
        p->grad_accum = a->grad_accum->ival[0];
    p->seed = cli_seed(c);
    int rc = parse_enums(a, p);
    if (rc >= 0)
        return rc;
    if (p->rank < 1 || !(p->alpha > 0) || !(p->dropout >= 0 && p->dropout < 1) || !(p->lr > 0) ||
        !(p->lr_ratio_b > 0) || p->batch < 1 || p->grad_accum < 1 || p->steps < 0 ||
        p->warmup_steps < 0 || !(p->epochs > 0) || !(p->weight_decay >= 0))
        return cli_usage_error(TOOL, "--rank, --batch, --grad-accum >= 1; --alpha, --lr, "
                                     "--lr-ratio-b, --epochs > 0; 0 <= --dropout < 1; --steps, "
                                     "--warmup, --weight-decay >= 0");
    if (a->steps->count && a->epochs->count)
        return cli_usage_error(TOOL, "give --steps or --epochs, not both");
    return -1;
}

/* --objective and the distillation options. */
static int parse_objective(const train_args *a, struct lk_train_params *p)
{
    const char *names[4] = {"sft", "kd", "rkl", "jsd"},
               *o = a->objective->count ? a->objective->sval[0] : "sft";
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(o, names[i]))
            k = i;
    if (k < 0)
        return cli_usage_error(TOOL, "--objective: sft, kd, rkl or jsd, got '%s'", o);
    p->objective = (lk_objective)k;
    int kd_opts = a->teacher->count + a->teacher_cache->count + a->teacher_adapter->count +
                  a->teacher_quant->count + a->kd_temp->count + a->kd_weight->count +
                  a->jsd_beta->count;
    if (k == 0 && kd_opts)
        return cli_usage_error(TOOL, "--teacher, --teacher-cache, --kd-temp, --kd-weight, "
                                     "--jsd-beta need --objective kd, rkl or jsd");
    if (k == 0)
        return -1;
    if (a->teacher->count == a->teacher_cache->count)
        return cli_usage_error(TOOL,
                               "--objective %s needs a teacher: --teacher DIR|self or "
                               "--teacher-cache FILE (one of them)",
                               o);
    if (a->teacher_cache->count && (a->teacher_adapter->count || a->teacher_quant->count))
        return cli_usage_error(TOOL, "--teacher-adapter and --teacher-quant go with --teacher");
    if (a->jsd_beta->count && k != 3)
        return cli_usage_error(TOOL, "--jsd-beta goes with --objective jsd");
    if (a->kd_temp->count)
        p->kd_temp = (float)a->kd_temp->dval[0];
    if (a->kd_weight->count)
        p->kd_weight = (float)a->kd_weight->dval[0];
    if (a->jsd_beta->count)
        p->jsd_beta = (float)a->jsd_beta->dval[0];
    if (!(p->kd_temp > 0 && p->kd_temp <= 100) || !(p->kd_weight >= 0 && p->kd_weight <= 1) ||
        !(p->jsd_beta >= 0 && p->jsd_beta <= 1))
        return cli_usage_error(TOOL, "--kd-temp in (0, 100]; --kd-weight and --jsd-beta in [0, 1]");
    p->teacher_cache = a->teacher_cache->count ? a->teacher_cache->sval[0] : NULL;
    return -1;
}

/* --init peft|loftq; LoftQ needs a quantised base (the residual of an f32 one is zero) and a
 * fresh adapter. */
static int parse_init(const train_args *a, const struct lk_model_params *mp,
                      struct lk_train_params *p)
{
    if (!a->init->count)
        return -1;
    const char *v = a->init->sval[0];
    if (strcmp(v, "peft") && strcmp(v, "loftq"))
        return cli_usage_error(TOOL, "--init: peft or loftq, got '%s'", v);
    if (a->init_adapter->count)
        return cli_usage_error(TOOL, "--init and --init-adapter exclude each other (the adapter "
                                     "starts as the one given)");
    p->init = strcmp(v, "loftq") ? LK_INIT_PEFT : LK_INIT_LOFTQ;
    if (p->init == LK_INIT_LOFTQ && mp->quant == LK_QTYPE_F32)
        return cli_usage_error(TOOL, "--init loftq needs a quantised base: with --quant none the "
                                     "quantisation residual W - Q(W) is zero");
    return -1;
}

/* The LoftQ start's summary (the library logs each layer): stderr, and a JSON line. */
static void report_loftq(const train_ctx *x, double secs)
{
    int64_t n;
    const struct lk_loftq_stat *st = lk_trainer_loftq_stats(x->t, &n);
    if (!n)
        return;
    double mean = 0, lo = INFINITY, hi = -INFINITY, res2 = 0, rem2 = 0;
    cJSON *mods = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) {
        double red = st[i].residual_norm > 0 ? 1 - st[i].remaining_norm / st[i].residual_norm : 0;
        mean += red / (double)n;
        lo = fmin(lo, red);
        hi = fmax(hi, red);
        res2 += st[i].residual_norm * st[i].residual_norm;
        rem2 += st[i].remaining_norm * st[i].remaining_norm;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", (double)st[i].layer);
        cJSON_AddStringToObject(o, "module", lk_module_name(st[i].module));
        cJSON_AddNumberToObject(o, "weight_norm", st[i].weight_norm);
        cJSON_AddNumberToObject(o, "residual_norm", st[i].residual_norm);
        cJSON_AddNumberToObject(o, "remaining_norm", st[i].remaining_norm);
        cJSON_AddNumberToObject(o, "reduction", red);
        cJSON_AddItemToArray(mods, o);
    }
    double total = res2 > 0 ? 1 - sqrt(rem2 / res2) : 0;
    if (x->c->json->count) {
        cJSON *j = cli_json_new(x->c);
        cJSON_AddStringToObject(j, "type", "loftq");
        cJSON_AddNumberToObject(j, "rank", (double)x->tp.rank);
        cJSON_AddNumberToObject(j, "mean_reduction", mean);
        cJSON_AddNumberToObject(j, "total_reduction", total);
        cJSON_AddNumberToObject(j, "init_s", secs);
        cJSON_AddItemToObject(j, "modules", mods);
        cli_json_emit(j);
    } else {
        cJSON_Delete(mods);
    }
    if (!x->c->quiet->count)
        fprintf(stderr,
                "%s: LoftQ start (rank %lld, one iteration): the quantisation residual "
                "|W - Q(W)| of %lld modules reduced by %.1f%% on average (%.1f%% to %.1f%%), "
                "%.1f%% overall, in %.2f s\n",
                TOOL, (long long)x->tp.rank, (long long)n, 100 * mean, 100 * lo, 100 * hi,
                100 * total, secs);
}

/* ---- output folder, checkpoints ----
 * OUT/checkpoint-N exists only complete: it is assembled as OUT/checkpoint-N.partial (adapter
 * folder, then state.ckpt, each written atomically) and renamed. The final adapter's files enter
 * OUT config first, so an adapter_model.safetensors never sits beside another run's config or
 * without one. What a killed run leaves behind is swept at the start of the next; a lock on OUT
 * keeps two runs apart. */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int remove_tree(const char *p)
{
    return nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int make_dir(const char *d)
{
    if (mkdir(d, 0755) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "%s: error: %s: cannot create folder: %s\n", TOOL, d, strerror(errno));
    return -1;
}

/* Remove a folder of OUT: renamed aside first (one atomic step), so that a kill while its files
 * go never leaves a partial folder at its name; the next run sweeps what is left. */
static int discard_dir(const char *p)
{
    char aside[4300];
    snprintf(aside, sizeof aside, "%s.old.%ld", p, (long)getpid());
    if (rename(p, aside) != 0)
        return -1;
    remove_tree(aside);
    return 0;
}

/* N of a folder named exactly "checkpoint-N"; -1 for any other name. */
static int64_t checkpoint_number(const char *name)
{
    long long n;
    int end = 0;
    if (strncmp(name, "checkpoint-", 11) != 0 || !isdigit((unsigned char)name[11]) ||
        sscanf(name + 11, "%lld%n", &n, &end) != 1 || name[11 + end])
        return -1;
    return n;
}

/* Highest N < below of DIR/checkpoint-N holding a state.ckpt; -1 if none. */
static int64_t latest_checkpoint(const char *dir, int64_t below)
{
    DIR *d = opendir(dir);
    int64_t best = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int64_t n = checkpoint_number(e->d_name);
        char p[4200];
        snprintf(p, sizeof p, "%s/%s/state.ckpt", dir, e->d_name);
        if (n > best && n < below && access(p, R_OK) == 0)
            best = n;
    }
    if (d)
        closedir(d);
    return best;
}

/* Remove DIR/checkpoint-N for all but the `keep` newest (keep 0: none removed). */
static void prune_checkpoints(const char *dir, int keep)
{
    while (keep > 0) {
        DIR *d = opendir(dir);
        int64_t oldest = -1, count = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int64_t n = checkpoint_number(e->d_name);
            if (n < 0)
                continue;
            count++;
            if (oldest < 0 || n < oldest)
                oldest = n;
        }
        if (d)
            closedir(d);
        if (count <= keep || oldest < 0)
            return;
        char p[4200];
        snprintf(p, sizeof p, "%s/checkpoint-%lld", dir, (long long)oldest);
        if (discard_dir(p) != 0)
            return;
    }
}

/* What a run killed while saving leaves in OUT: a checkpoint being assembled or one without its
 * state (older versions), the temporaries of atomic writes, the final adapter's staging folder. */
static int is_leftover(const char *out, const char *name)
{
    char p[4300];
    int64_t n = checkpoint_number(name);
    snprintf(p, sizeof p, "%s/%s/state.ckpt", out, name);
    if (n >= 0)
        return access(p, F_OK) != 0;
    if (!strncmp(name, "checkpoint-", 11)) {
        const char *dot = name + 11 + strspn(name + 11, "0123456789");
        return dot > name + 11 && (!strncmp(dot, ".partial", 8) || !strncmp(dot, ".tmp.", 5) ||
                                   !strncmp(dot, ".old.", 5));
    }
    return !strncmp(name, ".adapter-final", 14) || !strncmp(name, "loss.svg.tmp", 12);
}

/* Lock OUT for this run (released when the process ends, however it ends), then sweep what an
 * interrupted run left behind. */
static int claim_out(const train_ctx *x)
{
    static int lock_fd = -1;
    lock_fd = open(x->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        fprintf(stderr, "%s: error: %s is in use by another lora-train\n", TOOL, x->out);
        return -1;
    }
    DIR *d = opendir(x->out);
    struct dirent *e;
    int removed = 0;
    while (d && (e = readdir(d))) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", x->out, e->d_name);
        if (is_leftover(x->out, e->d_name) && remove_tree(p) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    if (removed && !x->c->quiet->count)
        fprintf(stderr,
                "%s: removed %d incomplete file(s) or folder(s) left in %s by an "
                "interrupted run\n",
                TOOL, removed, x->out);
    return 0;
}

/* rename(from, to) into OUT, made durable; a stale folder at `to` is replaced. */
static int commit_entry(train_ctx *x, const char *from, const char *to)
{
    int r = rename(from, to);
    if (r != 0 && (errno == ENOTEMPTY || errno == EEXIST) && discard_dir(to) == 0)
        r = rename(from, to);
    int err = r != 0 ? errno : cli_sync_dir(x->out);
    if (err) {
        fprintf(stderr, "%s: error: %s: %s failed: %s\n", TOOL, to, r ? "rename" : "folder sync",
                strerror(err));
        x->err_printed = 1;
    }
    return err ? -1 : 0;
}

static lk_status save_checkpoint(train_ctx *x)
{
    int64_t step = lk_trainer_steps_done(x->t);
    char dir[4200], part[4300], file[4400];
    snprintf(dir, sizeof dir, "%s/checkpoint-%lld", x->out, (long long)step);
    if (step == x->saved_step) { /* this very state is on disk (saved, or resumed from) */
        if (!x->c->quiet->count)
            fprintf(stderr, "%s: checkpoint %s is up to date\n", TOOL, dir);
        return LK_OK;
    }
    snprintf(part, sizeof part, "%s.partial", dir);
    snprintf(file, sizeof file, "%s/state.ckpt", part);
    lk_status s = lk_trainer_save_adapter(x->t, part, x->a->model->filename[0], 1);
    if (s == LK_OK)
        s = lk_trainer_save_checkpoint(x->t, file);
    if (s != LK_OK) {
        fprintf(stderr, "%s: error: checkpoint %s not saved: %s\n", TOOL, dir, lk_last_error());
        x->err_printed = 1;
    } else if (commit_entry(x, part, dir) != 0) {
        s = LK_ERR_IO;
    }
    if (s != LK_OK) {
        remove_tree(part);
        return s;
    }
    x->saved_step = step;
    prune_checkpoints(x->out, x->a->save_limit->count ? x->a->save_limit->ival[0] : 2);
    if (!x->c->quiet->count)
        fprintf(stderr, "%s: checkpoint saved to %s\n", TOOL, dir);
    return LK_OK;
}

/* The final adapter: written beside (OUT/.adapter-final), then moved into OUT one file at a time:
 * the old weights out, the new config in, the new weights in, each step made durable. */
static lk_status save_final(train_ctx *x)
{
    char tmp[4200], from[4300], to[4300];
    snprintf(tmp, sizeof tmp, "%s/.adapter-final", x->out);
    if (lk_trainer_save_adapter(x->t, tmp, x->a->model->filename[0], 1) != LK_OK) {
        fprintf(stderr, "%s: error: adapter not saved to %s: %s\n", TOOL, x->out, lk_last_error());
        x->err_printed = 1;
        return LK_ERR_IO;
    }
    snprintf(to, sizeof to, "%s/adapter_model.safetensors", x->out);
    int err = unlink(to) != 0 && errno != ENOENT ? errno : cli_sync_dir(x->out);
    if (err) {
        fprintf(stderr, "%s: error: %s: cannot remove the old adapter: %s\n", TOOL, to,
                strerror(err));
        x->err_printed = 1;
    }
    const char *files[2] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2 && !err; i++) {
        snprintf(from, sizeof from, "%s/%s", tmp, files[i]);
        snprintf(to, sizeof to, "%s/%s", x->out, files[i]);
        err = commit_entry(x, from, to);
    }
    remove_tree(tmp);
    return err ? LK_ERR_IO : LK_OK;
}

/* ---- loss curve ---- */

/* DIR/loss.svg: training loss per step (line) and evaluation loss (dots). */
static void write_svg(const train_ctx *x)
{
    int64_t n;
    const float *h = lk_trainer_loss_history(x->t, &n);
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(h[i])) {
            lo = fmin(lo, h[i]);
            hi = fmax(hi, h[i]);
        }
    for (int64_t i = 0; x->eval_pts && i < n; i++)
        if (isfinite(x->eval_pts[i])) {
            lo = fmin(lo, x->eval_pts[i]);
            hi = fmax(hi, x->eval_pts[i]);
        }
    if (!(hi >= lo) || n < 1)
        return;
    if (hi - lo < 1e-6)
        hi = lo + 1e-6;
    char path[4200], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/loss.svg", x->out);
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return;
    const double W = 640, H = 360, L = 60, R = 20, T = 20, B = 40;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
            "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L,
            H - B, W - R, H - B);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T,
            L, H - B);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.3f</text>\n", L - 4, T + 4, hi);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.3f</text>\n", L - 4, H - B, lo);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step (1..%lld)</text>\n",
            (L + W - R) / 2, H - 10, (long long)n);
    fprintf(f, "<text x=\"%.0f\" y=\"14\">loss (line: training, dots: evaluation)</text>\n", L);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (int64_t i = 0; i < n; i++)
        if (isfinite(h[i]))
            fprintf(f, "%.1f,%.1f ", L + (W - L - R) * (n > 1 ? (double)i / (double)(n - 1) : 0),
                    T + (H - T - B) * (hi - h[i]) / (hi - lo));
    fprintf(f, "\"/>\n");
    for (int64_t i = 0; x->eval_pts && i < n; i++)
        if (isfinite(x->eval_pts[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n",
                    L + (W - L - R) * (n > 1 ? (double)i / (double)(n - 1) : 0),
                    T + (H - T - B) * (hi - x->eval_pts[i]) / (hi - lo));
    fprintf(f, "</svg>\n");
    int err = fclose(f) != 0 ? ENOMEM : cli_write_atomic(path, 1, text, len);
    if (err)
        fprintf(stderr, "%s: warning: %s: not written: %s\n", TOOL, path, strerror(err));
    free(text);
}

/* ---- progress ---- */

static void fmt_time(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static void progress(train_ctx *x, const struct lk_step_stats *st, int last)
{
    double el = now() - x->t0, tps = (double)x->tokens_done / (el > 0 ? el : 1);
    int64_t done = st->step - x->start_step, left = st->total_steps - st->step;
    double eta = done > 0 ? el / (double)done * (double)left : 0;
    char eta_s[32], el_s[32];
    fmt_time(eta, eta_s, sizeof eta_s);
    fmt_time(el, el_s, sizeof el_s);
    if (x->c->quiet->count)
        return;
    if (x->tty) {
        int w = 24, fill = (int)(w * (double)st->step / (double)st->total_steps);
        char bar[32];
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\r[%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s RSS %.0fM%s\033[K",
                bar, (long long)st->step, (long long)st->total_steps, st->loss, st->lr, tps, eta_s,
                rss_mib(), st->skipped ? " (skipped)" : "");
        if (last)
            fputc('\n', stderr);
        return;
    }
    int64_t every = x->a->log_every->count ? x->a->log_every->ival[0]
                                           : (st->total_steps > 20 ? st->total_steps / 20 : 1);
    if (last || st->step % (every > 0 ? every : 1) == 0)
        fprintf(stderr,
                "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  elapsed %s  ETA %s  "
                "RSS %.0fM%s\n",
                (long long)st->step, (long long)st->total_steps, st->loss, st->lr, tps, el_s, eta_s,
                rss_mib(), st->skipped ? "  (skipped: non-finite)" : "");
}

static void json_step(const train_ctx *x, const struct lk_step_stats *st)
{
    cJSON *j = cli_json_new(x->c);
    double el = now() - x->t0;
    cJSON_AddStringToObject(j, "type", "step");
    cJSON_AddNumberToObject(j, "step", (double)st->step);
    cJSON_AddNumberToObject(j, "total_steps", (double)st->total_steps);
    if (isfinite(st->loss))
        cJSON_AddNumberToObject(j, "loss", st->loss);
    else
        cJSON_AddNullToObject(j, "loss");
    if (isfinite(st->kd)) { /* distillation: the loss's two parts */
        cJSON_AddNumberToObject(j, "ce", st->ce);
        cJSON_AddNumberToObject(j, "kd", st->kd);
    }
    cJSON_AddNumberToObject(j, "lr", st->lr);
    cJSON_AddNumberToObject(j, "grad_norm", st->grad_norm);
    cJSON_AddNumberToObject(j, "tokens", (double)st->tokens);
    cJSON_AddNumberToObject(j, "trained_tokens", (double)st->trained_tokens);
    cJSON_AddNumberToObject(j, "tokens_per_s", (double)x->tokens_done / (el > 0 ? el : 1));
    cJSON_AddBoolToObject(j, "skipped", st->skipped);
    cJSON_AddNumberToObject(j, "elapsed_s", el);
    cli_json_emit(j);
}

static lk_status run_eval(train_ctx *x, int64_t step)
{
    double loss, kl;
    int64_t n;
    CLI_TRY(lk_trainer_eval(x->t, x->eval, &loss, &kl, &n));
    x->eval_loss_last = loss;
    x->eval_kl_last = kl;
    if (x->eval_pts && step > 0)
        x->eval_pts[step - 1] = (float)loss;
    if (x->c->json->count) {
        cJSON *j = cli_json_new(x->c);
        cJSON_AddStringToObject(j, "type", "eval");
        cJSON_AddNumberToObject(j, "step", (double)step);
        cJSON_AddNumberToObject(j, "eval_loss", loss);
        cJSON_AddNumberToObject(j, "eval_perplexity", exp(loss));
        cJSON_AddNumberToObject(j, "eval_tokens", (double)n);
        if (isfinite(kl))
            cJSON_AddNumberToObject(j, "eval_kl", kl);
        cli_json_emit(j);
    }
    char kls[48] = "";
    if (isfinite(kl))
        snprintf(kls, sizeof kls, "  kl to teacher %.4f", kl);
    if (!x->c->quiet->count)
        fprintf(stderr, "%seval at step %lld: loss %.4f  perplexity %.3f%s  (%lld tokens)\n",
                x->tty ? "\n" : "", (long long)step, loss, exp(loss), kls, (long long)n);
    return LK_OK;
}

/* ---- the run ---- */

static lk_status load_data(train_ctx *x, const char *path, int shuffle, int pack, lk_dataset **out)
{
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = x->a->seq_len->count ? x->a->seq_len->ival[0] : 512;
    dp.seed = cli_seed(x->c);
    dp.shuffle = shuffle;
    dp.pack = pack;
    dp.strict = x->a->strict->count > 0;
    dp.fields = x->a->fields->count ? x->a->fields->sval[0] : NULL;
    if (x->a->chat_template->count &&
        lk_chat_format_from_name(x->a->chat_template->sval[0], &dp.chat_format) != LK_OK)
        return LK_ERR_ARG;
    return lk_dataset_load(path, x->tok, &dp, out);
}

static lk_status setup(train_ctx *x)
{
    const train_args *a = x->a;
    CLI_TRY(lk_model_load(a->model->filename[0], &x->mp, &x->m));
    CLI_TRY(lk_tokenizer_load(a->model->filename[0], &x->tok));

    CLI_TRY(load_data(x, a->data->filename[0], 1, 1, &x->data));
    if (a->eval_data->count)
        CLI_TRY(load_data(x, a->eval_data->filename[0], 0, 0, &x->eval));
    return LK_OK;
}

/* The memory plan against what this machine can give now (MemAvailable, cgroup, ulimit -v).
 * *need: the plan's peak; returns the bytes available and names the limit in *what. */
static double memory_check(train_ctx *x, int64_t *ad, int64_t *opt, int64_t *act, int64_t *need,
                           const char **what)
{
    int64_t seq = lk_dataset_seq_len(x->data);
    *need = lk_model_weight_bytes(x->m) + lk_trainer_memory_plan(x->m, &x->tp, seq, ad, opt, act);
    return cli_memory_available(what);
}

static void warn_memory(int64_t need, double have, const char *what)
{
    fprintf(stderr,
            "%s: warning: the plan needs %.0f MiB, more than the %.0f MiB available (%s); the "
            "run would fail or swap (hint: lower --seq-len or --batch, use --grad-accum, keep "
            "gradient checkpointing on)\n",
            TOOL, need / 1048576.0, have / 1048576.0, what);
}

static int dry_run(train_ctx *x)
{
    int64_t ad, opt, act, total;
    const char *what;
    double have = memory_check(x, &ad, &opt, &act, &total, &what);
    int64_t base = total - ad - opt - act, seq = lk_dataset_seq_len(x->data);
    int fits = (double)total <= have;
    if (x->c->json->count) {
        cJSON *j = cli_json_new(x->c);
        cJSON_AddStringToObject(j, "type", "plan");
        cJSON_AddNumberToObject(j, "base_bytes", (double)base);
        cJSON_AddNumberToObject(j, "adapter_bytes", (double)ad);
        cJSON_AddNumberToObject(j, "optimizer_bytes", (double)opt);
        cJSON_AddNumberToObject(j, "activation_bytes", (double)act);
        cJSON_AddNumberToObject(j, "peak_bytes", (double)total);
        cJSON_AddNumberToObject(j, "available_bytes", have);
        cJSON_AddStringToObject(j, "available_limit", what);
        cJSON_AddBoolToObject(j, "fits", fits);
        cli_json_emit(j);
    } else {
        printf("memory plan (seq-len %lld, batch %lld):\n  base           %9.1f MiB\n"
               "  adapter+grads  %9.1f MiB\n  optimizer      %9.1f MiB\n"
               "  activations    %9.1f MiB\n  peak estimate  %9.1f MiB of %.0f MiB available "
               "(%s)\n",
               (long long)seq, (long long)x->tp.batch, base / 1048576.0, ad / 1048576.0,
               opt / 1048576.0, act / 1048576.0, total / 1048576.0, have / 1048576.0, what);
    }
    if (!fits)
        warn_memory(total, have, what);
    return fits ? CLI_OK : CLI_FAIL;
}

/* The same check before a real run: a warning only (the estimate is not exact). */
static void check_memory(train_ctx *x)
{
    int64_t ad, opt, act, total;
    const char *what;
    double have = memory_check(x, &ad, &opt, &act, &total, &what);
    if ((double)total > have)
        warn_memory(total, have, what);
}

/* path names the checkpoint OUT/checkpoint-step holds: nothing to save at that step. */
static void note_resumed(train_ctx *x, const char *path)
{
    int64_t step = lk_trainer_steps_done(x->t);
    char own[4300];
    struct stat a, b;
    snprintf(own, sizeof own, "%s/checkpoint-%lld/state.ckpt", x->out, (long long)step);
    if (stat(path, &a) == 0 && stat(own, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        x->saved_step = step;
}

/* The newest intact DIR/checkpoint-N: a damaged one is reported and the one before it tried.
 * path[cap] receives the state file's path. */
static lk_status resume_newest(train_ctx *x, const char *dir, char *path, size_t cap)
{
    int damaged = 0;
    for (int64_t n = latest_checkpoint(dir, INT64_MAX); n >= 0; n = latest_checkpoint(dir, n)) {
        snprintf(path, cap, "%s/checkpoint-%lld/state.ckpt", dir, (long long)n);
        lk_status s = lk_trainer_resume(x->t, path);
        if (s != LK_ERR_FORMAT)
            return s;
        fprintf(stderr, "%s: warning: %s; trying the checkpoint before it\n", TOOL,
                lk_last_error());
        damaged++;
    }
    fprintf(stderr, "%s: error: %s: no state.ckpt and no checkpoint-N folder with %s\n", TOOL, dir,
            damaged ? "an intact one" : "one");
    x->err_printed = 1;
    return LK_ERR_IO;
}

/* --resume DIR: a checkpoint folder (DIR/state.ckpt) or a run's output folder. */
static lk_status resume(train_ctx *x)
{
    const char *r = x->a->resume->filename[0];
    char path[4300];
    snprintf(path, sizeof path, "%s/state.ckpt", r);
    if (access(path, F_OK) == 0)
        CLI_TRY(lk_trainer_resume(x->t, path));
    else
        CLI_TRY(resume_newest(x, r, path, sizeof path));
    note_resumed(x, path);
    fprintf(stderr, "%s: resumed from %s at step %lld\n", TOOL, path,
            (long long)lk_trainer_steps_done(x->t));
    return LK_OK;
}

/* Steps until done or a signal; save/eval on schedule. */
static lk_status loop(train_ctx *x)
{
    int64_t save_every = x->a->save_every->count ? x->a->save_every->ival[0] : 0;
    int64_t eval_every = x->a->eval_every->count ? x->a->eval_every->ival[0] : 0;
    x->start_step = lk_trainer_steps_done(x->t);
    x->t0 = now();
    while (lk_trainer_steps_done(x->t) < lk_trainer_total_steps(x->t) && !g_stop) {
        struct lk_step_stats st;
        lk_status s = lk_trainer_step(x->t, &st);
        x->tokens_done += st.tokens;
        if (s != LK_OK)
            return s;
        int last = st.step == st.total_steps;
        progress(x, &st, last);
        if (x->c->json->count)
            json_step(x, &st);
        if (x->eval && !g_stop && ((eval_every && st.step % eval_every == 0) || last))
            CLI_TRY(run_eval(x, st.step));
        if (save_every && st.step % save_every == 0 && !last)
            CLI_TRY(save_checkpoint(x));
    }
    return LK_OK;
}

/* Exit code 1 after an error, printed here unless it was already. */
static int fail(const train_ctx *x, lk_status s)
{
    return x->err_printed ? CLI_FAIL : cli_fail(TOOL, s);
}

static int finish(train_ctx *x)
{
    if (g_stop) {
        fprintf(stderr, "%s%s: interrupted at step %lld: saving a checkpoint\n", x->tty ? "\n" : "",
                TOOL, (long long)lk_trainer_steps_done(x->t));
        lk_status s = save_checkpoint(x);
        write_svg(x);
        if (s != LK_OK)
            return fail(x, s);
        return g_stop == SIGTERM ? 143 : CLI_INTERRUPTED;
    }
    lk_status s = save_checkpoint(x);
    if (s == LK_OK)
        s = save_final(x);
    if (s != LK_OK)
        return fail(x, s);
    write_svg(x);
    int64_t n;
    const float *h = lk_trainer_loss_history(x->t, &n);
    if (x->c->json->count) {
        cJSON *j = cli_json_new(x->c);
        cJSON_AddStringToObject(j, "type", "done");
        cJSON_AddStringToObject(j, "out", x->out);
        cJSON_AddNumberToObject(j, "steps", (double)n);
        if (n && isfinite(h[n - 1]))
            cJSON_AddNumberToObject(j, "final_loss", h[n - 1]);
        if (x->eval && isfinite(x->eval_loss_last))
            cJSON_AddNumberToObject(j, "eval_loss", x->eval_loss_last);
        if (x->eval && isfinite(x->eval_kl_last))
            cJSON_AddNumberToObject(j, "eval_kl", x->eval_kl_last);
        cli_json_emit(j);
    } else {
        printf("adapter written to %s (%lld steps, final loss %.4f)\n", x->out, (long long)n,
               n ? h[n - 1] : NAN);
    }
    return CLI_OK;
}

static int run(train_ctx *x)
{
    lk_status s = setup(x);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    if (x->a->teacher->count) {
        int rc = cli_teacher_load(TOOL, x->a->teacher->sval[0], x->a->model->filename[0],
                                  x->a->teacher_adapter, x->a->teacher_quant, x->mp.n_threads,
                                  &x->teacher);
        if (rc >= 0)
            return rc;
        x->tp.teacher = x->teacher.m;
    }
    if (x->a->dry_run->count)
        return dry_run(x);
    char probe[4300];
    snprintf(probe, sizeof probe, "%s/adapter_model.safetensors", x->out);
    if (!x->a->resume->count && !x->a->force->count && access(probe, F_OK) == 0) {
        fprintf(stderr, "%s: error: %s already holds an adapter (use --force, or --resume)\n", TOOL,
                x->out);
        return CLI_FAIL;
    }
    if (make_dir(x->out) != 0 || claim_out(x) != 0)
        return CLI_FAIL;
    check_memory(x);
    double t_init = now();
    s = lk_trainer_create(x->m, x->data, &x->tp, &x->t);
    if (s == LK_OK)
        report_loftq(x, now() - t_init);
    if (s == LK_OK && x->a->resume->count)
        s = resume(x);
    if (s != LK_OK)
        return fail(x, s);
    int64_t total = lk_trainer_total_steps(x->t);
    x->eval_pts = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    for (int64_t i = 0; x->eval_pts && i < total; i++)
        x->eval_pts[i] = NAN;
    if (!x->c->quiet->count)
        fprintf(stderr, "%s: %lld steps of %lld rows x %lld tokens, seed %llu\n", TOOL,
                (long long)total, (long long)(x->tp.batch * x->tp.grad_accum),
                (long long)lk_dataset_seq_len(x->data), (unsigned long long)x->tp.seed);
    s = loop(x);
    if (s != LK_OK) {
        int rc = fail(x, s);
        write_svg(x);
        return rc;
    }
    return finish(x);
}

static const char *GLOSSARY =
    "Data: JSONL (or a JSON array) of {\"text\"}, {\"prompt\",\"completion\"}, {\"messages\"}, "
    "Alpaca\n{\"instruction\",\"input\",\"output\"} or pre-tokenised {\"input_ids\",\"labels\"}; "
    "prompts are masked.\nExamples are packed into rows of --seq-len tokens (positions restart, no "
    "attention across examples).\nOutput: DIR/adapter_config.json + adapter_model.safetensors "
    "(Hugging Face PEFT), DIR/loss.svg,\nDIR/checkpoint-N/ (adapter + state.ckpt; --resume DIR "
    "continues from the newest).\nCtrl-C or SIGTERM saves a checkpoint and exits 130 / 143.\n"
    "--init loftq (LoftQ, Li et al. 2023, one iteration) starts s*B*A as the rank-r SVD of each "
    "layer's\nW - Q(W), W read again from the model folder: the adapter then belongs with a base "
    "quantised\nthe same way (--quant). More iterations would change the quantised base itself, "
    "which lora-eval\nand lora-merge rebuild from W, so they are not offered.\n"
    "Distillation (--objective kd|rkl|jsd): per trained token (1-W)*CE + W*T^2*D, D the forward "
    "KL(teacher||model),\nthe reverse KL, or the generalised JSD (TRL's GKD: beta 0 forward, 1 "
    "reverse) at temperature T.\n--teacher self distils the unquantised base into its quantised "
    "copy; --teacher DIR needs the\nstudent's tokenizer (a larger, padded vocabulary is cut to the "
    "student's). --teacher-cache FILE\n(lora-teacher) compares over the cache's k ids plus one "
    "bucket for all the others; its data,\ntemperature and vocabulary must be this run's.\n";

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    train_args a;
    a.model = arg_file1("m", "model", "DIR", "base model folder (Hugging Face)");
    a.data = arg_file1(NULL, "data", "FILE", "training data (JSONL)");
    a.out = arg_file1("o", "out", "DIR", "output adapter folder");
    a.quant = arg_str0(NULL, "quant", "TYPE",
                       "base format: nf4 (default), q4_0, iq4_nl, q8_0, "
                       "none (f32)");
    a.quant_embed = arg_str0(NULL, "quant-embed", "TYPE",
                             "embeddings/LM head: f32 (default) or "
                             "q8_0");
    a.rank = arg_int0(NULL, "rank", "R", "LoRA rank (default 8)");
    a.alpha = arg_dbl0(NULL, "alpha", "A", "LoRA alpha (default: the rank, scale 1)");
    a.dropout = arg_dbl0(NULL, "dropout", "P", "LoRA dropout (default 0)");
    a.targets = arg_str0(NULL, "targets", "LIST", "modules: q,k,v,o,gate,up,down (default all)");
    a.rslora = arg_lit0(NULL, "rslora", "scale alpha/sqrt(r) (rank-stabilised LoRA)");
    a.lr = arg_dbl0(NULL, "lr", "LR", "peak learning rate (default 2e-4)");
    a.lr_ratio_b = arg_dbl0(NULL, "lr-ratio-b", "X", "LoRA+: B's learning rate = X times A's");
    a.optimizer = arg_str0(NULL, "optimizer", "adamw|sgd", "optimiser (default adamw)");
    a.weight_decay = arg_dbl0(NULL, "weight-decay", "W", "weight decay (default 0)");
    a.max_grad_norm =
        arg_dbl0(NULL, "max-grad-norm", "N", "clip the global norm (default 1, 0 off)");
    a.schedule = arg_str0(NULL, "schedule", "NAME", "cosine, linear or constant (default linear)");
    a.warmup = arg_int0(NULL, "warmup", "N", "linear warmup steps (default 0)");
    a.steps = arg_int0(NULL, "steps", "N", "optimiser steps");
    a.epochs = arg_dbl0(NULL, "epochs", "E", "passes over the data (default 1)");
    a.seq_len = arg_int0(NULL, "seq-len", "T", "tokens per packed row (default 512)");
    a.batch = arg_int0(NULL, "batch", "B", "rows per micro-batch (default 1)");
    a.grad_accum = arg_int0(NULL, "grad-accum", "K", "micro-batches per step (default 1)");
    a.init_adapter = arg_file0(NULL, "init-adapter", "DIR", "start from this PEFT adapter");
    a.init = arg_str0(NULL, "init", "peft|loftq",
                      "fresh adapter: peft (default) or loftq (SVD of W - Q(W))");
    a.resume =
        arg_file0(NULL, "resume", "DIR", "continue from a checkpoint (or the newest in DIR)");
    a.save_every = arg_int0(NULL, "save-every", "N", "checkpoint every N steps");
    a.save_limit =
        arg_int0(NULL, "save-limit", "K", "keep the K newest checkpoints (default 2, 0: all)");
    a.eval_data = arg_file0(NULL, "eval-data", "FILE", "held-out data for evaluation");
    a.eval_every = arg_int0(NULL, "eval-every", "N", "evaluate every N steps (and at the end)");
    a.log_every = arg_int0(NULL, "log-every", "N", "progress line every N steps (non-terminal)");
    a.objective = arg_str0(NULL, "objective", "NAME",
                           "sft (default); distillation: kd (forward KL), rkl (reverse KL), jsd");
    a.teacher = arg_str0(NULL, "teacher", "DIR|self",
                         "teacher model run alongside (self: the base unquantised)");
    a.teacher_adapter =
        arg_strn(NULL, "teacher-adapter", "DIR[:scale]", 0, 8, "adapter applied to the teacher");
    a.teacher_quant =
        arg_str0(NULL, "teacher-quant", "TYPE", "teacher format: none (default), nf4, q8_0, ...");
    a.teacher_cache = arg_str0(NULL, "teacher-cache", "FILE", "top-k teacher cache (lora-teacher)");
    a.kd_temp = arg_dbl0(NULL, "kd-temp", "T", "distillation temperature (default 1)");
    a.kd_weight = arg_dbl0(NULL, "kd-weight", "W",
                           "loss = (1-W) cross-entropy + W T^2 divergence (default 1)");
    a.jsd_beta =
        arg_dbl0(NULL, "jsd-beta", "B", "JSD's beta: 0 forward KL, 1 reverse (default 0.5)");
    a.fields = arg_str0(NULL, "fields", "K=COL,...",
                        "column names (e.g. prompt=question,"
                        "completion=answer)");
    a.chat_template = arg_str0(NULL, "chat-template", "NAME", "chat format for messages data");
    a.strict = arg_lit0(NULL, "strict", "a bad data line is fatal");
    a.dry_run = arg_lit0(NULL, "dry-run", "print the memory plan and exit (1 if it does not fit)");
    a.no_ckpt = arg_lit0(NULL, "no-checkpointing",
                         "keep every layer's activations (faster backward, more memory)");
    a.force = arg_lit0(NULL, "force", "overwrite an adapter in --out");
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model,
                  a.data,
                  a.out,
                  a.quant,
                  a.quant_embed,
                  a.rank,
                  a.alpha,
                  a.dropout,
                  a.targets,
                  a.rslora,
                  a.lr,
                  a.lr_ratio_b,
                  a.optimizer,
                  a.weight_decay,
                  a.max_grad_norm,
                  a.schedule,
                  a.warmup,
                  a.steps,
                  a.epochs,
                  a.seq_len,
                  a.batch,
                  a.grad_accum,
                  a.init_adapter,
                  a.init,
                  a.resume,
                  a.save_every,
                  a.save_limit,
                  a.eval_data,
                  a.eval_every,
                  a.log_every,
                  a.objective,
                  a.teacher,
                  a.teacher_cache,
                  a.teacher_adapter,
                  a.teacher_quant,
                  a.kd_temp,
                  a.kd_weight,
                  a.jsd_beta,
                  a.fields,
                  a.chat_template,
                  a.strict,
                  a.dry_run,
                  a.no_ckpt,
                  a.force,
                  CLI_COMMON_ENTRIES(c),
                  end};
    int rc =
        cli_parse(argc, argv, at, end, &c, TOOL,
                  "Train a LoRA adapter (SFT or distillation) on a frozen base model.", GLOSSARY);
    if (rc >= 0)
        goto done;
    train_ctx x = {.a = &a,
                   .c = &c,
                   .out = a.out->filename[0],
                   .tty = isatty(2),
                   .eval_loss_last = NAN,
                   .eval_kl_last = NAN,
                   .saved_step = -1};
    x.mp = lk_model_params_default();
    x.mp.n_threads = cli_threads(&c);
    x.mp.quant = LK_QTYPE_NF4; /* QLoRA: the base lives in 4 bits unless asked otherwise */
    rc = cli_parse_quant(TOOL, a.quant, a.quant_embed, &x.mp);
    if (rc < 0)
        rc = parse_params(&a, &c, &x.tp);
    if (rc < 0)
        rc = parse_objective(&a, &x.tp);
    if (rc < 0)
        rc = parse_init(&a, &x.mp, &x.tp);
    if (rc < 0 && a.seq_len->count && a.seq_len->ival[0] < 2)
        rc = cli_usage_error(TOOL, "--seq-len: expected >= 2");
    if (rc < 0 && a.save_limit->count && a.save_limit->ival[0] < 0)
        rc = cli_usage_error(TOOL, "--save-limit: expected >= 0 (0 keeps every checkpoint)");
    if (rc < 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rc = run(&x);
    }
    free(x.eval_pts);
    lk_trainer_free(x.t);
    lk_dataset_free(x.data);
    lk_dataset_free(x.eval);
    lk_tokenizer_free(x.tok);
    lk_model_free(x.m);
    cli_teacher_free(&x.teacher);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
