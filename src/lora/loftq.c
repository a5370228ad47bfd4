/* loftq.c — LoftQ initialisation (Li et al. 2023, "LoftQ: LoRA-Fine-Tuning-Aware Quantization
 * for Large Language Models", Algorithm 1 with T = 1; PEFT's loftq_init with num_iter=1 and its
 * replace_lora_weights_loftq): for each targeted layer the residual R = W − deq(Q(W)) of the
 * base's own quantisation, its rank-r truncated SVD U_r·S_r·V_rᵀ, and B = U_r·√(S_r/s),
 * A = √(S_r/s)·V_rᵀ, so that the LoRA update s·B·A is that SVD. PEFT splits √S the same way but
 * leaves s out (right only when alpha = r); dividing by s makes the start exact for any alpha and
 * for rsLoRA.
 *
 * The SVD is randomized subspace iteration (Halko, Martinsson & Tropp 2011, Algorithms 4.4 and
 * 5.1): k = r + p Gaussian probes, q power passes, each product re-orthonormalised by QR, then
 * the exact SVD of the small projection QᵀR [k, in] in double. Cost O(out·in·k·(2q + 2)). The
 * sketches are stored transposed, Yᵀ [k, out] row-major = Y (out × k) column-major, which is what
 * LAPACK's QR takes, and every large GEMM then splits over the long dimension. */
#include "lora/loftq.h"

#include <math.h>
#include <string.h>

#include "core/blas.h"
#include "core/linalg.h"
#include "core/pool.h"
#include "core/rng.h"
#include "core/status.h"
#include "q8_ilv.h"

/* Rows of xt [k, n] (row-major) made orthonormal: n × k column-major, thin QR in double. */
static lk_status orthonormalise(float *xt, int64_t k, int64_t n, double *tmp)
{
    for (int64_t i = 0; i < k * n; i++)
        tmp[i] = xt[i];
    LK_TRY(linalg_qr(tmp, (int)n, (int)k, NULL));
    for (int64_t i = 0; i < k * n; i++)
        xt[i] = (float)tmp[i];
    return LK_OK;
}

/* yt [k, out]: orthonormal rows spanning (nearly) R's dominant left singular subspace; zt [k, in]
 * is scratch. Y = R·Ω for Gaussian Ω, then (R·Rᵀ)^q applied one product at a time with a QR
 * after each, so the small singular directions do not drown in rounding (Halko et al., Alg. 4.4).
 */
static lk_status range_basis(const float *R, int64_t out, int64_t in, int64_t k, int power,
                             rng_state *g, float *yt, float *zt, double *tmp, int nt)
{
    for (int64_t i = 0; i < k * in; i++)
        zt[i] = (float)rng_normal(g);                                   /* Ωᵀ [k, in] */
    gemm_par(0, 1, k, out, in, 1.0f, zt, in, R, in, 0.0f, yt, out, nt); /* Yᵀ = Ωᵀ·Rᵀ */
    LK_TRY(orthonormalise(yt, k, out, tmp));
    for (int it = 0; it < power; it++) {
        gemm_par(0, 0, k, in, out, 1.0f, yt, out, R, in, 0.0f, zt, in, nt); /* Zᵀ = Qᵀ·R */
        LK_TRY(orthonormalise(zt, k, in, tmp));
        gemm_par(0, 1, k, out, in, 1.0f, zt, in, R, in, 0.0f, yt, out, nt); /* Yᵀ = Zᵀ·Rᵀ */
        LK_TRY(orthonormalise(yt, k, out, tmp));
    }
    return LK_OK;
}

/* From the basis Q (qt [k, out]) and the projection P = QᵀR (pt [k, in]): P = Ub·S·Vᵀ in double,
 * then R's singular triplets are (Q·Ub, S, V). Column-major, P is Pᵀ (in × k) = V·S·Ubᵀ, so
 * LAPACK's U (in × k) holds V's columns, i.e. the rows of Vᵀ, and its Vᵀ (k × k) holds Ubᵀ. */
static lk_status split_factors(const float *qt, const float *pt, int64_t out, int64_t in, int64_t k,
                               int64_t r, float scale, double *tmp, float *A, float *B)
{
    double *sv = malloc((size_t)k * sizeof *sv), *ubt = malloc((size_t)(k * k) * sizeof *ubt);
    double *v = tmp + k * in; /* [k, in]: row j = v_j */
    lk_status s = sv && ubt ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory (LoftQ SVD)");
    for (int64_t i = 0; s == LK_OK && i < k * in; i++)
        tmp[i] = pt[i];
    if (s == LK_OK)
        s = linalg_svd(tmp, (int)in, (int)k, sv, v, ubt);
    int64_t rr = r < k ? r : k;
    memset(A, 0, (size_t)(r * in) * sizeof *A);
    memset(B, 0, (size_t)(r * out) * sizeof *B);
    for (int64_t j = 0; s == LK_OK && j < rr; j++) {
        double f = sqrt(sv[j] / scale); /* √(σ_j/s) on each side */
        for (int64_t c = 0; c < in; c++)
            A[j * in + c] = (float)(f * v[j * in + c]);
        for (int64_t o = 0; o < out; o++) { /* u_j = Q·ub_j, ub_j[i] = Ubᵀ(j, i) */
            double acc = 0;
            for (int64_t i = 0; i < k; i++)
                acc += (double)qt[i * out + o] * ubt[j + i * k];
            B[o * r + j] = (float)(f * acc);
        }
    }
    free(sv);
    free(ubt);
    return s;
}

