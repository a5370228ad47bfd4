/* test_compute.c — --compute int8 against f32 compute. One training step's LoRA gradient (every
 * dA and dB of a stories260K-hf adapter whose B is not zero, concatenated) against the f32 path's
 * on Q4_0, NF4 and Q8_0 bases (Q8_0 embeddings: the LM head on int8 too): the cosines measured
 * are 0.99946 (Q4_0), 0.99966 (NF4) and 0.99953 (Q8_0), and 0.99958 on SmolLM2-135M-Instruct's
 * Q4_1 GGUF, with the decoder's activations in two int8 terms (linear.act2) and NF4's codebook
 * correction (linear.qwc); the test holds them at issue 13's bound, 0.999, and the norms within
 * 1 % (BENCHMARKS.md "int8 compute"; with one int8 term they were 0.9966-0.9990).
 * Two-term activations (training forwards): 50x+ closer to fp32 than one term, rows independent
 * (one row alone included); inference forwards keep one term.
 * A linear layer's int8 forward and dx are close to fp32's, and its row chunks (the LM head's)
 * are exact slices: the forward rows bit for bit, dx on the transposed copy's column view
 * bit-identical to the transposed copy of the chunk itself. The names, the checks, the memory
 * plan counting the transposed copies, and a resume under another compute mode refused. Under a
 * tight --memory-limit the plan keeps fewer copies (built per layer before its backward): the
 * same step, bit for bit; without the LM head's copy (its dx on the f32 kernel) a close one. A
 * distillation teacher on int8 gives way to f32 when that lets the student keep int8. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/linear.h"
#include "q8.h"
#include "q8_ilv.h"
#include "testutil.h"
#include "train/trainer.h"

#define MODEL "models/stories260K-hf"

static const char *sample(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/../../samples/data/%s", LK_TEST_DATA, name);
    return p;
}

/* limit: lk_model_params.memory_limit (--compute auto's budget) */
static struct lk_model_params model_params(lk_qtype quant, lk_qtype qembed, lk_compute compute,
                                           int64_t limit)
{
    struct lk_model_params mp = lk_model_params_default();
    mp.n_threads = 2;
    mp.quant = quant;
    mp.quant_embed = qembed;
    mp.compute = compute;
    mp.memory_limit = limit;
    return mp;
}

static lk_model *load_limit(const char *path, lk_qtype quant, lk_qtype qembed, lk_compute compute,
                            int64_t limit)
{
    struct lk_model_params mp = model_params(quant, qembed, compute, limit);
    lk_model *m;
    assert_ok(lk_model_load(path, &mp, &m));
    return m;
}

static lk_model *load(lk_qtype quant, lk_qtype qembed, lk_compute compute)
{
    require_file(shared_path(MODEL "/model.safetensors"));
    return load_limit(shared_path(MODEL), quant, qembed, compute, 0);
}

/* The tokenizer of the last model folder data_for was given (a dataset borrows it); freed at the
 * end. */
static lk_tokenizer *g_tok;
static char g_tok_path[4096];

/* The whale data as rows of seq tokens by the tokenizer of the model at path. */
static lk_dataset *data_for(const char *path, int64_t seq)
{
    if (!g_tok || strcmp(g_tok_path, path) != 0) {
        lk_tokenizer_free(g_tok);
        assert_ok(lk_tokenizer_load(path, &g_tok));
        snprintf(g_tok_path, sizeof g_tok_path, "%s", path);
    }
    struct lk_dataset_params dp = lk_dataset_params_default();
    dp.seq_len = seq;
    lk_dataset *d;
    assert_ok(lk_dataset_load(sample("whale-train.jsonl"), g_tok, &dp, &d));
    return d;
}

static lk_dataset *data(void)
{
    return data_for(shared_path(MODEL), 128);
}

static struct lk_train_params params(void)
{
    struct lk_train_params p = lk_train_params_default();
    p.rank = 4;
    p.alpha = 8;
    p.lr = 3e-3f;
    p.batch = 2;
    p.steps = 4;
    p.max_grad_norm = 0; /* the raw gradient */
    return p;
}

/* A heap copy of t's gradient (*n floats); frees t and its data d. */
static float *take_grads(lk_trainer *t, lk_dataset *d, int64_t *n)
{
    *n = t->lora.n_params;
    float *g = malloc((size_t)*n * sizeof *g);
    assert_non_null(g);
    memcpy(g, t->lora.grads, (size_t)*n * sizeof *g);
    lk_trainer_free(t);
    lk_dataset_free(d);
    return g;
}

/* One step from the adapter in dir on m (d's rows): its gradient into a heap copy of n_params
 * floats. */
static float *one_step_grad(lk_model *m, const char *path, int64_t seq, const char *dir, int64_t *n)
{
    lk_dataset *d = data_for(path, seq);
    struct lk_train_params p = params();
    p.init_adapter = dir;
    lk_trainer *t;
    assert_ok(lk_trainer_create(m, d, &p, &t));
    struct lk_step_stats st;
    assert_ok(lk_trainer_step(t, &st));
    assert_false(st.skipped);
    return take_grads(t, d, n);
}

