/* test_quant_dispatch.c — LK_KERNELS forces the kernel variant chosen at first use (its own
 * process: detection runs once), an unknown value keeps the automatic choice with a warning, and
 * the public experimental entry points reject what they cannot run. */
#define LK_EXPERIMENTAL 1
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "q4.h"
#include "testutil.h"

static void test_env_forces_ref(void **state)
{
    (void)state;
    /* set before anything in the library looks at the CPU */
    assert_int_equal(setenv("LK_KERNELS", "ref", 1), 0);
    assert_string_equal(lk_kernel_variant(), "ref");
    assert_ptr_equal(q4_kernels_get(), q4_kernels_named("ref"));
    /* detection is done once: changing the variable later changes nothing */
    assert_int_equal(setenv("LK_KERNELS", "avx2", 1), 0);
    assert_string_equal(lk_kernel_variant(), "ref");
}

static void test_public_qgemm(void **state)
{
    (void)state;
    const int64_t out = 3, in = 40;
    float w[3 * 40], x[2 * 40], y[2 * 3], yr[2 * 3], dx[2 * 40];
    for (int i = 0; i < 120; i++)
        w[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    for (int i = 0; i < 80; i++)
        x[i] = (float)((i * 11) % 7) / 7.0f;
    struct lk_qweight qw = {LK_QTYPE_NF4, 64, out, in, NULL, 0};
    uint8_t q[3 * 40];
    assert_true(lk_qweight_row_bytes(&qw) * 3 <= sizeof q);
    double rmse = -1, mx = -1;
    assert_ok(lk_quantize_matrix(&qw, w, q, 1, &rmse, &mx));
    assert_true(rmse > 0 && rmse < 0.1 && mx >= rmse);
    /* one work buffer for every call below, sized for the largest (by shape: no data needed) */
    size_t fw, bw, fw1;
    assert_ok(lk_qgemm_forward_work(&qw, 2, 1, NULL, &fw));
    qw.data = q;
    assert_ok(lk_qgemm_backward_work(&qw, 2, 2, NULL, &bw));
    assert_ok(lk_qgemm_forward_work(&qw, 1, 1, "ref", &fw1));
    assert_true(fw > 0 && bw > 0 && fw1 <= fw); /* ref: a decoded row, sums per thread */
    size_t n = fw > bw ? fw : bw;
    void *work = malloc(n);
    assert_non_null(work);
    assert_ok(lk_qgemm_forward(&qw, NULL, x, 2, y, 1, NULL, work, n));
    assert_ok(lk_qgemm_forward(&qw, NULL, x, 2, yr, 1, "ref", work, n));
    assert_memory_equal(y, yr, sizeof y); /* the forced variant is ref */
    assert_ok(lk_qgemm_backward(&qw, y, 2, dx, 2, NULL, work, n));
    assert_status(lk_qgemm_forward(&qw, NULL, x, 2, y, 1, NULL, work, fw - 1), LK_ERR_ARG,
                  "work of");
    assert_status(lk_qgemm_backward(&qw, y, 2, dx, 2, NULL, NULL, bw), LK_ERR_ARG, "at NULL");
    assert_status(lk_qgemm_forward(&qw, NULL, x, 2, y, 1, "sse9", work, n), LK_ERR_UNSUPPORTED,
                  "sse9");
    assert_status(lk_qgemm_forward_work(&qw, 2, 1, "sse9", &fw), LK_ERR_UNSUPPORTED, "sse9");
    assert_status(lk_qgemm_forward(&qw, NULL, x, 0, y, 1, NULL, work, n), LK_ERR_ARG, "T = 0");
    qw.type = LK_QTYPE_BF16;
    assert_status(lk_qgemm_backward(&qw, y, 2, dx, 1, NULL, work, n), LK_ERR_UNSUPPORTED, "bf16");
    free(work);
    qw.type = LK_QTYPE_NF4;
    qw.block = 100;
    assert_status(lk_quantize_matrix(&qw, w, q, 1, NULL, NULL), LK_ERR_ARG, "blocksize");
}

/* A GGUF read-only type through the public API: no quantiser, kernels through dispatch (here the
 * forced reference) equal to f32 dequantisation, k-quant rows of whole super-blocks only. */
static void test_public_gguf_type(void **state)
{
    (void)state;
    enum { OUT = 2, IN = 256 };
    uint8_t q[OUT * 144]; /* Q4_K: one super-block of 144 bytes per row */
    for (size_t i = 0; i < sizeof q; i++)
        q[i] = (uint8_t)(i * 131 + 7);
    for (int r = 0; r < OUT; r++) { /* d = 1/1024, dmin = 1/2048 (fp16) */
        q[r * 144 + 0] = 0x00, q[r * 144 + 1] = 0x14;
        q[r * 144 + 2] = 0x00, q[r * 144 + 3] = 0x10;
    }
    struct lk_qweight qw = {LK_QTYPE_Q4_K, 32, OUT, IN, q, 0};
    assert_int_equal(lk_qweight_row_bytes(&qw), 144);
    float wf[OUT * IN], x[IN], y[OUT];
    for (int r = 0; r < OUT; r++)
        assert_ok(lk_dequantize_row(LK_QTYPE_Q4_K, q + r * 144, IN, wf + r * IN));
    for (int i = 0; i < IN; i++)
        x[i] = (float)(i % 9) - 4.0f;
    size_t fw;
    assert_ok(lk_qgemm_forward_work(&qw, 1, 1, NULL, &fw));
    void *work = malloc(fw ? fw : 1);
    assert_ok(lk_qgemm_forward(&qw, NULL, x, 1, y, 1, NULL, work, fw));
    for (int r = 0; r < OUT; r++) {
        double s = 0, sa = 0;
        for (int i = 0; i < IN; i++)
            s += (double)x[i] * wf[r * IN + i], sa += fabs((double)x[i] * wf[r * IN + i]);
        assert_true(fabs(y[r] - s) <= 1e-6 * sa);
    }
    free(work);
    /* the matrix quantiser writes what the row quantiser writes (Q4_K bit-exact with ggml:
     * test_quant_formats) */
    uint8_t q2[OUT * 144], row[144];
    assert_ok(lk_quantize_matrix(&qw, wf, q2, 1, NULL, NULL));
    for (int r = 0; r < OUT; r++) {
        assert_ok(lk_quantize_row(LK_QTYPE_Q4_K, wf + r * IN, IN, row));
        assert_memory_equal(q2 + r * 144, row, 144);
    }
    qw.in = 300;
    assert_status(lk_qgemm_forward_work(&qw, 1, 1, NULL, &fw), LK_ERR_SHAPE,
                  "q4_k rows of 300 values, expected a multiple of 256");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_forces_ref),
        cmocka_unit_test(test_public_qgemm),
        cmocka_unit_test(test_public_gguf_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
