/* dist.c — the data-parallel group (dist.h) over its transport: rank and size, the fixed-order
 * sums, agreement on failures and stops, broadcast and gather. Nothing here knows MPI; the
 * transport's ops do (dist_mpi.c). Bottom of the train/ family's data-parallel files: dist_check.c,
 * train.c, train_ckpt.c and teacher.c call into it.
 *
 * Why the gradient sum is not a plain MPI_Allreduce: MPI leaves the order of a reduction to the
 * algorithm the library picks (by message size, rank count and hosts), and floating-point
 * addition is not associative, so the bytes of a run could change with the network. Here every
 * element is summed by one rank in one fixed tree over the ranks (sum_tree, the tree the trainer
 * sums a rank's rows in, so that the rank count does not change the bits either when each rank
 * has a power of two rows); the alltoallv and allgatherv around that sum only move bytes. It sends
 * what a ring allreduce sends: 2·(N − 1)/N of the gradients per rank. */
#include "train/dist.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"

lk_status dist_create(int rank, int size, const dist_ops *ops, void *comm, const char *backend,
                      lk_dist **out)
{
    *out = NULL;
    if (size < 1 || rank < 0 || rank >= size || (size > 1 && !ops))
        return status_fail(LK_ERR_ARG, "data-parallel group: rank %d of %d is not valid", rank,
                           size);
    lk_dist *d = calloc(1, sizeof *d);
    if (!d)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    d->rank = rank;
    d->size = size;
    d->ops = ops;
    d->comm = comm;
    snprintf(d->backend, sizeof d->backend, "%s", backend ? backend : "none");
    d->cnt = calloc((size_t)size * 4, sizeof *d->cnt);
    d->small = calloc((size_t)size * DIST_SMALL, sizeof(int64_t));
    if (!d->cnt || !d->small) {
        free(d->cnt);
        free(d->small);
        free(d);
        return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    d->dsp = d->cnt + size;
    d->rcnt = d->dsp + size;
    d->rdsp = d->rcnt + size;
    *out = d;
    return LK_OK;
}

void lk_dist_close(lk_dist *d)
{
    if (!d)
        return;
    if (d->ops)
        d->ops->close(d->comm, d->broken);
    free(d->cnt);
    free(d->small);
    free(d);
}

int lk_dist_rank(const lk_dist *d)
{
    return d ? d->rank : 0;
}

int lk_dist_size(const lk_dist *d)
{
    return d ? d->size : 1;
}

const char *lk_dist_backend(const lk_dist *d)
{
    return d ? d->backend : "none";
}

int dist_active(const lk_dist *d)
{
    return d && d->size > 1;
}

/* A transport failure: the ranks can no longer agree on anything (lk_dist_close aborts). */
static lk_status op_result(lk_dist *d, lk_status s)
{
    if (s != LK_OK)
        d->broken = 1;
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- agreement and small sums ---- */

/* Rank first failed: its message to every rank; that rank keeps its own, the others get "rank R:
 * <message>" with its status. */
static lk_status share_failure(lk_dist *d, int first, lk_status mine, lk_status theirs)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", d->rank == first ? lk_last_error() : "");
    LK_TRY(op_result(d, d->ops->bcast(d->comm, msg, sizeof msg, first)));
    if (d->rank == first)
        return mine;
    msg[sizeof msg - 1] = 0;
    return status_fail(theirs, "rank %d: %s", first, msg);
}

lk_status dist_sum_agree(lk_dist *d, lk_status s, int64_t *iv, int ni, double *dv, int nd)
{
    if (!dist_active(d))
        return s;
    int n = 1 + ni + nd;
    int64_t send[DIST_SMALL], *all = d->small; /* [size, n]: status, integers, doubles */
    if (ni < 0 || nd < 0 || n > DIST_SMALL)
        return status_fail(LK_ERR_ARG, "data-parallel sum of %d values: expected at most %d",
                           ni + nd, DIST_SMALL - 1);
    send[0] = s;
    if (ni)
        memcpy(send + 1, iv, (size_t)ni * sizeof *iv);
    if (nd)
        memcpy(send + 1 + ni, dv, (size_t)nd * sizeof *dv);
    LK_TRY(op_result(d, d->ops->allgather(d->comm, send, (size_t)n * sizeof *send, all)));
    for (int q = 0; q < d->size; q++)
        if (all[q * n] != LK_OK)
            return share_failure(d, q, s, (lk_status)all[q * n]);
    for (int i = 0; i < ni; i++) { /* integers: exact */
        iv[i] = 0;
        for (int q = 0; q < d->size; q++)
            iv[i] += all[q * n + 1 + i];
    }
    for (int i = 0; i < nd; i++) { /* in rank order */
        double x, sum = 0;
        for (int q = 0; q < d->size; q++) {
            memcpy(&x, &all[q * n + 1 + ni + i], sizeof x);
            sum += x;
        }
        dv[i] = sum;
    }
    return LK_OK;
}

lk_status lk_dist_agree(lk_dist *d, lk_status s)
{
    return dist_sum_agree(d, s, NULL, 0, NULL, 0);
}

lk_status lk_dist_max(lk_dist *d, int64_t *v)
{
    if (!dist_active(d))
        return LK_OK;
    return op_result(d, d->ops->max_i64(d->comm, v, 1));
}

/* ---- the summation tree ---- */

int sum_tree_levels(int64_t L)
{
    int k = 0;
    for (int64_t v = L - 1; v > 0; v >>= 1)
        k++;
    return k;
}

/* x[n] := a[n] + x[n] */
static void add_into(float *x, const float *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = a[i] + x[i];
}

void sum_tree_push(sum_tree *t, float *x, int last, int keep)
{
    int l = 0;
    for (; t->occ >> l & 1u; l++) { /* x completes the block of level l: one block, a level up */
        add_into(x, t->lv[l], t->n);
        t->occ &= ~(1u << l);
    }
    if (last) { /* the pending blocks, all larger than x's, from the smallest up */
        for (int k = l + 1; k < SUM_TREE_MAX; k++)
            if (t->occ >> k & 1u)
                add_into(x, t->lv[k], t->n);
        t->occ = 0;
        return;
    }
    LK_ASSERT(l < SUM_TREE_MAX);
    if (!keep) {
        memcpy(t->own + (size_t)l * (size_t)t->n, x, (size_t)t->n * sizeof *x);
        x = t->own + (size_t)l * (size_t)t->n;
    }
    t->lv[l] = x;
    t->occ |= 1u << l;
}

/* ---- the gradient sum ---- */

/* Start of chunk c of n values over N ranks: the first n % N chunks hold one value more. */
static int64_t chunk_at(int64_t n, int c, int N)
{
    int64_t base = n / N, rem = n % N;
    return base * c + (c < rem ? c : rem);
}

int64_t dist_sum_work(const lk_dist *d, int64_t n)
{
    if (!dist_active(d))
        return 0;
    return (n / d->size + 1) * d->size;
}

/* The counts and displacements of the exchange: chunk q of x goes to rank q; every rank's copy of
 * this rank's chunk lands in work, rank by rank. */
static lk_status plan_chunks(lk_dist *d, int64_t n)
{
    int N = d->size, r = d->rank;
    int64_t mine = chunk_at(n, r + 1, N) - chunk_at(n, r, N);
    if (n / N + 1 > INT32_MAX / 2 || mine * N > INT32_MAX)
        return status_fail(LK_ERR_ARG,
                           "gradient sum: %lld values over %d ranks exceed MPI's int counts",
                           (long long)n, N);
    for (int q = 0; q < N; q++) {
        d->dsp[q] = (int)chunk_at(n, q, N);
        d->cnt[q] = (int)(chunk_at(n, q + 1, N) - d->dsp[q]);
        d->rcnt[q] = (int)mine;
        d->rdsp[q] = (int)(mine * q);
    }
    return LK_OK;
}

lk_status dist_sum_f32(lk_dist *d, float *x, int64_t n, float *work)
{
    if (!dist_active(d))
        return LK_OK;
    double t0 = now_s();
    LK_TRY(plan_chunks(d, n));
    int N = d->size, r = d->rank;
    int64_t len = d->cnt[r];
    float *mine = x + d->dsp[r]; /* [len] this rank's chunk, summed here */
    LK_TRY(op_result(d, d->ops->alltoallv(d->comm, x, d->cnt, d->dsp, work, d->rcnt, d->rdsp)));
    sum_tree tree = {.n = len}; /* the ranks' chunks in their own storage */
    for (int q = 0; q < N; q++)
        sum_tree_push(&tree, work + (int64_t)q * len, q == N - 1, 1);
    memcpy(mine, work + (int64_t)(N - 1) * len, (size_t)len * sizeof *mine);
    LK_TRY(op_result(d, d->ops->allgatherv(d->comm, x, d->cnt, d->dsp)));
    d->bytes_sent = 2 * (n - len) * (int64_t)sizeof(float);
    d->seconds = now_s() - t0;
    return LK_OK;
}

/* ---- moving bytes ---- */

lk_status dist_bcast(lk_dist *d, void *buf, size_t bytes)
{
    if (!dist_active(d))
        return LK_OK;
    return op_result(d, d->ops->bcast(d->comm, buf, bytes, 0));
}

/* Rank 0's receive buffer for total bytes. */
static lk_status gather_room(void **buf, int64_t *cap, int64_t total)
{
    if (total <= *cap)
        return LK_OK;
    void *p = realloc(*buf, (size_t)total);
    if (!p)
        return status_fail(LK_ERR_NOMEM, "out of memory (%lld bytes gathered from the ranks)",
                           (long long)total);
    *buf = p;
    *cap = total;
    return LK_OK;
}

lk_status dist_gather(lk_dist *d, const void *send, int64_t bytes, void **buf, int64_t *cap,
                      int64_t *sizes)
{
    LK_ASSERT(dist_active(d));
    LK_TRY(op_result(d, d->ops->allgather(d->comm, &bytes, sizeof bytes, sizes)));
    int64_t total = 0;
    for (int q = 0; q < d->size; q++) {
        d->rcnt[q] = (int)sizes[q];
        d->rdsp[q] = (int)total;
        total += sizes[q];
    }
    lk_status s = total <= INT32_MAX
                      ? LK_OK
                      : status_fail(LK_ERR_ARG, "gather: %lld bytes exceed MPI's int counts",
                                    (long long)total);
    if (s == LK_OK && d->rank == 0)
        s = gather_room(buf, cap, total);
    LK_TRY(lk_dist_agree(d, s)); /* rank 0 out of memory: every rank stops here */
    return op_result(d, d->ops->gatherv(d->comm, send, (int)bytes, d->rank == 0 ? *buf : NULL,
                                        d->rcnt, d->rdsp));
}
