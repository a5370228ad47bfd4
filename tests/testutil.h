/* testutil.h — helpers shared by the cmocka tests: array comparison with a report (llm.c's
 * check_tensor, but failing properly), paths to fixtures and ../shared, temp folders. */
#ifndef LK_TESTUTIL_H
#define LK_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the three includes above first */
#include <cmocka.h>

#include "lorakit/lorakit.h"

/* Compare got[n] with want[n]: |got-want| <= atol + rtol*|want| everywhere. Prints the first bad
 * index, max abs and max rel difference; returns 1 if all within tolerance. */
int check_close(const char *what, const float *got, const float *want, int64_t n, double atol,
                double rtol);

/* Compare an analytic gradient g[n] with central differences (step 1e-2) of f(ctx) over x[n]
 * (x is perturbed and restored); fails the test unless the relative error of the whole vector is
 * below tol. Prints the error. */
typedef double (*grad_loss_fn)(void *ctx);
void check_grad(const char *what, float *x, const float *g, int64_t n, grad_loss_fn f, void *ctx,
                double tol);

/* Max |a-b| over n. */
double max_abs_diff(const float *a, const float *b, int64_t n);

/* "<LK_SHARED_DIR>/<rel>" and "<LK_TEST_DATA>/<rel>" in a static buffer (valid until next call). */
const char *shared_path(const char *rel);
const char *data_path(const char *rel);

/* A fresh empty temporary folder (heap string, caller frees after rm_rf). */
char *make_temp_dir(void);
void rm_rf(const char *path);

/* Group setup/teardown for tests that write files: g_dir is a fresh temporary folder for the
 * group, removed afterwards; tmp_path(name) is "<g_dir>/<name>" in a static buffer. */
extern char *g_dir;
int tmp_dir_setup(void **state);
int tmp_dir_teardown(void **state);
const char *tmp_path(const char *name);

/* Write bytes to path; returns 0 on success. */
int write_file(const char *path, const void *data, size_t n);

/* LK_TEST_ASAN is 1 in a build with AddressSanitizer (gcc or clang), whose allocator and shadow
 * memory make some tests impossible (huge requests abort, RLIMIT_AS cannot be used). */
#if defined(__SANITIZE_ADDRESS__)
#define LK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LK_TEST_ASAN 1
#endif
#endif
#ifndef LK_TEST_ASAN
#define LK_TEST_ASAN 0
#endif

/* Skip the current test visibly when path does not exist (e.g. ../shared missing). */
void require_file(const char *path);

/* Byte offsets of the fp16 d and of m / dmin (-1: none) in a block of the GGUF types Q4_1 .. IQ4_XS
 * (ggml-common.h), for planting scales into random blocks. */
void test_gguf_scale_offsets(int qtype, int off[2]);

#ifdef LK_GGUF_H /* for the tests that include formats/gguf.h first */
/* fp32 copy of a 2-D GGUF tensor of any type, [ne[1], ne[0]]; caller frees. */
float *gguf_tensor_f32(const gguf_tensor *t);
#endif

#define assert_ok(expr)                                                          \
    do {                                                                         \
        lk_status s_ = (expr);                                                   \
        if (s_ != LK_OK)                                                         \
            fail_msg("%s -> %s: %s", #expr, lk_status_str(s_), lk_last_error()); \
    } while (0)

/* Assert expr returns status st and that the error message contains needle (may be NULL). */
#define assert_status(expr, st, needle)                                                       \
    do {                                                                                      \
        lk_status s_ = (expr);                                                                \
        if (s_ != (st))                                                                       \
            fail_msg("%s -> %s (%s), expected %s", #expr, lk_status_str(s_), lk_last_error(), \
                     lk_status_str(st));                                                      \
        const char *n_ = (needle);                                                            \
        if (n_ && !strstr(lk_last_error(), n_))                                               \
            fail_msg("%s: message '%s' lacks '%s'", #expr, lk_last_error(), n_);              \
    } while (0)

#endif /* LK_TESTUTIL_H */
