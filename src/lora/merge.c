/* merge.c — merging LoRA adapters into base weights, streaming one tensor at a time:
 *   LoRA: W ← W + Σ_i w_i·s_i·B_i·A_i                          (PEFT LoraLayer.merge)
 *   DoRA: V = W + w·s·B·A,  W ← (m / ‖V‖_row) ⊙ V               (PEFT DoraLinearLayer, rows =
 *         output features; the norm is taken of the merged weight, as PEFT's merge does)
 * The fp32 sum goes through OpenBLAS sgemm; the result is stored in the target type through a
 * row converter (f32/f16/bf16 here; the 4-bit GGUF types through gguf_type_traits and quant/).
 * Mapped base pages are released after each tensor so that resident memory stays near the
 * largest tensor.
 *
 * The merge core: options, --base-quant formats, checks (merge_prepare), merged rows
 * (merge_rows). The writers sit on top and use only this file: merge_hf.c (a Hugging Face
 * folder), merge_gguf.c (a llama.cpp GGUF file); merge_api.c (lk_merge) picks one. */
#include "lora/merge.h"

#include "q4.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/option.h"
#include "core/status.h"

struct lk_merge_params lk_merge_params_default(void)
{
    struct lk_merge_params p = {.dtype = NULL,
                                .base_quant = NULL,
                                .n_threads = 0,
                                .force = 0,
                                .on_tensor = NULL,
                                .user = NULL};
    return p;
}

lk_status lk_merge_params_check(const struct lk_merge_params *p)
{
    static const char *const dtypes[] = {"f32",  "f16",  "bf16", "q8_0", "q4_0",
                                         "iq4_nl", "nf4", "q4_1", "q5_0", "q5_1",
                                         "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs"};
    static const char *const bases[] = {"nf4", "q4_0", "iq4_nl", "q8_0"};
    if (p->dtype && option_lookup(dtypes, 16, p->dtype) < 0)
        return option_choice("--dtype", p->dtype,
                             "f32, f16, bf16, q8_0, q4_0, iq4_nl, nf4, q4_1, q5_0, q5_1, q2_k, "
                             "q3_k, q4_k, q5_k, q6_k or iq4_xs");
    if (p->base_quant && option_lookup(bases, 4, p->base_quant) < 0)
        return option_choice("--base-quant", p->base_quant, "nf4, q4_0, iq4_nl or q8_0");
    return LK_OK;
}

int merge_parse_tensor(const char *name, int64_t *layer, lk_module *kind)
{
    const char *pre = "model.layers.";
    size_t pl = strlen(pre);
    if (strncmp(name, pre, pl) != 0)
        return -1;
    char *e;
    long long l = strtoll(name + pl, &e, 10);
    if (e == name + pl || *e != '.' || l < 0)
        return -1;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        char want[64];
        snprintf(want, sizeof want, ".%s.%s.weight", adapter_parent((lk_module)k),
                 lk_module_name((lk_module)k));
        if (strcmp(e, want) == 0) {
            *layer = l;
            *kind = (lk_module)k;
            return 0;
        }
    }
    return -1;
}

lk_status merge_float_source(const tensor_view *t)
{
    if (t->dt == DT_F32 || t->dt == DT_F16 || t->dt == DT_BF16)
        return LK_OK;
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: tensor '%s' is stored as %s (a quantised layout: a bitsandbytes or "
                       "lora-quantize folder): lora-merge merges into f32, f16 or bf16 weights "
                       "(hint: merge into the float model the folder was quantised from; "
                       "--base-quant nf4 gives the NF4 weights a QLoRA adapter was trained on)",
                       t->file, t->name, dtype_name(t->dt));
}

void merge_release(const void *p, size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (pg > 0 && b > a)
        madvise((void *)a, b - a, MADV_DONTNEED); /* clean private file pages: re-read if needed */
}

/* The 4-bit formats a QLoRA base may have been trained in: row round trips through quant/ (any
 * row length, the last block zero-padded, as the training base stores it; NF4 in blocks of 64,
 * the GGUF types in blocks of 32). */
#define MERGE_QROWS(name, qt, blk)                                      \
    static size_t name##_row_bytes(int64_t n)                           \
    {                                                                   \
        return q4_row_bytes(qt, blk, n);                                \
    }                                                                   \
    static void name##_quantize(const float *x, int64_t n, void *dst)   \
    {                                                                   \
        q4_quantize_row(qt, blk, x, n, dst);                            \
    }                                                                   \
    static void name##_dequantize(const void *src, int64_t n, float *y) \
    {                                                                   \
        q4_dequantize_row(qt, blk, src, n, y);                          \
    }
