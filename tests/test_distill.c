/* test_distill.c — distillation plumbing on stories260K-hf: lk_model_kl_labels against a KL
 * computed here from full logits (lk_model_forward, no chunking); a padded teacher vocabulary is
 * cut to the student's; the trainer's distillation objective is exactly its SFT objective at
 * kd_weight 0, and exactly zero (loss and gradient) when the student equals the teacher; held-out
 * KL to the teacher reported by lk_trainer_eval equals lk_model_kl_labels'; bad setups are refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "testutil.h"

#define MODEL "models/stories260K-hf"

static lk_model *load(lk_qtype q)
{
    require_file(shared_path(MODEL "/model.safetensors"));
    struct lk_model_params mp = lk_model_params_default();
    mp.compute = LK_COMPUTE_F32; /* identities checked to 1e-6 */
    mp.n_threads = 2;
    mp.quant = q;
    lk_model *m;
    assert_ok(lk_model_load(shared_path(MODEL), &mp, &m));
    return m;
}

static const char *sample(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/../../samples/data/%s", LK_TEST_DATA, name);
    return p;
}

static int32_t *encode(const char *text, int64_t *n)
{
    lk_tokenizer *tok;
    assert_ok(lk_tokenizer_load(shared_path(MODEL), &tok));
    int32_t *ids;
    assert_ok(lk_tokenizer_encode(tok, text, strlen(text), 1, &ids, n));
    lk_tokenizer_free(tok);
    return ids;
}

/* log-softmax of row[0..V) in double */
static void log_softmax(const float *row, int64_t V, double *out)
{
    double mx = row[0], s = 0;
    for (int64_t i = 1; i < V; i++)
        mx = row[i] > mx ? row[i] : mx;
    for (int64_t i = 0; i < V; i++)
        s += exp(row[i] - mx);
    for (int64_t i = 0; i < V; i++)
        out[i] = row[i] - mx - log(s);
}

static const char *TEXT = "Once upon a time, there was a little girl named Lily. She loved to "
                          "play outside with her ball. One day, the sun was hot and she felt sad.";

/* KL(teacher ‖ model) and the loss, per token, from full logits of both models. */
static void reference_kl(const lk_model *m, const lk_model *teacher, const int32_t *ids, int64_t n,
                         double *kl, double *nll)
{
    int64_t V = m->cfg.vocab_size, VT = teacher->cfg.vocab_size;
    float *ls = malloc((size_t)(n * V) * sizeof(float));
    float *lt = malloc((size_t)(n * VT) * sizeof(float));
    double *ps = malloc((size_t)V * sizeof(double)), *pt = malloc((size_t)V * sizeof(double));
    assert_ok(lk_model_forward(m, ids, n, ls));
    assert_ok(lk_model_forward(teacher, ids, n, lt));
    *kl = *nll = 0;
    for (int64_t t = 0; t + 1 < n; t++) {
        log_softmax(ls + t * V, V, ps);
        log_softmax(lt + t * VT, V, pt); /* the teacher's first V ids only */
        for (int64_t i = 0; i < V; i++)
            *kl += exp(pt[i]) * (pt[i] - ps[i]);
        *nll -= ps[ids[t + 1]];
    }
    free(ls);
    free(lt);
    free(ps);
    free(pt);
}

