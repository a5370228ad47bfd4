/* test_optim.c — AdamW, SGD, gradient clipping and LR schedules against torch 1.13 and
 * transformers 4.46.3 (fixture from tests/gen/gen_optim.py). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/optim.h"
#include "formats/safetensors.h"
#include "testutil.h"

static st_file g_f;

static int setup(void **state)
{
    (void)state;
    return st_open(&g_f, data_path("optim/optim.safetensors"), 1) == LK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    st_close(&g_f);
    return 0;
}

static const float *get(const char *name)
{
    return st_get(&g_f, name)->data;
}

static void run_optim(optim_kind k, const char *want)
{
    enum { N = 37 };
    float p[N], m[N] = {0}, v[N] = {0};
    memcpy(p, get("p0"), sizeof p);
    optim_params o = {
        .kind = k, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    for (int s = 0; s < 5; s++)
        optim_update(&o, p, get("grads") + s * N, m, v, N, 0.01f, s + 1);
    assert_true(check_close(want, p, get(want), N, 1e-6, 1e-5));
}

static void test_adamw(void **state)
{
    (void)state;
    run_optim(OPT_ADAMW, "adamw");
}

static void test_sgd(void **state)
{
    (void)state;
    run_optim(OPT_SGD, "sgd");
}

static void test_clip(void **state)
{
    (void)state;
    float g[37];
    for (int i = 0; i < 37; i++)
        g[i] = get("grads")[i] * 3;
    double norm = clip_grad_norm(g, 37, 1.0);
    assert_true(fabs(norm - get("clip_norm")[0]) < 1e-5 * norm);
    assert_true(check_close("clipped", g, get("clipped"), 37, 1e-7, 1e-5));
    assert_true(fabs(grad_norm(g, 37) - 1.0) < 1e-5);
}

static void test_schedules(void **state)
{
    (void)state;
    const char *names[3] = {"lr_cosine", "lr_linear", "lr_constant"};
    for (int k = 0; k < 3; k++) {
        float lr[100];
        for (int s = 0; s < 100; s++)
            lr[s] = schedule_lr((sched_kind)k, 2e-4f, s, 10, 100);
        assert_true(check_close(names[k], lr, get(names[k]), 100, 1e-10, 1e-5));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
