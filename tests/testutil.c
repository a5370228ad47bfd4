/* testutil.c — see testutil.h. */
#include "formats/gguf.h"
#include "testutil.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int check_close(const char *what, const float *got, const float *want, int64_t n, double atol,
                double rtol)
{
    double max_abs = 0, max_rel = 0;
    int64_t first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double rel = d / (fabs((double)want[i]) + 1e-30);
        if (!(d <= atol + rtol * fabs((double)want[i])) && first_bad < 0)
            first_bad = i;
        if (d > max_abs || d != d)
            max_abs = d;
        if (rel > max_rel)
            max_rel = rel;
    }
    if (first_bad >= 0) {
        fprintf(stderr, "%s: mismatch at [%lld]: got %.9g want %.9g (max abs %.3g, max rel %.3g)\n",
                what, (long long)first_bad, got[first_bad], want[first_bad], max_abs, max_rel);
        return 0;
    }
    fprintf(stderr, "%s: %lld values ok, max abs diff %.3g, max rel %.3g\n", what, (long long)n,
            max_abs, max_rel);
    return 1;
}

double max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d;
    }
    return m;
}

static char g_path[4096];

const char *shared_path(const char *rel)
{
    snprintf(g_path, sizeof g_path, "%s/%s", LK_SHARED_DIR, rel);
    return g_path;
}

const char *data_path(const char *rel)
{
    snprintf(g_path, sizeof g_path, "%s/%s", LK_TEST_DATA, rel);
    return g_path;
}

char *make_temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/lktest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void rm_rf(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *g_dir;

int tmp_dir_setup(void **state)
{
    (void)state;
    g_dir = make_temp_dir();
    return g_dir ? 0 : -1;
}

int tmp_dir_teardown(void **state)
{
    (void)state;
    rm_rf(g_dir);
    free(g_dir);
    g_dir = NULL;
    return 0;
}

const char *tmp_path(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

void require_file(const char *path)
{
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "SKIPPED: %s not found\n", path);
        skip();
    }
}

void check_grad(const char *what, float *x, const float *g, int64_t n, grad_loss_fn f, void *ctx,
                double tol)
{
    double num = 0, den = 0, h = 1e-2;
    for (int64_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + (float)h;
        double lp = f(ctx);
        x[i] = keep - (float)h;
        double lm = f(ctx);
        x[i] = keep;
        double fd = (lp - lm) / (2 * h);
        num += (fd - g[i]) * (fd - g[i]);
        den += fd * fd;
    }
    double rel = sqrt(num / (den + 1e-30));
    fprintf(stderr, "%s: relative gradient error %.2e over %lld values\n", what, rel, (long long)n);
    if (!(rel < tol))
        fail_msg("%s: gradient mismatch %.3g", what, rel);
}

float *gguf_tensor_f32(const gguf_tensor *t)
{
    const gguf_type_traits *tt = gguf_type_info(t->type);
    const int64_t rows = t->ne[1], cols = t->ne[0], rs = cols / tt->blck * tt->size;
    float *x = malloc((size_t)(rows * cols) * sizeof *x);
    for (int64_t r = 0; r < rows; r++)
        tt->to_f32(t->data + r * rs, x + r * cols, cols);
    return x;
}

void test_gguf_scale_offsets(int qtype, int off[2])
{
    off[1] = -1;
    switch (qtype) {
    case LK_QTYPE_Q2_K: off[0] = 80, off[1] = 82; break;
    case LK_QTYPE_Q3_K: off[0] = 108; break;
    case LK_QTYPE_Q6_K: off[0] = 208; break;
    case LK_QTYPE_Q4_1:
    case LK_QTYPE_Q5_1:
    case LK_QTYPE_Q4_K:
    case LK_QTYPE_Q5_K: off[0] = 0, off[1] = 2; break;
    default: off[0] = 0; break; /* Q5_0, IQ4_XS */
    }
}
