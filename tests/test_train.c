/* test_train.c — the trainer on stories260K-hf with the sample whale-style data: held-out loss
 * falls; a saved adapter, reloaded on a fresh model, gives the trained model's loss; a run resumed
 * from a checkpoint ends bit-identical to an uninterrupted one (with dropout on); non-finite
 * steps are skipped and, in a row, stop training with LK_ERR_NUMERIC; activation checkpointing's
 * choice (off, on, auto under a memory limit) changes the memory plan, never a result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "lora/adapter.h"
#include "core/mapfile.h"
#include "testutil.h"

#define MODEL "models/stories260K-hf"

typedef struct {
    lk_model *m;
    lk_tokenizer *tok;
    lk_dataset *train, *test;
} fixture;

static const char *sample(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/../../samples/data/%s", LK_TEST_DATA, name);
    return p;
}

static void open_fixture_q(fixture *f, int threads, lk_qtype quant)
{
    require_file(shared_path(MODEL "/model.safetensors"));
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = threads;
    mp.quant = quant;
    assert_ok(lk_model_load(shared_path(MODEL), &mp, &f->m));
    assert_ok(lk_tokenizer_load(shared_path(MODEL), &f->tok));
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 128;
    assert_ok(lk_dataset_load(sample("whale-train.jsonl"), f->tok, &dp, &f->train));
    dp.shuffle = 0;
    dp.pack = 0;
    assert_ok(lk_dataset_load(sample("whale-test.jsonl"), f->tok, &dp, &f->test));
}

static void open_fixture(fixture *f, int threads)
{
    open_fixture_q(f, threads, LK_QTYPE_F32);
}

static void close_fixture(fixture *f)
{
    lk_dataset_free(f->train);
    lk_dataset_free(f->test);
    lk_tokenizer_free(f->tok);
    lk_model_free(f->m);
}

static struct lk_train_params small_params(void)
{
    struct lk_train_params p = lk_train_params_default();
    p.rank = 4;
    p.alpha = 8;
    p.lr = 3e-3f;
    p.batch = 2;
    p.steps = 24;
    p.warmup_steps = 2;
    p.schedule = LK_SCHED_COSINE;
    return p;
}

/* Training on an NF4 base lowers the held-out loss; the saved adapter reproduces it on a fresh
 * NF4 model. */
static void test_learns_and_reloads(void **state)
{
    (void)state;
    fixture f;
    open_fixture_q(&f, 2, LK_QTYPE_NF4);
    struct lk_train_params p = small_params();
    lk_trainer *t;
    assert_ok(lk_trainer_create(f.m, f.train, &p, &t));
    double before, after;
    int64_t n1, n2;
    assert_ok(lk_trainer_eval(t, f.test, &before, NULL, &n1));
    while (lk_trainer_steps_done(t) < lk_trainer_total_steps(t)) {
        struct lk_step_stats st;
        assert_ok(lk_trainer_step(t, &st));
        assert_false(st.skipped);
        assert_true(st.trained_tokens > 0 && st.tokens >= st.trained_tokens);
    }
    assert_ok(lk_trainer_eval(t, f.test, &after, NULL, &n2));
    fprintf(stderr, "held-out loss %.4f -> %.4f over %lld tokens\n", before, after, (long long)n2);
    assert_int_equal(n1, n2);
    assert_true(after < before - 0.5);

    char dir[4200];
    snprintf(dir, sizeof dir, "%s/adapter", g_dir);
    assert_ok(lk_trainer_save_adapter(t, dir, "stories260K-hf", 0));
    lk_trainer_free(t);

    /* fresh model + reloaded adapter through the inference forward */
    lk_model *m2;
    struct lk_model_params mp = lk_model_params_default();
    mp.quant = LK_QTYPE_NF4;
    assert_ok(lk_model_load(shared_path(MODEL), &mp, &m2));
    lk_adapter *a;
    assert_ok(lk_adapter_load(dir, &a));
    assert_ok(lk_model_attach_adapter(m2, a, 1.0f));
    double nll = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < lk_dataset_get_stats(f.test)->examples; i++) {
        const int32_t *ids, *labels;
        int64_t n, line;
        assert_ok(lk_dataset_example(f.test, i, &ids, &labels, &n, &line));
        assert_ok(lk_model_nll_labels(m2, ids, labels, n, 0, &nll, &cnt));
    }
    fprintf(stderr, "reloaded adapter: loss %.6f (trainer %.6f)\n", nll / cnt, after);
    assert_int_equal(cnt, n2);
    assert_true(fabs(nll / cnt - after) < 1e-5 * after);
    lk_adapter_free(a);
    lk_model_free(m2);
    close_fixture(&f);
}

