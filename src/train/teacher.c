/* teacher.c — lk_teacher_cache_write: the teacher's forward over every example (lk_session_eval
 * in pieces, so logits are [piece, V] at a time, never [T, V]), top-k of log_softmax(z / τ) at
 * each trained position (tcache_topk, rows in parallel), and the cache written by tcache.c. The
 * forward of an example stops at its last trained position: later tokens change no entry.
 * With a data-parallel group the examples go in rounds: each rank runs a block of consecutive
 * examples, rank 0 gathers the blocks in rank order (which is file order) and adds them to the
 * one writer, so the file is byte for byte a single process's. Calls into dist.c and
 * dist_check.c. */
#include "lorakit/teacher.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "model/config.h"
#include "model/model.h"
#include "core/option.h"
#include "core/pool.h"
#include "core/status.h"
#include "formats/tcache.h"
#include "train/dist.h"

struct lk_teacher_params lk_teacher_params_default(void)
{
    return (struct lk_teacher_params){.top_k = 32, .temp = 1.0f, .piece = 64};
}

/* The last path component (trailing slashes ignored) into out[n]. */
static void base_name(const char *path, char *out, size_t n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t a = len;
    while (a > 0 && path[a - 1] != '/')
        a--;
    snprintf(out, n, "%.*s", (int)(len - a), path + a);
}

/* XXH64 of a whole file (mapped). */
/* xxh64 of path's first max_bytes bytes (and its size). */
static lk_status file_hash(const char *path, size_t max_bytes, uint64_t *h, size_t *size)
{
    mapfile f;
    LK_TRY(mapfile_open(&f, path, 1));
    *h = tcache_xxh64(f.data, f.size < max_bytes ? f.size : max_bytes, 0);
    *size = f.size;
    mapfile_close(&f);
    return LK_OK;
}

#define GGUF_HASH_BYTES ((size_t)4 << 20) /* a GGUF teacher: its metadata, first tensors */

/* "folder config.json:xxh64=... weights=nf4 embed=f32 [note]" ("file.gguf gguf:xxh64=..." for a
 * GGUF file: the hash of its first 4 MiB and its size) */
static lk_status describe_teacher(const lk_model *m, const struct lk_teacher_params *p, char *out,
                                  size_t n)
{
    char base[256] = "", hash[48] = "";
    if (p->teacher_dir) {
        int gguf = model_path_is_gguf(p->teacher_dir);
        char *cfg = gguf ? strdup(p->teacher_dir) : path_join(p->teacher_dir, "config.json");
        uint64_t h;
        size_t size;
        lk_status s =
            cfg ? file_hash(cfg, gguf ? GGUF_HASH_BYTES : SIZE_MAX, &h, &size) : LK_ERR_NOMEM;
        free(cfg);
        if (s != LK_OK)
            return s == LK_ERR_NOMEM ? status_fail(s, "out of memory") : s;
        base_name(p->teacher_dir, base, sizeof base);
        snprintf(hash, sizeof hash, " %s:xxh64=%016llx", gguf ? "gguf" : "config.json",
                 (unsigned long long)h);
    }
    snprintf(out, n, "%s%s weights=%s embed=%s%s%s", base, hash, lk_qtype_name(lk_model_quant(m)),
             lk_qtype_name(lk_model_quant_embed(m)), p->teacher_note ? " " : "",
             p->teacher_note ? p->teacher_note : "");
    return LK_OK;
}

/* "file bytes=N xxh64=... examples=N seq_len=N" */
static lk_status describe_data(const lk_dataset *d, const char *path, char *out, size_t n)
{
    int64_t ne = lk_dataset_get_stats(d)->examples, T = lk_dataset_seq_len(d);
    char base[256] = "";
    int k = 0;
    if (path) {
        uint64_t h;
        size_t size;
        LK_TRY(file_hash(path, SIZE_MAX, &h, &size));
        base_name(path, base, sizeof base);
        k = snprintf(out, n, "%s bytes=%zu xxh64=%016llx ", base, size, (unsigned long long)h);
    }
    snprintf(out + k, n - (size_t)k, "examples=%lld seq_len=%lld", (long long)ne, (long long)T);
    return LK_OK;
}

