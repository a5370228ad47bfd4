/* test_train_graph.c — gradients of the whole model's loss with respect to every LoRA factor
 * against central finite differences (tiny Llama-3 and Mistral models, packed sequences with
 * restarting positions, with and without LoRA dropout), the same gradients bit for bit whichever
 * layers keep their activations (activation checkpointing), and the chunked cross-entropy against
 * a direct log-softmax. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora/lora.h"
#include "nn/loss.h"
#include "core/rng.h"
#include "testutil.h"
#include "train/train_graph.h"

typedef struct {
    train_graph *g;
    train_batch b;
} run_ctx;

static double loss_of(run_ctx *c)
{
    loss_sums sums = {0};
    assert_ok(graph_run(c->g, &c->b, NULL, 1.0f, 0, &sums));
    return sums.loss;
}

/* The packed sequence tok/tgt/pos[T] as a run's input, no dropout. */
static train_batch batch(const int32_t *tok, const int32_t *tgt, const int32_t *pos, int64_t T)
{
    return (train_batch){.tokens = tok, .targets = tgt, .pos = pos, .T = T};
}

static void check_model_grads(const char *dir, float dropout, int threads)
{
    lk_model *m;
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = threads;
    assert_ok(lk_model_load(dir, &mp, &m));
    int64_t V = lk_model_get_config(m)->vocab_size;
    struct lk_adapter_params ap = lk_adapter_params_default();
    ap.rank = 3;
    ap.alpha = 6.0;
    ap.init_std_b = 0.05; /* non-zero B so that every gradient is alive */
    ap.seed = 11;
    lk_adapter *ad;
    assert_ok(lk_adapter_create(lk_model_get_config(m), &ap, &ad));
    lora_set s;
    assert_ok(lora_set_create(m, ad, dropout, &s));
    rng_state rg;
    rng_seed(&rg, 5, 1);
    /* two packed examples: [0..6) and [6..13), prompt tokens masked with -100 */
    enum { T = 13 };
    int32_t tok[T], tgt[T], pos[T];
    for (int t = 0; t < T; t++) {
        tok[t] = (int32_t)((t * 31 + 7) % V);
        pos[t] = t < 6 ? t : t - 6;
        tgt[t] = (t == 1 || t == 5 || t == 12) ? -100 : (int32_t)((t * 17 + 3) % V);
    }
    train_graph *g;
    assert_ok(graph_create(m, 16, 1, &g));
    /* the dropout masks (with dropout > 0) of one row: the same in every run below */
    run_ctx c = {g, batch(tok, tgt, pos, T)};
    c.b.dropout = 1;
    c.b.seed = 1000;
    c.b.row = 3;
    loss_sums sums = {0};
    lora_set_zero_grad(&s);
    assert_ok(graph_run(g, &c.b, NULL, 1.0f, 1, &sums));
    double sum = sums.loss;
    assert_int_equal(sums.count, T - 3);
    assert_true(fabs(sum - loss_of(&c)) < 1e-9 * fabs(sum) + 1e-9); /* backward leaves it alone */
    /* more layers keeping their activations (2 of L: the lowest recomputed, the others kept;
     * every layer kept; a keep beyond L clamped): the very same loss and gradients */
    const int64_t L = lk_model_get_config(m)->n_layers;
    assert_true(L >= 2);
    const int64_t keeps[] = {2, L, L + 5};
    for (int i = 0; i < 3; i++) {
        float *keep = malloc((size_t)s.n_params * sizeof(float));
        memcpy(keep, s.grads, (size_t)s.n_params * sizeof(float));
        train_graph *g2;
        assert_ok(graph_create(m, 16, keeps[i], &g2));
        assert_true(graph_bytes(m, 16, keeps[i]) ==
                    graph_bytes(m, 16, 1) +
                        (keeps[i] < L ? keeps[i] - 1 : L - 1) * graph_layer_bytes(m, 16));
        lora_set_zero_grad(&s);
        loss_sums sums2 = {0};
        assert_ok(graph_run(g2, &c.b, NULL, 1.0f, 1, &sums2));
        assert_true(sums2.loss == sum);
        assert_memory_equal(keep, s.grads, (size_t)s.n_params * sizeof(float));
        graph_free(g2);
        free(keep);
    }
    /* finite differences on a spread of parameters covering every module's A and B */
    double num = 0, den = 0, h = 1e-2;
    int checked = 0;
    for (int i = 0; i < s.n; i++) {
        lora_module *mo = &s.mods[i];
        float *ps[2] = {mo->am->A, mo->am->B};
        float *gs[2] = {mo->tr.dA, mo->tr.dB};
        int64_t ns[2] = {mo->am->r * mo->am->in, mo->am->out * mo->am->r};
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 3; j++) {
                int64_t idx = (int64_t)(rng_next(&rg) % (uint64_t)ns[k]);
                float keep = ps[k][idx];
                ps[k][idx] = keep + (float)h;
                double lp = loss_of(&c);
                ps[k][idx] = keep - (float)h;
                double lm = loss_of(&c);
                ps[k][idx] = keep;
                double fd = (lp - lm) / (2 * h), an = gs[k][idx];
                num += (fd - an) * (fd - an);
                den += fd * fd;
                checked++;
            }
    }
    double rel = sqrt(num / den);
    fprintf(stderr,
            "%s dropout %.1f threads %d: LoRA gradient relative error %.2e over %d "
            "parameters\n",
            dir, dropout, threads, rel, checked);
    assert_true(rel < 5e-3);
    graph_free(g);
    lora_set_free(&s);
    lk_adapter_free(ad);
    lk_model_free(m);
}

