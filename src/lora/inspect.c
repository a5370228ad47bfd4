/* inspect.c — what an adapter learned, from the small factors only (ΔW = s·B·A is never formed):
 *   ‖ΔW‖_F² = s²·tr((BᵀB)(AAᵀ));  <ΔW1, ΔW2>_F = s1·s2·tr((B1ᵀB2)(A2A1ᵀ));
 *   B = Q_B·R_B, Aᵀ = Q_A·R_A (thin QR) ⇒ ΔW = s·Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, so the singular values of
 *   ΔW are s × those of the small core R_B·R_Aᵀ and its left singular vectors are Q_B·U_core;
 *   principal angles between two column spaces: cosines = singular values of U1ᵀ·U2 (Björck &
 *   Golub 1973); subspace similarity φ = ‖U1ᵀU2‖_F² / min(k1, k2) (Hu et al. 2021, §7);
 *   effective rank = exp(entropy of σ/Σσ) (Roy & Vetterli 2007).
 * Dense linear algebra in double through linalg.h (LAPACK from OpenBLAS). */
#include <math.h>
#include <string.h>

#include "lora/adapter.h"
#include "core/linalg.h"
#include "lora/merge.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "core/status.h"

/* The factorisation of one module's ΔW: σ [kc] (with the scale), the column basis U = Q_B·U_core
 * (out × kc, column-major) and the numerical rank. */
typedef struct {
    int kc;     /* min(k_b, k_a) */
    double *sv; /* [kc] */
    double *U;  /* [out × kc] */
    int rank;   /* σ above σ_max·1e-6 */
} inspect_fac;

static void fac_free(inspect_fac *f)
{
    free(f->sv);
    free(f->U);
    memset(f, 0, sizeof *f);
}

static lk_status fac_core(const adapter_module *m, double *Bq, double *At, inspect_fac *f)
{
    int out = (int)m->out, in = (int)m->in, r = (int)m->r;
    int kb = out < r ? out : r, ka = in < r ? in : r;
    double *Rb = calloc((size_t)(kb * r), sizeof *Rb), *Ra = calloc((size_t)(ka * r), sizeof *Ra);
    double *C = calloc((size_t)(kb * ka) + 1, sizeof *C), *Uc = NULL;
    f->kc = kb < ka ? kb : ka;
    f->sv = calloc((size_t)f->kc + 1, sizeof *f->sv);
    f->U = calloc((size_t)out * (size_t)f->kc + 1, sizeof *f->U);
    Uc = calloc((size_t)(kb * f->kc) + 1, sizeof *Uc);
    lk_status s =
        Rb && Ra && C && f->sv && f->U && Uc ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK)
        s = linalg_qr(Bq, out, r, Rb);
    if (s == LK_OK)
        s = linalg_qr(At, in, r, Ra);
    /* C [kb × ka] = R_B [kb × r] · R_Aᵀ [r × ka] */
    for (int i = 0; s == LK_OK && i < kb; i++)
        for (int j = 0; j < ka; j++) {
            double acc = 0;
            for (int t = 0; t < r; t++)
                acc += Rb[i + t * kb] * Ra[j + t * ka];
            C[i + j * kb] = acc;
        }
    if (s == LK_OK)
        s = linalg_svd(C, kb, ka, f->sv, Uc, NULL);
    /* U [out × kc] = Q_B [out × kb] · U_core [kb × kc] */
    for (int i = 0; s == LK_OK && i < out; i++)
        for (int j = 0; j < f->kc; j++) {
            double acc = 0;
            for (int t = 0; t < kb; t++)
                acc += Bq[i + t * out] * Uc[t + j * kb];
            f->U[i + (size_t)j * out] = acc;
        }
    for (int i = 0; s == LK_OK && i < f->kc; i++) {
        f->sv[i] *= fabs(m->scale);
        f->rank += f->sv[i] > f->sv[0] * 1e-6 && f->sv[i] > 0;
    }
    free(Rb);
    free(Ra);
    free(C);
    free(Uc);
    return s;
}