/* The adapter files of PEFT folders a and b are the same bytes. */
static void assert_same_adapter(const char *a, const char *b)
{
    char p1[4300], p2[4300];
    snprintf(p1, sizeof p1, "%s/adapter_model.safetensors", a);
    snprintf(p2, sizeof p2, "%s/adapter_model.safetensors", b);
    mapfile m1, m2;
    assert_ok(mapfile_open(&m1, p1, 1));
    assert_ok(mapfile_open(&m2, p2, 1));
    assert_int_equal(m1.size, m2.size);
    assert_memory_equal(m1.data, m2.data, m1.size);
    mapfile_close(&m1);
    mapfile_close(&m2);
}

/* Steps 1..N uninterrupted vs 1..K, checkpoint, a new trainer resumed, K+1..N: same adapter bits
 * and the same loss history. Dropout 0.1 exercises the per-step masks. */
static void test_resume_bit_identical(void **state)
{
    (void)state;
    struct lk_train_params p = small_params();
    p.steps = 8;
    p.dropout = 0.1f;
    p.grad_accum = 2;
    char ck[4200], a1[4200], a2[4200];
    snprintf(ck, sizeof ck, "%s/state.ckpt", g_dir);
    snprintf(a1, sizeof a1, "%s/full", g_dir);
    snprintf(a2, sizeof a2, "%s/resumed", g_dir);
    float hist_full[8], hist_res[8];
    int64_t n;

    fixture f;
    open_fixture(&f, 2);
    lk_trainer *t;
    assert_ok(lk_trainer_create(f.m, f.train, &p, &t));
    struct lk_step_stats st;
    for (int i = 0; i < 8; i++)
        assert_ok(lk_trainer_step(t, &st));
    memcpy(hist_full, lk_trainer_loss_history(t, &n), sizeof hist_full);
    assert_ok(lk_trainer_save_adapter(t, a1, NULL, 0));
    lk_trainer_free(t);
    close_fixture(&f);

    open_fixture(&f, 2);
    assert_ok(lk_trainer_create(f.m, f.train, &p, &t));
    for (int i = 0; i < 3; i++)
        assert_ok(lk_trainer_step(t, &st));
    assert_ok(lk_trainer_save_checkpoint(t, ck));
    lk_trainer_free(t);
    close_fixture(&f);

    open_fixture(&f, 2); /* a new process would start from here */
    assert_ok(lk_trainer_create(f.m, f.train, &p, &t));
    assert_ok(lk_trainer_resume(t, ck));
    assert_int_equal(lk_trainer_steps_done(t), 3);
    while (lk_trainer_steps_done(t) < 8)
        assert_ok(lk_trainer_step(t, &st));
    memcpy(hist_res, lk_trainer_loss_history(t, &n), sizeof hist_res);
    assert_int_equal(n, 8);
    assert_ok(lk_trainer_save_adapter(t, a2, NULL, 0));
    lk_trainer_free(t);
    /* a checkpoint of another shape is refused */
    struct lk_train_params q = p;
    q.rank = 2;
    assert_ok(lk_trainer_create(f.m, f.train, &q, &t));
    assert_status(lk_trainer_resume(t, ck), LK_ERR_ARG, "parameters");
    lk_trainer_free(t);
    /* a well-formed checkpoint whose counters are out of range or fractional is refused before
     * any conversion (step 1e300 was undefined behaviour) */
    static const struct {
        const char *key;
        double v;
        const char *msg;
    } bad[] = {{"step", 1e300, "counter step is 1e+300"},
               {"cursor_next", -1, "counter cursor_next is -1"},
               {"bad_run", 0.5, "counter bad_run is 0.5"},
               {"cursor_epoch", 9007199254740994.0, "expected a whole number in [0, 2^53]"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cJSON *meta;
        float *blob;
        int64_t nb;
        char ck2[4300];
        snprintf(ck2, sizeof ck2, "%s.bad", ck);
        assert_ok(ckpt_load(ck, &meta, &blob, &nb));
        cJSON_ReplaceItemInObjectCaseSensitive(meta, bad[i].key, cJSON_CreateNumber(bad[i].v));
        assert_ok(ckpt_save(ck2, meta, blob, blob + nb, blob + 2 * nb, nb));
        cJSON_Delete(meta);
        free(blob);
        assert_ok(lk_trainer_create(f.m, f.train, &p, &t));
        assert_status(lk_trainer_resume(t, ck2), LK_ERR_FORMAT, bad[i].msg);
        assert_int_equal(lk_trainer_steps_done(t), 0);
        lk_trainer_free(t);
    }
    close_fixture(&f);

    assert_memory_equal(hist_full, hist_res, sizeof hist_full);
    assert_same_adapter(a1, a2);
}

/* Weights plus the trainer's plan for p (the budget LK_CKPT_AUTO compares with its limit). */
static int64_t plan_total(const fixture *f, const struct lk_train_params *p)
{
    int64_t ad, opt, act;
    return lk_model_weight_bytes(f->m) +
           lk_trainer_memory_plan(f->m, p, lk_dataset_seq_len(f->train), &ad, &opt, &act);
}

/* Three steps with p's checkpointing into the adapter folder dir; their losses into hist[3]. */
static void train_three(fixture *f, const struct lk_train_params *p, const char *dir, float *hist)
{
    lk_trainer *t;
    assert_ok(lk_trainer_create(f->m, f->train, p, &t));
    struct lk_step_stats st;
    for (int i = 0; i < 3; i++)
        assert_ok(lk_trainer_step(t, &st));
    int64_t n;
    memcpy(hist, lk_trainer_loss_history(t, &n), 3 * sizeof *hist);
    assert_int_equal(n, 3);
    assert_ok(lk_trainer_save_adapter(t, dir, NULL, 0));
    lk_trainer_free(t);
}

/* Activation checkpointing: off keeps all 5 layers' activations, on only the last one's; auto as
 * many as memory_limit lets the plan keep (all with room to spare, 3 under a limit 2.5 layers
 * above the least plan, 1 under a limit below it); the plan grows by one layer's activations per
 * kept layer. Every choice trains the very same steps, bit for bit (with dropout on). */
static void test_checkpointing_choice(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, 2);
    const int64_t T = lk_dataset_seq_len(f.train), L = lk_model_get_config(f.m)->n_layers;
    assert_int_equal(L, 5);
    struct lk_train_params p = small_params();
    p.dropout = 0.1f;
    p.checkpointing = LK_CKPT_OFF;
    assert_int_equal(lk_trainer_kept_layers(f.m, &p, T), L);
    const int64_t most = plan_total(&f, &p);
    p.checkpointing = LK_CKPT_ON;
    assert_int_equal(lk_trainer_kept_layers(f.m, &p, T), 1);
    const int64_t least = plan_total(&f, &p), layer = (most - least) / (L - 1);
    assert_true(layer > 0 && most - least == layer * (L - 1));
    p.checkpointing = LK_CKPT_AUTO;
    p.memory_limit = most + 1000000;
    assert_int_equal(lk_trainer_kept_layers(f.m, &p, T), L);
    p.memory_limit = least + 2 * layer + layer / 2;
    assert_int_equal(lk_trainer_kept_layers(f.m, &p, T), 3);
    assert_true(plan_total(&f, &p) == least + 2 * layer && plan_total(&f, &p) <= p.memory_limit);
    const int64_t limit3 = p.memory_limit;
    p.memory_limit = least - 1;
    assert_int_equal(lk_trainer_kept_layers(f.m, &p, T), 1);
    p.memory_limit = 0; /* this machine's memory: far more than this tiny model's plan */
    assert_int_equal(lk_trainer_kept_layers(f.m, &p, T), L);
    p.memory_limit = -1;
    assert_status(lk_train_params_check(&p, NULL), LK_ERR_ARG, "--memory-limit");
    p.memory_limit = 0;
    p.checkpointing = (lk_checkpointing)3;
    assert_status(lk_train_params_check(&p, NULL), LK_ERR_ARG, "--checkpointing");

    const lk_checkpointing modes[3] = {LK_CKPT_OFF, LK_CKPT_ON, LK_CKPT_AUTO};
    float hist[3][3];
    char dirs[3][4200];
    close_fixture(&f);
    for (int i = 0; i < 3; i++) { /* each from a fresh fixture, as a new process would */
        p.checkpointing = modes[i];
        p.memory_limit = modes[i] == LK_CKPT_AUTO ? limit3 : 0;
        snprintf(dirs[i], sizeof dirs[i], "%s/ckpt-%s", g_dir, lk_checkpointing_name(modes[i]));
        open_fixture(&f, 2);
        train_three(&f, &p, dirs[i], hist[i]);
        close_fixture(&f);
    }
    for (int i = 1; i < 3; i++) {
        assert_memory_equal(hist[0], hist[i], sizeof hist[0]);
        assert_same_adapter(dirs[0], dirs[i]);
    }
}

