/* test_alloc.c — no allocation inside a training step after the first: every buffer is planned
 * when the trainer is created (STYLE.md, "no allocation inside the step loop"). The test counts
 * every malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc, pvalloc and
 * free (of a non-NULL pointer) the process makes while lk_trainer_step runs, on any thread: the
 * library's (its pool's too), OpenBLAS's and zstd's alike. It replaces those symbols in this
 * executable (glibc's documented way of replacing malloc: the shared libraries call these too) and
 * forwards to glibc's __libc_* functions; under AddressSanitizer, which owns malloc, it counts
 * through the sanitizer's allocation hooks instead. Runs a few steps on stories260K-hf with an NF4
 * base: SFT with dropout and gradient accumulation (with and without activation checkpointing), and
 * distillation from an online teacher and from a teacher cache, on data small enough that the
 * steps cross epochs (the data order is redrawn inside a step). Steps after the first must make
 * no allocation at all.
 *
 * LK_ALLOC_TRACE=N prints, for each case, every distinct call stack (its innermost N frames,
 * default 8, the counting hook's own frames included) that allocated or freed after the first
 * step, with its count. Function names come from the executable's symbols (this target is linked
 * with -rdynamic); static functions show as test_alloc(+offset), which `addr2line -f -e
 * test_alloc OFFSET` names. A function that ends with a tail call to free() leaves no frame: its
 * caller appears instead. */
#include <errno.h>
#include <execinfo.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pool.h"
#include "core/status.h"
#include "testutil.h"

#define MODEL "models/stories260K-hf"
#define STEPS 4

/* ---- counting ---- */

#define TRACE_DEPTH  32
#define TRACE_STACKS 256
#define TRACE_LIVE   8192 /* blocks allocated inside a step and not yet freed (a power of 2) */

typedef struct {
    void *frame[TRACE_DEPTH];
    int depth;
    long count; /* allocations (or frees of blocks from before the step) made from here */
    long freed; /* of those allocations, freed again inside the step */
} stack_rec;

static atomic_int g_on;     /* 1 while a counted step runs */
static atomic_long g_count; /* allocations and frees while g_on */
static int g_trace;         /* LK_ALLOC_TRACE: frames to record of each, 0: none */
static atomic_flag g_lock = ATOMIC_FLAG_INIT;
/* under g_lock: distinct stacks, and which stack allocated each live block (open addressing) */
static stack_rec g_stacks[TRACE_STACKS];
static int g_n_stacks;
static long g_untracked; /* beyond the tables */
static struct {
    const void *p;
    int stack;
} g_live[TRACE_LIVE];
static _Thread_local int t_busy; /* this thread is inside the tracer (backtrace) */

static size_t live_slot(const void *p)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (TRACE_LIVE - 1);
}

/* Index of the calling stack in the table (added if new), -1 when the table is full. */
static int stack_index(void)
{
    void *fr[TRACE_DEPTH];
    int n = backtrace(fr, g_trace), i = 0;
    while (i < g_n_stacks &&
           (g_stacks[i].depth != n || memcmp(g_stacks[i].frame, fr, (size_t)n * sizeof *fr) != 0))
        i++;
    if (i == g_n_stacks && g_n_stacks < TRACE_STACKS) {
        memcpy(g_stacks[i].frame, fr, (size_t)n * sizeof *fr);
        g_stacks[i].depth = n;
        g_stacks[i].count = g_stacks[i].freed = 0;
        g_n_stacks++;
    }
    return i < g_n_stacks ? i : -1;
}

/* An allocation of p (freeing old when a realloc moved it) or a free of old: a free of a block
 * allocated inside the step counts against the allocating stack; any other gets its own. */
static void record(const void *p, const void *old)
{
    while (atomic_flag_test_and_set(&g_lock))
        ;
    int from = -1;
    for (size_t h = live_slot(old); old && g_live[h].p; h = (h + 1) & (TRACE_LIVE - 1))
        if (g_live[h].p == old) {
            from = g_live[h].stack;
            g_live[h].p = (const void *)1; /* a tombstone: keeps later probes going */
            break;
        }
    if (from >= 0)
        g_stacks[from].freed++;
    int at = p || from < 0 ? stack_index() : -1;
    if (at >= 0)
        g_stacks[at].count++;
    else if (p || from < 0)
        g_untracked++;
    size_t h = live_slot(p), probes = 0;
    while (p && at >= 0 && g_live[h].p > (const void *)1 && ++probes < TRACE_LIVE)
        h = (h + 1) & (TRACE_LIVE - 1);
    if (p && at >= 0 && probes < TRACE_LIVE) {
        g_live[h].p = p;
        g_live[h].stack = at;
    }
    atomic_flag_clear(&g_lock);
}