static lk_status factorize(const adapter_module *m, inspect_fac *f)
{
    size_t nb = (size_t)(m->out * m->r), na = (size_t)(m->in * m->r);
    double *Bq = malloc(nb * sizeof *Bq), *At = malloc(na * sizeof *At);
    memset(f, 0, sizeof *f);
    lk_status s = Bq && At ? LK_OK : status_fail(LK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == LK_OK && i < m->out; i++) /* B row-major → column-major */
        for (int64_t j = 0; j < m->r; j++)
            Bq[i + j * m->out] = m->B[i * m->r + j];
    for (size_t i = 0; s == LK_OK && i < na; i++) /* A [r, in] row-major is Aᵀ column-major */
        At[i] = m->A[i];
    if (s == LK_OK)
        s = fac_core(m, Bq, At, f);
    free(Bq);
    free(At);
    if (s != LK_OK)
        fac_free(f);
    return s;
}

/* <B_p·A_p, B_q·A_q>_F from the products, one row of each at a time (out × in × (r_p + r_q)). */
static double dense_inner(const adapter_module *p, const adapter_module *q)
{
    int64_t in = p->in;
    double *w = malloc((size_t)(2 * in) * sizeof *w), t = 0;
    if (!w)
        return NAN;
    for (int64_t o = 0; o < p->out; o++) {
        double *u = w + in; /* w [in] = B_p[o, :]·A_p, u [in] = B_q[o, :]·A_q */
        memset(w, 0, (size_t)(2 * in) * sizeof *w);
        for (int64_t k = 0; k < p->r; k++)
            for (int64_t c = 0; c < in; c++)
                w[c] += (double)p->B[o * p->r + k] * p->A[k * in + c];
        for (int64_t k = 0; k < q->r; k++)
            for (int64_t c = 0; c < in; c++)
                u[c] += (double)q->B[o * q->r + k] * q->A[k * in + c];
        for (int64_t c = 0; c < in; c++)
            t += w[c] * u[c];
    }
    free(w);
    return t;
}

/* tr((X1ᵀ X2)(Y2 Y1ᵀ)) for B-like X [rows × r] and A-like Y [r × cols] (row-major floats). When
 * r1·r2 exceeds out·in (ranks beyond the matrix size, as a hostile file may declare) the same
 * number comes from the formed products instead, so memory stays within the factors' size. */
static double trace_inner(const adapter_module *p, const adapter_module *q)
{
    int64_t r1 = p->r, r2 = q->r;
    if (r1 * r2 > p->out * p->in)
        return dense_inner(p, q);
    double *M = calloc((size_t)(r1 * r2), sizeof *M), *N = calloc((size_t)(r1 * r2), sizeof *N);
    double t = 0;
    if (!M || !N) {
        free(M);
        free(N);
        return NAN;
    }
    for (int64_t o = 0; o < p->out; o++) /* M [r1 × r2] = B1ᵀ B2 */
        for (int64_t i = 0; i < r1; i++)
            for (int64_t j = 0; j < r2; j++)
                M[i * r2 + j] += (double)p->B[o * r1 + i] * q->B[o * r2 + j];
    for (int64_t j = 0; j < r2; j++) /* N [r2 × r1] = A2 A1ᵀ */
        for (int64_t i = 0; i < r1; i++) {
            double acc = 0;
            for (int64_t c = 0; c < p->in; c++)
                acc += (double)q->A[j * q->in + c] * p->A[i * p->in + c];
            N[j * r1 + i] = acc;
        }
    for (int64_t i = 0; i < r1; i++)
        for (int64_t j = 0; j < r2; j++)
            t += M[i * r2 + j] * N[j * r1 + i];
    free(M);
    free(N);
    return t;
}

static int64_t count_nonfinite(const float *x, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; x && i < n; i++)
        k += !isfinite(x[i]);
    return k;
}

static double frob(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* ‖W‖_F of the GGUF tensors of a's modules, row by row (llama.cpp's q/k row order changes no
 * norm). */
