/* lorakit/dist.h — data-parallel training across processes and machines over MPI: a group of
 * processes (ranks) that run one training run (or one teacher cache) together. Every rank holds
 * the frozen base and the same adapter and computes its own rows of each step; the LoRA gradients
 * are summed across the ranks in a fixed order, so every rank takes the same optimiser step and a
 * run gives the same bytes each time it runs on the same number of ranks. The group goes to the
 * trainer (lk_train_params.dist) and to the teacher cache writer (lk_teacher_params.dist); a NULL
 * group, or a group of one, is a plain single-process run.
 *
 * lk_dist_open is defined in a library of its own, liblorakit_mpi (pkg-config lorakit-mpi; linked
 * with MPI when lorakit is built with it: cmake -DLK_MPI=AUTO|ON|OFF), so that programs which never
 * train across processes do not depend on an MPI runtime; the other functions are liblorakit's.
 *
 * Calls marked "collective" must be made by every rank of the group, in the same order. Each
 * returns the same status on every rank: a rank whose own part failed shares its failure first,
 * so no rank waits for one that gave up. Only the thread that opened the group may call them. */
#ifndef LORAKIT_DIST_H
#define LORAKIT_DIST_H

#include "lorakit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_dist lk_dist;

/* Join the group this process was started in. Started by an MPI launcher (Open MPI's mpirun:
 * OMPI_COMM_WORLD_SIZE in the environment; a PMIx launcher such as srun --mpi=pmix: PMIX_RANK;
 * MPICH's mpiexec or srun --mpi=pmi2: PMI_SIZE), MPI is initialised and the group is every
 * process of the job. Otherwise the group is this process alone and MPI is never initialised, so
 * a single-process run is exactly what it is without MPI. Fails with LK_ERR_UNSUPPORTED when an
 * MPI launcher started the process but lorakit was built without MPI, and when srun started
 * several tasks without an MPI interface (each would train alone). Caller closes with
 * lk_dist_close. */
lk_status lk_dist_open(lk_dist **out);

/* Leave the group (MPI_Finalize; after a failed collective, MPI_Abort, which ends every rank)
 * and free it. NULL is fine. */
void lk_dist_close(lk_dist *d);

/* This process's rank, 0 .. size − 1 (0 for NULL), and the number of ranks (1 for NULL). */
int lk_dist_rank(const lk_dist *d);
int lk_dist_size(const lk_dist *d);

/* The transport, for messages: "Open MPI v4.1.4" (the MPI library's own name), "none". */
const char *lk_dist_backend(const lk_dist *d);

/* Collective: s on every rank when every rank's s is LK_OK; otherwise the status of the lowest
 * failing rank, with its message on that rank and "rank R: <its message>" on the others. */
lk_status lk_dist_agree(lk_dist *d, lk_status s);

/* Collective: *v becomes the largest of every rank's *v (e.g. a stop request: 0 none, else the
 * signal number, so that every rank stops after the same step). */
lk_status lk_dist_max(lk_dist *d, int64_t *v);

#ifdef __cplusplus
}
#endif
#endif /* LORAKIT_DIST_H */
