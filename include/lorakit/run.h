/* lorakit/run.h — the output folder of a training run (lora-train -o OUT): its checkpoints
 * OUT/checkpoint-N (N = steps done; each a PEFT adapter folder plus state.ckpt, see
 * lk_trainer_save_checkpoint), the final adapter in OUT itself, and the protocol that keeps them
 * whole whatever happens (a kill at any moment, a full disk, two runs aimed at one folder):
 *
 *   - one writer: the writing process holds an exclusive flock on OUT for its lifetime (the
 *     kernel releases it however the process ends);
 *   - a checkpoint exists only complete: it is assembled as OUT/checkpoint-N.partial (adapter,
 *     then state, each written atomically) and renamed to its name;
 *   - old checkpoints beyond save_limit are renamed aside before they are deleted, so a kill
 *     never leaves a partial folder at a checkpoint's name;
 *   - the final adapter is written beside (OUT/.adapter-final) and moved in one file at a time:
 *     the old weights out, the new config in, the new weights in, each step made durable, so an
 *     adapter_model.safetensors never sits beside another run's config or without one;
 *   - what an interrupted writer left (.partial, .old.*, .tmp.* temporaries, the staging folder,
 *     a checkpoint without its state) is swept when the next writer opens the folder.
 *
 * Several processes of one run (data-parallel training: only rank 0 writes) use the same object:
 * the others open the folder read-only to find and read its checkpoints. A run object is not
 * thread-safe. */
#ifndef LORAKIT_RUN_H
#define LORAKIT_RUN_H

#include "lorakit/core.h"
#include "lorakit/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_run lk_run;

struct lk_run_params {
    int write;      /* 1 (default): this process writes the folder: it is made if missing, locked
                     * (LK_ERR_IO when another run holds it) and swept; 0: read only (find and
                     * read checkpoints; saving fails with LK_ERR_ARG) */
    int force;      /* 0 (default): a folder that already holds a finished adapter is refused
                     * (LK_ERR_IO); 1: allowed (the run replaces it at the end; resuming a run
                     * sets it too) */
    int save_limit; /* checkpoints kept, the newest, after each save (default 2; 0: all) */
    const char *base_model; /* recorded in every adapter the run writes as
                             * base_model_name_or_path (NULL: none) */
    /* lk_run_resume: called for each damaged checkpoint passed over (msg names its state file
     * and what is wrong with it) before the one before it is tried. May be NULL. */
    void (*on_damaged)(void *user, const char *msg);
    void *user;
};

struct lk_run_params lk_run_params_default(void);

/* Check the options: save_limit >= 0 ("--save-limit must be at least 0 (0: keep every
 * checkpoint), got -1"). LK_ERR_ARG. lk_run_open runs it. */
lk_status lk_run_params_check(const struct lk_run_params *p);

/* Open the run folder dir (p NULL: the defaults). A writer checks, in this order: that dir holds
 * no finished adapter unless p->force ("DIR already holds an adapter (use --force, or
 * --resume)"), makes dir, locks it ("DIR is in use by another run"), and sweeps it. Caller frees
 * with lk_run_close. Strings are copied. */
lk_status lk_run_open(const char *dir, const struct lk_run_params *p, lk_run **out);

/* Release the lock and free the object (NULL is fine). */
void lk_run_close(lk_run *r);

/* Entries the sweep at lk_run_open removed (what an interrupted writer left). */
int64_t lk_run_swept(const lk_run *r);

/* The highest N below `below` of the folder's complete checkpoints (those holding a state.ckpt),
 * or -1 when there is none. INT64_MAX: the newest. */
int64_t lk_run_latest_checkpoint(const lk_run *r, int64_t below);

/* Restore the trainer t (lk_trainer_resume) from `from`: a checkpoint folder (from/state.ckpt), or
 * a run folder, whose newest intact checkpoint is used: a damaged one (LK_ERR_FORMAT) is reported
 * through on_damaged and the one before it tried. from NULL: this run's folder. LK_ERR_IO when
 * there is none to resume from; other errors as lk_trainer_resume gives them. When the state
 * used is this folder's checkpoint of the same step, the next lk_run_save_checkpoint at that
 * step writes nothing. */
lk_status lk_run_resume(lk_run *r, lk_trainer *t, const char *from);

/* The compute mode (lk_trainer_checkpoint_compute) of the checkpoint lk_run_resume would restore
 * from `from` (a checkpoint folder or a run folder: its newest intact checkpoint, damaged ones
 * passed over silently), read before the model is loaded: a run resumed under --compute auto
 * takes it (lk_model_params.resume_compute). Errors as lk_run_resume's finding and reading. */
lk_status lk_run_resume_compute(const char *from, lk_compute *out);

/* The state file the last lk_run_resume restored; borrowed, valid until the next resume or
 * lk_run_close; NULL before one succeeded. */
const char *lk_run_resumed_from(const lk_run *r);

/* Save t's state as OUT/checkpoint-N (N = lk_trainer_steps_done(t)), then keep the save_limit
 * newest (lk_run_prune). *saved (may be NULL): 1 when written, 0 when this very state is already
 * there (saved before or resumed from). A failure removes what it wrote and says "checkpoint
 * OUT/checkpoint-N not saved: <cause>"; older checkpoints are untouched. */
lk_status lk_run_save_checkpoint(lk_run *r, const lk_trainer *t, int *saved);

/* The folder of the checkpoint the last lk_run_save_checkpoint saved or found up to date;
 * borrowed, valid until the next save or lk_run_close; NULL before. */
const char *lk_run_last_checkpoint(const lk_run *r);

/* Remove all but the `keep` newest checkpoints, oldest first, each renamed aside before it is
 * deleted (keep <= 0: none removed). */
lk_status lk_run_prune(lk_run *r, int keep);

/* Write t's adapter as the run's result: OUT/adapter_config.json and adapter_model.safetensors,
 * replacing an earlier one as described above. Failure: "adapter not saved to OUT: <cause>". */
lk_status lk_run_save_adapter(lk_run *r, const lk_trainer *t);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_RUN_H */