static lk_status gguf_norms(const lk_adapter *a, const char *path, double *norms)
{
    gguf_file f;
    LK_TRY(gguf_open(&f, path));
    lk_status s = LK_OK;
    float *row = NULL;
    for (int64_t i = 0; i < a->n_mods && s == LK_OK; i++) {
        const adapter_module *m = &a->mods[i];
        char name[128];
        snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)m->layer,
                 adapter_gguf_stem(m->kind));
        const gguf_tensor *t = gguf_find_tensor(&f, name);
        if (!t || t->n_dims != 2 || t->ne[1] != m->out || t->ne[0] != m->in) {
            s = status_fail(LK_ERR_SHAPE,
                            "%s: tensor '%s' is missing or not ne [%lld, %lld] (hint: wrong base "
                            "model?)",
                            path, name, (long long)m->in, (long long)m->out);
            break;
        }
        free(row);
        row = malloc((size_t)m->in * sizeof *row);
        if (!row) {
            s = status_fail(LK_ERR_NOMEM, "out of memory");
            break;
        }
        double ss = 0;
        for (int64_t r = 0; r < m->out && s == LK_OK; r++) {
            s = model_gguf_row(&f, t, r, row);
            for (int64_t j = 0; j < m->in && s == LK_OK; j++)
                ss += (double)row[j] * row[j];
        }
        norms[i] = sqrt(ss);
        merge_release(t->data, t->nbytes);
    }
    free(row);
    gguf_close(&f);
    return s;
}

lk_status lk_adapter_base_norms(const lk_adapter *a, const char *model_dir, double *norms)
{
    struct lk_model_config cfg;
    st_set st;
    LK_TRY(lk_config_load(model_dir, &cfg));
    LK_TRY(adapter_check_base(a, &cfg));
    if (model_path_is_gguf(model_dir))
        return gguf_norms(a, model_dir, norms);
    LK_TRY(st_set_open(&st, model_dir, 1));
    lk_status s = LK_OK;
    for (int64_t i = 0; i < a->n_mods && s == LK_OK; i++) {
        const adapter_module *m = &a->mods[i];
        char name[128];
        snprintf(name, sizeof name, "model.layers.%lld.%s.%s.weight", (long long)m->layer,
                 adapter_parent(m->kind), lk_module_name(m->kind));
        const tensor_view *t = st_set_get(&st, name);
        if (!t || t->ndim != 2 || t->shape[0] != m->out || t->shape[1] != m->in ||
            (t->dt != DT_F32 && t->dt != DT_F16 && t->dt != DT_BF16)) {
            s = status_fail(LK_ERR_SHAPE,
                            "%s: '%s' is missing, not [%lld, %lld] or not "
                            "F32/F16/BF16 (hint: wrong base model?)",
                            model_dir, name, (long long)m->out, (long long)m->in);
            break;
        }
        double ss = 0;
        float row[1024];
        size_t es = dtype_size(t->dt);
        for (int64_t k = 0; k < m->out * m->in; k += 1024) { /* in chunks: no tensor copy */
            int64_t n = m->out * m->in - k < 1024 ? m->out * m->in - k : 1024;
            convert_to_f32(t->dt, (const uint8_t *)t->data + (size_t)k * es, row, n, 1);
            for (int64_t j = 0; j < n; j++)
                ss += (double)row[j] * row[j];
        }
        norms[i] = sqrt(ss);
        merge_release(t->data, t->nbytes);
    }
    st_set_close(&st);
    return s;
}

static void spectrum_stats(const inspect_fac *f, struct lk_module_stats *o)
{
    double sum = 0, sq = 0, h = 0, acc = 0;
    for (int i = 0; i < f->kc; i++) {
        sum += f->sv[i];
        sq += f->sv[i] * f->sv[i];
    }
    for (int i = 0; i < f->kc && sum > 0; i++)
        if (f->sv[i] > 0)
            h -= f->sv[i] / sum * log(f->sv[i] / sum);
    o->effective_rank = sum > 0 ? exp(h) : 0;
    o->rank90 = 0;
    for (int i = 0; i < f->kc && sq > 0 && acc < 0.9 * sq; i++) {
        acc += f->sv[i] * f->sv[i];
        o->rank90 = i + 1;
    }
}