lk_status loftq_factor(const float *R, int64_t out, int64_t in, int64_t r, float scale, int power,
                       uint64_t seed, uint64_t stream, float *A, float *B, int n_threads)
{
    if (out < 1 || in < 1 || r < 1 || !(scale > 0) || power < 0)
        return status_fail(LK_ERR_ARG, "LoftQ: bad arguments (shape [%lld, %lld], rank %lld)",
                           (long long)out, (long long)in, (long long)r);
    int64_t k = r + LOFTQ_OVERSAMPLE, mn = out < in ? out : in, big = out > in ? out : in;
    k = k < mn ? k : mn;
    float *yt = malloc((size_t)(k * out) * sizeof *yt), *zt = malloc((size_t)(k * in) * sizeof *zt);
    double *tmp = malloc((size_t)(k * (big + in)) * sizeof *tmp);
    lk_status s = yt && zt && tmp ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory (LoftQ)");
    rng_state g;
    rng_seed(&g, seed, rng_purpose("loftq", stream));
    if (s == LK_OK)
        s = range_basis(R, out, in, k, power, &g, yt, zt, tmp, n_threads);
    if (s == LK_OK) {
        gemm_par(0, 0, k, in, out, 1.0f, yt, out, R, in, 0.0f, zt, in, n_threads); /* QᵀR */
        s = split_factors(yt, zt, out, in, k, r, scale, tmp, A, B);
    }
    free(yt);
    free(zt);
    free(tmp);
    return s;
}

/* W of module mo as the model's file holds it: F32/F16/BF16 [out, in] behind a base quantised at
 * load, else a clear error. */
static lk_status source_weight(const lk_model *m, const lora_module *mo, const tensor_view **out)
{
    char name[128];
    snprintf(name, sizeof name, "%s.weight", mo->name);
    if (m->gguf.map.path)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: --init loftq on a GGUF model file is not supported (LoftQ starts "
                           "from the full-precision weights; hint: train on the model's Hugging "
                           "Face folder, or leave --init out)",
                           m->gguf.map.path);
    const tensor_view *t = st_set_get(&m->st, name);
    int ok = t && (t->dt == DT_F32 || t->dt == DT_F16 || t->dt == DT_BF16) && t->ndim == 2 &&
             t->shape[0] == mo->am->out && t->shape[1] == mo->am->in;
    if (!ok)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: LoftQ needs the full-precision weight '%s', but the model holds "
                           "it as %s (hint: a pre-quantised folder cannot give W; use the "
                           "original f32/f16/bf16 model)",
                           t ? t->file : m->st.dir, name, t ? dtype_name(t->dt) : "nothing");
    if (mo->L->w)
        return status_fail(LK_ERR_ARG,
                           "%s: LoftQ needs a quantised base, and this base is f32 (the "
                           "quantisation residual W - Q(W) is zero) (hint: load the base as nf4, "
                           "q4_0, iq4_nl or q8_0)",
                           name);
    *out = t;
    return LK_OK;
}

typedef struct {
    const q4_weight *q;
    float *R, *rows; /* R [out, in]; rows [nt, in] */
    double *norms;   /* [out, 2] */
    int64_t in;
} residual_job;

/* Row i of q dequantised into d[in], from either layout (q8_ilv.h: the int8 path may have
 * interleaved the base's rows in place at load). */
static void dequantize_row(const q4_weight *q, int64_t i, int64_t in, float *d)
{
    if (!q->ilv) {
        q4_dequantize_row(q->qtype, q->block, (const uint8_t *)q->data + (size_t)i * q->row_bytes,
                          in, d);
        return;
    }
    uint8_t blk[sizeof(q4_block_q8_0)];
    for (int64_t b = 0; b * Q4_QK < in; b++) {
        const int64_t n = in - b * Q4_QK < Q4_QK ? in - b * Q4_QK : Q4_QK;
        q4_dequantize_row(q->qtype, q->block, q8i_blocks(q, i, b, 1, blk), n, d + b * Q4_QK);
    }
}

