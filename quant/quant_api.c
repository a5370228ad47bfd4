/* quant_api.c — the public lk_ face of quant/: row sizes, row quantise/dequantise, and the
 * experimental matrix API over the kernels (the type names live in qtype.c). NF4 rows here use
 * bitsandbytes' default blocksize 64; the layouts are described in q4.h. */
#define LK_EXPERIMENTAL 1

#include "q4.h"
#include "core/status.h"
#include "core/tensor.h"

size_t lk_quant_row_bytes(lk_qtype t, int64_t n)
{
    return q4_row_bytes((int)t, Q4_NF4_BLOCK, n);
}

double lk_qtype_bits_per_weight(lk_qtype t, int64_t n)
{
    size_t b = lk_quant_row_bytes(t, n);
    return b ? 8.0 * (double)b / (double)n : 0.0;
}

static lk_status check_row(lk_qtype t, int64_t n, const void *a, const void *b)
{
    if (!q4_valid((int)t, Q4_NF4_BLOCK) || (int)t >= LK_QTYPE_COUNT)
        return status_fail(LK_ERR_ARG, "quantise row: type %d out of range", (int)t);
    if (n <= 0 || !a || !b)
        return status_fail(LK_ERR_ARG, "quantise row: n = %lld or a NULL buffer", (long long)n);
    return LK_OK;
}

/* The quantisers need finite input (a NaN or Inf would make a NaN scale or an undefined
 * float-to-int conversion). */
static lk_status check_finite(const float *x, int64_t n)
{
    int64_t bad = f32_first_nonfinite(x, n);
    if (bad >= 0)
        return status_fail(LK_ERR_NUMERIC, "quantise: element %lld is %g (must be finite)",
                           (long long)bad, x[bad]);
    return LK_OK;
}

lk_status lk_quantize_row(lk_qtype t, const float *x, int64_t n, void *dst)
{
    LK_TRY(check_row(t, n, x, dst));
    LK_TRY(check_finite(x, n));
    q4_quantize_row((int)t, Q4_NF4_BLOCK, x, n, dst);
    return LK_OK;
}

lk_status lk_dequantize_row(lk_qtype t, const void *src, int64_t n, float *y)
{
    LK_TRY(check_row(t, n, src, y));
    q4_dequantize_row((int)t, Q4_NF4_BLOCK, src, n, y);
    return LK_OK;
}

/* ---- experimental matrix API ---- */

size_t lk_qweight_row_bytes(const struct lk_qweight *w)
{
    return q4_row_bytes((int)w->type, w->block, w->in);
}

/* Check w and build the internal descriptor (data may be NULL: filled by the caller). */
static lk_status to_internal(const struct lk_qweight *w, const void *data, q4_weight *qw)
{
    if (!w)
        return status_fail(LK_ERR_ARG, "quantised weight: NULL");
    if (w->interleaved)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "quantised weight: interleaved for the int8 path (lk_q8_interleave), "
                           "expected the row layout (hint: the f32 kernels read rows)");
    return q4_weight_init(qw, (int)w->type, w->block, w->out, w->in, data);
}

lk_status lk_quantize_matrix(const struct lk_qweight *w, const float *src, void *dst, int n_threads,
                             double *rmse, double *max_abs)
{
    q4_weight qw;
    LK_TRY(to_internal(w, dst, &qw));
    if (!src)
        return status_fail(LK_ERR_ARG, "quantise matrix: NULL source");
    LK_TRY(check_finite(src, qw.out * qw.in));
    q4_quantize_matrix(qw.qtype, qw.block, src, qw.out, qw.in, dst, n_threads, rmse, max_abs);
    return LK_OK;
}

/* The named variant (it must have kernels for qtype), or the dispatched one for qtype. */
static lk_status pick(const char *variant, int qtype, const q4_kernels **k)
{
    *k = variant ? q4_kernels_named(variant) : q4_kernels_for(q4_kernels_get(), qtype);
    if (!*k)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "kernel variant '%s' not compiled in or not supported by this CPU "
                           "(features: %s)",
                           variant, lk_cpu_features());
    if (!q4_kernels_has(*k, qtype))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "kernel variant '%s' has no kernels for %s weights (hint: the "
                           "dispatched variant, variant NULL, falls back to '%s')",
                           variant, lk_qtype_name((lk_qtype)qtype),
                           q4_kernels_for(*k, qtype)->name);
    return LK_OK;
}

