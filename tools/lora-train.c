/* lora-train — LoRA fine-tuning (SFT or distillation) of a frozen base on a JSONL dataset; writes a
 * Hugging Face PEFT adapter to -o DIR, checkpoints to DIR/checkpoint-N (resumable, Ctrl-C saves
 * one), a loss curve to DIR/loss.svg. Progress on stderr; --json: one JSON object per step and eval
 * on stdout. The options are the library's (lk_train_params and the run's model, data and run
 * folder options: defaults, checks and names live there); this file maps flags onto them, shows
 * progress and calls the library, whose run folder (lorakit/run.h) keeps OUT whole.
 * Under mpirun (or srun) every process is one rank of a data-parallel run (lorakit/dist.h): rank 0
 * alone prints progress and writes OUT; every step the ranks agree on whether to stop, and each
 * fallible phase ends with an agreement, so that all ranks exit together with the same code.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-train";
static char g_tool[48]; /* "lora-train[rank R]" on the other ranks of a group */

typedef struct {
    struct arg_file *model, *data, *out, *eval_data, *init_adapter, *resume, *gguf_lora;
    struct arg_str *quant, *quant_embed, *compute, *targets, *optimizer, *schedule, *objective;
    struct arg_str *teacher, *teacher_cache, *teacher_adapter, *teacher_quant;
    struct arg_str *init, *ckpt, *memory_limit;
    struct arg_int *rank, *steps, *seq_len, *batch, *grad_accum, *save_every, *eval_every;
    struct arg_int *warmup, *save_limit, *log_every, *eval_max;
    struct arg_dbl *alpha, *dropout, *lr, *lr_ratio_b, *epochs, *weight_decay, *max_grad_norm;
    struct arg_dbl *kd_temp, *kd_weight, *jsd_beta;
    struct arg_lit *rslora, *dry_run, *force, *no_ckpt;
    cli_data_opts d;
} train_args;

typedef struct {
    const train_args *a;
    const cli_common *c;
    const char *out;
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *data, *eval;
    lk_trainer *t;
    lk_run *run;
    lk_dist *dist;
    int lead; /* rank 0 (or no group): prints progress and writes the run folder */
    int stop; /* the signal the ranks agreed to stop on after the last step (0: none) */
    cli_teacher teacher;
    struct lk_train_params tp;
    struct lk_model_params mp;
    struct lk_dataset_params dp;
    struct lk_run_params rp;
    double t0, eval_loss_last, eval_kl_last;
    double eval_secs; /* time spent evaluating (left out of tokens/s and the ETA) */
    int64_t tokens_done, start_step;
    int64_t empty_steps, nonfinite_steps, updates; /* this process's steps; updates: the run's */
    float *eval_pts;                               /* [steps] eval loss at that step or NaN */
    char *base_name;          /* the model as the adapter records it (lk_model_name_or_path) */
    const char *no_tokenizer; /* why the model has no tokenizer (pre-tokenised data only) */
    int tty;
} train_ctx;

/* ---- options: flags onto the library's fields, checked by the library ---- */

static int map_names(const train_args *a, struct lk_train_params *p)
{
    lk_status s = LK_OK;
    if (a->optimizer->count)
        s = lk_optimizer_from_name(a->optimizer->sval[0], &p->optimizer);
    if (s == LK_OK && a->schedule->count)
        s = lk_schedule_from_name(a->schedule->sval[0], &p->schedule);
    if (s == LK_OK && a->objective->count)
        s = lk_objective_from_name(a->objective->sval[0], &p->objective);
    if (s == LK_OK && a->init->count)
        s = lk_lora_init_from_name(a->init->sval[0], &p->init);
    if (s == LK_OK && a->targets->count)
        s = lk_targets_from_name(a->targets->sval[0], &p->targets);
    if (s == LK_OK && a->ckpt->count)
        s = lk_checkpointing_from_name(a->ckpt->sval[0], &p->checkpointing);
    if (s == LK_OK && a->memory_limit->count)
        s = lk_memory_limit_from_name(a->memory_limit->sval[0], &p->memory_limit);
    return cli_usage_status(TOOL, s);
}

static void map_numbers(const train_args *a, struct lk_train_params *p)
{
    CLI_SET_INT(a->rank, p->rank);
    CLI_SET_DBL(a->alpha, p->alpha);
    CLI_SET_DBL(a->dropout, p->dropout);
    CLI_SET_DBL(a->lr, p->lr);
    CLI_SET_DBL(a->lr_ratio_b, p->lr_ratio_b);
    CLI_SET_DBL(a->weight_decay, p->weight_decay);
    CLI_SET_DBL(a->max_grad_norm, p->max_grad_norm);
    CLI_SET_INT(a->warmup, p->warmup_steps);
    CLI_SET_INT(a->steps, p->steps);
    CLI_SET_DBL(a->epochs, p->epochs);
    CLI_SET_INT(a->batch, p->batch);
    CLI_SET_INT(a->grad_accum, p->grad_accum);
    CLI_SET_DBL(a->kd_temp, p->kd_temp);
    CLI_SET_DBL(a->kd_weight, p->kd_weight);
    CLI_SET_DBL(a->jsd_beta, p->jsd_beta);
    p->rslora = a->rslora->count > 0;
    if (a->no_ckpt->count)
        p->checkpointing = LK_CKPT_OFF;
    if (a->init_adapter->count)
        p->init_adapter = a->init_adapter->filename[0];
    if (a->teacher_cache->count)
        p->teacher_cache = a->teacher_cache->sval[0];
}

/* Which flags go together: what the fields cannot say (a flag given at its default value). */
static int check_flag_sets(const train_args *a, lk_objective obj)
{
    int kd_opts = a->teacher->count + a->teacher_cache->count + a->teacher_adapter->count +
                  a->teacher_quant->count + a->kd_temp->count + a->kd_weight->count +
                  a->jsd_beta->count;
    if (a->steps->count && a->epochs->count)
        return cli_usage_error(TOOL, "give --steps or --epochs, not both");
    if (a->no_ckpt->count && a->ckpt->count)
        return cli_usage_error(TOOL, "give --checkpointing or --no-checkpointing (the same as "
                                     "--checkpointing off), not both");
    if (a->alpha->count && !(a->alpha->dval[0] > 0))
        return cli_usage_error(TOOL,
                               "--alpha must be above 0, got %g (leave --alpha out for the "
                               "default: alpha = rank, a scale of 1)",
                               a->alpha->dval[0]);
    if (!a->eval_data->count && (a->eval_every->count || a->eval_max->count))
        return cli_usage_error(TOOL, "%s needs --eval-data FILE (held-out data to evaluate on)",
                               a->eval_every->count ? "--eval-every" : "--eval-max");
    const struct arg_int *every[] = {a->eval_every, a->eval_max, a->save_every, a->log_every};
    for (int i = 0; i < 4; i++) {
        int rc = cli_check_range(TOOL, every[i], 1, INT64_MAX, NULL);
        if (rc >= 0)
            return rc;
    }
    if (a->init->count && a->init_adapter->count)
        return cli_usage_error(TOOL, "--init and --init-adapter exclude each other (the adapter "
                                     "starts as the one given)");
    if (obj == LK_OBJ_SFT && kd_opts)
        return cli_usage_error(TOOL, "--teacher, --teacher-cache, --kd-temp, --kd-weight, "
                                     "--jsd-beta need --objective kd, rkl or jsd");
    if (obj == LK_OBJ_SFT)
        return -1;
    if (a->teacher->count == a->teacher_cache->count) /* the library sees the loaded teacher */
        return cli_usage_error(TOOL,
                               "--objective %s needs a teacher: --teacher DIR|self or "
                               "--teacher-cache FILE (one of them)",
                               lk_objective_name(obj));
    if (a->teacher_cache->count && (a->teacher_adapter->count || a->teacher_quant->count))
        return cli_usage_error(TOOL, "--teacher-adapter and --teacher-quant go with --teacher");
    if (a->jsd_beta->count && obj != LK_OBJ_JSD)
        return cli_usage_error(TOOL, "--jsd-beta goes with --objective jsd");
    return -1;
}

