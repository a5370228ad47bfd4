/* q8_gemv_avx2.c — the AVX2 int8 matrix-vector kernel (q8_gemv.h, q8_gemv_x86.h with GV_VNNI 0:
 * vpmaddubsw + vpmaddwd), bit for bit q8_gemm_fwd_ref; the avx2 table takes it for T <= Q8_GEMV_T
 * (q8_dispatch.c). */
#define GV_VNNI 0
#include "q8_gemv_x86.h"

size_t q8_gemv_work_avx2(const q4_weight *w, int64_t T, int n_threads)
{
    return q8v_work(w, T, n_threads);
}

void q8_gemv_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    q8v_job j = gv_job(w, bias, X, T, Y);
    q8v_run(&j, n_threads, work, work_size);
}