static double cosine(const float *a, const float *b, int64_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* A few f32 steps give the adapter a B that is not zero (a fresh one has dA = 0), saved to dir;
 * then one step from it on the f32 and on the int8 model. */
static void check_grad_cosine(const char *path, int64_t seq, lk_qtype quant, lk_qtype qembed,
                              double min_cos)
{
    char dir[4200];
    static int run;
    snprintf(dir, sizeof dir, "%s/start-%d", g_dir, run++);
    lk_model *mf = load_limit(path, quant, qembed, LK_COMPUTE_F32, 0);
    lk_model *mi = load_limit(path, quant, qembed, LK_COMPUTE_INT8, 0);
    assert_int_equal(lk_model_int8_matrices(mf), 0);
    const struct lk_model_config *c = lk_model_get_config(mi);
    int head =
        lk_model_int8_matrices(mf) >= 0 && strstr(path, ".gguf") ? 1 : qembed != LK_QTYPE_F32;
    assert_int_equal(lk_model_int8_matrices(mi), 7 * c->n_layers + head);
    lk_dataset *d = data_for(path, seq);
    struct lk_train_params p = params();
    lk_trainer *t;
    assert_ok(lk_trainer_create(mf, d, &p, &t));
    for (int i = 0; i < 3; i++) {
        struct lk_step_stats st;
        assert_ok(lk_trainer_step(t, &st));
    }
    assert_ok(lk_trainer_save_adapter(t, dir, "stories260K-hf", 0));
    lk_trainer_free(t);
    lk_dataset_free(d);
    int64_t nf, ni;
    float *gf = one_step_grad(mf, path, seq, dir, &nf);
    float *gi = one_step_grad(mi, path, seq, dir, &ni);
    assert_int_equal(nf, ni);
    double cs = cosine(gf, gi, nf);
    double nfn = 0, nin = 0;
    for (int64_t i = 0; i < nf; i++) {
        nfn += (double)gf[i] * gf[i];
        nin += (double)gi[i] * gi[i];
    }
    fprintf(stderr, "%s base, %s embeddings: gradient cosine int8 vs f32 %.6f, norm ratio %.5f\n",
            lk_qtype_name(quant), lk_qtype_name(qembed), cs, sqrt(nin / nfn));
    assert_true(nfn > 0);
    assert_true(cs >= min_cos);
    assert_true(fabs(sqrt(nin / nfn) - 1) < 0.01);
    free(gf);
    free(gi);
    lk_model_free(mf);
    lk_model_free(mi);
}

static void test_grad_cosine_q4_0(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    check_grad_cosine(shared_path(MODEL), 128, LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, 0.999); /* 0.99946 */
}

static void test_grad_cosine_nf4(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    check_grad_cosine(shared_path(MODEL), 128, LK_QTYPE_NF4, LK_QTYPE_F32, 0.999); /* 0.99966 */
}

static void test_grad_cosine_q8_0(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    check_grad_cosine(shared_path(MODEL), 128, LK_QTYPE_Q8_0, LK_QTYPE_Q8_0, 0.999); /* 0.99953 */
}

/* ‖a − b‖ / ‖b‖ */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(e / s);
}

static void randn(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((double)(rng_hash(seed, (uint64_t)i) >> 11) / 9007199254740992.0 - 0.5);
}

/* A Q4_0 layer [OUT, IN] (IN not a whole number of blocks): int8 forward and dx within 2 % of
 * fp32's (linear_backward_set's dx equal to linear_backward's into zeros, in both); rows
 * [32, 96) as a chunk: forward rows identical, dx on the column view of the whole transposed
 * copy identical to that of the chunk's own copy. */
static void test_linear_int8(void **state)
{
    (void)state;
    enum { OUT = 128, IN = 200, T = 5, R0 = 32, N = 64 };
    float *w = malloc(OUT * IN * sizeof(float)), *x = malloc(T * IN * sizeof(float));
    float *dy = malloc(T * OUT * sizeof(float)), *y8 = malloc(T * OUT * sizeof(float));
    float *yf = malloc(T * OUT * sizeof(float)), *dx8 = calloc(T * IN, sizeof(float));
    float *dxf = calloc(T * IN, sizeof(float)), *yc = malloc(T * N * sizeof(float));
    float *dxa = calloc(T * IN, sizeof(float)), *dxb = calloc(T * IN, sizeof(float));
    randn(w, OUT * IN, 1);
    randn(x, T * IN, 2);
    randn(dy, T * OUT, 3);
    size_t rb = q4_row_bytes(LK_QTYPE_Q4_0, 32, IN);
    void *q = malloc(OUT * rb);
    q4_quantize_matrix(LK_QTYPE_Q4_0, 32, w, OUT, IN, q, 1, NULL, NULL);
    linear L = {.name = "test", .in = IN, .out = OUT};
    assert_ok(q4_weight_init(&L.qw, LK_QTYPE_Q4_0, 32, OUT, IN, q));
    void *qt = malloc(q8_transpose_bytes(&L.qw));
    size_t ws = 1 << 20;
    void *work = malloc(ws);
    /* fp32 compute */
    assert_true(linear_work_bytes(&L, T, 2, 1) <= ws);
    linear_forward(&L, x, T, yf, work, ws, 2);
    linear_backward(&L, x, dy, T, dxf, work, ws, 0, 2);
    float *dxs = malloc(T * IN * sizeof(float)); /* linear_backward_set: = what += gives on 0 */
    for (int64_t i = 0; i < T * IN; i++)
        dxs[i] = NAN;
    linear_backward_set(&L, x, dy, T, dxs, work, ws, 0, 2);
    assert_memory_equal(dxs, dxf, T * IN * sizeof(float));
    /* int8 compute with the transposed copy */
    L.int8 = 1;
    assert_ok(q8_transpose(&L.qw, qt, &L.qwt, 2));
    assert_true(linear_work_bytes(&L, T, 2, 1) <= ws);
    linear_forward(&L, x, T, y8, work, ws, 2);
    linear_backward(&L, x, dy, T, dx8, work, ws, 0, 2);
    for (int64_t i = 0; i < T * IN; i++)
        dxs[i] = NAN;
    linear_backward_set(&L, x, dy, T, dxs, work, ws, 0, 2);
    assert_memory_equal(dxs, dx8, T * IN * sizeof(float));
    free(dxs);
    fprintf(stderr, "int8 vs f32: forward %.4f, dx %.4f relative\n", rel_err(y8, yf, T * OUT),
            rel_err(dx8, dxf, T * IN));
    assert_true(rel_err(y8, yf, T * OUT) < 0.02);
    assert_true(rel_err(dx8, dxf, T * IN) < 0.02);
    /* the chunk [R0, R0+N) */
    linear c = linear_rows(&L, R0, N);
    assert_true(c.int8 && c.qwt.data != NULL);
    linear_forward(&c, x, T, yc, work, ws, 2);
    for (int t = 0; t < T; t++)
        assert_memory_equal(yc + t * N, y8 + t * OUT + R0, N * sizeof(float));
    float *dyc = malloc(T * N * sizeof(float));
    for (int t = 0; t < T; t++)
        memcpy(dyc + t * N, dy + t * OUT + R0, N * sizeof(float));
    linear_backward(&c, NULL, dyc, T, dxa, work, ws, 0, 2);
    linear own = {.name = "chunk", .in = IN, .out = N, .int8 = 1};
    assert_ok(q4_weight_init(&own.qw, LK_QTYPE_Q4_0, 32, N, IN, (char *)q + R0 * rb));
    void *qt2 = malloc(q8_transpose_bytes(&own.qw));
    assert_ok(q8_transpose(&own.qw, qt2, &own.qwt, 1));
    linear_backward(&own, NULL, dyc, T, dxb, work, ws, 0, 2);
    assert_memory_equal(dxa, dxb, T * IN * sizeof(float));
    free(qt2);
    free(dyc);
    free(qt);
    free(work);
    free(q);
    free(w);
    free(x);
    free(dy);
    free(y8);
    free(yf);
    free(dx8);
    free(dxf);
    free(yc);
    free(dxa);
    free(dxb);
}