static void test_grads_llama3(void **state)
{
    (void)state;
    check_model_grads(data_path("models/llama3-tiny"), 0.0f, 2);
}

static void test_grads_mistral_window_dropout(void **state)
{
    (void)state;
    check_model_grads(data_path("models/mistral-tiny"), 0.3f, 1);
}

static void test_grads_qwen2_bias(void **state)
{
    (void)state;
    check_model_grads(data_path("models/qwen2-tiny"), 0.0f, 4);
}

/* Packing isolates examples: the loss of two packed examples is the sum of their separate
 * losses. */
static void test_packing_equals_separate(void **state)
{
    (void)state;
    lk_model *m;
    assert_ok(lk_model_load(data_path("models/llama3-tiny"), NULL, &m));
    train_graph *g;
    assert_ok(graph_create(m, 16, 1, &g));
    int32_t tok[10] = {1, 5, 9, 33, 7, 1, 12, 40, 2, 8}, tgt[10], pos[10];
    for (int t = 0; t < 10; t++) {
        pos[t] = t < 5 ? t : t - 5;
        tgt[t] = (t == 4 || t == 9) ? -100 : tok[t + 1];
    }
    loss_sums both = {0}, a = {0}, b = {0};
    train_batch b_both = batch(tok, tgt, pos, 10), b_a = batch(tok, tgt, pos, 5);
    train_batch b_b = batch(tok + 5, tgt + 5, pos + 5, 5);
    assert_ok(graph_run(g, &b_both, NULL, 1, 0, &both));
    assert_ok(graph_run(g, &b_a, NULL, 1, 0, &a));
    assert_ok(graph_run(g, &b_b, NULL, 1, 0, &b));
    assert_int_equal(both.count, a.count + b.count);
    assert_true(fabs(both.loss - (a.loss + b.loss)) < 1e-4);
    /* and the unpacked forward agrees with the inference forward's loss */
    double nll = 0;
    int64_t cnt = 0;
    assert_ok(lk_model_nll(m, tok, 5, 0, &nll, &cnt));
    assert_true(fabs(nll - a.loss) < 1e-4);
    pos[3] = 7; /* not a valid position sequence */
    assert_status(graph_run(g, &b_both, NULL, 1, 0, &both), LK_ERR_ARG, "positions");
    graph_free(g);
    lk_model_free(m);
}

/* Chunked cross-entropy over a vocabulary larger than one chunk, against a direct evaluation. */
static void test_ce_chunked(void **state)
{
    (void)state;
    enum { T = 40, C = 7, V = 9000 };
    float *w = malloc(sizeof(float) * V * C), *h = malloc(sizeof(float) * T * C);
    float *dh = malloc(sizeof(float) * T * C);
    int32_t tg[T];
    rng_state rg;
    rng_seed(&rg, 9, 9);
    for (int i = 0; i < V * C; i++)
        w[i] = (float)rng_normal(&rg);
    for (int i = 0; i < T * C; i++)
        h[i] = (float)rng_normal(&rg) * 0.5f;
    for (int t = 0; t < T; t++)
        tg[t] = t % 7 == 3 ? -100 : (int32_t)(rng_next(&rg) % V);
    linear head = {.name = "head", .w = w, .in = C, .out = V};
    float *scratch = malloc(sizeof(float) * (size_t)ce_scratch_floats(&head, 2));
    double sum = 0;
    int64_t cnt = 0;
    ce_forward_backward(&head, h, tg, T, 0.5f, dh, &sum, &cnt, scratch, 2);
    double want = 0;
    for (int t = 0; t < T; t++) {
        if (tg[t] < 0) {
            for (int i = 0; i < C; i++)
                assert_true(dh[t * C + i] == 0.0f);
            continue;
        }
        double mx = -1e300, se = 0, lt = 0, l[V];
        for (int v = 0; v < V; v++) {
            l[v] = 0;
            for (int i = 0; i < C; i++)
                l[v] += (double)h[t * C + i] * w[v * C + i];
            mx = l[v] > mx ? l[v] : mx;
        }
        for (int v = 0; v < V; v++)
            se += exp(l[v] - mx);
        lt = l[tg[t]];
        want += log(se) + mx - lt;
        for (int i = 0; i < C; i++) { /* dh = 0.5·Σ_v (p_v − 1[v=tg])·w_v */
            double d = 0;
            for (int v = 0; v < V; v++)
                d += (exp(l[v] - mx) / se - (v == tg[t])) * w[v * C + i];
            assert_true(fabs(0.5 * d - dh[t * C + i]) < 1e-4 * (1 + fabs(d)));
        }
    }
    assert_int_equal(cnt, T - 6);
    assert_true(fabs(sum - want) < 1e-6 * want);
    free(w);
    free(h);
    free(dh);
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ce_chunked),
        cmocka_unit_test(test_packing_equals_separate),
        cmocka_unit_test(test_grads_llama3),
        cmocka_unit_test(test_grads_mistral_window_dropout),
        cmocka_unit_test(test_grads_qwen2_bias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