/* Rows [i0, i1) of R: minus their dequantised rows; their squared norms before and after. */
static void residual_rows(void *ctx, int64_t i0, int64_t i1, int thread)
{
    const residual_job *j = ctx;
    const q4_weight *q = j->q;
    const int64_t in = j->in;
    float *d = j->rows + (int64_t)thread * in; /* [in] */
    for (int64_t i = i0; i < i1; i++) {
        float *x = j->R + i * in; /* [in] */
        double ww = 0, rr = 0;
        dequantize_row(q, i, in, d);
        for (int64_t k = 0; k < in; k++) {
            ww += (double)x[k] * x[k];
            x[k] -= d[k];
            rr += (double)x[k] * x[k];
        }
        j->norms[2 * i] = ww;
        j->norms[2 * i + 1] = rr;
    }
}

/* R [out, in] = W − deq(Q(W)) for module mo, W converted again from the model's file (its mapped
 * pages dropped afterwards), deq(Q(W)) from the base's quantised rows. Norms of W and R. */
static lk_status module_residual(const lk_model *m, const lora_module *mo, float *R, float *rows,
                                 double *norms, double *w_norm, double *r_norm)
{
    const tensor_view *t = NULL;
    LK_TRY(source_weight(m, mo, &t));
    int64_t out = mo->am->out, in = mo->am->in;
    const q4_weight *q = &mo->L->qw;
    convert_to_f32(t->dt, t->data, R, out * in, m->n_threads);
    model_drop_range(m, t, t->data, t->nbytes);
    residual_job job = {q, R, rows, norms, in};
    par_for(m->n_threads, out, residual_rows, &job);
    double ww = 0, rr = 0; /* in row order: the same sums whatever the thread count */
    for (int64_t i = 0; i < out; i++) {
        ww += norms[2 * i];
        rr += norms[2 * i + 1];
    }
    *w_norm = sqrt(ww);
    *r_norm = sqrt(rr);
    return LK_OK;
}

/* ‖R − s·B·A‖, R overwritten. */
static double remaining_norm(float *R, const adapter_module *a, float scale, int nt)
{
    gemm_par(0, 0, a->out, a->in, a->r, -scale, a->B, a->r, a->A, a->in, 1.0f, R, a->in, nt);
    double e = 0;
    for (int64_t i = 0; i < a->out * a->in; i++)
        e += (double)R[i] * R[i];
    return sqrt(e);
}

/* One info line for the modules [i0, i1) of a layer: ‖R − s·B·A‖ / ‖R‖ each. */
static void log_layer(const struct lk_loftq_stat *st, int i0, int i1)
{
    char line[512];
    int n = snprintf(line, sizeof line,
                     "loftq: layer %lld, |R - s*B*A| / |R|:", (long long)st[i0].layer);
    for (int i = i0; i < i1 && n > 0 && (size_t)n < sizeof line; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %s %.4f", lk_module_name(st[i].module),
                      st[i].residual_norm > 0 ? st[i].remaining_norm / st[i].residual_norm : 0.0);
    log_info("%s", line);
}

lk_status loftq_init_set(lk_model *m, lora_set *s, uint64_t seed, struct lk_loftq_stat *stats)
{
    int64_t most = 1, widest = 1, tallest = 1;
    for (int i = 0; i < s->n; i++) {
        const adapter_module *a = s->mods[i].am;
        most = a->out * a->in > most ? a->out * a->in : most;
        widest = a->in > widest ? a->in : widest;
        tallest = a->out > tallest ? a->out : tallest;
    }
    float *R = lk_aligned_alloc((size_t)most * sizeof *R); /* [out, in] of the module at hand */
    float *rows = malloc((size_t)(m->n_threads * widest) * sizeof *rows);
    double *norms = malloc((size_t)(2 * tallest) * sizeof *norms);
    lk_status st = R && rows && norms ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory (LoftQ)");
    for (int i = 0, i0 = 0; st == LK_OK && i < s->n; i++) {
        lora_module *mo = &s->mods[i];
        adapter_module *a = mo->am;
        struct lk_loftq_stat *o = &stats[i];
        o->layer = a->layer;
        o->module = a->kind;
        st = module_residual(m, mo, R, rows, norms, &o->weight_norm, &o->residual_norm);
        if (st == LK_OK && (a->r > a->out || a->r > a->in))
            log_warn("loftq: %s: rank %lld exceeds the layer's shape [%lld, %lld]; the extra "
                     "directions start at zero in A and B and get no gradient",
                     mo->name, (long long)a->r, (long long)a->out, (long long)a->in);
        if (st == LK_OK)
            st = loftq_factor(R, a->out, a->in, a->r, (float)a->scale, LOFTQ_POWER_ITERS, seed,
                              (uint64_t)i, a->A, a->B, m->n_threads);
        if (st == LK_OK)
            o->remaining_norm = remaining_norm(R, a, (float)a->scale, m->n_threads);
        if (st == LK_OK && (i + 1 == s->n || s->mods[i + 1].am->layer != a->layer)) {
            log_layer(stats, i0, i + 1);
            i0 = i + 1;
        }
    }
    free(R);
    free(rows);
    free(norms);
    return st;
}