/* Two-term activations (linear.act2): a Q4_0 layer's int8 forward (inputs with an outlier per
 * row, as the models' activations have) is more than 50x closer to the fp32-compute forward than
 * with one int8 term (the residual's term takes a block's rounding error from d/2 to d/508), and
 * each row's result is the same whatever rows come with it (4, or 1 alone); linear_forward (the
 * inference forward) gives the one-term result. */
static void test_linear_two_terms(void **state)
{
    (void)state;
    enum { OUT = 96, IN = 200, T = 6 };
    float *w = malloc(OUT * IN * sizeof(float)), *x = malloc(T * IN * sizeof(float));
    float *yf = malloc(T * OUT * sizeof(float)), *y1 = malloc(T * OUT * sizeof(float));
    float *y2 = malloc(T * OUT * sizeof(float));
    randn(w, OUT * IN, 4);
    randn(x, T * IN, 5);
    for (int t = 0; t < T; t++)
        x[t * IN + 7 * t + 3] = 40.0f; /* an outlier in one block of each row */
    size_t rb = q4_row_bytes(LK_QTYPE_Q4_0, 32, IN);
    void *q = malloc(OUT * rb);
    q4_quantize_matrix(LK_QTYPE_Q4_0, 32, w, OUT, IN, q, 1, NULL, NULL);
    linear L = {.name = "test", .in = IN, .out = OUT};
    assert_ok(q4_weight_init(&L.qw, LK_QTYPE_Q4_0, 32, OUT, IN, q));
    size_t ws = 1 << 20;
    void *work = malloc(ws);
    linear_forward(&L, x, T, yf, work, ws, 2);
    L.int8 = 1;
    linear_forward(&L, x, T, y1, work, ws, 2);
    L.act2 = 1;
    assert_true(linear_work_bytes(&L, T, 2, 1) <= ws);
    float *yi = malloc(T * OUT * sizeof(float)); /* inference forwards: one term, as llama.cpp */
    linear_forward(&L, x, T, yi, work, ws, 2);
    assert_memory_equal(yi, y1, T * OUT * sizeof(float));
    free(yi);
    linear_forward_train(&L, x, T, y2, work, ws, 0, 2);
    double e1 = rel_err(y1, yf, T * OUT), e2 = rel_err(y2, yf, T * OUT);
    fprintf(stderr, "int8 forward vs f32: one term %.2e, two terms %.2e relative\n", e1, e2);
    assert_true(e1 > 1e-3);
    assert_true(e2 < e1 / 50);
    float *y4 = malloc(T * OUT * sizeof(float)); /* rows are independent: 4 rows, then 1 */
    linear_forward_train(&L, x, 4, y4, work, ws, 0, 2);
    assert_memory_equal(y4, y2, 4 * OUT * sizeof(float));
    linear_forward_train(&L, x + 5 * IN, 1, y4, work, ws, 0, 2);
    assert_memory_equal(y4, y2 + 5 * OUT, OUT * sizeof(float));
    free(y4);
    free(work);
    free(q);
    free(w);
    free(x);
    free(yf);
    free(y1);
    free(y2);
}

/* The shared SmolLM2-135M-Instruct GGUF in its own types: every Q4_1 matrix and the Q8_0 tied LM
 * head on int8 (i13-q8g's expanders), 2 rows of 64 tokens. */
static void test_grad_cosine_smollm2(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s",
             shared_path("models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf"));
    require_file(path);
    check_grad_cosine(path, 64, LK_QTYPE_F32, LK_QTYPE_F32, 0.999); /* 0.99958 */
}

/* The decoder matrices of mi (int8 compute) against mf's (f32 compute, the same file): interleaved
 * (q8_ilv.h) exactly where the int8 variant wants the layout and the type has it, every row's
 * blocks the same bytes; the LM head never; after model_int8_to_f32 every matrix in rows again,
 * byte for byte mf's. */
