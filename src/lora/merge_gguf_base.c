/* merge_gguf_base.c — merging adapters into a llama.cpp GGUF model file: the output is a GGUF
 * file with the base's metadata (hyper-parameters, tokenizer, chat template; general.alignment
 * left to the writer's 32) and its tensors in the base's order. Each of the seven projection
 * matrices (blk.N.attn_q ... ffn_down) that an adapter touches is dequantised, merged (the
 * adapter's q/k rows put in llama.cpp's order for architecture "llama") and quantised again to its
 * own type, or to --dtype (llama-quantize's fallback type when its rows are not whole blocks), with
 * the per-tensor error report; every other tensor is copied byte for byte. Calls merge.c and
 * merge_gguf.c's type table only. */
#include <stdlib.h>
#include <string.h>

#include "lora/merge.h"
#include "model/config.h"
#include "core/status.h"

typedef struct {
    merge_ctx *c;
    const gguf_file *g;
    uint32_t *type; /* [n_tensors] output type */
    int64_t *layer; /* [n_tensors] */
    int *kind;      /* [n_tensors] module merged into it, -1: copied */
    int *heads;     /* [n_tensors] heads to permute the adapters' rows by (0: none) */
} base_job;

int merge_parse_gguf_name(const char *name, int64_t *layer, lk_module *kind)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    char *e;
    long long l = strtoll(name + 4, &e, 10);
    if (e == name + 4 || *e != '.' || l < 0)
        return -1;
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        char want[48];
        snprintf(want, sizeof want, ".%s.weight", adapter_gguf_stem((lk_module)k));
        if (strcmp(e, want) == 0) {
            *layer = l;
            *kind = (lk_module)k;
            return 0;
        }
    }
    return -1;
}

static lk_status fill_tensor(void *user, int64_t i, void *dst)
{
    base_job *j = user;
    const gguf_tensor *t = &j->g->tensors[i];
    struct lk_merge_tensor rep = {.name = t->name, .index = i, .count = j->c->n_out};
    if (j->kind[i] < 0) {
        memcpy(dst, t->data, (size_t)t->nbytes);
    } else {
        LK_TRY(merge_rows_gguf(j->c, j->g, t, j->layer[i], j->kind[i], j->heads[i],
                               gguf_type_info(j->type[i]), dst, &rep.n_merged, &rep.store_err));
        merge_release(t->data, (size_t)t->nbytes);
    }
    if (j->c->p.on_tensor)
        j->c->p.on_tensor(j->c->p.user, &rep);
    return LK_OK;
}

/* Decide each tensor's fate: merged (a projection matrix an adapter touches) or copied, and its
 * output type; add it to the writer. */
static lk_status add_tensors(gguf_writer *w, base_job *j, int perm)
{
    const struct lk_model_config *cfg = &j->c->cfg;
    uint32_t want = 0, ftype;
    if (j->c->p.dtype)
        LK_TRY(merge_gguf_type(j->c->p.dtype, &want, &ftype));
    for (int64_t i = 0; i < j->g->n_tensors; i++) {
        const gguf_tensor *t = &j->g->tensors[i];
        lk_module kind;
        j->kind[i] = -1;
        j->type[i] = t->type;
        if (merge_parse_gguf_name(t->name, &j->layer[i], &kind) == 0 &&
            merge_n_deltas(j->c, j->layer[i], (int)kind) > 0) {
            j->kind[i] = (int)kind;
            j->heads[i] = !perm              ? 0
                          : kind == LK_MOD_Q ? (int)cfg->n_heads
                          : kind == LK_MOD_K ? (int)cfg->n_kv_heads
                                             : 0;
            if (j->c->p.dtype)
                j->type[i] = gguf_type_fallback(want, t->ne[0]);
            if (j->type[i] != want && j->c->p.dtype)
                log_warn("%s: tensor '%s' has rows of %lld values, not whole blocks of %s: "
                         "written %s (as llama-quantize does)",
                         j->g->map.path, t->name, (long long)t->ne[0], j->c->p.dtype,
                         gguf_type_info(j->type[i])->name);
        }
        LK_TRY(gguf_add_tensor(w, t->name, j->type[i], t->n_dims, t->ne, NULL));
    }
    j->c->n_out = j->g->n_tensors;
    return LK_OK;
}

static lk_status copy_metadata(gguf_writer *w, const gguf_file *g)
{
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, "general.alignment") != 0) /* the writer aligns to 32 */
            LK_TRY(gguf_copy_kv(w, &g->kv[i]));
    return LK_OK;
}

lk_status merge_gguf_base(merge_ctx *c, const char *base, const char *out)
{
    const char *arch;
    int perm = adapter_gguf_arch(&c->cfg, &arch);
    if (perm < 0)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: architecture '%s' has no llama.cpp mapping here", base,
                           c->cfg.arch);
    if (c->base_q)
        return status_fail(LK_ERR_ARG,
                           "%s: --base-quant %s does not apply to a GGUF base: its own tensor "
                           "types are what the adapters were trained on (hint: --base-quant none)",
                           base, c->base_q->name);
    gguf_file g;
    LK_TRY(gguf_open(&g, base));
    base_job j = {.c = c, .g = &g};
    size_t n = (size_t)(g.n_tensors ? g.n_tensors : 1);
    j.type = calloc(n, sizeof *j.type);
    j.layer = calloc(n, sizeof *j.layer);
    j.kind = calloc(n, sizeof *j.kind);
    j.heads = calloc(n, sizeof *j.heads);
    gguf_writer *w = NULL;
    lk_status s = j.type && j.layer && j.kind && j.heads
                      ? gguf_writer_new(&w)
                      : status_fail(LK_ERR_NOMEM, "out of memory");
    if (s == LK_OK)
        s = copy_metadata(w, &g);
    if (s == LK_OK)
        s = add_tensors(w, &j, perm);
    if (s == LK_OK)
        s = gguf_writer_write(w, out, c->p.force, fill_tensor, &j);
    gguf_writer_free(w);
    free(j.type);
    free(j.layer);
    free(j.kind);
    free(j.heads);
    gguf_close(&g);
    return s;
}
