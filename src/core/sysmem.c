/* sysmem.c — how much memory this process can count on now (lk_memory_available): the smallest
 * of MemAvailable, the room under the cgroup's memory.max and the room under RLIMIT_AS, plus what
 * the process already holds. Linux files; elsewhere the free pages sysconf reports. And the budget
 * of a plan: --memory-limit, or else that (lk_memory_budget). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lorakit/core.h"

/* Virtual size and resident set of this process in bytes (/proc/self/statm; 0 when unknown). */
static void self_statm(double *vsz, double *rss)
{
    long long v = 0, r = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lld %lld", &v, &r) != 2)
        v = r = 0;
    if (f)
        fclose(f);
    double page = (double)sysconf(_SC_PAGESIZE);
    *vsz = (double)v * page;
    *rss = (double)r * page;
}

/* "Key:   N kB" of /proc/meminfo in bytes; -1 when absent. */
static double meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double v = -1;
    size_t k = strlen(key);
    while (f && v < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':')
            v = strtod(line + k + 1, NULL) * 1024.0;
    if (f)
        fclose(f);
    return v;
}

/* A number in a one-line file ("max" and the like: -1). */
static double file_number(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[64];
    double v = -1;
    if (f && fgets(buf, sizeof buf, f)) {
        char *e;
        v = strtod(buf, &e);
        if (e == buf)
            v = -1;
    }
    if (f)
        fclose(f);
    return v;
}

int64_t lk_memory_available(const char **what)
{
    const char *dummy;
    if (!what)
        what = &dummy;
    double vsz, mine; /* what this process already holds counts too */
    self_statm(&vsz, &mine);
    double best = meminfo("MemAvailable");
    *what = "MemAvailable";
    if (best < 0) {
        best = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        *what = "free memory";
    }
    best += mine;
    double cg_max = file_number("/sys/fs/cgroup/memory.max");
    double cg_cur = file_number("/sys/fs/cgroup/memory.current");
    if (cg_max > 0 && cg_cur >= 0 && cg_max - cg_cur + mine < best) {
        best = cg_max - cg_cur + mine;
        *what = "the cgroup's memory.max";
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (double)rl.rlim_cur - vsz + mine < best) {
        best = (double)rl.rlim_cur - vsz + mine;
        *what = "the address-space limit (ulimit -v)";
    }
    return best > 0 ? (int64_t)best : 0;
}

int64_t lk_memory_budget(int64_t limit, const char **what)
{
    if (limit > 0) {
        if (what)
            *what = "--memory-limit";
        return limit;
    }
    return lk_memory_available(what);
}
