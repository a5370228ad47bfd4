/* model_int8.c — --compute int8 on a loaded model: which matrices (the decoder's linear layers and
 * the LM head) run on int8 products (quant/q8.h), the one note naming those that stay fp32, the
 * decoder matrices put in the row-interleaved layout in place where the int8 variant wants it
 * (quant/q8_ilv.h; back in rows for model_int8_to_f32), and the transposed Q8_0 copies the
 * backward's dx needs (built by a trainer, freed with it). */
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/option.h"
#include "core/pool.h"
#include "core/status.h"
#include "lorakit/core.h"
#include "model/model.h"
#include "q8.h"
#include "q8_ilv.h"

static const char *const g_compute[] = {"f32", "int8", "auto"}; /* in lk_compute's order */

const char *lk_compute_name(lk_compute c)
{
    return (unsigned)c < 3 ? g_compute[c] : "?";
}

lk_status lk_compute_from_name(const char *name, lk_compute *out)
{
    int i = option_lookup(g_compute, 3, name);
    if (i < 0)
        return option_choice("--compute", name, "f32, int8 or auto");
    *out = (lk_compute)i;
    return LK_OK;
}

static const char *const k_module[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                        "mlp.down_proj"};

/* Matrix i of the model's 7·n_layers + 1 (the layers' seven, then the LM head). */
static linear *matrix(lk_model *m, int64_t i)
{
    if (i == 7 * m->cfg.n_layers)
        return &m->lm_head;
    return layer_linear(&m->layers[i / 7], (int)(i % 7));
}

static void matrix_name(const lk_model *m, int64_t i, char *buf, size_t len)
{
    if (i == 7 * m->cfg.n_layers)
        snprintf(buf, len, "%s",
                 m->cfg.tie_word_embeddings ? "lm_head (the tied embeddings)" : "lm_head");
    else
        snprintf(buf, len, "model.layers.%lld.%s", (long long)(i / 7), k_module[i % 7]);
}

/* The type a matrix is stored in, for the note. */
static const char *matrix_type(const linear *L)
{
    return L->w ? "f32" : lk_qtype_name((lk_qtype)L->qw.qtype);
}

typedef struct {
    const q4_weight *w;
    uint8_t *dst;   /* [out, rb]: Q4_0 rows */
    size_t rb;      /* bytes of a Q4_0 row of w->in */
    int64_t nb;     /* 32-blocks of a stored row */
    float *row;     /* [nt, 2, nb * 32]: per thread, the exact row and the correction */
    q8_wblock *blk; /* [nt, nb] */
} fix_job;

/* Rows [o0, o1) of an NF4 matrix's codebook correction: what its int8 codebook misses of each
 * value (q4_decode_ref's value − s·q), as Q4_0 rows. */
static void fix_rows(void *ctx, int64_t o0, int64_t o1, int thread)
{
    const fix_job *j = ctx;
    int64_t n = j->nb * Q8_QK;
    float *x = j->row + (size_t)thread * 2 * n, *e = x + n;
    q8_wblock *b = j->blk + (size_t)thread * j->nb;
    q8_expand_fn expand = q8_expander(j->w->qtype);
    for (int64_t o = o0; o < o1; o++) {
        q4_decode_ref(j->w, o, 0, n, x);
        expand(j->w, (const uint8_t *)j->w->data + (size_t)o * j->w->row_bytes, 0, j->nb, b);
        for (int64_t k = 0; k < n; k++) {
            const q8_wblock *q = &b[k / Q8_QK];
            int h = (int)(k % Q8_QK) / 16;
            e[k] = x[k] - (q->s[h] * (float)q->q[k % Q8_QK] + q->m[h]);
        }
        q4_quantize_row(LK_QTYPE_Q4_0, 32, e, j->w->in, j->dst + (size_t)o * j->rb);
    }
}

/* Bytes of L's codebook correction (linear.qwc): Q4_0 rows of L's shape, for an NF4 matrix on
 * int8 with two-term activations; 0 for the others. */
static size_t fix_bytes(const linear *L)
{
    if (!L->act2 || L->qw.qtype != LK_QTYPE_NF4)
        return 0;
    return (size_t)L->qw.out * q4_row_bytes(LK_QTYPE_Q4_0, 32, L->qw.in);
}

