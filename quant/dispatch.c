/* dispatch.c — CPU feature detection (cpuid + xgetbv + Linux AMX permission) done once, the
 * const kernel tables, LK_KERNELS override, the q4_gemm_* entry points everyone calls and the
 * helpers that carve a caller's work buffer. A variant lists the weight types it has kernels for;
 * for the others the entry points use a stand-in (q4_kernels_for: AMX, which lacks the GGUF
 * read-only types Q4_1 .. IQ4_XS, falls back to AVX-512, then AVX2, then the plain-C reference).
 * Follows ggml's scheme: a variant is offered only if this build compiled its file (LK_HAVE_*)
 * and this CPU and OS run it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q4.h"
#include "core/pool.h"
#include "core/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define Q4_X86 1
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

enum {
    F_AVX2 = 1,
    F_FMA = 2,
    F_F16C = 4,
    F_AVX512 = 8,
    F_AVX512BF16 = 16,
    F_AMX = 32,
    F_NEON = 64,
    F_AVX512VNNI = 128, /* int8 dot products of the q8 variants (q8_dispatch.c) */
    F_DOTPROD = 256     /* AArch64 sdot/udot (q8 neon) */
};

/* The reference, AVX2, AVX-512 (the GGUF read-only types through the decoders of qk_avx2.h) and
 * NEON cover every type; AMX the base types only (the others go through q4_kernels_for). */
static const q4_kernels k_ref = {
    "ref", q4_gemm_fwd_ref, q4_gemm_bwd_ref, q4_gemm_fwd_work_ref, q4_gemm_bwd_work_ref,
    0,     Q4_TYPES_ALL};
#ifdef LK_HAVE_AVX2
static const q4_kernels k_avx2 = {
    "avx2", q4_gemm_fwd_avx2, q4_gemm_bwd_avx2, q4_gemm_fwd_work_avx2, q4_gemm_bwd_work_avx2,
    0,      Q4_TYPES_ALL};
#endif
#ifdef LK_HAVE_AVX512
static const q4_kernels k_avx512 = {"avx512",
                                    q4_gemm_fwd_avx512,
                                    q4_gemm_bwd_avx512,
                                    q4_gemm_fwd_work_avx512,
                                    q4_gemm_bwd_work_avx512,
                                    0,
                                    Q4_TYPES_ALL};
#endif
#ifdef LK_HAVE_AMX
static const q4_kernels k_amx = {
    "amx", q4_gemm_fwd_amx, q4_gemm_bwd_amx, q4_gemm_fwd_work_amx, q4_gemm_bwd_work_amx,
    1,     Q4_TYPES_BASE};
#endif
#ifdef LK_HAVE_NEON
static const q4_kernels k_neon = {
    "neon", q4_gemm_fwd_neon, q4_gemm_bwd_neon, q4_gemm_fwd_work_neon, q4_gemm_bwd_work_neon,
    0,      Q4_TYPES_ALL};
#endif

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static unsigned g_feat;
static const q4_kernels *g_chosen = &k_ref;
static char g_feat_str[160];

#ifdef Q4_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* Linux keeps AMX tile data off until a process asks (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). */
static int amx_permission(void)
{
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
}

static unsigned detect_x86(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return 0;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6) /* SSE and AVX state enabled by the OS */
        return 0;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0, tmp;
    if (__get_cpuid_count(7, 0, &tmp, &b7, &c7, &d7))
        __get_cpuid_count(7, 1, &a71, &tmp, &tmp, &tmp);
    if ((b7 >> 5 & 1) && fma && f16c)
        f |= F_AVX2 | F_FMA | F_F16C;
    /* AVX-512 F, DQ, BW, VL and the opmask/ZMM state (XCR0 bits 5..7) */
    int zmm_os = (xcr0 & 0xe0) == 0xe0;
    if ((f & F_AVX2) && zmm_os && (b7 >> 16 & 1) && (b7 >> 17 & 1) && (b7 >> 30 & 1) &&
        (b7 >> 31 & 1))
        f |= F_AVX512;
    if ((f & F_AVX512) && (a71 >> 5 & 1))
        f |= F_AVX512BF16;
    if ((f & F_AVX512) && (c7 >> 11 & 1))
        f |= F_AVX512VNNI;
    /* AMX-TILE (edx 24) and AMX-BF16 (edx 22), tile state in XCR0 bits 17-18, OS permission */
    if ((f & F_AVX512BF16) && (d7 >> 24 & 1) && (d7 >> 22 & 1) && (xcr0 & 0x60000) == 0x60000 &&
        amx_permission())
        f |= F_AMX;
    return f;
}
#endif

