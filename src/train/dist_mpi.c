/* dist_mpi.c — lk_dist_open and the MPI transport of the data-parallel group (dist.h's dist_ops
 * over MPI_Allgather, MPI_Alltoallv, MPI_Allgatherv, MPI_Bcast, MPI_Gatherv and MPI_Allreduce).
 * Built as a library of its own (liblorakit_mpi, see CMakeLists.txt), linked only by the tools
 * that train or teach across processes, so that nothing else depends on an MPI runtime; without
 * MPI (LK_HAVE_MPI undefined) it still decides whether the process was started by a launcher, and
 * then refuses to run as N independent copies.
 *
 * MPI is initialised only when a launcher started the process, which it says in the environment:
 * Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, a PMIx launcher (srun --mpi=pmix, prterun)
 * PMIX_RANK, MPICH's mpiexec (Hydra) and srun --mpi=pmi2 PMI_SIZE. A process started any other
 * way never calls MPI_Init: it would work (a singleton) but start MPI's runtime for nothing, and
 * some MPI libraries cannot start one outside a launcher at all. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "train/dist.h"

#ifdef LK_HAVE_MPI
#include <mpi.h>
#endif

/* The launcher's variable found in the environment ("NAME=value" into why), or 0. */
static int launched(char *why, size_t n)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v) {
            snprintf(why, n, "%s=%s", vars[i], v);
            return 1;
        }
    }
    return 0;
}

/* srun starting several tasks without an MPI interface: each would think it trains alone. */
static lk_status check_srun(void)
{
    const char *v = getenv("SLURM_STEP_NUM_TASKS");
    if (!v || atol(v) <= 1)
        return LK_OK;
    return status_fail(LK_ERR_UNSUPPORTED,
                       "srun started %s tasks without an MPI interface, so each would train "
                       "alone (start them with srun --mpi=pmix, or mpirun)",
                       v);
}

#ifdef LK_HAVE_MPI

/* ---- the transport ---- */

static MPI_Comm comm_of(void *comm)
{
    return *(MPI_Comm *)comm;
}

static lk_status mpi_result(int rc, const char *call)
{
    if (rc == MPI_SUCCESS)
        return LK_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return status_fail(LK_ERR_IO,
                       "%s failed: %.*s (hint: a rank of the job was lost, or the network "
                       "between its hosts failed)",
                       call, len, msg);
}

static lk_status op_allgather(void *comm, const void *send, size_t bytes, void *recv)
{
    int b = (int)bytes;
    return mpi_result(MPI_Allgather(send, b, MPI_BYTE, recv, b, MPI_BYTE, comm_of(comm)),
                      "MPI_Allgather");
}

static lk_status op_alltoallv(void *comm, const float *send, const int *scnt, const int *sdsp,
                              float *recv, const int *rcnt, const int *rdsp)
{
    return mpi_result(
        MPI_Alltoallv(send, scnt, sdsp, MPI_FLOAT, recv, rcnt, rdsp, MPI_FLOAT, comm_of(comm)),
        "MPI_Alltoallv");
}

static lk_status op_allgatherv(void *comm, float *buf, const int *cnt, const int *dsp)
{
    return mpi_result(
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, cnt, dsp, MPI_FLOAT, comm_of(comm)),
        "MPI_Allgatherv");
}

static lk_status op_bcast(void *comm, void *buf, size_t bytes, int root)
{
    const size_t piece = (size_t)1 << 30; /* MPI counts are ints */
    for (size_t off = 0; off < bytes; off += piece) {
        int n = (int)(bytes - off < piece ? bytes - off : piece);
        LK_TRY(mpi_result(MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, comm_of(comm)),
                          "MPI_Bcast"));
    }
    return LK_OK;
}

static lk_status op_gatherv(void *comm, const void *send, int bytes, void *recv, const int *cnt,
                            const int *dsp)
{
    return mpi_result(
        MPI_Gatherv(send, bytes, MPI_BYTE, recv, cnt, dsp, MPI_BYTE, 0, comm_of(comm)),
        "MPI_Gatherv");
}

static lk_status op_max_i64(void *comm, int64_t *v, int n)
{
    return mpi_result(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_MAX, comm_of(comm)),
                      "MPI_Allreduce");
}

static int g_owns_mpi; /* lk_dist_open initialised MPI, so lk_dist_close finalises it */

static void op_close(void *comm, int broken)
{
    if (broken) /* the other ranks may wait in a collective forever: end the job */
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Comm c = comm_of(comm);
    MPI_Comm_free(&c);
    free(comm);
    if (g_owns_mpi)
        MPI_Finalize();
    g_owns_mpi = 0;
}

static const dist_ops k_mpi_ops = {op_allgather, op_alltoallv, op_allgatherv, op_bcast,
                                   op_gatherv,   op_max_i64,   op_close};

/* "Open MPI v4.1.4" from MPI_Get_library_version's first line, up to its first comma. */
static void library_name(char *out, size_t n)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    size_t cut = strcspn(v, ",\n");
    snprintf(out, n, "%.*s", (int)(cut < n - 1 ? cut : n - 1), v);
}

/* MPI_COMM_WORLD, duplicated (the group's own messages never meet a caller's) with errors
 * returned instead of fatal, so that a failed collective becomes a message and an abort. */
static lk_status open_mpi(lk_dist **out)
{
    int inited = 0, provided, rank, size;
    MPI_Initialized(&inited);
    if (!inited) { /* only the main thread calls MPI; OpenMP threads compute in between */
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return status_fail(LK_ERR_IO, "MPI_Init_thread failed");
        g_owns_mpi = 1;
    }
    MPI_Comm *c = malloc(sizeof *c);
    if (!c)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    MPI_Comm_dup(MPI_COMM_WORLD, c);
    MPI_Comm_set_errhandler(*c, MPI_ERRORS_RETURN);
    MPI_Comm_rank(*c, &rank);
    MPI_Comm_size(*c, &size);
    char name[96];
    library_name(name, sizeof name);
    lk_status s = dist_create(rank, size, &k_mpi_ops, c, name, out);
    if (s != LK_OK)
        op_close(c, 0);
    return s;
}

#endif /* LK_HAVE_MPI */

lk_status lk_dist_open(lk_dist **out)
{
    char why[160];
    *out = NULL;
    if (!launched(why, sizeof why)) {
        LK_TRY(check_srun());
        return dist_create(0, 1, NULL, NULL, "none", out);
    }
#ifdef LK_HAVE_MPI
    return open_mpi(out);
#else
    return status_fail(LK_ERR_UNSUPPORTED,
                       "started by an MPI launcher (%s), but this lorakit was built without MPI, "
                       "so every process would train alone (install libopenmpi-dev and rebuild; "
                       "cmake -DLK_MPI=ON makes MPI required)",
                       why);
#endif
}
