/* dist.h — the data-parallel group of lorakit/dist.h inside the library. A group is a transport
 * of six collectives (dist_ops: MPI's in dist_mpi.c, an in-process one in tests/test_dist.c) and
 * what the trainer and the teacher cache build on it (dist.c): the fixed-order gradient sum, the
 * agreement on failures and stops, the state broadcast, the gather of teacher entries, and the
 * start-up comparison of what every rank runs (dist_check.c). Every function here is collective
 * (lorakit/dist.h) and a no-op on a group of one, so a single process runs the code it ran
 * before data parallelism existed. */
#ifndef LK_DIST_H
#define LK_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "lorakit/dist.h"
#include "lorakit/model.h"
#include "lorakit/teacher.h"
#include "lorakit/train.h"

/* The transport: each op is collective over the group's comm and returns LK_OK or LK_ERR_IO with
 * a message. Counts and displacements are in elements (floats, bytes), one per rank. */
typedef struct {
    /* recv[size · bytes]: every rank's send[bytes], in rank order */
    lk_status (*allgather)(void *comm, const void *send, size_t bytes, void *recv);
    /* send[sdsp[q] .. + scnt[q]) goes to rank q; rank q's part lands at recv[rdsp[q] ..] */
    lk_status (*alltoallv)(void *comm, const float *send, const int *scnt, const int *sdsp,
                           float *recv, const int *rcnt, const int *rdsp);
    /* buf[dsp[q] .. + cnt[q]) of every rank q from rank q (in place: this rank's part is in buf) */
    lk_status (*allgatherv)(void *comm, float *buf, const int *cnt, const int *dsp);
    /* buf[bytes] from rank root to every rank (any size: the op splits it) */
    lk_status (*bcast)(void *comm, void *buf, size_t bytes, int root);
    /* rank 0's recv[dsp[q] .. + cnt[q]) = rank q's send[cnt[q]] (recv, cnt, dsp: rank 0 only) */
    lk_status (*gatherv)(void *comm, const void *send, int bytes, void *recv, const int *cnt,
                         const int *dsp);
    /* v[n] = the largest of every rank's v[n] (exact, so the order does not matter) */
    lk_status (*max_i64)(void *comm, int64_t *v, int n);
    /* leave the group; broken: a collective failed, so end every rank (MPI_Abort) */
    void (*close)(void *comm, int broken);
} dist_ops;

#define DIST_SMALL 16 /* values of one small gather (dist_sum_agree) */

struct lk_dist {
    int rank, size;
    const dist_ops *ops; /* NULL for a group of one */
    void *comm;
    int broken;       /* a collective failed: the ranks can no longer agree */
    int *cnt, *dsp;   /* [size] each: a gradient sum's chunks (dist_sum_f32) */
    int *rcnt, *rdsp; /* [size] each */
    void *small;      /* [size · DIST_SMALL] int64 or double: small gathers (no allocation
                       * inside a step) */
    char backend[96];
    int64_t bytes_sent; /* payload this rank sent in the last dist_sum_f32 */
    double seconds;     /* time the last dist_sum_f32 took */
};

/* A group of size ranks over comm with ops (ops NULL: size must be 1). Freed by lk_dist_close,
 * which calls ops->close. */
lk_status dist_create(int rank, int size, const dist_ops *ops, void *comm, const char *backend,
                      lk_dist **out);

/* 1 when d has more than one rank (the data-parallel paths run), else 0. */
int dist_active(const lk_dist *d);

/* ---- the summation tree ---- */

/* One fixed order for summing a sequence of L vectors (a step's rows, then the ranks' sums): L
 * splits into power-of-two blocks, largest first (the binary digits of L); each block is summed
 * pairwise (a node is its left half + its right half); the blocks are then added from the
 * smallest up (B1 + (B2 + B3) for blocks B1 > B2 > B3). Fed one vector after another, it holds
 * at most sum_tree_levels(L) pending blocks. When every rank sums b rows, b a power of two, each
 * rank's sum is a node of the tree over all N·b rows, and the tree over the N ranks' sums is the
 * rest of it: N ranks × b rows give the bits of one rank × N·b rows. */
