/* run.c — the output folder of a training run (lorakit/run.h): the lock, the sweep of what an
 * interrupted writer left, checkpoint-N naming and assembly, pruning, the newest-intact scan for
 * resuming, and the final adapter's file-by-file swap. Every write and rename goes through the
 * durable-write functions of core/mapfile.c. */
#include "lorakit/run.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "core/option.h"
#include "core/status.h"

#define PATH_CAP 4352 /* a folder's path and one or two entry names */

struct lk_run {
    struct lk_run_params p;
    char *dir;
    char *base_model;
    int lock_fd;            /* -1: read only */
    int64_t swept;          /* entries removed at open */
    int64_t saved_step;     /* the step whose checkpoint is in dir (saved or resumed from), or -1 */
    char last[PATH_CAP];    /* the last checkpoint saved or up to date */
    char resumed[PATH_CAP]; /* the state file of the last resume */
};

struct lk_run_params lk_run_params_default(void)
{
    struct lk_run_params p = {.write = 1,
                              .force = 0,
                              .save_limit = 2,
                              .base_model = NULL,
                              .on_damaged = NULL,
                              .user = NULL};
    return p;
}

lk_status lk_run_params_check(const struct lk_run_params *p)
{
    if (p->save_limit < 0)
        return option_range_i("--save-limit", p->save_limit,
                              "at least 0 (0: keep every checkpoint)");
    return LK_OK;
}

/* ---- names ---- */

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

/* A temporary of an atomic write: "<name>.tmp.XXXXXX" (mkstemp's six characters). */
static int is_write_temp(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    while (t && strstr(t + 1, ".tmp."))
        t = strstr(t + 1, ".tmp.");
    return t && t > name && strlen(t + 5) == 6;
}

/* What a writer killed while saving leaves in dir: a checkpoint being assembled or one without
 * its state (older versions), one renamed aside to be deleted, the temporaries of atomic writes,
 * the final adapter's staging folder. */
static int is_leftover(const char *dir, const char *name)
{
    char p[PATH_CAP];
    int64_t n = checkpoint_number(name);
    snprintf(p, sizeof p, "%s/%s/state.ckpt", dir, name);
    if (n >= 0)
        return access(p, F_OK) != 0;
    if (!strncmp(name, "checkpoint-", 11)) {
        const char *dot = name + 11 + strspn(name + 11, "0123456789");
        return dot > name + 11 && (!strncmp(dot, ".partial", 8) || !strncmp(dot, ".tmp.", 5) ||
                                   !strncmp(dot, ".old.", 5));
    }
    return !strncmp(name, ".adapter-final", 14) || is_write_temp(name);
}

/* ---- open, close ---- */

/* Lock dir for this process (released when it ends, however it ends). */
static lk_status lock_dir(lk_run *r)
{
    r->lock_fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->lock_fd < 0)
        return status_fail(LK_ERR_IO, "%s: cannot open the folder: %s", r->dir, strerror(errno));
    if (flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        return status_fail(LK_ERR_IO, "%s is in use by another run (it holds the folder's lock)",
                           r->dir);
    return LK_OK;
}

/* Remove what an interrupted writer left in dir. */
static void sweep(lk_run *r)
{
    DIR *d = opendir(r->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/%s", r->dir, e->d_name);
        if (is_leftover(r->dir, e->d_name)) {
            remove_tree(p);
            r->swept += access(p, F_OK) != 0;
        }
    }
    if (d)
        closedir(d);
}

/* A writer's checks and claims, in order: no finished adapter unless forced, the folder, the
 * lock, the sweep. */
static lk_status claim(lk_run *r)
{
    char probe[PATH_CAP];
    snprintf(probe, sizeof probe, "%s/adapter_model.safetensors", r->dir);
    if (!r->p.force && access(probe, F_OK) == 0)
        return status_fail(LK_ERR_IO, "%s already holds an adapter (use --force, or --resume)",
                           r->dir);
    LK_TRY(dir_make_parents(r->dir));
    if (mkdir(r->dir, 0755) != 0 && errno != EEXIST)
        return status_fail(LK_ERR_IO, "%s: cannot create folder: %s", r->dir, strerror(errno));
    LK_TRY(lock_dir(r));
    sweep(r);
    return LK_OK;
}

