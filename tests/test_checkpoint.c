/* test_checkpoint.c — checkpoint round trip (bit-exact), and every way a checkpoint file can be
 * damaged: each prefix, each single-byte flip in the frame (caught by zstd's checksum), bad magic,
 * a future version, absurd sizes, trailing bytes. Write errors (RLIMIT_FSIZE) leave the previous
 * checkpoint and no temporary; a folder replaced with tmpdir_commit is never absent or mixed. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "formats/checkpoint.h"
#include "core/mapfile.h"
#include "testutil.h"

enum { N = 1000 };

static void write_one(const char *path, float *p)
{
    float m[N], v[N];
    for (int i = 0; i < N; i++) {
        p[i] = (float)i * 0.25f - 3.0f;
        m[i] = (float)(i % 7);
        v[i] = 1.0f / (float)(i + 1);
    }
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "step", 17);
    assert_ok(ckpt_save(path, meta, p, m, v, N));
    cJSON_Delete(meta);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/a.ckpt", g_dir);
    float p[N];
    write_one(path, p);
    cJSON *meta;
    float *blob;
    int64_t n;
    assert_ok(ckpt_load(path, &meta, &blob, &n));
    assert_int_equal(n, N);
    assert_int_equal(cJSON_GetObjectItem(meta, "step")->valueint, 17);
    assert_memory_equal(blob, p, sizeof p);
    assert_true(blob[N + 8] == 1.0f && blob[2 * N + 1] == 0.5f);
    free(blob);
    cJSON_Delete(meta);
}

/* Load d[0..len); when it loads, its arrays must equal want[0..N) (params). */
static lk_status load_bytes_check(const uint8_t *d, size_t len, const float *want)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.ckpt", g_dir);
    assert_int_equal(write_file(path, d, len), 0);
    cJSON *meta = NULL;
    float *blob = NULL;
    int64_t n;
    lk_status s = ckpt_load(path, &meta, &blob, &n);
    assert_true(s != LK_OK || (meta && blob));
    if (s == LK_OK && want && memcmp(blob, want, N * sizeof(float)) != 0)
        fail_msg("a damaged checkpoint loaded with different parameters");
    cJSON_Delete(meta);
    free(blob);
    return s;
}

static lk_status load_bytes(const uint8_t *d, size_t len)
{
    return load_bytes_check(d, len, NULL);
}

static void test_corruption(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/c.ckpt", g_dir);
    float p[N];
    write_one(path, p);
    mapfile f;
    assert_ok(mapfile_open(&f, path, 0));
    uint8_t *d = malloc(f.size + 8);
    memcpy(d, f.data, f.size);
    for (size_t len = 0; len < f.size; len += (len < 64 ? 1 : 7))
        assert_int_equal(load_bytes(d, len), LK_ERR_FORMAT);
    /* flips inside the frame: refused, or (a bit zstd's frame header ignores) the very same
     * data; never different numbers */
    int refused = 0, flips = 0;
    for (size_t i = 32; i < f.size; i += 3, flips++) {
        d[i] ^= 0x10;
        lk_status s = load_bytes_check(d, f.size, p);
        assert_true(s == LK_OK || s == LK_ERR_FORMAT);
        refused += s == LK_ERR_FORMAT;
        d[i] ^= 0x10;
    }
    fprintf(stderr, "%d of %d single-bit flips refused, the rest decode identically\n", refused,
            flips);
    assert_true(refused >= flips - 2);
    assert_int_equal(load_bytes(d, f.size), LK_OK);
    memcpy(d + f.size, "junk", 4);
    assert_status(load_bytes(d, f.size + 4), LK_ERR_FORMAT, NULL);
    d[0] = 'X';
    assert_status(load_bytes(d, f.size), LK_ERR_FORMAT, "bad magic");
    d[0] = 'L';
    d[8] = 9;
    assert_status(load_bytes(d, f.size), LK_ERR_FORMAT, "newer");
    d[8] = 1;
    d[31] = 0x7f;
    assert_status(load_bytes(d, f.size), LK_ERR_FORMAT, "implausible");
    d[31] = 0;
    /* found by fuzz_checkpoint: 2^35 floats declared by an 80-byte file asked for 412 GB */
    d[28] = 0x08;
    assert_status(load_bytes(d, 80), LK_ERR_FORMAT, "hold at most");
    free(d);
    mapfile_close(&f);
}

/* Entries of g_dir/sub whose name contains part. */
static int count_entries(const char *sub, const char *part)
{
    DIR *d = opendir(tmp_path(sub));
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    if (d)
        closedir(d);
    return n;
}

/* A checkpoint that cannot be written (the file-size limit, as on a full disk) fails with an I/O
 * error naming it; the one already at that name is untouched and no temporary is left. */
static void test_write_error(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/w/state.ckpt", g_dir);
    assert_int_equal(mkdir(tmp_path("w"), 0755), 0);
    float p[N];
    write_one(path, p);
    enum { BIG = 1 << 20 }; /* 12 MiB of incompressible floats against a 256 KiB limit */
    float *x = malloc(3 * BIG * sizeof(float));
    assert_non_null(x);
    uint32_t r = 1;
    for (int i = 0; i < 3 * BIG; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)(r >> 8) / 16777216.0f;
    }
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 256 << 10;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cJSON *meta = cJSON_CreateObject();
    lk_status s = ckpt_save(path, meta, x, x + BIG, x + 2 * BIG, BIG);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    cJSON_Delete(meta);
    free(x);
    assert_status(s, LK_ERR_IO, "state.ckpt: write failed: File too large");
    assert_int_equal(count_entries("w", ".tmp"), 0);
    float *blob;
    int64_t n;
    assert_ok(ckpt_load(path, &meta, &blob, &n));
    assert_int_equal(n, N);
    assert_memory_equal(blob, p, sizeof p);
    free(blob);
    cJSON_Delete(meta);
}

/* tmpdir_commit with force over an existing folder: the new content in place, the old one and the
 * temporary gone. */
static void test_replace_dir(void **state)
{
    (void)state;
    char *dir = strdup(tmp_path("r")), *tmp = NULL;
    assert_int_equal(mkdir(dir, 0755), 0);
    char *f = path_join(dir, "old.txt");
    assert_int_equal(write_file(f, "old", 3), 0);
    free(f);
    assert_status(tmpdir_create(dir, 0, &tmp), LK_ERR_IO, "already exists");
    assert_ok(tmpdir_create(dir, 1, &tmp));
    f = path_join(tmp, "new.txt");
    assert_int_equal(write_file(f, "new", 3), 0);
    free(f);
    assert_ok(tmpdir_commit(tmp, dir, 1));
    assert_int_equal(count_entries("r", "new.txt"), 1);
    assert_int_equal(count_entries("r", "old.txt"), 0);
    assert_int_equal(count_entries(".", "r."), 0); /* no r.tmp.* or r.old.* */
    free(tmp);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_replace_dir),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