lk_status lk_adapter_module_stats(const lk_adapter *a, int64_t i, double base_norm,
                                  struct lk_module_stats *o, float *sv)
{
    memset(o, 0, sizeof *o);
    if (i < 0 || i >= a->n_mods)
        return status_fail(LK_ERR_ARG, "%s: module index %lld out of range", a->path, (long long)i);
    const adapter_module *m = &a->mods[i];
    o->norm_a = frob(m->A, m->r * m->in);
    o->norm_b = frob(m->B, m->out * m->r);
    o->n_sv = m->r;
    o->rel_norm = NAN;
    o->n_nonfinite = count_nonfinite(m->A, m->r * m->in) + count_nonfinite(m->B, m->out * m->r) +
                     count_nonfinite(m->mag, m->mag ? m->out : 0);
    if (o->n_nonfinite || !isfinite(m->scale))
        return status_fail(LK_ERR_NUMERIC,
                           "%s: layers.%lld.%s: %lld NaN/Inf values in the "
                           "factors (scale %g)",
                           a->path, (long long)m->layer, lk_module_name(m->kind),
                           (long long)o->n_nonfinite, m->scale);
    o->norm_delta = fabs(m->scale) * sqrt(fmax(0, trace_inner(m, m)));
    o->rel_norm = base_norm > 0 ? o->norm_delta / base_norm : NAN;
    inspect_fac f;
    LK_TRY(factorize(m, &f));
    spectrum_stats(&f, o);
    for (int64_t k = 0; sv && k < m->r; k++)
        sv[k] = k < f.kc ? (float)f.sv[k] : 0.0f;
    fac_free(&f);
    return LK_OK;
}

/* Cosines of the principal angles between span(U1[:, :k1]) and span(U2[:, :k2]). */
static lk_status principal_cosines(const inspect_fac *f1, const inspect_fac *f2, int64_t out,
                                   double *cs, int *n)
{
    int k1 = f1->rank, k2 = f2->rank;
    *n = k1 < k2 ? k1 : k2;
    if (*n == 0)
        return LK_OK;
    double *M = malloc((size_t)(k1 * k2) * sizeof *M);
    if (!M)
        return status_fail(LK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < k1; i++) /* M [k1 × k2] = U1ᵀ U2, column-major */
        for (int j = 0; j < k2; j++) {
            double acc = 0;
            for (int64_t t = 0; t < out; t++)
                acc += f1->U[t + (size_t)i * out] * f2->U[t + (size_t)j * out];
            M[i + j * k1] = acc;
        }
    lk_status s = linalg_svd(M, k1, k2, cs, NULL, NULL);
    for (int i = 0; i < *n; i++)
        cs[i] = fmin(1.0, cs[i]);
    free(M);
    return s;
}

lk_status lk_adapter_module_diff(const lk_adapter *a, int64_t i, const lk_adapter *b, int64_t j,
                                 struct lk_module_diff *o, float *cos_angles)
{
    memset(o, 0, sizeof *o);
    if (i < 0 || i >= a->n_mods || j < 0 || j >= b->n_mods)
        return status_fail(LK_ERR_ARG, "diff: module index out of range");
    const adapter_module *p = &a->mods[i], *q = &b->mods[j];
    if (p->in != q->in || p->out != q->out)
        return status_fail(LK_ERR_SHAPE,
                           "diff: layers.%lld.%s is [%lld, %lld] in %s but "
                           "[%lld, %lld] in %s (hint: adapters of different base models?)",
                           (long long)p->layer, lk_module_name(p->kind), (long long)p->out,
                           (long long)p->in, a->path, (long long)q->out, (long long)q->in, b->path);
    double n1 = fabs(p->scale) * sqrt(fmax(0, trace_inner(p, p)));
    double n2 = fabs(q->scale) * sqrt(fmax(0, trace_inner(q, q)));
    double in = p->scale * q->scale * trace_inner(p, q);
    o->cosine = n1 > 0 && n2 > 0 ? in / (n1 * n2) : NAN;
    o->rel_diff = n1 > 0 ? sqrt(fmax(0, n1 * n1 + n2 * n2 - 2 * in)) / n1 : NAN;
    o->subspace = NAN;
    inspect_fac f1, f2;
    LK_TRY(factorize(p, &f1));
    lk_status s = factorize(q, &f2);
    if (s != LK_OK) {
        fac_free(&f1);
        return s;
    }
    double *cs = calloc((size_t)(f1.kc + 1), sizeof *cs);
    int n = 0;
    s = cs ? principal_cosines(&f1, &f2, p->out, cs, &n)
           : status_fail(LK_ERR_NOMEM, "out of memory");
    double acc = 0;
    for (int k = 0; s == LK_OK && k < n; k++) {
        acc += cs[k] * cs[k];
        if (cos_angles)
            cos_angles[k] = (float)cs[k];
    }
    if (s == LK_OK && n > 0)
        o->subspace = acc / n;
    o->n_angles = n;
    free(cs);
    fac_free(&f1);
    fac_free(&f2);
    return s;
}
