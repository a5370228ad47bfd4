/* q8_dispatch.c — the table of int8 GEMM variants (q8.h): the best one compiled into this build
 * and run by this CPU (q4_cpu_has), or the one LK_KERNELS names, chosen once, thread-safely; the
 * q8_gemm_* entry points go through it. A SIMD variant's forward is its GEMV (q8_gemv_*.c) for
 * T <= its gemv_t and its packed GEMM (q8_avx2.c, q8_avx512.c, q8_neon.c) above; its two-term
 * forward (fwd2) and its accumulating one (fwd_add) are its packed GEMM for every T. LK_KERNELS
 * takes the q4 names too (avx512 and amx mean avx512vnni here, falling back to avx2), so one
 * setting picks matching variants for both. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "q8.h"
#include "core/status.h"

static const q8_kernels k_ref = {"ref",
                                 q8_gemm_fwd_ref,
                                 q8_gemm_fwd_work_ref,
                                 q8_gemm_fwd_ref,
                                 q8_gemm_fwd_work_ref,
                                 0,
                                 q8_gemm_fwd2_ref,
                                 q8_gemm_fwd2_work_ref,
                                 q8_gemm_fwd_add_ref,
                                 q8_gemm_fwd_add_work_ref,
                                 1,
                                 0};

/* A SIMD variant's forward: its GEMV for T <= tmax (its table's gemv_t), its GEMM above; the work
 * for T covers both (every call with 1..T rows). */
#define SMALL_T_FWD(v, tmax)                                                              \
    static size_t fwd_work_##v(const q4_weight *w, int64_t T, int n_threads)              \
    {                                                                                     \
        const size_t a = q8_gemv_work_##v(w, T < (tmax) ? T : (tmax), n_threads);         \
        const size_t b = T > (tmax) ? q8_gemm_fwd_work_##v(w, T, n_threads) : 0;          \
        return a > b ? a : b;                                                             \
    }                                                                                     \
    static void fwd_##v(const q4_weight *w, const float *bias, const float *X, int64_t T, \
                        float *Y, int n_threads, void *work, size_t work_size)            \
    {                                                                                     \
        if (T <= (tmax))                                                                  \
            q8_gemv_fwd_##v(w, bias, X, T, Y, n_threads, work, work_size);                \
        else                                                                              \
            q8_gemm_fwd_##v(w, bias, X, T, Y, n_threads, work, work_size);                \
    }

#ifdef LK_HAVE_AVX2
SMALL_T_FWD(avx2, 6)
static const q8_kernels k_avx2 = {"avx2",
                                  fwd_avx2,
                                  fwd_work_avx2,
                                  q8_gemv_fwd_avx2,
                                  q8_gemv_work_avx2,
                                  6,
                                  q8_gemm_fwd2_avx2,
                                  q8_gemm_fwd2_work_avx2,
                                  q8_gemm_fwd_add_avx2,
                                  q8_gemm_fwd_add_work_avx2,
                                  1,
                                  1};
#endif
#ifdef LK_HAVE_AVX512
SMALL_T_FWD(avx512vnni, 4)
static const q8_kernels k_vnni = {"avx512vnni",
                                  fwd_avx512vnni,
                                  fwd_work_avx512vnni,
                                  q8_gemv_fwd_avx512vnni,
                                  q8_gemv_work_avx512vnni,
                                  4,
                                  q8_gemm_fwd2_avx512vnni,
                                  q8_gemm_fwd2_work_avx512vnni,
                                  q8_gemm_fwd_add_avx512vnni,
                                  q8_gemm_fwd_add_work_avx512vnni,
                                  1,
                                  1};
#endif
#ifdef LK_HAVE_NEON
SMALL_T_FWD(neon, 4)
static const q8_kernels k_neon = {"neon",
                                  fwd_neon,
                                  fwd_work_neon,
                                  q8_gemv_fwd_neon,
                                  q8_gemv_work_neon,
                                  4,
                                  q8_gemm_fwd2_neon,
                                  q8_gemm_fwd2_work_neon,
                                  q8_gemm_fwd_add_neon,
                                  q8_gemm_fwd_add_work_neon,
                                  1,
                                  1};
#endif

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const q8_kernels *g_chosen = &k_ref;

/* Table of variant `name` if compiled and runnable here, else NULL. */
static const q8_kernels *lookup(const char *name)
{
    if (!strcmp(name, "ref"))
        return &k_ref;
#ifdef LK_HAVE_AVX2
    if (!strcmp(name, "avx2") && q4_cpu_has("avx2"))
        return &k_avx2;
#endif
#ifdef LK_HAVE_AVX512
    if (!strcmp(name, "avx512vnni") && q4_cpu_has("avx512vnni"))
        return &k_vnni;
#endif
#ifdef LK_HAVE_NEON
    if (!strcmp(name, "neon") && q4_cpu_has("dotprod"))
        return &k_neon;
#endif
    return NULL;
}

/* The q8 variant LK_KERNELS=env asks for (q4 names mapped), NULL if none runs here. */
static const q8_kernels *lookup_env(const char *env)
{
    if (!strcmp(env, "avx512") || !strcmp(env, "amx")) {
        const q8_kernels *k = lookup("avx512vnni");
        return k ? k : lookup("avx2");
    }
    return lookup(env);
}

static void init_once(void)
{
    static const char *const best[] = {"avx512vnni", "avx2", "neon"};
    for (size_t i = 0; i < sizeof best / sizeof best[0] && g_chosen == &k_ref; i++) {
        const q8_kernels *k = lookup(best[i]);
        if (k)
            g_chosen = k;
    }
    const char *env = getenv("LK_KERNELS");
    if (env && *env) {
        const q8_kernels *k = lookup_env(env);
        if (k)
            g_chosen = k;
        else
            log_warn("LK_KERNELS=%s: no int8 variant of that name compiled or supported by this "
                     "CPU; int8 products use %s",
                     env, g_chosen->name);
    }
}

const q8_kernels *q8_kernels_get(void)
{
    pthread_once(&g_once, init_once);
    return g_chosen;
}

const q8_kernels *q8_kernels_named(const char *name)
{
    pthread_once(&g_once, init_once);
    return lookup(name);
}

size_t q8_gemm_fwd_work(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_kernels_get()->fwd_work(w, T, n_threads);
}

void q8_gemm_fwd(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                 int n_threads, void *work, size_t work_size)
{
    q8_kernels_get()->fwd(w, bias, X, T, Y, n_threads, work, work_size);
}

size_t q8_gemm_fwd2_work(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_kernels_get()->fwd2_work(w, T, n_threads);
}

void q8_gemm_fwd2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                  int n_threads, void *work, size_t work_size)
{
    q8_kernels_get()->fwd2(w, bias, X, T, Y, n_threads, work, work_size);
}

size_t q8_gemm_fwd_add_work(const q4_weight *w, int64_t T, int n_threads)
{
    return q8_kernels_get()->fwd_add_work(w, T, n_threads);
}

void q8_gemm_fwd_add(const q4_weight *w, const float *X, int64_t T, float *Y, int n_threads,
                     void *work, size_t work_size)
{
    q8_kernels_get()->fwd_add(w, X, T, Y, n_threads, work, work_size);
}