static void check_interleaved(lk_model *mi, const lk_model *mf)
{
    const int wants = q8_kernels_get()->wants_ilv;
    int64_t n = 0;
    for (int l = 0; l < mi->cfg.n_layers; l++)
        for (int k = 0; k < 7; k++) {
            const q4_weight *a = &layer_linear(&mi->layers[l], k)->qw;
            const q4_weight *b = &layer_linear((layer_weights *)&mf->layers[l], k)->qw;
            assert_int_equal(a->ilv, wants && q8i_supports(a->qtype) && a->out >= Q8I_R);
            n += a->ilv;
            uint8_t *buf = malloc(a->row_bytes);
            const int64_t nb = (int64_t)(a->row_bytes / q8i_bsz(a->qtype));
            for (int64_t o = 0; a->ilv && o < a->out; o++)
                assert_memory_equal(q8i_blocks(a, o, 0, nb, buf),
                                    (const uint8_t *)b->data + (size_t)o * b->row_bytes,
                                    a->row_bytes);
            free(buf);
        }
    assert_int_equal(mi->lm_head.qw.ilv, 0);
    if (wants)
        assert_true(n > 0);
    model_int8_to_f32(mi, "test: back to f32");
    for (int l = 0; l < mi->cfg.n_layers; l++)
        for (int k = 0; k < 7; k++) {
            const q4_weight *a = &layer_linear(&mi->layers[l], k)->qw;
            const q4_weight *b = &layer_linear((layer_weights *)&mf->layers[l], k)->qw;
            assert_int_equal(a->ilv, 0);
            assert_memory_equal(a->data, b->data, (size_t)a->out * a->row_bytes);
        }
}

/* The row-interleaved layout at load: stories260K quantised to Q4_0 and Q8_0 at load (memory of
 * the model's own) and SmolLM2's Q4_1 GGUF (its mapping written as private pages: the f32 load
 * of the same file, mapped again, still reads the file's bytes). */
static void test_interleaved_at_load(void **state)
{
    (void)state;
    const lk_qtype qs[] = {LK_QTYPE_Q4_0, LK_QTYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        lk_model *mi = load(qs[i], LK_QTYPE_F32, LK_COMPUTE_INT8);
        lk_model *mf = load(qs[i], LK_QTYPE_F32, LK_COMPUTE_F32);
        check_interleaved(mi, mf);
        lk_model_free(mi);
        lk_model_free(mf);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s",
             shared_path("models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf"));
    require_file(path);
    lk_model *mi = load_limit(path, LK_QTYPE_F32, LK_QTYPE_F32, LK_COMPUTE_INT8, 0);
    lk_model *mf = load_limit(path, LK_QTYPE_F32, LK_QTYPE_F32, LK_COMPUTE_F32, 0);
    check_interleaved(mi, mf);
    lk_model_free(mi);
    lk_model_free(mf);
}

/* An NF4 base's inference forward (one int8 term) keeps its codebook correction (linear.qwc): the
 * logits of 64 tokens of stories260K are closer to f32 compute's with it than with the corrections
 * taken away (measured: 4.50e-3 against 6.52e-3 relative; the rest is the one-term activations'
 * rounding; every variant gives the same bits, so the margin holds wherever it runs). */
static void test_nf4_inference_correction(void **state)
{
    (void)state;
    enum { T = 64 };
    lk_model *mf = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_F32);
    lk_model *mi = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_INT8);
    int64_t V = lk_model_get_config(mf)->vocab_size;
    int32_t tok[T];
    for (int t = 0; t < T; t++)
        tok[t] = (int32_t)((t * 37 + 11) % V);
    float *lf = malloc(T * V * sizeof(float)), *l1 = malloc(T * V * sizeof(float));
    float *l0 = malloc(T * V * sizeof(float));
    assert_ok(lk_model_forward(mf, tok, T, lf));
    assert_ok(lk_model_forward(mi, tok, T, l1));
    int n = 0;
    for (int64_t l = 0; l < mi->cfg.n_layers; l++)
        for (int k = 0; k < LK_MOD_COUNT; k++) {
            linear *L = layer_linear(&mi->layers[l], k);
            n += L->qwc.data != NULL;
            L->qwc.data = NULL;
        }
    assert_int_equal(n, mi->cfg.n_layers * LK_MOD_COUNT);
    assert_ok(lk_model_forward(mi, tok, T, l0));
    double e1 = rel_err(l1, lf, T * V), e0 = rel_err(l0, lf, T * V);
    fprintf(stderr, "NF4 inference logits vs f32: with the correction %.2e, without %.2e\n", e1,
            e0);
    assert_true(e1 < 0.8 * e0);
    free(lf);
    free(l1);
    free(l0);
    lk_model_free(mf);
    lk_model_free(mi); /* frees m->q8c, not the pointers taken away above */
}

/* An inference forward's work on an int8 layer with two terms (training's) holds only the NF4
 * correction's product [T, out], not the training forward's [T, in + out]: run in exactly that
 * (a copy of the size linear_work_bytes gives, which ASan fences), it gives the bits it gives in
 * a training-sized buffer. */
static void test_inference_work(void **state)
{
    (void)state;
    enum { T = 24, NT = 2 };
    lk_model *mi = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_INT8);
    const linear *L = layer_linear(&mi->layers[0], LK_MOD_GATE);
    assert_true(L->int8 && L->act2 && L->qwc.data);
    const size_t w0 = linear_work_bytes(L, T, NT, 0), w1 = linear_work_bytes(L, T, NT, 1);
    assert_true(w0 + (size_t)(T * L->in) * sizeof(float) <= w1);
    float *x = malloc((size_t)(T * L->in) * sizeof(float));
    float *y0 = malloc((size_t)(T * L->out) * sizeof(float));
    float *y1 = malloc((size_t)(T * L->out) * sizeof(float));
    for (int64_t i = 0; i < T * L->in; i++)
        x[i] = (float)((i * 7919) % 201 - 100) / 64.0f;
    void *a = malloc(w0), *b = malloc(w1);
    linear_forward(L, x, T, y0, a, w0, NT);
    linear_forward(L, x, T, y1, b, w1, NT);
    assert_memory_equal(y0, y1, (size_t)(T * L->out) * sizeof(float));
    lk_model *mq = load(LK_QTYPE_Q4_0, LK_QTYPE_F32, LK_COMPUTE_INT8); /* no correction: no area */
    const linear *Q = layer_linear(&mq->layers[0], LK_MOD_GATE);
    assert_true(linear_work_bytes(Q, T, NT, 0) + (size_t)(T * Q->out) * sizeof(float) <=
                linear_work_bytes(L, T, NT, 0) + 64);
    free(a);
    free(b);
    free(x);
    free(y0);
    free(y1);
    lk_model_free(mi);
    lk_model_free(mq);
}

