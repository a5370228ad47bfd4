/* linear.c — linear layers: fp32 through OpenBLAS, quantised through the fused kernels (fp32
 * products, or int8 ones with --compute int8: quant/q8.h, activations in one or two int8 terms,
 * the backward's dx on the transposed Q8_0 copy), LoRA adapters on top (their products through
 * lora_mm.h); their work memory comes from the caller (linear_work_bytes). With a naive
 * reference. */
#include "nn/linear.h"

#include <math.h>
#include <string.h>

#include "core/blas.h"
#include "core/pool.h"
#include "core/rng.h"
#include "core/status.h"
#include "nn/lora_mm.h"
#include "q8.h"

int64_t linear_max_rank(const linear *L)
{
    int64_t r = 0;
    for (int i = 0; i < L->n_lora; i++)
        r = L->lora[i].r > r ? L->lora[i].r : r;
    return r;
}

/* 1 when L's training forwards quantise x in two int8 terms (linear.act2; whatever T, so that a
 * row's result does not depend on the rows beside it). Inference forwards (linear_forward,
 * linear_forward_multi: evaluation, generation, a teacher) take one term, as llama.cpp does. */
static int two_terms(const linear *L)
{
    return L->int8 && L->act2;
}

/* Floats of the LoRA products' scratch for T rows: u [T, rank], then lora_mm's copy of a
 * transposed A or B (rank × the larger of in and out). */
static int64_t lora_floats(const linear *L, int64_t T)
{
    int64_t r = linear_max_rank(L);
    return T * r + lora_mm_scratch_floats(r, L->in > L->out ? L->in : L->out);
}

/* Floats of scratch at the start of the work for T rows: the LoRA products (lora_floats), x_d
 * [T, in] with dropout, then one area shared by the backward of a quantised layer without an
 * int8 transposed copy (the fused kernel's output dx [T, in]; with the copy, q8_gemm_fwd_add adds
 * into dx) and the NF4 correction's product [T, out] of a layer with two int8 terms; a
 * backward's work also holds the training forward's (q8_gemm_fwd2's work: kernel_work). */
static int64_t tmp_floats(const linear *L, int64_t T, int backward)
{
    int64_t n = lora_floats(L, T);
    if (L->train && L->train->dropout > 0) /* room for x_d even when this call has no mask */
        n += T * L->in;                    /* x_d */
    int64_t shared = backward && !L->w && !L->qwt.data ? T * L->in : 0; /* dx through tmp */
    int64_t terms = two_terms(L) && L->qwc.data ? T * L->out : 0;
    n += terms > shared ? terms : shared;
    if (L->perm_heads > 0)
        n += T * L->out; /* y in file order (forward), dy in file order (backward) */
    return n;
}

/* The permutation's scratch [T, out]: the last floats of tmp (see tmp_floats). */
static float *perm_part(const linear *L, float *tmp, int64_t T, int backward)
{
    return tmp + tmp_floats(L, T, backward) - T * L->out;
}

/* Row of W holding Hugging Face output o (llama.cpp's q/k order when perm_heads > 0). */
static int64_t file_row(const linear *L, int64_t o)
{
    if (L->perm_heads <= 0)
        return o;
    int64_t hd = L->out / L->perm_heads, half = hd / 2, h = o / hd, k = o % hd;
    return h * hd + 2 * (k % half) + k / half;
}

typedef struct {
    const linear *L;
    float *y;    /* [T, out] */
    float *file; /* [T, out] */
    int to_hf;
} perm_job;

/* Rows [t0, t1) of a perm_job: to_hf: y = the file-order rows of y (through file), in Hugging
 * Face order; else file = y in file order. Output o of a head sits at file_row(o): the head's
 * first half at its even places, the second half at its odd ones. */
static void perm_rows(void *ctx, int64_t t0, int64_t t1, int thread)
{
    (void)thread;
    const perm_job *j = ctx;
    const int64_t out = j->L->out, hd = out / j->L->perm_heads, half = hd / 2;
    for (int64_t t = t0; t < t1; t++) {
        float *y = j->y + t * out, *f = j->file + t * out;
        if (j->to_hf)
            memcpy(f, y, (size_t)out * sizeof *f);
        for (int64_t h = 0; h < out; h += hd)
            for (int64_t k = 0; k < half; k++) {
                if (j->to_hf) {
                    y[h + k] = f[h + 2 * k];
                    y[h + half + k] = f[h + 2 * k + 1];
                } else {
                    f[h + 2 * k] = y[h + k];
                    f[h + 2 * k + 1] = y[h + half + k];
                }
            }
    }
}