MERGE_QROWS(nf4, LK_QTYPE_NF4, Q4_NF4_BLOCK)
MERGE_QROWS(q4_0, LK_QTYPE_Q4_0, Q4_QK)
MERGE_QROWS(iq4_nl, LK_QTYPE_IQ4_NL, Q4_QK)
MERGE_QROWS(q8_0, LK_QTYPE_Q8_0, Q4_QK)

static const merge_base_quant g_base_quant[] = {
    {"nf4", nf4_row_bytes, nf4_quantize, nf4_dequantize},
    {"q4_0", q4_0_row_bytes, q4_0_quantize, q4_0_dequantize},
    {"iq4_nl", iq4_nl_row_bytes, iq4_nl_quantize, iq4_nl_dequantize},
    {"q8_0", q8_0_row_bytes, q8_0_quantize, q8_0_dequantize},
};

lk_status merge_prepare(merge_ctx *c, const struct lk_model_config *cfg,
                        const lk_adapter *const *adapters, const float *w, int n,
                        const struct lk_merge_params *p)
{
    memset(c, 0, sizeof *c);
    c->adapters = adapters;
    c->weights = w;
    c->n = n;
    c->p = p ? *p : lk_merge_params_default();
    LK_TRY(lk_merge_params_check(&c->p));
    c->n_threads = resolve_threads(c->p.n_threads);
    if (n > MERGE_MAX_ADAPTERS)
        return status_fail(LK_ERR_ARG, "merge: %d adapters, at most %d", n, MERGE_MAX_ADAPTERS);
    c->cfg = *cfg;
    for (int i = 0; i < n; i++) {
        LK_TRY(adapter_check_ready(adapters[i]));
        LK_TRY(adapter_check_base(adapters[i], cfg));
        if (!isfinite(w[i]))
            return status_fail(LK_ERR_ARG, "%s: merge weight %g is not finite", adapters[i]->path,
                               w[i]);
    }
    if (c->p.base_quant) {
        for (size_t i = 0; i < sizeof g_base_quant / sizeof *g_base_quant; i++)
            if (strcmp(c->p.base_quant, g_base_quant[i].name) == 0)
                c->base_q = &g_base_quant[i];
        if (!c->base_q->row_bytes || !c->base_q->quantize || !c->base_q->dequantize)
            return status_fail(LK_ERR_UNSUPPORTED,
                               "--base-quant %s needs the 4-bit quantisation kernels, which this "
                               "build does not have yet",
                               c->p.base_quant);
    }
    return LK_OK;
}

/* The adapters touching one tensor, in merge order. */
typedef struct {
    const adapter_module *d[MERGE_MAX_ADAPTERS];
    double coef[MERGE_MAX_ADAPTERS]; /* w_i · s_i */
    int n;
} merge_deltas;

static void find_deltas(const merge_ctx *c, int64_t layer, int kind, merge_deltas *md)
{
    md->n = 0;
    for (int i = 0; kind >= 0 && i < c->n; i++) {
        int64_t j = lk_adapter_find_module(c->adapters[i], layer, (lk_module)kind);
        if (j < 0)
            continue;
        md->d[md->n] = &c->adapters[i]->mods[j];
        md->coef[md->n++] = (double)c->weights[i] * c->adapters[i]->mods[j].scale;
    }
}

/* Source row of output row g when rows are permuted into llama.cpp's q/k order (heads > 0):
 * within each head of hd rows, GGUF row 2·i + j holds HF row j·hd/2 + i. */