static void test_names_and_checks(void **state)
{
    (void)state;
    lk_compute c;
    assert_ok(lk_compute_from_name("int8", &c));
    assert_int_equal(c, LK_COMPUTE_INT8);
    assert_ok(lk_compute_from_name("f32", &c));
    assert_int_equal(c, LK_COMPUTE_F32);
    assert_string_equal(lk_compute_name(LK_COMPUTE_INT8), "int8");
    assert_string_equal(lk_compute_name((lk_compute)9), "?");
    assert_ok(lk_compute_from_name("auto", &c));
    assert_int_equal(c, LK_COMPUTE_AUTO);
    assert_status(lk_compute_from_name("i8", &c), LK_ERR_ARG,
                  "--compute 'i8': expected f32, int8 or auto");
    struct lk_model_params mp = lk_model_params_default();
    assert_int_equal(mp.compute, LK_COMPUTE_AUTO);
    mp.compute = (lk_compute)7;
    assert_status(lk_model_params_check(&mp), LK_ERR_ARG,
                  "--compute 7: expected f32, int8 or auto");
    mp.compute = LK_COMPUTE_AUTO;
    mp.memory_limit = -1;
    assert_status(lk_model_params_check(&mp), LK_ERR_ARG, "--memory-limit must be at least 0");
}

static lk_model *load_auto(lk_compute compute, int64_t limit)
{
    return load_limit(shared_path(MODEL), LK_QTYPE_NF4, LK_QTYPE_F32, compute, limit);
}

/* --compute auto (the default) on an NF4 base: int8 when the weights with the codebook corrections
 * fit the limit, f32 when only the weights do (no corrections built); a trainer turns an int8
 * choice to f32 when int8's least plan does not fit, and trains on f32; an explicit int8 stays int8
 * under any limit. Each says why (lk_model_compute_reason). */
static void test_auto_compute(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    lk_model *mf = load_auto(LK_COMPUTE_F32, 0), *mi = load_auto(LK_COMPUTE_INT8, 0);
    const int64_t wf = lk_model_weight_bytes(mf), wi = lk_model_weight_bytes(mi);
    assert_true(wi > wf); /* the corrections */
    assert_string_equal(lk_model_compute_reason(mi), "given");
    lk_model *a = load_auto(LK_COMPUTE_AUTO, wi);
    assert_int_equal(lk_model_compute(a), LK_COMPUTE_INT8);
    assert_int_equal(lk_model_weight_bytes(a), wi);
    assert_non_null(strstr(lk_model_compute_reason(a), "auto: int8, its weights ("));
    lk_model *b = load_auto(LK_COMPUTE_AUTO, wi - 1);
    assert_int_equal(lk_model_compute(b), LK_COMPUTE_F32);
    assert_int_equal(lk_model_int8_matrices(b), 0);
    assert_int_equal(lk_model_weight_bytes(b), wf);
    assert_non_null(strstr(lk_model_compute_reason(b), "auto: f32, int8's weights ("));
    assert_non_null(strstr(lk_model_compute_reason(b), "with the NF4 corrections'"));
    lk_model *e = load_auto(LK_COMPUTE_INT8, 1); /* given: the limit does not decide */
    assert_int_equal(lk_model_compute(e), LK_COMPUTE_INT8);
    /* the trainer's check: the least int8 plan against p.memory_limit */
    struct lk_train_params p = params();
    p.checkpointing = LK_CKPT_ON; /* the least plans: one layer's activations */
    int64_t ad, o, act;
    const int64_t least_f32 = wf + lk_trainer_memory_plan(mf, &p, 128, &ad, &o, &act);
    p.memory_limit = least_f32 + 1;
    assert_ok(lk_trainer_choose_compute(mi, &p, 128)); /* given: nothing changes */
    assert_int_equal(lk_model_compute(mi), LK_COMPUTE_INT8);
    assert_ok(lk_trainer_choose_compute(a, &p, 128));
    assert_int_equal(lk_model_compute(a), LK_COMPUTE_F32);
    assert_int_equal(lk_model_weight_bytes(a), wf);
    assert_non_null(strstr(lk_model_compute_reason(a), "auto: f32, int8's least training plan"));
    lk_model *c = load_auto(LK_COMPUTE_AUTO, 0);
    p.memory_limit = 0; /* the memory available: this tiny model's plan fits */
    assert_ok(lk_trainer_choose_compute(c, &p, 128));
    assert_int_equal(lk_model_compute(c), LK_COMPUTE_INT8);
    assert_non_null(strstr(lk_model_compute_reason(c), "auto: int8, int8's least training plan"));
    p.memory_limit = least_f32 + 1; /* decided once: a later check under less keeps int8 */
    assert_ok(lk_trainer_choose_compute(c, &p, 128));
    assert_int_equal(lk_model_compute(c), LK_COMPUTE_INT8);
    /* the turned model trains as an f32 one does: the same loss */
    lk_dataset *d = data();
    lk_trainer *t;
    struct lk_step_stats sa, sf;
    assert_ok(lk_trainer_create(a, d, &p, &t));
    assert_ok(lk_trainer_step(t, &sa));
    lk_trainer_free(t);
    lk_dataset_free(d);
    d = data();
    assert_ok(lk_trainer_create(mf, d, &p, &t));
    assert_ok(lk_trainer_step(t, &sf));
    lk_trainer_free(t);
    lk_dataset_free(d);
    assert_true(sa.loss == sf.loss);
    lk_model_free(mf);
    lk_model_free(mi);
    lk_model_free(a);
    lk_model_free(b);
    lk_model_free(c);
    lk_model_free(e);
}

/* An NF4 base under auto within limit less held, a resumed run's mode given (NULL: it does not
 * fit). */
static lk_model *load_held(int64_t limit, int64_t held, lk_compute resumed)
{
    struct lk_model_params mp = model_params(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_AUTO, limit);
    mp.memory_held = held;
    mp.resume_compute = resumed;
    lk_model *m = NULL;
    lk_status s = lk_model_load(shared_path(MODEL), &mp, &m);
    assert_true(s == LK_OK || s == LK_ERR_NOMEM);
    return m;
}

