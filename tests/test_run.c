/* test_run.c — the run folder (lorakit/run.h): one writer at a time, the sweep of what an
 * interrupted writer leaves, the refusal of a finished adapter without force, checkpoint-N
 * saving (up to date when nothing changed), pruning to save_limit, the final adapter, and
 * resuming from the newest intact checkpoint, also through a read-only run object (another
 * process's view), past a damaged one. Trains stories260K-hf for a few steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define MODEL "models/stories260K-hf"

static int exists(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void touch(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(write_file(p, "x", 1), 0);
}

static void make(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void test_lock_sweep_refuse(void **state)
{
    (void)state;
    char *dir = strdup(tmp_path("run"));
    lk_run *r = NULL, *r2 = NULL, *ro = NULL;
    assert_ok(lk_run_open(dir, NULL, &r)); /* made when missing */
    char want[4300];
    snprintf(want, sizeof want, "%s is in use by another run (it holds the folder's lock)", dir);
    assert_status(lk_run_open(dir, NULL, &r2), LK_ERR_IO, want);
    assert_null(r2);
    struct lk_run_params p = lk_run_params_default();
    p.write = 0;
    assert_ok(lk_run_open(dir, &p, &ro)); /* a reader needs no lock */
    assert_status(lk_run_prune(ro, 1), LK_ERR_ARG, "opened read-only");
    lk_run_close(ro);
    lk_run_close(r);
    /* what killed writers leave, beside what must stay */
    make(dir, "checkpoint-3.partial");
    make(dir, "checkpoint-4"); /* no state.ckpt: never finished */
    make(dir, "checkpoint-5.old.AbC123");
    make(dir, ".adapter-final");
    touch(dir, "loss.svg.tmp.Xy12Z9");
    make(dir, "checkpoint-2");
    touch(dir, "checkpoint-2/state.ckpt");
    touch(dir, "notes.txt");
    touch(dir, "notes.tmp.txt");
    assert_ok(lk_run_open(dir, NULL, &r));
    assert_int_equal(lk_run_swept(r), 5);
    assert_true(exists(dir, "checkpoint-2/state.ckpt") && exists(dir, "notes.txt") &&
                exists(dir, "notes.tmp.txt"));
    assert_false(exists(dir, "checkpoint-3.partial") || exists(dir, "checkpoint-4") ||
                 exists(dir, ".adapter-final") || exists(dir, "loss.svg.tmp.Xy12Z9"));
    assert_int_equal(lk_run_latest_checkpoint(r, INT64_MAX), 2);
    assert_int_equal(lk_run_latest_checkpoint(r, 2), -1);
    lk_run_close(r);
    /* a finished adapter is replaced only when asked */
    touch(dir, "adapter_model.safetensors");
    snprintf(want, sizeof want, "%s already holds an adapter (use --force, or --resume)", dir);
    assert_status(lk_run_open(dir, NULL, &r), LK_ERR_IO, want);
    p = lk_run_params_default();
    p.force = 1;
    assert_ok(lk_run_open(dir, &p, &r));
    lk_run_close(r);
    p.save_limit = -1;
    assert_status(lk_run_open(dir, &p, &r), LK_ERR_ARG, "--save-limit must be at least 0");
    rm_rf(dir);
    free(dir);
}

typedef struct {
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *data;
} fixture;

static void open_fixture(fixture *f)
{
    require_file(shared_path(MODEL "/model.safetensors"));
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 1;
    assert_ok(lk_model_load(shared_path(MODEL), &mp, &f->m));
    assert_ok(lk_tokenizer_load(shared_path(MODEL), &f->tok));
    struct lk_dataset_params dp = lk_train_data_params_default();
    dp.seq_len = 64;
    char path[4200];
    snprintf(path, sizeof path, "%s/../../samples/data/whale-train.jsonl", LK_TEST_DATA);
    assert_ok(lk_dataset_load(path, f->tok, &dp, &f->data));
}

static void close_fixture(fixture *f)
{
    lk_dataset_free(f->data);
    lk_tokenizer_free(f->tok);
    lk_model_free(f->m);
}

static lk_trainer *trainer(fixture *f)
{
    struct lk_train_params p = lk_train_params_default();
    p.rank = 4;
    p.lr = 2e-3f;
    p.steps = 4;
    lk_trainer *t = NULL;
    assert_ok(lk_trainer_create(f->m, f->data, &p, &t));
    return t;
}