int64_t model_int8_fix_bytes(const lk_model *m)
{
    int64_t total = 0;
    for (int64_t i = 0; i < 7 * m->cfg.n_layers; i++)
        total += (int64_t)fix_bytes(matrix((lk_model *)m, i));
    return total;
}

/* The NF4 matrices' codebook corrections, into one allocation (m->q8c). */
static lk_status build_fixes(lk_model *m)
{
    const int64_t n = 7 * m->cfg.n_layers;
    size_t total = (size_t)model_int8_fix_bytes(m), off = 0;
    int64_t nb = 0;
    for (int64_t i = 0; i < n; i++) {
        const linear *L = matrix(m, i);
        if (fix_bytes(L) && (L->qw.in + Q8_QK - 1) / Q8_QK > nb)
            nb = (L->qw.in + Q8_QK - 1) / Q8_QK;
    }
    if (total == 0)
        return LK_OK;
    int nt = m->n_threads;
    m->q8c = lk_aligned_alloc(total);
    float *row = malloc((size_t)nt * 2 * nb * Q8_QK * sizeof *row);
    q8_wblock *blk = malloc((size_t)nt * nb * sizeof *blk);
    if (!m->q8c || !row || !blk) {
        free(row);
        free(blk);
        return status_fail(LK_ERR_NOMEM,
                           "--compute int8: cannot allocate %.1f MiB for the NF4 codebook "
                           "corrections (hint: --compute f32 needs none)",
                           (double)total / 1048576.0);
    }
    for (int64_t i = 0; i < n; i++) {
        linear *L = matrix(m, i);
        size_t bytes = fix_bytes(L);
        if (!bytes)
            continue;
        fix_job j = {.w = &L->qw,
                     .dst = (uint8_t *)m->q8c + off,
                     .rb = q4_row_bytes(LK_QTYPE_Q4_0, 32, L->qw.in),
                     .nb = (L->qw.in + Q8_QK - 1) / Q8_QK,
                     .row = row,
                     .blk = blk};
        par_for(nt, L->qw.out, fix_rows, &j);
        lk_status s = q4_weight_init(&L->qwc, LK_QTYPE_Q4_0, 32, L->qw.out, L->qw.in, j.dst);
        LK_ASSERT(s == LK_OK);
        off += bytes;
    }
    free(row);
    free(blk);
    m->weight_bytes += (int64_t)total;
    return LK_OK;
}

void model_int8_mark(lk_model *m, lk_compute c)
{
    m->n_int8 = 0;
    for (int64_t i = 0; i < 7 * m->cfg.n_layers + 1; i++) {
        linear *L = matrix(m, i);
        L->int8 = c == LK_COMPUTE_INT8 && !L->w && q8_supports(L->qw.qtype);
        L->act2 = L->int8 && L != &m->lm_head; /* the head's one term costs the gradient little */
        m->n_int8 += L->int8;
    }
}

/* 1 for a matrix model_int8_setup puts in the interleaved layout: a decoder layer's (never the
 * LM head, whose rows may be the token embeddings), on int8, of a type with the layout, with a
 * whole group of rows, when the int8 variant wants the layout. */
static int to_interleave(const lk_model *m, int64_t i)
{
    const linear *L = matrix((lk_model *)m, i);
    return i < 7 * m->cfg.n_layers && L->int8 && q8i_supports(L->qw.qtype) && L->qw.out >= Q8I_R &&
           q8_kernels_get()->wants_ilv;
}

/* The pages of p[n] writable: a GGUF file's mapping (MAP_PRIVATE, so the file never changes) or a
 * safetensors file's, else memory of the model's own. */
static lk_status make_writable(const lk_model *m, const void *p, size_t n)
{
    int r = mapfile_writable(&m->gguf.map, p, n);
    for (int i = 0; r == 0 && i < m->st.n_files; i++)
        r = mapfile_writable(&m->st.files[i].map, p, n);
    if (r < 0)
        return status_fail(LK_ERR_IO,
                           "--compute int8: cannot make the mapped weights writable (mprotect) to "
                           "interleave them (hint: --compute f32)");
    return LK_OK;
}

