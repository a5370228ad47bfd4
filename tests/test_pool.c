/* test_pool.c — the library's thread pool (src/core/pool.h): every item runs exactly once, the
 * static split is OpenMP's schedule(static) (contiguous ranges, the first n % nt one longer) and
 * depends on nt and n only, thread numbers stay below nt, dynamic chunks cover [0, n) in grains,
 * a nested loop runs inline with the same split, and two program threads can use the pool at once,
 * with many short loops of changing team sizes (every item exactly once).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "core/pool.h"
#include "testutil.h"

#define N 1000

typedef struct {
    _Atomic int hits[N];
    int thread_of[N]; /* which thread ran the item */
    int64_t begin_of[N], end_of[N];
    int nt, nested;
    _Atomic int calls, bad; /* bad: a check that failed on a worker (cmocka asserts only here) */
} record;

static void inner(void *ctx, int64_t b, int64_t e, int thread);

static void mark(void *ctx, int64_t b, int64_t e, int thread)
{
    record *r = ctx;
    atomic_fetch_add(&r->calls, 1);
    if (!(b < e && thread >= 0 && thread < r->nt))
        atomic_fetch_add(&r->bad, 1);
    for (int64_t i = b; i < e; i++) {
        atomic_fetch_add(&r->hits[i], 1);
        r->thread_of[i] = thread;
        r->begin_of[i] = b, r->end_of[i] = e;
    }
    if (r->nested) { /* a loop inside a loop: runs on this thread, all of it, same split */
        int64_t got[4] = {0};
        par_for(4, 4, inner, got);
        for (int i = 0; i < 4; i++)
            if (got[i] != 100 + i)
                atomic_fetch_add(&r->bad, 1);
    }
}

static void inner(void *ctx, int64_t b, int64_t e, int thread)
{
    int64_t *got = ctx; /* 4 items on 4 threads: item i is thread i's range */
    got[b] = e - b == 1 && thread == (int)b ? 100 + b : -1;
}

static void check_static(int nt, int64_t n, int nested)
{
    static record r;
    memset(&r, 0, sizeof r);
    r.nt = nt, r.nested = nested;
    par_for(nt, n, mark, &r);
    const int64_t q = n / nt, rem = n % nt;
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(atomic_load(&r.hits[i]), 1);
        const int t = r.thread_of[i];
        const int64_t b = t * q + (t < rem ? t : rem), e = b + q + (t < rem);
        assert_int_equal(r.begin_of[i], b);
        assert_int_equal(r.end_of[i], e);
    }
    assert_int_equal(atomic_load(&r.calls), n < nt ? n : nt);
    assert_int_equal(atomic_load(&r.bad), 0);
}

static void test_static_split(void **state)
{
    (void)state;
    const int nts[] = {1, 2, 3, 7, 16};
    const int64_t ns[] = {1, 2, 5, 64, 999, N};
    for (size_t a = 0; a < sizeof nts / sizeof *nts; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            check_static(nts[a], ns[b], 0);
    par_for(4, 0, mark, NULL); /* nothing to do: fn never called */
}

static void test_nested(void **state)
{
    (void)state;
    check_static(3, 300, 1);
}

static void test_dynamic(void **state)
{
    (void)state;
    static record r;
    for (int64_t grain = 1; grain <= 7; grain += 3) {
        memset(&r, 0, sizeof r);
        r.nt = 3;
        par_for_dynamic(3, N - 1, grain, mark, &r);
        for (int64_t i = 0; i < N - 1; i++) {
            assert_int_equal(atomic_load(&r.hits[i]), 1);
            assert_int_equal(r.begin_of[i] % grain, 0); /* chunks start on grain boundaries */
            assert_true(r.end_of[i] - r.begin_of[i] <= grain);
        }
        assert_int_equal(atomic_load(&r.calls), (N - 1 + grain - 1) / grain);
        assert_int_equal(atomic_load(&r.bad), 0);
    }
}

/* Two program threads each run loops on the pool at the same time: both get every item. */
static void sum_range(void *ctx, int64_t b, int64_t e, int thread)
{
    _Atomic int64_t *sum = ctx;
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(sum, i);
}

/* Many short loops back to back, the team size changing from one to the next (1 to 4 threads,
 * static and dynamic): a worker left out of one loop must not run a range of the next one twice
 * (workers poll for the next loop where the machine has a spare core, core/pool.c). */
static void *user_thread(void *arg)
{
    int64_t *bad = arg;
    for (int k = 0; k < 4000; k++) {
        _Atomic int64_t sum = 0;
        int64_t n = k % 200 == 0 ? 1000 : 10 + k % 7;
        int nt = 1 + k % 4;
        if (k % 3)
            par_for(nt, n, sum_range, &sum);
        else
            par_for_dynamic(nt, n, 2, sum_range, &sum);
        if (atomic_load(&sum) != (n - 1) * n / 2)
            (*bad)++;
    }
    return NULL;
}

static void test_concurrent_callers(void **state)
{
    (void)state;
    pthread_t th[2];
    int64_t bad[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, user_thread, &bad[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(bad[0] + bad[1], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_split),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_dynamic),
        cmocka_unit_test(test_concurrent_callers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