/* One budget for every --memory-limit (lk_memory_budget); --compute auto within what another
 * model (a teacher's student) holds of it; a resumed run's mode taken under auto (f32 whatever the
 * memory, int8 when it fits, else LK_ERR_NOMEM naming both at load or, for the training plan, in
 * lk_trainer_choose_compute, which never turns it to f32); a checkpoint's mode read back. */
static void test_auto_budget(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    const char *what = NULL;
    assert_int_equal(lk_memory_budget(12345, &what), 12345);
    assert_string_equal(what, "--memory-limit");
    assert_true(lk_memory_budget(0, &what) > 0);
    assert_true(strcmp(what, "--memory-limit") != 0);
    lk_model *mi = load_auto(LK_COMPUTE_INT8, 0);
    const int64_t wi = lk_model_weight_bytes(mi), held = 1 << 20;
    lk_model *a = load_held(wi + held, held, LK_COMPUTE_AUTO);
    assert_int_equal(lk_model_compute(a), LK_COMPUTE_INT8);
    lk_model *b = load_held(wi + held - 1, held, LK_COMPUTE_AUTO);
    assert_int_equal(lk_model_compute(b), LK_COMPUTE_F32);
    assert_non_null(strstr(lk_model_compute_reason(b), "MiB left of the"));
    assert_non_null(strstr(lk_model_compute_reason(b), "(--memory-limit) beside the 1.0 MiB"));
    /* resumed: f32 under any budget, int8 when it fits, else an error naming int8 */
    lk_model *c = load_held(0, 0, LK_COMPUTE_F32);
    assert_int_equal(lk_model_compute(c), LK_COMPUTE_F32);
    assert_string_equal(lk_model_compute_reason(c), "checkpoint: f32, the mode of the run resumed");
    assert_null(load_held(wi - 1, 0, LK_COMPUTE_INT8));
    assert_non_null(strstr(lk_last_error(), "the run resumed was trained with --compute int8, "
                                            "which needs its weights ("));
    lk_model *d = load_held(wi, 0, LK_COMPUTE_INT8);
    assert_int_equal(lk_model_compute(d), LK_COMPUTE_INT8);
    assert_non_null(strstr(lk_model_compute_reason(d), "checkpoint: int8, the mode of the run"));
    struct lk_train_params p = params();
    p.checkpointing = LK_CKPT_ON;
    p.memory_limit = wi; /* the weights fit, the least plan does not */
    assert_status(lk_trainer_choose_compute(d, &p, 128), LK_ERR_NOMEM,
                  "--compute int8, which needs its least training plan (");
    assert_int_equal(lk_model_compute(d), LK_COMPUTE_INT8); /* not turned */
    p.memory_limit = 0;
    assert_ok(lk_trainer_choose_compute(d, &p, 128));
    assert_non_null(strstr(lk_model_compute_reason(d), "checkpoint: int8, the mode of the run "
                                                       "resumed; its least training plan ("));
    p.memory_limit = wi; /* decided once: a later check keeps it */
    assert_ok(lk_trainer_choose_compute(d, &p, 128));
    assert_int_equal(lk_model_compute(d), LK_COMPUTE_INT8);
    /* a checkpoint's mode */
    lk_dataset *ds = data();
    lk_trainer *t;
    assert_ok(lk_trainer_create(mi, ds, &p, &t));
    const char *ck = tmp_path("mode.ckpt");
    assert_ok(lk_trainer_save_checkpoint(t, ck));
    lk_compute got = LK_COMPUTE_AUTO;
    assert_ok(lk_trainer_checkpoint_compute(ck, &got));
    assert_int_equal(got, LK_COMPUTE_INT8);
    lk_trainer_free(t);
    lk_dataset_free(ds);
    lk_model_free(mi);
    lk_model_free(a);
    lk_model_free(b);
    lk_model_free(c);
    lk_model_free(d);
}

/* An NF4 teacher of compute beside the student s (its weights held) within limit. */
static lk_model *load_teacher(int64_t limit, const lk_model *s, lk_compute compute)
{
    struct lk_model_params mp = model_params(LK_QTYPE_NF4, LK_QTYPE_F32, compute, limit);
    mp.memory_held = lk_model_weight_bytes(s);
    lk_model *t;
    assert_ok(lk_model_load(shared_path(MODEL), &mp, &t));
    return t;
}

/* The least plan of the student s beside the teacher t (what a one-byte budget keeps). */
static int64_t least_kd(const lk_model *s, lk_model *t, const struct lk_train_params *p)
{
    struct lk_train_params q = *p;
    q.teacher = t;
    q.memory_limit = 1;
    int64_t ad, o, act;
    return lk_model_weight_bytes(s) + lk_model_weight_bytes(t) +
           lk_trainer_memory_plan(s, &q, 128, &ad, &o, &act);
}

/* The student s and its teacher t under auto within limit, s resumed from resumed's mode (auto:
 * none), and lk_trainer_choose_compute's status. */
static lk_status choose_kd(int64_t limit, lk_compute resumed, lk_model **s, lk_model **t)
{
    *s = load_held(limit, 0, resumed);
    assert_non_null(*s);
    *t = load_teacher(limit, *s, LK_COMPUTE_AUTO);
    assert_int_equal(lk_model_compute(*t), LK_COMPUTE_INT8); /* its weights fit beside s's */
    struct lk_train_params p = params();
    p.objective = LK_OBJ_KD;
    p.teacher = *t;
    p.memory_limit = limit;
    return lk_trainer_choose_compute(*s, &p, 128);
}

/* choose_kd within limit, then the student's and the teacher's compute and a phrase of the
 * student's reason (of_teacher: the teacher's). */