/* Below this many floats a permutation runs on the calling thread (a copy: waking the pool would
 * cost more, as in add_par). */
#define PERM_PAR_MIN 65536

/* y[T,out]: each row from file order into Hugging Face order (scratch: [T, out]). */
static void rows_to_hf(const linear *L, float *y, int64_t T, float *scratch, int nt)
{
    perm_job j = {.L = L, .y = y, .file = scratch, .to_hf = 1};
    par_for(T * L->out < PERM_PAR_MIN ? 1 : nt, T, perm_rows, &j);
}

/* dst[T,out] = dy in file order. */
static void rows_to_file(const linear *L, const float *dy, int64_t T, float *dst, int nt)
{
    perm_job j = {.L = L, .y = (float *)dy, .file = dst, .to_hf = 0}; /* dy only read */
    par_for(T * L->out < PERM_PAR_MIN ? 1 : nt, T, perm_rows, &j);
}

/* Bytes of the fused kernel's work for T rows (forward; with backward, the larger of both). */
static size_t kernel_work(const linear *L, int64_t T, int n_threads, int backward)
{
    if (L->w)
        return 0;
    const q4_kernels *k = q4_kernels_get();
    size_t f = L->int8 ? q8_gemm_fwd_work(&L->qw, T, n_threads)
                       : q4_gemm_fwd_work(k, &L->qw, T, n_threads);
    if (L->qwc.data && q8_gemm_fwd_work(&L->qwc, T, n_threads) > f)
        f = q8_gemm_fwd_work(&L->qwc, T, n_threads);
    if (backward && two_terms(L) && q8_gemm_fwd2_work(&L->qw, T, n_threads) > f)
        f = q8_gemm_fwd2_work(&L->qw, T, n_threads); /* the training forward's two terms */
    size_t b = 0;
    if (backward && L->qwt.data) { /* dx += (fwd_add) or, for linear_backward_set, = (fwd) */
        b = q8_gemm_fwd_add_work(&L->qwt, T, n_threads);
        if (q8_gemm_fwd_work(&L->qwt, T, n_threads) > b)
            b = q8_gemm_fwd_work(&L->qwt, T, n_threads);
    } else if (backward) {
        b = q4_gemm_bwd_work(k, &L->qw, T, n_threads);
    }
    return f > b ? f : b;
}

size_t linear_work_bytes(const linear *L, int64_t T, int n_threads, int backward)
{
    return (size_t)tmp_floats(L, T, backward) * sizeof(float) +
           kernel_work(L, T, n_threads, backward);
}

/* The kernel's part of a call's work: what follows the scratch of its T rows; *size its bytes. */
static void *kernel_part(const linear *L, int64_t T, int backward, void *work, size_t work_size,
                         size_t *size)
{
    size_t off = (size_t)tmp_floats(L, T, backward) * sizeof(float);
    *size = work_size - off;
    return work ? (char *)work + off : NULL;
}

/* The shared area of tmp_floats: after the LoRA scratch and x_d. */
static float *shared_part(const linear *L, float *tmp, int64_t T)
{
    return tmp + lora_floats(L, T) + (L->train && L->train->dropout > 0 ? T * L->in : 0);
}

/* y[T,out] = x·Wᵀ + b on int8 products. In a training forward (train) with two terms (two_terms),
 * x = x1 + r where x1 is what the kernel's int8 quantisation of x represents, and
 * y = (x1·Wᵀ + b) + r1·Wᵀ, r1 the int8 r (a row's error falls from d/2 to d/508 per block):
 * q8_gemm_fwd2, one pass over the packed weight for both terms. An NF4 matrix with its codebook
 * correction C (linear.qwc) adds x1·Cᵀ in every forward. sh: the shared area of tmp_floats. */