/* The decoder layers' int8 matrices of the types that have it into the row-interleaved layout
 * (q8_ilv.h) in place, where the int8 variant's GEMV is faster on it (q8_kernels.wants_ilv): one
 * group of rows of scratch, kept to take them back (model_int8_to_f32). Memory of a mapped file
 * is written as private pages (the file is never changed); they stay as resident as before. */
static lk_status interleave(lk_model *m)
{
    size_t scratch = 0;
    for (int64_t i = 0; i < 7 * m->cfg.n_layers; i++)
        if (to_interleave(m, i) && q8i_scratch_bytes(&matrix(m, i)->qw) > scratch)
            scratch = q8i_scratch_bytes(&matrix(m, i)->qw);
    if (!scratch)
        return LK_OK;
    if (!(m->ilv_scratch = malloc(scratch)))
        return status_fail(LK_ERR_NOMEM, "--compute int8: out of memory");
    int64_t n = 0;
    for (int64_t i = 0; i < 7 * m->cfg.n_layers; i++) {
        q4_weight *w = &matrix(m, i)->qw;
        if (!to_interleave(m, i))
            continue;
        LK_TRY(make_writable(m, w->data, (size_t)w->out * w->row_bytes));
        q8i_convert(w, (void *)(uintptr_t)w->data, m->ilv_scratch);
        n++;
    }
    log_debug("--compute int8: %lld matrices interleaved for the %s GEMV", (long long)n,
              q8_kernels_get()->name);
    return LK_OK;
}

/* The interleaved matrices back in the row layout, as the fp32 kernels read them. */
static void deinterleave(lk_model *m)
{
    for (int64_t i = 0; m->ilv_scratch && i < 7 * m->cfg.n_layers; i++) {
        q4_weight *w = &matrix(m, i)->qw;
        if (w->ilv)
            q8i_revert(w, (void *)(uintptr_t)w->data, m->ilv_scratch);
    }
}

void model_int8_to_f32(lk_model *m, const char *why)
{
    LK_ASSERT(!m->q8t);
    deinterleave(m);
    int64_t fixes = model_int8_fix_bytes(m);
    m->compute = LK_COMPUTE_F32;
    model_int8_mark(m, m->compute);
    for (int64_t i = 0; i < 7 * m->cfg.n_layers; i++)
        matrix(m, i)->qwc = (q4_weight){0};
    if (m->q8c) /* build_fixes counted them in the weights */
        m->weight_bytes -= fixes;
    free(m->q8c);
    m->q8c = NULL;
    snprintf(m->compute_why, sizeof m->compute_why, "%s", why);
    log_info("--compute %s", why);
}

/* The budget LK_COMPUTE_AUTO's weights must fit: lk_memory_budget less what another model of the
 * process holds (memory_held), and its words for a note ("the 412.0 MiB available
 * (--memory-limit)"). */
static int64_t auto_budget(const lk_model *m, char *words, size_t cap)
{
    const char *what;
    const int64_t all = lk_memory_budget(m->memory_limit, &what), have = all - m->memory_held;
    if (m->memory_held > 0)
        snprintf(words, cap,
                 "the %.1f MiB left of the %.1f MiB available (%s) beside the %.1f MiB "
                 "of the model loaded before",
                 have / 1048576.0, all / 1048576.0, what, m->memory_held / 1048576.0);
    else
        snprintf(words, cap, "the %.1f MiB available (%s)", have / 1048576.0, what);
    return have;
}

lk_status model_int8_resumed_nofit(const char *needs, const char *budget)
{
    return status_fail(LK_ERR_NOMEM,
                       "--compute auto: the run resumed was trained with --compute int8, which "
                       "needs %s, more than %s (hint: raise --memory-limit, or resume with "
                       "--compute int8 to run it anyway)",
                       needs, budget);
}

/* LK_COMPUTE_AUTO on a resumed run: its checkpoint's mode, f32 as it is, int8 when its weights
 * (need) fit the budget (have, said as budget), else LK_ERR_NOMEM naming both. */
