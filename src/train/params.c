/* params.c — the options of a training run: their defaults (lk_train_params_default and the model
 * and data options a run starts from), the name tables of the enums a command line names
 * (optimiser, schedule, objective, adapter start, checkpointing; --memory-limit's sizes) and
 * lk_train_params_check, whose messages name
 * each option by its lora-train flag (the CLI names are the project's contract, DESIGN.md). */
#include "train/params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/option.h"
#include "core/status.h"

struct lk_train_params lk_train_params_default(void)
{
    struct lk_train_params p = {
        .rank = 8,
        .alpha = 0, /* the rank */
        .dropout = 0,
        .targets = LK_MOD_ALL,
        .rslora = 0,
        .init_adapter = NULL,
        .init = LK_INIT_PEFT,
        .optimizer = LK_OPT_ADAMW,
        .lr = 2e-4f,
        .lr_ratio_b = 1,
        .weight_decay = 0,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .max_grad_norm = 1.0f,
        .schedule = LK_SCHED_LINEAR,
        .warmup_steps = 0,
        .steps = 0,
        .epochs = 1,
        .batch = 1,
        .grad_accum = 1,
        .seed = 42,
        .max_bad_steps = 5,
        .checkpointing = LK_CKPT_AUTO,
        .memory_limit = 0, /* the memory available */
        .objective = LK_OBJ_SFT,
        .kd_temp = 1,
        .kd_weight = 1,
        .jsd_beta = 0.5f,
    };
    return p;
}

struct lk_model_params lk_train_model_params_default(void)
{
    struct lk_model_params mp = lk_model_params_default();
    mp.quant = LK_QTYPE_NF4;
    return mp;
}

struct lk_dataset_params lk_train_data_params_default(void)
{
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 512;
    return dp;
}

double train_alpha(const struct lk_train_params *p)
{
    return p->alpha != 0 ? p->alpha : (double)p->rank;
}

/* ---- names ---- */

/* The names of an enum's values in order, the flag that takes them and how a message lists them. */
typedef struct {
    const char *const *names;
    int n;
    const char *opt, *want;
} name_table;

static const char *const g_optimizers[] = {"adamw", "sgd"};
static const char *const g_schedules[] = {"cosine", "linear", "constant"};
static const char *const g_objectives[] = {"sft", "kd", "rkl", "jsd"};
static const char *const g_inits[] = {"peft", "loftq"};
static const char *const g_ckpt[] = {"off", "on", "auto"}; /* in lk_checkpointing's order */
static const name_table k_optimizer = {g_optimizers, 2, "--optimizer", "adamw or sgd"};
static const name_table k_schedule = {g_schedules, 3, "--schedule", "cosine, linear or constant"};
static const name_table k_objective = {g_objectives, 4, "--objective", "sft, kd, rkl or jsd"};
static const name_table k_init = {g_inits, 2, "--init", "peft or loftq"};
static const name_table k_ckpt = {g_ckpt, 3, "--checkpointing", "auto, on or off"};

/* lk_<noun>_from_name and lk_<noun>_name of the enum T over the name_table tab. */
#define NAME_FUNCTIONS(T, noun, tab)                               \
    lk_status lk_##noun##_from_name(const char *name, T *out)      \
    {                                                              \
        int k = option_lookup(tab.names, tab.n, name);             \
        if (k < 0)                                                 \
            return option_choice(tab.opt, name, tab.want);         \
        *out = (T)k;                                               \
        return LK_OK;                                              \
    }                                                              \
    const char *lk_##noun##_name(T v)                              \
    {                                                              \
        return (unsigned)v < (unsigned)tab.n ? tab.names[v] : "?"; \
    }

NAME_FUNCTIONS(lk_optimizer, optimizer, k_optimizer)
NAME_FUNCTIONS(lk_schedule, schedule, k_schedule)
NAME_FUNCTIONS(lk_objective, objective, k_objective)
NAME_FUNCTIONS(lk_lora_init, lora_init, k_init)
NAME_FUNCTIONS(lk_checkpointing, checkpointing, k_ckpt)

lk_status lk_memory_limit_from_name(const char *text, int64_t *bytes)
{
    static const char units[] = "KMGT";
    char *end = NULL;
    double v = text ? strtod(text, &end) : NAN;
    double scale = 1;
    if (end && end != text && *end) {
        const char *u = strchr(units, *end);
        if (u && *u) {
            scale = ldexp(1.0, 10 * (int)(u - units + 1));
            end++;
            if (!strcmp(end, "iB") || !strcmp(end, "B"))
                end += strlen(end);
        }
    }
    v *= scale;
    if (!end || end == text || *end || !(v >= 1) || !(v < 9.2e18))
        return status_fail(LK_ERR_ARG,
                           "--memory-limit '%s': expected a size above 0 in bytes, or with a "
                           "binary suffix K, M, G or T (e.g. 3G, 512M)",
                           text ? text : "(null)");
    *bytes = (int64_t)v;
    return LK_OK;
}

/* ---- the check ---- */

/* The adapter's options. */
static lk_status check_adapter(const struct lk_train_params *p)
{
    if (p->rank < 1)
        return option_range_i("--rank", p->rank, "at least 1");
    if (!(p->alpha >= 0) || isinf(p->alpha))
        return option_range_f("--alpha", p->alpha, "a finite value >= 0 (0: the rank)");
    if (!(p->dropout >= 0 && p->dropout < 1))
        return option_range_f("--dropout", p->dropout, "in [0, 1)");
    if (!(p->targets & LK_MOD_ALL) || (p->targets & ~LK_MOD_ALL))
        return status_fail(LK_ERR_ARG,
                           "--targets: expected some of q,k,v,o,gate,up,down, got the bits 0x%x",
                           p->targets);
    if ((unsigned)p->init > LK_INIT_LOFTQ)
        return status_fail(LK_ERR_ARG, "--init: adapter start %d is not peft (0) or loftq (1)",
                           (int)p->init);
    if (p->init == LK_INIT_LOFTQ && p->init_adapter)
        return status_fail(LK_ERR_ARG,
                           "--init loftq and --init-adapter %s exclude each other (the adapter "
                           "starts as the one given)",
                           p->init_adapter);
    return LK_OK;
}

