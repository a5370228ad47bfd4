/* train_ckpt.c — the trainer's checkpoints (the run's state as LKCKPT: the adapter's params
 * arena, the AdamW moments, and a JSON description with step, schedule counters, data cursor,
 * options and loss history; formats/checkpoint.c writes the file), the same state broadcast from
 * rank 0 (data parallelism), and the PEFT output, written from the trained adapter itself. On top
 * of train.c (the trainer's state, its loss history) and dist.c. With data parallelism the state
 * is the same on every rank and global: rows_per_step counts every rank's rows and the cursor is
 * where the whole step left the data, so any rank count with the same global batch resumes it. */
#include <math.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "core/status.h"
#include "train/trainer.h"

static cJSON *ckpt_meta(const lk_trainer *t)
{
    cJSON *j = cJSON_CreateObject();
    struct lk_data_cursor c;
    struct lk_adapter_info a;
    lk_dataset_get_cursor(t->data, &c);
    lk_adapter_get_info(t->ad, &a);
    cJSON_AddStringToObject(j, "kind", "lorakit-train");
    cJSON_AddNumberToObject(j, "step", (double)t->step);
    cJSON_AddNumberToObject(j, "total_steps", (double)t->total);
    cJSON_AddNumberToObject(j, "n_updates", (double)t->n_updates);
    cJSON_AddNumberToObject(j, "skipped_total", (double)t->skipped_total);
    cJSON_AddNumberToObject(j, "bad_run", (double)t->bad_run);
    cJSON_AddNumberToObject(j, "cursor_epoch", (double)c.epoch);
    cJSON_AddNumberToObject(j, "cursor_next", (double)c.next);
    cJSON_AddNumberToObject(j, "rank", (double)a.rank);
    cJSON_AddNumberToObject(j, "alpha", a.alpha);
    cJSON_AddBoolToObject(j, "use_rslora", a.use_rslora);
    cJSON_AddNumberToObject(j, "targets", a.target_mask);
    cJSON_AddNumberToObject(j, "n_params", (double)t->lora.n_params);
    cJSON_AddNumberToObject(j, "seq_len", (double)t->T);
    const struct lk_dataset_stats *ds = lk_dataset_get_stats(t->data);
    cJSON_AddNumberToObject(j, "data_examples", (double)ds->examples);
    cJSON_AddNumberToObject(j, "data_trained_tokens", (double)ds->trained_tokens);
    cJSON_AddNumberToObject(j, "rows_per_step", (double)t->rows_all);
    cJSON_AddNumberToObject(j, "objective", (double)t->p.objective);
    cJSON_AddNumberToObject(j, "kd_temp", t->p.kd_temp);
    cJSON_AddNumberToObject(j, "kd_weight", t->p.kd_weight);
    cJSON_AddNumberToObject(j, "jsd_beta", t->p.jsd_beta);
    cJSON_AddStringToObject(j, "compute", lk_compute_name(lk_model_compute(t->m)));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->p.seed);
    cJSON_AddStringToObject(j, "seed", seed); /* as a string: 64 bits do not fit a double */
    cJSON *h = cJSON_CreateArray();
    for (int64_t i = 0; i < t->step; i++) /* NaN (skipped steps) is written as null */
        cJSON_AddItemToArray(h, isfinite(t->hist[i]) ? cJSON_CreateNumber(t->hist[i])
                                                     : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "loss_history", h);
    return j;
}

lk_status lk_trainer_save_checkpoint(const lk_trainer *t, const char *path)
{
    cJSON *meta = ckpt_meta(t);
    lk_status s = ckpt_save(path, meta, t->lora.params, t->m1, t->m2, t->lora.n_params);
    cJSON_Delete(meta);
    return s;
}