static lk_status take_resumed(lk_model *m, int64_t need, int64_t have, const char *fx,
                              const char *budget)
{
    m->compute_resumed = 1;
    if (m->resume_compute == LK_COMPUTE_F32) {
        m->compute = LK_COMPUTE_F32;
        snprintf(m->compute_why, sizeof m->compute_why,
                 "checkpoint: f32, the mode of the run resumed");
        return LK_OK;
    }
    if (m->n_int8 > 0 && need > have) {
        char needs[128];
        snprintf(needs, sizeof needs, "its weights (%.1f MiB%s)", need / 1048576.0, fx);
        return model_int8_resumed_nofit(needs, budget);
    }
    snprintf(m->compute_why, sizeof m->compute_why,
             "checkpoint: int8, the mode of the run resumed; its weights (%.1f MiB%s) fit %s",
             need / 1048576.0, fx, budget);
    return LK_OK;
}

/* LK_COMPUTE_AUTO at load: int8 when the weights with its corrections fit the budget
 * (auto_budget), else f32 (compute_why says which and why); a resumed run's mode with
 * resume_compute (take_resumed). The matrices are marked for int8 to count them; the caller marks
 * them again for the choice. */
static lk_status choose(lk_model *m)
{
    m->compute = LK_COMPUTE_INT8;
    m->compute_auto = 1;
    model_int8_mark(m, m->compute);
    char budget[192], fx[64] = "";
    const int64_t have = auto_budget(m, budget, sizeof budget);
    const int64_t fixes = model_int8_fix_bytes(m), need = m->weight_bytes + fixes;
    if (fixes)
        snprintf(fx, sizeof fx, " with the NF4 corrections' %.1f", fixes / 1048576.0);
    if (m->resume_compute != LK_COMPUTE_AUTO)
        return take_resumed(m, need, have, fx, budget);
    if (m->n_int8 == 0) {
        m->compute = LK_COMPUTE_F32;
        snprintf(m->compute_why, sizeof m->compute_why,
                 "auto: f32, no matrix of this base has an int8 path");
    } else if (need <= have) {
        snprintf(m->compute_why, sizeof m->compute_why,
                 "auto: int8, its weights (%.1f MiB%s) fit %s", need / 1048576.0, fx, budget);
    } else {
        m->compute = LK_COMPUTE_F32;
        snprintf(m->compute_why, sizeof m->compute_why,
                 "auto: f32, int8's weights (%.1f MiB%s) do not fit %s", need / 1048576.0, fx,
                 budget);
        log_info("--compute %s", m->compute_why);
    }
    return LK_OK;
}

/* The last steps of model_int8_setup: the NF4 corrections (which read the rows of NF4 matrices,
 * never interleaved) and the interleaved layout. */
static lk_status interleave_and_fix(lk_model *m)
{
    LK_TRY(build_fixes(m));
    return interleave(m);
}

lk_status model_int8_setup(lk_model *m)
{
    const int64_t n = 7 * m->cfg.n_layers + 1;
    int64_t n_f32 = 0;
    char first[3][96], name[80];
    if (m->compute == LK_COMPUTE_AUTO)
        LK_TRY(choose(m));
    else
        snprintf(m->compute_why, sizeof m->compute_why, "given");
    model_int8_mark(m, m->compute);
    for (int64_t i = 0; i < n; i++) {
        linear *L = matrix(m, i);
        if (m->compute != LK_COMPUTE_INT8 || L->int8)
            continue;
        if (n_f32 < 3) {
            matrix_name(m, i, name, sizeof name);
            snprintf(first[n_f32], sizeof first[n_f32], "%s (%s)", name, matrix_type(L));
        }
        n_f32++;
    }
    if (n_f32 == 0)
        return interleave_and_fix(m);
    if (m->n_int8 == 0) {
        log_info("--compute int8: no matrix of this base has an int8 path (they are %s): every "
                 "product runs in fp32 (quantise the base, e.g. --quant q4_0, to use it)",
                 matrix_type(matrix(m, 0)));
        return LK_OK;
    }
    const linear *head = &m->lm_head;
    log_info("--compute int8: %lld of %lld matrices run in fp32, their type having no int8 path: "
             "%s%s%s%s%s%s%s",
             (long long)n_f32, (long long)n, first[0], n_f32 > 1 ? ", " : "",
             n_f32 > 1 ? first[1] : "", n_f32 > 2 ? ", " : "", n_f32 > 2 ? first[2] : "",
             n_f32 > 3 ? ", ..." : "",
             n_f32 == 1 && head->w ? " (--quant-embed q8_0 puts it on int8 too)" : "");
    return interleave_and_fix(m);
}