static void test_kl_matches_full_logits(void **state)
{
    (void)state;
    lk_model *s = load(LK_QTYPE_NF4), *t = load(LK_QTYPE_F32);
    int64_t n;
    int32_t *ids = encode(TEXT, &n);
    double kl_ref, nll_ref, kl = 0, nll = 0;
    int64_t cnt = 0;
    reference_kl(s, t, ids, n, &kl_ref, &nll_ref);
    assert_ok(lk_model_kl_labels(s, t, ids, NULL, n, 0, &nll, &kl, &cnt));
    assert_int_equal(cnt, n - 1);
    printf("KL(f32 || nf4) %.6f per token over %lld tokens (reference %.6f)\n", kl / (double)cnt,
           (long long)cnt, kl_ref / (double)cnt);
    assert_true(kl_ref > 0.01 * (double)cnt); /* NF4 really differs */
    assert_true(fabs(kl - kl_ref) <= 1e-4 * kl_ref);
    assert_true(fabs(nll - nll_ref) <= 1e-5 * nll_ref);
    /* windows of 16 tokens: each window is scored on its own, as lk_model_nll does */
    double kl_w = 0, nll_w = 0, nll_plain = 0;
    int64_t cw = 0, cp = 0;
    assert_ok(lk_model_kl_labels(s, t, ids, NULL, n, 16, &nll_w, &kl_w, &cw));
    assert_ok(lk_model_nll(s, ids, n, 16, &nll_plain, &cp));
    assert_int_equal(cw, cp);
    assert_true(fabs(nll_w - nll_plain) <= 1e-5 * nll_plain);
    /* a model against itself */
    double kl0 = 0, nll0 = 0;
    int64_t c0 = 0;
    assert_ok(lk_model_kl_labels(t, t, ids, NULL, n, 0, &nll0, &kl0, &c0));
    assert_true(fabs(kl0) < 1e-6 * (double)c0);
    free(ids);
    lk_model_free(s);
    lk_model_free(t);
}

/* A teacher whose vocabulary is padded with extra rows gives the same KL: only the student's ids
 * count. */
static void test_padded_teacher_is_cut(void **state)
{
    (void)state;
    lk_model *s = load(LK_QTYPE_Q4_0), *t = load(LK_QTYPE_F32);
    int64_t n;
    int32_t *ids = encode(TEXT, &n);
    double kl = 0, nll = 0, klp = 0, nllp = 0;
    int64_t c = 0, cp = 0;
    assert_ok(lk_model_kl_labels(s, t, ids, NULL, n, 0, &nll, &kl, &c));
    int64_t V = t->cfg.vocab_size, C = t->cfg.hidden_size, pad = 64;
    float *w = malloc((size_t)((V + pad) * C) * sizeof(float));
    memcpy(w, t->lm_head.w, (size_t)(V * C) * sizeof(float));
    for (int64_t i = V * C; i < (V + pad) * C; i++)
        w[i] = (float)((i * 7919) % 1000) / 100.0f; /* large logits on the padding ids */
    linear head = t->lm_head;
    t->lm_head.w = w;
    t->lm_head.out = V + pad;
    t->cfg.vocab_size = V + pad;
    assert_ok(lk_model_kl_labels(s, t, ids, NULL, n, 0, &nllp, &klp, &cp));
    assert_int_equal(c, cp);
    assert_true(fabs(klp - kl) <= 1e-6 * kl);
    assert_true(nllp == nll);
    /* a teacher with fewer ids than the student cannot teach it */
    t->cfg.vocab_size = V - 1;
    t->lm_head.out = V - 1;
    assert_status(lk_model_kl_labels(s, t, ids, NULL, n, 0, &nllp, &klp, &cp), LK_ERR_SHAPE,
                  "teacher vocabulary");
    t->lm_head = head;
    t->cfg.vocab_size = V;
    free(w);
    free(ids);
    lk_model_free(s);
    lk_model_free(t);
}

typedef struct {
    lk_tokenizer *tok;
    lk_dataset *train, *test;
} data;

static void open_data(data *d)
{
    assert_ok(lk_tokenizer_load(shared_path(MODEL), &d->tok));
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 128;
    assert_ok(lk_dataset_load(sample("whale-train.jsonl"), d->tok, &dp, &d->train));
    dp.shuffle = 0;
    dp.pack = 0;
    assert_ok(lk_dataset_load(sample("whale-test.jsonl"), d->tok, &dp, &d->test));
}

static void close_data(data *d)
{
    lk_dataset_free(d->train);
    lk_dataset_free(d->test);
    lk_tokenizer_free(d->tok);
}

static struct lk_train_params params(void)
{
    struct lk_train_params p = lk_train_params_default();
    p.rank = 4;
    p.lr = 3e-3f;
    p.batch = 2;
    p.steps = 4;
    return p;
}

