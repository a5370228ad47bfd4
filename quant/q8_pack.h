/* q8_pack.h — the packed weight panel the SIMD int8 GEMMs (q8_avx2.c, q8_avx512.c) share, and
 * its generic packer (plain C over any type's expander, compiled with each variant's flags). A
 * panel holds nr output rows o0 .. o0+nr-1 of a weight over all its blocks (rows past the
 * weight's end have zero scales), block after block; one block of the panel is
 *   W  [8][nr][4] bytes  value 4g+j of row r at W[g][r][j] (lanes over rows: a vector load gives
 *                        4 consecutive values of nr rows, what vpdpbusd / vpmaddubsw take), as
 *                        the signed code q, or as the unsigned q + K (vpdpbusd's unsigned operand;
 *                        the kernel subtracts K·Σx, the activation block's sum, from each block
 * sum) S0 [nr] fp32         s[0] of each row (simple types: the only scale) and, for the types that
 * are not simple (q8_simple), then S1, M0, M1 [nr] fp32. A microkernel multiplies a panel by rows
 * of quantised activations loading every weight byte once per group of activation rows. */
#ifndef LK_Q8_PACK_H
#define LK_Q8_PACK_H

#include <string.h>

#include "q8.h"

#define Q8P_CHUNK 16 /* blocks expanded at a time on the stack (48 bytes each) */

/* Bytes of one block of a panel of nr rows. */
static inline size_t q8p_block_bytes(int nr, int simple)
{
    return (size_t)nr * (32 + 4 * (simple ? 1 : 4));
}

/* Pack rows [o0, o0+nrow) (nrow <= nr) of w, all nb blocks, into panel, codes as q (flip 0) or as
 * q + 128 (flip 1: K = 128). */
static inline void q8p_pack(const q4_weight *w, q8_expand_fn expand, int simple, int64_t o0,
                            int nrow, int nr, int64_t nb, int flip, uint8_t *panel)
{
    const size_t pb = q8p_block_bytes(nr, simple);
    q8_wblock e[Q8P_CHUNK];
    for (int r = 0; r < nr; r++) {
        const uint8_t *row =
            (const uint8_t *)w->data + (size_t)(o0 + (r < nrow ? r : 0)) * w->row_bytes;
        for (int64_t b0 = 0; b0 < nb; b0 += Q8P_CHUNK) {
            const int64_t n = nb - b0 < Q8P_CHUNK ? nb - b0 : Q8P_CHUNK;
            if (r < nrow)
                expand(w, row, b0, n, e);
            else
                memset(e, 0, sizeof e);
            for (int64_t i = 0; i < n; i++) {
                uint8_t *p = panel + (size_t)(b0 + i) * pb;
                for (int g = 0; g < 8; g++) {
                    uint8_t *d = p + (size_t)(g * nr + r) * 4;
                    memcpy(d, e[i].q + 4 * g, 4);
                    for (int k = 0; flip && k < 4; k++)
                        d[k] ^= 0x80;
                }
                float *f = (float *)(void *)(p + (size_t)nr * 32); /* S0 [S1 M0 M1] */
                f[r] = e[i].s[0];
                if (!simple) {
                    f[nr + r] = e[i].s[1];
                    f[2 * nr + r] = e[i].m[0];
                    f[3 * nr + r] = e[i].m[1];
                }
            }
        }
    }
}

#endif /* LK_Q8_PACK_H */