/* Check w and the variant for a kernel call (or its work query) of T rows. */
static lk_status prepare(const char *what, const struct lk_qweight *w, int64_t T,
                         const char *variant, q4_weight *qw, const q4_kernels **k)
{
    LK_TRY(to_internal(w, w ? w->data : NULL, qw));
    LK_TRY(pick(variant, qw->qtype, k));
    if (T <= 0)
        return status_fail(LK_ERR_ARG, "%s: T = %lld, expected > 0", what, (long long)T);
    return LK_OK;
}

/* The caller's work against what the call needs (need bytes). */
static lk_status check_work(const char *what, const void *work, size_t work_size, size_t need)
{
    if (work_size < need || (need > 0 && !work))
        return status_fail(LK_ERR_ARG,
                           "%s: work of %zu bytes%s, expected %zu (hint: size it with "
                           "lk_qgemm_*_work for the same weight, T, threads and variant)",
                           what, work_size, work ? "" : " at NULL", need);
    return LK_OK;
}

/* Bytes of work the forward (backward 0) or the backward (1) needs: the two queries below. The
 * work depends on the shape alone, so w->data may be NULL (it is never read here). */
static lk_status work_query(const char *what, const struct lk_qweight *w, int64_t T, int n_threads,
                            const char *variant, int backward, size_t *bytes)
{
    q4_weight qw;
    const q4_kernels *k;
    struct lk_qweight shape = w ? *w : (struct lk_qweight){0};
    if (w && !shape.data)
        shape.data = w; /* any non-NULL pointer for the descriptor's check */
    LK_TRY(prepare(what, w ? &shape : NULL, T, variant, &qw, &k));
    *bytes =
        backward ? q4_gemm_bwd_work(k, &qw, T, n_threads) : q4_gemm_fwd_work(k, &qw, T, n_threads);
    return LK_OK;
}

lk_status lk_qgemm_forward_work(const struct lk_qweight *w, int64_t T, int n_threads,
                                const char *variant, size_t *bytes)
{
    return work_query("qgemm forward work", w, T, n_threads, variant, 0, bytes);
}

lk_status lk_qgemm_backward_work(const struct lk_qweight *w, int64_t T, int n_threads,
                                 const char *variant, size_t *bytes)
{
    return work_query("qgemm backward work", w, T, n_threads, variant, 1, bytes);
}

lk_status lk_qgemm_forward(const struct lk_qweight *w, const float *bias, const float *X, int64_t T,
                           float *Y, int n_threads, const char *variant, void *work,
                           size_t work_size)
{
    q4_weight qw;
    const q4_kernels *k;
    LK_TRY(prepare("qgemm forward", w, T, variant, &qw, &k));
    if (!X || !Y)
        return status_fail(LK_ERR_ARG, "qgemm forward: NULL X or Y");
    LK_TRY(check_work("qgemm forward", work, work_size, q4_gemm_fwd_work(k, &qw, T, n_threads)));
    k->fwd(&qw, bias, X, T, Y, n_threads, work, work_size);
    return LK_OK;
}

lk_status lk_qgemm_backward(const struct lk_qweight *w, const float *dY, int64_t T, float *dX,
                            int n_threads, const char *variant, void *work, size_t work_size)
{
    q4_weight qw;
    const q4_kernels *k;
    LK_TRY(prepare("qgemm backward", w, T, variant, &qw, &k));
    if (!dY || !dX)
        return status_fail(LK_ERR_ARG, "qgemm backward: NULL dY or dX");
    LK_TRY(check_work("qgemm backward", work, work_size, q4_gemm_bwd_work(k, &qw, T, n_threads)));
    k->bwd(&qw, dY, T, dX, n_threads, work, work_size);
    return LK_OK;
}