/* The training data's options (the eval data's are the same, unpacked and in file order). */
static int map_data(const train_args *a, const cli_common *c, struct lk_dataset_params *dp)
{
    *dp = lk_train_data_params_default();
    dp->seed = cli_seed(c);
    int rc = cli_data_params(TOOL, &a->d, dp);
    if (rc >= 0)
        return rc;
    CLI_SET_INT(a->seq_len, dp->seq_len);
    return cli_usage_status(TOOL, lk_train_data_params_check(dp));
}

static void on_damaged(void *user, const char *msg)
{
    (void)user;
    cli_line_clear(); /* shown with -q too, as the resume below: what the run continues from */
    fprintf(stderr, "%s: warning: %s; trying the checkpoint before it\n", TOOL, msg);
}

static int map_run(const train_args *a, struct lk_run_params *rp, char **base_name)
{
    *rp = lk_run_params_default();
    CLI_SET_INT(a->save_limit, rp->save_limit);
    rp->force = a->force->count || a->resume->count;
    /* the adapter names its base by absolute path (or hub id); a missing folder fails at load */
    if (lk_model_name_or_path(a->model->filename[0], base_name) != LK_OK)
        *base_name = NULL;
    rp->base_model = *base_name ? *base_name : a->model->filename[0];
    rp->on_damaged = on_damaged;
    return cli_usage_status(TOOL, lk_run_params_check(rp));
}

/* Every option, or the exit code of a usage error. */

/* --gguf-lora is written when the run ends: a folder it cannot be made in (its nearest existing
 * ancestor not a writable folder) fails now, not after the training. */
static int check_writable(const char *path)
{
    char d[4096];
    struct stat st;
    snprintf(d, sizeof d, "%s", path);
    for (;;) {
        char *slash = strrchr(d, '/');
        if (!slash) {
            snprintf(d, sizeof d, ".");
            break;
        }
        *slash = 0;
        if (!*d)
            snprintf(d, sizeof d, "/");
        if (stat(d, &st) == 0)
            break;
    }
    if (stat(d, &st) == 0 && S_ISDIR(st.st_mode) && access(d, W_OK) == 0)
        return -1;
    fprintf(stderr, "%s: error: --gguf-lora %s cannot be written: %s is not a writable folder\n",
            TOOL, path, d);
    return CLI_FAIL;
}
static int parse_options(train_ctx *x)
{
    const train_args *a = x->a;
    x->mp = lk_train_model_params_default();
    x->mp.n_threads = cli_threads(x->c);
    x->tp = lk_train_params_default();
    x->tp.seed = cli_seed(x->c);
    x->tp.dist = x->dist;
    int rc = cli_parse_quant(TOOL, a->quant, a->quant_embed, &x->mp);
    if (rc < 0)
        rc = cli_parse_compute(TOOL, a->compute, &x->mp);
    if (rc < 0)
        rc = map_names(a, &x->tp);
    if (rc < 0) {
        map_numbers(a, &x->tp);
        rc = check_flag_sets(a, x->tp.objective);
    }
    x->mp.memory_limit = x->tp.memory_limit; /* --compute auto's budget for the weights */
    if (rc < 0)
        rc = cli_usage_status(TOOL, lk_train_params_check(&x->tp, &x->mp));
    if (rc < 0)
        rc = map_data(a, x->c, &x->dp);
    if (rc < 0)
        rc = map_run(a, &x->rp, &x->base_name);
    struct stat st;
    if (rc < 0 && a->gguf_lora->count && !x->rp.force &&
        stat(a->gguf_lora->filename[0], &st) == 0) {
        fprintf(stderr, "%s: error: --gguf-lora %s already exists (hint: --force replaces it)\n",
                TOOL, a->gguf_lora->filename[0]);
        rc = CLI_FAIL;
    }
    if (rc < 0 && a->gguf_lora->count)
        rc = check_writable(a->gguf_lora->filename[0]);
    return rc;
}

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
    cli_note("LoftQ start (rank %lld, one iteration): the quantisation residual |W - Q(W)| of "
             "%lld modules reduced by %.1f%% on average (%.1f%% to %.1f%%), %.1f%% overall, in "
             "%.2f s",
             (long long)x->tp.rank, (long long)n, 100 * mean, 100 * lo, 100 * hi, 100 * total,
             secs);
}

/* ---- the run folder (lorakit/run.h) ---- */

/* The run folder: rank 0 opens it as its writer; the other ranks never touch it (their hosts
 * need not see it). */
static lk_status open_run(train_ctx *x)
{
    if (!x->lead)
        return LK_OK;
    CLI_TRY(lk_run_open(x->out, &x->rp, &x->run));
    int64_t swept = lk_run_swept(x->run);
    if (swept)
        cli_note("removed %lld incomplete file(s) or folder(s) left in %s by an interrupted run",
                 (long long)swept, x->out);
    return LK_OK;
}

/* --resume DIR: a checkpoint folder (DIR/state.ckpt) or a run's output folder, read by rank 0;
 * then every rank continues from rank 0's state. */
static lk_status resume(train_ctx *x)
{
    lk_status s = x->lead ? lk_run_resume(x->run, x->t, x->a->resume->filename[0]) : LK_OK;
    CLI_TRY(lk_dist_agree(x->dist, s));
    if (x->lead) {
        cli_line_clear();
        fprintf(stderr, "%s: resumed from %s at step %lld\n", TOOL, lk_run_resumed_from(x->run),
                (long long)lk_trainer_steps_done(x->t));
    }
    return lk_trainer_sync(x->t);
}

/* Rank 0 saves; every rank learns whether it could. */
static lk_status save_checkpoint(train_ctx *x)
{
    int saved;
    CLI_TRY(lk_dist_agree(x->dist, x->lead ? lk_run_save_checkpoint(x->run, x->t, &saved) : LK_OK));
    if (!x->lead)
        return LK_OK;
    if (saved)
        cli_note("checkpoint saved to %s", lk_run_last_checkpoint(x->run));
    else
        cli_note("checkpoint %s is up to date", lk_run_last_checkpoint(x->run));
    return LK_OK;
}

/* ---- loss curve ---- */

/* The plot's frame: pixels of the plot area and the value ranges they show. */
typedef struct {
    double x0, x1, y0, y1; /* left, right, top, bottom */
    double lo, hi;         /* loss at the bottom and at the top */
    int64_t n;             /* steps: step 1 at x0, step n at x1 */
} plot_frame;

static double plot_x(const plot_frame *p, double step)
{
    return p->n > 1 ? p->x0 + (p->x1 - p->x0) * (step - 1) / (double)(p->n - 1)
                    : (p->x0 + p->x1) / 2;
}

static double plot_y(const plot_frame *p, double v)
{
    return p->y1 - (p->y1 - p->y0) * (v - p->lo) / (p->hi - p->lo);
}

/* The loss range to show: the finite training (h) and evaluation (e, may be NULL) losses with a
 * margin, widened to whole ticks, never below 0 when the losses are not. Returns the y ticks. */
static int loss_range(const float *h, const float *e, int64_t n, plot_frame *p, double *first,
                      double *step)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            const float *v = k ? e : h;
            if (v && isfinite(v[i]))
                lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
        }
    if (!(hi >= lo))
        return 0;
    double pad = hi - lo > 1e-9 ? 0.06 * (hi - lo) : fmax(0.05 * fabs(hi), 0.05);
    double a = lo >= 0 && lo - pad < 0 ? 0 : lo - pad, b = hi + pad;
    cli_nice_ticks(a, b, 7, first, step);
    p->lo = floor(a / *step + 1e-9) * *step; /* whole ticks at both ends */
    p->hi = ceil(b / *step - 1e-9) * *step;
    *first = p->lo;
    return (int)lround((p->hi - p->lo) / *step) + 1;
}