/* A NaN in the initial adapter makes every step non-finite: each is skipped, and after
 * max_bad_steps in a row training stops with LK_ERR_NUMERIC. */
static void test_nan_steps(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, 1);
    struct lk_adapter_params ap = lk_adapter_params_default();
    ap.rank = 4;
    ap.alpha = 8;
    lk_adapter *a;
    assert_ok(lk_adapter_create(lk_model_get_config(f.m), &ap, &a));
    a->mods[3].A[5] = NAN;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/nan-adapter", g_dir);
    assert_ok(lk_adapter_save_peft(a, dir, 0));
    lk_adapter_free(a);
    struct lk_train_params p = small_params();
    p.init_adapter = dir;
    p.max_bad_steps = 3;
    lk_trainer *t;
    assert_ok(lk_trainer_create(f.m, f.train, &p, &t));
    struct lk_step_stats st;
    assert_ok(lk_trainer_step(t, &st));
    assert_true(st.skipped);
    assert_ok(lk_trainer_step(t, &st));
    assert_status(lk_trainer_step(t, &st), LK_ERR_NUMERIC, "non-finite");
    assert_int_equal(st.skipped_total, 3);
    lk_trainer_free(t);
    close_fixture(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_and_reloads),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_nan_steps),
        cmocka_unit_test(test_checkpointing_choice),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
