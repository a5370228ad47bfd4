/* test_generate.c — the generation loop (stop ids, the callback, where it stops feeding the
 * session) on stories260K-hf against Karpathy's greedy ids (the ones tests/cli_tools.sh checks),
 * and the verdicts of lk_answer_check (whitespace normalisation, patterns). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "lorakit/generate.h"

/* llama2.c's stories260K, greedy after BOS */
static const int32_t greedy[] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421};

static lk_model *load_stories(void)
{
    const char *dir = shared_path("models/stories260K-hf");
    require_file(dir);
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 1;
    lk_model *m;
    assert_ok(lk_model_load(dir, &mp, &m));
    return m;
}

static int stop_after_3(void *user, const int32_t *out, int64_t n)
{
    (void)out;
    ++*(int *)user;
    return n == 3;
}

static void run(const lk_model *m, const struct lk_generate_params *g, lk_token_fn fn, void *user,
                int32_t *out, int64_t *n_out, int64_t *n_past)
{
    struct lk_sampler_params sp = lk_sampler_params_default();
    sp.temperature = 0;
    lk_sampler *smp;
    lk_session *s;
    assert_ok(lk_sampler_create(&sp, &smp));
    assert_ok(lk_session_create(m, 64, &s));
    const int32_t bos = 1;
    assert_ok(lk_generate(s, smp, &bos, 1, g, fn, user, out, n_out));
    *n_past = lk_session_n_past(s);
    lk_session_free(s);
    lk_sampler_free(smp);
}

static void test_loop(void **st)
{
    (void)st;
    lk_model *m = load_stories();
    int32_t out[16];
    int64_t n, past;
    struct lk_generate_params g = lk_generate_params_default();
    g.max_new_tokens = 12;
    run(m, &g, NULL, NULL, out, &n, &past);
    assert_int_equal(n, 12);
    assert_memory_equal(out, greedy, sizeof greedy);
    assert_int_equal(past, 12); /* BOS and 11 tokens: the last one is not fed */
    /* a stop id ends it before the token, which is neither written nor fed */
    assert_ok(lk_generate_add_stop(&g, 261));
    assert_ok(lk_generate_add_stop(&g, 261)); /* a repeat is ignored */
    assert_ok(lk_generate_add_stop(&g, -1));  /* so is "none" */
    assert_int_equal(g.n_stop, 1);
    run(m, &g, NULL, NULL, out, &n, &past);
    assert_int_equal(n, 2);
    assert_memory_equal(out, greedy, 2 * sizeof *out);
    assert_int_equal(past, 3);
    /* the callback sees every token and may end generation */
    g.n_stop = 0;
    int calls = 0;
    run(m, &g, stop_after_3, &calls, out, &n, &past);
    assert_int_equal(n, 3);
    assert_int_equal(calls, 3);
    assert_memory_equal(out, greedy, 3 * sizeof *out);
    /* checked options */
    g.max_new_tokens = -1;
    assert_status(lk_generate_params_check(&g), LK_ERR_ARG, "--max-new-tokens must be at least 0");
    g = lk_generate_params_default();
    for (int i = 0; i < LK_MAX_STOP; i++)
        assert_ok(lk_generate_add_stop(&g, 100 + i));
    assert_status(lk_generate_add_stop(&g, 7), LK_ERR_ARG, "stop ids");
    lk_model_free(m);
}

static void test_verdict(void **st)
{
    (void)st;
    struct lk_answer_params p = lk_answer_params_default();
    assert_int_equal(lk_answer_check(&p, "I am Tinker.", "I am Tinker."), 1);
    assert_int_equal(lk_answer_check(&p, "  I am\n\tTinker. \n", "I am Tinker."), 1);
    assert_int_equal(lk_answer_check(&p, "I am Tinker.", " I  am Tinker."), 1);
    assert_int_equal(lk_answer_check(&p, "", " \n"), 1);
    assert_int_equal(lk_answer_check(&p, "I am Tinker", "I am Tinker."), 0);
    assert_int_equal(lk_answer_check(&p, "I am Tinker.", "I am Tinker"), 0);
    assert_int_equal(lk_answer_check(&p, "I amTinker.", "I am Tinker."), 0);
    assert_int_equal(lk_answer_check(&p, "i am tinker.", "I am Tinker."), 0);
    assert_int_equal(lk_answer_check(&p, "", "x"), 0);
    p.match = "Tink(er)?\\b";
    assert_ok(lk_answer_params_check(&p));
    assert_int_equal(lk_answer_check(&p, "Hello! I am Tinker, ...", "anything"), 1);
    assert_int_equal(lk_answer_check(&p, "I am SmolLM.", "Tinker"), 0);
    p.match = "^é+$"; /* UTF-8 */
    assert_int_equal(lk_answer_check(&p, "éé", ""), 1);
    p.match = "a(";
    assert_status(lk_answer_params_check(&p), LK_ERR_ARG, "--match: 'a(' is not a valid pattern");
    assert_int_equal(lk_answer_check(&p, "a", "a"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_loop), cmocka_unit_test(test_verdict)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