/* The title's second line: what was trained on what, and how. */
static void settings_line(const train_ctx *x, int64_t n, char *buf, size_t len)
{
    struct lk_adapter_base rec;
    lk_model_base_record(x->m, &rec);
    int gguf = strcmp(rec.quant, "gguf") == 0; /* a GGUF file's own types, maybe mixed */
    lk_qtype qe = gguf ? LK_QTYPE_F32 : lk_model_quant_embed(x->m);
    snprintf(buf, len,
             "%s, rank %lld, alpha %g, lr %g %s (warmup %lld), %lld steps x %lld rows x %lld "
             "tokens, base %s%s%s, %s compute",
             lk_objective_name(x->tp.objective), (long long)x->tp.rank,
             x->tp.alpha > 0 ? x->tp.alpha : (double)x->tp.rank, (double)x->tp.lr,
             lk_schedule_name(x->tp.schedule), (long long)x->tp.warmup_steps, (long long)n,
             (long long)(x->tp.batch * x->tp.grad_accum), (long long)lk_dataset_seq_len(x->data),
             gguf ? "gguf" : lk_qtype_name(lk_model_quant(x->m)),
             qe != LK_QTYPE_F32 ? ", embeddings " : "", qe != LK_QTYPE_F32 ? lk_qtype_name(qe) : "",
             rec.compute);
}

static const char *file_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') /* "DIR/" names DIR */
        n--;
    const char *p = path + n;
    while (p > path && p[-1] != '/')
        p--;
    return p;
}

/* Frame, grid, ticks with their values on both axes, axis names, title. */
static void draw_axes(cli_svg *s, const train_ctx *x, const plot_frame *p, int ny, double yf,
                      double ys)
{
    char t[600];
    double xf, xs;
    for (int i = 0; i < ny; i++) {
        double v = yf + i * ys, y = plot_y(p, v);
        cli_svg_line(s, p->x0, y, p->x1, y, i ? "#e6e6e6" : "black");
        cli_svg_line(s, p->x0 - 5, y, p->x0, y, "black");
        cli_svg_text(s, p->x0 - 8, y + 4, "text-anchor=\"end\"", "%g", v);
    }
    int nx = cli_nice_ticks(1, (double)(p->n > 1 ? p->n : 1), 10, &xf, &xs);
    if (xs < 1)
        nx = cli_nice_ticks(1, (double)p->n, (int)p->n, &xf, &xs);
    for (int i = 0; i < nx; i++) {
        double v = xf + i * xs, xx = plot_x(p, v);
        cli_svg_line(s, xx, p->y1, xx, p->y1 + 5, "black");
        cli_svg_text(s, xx, p->y1 + 19, "text-anchor=\"middle\"", "%g", v);
    }
    cli_svg_line(s, p->x0, p->y0, p->x0, p->y1, "black");
    cli_svg_text(s, (p->x0 + p->x1) / 2, p->y1 + 40, "text-anchor=\"middle\"", "optimiser step");
    snprintf(t, sizeof t, "text-anchor=\"middle\" transform=\"rotate(-90 18 %g)\"",
             (p->y0 + p->y1) / 2);
    cli_svg_text(s, 18, (p->y0 + p->y1) / 2, t, "loss (cross-entropy, nats per trained token)");
    cli_svg_text(s, p->x0, 22, "font-size=\"15\" font-weight=\"bold\"", "Training loss: %s on %s",
                 file_name(x->a->model->filename[0]), file_name(x->a->data->filename[0]));
    settings_line(x, p->n, t, sizeof t);
    cli_svg_text(s, p->x0, 40, "fill=\"#444444\"", "%s", t);
}

/* The legend: only what is drawn. */
static void draw_legend(cli_svg *s, const plot_frame *p, int evals, int gaps)
{
    double w = 250, h = 22 + 18 * (evals + gaps), x = p->x1 - w - 8, y = p->y0 + 8;
    cli_svg_rect(s, x, y, w, h, "white", NULL);
    cli_svg_line(s, x, y, x + w, y, "#bbbbbb");
    cli_svg_line(s, x, y + h, x + w, y + h, "#bbbbbb");
    cli_svg_line(s, x, y, x, y + h, "#bbbbbb");
    cli_svg_line(s, x + w, y, x + w, y + h, "#bbbbbb");
    double px[2] = {x + 10, x + 34}, py[2] = {y + 15, y + 15};
    cli_svg_polyline(s, px, py, 2, "#1f77b4", 2);
    cli_svg_text(s, x + 42, y + 19, NULL, "training loss (each step)");
    if (evals) {
        cli_svg_circle(s, x + 22, y + 33, 4, "#d62728");
        cli_svg_text(s, x + 42, y + 37, NULL, "held-out loss (--eval-data)");
    }
    if (gaps)
        cli_svg_text(s, x + 10, y + 19 + 18 * (evals + 1), "fill=\"#444444\"",
                     "gaps: steps without a loss");
}

/* The training loss as lines, broken where a step had none (skipped or empty). */
static int draw_losses(cli_svg *s, const plot_frame *p, const float *h, int64_t n, double *px)
{
    int gaps = 0;
    for (int64_t i = 0, m = 0; i <= n; i++) {
        if (i < n && isfinite(h[i])) {
            px[m] = plot_x(p, (double)(i + 1));
            px[n + m++] = plot_y(p, h[i]);
            continue;
        }
        gaps |= i < n;
        if (m == 1)
            cli_svg_circle(s, px[0], px[n], 1.5, "#1f77b4");
        else if (m > 1)
            cli_svg_polyline(s, px, px + n, m, "#1f77b4", 1.5);
        m = 0;
    }
    return gaps;
}

/* DIR/loss.svg (760 x 460): the training loss per step and the held-out loss at evaluations,
 * titled with the model, the data and the settings. */
static void write_svg(const train_ctx *x)
{
    if (!x->lead) /* rank 0 writes the run folder */
        return;
    int64_t n;
    const float *h = lk_trainer_loss_history(x->t, &n), *e = x->eval_pts;
    plot_frame p = {.x0 = 80, .x1 = 735, .y0 = 60, .y1 = 395, .n = n};
    double yf, ys;
    int ny = loss_range(h, e, n, &p, &yf, &ys), evals = 0;
    double *px = n > 0 ? malloc(2 * (size_t)n * sizeof *px) : NULL;
    cli_svg s;
    if (!ny || !px || cli_svg_begin(&s, 760, 460, 12, "white") != 0) {
        free(px);
        return;
    }
    draw_axes(&s, x, &p, ny, yf, ys);
    int gaps = draw_losses(&s, &p, h, n, px);
    for (int64_t i = 0; e && i < n; i++)
        if (isfinite(e[i])) {
            cli_svg_circle(&s, plot_x(&p, (double)(i + 1)), plot_y(&p, e[i]), 4, "#d62728");
            evals++;
        }
    draw_legend(&s, &p, evals > 0, gaps);
    char path[4200];
    snprintf(path, sizeof path, "%s/loss.svg", x->out);
    if (cli_svg_save(&s, path, 1) != LK_OK)
        cli_warn("the loss curve was not written: %s", lk_last_error());
    free(px);
}

/* ---- progress ---- */

