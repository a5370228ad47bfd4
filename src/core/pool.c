/* pool.c — see pool.h. One job at a time: the caller that wins `busy` publishes the job, bumps
 * the generation and wakes the workers that sleep; each worker waits for the generation to move
 * (polling for at most SPIN_NS after its last job, then asleep on `wake`), runs its range, and the
 * last one to finish wakes the caller if it sleeps on `done` (it too polls for SPIN_NS first). */
#include "core/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/status.h"

typedef struct {
    par_fn fn;
    void *ctx;
    int64_t n, grain;     /* grain 0: the static split */
    int nt;               /* the job's thread count: ranges 0 .. nt-1 */
    _Atomic int64_t next; /* dynamic: the next item to hand out */
} job;

/* How long a thread polls for what it waits on before it sleeps: a decoding step runs about 100
 * short parallel loops (tens of microseconds each, with a few microseconds of serial work between
 * them), and waking a sleeping thread costs about as much as such a loop. Bounded, so that on a
 * busy machine a waiting thread gives its core back within this time (cli_threads). */
#define SPIN_NS 50000

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER; /* held by the caller using the pool */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the sleeps and n_workers */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;   /* workers sleep here for a job */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;   /* the caller sleeps here for them */
static job cur; /* written only while no worker of the last job runs */
/* The job's generation (bumped once per job, after cur is written) times 2^16, plus its thread
 * count: one word, so that a worker not in the job never pairs a generation with the next job's
 * team while that job is being written. */
static _Atomic uint64_t gen;
static int n_workers;                       /* workers 1 .. n_workers exist */
static _Atomic int pending;                 /* workers of this job still running */
static _Atomic int sleepers;                /* workers asleep on `wake` (or about to be) */
static _Atomic int caller_asleep;           /* the caller sleeps on `done` (or is about to) */
static uint64_t born_gen[POOL_MAX_THREADS]; /* gen when worker i started */
static _Thread_local int inside; /* this thread runs a range: a nested loop runs inline */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Whether the machine has a core to spare for polling: the threads running or ready to run now
 * (/proc/loadavg's fourth field, the whole machine's, ours included) at most the CPUs this
 * process may use (fewer than the machine's under taskset or a cpuset: then polling is rarer, never
 * more frequent). Read again at most every SPIN_CHECK_NS; where it cannot be read nobody polls. */
#define SPIN_CHECK_NS 20000000
static _Atomic int64_t spin_checked; /* when it was last read (0: never) */
static _Atomic int spin_free;        /* its answer */

static int machine_has_room(void)
{
    char buf[128]; /* "0.52 0.40 0.31 2/161 12345": no allocation (workers never allocate) */
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *p = buf;
    for (int field = 0; field < 3 && p; field++) /* past the three averages */
        if ((p = strchr(p, ' ')))
            p++;
    long running = p ? strtol(p, NULL, 10) : 0;
    return running > 0 && running <= resolve_threads(0);
}

static int may_spin(int64_t t)
{
    int64_t last = atomic_load(&spin_checked);
    if ((last == 0 || t - last > SPIN_CHECK_NS) &&
        atomic_compare_exchange_strong(&spin_checked, &last, t))
        atomic_store(&spin_free, machine_has_room());
    return atomic_load(&spin_free);
}

/* Poll until ready(ctx) (1), or SPIN_NS passed or the machine is busy (0). */
static int spin_until(int (*ready)(void *), void *ctx)
{
    int64_t t0 = now_ns();
    if (!may_spin(t0))
        return ready(ctx);
    for (int i = 1;; i++) {
        if (ready(ctx))
            return 1;
        cpu_relax();
        if (i % 64 == 0 && now_ns() - t0 > SPIN_NS)
            return 0;
    }
}

typedef struct {
    _Atomic uint64_t *x;
    uint64_t v;
} moved;

static int has_moved(void *ctx) /* *x differs from v */
{
    const moved *m = ctx;
    return atomic_load(m->x) != m->v;
}

static int is_zero(void *ctx) /* an _Atomic int at 0 */
{
    return atomic_load((_Atomic int *)ctx) == 0;
}

static void static_range(int64_t n, int nt, int t, int64_t *b, int64_t *e)
{
    const int64_t q = n / nt, r = n % nt;
    *b = t * q + (t < r ? t : r);
    *e = *b + q + (t < r ? 1 : 0);
}

static void run_range(job *j, int t)
{
    if (j->grain == 0) {
        int64_t b, e;
        static_range(j->n, j->nt, t, &b, &e);
        if (b < e)
            j->fn(j->ctx, b, e, t);
        return;
    }
    for (;;) {
        const int64_t b = atomic_fetch_add(&j->next, j->grain);
        if (b >= j->n)
            return;
        j->fn(j->ctx, b, j->n - b < j->grain ? j->n : b + j->grain, t);
    }
}