#define SUM_TREE_MAX 32
typedef struct {
    float *lv[SUM_TREE_MAX]; /* the pending block of each level (2^level vectors), or unused */
    float *own;              /* [levels, n] where blocks are kept when the caller reuses x */
    int64_t n;
    unsigned occ; /* bit l: lv[l] holds a pending block */
} sum_tree;

/* Pending blocks a tree over L vectors holds at most (0 for L <= 1): the bit length of L − 1. */
int sum_tree_levels(int64_t L);

/* Add the next vector x[n]. last: it is the sequence's last, and x then holds the total (the tree
 * starts over). Otherwise x's block waits: in x itself with keep (x stays valid and untouched
 * until the total), else copied into own (the caller may reuse x). */
void sum_tree_push(sum_tree *t, float *x, int last, int keep);

/* Floats of work memory dist_sum_f32 needs for n values. */
int64_t dist_sum_work(const lk_dist *d, int64_t n);

/* x[n] := Σ over ranks of x[n], each element summed in the sum_tree order over the ranks 0, 1, …,
 * N−1 (fp32), whatever the timing and whichever algorithms the MPI library picks: chunk c of
 * every rank goes to rank c (alltoallv), rank c sums its chunk, and every rank gathers the summed
 * chunks (allgatherv). work: dist_sum_work(d, n) floats. Records the bytes sent and the time
 * taken (d->bytes_sent, d->seconds). */
lk_status dist_sum_f32(lk_dist *d, float *x, int64_t n, float *work);

/* Collective agreement with small sums, in one gather: s on every rank when every rank's s is
 * LK_OK (then iv[ni] := Σ over ranks, exact; dv[nd] := Σ over ranks in rank order), else the
 * status of the lowest failing rank as lk_dist_agree gives it (iv, dv unchanged).
 * ni + nd < DIST_SMALL. */
lk_status dist_sum_agree(lk_dist *d, lk_status s, int64_t *iv, int ni, double *dv, int nd);

/* buf[bytes] := rank 0's. */
lk_status dist_bcast(lk_dist *d, void *buf, size_t bytes);

/* Every rank's send[bytes] to rank 0, back to back in rank order: rank 0's *buf (grown with
 * realloc, *cap its bytes) gets them, sizes[size] each rank's bytes (rank 0 only). */
lk_status dist_gather(lk_dist *d, const void *send, int64_t bytes, void **buf, int64_t *cap,
                      int64_t *sizes);

/* ---- dist_check.c: what the ranks compare before the first step ---- */

/* One compared item: its name (a flag, "model", "data", ...) and its value as text (a hash for
 * large things). */
#define DIST_ITEM_NAME  32
#define DIST_ITEM_VALUE 96
typedef struct {
    char name[DIST_ITEM_NAME];
    char value[DIST_ITEM_VALUE];
} dist_item;

/* Every rank's items[n] must equal rank 0's: LK_ERR_ARG on every rank naming the first item that
 * differs on some rank, with rank 0's value and that rank's. */
lk_status dist_check_same(lk_dist *d, const dist_item *items, int n);

/* The items of a training run: lorakit's version, the options that shape the run (each named by
 * its lora-train flag), the base (format and a hash of its weights as held in memory), the data
 * (a hash of the tokenised examples and how they are packed and shuffled) and the teacher (a hash
 * of its weights, or of the cache's checksums). Compared with dist_check_same. */
lk_status dist_check_train(lk_dist *d, const lk_model *m, const lk_dataset *data,
                           const struct lk_train_params *p);

/* The evaluation data of a training run ("--eval-data": its tokenised examples). */
lk_status dist_check_data(lk_dist *d, const lk_dataset *data, const char *name);

/* The items of a teacher cache run: version, options, teacher weights, data. */
lk_status dist_check_teacher(lk_dist *d, const lk_model *m, const lk_dataset *data,
                             const struct lk_teacher_params *p);

#endif /* LK_DIST_H */