lk_status lk_run_open(const char *dir, const struct lk_run_params *p, lk_run **out)
{
    *out = NULL;
    lk_run *r = calloc(1, sizeof *r);
    if (!r)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    r->p = p ? *p : lk_run_params_default();
    r->lock_fd = -1;
    lk_status s = lk_run_params_check(&r->p);
    r->saved_step = -1;
    r->dir = strdup(dir);
    r->base_model = r->p.base_model ? strdup(r->p.base_model) : NULL;
    r->p.base_model = r->base_model;
    if (s == LK_OK && (!r->dir || (!r->base_model && p && p->base_model)))
        s = status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK && strlen(dir) + 64 > PATH_CAP)
        s = status_fail(LK_ERR_ARG, "%s: the run folder's path is too long", dir);
    if (s == LK_OK && r->p.write)
        s = claim(r);
    if (s != LK_OK) {
        lk_run_close(r);
        return s;
    }
    *out = r;
    return LK_OK;
}

void lk_run_close(lk_run *r)
{
    if (!r)
        return;
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    free(r->dir);
    free(r->base_model);
    free(r);
}

int64_t lk_run_swept(const lk_run *r)
{
    return r->swept;
}

/* ---- finding and resuming ---- */

/* Highest N < below of dir/checkpoint-N holding a state.ckpt; -1 if none. */
static int64_t latest_in(const char *dir, int64_t below)
{
    DIR *d = opendir(dir);
    int64_t best = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int64_t n = checkpoint_number(e->d_name);
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/%s/state.ckpt", dir, e->d_name);
        if (n > best && n < below && access(p, R_OK) == 0)
            best = n;
    }
    if (d)
        closedir(d);
    return best;
}

int64_t lk_run_latest_checkpoint(const lk_run *r, int64_t below)
{
    return latest_in(r->dir, below);
}

/* Reads one state file: restores a trainer (lk_trainer_resume), or gives its compute mode. */
typedef lk_status (*state_reader)(void *ctx, const char *path);

static lk_status resume_trainer(void *t, const char *path)
{
    return lk_trainer_resume(t, path);
}

static lk_status read_compute(void *out, const char *path)
{
    return lk_trainer_checkpoint_compute(path, out);
}

/* The state `from` names, handed to read (its path in path[PATH_CAP]): from/state.ckpt, or from's
 * newest intact checkpoint-N (a damaged one, LK_ERR_FORMAT, is reported through p->on_damaged
 * when p is given and the one before it tried). */
static lk_status read_state(const char *from, char *path, state_reader read, void *ctx,
                            const struct lk_run_params *p)
{
    if (strlen(from) + 64 > PATH_CAP)
        return status_fail(LK_ERR_ARG, "%s: the path is too long", from);
    snprintf(path, PATH_CAP, "%s/state.ckpt", from);
    if (access(path, F_OK) == 0)
        return read(ctx, path);
    int damaged = 0;
    for (int64_t n = latest_in(from, INT64_MAX); n >= 0; n = latest_in(from, n)) {
        snprintf(path, PATH_CAP, "%s/checkpoint-%lld/state.ckpt", from, (long long)n);
        lk_status s = read(ctx, path);
        if (s != LK_ERR_FORMAT)
            return s;
        if (p && p->on_damaged)
            p->on_damaged(p->user, lk_last_error());
        damaged++;
    }
    return status_fail(LK_ERR_IO, "%s: no state.ckpt and no checkpoint-N folder with %s", from,
                       damaged ? "an intact one" : "one");
}

