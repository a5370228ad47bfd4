/* linalg.c — see linalg.h. Workspace sizes come from LAPACK's own query (lwork = -1). */
#include "core/linalg.h"

#include <stdlib.h>

#include "core/status.h"

void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
             const int *lwork, int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a, const int *lda, const double *tau,
             double *work, const int *lwork, int *info);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
             int *iwork, int *info, size_t jobz_len);

lk_status linalg_qr(double *X, int m, int n, double *R)
{
    int k = m < n ? m : n, info = 0, lwork = -1;
    double wq, *tau = malloc((size_t)(k ? k : 1) * sizeof *tau);
    if (!tau)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    dgeqrf_(&m, &n, X, &m, tau, &wq, &lwork, &info);
    lwork = (int)wq + 1;
    double *work = malloc((size_t)lwork * sizeof *work);
    if (!work) {
        free(tau);
        return status_fail(LK_ERR_NOMEM, "out of memory");
    }
    dgeqrf_(&m, &n, X, &m, tau, work, &lwork, &info);
    for (int j = 0; R && j < n; j++)
        for (int i = 0; i < k; i++)
            R[i + j * k] = i <= j ? X[i + j * m] : 0.0;
    if (info == 0)
        dorgqr_(&m, &k, &k, X, &m, tau, work, &lwork, &info);
    free(work);
    free(tau);
    if (info != 0)
        return status_fail(LK_ERR_NUMERIC, "QR failed (LAPACK info %d)", info);
    return LK_OK;
}

lk_status linalg_svd(double *C, int m, int n, double *s, double *U, double *VT)
{
    int k = m < n ? m : n, info = 0, lwork = -1, ldvt = k > 0 ? k : 1;
    if (k == 0)
        return LK_OK;
    char jobz = U ? 'S' : 'N';
    double wq, *vt = VT ? VT : malloc((size_t)k * (size_t)n * sizeof *vt);
    int *iwork = malloc((size_t)(8 * k) * sizeof *iwork);
    double *u = U ? U : vt; /* not referenced with jobz 'N' */
    lk_status st = vt && iwork ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    double *work = NULL;
    if (st == LK_OK) {
        dgesdd_(&jobz, &m, &n, C, &m, s, u, &m, vt, &ldvt, &wq, &lwork, iwork, &info, 1);
        lwork = (int)wq + 1;
        work = malloc((size_t)lwork * sizeof *work);
        st = work ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    }
    if (st == LK_OK)
        dgesdd_(&jobz, &m, &n, C, &m, s, u, &m, vt, &ldvt, work, &lwork, iwork, &info, 1);
    if (st == LK_OK && info != 0)
        st = status_fail(LK_ERR_NUMERIC, "SVD did not converge (LAPACK info %d)", info);
    free(work);
    if (!VT)
        free(vt);
    free(iwork);
    return st;
}
