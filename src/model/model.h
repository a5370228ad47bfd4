/* model.h — internal view of a loaded model (struct lk_model) and the tensor table shared by the
 * loader and the random-weight writer. */
#ifndef LK_MODEL_H
#define LK_MODEL_H

#include "nn/linear.h"
#include "lorakit/model.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

typedef struct {
    const float *attn_norm; /* [C] */
    const float *ffn_norm;  /* [C] */
    linear q, k, v, o;      /* q [H*hd, C], k/v [KVH*hd, C], o [C, H*hd] */
    linear gate, up, down;  /* gate/up [F, C], down [C, F] */
} layer_weights;

/* Linear `kind` of layer w in lk_module order: q, k, v, o, gate, up, down. */
static inline linear *layer_linear(layer_weights *w, int kind)
{
    linear *const all[7] = {&w->q, &w->k, &w->v, &w->o, &w->gate, &w->up, &w->down};
    return all[kind];
}

struct lk_model {
    struct lk_model_config cfg;
    st_set st;      /* the mapped files of a Hugging Face folder */
    gguf_file gguf; /* or the GGUF model file (gguf.map.path NULL when none) */
    void **owned;   /* converted (f16/bf16 → f32) or realigned copies */
    int n_owned;
    size_t cap_owned;
    linear embed;          /* token embeddings [V, C] (f32 or quantised rows) */
    const float *norm;     /* [C] */
    linear lm_head;        /* [V, C]; w == embed when tied */
    layer_weights *layers; /* [n_layers] */
    float *inv_freq;       /* [hd/2] RoPE frequencies after scaling */
    int n_threads;
    lk_qtype quant, quant_embed;
    int gguf_own, gguf_own_embed; /* 1: a GGUF file whose matrices (embeddings, LM head) all keep
                                   * their own types (none quantised at load) */
    int64_t weight_bytes;         /* bytes of every bound weight */
    lk_compute compute;           /* --compute: f32, or int8 for the matrices q8_supports (never
                                   * LK_COMPUTE_AUTO once loaded: model_int8_setup chooses) */
    int compute_auto;             /* 1: chosen by LK_COMPUTE_AUTO (a trainer may turn it to f32) */
    int compute_resumed;          /* 1: LK_COMPUTE_AUTO took lk_model_params.resume_compute (a
                                   * trainer fails where int8 does not fit, never turns it) */
    int compute_planned;          /* 1: lk_trainer_choose_compute decided (once) */
    int64_t memory_limit;         /* lk_model_params.memory_limit (LK_COMPUTE_AUTO's budget) */
    int64_t memory_held;          /* lk_model_params.memory_held (taken from that budget) */
    lk_compute resume_compute;    /* lk_model_params.resume_compute */
    char compute_why[640];        /* lk_model_compute_reason */
    int64_t n_int8;               /* matrices with linear.int8 set */
    void *q8t;                    /* the transposed Q8_0 copies (model_int8_backward), or NULL */
    int q8_ready;                 /* model_int8_backward ran: the copies are as planned */
    int64_t q8_build; /* bytes of the buffer a layer's copies are built into before its backward
                       * (the layers keeping none; 0: every layer keeps its copies) */
    void *q8c;                    /* the NF4 codebook corrections (model_int8_setup), or NULL */
    void *ilv_scratch; /* one group of rows, to take the interleaved matrices back (q8_ilv.h) */
};

/* Bytes [p, p+n) of tensor t's file have been read: their mapped pages need not stay resident
 * (they are read again from the file if touched later). */
void model_drop_range(const lk_model *m, const tensor_view *t, const void *p, size_t n);

/* x[T, C] = the embeddings of tok[0..T) (rows dequantised when the table is quantised). */
void model_embed(const lk_model *m, const int32_t *tok, int64_t T, float *x);

typedef enum { TK_MATRIX, TK_EMBED, TK_NORM, TK_BIAS } tensor_kind;

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    tensor_kind kind;
    const float **dst; /* where the loader stores the fp32 pointer (NULL: not bound) */
    q4_weight *qdst;   /* matrices: where a quantised copy goes instead */
} tensor_spec;

/* Every tensor the config implies, in file order (embeddings, layers, norm, head). m may be NULL
 * (no pointers bound). Returns the count; specs must hold model_n_specs(c) entries. */
int model_n_specs(const struct lk_model_config *c);
int model_specs(const struct lk_model_config *c, lk_model *m, tensor_spec *specs);