/* The run: the teacher's session, a logits buffer [piece, Vm] and one example's entries. */
typedef struct {
    const lk_model *m;
    const struct lk_teacher_params *p;
    int64_t Vm, V;
    lk_session *s;
    float *logits;
    int64_t *rows; /* [piece] trained rows of the current piece */
    int32_t *ids;  /* [cap·k] */
    float *logp;   /* [cap·k] */
    float *tail;   /* [cap] */
    int64_t cap;
    /* data parallelism: this rank's entries of a round, rank 0's gathered round */
    uint8_t *pack, *gath;
    int64_t pack_cap, gath_cap;
    int64_t *sizes; /* [ranks] bytes each rank sent */
} run;

static lk_status reserve_entries(run *x, int64_t E)
{
    if (E <= x->cap)
        return LK_OK;
    int64_t k = x->p->top_k;
    free(x->ids);
    free(x->logp);
    free(x->tail);
    x->ids = malloc((size_t)(E * k) * sizeof *x->ids);
    x->logp = malloc((size_t)(E * k) * sizeof *x->logp);
    x->tail = malloc((size_t)E * sizeof *x->tail);
    x->cap = x->ids && x->logp && x->tail ? E : 0;
    return x->cap ? LK_OK : status_fail(LK_ERR_NOMEM, "teacher: out of memory for entries");
}

typedef struct {
    run *x;
    int64_t off, r0;
    _Atomic int64_t failed; /* the last row whose top-k failed, or -1 */
} topk_job;

static void topk_rows(void *ctx, int64_t j0, int64_t j1, int thread)
{
    topk_job *tj = ctx;
    run *x = tj->x;
    int64_t k = x->p->top_k;
    for (int64_t j = j0; j < j1; j++) {
        int64_t r = tj->r0 + j;
        if (tcache_topk(x->logits + (x->rows[j] - tj->off) * x->Vm, x->V, x->p->temp, k,
                        x->ids + r * k, x->logp + r * k, x->tail + r) != LK_OK) {
            int64_t seen = atomic_load(&tj->failed);
            while (j > seen && !atomic_compare_exchange_weak(&tj->failed, &seen, j))
                ;
        }
    }
}

/* Top-k of the piece's trained rows (parallel over rows); entries from r0 on. */
static lk_status piece_topk(run *x, int64_t off, int64_t nr, int64_t r0, int64_t e)
{
    topk_job tj = {x, off, r0, -1};
    par_for(x->m->n_threads, nr, topk_rows, &tj);
    int64_t failed = atomic_load(&tj.failed);
    if (failed < 0)
        return LK_OK;
    int64_t j = failed; /* again on this thread, for the message */
    lk_status s = tcache_topk(x->logits + (x->rows[j] - off) * x->Vm, x->V, x->p->temp, x->p->top_k,
                              x->ids, x->logp, x->tail);
    return status_wrap(s, "teacher: example %lld, position %lld", (long long)e,
                       (long long)x->rows[j]);
}

/* Entries of example e (tokens, labels [n]): forward up to its last trained position. */
static lk_status example_entries(run *x, int64_t e, const int32_t *tok, const int32_t *lab,
                                 int64_t n, int64_t *fwd)
{
    int64_t last = -1, r = 0, P = x->p->piece;
    for (int64_t t = 0; t + 1 < n; t++)
        if (lab[t + 1] != LK_LABEL_IGNORE)
            last = t;
    LK_TRY(reserve_entries(x, tcache_trained(lab, n)));
    lk_session_reset(x->s);
    for (int64_t off = 0; off <= last; off += P) {
        int64_t len = last + 1 - off < P ? last + 1 - off : P, nr = 0;
        LK_TRY(lk_session_eval(x->s, tok + off, len, x->logits, 1));
        for (int64_t t = off; t < off + len; t++)
            if (lab[t + 1] != LK_LABEL_IGNORE)
                x->rows[nr++] = t;
        LK_TRY(piece_topk(x, off, nr, r, e));
        r += nr;
    }
    *fwd += last + 1;
    return LK_OK;
}