static void fmt_time(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* Epochs done so far (fractional, as transformers logs them): the data cursor's place. */
static double epoch_now(const train_ctx *x)
{
    struct lk_data_cursor c;
    lk_dataset_get_cursor(x->data, &c);
    int64_t rows = lk_dataset_rows_in_epoch(x->data);
    return (double)c.epoch + (rows > 0 ? (double)c.next / (double)rows : 0);
}

/* Training time so far (evaluations left out) and the tokens/s it gives. */
static double train_secs(const train_ctx *x)
{
    double el = cli_now() - x->t0 - x->eval_secs;
    return el > 1e-9 ? el : 1e-9;
}

static const char *step_note(const struct lk_step_stats *st, int tty)
{
    if (st->empty)
        return tty ? " (no trained token)" : "  (no trained token: nothing to learn)";
    return st->skipped ? (tty ? " (skipped)" : "  (skipped: non-finite)") : "";
}

static void progress(train_ctx *x, const struct lk_step_stats *st, int last)
{
    double el = train_secs(x), tps = (double)x->tokens_done / el;
    int64_t done = st->step - x->start_step, left = st->total_steps - st->step;
    double eta = done > 0 ? el / (double)done * (double)left : 0;
    char eta_s[32], el_s[32], loss[16];
    fmt_time(eta, eta_s, sizeof eta_s);
    fmt_time(el, el_s, sizeof el_s);
    snprintf(loss, sizeof loss, isfinite(st->loss) ? "%.4f" : "-", st->loss);
    if (x->c->quiet->count)
        return;
    if (x->tty) {
        int w = 20, fill = (int)(w * (double)st->step / (double)st->total_steps);
        char bar[32];
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        cli_line("[%s] %lld/%lld epoch %.2f loss %s gnorm %.3g lr %.2e %.0f tok/s ETA %s RSS "
                 "%.0fM%s",
                 bar, (long long)st->step, (long long)st->total_steps, epoch_now(x), loss,
                 st->grad_norm, st->lr, tps, eta_s, cli_rss_mib(), step_note(st, 1));
        if (last)
            cli_line_end();
        return;
    }
    int64_t every = x->a->log_every->count ? x->a->log_every->ival[0]
                                           : (st->total_steps > 20 ? st->total_steps / 20 : 1);
    if (last || st->step % every == 0)
        fprintf(stderr,
                "step %lld/%lld  epoch %.2f  loss %s  grad norm %.3g  lr %.2e  %.0f tok/s  "
                "elapsed %s  ETA %s  RSS %.0fM%s\n",
                (long long)st->step, (long long)st->total_steps, epoch_now(x), loss, st->grad_norm,
                st->lr, tps, el_s, eta_s, cli_rss_mib(), step_note(st, 0));
}

static void json_step(const train_ctx *x, const struct lk_step_stats *st)
{
    cJSON *j = cli_json_new(x->c);
    cJSON_AddStringToObject(j, "type", "step");
    cJSON_AddNumberToObject(j, "step", (double)st->step);
    cJSON_AddNumberToObject(j, "total_steps", (double)st->total_steps);
    cJSON_AddNumberToObject(j, "epoch", epoch_now(x));
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
    cJSON_AddNumberToObject(j, "tokens_per_s", (double)x->tokens_done / train_secs(x));
    cJSON_AddBoolToObject(j, "skipped", st->skipped);
    cJSON_AddBoolToObject(j, "empty", st->empty);
    cJSON_AddNumberToObject(j, "elapsed_s", cli_now() - x->t0);
    if (lk_dist_size(x->dist) > 1) { /* data parallelism: what the gradient sum cost rank 0 */
        cJSON_AddNumberToObject(j, "ranks", lk_dist_size(x->dist));
        cJSON_AddNumberToObject(j, "allreduce_bytes", (double)st->comm_bytes);
        cJSON_AddNumberToObject(j, "allreduce_s", st->comm_s);
    }
    cli_json_emit(j);
}

/* Evaluation's own progress line (a terminal only); a signal stops it. */
typedef struct {
    const train_ctx *x;
    int64_t step;
} eval_watch;

static int eval_progress(void *user, int64_t done, int64_t total)
{
    const eval_watch *w = user;
    if (w->x->tty && !w->x->c->quiet->count && (done == total || done % 8 == 0))
        cli_line("eval at step %lld: %lld/%lld examples", (long long)w->step, (long long)done,
                 (long long)total);
    return cli_stop_signal();
}

static lk_status run_eval(train_ctx *x, int64_t step)
{
    struct lk_eval_params ep = lk_eval_params_default();
    struct lk_eval_result r;
    eval_watch w = {x, step};
    CLI_SET_INT(x->a->eval_max, ep.max_examples);
    ep.progress = eval_progress;
    ep.user = &w;
    double t0 = cli_now();
    lk_status s = lk_trainer_evaluate(x->t, x->eval, &ep, &r);
    x->eval_secs += cli_now() - t0;
    cli_line_clear();
    if (s == LK_ERR_INTERRUPTED)
        return LK_OK; /* the loop sees the signal and saves a checkpoint */
    CLI_TRY(s);
    x->eval_loss_last = r.loss;
    x->eval_kl_last = r.kl;
    if (x->eval_pts && step > 0)
        x->eval_pts[step - 1] = (float)r.loss;
    if (x->c->json->count) {
        cJSON *j = cli_json_new(x->c);
        cJSON_AddStringToObject(j, "type", "eval");
        cJSON_AddNumberToObject(j, "step", (double)step);
        cJSON_AddNumberToObject(j, "eval_loss", r.loss);
        cJSON_AddNumberToObject(j, "eval_perplexity", exp(r.loss));
        cJSON_AddNumberToObject(j, "eval_tokens", (double)r.tokens);
        cJSON_AddNumberToObject(j, "eval_examples", (double)r.examples);
        cJSON_AddNumberToObject(j, "eval_s", cli_now() - t0);
        if (isfinite(r.kl))
            cJSON_AddNumberToObject(j, "eval_kl", r.kl);
        cli_json_emit(j);
    }
    char kls[48] = "";
    if (isfinite(r.kl))
        snprintf(kls, sizeof kls, "  kl to teacher %.4f", r.kl);
    cli_note("eval at step %lld: loss %.4f  perplexity %.3f%s  (%lld tokens of %lld examples, "
             "%.1f s)",
             (long long)step, r.loss, exp(r.loss), kls, (long long)r.tokens, (long long)r.examples,
             cli_now() - t0);
    return LK_OK;
}

/* ---- the run ---- */

static lk_status load_data(train_ctx *x, const char *path, int train, lk_dataset **out)
{
    struct lk_dataset_params dp = x->dp;
    const struct lk_model_config *cfg = lk_model_get_config(x->m);
    dp.shuffle = dp.pack = train;    /* evaluation: every example on its own, in file order */
    dp.vocab_size = cfg->vocab_size; /* without a tokenizer: pre-tokenised data, padded with */
    dp.pad_id = cfg->n_eos > 0 ? (int32_t)cfg->eos_ids[0] : 0; /* EOS as a tokenizer would */
    return lk_dataset_load(path, x->tok, &dp, out);
}

/* Model, tokenizer (none is fine for pre-tokenised input_ids data), training and eval data. */
static lk_status setup(train_ctx *x)
{
    const train_args *a = x->a;
    static char why[4096];
    CLI_TRY(lk_model_load(a->model->filename[0], &x->mp, &x->m));
    if (lk_tokenizer_load(a->model->filename[0], &x->tok) != LK_OK) {
        snprintf(why, sizeof why, "%s", lk_last_error());
        x->no_tokenizer = why;
        x->tok = NULL;
    }
    CLI_TRY(load_data(x, a->data->filename[0], 1, &x->data));
    if (a->eval_data->count)
        CLI_TRY(load_data(x, a->eval_data->filename[0], 0, &x->eval));
    lk_tokenizer_free(x->tok); /* the data is tokenised: its ~30 MiB (Qwen2.5's) go back */
    x->tok = NULL;
    cli_trim_heap(); /* and the heap's free pages with them */
    return LK_OK;
}

/* The memory plan against what this machine can give now (MemAvailable, cgroup, ulimit -v).
 * *need: the plan's peak; returns the bytes available and names the limit in *what. */
static double memory_check(train_ctx *x, int64_t *ad, int64_t *opt, int64_t *act, int64_t *need,
                           const char **what)
{
    int64_t seq = lk_dataset_seq_len(x->data);
    *need = lk_model_weight_bytes(x->m) + lk_trainer_memory_plan(x->m, &x->tp, seq, ad, opt, act);
    if (x->tp.teacher) /* an online teacher's weights (lk_trainer_kept_layers counts them too) */
        *need += lk_model_weight_bytes(x->tp.teacher);
    return (double)lk_memory_budget(x->tp.memory_limit, what);
}

static void warn_memory(const train_ctx *x, int64_t need, double have, const char *what)
{
    char of_it[96] = ""; /* a teacher's weights: the other size in the plan */
    if (x->tp.teacher)
        snprintf(of_it, sizeof of_it, " (%.1f MiB of it the teacher's weights, on %s)",
                 lk_model_weight_bytes(x->tp.teacher) / 1048576.0,
                 lk_compute_name(lk_model_compute(x->tp.teacher)));
    cli_line_clear(); /* shown with -q too: the run is likely to fail */
    fprintf(stderr,
            "%s: warning: the plan needs %.0f MiB%s, more than the %.0f MiB available (%s); the "
            "run would fail or swap (hint: lower --seq-len or --batch, use --grad-accum, "
            "--checkpointing auto or on%s)\n",
            TOOL, need / 1048576.0, of_it, have / 1048576.0, what,
            lk_model_compute(x->m) == LK_COMPUTE_INT8
                ? ", or --compute f32: no int8 copies, and an NF4 base without its int8 codebook "
                  "corrections"
                : "");
}

static int dry_run(train_ctx *x)
{
    int64_t ad, opt, act, total;
    const char *what;
    double have = memory_check(x, &ad, &opt, &act, &total, &what);
    int64_t seq = lk_dataset_seq_len(x->data), q8t;
    int head; /* --compute int8's transposed copies kept: the LM head's, `copies` layers' */
    int64_t copies = lk_trainer_int8_copies(x->m, &x->tp, seq, &head, &q8t);
    int64_t base =
        lk_model_weight_bytes(x->m) + (x->tp.teacher ? lk_model_weight_bytes(x->tp.teacher) : 0);
    int64_t runtime = total - base - ad - opt - act - q8t; /* libraries, stacks, BLAS buffers */
    const char *compute = lk_compute_name(lk_model_compute(x->m));
    int64_t kept = lk_trainer_kept_layers(x->m, &x->tp, seq);
    int64_t layers = lk_model_get_config(x->m)->n_layers;
    char copy_note[160] = "";
    if (lk_model_int8_matrices(x->m) > 0 && (copies < layers || head == 0))
        snprintf(copy_note, sizeof copy_note, "; kept: %s%lld of %lld layers'%s",
                 head == 1 ? "the LM head's and " : "", (long long)copies, (long long)layers,
                 copies < layers ? ", the others' built before their backward" : "");
    if (head == 0)
        snprintf(copy_note + strlen(copy_note), sizeof copy_note - strlen(copy_note),
                 "; the LM head's dx on the f32 kernel");
    const char *ckpt = lk_checkpointing_name(x->tp.checkpointing);
    int fits = (double)total <= have;
    if (x->c->json->count) {
        cJSON *j = cli_json_new(x->c);
        cJSON_AddStringToObject(j, "type", "plan");
        cJSON_AddNumberToObject(j, "base_bytes", (double)base);
        cJSON_AddNumberToObject(j, "adapter_bytes", (double)ad);
        cJSON_AddNumberToObject(j, "optimizer_bytes", (double)opt);
        cJSON_AddNumberToObject(j, "activation_bytes", (double)act);
        cJSON_AddStringToObject(j, "compute", compute);
        cJSON_AddNumberToObject(j, "int8_matrices", (double)lk_model_int8_matrices(x->m));
        cJSON_AddNumberToObject(j, "int8_copy_bytes", (double)q8t);
        cJSON_AddNumberToObject(j, "runtime_bytes", (double)runtime);
        cJSON_AddNumberToObject(j, "int8_copy_layers", (double)copies);
        cJSON_AddBoolToObject(j, "int8_copy_head", head == 1);
        cJSON_AddNumberToObject(j, "peak_bytes", (double)total);
        cJSON_AddNumberToObject(j, "available_bytes", have);
        cJSON_AddStringToObject(j, "available_limit", what);
        cJSON_AddStringToObject(j, "checkpointing", ckpt);
        cJSON_AddNumberToObject(j, "layers", (double)layers);
        cJSON_AddNumberToObject(j, "layers_kept", (double)kept);
        cJSON_AddBoolToObject(j, "fits", fits);
        cJSON_AddStringToObject(j, "compute_reason", lk_model_compute_reason(x->m));
        if (x->tp.teacher) {
            cJSON_AddStringToObject(j, "teacher_compute",
                                    lk_compute_name(lk_model_compute(x->tp.teacher)));
            cJSON_AddStringToObject(j, "teacher_compute_reason",
                                    lk_model_compute_reason(x->tp.teacher));
        }
        cli_json_emit(j);
    } else if (x->lead) { /* each rank checks its own host; rank 0 prints the plan */
        printf("memory plan (seq-len %lld, batch %lld):\n  base           %9.1f MiB\n"
               "  adapter+grads  %9.1f MiB\n  optimizer      %9.1f MiB\n"
               "  activations    %9.1f MiB (checkpointing %s: %lld of %lld layers keep their "
               "activations, %lld recomputed)\n"
               "  int8 copies    %9.1f MiB (--compute %s: transposed Q8_0 copies of %lld "
               "matrices, for the backward%s)\n"
               "  runtime        %9.1f MiB (libraries, thread stacks, BLAS buffers)\n"
               "  peak estimate  %9.1f MiB of %.0f MiB available (%s)\n"
               "  compute        %s (%s)\n",
               (long long)seq, (long long)x->tp.batch, base / 1048576.0, ad / 1048576.0,
               opt / 1048576.0, act / 1048576.0, ckpt, (long long)kept, (long long)layers,
               (long long)(layers - kept), q8t / 1048576.0, compute,
               (long long)lk_model_int8_matrices(x->m), copy_note, runtime / 1048576.0,
               total / 1048576.0, have / 1048576.0, what, compute, lk_model_compute_reason(x->m));
        if (x->tp.teacher)
            printf("  teacher        %s (%s)\n", lk_compute_name(lk_model_compute(x->tp.teacher)),
                   lk_model_compute_reason(x->tp.teacher));
    }
    if (!fits)
        warn_memory(x, total, have, what);
    return fits ? CLI_OK : CLI_FAIL;
}

/* The same check before a real run: a warning only (the estimate is not exact). */
static void check_memory(train_ctx *x)
{
    int64_t ad, opt, act, total;
    const char *what;
    double have = memory_check(x, &ad, &opt, &act, &total, &what);
    if ((double)total > have)
        warn_memory(x, total, have, what);
}

/* The stop every rank agrees on: the highest signal caught by any rank (0: none), so that all
 * ranks stop after the same step (mpirun and srun deliver a signal to each rank at its own
 * moment). Without a group: this process's signal. */
static lk_status agree_stop(train_ctx *x)
{
    int64_t sig = cli_stop_signal();
    CLI_TRY(lk_dist_max(x->dist, &sig));
    x->stop = (int)sig;
    return LK_OK;
}

/* Steps until done or a signal; save/eval on schedule. */
static lk_status loop(train_ctx *x)
{
    int64_t save_every = x->a->save_every->count ? x->a->save_every->ival[0] : 0;
    int64_t eval_every = x->a->eval_every->count ? x->a->eval_every->ival[0] : 0;
    x->start_step = lk_trainer_steps_done(x->t);
    x->t0 = cli_now();
    CLI_TRY(agree_stop(x));
    while (lk_trainer_steps_done(x->t) < lk_trainer_total_steps(x->t) && !x->stop) {
        struct lk_step_stats st;
        lk_status s = lk_trainer_step(x->t, &st);
        x->tokens_done += st.tokens;
        if (s != LK_OK)
            return s;
        x->empty_steps += st.empty;
        x->nonfinite_steps += st.skipped && !st.empty;
        x->updates = st.updates_total;
        CLI_TRY(agree_stop(x));
        int last = st.step == st.total_steps;
        progress(x, &st, last);
        if (x->c->json->count)
            json_step(x, &st);
        if (x->eval && !x->stop && ((eval_every && st.step % eval_every == 0) || last)) {
            CLI_TRY(run_eval(x, st.step));
            CLI_TRY(agree_stop(x)); /* a signal during the evaluation stops here */
        }
        if (save_every && st.step % save_every == 0 && !last)
            CLI_TRY(save_checkpoint(x));
    }
    return LK_OK;
}

static void report_done(const train_ctx *x)
{
    if (!x->lead)
        return;
    int64_t n, last = -1;
    const float *h = lk_trainer_loss_history(x->t, &n);
    for (int64_t i = 0; i < n; i++) /* the last step that had a loss */
        last = isfinite(h[i]) ? i : last;
    if (x->empty_steps)
        cli_warn("%lld of the %lld steps run had no trained token and changed nothing (hint: "
                 "raise --seq-len, or check the data's masks with lora-tokenize --data --show)",
                 (long long)x->empty_steps, (long long)(n - x->start_step));
    if (!x->c->json->count) {
        printf("adapter written to %s (%lld steps, final training loss %.4f at step %lld%s)\n",
               x->out, (long long)n, last >= 0 ? h[last] : NAN, (long long)(last + 1),
               x->eval && isfinite(x->eval_loss_last) ? ", see eval above" : "");
        return;
    }
    cJSON *j = cli_json_new(x->c);
    cJSON_AddStringToObject(j, "type", "done");
    cJSON_AddStringToObject(j, "out", x->out);
    cJSON_AddNumberToObject(j, "steps", (double)n);
    cJSON_AddNumberToObject(j, "empty_steps", (double)x->empty_steps);
    if (last >= 0)
        cJSON_AddNumberToObject(j, "final_loss", h[last]);
    if (x->eval && isfinite(x->eval_loss_last))
        cJSON_AddNumberToObject(j, "eval_loss", x->eval_loss_last);
    if (x->eval && isfinite(x->eval_kl_last))
        cJSON_AddNumberToObject(j, "eval_kl", x->eval_kl_last);
    cli_json_emit(j);
}

/* A signal: a checkpoint and exit 130 (SIGINT) or 143 (SIGTERM). Otherwise the last checkpoint
 * and the adapter. */
static int finish(train_ctx *x)
{
    int sig = x->stop;
    if (sig) {
        if (x->lead) {
            cli_line_end(); /* the progress line stays: where it stopped */
            fprintf(stderr, "%s: interrupted at step %lld: saving a checkpoint\n", TOOL,
                    (long long)lk_trainer_steps_done(x->t));
        }
        lk_status s = save_checkpoint(x);
        write_svg(x);
        if (s != LK_OK)
            return cli_fail(TOOL, s);
        return sig == SIGTERM ? 143 : CLI_INTERRUPTED;
    }
    if (x->updates == 0) { /* every step had nothing to learn or went non-finite */
        write_svg(x);
        cli_line_end();
        fprintf(stderr,
                "%s: error: the run trained nothing: of %lld steps, %lld had no trained token and "
                "%lld were skipped as non-finite; no adapter was written to %s (hint: raise "
                "--seq-len, check the data's masks with lora-tokenize --data --show, or lower "
                "--lr)\n",
                TOOL, (long long)lk_trainer_steps_done(x->t), (long long)x->empty_steps,
                (long long)x->nonfinite_steps, x->out);
        return CLI_FAIL;
    }
    lk_status s = save_checkpoint(x);
    if (s == LK_OK)
        s = lk_dist_agree(x->dist, x->lead ? lk_run_save_adapter(x->run, x->t) : LK_OK);
    if (s == LK_OK && x->a->gguf_lora->count && x->lead)
        s = lk_trainer_save_gguf_lora(x->t, x->a->gguf_lora->filename[0],
                                      x->a->force->count || x->a->resume->count);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    write_svg(x);
    report_done(x);
    return CLI_OK;
}

/* --resume under --compute auto: the run continues in its checkpoint's mode (rank 0 reads it,
 * every rank takes it), which the model then takes instead of choosing. */
static lk_status resume_compute(train_ctx *x)
{
    if (!x->a->resume->count || x->mp.compute != LK_COMPUTE_AUTO)
        return LK_OK;
    lk_compute c = LK_COMPUTE_AUTO;
    lk_status s = x->lead ? lk_run_resume_compute(x->a->resume->filename[0], &c) : LK_OK;
    CLI_TRY(lk_dist_agree(x->dist, s));
    int64_t v = x->lead ? (int64_t)c : -1;
    CLI_TRY(lk_dist_max(x->dist, &v));
    x->mp.resume_compute = (lk_compute)v;
    return LK_OK;
}

/* Models and data on every rank (and the teacher of --teacher): any rank's failure stops all. */
/* --teacher self on a student whose base is the teacher's own weights (--quant none, or a GGUF
 * file's own types) with no teacher adapter: the KL is zero at every step and trains nothing. */
static int self_teaches_nothing(const train_ctx *x)
{
    struct lk_adapter_base st, te;
    if (strcmp(x->a->teacher->sval[0], "self") != 0 || x->teacher.ad.n > 0)
        return 0;
    lk_model_base_record(x->m, &st);
    lk_model_base_record(x->teacher.m, &te);
    if (strcmp(st.quant, te.quant) != 0 || strcmp(st.quant_embed, te.quant_embed) != 0)
        return 0;
    cli_usage_error(TOOL,
                    "--teacher self: the student's base is the teacher's own weights (%s, "
                    "embeddings %s), so the distillation term is zero and trains nothing "
                    "(--teacher self distils the unquantised base into a quantised student: give "
                    "--quant nf4 or another, --teacher-adapter, or --teacher DIR)",
                    st.quant, st.quant_embed);
    return 1;
}

static int load_all(train_ctx *x)
{
    lk_status rs = resume_compute(x);
    if (rs != LK_OK)
        return cli_fail(TOOL, rs);
    lk_status own = setup(x), s = lk_dist_agree(x->dist, own);
    if (s != LK_OK) {
        int rc = cli_fail(TOOL, s);
        if (own == LK_ERR_UNSUPPORTED && x->no_tokenizer) /* text data, no tokenizer to read it */
            fprintf(stderr, "%s: the model's tokenizer did not load: %s\n", TOOL, x->no_tokenizer);
        return rc;
    }
    if ((s = lk_train_params_check_model(&x->tp, x->m)) != LK_OK)
        return cli_usage_status(TOOL, s); /* --rank too large for this model */
    if (!x->a->teacher->count)
        return -1;
    /* the teacher's --compute auto: within what the student's weights leave of the budget */
    int rc = cli_teacher_load(TOOL, x->a->teacher->sval[0], x->a->model->filename[0],
                              x->a->teacher_adapter, x->a->teacher_quant, x->a->compute,
                              x->mp.n_threads, x->tp.memory_limit, lk_model_weight_bytes(x->m),
                              &x->teacher); /* prints its own error */
    s = lk_dist_agree(x->dist, rc >= 0 ? LK_ERR_IO : LK_OK);
    if (rc >= 0)
        return rc;
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    x->tp.teacher = x->teacher.m;
    return self_teaches_nothing(x) ? CLI_USAGE : -1;
}

/* --compute auto: the whole int8 plan against the budget (lk_trainer_create would run it too;
 * here before --dry-run shows the plan; a teacher on int8 gives way to the student when that
 * makes room), and with a group of ranks the same choice on every rank (the teacher's first: one
 * turned to f32 leaves the student more room; and again after the student's, which may have
 * turned it). */
static int choose_compute(train_ctx *x)
{
    lk_status s = x->teacher.m ? lk_trainer_agree_compute(x->dist, x->teacher.m) : LK_OK;
    if (s == LK_OK)
        s = lk_dist_agree(x->dist,
                          lk_trainer_choose_compute(x->m, &x->tp, lk_dataset_seq_len(x->data)));
    if (s == LK_OK)
        s = lk_trainer_agree_compute(x->dist, x->m);
    if (s == LK_OK && x->teacher.m)
        s = lk_trainer_agree_compute(x->dist, x->teacher.m);
    return s == LK_OK ? -1 : cli_fail(TOOL, s);
}

/* The trainer (collective: the ranks compare their runs; before OUT is made, so that data that
 * cannot train fails first), the run folder (rank 0) and its state (--resume). */
static lk_status start(train_ctx *x)
{
    check_memory(x);
    double t_init = cli_now();
    CLI_TRY(lk_trainer_create(x->m, x->data, &x->tp, &x->t));
    report_loftq(x, cli_now() - t_init);
    CLI_TRY(lk_dist_agree(x->dist, open_run(x)));
    if (x->a->resume->count)
        CLI_TRY(resume(x));
    return LK_OK;
}

/* Models and data, the run folder, the trainer (resumed with --resume), then the steps. */
static int run(train_ctx *x)
{
    int rc = load_all(x);
    if (rc < 0)
        rc = choose_compute(x);
    if (rc >= 0)
        return rc;
    if (x->a->dry_run->count)
        return dry_run(x);
    lk_status s = start(x);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    int64_t total = lk_trainer_total_steps(x->t);
    x->eval_pts = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    for (int64_t i = 0; x->eval_pts && i < total; i++)
        x->eval_pts[i] = NAN;
    int ranks = lk_dist_size(x->dist);
    if (ranks > 1)
        cli_note("%d ranks (%s), each computing %lld of every step's rows", ranks,
                 lk_dist_backend(x->dist), (long long)(x->tp.batch * x->tp.grad_accum));
    char base[96];
    struct lk_adapter_base rec;
    lk_model_base_record(x->m, &rec);
    cli_note("%lld steps of %lld rows x %lld tokens on the base %s, seed %llu", (long long)total,
             (long long)(x->tp.batch * x->tp.grad_accum * ranks),
             (long long)lk_dataset_seq_len(x->data),
             lk_adapter_base_describe(&rec, base, sizeof base), (unsigned long long)x->tp.seed);
    s = loop(x);
    if (s != LK_OK) {
        rc = cli_fail(TOOL, s);
        write_svg(x);
        return rc;
    }
    return finish(x);
}

static const char *GLOSSARY =
    "Data: JSONL (or a JSON array) of {\"text\"}, {\"prompt\",\"completion\"}, {\"messages\"}, "
    "Alpaca\n{\"instruction\",\"input\",\"output\"} or pre-tokenised {\"input_ids\",\"labels\"} "
    "(no tokenizer needed);\nprompts are masked. Chats may call tools (OpenAI tool_calls and tool "
    "turns, LLaMA-Factory's\nfunction_call and observation, a \"tools\" list) with the qwen2.5, "
    "chatml and llama3.1 templates.\nExamples are packed into rows of --seq-len tokens (positions "
    "restart, no attention across\nexamples); one whose trained tokens all fall past --seq-len "
    "trains nothing (counted and warned).\nProgress: step, epoch, loss (nats per trained token), "
    "gnorm (before clipping), lr, tokens/s and\nETA (evaluations left out), memory.\n"
    "Output: DIR/adapter_config.json + adapter_model.safetensors (Hugging Face PEFT; its metadata\n"
    "records the base it was trained on, which lora-eval, lora-generate and lora-merge then use),\n"
    "DIR/loss.svg, DIR/checkpoint-N/ (adapter + state.ckpt; --resume DIR continues from the "
    "newest).\nA run in which no step had a trained token fails and writes no adapter.\n"
    "Ctrl-C or SIGTERM saves a checkpoint and exits 130 / 143.\n"
    "--init loftq (LoftQ, Li et al. 2023, one iteration) starts s*B*A as the rank-r SVD of each "
    "layer's\nW - Q(W), W read again from the model folder: the adapter then belongs with a base "
    "quantised\nthe same way (--quant). More iterations would change the quantised base itself, "
    "which lora-eval\nand lora-merge rebuild from W, so they are not offered.\n"
    "Distillation (--objective kd|rkl|jsd): per trained token (1-W)*CE + W*T^2*D, D the forward "
    "KL(teacher||model),\nthe reverse KL, or the generalised JSD (TRL's GKD: beta 0 forward, 1 "
    "reverse) at temperature T.\n--teacher self distils the unquantised base into its quantised "
    "copy; --teacher DIR needs the\nstudent's tokenizer (a larger, padded vocabulary is cut to the "
    "student's). --teacher-cache FILE\n(lora-teacher) compares over the cache's k ids plus one "
    "bucket for all the others; its data,\ntemperature and vocabulary must be this run's.\n"
    "mpirun -np N lora-train ... (or srun --mpi=pmix): N processes on one machine or many, each\n"
    "computing --batch x --grad-accum rows of every step (the global batch is N times that);\n"
    "rank 0 writes OUT. The ranks must run the same model, data and flags (checked at the "
    "start).\n";

/* The options with the library's defaults in their help. */
static void make_args(train_args *a)
{
    const struct lk_train_params d = lk_train_params_default();
    const struct lk_dataset_params dd = lk_train_data_params_default();
    const struct lk_run_params rd = lk_run_params_default();
    const struct lk_model_params md = lk_train_model_params_default();
    char tg[64];
    a->model =
        arg_file1("m", "model", "DIR|GGUF",
                  "base model: Hugging Face folder (no tokenizer needed for input_ids data) or "
                  "llama.cpp GGUF file (llama, qwen2), used in place");
    a->data = arg_file1(NULL, "data", "FILE", "training data (JSONL)");
    a->out = arg_file1("o", "out", "DIR", "output adapter folder");
    a->quant = arg_str0(NULL, "quant", "TYPE",
                        cli_help("base format: nf4, q4_0, iq4_nl, q8_0, none (f32) (default %s)",
                                 lk_qtype_name(md.quant)));
    a->quant_embed = arg_str0(
        NULL, "quant-embed", "TYPE",
        cli_help("embeddings/LM head: f32 or q8_0 (default %s)", lk_qtype_name(md.quant_embed)));
    a->compute = cli_compute_arg();
    a->rank = arg_int0(NULL, "rank", "R", cli_help("LoRA rank (default %lld)", (long long)d.rank));
    a->alpha = arg_dbl0(NULL, "alpha", "A", "LoRA alpha > 0, scale alpha/rank (default: the rank)");
    a->dropout =
        arg_dbl0(NULL, "dropout", "P", cli_help("LoRA dropout (default %g)", (double)d.dropout));
    a->targets = arg_str0(NULL, "targets", "LIST",
                          cli_help("modules: q,k,v,o,gate,up,down (default %s)",
                                   lk_targets_name(d.targets, tg, sizeof tg)));
    a->rslora = arg_lit0(NULL, "rslora", "scale alpha/sqrt(r) (rank-stabilised LoRA)");
    a->lr = arg_dbl0(NULL, "lr", "LR", cli_help("peak learning rate (default %g)", (double)d.lr));
    a->lr_ratio_b = arg_dbl0(NULL, "lr-ratio-b", "X", "LoRA+: B's learning rate = X times A's");
    a->optimizer = arg_str0(NULL, "optimizer", "adamw|sgd",
                            cli_help("optimiser (default %s)", lk_optimizer_name(d.optimizer)));
    a->weight_decay = arg_dbl0(NULL, "weight-decay", "W",
                               cli_help("weight decay (default %g)", (double)d.weight_decay));
    a->max_grad_norm =
        arg_dbl0(NULL, "max-grad-norm", "N",
                 cli_help("clip the global norm (default %g, 0 off)", (double)d.max_grad_norm));
    a->schedule =
        arg_str0(NULL, "schedule", "NAME",
                 cli_help("cosine, linear or constant (default %s)", lk_schedule_name(d.schedule)));
    a->warmup = arg_int0(NULL, "warmup", "N",
                         cli_help("linear warmup steps (default %lld)", (long long)d.warmup_steps));
    a->steps = arg_int0(NULL, "steps", "N", "optimiser steps");
    a->epochs =
        arg_dbl0(NULL, "epochs", "E", cli_help("passes over the data (default %g)", d.epochs));
    a->seq_len = arg_int0(NULL, "seq-len", "T",
                          cli_help("tokens per packed row (default %lld)", (long long)dd.seq_len));
    a->batch = arg_int0(NULL, "batch", "B",
                        cli_help("rows per micro-batch (default %lld)", (long long)d.batch));
    a->grad_accum =
        arg_int0(NULL, "grad-accum", "K",
                 cli_help("micro-batches per step (default %lld)", (long long)d.grad_accum));
    a->init_adapter = arg_file0(NULL, "init-adapter", "DIR", "start from this PEFT adapter");
    a->init = arg_str0(NULL, "init", "peft|loftq",
                       cli_help("fresh adapter: peft or loftq (SVD of W - Q(W)) (default %s)",
                                lk_lora_init_name(d.init)));
    a->resume =
        arg_file0(NULL, "resume", "DIR",
                  "continue from a checkpoint (or the newest in DIR), with the options it was "
                  "made with; --compute auto takes its mode");
    a->save_every = arg_int0(NULL, "save-every", "N", "checkpoint every N steps");
    a->save_limit =
        arg_int0(NULL, "save-limit", "K",
                 cli_help("keep the K newest checkpoints (default %d, 0: all)", rd.save_limit));
    a->eval_data = arg_file0(NULL, "eval-data", "FILE", "held-out data for evaluation");
    a->eval_every =
        arg_int0(NULL, "eval-every", "N", "evaluate on --eval-data every N steps (and at the end)");
    a->eval_max = arg_int0(NULL, "eval-max", "N",
                           "evaluate a fixed sample of N --eval-data examples (default: all)");
    a->log_every = arg_int0(NULL, "log-every", "N", "progress line every N steps (non-terminal)");
    a->objective = arg_str0(NULL, "objective", "NAME",
                            cli_help("%s (default); distillation: kd (forward KL), rkl (reverse "
                                     "KL), jsd",
                                     lk_objective_name(d.objective)));
    a->teacher = arg_str0(NULL, "teacher", "DIR|self",
                          "teacher model run alongside (self: the base unquantised)");
    a->teacher_adapter =
        arg_strn(NULL, "teacher-adapter", "DIR[:scale]", 0, 8, "adapter applied to the teacher");
    a->teacher_quant =
        arg_str0(NULL, "teacher-quant", "TYPE",
                 "teacher format: none, nf4, q8_0, ... (default: the base --teacher-adapter was "
                 "trained on, else none)");
    a->teacher_cache =
        arg_str0(NULL, "teacher-cache", "FILE", "top-k teacher cache (lora-teacher)");
    a->kd_temp = arg_dbl0(NULL, "kd-temp", "T",
                          cli_help("distillation temperature (default %g)", (double)d.kd_temp));
    a->kd_weight = arg_dbl0(NULL, "kd-weight", "W",
                            cli_help("loss = (1-W) cross-entropy + W T^2 divergence (default %g)",
                                     (double)d.kd_weight));
    a->jsd_beta =
        arg_dbl0(NULL, "jsd-beta", "B",
                 cli_help("JSD's beta: 0 forward KL, 1 reverse (default %g)", (double)d.jsd_beta));
    cli_data_opts_init(&a->d);
    a->dry_run = arg_lit0(NULL, "dry-run", "print the memory plan and exit (1 if it does not fit)");
    a->ckpt = arg_str0(NULL, "checkpointing", "auto|on|off",
                       "activation checkpointing: auto (default) keeps every layer's activations "
                       "that the memory plan fits in --memory-limit (or the memory available) and "
                       "recomputes the rest in the backward; on: recompute all but the last "
                       "layer (least memory); off: keep all (fastest)");
    a->memory_limit = arg_str0(NULL, "memory-limit", "SIZE",
                               "memory the run may plan for, weights included (e.g. 3G, 512M; "
                               "default: the memory available): --checkpointing auto's budget, "
                               "how many of --compute int8's transposed copies are kept (the "
                               "others built per layer), --compute auto's choice (a --teacher's "
                               "within what the student's weights leave; it gives way to f32 "
                               "when that lets the student run int8), and the plan's check");
    a->no_ckpt = arg_lit0(NULL, "no-checkpointing", "the same as --checkpointing off");
    a->force = arg_lit0(NULL, "force", "overwrite an adapter in --out");
    a->gguf_lora = arg_file0(NULL, "gguf-lora", "FILE",
                             "also write the final adapter as a llama.cpp GGUF LoRA (f32), for "
                             "llama-cli --lora FILE on the base's GGUF");
}

/* The data-parallel group this process belongs to (alone without a launcher). The other ranks
 * print nothing but errors, which name their rank. */
static int open_group(train_ctx *x, cli_common *c)
{
    lk_status s = lk_dist_open(&x->dist);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    x->lead = lk_dist_rank(x->dist) == 0;
    if (!x->lead) {
        snprintf(g_tool, sizeof g_tool, "%s[rank %d]", TOOL, lk_dist_rank(x->dist));
        TOOL = g_tool;
        c->quiet->count = 1;
        c->json->count = 0;
        cli_set_voice(TOOL, 1);
        lk_set_log_level(LK_LOG_ERROR);
    }
    return -1;
}

static void free_ctx(train_ctx *x)
{
    free(x->eval_pts);
    free(x->base_name);
    lk_trainer_free(x->t);
    lk_run_close(x->run);
    lk_dataset_free(x->data);
    lk_dataset_free(x->eval);
    lk_tokenizer_free(x->tok);
    lk_model_free(x->m);
    cli_teacher_free(&x->teacher);
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    train_args a;
    make_args(&a);
    struct arg_end *end = arg_end(20);
    void *at[] = {a.model,
                  a.data,
                  a.out,
                  a.quant,
                  a.quant_embed,
                  a.compute,
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
                  a.eval_max,
                  a.log_every,
                  a.objective,
                  a.teacher,
                  a.teacher_cache,
                  a.teacher_adapter,
                  a.teacher_quant,
                  a.kd_temp,
                  a.kd_weight,
                  a.jsd_beta,
                  CLI_DATA_ENTRIES(a.d),
                  a.dry_run,
                  a.ckpt,
                  a.memory_limit,
                  a.no_ckpt,
                  a.force,
                  a.gguf_lora,
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
                   .updates = -1, /* unknown until a step runs */
                   .eval_loss_last = NAN,
                   .eval_kl_last = NAN};
    rc = open_group(&x, &c);
    if (rc < 0)
        rc = parse_options(&x);
    if (rc < 0) {
        cli_catch_stop(); /* a second Ctrl-C stops at once */
        rc = run(&x);
    }
    free_ctx(&x);
    lk_dist_close(x.dist);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
