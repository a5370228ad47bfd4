/* pool.h — the library's worker threads: every parallel loop of src/ and quant/ runs here.
 *
 * Why not OpenMP: libgomp's idle threads busy-wait (about 3 ms of spinning at every barrier and
 * between parallel regions) unless OMP_WAIT_POLICY=passive is in the environment, and libgomp
 * reads the environment once, in its own constructor, before any code of a program or library
 * linked to it runs (a setenv from lorakit, even from .preinit_array, comes too late or is undone
 * when libc initialises its environ). On a machine with another CPU-bound process, a spinning
 * thread holds a core that the thread it waits for needs, and -t 2 ran 5-30x slower than -t 1.
 * These workers never spin on a busy machine: an idle worker sleeps on a condition variable (a
 * futex) and a caller waiting for its workers sleeps too, so more threads are never slower there.
 * Only while the machine has a core to spare (no more threads running or ready to run than CPUs
 * this process may use, /proc/loadavg, read every 20 ms) does a waiting thread first poll for up
 * to 50 us: a decoding step runs about a hundred short loops, and waking a sleeping worker for
 * each cost about as much as the loop itself. The library is built without -fopenmp, so a new
 * `#pragma omp` in src/ or quant/ is an unknown-pragma warning (an error under -Werror) rather
 * than a spinning thread.
 *
 * Semantics: par_for(nt, n, fn, ctx) splits [0, n) as OpenMP's schedule(static) does (thread t of
 * nt gets one contiguous range, the first n % nt ranges one longer) and calls fn once per
 * non-empty range, with thread = t (0 <= t < nt; t = 0 runs on the caller). The split depends
 * only on nt and n, so a result never depends on which thread ran a range nor on timing. A call
 * from inside a parallel loop (nesting), or while another thread of the program uses the pool,
 * runs every range on the caller in order, with the same split and the same thread numbers: the
 * same results, no deadlock, no oversubscription. Workers start on first use (one fewer than the
 * largest nt asked for), block every signal (handlers run on the program's threads) and never
 * allocate after starting. */
#ifndef LK_POOL_H
#define LK_POOL_H

#include <stdint.h>

/* The largest team: a larger nt is cut to this (thread numbers stay below it). */
#define POOL_MAX_THREADS 256

/* One range of a parallel loop: items [begin, end) on thread `thread` (0 .. nt-1). */
typedef void (*par_fn)(void *ctx, int64_t begin, int64_t end, int thread);

/* fn over [0, n) on nt threads (resolve_threads(nt)), static split (see above); returns when
 * every range is done. */
void par_for(int nt, int64_t n, par_fn fn, void *ctx);

/* fn over [0, n) in chunks of `grain` items handed in order to whichever thread is free (OpenMP's
 * schedule(dynamic, grain)); use only where a chunk's result does not depend on its thread. */
void par_for_dynamic(int nt, int64_t n, int64_t grain, par_fn fn, void *ctx);

#endif /* LK_POOL_H */
