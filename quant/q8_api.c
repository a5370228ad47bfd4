/* q8_api.c — the public (experimental) face of the int8 compute path (q8.h): work query, forward
 * GEMM with int8 products, and the transposed Q8_0 copy through which dX = dY·W runs as a forward
 * of the copy. Checks arguments and turns misuse into an lk_status, then calls the kernels. */
#define LK_EXPERIMENTAL 1

#include <stdlib.h>

#include "q8.h"
#include "q8_ilv.h"
#include "core/status.h"

/* The internal descriptor of w (data may be NULL for a work query: any non-NULL stand-in). */
static lk_status to_q8(const char *what, const struct lk_qweight *w, int allow_null_data,
                       q4_weight *qw)
{
    if (!w)
        return status_fail(LK_ERR_ARG, "%s: NULL weight", what);
    const void *data = w->data ? w->data : allow_null_data ? (const void *)w : NULL;
    LK_TRY(q4_weight_init(qw, (int)w->type, w->block, w->out, w->in, data));
    if (!q8_supports(qw->qtype))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: no int8 expander for %s weights (hint: --compute f32 takes every "
                           "type)",
                           what, lk_qtype_name(w->type));
    if (w->interleaved && !q8i_supports(qw->qtype))
        return status_fail(LK_ERR_ARG, "%s: %s weights have no interleaved layout", what,
                           lk_qtype_name(w->type));
    qw->ilv = w->interleaved != 0;
    return LK_OK;
}

/* k must read w's layout. */
static lk_status check_layout(const char *what, const q4_weight *w, const q8_kernels *k)
{
    if (w->ilv && !k->reads_ilv)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: int8 variant '%s' reads the row layout only, the weight is "
                           "interleaved (hint: lk_q8_interleave only for a variant that wants it, "
                           "lk_q8_interleave_wanted)",
                           what, k->name);
    return LK_OK;
}

/* The named int8 variant (ref, avx2, avx512vnni, neon) or, for NULL, the dispatched one. */
static lk_status pick(const char *variant, const q8_kernels **k)
{
    *k = variant ? q8_kernels_named(variant) : q8_kernels_get();
    if (!*k)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "int8 kernel variant '%s' not compiled in or not supported by this CPU "
                           "(features: %s)",
                           variant, lk_cpu_features());
    return LK_OK;
}

const char *lk_q8_kernel_variant(void)
{
    return q8_kernels_get()->name;
}

lk_status lk_q8gemm_forward_work(const struct lk_qweight *w, int64_t T, int n_threads,
                                 const char *variant, size_t *bytes)
{
    q4_weight qw;
    const q8_kernels *k;
    LK_TRY(to_q8("q8gemm forward work", w, 1, &qw));
    LK_TRY(pick(variant, &k));
    LK_TRY(check_layout("q8gemm forward work", &qw, k));
    if (T <= 0)
        return status_fail(LK_ERR_ARG, "q8gemm forward work: T = %lld, expected > 0", (long long)T);
    *bytes = k->fwd_work(&qw, T, n_threads);
    return LK_OK;
}

lk_status lk_q8gemm_forward(const struct lk_qweight *w, const float *bias, const float *X,
                            int64_t T, float *Y, int n_threads, const char *variant, void *work,
                            size_t work_size)
{
    q4_weight qw;
    const q8_kernels *k;
    LK_TRY(to_q8("q8gemm forward", w, 0, &qw));
    LK_TRY(pick(variant, &k));
    LK_TRY(check_layout("q8gemm forward", &qw, k));
    if (T <= 0 || !X || !Y)
        return status_fail(LK_ERR_ARG, "q8gemm forward: T = %lld, X or Y NULL", (long long)T);
    const size_t need = k->fwd_work(&qw, T, n_threads);
    if (work_size < need || (need > 0 && !work))
        return status_fail(LK_ERR_ARG,
                           "q8gemm forward: work of %zu bytes%s, expected %zu (hint: size it with "
                           "lk_q8gemm_forward_work for the same weight, T, threads and variant)",
                           work_size, work ? "" : " at NULL", need);
    k->fwd(&qw, bias, X, T, Y, n_threads, work, work_size);
    return LK_OK;
}

size_t lk_q8_transpose_bytes(const struct lk_qweight *w)
{
    q4_weight qw;
    if (!w || q4_weight_init(&qw, (int)w->type, w->block, w->out, w->in, w) != LK_OK)
        return 0;
    return q8_transpose_bytes(&qw);
}

lk_status lk_q8_transpose(const struct lk_qweight *w, void *dst, struct lk_qweight *wt,
                          int n_threads)
{
    q4_weight qw, qt;
    if (!w || !w->data || !dst || !wt)
        return status_fail(LK_ERR_ARG, "int8 transposed copy: NULL weight, data, dst or wt");
    LK_TRY(q4_weight_init(&qw, (int)w->type, w->block, w->out, w->in, w->data));
    if (w->interleaved && !q8i_supports(qw.qtype))
        return status_fail(LK_ERR_ARG,
                           "int8 transposed copy: %s weights have no interleaved "
                           "layout",
                           lk_qtype_name(w->type));
    qw.ilv = w->interleaved != 0;
    LK_TRY(q8_transpose(&qw, dst, &qt, n_threads));
    *wt = (struct lk_qweight){LK_QTYPE_Q8_0, Q4_QK, qt.out, qt.in, dst, 0};
    return LK_OK;
}

lk_status lk_q8_interleave(struct lk_qweight *w, void *data)
{
    q4_weight qw;
    if (!w)
        return status_fail(LK_ERR_ARG, "int8 interleave: NULL weight");
    if (!q8i_supports((int)w->type))
        return status_fail(LK_ERR_UNSUPPORTED,
                           "int8 interleave: %s weights have no interleaved layout, expected "
                           "q4_0, iq4_nl, q8_0 or q4_1",
                           lk_qtype_name(w->type));
    if (!data || data != w->data)
        return status_fail(LK_ERR_ARG, "int8 interleave: data NULL or not w->data");
    if (w->interleaved)
        return status_fail(LK_ERR_ARG, "int8 interleave: the weight is interleaved already");
    LK_TRY(q4_weight_init(&qw, (int)w->type, w->block, w->out, w->in, data));
    void *scratch = malloc(q8i_scratch_bytes(&qw));
    if (!scratch)
        return status_fail(LK_ERR_NOMEM, "int8 interleave: cannot allocate %zu bytes of scratch",
                           q8i_scratch_bytes(&qw));
    q8i_convert(&qw, data, scratch);
    free(scratch);
    w->interleaved = 1;
    return LK_OK;
}

int lk_q8_interleave_wanted(void)
{
    return q8_kernels_get()->wants_ilv;
}