static int n_damaged;

static void on_damaged(void *user, const char *msg)
{
    (void)user;
    assert_non_null(strstr(msg, "checkpoint-3/state.ckpt"));
    n_damaged++;
}

static void test_checkpoints(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f);
    char *dir = strdup(tmp_path("train"));
    struct lk_run_params p = lk_run_params_default();
    p.save_limit = 2;
    p.base_model = shared_path(MODEL);
    lk_run *r;
    assert_ok(lk_run_open(dir, &p, &r));
    lk_trainer *t = trainer(&f);
    int saved = -1;
    struct lk_step_stats st;
    for (int k = 1; k <= 3; k++) {
        assert_ok(lk_trainer_step(t, &st));
        assert_ok(lk_run_save_checkpoint(r, t, &saved));
        assert_int_equal(saved, 1);
    }
    assert_ok(lk_run_save_checkpoint(r, t, &saved)); /* nothing new since */
    assert_int_equal(saved, 0);
    char want[4300];
    snprintf(want, sizeof want, "%s/checkpoint-3", dir);
    assert_string_equal(lk_run_last_checkpoint(r), want);
    assert_false(exists(dir, "checkpoint-1")); /* pruned to the 2 newest */
    assert_true(exists(dir, "checkpoint-2/state.ckpt") && exists(dir, "checkpoint-3/state.ckpt"));
    assert_true(exists(dir, "checkpoint-3/adapter_config.json"));
    assert_ok(lk_trainer_step(t, &st));
    assert_ok(lk_run_save_adapter(r, t));
    assert_true(exists(dir, "adapter_model.safetensors") && exists(dir, "adapter_config.json"));
    assert_false(exists(dir, ".adapter-final"));
    lk_trainer_free(t);
    /* another process's view: read only, the newest intact checkpoint */
    struct lk_run_params rp = lk_run_params_default();
    rp.write = 0;
    rp.on_damaged = on_damaged;
    lk_run *ro;
    assert_ok(lk_run_open(dir, &rp, &ro));
    t = trainer(&f);
    assert_ok(lk_run_resume(ro, t, NULL));
    snprintf(want, sizeof want, "%s/checkpoint-3/state.ckpt", dir);
    assert_string_equal(lk_run_resumed_from(ro), want);
    assert_int_equal(lk_trainer_steps_done(t), 3);
    assert_status(lk_run_save_checkpoint(ro, t, NULL), LK_ERR_ARG, "read-only");
    lk_trainer_free(t);
    /* a damaged newest one is reported and passed over */
    assert_int_equal(truncate(want, 100), 0);
    t = trainer(&f);
    assert_ok(lk_run_resume(ro, t, NULL));
    assert_int_equal(n_damaged, 1);
    assert_int_equal(lk_trainer_steps_done(t), 2);
    /* resumed from the writer's own checkpoint-2: saving at step 2 writes nothing */
    assert_ok(lk_run_resume(r, t, NULL));
    assert_ok(lk_run_save_checkpoint(r, t, &saved));
    assert_int_equal(saved, 0);
    lk_trainer_free(t);
    lk_run_close(ro);
    lk_run_close(r);
    rm_rf(dir);
    free(dir);
    close_fixture(&f);
}

/* Outputs may name folders still to be made (as PEFT's save_pretrained and mkdir -p do); a file
 * where a folder must go is named. */
static void test_parents_made(void **state)
{
    (void)state;
    char dir[4200], file[4200], blocked[4300];
    snprintf(dir, sizeof dir, "%s", tmp_path("new/deeper/run"));
    snprintf(file, sizeof file, "%s", tmp_path("other/a/b.bin"));
    lk_run *r;
    assert_ok(lk_run_open(dir, NULL, &r));
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    lk_run_close(r);
    assert_ok(lk_write_file_atomic(file, "abc", 3, 0));
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 3);
    snprintf(blocked, sizeof blocked, "%s/x/run", file); /* b.bin is a file */
    char want[4300];
    snprintf(want, sizeof want, "%s: not a folder", file);
    assert_status(lk_run_open(blocked, NULL, &r), LK_ERR_IO, want);
    assert_status(lk_write_file_atomic(blocked, "abc", 3, 0), LK_ERR_IO, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_sweep_refuse),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_parents_made),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
