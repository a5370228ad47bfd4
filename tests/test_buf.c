/* test_buf.c — core/buf: capacities double from 16 and keep the contents, parallel arrays share
 * one capacity, byte strings append, sizes that overflow size_t are refused before any
 * allocation, and a real allocation failure is LK_ERR_NOMEM naming what was growing with the
 * array left as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "testutil.h"

static void test_next_cap(void **state)
{
    (void)state;
    assert_int_equal(buf_next_cap(0, 0), 16);
    assert_int_equal(buf_next_cap(0, 1), 16);
    assert_int_equal(buf_next_cap(0, 17), 32);
    assert_int_equal(buf_next_cap(16, 17), 32);
    assert_int_equal(buf_next_cap(100, 101), 200);
    assert_int_equal(buf_next_cap(100, 1000), 1600);
    assert_int_equal(buf_next_cap(3, 3), 3);
    /* doubling would pass SIZE_MAX: the request itself */
    assert_true(buf_next_cap(SIZE_MAX / 2 + 1, SIZE_MAX - 1) == SIZE_MAX - 1);
}

static void test_grow(void **state)
{
    (void)state;
    int64_t *a = NULL;
    size_t cap = 0, n = 0;
    int grew = 0;
    for (int64_t i = 0; i < 1000; i++) {
        size_t old = cap;
        assert_ok(BUF_GROW(&a, &cap, n + 1, "test: numbers"));
        assert_true(cap >= n + 1);
        if (cap != old) {
            assert_int_equal(cap, old ? 2 * old : 16);
            grew++;
        }
        a[n++] = i * i;
    }
    assert_int_equal(grew, 7); /* 16, 32, ..., 1024 */
    for (int64_t i = 0; i < 1000; i++)
        assert_int_equal(a[i], i * i);
    int64_t *same = a;
    assert_ok(BUF_GROW(&a, &cap, 1000, "test: numbers")); /* fits: nothing moves */
    assert_ptr_equal(a, same);
    assert_int_equal(cap, 1024);
    free(a);
}

static void test_parallel(void **state)
{
    (void)state;
    int32_t *ids = NULL;
    uint32_t *off = NULL;
    size_t cap = 0;
    for (uint32_t i = 0; i < 100; i++) {
        struct buf_arr a[] = {BUF_ARR(&ids), BUF_ARR(&off)};
        assert_ok(buf_grow_all(a, 2, &cap, i + 1, "test: ids"));
        ids[i] = -(int32_t)i;
        off[i] = 3 * i;
    }
    assert_int_equal(cap, 128);
    for (uint32_t i = 0; i < 100; i++) {
        assert_int_equal(ids[i], -(int32_t)i);
        assert_int_equal(off[i], 3 * i);
    }
    /* the same by hand: one new capacity, each array resized to it */
    size_t c = buf_next_cap(cap, 129);
    assert_int_equal(c, 256);
    assert_ok(BUF_RESIZE(&ids, c, "test: ids"));
    assert_ok(BUF_RESIZE(&off, c, "test: offsets"));
    assert_int_equal(ids[99], -99);
    assert_int_equal(off[99], 297);
    /* a failure leaves the shared capacity as it was */
    double *big = NULL;
    size_t cap2 = 0;
    struct buf_arr b[] = {BUF_ARR(&big), BUF_ARR(&ids)}; /* big: 8 bytes, overflows */
    assert_status(buf_grow_all(b, 2, &cap2, SIZE_MAX / 5, "test: pair"), LK_ERR_NOMEM,
                  "test: pair: cannot grow to");
    assert_int_equal(cap2, 0);
    assert_null(big);
    free(ids);
    free(off);
}

static void test_bytes(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_ok(buf_put(&b, NULL, 0, "test: bytes")); /* nothing: no allocation */
    assert_null(b.p);
    for (int i = 0; i < 100; i++)
        assert_ok(buf_put(&b, "abc", 3, "test: bytes"));
    assert_int_equal(b.n, 300);
    assert_int_equal(b.cap, 512);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.p[i], "abc"[i % 3]);
    buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.cap, 0);
}

static void test_overflow(void **state)
{
    (void)state;
    double *a = NULL;
    size_t cap = 0;
    assert_ok(BUF_GROW(&a, &cap, 10, "test: doubles"));
    a[9] = 2.5;
    double *before = a;
    /* SIZE_MAX / 4 elements of 8 bytes: refused before realloc is asked */
    assert_status(BUF_GROW(&a, &cap, SIZE_MAX / 4, "test: doubles"), LK_ERR_NOMEM,
                  "test: doubles: cannot grow to");
    assert_non_null(strstr(lk_last_error(), "elements of 8 bytes: the size overflows"));
    assert_ptr_equal(a, before);
    assert_int_equal(cap, 16);
    assert_true(a[9] == 2.5);
    free(a);

    struct buf b = {0};
    assert_ok(buf_put(&b, "xy", 2, "test: bytes"));
    uint8_t *p = b.p;
    b.n = SIZE_MAX - 1; /* as if almost all of memory were written: n + 2 wraps */
    assert_status(buf_put(&b, "xy", 2, "test: bytes"), LK_ERR_NOMEM,
                  "test: bytes: cannot grow past");
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.cap, 16);
    b.n = 2;
    buf_free(&b);
}

/* A request the allocator refuses for real: 1 PiB is more than a 47-bit address space holds. */
static void test_nomem(void **state)
{
    (void)state;
    if (LK_TEST_ASAN)
        skip(); /* AddressSanitizer aborts on an allocation this large instead of returning NULL */
    char *s = NULL;
    size_t cap = 0;
    assert_ok(BUF_GROW(&s, &cap, 5, "test: text"));
    memcpy(s, "four", 5);
    char *before = s;
    assert_status(BUF_GROW(&s, &cap, (size_t)1 << 50, "test: text"), LK_ERR_NOMEM,
                  "test: text: out of memory growing to 1125899906842624 bytes");
    assert_ptr_equal(s, before);
    assert_int_equal(cap, 16);
    assert_string_equal(s, "four");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_cap), cmocka_unit_test(test_grow),
        cmocka_unit_test(test_parallel), cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_overflow), cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