lk_status lk_teacher_params_check(const struct lk_teacher_params *p,
                                  const struct lk_model_config *cfg)
{
    char want[96];
    if (p->top_k < 1)
        return option_range_i("--top-k", p->top_k, "at least 1");
    if (!(p->temp > 0) || p->temp > 1e6f)
        return option_range_f("--kd-temp", p->temp, "above 0 (at most 1e6)");
    if (p->piece < 1)
        return option_range_i("piece", p->piece, "at least 1");
    if (p->vocab < 0)
        return option_range_i("--vocab", p->vocab, "at least 2 (0: the model's vocab_size)");
    if (!cfg)
        return LK_OK;
    int64_t V = p->vocab > 0 ? p->vocab : cfg->vocab_size;
    snprintf(want, sizeof want, "between 2 and %lld (the model's vocab_size)", (long long)cfg->vocab_size);
    if (V < 2 || V > cfg->vocab_size)
        return option_range_i("--vocab", V, want);
    snprintf(want, sizeof want, "between 1 and %lld (below the vocabulary of %lld ids)", (long long)V - 1,
             (long long)V);
    if (p->top_k >= V)
        return option_range_i("--top-k", p->top_k, want);
    return LK_OK;
}

/* Longest example of d (at least 1). */
static int64_t longest(const lk_dataset *d)
{
    int64_t mx = 1, n, ne = lk_dataset_get_stats(d)->examples;
    for (int64_t e = 0; e < ne; e++)
        if (lk_dataset_example(d, e, NULL, NULL, &n, NULL) == LK_OK && n > mx)
            mx = n;
    return mx;
}

/* Open the writer (rank 0 only: it writes the file) with the descriptions and allocate the run's
 * buffers. */
static lk_status setup(run *x, const lk_dataset *d, const char *path, tcache_writer **w)
{
    char teacher[1024], data[1024];
    LK_TRY(describe_teacher(x->m, x->p, teacher, sizeof teacher));
    LK_TRY(describe_data(d, x->p->data_path, data, sizeof data));
    struct tcache_meta meta = {.k = x->p->top_k,
                               .temp = x->p->temp,
                               .vocab = x->V,
                               .seq_len = lk_dataset_seq_len(d),
                               .teacher = teacher,
                               .data = data};
    if (lk_dist_rank(x->p->dist) == 0)
        LK_TRY(tcache_writer_open(path, &meta, x->p->force, w));
    int64_t P = x->p->piece;
    LK_TRY(lk_session_create(x->m, longest(d), &x->s));
    x->logits = lk_aligned_alloc((size_t)(P * x->Vm) * sizeof(float));
    x->rows = malloc((size_t)P * sizeof *x->rows);
    x->sizes = calloc((size_t)lk_dist_size(x->p->dist), sizeof *x->sizes);
    if (!x->logits || !x->rows || !x->sizes)
        return status_fail(LK_ERR_NOMEM, "teacher: out of memory for [%lld, %lld] logits",
                           (long long)P, (long long)x->Vm);
    return LK_OK;
}

static void count_example(const int32_t *lab, int64_t n, struct lk_teacher_stats *st)
{
    st->examples++;
    st->tokens += n;
    st->positions += tcache_trained(lab, n);
}