/* Count one allocation (p, the block it returned) or free (old), and trace it when asked. */
static void note(const void *p, const void *old)
{
    if (!atomic_load_explicit(&g_on, memory_order_relaxed) || t_busy)
        return;
    atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
    if (g_trace) {
        t_busy = 1;
        record(p, old);
        t_busy = 0;
    }
}

#if LK_TEST_ASAN
/* AddressSanitizer's allocator calls these on every allocation and free (any thread). */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));

static void on_malloc(const volatile void *p, size_t n)
{
    (void)n;
    note((const void *)p, NULL);
}

static void on_free(const volatile void *p)
{
    if (p)
        note(NULL, (const void *)p);
}

static void install_hooks(void)
{
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
/* glibc's allocator under its own names: the replacements below forward, then count. */
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t n);
void *__libc_valloc(size_t n);
void *__libc_pvalloc(size_t n);

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    note(p, NULL);
    return p;
}

void *calloc(size_t n, size_t size)
{
    void *p = __libc_calloc(n, size);
    note(p, NULL);
    return p;
}

void *realloc(void *old, size_t n)
{
    void *p = __libc_realloc(old, n);
    note(p, p ? old : NULL);
    return p;
}

void free(void *p)
{
    if (p)
        note(NULL, p);
    __libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = __libc_memalign(align, n);
    note(p, NULL);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    note(p, NULL);
    return p;
}

void *memalign(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    note(p, NULL);
    return p;
}

void *valloc(size_t n)
{
    void *p = __libc_valloc(n);
    note(p, NULL);
    return p;
}

void *pvalloc(size_t n)
{
    void *p = __libc_pvalloc(n);
    note(p, NULL);
    return p;
}

static void install_hooks(void) {}
#endif

/* Count from now on; trace (when asked) only what counts against the case. */
static void count_begin(int record_stacks)
{
    const char *e = getenv("LK_ALLOC_TRACE");
    int depth = e && atoi(e) > 1 ? atoi(e) : 8;
    atomic_store(&g_count, 0);
    g_trace = record_stacks && e ? (depth < TRACE_DEPTH ? depth : TRACE_DEPTH) : 0;
    atomic_store(&g_on, 1);
}

static long count_end(void)
{
    atomic_store(&g_on, 0);
    return atomic_load(&g_count);
}

/* Print and forget the recorded stacks. */
static void report_stacks(const char *name)
{
    for (int i = 0; i < g_n_stacks; i++) {
        fprintf(stderr, "%s: %ld allocations (%ld of them freed in the step) or frees from:\n",
                name, g_stacks[i].count, g_stacks[i].freed);
        backtrace_symbols_fd(g_stacks[i].frame, g_stacks[i].depth, 2);
    }
    if (g_untracked)
        fprintf(stderr, "%s: %ld more beyond the tables\n", name, g_untracked);
    g_n_stacks = 0;
    g_untracked = 0;
    memset(g_live, 0, sizeof g_live);
}

/* ---- the cases ---- */

typedef struct {
    lk_model *m;       /* NF4 student */
    lk_model *teacher; /* f32 base, the online teacher and the cache's */
    lk_tokenizer *tok;
    lk_dataset *data; /* a few examples: several epochs in a few steps */
    char *dir;
    char cache[4096];
} fixture;

static fixture g_fx;

/* The first n lines of the sample training data, as a file in dir. */
static const char *small_data(const char *dir, int n)
{
    static char out[4096];
    char src[4096], line[65536];
    snprintf(src, sizeof src, "%s/../../samples/data/whale-train.jsonl", LK_TEST_DATA);
    snprintf(out, sizeof out, "%s/small.jsonl", dir);
    FILE *in = fopen(src, "r"), *o = fopen(out, "w");
    assert_non_null(in);
    assert_non_null(o);
    for (int i = 0; i < n && fgets(line, sizeof line, in); i++)
        fputs(line, o);
    fclose(in);
    fclose(o);
    return out;
}