static void expect_kd(int64_t limit, lk_compute resumed, lk_compute s_want, lk_compute t_want,
                      int of_teacher, const char *phrase)
{
    lk_model *s, *t;
    assert_ok(choose_kd(limit, resumed, &s, &t));
    assert_int_equal(lk_model_compute(s), s_want);
    assert_int_equal(lk_model_compute(t), t_want);
    assert_non_null(strstr(lk_model_compute_reason(of_teacher ? t : s), phrase));
    lk_model_free(s);
    lk_model_free(t);
}

/* Distillation under --compute auto: the model trained gets int8 first. Its least int8 plan with
 * an int8 teacher fits: both int8; one byte less: the teacher turns to f32 (its corrections freed:
 * the weights of a teacher loaded on f32) and the student keeps int8; less than the plan with the
 * teacher on f32: the student turns to f32 and the teacher keeps int8 where the student's f32 plan
 * fits beside it, else gives way again. A resumed int8 student: the teacher gives way, or
 * LK_ERR_NOMEM naming the plan, the teacher's share and the limit. The turned teacher trains as a
 * teacher loaded on f32 does: the same loss, bit for bit. */
static void test_teacher_gives_way(void **state)
{
    (void)state;
    require_file(shared_path(MODEL "/model.safetensors"));
    struct lk_train_params p = params();
    p.objective = LK_OBJ_KD;
    lk_model *si = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_INT8);
    lk_model *sf = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_F32);
    lk_model *ti = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_INT8);
    lk_model *tf = load(LK_QTYPE_NF4, LK_QTYPE_F32, LK_COMPUTE_F32);
    const int64_t ii = least_kd(si, ti, &p), i_f = least_kd(si, tf, &p);
    const int64_t fi = least_kd(sf, ti, &p), ff = least_kd(sf, tf, &p);
    assert_true(i_f < ii && fi < i_f && ff < fi - 1); /* the window each case below needs */
    expect_kd(ii, LK_COMPUTE_AUTO, LK_COMPUTE_INT8, LK_COMPUTE_INT8, 0, "MiB, on int8) fits the");
    lk_model *s, *t;
    assert_ok(choose_kd(ii - 1, LK_COMPUTE_AUTO, &s, &t)); /* the teacher gives way */
    assert_int_equal(lk_model_compute(s), LK_COMPUTE_INT8);
    assert_int_equal(lk_model_compute(t), LK_COMPUTE_F32);
    assert_int_equal(lk_model_weight_bytes(t), lk_model_weight_bytes(tf));
    assert_non_null(strstr(lk_model_compute_reason(s), "MiB, on f32) fits the"));
    assert_non_null(strstr(lk_model_compute_reason(s), "with the teacher on f32 (on int8: "));
    assert_non_null(strstr(lk_model_compute_reason(t), "auto: f32, giving way to the model "
                                                       "trained: its int8 least training plan ("));
    /* the turned teacher is a teacher loaded on f32: the same step */
    struct lk_step_stats st_turned, st_f32;
    lk_dataset *d = data();
    lk_trainer *tr;
    p.teacher = t;
    assert_ok(lk_trainer_create(s, d, &p, &tr));
    assert_ok(lk_trainer_step(tr, &st_turned));
    lk_trainer_free(tr);
    lk_dataset_free(d);
    d = data();
    p.teacher = tf;
    assert_ok(lk_trainer_create(si, d, &p, &tr));
    assert_ok(lk_trainer_step(tr, &st_f32));
    lk_trainer_free(tr);
    lk_dataset_free(d);
    assert_true(isfinite(st_f32.loss) && st_turned.loss == st_f32.loss);
    assert_true(st_turned.kd == st_f32.kd);
    lk_model_free(s);
    lk_model_free(t);
    /* the student's int8 cannot fit: its f32 plan fits beside the teacher's int8 */
    expect_kd(i_f - 1, LK_COMPUTE_AUTO, LK_COMPUTE_F32, LK_COMPUTE_INT8, 0,
              "even with the teacher on f32 (on int8: ");
    /* nor beside it: the teacher gives way to the f32 plan */
    expect_kd(fi - 1, LK_COMPUTE_AUTO, LK_COMPUTE_F32, LK_COMPUTE_F32, 1,
              "giving way to the model trained: its f32 least training plan (");
    /* resumed int8: the teacher gives way */
    expect_kd(ii - 1, LK_COMPUTE_INT8, LK_COMPUTE_INT8, LK_COMPUTE_F32, 0,
              "checkpoint: int8, the mode of the run resumed; its least training plan (");
    assert_status(choose_kd(i_f - 1, LK_COMPUTE_INT8, &s, &t), LK_ERR_NOMEM,
                  "--compute int8, which needs its least training plan (");
    assert_non_null(strstr(lk_last_error(), "; the teacher's share "));
    assert_non_null(strstr(lk_last_error(), "MiB, on f32), more than the "));
    assert_non_null(strstr(lk_last_error(), "MiB available (--memory-limit)"));
    assert_int_equal(lk_model_compute(s), LK_COMPUTE_INT8); /* neither turned */
    assert_int_equal(lk_model_compute(t), LK_COMPUTE_INT8);
    lk_model_free(s);
    lk_model_free(t);
    lk_model_free(si);
    lk_model_free(sf);
    lk_model_free(ti);
    lk_model_free(tf);
}

/* The plan counts the transposed copies; the trainer builds them and frees them with itself; an
 * f32 model (nothing quantised) has none; a checkpoint of an int8 run does not resume f32. */