static lk_status write_all(run *x, const lk_dataset *d, tcache_writer *w,
                           struct lk_teacher_stats *st)
{
    int64_t ne = lk_dataset_get_stats(d)->examples;
    for (int64_t e = 0; e < ne; e++) {
        const int32_t *tok, *lab;
        int64_t n, line;
        LK_TRY(lk_dataset_example(d, e, &tok, &lab, &n, &line));
        lk_status s = example_entries(x, e, tok, lab, n, &st->forward_tokens);
        if (s != LK_OK)
            return status_wrap(s, "line %lld", (long long)line);
        LK_TRY(tcache_writer_add(w, tok, lab, n, x->ids, x->logp, x->tail));
        count_example(lab, n, st);
        if (x->p->progress && x->p->progress(x->p->user, e + 1, ne))
            return status_fail(LK_ERR_INTERRUPTED,
                               "teacher: interrupted after %lld of %lld "
                               "examples (nothing written)",
                               (long long)(e + 1), (long long)ne);
    }
    return LK_OK;
}

/* ---- data parallelism: rounds of examples ---- */

/* Examples each rank runs per round: at most about 64 MiB of entries reach rank 0 per round (the
 * longest example's entries for each), at least 1, at most 16 per rank. */
static int64_t round_size(const run *x, const lk_dataset *d, int N)
{
    int64_t per = longest(d) * (8 * x->p->top_k + 4), g = ((int64_t)64 << 20) / (per * N);
    return g < 1 ? 1 : g > 16 ? 16 : g;
}

/* Append the n bytes at p to this rank's round. */
static lk_status pack_add(run *x, int64_t *used, const void *p, int64_t n)
{
    if (*used + n > x->pack_cap) {
        int64_t cap = 2 * (*used + n);
        uint8_t *q = realloc(x->pack, (size_t)cap);
        if (!q)
            return status_fail(LK_ERR_NOMEM, "teacher: out of memory (%lld bytes of entries)",
                               (long long)cap);
        x->pack = q;
        x->pack_cap = cap;
    }
    memcpy(x->pack + *used, p, (size_t)n);
    *used += n;
    return LK_OK;
}

/* This rank's examples [a, z) of a round: entries packed back to back (ids, logp, tail of each
 * example; the sizes follow from its labels). */
static lk_status round_entries(run *x, const lk_dataset *d, int64_t a, int64_t z, int64_t *fwd,
                               int64_t *used)
{
    int64_t k = x->p->top_k;
    *used = 0;
    for (int64_t e = a; e < z; e++) {
        const int32_t *tok, *lab;
        int64_t n, line;
        LK_TRY(lk_dataset_example(d, e, &tok, &lab, &n, &line));
        lk_status s = example_entries(x, e, tok, lab, n, fwd);
        if (s != LK_OK)
            return status_wrap(s, "line %lld", (long long)line);
        int64_t E = tcache_trained(lab, n);
        LK_TRY(pack_add(x, used, x->ids, E * k * (int64_t)sizeof *x->ids));
        LK_TRY(pack_add(x, used, x->logp, E * k * (int64_t)sizeof *x->logp));
        LK_TRY(pack_add(x, used, x->tail, E * (int64_t)sizeof *x->tail));
    }
    return LK_OK;
}

/* The round's examples [a, z) in order: rank 0 adds them from the gathered entries (w, buf; NULL
 * on the other ranks), every rank counts them. */
static lk_status round_write(const run *x, const lk_dataset *d, tcache_writer *w,
                             const uint8_t *buf, int64_t a, int64_t z, struct lk_teacher_stats *st)
{
    int64_t k = x->p->top_k;
    for (int64_t e = a; e < z; e++) {
        const int32_t *tok, *lab;
        int64_t n;
        LK_TRY(lk_dataset_example(d, e, &tok, &lab, &n, NULL));
        int64_t E = tcache_trained(lab, n);
        if (w) {
            const int32_t *ids = (const int32_t *)buf;
            const float *logp = (const float *)(buf + E * k * 4), *tail = logp + E * k;
            LK_TRY(tcache_writer_add(w, tok, lab, n, ids, logp, tail));
            buf += E * (8 * k + 4);
        }
        count_example(lab, n, st);
    }
    return LK_OK;
}

