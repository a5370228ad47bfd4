/* pool.c — see pool.h. One job at a time: the caller that wins `busy` publishes the job under
 * `mu`, bumps the generation and wakes the workers; each worker sleeps on `wake` until the
 * generation moves, runs its range and the last one to finish signals `done`, on which the caller
 * sleeps after running range 0. No thread ever spins. */
#include "core/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "core/status.h"

typedef struct {
    par_fn fn;
    void *ctx;
    int64_t n, grain;     /* grain 0: the static split */
    int nt;               /* the job's thread count: ranges 0 .. nt-1 */
    _Atomic int64_t next; /* dynamic: the next item to hand out */
} job;

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER; /* held by the caller using the pool */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;   /* guards gen, pending, n_workers */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;   /* workers wait here for a job */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;   /* the caller waits here for them */
static job cur;                                          /* written only while no worker runs */
static uint64_t gen;                                     /* bumped once per job */
static int n_workers;                                    /* workers 1 .. n_workers exist */
static int pending;                                      /* workers of this job still running */
static uint64_t born_gen[POOL_MAX_THREADS];              /* gen when worker i started */
static _Thread_local int inside; /* this thread runs a range: a nested loop runs inline */

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

static void *worker(void *arg)
{
    const int id = (int)(intptr_t)arg;
    inside = 1;
    pthread_mutex_lock(&mu);
    uint64_t seen = born_gen[id];
    for (;;) {
        while (gen == seen)
            pthread_cond_wait(&wake, &mu);
        seen = gen;
        if (id >= cur.nt) /* not in this job's team */
            continue;
        pthread_mutex_unlock(&mu);
        run_range(&cur, id);
        pthread_mutex_lock(&mu);
        if (--pending == 0)
            pthread_cond_signal(&done);
    }
    return NULL;
}

/* A forked child has none of the parent's workers. */
static void after_fork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    busy = m, mu = m, wake = c, done = c;
    n_workers = 0, pending = 0, inside = 0;
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
        born_gen[id] = gen;
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
    pthread_mutex_lock(&mu);
    cur.fn = fn, cur.ctx = ctx, cur.n = n, cur.grain = grain, cur.nt = nt;
    atomic_store(&cur.next, 0);
    pending = helpers;
    gen++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
    inside = 1;
    run_range(&cur, 0);
    for (int t = helpers + 1; t < nt; t++) /* ranges of workers the system did not give us */
        run_range(&cur, t);
    inside = 0;
    pthread_mutex_lock(&mu);
    while (pending > 0)
        pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
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
