/* ops.h — the transformer's layer ops, each forward beside its backward (llm.c style), shared by
 * inference (forward.c) and training. Shapes: T tokens, C channels, H/KVH query/key-value heads,
 * hd head dim (kvd = KVH*hd), F FFN width. Backward functions ACCUMULATE into their d-outputs
 * unless they say "overwrites". */
#ifndef LK_OPS_H
#define LK_OPS_H

#include <stdint.h>

/* out[T,C] = x · rstd · w with rstd = 1/sqrt(mean(x²) + eps) per row (stored in rstd[T] if
 * non-NULL; the mean is accumulated in double). */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t T, int64_t C,
                     float eps);
/* dx[T,C] += ∂/∂x of Σ dout·out, given rstd from the forward. */
void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t T, int64_t C);

/* cos/sin tables [T, hd/2] for positions pos[t] (or pos0 + t when pos is NULL): angle =
 * pos·inv_freq in fp32, as Hugging Face computes it. */
void rope_tables(float *cs, float *sn, const float *inv_freq, int64_t half, const int32_t *pos,
                 int64_t pos0, int64_t T);
/* Rotate x[T, nh, hd] in place, rotate_half pairing (i, i + hd/2). */
void rope_forward(float *x, const float *cs, const float *sn, int64_t T, int64_t nh, int64_t hd);
/* In place: dx = Rᵀ·dy (the inverse rotation), dx overwrites dy. */
void rope_backward(float *d, const float *cs, const float *sn, int64_t T, int64_t nh, int64_t hd);

/* Causal grouped-query attention. Query t (key index kpos0 + t) attends to keys lo[t]..kpos0+t
 * of k/v [*, kvd]; lo must be non-decreasing in t (packing and windows keep it so).
 *   out[T, H*hd] = softmax(q·kᵀ/√hd)·v; lse[T, H] (optional) = log-sum-exp of the scaled scores.
 * Blocked and fused (attn.h): no T×T buffer. work: attention_work_floats floats of scratch (the
 * transposed copies of K, Q, dO and each thread's tiles). Every output is computed by one
 * thread in a fixed order, so the result does not depend on the thread count. */
typedef struct {
    int64_t T, H, KVH, hd;
    int64_t kpos0;     /* key index of query 0 (tokens already in a KV cache) */
    const int64_t *lo; /* [T] first key each query may see */
} attn_shape;

/* Floats of work memory for calls on up to n_threads threads with kpos0 + T <= n_keys: forward
 * calls only (backward 0), or forward and backward calls (backward 1; there T <= n_keys). */
int64_t attention_work_floats(int64_t n_keys, int64_t H, int64_t KVH, int64_t hd, int n_threads,
                              int backward);
/* Name of the kernel variant the attention runs on here ("ref", "avx2", "avx512"). */
const char *attention_variant(void);

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const attn_shape *a, float *work, int n_threads);
/* A KV cache of n_ctx positions as attention_forward_cached reads it (one per layer): keys
 * kc[KVH][nblk][hd][ATTN_BK] (transposed in blocks of ATTN_BK = 32 keys: key j of kv head g, dim d
 * at kc[((g·nblk + j/32)·hd + d)·32 + j%32]), values vc[KVH][n_ctx][hd], nblk =
 * attention_kv_blocks(n_ctx). A decoding step reads each kv head's keys and values as two
 * contiguous streams, and a block's keys are the columns of a product, as attention_forward's
 * transposed copy has them, without the copy. */
int64_t attention_kv_blocks(int64_t n_ctx);
/* Floats of one layer's key cache (nblk·32·KVH·hd), enough for its value cache too. */
int64_t attention_kv_floats(int64_t n_ctx, int64_t KVH, int64_t hd);
/* Store k, v [T, KVH*hd] as positions pos0 .. pos0+T-1. Positions are stored in order from 0 (a
 * later call may go back to an earlier position): a block's first store zeroes its columns after
 * the stored keys, which attention reads (and masks) before they are stored. */
void attention_kv_store(float *kc, float *vc, int64_t n_ctx, const float *k, const float *v,
                        int64_t pos0, int64_t T, int64_t KVH, int64_t hd);
/* attention_forward over a cache holding positions 0 .. kpos0+T-1 (the call's own keys and values
 * stored): key blocks start at multiples of 32, so each query row gets the bits
 * attention_forward gives it when lo[0] is a multiple of 32 (no sliding window yet). A call of
 * T < ATTN_PACK_MIN queries (decoding) runs one item per query and kv head, the group's query
 * heads as the rows of each product (every key and value loaded serves all of them); its rows get
 * the bits a call of more queries over the same cache gives those queries (test_decode).
 * work: attention_work_floats(0, ...) floats (no transposed copy is made). */
void attention_forward_cached(float *out, float *lse, const float *q, const float *kc,
                              const float *vc, int64_t n_ctx, const attn_shape *a, float *work,
                              int n_threads);
/* Gradients for q, k, v (kpos0 must be 0: training has no cache). dq overwrites [T, H*hd];
 * dk, dv overwrite [T, kvd]. D: [T, H] scratch; work as for the forward. */
void attention_backward(float *dq, float *dk, float *dv, float *D, const float *dout,
                        const float *q, const float *k, const float *v, const float *out,
                        const float *lse, const attn_shape *a, float *work, int n_threads);

/* 1 when nn/'s AVX2 builds run (ops_avx2.c, lora_avx2.c): compiled in, and the dispatched
 * kernels (lk_kernel_variant, LK_KERNELS) are x86 ones with AVX2 (avx2, avx512, amx). */
int ops_avx2(void);

/* h[n] = silu(g)·u (h may alias g). */
void swiglu_forward(float *h, const float *g, const float *u, int64_t n);
/* dg, du overwrite [n] from dh. */
void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                     int64_t n);

#endif /* LK_OPS_H */
