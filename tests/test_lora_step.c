/* test_lora_step.c — one SGD step of LoRA training on stories260K-hf equals Hugging Face PEFT's
 * (fixtures from tests/gen/gen_lora_step.py: transformers 4.46.3 + peft 0.13.2): the same initial
 * adapter (PEFT's own save_pretrained output, read by lk_adapter_load), the same batch, the same
 * loss, and A and B after the step within 1e-4 relative (‖ours − PEFT‖/‖PEFT‖ per tensor).
 * Plain LoRA (α/r), rsLoRA (α/√r), and an NF4 base (the fused dequant-GEMM kernels forward and
 * backward; PEFT runs on the same dequantised weights). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora/lora.h"
#include "formats/safetensors.h"
#include "testutil.h"
#include "train/train_graph.h"

#define PEFT_PREFIX "base_model.model."

static void check_step(const char *tag, int rslora, lk_qtype quant)
{
    char path[512];
    lk_model *m;
    require_file(shared_path("models/stories260K-hf/model.safetensors"));
    struct lk_model_params mp = lk_model_params_default();
    mp.compute = LK_COMPUTE_F32; /* the exact path the PyTorch-parity checks hold */
    mp.quant = quant;
    assert_ok(lk_model_load(shared_path("models/stories260K-hf"), &mp, &m));
    /* the initial adapter goes through our PEFT reader */
    lk_adapter *ad;
    snprintf(path, sizeof path, "lora/init%s", tag);
    assert_ok(lk_adapter_load(data_path(path), &ad));
    struct lk_adapter_info info;
    lk_adapter_get_info(ad, &info);
    assert_int_equal(info.use_rslora, rslora);
    lora_set s;
    assert_ok(lora_set_create(m, ad, 0.0f, &s));
    assert_true(s.mods[0].L->lora[0].scale == (float)(rslora ? 8.0 / 2.0 : 8.0 / 4.0));
    st_file init, want;
    snprintf(path, sizeof path, "lora/init%s/adapter_model.safetensors", tag);
    assert_ok(st_open(&init, data_path(path), 1));
    snprintf(path, sizeof path, "lora/step%s.safetensors", tag);
    assert_ok(st_open(&want, data_path(path), 1));

    const tensor_view *ids = st_get(&want, "input_ids"), *lab = st_get(&want, "labels");
    int64_t B = ids->shape[0], T = ids->shape[1];
    const int32_t *idp = ids->data, *lbp = lab->data;
    int64_t total = 0;
    for (int64_t i = 0; i < B * T; i++) /* HF shifts labels: position t predicts labels[t+1] */
        total += (i % T) + 1 < T && lbp[i + 1] != -100;
    train_graph *g;
    assert_ok(graph_create(m, T, 1, &g));
    loss_sums sums = {0};
    lora_set_zero_grad(&s);
    for (int64_t b = 0; b < B; b++) {
        int32_t tgt[64], pos[64];
        for (int64_t t = 0; t < T; t++) {
            tgt[t] = t + 1 < T ? lbp[b * T + t + 1] : -100;
            pos[t] = (int32_t)t;
        }
        train_batch tb = {.tokens = idp + b * T, .targets = tgt, .pos = pos, .T = T};
        assert_ok(graph_run(g, &tb, NULL, 1.0f / (float)total, 1, &sums));
    }
    double loss = sums.loss;
    int64_t cnt = sums.count;
    assert_int_equal(cnt, total);
    float ref_loss = *(const float *)st_get(&want, "loss")->data;
    fprintf(stderr, "%s: loss %.6f, PEFT %.6f\n", tag[0] ? tag + 1 : "lora", loss / (double)cnt,
            ref_loss);
    assert_true(fabs(loss / (double)cnt - ref_loss) < 1e-4 * fabs(ref_loss));
    /* SGD, lr 0.5: p -= lr·g; then compare every factor and every update with PEFT's */
    for (int64_t i = 0; i < s.n_params; i++)
        s.params[i] -= 0.5f * s.grads[i];
    double dnum = 0, dden = 0, worst = 0;
    for (int i = 0; i < s.n; i++) {
        lora_module *mo = &s.mods[i];
        const char *ab[2] = {"A", "B"};
        float *p[2] = {mo->am->A, mo->am->B};
        for (int k = 0; k < 2; k++) {
            char key[160];
            snprintf(key, sizeof key, PEFT_PREFIX "%s.lora_%s.weight", mo->name, ab[k]);
            const float *ref = st_get(&want, key)->data, *ini = st_get(&init, key)->data;
            int64_t n = (int64_t)(st_get(&want, key)->nbytes / 4);
            double num = 0, den = 0;
            for (int64_t j = 0; j < n; j++) {
                num += ((double)p[k][j] - ref[j]) * ((double)p[k][j] - ref[j]);
                den += (double)ref[j] * ref[j];
            }
            worst = sqrt(num / den) > worst ? sqrt(num / den) : worst;
            if (!(sqrt(num / den) < 1e-4))
                fail_msg("%s: ‖ours − PEFT‖/‖PEFT‖ = %.3g", key, sqrt(num / den));
            for (int64_t j = 0; j < n; j++) {
                double du = ((double)p[k][j] - ini[j]) - ((double)ref[j] - ini[j]);
                dnum += du * du;
                dden += ((double)ref[j] - ini[j]) * ((double)ref[j] - ini[j]);
            }
        }
    }
    fprintf(stderr, "%s: worst factor relative error %.2e, whole update %.2e\n",
            tag[0] ? tag + 1 : "lora", worst, sqrt(dnum / dden));
    assert_true(sqrt(dnum / dden) < 1e-3);
    st_close(&init);
    st_close(&want);
    graph_free(g);
    lora_set_free(&s);
    lk_adapter_free(ad);
    lk_model_free(m);
}

static void test_sgd_step_plain(void **state)
{
    (void)state;
    check_step("", 0, LK_QTYPE_F32);
}

static void test_sgd_step_rslora(void **state)
{
    (void)state;
    check_step("-rslora", 1, LK_QTYPE_F32);
}

/* NF4 base: the fused dequant-GEMM kernels forward and backward, against PEFT on the same
 * dequantised weights. */
static void test_sgd_step_nf4(void **state)
{
    (void)state;
    check_step("-nf4", 0, LK_QTYPE_NF4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_step_plain),
        cmocka_unit_test(test_sgd_step_rslora),
        cmocka_unit_test(test_sgd_step_nf4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