static void int8_forward(const linear *L, const float *x, int64_t T, float *y, float *sh, void *kw,
                         size_t kn, int nt, int train)
{
    if (train && two_terms(L))
        q8_gemm_fwd2(&L->qw, L->b, x, T, y, nt, kw, kn);
    else
        q8_gemm_fwd(&L->qw, L->b, x, T, y, nt, kw, kn);
    if (!two_terms(L) || !L->qwc.data)
        return;
    q8_gemm_fwd(&L->qwc, NULL, x, T, sh, nt, kw, kn); /* x1·Cᵀ, C the NF4 codebook's correction */
    add_par(y, sh, T * L->out, nt);
}

/* x_d[T,in] = x·m/(1−p), m_i ~ Bernoulli(1−p) from a stateless hash of (key, index). */
static const float *lora_input(const linear *L, const float *x, int64_t T, uint64_t key, float *xd)
{
    const lora_train *tr = L->train;
    if (!tr || tr->dropout <= 0 || key == 0)
        return x;
    float p = tr->dropout, keep = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < T * L->in; i++) {
        float u = (float)(rng_hash(key, (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
        xd[i] = u < p ? 0.0f : x[i] * keep;
    }
    return xd;
}

/* u[T,r] = x·Aᵀ; y[T,out] += scale·u·Bᵀ (wt: lora_mm's scratch) */
static void lora_forward(const lora_delta *d, const float *x, int64_t T, int64_t in, int64_t out,
                         float *y, float *u, float *wt, int nt)
{
    int64_t r = d->r;
    lora_mm(0, 1, T, r, in, 1.0f, x, in, d->A, in, 0, u, r, wt, nt);
    lora_mm(0, 1, T, out, r, d->scale, u, r, d->B, r, 1, y, out, wt, nt);
}

/* What follows the base product y = x·Wᵀ (bias included by the fused kernels): the bias of an
 * fp32 weight, Hugging Face row order, the adapters. tmp: the start of the call's work; keep_u
 * (NULL: none) receives the trained adapter's u [T, r] instead of tmp. */
static void forward_rest(const linear *L, const float *x, int64_t T, float *y, float *tmp,
                         float *keep_u, uint64_t mask_key, int n_threads)
{
    if (L->b && L->w)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < L->out; o++)
                y[t * L->out + o] += L->b[o];
    if (L->perm_heads > 0)
        rows_to_hf(L, y, T, perm_part(L, tmp, T, 0), n_threads);
    if (L->n_lora == 0)
        return; /* tmp may be NULL then */
    float *u = tmp, *wt = tmp + T * linear_max_rank(L), *xd = tmp + lora_floats(L, T);
    for (int i = 0; i < L->n_lora; i++)
        lora_forward(&L->lora[i], i == 0 ? lora_input(L, x, T, mask_key, xd) : x, T, L->in, L->out,
                     y, i == 0 && keep_u ? keep_u : u, wt, n_threads);
}

/* linear_forward_train (train 1: two int8 terms where L->act2; keep_u as forward_rest's) and
 * linear_forward (train 0). */
static void forward(const linear *L, const float *x, int64_t T, float *y, float *keep_u, void *work,
                    size_t work_size, uint64_t mask_key, int n_threads, int train)
{
    const int bwd = train && two_terms(L); /* the two terms' area: a backward's work */
    LK_ASSERT(work_size >= linear_work_bytes(L, T, n_threads, bwd));
    float *tmp = work; /* [tmp_floats(L, T, bwd)] */
    if (!L->w) {       /* fused dequant-GEMM, bias included */
        size_t kn;
        void *kw = kernel_part(L, T, bwd, work, work_size, &kn);
        if (L->int8)
            int8_forward(L, x, T, y, shared_part(L, tmp, T), kw, kn, n_threads, train);
        else
            q4_gemm_fwd(&L->qw, L->b, x, T, y, n_threads, kw, kn);
    } else if (T == 1) { /* y[out] = W[out,in]·x[in]: q4_sgemv where it runs, else sgemv */
        if (!q4_sgemv(L->out, L->in, L->w, x, y, n_threads))
            gemv_par(L->out, L->in, L->w, x, y, n_threads);
    } else { /* y[T,out] = x[T,in]·W[out,in]ᵀ */
        gemm_par(0, 1, T, L->out, L->in, 1.0f, x, L->in, L->w, L->in, 0.0f, y, L->out, n_threads);
    }
    forward_rest(L, x, T, y, tmp, keep_u, mask_key, n_threads);
}

void linear_forward_train(const linear *L, const float *x, int64_t T, float *y, void *work,
                          size_t work_size, uint64_t mask_key, int n_threads)
{
    forward(L, x, T, y, NULL, work, work_size, mask_key, n_threads, 1);
}

void linear_forward_train_keep(const linear *L, const float *x, int64_t T, float *y, float *u,
                               void *work, size_t work_size, uint64_t mask_key, int n_threads)
{
    LK_ASSERT(L->train && L->n_lora > 0 && u);
    forward(L, x, T, y, u, work, work_size, mask_key, n_threads, 1);
}

void linear_forward(const linear *L, const float *x, int64_t T, float *y, void *work,
                    size_t work_size, int n_threads)
{
    forward(L, x, T, y, NULL, work, work_size, 0, n_threads, 0);
}

/* ---- several layers on one input vector in one parallel region (decoding) ---- */

/* Rows of L that thread t of nt computes: [*r0, *r0 + *n). An fp32 weight is cut as gemv_par
 * cuts it (where q4_sgemv declines: the same sgemv calls, so the same bits); q4_sgemv's and a
 * quantised weight's rows never depend on the cut. */
static void multi_rows(const linear *L, int t, int nt, int64_t *r0, int64_t *n)
{
    gemv_par_rows(L->out, L->w ? L->in : INT32_MAX, nt, t, r0, n);
}

/* Kernel work of one thread's rows of any of the n layers (fp32 weights: none). */
static size_t multi_slot(const linear *const *Ls, int n)
{
    size_t slot = 0;
    for (int i = 0; i < n; i++) {
        size_t k = q4_line(kernel_work(Ls[i], 1, 1, 0));
        slot = k > slot ? k : slot;
    }
    return slot;
}

size_t linear_forward_multi_work_bytes(const linear *const *Ls, int n, int n_threads)
{
    size_t rest = 0;
    for (int i = 0; i < n; i++) {
        size_t r = linear_work_bytes(Ls[i], 1, n_threads, 0);
        rest = r > rest ? r : rest;
    }
    size_t par = (size_t)resolve_threads(n_threads) * multi_slot(Ls, n);
    return par > rest ? par : rest;
}

typedef struct {
    const linear *const *Ls;
    int n, nt;
    const float *x; /* [in] */
    float *const *ys;
    char *work;
    size_t slot;
} multi_job;

/* Thread t's rows of every layer, one thread each (no nested region). */
static void multi_task(void *ctx, int64_t t0, int64_t t1, int thread)
{
    const multi_job *j = ctx;
    (void)thread;
    for (int64_t t = t0; t < t1; t++)
        for (int i = 0; i < j->n; i++) {
            const linear *L = j->Ls[i];
            int64_t r0, n;
            multi_rows(L, (int)t, j->nt, &r0, &n);
            if (n == 0)
                continue;
            float *y = j->ys[i] + r0;
            if (L->w) {
                if (!q4_sgemv(n, L->in, L->w + r0 * L->in, j->x, y, 1))
                    gemv_par(n, L->in, L->w + r0 * L->in, j->x, y, 1);
                continue;
            }
            q4_weight v = L->qw;
            /* an interleaved matrix's rows go in whole groups of 16 (gemv_par_rows' slices) */
            LK_ASSERT(!v.ilv || (r0 % 16 == 0 && (n % 16 == 0 || r0 + n == L->out)));
            v.out = n;
            v.data = (const uint8_t *)L->qw.data + (size_t)r0 * L->qw.row_bytes;
            const float *b = L->b ? L->b + r0 : NULL;
            void *kw = j->slot ? j->work + (size_t)t * j->slot : NULL;
            if (L->int8)
                q8_gemm_fwd(&v, b, j->x, 1, y, 1, kw, j->slot);
            else
                q4_gemm_fwd(&v, b, j->x, 1, y, 1, kw, j->slot);
        }
}

void linear_forward_multi(const linear *const *Ls, int n, const float *x, int64_t T,
                          float *const *ys, void *work, size_t work_size, int n_threads)
{
    const int nt = resolve_threads(n_threads);
    int corr = 0; /* an NF4 codebook correction: each layer on its own, as the full forward */
    for (int i = 0; i < n; i++)
        corr |= Ls[i]->qwc.data != NULL;
    if (T != 1 || nt <= 1 || corr) {
        for (int i = 0; i < n; i++)
            linear_forward(Ls[i], x, T, ys[i], work, work_size, n_threads);
        return;
    }
    LK_ASSERT(work_size >= linear_forward_multi_work_bytes(Ls, n, n_threads));
    multi_job j = {.Ls = Ls, .n = n, .nt = nt, .x = x, .ys = ys, .work = work,
                   .slot = multi_slot(Ls, n)};
    par_for(nt, nt, multi_task, &j);
    for (int i = 0; i < n; i++)
        forward_rest(Ls[i], x, 1, ys[i], work, NULL, 0, n_threads);
}

/* Trained adapter: gradients of A and B, and its share of dx (through the dropout mask). kept:
 * u = x_d·Aᵀ [T, r] as the training forward kept it (linear_forward_train_keep), or NULL. */
static void lora_backward_train(const linear *L, const float *x, const float *dy, int64_t T,
                                float *dx, float *tmp, const float *kept, uint64_t key, int nt)
{
    const lora_delta *d = &L->lora[0];
    lora_train *tr = L->train;
    int64_t r = d->r, in = L->in, out = L->out;
    float *u = tmp, *wt = tmp + T * linear_max_rank(L), *xd = tmp + lora_floats(L, T);
    const float *xin = lora_input(L, x, T, key, xd);
    /* u[T,r] = x_d·Aᵀ (unless kept: the same call's bits);  dB[out,r] += s·dyᵀ·u */
    if (!kept)
        lora_mm(0, 1, T, r, in, 1.0f, xin, in, d->A, in, 0, u, r, wt, nt);
    lora_mm(1, 0, out, r, T, d->scale, dy, out, kept ? kept : u, r, 1, tr->dB, r, NULL, nt);
    /* du[T,r] = s·dy·B (reusing u);  dA[r,in] += duᵀ·x_d */
    lora_mm(0, 0, T, r, out, d->scale, dy, out, d->B, r, 0, u, r, NULL, nt);
    lora_mm(1, 0, r, in, T, 1.0f, u, r, xin, in, 1, tr->dA, in, NULL, nt);
    if (!dx)
        return;
    if (xin == x) { /* dx += du·A */
        lora_mm(0, 0, T, in, r, 1.0f, u, r, d->A, in, 1, dx, in, NULL, nt);
        return;
    }
    /* with dropout: dx += (du·A)·m/(1−p); x_d is no longer needed, reuse it for du·A */
    lora_mm(0, 0, T, in, r, 1.0f, u, r, d->A, in, 0, xd, in, NULL, nt);
    float p = tr->dropout, keep = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < T * L->in; i++) {
        float v = (float)(rng_hash(key, (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
        dx[i] += v < p ? 0.0f : xd[i] * keep;
    }
}

/* linear_backward (set 0: dx +=) and linear_backward_set (set 1: dx =, the base product written
 * straight into dx, the adapters' terms added after it); u: the trained adapter's kept u, or
 * NULL. */
static void backward(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                     const float *u, void *work, size_t work_size, uint64_t mask_key, int n_threads,
                     int set)
{
    LK_ASSERT(work_size >= linear_work_bytes(L, T, n_threads, 1));
    int64_t in = L->in, out = L->out;
    float *tmp = work;     /* [tmp_floats(L, T, 1)] */
    const float *dyf = dy; /* dy in the order of W's rows */
    if (dx && L->perm_heads > 0) {
        float *p = perm_part(L, tmp, T, 1);
        rows_to_file(L, dy, T, p, n_threads);
        dyf = p;
    }
    if (dx && L->w) { /* dx[T,in] += dy[T,out]·W[out,in] */
        gemm_par(0, 0, T, in, out, 1.0f, dyf, out, L->w, in, set ? 0.0f : 1.0f, dx, in, n_threads);
    } else if (dx) {
        size_t kn;
        void *kw = kernel_part(L, T, 1, work, work_size, &kn);
        if (L->qwt.data) { /* dx (+)= dy·W = dy·(Wᵀ)ᵀ: the int8 forward of the transposed copy */
            if (set)
                q8_gemm_fwd(&L->qwt, NULL, dyf, T, dx, n_threads, kw, kn);
            else
                q8_gemm_fwd_add(&L->qwt, dyf, T, dx, n_threads, kw, kn);
        } else { /* fused kernel (set: into dx; else into the end of tmp, then added) */
            float *dq = set ? dx : shared_part(L, tmp, T);
            q4_gemm_bwd(&L->qw, dyf, T, dq, n_threads, kw, kn);
            if (!set)
                add_par(dx, dq, T * in, n_threads);
        }
    }
    for (int i = 0; i < L->n_lora; i++) {
        const lora_delta *d = &L->lora[i];
        if (i == 0 && L->train) {
            lora_backward_train(L, x, dy, T, dx, tmp, u, mask_key, n_threads);
        } else if (dx) { /* frozen adapter: dx += s·(dy·B)·A */
            lora_mm(0, 0, T, d->r, out, d->scale, dy, out, d->B, d->r, 0, tmp, d->r, NULL,
                    n_threads);
            lora_mm(0, 0, T, in, d->r, 1.0f, tmp, d->r, d->A, in, 1, dx, in, NULL, n_threads);
        }
    }
}

void linear_backward(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                     void *work, size_t work_size, uint64_t mask_key, int n_threads)
{
    backward(L, x, dy, T, dx, NULL, work, work_size, mask_key, n_threads, 0);
}

void linear_backward_set(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                         void *work, size_t work_size, uint64_t mask_key, int n_threads)
{
    LK_ASSERT(dx != NULL);
    backward(L, x, dy, T, dx, NULL, work, work_size, mask_key, n_threads, 1);
}

void linear_backward_kept(const linear *L, const float *x, const float *dy, int64_t T, float *dx,
                          const float *u, int set, void *work, size_t work_size, uint64_t mask_key,
                          int n_threads)
{
    LK_ASSERT(L->train && L->n_lora > 0 && u && (dx || !set));
    backward(L, x, dy, T, dx, u, work, work_size, mask_key, n_threads, set);
}

linear linear_rows(const linear *L, int64_t r0, int64_t n)
{
    linear v = {.name = L->name, .in = L->in, .out = n, .int8 = L->int8, .act2 = L->act2};
    if (L->w) {
        v.w = L->w + r0 * L->in;
    } else {
        v.qw = L->qw;
        LK_ASSERT(!v.qw.ilv || (r0 % 16 == 0 && (n % 16 == 0 || r0 + n == L->out)));
        v.qw.out = n;
        v.qw.data = (const uint8_t *)L->qw.data + (size_t)r0 * L->qw.row_bytes;
    }
    if (L->qwt.data) { /* columns [r0, r0+n) of Wᵀ: whole Q8_0 blocks of its rows */
        LK_ASSERT(r0 % Q8_QK == 0);
        v.qwt = L->qwt;
        v.qwt.in = n;
        v.qwt.data = (const uint8_t *)L->qwt.data + (size_t)(r0 / Q8_QK) * sizeof(q4_block_q8_0);
    }
    return v;
}

void linear_forward_ref(const linear *L, const float *x, int64_t T, float *y)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < L->out; o++) {
            int64_t fo = file_row(L, o);
            double acc = L->b ? L->b[fo] : 0.0;
            for (int64_t i = 0; i < L->in; i++) {
                double w = L->w[fo * L->in + i];
                /* W + Σ scale·B·A, formed element by element */
                for (int k = 0; k < L->n_lora; k++) {
                    const lora_delta *d = &L->lora[k];
                    for (int64_t j = 0; j < d->r; j++)
                        w += (double)d->scale * d->B[o * d->r + j] * d->A[j * L->in + i];
                }
                acc += (double)x[t * L->in + i] * w;
            }
            y[t * L->out + o] = (float)acc;
        }
}
