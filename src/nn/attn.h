/* attn.h — the blocked causal attention kernels behind attention_forward / attention_backward
 * (ops.c), FlashAttention-2 style: a block of BQ query rows of one head meets the keys in blocks
 * of BK; the scores tile is a small register-blocked GEMM, the softmax is online (running max
 * and sum per row), and no T×T buffer exists. One work item is a query block of one head
 * (forward; the backward's D), a query of one kv head with its query heads as the rows (the
 * forward of a decoding step over a KV cache), or a key block of one kv head
 * (the backward's five products: dk, dv, and the block's terms of dq, added in place after those
 * of the kv head's previous key block, for which the item waits); each item owns its outputs or
 * adds to them in a fixed order, so the results do not depend on the thread count. The same source
 * (attn_kernel.h) is compiled once per instruction set (attn_ref.c: portable C, what LK_SIMD=OFF
 * builds; attn_avx2.c, attn_avx512.c with their flags), picked at run time after quant's dispatch
 * (lk_kernel_variant, LK_KERNELS). */
#ifndef LK_ATTN_H
#define LK_ATTN_H

#include <stdint.h>

#include "nn/ops.h"

#define ATTN_BQ 32 /* query rows per block */
#define ATTN_BK 32 /* keys per block */
/* Calls of fewer queries than this (decoding) skip the packed keys: one dot product per key. */
#define ATTN_PACK_MIN 4

/* Everything one call works on (NULL where a pass does not use it). */
typedef struct {
    float *out, *lse;        /* forward: [T, H*hd], [T, H] (lse may be NULL) */
    float *dq, *dk, *dv, *D; /* backward: [T, H*hd], [T, kvd] x2, [T, H] */
    const float *q, *k, *v;  /* [T, H*hd], [kpos0+T, kvd] x2 */
    const float *dout, *o;   /* backward: [T, H*hd] x2 */
    const float *lse_in;     /* backward: [T, H] */
    /* transposed copies made by the driver: keys j0t.. of K as [KVH][hd][ldt] (forward: kt, or
     * NULL under ATTN_PACK_MIN queries), keys 0.. of K and V as [KVH][hd][ldt] (backward: kt,
     * vt); columns past the last key are zero */
    const float *kt, *vt;
    int64_t ldt, j0t;
    /* instead of k and v: a KV cache (ops.h, attention_forward_cached), keys kc[KVH][nblk][hd][BK]
     * and values vc[KVH][n_ctx][hd]; key blocks then start at multiples of BK */
    const float *kc, *vc;
    int64_t nblk, n_ctx;
    const attn_shape *a;
} attn_args;

/* One item on one thread's work memory w (attention_work_floats(hd) floats). */
typedef void (*attn_item_fn)(const attn_args *x, int64_t block, int64_t head, float *w);

typedef struct {
    const char *name;
    attn_item_fn fwd;     /* query block × head: out, lse */
    attn_item_fn fwd_dec; /* query × kv head, with a cache (decoding): out, lse of its heads */
    attn_item_fn bwd_d;   /* query block × head: D */
    attn_item_fn bwd_k;   /* key block × kv head: dk, dv, dq terms (needs D, key block kb − 1) */
} attn_kernels;

extern const attn_kernels attn_ref;
#ifdef LK_HAVE_AVX2
extern const attn_kernels attn_avx2;
#endif
#ifdef LK_HAVE_AVX512
extern const attn_kernels attn_avx512;
#endif

#endif /* LK_ATTN_H */