static int64_t src_row(int64_t g, int64_t rows, int heads)
{
    if (heads <= 0)
        return g;
    int64_t hd = rows / heads, h = g / hd, k = g % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

/* Shared state of one tensor's merge: workers take row blocks from next (atomic). The base is a
 * float Hugging Face tensor t (rows read in llama.cpp's q/k order when heads > 0) or a GGUF tensor
 * g of any type (rows already in the output order; gt its type); the deltas' rows follow heads. */
typedef struct {
    const merge_ctx *c;
    const tensor_view *t;
    const gguf_tensor *g;
    const gguf_type_traits *gt;
    const merge_deltas *md;
    const gguf_type_traits *tt;
    uint8_t *dst;
    int64_t rows, cols, nb, max_r, qbytes;
    int heads;
    _Atomic int64_t next;
} merge_job;

/* Rows [r0, r0+m) of the merged tensor into W [m, cols] (fp32): convert (dequantise) the base
 * rows, round trip them through --base-quant, add each low-rank update (sgemm on the block; B's
 * rows gathered in source order), rescale DoRA rows by m / ‖V‖_row. Bg: [m, max r] scratch. */
static void merge_block(const merge_job *j, int64_t r0, int64_t m, float *W, float *Bg,
                        uint8_t *qbuf)
{
    const merge_ctx *c = j->c;
    const merge_deltas *md = j->md;
    const int64_t rows = j->rows, cols = j->cols;
    const int heads = j->heads;
    for (int64_t k = 0; k < m; k++) {
        if (j->g) {
            const int64_t rs = cols / j->gt->blck * j->gt->size;
            j->gt->to_f32(j->g->data + (size_t)((r0 + k) * rs), W + k * cols, cols);
            continue;
        }
        size_t es = dtype_size(j->t->dt);
        const uint8_t *src =
            (const uint8_t *)j->t->data + (size_t)(src_row(r0 + k, rows, heads) * cols) * es;
        convert_to_f32(j->t->dt, src, W + k * cols, cols, 1);
        if (qbuf) { /* --base-quant: the weight as the 4-bit training base held it */
            c->base_q->quantize(W + k * cols, cols, qbuf);
            c->base_q->dequantize(qbuf, cols, W + k * cols);
        }
    }
    for (int i = 0; i < md->n; i++) {
        const adapter_module *d = md->d[i];
        for (int64_t k = 0; k < m; k++)
            memcpy(Bg + k * d->r, d->B + src_row(r0 + k, rows, heads) * d->r,
                   (size_t)d->r * sizeof *Bg);
        /* W[m, in] += coef · Bg[m, r] · A[r, in] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)cols, (int)d->r,
                    (float)md->coef[i], Bg, (int)d->r, d->A, (int)cols, 1.0f, W, (int)cols);
        for (int64_t k = 0; d->mag && k < m; k++) {
            double ss = 0;
            for (int64_t x = 0; x < cols; x++)
                ss += (double)W[k * cols + x] * W[k * cols + x];
            float f = (float)(d->mag[src_row(r0 + k, rows, heads)] / sqrt(ss));
            for (int64_t x = 0; x < cols; x++)
                W[k * cols + x] *= f;
        }
    }
}

/* Store W [m, cols] as rows of type tt at dst; add the squared error of the stored values (read
 * back) and of the exact ones to *err and *ref. */
static void store_block(const gguf_type_traits *tt, const float *W, int64_t m, int64_t cols,
                        uint8_t *dst, float *back, double *err, double *ref)
{
    int64_t rs = cols / tt->blck * tt->size;
    for (int64_t k = 0; k < m; k++) {
        tt->from_f32(W + k * cols, dst + k * rs, cols);
        if (tt == gguf_type_info(GGML_F32))
            continue; /* exact */
        tt->to_f32(dst + k * rs, back, cols);
        for (int64_t x = 0; x < cols; x++) {
            double e = (double)back[x] - W[k * cols + x];
            *err += e * e;
            *ref += (double)W[k * cols + x] * W[k * cols + x];
        }
    }
}

#define MERGE_BLOCK_ROWS  32
#define MERGE_MAX_THREADS 256

typedef struct {
    merge_job *job;
    double err, ref;
    int failed; /* 1: out of memory, 2: a non-finite value for a quantised target */
} merge_worker;

static void *merge_worker_run(void *arg)
{
    merge_worker *wk = arg;
    merge_job *j = wk->job;
    float *W = malloc((size_t)(MERGE_BLOCK_ROWS * j->cols) * sizeof *W);
    float *Bg = malloc((size_t)(MERGE_BLOCK_ROWS * j->max_r) * sizeof *Bg);
    float *back = malloc((size_t)j->cols * sizeof *back);
    uint8_t *qbuf = j->qbytes > 0 ? malloc((size_t)j->qbytes) : NULL;
    wk->failed = !W || !Bg || !back || (j->qbytes > 0 && !qbuf);
    int64_t rs = j->cols / j->tt->blck * j->tt->size;
    for (int64_t b; !wk->failed && (b = j->next++) < j->nb;) {
        int64_t r0 = b * MERGE_BLOCK_ROWS;
        int64_t m = j->rows - r0 < MERGE_BLOCK_ROWS ? j->rows - r0 : MERGE_BLOCK_ROWS;
        merge_block(j, r0, m, W, Bg, qbuf);
        if (j->tt->blck > 1 && f32_first_nonfinite(W, m * j->cols) >= 0) {
            wk->failed = 2; /* the quantisers need finite values */
            break;
        }
        store_block(j->tt, W, m, j->cols, j->dst + r0 * rs, back, &wk->err, &wk->ref);
    }
    free(W);
    free(Bg);
    free(back);
    free(qbuf);
    return NULL;
}

/* Plain pthreads rather than OpenMP: idle OpenMP workers spin between parallel regions while
 * the main thread writes the output, which cost ~40% on a 2-core machine. */
static int run_workers(merge_job *j, int n_threads, double *err, double *ref)
{
    merge_worker wk[MERGE_MAX_THREADS];
    pthread_t th[MERGE_MAX_THREADS];
    int ok[MERGE_MAX_THREADS] = {0};
    int n = (int)(n_threads < j->nb ? n_threads : j->nb), failed = 0;
    n = n < 1 ? 1 : n > MERGE_MAX_THREADS ? MERGE_MAX_THREADS : n;
    for (int i = 0; i < n; i++)
        wk[i] = (merge_worker){.job = j};
    for (int i = 1; i < n; i++)
        ok[i] = pthread_create(&th[i], NULL, merge_worker_run, &wk[i]) == 0;
    merge_worker_run(&wk[0]); /* also takes the blocks of threads that did not start */
    ok[0] = 1;
    for (int i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        if (i > 0)
            pthread_join(th[i], NULL);
        *err += wk[i].err;
        *ref += wk[i].ref;
        failed = wk[i].failed > failed ? wk[i].failed : failed;
    }
    return failed;
}

/* Run the job (rows, cols, heads, source and target set) and report. */
static lk_status run_merge(merge_job *j, const char *name, int *n_merged, double *store_err)
{
    j->nb = (j->rows + MERGE_BLOCK_ROWS - 1) / MERGE_BLOCK_ROWS;
    j->max_r = 1;
    for (int i = 0; i < j->md->n; i++)
        j->max_r = j->md->d[i]->r > j->max_r ? j->md->d[i]->r : j->max_r;
    if (j->heads > 0 && j->rows % (2 * j->heads))
        return status_fail(LK_ERR_SHAPE, "%s: %lld rows do not split into %d heads of even size",
                           name, (long long)j->rows, j->heads);
    double err = 0, ref = 0;
    openblas_set_num_threads(1); /* parallel over row blocks instead */
    int failed = run_workers(j, j->c->n_threads, &err, &ref);
    if (failed == 2)
        return status_fail(LK_ERR_NUMERIC,
                           "%s: a merged value is NaN or Inf (in the base or the adapters), "
                           "which a %s tensor cannot hold",
                           name, j->tt->name);
    if (failed)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory for the merge buffers", name);
    *n_merged = j->md->n;
    *store_err = ref > 0 ? sqrt(err / ref) : 0;
    return LK_OK;
}

lk_status merge_rows(const merge_ctx *c, const tensor_view *t, int64_t layer, int kind, int heads,
                     const gguf_type_traits *tt, void *dst, int *n_merged, double *store_err)
{
    merge_deltas md;
    find_deltas(c, layer, kind, &md);
    /* matrices are [rows, cols]; a vector is one row, or a column of rows when permuted */
    int64_t n = tensor_numel(t);
    merge_job j = {.c = c, .t = t, .md = &md, .tt = tt, .dst = dst, .heads = heads};
    j.cols = t->ndim == 2 ? t->shape[1] : heads > 0 ? 1 : n;
    j.rows = n / (j.cols ? j.cols : 1);
    /* every linear weight was 4-bit in training, adapted or not */
    j.qbytes = c->base_q && kind >= 0 ? (int64_t)c->base_q->row_bytes(j.cols) : 0;
    return run_merge(&j, t->name, n_merged, store_err);
}

int merge_n_deltas(const merge_ctx *c, int64_t layer, int kind)
{
    merge_deltas md;
    find_deltas(c, layer, kind, &md);
    return md.n;
}

lk_status merge_rows_gguf(const merge_ctx *c, const gguf_file *f, const gguf_tensor *g,
                          int64_t layer, int kind, int heads, const gguf_type_traits *tt, void *dst,
                          int *n_merged, double *store_err)
{
    merge_deltas md;
    find_deltas(c, layer, kind, &md);
    merge_job j = {.c = c, .g = g, .gt = gguf_type_info(g->type), .md = &md, .tt = tt,
                   .dst = dst, .heads = heads};
    if (g->n_dims != 2)
        return status_fail(LK_ERR_SHAPE, "%s: tensor '%s' has %d dimensions, expected a matrix",
                           f->map.path, g->name, g->n_dims);
    j.cols = g->ne[0];
    j.rows = g->ne[1];
    for (int i = 0; i < md.n; i++)
        if (md.d[i]->in != j.cols || md.d[i]->out != j.rows)
            return status_fail(LK_ERR_SHAPE,
                               "%s: tensor '%s' is [%lld, %lld] (out, in), but the adapter's "
                               "update of layer %lld %s is [%lld, %lld]",
                               f->map.path, g->name, (long long)j.rows, (long long)j.cols,
                               (long long)layer, lk_module_name((lk_module)kind),
                               (long long)md.d[i]->out, (long long)md.d[i]->in);
    LK_TRY(gguf_check_scales(f, g));
    return run_merge(&j, g->name, n_merged, store_err);
}