/* The state just restored is this folder's checkpoint of the same step: nothing to save there. */
static void note_resumed(lk_run *r, int64_t step)
{
    char own[PATH_CAP];
    struct stat a, b;
    snprintf(own, sizeof own, "%s/checkpoint-%lld/state.ckpt", r->dir, (long long)step);
    if (stat(r->resumed, &a) == 0 && stat(own, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        r->saved_step = step;
}

lk_status lk_run_resume(lk_run *r, lk_trainer *t, const char *from)
{
    lk_status s = read_state(from ? from : r->dir, r->resumed, resume_trainer, t, &r->p);
    if (s != LK_OK) {
        r->resumed[0] = 0;
        return s;
    }
    note_resumed(r, lk_trainer_steps_done(t));
    return LK_OK;
}

lk_status lk_run_resume_compute(const char *from, lk_compute *out)
{
    char path[PATH_CAP];
    return read_state(from, path, read_compute, out, NULL);
}

const char *lk_run_resumed_from(const lk_run *r)
{
    return r->resumed[0] ? r->resumed : NULL;
}

/* ---- writing ---- */

static lk_status need_writer(const lk_run *r)
{
    if (r->lock_fd < 0)
        return status_fail(LK_ERR_ARG, "%s: the run folder was opened read-only", r->dir);
    return LK_OK;
}

/* dir/checkpoint-N.partial: the adapter folder, then the state, each written atomically. */
static lk_status assemble(const lk_run *r, const lk_trainer *t, const char *part)
{
    char file[PATH_CAP + 32];
    snprintf(file, sizeof file, "%s/state.ckpt", part);
    LK_TRY(lk_trainer_save_adapter(t, part, r->base_model, 1));
    return lk_trainer_save_checkpoint(t, file);
}

lk_status lk_run_save_checkpoint(lk_run *r, const lk_trainer *t, int *saved)
{
    int64_t step = lk_trainer_steps_done(t);
    char part[PATH_CAP + 16];
    if (saved)
        *saved = 0;
    LK_TRY(need_writer(r));
    snprintf(r->last, sizeof r->last, "%s/checkpoint-%lld", r->dir, (long long)step);
    if (step == r->saved_step) /* this very state is on disk (saved, or resumed from) */
        return LK_OK;
    snprintf(part, sizeof part, "%s.partial", r->last);
    lk_status s = assemble(r, t, part);
    if (s == LK_OK)
        s = tmpdir_commit(part, r->last, 1); /* a stale folder at that name is replaced */
    if (s != LK_OK) {
        remove_tree(part);
        return status_wrap(s, "checkpoint %s not saved", r->last);
    }
    r->saved_step = step;
    if (saved)
        *saved = 1;
    lk_run_prune(r, r->p.save_limit); /* a checkpoint left over is swept next time */
    return LK_OK;
}

const char *lk_run_last_checkpoint(const lk_run *r)
{
    return r->last[0] ? r->last : NULL;
}

/* Oldest N of dir/checkpoint-N and how many there are. */
static int64_t oldest_checkpoint(const char *dir, int64_t *count)
{
    DIR *d = opendir(dir);
    int64_t oldest = -1;
    struct dirent *e;
    *count = 0;
    while (d && (e = readdir(d))) {
        int64_t n = checkpoint_number(e->d_name);
        if (n < 0)
            continue;
        (*count)++;
        if (oldest < 0 || n < oldest)
            oldest = n;
    }
    if (d)
        closedir(d);
    return oldest;
}

lk_status lk_run_prune(lk_run *r, int keep)
{
    LK_TRY(need_writer(r));
    while (keep > 0) {
        int64_t count, oldest = oldest_checkpoint(r->dir, &count);
        if (count <= keep || oldest < 0)
            return LK_OK;
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/checkpoint-%lld", r->dir, (long long)oldest);
        LK_TRY(dir_discard(p));
    }
    return LK_OK;
}

/* Move the staged adapter's files into dir: the old weights out, the new config in, the new
 * weights in, each step made durable. */
static lk_status swap_in(const lk_run *r, const char *stage)
{
    static const char *const files[2] = {"adapter_config.json", "adapter_model.safetensors"};
    char from[PATH_CAP + 32], to[PATH_CAP];
    snprintf(to, sizeof to, "%s/%s", r->dir, files[1]);
    if (unlink(to) != 0 && errno != ENOENT)
        return status_fail(LK_ERR_IO, "%s: cannot remove the old adapter: %s", to, strerror(errno));
    LK_TRY(dir_sync(r->dir));
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s", stage, files[i]);
        snprintf(to, sizeof to, "%s/%s", r->dir, files[i]);
        LK_TRY(file_rename(from, to));
    }
    return LK_OK;
}

lk_status lk_run_save_adapter(lk_run *r, const lk_trainer *t)
{
    char stage[PATH_CAP];
    LK_TRY(need_writer(r));
    snprintf(stage, sizeof stage, "%s/.adapter-final", r->dir);
    lk_status s = lk_trainer_save_adapter(t, stage, r->base_model, 1);
    if (s != LK_OK)
        return status_wrap(s, "adapter not saved to %s", r->dir);
    s = swap_in(r, stage);
    remove_tree(stage);
    return s;
}