/* One step's stats and the adapter's factors after it. */
static void one_step(lk_model *m, lk_dataset *train, const struct lk_train_params *p,
                     struct lk_step_stats *st)
{
    struct lk_data_cursor c0 = {0, 0};
    assert_ok(lk_dataset_set_cursor(train, &c0));
    lk_trainer *t;
    assert_ok(lk_trainer_create(m, train, p, &t));
    assert_ok(lk_trainer_step(t, st));
    lk_trainer_free(t);
}

static void test_trainer_objectives(void **state)
{
    (void)state;
    data d;
    open_data(&d);
    lk_model *s = load(LK_QTYPE_NF4), *t = load(LK_QTYPE_F32), *s32 = load(LK_QTYPE_F32);
    struct lk_train_params p = params();
    struct lk_step_stats sft, kd0, same;
    one_step(s, d.train, &p, &sft);
    p.objective = LK_OBJ_KD;
    p.teacher = t;
    p.kd_weight = 0; /* all cross-entropy */
    one_step(s, d.train, &p, &kd0);
    assert_true(fabs(sft.loss - kd0.loss) <= 1e-6 * sft.loss);
    assert_true(fabs(sft.grad_norm - kd0.grad_norm) <= 1e-5 * sft.grad_norm);
    assert_true(fabs(kd0.ce - kd0.loss) <= 1e-6 * kd0.loss);
    assert_true(kd0.kd > 0.01);
    /* the student is the teacher (fresh adapter: B = 0): zero divergence, zero gradient, for
     * every objective and temperature */
    lk_objective objs[3] = {LK_OBJ_KD, LK_OBJ_RKL, LK_OBJ_JSD};
    for (int i = 0; i < 3; i++) {
        p.objective = objs[i];
        p.kd_weight = 1;
        p.kd_temp = i == 0 ? 2.0f : 1.0f;
        one_step(s32, d.train, &p, &same);
        assert_true(fabs(same.loss) < 1e-6);
        assert_true(same.grad_norm < 1e-6);
        assert_true(same.ce > 1.0);
    }
    /* eval: KL to the teacher equals lk_model_kl_labels' over the same examples */
    p.objective = LK_OBJ_KD;
    p.kd_temp = 1;
    lk_trainer *tr;
    assert_ok(lk_trainer_create(s, d.train, &p, &tr));
    double loss, kl;
    int64_t cnt;
    assert_ok(lk_trainer_eval(tr, d.test, &loss, &kl, &cnt));
    double nll_ref = 0, kl_ref = 0;
    int64_t c_ref = 0;
    for (int64_t i = 0; i < lk_dataset_get_stats(d.test)->examples; i++) {
        const int32_t *ids, *labels;
        int64_t n, line;
        assert_ok(lk_dataset_example(d.test, i, &ids, &labels, &n, &line));
        assert_ok(lk_model_kl_labels(s, t, ids, labels, n, 0, &nll_ref, &kl_ref, &c_ref));
    }
    assert_int_equal(cnt, c_ref);
    printf("held-out KL(f32 || nf4) %.6f, loss %.6f over %lld tokens\n", kl, loss, (long long)cnt);
    assert_true(fabs(kl - kl_ref / (double)c_ref) <= 1e-4 * kl);
    assert_true(fabs(loss - nll_ref / (double)c_ref) <= 1e-5 * loss);
    lk_trainer_free(tr);
    /* refused setups */
    p.teacher = s;
    assert_status(lk_trainer_create(s, d.train, &p, &tr), LK_ERR_ARG, "another model instance");
    p.teacher = NULL;
    assert_status(lk_trainer_create(s, d.train, &p, &tr), LK_ERR_ARG, "needs a teacher");
    p.objective = LK_OBJ_SFT;
    p.teacher = t;
    assert_status(lk_trainer_create(s, d.train, &p, &tr), LK_ERR_ARG, "distillation objective");
    p.objective = LK_OBJ_JSD;
    p.jsd_beta = 1.5f;
    assert_status(lk_trainer_create(s, d.train, &p, &tr), LK_ERR_ARG,
                  "--jsd-beta must be in [0, 1], got 1.5");
    lk_model_free(s);
    lk_model_free(t);
    lk_model_free(s32);
    close_data(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kl_matches_full_logits),
        cmocka_unit_test(test_padded_teacher_is_cut),
        cmocka_unit_test(test_trainer_objectives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