/* The optimiser and its schedule. */
static lk_status check_optimizer(const struct lk_train_params *p)
{
    if ((unsigned)p->optimizer > LK_OPT_SGD)
        return option_choice_i(k_optimizer.opt, p->optimizer, k_optimizer.want);
    if (!(p->lr > 0) || isinf(p->lr))
        return option_range_f("--lr", p->lr, "a finite value above 0");
    if (!(p->lr_ratio_b > 0) || isinf(p->lr_ratio_b))
        return option_range_f("--lr-ratio-b", p->lr_ratio_b, "a finite value above 0");
    if (!(p->weight_decay >= 0))
        return option_range_f("--weight-decay", p->weight_decay, "at least 0");
    if (!(p->beta1 >= 0 && p->beta1 < 1))
        return option_range_f("beta1", p->beta1, "in [0, 1)");
    if (!(p->beta2 >= 0 && p->beta2 < 1))
        return option_range_f("beta2", p->beta2, "in [0, 1)");
    if (!(p->eps > 0))
        return option_range_f("eps", p->eps, "above 0");
    if ((unsigned)p->schedule > LK_SCHED_CONSTANT)
        return option_choice_i(k_schedule.opt, p->schedule, k_schedule.want);
    if (p->warmup_steps < 0)
        return option_range_i("--warmup", p->warmup_steps, "at least 0");
    return LK_OK;
}

/* How long and on how many rows. */
static lk_status check_steps(const struct lk_train_params *p)
{
    if (p->steps < 0)
        return option_range_i("--steps", p->steps, "at least 0 (0: from --epochs)");
    if (p->steps == 0 && !(p->epochs > 0 && isfinite(p->epochs)))
        return option_range_f("--epochs", p->epochs, "a finite value above 0");
    if (p->batch < 1)
        return option_range_i("--batch", p->batch, "at least 1");
    if (p->grad_accum < 1)
        return option_range_i("--grad-accum", p->grad_accum, "at least 1");
    if (p->max_bad_steps < 1)
        return option_range_i("max_bad_steps", p->max_bad_steps, "at least 1");
    if ((unsigned)p->checkpointing > LK_CKPT_AUTO)
        return option_choice_i(k_ckpt.opt, p->checkpointing, k_ckpt.want);
    if (p->memory_limit < 0)
        return option_range_i("--memory-limit", p->memory_limit,
                              "at least 0 (0: the memory available)");
    return LK_OK;
}

static lk_status check_objective(const struct lk_train_params *p)
{
    if ((unsigned)p->objective > LK_OBJ_JSD)
        return option_choice_i(k_objective.opt, p->objective, k_objective.want);
    if (!(p->kd_temp > 0 && p->kd_temp <= 100))
        return option_range_f("--kd-temp", p->kd_temp, "in (0, 100]");
    if (!(p->kd_weight >= 0 && p->kd_weight <= 1))
        return option_range_f("--kd-weight", p->kd_weight, "in [0, 1]");
    if (!(p->jsd_beta >= 0 && p->jsd_beta <= 1))
        return option_range_f("--jsd-beta", p->jsd_beta, "in [0, 1]");
    return LK_OK;
}

lk_status lk_train_params_check(const struct lk_train_params *p, const struct lk_model_params *mp)
{
    if (!p)
        return status_fail(LK_ERR_ARG, "lk_train_params_check: NULL params");
    LK_TRY(check_adapter(p));
    LK_TRY(check_optimizer(p));
    LK_TRY(check_steps(p));
    LK_TRY(check_objective(p));
    if (!mp)
        return LK_OK;
    LK_TRY(lk_model_params_check(mp));
    if (p->init == LK_INIT_LOFTQ && mp->quant == LK_QTYPE_F32)
        return status_fail(LK_ERR_ARG, "--init loftq needs a quantised base: with --quant none the "
                                       "quantisation residual W - Q(W) is zero");
    return LK_OK;
}

lk_status train_check_teacher(const struct lk_train_params *p)
{
    if (p->objective == LK_OBJ_SFT && (p->teacher || p->teacher_cache))
        return status_fail(LK_ERR_ARG, "a teacher needs a distillation objective (--objective kd, "
                                       "rkl or jsd)");
    if (p->objective != LK_OBJ_SFT && !p->teacher == !p->teacher_cache)
        return status_fail(LK_ERR_ARG,
                           "--objective %s needs a teacher: --teacher DIR|self or --teacher-cache "
                           "FILE (one of them)",
                           lk_objective_name(p->objective));
    return LK_OK;
}

lk_status lk_train_data_params_check(const struct lk_dataset_params *dp)
{
    LK_TRY(lk_dataset_params_check(dp));
    if (dp->seq_len < 2)
        return option_range_i("--seq-len", dp->seq_len, "at least 2");
    return LK_OK;
}

lk_status lk_train_params_check_model(const struct lk_train_params *p, const lk_model *m)
{
    if (p->init_adapter) /* the adapter given rules its own shape */
        return LK_OK;
    struct lk_adapter_params ap = lk_adapter_params_default();
    ap.rank = p->rank;
    ap.target_mask = p->targets;
    return lk_adapter_params_check_model(&ap, lk_model_get_config(m));
}