lk_compute lk_model_compute(const lk_model *m)
{
    return m->compute;
}

const char *lk_model_compute_reason(const lk_model *m)
{
    return m->compute_why;
}

int64_t lk_model_int8_matrices(const lk_model *m)
{
    return m->n_int8;
}

/* Bytes of the transposed copies of layer l's int8 matrices (l = n_layers: the LM head's). */
int64_t model_int8_copy_bytes(const lk_model *m, int64_t l)
{
    int64_t total = 0, n = l == m->cfg.n_layers ? 1 : 7;
    for (int64_t i = 0; i < n; i++) {
        const linear *L = matrix((lk_model *)m, 7 * l + i);
        if (L->int8)
            total += (int64_t)q8_transpose_bytes(&L->qw);
    }
    return total;
}

int64_t lk_model_backward_bytes(const lk_model *m)
{
    int64_t total = 0;
    for (int64_t l = 0; l <= m->cfg.n_layers; l++)
        total += model_int8_copy_bytes(m, l);
    return total;
}

/* Build the copies of matrices [i0, i0 + n) that run on int8 and have none into dst (bytes
 * *off on), each matrix's description in its own linear (list: the model's, or a layer's copy). */
static lk_status build_copies(linear *const *list, int n, char *dst, size_t *off, int n_threads)
{
    for (int i = 0; i < n; i++) {
        linear *L = list[i];
        if (!L->int8 || L->qwt.data)
            continue;
        LK_TRY(q8_transpose(&L->qw, dst + *off, &L->qwt, n_threads));
        *off += q8_transpose_bytes(&L->qw);
    }
    return LK_OK;
}

lk_status model_int8_backward(lk_model *m, int64_t layers, int head)
{
    if (m->n_int8 == 0 || m->q8_ready)
        return LK_OK;
    const int64_t nl = m->cfg.n_layers;
    layers = layers < 0 ? 0 : layers > nl ? nl : layers;
    size_t total = head ? (size_t)model_int8_copy_bytes(m, nl) : 0, off = 0;
    for (int64_t l = nl - layers; l < nl; l++)
        total += (size_t)model_int8_copy_bytes(m, l);
    m->q8t = total ? lk_aligned_alloc(total) : NULL;
    if (total && !m->q8t)
        return status_fail(LK_ERR_NOMEM,
                           "--compute int8: cannot allocate %.1f MiB for the transposed copies of "
                           "the base (hint: --compute f32 needs none, a lower --memory-limit "
                           "keeps fewer)",
                           (double)total / 1048576.0);
    lk_status s = LK_OK;
    for (int64_t l = nl - layers; l <= nl && s == LK_OK; l++) {
        linear *list[7];
        int n = l == nl ? head : 7;
        for (int i = 0; i < n; i++)
            list[i] = matrix(m, 7 * l + i);
        s = build_copies(list, n, m->q8t, &off, m->n_threads);
    }
    if (s != LK_OK) {
        model_int8_backward_free(m);
        return s;
    }
    LK_ASSERT(off == total);
    for (int64_t l = 0; l < nl - layers; l++) { /* the buffer of the copies built per layer */
        int64_t b = model_int8_copy_bytes(m, l);
        m->q8_build = b > m->q8_build ? b : m->q8_build;
    }
    m->q8_ready = 1;
    return LK_OK;
}

int64_t model_int8_build_bytes(const lk_model *m)
{
    return m->q8_build;
}

lk_status model_int8_layer_copies(const lk_model *m, layer_weights *w, void *buf)
{
    linear *list[7];
    size_t off = 0;
    for (int i = 0; i < 7; i++)
        list[i] = layer_linear(w, i);
    LK_TRY(build_copies(list, 7, buf, &off, m->n_threads));
    LK_ASSERT((int64_t)off <= m->q8_build);
    return LK_OK;
}

void model_int8_backward_free(lk_model *m)
{
    for (int64_t i = 0; m->layers && i < 7 * m->cfg.n_layers + 1; i++)
        memset(&matrix(m, i)->qwt, 0, sizeof(q4_weight));
    free(m->q8t);
    m->q8t = NULL;
    m->q8_build = 0;
    m->q8_ready = 0;
}