/* Wait until gen moves past seen: poll, then sleep (the caller wakes sleepers after bumping gen;
 * sleepers and gen are sequentially consistent, so one of the two sees the other's store). */
static void wait_job(uint64_t seen)
{
    if (spin_until(has_moved, &(moved){&gen, seen}))
        return;
    pthread_mutex_lock(&mu);
    atomic_fetch_add(&sleepers, 1);
    while (atomic_load(&gen) == seen)
        pthread_cond_wait(&wake, &mu);
    atomic_fetch_sub(&sleepers, 1);
    pthread_mutex_unlock(&mu);
}

static void *worker(void *arg)
{
    const int id = (int)(intptr_t)arg;
    inside = 1;
    uint64_t seen = born_gen[id];
    for (;;) {
        wait_job(seen);
        seen = atomic_load(&gen);
        if (id >= (int)(seen & 0xffff)) /* not in this job's team */
            continue;
        run_range(&cur, id); /* in the team: the caller waits for us before the next job */
        if (atomic_fetch_sub(&pending, 1) == 1 && atomic_load(&caller_asleep)) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&done);
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

/* A forked child has none of the parent's workers. */
static void after_fork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    busy = m, mu = m, wake = c, done = c;
    n_workers = 0, inside = 0;
    atomic_store(&pending, 0);
    atomic_store(&sleepers, 0);
    atomic_store(&caller_asleep, 0);
}

/* Start workers until there are `want` (fewer if the system refuses: their ranges then run on the
 * caller). Called with `busy` held, so gen does not move meanwhile. */
static void grow(int want)
{
    if (n_workers == 0)
        pthread_atfork(NULL, NULL, after_fork_child);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* a new thread inherits the mask: no signals */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (n_workers < want) {
        const int id = n_workers + 1;
        born_gen[id] = atomic_load(&gen);
        pthread_t th;
        if (pthread_create(&th, &attr, worker, (void *)(intptr_t)id) != 0)
            break;
        pthread_mutex_lock(&mu);
        n_workers = id;
        pthread_mutex_unlock(&mu);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void run_inline(job *j)
{
    const int was = inside;
    inside = 1;
    for (int t = 0; t < j->nt; t++)
        run_range(j, t);
    inside = was;
}

static void par_run(int nt, int64_t n, int64_t grain, par_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    nt = resolve_threads(nt);
    const int64_t chunks = grain > 0 ? (n + grain - 1) / grain : n;
    if (nt > chunks)
        nt = (int)chunks; /* the split is the same: the extra threads would get nothing */
    if (nt > POOL_MAX_THREADS)
        nt = POOL_MAX_THREADS;
    if (nt <= 1 || inside || pthread_mutex_trylock(&busy) != 0) {
        job j = {.fn = fn, .ctx = ctx, .n = n, .grain = grain, .nt = nt};
        atomic_init(&j.next, 0);
        run_inline(&j);
        return;
    }
    if (n_workers < nt - 1)
        grow(nt - 1);
    const int helpers = n_workers < nt - 1 ? n_workers : nt - 1;
    cur.fn = fn, cur.ctx = ctx, cur.n = n, cur.grain = grain, cur.nt = nt;
    atomic_store(&cur.next, 0);
    atomic_store(&pending, helpers);
    /* The stores that a sleeper's test pairs with (gen here, caller_asleep below) are exchanges:
     * seq_cst, like every access to them, and also a full barrier where a plain seq_cst store is
     * not quite one. qemu-user on x86-64 runs aarch64's store-release then load-acquire as a
     * store and a load that the host may reorder; the worker then read the old gen while we read
     * no sleepers, and it slept through the job (.ci/arm.sh hung on the NEON kernels). */
    atomic_exchange(&gen, ((atomic_load(&gen) >> 16) + 1) << 16 | (uint64_t)nt);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&mu);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&mu);
    }
    inside = 1;
    run_range(&cur, 0);
    for (int t = helpers + 1; t < nt; t++) /* ranges of workers the system did not give us */
        run_range(&cur, t);
    inside = 0;
    if (!spin_until(is_zero, &pending)) {
        pthread_mutex_lock(&mu);
        atomic_exchange(&caller_asleep, 1); /* a full barrier: see the exchange of gen */
        while (atomic_load(&pending) > 0)
            pthread_cond_wait(&done, &mu);
        atomic_store(&caller_asleep, 0);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_unlock(&busy);
}

void par_for(int nt, int64_t n, par_fn fn, void *ctx)
{
    par_run(nt, n, 0, fn, ctx);
}

void par_for_dynamic(int nt, int64_t n, int64_t grain, par_fn fn, void *ctx)
{
    par_run(nt, n, grain > 0 ? grain : 1, fn, ctx);
}