/* Round by round: each rank's block of examples, gathered by rank 0 and written in order; after
 * each round the ranks agree on failures and on a stop request. */
static lk_status write_rounds(run *x, const lk_dataset *d, tcache_writer *w,
                              struct lk_teacher_stats *st)
{
    lk_dist *g = x->p->dist;
    int64_t N = lk_dist_size(g), r = lk_dist_rank(g), ne = lk_dataset_get_stats(d)->examples;
    int64_t G = round_size(x, d, (int)N), used;
    for (int64_t base = 0; base < ne; base += G * N) {
        int64_t a = base + r * G, z = a + G, end = base + G * N < ne ? base + G * N : ne;
        lk_status s =
            round_entries(x, d, a < ne ? a : ne, z < ne ? z : ne, &st->forward_tokens, &used);
        LK_TRY(lk_dist_agree(g, s));
        LK_TRY(dist_gather(g, x->pack, used, (void **)&x->gath, &x->gath_cap, x->sizes));
        s = round_write(x, d, w, x->gath, base, end, st);
        LK_TRY(lk_dist_agree(g, s));
        int64_t stop = x->p->progress && x->p->progress(x->p->user, end, ne);
        LK_TRY(lk_dist_max(g, &stop));
        if (stop)
            return status_fail(LK_ERR_INTERRUPTED,
                               "teacher: interrupted after %lld of %lld examples (nothing "
                               "written)",
                               (long long)end, (long long)ne);
    }
    return dist_sum_agree(g, LK_OK, &st->forward_tokens, 1, NULL, 0);
}

/* The examples through the teacher, then the file: one process, or the ranks of a group (which
 * first compare what they run, and agree on the outcome of rank 0's writing). */
static lk_status write_cache(run *x, const lk_dataset *d, tcache_writer **w,
                             struct lk_teacher_stats *st)
{
    lk_dist *g = x->p->dist;
    lk_status s = dist_check_teacher(g, x->m, d, x->p);
    if (s == LK_OK)
        s = dist_active(g) ? write_rounds(x, d, *w, st) : write_all(x, d, *w, st);
    if (s != LK_OK)
        return s; /* the ranks agreed on it already */
    if (*w) {
        s = tcache_writer_finish(*w, &st->bytes);
        *w = NULL;
    }
    LK_TRY(lk_dist_agree(g, s));
    return dist_bcast(g, &st->bytes, sizeof st->bytes);
}

lk_status lk_teacher_cache_write(const lk_model *m, const lk_dataset *d, const char *path,
                                 const struct lk_teacher_params *p, struct lk_teacher_stats *st)
{
    struct lk_teacher_params def = lk_teacher_params_default();
    struct lk_teacher_stats local;
    if (!m || !d || !path)
        return status_fail(LK_ERR_ARG, "lk_teacher_cache_write: NULL argument");
    p = p ? p : &def;
    st = st ? st : &local;
    memset(st, 0, sizeof *st);
    run x = {.m = m, .p = p, .Vm = lk_model_get_config(m)->vocab_size};
    x.V = p->vocab > 0 ? p->vocab : x.Vm;
    tcache_writer *w = NULL;
    lk_status s = lk_teacher_params_check(p, lk_model_get_config(m));
    if (s == LK_OK)
        s = setup(&x, d, path, &w);
    s = lk_dist_agree(p->dist, s);
    if (s == LK_OK)
        s = write_cache(&x, d, &w, st);
    tcache_writer_abort(w);
    lk_session_free(x.s);
    free(x.logits);
    free(x.rows);
    free(x.sizes);
    free(x.pack);
    free(x.gath);
    free(x.ids);
    free(x.logp);
    free(x.tail);
    return s;
}