static void features_string(void)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{F_AVX2, "avx2"},
                 {F_FMA, "fma"},
                 {F_F16C, "f16c"},
                 {F_AVX512, "avx512f avx512bw avx512vl avx512dq"},
                 {F_AVX512BF16, "avx512bf16"},
                 {F_AMX, "amx-tile amx-bf16"},
                 {F_NEON, "neon"},
                 {F_AVX512VNNI, "avx512vnni"},
                 {F_DOTPROD, "dotprod"}};
    size_t len = 0;
    g_feat_str[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (g_feat & names[i].bit)
            len += (size_t)snprintf(g_feat_str + len, sizeof g_feat_str - len, "%s%s",
                                    len ? " " : "", names[i].name);
    }
}

/* Table of variant `name` if compiled and runnable here, else NULL. */
static const q4_kernels *lookup(const char *name)
{
    if (!strcmp(name, "ref"))
        return &k_ref;
#ifdef LK_HAVE_AVX2
    if (!strcmp(name, "avx2") && (g_feat & F_AVX2))
        return &k_avx2;
#endif
#ifdef LK_HAVE_AVX512
    if (!strcmp(name, "avx512") && (g_feat & F_AVX512))
        return &k_avx512;
#endif
#ifdef LK_HAVE_AMX
    if (!strcmp(name, "amx") && (g_feat & F_AMX))
        return &k_amx;
#endif
#ifdef LK_HAVE_NEON
    if (!strcmp(name, "neon") && (g_feat & F_NEON))
        return &k_neon;
#endif
    return NULL;
}

static void init_once(void)
{
#ifdef Q4_X86
    g_feat = detect_x86();
#elif defined(__aarch64__)
    g_feat = F_NEON; /* Advanced SIMD is mandatory on AArch64 */
    if (getauxval(AT_HWCAP) & (1ul << 20)) /* HWCAP_ASIMDDP */
        g_feat |= F_DOTPROD;
#endif
    features_string();
    static const char *const best[] = {"amx", "avx512", "avx2", "neon"};
    for (size_t i = 0; i < sizeof best / sizeof best[0] && g_chosen == &k_ref; i++) {
        const q4_kernels *k = lookup(best[i]);
        if (k)
            g_chosen = k;
    }
    const char *env = getenv("LK_KERNELS");
    if (env && *env) {
        const q4_kernels *k = lookup(env);
        if (k)
            g_chosen = k;
        else
            log_warn("LK_KERNELS=%s: variant unknown, not compiled or not supported by this CPU; "
                     "using %s",
                     env, g_chosen->name);
    }
}

const q4_kernels *q4_kernels_get(void)
{
    pthread_once(&g_once, init_once);
    return g_chosen;
}

const q4_kernels *q4_kernels_named(const char *name)
{
    pthread_once(&g_once, init_once);
    return lookup(name);
}

const q4_kernels *q4_kernels_for(const q4_kernels *k, int qtype)
{
    static const char *const standins[] = {"avx512", "avx2"}; /* x86, best first */
    if (q4_kernels_has(k, qtype))
        return k;
    for (size_t i = 0; strcmp(k->name, "neon") != 0 && i < 2; i++) {
        const q4_kernels *a = q4_kernels_named(standins[i]);
        if (a && q4_kernels_has(a, qtype))
            return a;
    }
    return &k_ref;
}