static void test_plan_and_resume(void **state)
{
    (void)state;
    lk_model *mf = load(LK_QTYPE_Q4_0, LK_QTYPE_F32, LK_COMPUTE_F32);
    lk_model *mi = load(LK_QTYPE_Q4_0, LK_QTYPE_F32, LK_COMPUTE_INT8);
    lk_model *m32 = load(LK_QTYPE_F32, LK_QTYPE_F32, LK_COMPUTE_INT8);
    assert_int_equal(lk_model_int8_matrices(m32), 0);
    assert_int_equal(lk_model_backward_bytes(m32), 0);
    assert_int_equal(lk_model_backward_bytes(mf), 0);
    int64_t q8t = lk_model_backward_bytes(mi);
    const struct lk_model_config *cfg = lk_model_get_config(mi);
    /* Wᵀ of q (C x C): C rows of C values as Q8_0 */
    assert_true(q8t > 7 * cfg->n_layers * 34);
    struct lk_train_params p = params();
    int64_t a, o, act;
    int64_t pf = lk_trainer_memory_plan(mf, &p, 128, &a, &o, &act);
    int64_t pi = lk_trainer_memory_plan(mi, &p, 128, &a, &o, &act);
    /* and the work of the two int8 terms of the layers' activations (q8_gemm_fwd2's quantised
     * rows, linear.act2: at most a [T, C + F] area per row of the batch's graph; it may fit in
     * the scratch an f32 run reserves anyway) */
    assert_true(pi - pf >= q8t);
    assert_true(pi - pf - q8t <= p.batch * 128 * (cfg->hidden_size + cfg->intermediate_size) * 4);
    lk_dataset *d = data();
    lk_trainer *t;
    assert_ok(lk_trainer_create(mi, d, &p, &t));
    struct lk_step_stats st;
    assert_ok(lk_trainer_step(t, &st));
    const char *ck = tmp_path("int8.ckpt");
    assert_ok(lk_trainer_save_checkpoint(t, ck));
    lk_trainer_free(t);
    lk_dataset_free(d);
    d = data();
    assert_ok(lk_trainer_create(mf, d, &p, &t));
    assert_status(lk_trainer_resume(t, ck), LK_ERR_ARG,
                  "checkpoint was made with --compute int8, this run has --compute f32");
    lk_trainer_free(t);
    lk_dataset_free(d);
    lk_model_free(mf);
    lk_model_free(mi);
    lk_model_free(m32);
}

/* The loss and gradient of the second step of a trainer on m (the first gave B a value). */
static float *second_step(lk_model *m, const struct lk_train_params *p, double *loss, int64_t *n)
{
    lk_dataset *d = data();
    lk_trainer *t;
    assert_ok(lk_trainer_create(m, d, p, &t));
    struct lk_step_stats st;
    assert_ok(lk_trainer_step(t, &st));
    assert_ok(lk_trainer_step(t, &st));
    *loss = st.loss;
    return take_grads(t, d, n);
}

/* --memory-limit decides which transposed copies are kept: all of them without a limit; under
 * tighter ones first the layers' go (built before each layer's backward into one buffer: the
 * step's bits do not change), then the LM head's (its dx on the f32 kernel: close). */
static void test_copies_built_per_layer(void **state)
{
    (void)state;
    lk_model *m = load(LK_QTYPE_Q4_0, LK_QTYPE_Q8_0, LK_COMPUTE_INT8);
    const int64_t L = lk_model_get_config(m)->n_layers, seq = 128;
    struct lk_train_params p = params();
    int head;
    int64_t bytes, ad, o, act;
    assert_int_equal(lk_trainer_int8_copies(m, &p, seq, &head, &bytes), L);
    assert_true(head == 1 && bytes == lk_model_backward_bytes(m));
    const int64_t full =
        lk_model_weight_bytes(m) + lk_trainer_memory_plan(m, &p, seq, &ad, &o, &act);
    int64_t lim_head = 0, lim_none = 0, lim;
    for (lim = full; lim > 0 && !lim_none; lim -= 1024) { /* the largest limit of each case */
        p.memory_limit = lim;
        int64_t c = lk_trainer_int8_copies(m, &p, seq, &head, &bytes);
        assert_true(c >= 0 && c <= L);
        assert_true(head == 0 || head == 1);
        if (c == 0 && head && !lim_head) {
            lim_head = lim;
            /* the plan fits its limit, and counts the head's copy and one layer's buffer */
            assert_true(lk_model_weight_bytes(m) +
                            lk_trainer_memory_plan(m, &p, seq, &ad, &o, &act) <=
                        lim);
            assert_int_equal(bytes, model_int8_copy_bytes(m, L) + model_int8_copy_bytes(m, 0));
        }
        if (c == 0 && !head)
            lim_none = lim;
    }
    assert_true(lim_head > 0 && lim_none > 0 && lim_head < full);
    double la, lb, lc;
    int64_t na, nb, nc;
    p.memory_limit = 0;
    float *ga = second_step(m, &p, &la, &na);
    p.memory_limit = lim_head;
    float *gb = second_step(m, &p, &lb, &nb);
    assert_int_equal(na, nb);
    assert_true(la == lb);
    assert_memory_equal(ga, gb, (size_t)na * sizeof *ga);
    p.memory_limit = lim_none;
    float *gc = second_step(m, &p, &lc, &nc);
    double cs = cosine(ga, gc, na);
    fprintf(stderr, "without the LM head's copy: loss %.6f vs %.6f, gradient cosine %.6f\n", lc, la,
            cs);
    assert_true(fabs(lc - la) < 5e-3 * la && cs > 0.998); /* 1.5e-3, 0.99888 */
    free(ga);
    free(gb);
    free(gc);
    lk_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_checks),
        cmocka_unit_test(test_auto_compute),
        cmocka_unit_test(test_auto_budget),
        cmocka_unit_test(test_teacher_gives_way),
        cmocka_unit_test(test_inference_work),
        cmocka_unit_test(test_linear_int8),
        cmocka_unit_test(test_linear_two_terms),
        cmocka_unit_test(test_grad_cosine_q4_0),
        cmocka_unit_test(test_grad_cosine_nf4),
        cmocka_unit_test(test_grad_cosine_q8_0),
        cmocka_unit_test(test_grad_cosine_smollm2),
        cmocka_unit_test(test_plan_and_resume),
        cmocka_unit_test(test_copies_built_per_layer),
        cmocka_unit_test(test_nf4_inference_correction),
        cmocka_unit_test(test_interleaved_at_load),
    };
    int rc = cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
    lk_tokenizer_free(g_tok);
    return rc;
}