static int setup(void **state)
{
    (void)state;
    fixture *f = &g_fx;
    install_hooks();
    void *fr[4];
    backtrace(fr, 4); /* the unwinder loads (and allocates) on its first use */
    if (access(shared_path(MODEL "/model.safetensors"), R_OK) != 0)
        return 0; /* each test skips visibly */
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 2;
    mp.quant = LK_QTYPE_NF4;
    if (lk_model_load(shared_path(MODEL), &mp, &f->m) != LK_OK)
        return -1;
    mp.quant = LK_QTYPE_F32;
    if (lk_model_load(shared_path(MODEL), &mp, &f->teacher) != LK_OK ||
        lk_tokenizer_load(shared_path(MODEL), &f->tok) != LK_OK)
        return -1;
    f->dir = make_temp_dir();
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = 128;
    if (lk_dataset_load(small_data(f->dir, 3), f->tok, &dp, &f->data) != LK_OK)
        return -1;
    snprintf(f->cache, sizeof f->cache, "%s/teacher.cache", f->dir);
    struct lk_teacher_params tp = lk_teacher_params_default();
    tp.top_k = 8;
    return lk_teacher_cache_write(f->teacher, f->data, f->cache, &tp, NULL) == LK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fixture *f = &g_fx;
    lk_dataset_free(f->data);
    lk_tokenizer_free(f->tok);
    lk_model_free(f->m);
    lk_model_free(f->teacher);
    if (f->dir) {
        rm_rf(f->dir);
        free(f->dir);
    }
    return 0;
}

/* STEPS steps of a trainer with p: every step after the first allocates nothing. */
static void check_steps(const char *name, struct lk_train_params *p)
{
    fixture *f = &g_fx;
    require_file(shared_path(MODEL "/model.safetensors"));
    /* Rank 16, not 1..8 (mod 16): for those, OpenBLAS's AVX-512 small-matrix kernel (sgemm_small_
     * kernel_nn, used when M·N·K <= 10^6) mallocs a packing buffer in every call of the LoRA
     * backward's dy·B [T, out]·[out, r]; the library cannot hand it memory, and another call shape
     * would change the sums' rounding (LK_ALLOC_TRACE shows it with rank 4). */
    p->rank = 16;
    p->steps = STEPS;
    p->batch = 1;
    p->seed = 7;
    lk_trainer *t;
    assert_ok(lk_trainer_create(f->m, f->data, p, &t));
    long n[STEPS];
    lk_status s = LK_OK;
    for (int i = 0; i < STEPS && s == LK_OK; i++) {
        struct lk_step_stats st;
        count_begin(i > 0);
        s = lk_trainer_step(t, &st);
        n[i] = count_end();
    }
    lk_trainer_free(t);
    assert_ok(s);
    fprintf(stderr, "%s: allocations and frees per step:", name);
    for (int i = 0; i < STEPS; i++)
        fprintf(stderr, " %ld", n[i]);
    fprintf(stderr, "\n");
    report_stacks(name);
    for (int i = 1; i < STEPS; i++)
        if (n[i] != 0)
            fail_msg("%s: step %d made %ld allocations or frees (LK_ALLOC_TRACE=8 shows where)",
                     name, i + 1, n[i]);
}

static void alloc_free(void *ctx, int64_t i0, int64_t i1, int thread)
{
    for (int64_t i = i0; i < i1; i++)
        free(lk_aligned_alloc(64));
}

/* The counter sees the library's allocations, on the calling thread and on the pool's. */
static void test_counter_counts(void **state)
{
    (void)state;
    count_begin(0);
    free(lk_aligned_alloc(64));
    long one = count_end();
    count_begin(0);
    par_for(2, 2, alloc_free, NULL); /* one on the caller, one on a worker */
    long two = count_end();
    assert_int_equal(one, 2);
    assert_true(two >= 4); /* the workers' own start-up allocations, if any, come on top */
}

static void test_sft_checkpointing(void **state)
{
    (void)state;
    struct lk_train_params p = lk_train_params_default();
    p.grad_accum = 2;
    p.dropout = 0.1f;
    p.checkpointing = LK_CKPT_ON; /* every layer but the last recomputed */
    check_steps("sft", &p);
}

static void test_sft_no_checkpointing(void **state)
{
    (void)state;
    struct lk_train_params p = lk_train_params_default();
    p.grad_accum = 2;
    p.dropout = 0.1f;
    p.checkpointing = LK_CKPT_OFF;
    check_steps("sft --no-checkpointing", &p);
}

static void test_kd_online(void **state)
{
    (void)state;
    struct lk_train_params p = lk_train_params_default();
    p.grad_accum = 2;
    p.dropout = 0.1f;
    p.objective = LK_OBJ_KD;
    p.kd_weight = 0.5f;
    p.teacher = g_fx.teacher;
    check_steps("kd, online teacher", &p);
}

static void test_kd_cache(void **state)
{
    (void)state;
    struct lk_train_params p = lk_train_params_default();
    p.grad_accum = 2;
    p.objective = LK_OBJ_JSD;
    p.teacher_cache = g_fx.cache;
    check_steps("jsd, teacher cache", &p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_counts),
        cmocka_unit_test(test_sft_checkpointing),
        cmocka_unit_test(test_sft_no_checkpointing),
        cmocka_unit_test(test_kd_online),
        cmocka_unit_test(test_kd_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