static double num(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The compute mode of a checkpoint's description: one from before --compute existed was made
 * with f32. */
static const char *meta_compute(const cJSON *j)
{
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(j, "compute");
    return cJSON_IsString(cm) ? cm->valuestring : "f32";
}

/* The checkpoint must describe this very run: same adapter shape, rows and sequence length. */
static lk_status check_meta(const lk_trainer *t, const cJSON *j, const char *path)
{
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    char want[32];
    struct lk_adapter_info a;
    snprintf(want, sizeof want, "%llu", (unsigned long long)t->p.seed);
    lk_adapter_get_info(t->ad, &a);
    struct {
        const char *key;
        double want;
    } k[] = {{"rank", (double)a.rank},
             {"alpha", a.alpha},
             {"targets", a.target_mask},
             {"n_params", (double)t->lora.n_params},
             {"seq_len", (double)t->T},
             {"rows_per_step", (double)t->rows_all},
             {"objective", (double)t->p.objective},
             {"kd_temp", t->p.kd_temp},
             {"kd_weight", t->p.kd_weight},
             {"jsd_beta", t->p.jsd_beta}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (num(j, k[i].key) != k[i].want)
            return status_fail(LK_ERR_ARG,
                               "%s: checkpoint has %s %g, this run %g (resume with the options "
                               "of the interrupted run%s)",
                               path, k[i].key, num(j, k[i].key), k[i].want,
                               strcmp(k[i].key, "rows_per_step")
                                   ? ""
                                   : "; rows per step = ranks x --batch x --grad-accum");
    if (!cJSON_IsString(seed) || strcmp(seed->valuestring, want) != 0)
        return status_fail(LK_ERR_ARG, "%s: checkpoint was made with another --seed", path);
    /* the data cursor points into the run's own data (older checkpoints: no record) */
    const struct lk_dataset_stats *ds = lk_dataset_get_stats(t->data);
    double de = num(j, "data_examples"), dt = num(j, "data_trained_tokens");
    if (!isnan(de) && (de != (double)ds->examples || dt != (double)ds->trained_tokens))
        return status_fail(LK_ERR_ARG,
                           "%s: checkpoint was made on other data (%.0f examples, %.0f trained "
                           "tokens), this run's has %lld and %lld (resume with the --data and "
                           "--fields of the interrupted run)",
                           path, de, dt, (long long)ds->examples, (long long)ds->trained_tokens);
    const char *had = meta_compute(j);
    const char *now = lk_compute_name(lk_model_compute(t->m));
    if (strcmp(had, now) != 0)
        return status_fail(LK_ERR_ARG,
                           "%s: checkpoint was made with --compute %s, this run has --compute %s "
                           "(resume with --compute %s: the run continues as it started)",
                           path, had, now, had);
    /* counters are whole numbers in [0, 2^53] (exact as doubles) before any conversion */
    static const char *const counters[] = {"step",         "n_updates",     "cursor_next",
                                           "cursor_epoch", "skipped_total", "bad_run"};
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++) {
        double v = num(j, counters[i]);
        if (isnan(v))
            return status_fail(LK_ERR_FORMAT, "%s: checkpoint description lacks its counter %s",
                               path, counters[i]);
        if (!(v >= 0 && v <= 9007199254740992.0 && v == floor(v)))
            return status_fail(LK_ERR_FORMAT,
                               "%s: checkpoint counter %s is %g, expected a whole number in [0, "
                               "2^53]",
                               path, counters[i], v);
    }
    return LK_OK;
}

lk_status lk_trainer_resume(lk_trainer *t, const char *path)
{
    cJSON *meta;
    float *blob;
    int64_t n;
    LK_TRY(ckpt_load(path, &meta, &blob, &n));
    lk_status s = n == t->lora.n_params
                      ? check_meta(t, meta, path)
                      : status_fail(LK_ERR_ARG,
                                    "%s: checkpoint holds %lld parameters, this "
                                    "run %lld",
                                    path, (long long)n, (long long)t->lora.n_params);
    if (s == LK_OK) { /* the counters are checked: converting them is defined */
        struct lk_data_cursor c = {(uint64_t)num(meta, "cursor_epoch"),
                                   (int64_t)num(meta, "cursor_next")};
        s = lk_dataset_set_cursor(t->data, &c);
    }
    if (s == LK_OK) {
        size_t bytes = (size_t)n * sizeof(float);
        memcpy(t->lora.params, blob, bytes);
        memcpy(t->m1, blob + n, bytes);
        memcpy(t->m2, blob + 2 * n, bytes);
        t->step = (int64_t)num(meta, "step");
        t->n_updates = (int64_t)num(meta, "n_updates");
        t->skipped_total = (int64_t)num(meta, "skipped_total");
        t->bad_run = (int64_t)num(meta, "bad_run");
        if (t->total < t->step)
            t->total = t->step;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(meta, "loss_history");
        s = trainer_plan_history(t, t->total > t->step ? t->total : t->step + 1);
        int64_t i = 0;
        for (const cJSON *e = cJSON_IsArray(h) ? h->child : NULL; e && s == LK_OK && i < t->step;
             e = e->next)
            t->hist[i++] = cJSON_IsNumber(e) ? (float)e->valuedouble : NAN;
        for (; s == LK_OK && i < t->step; i++)
            t->hist[i] = NAN;
    }
    free(blob);
    cJSON_Delete(meta);
    return s;
}

lk_status lk_trainer_checkpoint_compute(const char *path, lk_compute *out)
{
    cJSON *meta;
    float *blob;
    int64_t n;
    LK_TRY(ckpt_load(path, &meta, &blob, &n));
    const char *had = meta_compute(meta);
    lk_status s = LK_OK;
    if (!strcmp(had, lk_compute_name(LK_COMPUTE_F32)))
        *out = LK_COMPUTE_F32;
    else if (!strcmp(had, lk_compute_name(LK_COMPUTE_INT8)))
        *out = LK_COMPUTE_INT8;
    else
        s = status_fail(LK_ERR_FORMAT,
                        "%s: checkpoint names the compute mode '%.32s', expected f32 or int8", path,
                        had);
    free(blob);
    cJSON_Delete(meta);
    return s;
}

/* Rank 0's counters and data cursor on every rank (room for the loss history made first). */
static lk_status sync_counters(lk_trainer *t)
{
    struct lk_data_cursor c;
    lk_dataset_get_cursor(t->data, &c);
    int64_t v[7] = {t->step,    t->total,         t->n_updates, t->skipped_total,
                    t->bad_run, (int64_t)c.epoch, c.next};
    LK_TRY(dist_bcast(t->dist, v, sizeof v));
    lk_status s = trainer_plan_history(t, v[1] > v[0] ? v[1] : v[0] + 1);
    c = (struct lk_data_cursor){(uint64_t)v[5], v[6]};
    if (s == LK_OK)
        s = lk_dataset_set_cursor(t->data, &c);
    LK_TRY(lk_dist_agree(t->dist, s));
    t->step = v[0];
    t->total = v[1];
    t->n_updates = v[2];
    t->skipped_total = v[3];
    t->bad_run = v[4];
    return LK_OK;
}

lk_status lk_trainer_sync(lk_trainer *t)
{
    if (!dist_active(t->dist))
        return LK_OK;
    size_t bytes = (size_t)t->lora.n_params * sizeof(float);
    LK_TRY(sync_counters(t));
    LK_TRY(dist_bcast(t->dist, t->lora.params, bytes));
    LK_TRY(dist_bcast(t->dist, t->m1, bytes));
    LK_TRY(dist_bcast(t->dist, t->m2, bytes));
    return dist_bcast(t->dist, t->hist, (size_t)t->step * sizeof *t->hist);
}

lk_status lk_trainer_save_adapter(const lk_trainer *t, const char *dir, const char *base_model,
                                  int force)
{
    return adapter_save_peft_as(t->ad, dir, base_model ? base_model : "", force);
}

lk_status lk_trainer_save_gguf_lora(const lk_trainer *t, const char *path, int force)
{
    return lk_adapter_save_gguf(t->ad, lk_model_get_config(t->m), path, "f32", force);
}