/* Keep p (an owned weight buffer) until lk_model_free; frees p on failure. */
lk_status model_own(lk_model *m, void *p);

/* Bind spec sp to the F32/F16/BF16 tensor t (shape already checked, [out, in] for matrices):
 * quantised once when the model's quant (quant_embed) asks for it, mapped in place when aligned
 * F32, else widened into an owned f32 copy. */
lk_status model_bind_float(lk_model *m, const tensor_spec *sp, const tensor_view *t);

/* Bind spec sp (Hugging Face name and shape) to its tensor of the GGUF file m->gguf
 * (model_gguf.c): quantised types used where they lie, float ones through model_bind_float. */
lk_status model_bind_gguf(lk_model *m, const tensor_spec *sp);

/* Row r of the 2-D tensor t of GGUF file f as f32 values out[ne[0]] (F32, F16, BF16 and the
 * types the kernels run; LK_ERR_UNSUPPORTED naming file, tensor and type for the others). */
lk_status model_gguf_row(const gguf_file *f, const gguf_tensor *t, int64_t r, float *out);

/* Divide m->inv_freq by the GGUF file's rope_freqs.weight (Llama 3.1 frequency factors) when it
 * has one; LK_ERR_SHAPE / LK_ERR_FORMAT naming the tensor when it is not [hd/2] positive F32. */
lk_status model_gguf_rope_factors(lk_model *m);

/* --compute int8 (model_int8.c): mark the decoder's matrices and the LM head whose type the int8
 * path takes (linear.int8; the decoder's with two-term activations, linear.act2), build the NF4
 * matrices' codebook corrections (linear.qwc, counted in weight_bytes), and log one note naming
 * the matrices that stay fp32. With LK_COMPUTE_AUTO, first choose int8 or f32 (lk_model.h).
 * Run once at load; LK_ERR_NOMEM. */
lk_status model_int8_setup(lk_model *m);

/* Bytes int8 would add to the weights: the NF4 codebook corrections (0 under f32 compute). */
int64_t model_int8_fix_bytes(const lk_model *m);

/* Mark m's matrices for compute c (linear.int8, linear.act2, m->n_int8) whatever m->compute:
 * model_int8_setup and model_int8_to_f32 mark them for m->compute; a planner sizes m's buffers as
 * f32 would run it between model_int8_mark(m, LK_COMPUTE_F32) and model_int8_mark(m, m->compute)
 * (nothing else may run on m in between). */
void model_int8_mark(lk_model *m, lk_compute c);

/* The one error of a run resumed under LK_COMPUTE_AUTO from an int8 checkpoint that int8 no
 * longer fits (LK_ERR_NOMEM): what int8 needs ("its weights (412.0 MiB)") against the budget
 * ("the 300.0 MiB available (--memory-limit)"), and how to go on. */
lk_status model_int8_resumed_nofit(const char *needs, const char *budget);

/* Turn a model loaded on int8 to f32 compute (before any transposed copy is built): unmark its
 * matrices, free the corrections, set compute_why to why. */
void model_int8_to_f32(lk_model *m, const char *why);

/* Build the transposed Q8_0 copies (linear.qwt) the backward's dx runs on: those of the int8
 * matrices of the top `layers` layers and, with head, of the LM head (a trainer calls it, as its
 * memory plan says; nothing to do with f32 or when done already), and free them again
 * (lk_model_free does too). A layer without copies has them built by model_int8_layer_copies
 * just before its backward; the LM head without its copy takes its dx on the f32 kernel. The
 * copies do not depend on when they are built: either way a step gives the same bits. */
lk_status model_int8_backward(lk_model *m, int64_t layers, int head);
void model_int8_backward_free(lk_model *m);

/* Bytes of the transposed copies of layer l's int8 matrices (l = n_layers: the LM head's). */
int64_t model_int8_copy_bytes(const lk_model *m, int64_t l);

/* Bytes of the buffer model_int8_layer_copies needs after model_int8_backward (the largest layer
 * keeping no copies; 0: none does). */
int64_t model_int8_build_bytes(const lk_model *m);

/* w: a copy of one of m's layers: its int8 matrices without a transposed copy get one, built into
 * buf (model_int8_build_bytes bytes) and described in w's linears (the model's stay as they are). */
lk_status model_int8_layer_copies(const lk_model *m, layer_weights *w, void *buf);

/* RoPE inverse frequencies [hd/2] as Hugging Face computes them (fp32), after rope scaling. */
void rope_inv_freq(const struct lk_model_config *c, float *inv_freq);

#endif /* LK_MODEL_H */