int q4_cpu_has(const char *feature)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{F_AVX2, "avx2"},     {F_AVX512, "avx512"},           {F_AMX, "amx"},
                 {F_NEON, "neon"},     {F_AVX512VNNI, "avx512vnni"}, {F_DOTPROD, "dotprod"}};
    pthread_once(&g_once, init_once);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(feature, names[i].name))
            return (g_feat & names[i].bit) != 0;
    return 0;
}

const char *lk_kernel_variant(void)
{
    return q4_kernels_get()->name;
}

const char *lk_cpu_features(void)
{
    pthread_once(&g_once, init_once);
    return g_feat_str;
}

size_t q4_work_size(size_t need)
{
    return need ? need + 63 : 0; /* the start may be up to 63 bytes before a 64-byte line */
}

void *q4_work_start(void *work, size_t work_size, size_t size)
{
    if (size == 0)
        return NULL;
    LK_ASSERT(work && work_size >= size);
    return (void *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
}

size_t q4_gemm_fwd_work(const q4_kernels *k, const q4_weight *w, int64_t T, int n_threads)
{
    return q4_kernels_for(k, w->qtype)->fwd_work(w, T, n_threads);
}

size_t q4_gemm_bwd_work(const q4_kernels *k, const q4_weight *w, int64_t T, int n_threads)
{
    return q4_kernels_for(k, w->qtype)->bwd_work(w, T, n_threads);
}

void q4_gemm_fwd(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                 int n_threads, void *work, size_t work_size)
{
    q4_kernels_for(q4_kernels_get(), w->qtype)->fwd(w, bias, X, T, Y, n_threads, work, work_size);
}

void q4_gemm_bwd(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                 void *work, size_t work_size)
{
    q4_kernels_for(q4_kernels_get(), w->qtype)->bwd(w, dY, T, dX, n_threads, work, work_size);
}

q4_decode_fn q4_decoder(const q4_kernels *k)
{
#ifdef LK_HAVE_AVX2
    if (strcmp(k->name, "ref") != 0 && strcmp(k->name, "neon") != 0 && q4_cpu_has("avx2"))
        return q4_decode_rows_avx2;
#endif
    (void)k;
    return q4_decode_rows_ref;
}

q4_sgemv_fn q4_sgemver(const q4_kernels *k)
{
#ifdef LK_HAVE_AVX2
    if (strcmp(k->name, "ref") != 0 && strcmp(k->name, "neon") != 0 && q4_cpu_has("avx2"))
        return q4_sgemv_avx2; /* "avx2" here means AVX2 with FMA and F16C */
#endif
    (void)k;
    return NULL;
}

typedef struct {
    q4_sgemv_fn fn;
    int64_t N, K, chunk;
    const float *W, *x;
    float *y;
} sgemv_job;

static void sgemv_slices(void *ctx, int64_t c0, int64_t c1, int thread)
{
    (void)thread;
    const sgemv_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        const int64_t n0 = c * j->chunk, n = j->N - n0 < j->chunk ? j->N - n0 : j->chunk;
        j->fn(n, j->K, j->W + n0 * j->K, j->x, j->y + n0);
    }
}

#define SGEMV_PAR_MIN (1 << 18) /* multiply-adds below which one thread does the call */

int q4_sgemv(int64_t N, int64_t K, const float *W, const float *x, float *y, int n_threads)
{
    sgemv_job j = {q4_sgemver(q4_kernels_get()), N, K, N, W, x, y};
    if (!j.fn)
        return 0;
    const int nt = resolve_threads(n_threads);
    if (nt <= 1 || N * K < SGEMV_PAR_MIN) {
        j.fn(N, K, W, x, y);
        return 1;
    }
    j.chunk = ((N + nt - 1) / nt + 15) / 16 * 16;
    par_for(nt, (N + j.chunk - 1) / j.chunk, sgemv_slices, &j);
    return 1;
}

void q4_decode_rows(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n, float *dst,
                    int64_t ld)
{
    q4_decoder(q4_kernels_get())(w, r0, nr, k0, n, dst, ld);
}
