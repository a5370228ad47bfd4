/* linalg.h — the dense double-precision linear algebra lorakit needs (thin QR, SVD), through the
 * LAPACK routines OpenBLAS exports (dgeqrf, dorgqr, dgesdd; Fortran calling convention). All
 * matrices are column-major with the leading dimension equal to the row count. */
#ifndef LK_LINALG_H
#define LK_LINALG_H

#include "lorakit/core.h"

/* Thin QR of X (m × n): Q (m × k, orthonormal columns) in X's storage, k = min(m, n), and, when R
 * is non-NULL, R (k × n, upper trapezoidal) in R. */
lk_status linalg_qr(double *X, int m, int n, double *R);

/* Thin SVD of C (m × n, destroyed): s [min(m, n)] descending; with U non-NULL also the left
 * singular vectors U (m × k) and, with VT non-NULL, the right ones Vᵀ (k × n), k = min(m, n). VT
 * needs U. */
lk_status linalg_svd(double *C, int m, int n, double *s, double *U, double *VT);

#endif /* LK_LINALG_H */
